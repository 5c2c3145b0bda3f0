"""The domain: plans, customers, API keys and usage. Plain pydantic v2 models; money is ``Decimal``.

Not imported by the authorizer (pydantic costs cold-start time); the authorizer reads the same items through
``tollgate.metering.grants`` instead.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tollgate.domain.money import MAX_UNIT_DECIMALS, minor_unit_exponent, to_minor_units
from tollgate.domain.routes import route_cost

ROUTE_RE = re.compile(r"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|ANY) /\S*|\$default")
ID_RE = r"^[a-z0-9][a-z0-9_-]{0,62}$"

Identifier = Annotated[str, Field(pattern=ID_RE, description="lowercase letters, digits, '-' and '_'")]
Credits = Annotated[int, Field(ge=0)]
Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]


class CollectionMethod(StrEnum):
    CHARGE_AUTOMATICALLY = "charge_automatically"
    SEND_INVOICE = "send_invoice"


class CustomerStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Tier(BaseModel):
    """One band of a graduated price: credits up to ``up_to`` (inclusive; ``None``: no end) cost
    ``price_per_credit`` each."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    up_to: Annotated[int, Field(gt=0)] | None
    price_per_credit: Money


class Plan(BaseModel):
    """What a customer pays. Pay-as-you-go: only ``price_per_credit``. Hybrid: add ``base_fee`` and
    ``included_credits``; credits above those are billed at ``price_per_credit``, or by graduated ``tiers``
    instead: a plan has one or the other, never both (a flat price next to tiers would mean nothing).

    Plans are immutable once customers use them: a change is a new ``version`` of the same ``id``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    version: Annotated[int, Field(ge=1)] = 1
    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")] = "usd"
    price_per_credit: Money | None = None
    base_fee: Money = Decimal(0)
    included_credits: Credits = 0
    tiers: tuple[Tier, ...] = ()
    route_costs: dict[str, Credits] = Field(default_factory=dict)
    default_cost: Credits | None = 1
    credit_limit: Annotated[int, Field(gt=0)] | None = None
    billing_period: Literal["monthly"] = "monthly"
    collection_method: CollectionMethod = CollectionMethod.CHARGE_AUTOMATICALLY
    days_until_due: Annotated[int, Field(ge=0, le=365)] | None = None

    @field_validator("currency", mode="before")
    @classmethod
    def _lower_currency(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("currency")
    @classmethod
    def _supported_currency(cls, currency: str) -> str:
        minor_unit_exponent(currency)  # raises for currencies Stripe needs special rounding for
        return currency

    @model_validator(mode="after")
    def _one_usage_price(self) -> Plan:
        if self.tiers and self.price_per_credit is not None:
            raise ValueError("price_per_credit and tiers: a plan prices usage by one or the other, not both")
        if not self.tiers and self.price_per_credit is None:
            raise ValueError("price_per_credit is required (or tiers)")
        return self

    @model_validator(mode="after")
    def _prices_fit_stripe(self) -> Plan:
        """Stripe takes unit amounts in the minor unit with at most 12 decimal places, and no negative zero:
        refuse such prices now, not at the close."""
        prices = [("base_fee", self.base_fee)]
        if self.price_per_credit is not None:
            prices.append(("price_per_credit", self.price_per_credit))
        prices += [(f"tiers[{i}].price_per_credit", t.price_per_credit) for i, t in enumerate(self.tiers)]
        for name, price in prices:
            if price.is_signed():
                raise ValueError(f"{name}: {price} has a minus sign; a price is 0 or more")
            exponent = to_minor_units(price, self.currency).normalize().as_tuple().exponent
            if isinstance(exponent, int) and -exponent > MAX_UNIT_DECIMALS:
                raise ValueError(
                    f"{name}: {price} {self.currency.upper()} is finer than Stripe accepts "
                    f"({MAX_UNIT_DECIMALS} decimal places of the minor unit)"
                )
        return self

    @field_validator("route_costs")
    @classmethod
    def _routes_are_templates(cls, routes: dict[str, int]) -> dict[str, int]:
        for route in routes:
            if ROUTE_RE.fullmatch(route) is None:
                raise ValueError(
                    f"route {route!r} must look like 'GET /v1/items/{{id}}' (method, space, path)"
                )
        return routes

    @field_validator("tiers")
    @classmethod
    def _tiers_ascend(cls, tiers: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not tiers:
            return tiers
        bounds = [tier.up_to for tier in tiers]
        if bounds[-1] is not None or any(bound is None for bound in bounds[:-1]):
            raise ValueError("only the last tier may (and must) be open-ended (up_to: null)")
        finite = [bound for bound in bounds[:-1] if bound is not None]
        if finite != sorted(set(finite)):
            raise ValueError("tier bounds (up_to) must strictly ascend")
        return tiers

    @model_validator(mode="after")
    def _collection(self) -> Plan:
        if self.collection_method is CollectionMethod.SEND_INVOICE and self.days_until_due is None:
            raise ValueError("days_until_due is required when collection_method is send_invoice")
        if (
            self.collection_method is CollectionMethod.CHARGE_AUTOMATICALLY
            and self.days_until_due is not None
        ):
            raise ValueError("days_until_due only applies when collection_method is send_invoice")
        return self

    @property
    def flat_price(self) -> Decimal:
        """``price_per_credit`` of a plan without tiers."""
        if self.price_per_credit is None:
            raise ValueError(f"plan {self.id!r} is priced by tiers, not per credit")
        return self.price_per_credit

    @property
    def is_hybrid(self) -> bool:
        return self.base_fee > 0 or self.included_credits > 0

    def cost_of(self, route: str) -> int | None:
        """Credits one request to ``route`` costs (``tollgate.domain.routes``: the route, then ``ANY`` of its
        path, then ``default_cost``); ``None`` when the plan refuses unlisted routes."""
        return route_cost(self.route_costs, self.default_cost, route)


class Customer(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]
    plan_id: Identifier
    plan_version: Annotated[int, Field(ge=1)]
    stripe_customer_id: str | None = None
    status: CustomerStatus = CustomerStatus.ACTIVE
    status_reason: str | None = None
    pay_url: str | None = None
    counter_shards: Annotated[int, Field(ge=1, le=100)] = 1
    created_at: datetime


class ApiKey(BaseModel):
    """A stored key: never the key itself, only its SHA-256 and a display prefix."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    key_id: Annotated[str, Field(pattern=r"^key_[a-z0-9]{12}$")]
    key_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    display_prefix: str
    customer_id: Identifier
    name: str = "default"
    created_at: datetime
    revoked_at: datetime | None = None
    valid_until: datetime | None = None

    def is_usable(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.valid_until is None or self.valid_until > now


class RouteUsage(BaseModel):
    model_config = ConfigDict(frozen=True)

    credits: int = 0
    requests: int = 0


class Usage(BaseModel):
    """A customer's counters for one period, summed over all shards."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    credits: int = 0
    requests: int = 0
    routes: dict[str, RouteUsage] = Field(default_factory=dict)
