"""In-memory stand-ins for what the close starter talks to: customer pages, SQS, close runs, Lambda and its
context. Small enough to state DynamoDB's and SQS's behaviour the starter relies on, and cheap enough for a
million customers in seconds.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tollgate.domain.close_runs import CloseRun, CloseRunStatus, Cursor
from tollgate.errors import ConflictError

ID_WIDTH = 7  # customer ids c0000000, c0000001, ...: gsi1 order is id order
_ID_AT = len('{"customer_id":"c')  # where the id's digits start in a body (the shape is checked apart)


def customer_id(index: int) -> str:
    return f"c{index:0{ID_WIDTH}d}"


def customer_index(customer_id: str) -> int:
    return int(customer_id[1:])


class Crash(Exception):
    """The invocation dies here (what a Lambda time-out or a killed process looks like to the run)."""


@dataclass
class FakeClock:
    """Milliseconds an invocation has used, advanced by the fakes (each SQS call, each Query page)."""

    elapsed_ms: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def advance(self, ms: float) -> None:
        with self.lock:
            self.elapsed_ms += ms


class GeneratedCustomers:
    """``count`` customers, paged like ``Query`` on gsi1: a full page (``limit`` reached) carries a
    ``LastEvaluatedKey`` even when nothing follows it, as DynamoDB does; the ids are made on the fly."""

    def __init__(self, count: int, clock: FakeClock | None = None, query_ms: float = 50.0) -> None:
        self.count = count
        self.queries = 0
        self.clock = clock
        self.query_ms = query_ms

    def customer_id_page(
        self, *, limit: int, start_key: Cursor | None = None
    ) -> tuple[list[str], Cursor | None]:
        self.queries += 1
        if self.clock is not None:
            self.clock.advance(self.query_ms)
        start = 0 if start_key is None else customer_index(start_key["id_key"]) + 1
        ids = [f"c{index:07d}" for index in range(start, min(start + limit, self.count))]
        if len(ids) < limit:
            return ids, None
        last = ids[-1]
        return ids, {"gsi1pk": "CUSTOMERS", "gsi1sk": f"CUSTOMER#{last}", "id_key": last}


class CountingSqs:
    """SendMessageBatch that counts each customer's messages (one byte per customer: 1 MB for a million).

    ``crash_at_call``: that call raises ``Crash`` instead (the invocation dies mid-page); ``fail_once``: those
    customers' entries are reported failed once (SQS's partial batch failure). Each call advances ``clock``.
    """

    def __init__(
        self,
        count: int,
        *,
        clock: FakeClock | None = None,
        call_ms: float = 15.0,
        crash_at_call: int | None = None,
        fail_once: frozenset[str] = frozenset(),
    ) -> None:
        self.counts = bytearray(count)
        self.calls = 0
        self.entries_per_call: Counter[int] = Counter()  # entries in a call -> calls
        self.bodies_seen: dict[str, str] = {}  # one body kept per 10,000 customers, to check its shape
        self.clock = clock
        self.call_ms = call_ms
        self.crash_at_call = crash_at_call
        self.fail_once = set(fail_once)
        self.lock = threading.Lock()

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # boto3's
        with self.lock:
            self.calls += 1
            if self.clock is not None:
                self.clock.advance(self.call_ms)
            if self.crash_at_call is not None and self.calls >= self.crash_at_call:
                self.crash_at_call = None
                raise Crash(f"the invocation died at SendMessageBatch call {self.calls}")
            assert 1 <= len(Entries) <= 10
            assert len({entry["Id"] for entry in Entries}) == len(Entries)
            self.entries_per_call[len(Entries)] += 1
            failed = []
            for entry in Entries:
                body = entry["MessageBody"]
                index = int(body[_ID_AT : _ID_AT + ID_WIDTH])  # {"customer_id":"c0000042","period":...}
                if self.fail_once and customer_id(index) in self.fail_once:
                    self.fail_once.discard(customer_id(index))
                    failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
                    continue
                self.counts[index] = min(self.counts[index] + 1, 255)
                if index % 10_000 == 0:
                    self.bodies_seen[customer_id(index)] = body
            return {"Failed": failed}

    def customers_sent(self, times: int) -> int:
        return self.counts.count(times)


class MemoryCloseRuns:
    """Close runs in a dict, with the conditions of ``tollgate.dal.close_runs.DynamoCloseRuns``."""

    def __init__(self) -> None:
        self.stored: dict[str, CloseRun] = {}
        self.writes = 0
        self.lock = threading.Lock()

    def get(self, period: str) -> CloseRun | None:
        return self.stored.get(period)

    def begin(self, period: str, now: datetime) -> CloseRun:
        with self.lock:
            if period not in self.stored:
                self.writes += 1
                self.stored[period] = CloseRun(period=period, started_at=now, updated_at=now)
            return self.stored[period]

    def restart(self, period: str, now: datetime, request_id: str) -> CloseRun:
        with self.lock:
            stored = self.stored.get(period)
            if stored is not None and request_id and stored.restarted_by == request_id:
                return stored
            self.writes += 1
            run = (
                stored.restarted(now, by=request_id)
                if stored is not None
                else CloseRun(period=period, restarted_by=request_id, started_at=now, updated_at=now)
            )
            self.stored[period] = run
            return run

    def advance(self, run: CloseRun, next_cursor: Cursor | None, customers: int, now: datetime) -> CloseRun:
        with self.lock:
            stored = self.stored.get(run.period)
            if stored is None or (stored.generation, stored.pages, stored.status) != (
                run.generation,
                run.pages,
                CloseRunStatus.RUNNING,
            ):
                raise ConflictError(f"the close run of {run.period} moved on")
            self.writes += 1
            after = run.after_page(next_cursor, customers, now)
            self.stored[run.period] = after
            return after


@dataclass
class RecordingLambda:
    """The Lambda client: records asynchronous invocations instead of making them."""

    invocations: list[dict[str, Any]] = field(default_factory=list)

    def invoke(self, *, FunctionName: str, InvocationType: str, Payload: bytes) -> dict[str, Any]:
        self.invocations.append(
            {"FunctionName": FunctionName, "InvocationType": InvocationType, "Payload": Payload}
        )
        return {"StatusCode": 202}


@dataclass
class FakeContext:
    """Lambda's context with a remaining time that follows ``clock`` (``timeout_ms`` per invocation)."""

    clock: FakeClock = field(default_factory=FakeClock)
    timeout_ms: float = 900_000.0
    function_name: str = "tollgate-close-starter"
    memory_limit_in_mb: int = 1769
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tollgate-close-starter"
    aws_request_id: str = "request-1"
    started_ms: float = 0.0

    def __post_init__(self) -> None:
        self.started_ms = self.clock.elapsed_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self.timeout_ms - (self.clock.elapsed_ms - self.started_ms)))

    def next_invocation(self, request_id: str) -> FakeContext:
        """A fresh invocation (its own full timeout) on the same clock."""
        return FakeContext(
            clock=self.clock,
            timeout_ms=self.timeout_ms,
            invoked_function_arn=self.invoked_function_arn,
            aws_request_id=request_id,
        )
