"""The rating engine: plan + credits -> statement. Pure functions over ``Decimal``; no I/O.

A statement's lines are exactly the lines of the Stripe invoice: each has a unit amount in the minor unit
(sent as ``unit_amount_decimal``) and an integer quantity, and its amount is rounded once, where Stripe
rounds. The statement total is therefore the invoice total, to the cent (or yen).
"""

from __future__ import annotations

from decimal import Decimal, localcontext
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from tollgate.domain.models import Plan
from tollgate.domain.money import MAX_UNIT_DECIMALS, line_amount, to_minor_units

# Enough digits that no product or sum of the amounts Stripe accepts is ever rounded by the Decimal context
# (the default 28 digits would silently round a 12-decimal unit price times a very large quantity).
EXACT_DIGITS = 80


class LineKind(StrEnum):
    BASE_FEE = "base_fee"
    USAGE = "usage"
    ADJUSTMENT = "adjustment"


class StatementLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str
    period: str  # the period this line bills for (an adjustment names the earlier period)
    quantity: int
    unit_amount: Decimal  # minor units, exact; Stripe's unit_amount_decimal
    amount: int  # minor units: line_amount(unit_amount, quantity)


class Statement(BaseModel):
    """What a customer owes for one period. Stored when rated and never changed afterwards."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    plan_id: str
    plan_version: int
    currency: str
    credits: int  # the period's credits as rated
    included_credits: int
    lines: tuple[StatementLine, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def unit_amount_decimal(price: Decimal, currency: str) -> Decimal:
    """A price in major units -> Stripe's ``unit_amount_decimal``: exact minor units, normalised.

    ``Decimal("5").scaleb(2)`` is ``5E+2`` and ``Decimal("0.000420").scaleb(2)`` keeps a trailing zero; the
    value is normalised to ``500`` and ``0.042`` (the Stripe edge writes every amount as plain digits, see
    ``tollgate.billing.invoicing``). Stripe accepts at most 12 decimal places; a price finer than that
    cannot be
    invoiced exactly, so it is refused here rather than rounded.
    """
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        minor = to_minor_units(price, currency).normalize()
    exponent = minor.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_UNIT_DECIMALS:
        raise ValueError(
            f"price {price} {currency.upper()} is {minor} in the minor unit: Stripe's unit_amount_decimal "
            f"takes at most {MAX_UNIT_DECIMALS} decimal places"
        )
    return Decimal(format(minor, "f"))


def _line(kind: LineKind, description: str, period: str, quantity: int, unit_minor: Decimal) -> StatementLine:
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        amount = line_amount(unit_minor, quantity)
    return StatementLine(
        kind=kind,
        description=description,
        period=period,
        quantity=quantity,
        unit_amount=unit_minor,
        amount=amount,
    )


def usage_lines(plan: Plan, credits: int, period: str) -> list[StatementLine]:
    """The usage part of a statement: credits above the included ones, at the flat price or by tiers."""
    if credits < 0:
        raise ValueError("credits cannot be negative")
    billable = max(0, credits - plan.included_credits)
    if billable == 0:
        return []
    suffix = f" above {plan.included_credits:,} included" if plan.included_credits else ""
    if not plan.tiers:
        unit = unit_amount_decimal(plan.flat_price, plan.currency)
        return [_line(LineKind.USAGE, f"API usage: {billable:,} credits{suffix}", period, billable, unit)]
    lines, floor = [], 0
    for tier in plan.tiers:
        ceiling = tier.up_to if tier.up_to is not None else billable
        in_band = min(billable, ceiling) - floor
        if in_band > 0:
            unit = unit_amount_decimal(tier.price_per_credit, plan.currency)
            band = f"{floor + 1:,}-{ceiling:,}" if tier.up_to is not None else f"{floor + 1:,}+"
            lines.append(
                _line(
                    LineKind.USAGE,
                    f"API usage: {in_band:,} credits (band {band}){suffix}",
                    period,
                    in_band,
                    unit,
                )
            )
        floor = ceiling
        if floor >= billable:
            break
    return lines


def usage_charge(plan: Plan, credits: int) -> int:
    """Minor units the usage part costs for ``credits`` in one period."""
    return sum(line.amount for line in usage_lines(plan, credits, "-"))


def late_usage_line(plan: Plan, period: str, billed_credits: int, late_credits: int) -> StatementLine | None:
    """Credits of ``period`` counted after it was rated, billed on a later invoice.

    The amount is what those credits add to ``period``'s charge (included credits and tiers respected), so
    the two invoices together bill the period exactly as if every credit had been there at the close.
    """
    if late_credits < 0:
        raise ValueError("late credits cannot be negative")
    if late_credits == 0:
        return None
    extra = usage_charge(plan, billed_credits + late_credits) - usage_charge(plan, billed_credits)
    return _line(
        LineKind.ADJUSTMENT,
        f"Late usage for {period}: {late_credits:,} credits counted after that period closed",
        period,
        1,
        Decimal(extra),
    )


def rate_period(
    plan: Plan,
    customer_id: str,
    period: str,
    credits: int,
    adjustments: tuple[StatementLine, ...] = (),
) -> Statement:
    lines: list[StatementLine] = []
    if plan.base_fee > 0:
        lines.append(
            _line(
                LineKind.BASE_FEE,
                f"{plan.name}: base fee",
                period,
                1,
                unit_amount_decimal(plan.base_fee, plan.currency),
            )
        )
    lines.extend(usage_lines(plan, credits, period))
    lines.extend(adjustments)
    return Statement(
        customer_id=customer_id,
        period=period,
        plan_id=plan.id,
        plan_version=plan.version,
        currency=plan.currency,
        credits=credits,
        included_credits=plan.included_credits,
        lines=tuple(lines),
    )
