"""The metering Lambda authorizer: REST API REQUEST events and HTTP API v2 events, same logic behind both.

Kept lean on purpose (it runs on every paid request): no pydantic, no stripe. Its dependencies (a key
directory and a usage counter over one DynamoDB client) are built from :class:`MeteringSettings` on the first
invocation and reused by every later one; tests and local mode hand in their own (:func:`make_handler`),
including the clock a request's timestamp is checked against.

Any input gets a clean answer: whatever the event, the handler answers with a deny or an allow and never
raises on its shape. A malformed event (:mod:`tollgate.metering.events`) is refused as ``malformed_request``
without any DynamoDB call; an IAM policy allows only the request's own ``methodArn``, never ``*`` (a deny
for an event without one denies ``*``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from tollgate.domain.periods import period_of_epoch_ms
from tollgate.errors import MeteringUnavailableError
from tollgate.metering.decide import KeyDirectory, UsageCounter, authorize
from tollgate.metering.decisions import Decision, Reason
from tollgate.metering.dynamo import DynamoKeyDirectory, DynamoUsageCounter, TtlCache
from tollgate.metering.events import AccessRequest, parse_event
from tollgate.metering.observability import (
    DENIED_PREFIX,
    METERING_FAILURES,
    METERING_OUTCOME_UNKNOWN,
    UNMETERED_REQUESTS,
    logger,
    metrics,
)
from tollgate.metering.settings import MeteringSettings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# One attempt per call: retries are decided in tollgate.metering.dynamo, where it is known whether a write
# applied.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2)


@dataclass(frozen=True)
class Deps:
    keys: KeyDirectory
    counter: UsageCounter
    fail_open: bool = False
    # Seconds since the epoch: the authorizer's own clock. A request stamped more than a few minutes away
    # from it is refused (tollgate.metering.events.REQUEST_TIME_TOLERANCE_MS).
    clock: Callable[[], float] = time.time


def deps_from(
    settings: MeteringSettings,
    *,
    client: Any = None,
    cache: TtlCache | None = None,
    clock: Callable[[], float] = time.time,
) -> Deps:
    """The DynamoDB-backed dependencies (one client shared by both; a fresh key cache unless given).

    ``clock`` is what a request's timestamp is checked against: the wall clock, or in local mode the same
    clock the local gateway stamps requests with.
    """
    client = client or boto3.client("dynamodb", config=CLIENT_CONFIG)
    # A shifted clock (local mode) ages cached grants too, so a plan change scheduled ahead of the cache's
    # TTL reaches the grant before it starts, as it does in AWS; the wall clock keeps the monotonic one.
    cache_clock = time.monotonic if clock is time.time else clock
    keys = DynamoKeyDirectory(
        client,
        settings.table_name,
        ttl=settings.key_cache_ttl_seconds,
        negative_ttl=settings.negative_cache_ttl_seconds,
        cache=cache if cache is not None else TtlCache(clock=cache_clock),
        clock_ms=lambda: int(clock() * 1000),
    )
    return Deps(keys, DynamoUsageCounter(client, settings.table_name), settings.fail_open, clock)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(MeteringSettings.from_env())


def make_handler(deps: Deps | None = None) -> Handler:
    """The authorizer over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        request = parse_event(event, int(wired.clock() * 1000))
        try:
            decision = authorize(request, wired.keys, wired.counter, fail_open=wired.fail_open)
        except MeteringUnavailableError as error:  # the key lookup failed: a key we cannot check never passes
            logger.error("key lookup failed", request_id=request.request_id, error=str(error))
            decision = Decision.deny(Reason.UNAVAILABLE)
        _observe(request, decision)
        return render(request, decision)

    return handle


def _observe(request: AccessRequest, decision: Decision) -> None:
    if decision.allowed and decision.context.get("metered", True):
        return  # the happy path writes no log line and no metric: the counter is the record
    if decision.outcome_unknown:
        # The write was sent and its answer lost; ADD is not idempotent, so it was not retried. This line is
        # the record to reconcile by: the customer may have been counted for a request that was refused.
        logger.error(
            "counter write outcome unknown: the request may have been counted",
            customer_id=decision.principal,
            route=request.route,
            period=period_of_epoch_ms(request.epoch_ms),
            request_id=request.request_id,
            served=decision.allowed,
        )
        metrics.add_metric(name=METERING_OUTCOME_UNKNOWN, unit=MetricUnit.Count, value=1)
    if decision.allowed:
        logger.error("counter write failed; allowed unmetered (FAIL_OPEN)", request_id=request.request_id)
        metrics.add_metric(name=UNMETERED_REQUESTS, unit=MetricUnit.Count, value=1)
        return
    logger.info(
        "denied",
        reason=str(decision.reason),
        customer_id=decision.principal,
        route=request.route,
        request_id=request.request_id,
        problem=request.problem,  # what made a malformed_request malformed
    )
    metrics.add_metric(name=f"{DENIED_PREFIX}{decision.reason}", unit=MetricUnit.Count, value=1)
    if decision.reason is Reason.UNAVAILABLE:
        metrics.add_metric(name=METERING_FAILURES, unit=MetricUnit.Count, value=1)


def render(request: AccessRequest, decision: Decision) -> dict[str, Any]:
    """REST: an IAM policy plus context. HTTP API v2: the simple response.

    An Allow names the request's own ``methodArn`` and nothing else; only a Deny may name ``*`` (an event
    without a methodArn is malformed and denied: denying everything is the one safe policy without one).
    """
    if request.kind == "http":
        return {"isAuthorized": decision.allowed, "context": decision.context}
    allow = decision.allowed and bool(request.method_arn)  # parse_event requires the ARN: belt and braces
    return {
        "principalId": decision.principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if allow else "Deny",
                    "Resource": request.method_arn or "*",
                }
            ],
        },
        "context": decision.context,
    }


handler = make_handler()
