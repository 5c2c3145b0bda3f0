"""The ledger reconciler the close watchdog starts: what it publishes for a clean period, a flagged one and a
ledger (Athena) that cannot be read, that a second run publishes the same, and how the watchdog starts it.
The table is moto's; the ledger is a fake adapter."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.conftest import CONTEXT, make_customer, make_plan
from tollgate.billing.close import reconciler, watchdog
from tollgate.billing.close.observability import (
    CUSTOMERS_RECONCILED,
    FLAGGED_CUSTOMERS,
    RECONCILIATION_FAILURES,
    UNEXPLAINED_CREDITS,
)
from tollgate.billing.close.settings import LEDGER_RECONCILER_FUNCTION, WatchdogSettings
from tollgate.dal.store import TollgateStore
from tollgate.ledger.queries import CustomerLedger, DailyRouteUsage, LedgerQueryError, LedgerRequest
from tollgate.ledger.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP
from tollgate.settings import SettingsError

PERIOD = "2026-10"
AFTER_THE_CLOSE = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)  # the watchdog's time: the close has finished
IN_OCTOBER = datetime(2026, 10, 3, 9, 0, tzinfo=UTC)


class FakeLedger:
    """The ledger's answer for the period, or the error asking it raises."""

    def __init__(self, totals: list[CustomerLedger] | None = None, error: Exception | None = None) -> None:
        self.totals = totals or []
        self.error = error
        self.asked: list[tuple[str, str | None]] = []

    def customer_totals(self, period: str, customer_id: str | None = None) -> list[CustomerLedger]:
        self.asked.append((period, customer_id))
        if self.error is not None:
            raise self.error
        return self.totals

    def daily_route_usage(self, period: str, customer_id: str) -> list[DailyRouteUsage]:
        raise AssertionError("the reconciliation asks only for the totals")

    def customer_requests(self, period: str, customer_id: str) -> list[LedgerRequest]:
        raise AssertionError("the reconciliation asks only for the totals")


@pytest.fixture
def acme(store: TollgateStore) -> TollgateStore:
    """One customer during the period: nothing counted, no close record."""
    plan = make_plan()
    store.put_plan(plan)
    store.put_customer(make_customer(plan, id="acme", created_at=IN_OCTOBER))
    return store


def deps(store: TollgateStore, ledger: FakeLedger, at: datetime = AFTER_THE_CLOSE) -> reconciler.Deps:
    return reconciler.Deps(store, ledger, clock=lambda: at)


def published(stdout: str) -> Counter[str]:
    """Every EMF metric printed (Powertools flushes one JSON document per invocation), summed."""
    totals: Counter[str] = Counter()
    for line in stdout.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            document = json.loads(line)
            for directive in document["_aws"]["CloudWatchMetrics"]:
                for metric in directive["Metrics"]:
                    values = document[metric["Name"]]
                    totals[metric["Name"]] += int(sum(values) if isinstance(values, list) else values)
    return totals


def test_a_clean_period_publishes_zeroes(acme: TollgateStore) -> None:
    ledger = FakeLedger([CustomerLedger("acme")])
    outcome = reconciler.reconcile_closed(deps(acme, ledger), PERIOD)
    assert ledger.asked == [(PERIOD, None)]  # every customer at once
    assert outcome.status == "ok"
    assert outcome.facts() == {
        RECONCILIATION_FAILURES: 0,
        CUSTOMERS_RECONCILED: 1,
        FLAGGED_CUSTOMERS: 0,
        UNEXPLAINED_CREDITS: 0,
    }


