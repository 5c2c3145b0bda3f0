"""Refunds of failed requests in the table: each one a marker and the counter's deduction, in one transaction.

A refund (``tollgate.domain.refunds.Refund``) takes the request's credits back from the item the authorizer
counted them on: the counter shard, or the prepaid wallet (whose balance gets them back), and from the same
attributes (the total, the plan segment's, the route's and the day's tallies; a tally's request count stays:
the request was made), and adds them to ``refunded`` (``refunded_requests`` counts the requests). The
marker, ``REFUND#{period}#{request id}`` in the customer's partition, is put in the same transaction on the
condition that it does not exist yet: a ledger record delivered twice, or read by two consumers, refunds once.

The deduction's condition, every attribute at least the request's credits, holds for any request the
authorizer counted there; a record that says otherwise (tampered with, or of a write that never landed) is
refused and nothing changes.

A prepaid customer's credits come back as a lot of their own (a top-up of source ``refund`` that never
expires, reference ``refund:{request id}``), put in the same transaction, with the wallet's ``bought`` raised
with its ``balance``: what was drawn stays what the lots were allocated (``tollgate.domain.prepaid``), so a
refund landing after the request's lot expired changes no settled lot.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import (
    BALANCE,
    BOUGHT,
    REFUNDED,
    REFUNDED_REQUESTS,
    day_attribute,
    segment_attribute,
    wallet_attribute,
)
from tollgate.dal.store import TollgateStore, top_up_item
from tollgate.domain.prepaid import REFERENCE_PATTERN, TopUp, TopUpSource
from tollgate.domain.refunds import Refund
from tollgate.errors import TransactionConflictError

MARKER_DAYS = 400  # a marker outlives every close that could still bill its period (the late-usage lookback)
ATTEMPTS = 4  # a transaction cancelled by a concurrent write is tried again, after 50, 100, 200 ms
_RETRYABLE = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})


class RefundNotCountedError(Exception):
    """The counter does not hold the request's credits where the record says the authorizer counted them."""


@dataclass(frozen=True)
class StoredRefund:
    """A refund's marker, as read back."""

    request_id: str
    period: str
    day: int
    credits: int
    status: int
    route_code: str
    refunded_at: datetime


def refund_key(customer_id: str, period: str, request_id: str) -> dict[str, str]:
    return {tk.PK: tk.customer_pk(customer_id), tk.SK: f"{tk.REFUND_SK_PREFIX}{period}#{request_id}"}


