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

from tollgate.domain.currencies import amount_increment, check_currency, check_price
from tollgate.domain.money import MAX_UNIT_DECIMALS, format_amount, line_amount, to_minor_units
from tollgate.domain.routes import route_cost
from tollgate.domain.stripe_limits import check_line_price, max_amount

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


class AlertRule(BaseModel):
    """One usage alert of a plan or a customer: exactly one of the fields (``tollgate.domain.alerts``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    included_percent: Annotated[int, Field(ge=1, le=1000)] | None = None
    cap_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    budget_percent: Annotated[int, Field(ge=1, le=100)] | None = None
    spend: Money | None = None
    balance_below: Annotated[int, Field(ge=1, le=10**15)] | None = None
    forecast: Literal["cap", "budget"] | None = None
    forecast_spend: Money | None = None

    @model_validator(mode="after")
    def _one(self) -> AlertRule:
        given = [name for name, value in self.model_dump().items() if value is not None]
        if len(given) != 1:
            raise ValueError(
                "an alert is one of included_percent, cap_percent, budget_percent, spend, balance_below, "
                f"forecast, forecast_spend; got {', '.join(given) or 'none'}"
            )
        return self

    @property
    def rule_id(self) -> str:
        """``cap_percent:90``, ``spend:100.00``: the rule's name in alert ids and events."""
        ((name, value),) = ((n, v) for n, v in self.model_dump().items() if v is not None)
        return f"{name}:{value}"


MAX_ALERT_RULES = 20
MAX_CREDIT_PACKS = 20
MAX_PACK_DAYS = 3660  # ten years: a longer validity is no expiry


