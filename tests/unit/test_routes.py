"""What a route costs: the route itself, then ``ANY`` of its path, then the plan's default."""

from __future__ import annotations

import pytest

from tests.conftest import make_plan
from tollgate.domain.routes import route_cost
from tollgate.metering.grants import Grant

COSTS = {"ANY /v1/items/{id}": 5, "DELETE /v1/items/{id}": 50, "GET /v1/free": 0, "$default": 2}


@pytest.mark.parametrize(
    ("route", "default", "cost"),
    [
        ("GET /v1/items/{id}", 1, 5),  # any method of the path: the ANY entry
        ("POST /v1/items/{id}", None, 5),  # even when the plan refuses unlisted routes
        ("DELETE /v1/items/{id}", 1, 50),  # a method-specific entry beats ANY
        ("ANY /v1/items/{id}", 1, 5),  # an ANY route key as it is
        ("GET /v1/free", 1, 0),  # a free route is free, not "unlisted"
        ("$default", 1, 2),  # an HTTP API's catch-all route
        ("GET /v1/items", 7, 7),  # another path: the default
        ("GET /v1/items", None, None),  # refused
        ("GET /v1/items/{id}/parts", 1, 1),  # ANY of a path covers that path only
    ],
)
def test_route_cost(route: str, default: int | None, cost: int | None) -> None:
    assert route_cost(COSTS, default, route) == cost


def test_the_plan_and_the_authorizers_grant_price_a_route_alike() -> None:
    plan = make_plan(route_costs=COSTS, default_cost=None)
    grant = Grant(
        key_id="k",
        customer_id="acme",
        customer_status="active",
        status_reason=None,
        pay_url=None,
        shards=1,
        plan_id=plan.id,
        plan_version=plan.version,
        route_costs=dict(plan.route_costs),
        default_cost=plan.default_cost,
    )
    for route in ("GET /v1/items/{id}", "DELETE /v1/items/{id}", "PUT /v1/other", "$default", "GET /v1/free"):
        assert grant.cost_of(route) == plan.cost_of(route)
