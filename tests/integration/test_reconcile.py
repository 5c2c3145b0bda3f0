"""The reconciliation end to end on DynamoDB Local: counters written as the authorizer writes them, the
request ledger as files in the access log's format, the period closed against the Stripe double; then the
report (and `tollgate reconcile`) must balance to zero, and flag exactly the customer a fault was put into."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.integration.test_period_close import HYBRID, PAYG, PERIOD, World, close_time, make_world
from tests.unit.test_reconcile_ledger_sql import record, write
from tollgate.billing.close.service import close_period
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.ledger.duckdb_ledger import DuckDbLedger
from tollgate.ledger.reconcile import reconcile_period
from tollgate.ledger.report import Reason
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

CHECKED_AT = close_time(PERIOD) + timedelta(days=2)  # the ledger has landed; the next close is a month off
COSTS = (1, 25, 1, 1, 25)  # GET /v1/search, POST /v1/generate, ...


@pytest.fixture(scope="module")
def running_double() -> Iterator[StripeDouble]:
    with StripeDouble() as double:
        yield double


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:
    return make_world(store, running_double)


@dataclass
class Traffic:
    """Requests through the gateway: each allowed one counted (as the authorizer does) and logged."""

    world: World
    root: Path
    records: list[dict[str, str]] = field(default_factory=list)
    sequence: int = 0

    def request(
        self, customer: str, cost: int, *, count: bool = True, log: bool = True, day: int = 5
    ) -> None:
        self.sequence += 1
        at = datetime(2026, 10, day, 12, 0, tzinfo=UTC) + timedelta(seconds=self.sequence)
        if count:
            self.world.count(customer, cost)  # ADD credits :c, requests 1 on the period's counter
        if log:
            self.records.append(record(f"{customer}-{self.sequence}", customer, cost, at=at))

    def refused(self, customer: str, reason: str) -> None:
        self.sequence += 1
        self.records.append(record(f"refused-{self.sequence}", customer, None, deny=reason))

    def flush(self) -> None:
        """Write the ledger files: every record once, some twice (Firehose redelivers), some gzipped."""
        write(self.root, self.records, name="part-0.jsonl")
        write(self.root, self.records[::3], name="part-1-redelivered.jsonl.gz")


def traffic_for_three_customers(world: World, root: Path, *, faults: bool = False) -> Traffic:
    world.customer("acme", PAYG)
    world.customer("beta", HYBRID)
    world.customer("gamma", PAYG)
    traffic = Traffic(world, root)
    for day, cost in enumerate(COSTS * 4, start=1):
        traffic.request("acme", cost, day=1 + day % 28)
        traffic.request("beta", cost * 2, day=1 + day % 28)
        traffic.request("gamma", cost, day=1 + day % 28)
    traffic.refused("acme", "credit_limit_reached")
    traffic.refused("-", "missing_api_key")
    traffic.records.append(record("unmetered-1", "gamma", 25, metered="false"))
    if faults:
        traffic.request("acme", 25, count=False)  # the counter write is lost: served, logged, never counted
        traffic.request("beta", 1, log=False)  # counted, but its ledger record is lost
    traffic.flush()
    return traffic


def close_all(world: World) -> None:
    summary = close_period(world.ledger, world.gateway, PERIOD, now=close_time(PERIOD))
    assert not summary.failed


def run_cli(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app,
        ["reconcile", "--period", PERIOD, "--ledger", str(root), *args],
        obj=AppContext(clock=lambda: CHECKED_AT),
    )
    return result.exit_code, result.output


def test_counters_ledger_and_invoices_balance(world: World, tmp_path: Path) -> None:
    traffic_for_three_customers(world, tmp_path)
    close_all(world)

    report = reconcile_period(world.store, DuckDbLedger(tmp_path), PERIOD, now=CHECKED_AT)

    assert report.ok, report.as_dict()
    assert [(row.customer_id, row.status, row.unexplained) for row in report.rows] == [
        ("acme", "ok", 0),
        ("beta", "ok", 0),
        ("gamma", "ok", 0),
    ]
    expected = sum(COSTS) * 4
    by_customer = {row.customer_id: row for row in report.rows}
    assert (by_customer["acme"].counters, by_customer["acme"].ledger, by_customer["acme"].invoiced) == (
        expected,
        expected,
        expected,
    )
    assert by_customer["beta"].invoiced == 2 * expected
    assert (by_customer["gamma"].unmetered_requests, by_customer["acme"].refused_requests) == (1, 1)
    assert report.anonymous_refused == 1

    code, output = run_cli(tmp_path, "--json")
    assert code == 0, output
    answer = json.loads(output)
    assert (answer["ok"], answer["totals"]["unexplained"], answer["flaggedCustomers"]) == (True, 0, [])
    code, output = run_cli(tmp_path)
    assert code == 0, output
    assert "0 flagged, 0 credits unexplained" in output


def test_late_usage_after_the_close_is_explained_until_the_next_close(world: World, tmp_path: Path) -> None:
    traffic = traffic_for_three_customers(world, tmp_path)
    close_all(world)
    traffic.request("gamma", 25, day=31)  # stamped 31 Oct, counted after the close: late usage
    traffic.flush()

    report = reconcile_period(world.store, DuckDbLedger(tmp_path), PERIOD, now=CHECKED_AT)

    assert report.ok
    (gamma,) = [row for row in report.rows if row.status != "ok"]
    assert gamma.customer_id == "gamma"
    assert [(d.reason, d.credits) for d in gamma.differences] == [(Reason.LATE_USAGE_PENDING, 25)]


def test_a_lost_counter_write_and_a_lost_ledger_record_are_flagged(world: World, tmp_path: Path) -> None:
    traffic_for_three_customers(world, tmp_path, faults=True)
    close_all(world)

    report = reconcile_period(world.store, DuckDbLedger(tmp_path), PERIOD, now=CHECKED_AT)

    assert [row.customer_id for row in report.flagged] == ["acme", "beta"]
    flags = {
        row.customer_id: [(d.reason, d.credits, d.requests) for d in row.differences]
        for row in report.flagged
    }
    assert flags == {
        "acme": [(Reason.LEDGER_WITHOUT_COUNTERS, -25, -1)],
        "beta": [(Reason.COUNTERS_WITHOUT_LEDGER, 1, 1)],
    }
    assert report.unexplained == 26

    code, output = run_cli(tmp_path)
    assert code == 1
    assert "2 customer(s) with unexplained differences in 2026-10: acme, beta" in output
    code, output = run_cli(tmp_path, "--customer", "gamma", "--json")
    assert code == 0, output
    assert [row["customer"] for row in json.loads(output)["rows"]] == ["gamma"]
    code, output = run_cli(tmp_path, "--customer", "beta", "--json")
    assert code == 1
    assert json.loads(output.split("\nerror:")[0])["flaggedCustomers"] == ["beta"]
