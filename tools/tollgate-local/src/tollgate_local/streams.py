"""The table's stream in local mode: DynamoDB Local's own stream, read the way Lambda's event source mapping
reads DynamoDB Streams, handed to the real alert function (``tollgate.alerts.handler``) in the event shape
Lambda gives it.

A thread polls every shard of the table's stream (new shards included), keeps the records the deployed event
source mapping's filter passes (counters and wallets: ``STREAM_KEY_PREFIXES``), batches up to 100 records,
and invokes the handler; records the handler reports as failed (``batchItemFailures``) are given again on
the next poll, as Lambda retries them, at most :data:`RETRY_ATTEMPTS` times (then dropped, as Lambda would
describe them in the failure queue). Alerts go to :class:`LocalEventBus`: kept in order for the demo and the
tests (EventBridge's place locally), and passed to ``on_event`` (the local webhook delivery) if given.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tollgate.alerts.service import STREAM_KEY_PREFIXES
from tollgate.dal.tablekeys import PK as TABLE_PK
from tollgate.domain.alerts import Alert

BATCH_SIZE = 100
POLL_SECONDS = 0.2
RETRY_ATTEMPTS = 10


class LocalEventBus:
    """EventBridge locally: every alert event published, as ``{"source", "detail-type", "detail"}``."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._on_event = on_event

    def publish(self, alert: Alert) -> None:
        event = {
            "source": "tollgate",
            "detail-type": alert.detail_type,
            "detail": json.loads(json.dumps(alert.event_detail())),
        }
        with self._lock:
            self.events.append(event)
        if self._on_event is not None:
            self._on_event(event)


def _passes(record: dict[str, Any]) -> bool:
    """What the deployed mapping's filter lets through: a counter's or a wallet's change."""
    pk = record.get("dynamodb", {}).get("Keys", {}).get(TABLE_PK, {}).get("S", "")
    return str(pk).startswith(STREAM_KEY_PREFIXES)


def lambda_record(record: dict[str, Any], stream_arn: str) -> dict[str, Any]:
    """A ``dynamodbstreams`` record as Lambda's event has it (the creation time in epoch seconds)."""
    stream = dict(record["dynamodb"])
    created = stream.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        stream["ApproximateCreationDateTime"] = created.timestamp()
    return {
        "eventID": record.get("eventID", stream.get("SequenceNumber", "")),
        "eventName": record.get("eventName", "MODIFY"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": stream,
        "eventSourceARN": stream_arn,
    }


class StreamConsumer:
    """Polls the table's stream on a thread and hands batches to ``handler`` (a Lambda handler)."""

    def __init__(
        self, dynamodb: Any, streams: Any, table: str, handler: Callable[..., dict[str, Any]]
    ) -> None:
        self._streams, self._handler = streams, handler
        self._arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}  # shard id -> next iterator (None: the shard is closed)
        self._pending: list[dict[str, Any]] = []  # records the handler failed: given again
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tollgate-stream", daemon=True)
        self._attempts: dict[str, int] = {}  # event id -> times handed to the handler and failed
        self._discover(start="LATEST")  # what is written from now on
        self.failures = 0  # invocations that reported a failed record
        self.dropped = 0  # records given up on after RETRY_ATTEMPTS

    def start(self) -> StreamConsumer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def drain(self, timeout: float = 10.0) -> None:
        """Wait until the records written so far have been handled (tests, the demo)."""
        done = threading.Event()
        self._flush_request = done
        done.wait(timeout)

    def poll_once(self) -> int:
        """Read every shard once and hand what was read to the handler; the records handled."""
        self._discover(start="TRIM_HORIZON")  # shards that appeared since: from their first record
        records = list(self._pending)
        for shard, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            answer = self._streams.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard] = answer.get("NextShardIterator")
            records += [lambda_record(r, self._arn) for r in answer.get("Records", []) if _passes(r)]
        self._pending = []
        for start in range(0, len(records), BATCH_SIZE):
            self._invoke(records[start : start + BATCH_SIZE])
        return len(records)

    def _invoke(self, batch: list[dict[str, Any]]) -> None:
        from tollgate_local.lambda_context import LocalLambdaContext

        try:
            answer = self._handler({"Records": batch}, LocalLambdaContext(function_name="tollgate-alerts"))
        except Exception:  # every record failed: Lambda would retry the batch
            self.failures += 1
            self._retry(batch)
            return
        failed = {item["itemIdentifier"] for item in answer.get("batchItemFailures", [])}
        self.failures += bool(failed)
        self._retry([r for r in batch if r["dynamodb"]["SequenceNumber"] in failed])

    def _retry(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            attempts = self._attempts.get(record["eventID"], 0) + 1
            self._attempts[record["eventID"]] = attempts
            if attempts <= RETRY_ATTEMPTS:
                self._pending.append(record)
            else:
                self.dropped += 1

    def _discover(self, start: str) -> None:
        shards = self._streams.describe_stream(StreamArn=self._arn)["StreamDescription"]["Shards"]
        for shard in shards:
            shard_id = shard["ShardId"]
            if shard_id in self._iterators:
                continue
            answer = self._streams.get_shard_iterator(
                StreamArn=self._arn, ShardId=shard_id, ShardIteratorType=start
            )
            self._iterators[shard_id] = answer["ShardIterator"]

    _flush_request: threading.Event | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            request = self._flush_request
            handled = self.poll_once()
            if request is not None and not handled and not self._pending:
                request.set()
                self._flush_request = None
            self._stop.wait(POLL_SECONDS)
