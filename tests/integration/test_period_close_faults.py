"""Crashes and faults at every step of the close, then a re-run: exactly one invoice, with the right total.

Two kinds of trouble:

* Stripe faults (the double's ``faults``) on each write: a 500 before anything is applied, a response lost
  after the write was applied, a timeout. The close fails, records the failure, and the re-run completes.
* The process dying between a Stripe write and the DynamoDB write that records it (``ProcessDied`` is a
  ``BaseException``, like a Lambda timeout: nothing after it runs, not even the failure bookkeeping), with
  and without the idempotency keys still known to Stripe (they expire after 24 hours).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest

from tests.integration.test_period_close import (
    PERIOD,
    WRITES,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tollgate.billing.close.service import close_customer
from tollgate.billing.invoicing import InvoiceLine, StripeInvoice
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.errors import InvoiceConflictError, StripeCallError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

TOTAL = 51_852  # 1,234,567 credits at $0.00042
FAULTS = ("fail_before_write", "lose_response_after_write", "timeout")
# seconds; a timeout fault holds the request longer than this. Not less: on a busy CI machine an ordinary
# request of the re-run (a first call, a cold import) once took more than half a second and timed out too.
CLIENT_TIMEOUT = 2.0
TIMEOUT_FAULT_DELAY = 3.0


class ProcessDied(BaseException):
    """The Lambda was killed here (timeout, out of memory): no ``except Exception`` runs."""


class CrashingLedger:
    """The real ledger, except that ``method`` kills the process instead of writing, ``times`` times."""

    def __init__(self, inner: Any, method: str, times: int = 1) -> None:
        self._inner, self._method, self._times = inner, method, times

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method:
            return target

        def crash(*args: Any, **kwargs: Any) -> Any:
            if self._times > 0:
                self._times -= 1
                raise ProcessDied(f"killed instead of {name}")
            return target(*args, **kwargs)

        return crash


class CrashingGateway:
    """The real Stripe gateway, except that the process dies right after ``method`` succeeded."""

    def __init__(self, inner: Any, method: str, *, before: bool = False) -> None:
        self._inner, self._method, self._before = inner, method, before

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)
        if name != self._method:
            return target

        def crash(*args: Any, **kwargs: Any) -> Any:
            if self._before:
                raise ProcessDied(f"killed before {name}")
            target(*args, **kwargs)
            raise ProcessDied(f"killed after {name}")

        return crash


def expire_idempotency_keys(double: StripeDouble) -> None:
    """What 24 hours do to Stripe's idempotency keys (the double keeps them for ever otherwise)."""
    stored = getattr(double, "_idempotency", None)
    assert isinstance(stored, dict), "the Stripe double's idempotency store moved; update this helper"
    stored.clear()


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811 - the fixture above
    world = make_world(store, running_double, timeout=CLIENT_TIMEOUT)
    world.customer(credits=1_234_567)
    return world


def arm(double: StripeDouble, kind: str, operation: str) -> None:
    if kind == "timeout":
        double.faults.timeout(operation, delay=TIMEOUT_FAULT_DELAY)
    else:
        getattr(double.faults, kind)(operation)


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize("kind", FAULTS)
def test_a_stripe_fault_on_any_write_then_a_rerun_bills_exactly_once(
    world: World, kind: str, operation: str
) -> None:
    arm(world.double, kind, operation)

    with pytest.raises(StripeCallError, match=operation):
        world.close()

    failed = world.record()
    assert failed.attempts == 1
    assert operation in str(failed.last_error)
    record = world.close()
    world.assert_billed_once(record, TOTAL)
    assert (record.attempts, record.last_error) == (1, None)
    applied = kind == "lose_response_after_write"  # the faulted write happened: the re-run must not redo it
    expected = Counter(WRITES) + Counter({operation: 0 if applied else 1})
    if operation == "invoices.create":
        expected["invoices.search"] = 1  # looked for by its metadata first (found when the write applied)
    if operation != "invoices.create":
        expected["invoices.retrieve"] = 1  # the re-run looks at the invoice before touching it
    assert world.stripe_operations() == expected


CRASH_POINTS = {
    # where the process dies: (ledger method that never writes, gateway method after whose success it dies)
    "after-rating-before-any-stripe-call": (None, "create_invoice-before"),
    "after-create-before-saving-the-invoice-id": ("mark_invoice_created", None),
    "after-add-lines": (None, "add_lines"),
    "after-finalize-before-saving-it": ("mark_finalized", None),
}


@pytest.mark.parametrize("keys_expired", [False, True], ids=["keys-kept", "keys-expired"])
@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_between_a_stripe_write_and_its_record_never_bills_twice(
    world: World, point: str, keys_expired: bool
) -> None:
    ledger_method, gateway_method = CRASH_POINTS[point]
    ledger = CrashingLedger(world.ledger, ledger_method) if ledger_method else world.ledger
    gateway = world.gateway
    if gateway_method:
        method, _, when = gateway_method.partition("-")
        gateway = CrashingGateway(world.gateway, method, before=when == "before")

    with pytest.raises(ProcessDied):
        world.close(ledger=ledger, gateway=gateway)
    if keys_expired:
        expire_idempotency_keys(world.double)

    record = world.close()
    world.assert_billed_once(record, TOTAL)
    operations = world.stripe_operations()
    assert [operations[write] for write in WRITES] == [1, 1, 1]  # each write made exactly once


