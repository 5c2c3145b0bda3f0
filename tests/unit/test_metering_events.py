"""Parsing authorizer events: the facts of both shapes, and a clean ``problem`` for every malformed one."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import Authorizer
from tests.events import http_event, rest_event
from tollgate.domain.keyformat import generate_key
from tollgate.errors import MeteringUnavailableError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.events import (
    BAD_HEADERS,
    BAD_METHOD_ARN,
    BAD_REQUEST_CONTEXT,
    BAD_REQUEST_ID,
    BAD_REQUEST_TIME,
    BAD_ROUTE,
    MAX_HEADER_CHARS,
    NOT_AN_OBJECT,
    REQUEST_TIME_TOLERANCE_MS,
    parse_event,
)
from tollgate.metering.grants import Grant
from tollgate.metering.observability import SERVICE


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


NOW_MS = _ms("2026-11-15T12:00:00")
KEY = generate_key()


def test_rest_event_facts() -> None:
    request = parse_event(
        rest_event("POST", "/v1/items/{id}", headers={"X-Api-Key": KEY}, epoch_ms=NOW_MS), NOW_MS
    )

    assert request.problem is None
    assert (request.kind, request.route, request.epoch_ms) == ("rest", "POST /v1/items/{id}", NOW_MS)
    assert request.candidates == (KEY,)
    assert request.request_id == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert request.method_arn is not None
    assert request.method_arn.endswith("/prod/POST/v1/items/{id}")


def test_http_api_event_uses_time_epoch_and_request_id_like_rest() -> None:
    stamped = _ms("2026-10-31T23:59:59.999")
    event = http_event("GET /v1/search", headers={"authorization": f"Bearer {KEY}"}, epoch_ms=stamped)
    event["requestContext"]["requestId"] = "JKJaXmPLvHcESHA="

    request = parse_event(event, _ms("2026-11-01T00:00:01"))

    assert request.problem is None
    assert (request.kind, request.route, request.epoch_ms) == ("http", "GET /v1/search", stamped)
    assert request.request_id == "JKJaXmPLvHcESHA="
    assert request.candidates == (KEY,)


def test_the_period_is_the_stamps_even_when_the_clock_is_in_the_next_month() -> None:
    """decide counts in the period of request.epoch_ms, never the clock's."""
    stamped = _ms("2026-10-31T23:59:59.999")
    counted: list[str] = []
    grant = Grant("k1", "acme", "active", None, None, 1, "payg", 1)

    class Keys:
        def find(self, key_hash: str) -> Grant | None:
            return grant

    class Counter:
        def add(self, customer_id: str, period: str, *_: Any, day: int) -> int | None:
            counted.append(f"{period}-{day:02d}")
            return 1

    request = parse_event(http_event(headers={"x-api-key": KEY}, epoch_ms=stamped), stamped + 1)
    decision = authorize(request, Keys(), Counter())

    assert decision.allowed
    assert decision.context["period"] == "2026-10"
    assert counted == ["2026-10-31"]  # its own day too, in UTC


@pytest.mark.parametrize("offset", [0, 1, -1, REQUEST_TIME_TOLERANCE_MS, -REQUEST_TIME_TOLERANCE_MS])
def test_a_stamp_within_the_tolerance_is_accepted(offset: int) -> None:
    for event in (rest_event(epoch_ms=NOW_MS + offset), http_event(epoch_ms=NOW_MS + offset)):
        assert parse_event(event, NOW_MS).problem is None


@pytest.mark.parametrize(
    "stamp",
    [
        NOW_MS + REQUEST_TIME_TOLERANCE_MS + 1,
        NOW_MS - REQUEST_TIME_TOLERANCE_MS - 1,
        0,
        -5,
        math.nan,
        math.inf,
        -math.inf,
        1e308,
        10**400,
        str(NOW_MS),
        True,
        False,
        None,
        [NOW_MS],
    ],
)
def test_a_stamp_that_is_not_api_gateways_is_a_problem(stamp: Any) -> None:
    rest = rest_event()
    rest["requestContext"]["requestTimeEpoch"] = stamp
    v2 = http_event()
    v2["requestContext"]["timeEpoch"] = stamp

    assert parse_event(rest, NOW_MS).problem == BAD_REQUEST_TIME
    assert parse_event(v2, NOW_MS).problem == BAD_REQUEST_TIME


def test_a_rest_event_needs_an_arn_to_allow() -> None:
    for arn in (None, "", "*", 7, "execute-api:*"):
        event = rest_event(epoch_ms=NOW_MS)
        event["methodArn"] = arn
        request = parse_event(event, NOW_MS)
        assert request.problem == BAD_METHOD_ARN
        assert request.method_arn is None


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        (None, NOT_AN_OBJECT),
        ([], NOT_AN_OBJECT),
        ("{}", NOT_AN_OBJECT),
        ({}, BAD_REQUEST_CONTEXT),
        ({"version": "2.0"}, BAD_REQUEST_CONTEXT),
        ({"version": "2.0", "requestContext": {"timeEpoch": NOW_MS}}, BAD_ROUTE),
        (
            {"version": "2.0", "requestContext": {"timeEpoch": NOW_MS}, "routeKey": "GET /", "headers": 1},
            BAD_HEADERS,
        ),
    ],
)
def test_shapes_that_are_not_events(event: Any, problem: str) -> None:
    request = parse_event(event, NOW_MS)
    assert request.problem == problem
    assert request.malformed
    assert request.candidates == ()


