"""What a key grants: the key, its customer and its plan, read from DynamoDB's wire format.

Deliberately not pydantic (cold start): three items (four around a plan change) become one small frozen
record.

Plan changes: a customer's plan history is a list of segments (``tollgate.domain.models.PlanSegment``). The
grant holds the latest segment and, while its start is recent or still ahead, the one before it too
(``switch_ms``, ``switched``): :meth:`Grant.in_force` picks the one in force at the request's own timestamp,
so every request is counted under the plan in force when API Gateway received it, whichever instance
decides and whenever its cache was filled (a change is scheduled at least a key-cache TTL ahead:
``tollgate.accounts.plan_changes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    budget_credits: int | None = None  # the customer's own spend limit, as credits on this plan
    segment: int = 1  # the customer's plan segment these terms belong to (counter attribute ``seg{n}``)
    prepaid: bool = False  # requests draw the customer's prepaid balance (the wallet), not a period counter
    top_up_url: str | None = None  # where a prepaid customer buys credits
    switch_ms: int | None = None  # from this request time on, ``switched`` applies (a plan change)
    switched: Grant | None = None

    def in_force(self, epoch_ms: int) -> Grant:
        """The grant for a request made at ``epoch_ms``: after a plan change's start, the new plan's."""
        if self.switched is not None and self.switch_ms is not None and epoch_ms >= self.switch_ms:
            return self.switched
        return self

    @property
    def limit(self) -> int | None:
        """The most credits a period may count: the plan's cap or the customer's budget, the lower."""
        limits = [n for n in (self.credit_limit, self.budget_credits) if n is not None]
        return min(limits) if limits else None

    @property
    def limit_reason(self) -> str:
        """Which limit :attr:`limit` is: ``budget`` (the customer's) or ``cap`` (the plan's)."""
        if self.budget_credits is not None and (
            self.credit_limit is None or self.budget_credits < self.credit_limit
        ):
            return "budget"
        return "cap"

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


def _budget_credits(customer: dict[str, Any], plan_id: str, version: int) -> int | None:
    """The customer's budget in credits on this plan version (``tollgate.domain.models.SpendBudget``);
    0 if the budget names no number for it (never spend past a budget for want of one)."""
    budget = customer.get("budget", {}).get("M")
    if budget is None:
        return None
    credits = budget.get("credits", {}).get("M", {}).get(f"{plan_id}@{version}")
    if credits is None:
        return 0
    return int(credits["N"]) if "N" in credits else None


def _iso_ms(text: str | None) -> int | None:
    return None if text is None else int(datetime.fromisoformat(text).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """A plan segment as the authorizer reads it from the customer item."""

    seq: int
    plan_id: str
    plan_version: int
    since_ms: int | None


def plan_segments(customer: dict[str, Any]) -> list[SegmentRef]:
    """The customer's plan segments, oldest first (one, on ``plan_id``, for a customer without a history)."""
    listed = customer.get("plan_segments", {}).get("L", [])
    segments = []
    for entry in listed:
        fields = entry.get("M", {})
        segments.append(
            SegmentRef(
                seq=_n(fields, "seq") or 1,
                plan_id=_s(fields, "plan_id") or "",
                plan_version=_n(fields, "plan_version") or 1,
                since_ms=_iso_ms(_s(fields, "since")),
            )
        )
    if not segments:
        segments.append(SegmentRef(1, _s(customer, "plan_id") or "", _n(customer, "plan_version") or 1, None))
    return segments


def grant_from_items(
    key: dict[str, Any],
    customer: dict[str, Any],
    plan: dict[str, Any],
    previous: tuple[SegmentRef, dict[str, Any]] | None = None,
    segment: int = 1,
    since_ms: int | None = None,
) -> Grant:
    """The grant of ``key`` on ``plan`` (segment ``segment``); with ``previous`` (the segment before and its
    plan item), the grant of the previous segment that switches to ``plan`` from ``since_ms``."""
    routes = plan.get("route_costs", {}).get("M", {})
    grant = Grant(
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
        budget_credits=_budget_credits(customer, _s(plan, "id") or "", _n(plan, "version") or 1),
        revoked_at_ms=_iso_ms(_s(key, "revoked_at")),
        valid_until_ms=_iso_ms(_s(key, "valid_until")),
        segment=segment,
        prepaid=_s(plan, "billing") == "prepaid",
        top_up_url=_s(plan, "top_up_url"),
    )
    if previous is None or since_ms is None:
        return grant
    before, before_plan = previous
    earlier = grant_from_items(key, customer, before_plan, segment=before.seq)
    return replace(earlier, switch_ms=since_ms, switched=grant)
