"""The daily series: each request's day tallied on the counter item in the write that counts it, read back per
day (summed over shards, period-tagged on the prepaid wallet) and shown as one line per day of the period."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TABLE
from tollgate.alerts.service import changes_of
from tollgate.dal.counter_item import (
    day_attribute,
    day_of,
    is_route_code,
    period_view,
    route_code,
    segment_of,
    wallet_attribute,
    wallet_period_tags,
)
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import RouteUsage
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate.usage_api.report import daily_series

ROUTE = "GET /v1/search"


def test_every_day_of_a_month_has_its_own_attribute_that_no_other_reader_takes_for_its_own() -> None:
    names = [day_attribute(day) for day in range(1, 32)]

    assert (names[0], names[-1]) == ("d01", "d31")
    assert [day_of(name) for name in names] == list(range(1, 32))
    for name in names:
        assert not is_route_code(name)
        assert segment_of(name) is None
        assert wallet_period_tags({name: 1}) == set()  # not taken for a period's attribute on the wallet
    for other in (
        "credits",
        "requests",
        "seg1",
        "balance",
        route_code(ROUTE),
        "d00",
        "d32",
        "d5",
        "dx1",
        "d011",
    ):
        assert day_of(other) is None


@pytest.mark.parametrize("day", [0, 32, -1])
def test_a_day_outside_a_month_is_refused(day: int) -> None:
    with pytest.raises(ValueError, match="day of the month"):
        day_attribute(day)


def test_on_the_wallet_a_days_tally_belongs_to_its_period() -> None:
    wallet = {
        wallet_attribute("2026-11", day_attribute(30)): 5,
        wallet_attribute("2026-12", day_attribute(1)): 7,
        "balance": 100,
    }

    assert wallet_attribute("2026-11", day_attribute(30)) == "2611d30"
    assert period_view(wallet, "2026-11") == {"d30": 5}
    assert period_view(wallet, "2026-12") == {"d01": 7}
    assert wallet_period_tags(wallet) == {"2611", "2612"}


def test_a_days_tally_on_the_wallet_raises_no_usage_alert_of_its_own() -> None:
    before = {"pk": "WALLET#acme", "balance": 100, "2611credits": 10, "2611d05": 10.0000000002}
    after = {**before, "2611d05": 10.0000000003}  # only a day's tally moved (a free request)

    assert changes_of(before, after, datetime(2026, 11, 5, tzinfo=UTC)) == []


@pytest.fixture
def counter(aws: None) -> DynamoUsageCounter:
    return DynamoUsageCounter(boto3.client("dynamodb"), TABLE)


def test_the_usage_reads_each_days_credits_and_requests_summed_over_the_shards(
    counter: DynamoUsageCounter, store: TollgateStore
) -> None:
    counter.add("acme", "2026-11", 0, ROUTE, 5, None, day=3)
    counter.add("acme", "2026-11", 1, ROUTE, 2, None, day=3)
    counter.add("acme", "2026-11", 1, "POST /v1/generate", 25, None, segment=2, day=30)
    counter.add("acme", "2026-12", 0, ROUTE, 1, None, day=30)  # another period: not November's day 30

    usage = store.read_usage("acme", "2026-11", shards=2)

    assert usage.days == {3: RouteUsage(credits=7, requests=2), 30: RouteUsage(credits=25, requests=1)}
    assert usage.routes == {  # the route tallies and segments read as before
        "GET /v1/search": RouteUsage(credits=7, requests=2),
        "POST /v1/generate": RouteUsage(credits=25, requests=1),
    }
    assert usage.segments == {1: 7, 2: 25}
    assert (usage.credits, usage.requests) == (32, 3)


def test_a_prepaid_customers_days_are_read_from_the_wallet_per_period(
    counter: DynamoUsageCounter, store: TollgateStore
) -> None:
    boto3.client("dynamodb").put_item(
        TableName=TABLE, Item={"pk": {"S": "WALLET#acme"}, "sk": {"S": "WALLET"}, "balance": {"N": "100"}}
    )
    counter.draw("acme", "2026-11", ROUTE, 4, day=30)
    counter.draw("acme", "2026-12", ROUTE, 6, day=1)

    november, december = store.read_usage("acme", "2026-11"), store.read_usage("acme", "2026-12")

    assert november.days == {30: RouteUsage(credits=4, requests=1)}
    assert december.days == {1: RouteUsage(credits=6, requests=1)}
    assert store.forget_wallet_periods("acme", before="2026-12") == 5  # November's days go with its counters
    assert store.read_usage("acme", "2026-11").days == {}
    assert store.read_usage("acme", "2026-12").days == {1: RouteUsage(credits=6, requests=1)}


request_st = st.tuples(
    st.integers(min_value=1, max_value=30),  # the day (November)
    st.integers(min_value=0, max_value=2),  # the shard
    st.sampled_from(["GET /v1/search", "POST /v1/generate", "GET /usage"]),
    # credits: at least 1 here, because moto stores a free request's tally 0.0000000001 as "1E-10" and then
    # fails to ADD to it (DynamoDB does not); free requests' days are counted on DynamoDB Local in
    # tests/integration/test_daily_series.py
    st.integers(min_value=1, max_value=10**6),
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(request_st, max_size=20))
def test_the_days_add_up_to_the_counters_totals(requests: list[tuple[int, int, str, int]]) -> None:
    from moto import mock_aws

    from tollgate.dal.schema import create_table

    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, TABLE)
        counter = DynamoUsageCounter(client, TABLE)
        for day, shard, route, credits in requests:
            counter.add("acme", "2026-11", shard, route, credits, None, day=day)

        usage = TollgateStore(TABLE).read_usage("acme", "2026-11", shards=3)

    expected: dict[int, list[int]] = {}
    for day, _, _, credits in requests:
        sums = expected.setdefault(day, [0, 0])
        sums[0] += credits
        sums[1] += 1
    assert {day: (line.credits, line.requests) for day, line in usage.days.items()} == {
        day: (c, n) for day, (c, n) in expected.items()
    }
    assert sum(line.credits for line in usage.days.values()) == usage.credits
    assert sum(line.requests for line in usage.days.values()) == usage.requests


def _series(period: str, days: dict[int, RouteUsage], now: datetime) -> list[tuple[date, int, int]]:
    return [(line.date, line.credits, line.requests) for line in daily_series(period, days, now)]


def test_the_series_has_every_day_up_to_today_with_zeros_for_quiet_days() -> None:
    series = _series("2026-11", {2: RouteUsage(credits=5, requests=2)}, datetime(2026, 11, 4, 9, tzinfo=UTC))

    assert series == [
        (date(2026, 11, 1), 0, 0),
        (date(2026, 11, 2), 5, 2),
        (date(2026, 11, 3), 0, 0),
        (date(2026, 11, 4), 0, 0),
    ]


def test_an_ended_period_shows_all_its_days_and_a_period_to_come_none() -> None:
    now = datetime(2027, 3, 1, tzinfo=UTC)

    assert len(_series("2027-02", {}, now)) == 28
    assert _series("2027-02", {}, now)[-1][0] == date(2027, 2, 28)
    assert len(_series("2026-12", {}, now)) == 31
    assert _series("2027-04", {}, now) == []


def test_a_day_counted_ahead_of_the_clock_is_shown() -> None:
    # a request stamped just after midnight, read a moment before it by this clock (5 minutes of skew allowed)
    series = _series(
        "2026-11", {5: RouteUsage(credits=1, requests=1)}, datetime(2026, 11, 4, 23, 58, tzinfo=UTC)
    )

    assert series[-1] == (date(2026, 11, 5), 1, 1)


def serialised(line: Any) -> dict[str, Any]:
    return dict(line.model_dump(mode="json", by_alias=True))


def test_a_day_line_reads_as_a_date_and_two_counts() -> None:
    (line,) = daily_series(
        "2026-11", {1: RouteUsage(credits=3, requests=1)}, datetime(2026, 11, 1, tzinfo=UTC)
    )

    assert serialised(line) == {"date": "2026-11-01", "credits": 3, "requests": 1}