class RefundLedger:
    """Apply refunds once (:meth:`apply`) and list them (:meth:`list`)."""

    def __init__(self, store: TollgateStore, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self._sleep = sleep

    def apply(self, refund: Refund, *, at: datetime) -> bool:
        """Take ``refund``'s credits back; False (nothing changed) when that request was refunded before.

        Raises ``RefundNotCountedError`` when the counter does not hold the credits, and ``ClientError`` when
        DynamoDB keeps cancelling the transaction (the consumer's message is then delivered again)."""
        actions = [self._marker(refund, at), self._deduction(refund)]
        if refund.prepaid:
            actions.append(self._lot(refund, at))
        attempts = 0
        while True:
            try:
                self.store.transact(actions)
            except TransactionConflictError as conflict:
                if 0 in conflict.indexes:
                    return False  # refunded before (the marker's condition failed): nothing applied now
                raise RefundNotCountedError(
                    f"request {refund.request_id}: {refund.customer_id}'s counter for {refund.period} does "
                    f"not hold its {refund.credits} credits"
                ) from conflict
            except ClientError as error:
                reasons = {r.get("Code") for r in error.response.get("CancellationReasons") or []}
                attempts += 1
                if not reasons & _RETRYABLE or attempts == ATTEMPTS:
                    raise
                self._sleep(0.05 * 2 ** (attempts - 1))
                continue
            return True

    def refunded_already(self, refunds: Sequence[Refund]) -> set[str]:
        """The request ids of ``refunds`` whose marker exists (one strongly consistent read per 100)."""
        keys = [refund_key(r.customer_id, r.period, r.request_id) for r in refunds]
        return {str(item["request_id"]) for item in self.store.batch_get(keys)}

    def list(self, customer_id: str, period: str) -> list[StoredRefund]:
        """The refunds of ``customer_id``'s ``period``, by request id, every page of them (an outage can
        refund tens of thousands of a customer's requests; a 1 MB page holds about 3,000)."""
        query: dict[str, Any] = {
            "KeyConditionExpression": "#pk = :pk AND begins_with(#sk, :prefix)",
            "ExpressionAttributeNames": {"#pk": tk.PK, "#sk": tk.SK},
            "ExpressionAttributeValues": {
                ":pk": tk.customer_pk(customer_id),
                ":prefix": f"{tk.REFUND_SK_PREFIX}{period}#",
            },
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self.store.table.query(**query)
            items += page["Items"]
            if "LastEvaluatedKey" not in page:
                break
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [
            StoredRefund(
                request_id=str(item["request_id"]),
                period=str(item["period"]),
                day=int(item["day"]),
                credits=int(item["credits"]),
                status=int(item["status"]),
                route_code=str(item["route_code"]),
                refunded_at=datetime.fromisoformat(str(item["refunded_at"])),
            )
            for item in items
        ]

    def _marker(self, refund: Refund, at: datetime) -> dict[str, Any]:
        item = {
            **refund_key(refund.customer_id, refund.period, refund.request_id),
            "kind": "refund",
            "request_id": refund.request_id,
            "period": refund.period,
            "day": refund.day,
            "credits": refund.credits,
            "status": refund.status,
            "route_code": refund.route_code,
            "refunded_at": at.isoformat(),
            tk.TTL_ATTRIBUTE: int((at + timedelta(days=MARKER_DAYS)).timestamp()),
        }
        return {
            "Put": {
                "TableName": self.store.table_name,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": tk.PK},
            }
        }

    def _deduction(self, refund: Refund) -> dict[str, Any]:
        names = {
            "#c": tk.CREDITS,
            "#r": refund.route_code,
            "#s": segment_attribute(refund.segment),
            "#d": day_attribute(refund.day),
            "#f": REFUNDED,
            "#fn": REFUNDED_REQUESTS,
        }
        if refund.prepaid:  # the wallet: the period's attributes carry its tag; the balance gets them back
            names = {alias: wallet_attribute(refund.period, name) for alias, name in names.items()}
            names["#b"], names["#t"] = BALANCE, BOUGHT  # as a lot of their own (_lot)
            key = tk.wallet_key(refund.customer_id)
        else:
            assert refund.shard is not None
            key = tk.counter_key(refund.customer_id, refund.period, refund.shard)
        # a tally less N is a tally with N credits fewer and the same requests (counter_item.route_tally)
        update = "ADD #c :minus, #r :minus, #s :minus, #d :minus, #f :credits, #fn :one"
        return {
            "Update": {
                "TableName": self.store.table_name,
                "Key": key,
                "UpdateExpression": update + (", #b :credits, #t :credits" if refund.prepaid else ""),
                # a tally (credits, then requests after the point) is >= :credits exactly when its credits are
                "ConditionExpression": " AND ".join(f"{a} >= :credits" for a in ("#c", "#r", "#s", "#d")),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": {
                    ":credits": refund.credits,
                    ":minus": -refund.credits,
                    ":one": 1,
                },
            }
        }

    def _lot(self, refund: Refund, at: datetime) -> dict[str, Any]:
        lot = TopUp(
            customer_id=refund.customer_id,
            reference=refund_lot_reference(refund.request_id),
            credits=refund.credits,
            source=TopUpSource.REFUND,
            note=f"refund of request {refund.request_id} ({refund.status})",
            created_at=at,
        )
        return {
            "Put": {
                "TableName": self.store.table_name,
                "Item": top_up_item(lot),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": tk.PK},
            }
        }


def refund_lot_reference(request_id: str) -> str:
    """``refund:{request id}``, or of its SHA-256 when the id has characters a reference cannot hold."""
    reference = f"refund:{request_id}"
    if re.fullmatch(REFERENCE_PATTERN, reference) is None:
        reference = f"refund:{hashlib.sha256(request_id.encode()).hexdigest()[:40]}"
    return reference
