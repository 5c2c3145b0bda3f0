"""The usage counter item on Amazon DynamoDB Local: one write unit a request up to 50 routes and beyond early
in the month (32 once its 31 days are tallied), exact per-route counts under concurrent writers, and routes
reported by name.

DynamoDB Local reports the write units a write consumed by the item's size, as DynamoDB bills them
(``ReturnConsumedCapacity``); the authorizer's own counter (``DynamoUsageCounter``) is measured here, with
the consumed capacity asked for by a botocore hook so the request is otherwise the one it sends.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.conftest import TABLE
from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import day_attribute, route_code, route_tally
from tollgate.dal.store import TollgateStore
from tollgate.metering.dynamo import DynamoUsageCounter

pytestmark = pytest.mark.dynamodb_local

PERIOD = "2026-11"
CUSTOMER = "cus_0f8fad5b-d9cb-469f-a165-70867728950e"  # a long id: the key counts in the item's size


@pytest.fixture
def client(local_table: str) -> Any:
    return boto3.client("dynamodb", config=Config(max_pool_connections=16))


@pytest.fixture
def consumed(client: Any) -> list[float]:
    """Write units of every UpdateItem the client sends from now on."""
    units: list[float] = []

    def ask(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def note(parsed: dict[str, Any], **_: Any) -> None:
        units.append(parsed["ConsumedCapacity"]["CapacityUnits"])

    client.meta.events.register("provide-client-params.dynamodb.UpdateItem", ask)
    client.meta.events.register("after-call.dynamodb.UpdateItem", note)
    return units


def heavy_usage(client: Any, routes: list[str]) -> None:
    """A big customer's month on every route: 12,345,678 credits over 1,234,567 requests each."""
    for route in routes:
        client.update_item(
            TableName=TABLE,
            Key={name: {"S": value} for name, value in tk.counter_key(CUSTOMER, PERIOD, 0).items()},
            UpdateExpression="ADD #c :c, #n :n, #r :tally",
            ExpressionAttributeNames={"#c": tk.CREDITS, "#n": tk.REQUESTS, "#r": route_code(route)},
            ExpressionAttributeValues={
                ":c": {"N": "12345678"},
                ":n": {"N": "1234567"},
                ":tally": {"N": route_tally(12_345_678, 1_234_567)},
            },
        )


def test_a_request_costs_one_write_unit_with_50_heavily_used_routes(
    client: Any, consumed: list[float]
) -> None:
    routes = [f"GET /v1/resource-{i:02d}/{{id}}" for i in range(50)]
    heavy_usage(client, routes)
    counter = DynamoUsageCounter(client, TABLE)
    consumed.clear()

    for route in routes:
        counter.add(CUSTOMER, PERIOD, 0, route, credits=9_999, limit=10**12, day=30)

    assert consumed == [1.0] * 50


