"""The spend limit a customer sets on themselves, end to end on Amazon DynamoDB Local: ``PUT /usage/budget``
through the usage API with the customer's own authorizer context, then the real authorizer refusing the first
request past it (``budget_reached``) in the same conditional write that counts requests, exactly under
concurrency, for arrears and prepaid plans; a plan change carries the budget over."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, NOW, Authorizer, make_authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.budgets import budget_status, set_budget
from tollgate.accounts.keys import issue_key
from tollgate.accounts.plan_changes import change_plan
from tollgate.accounts.prepaid import add_credits
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Plan
from tollgate.errors import InvalidInputError, NotFoundError
from tollgate.usage_api.handler import Deps, make_handler

pytestmark = pytest.mark.dynamodb_local

NOW_MS = int(NOW.timestamp() * 1000)
PERIOD = "2026-11"
ROUTES = {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0, "ANY /usage/budget": 0}
# 2.00 base fee with 100 credits included, then a cent a credit, capped at 5,000 credits (51.00)
HYBRID = make_plan(
    id="hybrid",
    name="Hybrid",
    base_fee=Decimal(2),
    included_credits=100,
    price_per_credit=Decimal("0.01"),
    credit_limit=5_000,
    route_costs=ROUTES,
)


def customer(store: TollgateStore, plan: Plan = HYBRID) -> str:
    store.put_plan(plan)
    store.put_customer(make_customer(plan, stripe_customer_id="cus_acme"))
    return issue_key(store, "acme", now=NOW - timedelta(days=1)).key


def call(
    authorizer: Authorizer, key: str, method: str = "GET", resource: str = "/v1/search"
) -> dict[str, Any]:
    answer = authorizer(rest_event(method, resource, headers={"x-api-key": key}, epoch_ms=NOW_MS))
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    return {"allowed": effect == "Allow", **answer["context"]}


def budget_event(method: str, body: Any = None) -> dict[str, Any]:
    """The REST proxy event ``/usage/budget`` gets behind the authorizer (the context as strings)."""
    return {
        "resource": "/usage/budget",
        "path": "/usage/budget",
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/usage/budget",
            "httpMethod": method,
            "path": "/live/usage/budget",
            "stage": "live",
            "requestId": "req-budget",
            "authorizer": {"principalId": "acme", "customerId": "acme"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@pytest.fixture
def usage(store: TollgateStore) -> Any:
    handle = make_handler(Deps(store, clock=lambda: NOW))

    def answer(method: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        response = handle(budget_event(method, body), CONTEXT)
        return response["statusCode"], json.loads(response["body"])

    return answer


def test_a_budget_set_through_the_api_refuses_the_first_request_past_it(
    store: TollgateStore, authorizer: Authorizer, usage: Any
) -> None:
    key = customer(store)
    assert call(authorizer, key, "PUT", "/usage/budget")["allowed"]  # the route is metered, at 0 credits

    status, body = usage("PUT", {"amount": "3.50"})  # 2.00 base fee + 100 included + 150 at a cent

    assert status == 200
    assert body["amount"] == {"amount": 350, "formatted": "3.50 USD", "currency": "usd"}
    assert body["credits"] == 250
    assert body["cap"]["formatted"] == "51.00 USD"
    authorizer.cache.clear()  # the key cache's TTL has passed
    answers = [call(authorizer, key) for _ in range(251)]
    assert [a["allowed"] for a in answers] == [True] * 250 + [False]
    assert answers[-1]["reason"] == "budget_reached"
    assert "PUT /usage/budget" in answers[-1]["message"]
    assert store.read_usage("acme", PERIOD).credits == 250  # the refused request was not counted
    assert call(authorizer, key, "GET", "/usage")["allowed"]  # free routes stay open
    assert call(authorizer, key, "PUT", "/usage/budget")["allowed"]

    assert usage("PUT", {"amount": "4.00"})[0] == 200  # raised: 50 more
    authorizer.cache.clear()
    assert [call(authorizer, key)["allowed"] for _ in range(51)] == [True] * 50 + [False]
    status, body = usage("GET")
    assert (status, body["amount"]["formatted"], body["credits"]) == (200, "4.00 USD", 300)


def test_cleared_the_plans_cap_applies_again(
    store: TollgateStore, authorizer: Authorizer, usage: Any
) -> None:
    key = customer(store)
    usage("PUT", {"amount": "2.00"})  # only the included credits
    authorizer.cache.clear()
    assert [call(authorizer, key)["allowed"] for _ in range(101)] == [True] * 100 + [False]

    status, body = usage("PUT", {"amount": None})

    assert (status, body["amount"], body["credits"]) == (200, None, None)
    authorizer.cache.clear()
    assert call(authorizer, key)["allowed"]
    assert store.get_customer("acme").budget is None


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("1.99", "below what the plan charges whatever the usage (2.00 USD)"),
        ("51.01", "above the plan's cap of 5,000 credits (51.00 USD)"),
        ("3.005", "a budget in USD is a multiple of 0.01 USD"),
    ],
)
def test_a_budget_the_plan_cannot_take_is_a_400_and_changes_nothing(
    store: TollgateStore, usage: Any, amount: str, message: str
) -> None:
    customer(store)
    usage("PUT", {"amount": "10.00"})
    before = store.get_customer("acme")

    status, body = usage("PUT", {"amount": amount})

    assert status == 400
    assert message in body["message"]
    assert store.get_customer("acme") == before


@pytest.mark.parametrize("body", [{"amount": "-1"}, {"amount": "ten"}, {"limit": "5"}, ["5"]])
def test_a_malformed_body_is_refused_before_anything_is_read(
    store: TollgateStore, usage: Any, body: Any
) -> None:
    customer(store)

    status, _ = usage("PUT", body)

    assert status == 422
    assert store.get_customer("acme").budget is None


def test_setting_the_same_budget_again_changes_nothing(store: TollgateStore) -> None:
    customer(store)
    first = set_budget(store, "acme", Decimal("3.5"), now=NOW)

    again = set_budget(store, "acme", Decimal("3.50"), now=NOW + timedelta(hours=1))

    assert again.budget == first.budget
    assert again.budget is not None
    assert again.budget.set_at == NOW


def test_concurrent_requests_never_pass_the_budget(store: TollgateStore) -> None:
    key = customer(store)
    set_budget(store, "acme", Decimal("5.00"), now=NOW)  # 400 credits
    counted: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def client(seed: int) -> None:
        authorizer = make_authorizer()
        start.wait()
        for n in range(40):
            generate = (n + seed) % 3 == 0
            answer = call(
                authorizer, key, "POST" if generate else "GET", "/v1/generate" if generate else "/v1/search"
            )
            if answer["allowed"]:
                with lock:
                    counted.append(25 if generate else 1)
            else:
                assert answer["reason"] == "budget_reached"

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    usage = store.read_usage("acme", PERIOD)
    assert usage.credits == sum(counted) <= 400  # every allowed request counted, none past the budget
    assert len(counted) < 8 * 40  # and the budget did refuse


def test_a_plan_change_carries_the_budget_over_in_the_new_plans_credits(store: TollgateStore) -> None:
    key = customer(store)
    store.put_plan(
        make_plan(id="pricier", name="Pricier", price_per_credit=Decimal("0.02"), route_costs=ROUTES)
    )
    set_budget(store, "acme", Decimal("3.50"), now=NOW)

    change_plan(store, "acme", "pricier", now=NOW - timedelta(minutes=5), delay=timedelta(seconds=1))

    status = budget_status(store, "acme", now=NOW)
    assert status.plan.id == "pricier"
    assert status.credits == 175  # 3.50 at two cents a credit (no base fee)
    assert status.budget is not None
    assert status.budget.credits == {"hybrid@1": 250, "pricier@1": 175}
    authorizer = make_authorizer()
    assert [call(authorizer, key)["allowed"] for _ in range(176)] == [True] * 175 + [False]


def test_a_plan_in_another_currency_is_worth_nothing_under_the_old_budget(store: TollgateStore) -> None:
    customer(store)
    store.put_plan(
        make_plan(
            id="euro", name="Euro", currency="eur", price_per_credit=Decimal("0.01"), route_costs=ROUTES
        )
    )
    set_budget(store, "acme", Decimal("3.50"), now=NOW)

    change_plan(store, "acme", "euro", at_period_end=True, now=NOW)

    budget = store.get_customer("acme").budget
    assert budget is not None
    assert budget.credits["euro@1"] == 0


def test_a_prepaid_customer_is_told_budget_from_balance(store: TollgateStore, authorizer: Authorizer) -> None:
    prepaid = make_plan(
        id="credits",
        name="Credits",
        billing="prepaid",
        price_per_credit=Decimal("0.01"),
        top_up_url="https://api.example.test/buy",
        route_costs=ROUTES,
    )
    key = customer(store, prepaid)
    add_credits(store, "acme", credits=100, reference="pi_1", now=NOW)
    set_budget(store, "acme", Decimal("0.60"), now=NOW)  # 60 credits drawn this month

    answers = [call(authorizer, key) for _ in range(61)]

    assert [a["allowed"] for a in answers] == [True] * 60 + [False]
    assert answers[-1]["reason"] == "budget_reached"
    assert store.read_balance("acme").credits == 40  # never drawn past the budget
    set_budget(store, "acme", Decimal("5.00"), now=NOW)
    authorizer.cache.clear()
    answers = [call(authorizer, key) for _ in range(41)]
    assert [a["allowed"] for a in answers] == [True] * 40 + [False]
    assert answers[-1]["reason"] == "insufficient_credits"  # now the balance is what stops it
    assert answers[-1]["payUrl"] == "https://api.example.test/buy"


def test_a_balance_that_exactly_covers_the_request_is_not_called_insufficient(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    """The budget refuses the request; the balance left (1 credit) would have paid for it: the customer is
    told of the budget, not sent to buy credits."""
    prepaid = make_plan(id="credits", name="Credits", billing="prepaid", price_per_credit=Decimal("0.01"))
    key = customer(store, prepaid)
    add_credits(store, "acme", credits=61, reference="pi_1", now=NOW)
    set_budget(store, "acme", Decimal("0.60"), now=NOW)

    answers = [call(authorizer, key) for _ in range(61)]

    assert store.read_balance("acme").credits == 1
    assert [a["allowed"] for a in answers] == [True] * 60 + [False]
    assert answers[-1]["reason"] == "budget_reached"


def test_an_unknown_customer_has_no_budget_to_set(store: TollgateStore) -> None:
    with pytest.raises(NotFoundError):
        set_budget(store, "nobody", Decimal(1), now=NOW)


def test_the_provider_sees_and_sets_the_budget_from_the_cli(store: TollgateStore) -> None:
    customer(store)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(app, list(args), obj=AppContext(clock=lambda: NOW), env={"COLUMNS": "200"})

    assert cli("customers", "budget", "acme").output == "acme: no budget (plan hybrid: cap 51.00 USD)\n"
    set_now = cli("customers", "budget", "acme", "--set", "3.50")
    assert set_now.exit_code == 0
    assert "acme: budget 3.50 USD per period, 250 credits on plan hybrid (cap 51.00 USD)" in set_now.output
    refused = cli("customers", "budget", "acme", "--set", "lots")
    assert refused.exit_code != 0
    assert "--set takes an amount such as 25.00, not 'lots'" in refused.output
    assert cli("customers", "budget", "acme", "--clear").output.startswith("acme: no budget")
    assert store.get_customer("acme").budget is None


def test_a_sharded_customer_cannot_have_a_budget_it_could_not_enforce(store: TollgateStore) -> None:
    store.put_plan(make_plan(id="flat", name="Flat", route_costs=ROUTES))
    store.put_customer(make_customer(store.get_plan("flat"), counter_shards=4))

    with pytest.raises(InvalidInputError, match="4 counter shards"):
        set_budget(store, "acme", Decimal(10), now=NOW)
    assert store.get_customer("acme").budget is None


def test_the_usage_report_shows_the_budget_next_to_the_usage(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    from tollgate.usage_api.report import build_usage_report

    key = customer(store)
    assert build_usage_report(store, "acme", now=NOW).budget is None
    set_budget(store, "acme", Decimal("3.50"), now=NOW)
    for _ in range(3):
        call(authorizer, key)

    report = build_usage_report(store, "acme", now=NOW)
    shown = CliRunner().invoke(
        app, ["usage", "acme"], obj=AppContext(clock=lambda: NOW), env={"COLUMNS": "200"}
    )

    assert report.budget is not None
    assert report.budget.amount is not None
    assert (report.budget.amount.formatted, report.budget.credits, report.credits_used) == (
        "3.50 USD",
        250,
        3,
    )
    assert report.model_dump(by_alias=True)["budget"]["credits"] == 250
    assert "budget            3.50 USD per period (250 credits)" in shown.output
