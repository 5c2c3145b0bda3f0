"""The example backend behind the metered routes: it answers with what the authorizer told it.

A provider's real backend reads the same context (REST: ``requestContext.authorizer``; HTTP API v2:
``requestContext.authorizer.lambda``) to know who is calling and what the request cost.
"""

from __future__ import annotations

import json
from typing import Any


def authorizer_context(event: dict[str, Any]) -> dict[str, Any]:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    return dict(authorizer.get("lambda", authorizer))


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    caller = authorizer_context(event)
    route = event.get("routeKey") or f"{event.get('httpMethod')} {event.get('resource')}"
    body = {
        "route": route,
        "customerId": caller.get("customerId"),
        "creditsCharged": int(caller.get("credits", 0)),
        "creditsUsed": int(caller["creditsUsed"]) if "creditsUsed" in caller else None,
        "period": caller.get("period"),
        "result": f"sample answer for {route}",
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
