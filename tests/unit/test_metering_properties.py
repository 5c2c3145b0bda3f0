"""Property: any input, a clean answer. Whatever JSON-ish event the authorizer is handed, it answers (never
raises), never allows a malformed event, never allows ``*``, and makes no key lookup or counter write for a
malformed event. The key directory and the counter are fakes that record every call.

What "well formed" means is stated here on its own (:func:`api_gateway_shaped`), from API Gateway's documented
event shapes, not by calling the parser under test.
"""

from __future__ import annotations

import copy
import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.events import http_event, rest_event
from tollgate.domain.keyformat import generate_key, hash_key
from tollgate.metering.grants import Grant
from tollgate.metering.handler import Deps, make_handler
from tollgate_local.lambda_context import LocalLambdaContext

NOW_MS = 1_794_744_000_000  # 2026-11-15T12:00:00Z
TOLERANCE_MS = 5 * 60 * 1000
KEY = generate_key()
GRANT = Grant("key-1", "acme", "active", None, None, 1, "payg", 1)
CONTEXT: Any = LocalLambdaContext(function_name="tollgate-property")
SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


class Recorder:
    """A fake KeyDirectory and UsageCounter in one: records every call (the stand-in for DynamoDB)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def find(self, key_hash: str) -> Grant | None:
        self.calls.append("find")
        return GRANT if key_hash == hash_key(KEY) else None

    def add(
        self,
        customer_id: str,
        period: str,
        shard: int,
        route: str,
        credits: int,
        limit: int | None,
        segment: int = 1,
        *,
        day: int,
    ) -> int:
        self.calls.append("add")
        return credits


def run(event: Any) -> tuple[dict[str, Any], list[str]]:
    recorder = Recorder()
    handle = make_handler(Deps(recorder, recorder, clock=lambda: NOW_MS / 1000))
    return handle(event, CONTEXT), recorder.calls


# --- the spec of a well-formed event ------------------------------------------------------------------------


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def api_gateway_shaped(event: Any) -> bool:
    """True when every field the authorizer reads has the type API Gateway documents, and the request time is
    within five minutes of the authorizer's clock."""
    if not isinstance(event, dict):
        return False
    v2 = event.get("version") == "2.0"
    context = event.get("requestContext")
    if not isinstance(context, dict):
        return False
    if "requestId" in context and not _is_str(context["requestId"]):
        return False
    stamp = context.get("timeEpoch" if v2 else "requestTimeEpoch")
    if isinstance(stamp, bool) or not isinstance(stamp, int | float):
        return False
    if isinstance(stamp, float) and not math.isfinite(stamp):
        return False
    if abs(int(stamp) - NOW_MS) > TOLERANCE_MS:
        return False
    headers = event.get("headers")
    if headers is not None and not (
        isinstance(headers, dict) and all(_is_str(k) and _is_str(v) for k, v in headers.items())
    ):
        return False
    if v2:
        return _is_str(event.get("routeKey")) and bool(event["routeKey"])
    multi = event.get("multiValueHeaders")
    if multi is not None and not (
        isinstance(multi, dict)
        and all(_is_str(k) and isinstance(v, list) and all(map(_is_str, v)) for k, v in multi.items())
    ):
        return False
    arn = event.get("methodArn")
    return (
        _is_str(arn)
        and arn.startswith("arn:")
        and all(_is_str(event.get(f)) and event[f] for f in ("httpMethod", "resource"))
    )


def check_answer(event: Any, answer: dict[str, Any], calls: list[str]) -> bool:
    """The invariants of every answer; returns whether it allowed."""
    v2 = isinstance(event, dict) and event.get("version") == "2.0"
    context = answer["context"]
    assert all(isinstance(v, str | int | bool) for v in context.values())
    if v2:
        assert set(answer) == {"isAuthorized", "context"}
        allowed = answer["isAuthorized"]
        assert isinstance(allowed, bool)
    else:
        (statement,) = answer["policyDocument"]["Statement"]
        assert statement["Action"] == "execute-api:Invoke"
        assert statement["Effect"] in ("Allow", "Deny")
        allowed = statement["Effect"] == "Allow"
        if allowed:
            assert statement["Resource"] == event["methodArn"] != "*"
            assert statement["Resource"].startswith("arn:")
    if allowed:
        assert calls == ["find", "add"]  # only a looked-up and counted request passes
        assert context["customerId"] == "acme"
    else:
        assert context["reason"]
        assert "add" not in calls
    if not api_gateway_shaped(event):
        assert not allowed
        assert context["reason"] == "malformed_request"
        assert calls == []  # no DynamoDB call for a malformed event
    return bool(allowed)


