"""A customer's budget as credits: the most credits whose period charge stays within it, for every kind of
plan, checked against a brute-force search over the rating engine's own charge and against hand-computed
examples; what a budget may be; how the authorizer reads it and which limit it enforces."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_plan
from tollgate.domain.budgets import budget_credits, budget_minor, budget_problem, period_charge
from tollgate.domain.keyformat import generate_key
from tollgate.domain.models import Plan, Tier
from tollgate.errors import CreditLimitReachedError, InsufficientCreditsError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.events import AccessRequest
from tollgate.metering.grants import Grant, grant_from_items

CENT = make_plan(id="cent", name="Cent", price_per_credit=Decimal("0.01"))  # 1 credit = 1 cent
PRO = make_plan(
    id="pro", name="Pro", base_fee=Decimal("49"), included_credits=100_000, price_per_credit=Decimal("0.0003")
)


# -- what a period costs, and what a budget buys ------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "credits", "charge"),
    [
        (CENT, 0, 0),
        (CENT, 2_500, 2_500),
        (PRO, 0, 4_900),  # the base fee, whatever the usage
        (PRO, 100_000, 4_900),  # the included credits cost nothing more
        (PRO, 142_000, 6_160),  # 49.00 + 42,000 x 0.03 cents
        (make_plan(minimum_commitment=Decimal("20"), price_per_credit=Decimal("0.01")), 500, 2_000),
        (make_plan(minimum_commitment=Decimal("20"), price_per_credit=Decimal("0.01")), 2_500, 2_500),
        (make_plan(billing="prepaid", price_per_credit=Decimal("0.002")), 1_001, 200),  # 200.2 cents, half-up
        (make_plan(billing="prepaid", price_per_credit=Decimal("0.002")), 1_003, 201),
    ],
)
def test_a_periods_charge_is_the_base_fee_and_the_usage_charge_before_discounts_and_tax(
    plan: Plan, credits: int, charge: int
) -> None:
    assert period_charge(plan, credits) == charge


@pytest.mark.parametrize(
    ("plan", "budget", "credits"),
    [
        (CENT, 2_500, 2_500),  # 25.00 USD at a cent a credit
        (CENT, 0, 0),
        (PRO, 4_900, 100_016),  # the included credits, and 16 more: 0.48 cents, rounded to 0
        (PRO, 5_000, 103_349),  # 3,349 more cost 100.47 cents -> 1.00; 3,350 cost 100.5 -> 1.01
        (PRO, 6_160, 142_016),  # 42,016 more cost 1,260.48 cents -> 12.60; 42,017: 1,260.51 -> 12.61
        (PRO, 4_899, 0),  # below the base fee: not even the included credits
        (make_plan(price_per_credit=Decimal("0.00042")), 100, 2_392),  # 2,392 x 0.042 = 100.464 -> 100
        (make_plan(credit_limit=1_000, price_per_credit=Decimal("0.01")), 1_000, None),  # the cap binds first
        (make_plan(credit_limit=1_000, price_per_credit=Decimal("0.01")), 999, 999),
        (make_plan(minimum_commitment=Decimal("20"), price_per_credit=Decimal("0.01")), 2_000, 2_000),
        (make_plan(minimum_commitment=Decimal("20"), price_per_credit=Decimal("0.01")), 1_999, 0),
        (make_plan(billing="prepaid", price_per_credit=Decimal("0.002")), 200, 1_002),  # 200.4 -> 200 cents
    ],
)
def test_a_budget_is_worth_the_most_credits_whose_charge_stays_within_it(
    plan: Plan, budget: int, credits: int | None
) -> None:
    assert budget_credits(plan, budget) == credits


TIERS = (
    Tier(up_to=1_000, price_per_credit=Decimal("0.01")),
    Tier(up_to=None, price_per_credit=Decimal("0.005")),
)


def test_graduated_tiers_are_priced_band_by_band() -> None:
    graduated = make_plan(tiers=TIERS, included_credits=100)

    assert budget_credits(graduated, 1_000) == 1_100  # the included credits, then the first band: 10.00
    assert budget_credits(graduated, 1_500) == 2_100  # 10.00 + 1,000 x 0.5 cents


def test_under_volume_tiers_the_budget_stops_at_the_first_credit_past_it_not_at_a_cheaper_total_later() -> (
    None
):
    volume = make_plan(tiers=TIERS, tiers_mode="volume", included_credits=100)
    assert period_charge(volume, 1_100) == 1_000  # the first band full: 10.00
    assert period_charge(volume, 2_000) == 950  # 1,900 at half a cent: cheaper than 1,100 credits

    assert budget_credits(volume, 999) == 1_099  # the 1,100th credit takes the period to 10.00
    assert budget_credits(volume, 1_000) == 2_100  # past the band every credit costs half: 2,000 for 10.00


def test_a_budget_on_a_plan_whose_last_band_is_free_does_not_bind_past_it() -> None:
    tiers = (Tier(up_to=100, price_per_credit=Decimal("0.01")), Tier(up_to=None, price_per_credit=Decimal(0)))

    assert budget_credits(make_plan(tiers=tiers), 100) is None  # 1.00 buys everything
    assert budget_credits(make_plan(tiers=tiers), 99) == 99


prices = st.decimals(min_value=Decimal("0.002"), max_value=Decimal("0.05"), places=3)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    kind = draw(st.sampled_from(["flat", "hybrid", "graduated", "volume", "minimum", "capped", "prepaid"]))
    fields: dict[str, Any] = {"price_per_credit": draw(prices)}
    if kind == "hybrid":
        fields |= {
            "base_fee": Decimal(draw(st.integers(0, 2))),
            "included_credits": draw(st.integers(0, 500)),
        }
    if kind in ("graduated", "volume"):
        bands = (Tier(up_to=draw(st.integers(1, 400)), price_per_credit=draw(prices)),)
        bands += (Tier(up_to=None, price_per_credit=draw(prices)),)
        fields = {"tiers": bands, "tiers_mode": kind, "included_credits": draw(st.integers(0, 100))}
    if kind == "minimum":
        fields["minimum_commitment"] = Decimal(draw(st.integers(1, 2)))
    if kind == "capped":
        fields["credit_limit"] = draw(st.integers(1, 1_500))
    if kind == "prepaid":
        fields["billing"] = "prepaid"
    return make_plan(**fields)


@settings(max_examples=120, deadline=None, derandomize=True)
@given(plan=plans(), budget=st.integers(0, 300))
def test_the_credits_a_budget_buys_are_those_counting_one_credit_at_a_time_finds(
    plan: Plan, budget: int
) -> None:
    # the independent answer: count credits up from 0 until the period's charge passes the budget
    credits, cap = 0, plan.credit_limit
    while (cap is None or credits <= cap) and period_charge(plan, credits) <= budget:
        credits += 1
    expected = None if cap is not None and credits > cap else max(credits - 1, 0)

    assert budget_credits(plan, budget) == expected


# -- what a budget may be -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("currency", "amount", "minor"),
    [("usd", "25", 2_500), ("usd", "25.50", 2_550), ("jpy", "3000", 3_000), ("isk", "1500", 150_000)],
)
def test_a_budget_is_an_amount_in_the_plans_currency(currency: str, amount: str, minor: int) -> None:
    plan = make_plan(currency=currency, price_per_credit=Decimal(1))

    assert budget_minor(plan, Decimal(amount)) == minor


@pytest.mark.parametrize(
    ("currency", "amount", "message"),
    [
        ("usd", "25.005", "a budget in USD is a multiple of 0.01 USD, not 25.005"),
        ("jpy", "0.5", "a budget in JPY is a multiple of 1 JPY, not 0.5"),
        ("isk", "10.50", "a budget in ISK is a multiple of 1 ISK, not 10.50"),
        ("usd", "-1", "a budget is an amount of at least 0, not -1"),
        ("usd", "NaN", "a budget is an amount of at least 0, not NaN"),
    ],
)
def test_an_amount_the_currency_cannot_charge_is_refused(currency: str, amount: str, message: str) -> None:
    plan = make_plan(currency=currency, price_per_credit=Decimal(1))

    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        budget_minor(plan, Decimal(amount))


def test_a_budget_must_cover_the_fixed_charge_and_stay_within_the_cap() -> None:
    capped = make_plan(
        base_fee=Decimal(5), credit_limit=1_000, price_per_credit=Decimal("0.01")
    )  # cap: 15.00

    assert budget_problem(capped, 500) is None
    assert budget_problem(capped, 1_500) is None
    assert budget_problem(capped, 499) == (
        "a budget of 4.99 USD is below what the plan charges whatever the usage (5.00 USD): it would refuse "
        "every request"
    )
    assert budget_problem(capped, 1_501) == (
        "a budget of 15.01 USD is above the plan's cap of 1,000 credits (15.00 USD): set one at or below it"
    )
    assert budget_problem(CENT, 10**9) is None  # no cap: any budget


# -- the authorizer ------------------------------------------------------------------------------------------
def customer_item(budget: dict[str, Any] | None) -> dict[str, Any]:
    item: dict[str, Any] = {"id": {"S": "acme"}, "status": {"S": "active"}, "plan_id": {"S": "cent"}}
    if budget is not None:
        item["budget"] = {"M": budget}
    return item


PLAN_ITEM = {
    "id": {"S": "cent"},
    "version": {"N": "1"},
    "default_cost": {"N": "1"},
    "credit_limit": {"N": "500"},
}


@pytest.mark.parametrize(
    ("budget", "credits", "limit", "reason"),
    [
        (None, None, 500, "cap"),  # no budget: the plan's cap
        ({"amount": {"S": "3"}, "credits": {"M": {"cent@1": {"N": "300"}}}}, 300, 300, "budget"),
        (
            {"amount": {"S": "9"}, "credits": {"M": {"cent@1": {"NULL": True}}}},
            None,
            500,
            "cap",
        ),  # not binding
        ({"amount": {"S": "3"}, "credits": {"M": {"other@1": {"N": "300"}}}}, 0, 0, "budget"),  # no number: 0
        (
            {"amount": {"S": "5"}, "credits": {"M": {"cent@1": {"N": "500"}}}},
            500,
            500,
            "cap",
        ),  # equal: the cap
    ],
)
def test_the_grant_reads_the_budgets_credits_on_its_own_plan_version(
    budget: dict[str, Any] | None, credits: int | None, limit: int, reason: str
) -> None:
    grant = grant_from_items({"key_id": {"S": "k1"}}, customer_item(budget), PLAN_ITEM)

    assert (grant.budget_credits, grant.limit, grant.limit_reason) == (credits, limit, reason)


class Keys:
    def __init__(self, grant: Grant) -> None:
        self.grant = grant

    def find(self, key_hash: str) -> Grant | None:
        return self.grant


class Counter:
    """Counts like the wallet and the counter do, refusing past ``limit`` as the conditional write does."""

    def __init__(self, used: int = 0, balance: int = 0) -> None:
        self.used, self.balance = used, balance
        self.limits: list[int | None] = []

    def add(self, customer_id: str, period: str, shard: int, route: str, credits: int, limit: int | None,
            segment: int = 1, *, day: int) -> int:  # fmt: skip
        self.limits.append(limit)
        if limit is not None and self.used + credits > limit:
            raise CreditLimitReachedError()
        self.used += credits
        return self.used

    def draw(self, customer_id: str, period: str, route: str, credits: int, segment: int = 1,
             limit: int | None = None, *, day: int) -> int:  # fmt: skip
        self.limits.append(limit)
        if self.balance < credits:
            raise InsufficientCreditsError()
        if limit is not None and self.used + credits > limit:
            raise CreditLimitReachedError()
        self.used, self.balance = self.used + credits, self.balance - credits
        return self.balance


KEY = generate_key()
REQUEST = AccessRequest(
    kind="rest",
    candidates=(KEY,),
    route="GET /v1/search",
    epoch_ms=1_794_744_000_000,  # 2026-11-15 12:00 UTC
    request_id="req-1",
    method_arn="arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/v1/search",
)


GRANT = Grant(
    key_id="k1",
    customer_id="acme",
    customer_status="active",
    status_reason=None,
    pay_url=None,
    shards=1,
    plan_id="cent",
    plan_version=1,
    default_cost=10,
    credit_limit=100,
)


@pytest.mark.parametrize(
    ("budget", "reason"),
    [(30, Reason.BUDGET_REACHED), (None, Reason.CREDIT_LIMIT), (200, Reason.CREDIT_LIMIT)],
)
def test_the_lower_of_cap_and_budget_is_enforced_and_named_in_the_refusal(
    budget: int | None, reason: Reason
) -> None:
    grant = _fields(GRANT, budget_credits=budget)
    counter = Counter()
    answers = [authorize(REQUEST, Keys(grant), counter) for _ in range(12)]

    allowed = sum(answer.allowed for answer in answers)
    assert allowed == min(grant.limit or 0, 100) // 10
    assert answers[allowed].reason == reason
    assert counter.limits[0] == grant.limit


def test_a_budget_smaller_than_one_request_refuses_it_without_a_write() -> None:
    counter = Counter()

    answer = authorize(REQUEST, Keys(_fields(GRANT, budget_credits=5)), counter)

    assert answer.reason == Reason.BUDGET_REACHED
    assert counter.limits == []


def test_a_prepaid_draw_carries_the_budget_and_tells_it_from_an_empty_balance() -> None:
    prepaid = _fields(
        GRANT, credit_limit=None, prepaid=True, budget_credits=20, top_up_url="https://x.test/buy"
    )
    counter = Counter(balance=100)

    answers = [authorize(REQUEST, Keys(prepaid), counter) for _ in range(3)]

    assert [a.reason for a in answers] == [None, None, Reason.BUDGET_REACHED]
    assert counter.limits == [20, 20, 20]
    broke = Counter(balance=5)
    assert authorize(REQUEST, Keys(prepaid), broke).reason == Reason.INSUFFICIENT_CREDITS


def _fields(grant: Grant, **changes: Any) -> Grant:
    return replace(grant, **changes)
