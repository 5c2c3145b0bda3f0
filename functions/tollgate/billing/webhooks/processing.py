"""What a verified Stripe event does: one DynamoDB transaction per event, applied exactly once.

The transaction holds, in this order:

0. the event marker ``WEBHOOK#{event id}`` / ``EVENT``, put only if absent, with a TTL (``expires_at``,
   30 days: longer than Stripe keeps redelivering, which is 3 days);
1. the close record's ``invoice_status``, conditional on the status it was read with and on the invoice id;
2. the dunning effects (``tollgate.billing.dunning.rules``): the failure record, and a status change plus
its audit item.

A redelivered event fails item 0's condition and changes nothing. Any other failed condition means the state
moved between our read and our write (a concurrent event); the event is then decided again from fresh reads.

An event for an invoice whose close has not recorded its finalization yet is answered 503 (Stripe delivers
it again later): the close writes ``invoice_status`` itself when it records the finalization, and would
overwrite what the event set.

Invoice status moves only forward (Stripe delivers events in no guaranteed order): ``open`` -> ``paid`` /
``void`` / ``uncollectible``, ``uncollectible`` -> ``paid`` / ``void``. A late ``invoice.finalized`` after
``invoice.paid`` is recorded as seen and leaves ``paid`` alone. A ``invoice.payment_failed`` for an invoice
the close already knows as paid or void is ignored for the same reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tollgate.billing.dunning.rules import (
    InvoiceRef,
    TransactionConflictError,
    payment_failed_items,
    payment_settled_items,
    run_transaction,
)
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import CloseStatus, get_close
from tollgate.dal.store import TollgateStore
from tollgate.errors import NotFoundError

LOG = logging.getLogger(__name__)

EVENT_RETENTION = timedelta(days=30)
INVOICE_STATUS_AFTER: dict[str, str | None] = {
    "invoice.finalized": "open",
    "invoice.paid": "paid",
    "invoice.payment_failed": None,  # the invoice stays open; only dunning reacts
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "uncollectible",
}
HANDLED_TYPES = frozenset(INVOICE_STATUS_AFTER)
# invoice_status -> the statuses it may move to (None: not known yet)
_FORWARD: dict[str | None, frozenset[str]] = {
    None: frozenset({"open", "paid", "void", "uncollectible"}),
    "draft": frozenset({"open", "paid", "void", "uncollectible"}),
    "open": frozenset({"paid", "void", "uncollectible"}),
    "uncollectible": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}


class RetryLaterError(Exception):
    """The event cannot be applied yet; answering non-2xx makes Stripe deliver it again later."""


@dataclass(frozen=True)
class Outcome:
    result: str  # "applied", "duplicate" or "ignored"
    detail: str = ""


def may_move(current: str | None, target: str) -> bool:
    return target in _FORWARD.get(current, frozenset())


def marker_item(table: Any, event: dict[str, Any], *, now: datetime) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table.name,
            "Item": {
                **tk.webhook_event_key(str(event["id"])),
                "kind": "webhook_event",
                "event_type": str(event["type"]),
                "received_at": now.isoformat(),
                tk.TTL_ATTRIBUTE: int((now + EVENT_RETENTION).timestamp()),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def _invoice_ref(invoice: dict[str, Any]) -> InvoiceRef | None:
    metadata = invoice.get("metadata") or {}
    customer_id = metadata.get("tollgate_customer_id")
    if not customer_id or not invoice.get("id"):
        return None
    return InvoiceRef(
        invoice_id=str(invoice["id"]),
        customer_id=str(customer_id),
        period=metadata.get("tollgate_period"),
        hosted_invoice_url=invoice.get("hosted_invoice_url"),
    )


def _close_items(table: Any, invoice: InvoiceRef, target: str) -> list[dict[str, Any]]:
    if invoice.period is None:
        return []
    close = get_close(table, invoice.customer_id, invoice.period)
    if close is None or close.status is CloseStatus.NO_CHARGE:
        LOG.warning("no invoiced close record for %s %s", invoice.customer_id, invoice.period)
        return []
    if close.stripe_invoice_id not in (None, invoice.invoice_id):
        LOG.warning("invoice %s is not the close's invoice %s", invoice.invoice_id, close.stripe_invoice_id)
        return []
    if close.status is not CloseStatus.FINALIZED:
        # The close has not recorded this invoice's finalization yet, and will write invoice_status when it
        # does: applying the event now could be overwritten. Stripe delivers it again later.
        raise RetryLaterError(
            f"the close of {invoice.customer_id} {invoice.period} has not recorded its finalized invoice yet"
        )
    if not may_move(close.invoice_status, target):
        return []  # the same status again, or a stale event delivered late
    was = close.invoice_status
    condition = "stripe_invoice_id = :invoice AND " + (
        "invoice_status = :was"
        if was is not None
        else "(attribute_not_exists(invoice_status) OR attribute_type(invoice_status, :null))"
    )
    values: dict[str, Any] = {":status": target, ":invoice": invoice.invoice_id}
    values.update({":was": was} if was is not None else {":null": "NULL"})
    return [
        {
            "Update": {
                "TableName": table.name,
                "Key": tk.close_key(invoice.customer_id, invoice.period),
                "UpdateExpression": "SET invoice_status = :status",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": values,
            }
        }
    ]


def _settled_already(table: Any, invoice: InvoiceRef) -> bool:
    if invoice.period is None:
        return False
    close = get_close(table, invoice.customer_id, invoice.period)
    return (
        close is not None
        and close.stripe_invoice_id == invoice.invoice_id
        and close.invoice_status in ("paid", "void")
    )


def _dunning_items(
    store: TollgateStore,
    event: dict[str, Any],
    invoice: InvoiceRef,
    *,
    at: datetime,
    now: datetime,
    grace: timedelta,
) -> list[dict[str, Any]]:
    kind = str(event["type"])
    if kind == "invoice.payment_failed":
        if _settled_already(store.table, invoice):
            return []  # paid or voided before this (older) failure event arrived
        return payment_failed_items(store.table, invoice, at=at)
    if kind in ("invoice.paid", "invoice.voided"):
        customer = store.get_customer(invoice.customer_id)
        return payment_settled_items(
            store.table,
            customer,
            invoice,
            resolution=kind.removeprefix("invoice."),
            at=at,
            now=now,
            grace=grace,
            event_id=str(event["id"]),
            cause=kind,
        )
    return []


def process_event(
    store: TollgateStore, event: dict[str, Any], *, now: datetime, grace: timedelta, attempts: int = 5
) -> Outcome:
    """Apply one verified Stripe event (already parsed JSON). Raises RetryLaterError when it cannot yet."""
    kind = str(event.get("type", ""))
    if kind not in HANDLED_TYPES:
        return Outcome("ignored", f"{kind or 'untyped'} events are not used by Tollgate")
    invoice = _invoice_ref(((event.get("data") or {}).get("object")) or {})
    if invoice is None:
        return Outcome("ignored", "not a Tollgate invoice (no tollgate_customer_id in its metadata)")
    at = datetime.fromtimestamp(int(event.get("created") or now.timestamp()), tz=UTC)
    table = store.table
    for _ in range(attempts):
        if table.get_item(Key=tk.webhook_event_key(str(event["id"])), ConsistentRead=True).get("Item"):
            return Outcome("duplicate", "already processed")
        target = INVOICE_STATUS_AFTER[kind]
        try:
            effects = [
                *(_close_items(table, invoice, target) if target else []),
                *_dunning_items(store, event, invoice, at=at, now=now, grace=grace),
            ]
        except NotFoundError:
            return Outcome("ignored", f"customer {invoice.customer_id!r} is not known here")
        try:
            run_transaction(table, [marker_item(table, event, now=now), *effects])
        except TransactionConflictError as conflict:
            if 0 in conflict.indexes:
                return Outcome("duplicate", "already processed")
            continue  # something we read changed: decide again
        return Outcome("applied", f"{kind}: {len(effects)} change(s)")
    raise RetryLaterError("the records kept changing while this event was applied")
