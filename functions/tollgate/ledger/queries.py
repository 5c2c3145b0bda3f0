"""The ledger's questions, as SQL that runs unchanged on Athena (Trino) and DuckDB, and the interface both
adapters implement.

The SQL is written against a relation named ``ledger`` whose columns are the access-log record's fields,
every one a string (``"-"`` when API Gateway had no value), plus the partitions ``period`` (``YYYY-MM``, the
record's own period) and ``day``. On Athena that relation is the Glue table; locally it is a DuckDB view over
the files (``tollgate.ledger.duckdb_ledger``). Only what both engines accept is used: ``?`` parameters,
``CAST(... AS BIGINT)``, ``CASE``, ``MIN``/``MAX``/``SUM``/``COUNT``, ``GROUP BY``, a ``WITH`` clause;
identifiers are unquoted (Trino folds them to the Glue table's lowercase names, DuckDB matches them without
regard to case).

A record may be delivered twice (Firehose retries): every count is of distinct ``requestId``. A request whose
copies disagree (customer, metered, deny reason or credits) is counted once and reported as conflicting.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tollgate.domain.periods import parse_period
from tollgate.errors import TollgateError

LEDGER_RELATION = "ledger"  # the relation every query reads: the Glue table, or the local view
ANONYMOUS = "-"  # customerId of a request refused before its key named a customer
METERING_UNAVAILABLE = "metering_unavailable"  # a refusal whose counter write may have landed (decision 3)

# The record's fields, in the order of the record (the Glue table's data columns). ``period`` is also the
# partition: the Glue table has it as a partition only, and so does the local view.
RECORD_FIELDS = (
    "requestId",
    "requestTime",
    "httpMethod",
    "resourcePath",
    "status",
    "integrationStatus",
    "integrationLatency",
    "responseLatency",
    "customerId",
    "keyId",
    "planId",
    "planVersion",
    "period",
    "credits",
    "metered",
    "denyReason",
    "segment",
    "routeCode",
    "shard",
)
PARTITIONS = ("period", "day")

# Per customer of one period: distinct requests, the metered ones (counted: metered = 'true', not refused)
# and their credits, the ones served unmetered, the refused ones, the refusals whose counter write may have
# landed (metering_unavailable) and their credits, requests whose copies disagree, and the credits of metered
# requests that failed (status 400 or more: the most a refund can take back; statuses are 3 digits, so the
# text compares as the number does).
# Parameters: the period, then the customer id twice ('' for every customer).
CUSTOMER_TOTALS_SQL = """\
WITH requests AS (
    SELECT
        requestId AS request_id,
        MIN(customerId) AS customer_id,
        MIN(metered) AS metered,
        MIN(denyReason) AS deny_reason,
        MIN(credits) AS credits,
        MIN(status) AS status,
        CASE
            WHEN MIN(customerId) = MAX(customerId)
                AND MIN(metered) = MAX(metered)
                AND MIN(denyReason) = MAX(denyReason)
                AND MIN(credits) = MAX(credits)
            THEN 0
            ELSE 1
        END AS conflicting
    FROM ledger
    WHERE period = ?
        AND day BETWEEN ? AND ?
        AND (? = '' OR customerId = ?)
    GROUP BY requestId
)
SELECT
    customer_id,
    COUNT(*) AS requests,
    SUM(CASE WHEN metered = 'true' AND deny_reason = '-' THEN 1 ELSE 0 END) AS metered_requests,
    SUM(CASE WHEN metered = 'true' AND deny_reason = '-' THEN CAST(credits AS BIGINT) ELSE 0 END)
        AS metered_credits,
    SUM(CASE WHEN metered = 'false' AND deny_reason = '-' THEN 1 ELSE 0 END) AS unmetered_requests,
    SUM(CASE WHEN deny_reason <> '-' THEN 1 ELSE 0 END) AS refused_requests,
    SUM(CASE WHEN deny_reason = 'metering_unavailable' THEN 1 ELSE 0 END) AS uncertain_requests,
    SUM(
        CASE
            WHEN deny_reason = 'metering_unavailable' AND credits <> '-' THEN CAST(credits AS BIGINT)
            ELSE 0
        END
    ) AS uncertain_credits,
    SUM(conflicting) AS conflicting_requests,
    SUM(
        CASE
            WHEN metered = 'true' AND deny_reason = '-' AND status >= '400' THEN CAST(credits AS BIGINT)
            ELSE 0
        END
    ) AS failed_credits