def test_a_flagged_period_publishes_the_unexplained_credits_and_logs_each_customer(
    acme: TollgateStore, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # the ledger records 25 counted credits the counters do not have: a lost counter write
    ledger = FakeLedger([CustomerLedger("acme", requests=1, metered_requests=1, metered_credits=25)])
    handle = reconciler.make_handler(deps(acme, ledger))
    answer = handle({"period": PERIOD}, CONTEXT)
    assert answer == {
        "period": PERIOD,
        "status": "flagged",
        "customers": 1,
        "flagged": ["acme"],
        "unexplained": 25,
    }
    out = capsys.readouterr().out
    assert published(out) == {
        CUSTOMERS_RECONCILED: 1,
        FLAGGED_CUSTOMERS: 1,
        UNEXPLAINED_CREDITS: 25,
        RECONCILIATION_FAILURES: 0,
    }
    (flagged,) = [r for r in caplog.records if r.getMessage().endswith("credits no rule explains")]
    assert flagged.levelname == "WARNING"
    line = {name: getattr(flagged, name) for name in ("period", "customer_id", "unexplained", "differences")}
    assert (line["period"], line["customer_id"], line["unexplained"]) == (PERIOD, "acme", 25)
    assert [d["reason"] for d in line["differences"]] == ["ledger_without_counters"]
    assert "key" not in json.dumps(line).lower()


@pytest.mark.parametrize(
    "error",
    [
        LedgerQueryError("Athena query q-1 failed: HIVE_CURSOR_ERROR"),
        ClientError({"Error": {"Code": "InternalServerException", "Message": "down"}}, "StartQueryExecution"),
    ],
)
def test_athena_failing_is_published_not_raised(
    acme: TollgateStore,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    error: Exception,
) -> None:
    handle = reconciler.make_handler(deps(acme, FakeLedger(error=error)))
    answer = handle({"period": PERIOD}, CONTEXT)  # the invocation ends normally: no retry into the outage
    assert answer == {"period": PERIOD, "status": "failed", "customers": 0, "flagged": [], "unexplained": 0}
    out = capsys.readouterr().out
    assert published(out) == {RECONCILIATION_FAILURES: 1}
    (logged,) = [r for r in caplog.records if "could not be read" in r.getMessage()]
    assert logged.levelname == "ERROR"


def test_the_table_failing_is_an_error_of_the_function(store: TollgateStore) -> None:
    # (no table: its error is not the ledger's, so Lambda retries it and then keeps the event)
    store.table.delete()
    with pytest.raises(ClientError):
        reconciler.reconcile_closed(deps(store, FakeLedger()), PERIOD)


def test_a_second_run_publishes_the_same_facts(acme: TollgateStore) -> None:
    ledger = FakeLedger([CustomerLedger("acme", requests=2, metered_requests=2, metered_credits=7)])
    first = reconciler.reconcile_closed(deps(acme, ledger), PERIOD)
    second = reconciler.reconcile_closed(deps(acme, ledger), PERIOD)
    assert first.facts() == second.facts()
    assert first.facts()[UNEXPLAINED_CREDITS] == 7
    assert reconciler.answer(first) == reconciler.answer(second)


def test_within_the_delivery_delay_nothing_is_reconciled_nor_published(acme: TollgateStore) -> None:
    ledger = FakeLedger()
    early = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=29)
    outcome = reconciler.reconcile_closed(deps(acme, ledger, at=early), PERIOD)
    assert (outcome.status, outcome.facts(), ledger.asked) == ("too_early", {}, [])


def test_the_reconciler_needs_the_ledgers_names() -> None:
    env = {"TABLE_NAME": "t", LEDGER_WORKGROUP: "wg", LEDGER_DATABASE: "db"}
    settings = reconciler.ReconcilerSettings.from_env(env)
    assert (settings.ledger.workgroup, settings.ledger.database, settings.ledger.table) == (
        "wg",
        "db",
        "ledger",
    )
    assert (
        reconciler.ReconcilerSettings.from_env({**env, LEDGER_TABLE: "requests"}).ledger.table == "requests"
    )
    with pytest.raises(SettingsError, match="workgroup and database"):
        reconciler.ReconcilerSettings.from_env({"TABLE_NAME": "t", LEDGER_WORKGROUP: "wg"})


# --- the watchdog starts it ---------------------------------------------------------------------------


def test_the_watchdog_starts_the_reconciliation_of_a_complete_close_only() -> None:
    started: list[str] = []
    assert watchdog.start_reconciliation(started.append, watchdog.PeriodCheck(PERIOD)) == "started"
    unfinished = watchdog.PeriodCheck(PERIOD, unfinished_count=1)
    assert watchdog.start_reconciliation(started.append, unfinished) == "close_unfinished"
    assert started == [PERIOD]


def test_the_watchdog_stands_when_the_reconciler_cannot_be_started(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(period: str) -> None:
        raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}}, "Invoke")

    @watchdog.metrics.log_metrics
    def run(event: dict[str, Any], context: Any) -> str:
        return watchdog.start_reconciliation(refuse, watchdog.PeriodCheck(PERIOD))

    assert run({}, CONTEXT) == "not_started"
    assert published(capsys.readouterr().out) == {RECONCILIATION_FAILURES: 1}


def test_the_watchdog_knows_the_reconciler_only_with_a_ledger() -> None:
    assert WatchdogSettings.from_env({"TABLE_NAME": "t"}).reconciler_function is None
    with_ledger = WatchdogSettings.from_env({"TABLE_NAME": "t", LEDGER_RECONCILER_FUNCTION: "rec"})
    assert with_ledger.reconciler_function == "rec"
    assert watchdog.deps_from(with_ledger).start_reconciliation is not None
    assert watchdog.deps_from(WatchdogSettings("t")).start_reconciliation is None
