"""API Gateway authorizer events (REST REQUEST and HTTP API v2) -> one ``AccessRequest``.

Both shapes carry the same facts in different places; everything after this module sees only the facts.

**Any input parses.** :func:`parse_event` never raises. Every field the authorizer reads must have the type
API Gateway documents for it, or the request is *malformed* (``AccessRequest.problem`` names what is wrong)
and is refused as ``malformed_request`` before any DynamoDB call:

- the event is a JSON object; ``requestContext`` is an object;
- REST: ``httpMethod`` and ``resource`` are non-empty strings (the route template), ``methodArn`` is an ARN
  (an Allow names it and nothing else: never ``*``); HTTP API v2 (``"version": "2.0"``): ``routeKey`` is a
  non-empty string, and for an ``ANY /path`` route ``requestContext.http.method`` names the method;
- ``headers`` (and REST's ``multiValueHeaders``) are absent, null, or objects of strings (lists of strings);
- ``requestContext.requestId``, when present, is a string (it is only logged; absent reads as ``""``);
- the request's timestamp, below.

**The request time decides the period.** Usage is counted in the billing period of API Gateway's own timestamp
of the request (REST ``requestContext.requestTimeEpoch``, v2 ``requestContext.timeEpoch``, milliseconds),
not the time of the counter write, so a request made at 23:59:59.999 on the last day of a month counts in that
month. The timestamp is therefore required: it must be a finite number (not a boolean, not a string) within
:data:`REQUEST_TIME_TOLERANCE_MS` (5 minutes) of the authorizer's own clock. API Gateway stamps the request
when it receives it and invokes the authorizer at once (an authorizer times out after seconds), so a genuine
timestamp is always that close; one that is missing, 0 (1970), far in the past or in the future is not API
Gateway's, and the request is refused rather than counted in the wrong period, or in the authorizer's own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

API_KEY_HEADER = "x-api-key"
AUTHORIZATION_HEADER = "authorization"
BEARER = "bearer "
MAX_HEADER_CHARS = 512  # a key is 51 characters; a longer key header is refused before any other work
REQUEST_TIME_TOLERANCE_MS = 5 * 60 * 1000  # |request timestamp - authorizer's clock| allowed

# What makes a request malformed (``AccessRequest.problem``; logged with the deny, never shown to the caller).
NOT_AN_OBJECT = "event_not_an_object"
BAD_REQUEST_CONTEXT = "request_context"
BAD_REQUEST_TIME = "request_time"
BAD_REQUEST_ID = "request_id"
BAD_ROUTE = "route"
BAD_METHOD_ARN = "method_arn"
BAD_HEADERS = "headers"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """What the authorizer needs to know about one request."""

    kind: str  # "rest" or "http"
    candidates: tuple[str, ...]  # distinct key values found in the headers (0, 1 or several)
    # The request's method and route template, "GET /v1/items/{id}", also under ANY ("" when malformed)
    route: str
    epoch_ms: int  # API Gateway's timestamp of the request (0 when malformed)
    request_id: str
    method_arn: str | None  # REST only: the resource the IAM policy names
    problem: str | None = None  # why the event is malformed; None for a well-formed one

    @property
    def malformed(self) -> bool:
        return self.problem is not None


def parse_event(event: Any, now_ms: int) -> AccessRequest:
    """The facts of ``event``, whatever it is; ``now_ms``: the authorizer's clock, in epoch milliseconds."""
    if not isinstance(event, dict):
        return _malformed("rest", NOT_AN_OBJECT)
    if event.get("version") == "2.0":
        return _from_http_api(event, now_ms)
    return _from_rest_api(event, now_ms)


def _from_rest_api(event: dict[str, Any], now_ms: int) -> AccessRequest:
    kind = "rest"
    method_arn = event.get("methodArn")
    arn = method_arn if isinstance(method_arn, str) and method_arn.startswith("arn:") else None
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return _malformed(kind, BAD_REQUEST_CONTEXT, arn)
    request_id = context.get("requestId", "")
    if not isinstance(request_id, str):
        return _malformed(kind, BAD_REQUEST_ID, arn)
    if arn is None:
        return _malformed(kind, BAD_METHOD_ARN, None, request_id)
    epoch_ms = _request_time(context.get("requestTimeEpoch"), now_ms)
    if epoch_ms is None:
        return _malformed(kind, BAD_REQUEST_TIME, arn, request_id)
    method, resource = event.get("httpMethod"), event.get("resource")
    if not (isinstance(method, str) and method and isinstance(resource, str) and resource):
        return _malformed(kind, BAD_ROUTE, arn, request_id)
    headers = _header_values(event.get("headers"), event.get("multiValueHeaders"))
    if headers is None:
        return _malformed(kind, BAD_HEADERS, arn, request_id)
    return AccessRequest(
        kind=kind,
        candidates=_key_candidates(headers),
        route=f"{method} {resource}",
        epoch_ms=epoch_ms,
        request_id=request_id,
        method_arn=arn,
    )


