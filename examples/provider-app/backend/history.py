"""GET /history/{city}: the provider's own code (a pricier route: its cost is set in the plan)."""

import json


def handler(event, context):
    city = (event.get("pathParameters") or {}).get("city", "?")
    body = {"city": city, "history": [{"day": "2026-11-01", "high": 14, "low": 6}]}
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
