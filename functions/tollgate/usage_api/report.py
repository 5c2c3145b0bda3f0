"""A customer's live usage for one period and what it would cost so far: one function, two surfaces.

``tollgate usage`` prints it; ``GET /usage`` returns it as JSON (camelCase, via the field aliases). The
estimate comes from the same rating engine as the period close (``rate_period`` on the counters), so the
number a customer sees mid-month is the number the close will bill if nothing more is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tollgate.accounts.budgets import BudgetStatus, status_of
from tollgate.dal.closes import list_closes, list_threshold_invoices
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import PeriodClose
from tollgate.domain.credit_grants import GrantKind, free_credits_for
from tollgate.domain.models import RouteUsage
from tollgate.domain.money import format_amount, minor_unit_exponent
from tollgate.domain.periods import parse_period, period_end, period_of, period_start
from tollgate.domain.plan_history import period_shares
from tollgate.domain.prepaid import burn_rate
from tollgate.domain.rating import PlanPart, rate_parts
from tollgate.errors import InvalidInputError
from tollgate.expiry.service import expiring_soon

DEFAULT_RECENT_INVOICES = 3
CalendarDay = date  # a field named ``date`` cannot be annotated with the name ``date``


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class Amount(_Model):
    """Money as Stripe counts it (integer minor units) and as people read it."""

    amount: int = Field(description="in the currency's minor unit (cents; yen for JPY)")
    formatted: str = Field(examples=["12.34 USD"])
    currency: str = Field(examples=["usd"])

    @classmethod
    def of(cls, minor: int, currency: str) -> Amount:
        return cls(amount=minor, formatted=format_amount(minor, currency), currency=currency)


class BudgetReport(_Model):
    """The monthly spend limit the customer set (``PUT /usage/budget``), on the plan in force."""

    amount: Amount | None = Field(description="the budget; null: none is set")
    credits: int | None = Field(
        description=(
            "the most credits a period can count on the current plan without its charge (base fee and usage, "
            "before discounts and tax) passing the budget; null: no budget, or one the plan's cap is below"
        )
    )
    cap: Amount | None = Field(description="the plan's cap as an amount: the highest budget allowed")
    set_at: datetime | None

    @classmethod
    def of(cls, status: BudgetStatus) -> BudgetReport:
        currency = status.currency
        budget = status.budget
        amount = None
        if budget is not None:
            minor = int(budget.amount.scaleb(minor_unit_exponent(budget.currency)))
            amount = Amount.of(minor, budget.currency)
        return cls(
            amount=amount,
            credits=status.credits,
            cap=None if status.cap is None else Amount.of(status.cap, currency),
            set_at=None if budget is None else budget.set_at,
        )


class RouteLine(_Model):
    route: str = Field(examples=["GET /v1/search"])
    credits: int
    requests: int


class DayLine(_Model):
    date: CalendarDay = Field(examples=["2026-11-05"], description="a day of the period (UTC)")
    credits: int
    requests: int


def daily_series(period: str, days: Mapping[int, RouteUsage], now: datetime) -> list[DayLine]:
    """One line per day of ``period`` from its first day up to ``now``'s day (the whole period once it has
    ended; none before it starts), days without requests at zero. A day counted past ``now`` (a request
    stamped a little ahead of this clock) is shown too."""
    first = period_start(period).date()
    last = min(now, period_end(period) - timedelta(microseconds=1)).date()
    if days:
        last = max(last, first.replace(day=max(days)))
    series = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        counted = days.get(day.day, RouteUsage())
        series.append(DayLine(date=day, credits=counted.credits, requests=counted.requests))
    return series


class EstimateLine(_Model):
    description: str
    quantity: int
    amount: Amount


class InvoiceSummary(_Model):
    period: str = Field(examples=["2026-10"])
    close_status: str = Field(description="rated, invoice_created, finalized or no_charge")
    invoice_status: str | None = Field(description="Stripe's: open, paid, void, uncollectible")
    invoice_id: str | None
    hosted_invoice_url: str | None
    total: Amount
    amount_due: Amount | None

    @classmethod
    def of(cls, close: PeriodClose) -> InvoiceSummary:
        currency = close.statement.currency
        return cls(
            period=close.period,
            close_status=close.status.value,
            invoice_status=close.invoice_status,
            invoice_id=close.stripe_invoice_id,
            hosted_invoice_url=close.hosted_invoice_url,
            total=Amount.of(close.total, currency),
            amount_due=None if close.amount_due is None else Amount.of(close.amount_due, currency),
        )


class PlanChangeLine(_Model):
    starts: datetime = Field(description="when the plan takes effect (a request's own timestamp decides)")
    plan_id: str
    plan_version: int
    scheduled: bool = Field(description="true: not in effect yet")


class ExpiringCredits(_Model):
    expires_at: datetime = Field(description="when they expire (past: at the next hourly sweep)")
    credits: int = Field(description="what of them is left after the draws so far (soonest-expiring first)")


class PrepaidBalance(_Model):
    credits: int = Field(description="what requests can still draw")
    bought: int = Field(description="every credit ever added to the balance")
    burn_rate_per_day: int = Field(description="credits drawn per day in this period so far")
    runs_out_at: datetime | None = Field(description="when the balance runs out at that pace; null: never")
    expiring: list[ExpiringCredits] = Field(
        default_factory=list, description="credits of packs that expire if not drawn first, soonest first"
    )


class UsageReport(_Model):
    customer_id: str
    period: str = Field(examples=["2026-11"])
    as_of: datetime
    plan_id: str
    plan_version: int
    credits_used: int
    requests: int
    refunded_credits: int = Field(
        default=0,
        description="credits of failed requests refunded this period (a plan that bills only what "
        "succeeded): not in credits_used; the requests stay in requests",
    )
    refunded_requests: int = Field(default=0, description="the failed requests refunded this period")
    included_credits: int
    included_remaining: int
    credit_limit: int | None = Field(description="the plan's hard cap per period; null: no cap")
    credits_remaining: int | None = Field(description="credits left under the cap; null: no cap")
    estimated_charge: Amount = Field(description="what the period costs so far, rated like the close")
    estimate_lines: list[EstimateLine]
    routes: list[RouteLine]
    daily: list[DayLine] = Field(
        default_factory=list,
        description="credits and requests per day (UTC) of the period, from its first day up to today (the "
        "whole period once it has ended), days without requests included at zero",
    )
    recent_invoices: list[InvoiceSummary]
    threshold_invoices: list[InvoiceSummary] = Field(
        default_factory=list,
        description="the period's threshold invoices (the plan's invoice_threshold): usage invoiced "
        "before the period ends, which the period's own invoice takes off (the estimate is the whole "
        "period's)",
    )
    plan_changes: list[PlanChangeLine] = Field(
        default_factory=list, description="the customer's plan changes, oldest first (none: one plan ever)"
    )
    prepaid: PrepaidBalance | None = Field(
        default=None, description="the prepaid balance (a prepaid plan); null: billed in arrears"
    )
    budget: BudgetReport | None = Field(
        default=None, description="the monthly budget the customer set (PUT /usage/budget); null: none"
    )


def build_usage_report(
    store: TollgateStore,
    customer_id: str,
    *,
    now: datetime,
    period: str | None = None,
    recent_invoices: int = DEFAULT_RECENT_INVOICES,
) -> UsageReport:
    """Usage of ``period`` (default: the one ``now`` is in), summed over all counter shards.

    Raises ``InvalidInputError`` for a period that is not YYYY-MM, ``NotFoundError`` for an unknown customer.
    """
    if period is None:
        period = period_of(now)
    else:
        try:
            parse_period(period)
        except ValueError as error:  # the message names the bad value
            raise InvalidInputError(str(error)) from error
    customer = store.get_customer(customer_id)
    usage = store.read_usage(customer.id, period, customer.counter_shards)
    shares = period_shares(customer.segments, period, usage.segments, usage.credits)
    plans = {
        (s.segment.plan_id, s.segment.plan_version): store.get_plan(s.segment.plan_id, s.segment.plan_version)
        for s in shares
    }
    parts = [
        PlanPart(
            s.segment.seq, plans[(s.segment.plan_id, s.segment.plan_version)], s.starts, s.ends, s.credits
        )
        for s in shares
    ]
    grants = [grant for grant in store.list_credit_grants(customer.id) if grant.applies_to(period)]
    used: dict[str, int] = {}
    if any(grant.schedule is GrantKind.ONE_TIME for grant in grants):
        for close in list_closes(store.table, customer.id, limit=120):
            if close.period < period:
                for grant_id, credits in close.statement.grants_used.items():
                    used[grant_id] = used.get(grant_id, 0) + credits
    free = free_credits_for(grants, period, used)
    statement = rate_parts(parts, customer.id, period, (), free, customer.trial_ends)
    in_force = customer.segment_at(min(now, period_end(period) - timedelta(microseconds=1)))
    plan = store.get_plan(in_force.plan_id, in_force.plan_version)
    closes = list_closes(store.table, customer.id, limit=recent_invoices) if recent_invoices > 0 else []
    early = list_threshold_invoices(store.table, customer.id, period) if recent_invoices > 0 else []
    prepaid = None
    if plan.prepaid:
        balance = store.read_balance(customer.id)
        since = max(parts[-1].starts, customer.created_at)  # the pace of the plan in force
        pace = burn_rate(balance.credits, parts[-1].credits, since, min(now, period_end(period)))
        prepaid = PrepaidBalance(
            credits=balance.credits,
            bought=balance.bought,
            burn_rate_per_day=pace.credits_per_day,
            runs_out_at=pace.runs_out_at,
            expiring=[
                ExpiringCredits(expires_at=at, credits=credits)
                for at, credits in expiring_soon(store, customer.id, now)
            ],
        )
    return UsageReport(
        customer_id=customer.id,
        period=period,
        as_of=now,
        plan_id=plan.id,
        plan_version=plan.version,
        credits_used=usage.credits,
        requests=usage.requests,
        refunded_credits=usage.refunded.credits,
        refunded_requests=usage.refunded.requests,
        included_credits=statement.included_credits,
        included_remaining=max(0, statement.included_credits - usage.credits),
        credit_limit=plan.credit_limit,
        credits_remaining=None if plan.credit_limit is None else max(0, plan.credit_limit - usage.credits),
        estimated_charge=Amount.of(statement.total, statement.currency),
        estimate_lines=[
            EstimateLine(
                description=line.description,
                quantity=line.quantity,
                amount=Amount.of(line.amount, statement.currency),
            )
            for line in statement.lines
        ],
        routes=[
            RouteLine(route=route, credits=counts.credits, requests=counts.requests)
            for route, counts in usage.routes.items()
        ],
        daily=daily_series(period, usage.days, now),
        recent_invoices=[InvoiceSummary.of(close) for close in closes],
        threshold_invoices=[InvoiceSummary.of(part) for part in early],
        plan_changes=[
            PlanChangeLine(
                starts=segment.since,
                plan_id=segment.plan_id,
                plan_version=segment.plan_version,
                scheduled=segment.since > now,
            )
            for segment in customer.segments
            if segment.since is not None
        ],
        prepaid=prepaid,
        budget=None if customer.budget is None else BudgetReport.of(status_of(customer, plan)),
    )