def _from_http_api(event: dict[str, Any], now_ms: int) -> AccessRequest:
    kind = "http"
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return _malformed(kind, BAD_REQUEST_CONTEXT)
    request_id = context.get("requestId", "")
    if not isinstance(request_id, str):
        return _malformed(kind, BAD_REQUEST_ID)
    epoch_ms = _request_time(context.get("timeEpoch"), now_ms)
    if epoch_ms is None:
        return _malformed(kind, BAD_REQUEST_TIME, None, request_id)
    route_key = event.get("routeKey")
    if not (isinstance(route_key, str) and route_key):
        return _malformed(kind, BAD_ROUTE, None, request_id)
    route = _http_route(route_key, context.get("http"))
    if route is None:
        return _malformed(kind, BAD_ROUTE, None, request_id)
    headers = _header_values(event.get("headers"), None)
    if headers is None:
        return _malformed(kind, BAD_HEADERS, None, request_id)
    return AccessRequest(
        kind=kind,
        candidates=_key_candidates(headers),
        route=route,
        epoch_ms=epoch_ms,
        request_id=request_id,
        method_arn=None,
    )


def _http_route(route_key: str, http: Any) -> str | None:
    """An ``ANY /path`` route key with the request's real method (``GET /path``), as REST events have it;
    any other route key (``GET /path``, ``$default``) as it is. ``None``: an ``ANY`` route with no method."""
    if not route_key.startswith("ANY "):
        return route_key
    method = http.get("method") if isinstance(http, dict) else None
    if not (isinstance(method, str) and method.isalpha()):
        return None
    return f"{method.upper()} {route_key[4:]}"


def _malformed(kind: str, problem: str, method_arn: str | None = None, request_id: str = "") -> AccessRequest:
    return AccessRequest(
        kind=kind,
        candidates=(),
        route="",
        epoch_ms=0,
        request_id=request_id,
        method_arn=method_arn,
        problem=problem,
    )


def _request_time(value: Any, now_ms: int) -> int | None:
    """API Gateway's timestamp in epoch milliseconds, or None when it cannot be API Gateway's (see above)."""
    if type(value) is int:  # exactly int: a bool is not a timestamp
        epoch_ms = value
    elif type(value) is float and math.isfinite(value):
        epoch_ms = int(value)
    else:
        return None
    return epoch_ms if abs(epoch_ms - now_ms) <= REQUEST_TIME_TOLERANCE_MS else None


def _header_values(single: Any, multi: Any) -> dict[str, list[str]] | None:
    """The key headers (lower-cased name -> every value sent), or None when a header map is malformed.

    v2 joins repeated headers with commas; REST keeps them in ``multiValueHeaders``.
    """
    values: dict[str, list[str]] = {}
    for source, many in ((multi, True), (single, False)):
        if source is None:
            continue
        if not isinstance(source, dict):
            return None
        for name, value in source.items():
            if not isinstance(name, str):
                return None
            if many:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    return None
                items = value
            elif isinstance(value, str):
                items = [value]
            else:
                return None
            lowered = name.lower()
            if lowered != API_KEY_HEADER and lowered != AUTHORIZATION_HEADER:
                continue
            bucket = values.setdefault(lowered, [])
            bucket.extend(v for v in items if v not in bucket)
    return values


def _key_candidates(headers: dict[str, list[str]]) -> tuple[str, ...]:
    found: list[str] = []
    for value in headers.get(API_KEY_HEADER, []):
        if len(value) > MAX_HEADER_CHARS:
            found.append(value[:MAX_HEADER_CHARS])  # cannot be a key: refused as malformed, unsplit
            continue
        found.extend(part.strip() for part in value.split(","))
    for value in headers.get(AUTHORIZATION_HEADER, []):
        if len(value) > MAX_HEADER_CHARS:
            if value[: len(BEARER)].lower() == BEARER:
                found.append(value[:MAX_HEADER_CHARS])
            continue
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
