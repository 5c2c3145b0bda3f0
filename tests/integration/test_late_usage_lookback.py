"""Late usage at its edges: a single late credit, and how far back a close looks (the last 3 closed periods).

Rating only (``steps.rated_record`` on the real ledger, moto): what the next statement bills, and what the
earlier records say was billed. The Stripe side of late usage is in ``test_period_close.py``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.accounts.plan_changes import change_plan
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import get_close
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Plan
from tollgate.domain.periods import period_start
from tollgate.domain.rating import LineKind

DOLLAR = make_plan(id="dollar", name="Dollar", price_per_credit=Decimal("1"))  # 100 cents a credit
YEN = make_plan(id="yen", name="Yen", currency="jpy", price_per_credit=Decimal("1"))
LATER = datetime(2027, 6, 1, 6, 0, tzinfo=UTC)  # after every period closed here


pytestmark = pytest.mark.dynamodb_local  # conditional writes and transactions as DynamoDB does them


@pytest.fixture
def ledger(store: TollgateStore) -> DynamoLedger:
    store.put_plan(DOLLAR)
    store.put_plan(YEN)
    store.put_customer(make_customer(DOLLAR, stripe_customer_id="cus_acme"))
    return DynamoLedger(store)


def switch(store: TollgateStore, plan: Plan, period: str) -> None:
    """Move acme to ``plan`` from the start of ``period`` (a change made during the period before)."""
    made = period_start(period) - timedelta(days=10)
    change_plan(store, "acme", plan.id, version=plan.version, at_period_end=True, now=made)


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def rate(ledger: DynamoLedger, period: str) -> PeriodClose:
    rated = steps.rated_record(steps.CloseContext(ledger, None, "acme", period, LATER))  # type: ignore[arg-type]
    return rated.record


def billed(store: TollgateStore, period: str) -> int:
    record = get_close(store.table, "acme", period)
    assert record is not None
    return record.billed_credits


def test_one_late_credit_is_billed_once_at_its_price(store: TollgateStore, ledger: DynamoLedger) -> None:
    count(store, 10, "2026-10")
    assert rate(ledger, "2026-10").total == 1_000
    count(store, 1, "2026-10")  # one credit counted after October was rated

    november = rate(ledger, "2026-11")

    (adjustment,) = november.statement.lines
    assert (adjustment.kind, adjustment.period, adjustment.quantity, adjustment.amount) == (
        LineKind.ADJUSTMENT,
        "2026-10",
        1,
        100,
    )
    assert "Late usage for 2026-10: 1 credits" in adjustment.description
    assert (november.status, november.total, november.billed_credits) == (CloseStatus.RATED, 100, 0)
    assert november.adjusted_periods == {"2026-10": 1}
    assert billed(store, "2026-10") == 11

    december = rate(ledger, "2026-12")
    assert (december.statement.lines, december.status, december.adjusted_periods) == (
        (),
        CloseStatus.NO_CHARGE,
        {},
    )


def test_late_usage_is_looked_for_in_the_last_three_closed_periods(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    earlier = ["2026-06", "2026-07", "2026-08", "2026-09"]
    for period in earlier:
        count(store, 10, period)
        rate(ledger, period)
    for period, late in zip(earlier, (1, 2, 3, 4), strict=True):
        count(store, late, period)

    october = rate(ledger, "2026-10")

    assert october.adjusted_periods == {"2026-07": 2, "2026-08": 3, "2026-09": 4}
    assert [(line.period, line.amount) for line in october.statement.lines] == [
        ("2026-07", 200),
        ("2026-08", 300),
        ("2026-09", 400),
    ]  # oldest first
    assert [billed(store, period) for period in earlier] == [10, 12, 13, 14]  # June's credit is left unbilled


def test_a_period_without_late_usage_does_not_end_the_search(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    for period in ("2026-07", "2026-08", "2026-09"):
        count(store, 10, period)
        rate(ledger, period)
    count(store, 5, "2026-09")  # July and August: nothing late

    october = rate(ledger, "2026-10")

    assert october.adjusted_periods == {"2026-09": 5}
    assert october.total == 500


def test_late_usage_in_another_currency_is_carried_and_the_next_period_still_billed(
    store: TollgateStore, ledger: DynamoLedger, caplog: pytest.LogCaptureFixture
) -> None:
    switch(store, YEN, "2026-08")
    count(store, 10, "2026-08")
    rate(ledger, "2026-08")  # billed in yen
    switch(store, DOLLAR, "2026-09")
    count(store, 10, "2026-09")
    rate(ledger, "2026-09")
    count(store, 7, "2026-08")
    count(store, 2, "2026-09")

    with caplog.at_level(logging.WARNING):
        october = rate(ledger, "2026-10")

    assert october.adjusted_periods == {"2026-08": 7, "2026-09": 2}
    assert [(line.period, line.amount) for line in october.statement.lines] == [("2026-09", 200)]
    (waiting,) = october.waiting  # August's 7 yen, priced on its plan, wait for an invoice in yen
    assert (waiting.currency, [(line.period, line.amount) for line in waiting.lines]) == (
        "jpy",
        [("2026-08", 7)],
    )
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "late usage of acme 2026-08 (7 credits, jpy) cannot go on a usd invoice: carried until one in jpy"
    ]
    assert billed(store, "2026-08") == 17  # taken over once: no later close finds them late again


def test_a_period_with_nothing_late_is_not_billed_or_reported(
    store: TollgateStore, ledger: DynamoLedger, caplog: pytest.LogCaptureFixture
) -> None:
    count(store, 10, "2026-10")
    rate(ledger, "2026-10")
    switch(store, YEN, "2026-11")

    with caplog.at_level(logging.WARNING):
        november = rate(ledger, "2026-11")

    assert (november.statement.lines, november.adjusted_periods) == ((), {})
    assert "cannot go on" not in caplog.text  # no late usage: nothing for a person to look at
    assert billed(store, "2026-10") == 10