def test_search_lag_after_a_crash_is_covered_by_the_idempotency_key(world: World) -> None:
    world.double.search_lag = 3_600.0  # Stripe's search index can be behind (up to an hour in outages)
    try:
        with pytest.raises(ProcessDied):
            world.close(ledger=CrashingLedger(world.ledger, "mark_invoice_created"))

        record = world.close()
    finally:
        world.double.search_lag = 0.0

    world.assert_billed_once(record, TOTAL)
    assert len(world.double.calls_to("invoices.create")) == 2  # the second one was replayed by Stripe
    assert len(world.double.invoices) == 1


def test_when_search_fails_the_customers_invoices_are_listed(world: World) -> None:
    with pytest.raises(ProcessDied):
        world.close(ledger=CrashingLedger(world.ledger, "mark_invoice_created"))
    expire_idempotency_keys(world.double)
    world.double.faults.fail_before_write("invoices.search")

    record = world.close()

    world.assert_billed_once(record, TOTAL)
    assert world.stripe_operations()["invoices.list"] == 1
    assert world.stripe_operations()["invoices.create"] == 1


def test_a_run_that_loses_the_race_to_a_concurrent_run_carries_on_from_its_result(world: World) -> None:
    class ConcurrentRunFirst:
        """Just before this run records its invoice, another run does the whole close."""

        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: Any) -> PeriodClose:
            close_customer(self._inner, world.gateway, record.customer_id, record.period, now=now)
            return self._inner.mark_invoice_created(record, invoice_id, now)

    record = world.close(ledger=ConcurrentRunFirst(world.ledger))

    world.assert_billed_once(record, TOTAL)
    assert world.stripe_operations()["invoices.finalize"] == 1


def test_two_invoices_for_one_period_in_stripe_stop_the_close(world: World) -> None:
    with pytest.raises(ProcessDied):
        world.close(gateway=CrashingGateway(world.gateway, "create_invoice", before=True))
    stripe_customer = world.store.get_customer("acme").stripe_customer_id
    assert stripe_customer is not None
    for _ in range(2):  # someone created two by hand
        world.double.client().v1.invoices.create(
            params={
                "customer": stripe_customer,
                "metadata": {"tollgate_customer_id": "acme", "tollgate_period": PERIOD},
            }
        )

    with pytest.raises(InvoiceConflictError, match="void all but one"):
        world.close()
    assert world.record().status is CloseStatus.RATED
    assert world.record().attempts == 1


def test_a_voided_invoice_is_not_replaced_on_its_own(world: World) -> None:
    with pytest.raises(ProcessDied):
        world.close(gateway=CrashingGateway(world.gateway, "create_invoice", before=True))
    stripe_customer = world.store.get_customer("acme").stripe_customer_id
    assert stripe_customer is not None
    client = world.double.client()  # an invoice for the period, billed and voided by hand
    invoice = client.v1.invoices.create(
        params={
            "customer": stripe_customer,
            "metadata": {"tollgate_customer_id": "acme", "tollgate_period": PERIOD},
        }
    )
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100, "description": "by hand"}]})
    client.v1.invoices.finalize_invoice(invoice.id)
    client.v1.invoices.void_invoice(invoice.id)

    with pytest.raises(InvoiceConflictError, match="voided"):
        world.close()
    assert len(world.double.invoices) == 1


class SkewedGateway:
    """Stripe charging other amounts than the statement's (here: one more minor unit per credit)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        skewed = [replace(line, unit_amount_decimal=line.unit_amount_decimal + 1) for line in lines]
        return self._inner.add_lines(invoice_id, skewed, idempotency_key=idempotency_key)


def test_a_stripe_total_that_differs_from_the_statement_is_flagged(world: World) -> None:
    record = world.close(gateway=SkewedGateway(world.gateway))

    assert record.status is CloseStatus.FINALIZED
    assert record.total_mismatch is True
    assert (record.total, record.amount_due) == (TOTAL, TOTAL + 1_234_567)


def test_an_unused_draft_from_elsewhere_does_not_confuse_the_close(world: World) -> None:
    stripe_customer = world.store.get_customer("acme").stripe_customer_id
    assert stripe_customer is not None
    world.double.client().v1.invoices.create(params={"customer": stripe_customer})  # no Tollgate metadata
    with pytest.raises(ProcessDied):
        world.close(ledger=CrashingLedger(world.ledger, "mark_invoice_created"))

    world.assert_billed_once(world.close(), TOTAL)
    assert len(world.double.invoices) == 2
