"""The counter item's route tallies: a route's credits and requests in one exact number."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tollgate.dal.counter_item import (
    ROUTE_CODE_LENGTH,
    is_route_code,
    read_route_tally,
    route_code,
    route_name_from_sort_key,
    route_tally,
)
from tollgate.dal.tablekeys import route_name_key
from tollgate.metering.dynamo import DynamoUsageCounter

MAX_REQUESTS_PER_ITEM = 1000 * 31 * 24 * 3600  # one partition's write ceiling over a 31-day period


def test_a_tally_reads_as_credits_before_the_point_and_requests_after_it() -> None:
    assert route_tally(5) == "5.0000000001"
    assert route_tally(0) == "0.0000000001"  # a free route still counts its requests
    assert route_tally(15, 3) == "15.0000000003"
    assert read_route_tally(Decimal("15.0000000003")) == (15, 3)
    assert read_route_tally("15") == (15, 0)  # DynamoDB trims trailing zeros: no requests in the fraction


# One ADD per request: (its credits, 1 request); DynamoDB sums the tallies exactly.
requests_st = st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=50)


@given(requests_st)
def test_sums_of_tallies_read_back_as_the_sums_of_credits_and_requests(costs: list[int]) -> None:
    total = sum((Decimal(route_tally(cost)) for cost in costs), Decimal(0))
    assert read_route_tally(total) == (sum(costs), len(costs))


@given(
    st.integers(min_value=0, max_value=10**27),
    st.integers(min_value=0, max_value=MAX_REQUESTS_PER_ITEM),
)
def test_a_tally_within_dynamodbs_38_digits_keeps_both_counts(credits: int, requests: int) -> None:
    tally = Decimal(route_tally(credits, requests))
    assert len(tally.normalize().as_tuple().digits) <= 38  # DynamoDB's precision: stored exactly
    assert read_route_tally(tally) == (credits, requests)


def test_a_period_of_requests_never_reaches_the_credits_digits() -> None:
    assert MAX_REQUESTS_PER_ITEM < 10**10
    assert read_route_tally(Decimal(route_tally(7, MAX_REQUESTS_PER_ITEM))) == (7, MAX_REQUESTS_PER_ITEM)


@pytest.mark.parametrize(("credits", "requests"), [(-1, 1), (1, -1), (1, 10**10)])
def test_a_tally_out_of_range_is_refused(credits: int, requests: int) -> None:
    with pytest.raises(ValueError, match="route tally"):
        route_tally(credits, requests)


@pytest.mark.parametrize("value", ["-4.9999999999", "1.00000000005"])
def test_a_number_that_is_no_tally_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a route tally"):
        read_route_tally(value)


def test_a_route_code_is_short_stable_and_never_an_item_attribute() -> None:
    code = route_code("GET /v1/search")
    assert code == route_code("GET /v1/search")
    assert len(code) == ROUTE_CODE_LENGTH
    assert is_route_code(code)
    assert code != route_code("POST /v1/search")
    for own in ("pk", "sk", "credits", "requests", "expires_at"):
        assert not is_route_code(own)
    assert not is_route_code(code.lower())
    assert not is_route_code(code + "A")


@given(st.lists(st.text(min_size=1, max_size=80), min_size=1, max_size=200, unique=True))
def test_every_route_gets_a_code_and_its_name_is_kept_apart(routes: list[str]) -> None:
    for route in routes:
        code = route_code(route)
        assert is_route_code(code)
        key = route_name_key(code, route)
        assert key["pk"] == "ROUTES"
        assert route_name_from_sort_key(key["sk"]) == (code, route)  # a route may itself hold "#"


class RecordingClient:
    """A DynamoDB client that answers every write and records it."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.names: list[str] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.updates.append(request)
        return {"Attributes": {"credits": {"N": "7"}}}

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.names.append(request["Item"]["route"]["S"])
        return {}


def test_the_counter_write_adds_the_request_to_the_totals_its_route_its_plan_segment_and_its_day() -> None:
    client = RecordingClient()
    counter = DynamoUsageCounter(client, "table")

    assert counter.add("acme", "2026-11", 1, "POST /v1/render", 25, limit=None, segment=3, day=7) == 7

    (request,) = client.updates  # one write: the day's tally rides on it
    assert request["Key"] == {"pk": {"S": "USAGE#acme#2026-11#1"}, "sk": {"S": "COUNTER"}}
    assert request["UpdateExpression"] == "ADD #c :c, #n :one, #r :tally, #s :c, #d :tally"
    assert request["ExpressionAttributeNames"] == {
        "#c": "credits",
        "#n": "requests",
        "#r": route_code("POST /v1/render"),
        "#s": "seg3",
        "#d": "d07",
    }
    assert request["ExpressionAttributeValues"] == {
        ":c": {"N": "25"},
        ":one": {"N": "1"},
        ":tally": {"N": "25.0000000001"},
    }
    assert "ConditionExpression" not in request
    assert client.names == ["POST /v1/render"]


def test_an_instance_names_each_route_once_and_forgets_them_all_past_its_bound() -> None:
    client = RecordingClient()
    counter = DynamoUsageCounter(client, "table", max_named_routes=2)

    for route in ("GET /a", "GET /b", "GET /a", "GET /b"):
        counter.add("acme", "2026-11", 0, route, 1, None, day=30)
    assert client.names == ["GET /a", "GET /b"]

    counter.add("acme", "2026-11", 0, "GET /c", 1, None, day=30)  # a third route: the memory is cleared first
    counter.add("acme", "2026-11", 0, "GET /c", 1, None, day=30)
    counter.add("acme", "2026-11", 0, "GET /a", 1, None, day=30)  # forgotten: named again (idempotent)
    assert client.names == ["GET /a", "GET /b", "GET /c", "GET /a"]
