"""The in-memory Stripe account behind the Stripe double: customers, invoices, coupons, Checkout Sessions,
saved cards and PaymentIntents.

Every public method of :class:`StripeState` is one API operation, except ``find_checkout_session`` and the
test hooks (``complete_checkout``, ``async_payment_succeeded``, ``attach_card``, ``payment_intent_event``).
An operation takes the parameters already decoded and checked against stripe-python's TypedDict (see
``stripe_double_params``), applies Stripe's rules, and returns the JSON object Stripe would return, or raises
:class:`StripeApiError`. Callers hold the double's lock.

Money: amounts are integers in the currency's minor unit (cents, or whole yen for zero-decimal currencies such
as ``jpy`` and ``krw``, so those need no special case). Unit prices and quantities are ``Decimal`` (up to 12
decimal places, as the API allows) and never floats. A ``price_data`` line's amount is
``unit_amount_decimal * quantity`` rounded to a whole minor unit with ``ROUND_HALF_UP`` (halves away from
zero); the invoice ``subtotal`` is the sum of line amounts, and so are ``total``, ``amount_due`` and
``amount_remaining`` on an invoice without discounts or automatic tax (see "Discounts and tax" below).
Stripe stores each line as an integer amount but does not spell out how a half unit breaks; half-up is the
rule chosen here (not banker's rounding), so ``0.5`` cent rounds to 1 and ``2.5`` to 3.

Emulated rules: invoices need an existing customer and start as ``draft`` (``auto_advance`` false,
``hosted_invoice_url`` null); ``send_invoice`` needs ``days_until_due`` or ``due_date``; lines go only on
drafts and must match the invoice currency; ``finalize`` turns a draft ``open`` (``number``,
``hosted_invoice_url``, ``status_transitions.finalized_at``) or straight ``paid`` when the total is 0; ``pay``
takes ``open`` or ``uncollectible`` (or a draft, finalizing it first) to ``paid``; ``void`` takes ``open`` or
``uncollectible``; ``mark_uncollectible`` takes ``open``. An invoice object shows its first 10 lines, like
Stripe (``lines.has_more``); ``GET /v1/invoices/{id}/lines`` pages through all of them.

Discounts and tax: coupons (create, retrieve, delete) redeemed onto invoices with ``discounts`` on create or
update (``stripe_double_discounts``), and Stripe Tax (``automatic_tax[enabled]``) at a fixed rate per country
with ``price_data[tax_behavior]`` ``exclusive`` or ``inclusive`` on every line (``stripe_double_tax``). Then
``subtotal`` is the sum of line amounts (inclusive tax inside, before discounts), ``total_discount_amounts``
what each discount takes off, ``total_taxes`` the tax per behaviour, and ``total`` = ``subtotal`` - discounts
+ exclusive tax (``amount_due`` the same). Customers have an ``address``, ``tax_exempt`` and tax ids
(``/v1/customers/{id}/tax_ids``); the invoice shows them (``customer_address``, ``customer_tax_ids``) as they
are until it is finalized, and as they were at finalization afterwards, tax included.

Checkout Sessions (payment mode, inline prices, an existing customer; lines rounded as invoice lines are):
``stripe_double_checkout``. Its test hooks play the customer and return the events Stripe would send.

Saved cards (``/v1/customers/{id}/payment_methods``) and PaymentIntents created and confirmed off-session, as
an automatic top-up charges a saved card, declines included: ``stripe_double_payment_intents``.

Not emulated (rejected with a 400 that says so, never silently ignored, where it would change an amount):
tax rates, line-item discounts, promotion codes, shipping, application fees, Connect, prices/products/invoice
items by id, paying invoices with a payment method (``pay`` always succeeds), customer balance transactions
(a negative invoice's credit is kept on the customer and applied to the next invoices it finalizes), webhook
delivery (events exist only as the test hooks' return values), test clocks, deleting customers or invoices.
"""

from __future__ import annotations

import base64
import copy
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, TypeVar
from urllib.parse import urlsplit

from tollgate_local.stripe_double_checkout import (
    MAX_LIFETIME,
    MIN_LIFETIME,
    CheckoutLine,
    CheckoutSession,
    checkout_event,
)
from tollgate_local.stripe_double_discounts import Allocation, Coupon, Discount, allocate
from tollgate_local.stripe_double_errors import StripeApiError, invalid_request, resource_missing
from tollgate_local.stripe_double_payment_intents import (
    PAYMENT_INTENT_EXPANSIONS,
    PaymentIntent,
    Payments,
    payment_intent_event,
    reject_unsupported,
)
from tollgate_local.stripe_double_search import parse_query
from tollgate_local.stripe_double_tax import (
    TaxRule,
    automatic_tax_support,
    location_country,
    round_half_up,
    tax_id_country,
    tax_id_problem,
    tax_rule,
)

LINES_SHOWN_ON_INVOICE = 10
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")
MAX_DECIMAL_PLACES = 12
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
DAY = 86_400
_ALPHABET = string.ascii_letters + string.digits
_PREFIX_ALPHABET = string.ascii_uppercase + string.digits
_ONE = Decimal(1)
EMULATED_API_VERSION = "2026-10-28.endive"  # what stripe-python 16.x pins and sends
QUANTITY_DEPRECATED_SINCE = "2026-03-25.dahlia"  # an invoice line's integer quantity: use quantity_decimal

T = TypeVar("T")


def new_id(prefix: str, length: int = 24) -> str:
    """A Stripe-looking object id, e.g. ``in_1Px...``."""
    return f"{prefix}_{''.join(secrets.choice(_ALPHABET) for _ in range(length))}"


def line_amount(unit_amount_decimal: Decimal, quantity: Decimal) -> int:
    """``unit * quantity`` in minor units, rounded half-up to an integer (exact for 12+12 decimal places)."""
    with localcontext() as context:
        context.prec = 80
        return round_half_up(unit_amount_decimal * quantity)


