"""GET /usage/export end to end in local mode: real HTTP requests through the local gateway on two days and
two routes, the ledger it writes read back through DuckDB by the usage handler, and the export adding up to
what GET /usage reports; without a ledger, the counters' days; and ``tollgate usage export`` on the ledger."""

from __future__ import annotations

import csv
import io
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

import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.keys import issue_key
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.usage_api import handler as usage_api
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE, local_stack

pytestmark = pytest.mark.dynamodb_local

DAY_ONE = datetime(2026, 11, 16, 10, 0, tzinfo=UTC)
DAY_TWO = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
ROUTES = {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0, "GET /usage/export": 0}


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def call(url: str, key: str, path: str, method: str = "GET") -> Answer:
    request = urllib.request.Request(url + path, headers={"x-api-key": key}, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local gateway
            return Answer(
                int(answer.status), {k.lower(): v for k, v in answer.headers.items()}, answer.read().decode()
            )
    except urllib.error.HTTPError as error:
        return Answer(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read().decode())


@dataclass
class Exported:
    url: str
    key: str
    ledger_dir: Path
    export: Answer
    usage: dict[str, Any]


@pytest.fixture(scope="module")
def exported(dynamodb_local: DynamoDBLocal) -> Iterator[Exported]:
    saved = {name: os.environ.pop(name, None) for name in ("STRIPE_API_KEY", "STRIPE_API_BASE")}
    clock = [DAY_ONE]
    try:
        with local_stack(
            dynamodb_url=dynamodb_local.endpoint_url, clock=lambda: clock[0].timestamp()
        ) as stack:
            store = TollgateStore(LOCAL_TABLE)
            plan = store.put_plan(make_plan(price_per_credit=Decimal("0.001"), route_costs=ROUTES))
            store.put_customer(make_customer(plan, id="acme", stripe_customer_id="cus_acme"))
            key = issue_key(store, "acme", now=DAY_ONE - timedelta(days=1)).key
            url = stack.gateway_url
            for path, method in [("/v1/search", "GET")] * 3 + [("/v1/generate", "POST")]:
                assert call(url, key, path, method).status == 200
            clock[0] = DAY_TWO
            for path, method in [("/v1/generate", "POST")] * 2 + [("/v1/search", "GET")]:
                assert call(url, key, path, method).status == 200
            usage = json.loads(call(url, key, "/usage?period=2026-11").body)
            export = call(url, key, "/usage/export?period=2026-11&format=csv")
            assert stack.ledger_dir is not None
            yield Exported(url, key, stack.ledger_dir, export, usage)
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)


@pytest.fixture
def local_table(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a test reads itself, it reads from the local stack's table (on the tests' DynamoDB Local)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", dynamodb_local.endpoint_url)
    monkeypatch.setenv("TABLE_NAME", LOCAL_TABLE)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_export_is_a_csv_attachment_of_the_customers_period(exported: Exported) -> None:
    assert exported.export.status == 200
    assert exported.export.headers["content-type"].startswith("text/csv")
    assert exported.export.headers["content-disposition"] == 'attachment; filename="usage-acme-2026-11.csv"'


def test_the_export_has_each_day_and_route_of_the_ledger_sorted(exported: Exported) -> None:
    assert rows_of(exported.export.body) == [
        ["date", "route", "requests", "credits", "refunded"],
        ["2026-11-16", "GET /v1/search", "3", "3", "0"],
        ["2026-11-16", "POST /v1/generate", "1", "25", "0"],
        ["2026-11-17", "GET /usage", "1", "0", "0"],  # metered at 0 credits, like every /usage route
        ["2026-11-17", "GET /v1/search", "1", "1", "0"],
        ["2026-11-17", "POST /v1/generate", "2", "50", "0"],
    ]


