"""Close records in the table: every key, item shape and conditional write of ``tollgate.domain.closes``.

Each transition is a conditional write on ``status`` (and ``version``), so a replayed step finds the record
already moved and does nothing twice.

* :func:`put_close` stores a new record (``rated`` or ``no_charge``), conditional on it not existing. When the
  statement bills late usage of earlier periods, the same ``TransactWriteItems`` raises each earlier record's
  ``billed_credits``, conditional on its old value: the late credits are recorded billed exactly once. When
  the new record takes over what an earlier one carried, the same transaction sets that record's
  ``carried_to``, conditional on it being unset: what is carried is taken over exactly once.
* :func:`mark_invoice_created` and :func:`mark_finalized` move the record on, conditional on ``status`` and
  ``version``; a lost race raises ``ConflictError`` (the caller re-reads and carries on from what it finds).
* :func:`record_failure` counts a failed attempt (``attempts``, ``last_error``); it is not a transition.
* :func:`invoice_status_update` is the webhooks' transaction item: Stripe's status of a finalized invoice.
* :func:`closes_of_period` pairs every customer with its record of one period (``tollgate close status``):
  the customers from ``gsi1`` a page at a time, the records by ``BatchGetItem``, 100 at a time; only one page
  is held, whatever the number of customers.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore, item_fields
from tollgate.domain.closes import NEW, BilledRaise, CloseStatus, PeriodClose
from tollgate.domain.models import Customer
from tollgate.errors import AlreadyExistsError, ConflictError, NotFoundError, PeriodClosedError


def close_from_item(item: dict[str, Any]) -> PeriodClose:
    return PeriodClose.model_validate(item_fields(item))


def get_close(table: Any, customer_id: str, period: str, part: int = 0) -> PeriodClose | None:
    """The close record of one customer-period (``part``: of one of its threshold invoices), or None.
    ``table`` is a boto3 Table resource."""
    item = table.get_item(Key=tk.close_key(customer_id, period, part), ConsistentRead=True).get("Item")
    return None if item is None else close_from_item(item)


def list_threshold_invoices(table: Any, customer_id: str, period: str) -> list[PeriodClose]:
    """The records of a customer-period's threshold invoices, in order (strongly consistent)."""
    query: dict[str, Any] = {
        "KeyConditionExpression": Key(tk.PK).eq(tk.customer_pk(customer_id))
        & Key(tk.SK).begins_with(tk.threshold_prefix(period)),
        "ConsistentRead": True,
    }
    records: list[PeriodClose] = []
    while True:
        answer = table.query(**query)
        records += [close_from_item(item) for item in answer["Items"]]
        if "LastEvaluatedKey" not in answer:
            return sorted(records, key=lambda record: record.part)  # 001...999, then 1000 sorts by number
        query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def list_closes(table: Any, customer_id: str, limit: int = 12) -> list[PeriodClose]:
    """A customer's most recent close records, newest period first."""
    items = table.query(
        KeyConditionExpression=Key(tk.PK).eq(tk.customer_pk(customer_id))
        & Key(tk.SK).begins_with(tk.CLOSE_SK_PREFIX),
        ScanIndexForward=False,
        Limit=limit,
    )["Items"]
    return [close_from_item(item) for item in items]


