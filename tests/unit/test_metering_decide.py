"""Refusals of a known key: the answer names the customer, so a provider can tell whose requests are refused.

Once the key is found, every refusal is the customer's: the REST policy's ``principalId`` (what API Gateway
logs and passes on) and the authorizer's ``denied`` log line carry the customer id, not ``anonymous``. Only
a request whose key is missing, malformed or unknown is anonymous. ``decide.authorize`` over a fake key
directory and counter; the answer as the handler renders it.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from tollgate.domain.keyformat import generate_key, hash_key
from tollgate.errors import CreditLimitReachedError, MeteringUnavailableError
from tollgate.metering.decide import authorize
from tollgate.metering.decisions import Reason
from tollgate.metering.events import AccessRequest
from tollgate.metering.grants import Grant
from tollgate.metering.handler import render

KEY = generate_key()
NOW_MS = 1_794_744_000_000  # 2026-11-15 12:00 UTC
PAY_URL = "https://invoice.stripe.com/i/acct_1/in_1"
GRANT = Grant(
    key_id="key_abcdefabcdef",
    customer_id="acme",
    customer_status="active",
    status_reason=None,
    pay_url=None,
    shards=1,
    plan_id="payg",
    plan_version=1,
    route_costs={"GET /v1/search": 1},
    default_cost=None,
)
REQUEST = AccessRequest(
    kind="rest",
    candidates=(KEY,),
    route="GET /v1/search",
    epoch_ms=NOW_MS,
    request_id="req-1",
    method_arn="arn:aws:execute-api:us-east-1:123456789012:api/prod/GET/v1/search",
)


class Keys:
    def __init__(self, grant: Grant | None) -> None:
        self.grant = grant

    def find(self, key_hash: str) -> Grant | None:
        return self.grant if key_hash == hash_key(KEY) else None


class NoWrites:
    def add(self, *args: object, **kwargs: object) -> int | None:
        raise AssertionError("a refused request is never counted")


class Refusing:
    """The counter's write refused (the cap's condition failed) or failed (DynamoDB down, answer lost)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def add(self, *args: object, **kwargs: object) -> int | None:
        raise self.error


@pytest.mark.parametrize(
    ("grant", "reason", "pay_url"),
    [
        (replace(GRANT, revoked_at_ms=NOW_MS), Reason.REVOKED_KEY, ""),
        (replace(GRANT, valid_until_ms=NOW_MS), Reason.REVOKED_KEY, ""),
        (replace(GRANT, customer_status="suspended"), Reason.SUSPENDED, ""),
        (replace(GRANT, customer_status="suspended", pay_url=PAY_URL), Reason.PAYMENT_REQUIRED, PAY_URL),
    ],
)
def test_a_refused_customer_is_named_in_the_answer(grant: Grant, reason: Reason, pay_url: str) -> None:
    decision = authorize(REQUEST, Keys(grant), NoWrites())

    answer = render(REQUEST, decision)

    assert (decision.allowed, decision.reason, decision.principal) == (False, reason, "acme")
    assert answer["principalId"] == "acme"
    assert answer["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert (answer["context"]["reason"], answer["context"]["payUrl"]) == (reason.value, pay_url)


def test_an_unlisted_route_of_a_known_key_is_the_customers_refusal_too() -> None:
    decision = authorize(replace(REQUEST, route="DELETE /v1/search"), Keys(GRANT), NoWrites())

    assert (decision.reason, decision.principal) == (Reason.UNKNOWN_ROUTE, "acme")


@pytest.mark.parametrize(
    ("candidates", "reason"),
    [
        ((), Reason.MISSING_KEY),
        (("tg_live_short",), Reason.MALFORMED_KEY),
        ((generate_key(),), Reason.INVALID_KEY),
    ],
)
def test_a_request_without_a_known_key_is_anonymous(candidates: tuple[str, ...], reason: Reason) -> None:
    request = replace(REQUEST, candidates=candidates)

    answer = render(request, authorize(request, Keys(GRANT), NoWrites()))

    assert (answer["principalId"], answer["context"]["reason"]) == ("anonymous", reason.value)


def test_a_request_refused_at_the_cap_is_the_customers_refusal() -> None:
    capped = replace(GRANT, credit_limit=1_000)

    answer = render(REQUEST, authorize(REQUEST, Keys(capped), Refusing(CreditLimitReachedError())))

    assert (answer["principalId"], answer["context"]["reason"]) == ("acme", "credit_limit_reached")


def test_a_request_served_unmetered_under_fail_open_is_the_customers() -> None:
    down = Refusing(MeteringUnavailableError("DynamoDB is down", applied=False))

    decision = authorize(REQUEST, Keys(GRANT), down, fail_open=True)
    answer = render(REQUEST, decision)

    assert (decision.allowed, decision.principal, decision.outcome_unknown) == (True, "acme", False)
    assert answer["principalId"] == "acme"
    assert answer["policyDocument"]["Statement"][0] == {
        "Action": "execute-api:Invoke",
        "Effect": "Allow",
        "Resource": REQUEST.method_arn,
    }
    assert (answer["context"]["customerId"], answer["context"]["metered"]) == ("acme", False)
