"""GET /usage end to end: requests metered by the real authorizer, then the usage handler called with the
authorizer's context, as API Gateway calls it (REST proxy event and HTTP API v2 event)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CONTEXT, NOW, Authorizer, make_customer, make_plan
from tests.events import http_event, rest_event
from tollgate.accounts.keys import issue_key
from tollgate.dal.closes import close_item
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Plan
from tollgate.domain.rating import rate_period
from tollgate.usage_api.handler import Deps, make_handler

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

NOW_MS = int(NOW.timestamp() * 1000)
OPENAPI = Path(__file__).resolve().parents[2] / "docs" / "usage-api.openapi.yaml"


@pytest.fixture
def world(store: TollgateStore, authorizer: Authorizer) -> dict[str, Any]:
    plan = store.put_plan(
        make_plan(
            id="hybrid", base_fee="5", included_credits=40, credit_limit=10_000, price_per_credit="0.01"
        )
    )
    store.put_customer(make_customer(plan))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key
    return {"store": store, "plan": plan, "key": key, "authorizer": authorizer}


Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def usage(store: TollgateStore) -> Handler:
    """The usage Lambda's handler on the test's table and clock."""
    return make_handler(Deps(store, clock=lambda: NOW))


def metered(world: dict[str, Any], method: str, resource: str) -> dict[str, Any]:
    """One request of acme's through the real authorizer (REST); returns its answer."""
    event = rest_event(method, resource, headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    answer = world["authorizer"](event)
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    return answer


def rest_usage_event(
    authorizer_context: dict[str, Any], query: dict[str, str] | None = None
) -> dict[str, Any]:
    """The REST proxy event the backend receives; API Gateway passes the authorizer context as strings."""
    context = {name: str(value) for name, value in authorizer_context.items()}
    return {
        "resource": "/usage",
        "path": "/usage",
        "httpMethod": "GET",
        "headers": {"Accept": "application/json"},
        "multiValueHeaders": {"Accept": ["application/json"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/usage",
            "httpMethod": "GET",
            "path": "/live/usage",
            "stage": "live",
            "requestId": "req-1",
            "authorizer": {"principalId": context.get("customerId", ""), **context},
        },
        "body": None,
        "isBase64Encoded": False,
    }


def http_usage_event(authorizer_context: dict[str, Any], query: str = "") -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "GET /usage",
        "rawPath": "/usage",
        "rawQueryString": query,
        "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
        "headers": {"accept": "application/json"},
        "requestContext": {
            "http": {"method": "GET", "path": "/usage", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "requestId": "req-2",
            "routeKey": "GET /usage",
            "stage": "$default",
            "authorizer": {"lambda": authorizer_context},
        },
        "isBase64Encoded": False,
    }


def body(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(answer["body"]))


def put_close(store: TollgateStore, plan: Plan, period: str, credits: int, **fields: Any) -> None:
    record = PeriodClose(
        customer_id="acme",
        period=period,
        status=CloseStatus.FINALIZED,
        statement=rate_period(plan, "acme", period, credits),
        billed_credits=credits,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )
    store.table.put_item(Item=close_item(record))


def test_rest_usage_equals_the_counters_and_the_close_estimate(world: dict[str, Any], usage: Handler) -> None:
    plan, store = world["plan"], world["store"]
    for _ in range(3):
        metered(world, "GET", "/v1/search")
    for _ in range(2):
        metered(world, "POST", "/v1/generate")
    own = metered(world, "GET", "/usage")  # the usage call itself: metered, 0 credits
    assert own["context"]["credits"] == 0
    put_close(
        store, plan, "2026-10", 100, stripe_invoice_id="in_oct", hosted_invoice_url="https://pay/in_oct"
    )

    answer = usage(rest_usage_event(own["context"]), CONTEXT)

    assert answer["statusCode"] == 200, answer
    report = body(answer)
    counters = store.read_usage("acme", "2026-11")
    estimate = rate_period(plan, "acme", "2026-11", counters.credits)
    assert (counters.credits, counters.requests) == (53, 6)
    assert report["customerId"] == "acme"
    assert report["period"] == "2026-11"
    assert report["creditsUsed"] == counters.credits
    assert report["requests"] == counters.requests
    assert report["includedCredits"] == 40
    assert report["includedRemaining"] == 0
    assert (report["creditLimit"], report["creditsRemaining"]) == (10_000, 10_000 - 53)
    assert estimate.total == 500 + 13  # 5.00 base fee + 13 credits above the 40 included at 1 cent
    assert report["estimatedCharge"] == {"amount": estimate.total, "formatted": "5.13 USD", "currency": "usd"}
    assert {r["route"]: (r["credits"], r["requests"]) for r in report["routes"]} == {
        "GET /v1/search": (3, 3),
        "POST /v1/generate": (50, 2),
        "GET /usage": (0, 1),
    }
    (invoice,) = report["recentInvoices"]
    assert invoice["period"] == "2026-10"
    assert invoice["invoiceId"] == "in_oct"
    assert invoice["hostedInvoiceUrl"] == "https://pay/in_oct"
    assert invoice["total"]["amount"] == rate_period(plan, "acme", "2026-10", 100).total


def test_http_api_event_gets_the_same_report(world: dict[str, Any], usage: Handler) -> None:
    metered(world, "POST", "/v1/generate")
    answer = world["authorizer"](
        http_event("GET /usage", headers={"x-api-key": world["key"]}, epoch_ms=NOW_MS)
    )
    assert answer["isAuthorized"] is True

    via_http = usage(http_usage_event(answer["context"]), CONTEXT)
    via_rest = usage(rest_usage_event(answer["context"]), CONTEXT)

    assert via_http["statusCode"] == 200, via_http
    assert body(via_http) == body(via_rest)
    assert body(via_http)["creditsUsed"] == 25


def test_another_period_can_be_asked_for(world: dict[str, Any], usage: Handler) -> None:
    october = NOW_MS - 20 * 24 * 3600 * 1000
    world["authorizer"](
        rest_event("GET", "/v1/search", headers={"x-api-key": world["key"]}, epoch_ms=october)
    )
    context = metered(world, "GET", "/usage")["context"]

    answer = usage(rest_usage_event(context, {"period": "2026-10"}), CONTEXT)
    v2 = usage(http_usage_event(context, "period=2026-10"), CONTEXT)

    assert body(answer)["period"] == "2026-10"
    assert body(answer)["creditsUsed"] == 1
    assert body(v2)["creditsUsed"] == 1


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "november", "2026-11-01"])
def test_a_bad_period_is_400_with_a_clear_message(world: dict[str, Any], usage: Handler, period: str) -> None:
    context = metered(world, "GET", "/usage")["context"]

    answer = usage(rest_usage_event(context, {"period": period}), CONTEXT)

    assert answer["statusCode"] == 400
    assert body(answer)["message"] == f"a period is written YYYY-MM, e.g. 2026-11, not {period!r}"


def test_without_the_authorizer_context_nobody_is_answered(world: dict[str, Any], usage: Handler) -> None:
    answer = usage(rest_usage_event({}), CONTEXT)
    assert answer["statusCode"] == 401
    assert "creditsUsed" not in answer["body"]


def test_the_committed_openapi_description_is_the_generated_one() -> None:
    from tollgate.usage_api.openapi import openapi_yaml

    assert OPENAPI.read_text(encoding="utf-8") == openapi_yaml(), (
        "docs/usage-api.openapi.yaml is stale: run "
        "`PYTHONPATH=functions .venv/bin/python -m tollgate.usage_api.openapi > docs/usage-api.openapi.yaml`"
    )


def test_the_openapi_description_documents_the_route_and_its_answers() -> None:
    from tollgate.usage_api.openapi import openapi_document

    document = openapi_document()
    operation = document["paths"]["/usage"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["period"]
    assert set(operation["responses"]) == {"200", "400", "401", "403", "503"}
    report = document["components"]["schemas"]["UsageReport"]["properties"]
    for field in (
        "creditsUsed",
        "includedRemaining",
        "creditLimit",
        "estimatedCharge",
        "routes",
        "recentInvoices",
    ):
        assert field in report
