"""What a request to a route costs under a plan's ``route_costs``. Standard library only (the authorizer).

A route is ``"METHOD /path/template"`` with the request's real method (``"GET /v1/items/{id}"``), or an HTTP
API's ``"$default"``. Its cost is, in this order:

1. the entry for the route itself (``"GET /v1/items/{id}"``): a method-specific price beats ``ANY``;
2. the entry for every method of that path (``"ANY /v1/items/{id}"``), whichever verb the request used (a REST
   event carries the real verb even when the resource's method is ``ANY``);
3. the plan's ``default_cost``: ``None`` means the plan refuses unlisted routes.
"""

from __future__ import annotations

from collections.abc import Mapping

ANY_METHOD = "ANY"


def route_cost(route_costs: Mapping[str, int], default_cost: int | None, route: str) -> int | None:
    cost = route_costs.get(route)
    if cost is not None:
        return cost
    method, _, path = route.partition(" ")
    if path and method != ANY_METHOD:
        cost = route_costs.get(f"{ANY_METHOD} {path}")
        if cost is not None:
            return cost
    return default_cost
