"""Plan changes on Amazon DynamoDB Local: the authorizer counts each request under the plan in force at its
own timestamp, in the same write that counts it, and the close rates each plan segment on its own plan, with
base fees and included credits prorated by the second.

The property: for random change times under concurrent traffic (threads sharing one authorizer cache, bursts
of requests before, around and after the change), every credit is rated exactly once, on the plan in force
when it was counted, and the statement equals an independent calculation (``Fraction`` arithmetic below).
"""

from __future__ import annotations

import random
import threading
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import boto3
import pytest
from botocore.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TABLE, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.keys import issue_key
from tollgate.accounts.plan_changes import PLAN_CHANGE_DELAY, change_plan
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import PeriodClose
from tollgate.domain.models import Plan
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.rating import LineKind
from tollgate.errors import InvalidInputError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.dynamo import DynamoKeyDirectory, DynamoUsageCounter, TtlCache
from tollgate.metering.events import parse_event
from tollgate.usage_api.report import build_usage_report

pytestmark = pytest.mark.dynamodb_local

PERIOD = "2026-11"
START, END = period_start(PERIOD), period_end(PERIOD)
AFTER = datetime(2026, 12, 2, tzinfo=UTC)
TEAM = make_plan(
    id="team",
    name="Team",
    price_per_credit=Decimal("0.001"),  # 0.1 cents
    base_fee=Decimal("10.00"),
    included_credits=1_000,
    route_costs={"GET /v1/search": 1, "POST /v1/generate": 5},
)
SCALE = make_plan(
    id="scale",
    name="Scale",
    price_per_credit=Decimal("0.0005"),  # 0.05 cents
    base_fee=Decimal("40.00"),
    included_credits=20_000,
    route_costs={"GET /v1/search": 2, "POST /v1/generate": 7},
)
ROUTES = [("GET", "/v1/search"), ("POST", "/v1/generate")]


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class Authorizer:
    """The authorizer's decision over its DynamoDB backends, its clock set by the test."""

    def __init__(self, client: Any, clock: datetime) -> None:
        self.now_ms = ms(clock)
        self.keys = DynamoKeyDirectory(client, TABLE, 30, 5, TtlCache(), clock_ms=lambda: self.now_ms)
        self.counter = DynamoUsageCounter(client, TABLE)

    def request(self, key: str, route: tuple[str, str], at_ms: int) -> Any:
        method, resource = route
        event = rest_event(method=method, resource=resource, headers={"x-api-key": key}, epoch_ms=at_ms)
        return authorize(parse_event(event, self.now_ms), self.keys, self.counter)


@pytest.fixture
def client(local_table: str) -> Any:
    return boto3.client("dynamodb", config=Config(max_pool_connections=16))


def setup_customer(store: TollgateStore, plans: tuple[Plan, ...] = (TEAM, SCALE)) -> tuple[str, str]:
    for plan in plans:
        if plan.id not in {p.id for p in store.list_plans()}:
            store.put_plan(plan)
    customer_id = f"c{uuid.uuid4().hex[:12]}"
    store.put_customer(make_customer(plans[0], id=customer_id, stripe_customer_id=f"cus_{customer_id}"))
    key = issue_key(store, customer_id, now=START).key
    return customer_id, key


def rate(store: TollgateStore, customer_id: str, period: str = PERIOD) -> PeriodClose:
    context = steps.CloseContext(DynamoLedger(store), None, customer_id, period, AFTER)  # type: ignore[arg-type]
    return steps.rated_record(context).record


def half_up(value: Fraction) -> int:
    return int(value + Fraction(1, 2)) if value >= 0 else -int(-value + Fraction(1, 2))


def expected_total(segments: list[tuple[Plan, datetime, datetime, int]]) -> int:
    """An independent statement total in cents: base fee and included credits prorated by the second."""
    period_seconds = int((END - START).total_seconds())
    total = 0
    for plan, starts, ends, credits in segments:
        seconds = int((ends - starts).total_seconds())
        share = Fraction(seconds, period_seconds)
        total += half_up(Fraction(plan.base_fee) * 100 * share)
        included = int(plan.included_credits * share)  # rounded down
        total += half_up(max(0, credits - included) * Fraction(plan.flat_price) * 100)
    return total


@settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    made_at=st.integers(min_value=60, max_value=29 * 86400).map(lambda s: START + timedelta(seconds=s)),
    seed=st.integers(0, 2**16),
)
def test_every_credit_is_rated_once_on_the_plan_in_force_when_it_was_counted(
    store: TollgateStore, client: Any, made_at: datetime, seed: int
) -> None:
    customer_id, key = setup_customer(store)
    change = change_plan(store, customer_id, "scale", now=made_at)
    switch = change.segment.since
    assert switch == made_at + PLAN_CHANGE_DELAY
    rng = random.Random(seed)
    bursts = [START + timedelta(hours=1), switch, END - timedelta(hours=1)]
    expected = {1: 0, 2: 0}
    requests: list[tuple[Authorizer, tuple[str, str], int]] = []
    for center in bursts:
        authorizer = Authorizer(client, center)  # one instance, one cache, shared by the threads
        for _ in range(40):
            at = max(
                START, min(center + timedelta(seconds=rng.uniform(-240, 240)), END - timedelta(seconds=1))
            )
            route = rng.choice(ROUTES)
            requests.append((authorizer, route, ms(at)))
            plan, seq = (SCALE, 2) if at >= switch else (TEAM, 1)
            expected[seq] += plan.route_costs[" ".join(route)]
    rng.shuffle(requests)
    errors: list[BaseException] = []
    allowed: list[bool] = []

    def work(chunk: list[tuple[Authorizer, tuple[str, str], int]]) -> None:
        try:
            for authorizer, route, at_ms in chunk:
                allowed.append(authorizer.request(key, route, at_ms).allowed)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(requests[i::4],)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert allowed == [True] * len(requests)

    usage = store.read_usage(customer_id, PERIOD)
    assert usage.segments == {seq: credits for seq, credits in expected.items() if credits}
    assert (usage.credits, usage.requests) == (sum(expected.values()), len(requests))

    record = rate(store, customer_id)
    statement = record.statement
    assert [(s.segment, s.plan_id, s.starts, s.ends, s.credits) for s in statement.segments] == [
        (1, "team", START, switch, expected[1]),
        (2, "scale", switch, END, expected[2]),
    ]
    assert statement.credits == record.billed_credits == usage.credits
    assert record.billed_segments == expected
    assert statement.total == expected_total(
        [(TEAM, START, switch, expected[1]), (SCALE, switch, END, expected[2])]
    )
    base_fees = [line for line in statement.lines if line.kind is LineKind.BASE_FEE]
    assert [line.description.split(":")[0] for line in base_fees] == ["Team", "Scale"]
    assert all("prorated by the second" in line.description for line in base_fees)


def test_usage_before_an_upgrade_is_never_rated_on_the_new_plan(store: TollgateStore, client: Any) -> None:
    """10,000 credits under a $0.001 plan cost $10, however expensive the plan the customer moves to."""
    cheap = make_plan(id="v-cheap", name="Cheap", price_per_credit=Decimal("0.001"), route_costs={})
    dear = make_plan(id="v-dear", name="Dear", price_per_credit=Decimal("0.01"), route_costs={})
    customer_id, key = setup_customer(store, (cheap, dear))
    authorizer = Authorizer(client, datetime(2026, 11, 10, tzinfo=UTC))
    route = ("GET", "/v1/anything")
    for _ in range(100):  # 100 requests of 100 credits would be a long test: 1 credit each, then the rest
        assert authorizer.request(key, route, authorizer.now_ms).allowed
    client.update_item(  # the rest of the 10,000 credits, as the authorizer writes them (segment 1)
        TableName=TABLE,
        Key={"pk": {"S": f"USAGE#{customer_id}#{PERIOD}#0"}, "sk": {"S": "COUNTER"}},
        UpdateExpression="ADD credits :c, seg1 :c",
        ExpressionAttributeValues={":c": {"N": "9900"}},
    )

    change_plan(store, customer_id, "v-dear", now=datetime(2026, 11, 14, 12, tzinfo=UTC))

    record = rate(store, customer_id)
    assert record.total == 1_000  # $10: all of it on the old plan
    (usage,) = record.statement.lines
    assert (usage.quantity, usage.unit_amount, usage.amount) == (10_000, Decimal("0.1"), 1_000)
    assert "on Cheap from Nov 1 00:00" in usage.description


def test_a_lower_cap_denies_further_requests_and_never_goes_negative(
    store: TollgateStore, client: Any
) -> None:
    capped = make_plan(id="capped", name="Capped", price_per_credit=Decimal("0.001"), credit_limit=300)
    customer_id, key = setup_customer(store, (TEAM, capped))
    before = Authorizer(client, datetime(2026, 11, 5, tzinfo=UTC))
    for _ in range(80):
        assert before.request(key, ("POST", "/v1/generate"), before.now_ms).allowed  # 400 credits
    made = datetime(2026, 11, 6, tzinfo=UTC)
    change = change_plan(store, customer_id, "capped", now=made)

    after = Authorizer(client, made + timedelta(minutes=5))
    decision = after.request(key, ("GET", "/v1/search"), after.now_ms)

    assert (decision.allowed, decision.reason) == (False, Reason.CREDIT_LIMIT)
    usage = store.read_usage(customer_id, PERIOD)
    assert (usage.credits, usage.segments) == (400, {1: 400})  # nothing counted under the capped plan
    assert change.segment.seq == 2


