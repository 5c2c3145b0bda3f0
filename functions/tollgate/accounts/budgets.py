"""Setting, clearing and reading a customer's own monthly spend limit (``PUT``/``GET /usage/budget``,
``tollgate customers budget``).

The rules (what a period's charge is, what a budget is worth in credits) are in ``tollgate.domain.budgets``.
Here the budget is validated against the plan in force and stored on the customer item with its credits on
every plan version of the customer's history, which is what the authorizer reads; a plan change adds the new
plan's number (:func:`budget_for_plan`, called by ``tollgate.accounts.plan_changes``). A plan in another
currency than the budget's is worth 0 credits under it: the customer sets a new budget in the new currency.

Setting the same budget again changes nothing but its time; a concurrent change of the customer is retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from tollgate.dal.store import TollgateStore
from tollgate.domain.budgets import budget_credits, budget_minor, budget_problem, period_charge
from tollgate.domain.models import Customer, Plan, SpendBudget, plan_ref
from tollgate.domain.money import minor_unit_exponent
from tollgate.errors import ConflictError, InvalidInputError

ATTEMPTS = 3  # a customer changed meanwhile (a plan change, a suspension) is read again this often


@dataclass(frozen=True)
class BudgetStatus:
    """A customer's budget as they see it, on the plan in force now."""

    customer_id: str
    plan: Plan
    budget: SpendBudget | None
    credits: int | None  # what the budget allows per period on the plan (None: no budget, or not binding)
    cap: int | None  # the plan's cap as an amount in minor units (the highest budget allowed); None: no cap

    @property
    def currency(self) -> str:
        return self.plan.currency


def budget_for_plan(budget: SpendBudget, plan: Plan) -> int | None:
    """What ``budget`` allows on ``plan`` in credits per period (0 on a plan in another currency)."""
    if plan.currency != budget.currency:
        return 0
    return budget_credits(plan, budget_minor(plan, budget.amount))


def with_plan(customer: Customer, plan: Plan) -> Customer:
    """``customer`` with its budget's credits on ``plan`` too (unchanged without a budget)."""
    budget = customer.budget
    if budget is None:
        return customer
    credits = {**budget.credits, plan_ref(plan.id, plan.version): budget_for_plan(budget, plan)}
    return customer.model_copy(update={"budget": budget.model_copy(update={"credits": credits})})


def set_budget(
    store: TollgateStore, customer_id: str, amount: Decimal | None, *, now: datetime
) -> BudgetStatus:
    """Set ``customer_id``'s monthly spend limit to ``amount`` (in the plan's currency), or clear it (None).

    ``InvalidInputError`` for an amount the currency cannot charge, one below what the plan charges whatever
    the usage, or one above the plan's cap; ``NotFoundError`` for an unknown customer. Setting the budget
    the customer has changes nothing."""
    for attempt in range(ATTEMPTS):
        customer = store.get_customer(customer_id)
        budget = None if amount is None else _budget(store, customer, amount, now)
        if _same(budget, customer.budget):
            break
        try:
            store.update_customer(customer, customer.model_copy(update={"budget": budget}))
        except ConflictError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        break
    return budget_status(store, customer_id, now=now)


def budget_status(store: TollgateStore, customer_id: str, *, now: datetime) -> BudgetStatus:
    customer = store.get_customer(customer_id)
    return status_of(customer, _plan_at(store, customer, now))


def status_of(customer: Customer, plan: Plan) -> BudgetStatus:
    """``customer``'s budget on ``plan`` (the plan in force)."""
    budget = customer.budget
    credits = None if budget is None else budget.credits.get(plan_ref(plan.id, plan.version))
    cap = None if plan.credit_limit is None else period_charge(plan, plan.credit_limit)
    return BudgetStatus(customer.id, plan, budget, credits, cap)


def _plan_at(store: TollgateStore, customer: Customer, now: datetime) -> Plan:
    segment = customer.segment_at(now)
    return store.get_plan(segment.plan_id, segment.plan_version)


def _budget(store: TollgateStore, customer: Customer, amount: Decimal, now: datetime) -> SpendBudget:
    if customer.counter_shards > 1:
        raise InvalidInputError(
            f"customer {customer.id!r} has {customer.counter_shards} counter shards, which have no exact "
            "total to hold a budget against (like a plan's cap): only an unsharded customer can have one"
        )
    plan = _plan_at(store, customer, now)
    try:
        minor = budget_minor(plan, amount)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    problem = budget_problem(plan, minor)
    if problem is not None:
        raise InvalidInputError(problem)
    exponent = minor_unit_exponent(plan.currency)
    budget = SpendBudget(
        amount=Decimal(minor).scaleb(-exponent), currency=plan.currency, credits={}, set_at=now
    )
    versions = sorted({(s.plan_id, s.plan_version) for s in customer.segments})
    credits = {plan_ref(*ref): budget_for_plan(budget, store.get_plan(*ref)) for ref in versions}
    return budget.model_copy(update={"credits": credits})


def _same(new: SpendBudget | None, old: SpendBudget | None) -> bool:
    if new is None or old is None:
        return new is old
    return (new.amount, new.currency, new.credits) == (old.amount, old.currency, old.credits)
