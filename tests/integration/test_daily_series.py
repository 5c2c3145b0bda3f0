"""The daily series on Amazon DynamoDB Local, through the authorizer: each request tallied on the day of its
own timestamp in the one write that counts it, over shards and on the prepaid wallet, and the days adding up
to the counters' totals in GET /usage's report."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import NOW, Authorizer, make_authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import RouteUsage
from tollgate.usage_api.report import build_usage_report

pytestmark = pytest.mark.dynamodb_local


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def customer_key(store: TollgateStore, **overrides: Any) -> str:
    plan = store.put_plan(make_plan(**overrides.pop("plan", {})))
    store.put_customer(make_customer(plan, **overrides))
    return issue_key(store, "acme", now=NOW - timedelta(days=20)).key


def call(
    authorizer: Authorizer, key: str, at: datetime, method: str = "GET", resource: str = "/v1/search"
) -> bool:
    answer = authorizer(rest_event(method, resource, headers={"x-api-key": key}, epoch_ms=ms(at)))
    return bool(answer["policyDocument"]["Statement"][0]["Effect"] == "Allow")


def days_of(store: TollgateStore, period: str, shards: int = 1) -> dict[int, tuple[int, int]]:
    usage = store.read_usage("acme", period, shards)
    return {day: (line.credits, line.requests) for day, line in usage.days.items()}


def test_requests_land_on_the_day_of_their_own_timestamp_not_the_authorizers_clock(
    store: TollgateStore, aws: None
) -> None:
    key = customer_key(store)
    clock = [datetime(2026, 11, 30, 23, 58, tzinfo=UTC)]
    authorizer = make_authorizer(wall_clock=lambda: clock[0].timestamp())

    assert call(authorizer, key, datetime(2026, 11, 30, 23, 57, tzinfo=UTC))
    assert call(
        authorizer, key, datetime(2026, 12, 1, 0, 2, tzinfo=UTC), "POST", "/v1/generate"
    )  # 4 min ahead
    clock[0] = datetime(2026, 12, 1, 0, 3, tzinfo=UTC)
    assert call(authorizer, key, datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))  # read after midnight

    assert days_of(store, "2026-11") == {30: (2, 2)}
    assert days_of(store, "2026-12") == {1: (25, 1)}


def test_days_are_summed_over_the_shards_and_add_up_to_the_totals(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, counter_shards=4)
    stamps = [datetime(2026, 11, day, 9, minute, tzinfo=UTC) for day in (2, 3, 3, 17) for minute in range(6)]
    for i, at in enumerate(stamps):
        assert call(authorizer, key, at, *(("POST", "/v1/generate") if i % 3 == 0 else ("GET", "/v1/search")))

    usage = store.read_usage("acme", "2026-11", shards=4)

    assert days_of(store, "2026-11", shards=4) == {2: (54, 6), 3: (108, 12), 17: (54, 6)}
    assert sum(line.credits for line in usage.days.values()) == usage.credits == 216
    assert sum(line.requests for line in usage.days.values()) == usage.requests == 24


def test_a_prepaid_customers_days_are_counted_on_the_wallet_in_the_draw(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(
        store,
        plan={"id": "credits", "billing": "prepaid", "price_per_credit": Decimal("0.002")},
        stripe_customer_id="cus_acme",
    )
    add_credits(store, "acme", credits=60, reference="pi_1", now=NOW)

    assert call(authorizer, key, datetime(2026, 11, 1, 0, 0, tzinfo=UTC), "POST", "/v1/generate")
    assert call(authorizer, key, datetime(2026, 11, 14, 23, 59, tzinfo=UTC), "POST", "/v1/generate")
    assert not call(authorizer, key, datetime(2026, 11, 15, 8, tzinfo=UTC), "POST", "/v1/generate")  # 10 left
    assert call(authorizer, key, datetime(2026, 11, 15, 9, tzinfo=UTC))

    assert days_of(store, "2026-11") == {1: (25, 1), 14: (25, 1), 15: (1, 1)}  # the refusal counted nowhere
    assert store.read_balance("acme").credits == 9


def test_the_usage_report_shows_every_day_so_far_and_its_days_sum_to_the_credits_used(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, counter_shards=2)
    for at in (datetime(2026, 11, 2, 8, tzinfo=UTC), datetime(2026, 11, 2, 9, tzinfo=UTC), NOW):
        assert call(authorizer, key, at)

    report = build_usage_report(store, "acme", now=NOW + timedelta(hours=1))

    assert [line.date for line in report.daily] == [date(2026, 11, day) for day in range(1, 16)]
    assert {line.date.day: (line.credits, line.requests) for line in report.daily if line.requests} == {
        2: (2, 2),
        15: (1, 1),
    }
    assert sum(line.credits for line in report.daily) == report.credits_used
    assert sum(line.requests for line in report.daily) == report.requests
    assert store.read_usage("acme", "2026-11", 2).days[15] == RouteUsage(credits=1, requests=1)


def test_free_requests_are_counted_on_their_day_with_no_credits(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, plan={"route_costs": {"GET /v1/search": 1, "GET /usage": 0}})
    at = datetime(2026, 11, 9, 12, tzinfo=UTC)
    for _ in range(3):
        assert call(authorizer, key, at, "GET", "/usage")
    assert call(authorizer, key, at, "GET", "/v1/search")

    assert days_of(store, "2026-11") == {9: (1, 4)}
