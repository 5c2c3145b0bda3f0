"""Period close starter: queue one close per customer for the period that has just ended.

Invoked by EventBridge Scheduler (monthly, a grace of some hours after midnight UTC on the 1st), or by hand.
The event is ``{"period": "2026-10"}`` (by hand) or the schedule's ``{"trigger": "schedule", "scheduledTime":
"2026-11-01T06:00:00Z"}``; from a schedule the period closed is the one *before* the scheduled time's, so a
retry hours later, or a duplicate delivery, closes the same period (``tollgate.billing.close.trigger``). A
period that has not ended yet is refused.

**Paged.** It reads the customers a Query page at a time (``gsi1``, ``CUSTOMERS``, only ``id`` projected,
``page_size`` customers a page, ``CLOSE_STARTER_PAGE_SIZE``) and sends one message per (customer, period) to
the close queue (``CLOSE_QUEUE_URL``): SendMessageBatch, 10 entries a call, ``send_threads`` calls in flight
at once (``CLOSE_STARTER_SEND_THREADS``); entries SQS reports as failed are sent again, up to 3 times. On a
FIFO queue the messages also carry a deduplication id (``customer:period``) and the customer as message
group. Only one page is ever in memory, whatever the number of customers.

**Resumable.** After each page is fully sent, the period's *close run* (``CLOSE_RUN#{period}``,
``tollgate.dal.close_runs``) records DynamoDB's ``LastEvaluatedKey`` as its cursor and the customers queued so
far; a conditional write, so two starters of the same period never move it backwards. Any later invocation
for the period (Lambda's retry after a crash or time-out, a duplicate schedule event, a continuation, a
re-run by hand) carries on from the cursor: at most the one page that was being sent is sent again. A
finished run says so and queues nothing (``"status": "already_finished"``); by hand,
``{"period": "2026-10", "restart": true}`` queues every customer again from the first (Lambda's retry of that
same invocation does not restart it twice). **Messages sent twice are harmless**: the worker's close of a
(customer, period) is idempotent (a conditional state machine per record; a finished close is not touched).

**Within Lambda's limits.** Before each page it checks the invocation's remaining time
(``context.get_remaining_time_in_millis()``): another page must fit twice over (the slowest page so far)
with ``RESERVE_SECONDS`` to spare. When it does not, the starter stops at the page boundary, the cursor
saved, and invokes itself asynchronously (``lambda:InvokeFunction``, ``InvocationType=Event``, on its own
unqualified ARN) with ``{"period": P, "continuation": n}``; that invocation carries on from the cursor.

Why a direct self-invocation, and why it stays clear of recursive loop detection: AWS's Lambda guide
("Recursive loop detection") says Lambda detects loops between functions and SQS, S3 and SNS, *and* loops
made only of Lambda functions invoking each other synchronously or asynchronously; about the 16th invocation
in one chain of requests is stopped and its event goes to the on-failure destination. A self-invocation chain
is therefore counted, and is kept short and finite on purpose: (1) an invocation continues only after it
recorded progress and only while the run is unfinished; (2) a chain has at most ``MAX_INVOCATIONS`` (10)
invocations, well below 16: the last one, still unfinished, fails loudly instead (Lambda's two retries each
carry on from the cursor, then the event goes to the starter's failure queue, which is alarmed), and
``{"period": P}`` by hand continues in a new chain; (3) were detection to stop an invocation anyway, its
event lands in the same alarmed failure queue and nothing is lost: the cursor is in the table. The close
queue is not an event source of the starter, and the worker never invokes it, so the SQS path is no loop.
Recursive loop detection stays on (``Terminate``) as a backstop. A one-time Scheduler schedule or Step
Functions would also break the chain, for more moving parts (``scheduler:CreateSchedule``, ``iam:PassRole``)
than a case that, by the figures below, needs a second invocation only beyond about 2.5 M customers.

How long 1,000,000 customers take (1,000 pages of 1,000; 100,000 SendMessageBatch calls; 1,001 writes of
the run): a Query page of 1,000 customer items (~0.3-0.4 KB each: ~350 KB read, under the 1 MB page cap,
~45 read units) takes some 50 ms; SendMessageBatch 10-20 ms, so 8 calls in flight could make 400-800 calls/s.
The bound is the CPU: the starter process spends 2.5-2.7 ms of it per SendMessageBatch call (253-268 ms per
1,000 customers, Query pages and run writes included; ``benchmarks/close_starter.py`` on one 2.8 GHz x86
core), nearly all of it boto3 serialising, signing and parsing, under the GIL. So one vCPU sends ~380 calls/s,
and a page takes ~0.32 s: **about 5-6 minutes for 1 M customers in one invocation** at 1,769 MB, where Lambda
gives a function one full vCPU (at 256 MB, a seventh of one, the CPU alone would take ~30 minutes). A 900 s
invocation sends about 2.5 M customers, a chain of 10 about 25 M. A FIFO queue without high-throughput mode
takes 300 calls/s per action: 1 M customers then need at least 333 s of sending.

With reserved concurrency 1, the continuation waits until the invocation that made it has returned (Lambda
keeps retrying a throttled asynchronous event for up to 6 hours): two starters of a period do not normally
overlap. If they do (a raised reservation, local runs), the run's conditional writes keep the cursor from
moving backwards, and only pages both of them read are sent twice.

Returns ``{"period": "2026-10", "status": "finished" | "already_finished" | "continuing", "queued": <customers
queued by the run so far>, "sent": <messages this invocation sent>}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol

import boto3
from botocore.config import Config

from tollgate.billing.close.messages import CloseRequest
from tollgate.billing.close.observability import logger
from tollgate.billing.close.settings import (
    DEFAULT_STARTER_PAGE_SIZE,
    DEFAULT_STARTER_SEND_THREADS,
    StarterSettings,
)
from tollgate.billing.close.trigger import StartError as StartError  # re-exported: the starter's error
from tollgate.billing.close.trigger import period_to_close
from tollgate.dal.close_runs import DynamoCloseRuns
from tollgate.dal.store import TollgateStore
from tollgate.domain.close_runs import CloseRun, Cursor
from tollgate.errors import ConflictError

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
BATCH_SIZE = 10  # SendMessageBatch's limit
SEND_ATTEMPTS = 3  # per entry, for the entries SQS reports as failed
RESERVE_SECONDS = 20.0  # left at the end of an invocation: invoke the continuation, log, answer
MAX_INVOCATIONS = 10  # a chain of continuations, below the ~16 of Lambda's recursive loop detection
CONTINUATION = "continuation"  # the event key of a continuation: which invocation of its chain it is
RESTART = "restart"  # ``{"period": P, "restart": true}`` by hand: queue every customer again

FINISHED = "finished"
ALREADY_FINISHED = "already_finished"
CONTINUING = "continuing"


class RunNotFinishedError(RuntimeError):
    """A chain of invocations reached ``MAX_INVOCATIONS`` with customers left: continue it by hand."""


class CustomerPages(Protocol):
    """Where the customers come from, a page at a time (``TollgateStore`` is one)."""

    def customer_id_page(
        self, *, limit: int, start_key: Cursor | None = None
    ) -> tuple[list[str], Cursor | None]: ...


class CloseRuns(Protocol):
    """Where the close runs are kept (``tollgate.dal.close_runs.DynamoCloseRuns`` is one)."""

    def get(self, period: str) -> CloseRun | None: ...

    def begin(self, period: str, now: datetime) -> CloseRun: ...

    def restart(self, period: str, now: datetime, request_id: str) -> CloseRun: ...

    def advance(
        self, run: CloseRun, next_cursor: Cursor | None, customers: int, now: datetime
    ) -> CloseRun: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: CustomerPages  # a TollgateStore, deployed
    sqs: Any  # a boto3 SQS client
    queue_url: str
    clock: Callable[[], datetime] = utc_now
    runs: CloseRuns | None = None  # None: the close runs in the store's table
    lambda_client: Any = None  # invokes the continuation; None: none is invoked (the answer says so)
    page_size: int = DEFAULT_STARTER_PAGE_SIZE
    send_threads: int = DEFAULT_STARTER_SEND_THREADS

    def close_runs(self) -> CloseRuns:
        if self.runs is not None:
            return self.runs
        if isinstance(self.store, TollgateStore):
            return DynamoCloseRuns(self.store.table)
        raise TypeError("Deps.runs is required when the customers do not come from a TollgateStore")


def deps_from(settings: StarterSettings) -> Deps:
    store = TollgateStore(settings.table_name)
    return Deps(
        store,
        # one connection per thread sending (botocore's pool holds 10 by default)
        boto3.client("sqs", config=Config(max_pool_connections=max(10, settings.send_threads))),
        settings.close_queue_url,
        runs=DynamoCloseRuns(store.table),
        lambda_client=boto3.client("lambda"),
        page_size=settings.page_size,
        send_threads=settings.send_threads,
    )


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(StarterSettings.from_env())


def message_entries(customer_ids: Sequence[str], period: str, *, fifo: bool) -> list[dict[str, Any]]:
    """The SendMessageBatch entries of one batch: a ``CloseRequest`` body per customer, ``Id`` its index.

    The body is ``CloseRequest``'s JSON (``model_dump_json``: compact, fields in order), written without a
    model per message: the period is checked once, and a million messages cost no seconds of CPU. Tests
    check that the two agree.
    """
    CloseRequest(customer_id="check", period=period)  # refuses a malformed period
    return _entries(customer_ids, period, json.dumps(period), fifo)


def _entries(customer_ids: Sequence[str], period: str, period_json: str, fifo: bool) -> list[dict[str, Any]]:
    entries = []
    for index, customer_id in enumerate(customer_ids):
        if '"' in customer_id or "\\" in customer_id or not customer_id.isprintable():
            body = f'{{"customer_id":{json.dumps(customer_id)},"period":{period_json}}}'
        else:  # nothing to escape (every Identifier): no json.dumps
            body = f'{{"customer_id":"{customer_id}","period":{period_json}}}'
        entry: dict[str, Any] = {
            "Id": _ENTRY_IDS[index] if index < BATCH_SIZE else str(index),
            "MessageBody": body,
        }
        if fifo:
            entry["MessageGroupId"] = customer_id
            entry["MessageDeduplicationId"] = f"{customer_id}:{period}"
        entries.append(entry)
    return entries


_ENTRY_IDS = tuple(str(index) for index in range(BATCH_SIZE))


def send_batch(sqs: Any, queue_url: str, entries: Sequence[dict[str, Any]], period: str) -> int:
    """One SendMessageBatch of at most 10 entries (distinct ``Id``s); the entries SQS reports as failed are
    sent again, 3 attempts in all, then the call raises."""
    pending = list(entries)
    failed: dict[str, Any] = {}
    for _ in range(SEND_ATTEMPTS):
        answer = sqs.send_message_batch(QueueUrl=queue_url, Entries=pending)
        failed = {failure["Id"]: failure for failure in answer.get("Failed", [])}
        if not failed:
            return len(entries)
        pending = [entry for entry in pending if entry["Id"] in failed]
    reasons = "; ".join(json.dumps(failure) for failure in failed.values())
    raise RuntimeError(f"SQS refused {len(pending)} close messages for {period}: {reasons}")


def queue_closes(
    sqs: Any, queue_url: str, customer_ids: Sequence[str], period: str, *, pool: Executor | None = None
) -> int:
    """Send one close message per customer, 10 per SendMessageBatch; entries SQS fails are sent again.

    With ``pool``, the batches are sent on its threads (as many at once as it has); the call returns when
    every batch is sent, and raises the first failure.
    """
    CloseRequest(customer_id="check", period=period)  # refuses a malformed period, once for the page
    period_json, fifo = json.dumps(period), queue_url.endswith(".fifo")

    def send(start: int) -> int:
        batch = _entries(customer_ids[start : start + BATCH_SIZE], period, period_json, fifo)
        return send_batch(sqs, queue_url, batch, period)

    starts = range(0, len(customer_ids), BATCH_SIZE)
    if pool is None:
        return sum(send(start) for start in starts)
    return sum(pool.map(send, starts))


class TimeBudget:
    """Whether another page fits in what is left of the invocation: twice the slowest page so far, plus
    ``reserve`` seconds. Reads only the context's remaining time, so a test drives it with a fake context."""

    def __init__(self, context: Any, reserve: float = RESERVE_SECONDS) -> None:
        self._remaining = getattr(context, "get_remaining_time_in_millis", None)
        self._reserve = reserve
        self._slowest = 0.0
        self._page_started: float | None = None

    def seconds_left(self) -> float:
        return float("inf") if self._remaining is None else self._remaining() / 1000

    def page_started(self) -> None:
        self._page_started = self.seconds_left()

    def page_done(self) -> None:
        if self._page_started is not None:
            self._slowest = max(self._slowest, self._page_started - self.seconds_left())

    def room_for_a_page(self) -> bool:
        return self.seconds_left() >= self._reserve + 2 * self._slowest


