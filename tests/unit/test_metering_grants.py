"""What a key grants, read from the three items the authorizer gets back from DynamoDB (its wire format).

The authorizer reads the key, customer and plan items with the low-level client (no pydantic at cold start),
so ``grant_from_items`` is where a stored plan becomes what a request costs and who it is allowed for. Items
written by hand or by an older version may lack an attribute: each has a default that never lets a request
through for free or for nobody (a customer without a status is refused, an unlisted plan prices every route
at its default cost).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tollgate.metering.grants import Grant, grant_from_items

NOW_MS = int(datetime(2026, 11, 15, 12, 0, tzinfo=UTC).timestamp() * 1000)


def s(value: str) -> dict[str, str]:
    return {"S": value}


def n(value: int) -> dict[str, str]:
    return {"N": str(value)}


KEY = {
    "pk": s("KEY#9f86d081"),
    "sk": s("KEY"),
    "key_id": s("key_abcdefabcdef"),
    "customer_id": s("acme"),
    "created_at": s("2026-11-01T00:00:00Z"),
}
CUSTOMER = {
    "pk": s("CUSTOMER#acme"),
    "sk": s("CUSTOMER"),
    "id": s("acme"),
    "name": s("Acme Corp"),
    "status": s("active"),
    "counter_shards": n(4),
    "plan_id": s("pro"),
    "plan_version": n(3),
}
PLAN = {
    "pk": s("PLAN#pro"),
    "sk": s("VERSION#000003"),
    "id": s("pro"),
    "version": n(3),
    "currency": s("usd"),
    "price_per_credit": s("0.00042"),
    "route_costs": {"M": {"GET /v1/search": n(1), "POST /v1/generate": n(25), "GET /usage": n(0)}},
    "default_cost": n(2),
    "credit_limit": n(1_000_000),
}


def items(**changes: dict[str, Any]) -> Grant:
    """The grant of KEY, CUSTOMER and PLAN with ``key=``, ``customer=`` or ``plan=`` attributes changed (an
    attribute given as ``None`` is removed from its item)."""
    stored = {"key": dict(KEY), "customer": dict(CUSTOMER), "plan": dict(PLAN)}
    for item, attributes in changes.items():
        for name, value in attributes.items():
            if value is None:
                stored[item].pop(name, None)
            else:
                stored[item][name] = value
    return grant_from_items(stored["key"], stored["customer"], stored["plan"])


def test_a_stored_key_customer_and_plan_become_one_grant() -> None:
    assert items() == Grant(
        key_id="key_abcdefabcdef",
        customer_id="acme",
        customer_status="active",
        status_reason=None,
        pay_url=None,
        shards=4,
        plan_id="pro",
        plan_version=3,
        route_costs={"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0},
        default_cost=2,
        credit_limit=1_000_000,
        revoked_at_ms=None,
        valid_until_ms=None,
    )


def test_a_customer_suspended_for_an_unpaid_invoice_carries_where_to_pay() -> None:
    grant = items(
        customer={
            "status": s("suspended"),
            "status_reason": s("payment_failed"),
            "pay_url": s("https://invoice.stripe.com/i/acct_1/in_1"),
        }
    )

    assert (grant.customer_status, grant.status_reason, grant.pay_url) == (
        "suspended",
        "payment_failed",
        "https://invoice.stripe.com/i/acct_1/in_1",
    )


def test_a_revoked_or_rotated_out_key_stops_at_its_stored_instant() -> None:
    revoked = items(key={"revoked_at": s("2026-11-15T12:00:00Z")})
    rotated = items(key={"valid_until": s("2026-11-15T12:00:00.001000+00:00")})

    assert revoked.revoked_at_ms == NOW_MS
    assert (revoked.key_usable(NOW_MS - 1), revoked.key_usable(NOW_MS)) == (True, False)
    assert rotated.valid_until_ms == NOW_MS + 1
    assert (rotated.key_usable(NOW_MS), rotated.key_usable(NOW_MS + 1)) == (True, False)
    assert items().key_usable(NOW_MS) is True  # neither: usable


@pytest.mark.parametrize(
    "plan",
    [
        {"route_costs": None},  # a plan item written without route prices
        {"route_costs": {"L": []}},  # or with something other than a map there
    ],
)
def test_a_plan_item_without_route_prices_charges_every_route_its_default_cost(plan: dict[str, Any]) -> None:
    grant = items(plan=plan)

    assert grant.route_costs == {}
    assert (grant.cost_of("GET /v1/search"), grant.cost_of("POST /v1/generate")) == (2, 2)


def test_missing_attributes_read_as_the_safe_defaults() -> None:
    grant = items(
        key={"key_id": None},
        customer={"id": None, "status": None, "counter_shards": None},
        plan={"id": None, "version": None, "default_cost": None, "credit_limit": None},
    )

    assert (grant.key_id, grant.customer_id, grant.plan_id) == ("", "", "")
    assert grant.customer_status == "suspended"  # no status: refused, never served for free
    assert (grant.shards, grant.plan_version) == (1, 1)
    assert grant.default_cost is None  # no default cost: an unlisted route is refused
    assert (grant.cost_of("GET /v1/unlisted"), grant.cost_of("POST /v1/generate")) == (None, 25)
    assert grant.credit_limit is None


def test_attributes_of_another_type_are_not_read() -> None:
    grant = items(customer={"status": n(1), "counter_shards": s("4")}, plan={"default_cost": s("2")})

    assert (grant.customer_status, grant.shards, grant.default_cost) == ("suspended", 1, None)
