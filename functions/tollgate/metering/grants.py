"""What a key grants: the key, its customer and its plan, read from DynamoDB's wire format.

Deliberately not pydantic (cold start): three items become one small frozen record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tollgate.domain.routes import route_cost


@dataclass(frozen=True, slots=True)
class Grant:
    key_id: str
    customer_id: str
    customer_status: str  # "active" | "suspended"
    status_reason: str | None
    pay_url: str | None
    shards: int
    plan_id: str
    plan_version: int
    route_costs: dict[str, int] = field(default_factory=dict)
    default_cost: int | None = 1
    credit_limit: int | None = None
    revoked_at_ms: int | None = None
    valid_until_ms: int | None = None

    def key_usable(self, now_ms: int) -> bool:
        if self.revoked_at_ms is not None and self.revoked_at_ms <= now_ms:
            return False
        return self.valid_until_ms is None or self.valid_until_ms > now_ms

    def cost_of(self, route: str) -> int | None:
        return route_cost(self.route_costs, self.default_cost, route)


def _s(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value["S"] if isinstance(value, dict) and "S" in value else None


def _n(item: dict[str, Any], name: str) -> int | None:
    value = item.get(name)
    return int(value["N"]) if isinstance(value, dict) and "N" in value else None


def _iso_ms(text: str | None) -> int | None:
    return None if text is None else int(datetime.fromisoformat(text).timestamp() * 1000)


def grant_from_items(key: dict[str, Any], customer: dict[str, Any], plan: dict[str, Any]) -> Grant:
    routes = plan.get("route_costs", {}).get("M", {})
    return Grant(
        key_id=_s(key, "key_id") or "",
        customer_id=_s(customer, "id") or "",
        customer_status=_s(customer, "status") or "suspended",
        status_reason=_s(customer, "status_reason"),
        pay_url=_s(customer, "pay_url"),
        shards=_n(customer, "counter_shards") or 1,
        plan_id=_s(plan, "id") or "",
        plan_version=_n(plan, "version") or 1,
        route_costs={route: int(cost["N"]) for route, cost in routes.items()},
        default_cost=_n(plan, "default_cost"),
        credit_limit=_n(plan, "credit_limit"),
        revoked_at_ms=_iso_ms(_s(key, "revoked_at")),
        valid_until_ms=_iso_ms(_s(key, "valid_until")),
    )
