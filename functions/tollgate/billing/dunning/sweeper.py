"""The daily dunning sweep (EventBridge Scheduler): suspend customers whose payment grace has run out.

The schedule sends ``{"trigger": "schedule", "scheduledTime": "<ISO-8601>"}``; the sweep uses that time as
"now", so a retried invocation decides exactly as the first did (and its writes are conditional, so it changes
nothing twice). Invoked by hand without a time, it uses the clock. ``DUNNING_GRACE_DAYS`` sets the grace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from tollgate.billing.dunning.rules import grace_from_env, sweep
from tollgate.dal.store import TollgateStore

logger = Logger(service="tollgate-webhooks")

Clock = Callable[[], datetime]


@cache
def _store() -> TollgateStore:
    return TollgateStore()


def sweep_time(event: dict[str, Any], clock: Clock) -> datetime:
    scheduled = (event or {}).get("scheduledTime")
    if not scheduled:
        return clock()
    moment = datetime.fromisoformat(str(scheduled).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def make_handler(
    clock: Clock = lambda: datetime.now(UTC), store: Callable[[], TollgateStore] = _store
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        now = sweep_time(event, clock)
        result = sweep(store(), now=now, grace=grace_from_env())
        logger.info("dunning sweep", now=now.isoformat(), suspended=result.suspended, skipped=result.skipped)
        return {"now": now.isoformat(), "suspended": list(result.suspended), "skipped": list(result.skipped)}

    return handle


handler = make_handler()
