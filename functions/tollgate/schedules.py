"""What an EventBridge Scheduler invocation says: when it was scheduled.

The schedules send ``{"trigger": "schedule", "scheduledTime": "<ISO-8601>"}``; a sweep uses that time as
"now", so a retry hours later, or a duplicate delivery, does the same sweep. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any


def scheduled_time(event: Mapping[str, Any] | None, clock: Callable[[], datetime]) -> datetime:
    """The event's ``scheduledTime`` (UTC when it names no zone), or ``clock()`` for an invocation by hand."""
    scheduled = (event or {}).get("scheduledTime")
    if not scheduled:
        return clock()
    moment = datetime.fromisoformat(str(scheduled).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
