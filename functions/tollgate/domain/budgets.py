"""A customer's own monthly spend limit (``PUT /usage/budget``), as the credits the authorizer enforces.

The customer sets an amount in their plan's currency; Tollgate turns it into the most credits a period can
count without the period's charge passing it (:func:`budget_credits`), and the authorizer enforces that number
exactly like the plan's ``credit_limit``: in the one conditional write that counts the request
(``tollgate.metering.decide``). So a budget costs nothing on the hot path and can never be overrun by
concurrent requests.

What a period's charge is, for a budget (:func:`period_charge`): the plan's base fee plus its usage charge at
full-period terms (included credits, flat price or tiers, the minimum commitment), before discounts and tax;
for a prepaid plan, what the credits drawn cost at the plan's price. Free credits, trials and a mid-period
plan change's proration only make the real bill lower, so the budget is never exceeded, at worst reached a
little early.

A budget is worth credits per plan version (a pricier plan buys fewer): :class:`tollgate.domain.models.
SpendBudget` keeps the number for each plan version of the customer's history, computed when the budget is set
and when the plan changes (``tollgate.accounts.budgets``).
"""

from __future__ import annotations

from decimal import Decimal

from tollgate.domain.currencies import amount_increment
from tollgate.domain.models import Plan, plan_ref
from tollgate.domain.money import format_amount, line_amount, minor_unit_exponent, to_minor_units
from tollgate.domain.rating import unit_amount_decimal, usage_charge

MAX_BUDGET_CREDITS = 10**15  # beyond this a budget does not bind: treated as no limit


def period_charge(plan: Plan, credits: int) -> int:
    """Minor units a full period of ``credits`` costs on ``plan``, before discounts and tax (prepaid: what
    the credits cost at the plan's price, rounded half-up once, as a purchase of them is)."""
    if credits < 0:
        raise ValueError("credits cannot be negative")
    if plan.prepaid:
        return line_amount(unit_amount_decimal(plan.flat_price, plan.currency), credits)
    return _base_fee(plan) + usage_charge(plan, credits, minimum=_minimum(plan))


def budget_credits(plan: Plan, amount_minor: int) -> int | None:
    """The most credits a period on ``plan`` can count while its charge stays at or below ``amount_minor`` at
    every point of the period (0 when even no usage costs more); None when the budget never binds (the plan's
    cap comes first, or credits past some point are free).

    Volume tiers make the charge fall where a band ends (more credits, a lower price for all of them): the
    budget stops the period at the first credit that would pass it, not at a later one that fits again, so
    the search is over the highest charge reached so far (:func:`peak_charge`), which never falls."""
    if peak_charge(plan, 0) > amount_minor:
        return 0
    ceiling = plan.credit_limit if plan.credit_limit is not None else MAX_BUDGET_CREDITS
    if peak_charge(plan, ceiling) <= amount_minor:
        return None
    low, high = 0, ceiling  # peak(low) <= amount < peak(high)
    while high - low > 1:
        middle = (low + high) // 2
        if peak_charge(plan, middle) <= amount_minor:
            low = middle
        else:
            high = middle
    return low


def peak_charge(plan: Plan, credits: int) -> int:
    """The highest :func:`period_charge` of any count from 0 to ``credits``: the charge itself, or under
    volume tiers, the charge at the end of a band below it (the most a band's credits cost)."""
    charge = period_charge(plan, credits)
    if plan.tiers_mode != "volume" or plan.prepaid:
        return charge
    for tier in plan.tiers:
        if tier.up_to is None or plan.included_credits + tier.up_to >= credits:
            break
        charge = max(charge, period_charge(plan, plan.included_credits + tier.up_to))
    return charge


def budget_minor(plan: Plan, amount: Decimal) -> int:
    """``amount`` (major units, the plan's currency) in minor units: ``ValueError`` unless it is one that
    can be charged (not negative, not finer than the currency's minor unit, whole krónur for ISK)."""
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"a budget is an amount of at least 0, not {amount}")
    minor = to_minor_units(amount, plan.currency)
    increment = amount_increment(plan.currency)
    if minor != minor.to_integral_value() or int(minor) % increment:
        step = Decimal(increment).scaleb(-minor_unit_exponent(plan.currency)).normalize()
        raise ValueError(
            f"a budget in {plan.currency.upper()} is a multiple of {step:f} {plan.currency.upper()}, "
            f"not {amount}"
        )
    return int(minor)


def budget_problem(plan: Plan, amount_minor: int) -> str | None:
    """Why ``amount_minor`` cannot be a budget on ``plan`` (the customer sets it; the plan is the
    provider's), or None."""
    fixed = period_charge(plan, 0)  # the base fee and the minimum commitment
    if amount_minor < fixed:
        return (
            f"a budget of {format_amount(amount_minor, plan.currency)} is below what the plan charges "
            f"whatever the usage ({format_amount(fixed, plan.currency)}): it would refuse every request"
        )
    if plan.credit_limit is not None:
        cap = period_charge(plan, plan.credit_limit)
        if amount_minor > cap:
            return (
                f"a budget of {format_amount(amount_minor, plan.currency)} is above the plan's cap of "
                f"{plan.credit_limit:,} credits ({format_amount(cap, plan.currency)}): set one at or below it"
            )
    return None


def budget_refs(plans: list[Plan], amount_minor: int) -> dict[str, int | None]:
    """The budget's credits on each of ``plans`` (a customer's plan versions), by :func:`plan_ref`."""
    return {plan_ref(plan.id, plan.version): budget_credits(plan, amount_minor) for plan in plans}


def _base_fee(plan: Plan) -> int:
    return line_amount(unit_amount_decimal(plan.base_fee, plan.currency), 1) if plan.base_fee else 0


def _minimum(plan: Plan) -> int:
    if not plan.minimum_commitment:
        return 0
    return line_amount(unit_amount_decimal(plan.minimum_commitment, plan.currency), 1)
