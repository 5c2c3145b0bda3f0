"""The daily dunning sweep (EventBridge Scheduler): suspend customers whose payment grace has run out.

The schedule sends ``{"trigger": "schedule", "scheduledTime": "<ISO-8601>"}``; the sweep uses that time as
"now", so a retried invocation decides exactly as the first did (and its writes are conditional, so it changes
nothing twice). Invoked by hand without a time, it uses the clock. ``DUNNING_GRACE_DAYS`` sets the grace
(``tollgate.billing.webhooks.settings``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from tollgate.billing.dunning.service import sweep
from tollgate.billing.webhooks.observability import logger
from tollgate.billing.webhooks.settings import DunningSettings
from tollgate.dal.store import TollgateStore
from tollgate.schedules import scheduled_time

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    grace: timedelta
    clock: Callable[[], datetime] = utc_now  # only when the event carries no scheduled time


def deps_from(settings: DunningSettings) -> Deps:
    return Deps(TollgateStore(settings.table_name), settings.grace)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(DunningSettings.from_env())


def make_handler(deps: Deps | None = None) -> Handler:
    """The sweeper over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        now = scheduled_time(event, wired.clock)
        result = sweep(wired.store, now=now, grace=wired.grace)
        logger.info("dunning sweep", now=now.isoformat(), suspended=result.suspended, skipped=result.skipped)
        return {"now": now.isoformat(), "suspended": list(result.suspended), "skipped": list(result.skipped)}

    return handle


handler = make_handler()
