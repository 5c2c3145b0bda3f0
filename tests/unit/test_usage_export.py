"""A customer's usage export: the ledger's rows per day and route (DuckDB over ledger files written here, the
same SQL Athena gets), the counters' days without a ledger, and the CSV texts."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber

from tests.unit.test_reconcile_ledger_sql import record, write
from tollgate.dal.counter_item import route_code
from tollgate.domain.models import RouteUsage, Usage
from tollgate.errors import InvalidInputError
from tollgate.ledger.athena import AthenaLedger
from tollgate.ledger.duckdb_ledger import DuckDbLedger
from tollgate.ledger.export import (
    checked_export,
    counter_days,
    daily_usage,
    daily_usage_csv,
    export_filename,
    requests_csv,
)
from tollgate.ledger.queries import DAILY_ROUTE_USAGE_SQL, DailyRouteUsage, LedgerRequest

PERIOD = "2026-10"


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 10, day, hour, tzinfo=UTC)


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


class NoCounters:
    def read_usage(self, customer_id: str, period: str, shards: int = 1) -> Usage:
        raise AssertionError("with a ledger, the counters are not read")


def test_the_ledger_export_counts_each_metered_request_once_per_day_and_route(tmp_path: Path) -> None:
    twice = record("r-1", credits=25, at=at(3), route="/v1/generate")
    write(tmp_path, [twice, record("r-2", at=at(3)), record("r-3", at=at(3, 23)), record("r-4", at=at(1))])
    write(tmp_path, [twice], name="part-1.jsonl")  # Firehose delivered r-1 again
    write(
        tmp_path,
        [
            record("r-5", at=at(3), deny="credit_limit_reached"),  # refused: not counted
            record("r-6", at=at(3), deny="metering_unavailable", metered="false"),
            record("r-7", at=at(3), metered="false"),  # served unmetered (FAIL_OPEN): never billed
            record("r-8", customer="globex", at=at(3)),
            record("r-9", at=datetime(2026, 11, 1, tzinfo=UTC)),  # next period
        ],
        name="part-2.jsonl",
    )

    rows = daily_usage(DuckDbLedger(tmp_path), NoCounters(), "acme", PERIOD)

    assert rows == [
        DailyRouteUsage("2026-10-01", "GET /v1/search", requests=1, credits=1),
        DailyRouteUsage("2026-10-03", "GET /v1/generate", requests=1, credits=25),
        DailyRouteUsage("2026-10-03", "GET /v1/search", requests=2, credits=2),
    ]


@dataclass(frozen=True)
class Refunded:
    day: int
    route_code: str
    credits: int


def test_refunded_requests_are_shown_apart_from_the_billed_credits_of_their_day_and_route(
    tmp_path: Path,
) -> None:
    """The ledger keeps a failed request as it was made; its refund (a marker with its day and route code)
    takes its credits out of the day and route's billed credits, into ``refunded``."""
    write(
        tmp_path,
        [
            record("r-1", at=at(3), credits=25, route="/v1/generate"),
            record("r-2", at=at(3), credits=25, route="/v1/generate"),  # failed: refunded
            record("r-3", at=at(3)),
            record("r-4", at=at(4), credits=25, route="/v1/generate"),
        ],
    )
    refunds = [Refunded(3, route_code("GET /v1/generate"), 25)]

    rows = daily_usage(DuckDbLedger(tmp_path), NoCounters(), "acme", PERIOD, refunds=refunds)

    assert rows == [
        DailyRouteUsage("2026-10-03", "GET /v1/generate", requests=2, credits=25, refunded=25),
        DailyRouteUsage("2026-10-03", "GET /v1/search", requests=1, credits=1),
        DailyRouteUsage("2026-10-04", "GET /v1/generate", requests=1, credits=25),
    ]


def test_without_a_ledger_a_days_refunds_are_shown_beside_its_counters(tmp_path: Path) -> None:
    counters = Counters({3: RouteUsage(credits=30, requests=4), 5: RouteUsage(credits=2, requests=2)})

    rows = daily_usage(
        None, counters, "acme", PERIOD, refunds=[Refunded(3, "ABCDEF", 5), Refunded(3, "XYZXYZ", 1)]
    )

    assert rows == [  # the counters' day tallies hold what is billed: the refunds are off them already
        DailyRouteUsage("2026-10-03", "*", requests=4, credits=30, refunded=6),
        DailyRouteUsage("2026-10-05", "*", requests=2, credits=2),
    ]


def test_http_api_route_keys_are_named_as_the_counters_name_them(tmp_path: Path) -> None:
    write(
        tmp_path,
        [
            {**record("h-1", at=at(2)), "httpMethod": "POST", "resourcePath": "ANY /v1/items/{id}"},
            {**record("h-2", at=at(2)), "resourcePath": "GET /v1/search"},
            {**record("h-3", at=at(2)), "resourcePath": "$default"},
        ],
    )

    rows = DuckDbLedger(tmp_path).daily_route_usage(PERIOD, "acme")

    assert [row.route for row in rows] == ["$default", "GET /v1/search", "POST /v1/items/{id}"]


