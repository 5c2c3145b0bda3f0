"""The refund function: each ledger object Firehose delivers -> its failed requests refunded.

S3 notifies an SQS queue of every object created under ``ledger/``; this function takes the queue's messages
in batches (Powertools' batch utility: a message that fails, say DynamoDB throttled, is reported back as a
partial batch failure and delivered again, while the others are done; after ``maxReceiveCount`` receives it
moves to a dead-letter queue that alarms). A message may name several objects; each object is read whole and
its records refunded (:mod:`tollgate.refunds.service`), so a message delivered twice refunds nothing twice.

How late a refund lands: Firehose's buffer (``UsageLedger(buffer_interval=...)``, 5 minutes by default) plus
the queue and this function, seconds. The README's "Bill only what succeeded" states it.

Environment: ``TABLE_NAME``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any
from urllib.parse import unquote_plus

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes import S3Event
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from tollgate.dal.refunds import RefundLedger
from tollgate.dal.store import TollgateStore
from tollgate.refunds.observability import (
    DUPLICATE_REFUNDS,
    MALFORMED_RECORDS,
    REFUNDED_CREDITS,
    REFUNDED_REQUESTS,
    REFUNDS_SKIPPED,
    logger,
    metrics,
)
from tollgate.refunds.service import (
    PlanSource,
    RefundRun,
    StorePlans,
    object_lines,
    parse_records,
    refund_failed,
)
from tollgate.settings import TABLE_NAME, required

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
TEST_EVENT = "s3:TestEvent"  # what S3 sends once when the notification is configured
WORKERS = 8  # refunds applied at once (each a DynamoDB transaction of about 10 ms)
SPARE_MILLISECONDS = 10_000  # stop applying refunds this long before the timeout (a chunk: < 1 s)

processor = BatchProcessor(event_type=EventType.SQS)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    s3: Any
    plans: PlanSource
    clock: Callable[[], datetime] = utc_now


@cache
def default_deps() -> Deps:
    store = TollgateStore(required(os.environ, TABLE_NAME))
    return Deps(store, boto3.client("s3"), StorePlans(store))


def observe(run: RefundRun, bucket: str, key: str) -> None:
    for name, value in (
        (REFUNDED_REQUESTS, len(run.refunded)),
        (REFUNDED_CREDITS, run.credits),
        (DUPLICATE_REFUNDS, run.duplicates),
        (REFUNDS_SKIPPED, len(run.skipped)),
        (MALFORMED_RECORDS, run.malformed),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    summary = {
        "object": f"s3://{bucket}/{key}",
        "refunded": len(run.refunded),
        "credits": run.credits,
        "duplicates": run.duplicates,
        "malformed": run.malformed,
    }
    if run.skipped:
        logger.error("failed requests that could not be refunded", extra={**summary, "skipped": run.skipped})
    elif run.refunded or run.duplicates or run.malformed:
        logger.info("refunds", extra=summary)


def refund_object(
    bucket: str, key: str, deps: Deps, time_left: Callable[[], bool] = lambda: True
) -> RefundRun:
    body = deps.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    run = RefundRun()
    records = parse_records(object_lines(body), run)
    refunds = RefundLedger(deps.store)
    try:
        refund_failed(
            records, deps.plans, refunds, now=deps.clock(), run=run, workers=WORKERS, time_left=time_left
        )
    finally:  # out of time too: what was refunded is counted (the next delivery skips it)
        observe(run, bucket, key)
    return run


def handle_message(record: SQSRecord, deps: Deps, time_left: Callable[[], bool] = lambda: True) -> None:
    body = json.loads(record.body)
    if body.get("Event") == TEST_EVENT:
        return
    for notification in S3Event(body).records:
        if not notification.event_name.startswith("ObjectCreated:"):
            continue
        # S3 sends the key URL-encoded (Firehose's keys hold "=": period%3D2026-11); Powertools leaves it so
        key = unquote_plus(notification.s3.get_object.key)
        refund_object(notification.s3.bucket.name, key, deps, time_left)


def make_handler(deps: Deps | None = None) -> Handler:
    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()

        def time_left() -> bool:
            return bool(context.get_remaining_time_in_millis() > SPARE_MILLISECONDS)

        work = partial(handle_message, deps=wired, time_left=time_left)
        answer = process_partial_response(event, work, processor, context)
        return dict(answer)

    return handle


handler = make_handler()
