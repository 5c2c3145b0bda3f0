"""The hourly expiry of prepaid credits (EventBridge Scheduler): settle every lot past its expiry.

The schedule sends ``{"trigger": "schedule", "scheduledTime": "<ISO-8601>"}``; the sweep uses that time as
"now", so a retried invocation decides as the first did (and a lot is settled once whatever runs it).
Invoked by hand without a time, it uses the clock. It stops between customers while there is time left
before Lambda's timeout; the next sweep carries on. ``tollgate credits expire`` runs the same sweep.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from tollgate.dal.store import TollgateStore
from tollgate.expiry.observability import CREDITS_EXPIRED, CUSTOMERS_LEFT, LOTS_SETTLED, logger, metrics
from tollgate.expiry.service import SweepResult, sweep
from tollgate.expiry.settings import ExpirySettings
from tollgate.schedules import scheduled_time

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class SweepFailedError(RuntimeError):
    """Some customers' lots could not be settled (the others were): the log names them and why."""


SPARE_MILLISECONDS = 10_000  # stop taking customers this long before the timeout (a customer: milliseconds)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    clock: Callable[[], datetime] = utc_now  # only when the event carries no scheduled time


def deps_from(settings: ExpirySettings) -> Deps:
    return Deps(TollgateStore(settings.table_name))


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(ExpirySettings.from_env())


def observe(result: SweepResult) -> None:
    for name, value in (
        (LOTS_SETTLED, len(result.settled)),
        (CREDITS_EXPIRED, result.credits_expired),
        (CUSTOMERS_LEFT, len(result.left)),
    ):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    summary = {
        "now": result.now.isoformat(),
        "lots_settled": len(result.settled),
        "credits_expired": result.credits_expired,
        "out_of_time": result.out_of_time,
    }
    if result.failed:
        logger.error("lots that could not be settled", extra={**summary, "failed": result.failed})
    if result.left:
        logger.warning(
            "lots left for the next sweep (they kept changing)", extra={**summary, "left": result.left}
        )
    else:
        logger.info("credit expiry sweep", extra=summary)


def make_handler(deps: Deps | None = None) -> Handler:
    """The sweep over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        now = scheduled_time(event, wired.clock)
        result = sweep(
            wired.store,
            now=now,
            time_left=lambda: context.get_remaining_time_in_millis() > SPARE_MILLISECONDS,
        )
        observe(result)
        if result.failed:  # the errors alarm; Lambda's retry and the next hour's run settle what they can
            raise SweepFailedError(f"lots of {len(result.failed)} customer(s) could not be settled")
        return {
            "now": now.isoformat(),
            "settled": [
                {"customer": lot.customer_id, "reference": lot.reference, "expired": lot.expired}
                for lot in result.settled
            ],
            "creditsExpired": result.credits_expired,
            "left": result.left,
            "outOfTime": result.out_of_time,
        }

    return handle


handler = make_handler()