FROM requests
GROUP BY customer_id
ORDER BY customer_id
"""

CUSTOMER_TOTALS_COLUMNS = (
    "customer_id",
    "requests",
    "metered_requests",
    "metered_credits",
    "unmetered_requests",
    "refused_requests",
    "uncertain_requests",
    "uncertain_credits",
    "conflicting_requests",
    "failed_credits",
)


# A request's route as the counters name it: REST records hold the method and the resource template
# (``/v1/items/{id}``); HTTP API records hold the route key (``GET /v1/items/{id}``, ``ANY /x`` counted under
# the request's own method, ``$default``) in resourcePath.
_ROUTE_SQL = """\
CASE
            WHEN resourcePath LIKE '/%' THEN httpMethod || ' ' || resourcePath
            WHEN resourcePath LIKE 'ANY /%' THEN httpMethod || SUBSTR(resourcePath, 4)
            ELSE resourcePath
        END"""

# One customer's records of one period, grouped by request (its copies together). Parameters: the period, its
# first and last day (partition projection needs both partitions filtered), the customer id.
_CUSTOMER_PERIOD_SQL = (
    "FROM ledger WHERE period = ? AND day BETWEEN ? AND ? AND customerId = ? GROUP BY requestId"
)

# One customer's metered requests of one period per day (the record's ``day`` partition: the UTC day of its
# requestTime) and route: distinct requests counted (metered = 'true', not refused) and their credits.
# Parameters: as _CUSTOMER_PERIOD_SQL's.
DAILY_ROUTE_USAGE_SQL = f"""\
WITH requests AS (
    SELECT
        requestId AS request_id,
        MIN(day) AS request_day,
        MIN({_ROUTE_SQL}) AS route,
        MIN(metered) AS metered,
        MIN(denyReason) AS deny_reason,
        MIN(credits) AS credits
    {_CUSTOMER_PERIOD_SQL}
)
SELECT
    request_day AS day,
    route,
    COUNT(*) AS requests,
    SUM(CAST(credits AS BIGINT)) AS credits
FROM requests
WHERE metered = 'true' AND deny_reason = '-'
GROUP BY request_day, route
ORDER BY request_day, route
"""  # noqa: S608 - constant text (the route's CASE); every value is a ? parameter

# Every request of one customer in one period, each once (copies of a record deduplicated on requestId),
# in the order they were received. Parameters: as _CUSTOMER_PERIOD_SQL's.
CUSTOMER_REQUESTS_SQL = f"""\
SELECT
    requestId AS request_id,
    MIN(requestTime) AS request_time,
    MIN(httpMethod) AS method,
    MIN({_ROUTE_SQL}) AS route,
    MIN(status) AS status,
    MIN(integrationStatus) AS integration_status,
    MIN(credits) AS credits,
    MIN(metered) AS metered,
    MIN(denyReason) AS deny_reason
{_CUSTOMER_PERIOD_SQL}
ORDER BY CAST(MIN(requestTime) AS BIGINT), requestId
"""


class LedgerQueryError(TollgateError):
    """The ledger could not be read (no such directory, a failed Athena query, a bad record)."""


@dataclass(frozen=True)
class CustomerLedger:
    """What the ledger holds for one customer in one period (distinct requests)."""

    customer_id: str
    requests: int = 0
    metered_requests: int = 0  # counted: metered = 'true' and not refused
    metered_credits: int = 0
    unmetered_requests: int = 0  # served with metered = 'false' (FAIL_OPEN while DynamoDB was down)
    refused_requests: int = 0
    uncertain_requests: int = 0  # refused as metering_unavailable: the counter write may have landed
    uncertain_credits: int = 0
    conflicting_requests: int = 0  # copies of one requestId that disagree
    failed_credits: int = 0  # of metered requests that failed (status >= 400): what refunds may take back

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CustomerLedger:
        """A result row (DuckDB's numbers, or Athena's strings; NULL sums are 0)."""
        numbers = {name: int(row[name] or 0) for name in CUSTOMER_TOTALS_COLUMNS[1:]}
        return cls(customer_id=str(row["customer_id"]), **numbers)


def customer_totals_parameters(period: str, customer_id: str | None = None) -> list[str]:
    """The parameters of ``CUSTOMER_TOTALS_SQL``, in order: the period, its first and last day (partition
    projection lists only the days asked for), the customer (twice; empty: every customer)."""
    first, last = period_days(period)
    customer = customer_id or ""
    return [period, first, last, customer, customer]


@dataclass(frozen=True)
class DailyRouteUsage:
    """One customer's metered requests on one day (UTC, ``YYYY-MM-DD``) on one route, and their credits."""

    day: str
    route: str
    requests: int
    credits: int  # billed: less what refunds of failed requests took back (``refunded``)
    refunded: int = 0


