"""Floods are bounded: what a flood of bad requests costs the authorizer, counted in DynamoDB calls (moto,
in-process), never timed.

- a request with a random well-formed key costs at most one read (the key item is not there: no customer or
  plan read follows), and the same key again within the negative cache's TTL costs nothing;
- a request without a key, with a malformed key or a malformed event costs no DynamoDB call at all;
- the key cache stays within its bounds, and a flood of unknown keys never evicts a paying customer's grant:
  their next request is still the warm path's single write.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from datetime import timedelta
from typing import Any

import boto3
import pytest

from tests.conftest import CONTEXT, NOW, TABLE, make_customer, make_plan
from tests.events import http_event, rest_event
from tollgate.accounts.keys import issue_key
from tollgate.dal.store import TollgateStore
from tollgate.metering import handler as metering
from tollgate.metering.dynamo import TtlCache
from tollgate.metering.settings import DEFAULT_NEGATIVE_CACHE_TTL_SECONDS, MeteringSettings

NOW_MS = int(NOW.timestamp() * 1000)
NEGATIVE_BOUND = 256
FLOOD = 2_000


class Monotonic:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


class Flooded:
    """The authorizer as deployed (DynamoDB-backed) with a small negative cache and every call counted."""

    def __init__(self) -> None:
        self.monotonic = Monotonic()
        self.cache = TtlCache(max_entries=64, max_negative_entries=NEGATIVE_BOUND, clock=self.monotonic)
        self.client = boto3.client("dynamodb", config=metering.CLIENT_CONFIG)
        self.calls: list[str] = []
        self.client.meta.events.register(
            "before-call.dynamodb.*", lambda model, **_: self.calls.append(model.name)
        )
        deps = metering.deps_from(
            MeteringSettings(TABLE), client=self.client, cache=self.cache, clock=lambda: NOW_MS / 1000
        )
        self.handle = metering.make_handler(deps)

    def __call__(self, event: Any) -> dict[str, Any]:
        return self.handle(event, CONTEXT)

    def cost_of(self, events: list[Any]) -> tuple[Counter[str], list[dict[str, Any]]]:
        before = len(self.calls)
        answers = [self(event) for event in events]
        return Counter(self.calls[before:]), answers


def random_key() -> str:
    return "tg_live_" + secrets.token_urlsafe(32)


def reasons(answers: list[dict[str, Any]]) -> set[str]:
    return {answer["context"].get("reason", "allowed") for answer in answers}


@pytest.fixture
def customer_key(store: TollgateStore) -> str:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))
    return issue_key(store, "acme", now=NOW - timedelta(days=1)).key


@pytest.fixture
def flooded(aws: None) -> Flooded:
    return Flooded()


def test_random_keys_cost_one_read_each_and_repeats_cost_nothing(flooded: Flooded, customer_key: str) -> None:
    warm, _ = flooded.cost_of([rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS)])
    # cold: key, customer, plan; then the count, and the route's name in the registry (once per instance)
    assert warm == Counter({"GetItem": 3, "UpdateItem": 1, "PutItem": 1})

    keys = [random_key() for _ in range(FLOOD)]
    flood = [rest_event(headers={"x-api-key": key}, epoch_ms=NOW_MS) for key in keys]
    cost, answers = flooded.cost_of(flood)

    assert cost == Counter({"GetItem": FLOOD})  # at most one read per request, no write
    assert reasons(answers) == {"invalid_api_key"}
    assert flooded.cache.sizes() == (1, NEGATIVE_BOUND)  # the customer's grant is still there

    recent = flood[-NEGATIVE_BOUND:]  # the most recent unknown keys are in the negative cache
    as_v2 = [http_event(headers={"x-api-key": key}, epoch_ms=NOW_MS) for key in keys[-10:]]
    again, answers = flooded.cost_of(recent + as_v2)
    assert again == Counter()  # within the negative TTL: no read at all
    assert reasons(answers) == {"invalid_api_key"}

    flooded.monotonic.now += DEFAULT_NEGATIVE_CACHE_TTL_SECONDS  # the negative entries expire
    expired, _ = flooded.cost_of(recent[:10])
    assert expired == Counter({"GetItem": 10})

    after, answers = flooded.cost_of([rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS)])
    assert after == Counter({"UpdateItem": 1})  # the warm path survived the flood
    assert reasons(answers) == {"allowed"}


def test_keyless_malformed_and_broken_requests_cost_no_dynamodb_call(
    flooded: Flooded, customer_key: str
) -> None:
    broken_context = rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS)
    broken_context["requestContext"] = "nope"
    no_arn = rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS)
    del no_arn["methodArn"]
    stale = rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS - 3600 * 1000)
    kinds = [
        rest_event(epoch_ms=NOW_MS),  # no key
        http_event(epoch_ms=NOW_MS),
        rest_event(headers={"x-api-key": "tg_live_short"}, epoch_ms=NOW_MS),
        rest_event(headers={"Authorization": "Bearer " + "x" * 4000}, epoch_ms=NOW_MS),
        rest_event(headers={"x-api-key": f"{random_key()},{random_key()}"}, epoch_ms=NOW_MS),
        broken_context,
        no_arn,
        stale,
        None,
        [],
        "GET /",
    ]
    cost, answers = flooded.cost_of(kinds * (FLOOD // len(kinds)))

    assert cost == Counter()
    assert reasons(answers) == {"missing_api_key", "malformed_api_key", "malformed_request"}
    assert flooded.cache.sizes() == (0, 0)  # nothing was even cached


def test_a_concurrent_flood_stays_within_the_bounds(flooded: Flooded, customer_key: str) -> None:
    flooded(rest_event(headers={"x-api-key": customer_key}, epoch_ms=NOW_MS))
    per_thread, threads = 400, 4
    errors: list[BaseException] = []
    denied: list[str] = []

    def worker() -> None:
        try:
            for _ in range(per_thread):
                key = random_key()
                answer = flooded(rest_event(headers={"x-api-key": key}, epoch_ms=NOW_MS))
                denied.append(answer["context"]["reason"])
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    before = len(flooded.calls)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()

    assert errors == []
    assert set(denied) == {"invalid_api_key"}
    assert len(denied) == per_thread * threads
    assert Counter(flooded.calls[before:]) == Counter({"GetItem": per_thread * threads})
    assert flooded.cache.sizes() == (1, NEGATIVE_BOUND)
