"""Payment failures in the table, and dunning's effects as transaction actions.

A failure is ``pk CUSTOMER#{id}``, ``sk DUNNING#{invoice id}``; while open it is also in ``gsi1``
(``DUNNING`` / ``{first failed}#{customer}#{invoice}``), which the sweep reads oldest first. Resolved and
waived records leave the index and expire (TTL) ``RESOLVED_RETENTION`` later. Records are only ever
Put/Updated, which is what the webhook and sweeper functions' IAM policies allow.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import item_fields, status_change_actions
from tollgate.domain.dunning import (
    ChangeStatus,
    Effect,
    EndFailure,
    FailureState,
    InvoiceRef,
    MarkSuspended,
    PaymentFailure,
    RecordFailure,
    stamp,
)

RESOLVED_RETENTION = timedelta(days=90)  # resolved failure records expire (TTL) after this


# -- reads -------------------------------------------------------------------------------------------------
def get_failure(table: Any, customer_id: str, invoice_id: str) -> PaymentFailure | None:
    item = table.get_item(Key=tk.failure_key(customer_id, invoice_id), ConsistentRead=True).get("Item")
    return None if item is None else PaymentFailure.model_validate(item_fields(item))


def list_failures(table: Any, customer_id: str) -> list[PaymentFailure]:
    """All failure records of a customer (open, waived and recently resolved), oldest first."""
    items = table.query(
        KeyConditionExpression=Key(tk.PK).eq(tk.customer_pk(customer_id))
        & Key(tk.SK).begins_with(tk.DUNNING_SK_PREFIX),
        ConsistentRead=True,
    )["Items"]
    failures = [PaymentFailure.model_validate(item_fields(item)) for item in items]
    return sorted(failures, key=lambda failure: failure.first_failed_at)


def overdue_failures(table: Any, *, now: datetime, grace: timedelta) -> list[PaymentFailure]:
    """Open failures whose grace has run out, over all customers, oldest first (``gsi1`` = ``DUNNING``)."""
    condition = Key(tk.GSI1_PK).eq(tk.DUNNING_INDEX_PK) & Key(tk.GSI1_SK).lte(stamp(now - grace) + "~")
    kwargs: dict[str, Any] = {"IndexName": tk.GSI1, "KeyConditionExpression": condition}
    found: list[PaymentFailure] = []
    while True:
        page = table.query(**kwargs)
        found.extend(PaymentFailure.model_validate(item_fields(item)) for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [failure for failure in found if failure.overdue(now, grace)]


# -- effects as transaction actions ------------------------------------------------------------------------
def actions(table_name: str, effects: list[Effect]) -> list[dict[str, Any]]:
    """The ``TransactWriteItems`` actions of ``effects`` (a status change is two: the customer, its audit)."""
    found: list[dict[str, Any]] = []
    for effect in effects:
        if isinstance(effect, RecordFailure):
            found.append(_record_failure(table_name, effect.invoice, at=effect.at))
        elif isinstance(effect, EndFailure):
            found.append(_end_failure(table_name, effect))
        elif isinstance(effect, MarkSuspended):
            found.append(_mark_suspended(table_name, effect.failure, at=effect.at))
        else:
            found += _change_status(table_name, effect)
    return found


def _change_status(table_name: str, change: ChangeStatus) -> list[dict[str, Any]]:
    """Only if the customer is still in the status (and reason) it was read with."""
    return status_change_actions(
        table_name,
        change.customer.id,
        change.status,
        reason=change.reason,
        cause=change.cause,
        at=change.at,
        event_id=change.event_id,
        pay_url=change.pay_url,
        expected=change.customer,
    )


def _record_failure(table_name: str, invoice: InvoiceRef, *, at: datetime) -> dict[str, Any]:
    """Upsert the failure record: the first failure time is kept; a resolved or waived record stays so."""
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
        ":gpk": tk.DUNNING_INDEX_PK,
        ":gsk": f"{stamp(at)}#{invoice.customer_id}#{invoice.invoice_id}",
    }
    return {
        "Update": {
            "TableName": table_name,
            "Key": tk.failure_key(invoice.customer_id, invoice.invoice_id),
            "UpdateExpression": (
                "SET kind = :kind, customer_id = :customer, invoice_id = :invoice, period = :period, "
                "hosted_invoice_url = :url, last_failed_at = :at, "
                "first_failed_at = if_not_exists(first_failed_at, :at), "
                "attempts = if_not_exists(attempts, :zero) + :one, #state = :open, "
                f"{tk.GSI1_PK} = :gpk, {tk.GSI1_SK} = if_not_exists({tk.GSI1_SK}, :gsk)"
            ),
            "ConditionExpression": "attribute_not_exists(pk) OR #state = :open",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": values,
        }
    }


def _end_failure(table_name: str, end: EndFailure) -> dict[str, Any]:
    """Resolved or waived: out of the sweep's index, expiring ``RESOLVED_RETENTION`` later."""
    failure = end.failure
    return {
        "Update": {
            "TableName": table_name,
            "Key": tk.failure_key(failure.customer_id, failure.invoice_id),
            "UpdateExpression": (
                "SET #state = :state, resolved_at = :at, resolution = :resolution, "
                f"{tk.TTL_ATTRIBUTE} = :ttl REMOVE {tk.GSI1_PK}, {tk.GSI1_SK}"
            ),
            "ConditionExpression": "#state = :was",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {
                ":state": end.state.value,
                ":at": end.at.isoformat(),
                ":resolution": end.resolution,
                ":ttl": int((end.at + RESOLVED_RETENTION).timestamp()),
                ":was": failure.state.value,
            },
        }
    }


def _mark_suspended(table_name: str, failure: PaymentFailure, *, at: datetime) -> dict[str, Any]:
    """Fails if the failure was resolved meanwhile."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": tk.failure_key(failure.customer_id, failure.invoice_id),
            "UpdateExpression": "SET suspended_at = :at",
            "ConditionExpression": "#state = :open",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":at": at.isoformat(), ":open": FailureState.OPEN.value},
        }
    }
