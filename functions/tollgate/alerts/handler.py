"""The alert function: the table's DynamoDB Streams records (``NEW_AND_OLD_IMAGES``) -> EventBridge alerts.

Off the hot path: the authorizer's write is done when its record reaches this function. Records are processed
with Powertools' batch utility, so a record that fails (EventBridge refused, another consumer holds the alert)
is reported back as a partial batch failure and delivered again, while the others are done
(``ReportBatchItemFailures`` on the event source mapping). What each record fires, and why it fires once, is
in :mod:`tollgate.alerts.service`.

Environment: ``TABLE_NAME``; ``ALERT_EVENT_BUS`` (default ``default``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from tollgate.alerts.service import AlertPublisher, process
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert
from tollgate.errors import RetryLaterError
from tollgate.settings import TABLE_NAME, required

EVENT_SOURCE = "tollgate"
ALERT_EVENT_BUS = "ALERT_EVENT_BUS"

logger = Logger(service="tollgate-alerts")
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class EventBridgePublisher:
    """Each alert as one EventBridge event: source ``tollgate``, the alert's detail type, its detail."""

    def __init__(self, client: Any, bus: str = "default") -> None:
        self._client, self._bus = client, bus

    def publish(self, alert: Alert) -> None:
        answer = self._client.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": alert.detail_type,
                    "Detail": json.dumps(alert.event_detail()),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            code = answer["Entries"][0].get("ErrorCode", "unknown")
            raise RetryLaterError(f"EventBridge refused alert {alert.alert_id}: {code}")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    publisher: AlertPublisher
    clock: Callable[[], datetime] = utc_now


@cache
def default_deps() -> Deps:
    bus = os.environ.get(ALERT_EVENT_BUS) or "default"
    return Deps(
        TollgateStore(required(os.environ, TABLE_NAME)), EventBridgePublisher(boto3.client("events"), bus)
    )


def record_time(record: DynamoDBRecord) -> datetime:
    """When the write happened: the record's approximate creation time (seconds), else now."""
    created = record.dynamodb.approximate_creation_date_time if record.dynamodb else None
    return datetime.fromtimestamp(int(created), UTC) if created else utc_now()


def handle_record(record: DynamoDBRecord, deps: Deps) -> None:
    stream = record.dynamodb
    if stream is None:
        return
    for delivered in process(
        deps.store, deps.publisher, stream.old_image, stream.new_image, record_time(record), deps.clock()
    ):
        logger.info(
            "alert",
            alert_id=delivered.alert.alert_id,
            published=delivered.published,
            detail_type=delivered.alert.detail_type,
        )


def make_handler(deps: Deps | None = None) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        answer = process_partial_response(event, partial(handle_record, deps=wired), processor, context)
        return dict(answer)

    return handle


handler = make_handler()
