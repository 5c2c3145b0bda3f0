"""The authorizer's decision over a sharded counter: which shard a request is counted on, and what is passed.

A hot customer's counter is split into ``counter_shards`` items (one DynamoDB item takes about 1,000 writes a
second); the authorizer picks one shard per request, so writes spread over all of them, and the close sums
them. ``decide.authorize`` is driven here with a fake key directory and a fake counter, and a seeded
``pick_shard`` that records what it was asked.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field, replace

import pytest

from tollgate.dal.counter_item import route_code
from tollgate.domain.keyformat import generate_key, hash_key
from tollgate.errors import CreditLimitReachedError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.events import AccessRequest
from tollgate.metering.grants import Grant

KEY = generate_key()
NOV_15_MS = 1_794_744_000_000  # 2026-11-15 12:00 UTC
ROUTE = "POST /v1/generate"


def grant(**overrides: object) -> Grant:
    fields: dict[str, object] = {
        "key_id": "key_abcdefabcdef",
        "customer_id": "acme",
        "customer_status": "active",
        "status_reason": None,
        "pay_url": None,
        "shards": 2,
        "plan_id": "payg",
        "plan_version": 3,
        "route_costs": {ROUTE: 25, "GET /usage": 0},
        "default_cost": 1,
    }
    fields.update(overrides)
    return Grant(**fields)  # type: ignore[arg-type]


def request(route: str = ROUTE, epoch_ms: int = NOV_15_MS) -> AccessRequest:
    return AccessRequest(
        kind="rest",
        candidates=(KEY,),
        route=route,
        epoch_ms=epoch_ms,
        request_id="req-1",
        method_arn="arn:aws:execute-api:us-east-1:123456789012:api/prod/POST/v1/generate",
    )


@dataclass
class Keys:
    found: Grant

    def find(self, key_hash: str) -> Grant | None:
        return self.found if key_hash == hash_key(KEY) else None


@dataclass
class FakeCounter:
    """Per (customer, period, shard): credits counted; every write as it was asked for."""

    credits: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    writes: list[tuple[str, str, int, str, int, int | None]] = field(default_factory=list)

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
    ) -> int | None:
        self.writes.append((customer_id, period, shard, route, credits, limit))
        if limit is not None and self.credits[(customer_id, period, shard)] + credits > limit:
            raise CreditLimitReachedError()
        self.credits[(customer_id, period, shard)] += credits
        return self.credits[(customer_id, period, shard)]


@dataclass
class RecordingPick:
    """``random.Random(seed).randrange``, remembering the argument of every call."""

    seed: int
    asked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def __call__(self, shards: int) -> int:
        self.asked.append(shards)
        return self._random.randrange(shards)


def test_with_two_shards_the_writes_spread_over_both_and_sum_to_every_credit() -> None:
    counter, pick = FakeCounter(), RecordingPick(seed=20261115)

    decisions = [authorize(request(), Keys(grant(shards=2)), counter, pick_shard=pick) for _ in range(200)]

    assert all(decision.allowed for decision in decisions)
    assert pick.asked == [2] * 200  # one pick per request, among both shards
    per_shard = Counter(write[2] for write in counter.writes)
    assert set(per_shard) == {0, 1}
    assert min(per_shard.values()) >= 60  # a fair pick: each shard takes a real share of the load
    assert sum(counter.credits.values()) == 200 * 25  # every credit counted once, on one shard or the other
    assert {(write[0], write[1]) for write in counter.writes} == {("acme", "2026-11")}


def test_the_default_pick_uses_every_shard() -> None:
    counter = FakeCounter()

    for _ in range(300):  # random.randrange: all 300 on two of the three shards has odds of 1 in 10**52
        assert authorize(request(), Keys(grant(shards=3)), counter).allowed

    assert {write[2] for write in counter.writes} == {0, 1, 2}


def test_an_unsharded_counter_is_shard_0_and_passes_the_exact_total() -> None:
    counter, pick = FakeCounter(), RecordingPick(seed=1)
    keys = Keys(grant(shards=1))

    first = authorize(request(), keys, counter, pick_shard=pick)
    second = authorize(request(), keys, counter, pick_shard=pick)

    assert pick.asked == []  # nothing to pick
    assert [write[2] for write in counter.writes] == [0, 0]
    assert (first.context["creditsUsed"], second.context["creditsUsed"]) == (25, 50)


def test_what_the_backend_is_passed_for_a_sharded_counter() -> None:
    counter = FakeCounter()

    decision = authorize(request(), Keys(grant(shards=2)), counter, pick_shard=RecordingPick(seed=3))
    shard = counter.writes[0][2]

    assert decision.allowed
    assert decision.principal == "acme"
    assert decision.context == {
        "customerId": "acme",
        "planId": "payg",
        "planVersion": 3,
        "keyId": "key_abcdefabcdef",
        "period": "2026-11",
        "credits": 25,
        "metered": True,
        "segment": 1,
        "routeCode": route_code(request().route),
        "shard": shard,  # where the credits were counted: a refund takes them back from there
    }  # no creditsUsed: one shard's count is not the period's total


def test_the_cap_is_enforced_on_an_unsharded_counter_only() -> None:
    """A sharded counter cannot carry the cap's condition (no shard knows the total): the write has none."""
    capped = grant(shards=1, credit_limit=50)
    counter = FakeCounter()

    answers = [authorize(request(), Keys(capped), counter).allowed for _ in range(3)]

    assert answers == [True, True, False]  # the request that reaches 50 exactly passes, the next is refused
    assert [write[5] for write in counter.writes] == [50, 50, 50]
    assert counter.credits[("acme", "2026-11", 0)] == 50  # the refused request counted nothing

    sharded = FakeCounter()
    for _ in range(3):
        assert authorize(
            request(), Keys(replace(capped, shards=2)), sharded, pick_shard=RecordingPick(9)
        ).allowed
    assert {write[5] for write in sharded.writes} == {None}


@pytest.mark.parametrize(("limit", "allowed"), [(24, False), (25, True)])
def test_a_single_request_above_the_cap_is_refused_without_a_write(limit: int, allowed: bool) -> None:
    counter = FakeCounter()

    decision = authorize(request(), Keys(grant(shards=1, credit_limit=limit)), counter)

    assert decision.allowed is allowed
    assert len(counter.writes) == (1 if allowed else 0)
    if not allowed:
        assert (decision.reason, decision.principal) == (Reason.CREDIT_LIMIT, "acme")


def test_a_request_counts_in_the_period_of_its_own_timestamp() -> None:
    counter = FakeCounter()
    last_ms_of_october = 1_793_491_199_999  # 2026-10-31 23:59:59.999 UTC

    authorize(request(epoch_ms=last_ms_of_october), Keys(grant()), counter, pick_shard=RecordingPick(5))
    authorize(request(epoch_ms=last_ms_of_october + 1), Keys(grant()), counter, pick_shard=RecordingPick(5))

    assert [write[1] for write in counter.writes] == ["2026-10", "2026-11"]
