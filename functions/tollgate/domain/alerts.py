"""Usage alerts: which thresholds a change of a customer's counters crosses, as plain functions.

A plan (or one customer) lists alert rules (:class:`AlertRule`); the alert function reads each change of a
counter or a wallet off the table's stream (old image, new image) and asks :func:`crossings` which rules it
crosses: the old value below the threshold and the new one at or above it (a balance: from at or above to
below). Each alert has a deterministic id (:attr:`Alert.alert_id`): once per rule and period, or for a
balance once per rule and top-up (the balance is refilled, and can run low again), which is what makes it
fire once however often the stream delivers the record (``tollgate.alerts``).

Thresholds:

* ``included_percent: 80``: 80% of the plan's included credits used;
* ``cap_percent: 90``: 90% of the plan's cap (``credit_limit``);
* ``budget_percent: 90``: 90% of the customer's own budget (``PUT /usage/budget``), in credits;
* ``spend: 100.00``: the period's charge (base fee and usage, before discounts and tax) reaches the amount;
* ``balance_below: 1000``: a prepaid balance falls below 1,000 credits;
* ``forecast: cap`` / ``forecast: budget`` / ``forecast_spend: 500.00``: the period's pace so far (credits
  per second since the period began, once a day of it has passed) projects the period past the cap, the
  budget or the amount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum

from tollgate.domain.budgets import budget_minor, period_charge
from tollgate.domain.models import AlertRule, Plan
from tollgate.domain.money import format_amount
from tollgate.domain.periods import period_end, period_start

FORECAST_AFTER_SECONDS = 86_400  # a pace measured over less than a day of the period says little


class AlertKind(StrEnum):
    """What an alert says; the EventBridge ``detail-type`` is :data:`DETAIL_TYPES`'s."""

    THRESHOLD = "usage.threshold"
    FORECAST = "usage.forecast"
    BALANCE_LOW = "balance.low"
    TOP_UP_FAILED = "balance.top_up_failed"


DETAIL_TYPES = {
    AlertKind.THRESHOLD: "Tollgate Usage Threshold Crossed",
    AlertKind.FORECAST: "Tollgate Usage Forecast Exceeded",
    AlertKind.BALANCE_LOW: "Tollgate Prepaid Balance Low",
    AlertKind.TOP_UP_FAILED: "Tollgate Auto Top-up Failed",
}


@dataclass(frozen=True)
class CounterChange:
    """A customer's period counters before and after one write (summed over shards), and for a prepaid
    customer their balance and what they have bought in all (which changes with every top-up)."""

    customer_id: str
    period: str
    at: datetime  # when the write happened (the stream record's time)
    credits_before: int
    credits_after: int
    balance_before: int | None = None
    balance_after: int | None = None
    bought: int = 0


@dataclass(frozen=True)
class Alert:
    customer_id: str
    period: str
    kind: AlertKind
    rule: AlertRule
    threshold: str  # what was crossed, for people: "4,500 credits (90% of the cap)"
    credits: int  # the period's credits when it fired
    at: datetime
    occurrence: str  # the period, or the balance's top-up count: an alert fires once per occurrence
    detail: dict[str, object] = field(default_factory=dict)

    @property
    def alert_id(self) -> str:
        return f"{self.customer_id}:{self.occurrence}:{self.rule.rule_id}"

    @property
    def detail_type(self) -> str:
        return DETAIL_TYPES[self.kind]

    def event_detail(self) -> dict[str, object]:
        """The EventBridge ``detail`` (documented in the README's alert events table)."""
        return {
            "alertId": self.alert_id,
            "kind": self.kind.value,
            "rule": self.rule.rule_id,
            "customerId": self.customer_id,
            "period": self.period,
            "threshold": self.threshold,
            "credits": self.credits,
            "at": self.at.isoformat(),
            **self.detail,
        }


def crossings(
    change: CounterChange,
    plan: Plan,
    rules: tuple[AlertRule, ...],
    budget_credits: int | None = None,
) -> list[Alert]:
    """The alerts of ``rules`` that ``change`` fires, on ``plan`` (the plan in force) with the customer's
    budget worth ``budget_credits`` on it. A rule whose amount ``plan``'s currency cannot charge (``spend:
    250.50`` set before a plan change into yen) never fires: it is skipped, not an error that would hold the
    stream record back."""
    fired = []
    for rule in rules:
        try:
            alert = _crossed(change, plan, rule, budget_credits)
        except ValueError:
            continue
        if alert is not None:
            fired.append(alert)
    return fired


