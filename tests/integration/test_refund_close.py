"""Refunds of failed requests and the close: before it they are never billed, after it they are credited on
the next invoice, once, and the reconciliation explains every step. DynamoDB Local + the Stripe double.

Requests are counted as the authorizer counts them (``DynamoUsageCounter.add``: totals, segment, route and
day tallies) and refunded as the refund function refunds them (``RefundLedger.apply``).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import boto3
import pytest

from tests.integration.test_period_close import (
    HYBRID,
    PERIOD,
    World,
    close_time,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tollgate.dal.counter_item import route_code
from tollgate.dal.refunds import RefundLedger
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.domain.rating import LineKind
from tollgate.domain.refunds import Refund
from tollgate.ledger.queries import CustomerLedger
from tollgate.ledger.reconcile import customer_facts
from tollgate.ledger.report import Between, Reason, Row, reconcile_customer
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811 - the fixture above
    return make_world(store, running_double)


ROUTE = "POST /v1/generate"
CENTS_PER_100K = 4_200  # PAYG: 0.00042 USD a credit


def serve(world: World, credits: int, period: str = PERIOD, day: int = 20, customer_id: str = "acme") -> None:
    """One request of ``credits`` counted as the authorizer counts it."""
    counter = DynamoUsageCounter(boto3.client("dynamodb"), world.store.table_name)
    counter.add(customer_id, period, 0, ROUTE, credits, None, 1, day=day)


def refund(
    world: World,
    request_id: str,
    credits: int,
    period: str = PERIOD,
    day: int = 20,
    at: datetime | None = None,
) -> bool:
    failed = Refund(
        request_id=request_id,
        customer_id="acme",
        period=period,
        day=day,
        route_code=route_code(ROUTE),
        segment=1,
        shard=0,
        credits=credits,
        status=503,
    )
    return RefundLedger(world.store).apply(failed, at=at or close_time(period))


def test_a_request_refunded_before_the_close_is_never_billed(world: World) -> None:
    world.customer()
    for _ in range(9):
        serve(world, 100_000)
    serve(world, 100_000)  # this one failed with a 503
    assert refund(world, "req-failed", 100_000)

    october = world.close()

    assert october.billed_credits == 900_000
    world.assert_billed_once(october, 9 * CENTS_PER_100K)


def test_a_refund_after_the_close_is_credited_on_the_next_invoice_once(world: World) -> None:
    world.customer()
    for _ in range(10):
        serve(world, 100_000)
    october = world.close()
    world.assert_billed_once(october, 10 * CENTS_PER_100K)
    assert refund(world, "req-late", 100_000, at=datetime(2026, 11, 1, 6, 3, tzinfo=UTC))  # after the close
    assert not refund(world, "req-late", 100_000)  # the ledger object delivered again
    serve(world, 300_000, period="2026-11")

    november = world.close(period="2026-11")

    usage, credit = november.statement.lines
    assert (usage.kind, usage.period, usage.amount) == (LineKind.USAGE, "2026-11", 3 * CENTS_PER_100K)
    assert (credit.kind, credit.period, credit.amount) == (LineKind.ADJUSTMENT, PERIOD, -CENTS_PER_100K)
    assert credit.description.startswith(f"Refund for {PERIOD}: 100,000 credits of failed requests")
    assert november.adjusted_periods == {PERIOD: -100_000}
    world.assert_billed_once(november, 2 * CENTS_PER_100K)
    assert world.record(period=PERIOD).billed_credits == 900_000  # lowered, in the transaction
    assert world.record(period=PERIOD).statement == october.statement  # a statement never changes

    assert world.close(period="2026-11") == november  # re-run: nothing credited again
    december = world.close(period="2026-12")
    assert december.status is CloseStatus.NO_CHARGE
    assert december.adjusted_periods == {}
    assert len(world.double.invoices) == 2


def test_a_refund_larger_than_the_next_periods_usage_is_a_credit_to_the_customer(world: World) -> None:
    world.customer()
    for _ in range(5):
        serve(world, 100_000)
    world.close()
    for n in range(3):
        assert refund(world, f"req-{n}", 100_000)

    november = world.close(period="2026-11")  # no November usage at all

    assert [line.amount for line in november.statement.lines] == [-3 * CENTS_PER_100K]
    (invoice,) = world.invoices(period="2026-11")
    assert invoice["total"] == -3 * CENTS_PER_100K  # Stripe credits it to the customer's balance
    assert world.record(period=PERIOD).billed_credits == 200_000


def test_refunded_included_credits_cost_nothing_and_still_lower_what_was_billed(world: World) -> None:
    world.customer(plan=HYBRID)  # 100,000 credits included, then 0.0005 USD a credit
    serve(world, 60_000)
    serve(world, 70_000)
    october = world.close()
    assert october.total == 4_900 + 30_000 * 5 // 100
    assert refund(world, "req-big", 70_000)  # 60,000 left: 30,000 of the refund had been billed

    november = world.close(period="2026-11")

    credits = [line for line in november.statement.lines if line.period == PERIOD]
    assert [line.amount for line in credits] == [-(30_000 * 5 // 100)]  # only what was above the included
    assert world.record(period=PERIOD).billed_credits == 60_000


def test_the_reconciliation_explains_a_refund_before_and_after_the_next_close(world: World) -> None:
    customer = world.customer()
    for _ in range(4):
        serve(world, 100_000)
    world.close()
    assert refund(world, "req-x", 100_000)
    ledger = CustomerLedger(
        "acme", requests=4, metered_requests=4, metered_credits=400_000, failed_credits=100_000
    )

    def row_at(now: datetime, found: CustomerLedger = ledger) -> Row:
        facts = replace(customer_facts(world.store, customer, PERIOD), ledger=found)
        return reconcile_customer(PERIOD, facts, now=now)

    pending = row_at(datetime(2026, 11, 10, tzinfo=UTC))
    assert not pending.flagged
    assert {(d.between, d.reason, d.credits) for d in pending.differences} == {
        (Between.COUNTERS_LEDGER, Reason.REFUNDED, -100_000),
        (Between.COUNTERS_INVOICED, Reason.REFUND_PENDING, -100_000),
    }
    assert pending.refunded == 100_000

    world.close(period="2026-11")
    credited = row_at(datetime(2026, 12, 10, tzinfo=UTC))
    assert not credited.flagged
    assert [(d.reason, d.credits) for d in credited.differences] == [(Reason.REFUNDED, -100_000)]
    assert (credited.counters, credited.ledger, credited.invoiced) == (300_000, 400_000, 300_000)

    unbacked = CustomerLedger("acme", requests=4, metered_requests=4, metered_credits=400_000)
    forged = row_at(datetime(2026, 12, 10, tzinfo=UTC), unbacked)
    assert forged.flagged  # a refund with no failed request behind it
    assert [(d.reason, d.credits) for d in forged.differences] == [
        (Reason.REFUNDED_WITHOUT_FAILURE, -100_000)
    ]
