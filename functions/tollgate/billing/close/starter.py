"""Period close starter: queue one close per customer for the period that has just ended.

Invoked by EventBridge Scheduler (monthly, a grace of some hours after midnight UTC on the 1st), or by hand.
The event is ``{"period": "2026-10"}`` (by hand) or the schedule's ``{"trigger": "schedule", "scheduledTime":
"2026-11-01T06:00:00Z"}``; from a schedule the period closed is the one *before* the scheduled time's, so a
retry hours later, or a duplicate delivery, closes the same period (``tollgate.billing.close.trigger``). A
period that has not ended yet is refused.

It lists the customers and sends one message per (customer, period) to the close queue (``CLOSE_QUEUE_URL``,
see ``tollgate.billing.close.settings``; SendMessageBatch, 10 per call). Sending twice is harmless: the
worker's close is idempotent. On a FIFO queue the messages also carry a deduplication id
(``customer:period``) and the customer as message group.

Returns ``{"period": "2026-10", "queued": <number of customers>}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3

from tollgate.billing.close.messages import CloseRequest
from tollgate.billing.close.observability import logger
from tollgate.billing.close.settings import StarterSettings
from tollgate.billing.close.trigger import StartError as StartError  # re-exported: the starter's error
from tollgate.billing.close.trigger import period_to_close
from tollgate.dal.store import TollgateStore

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
BATCH_SIZE = 10  # SendMessageBatch's limit
SEND_ATTEMPTS = 3  # per entry, for the entries SQS reports as failed


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    sqs: Any  # a boto3 SQS client
    queue_url: str
    clock: Callable[[], datetime] = utc_now


def deps_from(settings: StarterSettings) -> Deps:
    return Deps(TollgateStore(settings.table_name), boto3.client("sqs"), settings.close_queue_url)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(StarterSettings.from_env())


def message_entries(customer_ids: Sequence[str], period: str, *, fifo: bool) -> list[dict[str, Any]]:
    entries = []
    for customer_id in customer_ids:
        entry: dict[str, Any] = {
            "MessageBody": CloseRequest(customer_id=customer_id, period=period).model_dump_json(),
        }
        if fifo:
            entry["MessageGroupId"] = customer_id
            entry["MessageDeduplicationId"] = f"{customer_id}:{period}"
        entries.append(entry)
    return entries


def queue_closes(sqs: Any, queue_url: str, customer_ids: Sequence[str], period: str) -> int:
    """Send one close message per customer, 10 per SendMessageBatch; entries SQS fails are sent again."""
    entries = message_entries(customer_ids, period, fifo=queue_url.endswith(".fifo"))
    for start in range(0, len(entries), BATCH_SIZE):
        pending = {str(i): entry for i, entry in enumerate(entries[start : start + BATCH_SIZE])}
        for _ in range(SEND_ATTEMPTS):
            answer = sqs.send_message_batch(
                QueueUrl=queue_url, Entries=[{"Id": id_, **entry} for id_, entry in pending.items()]
            )
            failed = {failure["Id"]: failure for failure in answer.get("Failed", [])}
            pending = {id_: entry for id_, entry in pending.items() if id_ in failed}
            if not pending:
                break
        if pending:
            reasons = "; ".join(json.dumps(failure) for failure in failed.values())
            raise RuntimeError(f"SQS refused {len(pending)} close messages for {period}: {reasons}")
    return len(entries)


def make_handler(deps: Deps | None = None) -> Handler:
    """The starter over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context(log_event=True)
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        period = period_to_close(event, wired.clock())
        customer_ids = [customer.id for customer in wired.store.list_customers()]
        queued = queue_closes(wired.sqs, wired.queue_url, customer_ids, period)
        logger.info("period close queued", extra={"period": period, "queued": queued})
        return {"period": period, "queued": queued}

    return handle


handler = make_handler()