def month_of_days(client: Any, routes: int) -> None:
    """The same customer's month spread over its 31 days: each day's tally holds its share of ``routes``."""
    names = {f"#d{day}": day_attribute(day) for day in range(1, 32)}
    client.update_item(
        TableName=TABLE,
        Key={name: {"S": value} for name, value in tk.counter_key(CUSTOMER, PERIOD, 0).items()},
        UpdateExpression="ADD " + ", ".join(f"{name} :day" for name in names),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={
            ":day": {"N": route_tally(12_345_678 * routes // 31, 1_234_567 * routes // 31)}
        },
    )


@pytest.mark.parametrize(("routes", "units"), [(32, 1.0), (33, 2.0), (50, 2.0)])
def test_at_the_months_end_the_days_tallies_leave_room_for_32_heavy_routes_at_one_write_unit(
    client: Any, consumed: list[float], routes: int, units: float
) -> None:
    names = [f"GET /v1/resource-{i:03d}/{{id}}" for i in range(routes)]
    heavy_usage(client, names)
    month_of_days(client, routes)
    consumed.clear()

    DynamoUsageCounter(client, TABLE).add(CUSTOMER, PERIOD, 0, names[0], credits=9_999, limit=None, day=31)

    assert consumed == [units]  # 57 routes before the days were tallied (benchmarks/cost.py --days 0: 56)


def test_the_item_outgrows_one_write_unit_only_well_past_50_routes(
    client: Any, consumed: list[float]
) -> None:
    counter = DynamoUsageCounter(client, TABLE)
    routes = [f"GET /v1/resource-{i:03d}/{{id}}" for i in range(120)]
    heavy_usage(client, routes)
    consumed.clear()
    counter.add(CUSTOMER, PERIOD, 0, routes[0], credits=1, limit=None, day=30)
    assert consumed == [2.0]  # DynamoDB Local does bill by size: the measure above is not vacuous


def test_concurrent_requests_are_counted_exactly_per_route(client: Any, local_table: str) -> None:
    counter = DynamoUsageCounter(client, TABLE)
    costs = {"GET /v1/search": 1, "POST /v1/render": 25, "GET /v1/health": 0}
    threads, per_thread = 6, 60
    start = threading.Barrier(threads)

    def work(offset: int) -> None:
        start.wait()
        for i in range(per_thread):
            route = list(costs)[(i + offset) % len(costs)]
            counter.add(CUSTOMER, PERIOD, 0, route, costs[route], None, day=30)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    usage = TollgateStore(local_table).read_usage(CUSTOMER, PERIOD)
    each = threads * per_thread // len(costs)
    assert {route: (line.credits, line.requests) for route, line in usage.routes.items()} == {
        route: (cost * each, each) for route, cost in costs.items()
    }
    assert (usage.credits, usage.requests) == (each * sum(costs.values()), threads * per_thread)


def test_shards_are_summed_per_route(client: Any, local_table: str) -> None:
    counter = DynamoUsageCounter(client, TABLE)
    for shard, credits in ((0, 3), (1, 4), (1, 4)):
        counter.add(CUSTOMER, PERIOD, shard, "GET /v1/search", credits, None, day=30)

    usage = TollgateStore(local_table).read_usage(CUSTOMER, PERIOD, shards=2)

    assert usage.routes["GET /v1/search"].model_dump() == {"credits": 11, "requests": 3}


class RegistryDown:
    """The client, with the route registry's PutItem refused ``failures`` times."""

    def __init__(self, client: Any, failures: int) -> None:
        self.client, self.failures, self.puts = client, failures, 0

    def update_item(self, **request: Any) -> Any:
        return self.client.update_item(**request)

    def put_item(self, **request: Any) -> Any:
        self.puts += 1
        if self.failures:
            self.failures -= 1
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "PutItem")
        return self.client.put_item(**request)


def test_a_route_is_named_once_per_instance_and_again_after_a_failed_registry_write(
    client: Any, local_table: str
) -> None:
    store = TollgateStore(local_table)
    flaky = RegistryDown(client, failures=1)
    counter = DynamoUsageCounter(flaky, TABLE)

    assert (
        counter.add(CUSTOMER, PERIOD, 0, "GET /v1/search", 2, limit=100, day=30) == 2
    )  # counted all the same
    assert list(store.read_usage(CUSTOMER, PERIOD).routes) == [f"route {route_code('GET /v1/search')}"]

    for expected in (4, 6, 8):
        assert counter.add(CUSTOMER, PERIOD, 0, "GET /v1/search", 2, limit=100, day=30) == expected

    assert flaky.puts == 2  # the failed write, then one that succeeded; none after
    usage = store.read_usage(CUSTOMER, PERIOD)
    assert usage.routes["GET /v1/search"].model_dump() == {"credits": 8, "requests": 4}


def test_two_routes_sharing_a_code_are_shown_under_both_names(client: Any, local_table: str) -> None:
    store = TollgateStore(local_table)
    DynamoUsageCounter(client, TABLE).add(CUSTOMER, PERIOD, 0, "GET /a", 1, None, day=30)
    code = route_code("GET /a")
    store.table.put_item(Item={**tk.route_name_key(code, "GET /b"), "route": "GET /b"})  # a collision

    usage = store.read_usage(CUSTOMER, PERIOD)

    assert {route: line.requests for route, line in usage.routes.items()} == {"GET /a | GET /b": 1}
    assert (usage.credits, usage.requests) == (1, 1)
