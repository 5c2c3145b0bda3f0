"""Late usage that costs nothing (it falls within the period's included credits): billed, with no line.

Stripe would show a line of 0.00 for it; the credits are still recorded as billed, so no later close looks at
them again, and the close that found them says so in ``adjusted_periods``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import get_close
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.rating import LineKind

pytestmark = pytest.mark.dynamodb_local

HYBRID = make_plan(
    id="hybrid", name="Hybrid", base_fee=Decimal("10"), included_credits=1_000, price_per_credit=Decimal("1")
)
LATER = datetime(2027, 6, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def ledger(store: TollgateStore) -> DynamoLedger:
    store.put_plan(HYBRID)
    store.put_customer(make_customer(HYBRID, stripe_customer_id="cus_acme"))
    return DynamoLedger(store)


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def rate(ledger: DynamoLedger, period: str) -> PeriodClose:
    return steps.rated_record(steps.CloseContext(ledger, None, "acme", period, LATER)).record  # type: ignore[arg-type]


def billed(store: TollgateStore, period: str) -> int:
    record = get_close(store.table, "acme", period)
    assert record is not None
    return record.billed_credits


def test_late_credits_within_the_included_ones_are_billed_without_a_zero_line(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    count(store, 500, "2026-10")
    assert rate(ledger, "2026-10").total == 1_000  # the base fee; 500 of 1,000 credits included
    count(store, 300, "2026-10")  # late, still within October's included credits

    november = rate(ledger, "2026-11")

    assert [line.kind for line in november.statement.lines] == [LineKind.BASE_FEE]
    assert november.total == 1_000
    assert november.adjusted_periods == {"2026-10": 300}
    assert billed(store, "2026-10") == 800


def test_late_credits_past_the_included_ones_are_billed_for_the_part_that_costs(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    count(store, 900, "2026-10")
    rate(ledger, "2026-10")
    count(store, 150, "2026-10")  # 100 still included, 50 at 1 USD

    november = rate(ledger, "2026-11")

    (adjustment,) = [line for line in november.statement.lines if line.kind is LineKind.ADJUSTMENT]
    assert (adjustment.period, adjustment.amount) == ("2026-10", 5_000)
    assert (november.status, billed(store, "2026-10")) == (CloseStatus.RATED, 1_050)