def list_closes_up_to(table: Any, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
    """The customer's records for ``period`` and the periods before it, newest first, at most ``limit``.

    One strongly consistent Query: the first item is ``period``'s own record when it exists.
    """
    items = table.query(
        KeyConditionExpression=Key(tk.PK).eq(tk.customer_pk(customer_id))
        & Key(tk.SK).between(tk.CLOSE_SK_PREFIX, tk.close_key(customer_id, period)[tk.SK]),
        ScanIndexForward=False,
        Limit=limit,
        ConsistentRead=True,
    )["Items"]
    return [close_from_item(item) for item in items]


BATCH_GET_LIMIT = 100  # keys per BatchGetItem


def get_closes(table: Any, customer_ids: Sequence[str], period: str) -> dict[str, PeriodClose]:
    """The records of ``period`` of up to 100 customers (strongly consistent), by customer id; customers
    without one are absent. Unprocessed keys are asked for again."""
    if len(customer_ids) > BATCH_GET_LIMIT:
        raise ValueError(f"at most {BATCH_GET_LIMIT} customers per call, got {len(customer_ids)}")
    found: dict[str, PeriodClose] = {}
    keys = [tk.close_key(customer_id, period) for customer_id in dict.fromkeys(customer_ids)]
    request: dict[str, Any] = {table.name: {"Keys": keys, "ConsistentRead": True}} if keys else {}
    while request:
        answer = table.meta.client.batch_get_item(RequestItems=request)
        for item in answer["Responses"].get(table.name, []):
            record = close_from_item(item)
            found[record.customer_id] = record
        request = answer.get("UnprocessedKeys") or {}
    return found


def closes_of_period(store: TollgateStore, period: str) -> Iterator[tuple[Customer, PeriodClose | None]]:
    """Every customer, in ``gsi1`` order, with its record of ``period`` (None: it has none)."""
    for customers in store.customer_pages(page_size=BATCH_GET_LIMIT):
        records = get_closes(store.table, [customer.id for customer in customers], period)
        for customer in customers:
            yield customer, records.get(customer.id)


def close_item(record: PeriodClose) -> dict[str, Any]:
    return {
        **record.model_dump(mode="json"),
        **tk.close_key(record.customer_id, record.period, record.part),
        "kind": "threshold_invoice" if record.part else "close",
    }


def record_key(record: PeriodClose) -> dict[str, str]:
    return tk.close_key(record.customer_id, record.period, record.part)


def put_threshold_invoice(table: Any, record: PeriodClose) -> None:
    """Store a new threshold invoice record, only while the period's close record does not exist (the close
    takes off the threshold invoices it finds, and no later one can appear).

    Raises ``AlreadyExistsError`` when another run stored this part first, and ``PeriodClosedError`` when
    the period's close has been rated: nothing is written in either case."""
    if not record.part or record.status is not CloseStatus.RATED:
        raise ValueError("a new threshold invoice record has a part number and is rated")
    actions = [
        {
            "Put": {
                "TableName": table.name,
                "Item": close_item(record),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "ConditionCheck": {
                "TableName": table.name,
                "Key": tk.close_key(record.customer_id, record.period),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]
    failed = _transact(table, actions)
    if failed == 0:
        raise AlreadyExistsError("threshold invoice", record.name)
    if failed == 1:
        raise PeriodClosedError(f"the close of {record.customer_id} {record.period} has been rated")


def put_close(
    table: Any,
    record: PeriodClose,
    raised_billed_credits: Mapping[str, BilledRaise | tuple[int, int]],
    threshold_invoices: int = 0,
) -> None:
    """Store a new close record; for each ``earlier period -> (old, new[, segments, carry, take_carry])``,
    raise that record's ``billed_credits`` from ``old`` to ``new`` (and set its ``billed_segments``), and with
    ``take_carry`` set its ``carried_to`` to the new record's period, in the same transaction; and check that
    the period has no more than the ``threshold_invoices`` the record takes off.

    Raises ``AlreadyExistsError`` when the record exists (another run rated this period first) and
    ``ConflictError`` when an earlier record's ``billed_credits`` is no longer ``old`` (another close billed
    those late credits first), its carry was taken over already, or a threshold invoice was stored meanwhile:
    nothing is written in any case.
    """
    if record.status not in NEW or record.part:
        raise ValueError(f"a new close record is rated or no_charge, not {record.status}")
    actions: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": table.name,
                "Item": close_item(record),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
        {
            "ConditionCheck": {
                "TableName": table.name,
                "Key": tk.close_key(record.customer_id, record.period, threshold_invoices + 1),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]
    for period, raised in sorted(raised_billed_credits.items()):
        old, new, segments, _, take_carry = BilledRaise(*raised)
        update = "SET billed_credits = :new, updated_at = :at"
        condition = "billed_credits = :old"
        values: dict[str, Any] = {":new": new, ":old": old, ":at": record.created_at.isoformat()}
        if segments:
            update += ", billed_segments = :segments"
            values[":segments"] = {str(seq): credits for seq, credits in sorted(segments.items())}
        if take_carry:
            update += ", carried_to = :to"
            condition += " AND (attribute_not_exists(carried_to) OR attribute_type(carried_to, :null))"
            values.update({":to": record.period, ":null": "NULL"})
        actions.append(
            {
                "Update": {
                    "TableName": table.name,
                    "Key": tk.close_key(record.customer_id, period),
                    "UpdateExpression": update,
                    "ConditionExpression": condition,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    failed = _transact(table, actions)
    if failed == 0:
        raise AlreadyExistsError("close", f"{record.customer_id} {record.period}")
    if failed == 1:
        raise ConflictError(f"{record.customer_id} {record.period} has a new threshold invoice; rate again")
    if failed is not None:
        raise ConflictError(
            f"late or carried usage of {record.customer_id} was taken over meanwhile by another close; "
            "rate again"
        )


def _transact(table: Any, actions: list[dict[str, Any]]) -> int | None:
    """Write ``actions`` in one transaction; the index of the first whose condition failed (None: done)."""
    try:
        table.meta.client.transact_write_items(TransactItems=actions)
    except ClientError as error:
        reasons = error.response.get("CancellationReasons") or []
        failed = [i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]
        if failed:
            return failed[0]
        raise
    return None


def mark_invoice_created(table: Any, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
    """``rated`` -> ``invoice_created``: the Stripe invoice id is stored."""
    return _transition(
        table,
        record,
        CloseStatus.RATED,
        CloseStatus.INVOICE_CREATED,
        {"stripe_invoice_id": invoice_id},
        now,
    )


def mark_finalized(
    table: Any,
    record: PeriodClose,
    *,
    invoice_status: str,
    hosted_invoice_url: str | None,
    amount_due: int | None,
    total_mismatch: bool,
    now: datetime,
) -> PeriodClose:
    """``invoice_created`` -> ``finalized``: what Stripe says the customer owes and where to pay it."""
    return _transition(
        table,
        record,
        CloseStatus.INVOICE_CREATED,
        CloseStatus.FINALIZED,
        {
            "invoice_status": invoice_status,
            "hosted_invoice_url": hosted_invoice_url,
            "amount_due": amount_due,
            "total_mismatch": total_mismatch,
            "last_error": None,
        },
        now,
    )


def record_failure(
    table: Any, customer_id: str, period: str, error: str, now: datetime, part: int = 0
) -> None:
    """Count one failed attempt on an existing record and keep its error (not a transition: no version)."""
    try:
        table.update_item(
            Key=tk.close_key(customer_id, period, part),
            UpdateExpression="ADD attempts :one SET last_error = :error, updated_at = :at",
            ConditionExpression=Attr(tk.PK).exists(),
            ExpressionAttributeValues={":one": 1, ":error": error[:1000], ":at": now.isoformat()},
        )
    except ClientError as error_:
        if _code(error_) == "ConditionalCheckFailedException":
            raise NotFoundError("close", f"{customer_id} {period}") from error_
        raise


def invoice_status_update(
    table_name: str, record: PeriodClose, invoice_id: str, status: str
) -> dict[str, Any]:
    """A ``TransactWriteItems`` action: set Stripe's ``status`` of the record's invoice, conditional on the
    invoice id and on the status the record was read with."""
    was = record.invoice_status
    condition = "stripe_invoice_id = :invoice AND " + (
        "invoice_status = :was"
        if was is not None
        else "(attribute_not_exists(invoice_status) OR attribute_type(invoice_status, :null))"
    )
    values: dict[str, Any] = {":status": status, ":invoice": invoice_id}
    values.update({":was": was} if was is not None else {":null": "NULL"})
    return {
        "Update": {
            "TableName": table_name,
            "Key": record_key(record),
            "UpdateExpression": "SET invoice_status = :status",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }


def _transition(
    table: Any,
    record: PeriodClose,
    expected: CloseStatus,
    status: CloseStatus,
    fields: Mapping[str, Any],
    now: datetime,
) -> PeriodClose:
    if record.status is not expected:
        raise ValueError(f"a close moves to {status} from {expected}, not from {record.status}")
    names = {"#status": "status", "#version": "version"}
    values: dict[str, Any] = {
        ":status": status.value,
        ":expected": expected.value,
        ":version": record.version,
        ":next": record.version + 1,
        ":at": now.isoformat(),
    }
    assignments = ["#status = :status", "#version = :next", "updated_at = :at"]
    for index, (name, value) in enumerate(fields.items()):
        names[f"#f{index}"] = name
        values[f":f{index}"] = value
        assignments.append(f"#f{index} = :f{index}")
    try:
        answer = table.update_item(
            Key=record_key(record),
            UpdateExpression="SET " + ", ".join(assignments),
            ConditionExpression="#status = :expected AND #version = :version",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except ClientError as error:
        if _code(error) == "ConditionalCheckFailedException":
            raise ConflictError(f"close {record.name} is no longer {expected} v{record.version}") from error
        raise
    return close_from_item(answer["Attributes"])


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
