"""The metering Lambda authorizer: REST API REQUEST events and HTTP API v2 events, same logic behind both.

Kept lean on purpose (it runs on every paid request): no pydantic, no stripe. The DynamoDB client is made on
the first invocation and reused by every later one.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.config import Config

from tollgate.metering.decide import MeteringSettings, MeteringUnavailableError, authorize
from tollgate.metering.decisions import Decision, Reason
from tollgate.metering.dynamo import DynamoKeyDirectory, DynamoUsageCounter, TtlCache
from tollgate.metering.events import AccessRequest, parse_event

logger = Logger(service="tollgate-authorizer")
metrics = Metrics(namespace="Tollgate", service="tollgate-authorizer")
KEY_CACHE = TtlCache()
# One attempt per call: retries are decided in tollgate.metering.dynamo, where it is known whether a write
# applied.
CLIENT_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2)


@cache
def _services() -> tuple[DynamoKeyDirectory, DynamoUsageCounter, MeteringSettings]:
    table = os.environ["TABLE_NAME"]
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)
    keys = DynamoKeyDirectory(
        client,
        table,
        ttl=float(os.environ.get("KEY_CACHE_TTL_SECONDS", "30")),
        negative_ttl=float(os.environ.get("NEGATIVE_CACHE_TTL_SECONDS", "5")),
        cache=KEY_CACHE,
    )
    settings = MeteringSettings(fail_open=os.environ.get("FAIL_OPEN", "false").lower() == "true")
    return keys, DynamoUsageCounter(client, table), settings


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    request = parse_event(event)
    keys, counter, settings = _services()
    try:
        decision = authorize(request, keys, counter, settings)
    except MeteringUnavailableError as error:  # the key lookup failed: a key we cannot check never passes
        logger.error("key lookup failed", request_id=request.request_id, error=str(error))
        decision = Decision.deny(Reason.UNAVAILABLE)
    _observe(request, decision)
    return render(request, decision)


def _observe(request: AccessRequest, decision: Decision) -> None:
    if decision.allowed and decision.context.get("metered", True):
        return  # the happy path writes no log line and no metric: the counter is the record
    if decision.allowed:
        logger.error("counter write failed; allowed unmetered (FAIL_OPEN)", request_id=request.request_id)
        metrics.add_metric(name="UnmeteredRequests", unit=MetricUnit.Count, value=1)
    else:
        logger.info(
            "denied",
            reason=str(decision.reason),
            customer_id=decision.principal,
            route=request.route,
            request_id=request.request_id,
        )
        metrics.add_metric(name=f"Denied_{decision.reason}", unit=MetricUnit.Count, value=1)
        if decision.reason is Reason.UNAVAILABLE:
            metrics.add_metric(name="MeteringFailures", unit=MetricUnit.Count, value=1)
    metrics.flush_metrics()


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
