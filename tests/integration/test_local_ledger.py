"""The usage ledger in local mode: real HTTP requests through the local gateway, the real authorizer on
DynamoDB Local, and every request's record in the ledger directory, as the deployed stage writes it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from tests.conftest import make_customer, make_plan
from tollgate.accounts.keys import issue_key
from tollgate.dal.store import TollgateStore
from tollgate.domain.ledger import LOCAL_SUFFIX, RECORD_KEYS, LedgerRecord, partition_of, partition_prefix
from tollgate.domain.periods import period_of
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE, local_stack

pytestmark = pytest.mark.dynamodb_local

MALFORMED_KEY = "tg_live_not-a-key"


@dataclass
class Traffic:
    ledger_dir: Path
    sent: list[tuple[str, str, int]]  # (customer or case, path, status)
    lines: list[tuple[Path, str]]  # every ledger line and the file it is in
    counted: dict[str, int]  # customer -> credits on their counter this period
    period: str


def call(url: str, key: str | None, path: str, method: str = "GET") -> int:
    headers = {"x-api-key": key} if key else {}
    request = urllib.request.Request(url + path, headers=headers, method=method)  # noqa: S310 - the local gateway
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local gateway
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


class FailingCounterWrites:
    """Every DynamoDB UpdateItem fails as if DynamoDB were unreachable, while ``on`` (FAIL_OPEN's case)."""

    def __init__(self) -> None:
        self.on = False

    def __call__(self, **kwargs: Any) -> None:
        if self.on:
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")


@pytest.fixture(scope="module")
def traffic(dynamodb_local: DynamoDBLocal, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traffic]:
    saved = {name: os.environ.pop(name, None) for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "FAIL_OPEN")}
    os.environ["FAIL_OPEN"] = "true"  # only matters while the counter cannot be written
    failing = FailingCounterWrites()
    if boto3.DEFAULT_SESSION is None:
        boto3.setup_default_session()
    session = boto3.DEFAULT_SESSION
    assert session is not None
    # registered before the stack makes the authorizer's client, which copies the session's handlers
    session.events.register("before-call.dynamodb.UpdateItem", failing, unique_id="ledger-test-failing")
    ledger_dir = tmp_path_factory.mktemp("ledger")
    sent: list[tuple[str, str, int]] = []
    try:
        with local_stack(dynamodb_url=dynamodb_local.endpoint_url, ledger_dir=ledger_dir) as stack:
            assert stack.ledger_dir == ledger_dir
            store = TollgateStore(LOCAL_TABLE)
            capped = make_plan(
                id="capped",
                name="Capped",
                price_per_credit=Decimal("0.01"),
                credit_limit=30,
                route_costs={"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0},
            )
            store.put_plan(capped)
            store.put_customer(make_customer(capped, id="acme", stripe_customer_id="cus_acme"))
            store.put_customer(make_customer(capped, id="beta", stripe_customer_id="cus_beta"))
            now = datetime.now(UTC)
            keys = {c: issue_key(store, c, now=now - timedelta(minutes=1)).key for c in ("acme", "beta")}

            def send(case: str, path: str, method: str = "GET", key: str | None = None) -> None:
                sent.append((case, path, call(stack.gateway_url, key, path, method)))

            for _ in range(3):
                send("acme", "/v1/search", key=keys["acme"])  # 3
            send("acme", "/v1/generate", "POST", keys["acme"])  # 28
            send("acme", "/v1/generate", "POST", keys["acme"])  # 53 > 30: refused, not counted
            send("acme", "/v1/search", key=keys["acme"])  # 29
            send("acme", "/usage", key=keys["acme"])  # 0 credits
            send("acme", "/v1/search", key=keys["acme"])  # 30: exactly the cap
            send("acme", "/v1/search", key=keys["acme"])  # refused
            send("malformed", "/v1/search", key=MALFORMED_KEY)
            send("missing", "/v1/search")
            send("no route", "/nowhere", key=keys["acme"])
            send("beta", "/v1/search", key=keys["beta"])  # counted; the key is now cached
            failing.on = True
            send("beta", "/v1/search", key=keys["beta"])  # served unmetered (FAIL_OPEN)
            failing.on = False
            lines = [
                (path, line)
                for path in sorted(ledger_dir.rglob("*" + LOCAL_SUFFIX))
                for line in path.read_text().splitlines()
            ]
            period = period_of(now)
            counted = {c: store.read_usage(c, period).credits for c in ("acme", "beta")}
            yield Traffic(ledger_dir, sent, lines, counted, period)
        assert ledger_dir.is_dir()  # a ledger directory that was given is kept
    finally:
        session.events.unregister("before-call.dynamodb.UpdateItem", unique_id="ledger-test-failing")
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)