@dataclass(frozen=True)
class LedgerRequest:
    """One request of the ledger as an export shows it: each field the record's text (``-``: none)."""

    request_id: str
    request_time: str  # ms since the epoch
    method: str
    route: str
    status: str
    integration_status: str
    credits: str
    metered: str
    deny_reason: str


def customer_period_parameters(period: str, customer_id: str) -> list[str]:
    """The parameters of ``DAILY_ROUTE_USAGE_SQL`` and ``CUSTOMER_REQUESTS_SQL``, in order."""
    first, last = period_days(period)
    return [period, first, last, customer_id]


def period_days(period: str) -> tuple[str, str]:
    """The first and last day of ``period`` as the ledger's ``day`` partition names them."""
    year, month = parse_period(period)
    last = calendar.monthrange(year, month)[1]
    return f"{period}-01", f"{period}-{last:02d}"


class LedgerQueries(Protocol):
    """The questions asked of the ledger; ``DuckDbLedger`` and ``AthenaLedger`` answer them, same SQL."""

    def customer_totals(self, period: str, customer_id: str | None = None) -> list[CustomerLedger]:
        """Per customer (or only ``customer_id``) of ``period``: ``CUSTOMER_TOTALS_SQL``'s rows."""
        ...

    def daily_route_usage(self, period: str, customer_id: str) -> list[DailyRouteUsage]:
        """``DAILY_ROUTE_USAGE_SQL``'s rows: the customer's metered requests per day and route."""
        ...

    def customer_requests(self, period: str, customer_id: str) -> list[LedgerRequest]:
        """``CUSTOMER_REQUESTS_SQL``'s rows: each of the customer's requests once, oldest first."""
        ...


class SqlLedger:
    """The questions of :class:`LedgerQueries`, asked through ``execute`` (the adapter's: DuckDB or Athena),
    so both adapters run the same text and read the rows the same way."""

    def execute(self, sql: str, parameters: list[str]) -> tuple[list[str], Sequence[Sequence[Any]]]:
        raise NotImplementedError

    def customer_totals(self, period: str, customer_id: str | None = None) -> list[CustomerLedger]:
        columns, rows = self.execute(CUSTOMER_TOTALS_SQL, customer_totals_parameters(period, customer_id))
        return rows_as_totals(columns, rows)

    def daily_route_usage(self, period: str, customer_id: str) -> list[DailyRouteUsage]:
        columns, rows = self.execute(DAILY_ROUTE_USAGE_SQL, customer_period_parameters(period, customer_id))
        found = [dict(zip(columns, row, strict=True)) for row in rows]
        return [
            DailyRouteUsage(
                day=str(row["day"]),
                route=str(row["route"]),
                requests=int(row["requests"] or 0),
                credits=int(row["credits"] or 0),
            )
            for row in found
        ]

    def customer_requests(self, period: str, customer_id: str) -> list[LedgerRequest]:
        columns, rows = self.execute(CUSTOMER_REQUESTS_SQL, customer_period_parameters(period, customer_id))
        return [
            LedgerRequest(
                **{
                    name: ANONYMOUS if value is None else str(value)
                    for name, value in zip(columns, row, strict=True)
                }
            )
            for row in rows
        ]


def rows_as_totals(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[CustomerLedger]:
    return [CustomerLedger.from_row(dict(zip(columns, row, strict=True))) for row in rows]
