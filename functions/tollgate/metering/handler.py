"""The metering Lambda authorizer: REST API REQUEST events and HTTP API v2 events, same logic behind both.

Kept lean on purpose (it runs on every paid request): no pydantic, no stripe. Its dependencies (a key
directory and a usage counter over one DynamoDB client) are built from :class:`MeteringSettings` on the first
invocation and reused by every later one; tests and local mode hand in their own (:func:`make_handler`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from tollgate.errors import MeteringUnavailableError
from tollgate.metering.decide import KeyDirectory, UsageCounter, authorize
from tollgate.metering.decisions import Decision, Reason
from tollgate.metering.dynamo import DynamoKeyDirectory, DynamoUsageCounter, TtlCache
from tollgate.metering.events import AccessRequest, parse_event
from tollgate.metering.observability import (
    DENIED_PREFIX,
    METERING_FAILURES,
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


def deps_from(settings: MeteringSettings, *, client: Any = None, cache: TtlCache | None = None) -> Deps:
    """The DynamoDB-backed dependencies (one client shared by both; a fresh key cache unless given)."""
    client = client or boto3.client("dynamodb", config=CLIENT_CONFIG)
    keys = DynamoKeyDirectory(
        client,
        settings.table_name,
        ttl=settings.key_cache_ttl_seconds,
        negative_ttl=settings.negative_cache_ttl_seconds,
        cache=cache if cache is not None else TtlCache(),
    )
    return Deps(keys, DynamoUsageCounter(client, settings.table_name), settings.fail_open)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(MeteringSettings.from_env())


def make_handler(deps: Deps | None = None) -> Handler:
    """The authorizer over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        request = parse_event(event)
        wired = deps if deps is not None else default_deps()
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
    )
    metrics.add_metric(name=f"{DENIED_PREFIX}{decision.reason}", unit=MetricUnit.Count, value=1)
    if decision.reason is Reason.UNAVAILABLE:
        metrics.add_metric(name=METERING_FAILURES, unit=MetricUnit.Count, value=1)


def render(request: AccessRequest, decision: Decision) -> dict[str, Any]:
    """REST: an IAM policy plus context. HTTP API v2: the simple response."""
    if request.kind == "http":
        return {"isAuthorized": decision.allowed, "context": decision.context}
    return {
        "principalId": decision.principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Action": "execute-api:Invoke",
                    "Effect": "Allow" if decision.allowed else "Deny",
                    "Resource": request.method_arn or "*",
                }
            ],
        },
        "context": decision.context,
    }


handler = make_handler()
