"""GET /forecast/{city}: the provider's own code. Tollgate's authorizer already checked the key and counted
the request; the context it passes says who called and what it cost."""

import json


def handler(event, context):
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    caller = authorizer.get("lambda", authorizer)  # HTTP API v2 nests it under "lambda"
    city = (event.get("pathParameters") or {}).get("city", "?")
    body = {"city": city, "forecast": "sunny", "customerId": caller.get("customerId")}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