def _crossed(change: CounterChange, plan: Plan, rule: AlertRule, budget: int | None) -> Alert | None:
    before, after = change.credits_before, change.credits_after

    def alert(kind: AlertKind, threshold: str, **detail: object) -> Alert:
        occurrence = change.period if kind != AlertKind.BALANCE_LOW else f"balance{change.bought}"
        return Alert(
            change.customer_id, change.period, kind, rule, threshold, after, change.at, occurrence, detail
        )

    def reached(limit: int) -> bool:
        return before < limit <= after

    if rule.included_percent is not None and plan.included_credits:
        limit = _percent(plan.included_credits, rule.included_percent)
        if reached(limit):
            threshold = f"{limit:,} credits ({rule.included_percent}% of {plan.included_credits:,} included)"
            return alert(AlertKind.THRESHOLD, threshold, limitCredits=limit)
    if rule.cap_percent is not None and plan.credit_limit is not None:
        limit = _percent(plan.credit_limit, rule.cap_percent)
        if reached(limit):
            threshold = f"{limit:,} credits ({rule.cap_percent}% of the {plan.credit_limit:,}-credit cap)"
            return alert(AlertKind.THRESHOLD, threshold, limitCredits=limit)
    if rule.budget_percent is not None and budget is not None:
        limit = _percent(budget, rule.budget_percent)
        if reached(limit):
            threshold = f"{limit:,} credits ({rule.budget_percent}% of the budget's {budget:,})"
            return alert(AlertKind.THRESHOLD, threshold, limitCredits=limit)
    if rule.spend is not None:
        amount = _minor(plan, rule.spend)
        if period_charge(plan, before) < amount <= period_charge(plan, after):
            return alert(
                AlertKind.THRESHOLD,
                f"a charge of {format_amount(amount, plan.currency)}",
                amount=amount,
                currency=plan.currency,
            )
    if rule.balance_below is not None and change.balance_after is not None:
        was = change.balance_before if change.balance_before is not None else change.balance_after
        if was >= rule.balance_below > change.balance_after:
            return alert(
                AlertKind.BALANCE_LOW,
                f"a balance below {rule.balance_below:,} credits",
                balance=change.balance_after,
            )
    forecast = _forecast(change, plan, rule, budget)
    if forecast is not None:
        projected, threshold = forecast
        return alert(AlertKind.FORECAST, threshold, projectedCredits=projected)
    return None


def projected_credits(credits: int, period: str, at: datetime) -> int | None:
    """The period's credits at its end if the pace so far goes on; None before a day of it has passed."""
    starts, ends = period_start(period), period_end(period)
    elapsed = int((at - starts).total_seconds())
    if elapsed < FORECAST_AFTER_SECONDS:
        return None
    return credits * int((ends - starts).total_seconds()) // elapsed


def _forecast(
    change: CounterChange, plan: Plan, rule: AlertRule, budget: int | None
) -> tuple[int, str] | None:
    if rule.forecast is None and rule.forecast_spend is None:
        return None
    projected = projected_credits(change.credits_after, change.period, change.at)
    if projected is None or change.credits_after == change.credits_before:
        return None
    if rule.forecast == "cap" and plan.credit_limit is not None and projected >= plan.credit_limit:
        return projected, f"the {plan.credit_limit:,}-credit cap"
    if rule.forecast == "budget" and budget is not None and projected >= budget:
        return projected, f"the budget's {budget:,} credits"
    if rule.forecast_spend is not None:
        amount = _minor(plan, rule.forecast_spend)
        if period_charge(plan, projected) >= amount:
            return projected, f"a charge of {format_amount(amount, plan.currency)}"
    return None


def _percent(credits: int, percent: int) -> int:
    return max(1, -(-credits * percent // 100))  # rounded up: 90% of 1,001 is 901 (900.9 used is not 90%)


def _minor(plan: Plan, amount: Decimal) -> int:
    return budget_minor(plan, amount)
