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
)
PARTITIONS = ("period", "day")

# Per customer of one period: distinct requests, the metered ones (counted: metered = 'true', not refused)
# and their credits, the ones served unmetered, the refused ones, the refusals whose counter write may have
# landed (metering_unavailable) and their credits, and requests whose copies disagree.
# Parameters: the period, then the customer id twice ('' for every customer).
CUSTOMER_TOTALS_SQL = """\
WITH requests AS (
    SELECT
        requestId AS request_id,
        MIN(customerId) AS customer_id,
        MIN(metered) AS metered,
        MIN(denyReason) AS deny_reason,
        MIN(credits) AS credits,
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
    SUM(conflicting) AS conflicting_requests
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
)


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

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CustomerLedger:
        """A result row (DuckDB's numbers, or Athena's strings; NULL sums are 0)."""
        numbers = {name: int(row[name] or 0) for name in CUSTOMER_TOTALS_COLUMNS[1:]}
        return cls(customer_id=str(row["customer_id"]), **numbers)


def customer_totals_parameters(period: str, customer_id: str | None = None) -> list[str]:
    """The parameters of ``CUSTOMER_TOTALS_SQL``, in order."""
    parse_period(period)
    customer = customer_id or ""
    return [period, customer, customer]


class LedgerQueries(Protocol):
    """The questions the reconciliation asks the ledger; ``DuckDbLedger`` and ``AthenaLedger`` answer them
    with the same SQL."""

    def customer_totals(self, period: str, customer_id: str | None = None) -> list[CustomerLedger]:
        """Per customer (or only ``customer_id``) of ``period``: ``CUSTOMER_TOTALS_SQL``'s rows."""
        ...


def rows_as_totals(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[CustomerLedger]:
    return [CustomerLedger.from_row(dict(zip(columns, row, strict=True))) for row in rows]
