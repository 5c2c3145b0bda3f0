"""The in-memory Stripe account behind the Stripe double: customers, invoices and their line items.

Every public method of :class:`StripeState` is one API operation. It takes the parameters already decoded
and checked against stripe-python's TypedDict (see ``stripe_double_params``), applies Stripe's rules, and
returns the JSON object Stripe would return, or raises :class:`StripeApiError`. Callers hold the double's
lock.

Money: amounts are integers in the currency's minor unit (cents, or whole yen for zero-decimal currencies such
as ``jpy`` and ``krw``, so those need no special case). Unit prices and quantities are ``Decimal`` (up to 12
decimal places, as the API allows) and never floats. A ``price_data`` line's amount is
``unit_amount_decimal * quantity`` rounded to a whole minor unit with ``ROUND_HALF_UP`` (halves away from
zero); the invoice ``subtotal``, ``total``, ``amount_due`` and ``amount_remaining`` are sums of line amounts.
Stripe stores each line as an integer amount but does not spell out how a half unit breaks; half-up is the
rule chosen here (not banker's rounding), so ``0.5`` cent rounds to 1 and ``2.5`` to 3.

Emulated rules: invoices need an existing customer and start as ``draft`` (``auto_advance`` false,
``hosted_invoice_url`` null); ``send_invoice`` needs ``days_until_due`` or ``due_date``; lines go only on
drafts and must match the invoice currency; ``finalize`` turns a draft ``open`` (``number``,
``hosted_invoice_url``, ``status_transitions.finalized_at``) or straight ``paid`` when the total is 0; ``pay``
takes ``open`` or ``uncollectible`` (or a draft, finalizing it first) to ``paid``; ``void`` takes ``open`` or
``uncollectible``; ``mark_uncollectible`` takes ``open``. An invoice object shows its first 10 lines, like
Stripe (``lines.has_more``); ``GET /v1/invoices/{id}/lines`` pages through all of them.

Not emulated (rejected with a 400 that says so, never silently ignored, where it would change an amount):
taxes, discounts, shipping, application fees, Connect, prices/products/invoice items by id, payment methods
(``pay`` always succeeds), credit balances, webhooks/events, test clocks, deleting objects.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any, TypeVar

from tollgate_local.stripe_double_errors import StripeApiError, invalid_request, resource_missing
from tollgate_local.stripe_double_search import parse_query

LINES_SHOWN_ON_INVOICE = 10
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
        return int((unit_amount_decimal * quantity).quantize(_ONE, rounding=ROUND_HALF_UP))


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

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "customer",
            "address": None,
            "balance": 0,
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
            "tax_exempt": "none",
            "test_clock": None,
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

    def to_json(self) -> dict[str, Any]:
        whole = self.quantity == self.quantity.to_integral_value()
        return {
            "id": self.id,
            "object": "line_item",
            "amount": self.amount,
            "currency": self.currency,
            "description": self.description,
            "discount_amounts": [],
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
            "taxes": [],
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
    attempt_count: int = 0
    paid_out_of_band: bool = False

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def amount_remaining(self) -> int:
        return 0 if self.status in ("paid", "void") else self.total - self.amount_paid

    def to_json(self, lines_shown: int = LINES_SHOWN_ON_INVOICE) -> dict[str, Any]:
        total = self.total
        return {
            "id": self.id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Tollgate (Stripe double)",
            "account_tax_ids": None,
            "amount_due": total,
            "amount_overpaid": 0,
            "amount_paid": self.amount_paid,
            "amount_remaining": self.amount_remaining,
            "amount_shipping": 0,
            "application": None,
            "attempt_count": self.attempt_count,
            "attempted": self.attempt_count > 0,
            "auto_advance": self.auto_advance,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "status": None},
            "automatically_finalizes_at": None,
            "billing_reason": "manual",
            "collection_method": self.collection_method,
            "created": self.created,
            "currency": self.currency,
            "custom_fields": None,
            "customer": self.customer.id,
            "customer_address": None,
            "customer_email": self.customer.email,
            "customer_name": self.customer.name,
            "customer_phone": self.customer.phone,
            "customer_shipping": None,
            "customer_tax_exempt": "none",
            "customer_tax_ids": [],
            "default_payment_method": None,
            "default_source": None,
            "default_tax_rates": [],
            "description": self.description,
            "discounts": [],
            "due_date": self.due_date,
            "effective_at": self.finalized_at,
            "ending_balance": None if self.status == "draft" else 0,
            "footer": self.footer,
            "from_invoice": None,
            "hosted_invoice_url": self.hosted_invoice_url,
            "invoice_pdf": None,
            "issuer": {"type": "self"},
            "last_finalization_error": None,
            "latest_revision": None,
            "lines": self._lines_json(lines_shown),
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
            "starting_balance": 0,
            "statement_descriptor": self.statement_descriptor,
            "status": self.status,
            "status_transitions": {
                "finalized_at": self.finalized_at,
                "marked_uncollectible_at": self.marked_uncollectible_at,
                "paid_at": self.paid_at,
                "voided_at": self.voided_at,
            },
            "subtotal": total,
            "subtotal_excluding_tax": total,
            "test_clock": None,
            "threshold_reason": None,
            "total": total,
            "total_discount_amounts": [],
            "total_excluding_tax": total,
            "total_pretax_credit_amounts": [],
            "total_taxes": [],
            "webhooks_delivered_at": self.created,
        }

    def _lines_json(self, shown: int) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [line.to_json() for line in self.lines[:shown]],
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
    "discounts",
    "latest_revision",
    "on_behalf_of",
    "test_clock",
)
CUSTOMER_EXPANSIONS = _EMPTY_CUSTOMER_EXPANSIONS
INVOICE_EXPANSIONS = ("customer", *_EMPTY_INVOICE_EXPANSIONS)
INVOICE_LIST_EXPANSIONS = tuple(f"data.{path}" for path in INVOICE_EXPANSIONS)
LINE_LIST_EXPANSIONS = ("data.discounts",)


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
    """One test-mode Stripe account's customers and invoices."""

    def __init__(
        self, clock: Callable[[], float], hosted_base: Callable[[], str], search_lag: float = 0.0
    ) -> None:
        self._clock = clock
        self._hosted_base = hosted_base
        self.search_lag = search_lag
        """Seconds before a new invoice shows up in search (Stripe: "under 1 minute"); 0 = at once."""
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self._seq = 0

    def _now(self) -> int:
        return int(self._clock())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ------------------------------------------------------------------------------------- customers

    def create_customer(self, params: dict[str, Any]) -> dict[str, Any]:
        _reject_nonempty(
            params, ("cash_balance", "coupon", "promotion_code", "tax_id_data", "test_clock", "source")
        )
        _check_expand(params, CUSTOMER_EXPANSIONS)
        prefix = params.get("invoice_prefix") or "".join(secrets.choice(_PREFIX_ALPHABET) for _ in range(8))
        if not (
            3 <= len(prefix) <= 12 and prefix.isalnum() and prefix.isascii() and prefix == prefix.upper()
        ):
            raise invalid_request(
                "Invalid invoice_prefix: use 3-12 uppercase letters or digits.", "invoice_prefix"
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
        self.customers[customer.id] = customer
        return customer.to_json()

    def _customer(self, customer_id: str, param: str | None = None) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise resource_missing("customer", customer_id, param)
        return customer

    def retrieve_customer(self, customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
        customer = self._customer(customer_id)
        _check_expand(params, CUSTOMER_EXPANSIONS)
        return customer.to_json()

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
                "discounts",
                "default_tax_rates",
                "shipping_cost",
                "application_fee_amount",
                "transfer_data",
                "on_behalf_of",
                "subscription",
                "account_tax_ids",
            ),
        )
        if params.get("automatic_tax", {}).get("enabled"):
            raise unsupported("automatic_tax[enabled]")
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
        )
        self.invoices[invoice.id] = invoice
        return self._invoice_json(invoice, expand)

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
        if f"{prefix}customer" in expand:
            body["customer"] = invoice.customer.to_json()
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
            discountable=line.get("discountable", True),
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

    def list_lines(self, invoice_id: str, params: dict[str, Any]) -> dict[str, Any]:
        invoice = self._invoice(invoice_id)
        _check_expand(params, LINE_LIST_EXPANSIONS)
        page, has_more = _page(invoice.lines, params, [line.id for line in invoice.lines], "line_item")
        return _list_json([line.to_json() for line in page], has_more, f"/v1/invoices/{invoice.id}/lines")

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
        if invoice.total == 0:  # Stripe marks a zero-total invoice paid as it finalizes it
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
        invoice.amount_paid = invoice.total
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