@dataclass(frozen=True)
class Progress:
    run: CloseRun  # as stored after this invocation's last page
    sent: int  # messages this invocation sent (a page sent again counts again)
    pages: int  # pages this invocation recorded


def page_through(
    run: CloseRun,
    *,
    customers: CustomerPages,
    runs: CloseRuns,
    send: Callable[[Sequence[str]], int],
    page_size: int,
    budget: TimeBudget,
    clock: Callable[[], datetime],
) -> Progress:
    """Send page after page from ``run.cursor``, recording each, until the run is finished or the budget
    has no room for another page (always at least one page: an invocation makes progress).

    When another starter recorded a page first, this one carries on from the stored run: its own page was
    sent for nothing (harmless), and the cursor never moves backwards."""
    sent = pages = attempts = 0
    while not run.finished and (attempts == 0 or budget.room_for_a_page()):
        attempts += 1
        budget.page_started()
        customer_ids, next_cursor = customers.customer_id_page(limit=page_size, start_key=run.cursor)
        sent += send(customer_ids)
        try:
            run = runs.advance(run, next_cursor, len(customer_ids), clock())
            pages += 1
        except ConflictError:
            stored = runs.get(run.period)
            if stored is None:
                raise
            logger.warning(
                "another starter moved the close run on: carrying on from its cursor",
                extra={"period": run.period, "ours": run.pages, "stored": stored.pages},
            )
            run = stored
        budget.page_done()
        logger.debug("page queued", extra={"period": run.period, "pages": run.pages, "queued": run.queued})
    return Progress(run, sent, pages)


