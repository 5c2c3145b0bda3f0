"""API Gateway authorizer events (REST REQUEST and HTTP API v2) -> one ``AccessRequest``.

Both shapes carry the same facts in different places; everything after this module sees only the facts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

API_KEY_HEADER = "x-api-key"
BEARER = "bearer "
MAX_HEADER_CHARS = 512  # a key is 51 characters; anything far longer is refused before any other work


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What the authorizer needs to know about one request."""

    kind: str  # "rest" or "http"
    candidates: tuple[str, ...]  # distinct key values found in the headers (0, 1 or several)
    route: str | None  # the route template: "GET /v1/items/{id}"
    epoch_ms: int  # API Gateway's timestamp of the request
    request_id: str
    method_arn: str | None  # REST only: the resource the IAM policy must name


def parse_event(event: dict[str, Any]) -> AccessRequest:
    if event.get("version") == "2.0":
        return _from_http_api(event)
    return _from_rest_api(event)


def _from_rest_api(event: dict[str, Any]) -> AccessRequest:
    context = event.get("requestContext") or {}
    method, resource = event.get("httpMethod"), event.get("resource")
    headers = _header_values(event.get("headers"), event.get("multiValueHeaders"))
    return AccessRequest(
        kind="rest",
        candidates=_key_candidates(headers),
        route=f"{method} {resource}" if method and resource else None,
        epoch_ms=_epoch_ms(context.get("requestTimeEpoch")),
        request_id=str(context.get("requestId", "")),
        method_arn=event.get("methodArn"),
    )


def _from_http_api(event: dict[str, Any]) -> AccessRequest:
    context = event.get("requestContext") or {}
    route_key = event.get("routeKey")
    headers = _header_values(event.get("headers"), None)
    return AccessRequest(
        kind="http",
        candidates=_key_candidates(headers),
        route=route_key if isinstance(route_key, str) and route_key else None,
        epoch_ms=_epoch_ms(context.get("timeEpoch")),
        request_id=str(context.get("requestId", "")),
        method_arn=event.get("routeArn"),
    )


def _header_values(single: Any, multi: Any) -> dict[str, list[str]]:
    """Header name (lower-cased) -> every value sent. v2 joins repeated headers with commas; REST keeps
    them in ``multiValueHeaders``."""
    values: dict[str, list[str]] = {}
    for source in (multi, single):
        if not isinstance(source, dict):
            continue
        for name, value in source.items():
            if not isinstance(name, str):
                continue
            items = value if isinstance(value, list) else [value]
            bucket = values.setdefault(name.lower(), [])
            bucket.extend(v for v in items if isinstance(v, str) and v not in bucket)
    return values


def _key_candidates(headers: dict[str, list[str]]) -> tuple[str, ...]:
    found: list[str] = []
    for value in headers.get(API_KEY_HEADER, []):
        found.extend(part.strip() for part in value.split(","))
    for value in headers.get("authorization", []):
        for part in value.split(","):
            part = part.strip()
            if part[: len(BEARER)].lower() == BEARER:
                found.append(part[len(BEARER) :].strip())
            elif part.lower() == BEARER.strip():
                found.append("")  # "Bearer" with nothing after it
    distinct: list[str] = []
    for candidate in found:
        if candidate not in distinct:
            distinct.append(candidate)
    return tuple(distinct)


def _epoch_ms(value: Any) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return int(time.time() * 1000)
