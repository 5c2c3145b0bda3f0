"""The example backend behind the metered routes: it answers with what the authorizer told it.

A provider's real backend reads the same context (REST: ``requestContext.authorizer``; HTTP API v2:
``requestContext.authorizer.lambda``) to know who is calling and what the request cost.

A failure on demand, to see "bill only what succeeded" work (``Plan.refund_statuses``): any route called with
``?fail=503`` (any status from 400 to 599) answers that status instead, after the authorizer counted the
request; a plan that refunds that status takes its credits back once the ledger is delivered.
"""

from __future__ import annotations

import json
from typing import Any

FAIL_PARAMETER = "fail"  # ?fail=503: answer 503
FAIL_STATUSES = range(400, 600)
JSON = {"content-type": "application/json"}


def authorizer_context(event: dict[str, Any]) -> dict[str, Any]:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return dict(authorizer.get("lambda", authorizer))


def requested_failure(event: dict[str, Any]) -> int | None:
    """The status ``?fail=`` asks for; None when the request does not ask to fail. Raises ``ValueError``
    for a value that is not an error status (400 to 599)."""
    value = (event.get("queryStringParameters") or {}).get(FAIL_PARAMETER)
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or int(value) not in FAIL_STATUSES:
        raise ValueError(f"{FAIL_PARAMETER} is an error status, 400 to 599, not {value!r}")
    return int(value)


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    caller = authorizer_context(event)
    route = event.get("routeKey") or f"{event.get('httpMethod')} {event.get('resource')}"
    try:
        failure = requested_failure(event)
    except ValueError as error:
        body = {"error": "invalid_fail", "message": str(error), "route": route}
        return {"statusCode": 400, "headers": JSON, "body": json.dumps(body)}
    if failure is not None:
        body = {"error": "backend_failure", "message": f"failed on request (?fail={failure})", "route": route}
        return {"statusCode": failure, "headers": JSON, "body": json.dumps(body)}
    body = {
        "route": route,
        "customerId": caller.get("customerId"),
        "creditsCharged": int(caller.get("credits", 0)),
        "creditsUsed": int(caller["creditsUsed"]) if "creditsUsed" in caller else None,
        "period": caller.get("period"),
        "result": f"sample answer for {route}",
    }
    return {"statusCode": 200, "headers": JSON, "body": json.dumps(body)}
