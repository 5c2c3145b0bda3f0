"""Dunning: what a failed payment does to a customer's access, and when.

Rules
-----
* ``invoice.payment_failed`` records the failure on the customer: one item per failing invoice
  (``pk CUSTOMER#{id}``, ``sk DUNNING#{invoice id}``) holding the time of the *first* failure, the latest
  hosted invoice URL and the number of failed attempts. Stripe's automatic retries fail again and again; the
  grace period still runs from the first failure. Access is unchanged.
* The daily sweep suspends an **active** customer whose oldest open failure is older than the grace period
  (``DUNNING_GRACE_DAYS``, default 7): status ``suspended``, reason ``payment_failed``, ``pay_url`` = the
  hosted invoice URL. The authorizer then denies with ``payment_required`` and that URL. A customer who is
  already suspended (by hand, say) is left alone.
* ``invoice.paid`` (or ``invoice.voided``: the provider cancelled the debt) resolves that invoice's failure at
  once. A customer suspended for ``payment_failed`` becomes active again, unless another invoice of theirs is
  also overdue, in which case they stay suspended and ``pay_url`` moves to that invoice. A customer suspended
  by hand (reason ``manual``) is never resumed by a payment. ``invoice.marked_uncollectible`` changes nothing:
  the invoice can still be paid at its URL.
* Resuming a customer by hand waives their open failures, so the next sweep does not suspend them again.

Every status change is written in one DynamoDB transaction together with its audit item (cause and event id)
and a condition on the state it was decided from, so a change that raced with another is retried, never
applied on stale facts. Failure records are only ever Put/Updated (resolved records keep a TTL), which is
what the webhook and sweeper functions' IAM policies allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore, item_fields, status_change_actions
from tollgate.domain.models import Customer, CustomerStatus
from tollgate.errors import NotFoundError

PAYMENT_FAILED = "payment_failed"  # status_reason set by the sweep; the only one a payment lifts
SWEEP_CAUSE = "dunning_sweep"
DEFAULT_GRACE_DAYS = 7
DUNNING_INDEX_PK = "DUNNING"
RESOLVED_RETENTION = timedelta(days=90)  # resolved failure records expire (TTL) after this


def grace_from_env() -> timedelta:
    raw = os.environ.get("DUNNING_GRACE_DAYS", str(DEFAULT_GRACE_DAYS)).strip()
    if not raw.isdigit():
        raise ValueError(f"DUNNING_GRACE_DAYS must be a whole number of days, not {raw!r}")
    return timedelta(days=int(raw))


class FailureState(StrEnum):
    OPEN = "open"  # unpaid: counts towards suspension
    RESOLVED = "resolved"  # paid or voided
    WAIVED = "waived"  # the provider resumed the customer by hand


class PaymentFailure(BaseModel):
    """One failing invoice of a customer."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    invoice_id: str
    period: str | None = None
    hosted_invoice_url: str | None = None
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int = 1
    state: FailureState = FailureState.OPEN
    suspended_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None

    def deadline(self, grace: timedelta) -> datetime:
        return self.first_failed_at + grace

    def overdue(self, now: datetime, grace: timedelta) -> bool:
        return self.state is FailureState.OPEN and self.deadline(grace) <= now


@dataclass(frozen=True)
class InvoiceRef:
    """What an invoice event tells us about the invoice (from its metadata and fields)."""

    invoice_id: str
    customer_id: str
    period: str | None
    hosted_invoice_url: str | None


def failure_key(customer_id: str, invoice_id: str) -> dict[str, str]:
    return {tk.PK: f"CUSTOMER#{customer_id}", tk.SK: f"DUNNING#{invoice_id}"}


