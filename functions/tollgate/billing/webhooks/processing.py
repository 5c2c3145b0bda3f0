"""What a verified Stripe event does: one DynamoDB transaction per event, applied exactly once.

The transaction holds, in this order:

0. the event marker (``tollgate.dal.webhooks``), put only if absent;
1. the close record's ``invoice_status``, conditional on the status it was read with and on the invoice id;
2. the dunning effects (``tollgate.billing.dunning.service``): the failure record, and a status change plus
   its audit item.

A redelivered event fails item 0's condition and changes nothing. Any other failed condition means the state
moved between our read and our write (a concurrent event); the event is then decided again from fresh reads.

An event for an invoice whose close has not recorded its finalization yet is answered 503 (Stripe delivers
it again later): the close writes ``invoice_status`` itself when it records the finalization, and would
overwrite what the event set.

A paid Checkout Session selling prepaid credits (``checkout.session.completed`` or
``checkout.session.async_payment_succeeded``) adds them instead (:func:`process_purchase`): the marker, the
top-up under the session's id and the balance's ``ADD`` in one transaction.

Invoice status moves only forward (``tollgate.domain.closes.invoice_status_may_move``): a late
``invoice.finalized`` after ``invoice.paid`` is recorded as seen and leaves ``paid`` alone. A
``invoice.payment_failed`` for an invoice the close already knows as paid or void is ignored for the same
reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from tollgate.billing.dunning.service import payment_failed_effects, payment_settled_effects
from tollgate.billing.invoicing import threshold_part
from tollgate.dal import dunning as failures_table
from tollgate.dal import webhooks as events_table
from tollgate.dal.closes import get_close, invoice_status_update
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import SETTLED, CloseStatus, invoice_status_may_move
from tollgate.domain.dunning import Effect, InvoiceRef
from tollgate.domain.prepaid import auto_top_up_payment, purchase_top_up
from tollgate.errors import NotFoundError, RetryLaterError, TransactionConflictError

LOG = logging.getLogger(__name__)

INVOICE_STATUS_AFTER: dict[str, str | None] = {
    "invoice.finalized": "open",
    "invoice.paid": "paid",
    "invoice.payment_failed": None,  # the invoice stays open; only dunning reacts
    "invoice.voided": "void",
    "invoice.marked_uncollectible": "uncollectible",
}
# A paid Checkout Session selling prepaid credits adds them (``tollgate.accounts.prepaid``): the session
# completes paid, or completes unpaid and is paid later (a delayed payment method).
PURCHASE_TYPES = frozenset({"checkout.session.completed", "checkout.session.async_payment_succeeded"})
TOP_UP_PAYMENT = "payment_intent.succeeded"  # an automatic top-up that needed time (or the customer)
HANDLED_TYPES = frozenset(INVOICE_STATUS_AFTER) | PURCHASE_TYPES | {TOP_UP_PAYMENT}


@dataclass(frozen=True)
class Outcome:
    result: str  # "applied", "duplicate" or "ignored"
    detail: str = ""


def invoice_ref(invoice: dict[str, Any]) -> InvoiceRef | None:
    metadata = invoice.get("metadata") or {}
    customer_id = metadata.get("tollgate_customer_id")
    if not customer_id or not invoice.get("id"):
        return None
    part = threshold_part(metadata)
    if part is None:
        return None
    return InvoiceRef(
        invoice_id=str(invoice["id"]),
        customer_id=str(customer_id),
        period=metadata.get("tollgate_period"),
        hosted_invoice_url=invoice.get("hosted_invoice_url"),
        part=part,
    )


def _close_actions(store: TollgateStore, invoice: InvoiceRef, target: str) -> list[dict[str, Any]]:
    if invoice.period is None:
        return []
    close = get_close(store.table, invoice.customer_id, invoice.period, invoice.part)
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
    if not invoice_status_may_move(close.invoice_status, target):
        return []  # the same status again, or a stale event delivered late
    return [invoice_status_update(store.table_name, close, invoice.invoice_id, target)]


def _settled_already(store: TollgateStore, invoice: InvoiceRef) -> bool:
    if invoice.period is None:
        return False
    close = get_close(store.table, invoice.customer_id, invoice.period, invoice.part)
    return (
        close is not None
        and close.stripe_invoice_id == invoice.invoice_id
        and close.invoice_status in SETTLED
    )


def _dunning_effects(
    store: TollgateStore,
    event: dict[str, Any],
    invoice: InvoiceRef,
    *,
    at: datetime,
    now: datetime,
    grace: timedelta,
) -> list[Effect]:
    kind = str(event["type"])
    if kind == "invoice.payment_failed":
        if _settled_already(store, invoice):
            return []  # paid or voided before this (older) failure event arrived
        return payment_failed_effects(store, invoice, at=at)
    if kind in ("invoice.paid", "invoice.voided"):
        customer = store.get_customer(invoice.customer_id)
        return payment_settled_effects(
            store,
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
    if kind in PURCHASE_TYPES or kind == TOP_UP_PAYMENT:
        return process_purchase(store, event, now=now)
    invoice = invoice_ref(((event.get("data") or {}).get("object")) or {})
    if invoice is None:
        return Outcome("ignored", "not a Tollgate invoice (no tollgate_customer_id in its metadata)")
    event_id = str(event["id"])
    at = datetime.fromtimestamp(int(event.get("created") or now.timestamp()), tz=UTC)
    for _ in range(attempts):
        if events_table.seen(store.table, event_id):
            return Outcome("duplicate", "already processed")
        target = INVOICE_STATUS_AFTER[kind]
        try:
            effects = [
                *(_close_actions(store, invoice, target) if target else []),
                *failures_table.actions(
                    store.table_name, _dunning_effects(store, event, invoice, at=at, now=now, grace=grace)
                ),
            ]
        except NotFoundError:
            return Outcome("ignored", f"customer {invoice.customer_id!r} is not known here")
        try:
            store.transact([events_table.marker_item(store.table_name, event_id, kind, now=now), *effects])
        except TransactionConflictError as conflict:
            if 0 in conflict.indexes:
                return Outcome("duplicate", "already processed")
            continue  # something we read changed: decide again
        return Outcome("applied", f"{kind}: {len(effects)} change(s)")
    raise RetryLaterError("the records kept changing while this event was applied")


def process_purchase(store: TollgateStore, event: dict[str, Any], *, now: datetime) -> Outcome:
    """Add the credits of a paid Checkout Session selling them, once: the event's marker and the top-up
    (conditional on the session's id being a new reference) go in one transaction with the balance's ``ADD``,
    so a redelivered event, or the other event of the same session, adds nothing."""
    session = (event.get("data") or {}).get("object") or {}
    at = datetime.fromtimestamp(int(event.get("created") or now.timestamp()), tz=UTC)
    intent = event.get("type") == TOP_UP_PAYMENT  # a succeeded PaymentIntent is paid by definition
    try:
        top_up = auto_top_up_payment(session, at) if intent else purchase_top_up(session, at)
    except (ValueError, ValidationError) as error:
        LOG.error("a paid purchase of credits cannot be read: %s", error)
        return Outcome("ignored", f"payment {session.get('id')} cannot be read: {error}")
    if top_up is None:
        return Outcome("ignored", "not a Tollgate credit purchase (no tollgate_purchase in its metadata)")
    if not intent and session.get("payment_status") != "paid":
        return Outcome("ignored", f"checkout session {top_up.reference} is not paid yet")
    try:
        store.get_customer(top_up.customer_id)
    except NotFoundError:
        LOG.error("credits paid by checkout session %s for an unknown customer", top_up.reference)
        return Outcome("ignored", f"customer {top_up.customer_id!r} is not known here")
    marker = events_table.marker_item(store.table_name, str(event["id"]), str(event["type"]), now=now)
    try:
        store.transact([marker, *store.top_up_actions(top_up)])
    except TransactionConflictError as conflict:
        if 0 in conflict.indexes:
            return Outcome("duplicate", "already processed")
        return Outcome("duplicate", f"the credits of {top_up.reference} were added already")
    return Outcome("applied", f"{event['type']}: {top_up.credits:,} credits added to {top_up.customer_id}")