def test_every_request_of_the_customer_once_oldest_first_refusals_included(tmp_path: Path) -> None:
    late, early = record("r-b", at=at(9), credits=5), record("r-a", at=at(2), deny="revoked_api_key")
    write(tmp_path, [late, early, record("r-c", customer="globex", at=at(3))])
    write(tmp_path, [late], name="again.jsonl")

    requests = DuckDbLedger(tmp_path).customer_requests(PERIOD, "acme")

    assert [(r.request_id, r.route, r.status, r.credits, r.deny_reason) for r in requests] == [
        ("r-a", "GET /v1/search", "403", "1", "revoked_api_key"),
        ("r-b", "GET /v1/search", "200", "5", "-"),
    ]
    text = requests_csv(requests)
    header = rows_of(text)[0]
    assert (header[:4], header[-4:]) == (
        ["requestId", "requestTime", "method", "route"],
        ["credits", "metered", "denyReason", "refunded"],
    )
    assert rows_of(text)[2][:2] == ["r-b", str(int(at(9).timestamp() * 1000))]
    assert [row[-1] for row in rows_of(requests_csv(requests, refunded={"r-b"}))[1:]] == ["false", "true"]


def test_the_csv_has_a_header_crlf_lines_and_quotes_a_route_that_needs_it() -> None:
    text = daily_usage_csv(
        [
            DailyRouteUsage("2026-10-01", 'GET /v1/search,"quoted"', requests=2, credits=3),
            DailyRouteUsage("2026-10-02", "GET /v1/a b", requests=1, credits=0),
        ]
    )

    assert text.splitlines(keepends=True)[0] == "date,route,requests,credits,refunded\r\n"
    assert text.splitlines()[1] == '2026-10-01,"GET /v1/search,""quoted""",2,3,0'
    assert rows_of(text)[1:] == [
        ["2026-10-01", 'GET /v1/search,"quoted"', "2", "3", "0"],
        ["2026-10-02", "GET /v1/a b", "1", "0", "0"],
    ]


def test_an_empty_period_is_the_header_alone() -> None:
    assert daily_usage_csv([]) == "date,route,requests,credits,refunded\r\n"
    assert rows_of(requests_csv([]))[1:] == []


class Counters:
    def __init__(self, days: dict[int, RouteUsage]) -> None:
        self.days = days
        self.read: list[tuple[str, str, int]] = []

    def read_usage(self, customer_id: str, period: str, shards: int = 1) -> Usage:
        self.read.append((customer_id, period, shards))
        return Usage(customer_id=customer_id, period=period, days=self.days)


def test_without_a_ledger_the_days_come_from_the_counters_for_all_routes() -> None:
    counters = Counters(
        {9: RouteUsage(credits=7, requests=2), 2: RouteUsage(credits=1, requests=1), 5: RouteUsage()}
    )

    rows = daily_usage(None, counters, "acme", PERIOD, shards=3)

    assert rows == [
        DailyRouteUsage("2026-10-02", "*", requests=1, credits=1),
        DailyRouteUsage("2026-10-09", "*", requests=2, credits=7),
    ]
    assert counters.read == [("acme", PERIOD, 3)]  # every shard summed
    assert counter_days(PERIOD, {}) == []


@pytest.mark.parametrize(
    ("period", "export_format", "message"),
    [
        ("2026-13", "csv", "YYYY-MM"),
        ("october", "csv", "YYYY-MM"),
        (PERIOD, "xlsx", "only csv"),
        (PERIOD, "CSV", "only csv"),
    ],
)
def test_a_bad_period_or_format_is_refused_with_what_is_expected(
    period: str, export_format: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        checked_export(period, export_format)


def test_the_file_is_named_after_the_customer_and_the_period_safely() -> None:
    assert export_filename("acme", PERIOD) == "usage-acme-2026-10.csv"
    assert export_filename('ac"me/\r\n x', PERIOD) == "usage-ac_me____x-2026-10.csv"


def test_athena_gets_the_same_daily_sql_with_the_periods_days_and_the_customer() -> None:
    import boto3

    client = boto3.client("athena", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": "q1"},
        {
            "QueryString": DAILY_ROUTE_USAGE_SQL,
            "QueryExecutionContext": {"Database": "db"},
            "WorkGroup": "wg",
            "ExecutionParameters": ["'2026-02'", "'2026-02-01'", "'2026-02-28'", "'o''brien'"],
        },
    )
    stubber.add_response("get_query_execution", {"QueryExecution": {"Status": {"State": "SUCCEEDED"}}})
    header = [{"VarCharValue": name} for name in ("day", "route", "requests", "credits")]
    values = [{"VarCharValue": value} for value in ("2026-02-03", "GET /v1/search", "4", "9")]
    result: dict[str, Any] = {
        "ResultSet": {
            "ResultSetMetadata": {
                "ColumnInfo": [{"Name": c["VarCharValue"], "Type": "varchar"} for c in header]
            },
            "Rows": [{"Data": header}, {"Data": values}],
        }
    }
    stubber.add_response("get_query_results", result)

    with stubber:
        rows = AthenaLedger(client, "wg", "db", sleep=lambda _: None).daily_route_usage("2026-02", "o'brien")

    assert rows == [DailyRouteUsage("2026-02-03", "GET /v1/search", requests=4, credits=9)]


def test_a_request_row_keeps_the_records_text() -> None:
    request = LedgerRequest("r", "1", "GET", "GET /a", "200", "-", "1", "true", "-")
    assert rows_of(requests_csv([request]))[1] == [
        "r",
        "1",
        "GET",
        "GET /a",
        "200",
        "-",
        "1",
        "true",
        "-",
        "false",
    ]
