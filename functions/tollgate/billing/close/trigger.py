"""Which period an invocation of the close starter or the close watchdog is about.

The event is one of::

    {"period": "2026-10"}                                          # by hand: exactly this period
    {"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00Z"}
                                   # the schedule's Input, with scheduledTime = <aws.scheduler.scheduled-time>
    {"time": "2026-11-01T06:00:00Z", ...}                          # an EventBridge event (its own time)

From a schedule the period is the one *before* the period containing the scheduled time. The scheduled time
(not the invocation time) decides, so a retry hours later, or a duplicate delivery, is about the same period.
A period that has not ended yet is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tollgate.domain.closes import ensure_period_ended
from tollgate.domain.periods import parse_period, period_of, previous_period


class StartError(ValueError):
    """The event does not say which period to close (or names one that cannot be closed yet)."""


def period_to_close(event: dict[str, Any], now: datetime) -> str:
    """The period an invocation is about (see the module docstring for the event shapes)."""
    if event.get("period"):
        period = str(event["period"])
        try:
            parse_period(period)
        except ValueError as error:
            raise StartError(str(error)) from error
    else:
        scheduled = event.get("scheduledTime") or event.get("time")
        if not scheduled:
            raise StartError(
                'the event names no period: send {"period": "YYYY-MM"}, or a schedule\'s '
                '{"scheduledTime": "<aws.scheduler.scheduled-time>"}'
            )
        try:
            moment = datetime.fromisoformat(str(scheduled).replace("Z", "+00:00"))
        except ValueError as error:
            raise StartError(f"scheduledTime {scheduled!r} is not an ISO-8601 time") from error
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)  # Scheduler's times are UTC
        period = previous_period(period_of(moment))
    ensure_period_ended(period, now)
    return period
