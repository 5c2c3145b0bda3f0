"""A customer's usage of one period as CSV: per day and route from the request ledger, or per day from the
counters when the deployment keeps no ledger; and, from the ledger, one row per request.

``GET /usage/export`` and ``tollgate usage export`` answer with these texts. The ledger's rows are the
distinct requests it records as counted (``metered = "true"``, not refused), the same rule the reconciliation
counts by (``tollgate.ledger.queries``); without a ledger the counter item's day tallies
(``tollgate.dal.counter_item``) give the same days' totals under the route ``*`` (all routes), so the export
always answers. Standard library only, apart from the store it reads the counters from.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Protocol

from tollgate.dal.counter_item import route_code
from tollgate.domain.models import RouteUsage, Usage
from tollgate.domain.periods import parse_period
from tollgate.errors import InvalidInputError
from tollgate.ledger.queries import DailyRouteUsage, LedgerQueries, LedgerRequest

CSV_FORMAT = "csv"
CSV_MEDIA_TYPE = "text/csv"
ALL_ROUTES = "*"  # the route of a day's row read from the counters: every route together
DAILY_COLUMNS = ("date", "route", "requests", "credits", "refunded")
REQUEST_COLUMNS = (
    "requestId",
    "requestTime",
    "method",
    "route",
    "status",
    "integrationStatus",
    "credits",
    "metered",
    "denyReason",
    "refunded",
)


class Refunded(Protocol):
    """A refund of a failed request as listed (``tollgate.dal.refunds.StoredRefund``)."""

    @property
    def day(self) -> int: ...
    @property
    def route_code(self) -> str: ...
    @property
    def credits(self) -> int: ...


class UsageCounters(Protocol):
    """Where the counters are read (``TollgateStore``)."""

    def read_usage(self, customer_id: str, period: str, shards: int = 1) -> Usage: ...


def checked_export(period: str, export_format: str) -> None:
    """``InvalidInputError`` (a 400) for a period that is not ``YYYY-MM`` or a format other than csv."""
    try:
        parse_period(period)
    except ValueError as error:
        raise InvalidInputError(str(error)) from error
    if export_format != CSV_FORMAT:
        raise InvalidInputError(f"format: only {CSV_FORMAT} is offered, not {export_format!r}")


def export_filename(customer_id: str, period: str) -> str:
    """``usage-acme-2026-11.csv``; any character of the id but a letter, digit, ``-``, ``_`` or ``.`` becomes
    ``_`` (the name goes into a Content-Disposition header)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in customer_id)
    return f"usage-{safe}-{period}.csv"


def counter_days(period: str, days: Mapping[int, RouteUsage]) -> list[DailyRouteUsage]:
    """The days with requests of the counters' daily series, each as one row for all routes (``*``)."""
    return [
        DailyRouteUsage(
            day=f"{period}-{day:02d}", route=ALL_ROUTES, requests=counted.requests, credits=counted.credits
        )
        for day, counted in sorted(days.items())
        if counted.requests
    ]


def daily_usage(
    ledger: LedgerQueries | None,
    counters: UsageCounters,
    customer_id: str,
    period: str,
    shards: int = 1,
    refunds: Iterable[Refunded] = (),
) -> list[DailyRouteUsage]:
    """The customer's usage of ``period`` per day and route from ``ledger``, or per day from the counters
    (``shards`` of them) when there is no ledger; sorted by day, then route. ``refunds``: the period's refunds
    of failed requests (``RefundLedger.list``), shown as ``refunded`` and not in ``credits`` (the counters'
    tallies have them taken off already; the ledger's requests are as they were made)."""
    by_day: dict[str, int] = {}
    by_route: dict[tuple[str, str], int] = {}
    for refund in refunds:
        day = f"{period}-{refund.day:02d}"
        by_day[day] = by_day.get(day, 0) + refund.credits
        by_route[(day, refund.route_code)] = by_route.get((day, refund.route_code), 0) + refund.credits
    if ledger is None:
        rows = counter_days(period, counters.read_usage(customer_id, period, shards).days)
        return [replace(row, refunded=by_day.get(row.day, 0)) for row in rows]
    rows = sorted(ledger.daily_route_usage(period, customer_id), key=lambda row: (row.day, row.route))
    found = []
    for row in rows:
        refunded = by_route.get((row.day, route_code(row.route)), 0)
        found.append(replace(row, credits=row.credits - refunded, refunded=refunded))
    return found


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 text: a header line, then the rows; a field holding a comma, quote or line break is quoted."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return text.getvalue()


def daily_usage_csv(rows: Iterable[DailyRouteUsage]) -> str:
    """``date,route,requests,credits,refunded``, one line per day and route."""
    return _csv(
        DAILY_COLUMNS, ((row.day, row.route, row.requests, row.credits, row.refunded) for row in rows)
    )


def requests_csv(requests: Iterable[LedgerRequest], refunded: Container[str] = ()) -> str:
    """One line per request, oldest first: the ledger record's fields as it holds them, and whether the
    request was refunded (its id in ``refunded``: a failed request on a plan that bills what succeeded)."""
    return _csv(
        REQUEST_COLUMNS,
        (
            (
                r.request_id,
                r.request_time,
                r.method,
                r.route,
                r.status,
                r.integration_status,
                r.credits,
                r.metered,
                r.deny_reason,
                "true" if r.request_id in refunded else "false",
            )
            for r in requests
        ),
    )