def records(traffic: Traffic) -> list[LedgerRecord]:
    return [LedgerRecord.parse(line) for _, line in traffic.lines]


def test_every_request_served_has_one_record_with_every_key_as_a_string(traffic: Traffic) -> None:
    assert [status for _, _, status in traffic.sent] == [
        200, 200, 200, 200, 403, 200, 200, 200, 403, 403, 403, 403, 200, 200
    ]  # fmt: skip
    raw = [json.loads(line) for _, line in traffic.lines]
    assert len(raw) == len(traffic.sent)
    assert all(list(record) == list(RECORD_KEYS) for record in raw)
    assert all(isinstance(value, str) and value for record in raw for value in record.values())
    assert len({record["requestId"] for record in raw}) == len(raw)


def test_records_land_in_their_period_and_day_partition(traffic: Traffic) -> None:
    for path, line in traffic.lines:
        record = LedgerRecord.parse(line)
        assert path.parent == traffic.ledger_dir / partition_prefix(*partition_of(record))
        assert partition_of(record)[0] == traffic.period


def test_allowed_requests_carry_the_authorizers_context_and_the_backends_answer(traffic: Traffic) -> None:
    allowed = [r for r in records(traffic) if r.customer_id == "acme" and r.deny_reason is None]
    assert [(r.http_method, r.resource_path, r.credits) for r in allowed] == [
        ("GET", "/v1/search", 1),
        ("GET", "/v1/search", 1),
        ("GET", "/v1/search", 1),
        ("POST", "/v1/generate", 25),
        ("GET", "/v1/search", 1),
        ("GET", "/usage", 0),
        ("GET", "/v1/search", 1),
    ]
    for record in allowed:
        assert (record.status, record.integration_status, record.metered) == (200, 200, True)
        assert (record.plan_id, record.plan_version, record.period) == ("capped", 1, traffic.period)
        assert record.key_id is not None
        assert record.integration_latency_ms is not None
        assert record.response_latency_ms is not None
        assert record.response_latency_ms >= record.integration_latency_ms


def test_refusals_carry_their_reason_and_no_credits(traffic: Traffic) -> None:
    refused = [r for r in records(traffic) if r.deny_reason is not None]
    assert [(r.resource_path, r.deny_reason) for r in refused] == [
        ("/v1/generate", "credit_limit_reached"),
        ("/v1/search", "credit_limit_reached"),
        ("/v1/search", "malformed_api_key"),
        ("/v1/search", "missing_api_key"),
    ]
    for record in refused:
        assert (record.status, record.integration_status, record.integration_latency_ms) == (403, None, None)
        assert (record.credits, record.metered, record.period) == (None, None, None)
    # a refusal names its customer once the key told who it is (decisions.Decision.deny)
    assert [r.customer_id for r in refused] == ["acme", "acme", None, None]


def test_a_request_on_no_route_is_recorded_without_an_authorizer(traffic: Traffic) -> None:
    (nowhere,) = [r for r in records(traffic) if r.resource_path is None]
    assert (nowhere.http_method, nowhere.status, nowhere.deny_reason, nowhere.customer_id) == (
        "GET",
        403,
        None,
        None,
    )


def test_an_unmetered_request_is_flagged_and_not_counted(traffic: Traffic) -> None:
    beta = [r for r in records(traffic) if r.customer_id == "beta"]
    assert [(r.status, r.metered, r.credits, r.counted_credits) for r in beta] == [
        (200, True, 1, 1),
        (200, False, 1, 0),
    ]


def test_the_credits_in_the_ledger_are_the_counters(traffic: Traffic) -> None:
    ledger: dict[str, int] = {}
    for record in records(traffic):
        if record.customer_id is not None:
            ledger[record.customer_id] = ledger.get(record.customer_id, 0) + record.counted_credits
    assert ledger == traffic.counted == {"acme": 30, "beta": 1}
