"""Billing periods: calendar months in UTC, named ``YYYY-MM``. Standard library only (hot path).

Usage belongs to the period of the request's own timestamp, not to the time the counter is written.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_PERIOD_RE = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def period_of_epoch_ms(epoch_ms: int) -> str:
    """The period (``2026-11``) that a request made at ``epoch_ms`` (UTC milliseconds) belongs to."""
    return period_and_day_of_epoch_ms(epoch_ms)[0]


def period_and_day_of_epoch_ms(epoch_ms: int) -> tuple[str, int]:
    """The period and the day of the month (UTC) of a request made at ``epoch_ms``: ``("2026-11", 30)``."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return f"{moment.year:04d}-{moment.month:02d}", moment.day


def period_of(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("a period needs an aware datetime (UTC)")
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def parse_period(period: str) -> tuple[int, int]:
    """``"2026-11"`` -> ``(2026, 11)``; anything else raises ``ValueError`` naming the bad value."""
    match = _PERIOD_RE.fullmatch(period)
    if match is None:
        raise ValueError(f"a period is written YYYY-MM, e.g. 2026-11, not {period!r}")
    return int(match.group(1)), int(match.group(2))


def period_start(period: str) -> datetime:
    year, month = parse_period(period)
    return datetime(year, month, 1, tzinfo=UTC)


def next_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year + 1:04d}-01" if month == 12 else f"{year:04d}-{month + 1:02d}"


def previous_period(period: str) -> str:
    year, month = parse_period(period)
    return f"{year - 1:04d}-12" if month == 1 else f"{year:04d}-{month - 1:02d}"


def period_end(period: str) -> datetime:
    """The first instant *after* the period (exclusive end)."""
    return period_start(next_period(period))


def period_seconds(period: str) -> int:
    """How long ``period`` is, in seconds (proration's denominator)."""
    return int((period_end(period) - period_start(period)).total_seconds())


def months_between(first: str, last: str) -> int:
    """Periods from ``first`` up to, not including, ``last`` (0 when ``last`` is not after ``first``)."""
    (y1, m1), (y2, m2) = parse_period(first), parse_period(last)
    return max(0, (y2 - y1) * 12 + m2 - m1)
