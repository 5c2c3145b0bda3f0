"""The metering authorizer end to end: real-shaped events -> handler -> moto DynamoDB -> policy/answer."""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from tests.conftest import NOW, TABLE, Authorizer, make_authorizer, make_customer, make_plan
from tests.events import http_event, rest_event
from tollgate.accounts.keys import issue_key, revoke_key, rotate_key
from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import route_code
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import CustomerStatus

NOW_MS = int(NOW.timestamp() * 1000)
PERIOD = "2026-11"


@pytest.fixture
def world(store: TollgateStore, authorizer: Authorizer) -> dict[str, Any]:
    plan = store.put_plan(make_plan())
    customer = store.put_customer(make_customer(plan))
    issued = issue_key(store, customer.id, now=NOW - timedelta(days=1))
    return {"store": store, "plan": plan, "customer": customer, "key": issued.key, "record": issued.record}


def rest(
    authorizer: Authorizer, key: str | None, method: str = "GET", resource: str = "/v1/search", **kw: Any
) -> dict[str, Any]:
    headers = {"x-api-key": key} if key is not None else {}
    epoch_ms = kw.pop("epoch_ms", NOW_MS)
    return authorizer(rest_event(method, resource, headers=headers, epoch_ms=epoch_ms, **kw))


def effect(answer: dict[str, Any]) -> str:
    return str(answer["policyDocument"]["Statement"][0]["Effect"])


def counter_items() -> list[dict[str, Any]]:
    items = boto3.resource("dynamodb").Table(TABLE).scan()["Items"]
    return [item for item in items if item["pk"].startswith("USAGE#")]


def usage(store: TollgateStore, customer_id: str = "acme", shards: int = 1) -> tuple[int, int]:
    got = store.read_usage(customer_id, PERIOD, shards)
    return got.credits, got.requests


def test_allowed_rest_request_is_counted_and_passes_context(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    answer = rest(authorizer, world["key"])

    assert effect(answer) == "Allow"
    assert answer["principalId"] == "acme"
    assert answer["policyDocument"]["Statement"][0]["Resource"].endswith("/prod/GET/v1/search")
    assert answer["context"] == {
        "customerId": "acme",
        "planId": "payg",
        "planVersion": 1,
        "keyId": world["record"].key_id,
        "period": PERIOD,
        "credits": 1,
        "creditsUsed": 1,
        "metered": True,
        "segment": 1,  # where the credit was counted, for a refund (tollgate.domain.refunds)
        "routeCode": route_code("GET /v1/search"),
        "shard": 0,
    }
    assert all(isinstance(v, str | int | bool) for v in answer["context"].values())
    assert usage(world["store"]) == (1, 1)


def test_http_api_event_gets_a_simple_response_from_the_same_logic(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    answer = authorizer(http_event("POST /v1/generate", headers={"X-Api-Key": world["key"]}, epoch_ms=NOW_MS))

    assert answer["isAuthorized"] is True
    assert answer["context"]["credits"] == 25
    assert usage(world["store"]) == (25, 1)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "{key}"},
        {"X-API-KEY": "{key}"},
        {"X-Api-Key": "{key}"},
        {"Authorization": "Bearer {key}"},
        {"authorization": "bearer {key}"},
        {"x-api-key": "{key}", "Authorization": "Bearer {key}"},  # the same key twice is one key
    ],
)
def test_key_is_found_whatever_the_header_case(
    world: dict[str, Any], headers: dict[str, str], authorizer: Authorizer
) -> None:
    sent = {name: value.format(key=world["key"]) for name, value in headers.items()}

    assert effect(authorizer(rest_event(headers=sent, epoch_ms=NOW_MS))) == "Allow"
    assert authorizer(http_event(headers=sent, epoch_ms=NOW_MS))["isAuthorized"] is True
    assert usage(world["store"]) == (2, 2)


def test_key_only_in_multi_value_headers_is_found(world: dict[str, Any], authorizer: Authorizer) -> None:
    event = rest_event(epoch_ms=NOW_MS, multi_value_headers={"X-Api-Key": [world["key"]]})
    event["headers"].pop("X-Api-Key", None)

    assert effect(authorizer(event)) == "Allow"