class CreditPack(BaseModel):
    """A pack of credits a prepaid plan sells by id (``tollgate credits buy CUSTOMER --pack ID``): ``credits``
    at the plan's ``price_per_credit``, valid ``expires_after_days`` from when Stripe says they are paid
    (``None``: they never expire). Unused credits of a pack expire, soonest-expiring first
    (``tollgate.domain.prepaid``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Identifier
    credits: Annotated[int, Field(gt=0, le=10**15)]
    expires_after_days: Annotated[int, Field(gt=0, le=MAX_PACK_DAYS)] | None = None


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
    # graduated: each band's credits at its price; volume: every credit at the price of the band the
    # period's billable credits end in (Stripe's tiers_mode). Bands count credits above the included ones.
    tiers_mode: Literal["graduated", "volume"] = "graduated"
    # The least a period's usage is billed at (a true-up line makes up for it); prorated like the base fee.
    minimum_commitment: Money = Decimal(0)
    route_costs: dict[str, Credits] = Field(default_factory=dict)
    default_cost: Credits | None = 1
    credit_limit: Annotated[int, Field(gt=0)] | None = None
    billing_period: Literal["monthly"] = "monthly"
    collection_method: CollectionMethod = CollectionMethod.CHARGE_AUTOMATICALLY
    days_until_due: Annotated[int, Field(ge=0, le=365)] | None = None
    # Stripe Tax on this plan's invoices: prices before tax (exclusive: tax is added) or including it
    # (inclusive); None: no tax is computed (docs/decisions.md, 26)
    tax: Literal["exclusive", "inclusive"] | None = None
    # arrears: usage is invoiced after the period; prepaid: the customer buys credits at price_per_credit
    # and every request draws them from a balance, in the write that counts it (docs/decisions.md, 30)
    billing: Literal["arrears", "prepaid"] = "arrears"
    # usage alerts (tollgate.domain.alerts): thresholds each customer on the plan is alerted at, once a period
    alerts: Annotated[tuple[AlertRule, ...], Field(max_length=MAX_ALERT_RULES)] = ()
    # progressive billing: once the period's usage not yet invoiced reaches this amount, it is invoiced
    # at once (a threshold invoice); the period's close bills the rest (docs/decisions.md, 33)
    invoice_threshold: Money | None = None
    # prepaid: where a customer whose balance is spent buys more (the refusal's payUrl)
    top_up_url: Annotated[str, Field(pattern=r"^https://\S+$", max_length=2000)] | None = None
    # prepaid: the packs of credits it sells by id, each optionally expiring (tollgate.domain.prepaid)
    credit_packs: Annotated[tuple[CreditPack, ...], Field(max_length=MAX_CREDIT_PACKS)] = ()
    # bill only what succeeded: a metered request whose response status is in one of these ("5xx", "4xx" or
    # a code such as "503") is refunded from the usage ledger (tollgate.domain.refunds; decisions.md, 41).
    # Off (empty) by default.
    refund_statuses: Annotated[
        tuple[Annotated[str, Field(pattern=r"^[45](xx|[0-9][0-9])$")], ...], Field(max_length=20)
    ] = ()

    @field_validator("currency", mode="before")
    @classmethod
    def _lower_currency(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("currency")
    @classmethod
    def _supported_currency(cls, currency: str) -> str:
        return check_currency(currency)  # Stripe's, and billable exactly: see tollgate.domain.currencies

    @model_validator(mode="after")
    def _volume_needs_tiers(self) -> Plan:
        if self.tiers_mode == "volume" and not self.tiers:
            raise ValueError("tiers_mode: volume prices by tiers, and the plan has none")
        return self

    @model_validator(mode="after")
    def _prepaid_terms(self) -> Plan:
        """A prepaid plan sells credits at one price; the balance is the limit and nothing is billed after
        the period, so nothing that would be is accepted."""
        if self.billing == "arrears":
            if self.top_up_url is not None:
                raise ValueError("top_up_url: only a prepaid plan (billing: prepaid) has a top-up page")
            return self
        billed_after = {
            "tiers": bool(self.tiers),
            "base_fee": self.base_fee > 0,
            "included_credits": self.included_credits > 0,
            "minimum_commitment": self.minimum_commitment > 0,
            "credit_limit": self.credit_limit is not None,
            "invoice_threshold": self.invoice_threshold is not None,
        }
        refused = [name for name, present in billed_after.items() if present]
        if refused:
            raise ValueError(
                f"{', '.join(refused)}: a prepaid plan (billing: prepaid) has one price_per_credit, what a "
                "bought credit costs; its balance is the limit"
            )
        return self

    @property
    def prepaid(self) -> bool:
        return self.billing == "prepaid"

    @model_validator(mode="after")
    def _one_usage_price(self) -> Plan:
        if self.tiers and self.price_per_credit is not None:
            raise ValueError("price_per_credit and tiers: a plan prices usage by one or the other, not both")
        if not self.tiers and self.price_per_credit is None:
            raise ValueError("price_per_credit is required (or tiers)")
        return self

    @model_validator(mode="after")
    def _prices_fit_stripe(self) -> Plan:
        """Stripe takes unit amounts in the minor unit with at most 12 decimal places, and no negative zero;
        ISK only in whole kronur; a base fee no larger than one invoice: refuse such prices now, not at the
        close (``tollgate.domain.currencies``, ``tollgate.domain.stripe_limits``)."""
        prices = [("base_fee", self.base_fee), ("minimum_commitment", self.minimum_commitment)]
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
            check_price(name, price, self.currency)
        check_line_price("base_fee", self.base_fee, self.currency)
        check_line_price("minimum_commitment", self.minimum_commitment, self.currency)
        return self

    @model_validator(mode="after")
    def _alerts_fit_the_plan(self) -> Plan:
        """An alert's amount is one the currency can charge, and every alert can fire on this plan."""
        applies = {
            "included_percent": self.included_credits > 0,
            "cap_percent": self.credit_limit is not None,
            "forecast": self.credit_limit is not None,  # forecast: budget is checked per customer
            "balance_below": self.prepaid,
        }
        for i, rule in enumerate(self.alerts):
            name = rule.rule_id.split(":")[0]
            if name == "forecast" and rule.forecast == "budget":
                continue
            if not applies.get(name, True):
                raise ValueError(f"alerts[{i}]: {rule.rule_id} can never fire on this plan")
            for amount in (rule.spend, rule.forecast_spend):
                if amount is None:
                    continue
                minor = to_minor_units(amount, self.currency)
                if minor != minor.to_integral_value() or int(minor) % amount_increment(self.currency):
                    raise ValueError(
                        f"alerts[{i}]: {amount} {self.currency.upper()} is not an amount the currency has"
                    )
        return self

    @model_validator(mode="after")
    def _invoice_threshold_fits(self) -> Plan:
        """A threshold is an amount the currency can charge and one invoice can hold; its invoices are
        untaxed by Stripe Tax for now (the close takes them off in a line Stripe cannot tax)."""
        threshold = self.invoice_threshold
        if threshold is None:
            return self
        minor = to_minor_units(threshold, self.currency)
        whole = minor == minor.to_integral_value() and int(minor) % amount_increment(self.currency) == 0
        if threshold <= 0 or not whole:
            raise ValueError(
                f"invoice_threshold: {threshold} {self.currency.upper()} is not an amount the currency "
                "can charge (more than 0, in whole minor units)"
            )
        check_line_price("invoice_threshold", threshold, self.currency)
        if self.tax is not None:
            raise ValueError(
                "invoice_threshold and tax: threshold invoices are not taxed by Stripe Tax yet; "
                "drop one of them"
            )
        return self

    @model_validator(mode="after")
    def _credit_packs_fit(self) -> Plan:
        """Packs are sold by a prepaid plan only, each id once, each for an amount Stripe can charge."""
        if not self.credit_packs:
            return self
        if not self.prepaid:
            raise ValueError(
                "credit_packs: only a prepaid plan (billing: prepaid) sells packs of credits; this plan "
                "bills usage in arrears"
            )
        ids = [pack.id for pack in self.credit_packs]
        repeated = sorted({pack_id for pack_id in ids if ids.count(pack_id) > 1})
        if repeated:
            raise ValueError(f"credit_packs: each pack id once; {', '.join(repeated)} repeated")
        unit = to_minor_units(self.flat_price, self.currency)
        for i, pack in enumerate(self.credit_packs):
            amount = line_amount(unit, pack.credits)
            if not 1 <= amount <= max_amount(self.currency):
                raise ValueError(
                    f"credit_packs[{i}]: {pack.credits:,} credits at {self.flat_price} "
                    f"{self.currency.upper()} cost {format_amount(amount, self.currency)}, not an amount "
                    "Stripe charges at once"
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


def plan_ref(plan_id: str, version: int) -> str:
    """One plan version's name in maps keyed by plan (``pro@2``): what a customer's budget is worth on it."""
    return f"{plan_id}@{version}"


MAX_PLAN_SEGMENTS = 1000  # plan changes a customer item keeps (about 80 bytes each; the item limit is 400 KB)


class PlanSegment(BaseModel):
    """A stretch of a customer's life on one plan version: from ``since`` until the next segment's ``since``.

    ``seq`` numbers a customer's segments 1, 2, 3... and never repeats: the authorizer adds each request's
    credits to the counter's tally of the segment in force at the request's own timestamp
    (``tollgate.dal.counter_item.segment_attribute``), so the close rates every credit on the plan it was
    counted under. The first segment has no ``since``: it applies from the beginning.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: Annotated[int, Field(ge=1)]
    plan_id: Identifier
    plan_version: Annotated[int, Field(ge=1)]
    since: datetime | None = None


def sharding_problem(plan: Plan, shards: int) -> str | None:
    """Why a customer with ``shards`` counter shards cannot be on ``plan``, or None: a credit limit and a
    prepaid balance are each enforced by one conditional write on one item."""
    if shards == 1:
        return None
    if plan.credit_limit is not None:
        return (
            f"plan {plan.id!r} has a credit_limit, which only an unsharded counter can enforce, and the "
            f"customer has {shards} counter shards: use 1, or a plan without a cap"
        )
    if plan.prepaid:
        return (
            f"plan {plan.id!r} is prepaid: its balance is drawn on one item, and the customer has {shards} "
            "counter shards: use 1"
        )
    return None


class SpendBudget(BaseModel):
    """The monthly spend limit a customer set on themselves (``PUT /usage/budget``), with what it is worth in
    credits on each plan version of their history (``tollgate.domain.budgets``): the authorizer enforces the
    credits of the plan in force like a cap (None: the budget does not bind on that plan)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: Money  # major units of ``currency``
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")]
    credits: dict[str, Annotated[int, Field(ge=0)] | None]  # by plan_ref
    set_at: datetime


class AlertWebhook(BaseModel):
    """Where a customer gets their usage alerts as signed webhooks (``tollgate.alerts.webhooks``): an HTTPS
    URL of theirs, and the secret the body is signed with (``whsec_...``, shown to them once)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # HTTPS; plain HTTP only to 127.0.0.1 (local mode, tests)
    url: Annotated[str, Field(pattern=r"^(https://\S+|http://127\.0\.0\.1(:\d+)?(/\S*)?)$", max_length=2000)]
    secret: Annotated[str, Field(pattern=r"^whsec_[A-Za-z0-9_-]{32,100}$", repr=False)]  # never in a log


class AutoTopUp(BaseModel):
    """A prepaid customer's automatic top-up (``tollgate.accounts.auto_top_up``): when their balance falls
    below ``below`` credits, ``credits`` more are charged to their saved card, off-session, once per crossing;
    a failed charge is alerted and, with ``suspend_on_failure``, suspends the customer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    below: Annotated[int, Field(ge=1, le=10**12)]
    credits: Annotated[int, Field(ge=1, le=10**12)]
    suspend_on_failure: bool = False


class Customer(BaseModel):
    """A customer of the provider. ``plan_id``/``plan_version`` is the customer's latest plan, in force now or
    from a scheduled change's time; ``plan_segments`` is the whole history, oldest first (empty for a customer
    stored before plan changes existed: one segment on ``plan_id``, see :attr:`segments`)."""

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
    plan_segments: Annotated[tuple[PlanSegment, ...], Field(max_length=MAX_PLAN_SEGMENTS)] = ()
    trial_ends: datetime | None = None  # no base fee or minimum commitment is billed before it
    budget: SpendBudget | None = None  # the customer's own spend limit
    # usage alerts for this customer instead of the plan's (tollgate.domain.alerts); None: the plan's
    alerts: Annotated[tuple[AlertRule, ...], Field(max_length=MAX_ALERT_RULES)] | None = None
    alert_webhook: AlertWebhook | None = None  # the customer's own endpoint for their alerts
    auto_top_up: AutoTopUp | None = None  # prepaid: charge the saved card when the balance runs low

    @model_validator(mode="after")
    def _segments_in_order(self) -> Customer:
        segments = self.plan_segments
        if not segments:
            return self
        if [s.seq for s in segments] != sorted({s.seq for s in segments}) or segments[0].since is not None:
            raise ValueError("plan_segments: seq must ascend and only the first segment has no since")
        starts = [s.since for s in segments[1:]]
        if any(since is None for since in starts) or starts != sorted(set(starts)):  # type: ignore[type-var]
            raise ValueError("plan_segments: each segment starts after the one before")
        last = segments[-1]
        if (last.plan_id, last.plan_version) != (self.plan_id, self.plan_version):
            raise ValueError("plan_segments: the last segment is the customer's plan_id/plan_version")
        return self

    @property
    def segments(self) -> tuple[PlanSegment, ...]:
        """The plan history, oldest first; a customer stored before plan changes existed has one segment."""
        if self.plan_segments:
            return self.plan_segments
        return (PlanSegment(seq=1, plan_id=self.plan_id, plan_version=self.plan_version),)

    def segment_at(self, moment: datetime) -> PlanSegment:
        """The segment in force at ``moment``."""
        found = self.segments[0]
        for segment in self.segments[1:]:
            if segment.since is not None and segment.since <= moment:
                found = segment
        return found


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
    segments: dict[int, int] = Field(default_factory=dict)  # plan segment -> credits counted under it
    days: dict[int, RouteUsage] = Field(default_factory=dict)  # day of the month (UTC) -> what it counted
    # failed requests refunded (tollgate.domain.refunds): already taken off ``credits`` and the tallies
    refunded: RouteUsage = RouteUsage()