def test_a_change_at_period_end_bills_nothing_pro_rata(store: TollgateStore, client: Any) -> None:
    customer_id, key = setup_customer(store)
    made = datetime(2026, 11, 20, 15, tzinfo=UTC)
    change = change_plan(store, customer_id, "scale", at_period_end=True, now=made)
    assert change.segment.since == END

    last_request = Authorizer(client, END - timedelta(seconds=1))
    first_request = Authorizer(client, END)
    assert last_request.request(key, ("GET", "/v1/search"), ms(END) - 1).allowed  # Team: 1 credit
    assert first_request.request(key, ("GET", "/v1/search"), ms(END)).allowed  # Scale: 2 credits

    november = rate(store, customer_id).statement
    assert [(s.plan_id, s.credits) for s in november.segments] == [("team", 1)]
    assert [line.description for line in november.lines] == ["Team: base fee"]  # whole, no proration
    assert november.total == 1_000
    december = rate(store, customer_id, "2026-12").statement
    assert [(s.plan_id, s.credits) for s in december.segments] == [("scale", 2)]
    assert december.total == 4_000


def test_repeating_a_change_changes_nothing_and_a_new_one_replaces_a_scheduled_one(
    store: TollgateStore,
) -> None:
    customer_id, _ = setup_customer(store)
    made = datetime(2026, 11, 20, 15, tzinfo=UTC)
    first = change_plan(store, customer_id, "scale", at_period_end=True, now=made)
    again = change_plan(store, customer_id, "scale", at_period_end=True, now=made + timedelta(hours=1))
    assert (first.changed, again.changed, again.segment) == (True, False, first.segment)

    back = change_plan(store, customer_id, "team", now=made + timedelta(hours=2))  # cancel the downgrade

    assert back.cancelled == (first.segment,)
    customer = store.get_customer(customer_id)
    assert [(s.seq, s.plan_id) for s in customer.segments] == [(1, "team"), (3, "team")]


def test_an_immediate_change_to_another_currency_is_refused_and_changes_nothing(store: TollgateStore) -> None:
    euro = make_plan(id="euro", name="Euro", currency="eur", price_per_credit=Decimal("0.001"))
    customer_id, _ = setup_customer(store, (TEAM, euro))
    with pytest.raises(InvalidInputError, match="--at-period-end"):
        change_plan(store, customer_id, "euro", now=datetime(2026, 11, 20, tzinfo=UTC))
    assert store.get_customer(customer_id).segments[-1].plan_id == "team"


def test_get_usage_estimates_each_plan_segment_and_lists_the_change(
    store: TollgateStore, client: Any
) -> None:
    customer_id, key = setup_customer(store)
    made = datetime(2026, 11, 15, 11, 59, tzinfo=UTC)
    switch = change_plan(store, customer_id, "scale", now=made).segment.since
    assert switch is not None
    for at in (switch - timedelta(seconds=1), switch):  # one search on each plan: 1 + 2 credits
        authorizer = Authorizer(client, at)
        assert authorizer.request(key, ("GET", "/v1/search"), ms(at)).allowed

    report = build_usage_report(store, customer_id, now=switch + timedelta(hours=1))

    assert (report.plan_id, report.credits_used) == ("scale", 3)
    assert [(c.plan_id, c.starts, c.scheduled) for c in report.plan_changes] == [("scale", switch, False)]
    assert report.estimated_charge.amount == expected_total(
        [(TEAM, START, switch, 1), (SCALE, switch, END, 2)]
    )
    assert report.estimated_charge.amount == rate(store, customer_id).total


def test_a_change_about_to_start_cannot_be_replaced(store: TollgateStore) -> None:
    customer_id, _ = setup_customer(store)
    made = datetime(2026, 11, 20, 15, tzinfo=UTC)
    change_plan(store, customer_id, "scale", now=made)

    with pytest.raises(InvalidInputError, match="too soon to cancel"):
        change_plan(store, customer_id, "team", now=made + timedelta(seconds=10))

    back = change_plan(
        store, customer_id, "team", now=made + PLAN_CHANGE_DELAY
    )  # it has started: a new change
    assert (back.changed, back.cancelled) == (True, ())
