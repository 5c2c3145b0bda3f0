"""The deployed ledger: the Glue table over the access logs in S3, asked through Athena.

The query text is ``tollgate.ledger.queries``' own, sent as it is (a test checks the string); its ``?`` are
Athena execution parameters, each a SQL literal (strings quoted here). The table must be reachable as
``ledger`` from ``database``: when the Glue table has another name, the one ``FROM ledger`` of the text is
pointed at it (:func:`for_table`), nothing else changes.

``start_query_execution``, then ``get_query_execution`` every ``poll_seconds`` until the query has succeeded
(or failed, been cancelled, or run past ``timeout_seconds``: it is then stopped), then ``get_query_results``
a page at a time (the first row of the first page is the header).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from tollgate.ledger.queries import (
    LEDGER_RELATION,
    LedgerQueryError,
    SqlLedger,
)

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FROM_LEDGER = re.compile(rf"\bFROM {LEDGER_RELATION}\b")
DONE_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})


def sql_literal(value: str) -> str:
    """An Athena execution parameter: a string as a quoted SQL literal."""
    return "'" + value.replace("'", "''") + "'"


def for_table(sql: str, table: str) -> str:
    """``sql`` reading ``table`` instead of ``ledger`` (unchanged when the table is named ``ledger``)."""
    if table == LEDGER_RELATION:
        return sql
    if not _IDENTIFIER.fullmatch(table):
        raise LedgerQueryError(f"ledger table name {table!r} is not a plain identifier")
    return _FROM_LEDGER.sub(f"FROM {table}", sql)


class AthenaLedger(SqlLedger):
    """``LedgerQueries`` on Athena: ``athena_client`` is a boto3 Athena client."""

    def __init__(
        self,
        athena_client: Any,
        workgroup: str,
        database: str,
        table: str = LEDGER_RELATION,
        *,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = athena_client
        self.workgroup = workgroup
        self.database = database
        self.table = table
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._sleep = sleep
        self._monotonic = monotonic

    def execute(self, sql: str, parameters: list[str]) -> tuple[list[str], list[list[str | None]]]:
        """Run ``sql`` with ``parameters`` (strings): the column names, and the rows (None for NULL)."""
        started = self.client.start_query_execution(
            QueryString=for_table(sql, self.table),
            QueryExecutionContext={"Database": self.database},
            WorkGroup=self.workgroup,
            ExecutionParameters=[sql_literal(value) for value in parameters],
        )
        query_id = started["QueryExecutionId"]
        self._wait(query_id)
        return self._results(query_id)

    def _wait(self, query_id: str) -> None:
        deadline = self._monotonic() + self.timeout_seconds
        while True:
            execution = self.client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            status = execution["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return
            if state in DONE_STATES:
                reason = status.get("StateChangeReason") or "no reason given"
                raise LedgerQueryError(f"Athena query {query_id} {state.lower()}: {reason}")
            if self._monotonic() >= deadline:
                self.client.stop_query_execution(QueryExecutionId=query_id)
                raise LedgerQueryError(
                    f"Athena query {query_id} still {state.lower()} after {self.timeout_seconds:.0f} s: "
                    "stopped"
                )
            self._sleep(self.poll_seconds)

    def _results(self, query_id: str) -> tuple[list[str], list[list[str | None]]]:
        columns: list[str] = []
        rows: list[list[str | None]] = []
        request: dict[str, Any] = {"QueryExecutionId": query_id}
        first = True
        while True:
            page = self.client.get_query_results(**request)
            result = page["ResultSet"]
            if first:
                columns = [column["Name"] for column in result["ResultSetMetadata"]["ColumnInfo"]]
            data = [[cell.get("VarCharValue") for cell in row.get("Data", [])] for row in result["Rows"]]
            rows.extend(data[1:] if first else data)  # the first row of the first page is the header
            first = False
            token = page.get("NextToken")
            if not token:
                return columns, rows
            request["NextToken"] = token