def _stamp(moment: datetime) -> str:
    """Fixed-width UTC time for sort keys (string order = time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- reads -------------------------------------------------------------------------------------------------
def get_failure(table: Any, customer_id: str, invoice_id: str) -> PaymentFailure | None:
    item = table.get_item(Key=failure_key(customer_id, invoice_id), ConsistentRead=True).get("Item")
    return None if item is None else PaymentFailure.model_validate(item_fields(item))


def list_failures(table: Any, customer_id: str) -> list[PaymentFailure]:
    """All failure records of a customer (open, waived and recently resolved), oldest first."""
    items = table.query(
        KeyConditionExpression=Key(tk.PK).eq(f"CUSTOMER#{customer_id}") & Key(tk.SK).begins_with("DUNNING#"),
        ConsistentRead=True,
    )["Items"]
    failures = [PaymentFailure.model_validate(item_fields(item)) for item in items]
    return sorted(failures, key=lambda failure: failure.first_failed_at)


def overdue_failures(table: Any, *, now: datetime, grace: timedelta) -> list[PaymentFailure]:
    """Open failures whose grace has run out, over all customers, oldest first (``gsi1`` = ``DUNNING``)."""
    condition = Key(tk.GSI1_PK).eq(DUNNING_INDEX_PK) & Key(tk.GSI1_SK).lte(_stamp(now - grace) + "~")
    kwargs: dict[str, Any] = {"IndexName": tk.GSI1, "KeyConditionExpression": condition}
    found: list[PaymentFailure] = []
    while True:
        page = table.query(**kwargs)
        found.extend(PaymentFailure.model_validate(item_fields(item)) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [failure for failure in found if failure.overdue(now, grace)]


# -- transaction items -------------------------------------------------------------------------------------
class TransactionConflictError(Exception):
    """A condition in the transaction failed; ``indexes`` are the positions of the items whose did."""

    def __init__(self, indexes: Sequence[int]) -> None:
        super().__init__(f"conditional check failed for transaction items {list(indexes)}")
        self.indexes = tuple(indexes)


def run_transaction(table: Any, items: Sequence[dict[str, Any]]) -> None:
    """``TransactWriteItems`` on the table (items in the resource client's plain-value form)."""
    if not items:
        return
    try:
        table.meta.client.transact_write_items(TransactItems=list(items))
    except ClientError as error:
        reasons = error.response.get("CancellationReasons") or []
        failed = [i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]
        if error.response.get("Error", {}).get("Code") == "TransactionCanceledException" and failed:
            raise TransactionConflictError(failed) from error
        raise


def status_change_items(
    table: Any,
    customer: Customer,
    status: CustomerStatus,
    *,
    reason: str | None,
    pay_url: str | None,
    cause: str,
    at: datetime,
    event_id: str,
) -> list[dict[str, Any]]:
    """Move ``customer`` to ``status`` only if it is still in the status (and reason) it was read with, and
    record the change in the audit trail (``TollgateStore.status_change_actions``)."""
    return status_change_actions(
        table.name,
        customer.id,
        status,
        reason=reason,
        cause=cause,
        at=at,
        event_id=event_id,
        pay_url=pay_url,
        expected=customer,
    )


def record_failure_item(table: Any, invoice: InvoiceRef, *, at: datetime) -> dict[str, Any]:
    """Upsert the failure record: the first failure time is kept; a resolved or waived record stays so."""
    names = {"#state": "state"}
    values: dict[str, Any] = {
        ":customer": invoice.customer_id,
        ":invoice": invoice.invoice_id,
        ":period": invoice.period,
        ":url": invoice.hosted_invoice_url,
        ":at": at.isoformat(),
        ":one": 1,
        ":zero": 0,
        ":open": FailureState.OPEN.value,
        ":kind": "dunning",
        ":gpk": DUNNING_INDEX_PK,
        ":gsk": f"{_stamp(at)}#{invoice.customer_id}#{invoice.invoice_id}",
    }
    return {
        "Update": {
            "TableName": table.name,
            "Key": failure_key(invoice.customer_id, invoice.invoice_id),
            "UpdateExpression": (
                "SET kind = :kind, customer_id = :customer, invoice_id = :invoice, period = :period, "
                "hosted_invoice_url = :url, last_failed_at = :at, "
                "first_failed_at = if_not_exists(first_failed_at, :at), "
                "attempts = if_not_exists(attempts, :zero) + :one, #state = :open, "
                f"{tk.GSI1_PK} = :gpk, {tk.GSI1_SK} = if_not_exists({tk.GSI1_SK}, :gsk)"
            ),
            "ConditionExpression": "attribute_not_exists(pk) OR #state = :open",
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


def close_failure_item(
    table: Any, failure: PaymentFailure, state: FailureState, *, at: datetime, resolution: str | None
) -> dict[str, Any]:
    """Take a failure out of the sweep (resolved or waived); it expires ``RESOLVED_RETENTION`` later."""
    return {
        "Update": {
            "TableName": table.name,
            "Key": failure_key(failure.customer_id, failure.invoice_id),
            "UpdateExpression": (
                "SET #state = :state, resolved_at = :at, resolution = :resolution, "
                f"{tk.TTL_ATTRIBUTE} = :ttl REMOVE {tk.GSI1_PK}, {tk.GSI1_SK}"
            ),
            "ConditionExpression": "#state = :was",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":state": state.value,
                ":at": at.isoformat(),
                ":resolution": resolution,
                ":ttl": int((at + RESOLVED_RETENTION).timestamp()),
                ":was": failure.state.value,
            },
        }
    }


def mark_suspended_item(table: Any, failure: PaymentFailure, *, at: datetime) -> dict[str, Any]:
    """Note on the failure that it suspended the customer; fails if it was resolved meanwhile."""
    return {
        "Update": {
            "TableName": table.name,
            "Key": failure_key(failure.customer_id, failure.invoice_id),
            "UpdateExpression": "SET suspended_at = :at",
            "ConditionExpression": "#state = :open",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":at": at.isoformat(), ":open": FailureState.OPEN.value},
        }
    }


# -- decisions ---------------------------------------------------------------------------------------------
def payment_failed_items(table: Any, invoice: InvoiceRef, *, at: datetime) -> list[dict[str, Any]]:
    """Effects of ``invoice.payment_failed``: record (or refresh) the failure. Nothing if it was resolved."""
    existing = get_failure(table, invoice.customer_id, invoice.invoice_id)
    if existing is not None and existing.state is not FailureState.OPEN:
        return []  # paid/voided already (events arrive out of order) or waived by the provider
    return [record_failure_item(table, invoice, at=at)]


def payment_settled_items(
    table: Any,
    customer: Customer,
    invoice: InvoiceRef,
    *,
    resolution: str,
    at: datetime,
    now: datetime,
    grace: timedelta,
    event_id: str,
    cause: str,
) -> list[dict[str, Any]]:
    """Effects of ``invoice.paid`` / ``invoice.voided``: resolve the failure and, if the customer was
    suspended for ``payment_failed``, restore access (or point ``pay_url`` at another overdue invoice)."""
    failures = list_failures(table, customer.id)
    this = next((f for f in failures if f.invoice_id == invoice.invoice_id), None)
    items: list[dict[str, Any]] = []
    if this is not None and this.state is FailureState.OPEN:
        items.append(close_failure_item(table, this, FailureState.RESOLVED, at=at, resolution=resolution))
    if customer.status is not CustomerStatus.SUSPENDED or customer.status_reason != PAYMENT_FAILED:
        return items  # active already, or suspended for another reason (manual): not ours to lift
    others = [f for f in failures if f.invoice_id != invoice.invoice_id and f.overdue(now, grace)]
    if not others:
        items += status_change_items(
            table,
            customer,
            CustomerStatus.ACTIVE,
            reason=None,
            pay_url=None,
            cause=cause,
            at=at,
            event_id=event_id,
        )
    elif customer.pay_url != others[0].hosted_invoice_url:
        items += status_change_items(
            table,
            customer,
            CustomerStatus.SUSPENDED,
            reason=PAYMENT_FAILED,
            pay_url=others[0].hosted_invoice_url,
            cause=cause,
            at=at,
            event_id=event_id,
        )
    return items


# -- the sweep ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepResult:
    suspended: tuple[str, ...]  # customers suspended by this sweep
    skipped: tuple[str, ...]  # customers with overdue failures left as they were (already suspended)


def sweep(store: TollgateStore, *, now: datetime, grace: timedelta, attempts: int = 3) -> SweepResult:
    """Suspend every active customer with an open failure past its grace period. Safe to run twice: a
    customer already suspended is skipped, and every write is conditional on the state it was decided from."""
    table = store.table
    by_customer: dict[str, list[PaymentFailure]] = {}
    for failure in overdue_failures(table, now=now, grace=grace):
        by_customer.setdefault(failure.customer_id, []).append(failure)
    suspended, skipped = [], []
    for customer_id, failures in sorted(by_customer.items()):
        if _suspend_for(store, customer_id, failures, now=now, grace=grace, attempts=attempts):
            suspended.append(customer_id)
        else:
            skipped.append(customer_id)
    return SweepResult(tuple(suspended), tuple(skipped))


def _suspend_for(
    store: TollgateStore,
    customer_id: str,
    failures: list[PaymentFailure],
    *,
    now: datetime,
    grace: timedelta,
    attempts: int,
) -> bool:
    table = store.table
    for _ in range(attempts):
        try:
            customer: Customer = store.get_customer(customer_id)
        except NotFoundError:
            return False
        if customer.status is not CustomerStatus.ACTIVE:
            return False
        current = [f for f in list_failures(table, customer_id) if f.overdue(now, grace)]
        if not current:
            return False  # paid meanwhile
        oldest = current[0]
        items = [
            *status_change_items(
                table,
                customer,
                CustomerStatus.SUSPENDED,
                reason=PAYMENT_FAILED,
                pay_url=oldest.hosted_invoice_url,
                cause=SWEEP_CAUSE,
                at=now,
                event_id=f"dunning-{oldest.invoice_id}-{_stamp(now)}",
            ),
            mark_suspended_item(table, oldest, at=now),
        ]
        try:
            run_transaction(table, items)
        except TransactionConflictError:
            continue  # the customer or the failure changed between the read and the write: decide again
        return True
    return False


def waive_failures(table: Any, customer_id: str, *, now: datetime) -> int:
    """Waive every open failure of a customer (a manual resume); returns how many."""
    waived = 0
    for failure in list_failures(table, customer_id):
        if failure.state is FailureState.OPEN:
            try:
                run_transaction(
                    table,
                    [close_failure_item(table, failure, FailureState.WAIVED, at=now, resolution="waived")],
                )
            except TransactionConflictError:
                continue  # resolved meanwhile
            waived += 1
    return waived


def open_failures(failures: Iterable[PaymentFailure]) -> list[PaymentFailure]:
    return [failure for failure in failures if failure.state is FailureState.OPEN]
