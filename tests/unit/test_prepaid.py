"""Prepaid plans in the small: the plan's rules, the wallet's attribute names, the authorizer's draw as
DynamoDB receives it, the decision it leads to, and the statement line of drawn credits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import make_plan
from tests.unit.test_counter_write import ScriptedClient, refused
from tests.unit.test_metering_decide import GRANT, REQUEST, Keys
from tollgate.dal.counter_item import (
    period_tag,
    period_view,
    read_route_tally,
    route_code,
    wallet_attribute,
    wallet_period_tags,
)
from tollgate.domain.models import sharding_problem
from tollgate.domain.prepaid import BurnRate, TopUpSource, burn_rate, purchase_top_up
from tollgate.domain.rating import LineKind, late_usage_line, rate_period, usage_charge
from tollgate.errors import InsufficientCreditsError, MeteringUnavailableError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate.metering.grants import grant_from_items

TOP_UP_URL = "https://api.example.test/credits"
PREPAID_GRANT = replace(GRANT, prepaid=True, top_up_url=TOP_UP_URL)


def prepaid(**overrides: Any) -> Any:
    return make_plan(id="credits", billing="prepaid", price_per_credit=Decimal("0.002"), **overrides)


# -- the plan ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"base_fee": Decimal("5")}, "base_fee"),
        ({"included_credits": 100}, "included_credits"),
        ({"minimum_commitment": Decimal("10")}, "minimum_commitment"),
        ({"credit_limit": 1000}, "credit_limit"),
    ],
)
def test_a_prepaid_plan_refuses_terms_billed_after_the_period(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError, match=f"{field}: a prepaid plan"):
        prepaid(**overrides)


def test_a_prepaid_plan_refuses_tiers() -> None:
    tiers = [{"up_to": 10, "price_per_credit": "0.01"}, {"up_to": None, "price_per_credit": "0.001"}]
    with pytest.raises(ValidationError, match="tiers: a prepaid plan"):
        make_plan(id="credits", billing="prepaid", tiers=tiers)


def test_only_a_prepaid_plan_has_a_top_up_page_and_it_is_https() -> None:
    assert prepaid(top_up_url=TOP_UP_URL).top_up_url == TOP_UP_URL
    assert prepaid().prepaid
    assert not make_plan().prepaid
    with pytest.raises(ValidationError, match="only a prepaid plan"):
        make_plan(top_up_url=TOP_UP_URL)
    with pytest.raises(ValidationError, match="top_up_url"):
        prepaid(top_up_url="http://api.example.test/credits")


def test_a_sharded_customer_fits_neither_a_cap_nor_a_prepaid_balance() -> None:
    assert sharding_problem(prepaid(), 1) is None
    assert sharding_problem(make_plan(credit_limit=10), 1) is None
    assert sharding_problem(make_plan(), 4) is None
    assert "credit_limit" in (sharding_problem(make_plan(credit_limit=10), 2) or "")
    assert "prepaid" in (sharding_problem(prepaid(), 2) or "")


# -- the wallet's attributes ---------------------------------------------------------------------------------
def test_a_periods_attributes_are_named_by_its_four_digit_tag() -> None:
    assert period_tag("2026-11") == "2611"
    assert period_tag("2000-01") == "0001"
    assert period_tag("2099-12") == "9912"
    assert wallet_attribute("2026-11", "credits") == "2611credits"
    for bad in ("1999-12", "2100-01", "2026-1", "202611", "26-11"):
        with pytest.raises(ValueError, match="a wallet counts periods"):
            period_tag(bad)


def test_the_view_of_a_period_is_its_counter_and_nothing_else() -> None:
    code = route_code("GET /v1/search")
    wallet = {
        "pk": "WALLET#acme",
        "balance": 70,
        "bought": 100,
        "2610credits": 5,
        "2611credits": 25,
        "2611requests": 2,
        "2611seg1": 25,
        f"2611{code}": Decimal("25.0000000002"),
        "2612credits": 3,
    }

    assert period_view(wallet, "2026-11") == {
        "credits": 25,
        "requests": 2,
        "seg1": 25,
        code: Decimal("25.0000000002"),
    }
    assert period_view(wallet, "2025-11") == {}
    assert wallet_period_tags(wallet) == {"2610", "2611", "2612"}


# -- the draw, as DynamoDB receives it -----------------------------------------------------------------------
def drawn(balance: int) -> dict[str, Any]:
    return {"Attributes": {"balance": {"N": str(balance)}, "2611credits": {"N": "30"}}}


def test_the_draw_counts_the_request_and_draws_the_balance_in_one_conditional_write() -> None:
    client = ScriptedClient(drawn(70))

    counter = DynamoUsageCounter(client, "table")
    assert counter.draw("acme", "2026-11", "GET /v1/search", 25, segment=2, day=5) == 70

    (request,) = client.updates
    assert request["Key"] == {"pk": {"S": "WALLET#acme"}, "sk": {"S": "WALLET"}}
    assert request["UpdateExpression"] == "ADD #b :draw, #c :c, #n :one, #r :tally, #s :c, #d :tally"
    assert request["ConditionExpression"] == "#b >= :c"
    assert request["ExpressionAttributeNames"] == {
        "#b": "balance",
        "#c": "2611credits",
        "#n": "2611requests",
        "#r": "2611" + route_code("GET /v1/search"),
        "#s": "2611seg2",
        "#d": "2611d05",  # the request's day, period-tagged like the rest
    }
    values = request["ExpressionAttributeValues"]
    assert (values[":draw"], values[":c"], values[":one"]) == ({"N": "-25"}, {"N": "25"}, {"N": "1"})
    assert read_route_tally(values[":tally"]["N"]) == (25, 1)
    assert client.puts == ["GET /v1/search"]  # the route is named in the registry


def test_a_free_request_needs_no_wallet() -> None:
    client = ScriptedClient(drawn(0))

    DynamoUsageCounter(client, "table").draw("acme", "2026-11", "GET /usage", 0, day=30)

    assert client.updates[0]["ConditionExpression"].upper() == "ATTRIBUTE_NOT_EXISTS(#B) OR #B >= :C"


def test_a_balance_that_does_not_cover_the_request_refuses_it_once() -> None:
    condition = refused("ConditionalCheckFailedException")
    client = ScriptedClient(condition)

    with pytest.raises(InsufficientCreditsError):
        DynamoUsageCounter(client, "table").draw("acme", "2026-11", "GET /v1/search", 5, day=30)

    assert len(client.updates) == 1
    assert client.puts == []


def test_a_throttled_draw_is_tried_once_more_and_an_answer_without_the_balance_is_none() -> None:
    client = ScriptedClient(refused("ThrottlingException"), {"Attributes": {}})

    assert DynamoUsageCounter(client, "table").draw("acme", "2026-11", "GET /v1/search", 5, day=30) is None

    assert len(client.updates) == 2


# -- the decision --------------------------------------------------------------------------------------------
class Wallet:
    def __init__(self, balance: int | Exception) -> None:
        self.balance = balance
        self.draws: list[tuple[Any, ...]] = []

    def add(self, *args: object, **kwargs: object) -> int | None:
        raise AssertionError("a prepaid request is counted on the wallet")

    def draw(
        self,
        customer_id: str,
        period: str,
        route: str,
        credits: int,
        segment: int = 1,
        limit: int | None = None,
        *,
        day: int,
    ) -> int | None:
        assert limit is None  # no budget on the grant
        self.draws.append((customer_id, period, route, credits, segment))
        if isinstance(self.balance, Exception):
            raise self.balance
        self.balance -= credits
        return self.balance


def test_a_prepaid_request_is_drawn_from_the_wallet_and_says_what_is_left() -> None:
    wallet = Wallet(10)

    decision = authorize(REQUEST, Keys(replace(PREPAID_GRANT, segment=3)), wallet)

    assert decision.allowed
    assert wallet.draws == [("acme", "2026-11", "GET /v1/search", 1, 3)]
    assert decision.context["creditsLeft"] == 9
    assert "creditsUsed" not in decision.context


def test_a_request_the_balance_cannot_cover_is_refused_with_the_top_up_page() -> None:
    decision = authorize(REQUEST, Keys(PREPAID_GRANT), Wallet(InsufficientCreditsError()))

    assert not decision.allowed
    assert decision.reason is Reason.INSUFFICIENT_CREDITS
    assert decision.principal == "acme"
    assert decision.context["payUrl"] == TOP_UP_URL
    assert "buy more at payUrl" in str(decision.context["message"])


def test_a_prepaid_request_is_refused_when_the_wallet_cannot_be_written() -> None:
    decision = authorize(REQUEST, Keys(PREPAID_GRANT), Wallet(MeteringUnavailableError("down", applied=None)))

    assert decision.reason is Reason.UNAVAILABLE
    assert decision.outcome_unknown


def test_the_grant_reads_the_plans_billing() -> None:
    key = {"key_id": {"S": "key_1"}}
    customer = {"id": {"S": "acme"}, "status": {"S": "active"}}
    plan = {"id": {"S": "credits"}, "billing": {"S": "prepaid"}, "top_up_url": {"S": TOP_UP_URL}}

    grant = grant_from_items(key, customer, plan)
    arrears = grant_from_items(key, customer, {"id": {"S": "payg"}, "billing": {"S": "arrears"}})
    legacy = grant_from_items(key, customer, {"id": {"S": "payg"}})  # stored before prepaid plans existed

    assert (grant.prepaid, grant.top_up_url) == (True, TOP_UP_URL)
    assert (arrears.prepaid, legacy.prepaid, legacy.top_up_url) == (False, False, None)


# -- the statement -------------------------------------------------------------------------------------------
def test_drawn_credits_are_shown_on_the_statement_and_bill_nothing() -> None:
    statement = rate_period(prepaid(name="Credits"), "acme", "2026-11", 12_345)

    (line,) = statement.lines
    assert (line.kind, line.quantity, line.amount, line.unit_amount) == (LineKind.PREPAID, 12_345, 0, 0)
    assert line.description == "API usage: 12,345 credits drawn from the prepaid balance"
    assert statement.total == 0
    assert rate_period(prepaid(), "acme", "2026-11", 0).lines == ()


def test_late_prepaid_usage_costs_nothing_more() -> None:
    plan = prepaid()

    assert usage_charge(plan, 1_000_000) == 0
    line = late_usage_line(plan, "2026-10", 100, 50)
    assert line is not None
    assert line.amount == 0


# -- the pace of the balance ---------------------------------------------------------------------------------
START = datetime(2026, 11, 1, tzinfo=UTC)


def test_the_burn_rate_is_the_periods_pace_and_says_when_the_balance_runs_out() -> None:
    pace = burn_rate(balance=10_000, drawn=5_000, since=START, now=START + timedelta(days=2, hours=12))

    assert pace.credits_per_day == 2_000
    assert pace.runs_out_at == START + timedelta(days=7, hours=12)  # 10,000 more at 2,000 a day


def test_the_burn_rate_rounds_down_and_an_empty_balance_runs_out_now() -> None:
    now = START + timedelta(days=3)

    assert burn_rate(0, 10, START, now) == BurnRate(3, now)
    assert burn_rate(1, 3, START, now).runs_out_at == now + timedelta(days=1)
    assert burn_rate(2, 3, START, now).runs_out_at == now + timedelta(days=2)


@pytest.mark.parametrize(("drawn", "elapsed"), [(0, timedelta(days=3)), (100, timedelta(0))])
def test_nothing_drawn_or_no_time_passed_is_no_pace(drawn: int, elapsed: timedelta) -> None:
    assert burn_rate(500, drawn, START, START + elapsed) == BurnRate(0, None)


# -- a paid Checkout Session ---------------------------------------------------------------------------------
def session(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "id": "cs_test_a1",
        "amount_total": 10_000,
        "currency": "usd",
        "payment_status": "paid",
        "metadata": {
            "tollgate_purchase": "prepaid_credits",
            "tollgate_customer_id": "acme",
            "tollgate_credits": "50000",
        },
    }
    fields.update(overrides)
    return fields


def test_a_paid_session_selling_credits_is_a_top_up_named_by_the_session() -> None:
    top_up = purchase_top_up(session(), START)

    assert top_up is not None
    assert (top_up.customer_id, top_up.reference, top_up.credits) == ("acme", "cs_test_a1", 50_000)
    assert (top_up.source, top_up.amount, top_up.currency, top_up.created_at) == (
        TopUpSource.CHECKOUT,
        10_000,
        "usd",
        START,
    )


def test_a_session_that_sells_something_else_is_no_top_up() -> None:
    assert purchase_top_up(session(metadata={"order": "42"}), START) is None
    assert purchase_top_up(session(metadata=None), START) is None


@pytest.mark.parametrize("credits", ["", "-5", "1.5", "ten", "٣"])
def test_a_session_whose_credits_are_not_a_number_is_refused(credits: str) -> None:
    metadata = {**session()["metadata"], "tollgate_credits": credits}

    with pytest.raises(ValueError, match="not a number of credits"):
        purchase_top_up(session(metadata=metadata), START)


def test_a_session_selling_no_credits_is_refused() -> None:
    metadata = {**session()["metadata"], "tollgate_credits": "0"}

    with pytest.raises(ValidationError, match="credits"):
        purchase_top_up(session(metadata=metadata), START)
