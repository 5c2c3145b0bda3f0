"""Bill only what succeeded, in local mode: real HTTP requests through the local gateway to the sample backend
(``?fail=503`` makes it fail), the real authorizer on DynamoDB Local, the ledger the gateway writes, and its
local delivery (``tollgate_local.deliveries``: Firehose, S3's notification and the refund function) refunding
the failed requests of plans that refund them, once per request, however often the ledger is delivered."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits
from tollgate.dal.refunds import RefundLedger
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import RouteUsage
from tollgate.domain.periods import period_of
from tollgate.domain.refunds import Refund
from tollgate.ledger.duckdb_ledger import DuckDbLedger
from tollgate.ledger.reconcile import reconcile_period
from tollgate.ledger.report import Reason
from tollgate.refunds.service import RefundRun
from tollgate_local.deliveries import LedgerDelivery
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE, LocalStack, local_stack

pytestmark = pytest.mark.dynamodb_local

ROUTES = {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0}
REFUNDING = make_plan(id="refunding", name="Refunding", route_costs=ROUTES, refund_statuses=["5xx"])
PLAIN = make_plan(id="plain", name="Plain", route_costs=ROUTES)
PREPAID = make_plan(
    id="credits",
    name="Credits",
    billing="prepaid",
    price_per_credit=Decimal("0.002"),
    top_up_url="https://api.example.test/billing/credits",
    route_costs=ROUTES,
    refund_statuses=["5xx"],
)
SEARCH, GENERATE = ("GET", "/v1/search"), ("POST", "/v1/generate")


def call(url: str, key: str, route: tuple[str, str], query: str = "") -> tuple[int, dict[str, Any]]:
    method, path = route
    request = urllib.request.Request(  # noqa: S310 - the local gateway
        url + path + query,
        headers={"x-api-key": key},
        method=method,
        data=b"{}" if method == "POST" else None,
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local gateway
            return int(answer.status), json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@dataclass
class Refunds:
    stack: LocalStack
    store: TollgateStore
    period: str
    statuses: dict[str, list[int]]  # customer -> what each request answered, in order
    counted: dict[str, int]  # customer -> credits counted before the delivery
    first: RefundRun  # the first flush
    again: RefundRun  # a flush with nothing new written
    redelivered: RefundRun  # the whole ledger delivered again
    after: dict[str, int]  # customer -> credits after the redelivery


@pytest.fixture(scope="class")
def refunds(dynamodb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Refunds]:
    saved = {name: os.environ.pop(name, None) for name in ("STRIPE_API_KEY", "STRIPE_API_BASE")}
    ledger_dir = tmp_path_factory.mktemp("ledger")
    try:
        # no delivery on the thread's tick within the test (an hour): only flush() delivers
        with local_stack(
            dynamodb_url=dynamodb_local.endpoint_url, ledger_dir=ledger_dir, delivery_interval=3600
        ) as stack:
            store = TollgateStore(LOCAL_TABLE)
            for plan in (REFUNDING, PLAIN, PREPAID):
                store.put_plan(plan)
            now = datetime.now(UTC)
            customers = {"acme": REFUNDING, "beta": PLAIN, "umbrella": PREPAID}
            for customer_id, plan in customers.items():
                store.put_customer(
                    make_customer(
                        plan, id=customer_id, stripe_customer_id=f"cus_{customer_id}", created_at=now
                    )
                )
            add_credits(store, "umbrella", credits=100, reference="grant-1", now=now)
            keys = {c: issue_key(store, c, now=now - timedelta(minutes=1)).key for c in customers}
            statuses: dict[str, list[int]] = {c: [] for c in customers}

            def send(customer_id: str, route: tuple[str, str], query: str = "") -> None:
                statuses[customer_id].append(call(stack.gateway_url, keys[customer_id], route, query)[0])

            for _ in range(3):
                send("acme", SEARCH)  # 1 credit each, kept
            send("acme", GENERATE, "?fail=503")  # 25, refunded
            send("acme", GENERATE, "?fail=503")  # 25, refunded
            send("acme", SEARCH, "?fail=500")  # 1, refunded
            send("acme", SEARCH, "?fail=429")  # 1, kept: the plan refunds 5xx
            send("acme", GENERATE)  # 25, kept
            send("beta", GENERATE, "?fail=503")  # 25, kept: beta's plan refunds nothing
            send("beta", SEARCH)  # 1
            send("umbrella", GENERATE, "?fail=502")  # 25 off the wallet, then back on it
            send("umbrella", SEARCH)  # 1
            period = period_of(now)
            counted = {c: store.read_usage(c, period).credits for c in customers}
            first = stack.deliveries.flush()
            again = stack.deliveries.flush()
            redelivered = stack.deliveries.redeliver()
            after = {c: store.read_usage(c, period).credits for c in customers}
            yield Refunds(stack, store, period, statuses, counted, first, again, redelivered, after)
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)


class TestLocalRefunds:
    """One scenario (the class's stack: only flush() delivers), read by each test."""

    def test_the_gateway_answers_what_the_backend_answered(self, refunds: Refunds) -> None:
        assert refunds.statuses == {
            "acme": [200, 200, 200, 503, 503, 500, 429, 200],
            "beta": [503, 200],
            "umbrella": [502, 200],
        }

    def test_the_sample_backend_fails_on_request_and_refuses_a_status_that_is_not_an_error(
        self, refunds: Refunds
    ) -> None:
        key = issue_key(refunds.store, "beta", now=datetime.now(UTC) - timedelta(minutes=1)).key
        status, body = call(refunds.stack.gateway_url, key, SEARCH, "?fail=503")
        assert (status, body["error"]) == (503, "backend_failure")
        status, body = call(refunds.stack.gateway_url, key, SEARCH, "?fail=200")
        assert (status, body["error"]) == (400, "invalid_fail")

    def test_the_authorizer_counted_every_request_it_let_through(self, refunds: Refunds) -> None:
        assert refunds.counted == {"acme": 3 + 50 + 1 + 1 + 25, "beta": 26, "umbrella": 26}

    def test_a_delivery_refunds_the_failed_requests_of_plans_that_refund_them(self, refunds: Refunds) -> None:
        run = refunds.first
        assert (run.duplicates, run.skipped, run.malformed) == (0, [], 0)
        assert sorted((r.customer_id, r.credits, r.status) for r in run.refunded) == [
            ("acme", 1, 500),
            ("acme", 25, 503),
            ("acme", 25, 503),
            ("umbrella", 25, 502),
        ]
        assert all(isinstance(r, Refund) and r.period == refunds.period for r in run.refunded)
        markers = RefundLedger(refunds.store).list("acme", refunds.period)
        assert sorted(m.request_id for m in markers) == sorted(
            r.request_id for r in run.refunded if r.customer_id == "acme"
        )

    def test_the_counters_hold_only_what_succeeded_and_show_what_was_refunded(self, refunds: Refunds) -> None:
        assert refunds.after == {"acme": 29, "beta": 26, "umbrella": 1}
        acme = refunds.store.read_usage("acme", refunds.period)
        assert acme.requests == 8  # a refund takes the credits back, not the request
        assert acme.refunded == RouteUsage(credits=51, requests=3)
        assert acme.routes == {
            "GET /v1/search": RouteUsage(credits=4, requests=5),
            "POST /v1/generate": RouteUsage(credits=25, requests=3),
        }
        assert sum(day.credits for day in acme.days.values()) == 29
        assert refunds.store.read_usage("beta", refunds.period).refunded == RouteUsage()
        assert refunds.store.read_usage("umbrella", refunds.period).refunded == RouteUsage(
            credits=25, requests=1
        )
        assert refunds.store.read_balance("umbrella").credits == 100 - 1  # the failed request's 25 back

    def test_get_usage_shows_the_credits_of_what_succeeded(self, refunds: Refunds) -> None:
        key = issue_key(refunds.store, "acme", now=datetime.now(UTC) - timedelta(minutes=1)).key
        status, body = call(refunds.stack.gateway_url, key, ("GET", "/usage"))
        assert status == 200
        assert body["creditsUsed"] == 29

    def test_a_record_delivered_again_refunds_nothing_more(self, refunds: Refunds) -> None:
        assert refunds.again == RefundRun()  # nothing new written: nothing delivered
        assert refunds.redelivered.refunded == []
        assert refunds.redelivered.duplicates == len(refunds.first.refunded) == 4
        assert refunds.stack.deliveries.delivered.credits == 76  # everything delivered, once refunded

    def test_the_reconciliation_explains_the_refunds(self, refunds: Refunds) -> None:
        report = reconcile_period(
            refunds.store,
            DuckDbLedger(refunds.stack.ledger_dir),
            refunds.period,
            now=datetime.now(UTC),
            delivery_delay=timedelta(0),
        )
        assert report.unexplained == 0
        assert report.ok
        rows = {row.customer_id: row for row in report.rows}
        assert (rows["acme"].counters, rows["acme"].ledger, rows["acme"].refunded) == (29, 80, 51)
        assert any(d.reason is Reason.REFUNDED and d.credits == -51 for d in rows["acme"].differences)
        assert rows["beta"].refunded == 0
        assert not any(d.reason is Reason.REFUNDED for d in rows["beta"].differences)


def test_the_thread_delivers_on_its_own_and_only_what_is_written_after_it_starts(
    dynamodb_local: DynamoDBLocal, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    earlier = tmp_path / "period=2026-01" / "day=2026-01-02" / "gateway-earlier.jsonl"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("not a record\n")  # an earlier stack's ledger: not delivered
    made: list[Refund] = []
    try:
        with local_stack(
            dynamodb_url=dynamodb_local.endpoint_url,
            ledger_dir=tmp_path,
            on_refund=made.append,
            delivery_interval=0.05,
        ) as stack:
            store = TollgateStore(LOCAL_TABLE)
            store.put_plan(REFUNDING)
            store.put_customer(make_customer(REFUNDING, stripe_customer_id="cus_acme"))
            key = issue_key(store, "acme", now=datetime.now(UTC) - timedelta(minutes=1)).key
            assert call(stack.gateway_url, key, GENERATE, "?fail=503")[0] == 503
            deadline = time.monotonic() + 10
            while not made and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [(r.customer_id, r.credits, r.status) for r in made] == [("acme", 25, 503)]
            assert store.read_usage("acme", period_of(datetime.now(UTC))).credits == 0
            deliveries: LedgerDelivery = stack.deliveries
            assert deliveries.delivered.malformed == 0  # the earlier file's line was never read
            assert deliveries.failures == 0
        assert deliveries.flush() == RefundRun()  # stopped: the thread is gone, everything was delivered
    finally:
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)


def test_only_complete_lines_are_delivered(local_table: str, tmp_path: Path) -> None:
    store = TollgateStore(local_table)
    delivery = LedgerDelivery(tmp_path, store)
    partial = tmp_path / "period=2026-11" / "day=2026-11-15" / "gateway-1.jsonl"
    partial.parent.mkdir(parents=True)
    partial.write_text('not a record\n{"requestId": ')  # a line being written
    assert delivery.flush().malformed == 1
    assert delivery.records == 1
    with partial.open("a") as file:
        file.write('"x"}\n')
    assert delivery.flush().malformed == 1  # the rest of the line, once complete: not a record either
    assert delivery.records == 2
    assert delivery.flush() == RefundRun()