def decimal_text(value: Decimal) -> str:
    """Plain decimal text (``"0.042"``, never ``"4.2E-2"``), as Stripe returns ``*_decimal`` fields."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def unsupported(param: str) -> StripeApiError:
    return invalid_request(
        f"The Stripe double does not emulate {param}; leave it out of local requests.", param
    )


# ----------------------------------------------------------------------------------------------- objects


@dataclass
class Customer:
    id: str
    seq: int
    created: int
    name: str | None
    email: str | None
    description: str | None
    phone: str | None
    metadata: dict[str, str]
    invoice_prefix: str
    preferred_locales: list[str]
    next_invoice_sequence: int = 1
    address: dict[str, str | None] | None = None
    tax_exempt: str = "none"
    tax_ids: list[TaxId] = field(default_factory=list)
    balance: int = 0  # negative: a credit, applied to the customer's next invoices as they are finalized

    def tax_json(self) -> dict[str, Any]:
        """The expandable ``tax`` hash: whether Stripe Tax can locate the customer, and where."""
        country = location_country(self.address)
        location = None
        if country is not None and self.address is not None:
            location = {"country": country, "source": "billing_address", "state": self.address.get("state")}
        return {
            "automatic_tax": automatic_tax_support(self.address),
            "ip_address": None,
            "location": location,
            "provider": "stripe",
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "customer",
            "address": None if self.address is None else dict(self.address),
            "balance": self.balance,
            "created": self.created,
            "currency": None,
            "default_source": None,
            "delinquent": False,
            "description": self.description,
            "discount": None,
            "email": self.email,
            "invoice_prefix": self.invoice_prefix,
            "invoice_settings": {
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            "livemode": False,
            "metadata": dict(self.metadata),
            "name": self.name,
            "next_invoice_sequence": self.next_invoice_sequence,
            "phone": self.phone,
            "preferred_locales": list(self.preferred_locales),
            "shipping": None,
            "tax_exempt": self.tax_exempt,
            "test_clock": None,
        }


@dataclass
class TaxId:
    id: str
    customer_id: str
    created: int
    type: str
    value: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "tax_id",
            "country": tax_id_country(self.type, self.value),
            "created": self.created,
            "customer": self.customer_id,
            "customer_account": None,
            "livemode": False,
            "owner": {"account": None, "application": None, "customer": self.customer_id, "type": "customer"},
            "type": self.type,
            "value": self.value,
            "verification": {"status": "pending", "verified_address": None, "verified_name": None},
        }


@dataclass
class LineItem:
    id: str
    invoice_id: str
    invoice_item_id: str
    price_id: str
    product_id: str
    amount: int
    currency: str
    description: str | None
    metadata: dict[str, str]
    period_start: int
    period_end: int
    quantity: Decimal
    unit_amount_decimal: Decimal
    discountable: bool
    tax_behavior: str | None = None  # the inline price's: exclusive, inclusive, unspecified (None: not sent)

    def to_json(
        self, discount_amounts: list[dict[str, Any]] | None = None, taxes: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        whole = self.quantity == self.quantity.to_integral_value()
        return {
            "id": self.id,
            "object": "line_item",
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "discount_amounts": discount_amounts or [],
            "discountable": self.discountable,
            "discounts": [],
            "invoice": self.invoice_id,
            "livemode": False,
            "metadata": dict(self.metadata),
            "parent": {
                "type": "invoice_item_details",
                "invoice_item_details": {
                    "invoice_item": self.invoice_item_id,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": None,
                },
                "subscription_item_details": None,
            },
            "period": {"end": self.period_end, "start": self.period_start},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": self.price_id, "product": self.product_id},
                "type": "price_details",
                "unit_amount_decimal": decimal_text(self.unit_amount_decimal),
            },
            "quantity": int(self.quantity) if whole else None,
            "quantity_decimal": decimal_text(self.quantity),
            "subtotal": self.amount,
            "taxes": taxes or [],
        }


@dataclass(frozen=True)
class TaxFacts:
    """What Stripe Tax reads of the customer: live on a draft, frozen at finalization."""

    address: dict[str, str | None] | None
    tax_exempt: str
    tax_ids: tuple[tuple[str, str], ...]  # (type, value)

    @classmethod
    def of(cls, customer: Customer) -> TaxFacts:
        address = None if customer.address is None else dict(customer.address)
        return cls(address, customer.tax_exempt, tuple((t.type, t.value) for t in customer.tax_ids))


@dataclass(frozen=True)
class LineTax:
    amount: int
    taxable_amount: int
    behavior: str


@dataclass(frozen=True)
class Amounts:
    """An invoice's money, computed from its lines, discounts and tax (see the module docstring)."""

    subtotal: int
    discounts: Allocation
    rule: TaxRule | None  # None: no automatic tax, or the customer cannot be located
    tax_status: str | None  # automatic_tax.status
    line_taxes: dict[int, LineTax]
    subtotal_excluding_tax: int

    def tax(self, behavior: str) -> int:
        return sum(tax.amount for tax in self.line_taxes.values() if tax.behavior == behavior)

    @property
    def total(self) -> int:
        return self.subtotal - self.discounts.total + self.tax("exclusive")

    @property
    def total_excluding_tax(self) -> int:
        return self.subtotal - self.discounts.total - self.tax("inclusive")

    def total_taxes(self) -> list[dict[str, Any]]:
        if self.rule is None:
            return []
        taxes = []
        for behavior in ("exclusive", "inclusive"):
            lines = [tax for tax in self.line_taxes.values() if tax.behavior == behavior]
            if lines:
                taxes.append(_tax_json(self.rule, behavior, sum(t.amount for t in lines), lines))
        return taxes


def _tax_json(rule: TaxRule, behavior: str, amount: int, lines: list[LineTax]) -> dict[str, Any]:
    return {
        "amount": amount,
        "tax_behavior": behavior,
        "tax_rate_details": {"tax_rate": rule.rate_id},
        "taxability_reason": rule.reason,
        "taxable_amount": sum(line.taxable_amount for line in lines),
        "type": "tax_rate_details",
    }


@dataclass
class Invoice:
    id: str
    seq: int
    created: int
    customer: Customer
    currency: str
    collection_method: str
    auto_advance: bool
    days_until_due: int | None
    due_date: int | None
    description: str | None
    footer: str | None
    statement_descriptor: str | None
    custom_number: str | None
    metadata: dict[str, str]
    status: str = "draft"
    lines: list[LineItem] = field(default_factory=list)
    number: str | None = None
    hosted_invoice_url: str | None = None
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    amount_paid: int = 0
    starting_balance: int = 0  # the customer's balance when it was finalized (negative: a credit)
    attempt_count: int = 0
    paid_out_of_band: bool = False
    automatic_tax: bool = False
    discounts: list[Discount] = field(default_factory=list)
    frozen: TaxFacts | None = None  # the customer's tax facts at finalization

    @property
    def tax_facts(self) -> TaxFacts:
        return self.frozen if self.frozen is not None else TaxFacts.of(self.customer)

    def amounts(self) -> Amounts:
        amounts = [line.amount for line in self.lines]
        allocation = allocate(self.discounts, amounts, [line.discountable for line in self.lines])
        facts = self.tax_facts
        rule = tax_rule(facts.address, facts.tax_exempt) if self.automatic_tax else None
        status = (
            None if not self.automatic_tax else "complete" if rule is not None else "requires_location_inputs"
        )
        line_taxes: dict[int, LineTax] = {}
        excluding = sum(amounts)
        if rule is not None:
            for index, line in enumerate(self.lines):
                behavior = line.tax_behavior or "exclusive"
                net = line.amount - allocation.line_discount(index)
                tax = rule.tax(net, behavior)
                taxable = net - tax if behavior == "inclusive" else net
                line_taxes[index] = LineTax(tax, taxable, behavior)
                if behavior == "inclusive":
                    excluding -= rule.tax(line.amount, behavior)
        return Amounts(sum(amounts), allocation, rule, status, line_taxes, excluding)

    @property
    def total(self) -> int:
        return self.amounts().total

    @property
    def amount_due(self) -> int:
        """The total after the customer's credit balance (never below 0: what is left is credited back)."""
        return max(0, self.total + self.starting_balance)

    @property
    def ending_balance(self) -> int | None:
        """The customer's balance after this invoice (None while it is a draft)."""
        return None if self.status == "draft" else min(0, self.total + self.starting_balance)

    @property
    def amount_remaining(self) -> int:
        return 0 if self.status in ("paid", "void") else self.amount_due - self.amount_paid

    def to_json(self, lines_shown: int = LINES_SHOWN_ON_INVOICE) -> dict[str, Any]:
        money = self.amounts()
        total = money.total
        facts = self.tax_facts
        return {
            "id": self.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Tollgate (Stripe double)",
            "account_tax_ids": None,
            "amount_due": self.amount_due,
            "amount_overpaid": 0,
            "amount_paid": self.amount_paid,
            "amount_remaining": self.amount_remaining,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": self.attempt_count,
            "attempted": self.attempt_count > 0,
            "auto_advance": self.auto_advance,
            "automatic_tax": {
                "disabled_reason": None,
                "enabled": self.automatic_tax,
                "liability": {"account": None, "type": "self"} if self.automatic_tax else None,
                "provider": "stripe" if self.automatic_tax else None,
                "status": money.tax_status,
            },
            "automatically_finalizes_at": None,
            "billing_reason": "manual",
            "collection_method": self.collection_method,
            "created": self.created,
            "currency": self.currency,
            "custom_fields": None,
            "customer": self.customer.id,
            "customer_address": None if facts.address is None else dict(facts.address),
            "customer_email": self.customer.email,
            "customer_name": self.customer.name,
            "customer_phone": self.customer.phone,
            "customer_shipping": None,
            "customer_tax_exempt": facts.tax_exempt,
            "customer_tax_ids": [{"type": kind, "value": value} for kind, value in facts.tax_ids],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": self.description,
            "discounts": [discount.id for discount in self.discounts],
            "due_date": self.due_date,
            "effective_at": self.finalized_at,
            "ending_balance": self.ending_balance,
            "footer": self.footer,
            "from_invoice": None,
            "hosted_invoice_url": self.hosted_invoice_url,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": self._lines_json(lines_shown, money),
            "livemode": False,
            "metadata": dict(self.metadata),
            "next_payment_attempt": None,
            "number": self.number,
            "on_behalf_of": None,
            "parent": None,
            "payment_settings": {
                "default_mandate": None,
                "payment_method_options": None,
                "payment_method_types": None,
            },
            "period_end": self.created,
            "period_start": self.created,
            "post_payment_credit_notes_amount": 0,
            "pre_payment_credit_notes_amount": 0,
            "receipt_number": None,
            "rendering": None,
            "shipping_cost": None,
            "shipping_details": None,
            "starting_balance": self.starting_balance,
            "statement_descriptor": self.statement_descriptor,
            "status": self.status,
            "status_transitions": {
                "finalized_at": self.finalized_at,
                "marked_uncollectible_at": self.marked_uncollectible_at,
                "paid_at": self.paid_at,
                "voided_at": self.voided_at,
            },
            "subtotal": money.subtotal,
            "subtotal_excluding_tax": money.subtotal_excluding_tax,
            "test_clock": None,
            "threshold_reason": None,
            "total": total,
            "total_discount_amounts": [
                {"amount": amount, "discount": discount.id} for discount, amount in money.discounts.totals
            ],
            "total_excluding_tax": money.total_excluding_tax,
            "total_pretax_credit_amounts": [],
            "total_taxes": money.total_taxes(),
            "webhooks_delivered_at": self.created,
        }

    def line_json(self, index: int, money: Amounts | None = None) -> dict[str, Any]:
        """Line ``index`` as Stripe shows it: its share of each discount and its tax."""
        money = money or self.amounts()
        discounts = money.discounts.per_line.get(index, [])
        tax = money.line_taxes.get(index)
        taxes = []
        if tax is not None and money.rule is not None:
            taxes = [_tax_json(money.rule, tax.behavior, tax.amount, [tax])]
        return self.lines[index].to_json(
            [{"amount": amount, "discount": discount.id} for discount, amount in discounts], taxes
        )

    def _lines_json(self, shown: int, money: Amounts) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [self.line_json(index, money) for index in range(min(shown, len(self.lines)))],
            "has_more": len(self.lines) > shown,
            "total_count": len(self.lines),
            "url": f"/v1/invoices/{self.id}/lines",
        }