def test_the_export_adds_up_to_the_usage_report(exported: Exported) -> None:
    rows = rows_of(exported.export.body)[1:]
    by_day = {line["date"]: line["credits"] for line in exported.usage["daily"] if line["requests"]}

    assert sum(int(row[3]) for row in rows) == exported.usage["creditsUsed"] == 79
    assert by_day == {"2026-11-16": 28, "2026-11-17": 51}
    assert {route["route"]: route["credits"] for route in exported.usage["routes"]} == {
        "GET /usage": 0,
        "GET /v1/search": 4,
        "POST /v1/generate": 75,
    }


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?period=2026-11&format=xlsx", "only csv"),
        ("?period=2026-13", "YYYY-MM"),
        ("?format=json", "only csv"),
    ],
)
def test_a_bad_format_or_period_is_a_400_that_says_why(exported: Exported, query: str, message: str) -> None:
    answer = call(exported.url, exported.key, "/usage/export" + query)

    assert answer.status == 400
    assert message in json.loads(answer.body)["message"]


def test_without_a_ledger_the_export_answers_each_day_for_all_routes_from_the_counters(
    exported: Exported, local_table: None
) -> None:
    handle = usage_api.make_handler(
        usage_api.Deps(TollgateStore(LOCAL_TABLE), clock=lambda: DAY_TWO, ledger=None)
    )
    event = rest_event("GET", "/usage/export", headers={}, epoch_ms=int(DAY_TWO.timestamp() * 1000))
    event.update(path="/usage/export", queryStringParameters={"period": "2026-11"})
    event["requestContext"]["authorizer"] = {"customerId": "acme"}

    answer = handle(event, CONTEXT)

    days = TollgateStore(LOCAL_TABLE).read_usage("acme", "2026-11").days
    assert answer["statusCode"] == 200
    assert rows_of(answer["body"]) == [
        ["date", "route", "requests", "credits", "refunded"],
        ["2026-11-16", "*", "4", "28", "0"],
        ["2026-11-17", "*", str(days[17].requests), "51", "0"],  # the /usage requests too, at 0 credits
    ]
    assert days[17].requests >= 5


def export_cli(*args: str) -> Any:
    context = AppContext(clock=lambda: DAY_TWO)
    return CliRunner().invoke(app, ["usage", "export", "acme", *args], obj=context)


def test_the_cli_exports_the_same_rows_and_each_request_from_the_ledger(
    exported: Exported, tmp_path: Path, local_table: None
) -> None:
    daily = export_cli("--period", "2026-11", "--ledger", str(exported.ledger_dir))
    written = tmp_path / "acme.csv"
    per_request = export_cli(
        "--period", "2026-11", "--ledger", str(exported.ledger_dir), "--per-request", "-o", str(written)
    )

    assert daily.exit_code == 0, daily.output
    exports = [row for row in rows_of(daily.stdout) if row[1] == "GET /usage/export"]  # since GET's answer
    assert [row for row in rows_of(daily.stdout) if row not in exports] == rows_of(exported.export.body)
    assert [row[3] for row in exports] == ["0"]
    assert per_request.exit_code == 0, per_request.output
    requests = rows_of(written.read_bytes().decode())
    assert requests[0][:4] == ["requestId", "requestTime", "method", "route"]
    # in time order; the fixed clock gives a day's requests one time, so within it only the set is known
    assert [row[1] for row in requests[1:]] == sorted(row[1] for row in requests[1:])
    assert sorted(row[3] for row in requests[1:5]) == ["GET /v1/search"] * 3 + ["POST /v1/generate"]
    assert {row[1] for row in requests[1:5]} == {str(int(DAY_ONE.timestamp() * 1000))}
    assert len({row[0] for row in requests[1:]}) == len(requests) - 1 >= 9  # each request once
    assert "written to" in per_request.stdout


def test_the_cli_without_a_ledger_exports_the_counters_days_and_needs_one_per_request(
    exported: Exported, local_table: None
) -> None:
    daily = export_cli("--period", "2026-11")
    refused = export_cli("--period", "2026-11", "--per-request")

    assert daily.exit_code == 0, daily.output
    assert rows_of(daily.stdout)[1][:2] == ["2026-11-16", "*"]
    assert refused.exit_code == 1
    assert "--ledger" in refused.output
