"""Close watchdog: some hours after the period close starts, check that every customer got a terminal record.

Invoked by EventBridge Scheduler (``{"trigger": "schedule", "scheduledTime": ...}``: the period just closed,
``tollgate.billing.close.trigger``) or by hand with ``{"period": "2026-10"}``, for instance to clear the alarm
after fixing a close. Counts the customers by close state (``tollgate.domain.close_progress``), logs the
unfinished and mismatched ones, and emits (namespace Tollgate, ``tollgate.billing.close.observability``)
``ClosesChecked``, ``ClosesUnfinished``, ``ClosesMismatched`` and ``CloseProblems``; the ``CloseProblems``
alarm pages on any problem. Customers whose record carries late usage waiting for an invoice in another
currency are logged (a warning, not an alarm: closing again changes nothing) and listed. It only reads: a run
changes nothing, so running it again is always safe.

With a request ledger (``LEDGER_RECONCILER_FUNCTION`` set), a check that finds the close complete then starts
the ledger reconciler for the period (``tollgate.billing.close.reconciler``; an asynchronous invocation, so
the reconciliation runs in its own time and its failures are its own). Starting it failing is logged and
counted in ``ReconciliationFailures``; the watchdog's check and answer stand. The answer then also says
``"reconciliation": "started" | "close_unfinished" | "not_started"``.

Returns ``{"period": ..., "counts": {state: customers}, "unfinished": [ids], "mismatched": [ids],
"waiting": [ids]}`` (the lists cut at 100 ids).

It reads the customers a Query page at a time (``PAGE_SIZE``) and their close records 100 at a time
(BatchGetItem), and keeps only the counts and the first 100 problems of each kind: its memory does not grow
with the number of customers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from typing import Any, Protocol, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from tollgate.billing.close.observability import (
    CLOSE_PROBLEMS,
    CLOSES_CHECKED,
    CLOSES_MISMATCHED,
    CLOSES_UNFINISHED,
    RECONCILIATION_FAILURES,
    logger,
    metrics,
)
from tollgate.billing.close.settings import WatchdogSettings
from tollgate.billing.close.trigger import period_to_close
from tollgate.dal.closes import BATCH_GET_LIMIT, get_closes
from tollgate.dal.store import TollgateStore
from tollgate.domain.close_progress import CloseProgress, CloseState, CustomerCloseState, close_progress

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
LISTED = 100  # customer ids per list in the answer and in each log line
PAGE_SIZE = 1000  # customers per Query page: one page (and 100 close records) in memory at a time


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    clock: Callable[[], datetime] = utc_now
    start_reconciliation: Callable[[str], None] | None = None  # the period: starts the ledger reconciler


def deps_from(settings: WatchdogSettings) -> Deps:
    reconciler = settings.reconciler_function
    return Deps(
        TollgateStore(settings.table_name),
        start_reconciliation=None
        if reconciler is None
        else lambda period: invoke_reconciler(reconciler, period),
    )


def invoke_reconciler(function_name: str, period: str) -> None:
    """Start the ledger reconciler for ``period`` (an asynchronous invocation: Lambda queues it)."""
    import boto3

    boto3.client("lambda").invoke(
        FunctionName=function_name,
        InvocationType="Event",
        Payload=json.dumps({"period": period}).encode(),
    )


def start_reconciliation(start: Callable[[str], None], progress: PeriodCheck) -> str:
    """Start the ledger reconciliation of a complete close; never fails the watchdog (logged and counted)."""
    if not progress.complete:
        logger.info("close not finished: the ledger is not reconciled yet", extra={"period": progress.period})
        return "close_unfinished"
    try:
        start(progress.period)
    except (ClientError, BotoCoreError) as error:
        logger.error(
            "the ledger reconciler could not be started",
            extra={"period": progress.period, "error": str(error)},
        )
        metrics.add_metric(name=RECONCILIATION_FAILURES, unit=MetricUnit.Count, value=1)
        return "not_started"
    logger.info("ledger reconciliation started", extra={"period": progress.period})
    return "started"


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(WatchdogSettings.from_env())


@dataclass
class PeriodCheck:
    """The close of a period, summed a page of customers at a time: the customers by state, how many are
    unfinished and mismatched, and only the first ``LISTED`` of each (by customer id: gsi1's order)."""

    period: str
    counts: dict[CloseState, int] = field(default_factory=lambda: dict.fromkeys(CloseState, 0))
    unfinished_count: int = 0
    mismatched_count: int = 0
    waiting_count: int = 0
    joined_after: int = 0
    unfinished: list[CustomerCloseState] = field(default_factory=list)  # the first LISTED
    mismatched: list[CustomerCloseState] = field(default_factory=list)  # the first LISTED
    waiting: list[CustomerCloseState] = field(default_factory=list)  # the first LISTED

    def add(self, page: CloseProgress) -> None:
        for state, count in page.counts.items():
            self.counts[state] += count
        self.unfinished_count += len(page.unfinished)
        self.mismatched_count += len(page.mismatched)
        self.waiting_count += len(page.waiting)
        self.joined_after += page.joined_after
        self.unfinished.extend(page.unfinished[: LISTED - len(self.unfinished)])
        self.mismatched.extend(page.mismatched[: LISTED - len(self.mismatched)])
        self.waiting.extend(page.waiting[: LISTED - len(self.waiting)])

    @property
    def customers(self) -> int:
        return sum(self.counts.values())

    @property
    def problems(self) -> int:
        return self.unfinished_count + self.mismatched_count

    @property
    def complete(self) -> bool:
        return self.problems == 0


def check_period(store: TollgateStore, period: str, page_size: int = PAGE_SIZE) -> PeriodCheck:
    """Every customer with its record of ``period``, a page at a time (``close_progress`` per 100)."""
    check = PeriodCheck(period)
    for customers in store.customer_pages(page_size=page_size):
        for start in range(0, len(customers), BATCH_GET_LIMIT):
            chunk = customers[start : start + BATCH_GET_LIMIT]
            records = get_closes(store.table, [customer.id for customer in chunk], period)
            check.add(close_progress(period, [(c, records.get(c.id)) for c in chunk]))
    return check


def observe(progress: PeriodCheck) -> None:
    """The metrics of one check, and a log line (an error naming the customers when there are problems)."""
    for name, value in (
        (CLOSES_CHECKED, progress.customers),
        (CLOSES_UNFINISHED, progress.unfinished_count),
        (CLOSES_MISMATCHED, progress.mismatched_count),
        (CLOSE_PROBLEMS, progress.problems),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    summary = {
        "period": progress.period,
        "counts": {str(state): count for state, count in progress.counts.items()},
        "joined_after": progress.joined_after,
    }
    if progress.waiting:
        logger.warning(
            "late usage carried in another currency, waiting for an invoice in it",
            extra={
                "period": progress.period,
                "waiting_count": progress.waiting_count,
                "waiting": [
                    {"customer_id": state.customer_id, "waiting": state.waiting} for state in progress.waiting
                ],
            },
        )
    if progress.complete:
        logger.info("period close complete", extra=summary)
        return
    logger.error(
        "period close incomplete: customers without a finalized or no_charge record, or mismatched totals",
        extra={
            **summary,
            "unfinished": [_line(state) for state in progress.unfinished[:LISTED]],
            "mismatched": [_line(state) for state in progress.mismatched[:LISTED]],
        },
    )


def answer(progress: PeriodCheck) -> dict[str, Any]:
    return {
        "period": progress.period,
        "counts": {str(state): count for state, count in progress.counts.items()},
        "unfinished": [state.customer_id for state in progress.unfinished[:LISTED]],
        "mismatched": [state.customer_id for state in progress.mismatched[:LISTED]],
        "waiting": [state.customer_id for state in progress.waiting[:LISTED]],
    }


def _line(state: CustomerCloseState) -> dict[str, Any]:
    return {
        "customer_id": state.customer_id,
        "state": str(state.state),
        "attempts": state.attempts,
        "last_error": state.last_error,
        "invoice_id": state.stripe_invoice_id,
    }


class HasClock(Protocol):
    @property
    def clock(self) -> Callable[[], datetime]: ...


D = TypeVar("D", bound=HasClock)


def period_handler(deps: Callable[[], D], run: Callable[[D, str], dict[str, Any]]) -> Handler:
    """A handler about one period (``tollgate.billing.close.trigger``): ``run(deps(), period)``'s answer,
    with the event logged and the metrics flushed. The watchdog's, and the ledger reconciler's."""

    @logger.inject_lambda_context(log_event=True)
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps()
        return run(wired, period_to_close(event, wired.clock()))

    return handle


def run_check(wired: Deps, period: str) -> dict[str, Any]:
    progress = check_period(wired.store, period)
    observe(progress)
    found = answer(progress)
    if wired.start_reconciliation is not None:
        found["reconciliation"] = start_reconciliation(wired.start_reconciliation, progress)
    return found


def make_handler(deps: Deps | None = None) -> Handler:
    """The watchdog over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""
    return period_handler(lambda: deps if deps is not None else default_deps(), run_check)


handler = make_handler()
