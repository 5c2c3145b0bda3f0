"""The Athena adapter with botocore's Stubber (no network): the very SQL text DuckDB runs is sent, with its
parameters as SQL literals; the query is polled until done and its results read a page at a time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tollgate.cli.reconcile import athena_names
from tollgate.ledger.athena import AthenaLedger, for_table, sql_literal
from tollgate.ledger.queries import (
    CUSTOMER_TOTALS_COLUMNS,
    CUSTOMER_TOTALS_SQL,
    CustomerLedger,
    LedgerQueryError,
)

QUERY_ID = "5f0c7f5e-1111-4c2b-9a77-1d2e3f4a5b6c"


DAYS = ["'2026-10-01'", "'2026-10-31'"]  # the period's first and last day, for partition projection


@pytest.fixture
def athena() -> Iterator[tuple[Any, Stubber]]:
    client = boto3.client("athena", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _start(stubber: Stubber, parameters: list[str], sql: str = CUSTOMER_TOTALS_SQL) -> None:
    stubber.add_response(
        "start_query_execution",
        {"QueryExecutionId": QUERY_ID},
        {
            "QueryString": sql,
            "QueryExecutionContext": {"Database": "tollgate_ledger"},
            "WorkGroup": "tollgate",
            "ExecutionParameters": parameters,
        },
    )


def _state(stubber: Stubber, state: str, reason: str | None = None) -> None:
    status: dict[str, Any] = {"State": state}
    if reason:
        status["StateChangeReason"] = reason
    stubber.add_response(
        "get_query_execution",
        {"QueryExecution": {"QueryExecutionId": QUERY_ID, "Status": status}},
        {"QueryExecutionId": QUERY_ID},
    )


def _row(*values: str | None) -> dict[str, Any]:
    return {"Data": [{} if value is None else {"VarCharValue": value} for value in values]}


def _page(
    rows: list[dict[str, Any]], token: str | None, after: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    response: dict[str, Any] = {
        "ResultSet": {
            "Rows": rows,
            "ResultSetMetadata": {
                "ColumnInfo": [{"Name": name, "Type": "varchar"} for name in CUSTOMER_TOTALS_COLUMNS]
            },
        }
    }
    if token:
        response["NextToken"] = token
    expected: dict[str, Any] = {"QueryExecutionId": QUERY_ID}
    if after:
        expected["NextToken"] = after
    return response, expected


def test_the_same_sql_is_sent_polled_and_read_page_by_page(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    _start(stubber, ["'2026-10'", *DAYS, "''", "''"])
    _state(stubber, "QUEUED")
    _state(stubber, "RUNNING")
    _state(stubber, "SUCCEEDED")
    header = _row(*CUSTOMER_TOTALS_COLUMNS)
    stubber.add_response(
        "get_query_results",
        *_page([header, _row("acme", "5", "3", "27", "1", "1", "0", "0", "0", "4")], "t1", None),
    )
    beta = _row("beta", "2", "2", "50", "0", "0", "0", None, "0", None)
    stubber.add_response("get_query_results", *_page([beta], None, "t1"))
    sleeps: list[float] = []
    ledger = AthenaLedger(client, "tollgate", "tollgate_ledger", poll_seconds=0.5, sleep=sleeps.append)

    found = ledger.customer_totals("2026-10")

    assert found == [
        CustomerLedger("acme", 5, 3, 27, 1, 1, 0, 0, 0, failed_credits=4),
        CustomerLedger("beta", 2, 2, 50),
    ]
    assert sleeps == [0.5, 0.5]


def test_one_customer_and_quotes_in_parameters(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    _start(stubber, ["'2026-10'", *DAYS, "'o''brien'", "'o''brien'"])
    _state(stubber, "SUCCEEDED")
    stubber.add_response("get_query_results", *_page([_row(*CUSTOMER_TOTALS_COLUMNS)], None, None))

    assert AthenaLedger(client, "tollgate", "tollgate_ledger").customer_totals("2026-10", "o'brien") == []


def test_a_failed_query_is_an_error(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    _start(stubber, ["'2026-10'", *DAYS, "''", "''"])
    _state(
        stubber,
        "FAILED",
        "TABLE_NOT_FOUND: line 17:10: Table 'awsdatacatalog.tollgate_ledger.ledger' does not exist",
    )

    with pytest.raises(LedgerQueryError, match="failed: TABLE_NOT_FOUND"):
        AthenaLedger(client, "tollgate", "tollgate_ledger").customer_totals("2026-10")


def test_a_query_running_too_long_is_stopped(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    _start(stubber, ["'2026-10'", *DAYS, "''", "''"])
    _state(stubber, "RUNNING")
    _state(stubber, "RUNNING")
    stubber.add_response("stop_query_execution", {}, {"QueryExecutionId": QUERY_ID})
    clock = iter([0.0, 5.0, 11.0])
    ledger = AthenaLedger(
        client,
        "tollgate",
        "tollgate_ledger",
        timeout_seconds=10,
        sleep=lambda _s: None,
        monotonic=lambda: next(clock),
    )

    with pytest.raises(LedgerQueryError, match="still running after 10 s: stopped"):
        ledger.customer_totals("2026-10")


def test_a_table_of_another_name(athena: tuple[Any, Stubber]) -> None:
    client, stubber = athena
    renamed = for_table(CUSTOMER_TOTALS_SQL, "access_log")
    assert renamed == CUSTOMER_TOTALS_SQL.replace("FROM ledger\n", "FROM access_log\n")
    assert for_table(CUSTOMER_TOTALS_SQL, "ledger") is CUSTOMER_TOTALS_SQL
    _start(stubber, ["'2026-10'", *DAYS, "''", "''"], sql=renamed)
    _state(stubber, "SUCCEEDED")
    stubber.add_response("get_query_results", *_page([_row(*CUSTOMER_TOTALS_COLUMNS)], None, None))

    AthenaLedger(client, "tollgate", "tollgate_ledger", "access_log").customer_totals("2026-10")
    with pytest.raises(LedgerQueryError, match="plain identifier"):
        for_table(CUSTOMER_TOTALS_SQL, "x; DROP TABLE y")


def test_sql_literals() -> None:
    assert sql_literal("2026-10") == "'2026-10'"
    assert sql_literal("") == "''"
    assert sql_literal("a'b") == "'a''b'"


def test_athena_names_from_options_environment_or_stack_outputs() -> None:
    def outputs() -> dict[str, str]:
        return {"LedgerWorkGroupName": "wg-out", "LedgerDatabaseName": "db-out", "LedgerTableName": "t-out"}

    def never() -> dict[str, str]:
        raise AssertionError("the stack's outputs are read only when something is missing")

    assert athena_names("wg", "db", None, {"TOLLGATE_LEDGER_TABLE": "t-env"}, never) == ("wg", "db", "t-env")
    assert athena_names(None, None, None, {}, outputs) == ("wg-out", "db-out", "t-out")
    assert athena_names(None, "db", None, {"TOLLGATE_LEDGER_WORKGROUP": "wg-env"}, None) == (
        "wg-env",
        "db",
        "ledger",
    )
    with pytest.raises(Exception, match="--athena-workgroup"):
        athena_names(None, "db", None, {}, None)
