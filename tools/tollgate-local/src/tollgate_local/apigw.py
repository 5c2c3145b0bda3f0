"""Real-shaped API Gateway events (as AWS documents them): what the local gateway hands the authorizer and the
backends, and what the tests and the benchmark send."""

from __future__ import annotations

from typing import Any

ACCOUNT = "123456789012"
API_ID = "abcdef1234"
EPOCH_MS = 1_763_208_000_000  # 2025-11-15T12:00:00Z; tests override it


def rest_event(
    method: str = "GET",
    resource: str = "/v1/search",
    path: str | None = None,
    headers: dict[str, str] | None = None,
    multi_value_headers: dict[str, list[str]] | None = None,
    epoch_ms: int = EPOCH_MS,
    path_parameters: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
) -> dict[str, Any]:
    """A REST API ``REQUEST`` authorizer event: the route template is ``httpMethod`` + ``resource``."""
    headers = headers or {}
    multi = multi_value_headers or {name: [value] for name, value in headers.items()}
    concrete = path or resource
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API_ID}/prod/{method}{concrete}",
        "resource": resource,
        "path": concrete,
        "httpMethod": method,
        "headers": {
            "Host": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "User-Agent": "curl/8.5",
            **headers,
        },
        "multiValueHeaders": {
            "Host": [f"{API_ID}.execute-api.us-east-1.amazonaws.com"],
            "User-Agent": ["curl/8.5"],
            **multi,
        },
        "queryStringParameters": dict(query or {}),
        "multiValueQueryStringParameters": {name: [value] for name, value in (query or {}).items()},
        "pathParameters": path_parameters or {},
        "stageVariables": {},
        "requestContext": {
            "path": f"/prod{concrete}",
            "accountId": ACCOUNT,
            "resourceId": "a1b2c3",
            "stage": "prod",
            "requestId": request_id,
            "identity": {"sourceIp": "203.0.113.7", "userAgent": "curl/8.5"},
            "resourcePath": resource,
            "httpMethod": method,
            "apiId": API_ID,
            "requestTimeEpoch": epoch_ms,
        },
    }


def http_event(
    route_key: str = "GET /v1/search",
    raw_path: str | None = None,
    headers: dict[str, str] | None = None,
    epoch_ms: int = EPOCH_MS,
    path_parameters: dict[str, str] | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """An HTTP API (v2) authorizer event, payload format 2.0: header names arrive lower-cased.

    ``method``: the request's own (``requestContext.http.method``); by default the route key's, which an
    ``ANY`` route key needs given (API Gateway sends the real one)."""
    route_method, _, template = route_key.partition(" ")
    method = method or route_method
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    concrete = raw_path or template
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeArn": f"arn:aws:execute-api:us-east-1:{ACCOUNT}:{API_ID}/$default/{method}{concrete}",
        "identitySource": [v for k, v in lowered.items() if k in ("x-api-key", "authorization")],
        "routeKey": route_key,
        "rawPath": concrete,
        "rawQueryString": "",
        "headers": {
            "host": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "user-agent": "curl/8.5",
            **lowered,
        },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": API_ID,
            "domainName": f"{API_ID}.execute-api.us-east-1.amazonaws.com",
            "http": {"method": method, "path": concrete, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "requestId": "JKJaXmPLvHcESHA=",
            "routeKey": route_key,
            "stage": "$default",
            "time": "15/Nov/2025:12:00:00 +0000",
            "timeEpoch": epoch_ms,
        },
        "pathParameters": path_parameters or {},
    }


def rest_proxy_event(
    authorizer_event: dict[str, Any], principal: str, context: dict[str, Any], body: str | None = None
) -> dict[str, Any]:
    """The Lambda proxy integration event the backend gets after an Allow: the request plus the authorizer's
    principal and context under ``requestContext.authorizer``."""
    proxy = {key: value for key, value in authorizer_event.items() if key not in ("type", "methodArn")}
    proxy["body"] = body
    proxy["isBase64Encoded"] = False
    proxy["requestContext"] = {
        **authorizer_event["requestContext"],
        "authorizer": {"principalId": principal, **context},
    }
    return proxy