# ----------------------------------------------------------------------------------------------- helpers


def _check_metadata(metadata: Any, param: str) -> dict[str, str]:
    """Stripe's metadata limits; ``""`` (unset all) is an empty map."""
    if metadata in (None, ""):
        return {}
    if len(metadata) > MAX_METADATA_KEYS:
        raise invalid_request(f"You can have at most {MAX_METADATA_KEYS} metadata keys.", param)
    for key, value in metadata.items():
        if len(key) > MAX_METADATA_KEY_LENGTH:
            raise invalid_request(
                f"Metadata keys can have up to {MAX_METADATA_KEY_LENGTH} characters; '{key}' has {len(key)}.",
                f"{param}[{key}]",
            )
        if len(value) > MAX_METADATA_VALUE_LENGTH:
            raise invalid_request(
                f"Metadata values can have up to {MAX_METADATA_VALUE_LENGTH} characters, but you passed in a "
                f"value that is {len(value)} characters.",
                f"{param}[{key}]",
            )
    return {key: value for key, value in metadata.items() if value != ""}


def _merge_metadata(current: dict[str, str], update: Any, param: str) -> dict[str, str]:
    """Stripe's update semantics: ``""`` clears everything, a key set to ``""`` is removed."""
    if update == "":
        return {}
    merged = {**current, **update}
    return _check_metadata({key: value for key, value in merged.items() if value != ""}, param)


def _currency(value: str, param: str) -> str:
    currency = value.lower()
    if len(currency) != 3 or not currency.isalpha() or not currency.isascii():
        raise invalid_request(
            f"Invalid currency: {value}. Stripe currencies are three-letter ISO codes.", param
        )
    return currency


def _invoice_prefix(prefix: str) -> str:
    if not (3 <= len(prefix) <= 12 and prefix.isalnum() and prefix.isascii() and prefix == prefix.upper()):
        raise invalid_request(
            "Invalid invoice_prefix: use 3-12 uppercase letters or digits.", "invoice_prefix"
        )
    return prefix


def _decimal_places(value: Decimal, param: str) -> Decimal:
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_DECIMAL_PLACES:
        raise invalid_request(
            f"Invalid {param}: at most {MAX_DECIMAL_PLACES} decimal places are allowed.", param
        )
    return value


def _non_negative(value: Decimal | int, param: str) -> None:
    if value < 0:
        raise invalid_request(f"Invalid {param}: must be greater than or equal to 0", param)


def _inline_unit_amount(price: dict[str, Any], param: str) -> Decimal:
    """An inline ``price_data``'s unit amount (minor units): a new product, one of the two unit amounts."""
    if "product" in price:
        raise resource_missing("product", price["product"], f"{param}[product]")
    if "product_data" not in price:
        raise invalid_request(f"Missing required param: {param}[product_data].", f"{param}[product_data]")
    if ("unit_amount" in price) == ("unit_amount_decimal" in price):
        raise invalid_request(
            "Exactly one of unit_amount and unit_amount_decimal must be set.",
            f"{param}[unit_amount_decimal]",
        )
    unit = Decimal(price.get("unit_amount", price.get("unit_amount_decimal", 0)))
    _non_negative(unit, f"{param}[unit_amount_decimal]")
    return _decimal_places(unit, f"{param}[unit_amount_decimal]")


def _reject_nonempty(params: dict[str, Any], names: Iterable[str], parent: str = "") -> None:
    for name in names:
        if params.get(name) not in (None, "", [], {}):
            raise unsupported(f"{parent}[{name}]" if parent else name)


# Paths Stripe can expand whose value is always null or empty in the double: accepted, nothing to do.
_EMPTY_CUSTOMER_EXPANSIONS = ("default_source", "test_clock")
_EMPTY_INVOICE_EXPANSIONS = (
    "account_tax_ids",
    "application",
    "default_payment_method",
    "default_source",
    "latest_revision",
    "on_behalf_of",
    "test_clock",
)
CUSTOMER_EXPANSIONS = ("tax", *_EMPTY_CUSTOMER_EXPANSIONS)
INVOICE_EXPANSIONS = ("customer", "customer.tax", "discounts", *_EMPTY_INVOICE_EXPANSIONS)
INVOICE_LIST_EXPANSIONS = tuple(f"data.{path}" for path in INVOICE_EXPANSIONS)
LINE_LIST_EXPANSIONS = ("data.discounts",)
CHECKOUT_EXPANSIONS = (
    "customer",
    "invoice",
    "payment_intent",
    "payment_link",
    "setup_intent",
    "subscription",
)
# What a Checkout Session may be created with; anything else sent is refused as not emulated.
CHECKOUT_PARAMS = frozenset(
    (
        "cancel_url",
        "client_reference_id",
        "customer",
        "expand",
        "expires_at",
        "line_items",
        "metadata",
        "mode",
        "payment_intent_data",
        "success_url",
        "ui_mode",
    )
)