def make_handler(deps: Deps | None = None) -> Handler:
    """The starter over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context(log_event=True)
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        period = period_to_close(event, wired.clock())
        invocation = _invocation(event)
        runs = wired.close_runs()
        if event.get(RESTART) is True:
            run = runs.restart(period, wired.clock(), str(getattr(context, "aws_request_id", "")))
        else:
            run = runs.begin(period, wired.clock())
        if run.finished:
            logger.info(
                "period close already queued: nothing sent (restart by hand to queue every customer again)",
                extra={"period": period, "queued": run.queued, "finished_at": str(run.finished_at)},
            )
            return _answer(run, ALREADY_FINISHED, 0)
        with ThreadPoolExecutor(max_workers=wired.send_threads) as pool:
            progress = page_through(
                run,
                customers=wired.store,
                runs=runs,
                send=lambda ids: queue_closes(wired.sqs, wired.queue_url, ids, period, pool=pool),
                page_size=wired.page_size,
                budget=TimeBudget(context),
                clock=wired.clock,
            )
        run = progress.run
        if run.finished:
            logger.info(
                "period close queued",
                extra={"period": period, "queued": run.queued, "sent": progress.sent, "pages": run.pages},
            )
            return _answer(run, FINISHED, progress.sent)
        return _continue(wired, context, run, progress, invocation)

    return handle


def _invocation(event: dict[str, Any]) -> int:
    """Which invocation of its chain this is: 1 unless the event is a continuation."""
    value = event.get(CONTINUATION, 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise StartError(f"{CONTINUATION} must be a whole number from 1, not {value!r}")
    return value


def _continue(
    wired: Deps, context: Any, run: CloseRun, progress: Progress, invocation: int
) -> dict[str, Any]:
    """Out of time with customers left: invoke the next invocation of the chain, or fail at its end."""
    extra = {"period": run.period, "queued": run.queued, "sent": progress.sent, "invocation": invocation}
    if invocation >= MAX_INVOCATIONS:
        raise RunNotFinishedError(
            f"the close run of {run.period} is not finished after {invocation} invocations in a row "
            f'({run.queued} customers queued): invoke the starter with {{"period": "{run.period}"}} to '
            "carry on from its cursor"
        )
    if progress.pages == 0:  # every page this invocation sent, another starter recorded first
        logger.warning("out of time: another starter is carrying the close run on", extra=extra)
        return _answer(run, CONTINUING, progress.sent)
    arn = _unqualified(str(getattr(context, "invoked_function_arn", "")))
    if wired.lambda_client is None or not arn:
        logger.warning("out of time, no continuation: invoke the starter again to carry on", extra=extra)
        return _answer(run, CONTINUING, progress.sent)
    payload = {"period": run.period, CONTINUATION: invocation + 1}
    wired.lambda_client.invoke(FunctionName=arn, InvocationType="Event", Payload=json.dumps(payload).encode())
    logger.info("out of time: the next invocation carries on from the cursor", extra=extra)
    return _answer(run, CONTINUING, progress.sent)


def _unqualified(arn: str) -> str:
    """``arn:aws:lambda:region:account:function:name`` without a version or alias."""
    return ":".join(arn.split(":")[:7])


def _answer(run: CloseRun, status: str, sent: int) -> dict[str, Any]:
    return {"period": run.period, "status": status, "queued": run.queued, "sent": sent}
