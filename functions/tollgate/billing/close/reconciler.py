"""Ledger reconciler: once a period's close has finished, prove counters = request ledger = invoices for it.

The close watchdog invokes it (asynchronously: the watchdog's own check is never held up nor failed by it)
with ``{"period": "2026-10"}`` when its check found the close complete; invoke it by hand with the same
event to reconcile again (after fixing a difference, to clear the alarm). It runs
``tollgate.ledger.reconcile.reconcile_period`` against the deployed ledger through Athena
(``tollgate.ledger.athena``; workgroup, database and table from ``tollgate.ledger.settings``) and emits
(namespace Tollgate, service of the period close) ``CustomersReconciled``, ``FlaggedCustomers`` and
``UnexplainedCredits``, with the period as metadata, and ``ReconciliationFailures`` (0, or 1 when the ledger
could not be read). It logs one warning per flagged customer: the customer id, the credits no rule
explains, and each difference (numbers and the rule's name; never a key).

Idempotent: it only reads (the table strongly consistent, the ledger deduplicated on ``requestId``), so a
second run for a period publishes the same facts; the alarms read the metrics' maximum, not their sum.

Athena failing (a failed, cancelled or timed-out query, an AWS error of the Athena client) is not an error of
the function: it is logged and counted in ``ReconciliationFailures``, which alarms, and the invocation ends
normally (Lambda would only retry into the same outage). Any other error (the table) fails the invocation:
Lambda retries it twice, then keeps the event in the function's failure queue.

A period whose records may still be on their way (less than the delivery delay after its end) is not
reconciled: its answer says so and nothing is published.

Returns ``{"period", "status": "ok" | "flagged" | "failed" | "too_early", "customers", "flagged":
[ids] (first 100), "unexplained"}``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from tollgate.billing.close.observability import (
    CUSTOMERS_RECONCILED,
    FLAGGED_CUSTOMERS,
    RECONCILIATION_FAILURES,
    UNEXPLAINED_CREDITS,
    logger,
    metrics,
)
from tollgate.billing.close.watchdog import Handler, period_handler, utc_now
from tollgate.dal.store import TollgateStore
from tollgate.domain.periods import period_end
from tollgate.ledger.queries import (
    CustomerLedger,
    DailyRouteUsage,
    LedgerQueries,
    LedgerQueryError,
    LedgerRequest,
)
from tollgate.ledger.reconcile import reconcile_period
from tollgate.ledger.report import DEFAULT_DELIVERY_DELAY, Reconciliation, Row
from tollgate.ledger.settings import AthenaLedgerNames, athena_ledger
from tollgate.settings import TABLE_NAME, SettingsError, required

LISTED = 100  # customer ids in the answer
# One Athena query per run: well inside the function's 15 minutes, leaving the rest to the table's reads.
ATHENA_TIMEOUT_SECONDS = 300.0
T = TypeVar("T")


@dataclass(frozen=True)
class ReconcilerSettings:
    table_name: str
    ledger: AthenaLedgerNames

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ReconcilerSettings:
        names = AthenaLedgerNames.from_env(env)
        if names is None:
            raise SettingsError("the ledger reconciler needs the ledger's Athena workgroup and database")
        return cls(table_name=required(env, TABLE_NAME), ledger=names)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    ledger: LedgerQueries
    clock: Callable[[], datetime] = utc_now
    delivery_delay: timedelta = DEFAULT_DELIVERY_DELAY


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    settings = ReconcilerSettings.from_env()
    ledger = athena_ledger(settings.ledger, timeout_seconds=ATHENA_TIMEOUT_SECONDS)
    return Deps(TollgateStore(settings.table_name), ledger)


class LedgerUnreadable:
    """``ledger``, with the AWS errors of its client raised as ``LedgerQueryError``: the reconciliation tells
    the ledger (Athena) failing apart from the table failing."""

    def __init__(self, ledger: LedgerQueries) -> None:
        self._ledger = ledger

    def customer_totals(self, period: str, customer_id: str | None = None) -> list[CustomerLedger]:
        return _asked(lambda: self._ledger.customer_totals(period, customer_id))

    def daily_route_usage(self, period: str, customer_id: str) -> list[DailyRouteUsage]:
        return _asked(lambda: self._ledger.daily_route_usage(period, customer_id))

    def customer_requests(self, period: str, customer_id: str) -> list[LedgerRequest]:
        return _asked(lambda: self._ledger.customer_requests(period, customer_id))


def _asked(question: Callable[[], T]) -> T:
    try:
        return question()
    except (ClientError, BotoCoreError) as error:
        raise LedgerQueryError(f"the ledger could not be read: {error}") from error


@dataclass(frozen=True)
class Outcome:
    """One run for a period: the report, or why there is none."""

    period: str
    report: Reconciliation | None = None
    failure: str | None = None  # the ledger could not be read
    too_early: bool = False  # within the delivery delay of the period's end

    @property
    def status(self) -> str:
        if self.too_early:
            return "too_early"
        if self.report is None:
            return "failed"
        return "ok" if self.report.ok else "flagged"

    def facts(self) -> dict[str, int]:
        """The metrics a run publishes (none before the delivery delay has passed)."""
        if self.too_early:
            return {}
        if self.report is None:
            return {RECONCILIATION_FAILURES: 1}
        return {
            RECONCILIATION_FAILURES: 0,
            CUSTOMERS_RECONCILED: len(self.report.rows),
            FLAGGED_CUSTOMERS: len(self.report.flagged),
            UNEXPLAINED_CREDITS: self.report.unexplained,
        }


def reconcile_closed(deps: Deps, period: str) -> Outcome:
    """Reconcile ``period`` once its ledger records have landed; the ledger failing is an outcome."""
    now = deps.clock()
    if now < period_end(period) + deps.delivery_delay:
        return Outcome(period, too_early=True)
    try:
        report = reconcile_period(
            deps.store, LedgerUnreadable(deps.ledger), period, now=now, delivery_delay=deps.delivery_delay
        )
    except LedgerQueryError as error:
        return Outcome(period, failure=str(error))
    return Outcome(period, report=report)


def flagged_line(row: Row) -> dict[str, Any]:
    """What is logged of a flagged customer: its id, the numbers and the rules' names."""
    return {
        "customer_id": row.customer_id,
        "unexplained": row.unexplained,
        "counters": row.counters,
        "ledger": row.ledger,
        "invoiced": row.invoiced,
        "differences": [
            {
                "between": str(found.between),
                "reason": str(found.reason),
                "explained": found.explained,
                "credits": found.credits,
                "requests": found.requests,
            }
            for found in row.differences
        ],
    }