def test_route_costs_come_from_the_plan_by_template(world: dict[str, Any], authorizer: Authorizer) -> None:
    store = world["store"]
    rest(authorizer, world["key"], "POST", "/v1/generate")
    rest(
        authorizer, world["key"], "GET", "/v1/items/{id}", path="/v1/items/42", path_parameters={"id": "42"}
    )  # unlisted: 1
    free = rest(authorizer, world["key"], "GET", "/usage")

    assert free["context"]["credits"] == 0
    got = store.read_usage("acme", PERIOD)
    assert (got.credits, got.requests) == (26, 3)
    assert got.routes["POST /v1/generate"].credits == 25
    assert got.routes["GET /v1/items/{id}"].credits == 1
    assert (got.routes["GET /usage"].credits, got.routes["GET /usage"].requests) == (0, 1)


def test_an_any_route_is_priced_and_counted_by_the_requests_own_method(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    plan = store.put_plan(
        make_plan(
            id="items", route_costs={"ANY /v1/items/{id}": 5, "DELETE /v1/items/{id}": 50}, default_cost=None
        )
    )
    store.put_customer(make_customer(plan))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key
    headers = {"x-api-key": key}

    # REST: a resource whose method is ANY sends the real verb in httpMethod
    get = authorizer(rest_event("GET", "/v1/items/{id}", headers=headers, epoch_ms=NOW_MS))
    # HTTP API: the route key stays "ANY /v1/items/{id}", the verb is in requestContext.http.method
    put = authorizer(http_event("ANY /v1/items/{id}", method="PUT", headers=headers, epoch_ms=NOW_MS))
    delete = authorizer(http_event("ANY /v1/items/{id}", method="DELETE", headers=headers, epoch_ms=NOW_MS))
    other = authorizer(http_event("GET /v1/other", headers=headers, epoch_ms=NOW_MS))

    assert (get["context"]["credits"], put["context"]["credits"], delete["context"]["credits"]) == (5, 5, 50)
    assert (other["isAuthorized"], other["context"]["reason"]) == (False, "unknown_route")  # no default cost
    got = store.read_usage("acme", PERIOD)
    assert {route: (line.credits, line.requests) for route, line in got.routes.items()} == {
        "GET /v1/items/{id}": (5, 1),
        "PUT /v1/items/{id}": (5, 1),
        "DELETE /v1/items/{id}": (50, 1),
    }


def test_an_http_any_route_without_its_method_is_malformed(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    event = http_event("ANY /v1/items/{id}", headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    del event["requestContext"]["http"]

    answer = authorizer(event)

    assert (answer["isAuthorized"], answer["context"]["reason"]) == (False, "malformed_request")
    assert usage(world["store"]) == (0, 0)


def test_usage_belongs_to_the_period_of_the_request_timestamp(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    last_ms_of_october = int(NOW.replace(day=1, hour=0).timestamp() * 1000) - 1
    answer = rest(authorizer, world["key"], epoch_ms=last_ms_of_october)

    assert answer["context"]["period"] == "2026-10"
    assert world["store"].read_usage("acme", "2026-10").credits == 1
    assert world["store"].read_usage("acme", PERIOD).credits == 0


def test_credit_limit_boundary_exactly_reaching_is_allowed_next_is_denied(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    plan = store.put_plan(make_plan(id="capped", credit_limit=50))
    store.put_customer(make_customer(plan))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key

    first = rest(authorizer, key, "POST", "/v1/generate")
    second = rest(authorizer, key, "POST", "/v1/generate")
    third = rest(authorizer, key, "POST", "/v1/generate")
    cheap = rest(authorizer, key, "GET", "/v1/search")
    free = rest(authorizer, key, "GET", "/usage")

    assert [effect(a) for a in (first, second)] == ["Allow", "Allow"]
    assert second["context"]["creditsUsed"] == 50
    assert effect(third) == "Deny"
    assert third["context"]["reason"] == "credit_limit_reached"
    assert effect(cheap) == "Deny"
    assert effect(free) == "Allow"  # 0 credits never passes the cap
    assert usage(store) == (50, 3)


def test_a_single_request_costing_more_than_the_cap_is_denied_without_a_write(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    plan = store.put_plan(make_plan(id="tiny", credit_limit=10))
    store.put_customer(make_customer(plan))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key

    assert rest(authorizer, key, "POST", "/v1/generate")["context"]["reason"] == "credit_limit_reached"
    assert counter_items() == []


def test_sharded_counters_sum_exactly(store: TollgateStore, authorizer: Authorizer) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan, id="hot", counter_shards=4))
    key = issue_key(store, "hot", now=NOW - timedelta(days=1)).key

    for _ in range(60):
        rest(authorizer, key, "POST", "/v1/generate")
    for _ in range(40):
        answer = rest(authorizer, key)
    assert "creditsUsed" not in answer["context"]  # a shard's count is not the customer's total

    assert usage(store, "hot", shards=4) == (60 * 25 + 40, 100)
    assert len(counter_items()) > 1  # the load really spread over shards


@pytest.mark.dynamodb_local  # real item-level atomicity (moto's in-process ADDs can interleave): no lock
def test_concurrent_requests_give_an_exact_count(world: dict[str, Any], authorizer: Authorizer) -> None:
    threads, per_thread = 4, 150
    event = rest_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    answers: list[str] = []

    def worker() -> None:
        for _ in range(per_thread):
            answers.append(effect(authorizer(event)))

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    assert answers.count("Allow") == threads * per_thread
    assert usage(world["store"]) == (threads * per_thread, threads * per_thread)


def _bad_header_cases(key: str) -> list[tuple[str, dict[str, str], str]]:
    return [
        ("no header", {}, "missing_api_key"),
        ("empty", {"x-api-key": ""}, "malformed_api_key"),
        ("wrong prefix", {"x-api-key": "sk_live_" + key[8:]}, "malformed_api_key"),
        ("10 KB header", {"x-api-key": "tg_live_" + "A" * 10_240}, "malformed_api_key"),
        ("non-ASCII", {"x-api-key": key[:-1] + "é"}, "malformed_api_key"),
        ("bearer with nothing", {"Authorization": "Bearer"}, "malformed_api_key"),
        ("bearer with spaces", {"Authorization": "Bearer   "}, "malformed_api_key"),
        (
            "two different keys",
            {"x-api-key": key, "Authorization": "Bearer tg_live_" + "B" * 43},
            "malformed_api_key",
        ),
        ("unknown well-formed key", {"x-api-key": "tg_live_" + "C" * 43}, "invalid_api_key"),
        ("basic auth only", {"Authorization": "Basic dXNlcjpwYXNz"}, "missing_api_key"),
    ]


@pytest.mark.parametrize("case", range(10))
def test_bad_input_is_denied_with_its_reason_and_counts_nothing(
    world: dict[str, Any], case: int, capsys: pytest.CaptureFixture[str], authorizer: Authorizer
) -> None:
    name, headers, reason = _bad_header_cases(world["key"])[case]

    rest_answer = authorizer(rest_event(headers=headers, epoch_ms=NOW_MS))
    http_answer = authorizer(http_event(headers=headers, epoch_ms=NOW_MS))

    assert effect(rest_answer) == "Deny", name
    assert rest_answer["context"]["reason"] == reason, name
    assert rest_answer["context"]["message"]
    assert http_answer == {"isAuthorized": False, "context": rest_answer["context"]}
    assert counter_items() == []
    assert world["key"] not in capsys.readouterr().out


def test_malformed_key_is_refused_without_any_dynamodb_call(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    calls = _count_dynamodb_calls(authorizer)
    rest(authorizer, "tg_live_short")
    rest(authorizer, None)
    assert calls == []


def test_unknown_route_is_refused_when_the_plan_has_no_default_cost(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    plan = store.put_plan(make_plan(id="strict", default_cost=None))
    store.put_customer(make_customer(plan))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key

    answer = rest(authorizer, key, "DELETE", "/v1/everything")
    no_route = rest_event(headers={"x-api-key": key}, epoch_ms=NOW_MS)
    del no_route["resource"]

    assert answer["context"]["reason"] == "unknown_route"
    assert authorizer(no_route)["context"]["reason"] == "malformed_request"  # API Gateway always sends one
    assert effect(rest(authorizer, key)) == "Allow"
    assert usage(store) == (1, 1)


def test_revoked_key_is_denied_once_the_cache_entry_expires(world: dict[str, Any]) -> None:
    clock = [1000.0]
    authorizer = make_authorizer(clock=lambda: clock[0])
    assert effect(rest(authorizer, world["key"])) == "Allow"

    revoke_key(world["store"], "acme", world["record"].key_id, now=NOW - timedelta(minutes=1))
    still_cached = rest(authorizer, world["key"])  # documented: for at most KEY_CACHE_TTL_SECONDS
    assert effect(still_cached) == "Allow"
    clock[0] += 31
    denied = rest(authorizer, world["key"])

    assert denied["context"]["reason"] == "revoked_api_key"
    assert usage(world["store"]) == (2, 2)


def test_rotated_key_keeps_working_for_the_overlap_only(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    issued, old = rotate_key(
        world["store"],
        "acme",
        world["record"].key_id,
        now=NOW - timedelta(hours=1),
        overlap=timedelta(hours=2),
    )
    assert effect(rest(authorizer, world["key"])) == "Allow"
    assert effect(rest(authorizer, issued.key)) == "Allow"
    authorizer.cache.clear()
    three_hours_later = NOW_MS + 3 * 3600 * 1000
    assert (
        rest(authorizer, world["key"], epoch_ms=three_hours_later)["context"]["reason"] == "revoked_api_key"
    )
    assert old.valid_until == NOW + timedelta(hours=1)


def test_suspended_customer_is_denied_and_payment_required_carries_the_pay_url(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    store = world["store"]
    store.set_customer_status(
        "acme", CustomerStatus.SUSPENDED, reason="manual", cause="cli", at=NOW, event_id="e1"
    )
    authorizer.cache.clear()
    assert rest(authorizer, world["key"])["context"]["reason"] == "customer_suspended"

    store.set_customer_status(
        "acme",
        CustomerStatus.SUSPENDED,
        reason="payment_failed",
        cause="invoice.payment_failed",
        at=NOW,
        event_id="e2",
        pay_url="https://invoice.stripe.test/i/in_123",
    )
    authorizer.cache.clear()
    answer = rest(authorizer, world["key"])
    assert answer["context"]["reason"] == "payment_required"
    assert answer["context"]["payUrl"] == "https://invoice.stripe.test/i/in_123"
    assert counter_items() == []


def test_warm_path_makes_exactly_one_dynamodb_request(world: dict[str, Any], authorizer: Authorizer) -> None:
    rest(authorizer, world["key"])  # cold: key, customer and plan are read once
    calls = _count_dynamodb_calls(authorizer)

    for _ in range(5):
        rest(authorizer, world["key"])

    assert calls == ["UpdateItem"] * 5


def test_unknown_keys_are_negatively_cached(world: dict[str, Any], authorizer: Authorizer) -> None:
    unknown = "tg_live_" + "D" * 43
    rest(authorizer, unknown)
    calls = _count_dynamodb_calls(authorizer)
    assert rest(authorizer, unknown)["context"]["reason"] == "invalid_api_key"
    assert calls == []


def _count_dynamodb_calls(authorizer: Authorizer) -> list[str]:
    calls: list[str] = []
    authorizer.client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: calls.append(model.name)
    )
    return calls


def _fail_updates(
    authorizer: Authorizer, world: dict[str, Any], error: Exception, times: int = 10**6
) -> list[int]:
    rest(authorizer, world["key"])  # warm the cache so only the counter write fails
    attempts: list[int] = []

    def boom(**_: Any) -> None:
        attempts.append(1)
        if len(attempts) <= times:
            raise error

    authorizer.client.meta.events.register("before-call.dynamodb.UpdateItem", boom)
    return attempts


def _client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "UpdateItem")


def test_dynamodb_failure_denies_by_default(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], authorizer: Authorizer
) -> None:
    _fail_updates(authorizer, world, _client_error("InternalServerError"))
    answer = rest(authorizer, world["key"])

    assert answer["context"]["reason"] == "metering_unavailable"
    out = capsys.readouterr().out
    assert "MeteringFailures" in out  # the metric is emitted
    assert world["key"] not in out


def test_fail_open_is_an_explicit_choice_and_is_flagged(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    authorizer = make_authorizer(fail_open=True)
    _fail_updates(authorizer, world, _client_error("InternalServerError"))
    answer = rest(authorizer, world["key"])

    assert effect(answer) == "Allow"
    assert answer["context"]["metered"] is False
    assert "UnmeteredRequests" in capsys.readouterr().out


def emitted_metrics(out: str) -> list[str]:
    """The names of the CloudWatch EMF metrics in captured stdout, in order."""
    names: list[str] = []
    for line in out.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            for directive in json.loads(line)["_aws"]["CloudWatchMetrics"]:
                names.extend(metric["Name"] for metric in directive["Metrics"])
    return names


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[dict[str, Any]]:
    """The authorizer's log records whose message contains ``text``: level, message and extra fields."""
    return [
        {"level": r.levelname, "message": r.getMessage(), **vars(r)}
        for r in caplog.records
        if r.name.startswith("tollgate-authorizer") and text in r.getMessage()
    ]


def test_write_with_unknown_outcome_is_not_retried_and_is_counted_apart(
    world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    authorizer: Authorizer,
) -> None:
    attempts = _fail_updates(authorizer, world, ReadTimeoutError(endpoint_url="http://dynamodb"))
    capsys.readouterr()
    answer = rest(authorizer, world["key"])

    assert answer["context"]["reason"] == "metering_unavailable"
    assert len(attempts) == 1
    out = capsys.readouterr().out
    assert sorted(emitted_metrics(out)) == [
        "Denied_metering_unavailable",
        "MeteringFailures",
        "MeteringOutcomeUnknown",
    ]
    (unknown,) = logged(caplog, "outcome unknown")
    assert unknown["level"] == "ERROR"
    assert (unknown["customer_id"], unknown["route"], unknown["period"]) == ("acme", "GET /v1/search", PERIOD)
    assert unknown["request_id"] == "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    assert unknown["served"] is False
    assert world["key"] not in out


def test_write_certainly_not_applied_is_a_failure_but_not_an_unknown_outcome(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], authorizer: Authorizer
) -> None:
    attempts = _fail_updates(authorizer, world, _client_error("ThrottlingException"))
    capsys.readouterr()
    answer = rest(authorizer, world["key"])

    assert answer["context"]["reason"] == "metering_unavailable"
    assert len(attempts) == 2  # retried once: a throttled write was not applied
    assert sorted(emitted_metrics(capsys.readouterr().out)) == [
        "Denied_metering_unavailable",
        "MeteringFailures",
    ]


def test_fail_open_with_an_unknown_outcome_is_flagged_both_ways(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    authorizer = make_authorizer(fail_open=True)
    _fail_updates(authorizer, world, ReadTimeoutError(endpoint_url="http://dynamodb"))
    capsys.readouterr()
    answer = rest(authorizer, world["key"])

    assert effect(answer) == "Allow"
    assert answer["context"]["metered"] is False
    assert sorted(emitted_metrics(capsys.readouterr().out)) == ["MeteringOutcomeUnknown", "UnmeteredRequests"]
    (unknown,) = logged(caplog, "outcome unknown")
    assert unknown["served"] is True


def test_throttled_write_is_retried_once_because_it_was_not_applied(
    world: dict[str, Any], authorizer: Authorizer
) -> None:
    attempts = _fail_updates(
        authorizer, world, _client_error("ProvisionedThroughputExceededException"), times=1
    )
    answer = rest(authorizer, world["key"])

    assert effect(answer) == "Allow"
    assert len(attempts) == 2
    assert usage(world["store"]) == (2, 2)


def test_failed_key_lookup_denies_even_with_fail_open(world: dict[str, Any]) -> None:
    authorizer = make_authorizer(fail_open=True)

    def boom(**_: Any) -> None:
        raise _client_error("InternalServerError")

    authorizer.client.meta.events.register("before-call.dynamodb.GetItem", boom)
    assert rest(authorizer, world["key"])["context"]["reason"] == "metering_unavailable"
    assert counter_items() == []


def test_counter_items_use_the_documented_key(world: dict[str, Any], authorizer: Authorizer) -> None:
    rest(authorizer, world["key"])
    (item,) = counter_items()
    assert {k: item[k] for k in ("pk", "sk")} == tk.counter_key("acme", PERIOD, 0)


# --- any input, a clean answer ----------------------------------------------------------------------------


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def test_http_api_request_counts_in_the_period_of_its_own_time_epoch(
    world: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """Stamped in the last millisecond of October, handled when the authorizer's clock already says November:
    the request belongs to October, for an HTTP API exactly as for a REST API."""
    stamped = _ms("2026-10-31T23:59:59.999")
    authorizer = make_authorizer(wall_clock=lambda: _ms("2026-11-01T00:00:00.400") / 1000)
    event = http_event("POST /v1/generate", headers={"x-api-key": world["key"]}, epoch_ms=stamped)
    event["requestContext"]["requestId"] = "v2-request-1"

    answer = authorizer(event)
    rest_answer = rest(authorizer, world["key"], epoch_ms=stamped)

    assert answer["isAuthorized"] is True
    assert answer["context"]["period"] == "2026-10"
    assert rest_answer["context"]["period"] == "2026-10"
    assert world["store"].read_usage("acme", "2026-10").credits == 26
    assert world["store"].read_usage("acme", PERIOD).credits == 0

    event["headers"]["x-api-key"] = "tg_live_" + "E" * 43  # unknown: denied, and the deny is logged
    assert authorizer(event)["isAuthorized"] is False
    (denied,) = logged(caplog, "denied")
    assert denied["request_id"] == "v2-request-1"  # v2's requestContext.requestId, carried like REST's


TOLERANCE_MS = 5 * 60 * 1000


@pytest.mark.parametrize(
    ("stamp", "allowed"),
    [
        (NOW_MS, True),
        (NOW_MS - TOLERANCE_MS, True),
        (NOW_MS + TOLERANCE_MS, True),
        (float(NOW_MS) + 0.5, True),  # a JSON number may arrive as a float
        (NOW_MS - TOLERANCE_MS - 1, False),  # too old: not API Gateway's stamp of a request made now
        (NOW_MS + TOLERANCE_MS + 1, False),  # in the future
        (NOW_MS - 30 * 24 * 3600 * 1000, False),  # would be counted in last month
        (0, False),  # 1970-01
        (-1, False),
        (math.nan, False),
        (math.inf, False),
        (-math.inf, False),
        (1e300, False),
        (10**30, False),
        (str(NOW_MS), False),
        (True, False),
        (None, False),
        ([NOW_MS], False),
        ({"ms": NOW_MS}, False),
    ],
)
def test_a_request_timestamp_is_required_within_five_minutes_of_the_authorizers_clock(
    world: dict[str, Any], stamp: Any, allowed: bool
) -> None:
    authorizer = make_authorizer(wall_clock=lambda: NOW_MS / 1000)
    rest(authorizer, world["key"])  # warm: the key is cached
    calls = _count_dynamodb_calls(authorizer)
    rest_event_ = rest_event(headers={"x-api-key": world["key"]})
    rest_event_["requestContext"]["requestTimeEpoch"] = stamp
    v2_event = http_event(headers={"x-api-key": world["key"]})
    v2_event["requestContext"]["timeEpoch"] = stamp

    rest_answer, v2_answer = authorizer(rest_event_), authorizer(v2_event)

    assert effect(rest_answer) == ("Allow" if allowed else "Deny")
    assert v2_answer["isAuthorized"] is allowed
    if allowed:
        assert calls == ["UpdateItem", "UpdateItem"]
    else:
        assert rest_answer["context"]["reason"] == v2_answer["context"]["reason"] == "malformed_request"
        assert calls == []  # refused before any DynamoDB call


def test_a_missing_request_timestamp_is_refused(world: dict[str, Any], authorizer: Authorizer) -> None:
    rest_event_ = rest_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    del rest_event_["requestContext"]["requestTimeEpoch"]
    v2_event = http_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    del v2_event["requestContext"]["timeEpoch"]

    assert authorizer(rest_event_)["context"]["reason"] == "malformed_request"
    assert authorizer(v2_event)["context"]["reason"] == "malformed_request"
    assert counter_items() == []


def _set(path: str, value: Any) -> Any:
    def mutate(event: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        target = event
        for name in parents:
            target = target[name]
        target[last] = value
        return event

    return mutate


def _delete(path: str) -> Any:
    def mutate(event: dict[str, Any]) -> dict[str, Any]:
        *parents, last = path.split(".")
        target = event
        for name in parents:
            target = target[name]
        del target[last]
        return event

    return mutate


REST_MALFORMATIONS: dict[str, Any] = {
    "requestContext a list": _set("requestContext", []),
    "requestContext a string": _set("requestContext", "ctx"),
    "requestContext null": _set("requestContext", None),
    "requestContext missing": _delete("requestContext"),
    "requestId a number": _set("requestContext.requestId", 7),
    "headers a list": _set("headers", ["x-api-key"]),
    "headers a string": _set("headers", "x-api-key: tg_live_"),
    "a header value a number": _set("headers.Accept", 1),
    "a header value null": _set("headers.Accept", None),
    "multiValueHeaders a string": _set("multiValueHeaders", "x"),
    "a multi-value header not a list": _set("multiValueHeaders.Accept", "text/plain"),
    "a multi-value header with a number": _set("multiValueHeaders.Accept", ["text/plain", 3]),
    "methodArn missing": _delete("methodArn"),
    "methodArn empty": _set("methodArn", ""),
    "methodArn a star": _set("methodArn", "*"),
    "methodArn a number": _set("methodArn", 42),
    "httpMethod missing": _delete("httpMethod"),
    "httpMethod a list": _set("httpMethod", ["GET"]),
    "resource empty": _set("resource", ""),
    "resource a dict": _set("resource", {"path": "/v1/search"}),
}

V2_MALFORMATIONS: dict[str, Any] = {
    "requestContext a list": _set("requestContext", []),
    "requestContext missing": _delete("requestContext"),
    "requestId a dict": _set("requestContext.requestId", {}),
    "headers a list": _set("headers", []),
    "a header value a list": _set("headers.x-api-key", ["tg_live_"]),
    "routeKey missing": _delete("routeKey"),
    "routeKey empty": _set("routeKey", ""),
    "routeKey a number": _set("routeKey", 1),
}


@pytest.mark.parametrize("name", sorted(REST_MALFORMATIONS))
def test_a_malformed_rest_event_is_denied_without_dynamodb_or_a_policy_on_star(
    world: dict[str, Any], authorizer: Authorizer, name: str
) -> None:
    rest(authorizer, world["key"])  # warm: a cached key would be allowed without a read
    calls = _count_dynamodb_calls(authorizer)
    event = REST_MALFORMATIONS[name](rest_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS))

    answer = authorizer(event)

    assert effect(answer) == "Deny", name
    assert answer["context"]["reason"] == "malformed_request", name
    assert answer["context"]["message"]
    assert answer["principalId"] == "anonymous"
    assert calls == [], name
    assert usage(world["store"]) == (1, 1)


@pytest.mark.parametrize("name", sorted(V2_MALFORMATIONS))
def test_a_malformed_http_api_event_is_denied_without_dynamodb(
    world: dict[str, Any], authorizer: Authorizer, name: str
) -> None:
    authorizer(http_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS))
    calls = _count_dynamodb_calls(authorizer)
    event = V2_MALFORMATIONS[name](http_event(headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS))

    answer = authorizer(event)

    assert answer["isAuthorized"] is False, name
    assert answer["context"]["reason"] == "malformed_request", name
    assert calls == [], name


@pytest.mark.parametrize("event", [None, [], "event", 42, 1.5, True, {}, {"version": "2.0"}])
def test_an_event_that_is_not_an_api_gateway_event_gets_a_clean_deny(
    authorizer: Authorizer, event: Any
) -> None:
    calls = _count_dynamodb_calls(authorizer)
    answer = authorizer(event)

    if isinstance(event, dict) and event.get("version") == "2.0":
        assert answer["isAuthorized"] is False
    else:
        assert effect(answer) == "Deny"
        assert answer["policyDocument"]["Statement"][0]["Resource"] == "*"  # no methodArn: deny everything
    assert answer["context"]["reason"] == "malformed_request"
    assert calls == []


def test_an_oversized_key_header_is_refused_unsplit(world: dict[str, Any], authorizer: Authorizer) -> None:
    calls = _count_dynamodb_calls(authorizer)
    flood = ",".join([world["key"]] * 1000)  # 52 KB of the valid key, comma-joined

    assert rest(authorizer, flood)["context"]["reason"] == "malformed_api_key"
    bearer = rest_event(headers={"Authorization": "Bearer " + "A" * 5000}, epoch_ms=NOW_MS)
    assert authorizer(bearer)["context"]["reason"] == "malformed_api_key"
    assert calls == []
