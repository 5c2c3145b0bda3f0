"""The rating race: two runs close the same customer at once, and the loser must bill what the winner stored.

A run rates, then stores its record with a conditional write. Between the two, another run may have:

* stored the same period's record first: the write raises ``AlreadyExistsError``;
* billed the same late usage of an earlier period first (raising that record's ``billed_credits``): the
  write raises ``ConflictError``.

Either way the loser must read again and go on with the *stored* record (its statement is the one that is
invoiced, never changed), and late usage must end up on exactly one invoice. The competitor here is the real
close, run on the real ledger (moto) at the moment of the loser's write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer, run_close
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import get_close
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.rating import LineKind
from tollgate.errors import CloseError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # conditional writes and transactions as DynamoDB does them

OCTOBER, NOVEMBER, DECEMBER = "2026-10", "2026-11", "2026-12"
PLAN = make_plan()  # 0.042 cents per credit
EARLY = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
LATER = datetime(2028, 1, 1, 6, 0, tzinfo=UTC)


class RacingLedger:
    """The real ledger, except that ``save_new_close`` first lets ``competitor`` run (the first ``times``)."""

    def __init__(self, inner: DynamoLedger, competitor: Callable[[], Any], times: int = 1) -> None:
        self._inner, self._competitor, self._times = inner, competitor, times
        self.saves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_new_close(
        self, record: PeriodClose, raised: dict[str, tuple[int, int]], threshold_invoices: int = 0
    ) -> None:
        self.saves += 1
        if self._times > 0:
            self._times -= 1
            self._competitor()
        self._inner.save_new_close(record, raised, threshold_invoices)


@pytest.fixture(scope="module")
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as running:
        yield running


@pytest.fixture
def gateway(double: StripeDouble) -> StripeClientInvoicing:
    double.reset()
    return StripeClientInvoicing(double.client())


@pytest.fixture
def ledger(store: TollgateStore) -> DynamoLedger:
    store.put_plan(PLAN)
    return DynamoLedger(store)


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def add_customer(store: TollgateStore, double: StripeDouble) -> None:
    stripe_customer = double.client().v1.customers.create(
        params={"name": "acme", "invoice_prefix": "ACMERACE"}
    )
    store.put_customer(make_customer(PLAN, stripe_customer_id=stripe_customer.id))


def context(ledger: Any, gateway: Any, period: str, now: datetime) -> steps.CloseContext:
    return steps.CloseContext(ledger, gateway, "acme", period, now)


def adjustments_for(store: TollgateStore, period: str, *among: str) -> list[int]:
    """The amounts of every adjustment line, on the records of ``among``, that bills ``period``."""
    found = []
    for other in among:
        record = get_close(store.table, "acme", other)
        assert record is not None
        found += [
            line.amount
            for line in record.statement.lines
            if line.kind is LineKind.ADJUSTMENT and line.period == period
        ]
    return found


def test_losing_to_a_run_that_stored_the_period_first_goes_on_with_the_stored_record(
    store: TollgateStore, ledger: DynamoLedger, gateway: StripeClientInvoicing, double: StripeDouble
) -> None:
    add_customer(store, double)
    count(store, 1_000_000, OCTOBER)  # what this run rates: 420.00 USD

    def competitor() -> None:  # counts 234,567 credits that landed meanwhile, rates 1,234,567 and stores it
        count(store, 234_567, OCTOBER)
        steps.rated_record(context(ledger, gateway, OCTOBER, EARLY.replace(minute=1)))

    racing = RacingLedger(ledger, competitor)

    rated = steps.rated_record(context(racing, gateway, OCTOBER, EARLY))  # AlreadyExistsError inside

    stored = get_close(store.table, "acme", OCTOBER)
    assert stored is not None
    assert rated.record == stored
    assert rated.stored_now is False  # so the invoice step searches Stripe first
    assert (stored.billed_credits, stored.total) == (1_234_567, 51_852)
    assert racing.saves == 1


def test_the_loser_invoices_what_the_winner_stored(
    store: TollgateStore, ledger: DynamoLedger, gateway: StripeClientInvoicing, double: StripeDouble
) -> None:
    add_customer(store, double)
    count(store, 1_000_000, OCTOBER)

    def competitor() -> None:
        count(store, 234_567, OCTOBER)
        steps.rated_record(context(ledger, gateway, OCTOBER, EARLY))

    outcome = run_close(RacingLedger(ledger, competitor), gateway, "acme", OCTOBER, now=EARLY)

    assert outcome.rated_now is False  # the winner rated; this run only invoiced
    assert outcome.finalized_now is True
    record = outcome.record
    assert (record.status, record.billed_credits, record.total) == (CloseStatus.FINALIZED, 1_234_567, 51_852)
    (invoice,) = double.invoices.values()
    assert invoice["total"] == 51_852  # the stored statement, not the 42,000 this run had rated
    assert invoice["id"] == record.stripe_invoice_id
    assert close_customer(ledger, gateway, "acme", OCTOBER, now=EARLY) == record


def test_losing_the_late_usage_to_another_close_bills_it_once(
    store: TollgateStore, ledger: DynamoLedger, gateway: StripeClientInvoicing, double: StripeDouble
) -> None:
    """October billed 1,000 credits; 50,000 more arrive late. November's close rates them as an adjustment,
    but a (backfilled) December close bills them first: November's write raises ``ConflictError``."""
    add_customer(store, double)
    count(store, 1_000, OCTOBER)
    october = close_customer(ledger, gateway, "acme", OCTOBER, now=EARLY)
    assert october.billed_credits == 1_000
    count(store, 50_000, OCTOBER)  # late
    count(store, 10_000, NOVEMBER)

    def competitor() -> None:
        steps.rated_record(context(ledger, gateway, DECEMBER, LATER))

    racing = RacingLedger(ledger, competitor)

    rated = steps.rated_record(context(racing, gateway, NOVEMBER, LATER))

    stored = get_close(store.table, "acme", NOVEMBER)
    assert stored is not None
    assert rated.record == stored
    assert rated.stored_now is True  # rated again after the conflict, and stored by this run
    assert racing.saves == 2
    assert [line.kind for line in stored.statement.lines] == [LineKind.USAGE]  # no adjustment: billed already
    assert (stored.total, stored.adjusted_periods) == (420, {})
    assert adjustments_for(store, OCTOBER, NOVEMBER, DECEMBER) == [2_100]  # 50,000 x 0.042 cents, once
    october_now = get_close(store.table, "acme", OCTOBER)
    assert october_now is not None
    assert october_now.billed_credits == 51_000


def test_a_run_that_keeps_losing_gives_up_without_storing_anything(
    store: TollgateStore, ledger: DynamoLedger, gateway: StripeClientInvoicing, double: StripeDouble
) -> None:
    add_customer(store, double)
    count(store, 1_000, OCTOBER)
    close_customer(ledger, gateway, "acme", OCTOBER, now=EARLY)
    count(store, 50_000, OCTOBER)

    def competitor() -> None:  # each time, more late usage is counted and billed by another close
        count(store, 1, OCTOBER)
        store.table.update_item(
            Key=tk.close_key("acme", OCTOBER),
            UpdateExpression="SET billed_credits = billed_credits + :one",
            ExpressionAttributeValues={":one": 1},
        )

    racing = RacingLedger(ledger, competitor, times=steps.MAX_RATING_ATTEMPTS)

    with pytest.raises(CloseError, match="kept losing races"):
        steps.rated_record(context(racing, gateway, NOVEMBER, LATER))

    assert racing.saves == steps.MAX_RATING_ATTEMPTS == 3
    assert get_close(store.table, "acme", NOVEMBER) is None
