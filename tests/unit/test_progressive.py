"""Progressive billing as plain functions: what a threshold invoice bills, what the close takes off, which
plans may have a threshold, and which counter changes reach the threshold billing."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest
from pydantic import ValidationError

from tests.conftest import make_customer, make_plan
from tollgate.alerts.service import CHECK_SECONDS, Accounts, InvoiceThresholds
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import CounterChange
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Customer, Plan, PlanSegment
from tollgate.domain.progressive import (
    invoiced,
    invoiced_earlier_line,
    threshold_minor,
    threshold_statement,
    usage_amount,
)
from tollgate.domain.rating import LineKind, Statement, rate_period

PERIOD = "2026-10"
AT = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)
HYBRID = make_plan(
    id="growth",
    name="Growth",
    base_fee=Decimal("10"),
    included_credits=1_000,
    price_per_credit=Decimal("0.01"),
    invoice_threshold=Decimal("50"),
)


def rated(credits: int, plan: Plan = HYBRID) -> Statement:
    return rate_period(plan, "acme", PERIOD, credits)


def part(number: int, total: int, invoice_id: str | None = None) -> PeriodClose:
    statement = threshold_statement(rated(1_000 + total), [], 1, AT)
    assert statement is not None
    return PeriodClose(
        customer_id="acme",
        period=PERIOD,
        part=number,
        status=CloseStatus.FINALIZED,
        statement=statement,
        billed_credits=1_000 + total,
        stripe_invoice_id=invoice_id,
        created_at=AT,
        updated_at=AT,
    )


def test_a_threshold_invoice_bills_the_usage_not_the_base_fee() -> None:
    statement = rated(7_000)  # $10 base fee, 6,000 billable credits: $60

    assert usage_amount(statement) == 6_000
    early = threshold_statement(statement, [], 5_000, AT)

    assert early is not None
    (line,) = early.lines
    assert (line.kind, line.quantity, line.unit_amount, line.amount) == (
        LineKind.THRESHOLD,
        1,
        Decimal(6_000),
        6_000,
    )
    assert early.total == 6_000
    assert line.description == "API usage for 2026-10 up to Oct 20 09:30 UTC: 7,000 credits"


@pytest.mark.parametrize(
    ("credits", "billed", "due"),
    [
        pytest.param(6_000, 0, 5_000, id="reaches-it-exactly"),
        pytest.param(5_999, 0, None, id="one-credit-short"),
        pytest.param(11_000, 5_000, 5_000, id="the-second-reaches-it-above-the-first"),
        pytest.param(10_999, 5_000, None, id="the-second-one-credit-short"),
        pytest.param(20_000, 5_000, 14_000, id="a-jump-bills-all-of-it"),
    ],
)
def test_a_threshold_invoice_is_due_once_the_unbilled_usage_reaches_the_threshold(
    credits: int, billed: int, due: int | None
) -> None:
    earlier = [part(1, billed)] if billed else []

    early = threshold_statement(rated(credits), earlier, 5_000, AT)

    assert (None if early is None else early.total) == due
    if early is not None and billed:
        assert early.lines[0].description.endswith(", less 50.00 USD invoiced before")


def test_a_threshold_of_one_minor_unit_invoices_a_single_cent() -> None:
    """The smallest threshold a plan can set (0.01 USD): one cent of unbilled usage is due, none is not."""
    one_cent = rated(1_001)  # one credit past the included ones, at 0.01 USD

    early = threshold_statement(one_cent, [], 1, AT)

    assert early is not None
    assert early.total == 1
    assert threshold_statement(rated(1_000), [], 1, AT) is None  # nothing billable yet


def test_a_threshold_invoice_records_no_use_of_free_credits() -> None:
    statement = rated(7_000).model_copy(update={"grants_used": {"grant-1": 500}})

    early = threshold_statement(statement, [], 100, AT)

    assert early is not None
    assert early.grants_used == {}


def test_nothing_is_due_when_earlier_invoices_billed_more_than_the_usage_now_comes_to() -> None:
    assert threshold_statement(rated(2_000), [part(1, 5_000)], 0, AT) is None


def test_nothing_is_due_when_earlier_invoices_billed_exactly_the_usage_whatever_the_threshold() -> None:
    """No invoice of nothing: usage already invoiced in full is not due again, even at a threshold of 0."""
    assert threshold_statement(rated(6_000), [part(1, 5_000)], 0, AT) is None


def test_the_close_takes_off_what_every_threshold_invoice_billed() -> None:
    parts = [part(1, 5_500, "in_1"), part(2, 5_200, "in_2")]

    line = invoiced_earlier_line(PERIOD, "usd", parts)

    assert invoiced(parts) == 10_700
    assert line is not None
    assert (line.kind, line.quantity, line.unit_amount, line.amount) == (
        LineKind.INVOICED_EARLIER,
        1,
        Decimal(-10_700),
        -10_700,
    )
    assert line.description == (
        "API usage for 2026-10 invoiced during the period (2 threshold invoices: in_1, in_2), 107.00 USD"
    )
    assert invoiced_earlier_line(PERIOD, "usd", []) is None
    one = invoiced_earlier_line(PERIOD, "usd", parts[:1])
    assert one is not None
    assert "(a threshold invoice: in_1)" in one.description


def test_the_threshold_in_the_minor_unit() -> None:
    assert threshold_minor(HYBRID) == 5_000
    assert threshold_minor(make_plan()) is None
    assert threshold_minor(make_plan(currency="jpy", price_per_credit=1, invoice_threshold=5_000)) == 5_000


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"invoice_threshold": 0}, "not an amount the currency can charge", id="zero"),
        pytest.param({"invoice_threshold": "10.005"}, "not an amount", id="a-fraction-of-a-cent"),
        pytest.param(
            {"currency": "isk", "price_per_credit": 1, "invoice_threshold": "1.5"}, "not an amount", id="isk"
        ),
        pytest.param({"invoice_threshold": 10**9}, "more than Stripe invoices", id="above-stripes-maximum"),
        pytest.param({"invoice_threshold": 50, "tax": "exclusive"}, "not taxed by Stripe Tax", id="taxed"),
        pytest.param(
            {"invoice_threshold": 50, "billing": "prepaid"}, "invoice_threshold: a prepaid plan", id="prepaid"
        ),
    ],
)
def test_a_threshold_a_plan_cannot_have_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        make_plan(**overrides)


# -- which changes reach the threshold billing ------------------------------------------------------------
@dataclass
class FakeAccounts:
    customers: dict[str, Customer]
    plans: dict[tuple[str, int], Plan]

    def customer(self, customer_id: str) -> Customer:
        return self.customers[customer_id]

    def plan(self, plan_id: str, version: int) -> Plan:
        return self.plans[(plan_id, version)]


@dataclass
class FakeBilling:
    invoiced: int = 0
    calls: list[tuple[str, str]] = field(default_factory=list)
    fails: bool = False

    def __call__(self, customer_id: str, period: str, now: datetime) -> int:
        self.calls.append((customer_id, period))
        if self.fails:
            raise RuntimeError("Stripe is down")
        return self.invoiced


@dataclass
class Clock:
    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now


def accounts_for(plan: Plan, **customer: Any) -> Accounts:
    fake = FakeAccounts({"acme": make_customer(plan, **customer)}, {(plan.id, plan.version): plan})
    return cast(Accounts, fake)


NO_STORE = cast(TollgateStore, None)  # read only for sharded customers


def change(before: int, after: int, **extra: Any) -> CounterChange:
    return CounterChange("acme", PERIOD, AT, before, after, **extra)


def test_a_change_reaches_the_billing_once_the_periods_charge_may_reach_the_threshold() -> None:
    billing, clock = FakeBilling(), Clock()
    thresholds = InvoiceThresholds(billing, clock)
    accounts = accounts_for(HYBRID)

    thresholds.check(NO_STORE, change(0, 5_999), accounts, AT)  # $10 + $49.99: $59.99 at most
    assert billing.calls == [("acme", PERIOD)]  # the whole charge may reach it: checked exactly

    thresholds.check(NO_STORE, change(0, 4_999), accounts, AT)  # $49.99 in all: cannot reach $50
    assert len(billing.calls) == 1


def test_a_customer_below_the_threshold_is_checked_at_most_once_per_interval() -> None:
    billing, clock = FakeBilling(), Clock()
    thresholds = InvoiceThresholds(billing, clock)
    accounts = accounts_for(HYBRID)

    thresholds.check(NO_STORE, change(0, 6_000), accounts, AT)
    clock.now += CHECK_SECONDS - 0.1
    thresholds.check(NO_STORE, change(6_000, 6_100), accounts, AT)
    assert len(billing.calls) == 1
    clock.now += 0.1
    thresholds.check(NO_STORE, change(6_100, 6_200), accounts, AT)
    assert len(billing.calls) == 2


def test_what_the_threshold_invoices_billed_raises_the_next_estimate() -> None:
    billing, clock = FakeBilling(invoiced=5_000), Clock()
    thresholds = InvoiceThresholds(billing, clock)
    accounts = accounts_for(HYBRID)
    thresholds.check(NO_STORE, change(0, 6_000), accounts, AT)
    clock.now += CHECK_SECONDS

    thresholds.check(NO_STORE, change(6_000, 9_999), accounts, AT)  # $10 + $89.99 < $50 + $50
    assert len(billing.calls) == 1
    thresholds.check(NO_STORE, change(9_999, 10_000), accounts, AT)  # $100: may be $50 unbilled
    assert len(billing.calls) == 2


@pytest.mark.parametrize(
    ("plan", "the_change"),
    [
        pytest.param(
            make_plan(id="plain", price_per_credit=Decimal("0.01")), change(0, 100_000), id="no-threshold"
        ),
        pytest.param(HYBRID, change(100_000, 100_000), id="no-more-usage"),
        pytest.param(HYBRID, change(90_000, 100_000, balance_after=5), id="a-prepaid-draw"),
    ],
)
def test_changes_that_cannot_need_a_threshold_invoice_never_reach_the_billing(
    plan: Plan, the_change: CounterChange
) -> None:
    billing = FakeBilling()

    InvoiceThresholds(billing, Clock()).check(NO_STORE, the_change, accounts_for(plan), AT)

    assert billing.calls == []


def test_a_plan_change_in_the_period_skips_the_estimate() -> None:
    billing = FakeBilling()
    segments = (
        PlanSegment(seq=1, plan_id="growth", plan_version=1),
        PlanSegment(seq=2, plan_id="growth", plan_version=1, since=datetime(2026, 10, 5, tzinfo=UTC)),
    )
    accounts = accounts_for(HYBRID, plan_segments=segments)

    InvoiceThresholds(billing, Clock()).check(NO_STORE, change(0, 10), accounts, AT)

    assert billing.calls == [("acme", PERIOD)]  # an earlier segment's plan may have cost more


def test_a_failed_threshold_billing_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    billing, clock = FakeBilling(fails=True), Clock()
    thresholds = InvoiceThresholds(billing, clock)

    thresholds.check(NO_STORE, change(0, 6_000), accounts_for(HYBRID), AT)

    assert "threshold invoicing of acme 2026-10 failed" in caplog.text
    clock.now += CHECK_SECONDS
    thresholds.check(NO_STORE, change(6_000, 6_001), accounts_for(HYBRID), AT)
    assert len(billing.calls) == 2  # the next check retries