def observe(outcome: Outcome) -> None:
    metrics.add_metadata(key="period", value=outcome.period)
    for name, value in outcome.facts().items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    if outcome.too_early:
        logger.info("ledger records may still be landing: not reconciled", extra={"period": outcome.period})
        return
    if outcome.report is None:
        logger.error(
            "the ledger could not be read: the period was not reconciled",
            extra={"period": outcome.period, "error": outcome.failure},
        )
        return
    for row in outcome.report.flagged:
        logger.warning(
            "ledger reconciliation: credits no rule explains",
            extra={"period": outcome.period, **flagged_line(row)},
        )
    logger.info(
        "ledger reconciliation",
        extra={"period": outcome.period, "status": outcome.status, **outcome.report.totals()},
    )


def answer(outcome: Outcome) -> dict[str, Any]:
    report = outcome.report
    return {
        "period": outcome.period,
        "status": outcome.status,
        "customers": 0 if report is None else len(report.rows),
        "flagged": [] if report is None else [row.customer_id for row in report.flagged[:LISTED]],
        "unexplained": 0 if report is None else report.unexplained,
    }


def run(wired: Deps, period: str) -> dict[str, Any]:
    outcome = reconcile_closed(wired, period)
    observe(outcome)
    return answer(outcome)


def make_handler(deps: Deps | None = None) -> Handler:
    """The reconciler over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""
    return period_handler(lambda: deps if deps is not None else default_deps(), run)


handler = make_handler()