def _check_expand(params: dict[str, Any], allowed: Iterable[str]) -> set[str]:
    """The requested ``expand`` paths; one the double cannot honour is a 400 naming it."""
    expand: list[str] = params.get("expand", [])
    allowed_set = set(allowed)
    for index, path in enumerate(expand):
        if path not in allowed_set:
            raise invalid_request(
                f"This property cannot be expanded ({path}) by the Stripe double.", f"expand[{index}]"
            )
    return set(expand)


def _created_matches(value: int | None, condition: Any) -> bool:
    if condition is None:
        return True
    if value is None:
        return False
    if isinstance(condition, int):
        return value == condition
    checks = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(checks[key](bound) for key, bound in condition.items())


def _limit(params: dict[str, Any]) -> int:
    limit: int = params.get("limit", 10)
    if not 1 <= limit <= 100:
        raise invalid_request("Invalid limit: must be between 1 and 100", "limit")
    return limit


def _page(items: list[T], params: dict[str, Any], ids: list[str], kind: str) -> tuple[list[T], bool]:
    """Cursor pagination over newest-first ``items`` (``starting_after`` / ``ending_before`` / ``limit``)."""
    limit = _limit(params)
    after, before = params.get("starting_after"), params.get("ending_before")
    if after is not None and before is not None:
        raise invalid_request(
            "You may only specify one of these parameters: ending_before, starting_after.", "ending_before"
        )
    if after is not None:
        start = _cursor(ids, after, kind, "starting_after") + 1
        return items[start : start + limit], len(items) > start + limit
    if before is not None:
        end = _cursor(ids, before, kind, "ending_before")
        return items[max(0, end - limit) : end], end - limit > 0
    return items[:limit], len(items) > limit


def _cursor(ids: list[str], object_id: str, kind: str, param: str) -> int:
    try:
        return ids.index(object_id)
    except ValueError:
        raise resource_missing(kind, object_id, param) from None


def _list_json(data: list[dict[str, Any]], has_more: bool, url: str) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


# ----------------------------------------------------------------------------------------------- the account