def test_a_malformed_request_is_refused_before_the_key_is_looked_at() -> None:
    class Nothing:
        def find(self, key_hash: str) -> Grant | None:
            raise AssertionError("no lookup for a malformed request")

        def add(self, *_: Any, **__: Any) -> int | None:
            raise AssertionError("no write for a malformed request")

    event = rest_event(headers={"x-api-key": KEY}, epoch_ms=NOW_MS)
    event["headers"]["Accept"] = None

    decision = authorize(parse_event(event, NOW_MS), Nothing(), Nothing())

    assert decision.reason is Reason.MALFORMED_REQUEST
    assert decision.context["message"]


def test_headers_absent_or_null_are_no_headers() -> None:
    event = rest_event(epoch_ms=NOW_MS)
    event["headers"] = None
    event["multiValueHeaders"] = None
    assert parse_event(event, NOW_MS).candidates == ()
    v2 = http_event(epoch_ms=NOW_MS)
    del v2["headers"]
    assert parse_event(v2, NOW_MS).candidates == ()


@pytest.mark.parametrize("applied", [None, False])
def test_an_unknown_write_outcome_is_marked_on_the_decision(applied: bool | None) -> None:
    grant = Grant("k1", "acme", "active", None, None, 1, "payg", 1)

    class Keys:
        def find(self, key_hash: str) -> Grant | None:
            return grant

    class Failing:
        def add(self, *_: Any, **__: Any) -> int | None:
            raise MeteringUnavailableError("lost", applied=applied)

    request = parse_event(rest_event(headers={"x-api-key": KEY}, epoch_ms=NOW_MS), NOW_MS)
    closed = authorize(request, Keys(), Failing())
    opened = authorize(request, Keys(), Failing(), fail_open=True)

    assert closed.reason is Reason.UNAVAILABLE
    assert opened.allowed
    assert opened.context["metered"] is False
    assert closed.outcome_unknown is opened.outcome_unknown is (applied is None)
    # the refusal keeps what the request would have cost, for the usage ledger's reconciliation
    assert {k: closed.context[k] for k in ("reason", "customerId", "keyId", "credits", "metered")} == {
        "reason": "metering_unavailable",
        "customerId": "acme",
        "keyId": "k1",
        "credits": 1,
        "metered": False,
    }
    assert closed.context["period"] == opened.context["period"]


def _malformed_rest(problem: str) -> dict[str, Any]:
    event = rest_event(headers={"x-api-key": KEY}, epoch_ms=NOW_MS, request_id="req-rest-1")
    if problem == BAD_REQUEST_CONTEXT:
        event["requestContext"] = []
    elif problem == BAD_REQUEST_ID:
        event["requestContext"]["requestId"] = 7
    elif problem == BAD_METHOD_ARN:
        del event["methodArn"]
    elif problem == BAD_REQUEST_TIME:
        event["requestContext"]["requestTimeEpoch"] = 0
    elif problem == BAD_ROUTE:
        event["resource"] = ""
    else:
        event["multiValueHeaders"]["x-api-key"] = KEY  # a string where REST sends a list
    return event


def _malformed_http(problem: str, any_route: bool = False) -> dict[str, Any]:
    event = http_event("ANY /v1/items" if any_route else "GET /v1/search", headers={"x-api-key": KEY})
    event["requestContext"]["timeEpoch"] = NOW_MS
    event["requestContext"]["requestId"] = "req-http-1"
    if problem == BAD_REQUEST_TIME:
        event["requestContext"]["timeEpoch"] = 0
    elif problem == BAD_ROUTE and any_route:
        del event["requestContext"]["http"]["method"]  # an ANY route without the request's method
    elif problem == BAD_ROUTE:
        event["routeKey"] = ""
    else:
        event["headers"]["x-api-key"] = [KEY]  # v2 joins repeated headers: never a list
    return event


@pytest.mark.parametrize(
    ("problem", "any_route"),
    [(BAD_REQUEST_TIME, False), (BAD_ROUTE, False), (BAD_ROUTE, True), (BAD_HEADERS, False)],
)
def test_a_malformed_http_api_request_keeps_only_its_request_id(problem: str, any_route: bool) -> None:
    """What the denial log line shows: the request id to find it by, no route, and no ARN (v2 has none)."""
    request = parse_event(_malformed_http(problem, any_route), NOW_MS)

    assert (request.kind, request.problem, request.request_id) == ("http", problem, "req-http-1")
    assert (request.route, request.method_arn, request.candidates) == ("", None, ())


