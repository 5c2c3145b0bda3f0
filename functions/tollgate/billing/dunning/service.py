"""Dunning's operations: what an invoice event does to a customer, the daily sweep, a manual waiver.

Each reads the facts (``tollgate.dal.dunning``), lets the rules decide (``tollgate.domain.dunning``) and
writes the effects in one transaction, conditional on the facts read; a transaction that lost a race is
decided again from fresh reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tollgate.dal import dunning as failures_table
from tollgate.dal.store import TollgateStore
from tollgate.domain.dunning import (
    Effect,
    InvoiceRef,
    PaymentFailure,
    on_manual_resume,
    on_payment_failed,
    on_payment_settled,
    on_sweep,
)
from tollgate.domain.models import Customer
from tollgate.errors import NotFoundError, TransactionConflictError


def payment_failed_effects(store: TollgateStore, invoice: InvoiceRef, *, at: datetime) -> list[Effect]:
    """Effects of ``invoice.payment_failed``."""
    existing = failures_table.get_failure(store.table, invoice.customer_id, invoice.invoice_id)
    return on_payment_failed(existing, invoice, at=at)


def payment_settled_effects(
    store: TollgateStore,
    customer: Customer,
    invoice: InvoiceRef,
    *,
    resolution: str,
    at: datetime,
    now: datetime,
    grace: timedelta,
    event_id: str,
    cause: str,
) -> list[Effect]:
    """Effects of ``invoice.paid`` / ``invoice.voided``."""
    return on_payment_settled(
        customer,
        failures_table.list_failures(store.table, customer.id),
        invoice,
        resolution=resolution,
        at=at,
        now=now,
        grace=grace,
        event_id=event_id,
        cause=cause,
    )


@dataclass(frozen=True)
class SweepResult:
    suspended: tuple[str, ...]  # customers suspended by this sweep
    skipped: tuple[str, ...]  # customers with overdue failures left as they were (already suspended)


def sweep(store: TollgateStore, *, now: datetime, grace: timedelta, attempts: int = 3) -> SweepResult:
    """Suspend every active customer with an open failure past its grace period. Safe to run twice: a
    customer already suspended is skipped, and every write is conditional on the state it was decided from."""
    by_customer: dict[str, list[PaymentFailure]] = {}
    for failure in failures_table.overdue_failures(store.table, now=now, grace=grace):
        by_customer.setdefault(failure.customer_id, []).append(failure)
    suspended, skipped = [], []
    for customer_id in sorted(by_customer):
        if _suspend(store, customer_id, now=now, grace=grace, attempts=attempts):
            suspended.append(customer_id)
        else:
            skipped.append(customer_id)
    return SweepResult(tuple(suspended), tuple(skipped))


def _suspend(
    store: TollgateStore, customer_id: str, *, now: datetime, grace: timedelta, attempts: int
) -> bool:
    for _ in range(attempts):
        try:
            customer = store.get_customer(customer_id)
        except NotFoundError:
            return False
        current = failures_table.list_failures(store.table, customer_id)
        effects = on_sweep(customer, current, now=now, grace=grace)
        if not effects:
            return False  # not active any more, or paid meanwhile
        try:
            store.transact(failures_table.actions(store.table_name, effects))
        except TransactionConflictError:
            continue  # the customer or the failure changed between the read and the write: decide again
        return True
    return False


def waive_failures(store: TollgateStore, customer_id: str, *, now: datetime) -> int:
    """Waive every open failure of a customer (a manual resume); returns how many."""
    waived = 0
    for waiver in on_manual_resume(failures_table.list_failures(store.table, customer_id), now=now):
        try:
            store.transact(failures_table.actions(store.table_name, [waiver]))
        except TransactionConflictError:
            continue  # resolved meanwhile
        waived += 1
    return waived