class StripeState:
    """One test-mode Stripe account: customers, invoices, coupons, Checkout Sessions, cards, payments."""

    def __init__(
        self, clock: Callable[[], float], hosted_base: Callable[[], str], search_lag: float = 0.0
    ) -> None:
        self._clock = clock
        self._hosted_base = hosted_base
        self.search_lag = search_lag
        """Seconds before a new invoice shows up in search (Stripe: "under 1 minute"); 0 = at once."""
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self.coupons: dict[str, Coupon] = {}
        self.checkout_sessions: dict[str, CheckoutSession] = {}
        self.payments = Payments(self._now, new_id)
        self._seq = 0

    def _now(self) -> int:
        return int(self._clock())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ------------------------------------------------------------------------------------- customers

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        _reject_nonempty(params, ("cash_balance", "test_clock", "source"))
        expand = _check_expand(params, CUSTOMER_EXPANSIONS)
        prefix = _invoice_prefix(
            params.get("invoice_prefix") or "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
        )
        customer = Customer(
            id=new_id("cus", 14),
            seq=self._next_seq(),
            created=self._now(),
            name=params.get("name"),
            email=params.get("email"),
            description=params.get("description"),
            phone=params.get("phone"),
            metadata=_check_metadata(params.get("metadata"), "metadata"),
            invoice_prefix=prefix,
            preferred_locales=params.get("preferred_locales", []),
        )
        self._set_tax_details(customer, params)
        for index, datum in enumerate(params.get("tax_id_data", [])):
            self._add_tax_id(customer, datum, f"tax_id_data[{index}]")
        self.customers[customer.id] = customer
        return self._customer_json(customer, expand)

    def _customer_json(self, customer: Customer, expand: set[str]) -> dict[str, Any]:
        body = customer.to_json()
        if "tax" in expand:
            body["tax"] = customer.tax_json()
        return body

    def update_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        _reject_nonempty(params, ("balance", "cash_balance", "default_source", "source", "invoice_settings"))
        expand = _check_expand(params, CUSTOMER_EXPANSIONS)
        checked = copy.copy(customer)  # checked in full before anything changes
        for name in ("name", "email", "description", "phone", "preferred_locales"):
            if name in params:
                setattr(checked, name, params[name])
        if "metadata" in params:
            checked.metadata = _merge_metadata(customer.metadata, params["metadata"], "metadata")
        if "invoice_prefix" in params:
            checked.invoice_prefix = _invoice_prefix(params["invoice_prefix"])
        if "next_invoice_sequence" in params:
            checked.next_invoice_sequence = params["next_invoice_sequence"]
        self._set_tax_details(checked, params)
        customer.__dict__.update(checked.__dict__)  # the same object: drafts read their customer live
        return self._customer_json(customer, expand)

    @staticmethod
    def _set_tax_details(customer: Customer, params: dict[str, Any]) -> None:
        """``address`` (merged by field; ``""`` clears it), ``tax_exempt``, ``tax[validate_location]``."""
        _reject_nonempty(params.get("tax") or {}, ("ip_address",), "tax")
        if "address" in params:
            update = params["address"]
            merged = {} if update == "" else {**(customer.address or {}), **update}
            fields = {name: merged.get(name) or None for name in ADDRESS_FIELDS}  # "" clears a field
            customer.address = fields if any(fields.values()) else None
        if "tax_exempt" in params:
            customer.tax_exempt = params["tax_exempt"] or "none"
        validate = (params.get("tax") or {}).get("validate_location")
        if validate == "immediately" and location_country(customer.address) is None:
            raise invalid_request(
                "The customer's location isn't recognized: give an address with a two-letter country (and a "
                "postal code in the US and Canada).",
                "address",
                code="customer_tax_location_invalid",
            )

    def create_tax_id(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        _check_expand(params, ())
        return self._add_tax_id(customer, params, "").to_json()

    def _add_tax_id(self, customer: Customer, params: dict[str, Any], param: str) -> TaxId:
        prefix = f"{param}[" if param else ""
        suffix = "]" if param else ""
        problem = tax_id_problem(params["type"], params["value"])
        if problem is not None:
            raise invalid_request(problem, f"{prefix}value{suffix}", code="tax_id_invalid")
        tax_id = TaxId(new_id("txi"), customer.id, self._now(), params["type"], params["value"])
        customer.tax_ids.append(tax_id)
        return tax_id

    def list_tax_ids(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        _check_expand(params, ())
        newest = list(reversed(customer.tax_ids))
        page, has_more = _page(newest, params, [t.id for t in newest], "tax_id")
        return _list_json([t.to_json() for t in page], has_more, f"/v1/customers/{customer.id}/tax_ids")

    def delete_tax_id(self, ids: str, params: dict[str, Any]) -> dict[str, Any]:
        customer_id, _, tax_id = ids.partition("/")
        customer = self._customer(customer_id)
        found = next((t for t in customer.tax_ids if t.id == tax_id), None)
        if found is None:
            raise resource_missing("tax_id", tax_id)
        customer.tax_ids.remove(found)
        return {"id": tax_id, "object": "tax_id", "deleted": True}

    # ------------------------------------------------------------------------------------- coupons

    def create_coupon(self, params: dict[str, Any]) -> dict[str, Any]:
        _reject_nonempty(params, ("applies_to", "currency_options"))
        _check_expand(params, ())
        coupon_id = params.get("id") or new_id("", 8).removeprefix("_")
        if coupon_id in self.coupons:
            raise invalid_request("Coupon already exists.", "id", code="resource_already_exists")
        percent, amount = params.get("percent_off"), params.get("amount_off")
        if (percent is None) == (amount is None):
            raise invalid_request("You must pass exactly one of percent_off or amount_off.", "percent_off")
        currency = None
        if amount is not None:
            if amount <= 0:
                raise invalid_request("Invalid amount_off: must be a positive integer.", "amount_off")
            if "currency" not in params:
                raise invalid_request("You must pass currency when passing amount_off.", "currency")
            currency = _currency(params["currency"], "currency")
        elif percent is not None and not Decimal(0) < percent <= Decimal(100):
            raise invalid_request(
                "Invalid percent_off: must be greater than 0 and at most 100.", "percent_off"
            )
        duration = params.get("duration", "once")
        months = params.get("duration_in_months")
        if (duration == "repeating") != (months is not None):
            raise invalid_request(
                "duration_in_months is required with duration repeating, and only allowed with it.",
                "duration_in_months",
            )
        if months is not None and months <= 0:
            raise invalid_request(
                "Invalid duration_in_months: must be a positive integer.", "duration_in_months"
            )
        if params.get("max_redemptions") is not None and params["max_redemptions"] <= 0:
            raise invalid_request("Invalid max_redemptions: must be a positive integer.", "max_redemptions")
        coupon = Coupon(
            id=coupon_id,
            created=self._now(),
            duration=duration,
            duration_in_months=months,
            percent_off=percent,
            amount_off=amount,
            currency=currency,
            max_redemptions=params.get("max_redemptions"),
            redeem_by=params.get("redeem_by"),
            name=params.get("name"),
            metadata=_check_metadata(params.get("metadata"), "metadata"),
        )
        self.coupons[coupon.id] = coupon
        return coupon.to_json(self._now())

    def _coupon(self, coupon_id: str, param: str | None = None) -> Coupon:
        coupon = self.coupons.get(coupon_id)
        if coupon is None:
            raise resource_missing("coupon", coupon_id, param)
        return coupon

    def retrieve_coupon(self, coupon_id: str, params: dict[str, Any]) -> dict[str, Any]:
        _check_expand(params, ("applies_to", "currency_options"))  # both always null here
        return self._coupon(coupon_id).to_json(self._now())

    def delete_coupon(self, coupon_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """Deleted coupons can no longer be redeemed; discounts already made keep applying, as on Stripe."""
        del self.coupons[self._coupon(coupon_id).id]
        return {"id": coupon_id, "object": "coupon", "deleted": True}

    def _redeem(self, invoice: Invoice, requested: Any, param: str) -> list[Discount]:
        """``discounts`` as sent (``""``: none) -> new discounts on ``invoice``, each coupon redeemed once."""
        if requested == "":
            return []
        discounts: list[Discount] = []
        for index, item in enumerate(requested):
            here = f"{param}[{index}]"
            _reject_nonempty(item, ("discount", "promotion_code"), here)
            if "coupon" not in item:
                raise invalid_request(f"Missing required param: {here}[coupon].", f"{here}[coupon]")
            coupon = self._coupon(item["coupon"], f"{here}[coupon]")
            if any(d.coupon is coupon for d in discounts):
                raise invalid_request(f"Coupon {coupon.id} is given twice.", f"{here}[coupon]")
            if not coupon.valid(self._now()):
                raise invalid_request(
                    f"Coupon {coupon.id} can no longer be redeemed (past redeem_by, or out of redemptions).",
                    f"{here}[coupon]",
                    code="coupon_expired",
                )
            if coupon.currency is not None and coupon.currency != invoice.currency:
                raise invalid_request(
                    f"Coupon {coupon.id} takes {coupon.amount_off} {coupon.currency} off: its currency must "
                    f"match the invoice's currency ({invoice.currency}).",
                    f"{here}[coupon]",
                )
            discounts.append(Discount(new_id("di"), coupon, invoice.customer.id, invoice.id, self._now()))
        for discount in discounts:
            discount.coupon.times_redeemed += 1
        return discounts

    def _customer(self, customer_id: str, param: str | None = None) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise resource_missing("customer", customer_id, param)
        return customer

    def retrieve_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        return self._customer_json(customer, _check_expand(params, CUSTOMER_EXPANSIONS))

    def list_customers(self, params: dict[str, Any]) -> dict[str, Any]:
        _check_expand(params, [f"data.{path}" for path in CUSTOMER_EXPANSIONS])
        found = [
            customer
            for customer in sorted(self.customers.values(), key=lambda c: -c.seq)
            if params.get("email") in (None, customer.email)
            and _created_matches(customer.created, params.get("created"))
            and params.get("test_clock") is None
        ]
        page, has_more = _page(found, params, [c.id for c in found], "customer")
        return _list_json([c.to_json() for c in page], has_more, "/v1/customers")

    # ------------------------------------------------------------------------------------- invoices

    def create_invoice(self, params: dict[str, Any]) -> dict[str, Any]:
        _reject_nonempty(
            params,
            (
                "customer_account",
                "from_invoice",
                "default_tax_rates",
                "shipping_cost",
                "application_fee_amount",
                "transfer_data",
                "on_behalf_of",
                "subscription",
                "account_tax_ids",
            ),
        )
        automatic_tax = self._automatic_tax(params)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if "customer" not in params:
            raise invalid_request("Missing required param: customer.", "customer")
        customer = self._customer(params["customer"], "customer")
        method = params.get("collection_method", "charge_automatically")
        days, due = self._due_terms(params, method)
        invoice = Invoice(
            id=new_id("in"),
            seq=self._next_seq(),
            created=self._now(),
            customer=customer,
            currency=_currency(params.get("currency", "usd"), "currency"),
            collection_method=method,
            auto_advance=params.get("auto_advance", False),
            days_until_due=days,
            due_date=due,
            description=params.get("description"),
            footer=params.get("footer"),
            statement_descriptor=params.get("statement_descriptor"),
            custom_number=params.get("number"),
            metadata=_check_metadata(params.get("metadata"), "metadata"),
            automatic_tax=bool(automatic_tax),
        )
        invoice.discounts = self._redeem(invoice, params.get("discounts", ""), "discounts")
        self.invoices[invoice.id] = invoice
        return self._invoice_json(invoice, expand)

    @staticmethod
    def _automatic_tax(params: dict[str, Any]) -> bool | None:
        """``automatic_tax[enabled]`` as sent (None: not sent); only the account itself may be liable."""
        settings = params.get("automatic_tax")
        if settings is None:
            return None
        liability = settings.get("liability")
        if liability is not None and liability.get("type") != "self":
            raise unsupported("automatic_tax[liability][type]=account")
        return bool(settings["enabled"])

    def update_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """A draft's discounts, automatic tax, description, footer, metadata and ``auto_advance``."""
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        editable = ("description", "footer", "metadata", "expand")
        _reject_nonempty(
            params,
            [
                name
                for name in params
                if name not in (*editable, "discounts", "automatic_tax", "auto_advance")
            ],
        )
        if invoice.status != "draft":
            for name in params:
                if name not in editable:
                    raise invalid_request(
                        f"You can only update {name} on a draft invoice; this invoice is {invoice.status}.",
                        name,
                        code="invoice_not_editable",
                    )
        automatic_tax = self._automatic_tax(params)
        if automatic_tax:
            for index, line in enumerate(invoice.lines):
                self._check_taxable(line.tax_behavior, f"lines[{index}]")
        discounts = self._redeem(invoice, params["discounts"], "discounts") if "discounts" in params else None
        if automatic_tax is not None:
            invoice.automatic_tax = automatic_tax
        if discounts is not None:
            invoice.discounts = discounts
        for name in ("description", "footer"):
            if name in params:
                setattr(invoice, name, params[name])
        if "auto_advance" in params:
            invoice.auto_advance = params["auto_advance"]
        if "metadata" in params:
            invoice.metadata = _merge_metadata(invoice.metadata, params["metadata"], "metadata")
        return self._invoice_json(invoice, expand)

    @staticmethod
    def _check_taxable(behavior: str | None, param: str) -> None:
        if behavior not in ("exclusive", "inclusive"):
            raise invalid_request(
                "Lines on an invoice with automatic tax need price_data[tax_behavior] exclusive or inclusive "
                "(the double has no default tax behavior, nor tax codes).",
                f"{param}[price_data][tax_behavior]",
            )

    @staticmethod
    def _due_terms(params: dict[str, Any], method: str) -> tuple[int | None, int | None]:
        days, due = params.get("days_until_due"), params.get("due_date")
        if method == "charge_automatically":
            for name, value in (("days_until_due", days), ("due_date", due)):
                if value is not None:
                    raise invalid_request(
                        f"Can't set `{name}` when `collection_method` is `charge_automatically`.", name
                    )
            return None, None
        if days is None and due is None:
            raise invalid_request(
                "Missing required param: days_until_due. Invoices with collection_method=send_invoice need "
                "days_until_due or due_date.",
                "days_until_due",
            )
        if days is not None and due is not None:
            raise invalid_request(
                "You may only specify one of these parameters: days_until_due, due_date.", "due_date"
            )
        if days is not None:
            _non_negative(days, "days_until_due")
        return days, due

    def _invoice(self, invoice_id: str) -> Invoice:
        invoice = self.invoices.get(invoice_id)
        if invoice is None:
            raise resource_missing("invoice", invoice_id)
        return invoice

    def _invoice_json(self, invoice: Invoice, expand: set[str], prefix: str = "") -> dict[str, Any]:
        body = invoice.to_json()
        if f"{prefix}customer" in expand or f"{prefix}customer.tax" in expand:
            body["customer"] = invoice.customer.to_json()
            if f"{prefix}customer.tax" in expand:
                body["customer"]["tax"] = invoice.customer.tax_json()
        if f"{prefix}discounts" in expand:
            body["discounts"] = [discount.to_json() for discount in invoice.discounts]
        return body

    def retrieve_invoice(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        return self._invoice_json(invoice, _check_expand(params, INVOICE_EXPANSIONS))

    def add_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if invoice.status != "draft":
            raise invalid_request(
                f"You can only add lines to a draft invoice; this invoice is {invoice.status}.",
                "lines",
                code="invoice_not_editable",
            )
        new_lines = [self._line(invoice, line, f"lines[{i}]") for i, line in enumerate(params["lines"])]
        if invoice.automatic_tax:
            for index, line in enumerate(new_lines):
                self._check_taxable(line.tax_behavior, f"lines[{index}]")
        if "invoice_metadata" in params:
            invoice.metadata = _merge_metadata(
                invoice.metadata, params["invoice_metadata"], "invoice_metadata"
            )
        invoice.lines.extend(new_lines)
        return self._invoice_json(invoice, expand)

    def _line(self, invoice: Invoice, line: dict[str, Any], param: str) -> LineItem:
        _reject_nonempty(line, ("discounts", "tax_amounts", "tax_rates"), param)
        for name, kind in (("invoice_item", "invoiceitem"), ("pricing", "price")):
            if name in line:
                object_id = line[name] if name == "invoice_item" else line[name].get("price", "")
                raise resource_missing(kind, object_id, f"{param}[{name}]")
        _reject_nonempty(
            line.get("price_data", {}).get("product_data", {}), ("tax_code", "tax_details"), param
        )
        unit, quantity = self._unit_and_quantity(invoice, line, param)
        period = line.get("period") or {"start": self._now(), "end": self._now()}
        if period["end"] < period["start"]:
            raise invalid_request(
                "The period end must be greater than or equal to its start.", f"{param}[period][end]"
            )
        return LineItem(
            id=new_id("il"),
            invoice_id=invoice.id,
            invoice_item_id=new_id("ii"),
            price_id=new_id("price"),
            product_id=new_id("prod", 14),
            amount=line_amount(unit, quantity),
            currency=invoice.currency,
            description=line.get("description")
            or line.get("price_data", {}).get("product_data", {}).get("name"),
            metadata=_check_metadata(line.get("metadata"), f"{param}[metadata]"),
            period_start=period["start"],
            period_end=period["end"],
            quantity=quantity,
            unit_amount_decimal=unit,
            # Stripe's default: negative lines are not discounted
            discountable=line.get("discountable", line_amount(unit, quantity) >= 0),
            tax_behavior=line.get("price_data", {}).get("tax_behavior"),
        )

    def _unit_and_quantity(
        self, invoice: Invoice, line: dict[str, Any], param: str
    ) -> tuple[Decimal, Decimal]:
        if "quantity" in line:  # stricter than Stripe, on purpose: nothing of ours may send it
            raise invalid_request(
                f"{param}[quantity] is deprecated in API version {EMULATED_API_VERSION} (since "
                f"{QUANTITY_DEPRECATED_SINCE}): send quantity_decimal.",
                f"{param}[quantity]",
            )
        if "amount" in line:
            for other in ("price_data", "quantity", "quantity_decimal"):
                if other in line:
                    raise invalid_request(
                        f"You may only specify one of these parameters: amount, {other}.", f"{param}[{other}]"
                    )
            return Decimal(line["amount"]), _ONE
        if "price_data" not in line:
            raise invalid_request(
                f"Missing required param: {param}[price_data]. Each line needs amount or price_data.",
                f"{param}[price_data]",
            )
        quantity = Decimal(line.get("quantity_decimal", _ONE))
        _non_negative(quantity, f"{param}[quantity]")
        _decimal_places(quantity, f"{param}[quantity_decimal]")
        return self._unit_amount(invoice, line["price_data"], f"{param}[price_data]"), quantity

    @staticmethod
    def _unit_amount(invoice: Invoice, price: dict[str, Any], param: str) -> Decimal:
        if _currency(price["currency"], f"{param}[currency]") != invoice.currency:
            raise invalid_request(
                f"The price's currency ({price['currency']}) must match the invoice's currency "
                f"({invoice.currency}).",
                f"{param}[currency]",
            )
        return _inline_unit_amount(price, param)

    def list_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        _check_expand(params, LINE_LIST_EXPANSIONS)
        indexes = list(range(len(invoice.lines)))
        page, has_more = _page(indexes, params, [line.id for line in invoice.lines], "line_item")
        money = invoice.amounts()
        data = [invoice.line_json(index, money) for index in page]
        return _list_json(data, has_more, f"/v1/invoices/{invoice.id}/lines")

    def list_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        expand = _check_expand(params, INVOICE_LIST_EXPANSIONS)
        if params.get("customer") is not None:
            self._customer(params["customer"], "customer")
        found = [invoice for invoice in self._newest_first() if self._list_filter(invoice, params)]
        page, has_more = _page(found, params, [invoice.id for invoice in found], "invoice")
        data = [self._invoice_json(invoice, expand, "data.") for invoice in page]
        return _list_json(data, has_more, "/v1/invoices")

    def _newest_first(self) -> list[Invoice]:
        return sorted(self.invoices.values(), key=lambda invoice: -invoice.seq)

    @staticmethod
    def _list_filter(invoice: Invoice, params: dict[str, Any]) -> bool:
        return (
            params.get("customer") in (None, invoice.customer.id)
            and params.get("status") in (None, invoice.status)
            and params.get("collection_method") in (None, invoice.collection_method)
            and params.get("subscription") is None
            and params.get("customer_account") is None
            and _created_matches(invoice.created, params.get("created"))
            and _created_matches(invoice.due_date, params.get("due_date"))
        )

    def search_invoices(self, params: dict[str, Any]) -> dict[str, Any]:
        expand = _check_expand(params, (*INVOICE_LIST_EXPANSIONS, "total_count"))
        query = parse_query(params["query"])
        visible_before = self._clock() - self.search_lag
        found = [
            invoice
            for invoice in self._newest_first()
            if invoice.created <= visible_before and query.matches(invoice.to_json(lines_shown=0))
        ]
        start = _page_offset(params.get("page"))
        limit = _limit(params)
        page = found[start : start + limit]
        has_more = len(found) > start + limit
        body: dict[str, Any] = {
            "object": "search_result",
            "data": [self._invoice_json(invoice, expand, "data.") for invoice in page],
            "has_more": has_more,
            "next_page": _page_token(start + limit) if has_more else None,
            "url": "/v1/invoices/search",
        }
        if "total_count" in expand:
            body["total_count"] = len(found)
        return body

    # ------------------------------------------------------------------------------------- transitions

    def finalize(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if invoice.status != "draft":
            raise invalid_request(
                "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
                code="invoice_not_editable",
            )
        if "auto_advance" in params:
            invoice.auto_advance = params["auto_advance"]
        self._finalize(invoice)
        return self._invoice_json(invoice, expand)

    def _finalize(self, invoice: Invoice) -> None:
        if invoice.automatic_tax and invoice.amounts().tax_status == "requires_location_inputs":
            raise invalid_request(
                "The customer's location isn't recognized, so automatic tax cannot be computed: give "
                f"customer {invoice.customer.id} an address with a two-letter country (and a postal code in "
                "the US and Canada), then finalize again.",
                "customer",
                code="customer_tax_location_invalid",
            )
        invoice.frozen = TaxFacts.of(invoice.customer)
        now = self._now()
        customer = invoice.customer
        invoice.number = (
            invoice.custom_number or f"{customer.invoice_prefix}-{customer.next_invoice_sequence:04d}"
        )
        if invoice.custom_number is None:
            customer.next_invoice_sequence += 1
        invoice.status = "open"
        invoice.finalized_at = now
        invoice.hosted_invoice_url = f"{self._hosted_base()}/hosted/{invoice.id}"
        if invoice.days_until_due is not None:
            invoice.due_date = now + invoice.days_until_due * DAY
        # The customer's credit balance pays what it can; a negative total is credited to it.
        invoice.starting_balance = customer.balance
        customer.balance = invoice.ending_balance or 0
        if invoice.amount_due == 0:  # Stripe marks an invoice with nothing due paid as it finalizes it
            invoice.status = "paid"
            invoice.paid_at = now

    def pay(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if invoice.status == "draft":
            self._finalize(invoice)
        if invoice.status not in ("open", "uncollectible"):
            raise invalid_request(
                f"Invoice is already {invoice.status}; only open or uncollectible invoices can be paid."
            )
        invoice.attempt_count += 0 if params.get("paid_out_of_band") else 1
        invoice.paid_out_of_band = bool(params.get("paid_out_of_band"))
        invoice.amount_paid = invoice.amount_due
        invoice.status = "paid"
        invoice.paid_at = self._now()
        return self._invoice_json(invoice, expand)

    def void(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if invoice.status not in ("open", "uncollectible"):
            raise invalid_request(
                f"You can only void an open or uncollectible invoice; this one is {invoice.status}."
            )
        invoice.status = "void"
        invoice.voided_at = self._now()
        return self._invoice_json(invoice, expand)

    def mark_uncollectible(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        expand = _check_expand(params, INVOICE_EXPANSIONS)
        if invoice.status != "open":
            raise invalid_request(
                f"You can only mark an open invoice uncollectible; this one is {invoice.status}."
            )
        invoice.status = "uncollectible"
        invoice.marked_uncollectible_at = self._now()
        return self._invoice_json(invoice, expand)

    # ------------------------------------------------------------------------------------- checkout sessions

    def create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        mode = params.get("mode")
        if mode is None:
            raise invalid_request("Missing required param: mode.", "mode")
        if mode != "payment":
            raise invalid_request(
                f"The Stripe double emulates Checkout in payment mode only, not mode={mode}.", "mode"
            )
        _reject_nonempty(params, [name for name in params if name not in CHECKOUT_PARAMS])
        if params.get("ui_mode", "hosted_page") != "hosted_page":
            raise invalid_request(
                "The Stripe double emulates the hosted Checkout page only (ui_mode hosted_page).", "ui_mode"
            )
        expand = _check_expand(params, CHECKOUT_EXPANSIONS)
        if "customer" not in params:
            raise invalid_request(
                "Missing required param: customer. The Stripe double does not emulate guest checkout or "
                "customer creation.",
                "customer",
            )
        customer = self._customer(params["customer"], "customer")
        currency, lines = self._checkout_lines(params.get("line_items"))
        if sum(line.amount for line in lines) == 0:
            raise invalid_request(
                "The Checkout Session's total amount due must be greater than 0 (the Stripe double does not "
                "emulate sessions with no payment required).",
                "line_items",
            )
        now = self._now()
        expires_at = params.get("expires_at", now + MAX_LIFETIME)
        if not now + MIN_LIFETIME <= expires_at <= now + MAX_LIFETIME:
            raise invalid_request(
                "The `expires_at` timestamp must be between 30 minutes and 24 hours after the Checkout "
                "Session is created.",
                "expires_at",
            )
        intent = params.get("payment_intent_data") or {}
        _reject_nonempty(
            intent,
            [name for name in intent if name not in ("metadata", "setup_future_usage")],
            "payment_intent_data",
        )
        session_id = new_id("cs_test", 58)
        session = CheckoutSession(
            id=session_id,
            created=now,
            expires_at=expires_at,
            customer_id=customer.id,
            currency=currency,
            lines=lines,
            page_url=f"{self._hosted_base()}/checkout/{session_id}",
            metadata=_check_metadata(params.get("metadata"), "metadata"),
            success_url=_url(params.get("success_url"), "success_url"),
            cancel_url=_url(params.get("cancel_url"), "cancel_url"),
            client_reference_id=params.get("client_reference_id"),
            setup_future_usage=intent.get("setup_future_usage"),
            payment_intent_metadata=_check_metadata(intent.get("metadata"), "payment_intent_data[metadata]"),
        )
        self.checkout_sessions[session.id] = session
        return self._checkout_json(session, expand)

    def _checkout_lines(self, items: list[dict[str, Any]] | None) -> tuple[str, list[CheckoutLine]]:
        """The session's currency and lines: inline prices only, all in one currency."""
        if not items:
            raise invalid_request(
                "Missing required param: line_items. A Checkout Session in payment mode needs line items.",
                "line_items",
            )
        currency = ""
        lines = []
        for index, item in enumerate(items):
            here = f"line_items[{index}]"
            _reject_nonempty(item, ("adjustable_quantity", "tax_rates"), here)
            if "price" in item:
                raise invalid_request(
                    f"The Stripe double does not emulate prices by id ({here}[price]): send "
                    f"{here}[price_data] instead.",
                    f"{here}[price]",
                )
            for name in ("price_data", "quantity"):
                if name not in item:
                    raise invalid_request(f"Missing required param: {here}[{name}].", f"{here}[{name}]")
            if item["quantity"] < 1:
                raise invalid_request(f"Invalid {here}[quantity]: must be at least 1", f"{here}[quantity]")
            price = item["price_data"]
            param = f"{here}[price_data]"
            line_currency = _currency(price["currency"], f"{param}[currency]")
            if currency and line_currency != currency:
                raise invalid_request(
                    f"All line items must be in one currency: {param}[currency] is {line_currency}, the line "
                    f"items before it {currency}.",
                    f"{param}[currency]",
                )
            currency = line_currency
            if price.get("recurring"):
                raise invalid_request(
                    "You specified `payment` mode but passed a recurring price: use only one-time prices "
                    "(subscription mode is not emulated by the Stripe double).",
                    f"{param}[recurring]",
                )
            product = price.get("product_data") or {}
            _reject_nonempty(product, ("tax_code", "tax_details"), f"{param}[product_data]")
            unit = _inline_unit_amount(price, param)
            quantity = item["quantity"]
            lines.append(
                CheckoutLine(
                    description=product["name"],
                    quantity=quantity,
                    unit_amount_decimal=unit,
                    amount=line_amount(unit, Decimal(quantity)),
                    metadata=_check_metadata(item.get("metadata"), f"{here}[metadata]"),
                )
            )
        return currency, lines

    def _checkout_json(self, session: CheckoutSession, expand: set[str]) -> dict[str, Any]:
        body = session.to_json()
        if "customer" in expand:
            body["customer"] = self.customers[session.customer_id].to_json()
        if "payment_intent" in expand and session.payment_intent is not None:
            body["payment_intent"] = self.payments.intent(session.payment_intent).to_json()
        return body

    def find_checkout_session(self, session_id: str) -> CheckoutSession | None:
        """The session as it is now (an open one past ``expires_at`` has expired), or None."""
        session = self.checkout_sessions.get(session_id)
        if session is not None:
            session.expire_if_due(self._now())
        return session

    def _checkout_session(self, session_id: str) -> CheckoutSession:
        session = self.find_checkout_session(session_id)
        if session is None:
            raise resource_missing("checkout.session", session_id)
        return session

    def retrieve_checkout_session(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        session = self._checkout_session(session_id)
        return self._checkout_json(session, _check_expand(params, CHECKOUT_EXPANSIONS))

    def expire_checkout_session(self, session_id: str, params: dict[str, Any]) -> dict[str, Any]:
        session = self._checkout_session(session_id)
        expand = _check_expand(params, CHECKOUT_EXPANSIONS)
        session.expire()
        return self._checkout_json(session, expand)

    # ------------------------------------------------------------------------------------- payment intents

    def list_customer_payment_methods(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        _check_expand(params, ())
        found = self.payments.methods_of(customer.id, params.get("type"), params.get("allow_redisplay"))
        page, has_more = _page(found, params, [method.id for method in found], "payment_method")
        url = f"/v1/customers/{customer.id}/payment_methods"
        return _list_json([method.to_json() for method in page], has_more, url)

    def retrieve_customer_payment_method(self, ids: str, params: dict[str, Any]) -> dict[str, Any]:
        customer_id, _, method_id = ids.partition("/")
        customer = self._customer(customer_id)
        _check_expand(params, ())
        return self.payments.customer_method(customer.id, method_id).to_json()

    def create_payment_intent(self, params: dict[str, Any]) -> dict[str, Any]:
        reject_unsupported(params)
        expand = _check_expand(params, PAYMENT_INTENT_EXPANSIONS)
        currency = _currency(params["currency"], "currency")
        customer = self._customer(params["customer"], "customer") if "customer" in params else None
        intent = self.payments.create_intent(
            params,
            currency=currency,
            customer_id=None if customer is None else customer.id,
            metadata=_check_metadata(params.get("metadata"), "metadata"),
        )
        return self._payment_intent_json(intent, expand)

    def retrieve_payment_intent(self, intent_id: str, params: dict[str, Any]) -> dict[str, Any]:
        intent = self.payments.intent(intent_id)
        expand = _check_expand(params, PAYMENT_INTENT_EXPANSIONS)
        if params.get("client_secret") not in (None, intent.client_secret):
            raise invalid_request(
                "The client_secret provided does not match the client_secret associated with the "
                "PaymentIntent.",
                "client_secret",
            )
        return self._payment_intent_json(intent, expand)

    def _payment_intent_json(self, intent: PaymentIntent, expand: set[str]) -> dict[str, Any]:
        body = intent.to_json()
        if "customer" in expand and intent.customer_id is not None:
            body["customer"] = self.customers[intent.customer_id].to_json()
        if "payment_method" in expand and intent.payment_method_id is not None:
            body["payment_method"] = self.payments.methods[intent.payment_method_id].to_json()
        return body

    # ------------------------------------------------------------------------------------- test hooks
    # Not API operations: what a customer does on Checkout, or a card they saved, for tests. The Checkout
    # hooks and payment_intent_event return the event Stripe sends.

    def complete_checkout(self, session_id: str, *, paid: bool) -> dict[str, Any]:
        session = self._hook_session(session_id)
        customer = self.customers[session.customer_id]
        intent_id = new_id("pi")
        session.complete(intent_id, _customer_details(customer), paid=paid)
        self.payments.checkout_payment(intent_id, session, paid=paid)
        return self._checkout_event("checkout.session.completed", session)

    def async_payment_succeeded(self, session_id: str) -> dict[str, Any]:
        session = self._hook_session(session_id)
        session.settle_async_payment()
        if session.payment_intent is not None:
            self.payments.settle(session.payment_intent)
        return self._checkout_event("checkout.session.async_payment_succeeded", session)

    def attach_card(self, customer_id: str, *, decline: str | None) -> str:
        if customer_id not in self.customers:
            raise ValueError(f"no such customer: {customer_id!r}")
        return self.payments.add_card(customer_id, decline=decline).id

    def payment_intent_event(self, intent_id: str) -> dict[str, Any]:
        intent = self.payments.intents.get(intent_id)
        if intent is None:
            raise ValueError(f"no such PaymentIntent: {intent_id!r}")
        return payment_intent_event(new_id("evt"), intent, self._now(), EMULATED_API_VERSION)

    def _hook_session(self, session_id: str) -> CheckoutSession:
        session = self.find_checkout_session(session_id)
        if session is None:
            raise ValueError(f"no such Checkout Session: {session_id!r}")
        return session

    def _checkout_event(self, event_type: str, session: CheckoutSession) -> dict[str, Any]:
        return checkout_event(new_id("evt"), event_type, session, self._now(), EMULATED_API_VERSION)


def _customer_details(customer: Customer) -> dict[str, Any]:
    """What Checkout records of the customer who completed a session."""
    return {
        "address": None if customer.address is None else dict(customer.address),
        "business_name": None,
        "email": customer.email,
        "individual_name": None,
        "name": customer.name,
        "phone": customer.phone,
        "tax_exempt": customer.tax_exempt,
        "tax_ids": [{"type": tax_id.type, "value": tax_id.value} for tax_id in customer.tax_ids],
    }


def _url(value: str | None, param: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid_request("Not a valid URL", param)
    return value


def _page_token(offset: int) -> str:
    return "page_" + base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _page_offset(token: str | None) -> int:
    if token is None:
        return 0
    try:
        raw = token.removeprefix("page_")
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode()
        label, offset = text.split(":")
        if label == "offset" and offset.isdigit():
            return int(offset)
    except (ValueError, UnicodeDecodeError):
        pass
    raise invalid_request(f"Invalid page: {token}", "page")