@pytest.mark.parametrize(
    ("problem", "request_id", "arn_kept"),
    [
        (BAD_REQUEST_CONTEXT, "", True),  # no request context: no id to keep
        (BAD_REQUEST_ID, "", True),
        (BAD_METHOD_ARN, "req-rest-1", False),
        (BAD_REQUEST_TIME, "req-rest-1", True),
        (BAD_ROUTE, "req-rest-1", True),
        (BAD_HEADERS, "req-rest-1", True),
    ],
)
def test_a_malformed_rest_request_keeps_its_request_id_and_the_arn_its_deny_names(
    problem: str, request_id: str, arn_kept: bool
) -> None:
    """The deny of a REST request names its own methodArn whenever the event has one (``*`` otherwise)."""
    event = _malformed_rest(problem)

    request = parse_event(event, NOW_MS)

    assert (request.kind, request.problem, request.request_id) == ("rest", problem, request_id)
    assert (request.route, request.candidates) == ("", ())
    assert request.method_arn == (event["methodArn"] if arn_kept else None)


@pytest.mark.parametrize(
    "event",
    [
        http_event(epoch_ms=NOW_MS),
        rest_event(epoch_ms=NOW_MS),
        {"version": "2.0", "requestContext": {"timeEpoch": NOW_MS}},  # malformed: no route
        {"requestContext": {"requestTimeEpoch": NOW_MS}},  # malformed: no methodArn
        {"requestContext": []},  # malformed: no request context to read an id from
        [],  # not an event at all
    ],
)
def test_a_request_without_a_request_id_reads_as_an_empty_one(event: Any) -> None:
    well_formed = isinstance(event, dict) and ("routeKey" in event or "methodArn" in event)
    if isinstance(event, dict) and isinstance(event.get("requestContext"), dict):
        event["requestContext"].pop("requestId", None)

    request = parse_event(event, NOW_MS)

    assert request.request_id == ""
    assert (request.problem is None) is well_formed  # an id is only logged: its absence refuses nothing


def test_a_malformed_requests_denial_is_logged_with_its_request_id_and_problem(
    authorizer: Authorizer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger=SERVICE):
        answer = authorizer(_malformed_http(BAD_ROUTE))

    assert (answer["isAuthorized"], answer["context"]["reason"]) == (False, "malformed_request")
    (denied,) = [vars(r) for r in caplog.records if r.getMessage() == "denied"]
    assert (denied["reason"], denied["problem"], denied["request_id"]) == (
        "malformed_request",
        BAD_ROUTE,
        "req-http-1",
    )
    assert (denied["route"], denied["customer_id"]) == ("", "anonymous")


def _candidates(headers: dict[str, str], multi: dict[str, list[str]] | None = None) -> tuple[str, ...]:
    request = parse_event(rest_event(headers=headers, multi_value_headers=multi, epoch_ms=NOW_MS), NOW_MS)
    assert request.problem is None
    return request.candidates


def test_the_same_key_sent_twice_in_one_header_is_one_key() -> None:
    """An HTTP API joins a repeated header with commas; a proxy may repeat the key: still one key, allowed."""
    v2 = http_event(headers={"x-api-key": f"{KEY},{KEY}", "authorization": f"Bearer {KEY}, Bearer {KEY}"})
    v2["requestContext"]["timeEpoch"] = NOW_MS

    assert parse_event(v2, NOW_MS).candidates == (KEY,)
    assert _candidates({"x-api-key": f"{KEY}, {KEY}"}) == (KEY,)
    assert _candidates({"Authorization": f"Bearer {KEY},Bearer {KEY}"}) == (KEY,)


def test_a_key_header_as_long_as_the_cap_is_still_read() -> None:
    """The cap refuses longer headers unread; one exactly that long (the key repeated, padded) is parsed."""
    repeated = ", ".join([KEY] * 9)
    at_cap = repeated + " " * (MAX_HEADER_CHARS - len(repeated))
    bearer_at_cap = f"Bearer {KEY}".ljust(MAX_HEADER_CHARS)
    assert len(at_cap) == len(bearer_at_cap) == MAX_HEADER_CHARS

    assert _candidates({"x-api-key": at_cap}) == (KEY,)
    assert _candidates({"Authorization": bearer_at_cap}) == (KEY,)
    assert _candidates({"x-api-key": at_cap + " "}) == (at_cap,)  # one more: the first 512, unsplit
    assert _candidates({"Authorization": bearer_at_cap + " "}) == (bearer_at_cap,)


def test_an_over_long_authorization_of_another_scheme_is_ignored_and_the_bearer_beside_it_read() -> None:
    """Another system's token (a long JWT, Basic credentials) in one Authorization header does not hide the
    Tollgate key sent in the next one."""
    jwt = "Token " + "e" * 600

    assert _candidates({}, {"Authorization": [jwt, f"Bearer {KEY}"]}) == (KEY,)
    assert _candidates({}, {"Authorization": ["Basic " + "b" * 40, f"Bearer {KEY}"]}) == (KEY,)
