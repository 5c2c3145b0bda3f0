"""GET /usage/page (the customer's key, behind the authorizer) and GET /portal?token=... (a signed link, no
key) through the usage function, as API Gateway calls it: what a customer sees, and what a bad link gets."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from tests.conftest import CONTEXT, NOW, make_customer, make_plan
from tollgate.dal.store import TollgateStore
from tollgate.portal.links import sign_link
from tollgate.portal.page import CONTENT_SECURITY_POLICY
from tollgate.usage_api.handler import Deps, make_handler

pytestmark = pytest.mark.dynamodb_local

SECRET = "usage-page-test-secret"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def usage(store: TollgateStore) -> Handler:
    plan = store.put_plan(make_plan(id="payg", credit_limit=1_000))
    store.put_customer(make_customer(plan, id="acme"))
    return make_handler(Deps(store, clock=lambda: NOW, portal_link_secret=lambda: SECRET))


def get(path: str, query: dict[str, str] | None = None, customer: str | None = None) -> dict[str, Any]:
    """A REST proxy event for ``GET path``; ``customer``: what the authorizer put in its context."""
    authorizer = {"principalId": customer, "customerId": customer} if customer else None
    return {
        "resource": path,
        "path": path,
        "httpMethod": "GET",
        "headers": {"Accept": "text/html"},
        "multiValueHeaders": {"Accept": ["text/html"]},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": "GET",
            "path": f"/live{path}",
            "stage": "live",
            "requestId": "req-1",
            **({"authorizer": authorizer} if authorizer else {}),
        },
        "body": None,
        "isBase64Encoded": False,
    }


def assert_html(answer: dict[str, Any], status: int) -> str:
    assert answer["statusCode"] == status, answer["body"]
    headers = answer.get("headers") or answer["multiValueHeaders"]  # REST: multiValueHeaders
    flat = {k.lower(): v[0] if isinstance(v, list) else v for k, v in headers.items()}
    assert flat["content-type"] == "text/html; charset=utf-8"
    assert flat["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert flat["referrer-policy"] == "no-referrer"
    assert flat["cache-control"] == "no-store"
    return str(answer["body"])


def test_the_customer_sees_their_page_with_their_key(usage: Handler) -> None:
    html = assert_html(usage(get("/usage/page", customer="acme"), CONTEXT), 200)

    assert '<h1 id="customer">acme</h1>' in html
    assert "Credits left" in html
    assert 'href="?period=2026-10"' in html


def test_the_page_without_the_authorizers_customer_is_refused(usage: Handler) -> None:
    assert usage(get("/usage/page"), CONTEXT)["statusCode"] == 401


def test_a_bad_period_is_a_page_that_says_what_a_period_is(usage: Handler) -> None:
    html = assert_html(usage(get("/usage/page", {"period": "2026-13"}, customer="acme"), CONTEXT), 400)

    assert "Not a billing period" in html


def test_a_signed_link_opens_the_page_without_a_key(usage: Handler) -> None:
    token = sign_link(SECRET, "acme", now=NOW - timedelta(minutes=1))

    html = assert_html(usage(get("/portal", {"token": token}), CONTEXT), 200)

    assert '<h1 id="customer">acme</h1>' in html
    assert f'href="?token={token}&amp;period=2026-10"' in html  # earlier periods keep the link's token


@pytest.mark.parametrize(
    ("token", "status", "says"),
    [
        (sign_link(SECRET, "acme", now=NOW - timedelta(minutes=15)), 401, "This link has expired."),
        (sign_link("a-guessed-secret", "acme", now=NOW), 403, "This link is not valid."),
        (sign_link(SECRET, "nobody", now=NOW), 403, "This link is not valid."),  # no such customer
        ("v1.acme.99999999999.not-a-signature", 403, "This link is not valid."),
        (None, 403, "This link is not valid."),
    ],
)
def test_a_link_that_opens_nothing_gets_a_page_that_says_so_and_nothing_else(
    usage: Handler, token: str | None, status: int, says: str
) -> None:
    html = assert_html(usage(get("/portal", {"token": token} if token else None), CONTEXT), status)

    assert says in html
    assert "acme" not in html
    assert "nobody" not in html


def test_without_a_secret_the_portal_opens_nothing(store: TollgateStore) -> None:
    handler = make_handler(Deps(store, clock=lambda: NOW))
    token = sign_link(SECRET, "acme", now=NOW)

    assert handler(get("/portal", {"token": token}), CONTEXT)["statusCode"] == 503