# --- strategies -------------------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=NOW_MS - 2 * TOLERANCE_MS, max_value=NOW_MS + 2 * TOLERANCE_MS)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "*", "2.0", "arn:", KEY, f"Bearer {KEY}", "GET /v1/search", "x-api-key"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=10), children, max_size=3)
    ),
    max_leaves=8,
)
TOP_KEYS = [
    "version",
    "type",
    "methodArn",
    "resource",
    "path",
    "httpMethod",
    "headers",
    "multiValueHeaders",
    "requestContext",
    "routeKey",
    "routeArn",
    "identitySource",
]
CONTEXT_KEYS = ["requestTimeEpoch", "timeEpoch", "requestId", "http", "stage"]


@st.composite
def jsonish_events(draw: st.DrawFn) -> Any:
    """Anything: not an object, or an object whose known keys hold values of any type."""
    if draw(st.booleans()):
        return draw(json_values)
    event = draw(st.dictionaries(st.sampled_from(TOP_KEYS) | st.text(max_size=8), json_values, max_size=8))
    if draw(st.booleans()):
        event["requestContext"] = draw(
            st.dictionaries(st.sampled_from(CONTEXT_KEYS) | st.text(max_size=8), json_values, max_size=5)
        )
    return event


PATHS = [
    ("version",),
    ("methodArn",),
    ("httpMethod",),
    ("resource",),
    ("routeKey",),
    ("headers",),
    ("multiValueHeaders",),
    ("requestContext",),
    ("requestContext", "requestTimeEpoch"),
    ("requestContext", "timeEpoch"),
    ("requestContext", "requestId"),
    ("headers", "x-api-key"),
    ("headers", "X-Api-Key"),
    ("headers", "authorization"),
    ("headers", "Accept"),
    ("multiValueHeaders", "X-Api-Key"),
]
DELETE = object()


@st.composite
def mutated_events(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A real event carrying a valid key, with 0 to 3 known fields replaced by anything or deleted; and
    whether it was left untouched."""
    if draw(st.booleans()):
        event = rest_event(headers={"X-Api-Key": KEY}, epoch_ms=NOW_MS)
    else:
        event = http_event(headers={"x-api-key": KEY}, epoch_ms=NOW_MS)
    event = copy.deepcopy(event)
    mutations = draw(st.lists(st.tuples(st.sampled_from(PATHS), json_values | st.just(DELETE)), max_size=3))
    for path, value in mutations:
        parent: Any = event
        for name in path[:-1]:
            parent = parent.get(name) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue
        if value is DELETE:
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = value
    return event, not mutations


# --- properties -------------------------------------------------------------------------------------------


@SETTINGS
@given(jsonish_events())
def test_any_jsonish_event_gets_a_clean_answer(event: Any) -> None:
    answer, calls = run(event)
    check_answer(event, answer, calls)


@SETTINGS
@given(mutated_events())
def test_a_real_event_with_fields_of_any_type_is_allowed_only_when_well_formed(
    case: tuple[dict[str, Any], bool],
) -> None:
    event, untouched = case
    answer, calls = run(event)
    allowed = check_answer(event, answer, calls)
    if untouched:
        assert allowed


@SETTINGS
@given(st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=15) | st.booleans())
def test_any_request_time_outside_the_window_is_refused_and_costs_nothing(stamp: Any) -> None:
    event = rest_event(headers={"x-api-key": KEY}, epoch_ms=NOW_MS)
    event["requestContext"]["requestTimeEpoch"] = stamp
    answer, calls = run(event)

    allowed = check_answer(event, answer, calls)
    assert allowed == api_gateway_shaped(event)
