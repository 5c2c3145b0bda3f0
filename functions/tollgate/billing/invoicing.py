"""The Stripe side of a period close, behind a small interface: :class:`StripeInvoicing`.

The close logic sees plain values (:class:`InvoiceDraft`, :class:`InvoiceLine`, :class:`StripeInvoice`) and
one error type (``tollgate.errors.StripeCallError``); :class:`StripeClientInvoicing` is the real
implementation over the official ``stripe.StripeClient`` (pointed at Stripe, or at the offline Stripe double).

Per invoice there are three calls that write (four for a customer with a discount due), each with an
``Idempotency-Key`` derived from the customer, the period and the step (:func:`idempotency_key`):

1. ``POST /v1/invoices``: a draft (``auto_advance`` false, so Stripe leaves it alone while lines are added),
   tagged with ``metadata`` ``tollgate_customer_id`` and ``tollgate_period`` so it can be found again, with
   ``automatic_tax[enabled]`` when the plan has Stripe Tax;
2. ``POST /v1/invoices/{id}/add_lines``: every line of the statement in one call (all or nothing), each with
   the plan's ``tax_behavior``; the answer expands the customer (its metadata says which coupon is due) and
   the invoice's discounts;
3. ``POST /v1/invoices/{id}`` with ``discounts[0][coupon]``, only when a coupon is due
   (``tollgate.domain.discounts``): Stripe computes what it takes off;
4. ``POST /v1/invoices/{id}/finalize``: with ``auto_advance`` true, so Stripe then collects the invoice
   (charges the saved payment method, or emails it for ``send_invoice``).

Reads: ``GET /v1/invoices/search`` on the metadata (falling back to listing the Stripe customer's invoices
when search is unavailable) and ``GET /v1/invoices/{id}`` (with the customer and discounts expanded, so a
re-run can decide a draft's discount).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import stripe
from stripe.params import (
    InvoiceAddLinesParams,
    InvoiceAddLinesParamsLine,
    InvoiceAddLinesParamsLinePriceData,
    InvoiceCreateParams,
    InvoiceListParams,
    InvoiceRetrieveParams,
    InvoiceSearchParams,
    InvoiceUpdateParams,
)

from tollgate.domain.discounts import coupon_due
from tollgate.domain.models import CollectionMethod
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.rating import LineKind, Statement
from tollgate.errors import StripeCallError

METADATA_CUSTOMER = "tollgate_customer_id"
METADATA_PERIOD = "tollgate_period"
METADATA_LINE_KIND = "tollgate_line_kind"
METADATA_THRESHOLD = "tollgate_threshold_invoice"  # its number within the period (absent: the close's)
PRODUCT_NAMES = {
    LineKind.BASE_FEE: "Base fee",
    LineKind.USAGE: "API usage",
    LineKind.MINIMUM: "Minimum commitment",
    LineKind.FREE_CREDITS: "Free credits",
    LineKind.ADJUSTMENT: "Late API usage",
    LineKind.CARRIED: "API usage carried over",
    LineKind.PREPAID: "API usage (prepaid)",
    LineKind.THRESHOLD: "API usage so far",
    LineKind.INVOICED_EARLIER: "API usage invoiced during the period",
}
T = TypeVar("T")
LOG = logging.getLogger(__name__)
# What a draft's discount and tax are decided by: the customer (its metadata, and whether Stripe Tax can
# locate it) and the invoice's discounts.
EXPAND_DETAILS = ["customer", "customer.tax", "discounts"]


def idempotency_key(customer_id: str, period: str, step: str, part: int = 0) -> str:
    """``tollgate:acme:2026-10:create-invoice``: the same step of the same close always sends the same key;
    a threshold invoice's are its own (``tollgate:acme:2026-10#t2:create-invoice``)."""
    invoice = f"{period}#t{part}" if part else period
    return f"tollgate:{customer_id}:{invoice}:{step}"


@dataclass(frozen=True)
class InvoiceDraft:
    """What ``invoices.create`` is sent."""

    stripe_customer_id: str
    currency: str
    collection_method: CollectionMethod
    days_until_due: int | None
    description: str
    metadata: Mapping[str, str]
    automatic_tax: bool = False  # Stripe Tax computes the tax (the plan has ``tax``)


@dataclass(frozen=True)
class InvoiceLine:
    """One line of ``invoices.add_lines``: an inline price (minor units, exact) times an integer quantity; a
    negative line (what threshold invoices billed, taken off) is sent as an ``amount``, since a price cannot
    be negative."""

    product_name: str
    description: str
    currency: str
    unit_amount_decimal: Decimal
    quantity: int
    period_start: int  # unix seconds, inclusive
    period_end: int  # unix seconds, inclusive (Stripe's line period end is inclusive)
    metadata: Mapping[str, str] = field(default_factory=dict)
    tax_behavior: str | None = None  # exclusive or inclusive (the plan's ``tax``); None: no tax


@dataclass(frozen=True)
class StripeInvoice:
    """The parts of a Stripe invoice the close looks at.

    ``total`` is what the customer pays: after discounts, with exclusive tax added. ``subtotal`` is the sum
    of the lines: before discounts and before exclusive tax (inclusive tax is inside the lines), which is
    what the statement's total is compared with; None only for an invoice made by hand without one (then
    ``total``). ``customer_metadata`` is None when Stripe's answer did not expand the customer.
    """

    id: str
    stripe_customer_id: str
    status: str  # draft, open, paid, uncollectible, void
    total: int
    amount_due: int
    hosted_invoice_url: str | None
    has_lines: bool
    metadata: Mapping[str, str]
    subtotal: int | None = None
    total_discount: int = 0  # what the invoice's discounts take off
    total_tax: int = 0  # exclusive and inclusive tax together
    coupons: tuple[str, ...] = ()  # the coupons of the invoice's discounts (when they were expanded)
    customer_metadata: Mapping[str, str] | None = field(default_factory=dict)
    automatic_tax: bool = False  # Stripe Tax computes this invoice's tax
    customer_tax: str | None = None  # the customer's tax.automatic_tax: supported, unrecognized_location...

    @property
    def subtotal_before_tax(self) -> int:
        """The lines' sum, before discounts and exclusive tax: what the statement's total must equal."""
        return self.total if self.subtotal is None else self.subtotal

    def coupon_due(self, period: str) -> str | None:
        """The coupon the customer's discount puts on the invoice of ``period`` (``customer_metadata`` must
        be known)."""
        return coupon_due(self.customer_metadata, period)


class StripeInvoicing(Protocol):
    def find_invoices(self, *, stripe_customer_id: str, customer_id: str, period: str) -> list[StripeInvoice]:
        """Every invoice Stripe holds for this customer-period (by metadata), whatever its status."""
        ...

    def get_invoice(self, invoice_id: str) -> StripeInvoice:
        """The invoice with its customer (``customer_metadata``) and discounts (``coupons``) expanded."""
        ...

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice: ...

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        """Answers with the customer and discounts expanded, as :meth:`get_invoice`."""
        ...

    def apply_discount(self, invoice_id: str, coupon: str, *, idempotency_key: str) -> StripeInvoice:
        """Redeem ``coupon`` onto a draft (its only discount); Stripe computes the amount."""
        ...

    def finalize(self, invoice_id: str, *, idempotency_key: str) -> StripeInvoice: ...


def invoice_metadata(customer_id: str, period: str, part: int = 0) -> dict[str, str]:
    metadata = {METADATA_CUSTOMER: customer_id, METADATA_PERIOD: period}
    if part:
        metadata[METADATA_THRESHOLD] = str(part)
    return metadata


def threshold_part(metadata: Mapping[str, str]) -> int | None:
    """Which of a period's invoices one with ``metadata`` is: 0 the close's, n its n-th threshold invoice;
    None when the metadata says neither (not written by Tollgate)."""
    part = metadata.get(METADATA_THRESHOLD, "0")
    return int(part) if part.isascii() and part.isdigit() else None


def invoice_lines(statement: Statement, *, tax_behavior: str | None = None) -> list[InvoiceLine]:
    """The statement's lines as Stripe lines; an adjustment carries the bounds of the period it bills for.
    ``tax_behavior``: whether the prices are before tax (``exclusive``) or include it (``inclusive``)."""
    lines = []
    for line in statement.lines:
        start = int(period_start(line.period).timestamp())
        end = int(period_end(line.period).timestamp()) - 1  # the last second of the period
        lines.append(
            InvoiceLine(
                product_name=PRODUCT_NAMES[line.kind],
                description=line.description,
                currency=statement.currency,
                unit_amount_decimal=line.unit_amount,
                quantity=line.quantity,
                period_start=start,
                period_end=end,
                metadata={METADATA_LINE_KIND: line.kind.value, METADATA_PERIOD: line.period},
                tax_behavior=tax_behavior,
            )
        )
    return lines


def search_query(customer_id: str, period: str) -> str:
    """Stripe search for the invoices of one customer-period (ids are ``[a-z0-9_-]``: no quoting issue)."""
    return f"metadata['{METADATA_CUSTOMER}']:'{customer_id}' AND metadata['{METADATA_PERIOD}']:'{period}'"


class PlainDecimal(Decimal):
    """A ``Decimal`` that prints as plain digits.

    stripe-python form-encodes a ``Decimal`` parameter as ``str(value)``, which is ``1E-7`` for 0.0000001 and
    ``5E+2`` for a ``Decimal("5").scaleb(2)``; Stripe documents ``unit_amount_decimal`` as a decimal string
    with at most 12 decimal places, so send ``0.0000001`` and ``500``.
    """

    def __str__(self) -> str:
        return format(self, "f")


def plain_decimal(value: Decimal) -> PlainDecimal:
    return PlainDecimal(format(value, "f"))


class StripeClientInvoicing:
    """:class:`StripeInvoicing` over a ``stripe.StripeClient`` (see ``tollgate.billing.stripe_client``)."""

    def __init__(self, client: stripe.StripeClient) -> None:
        self._invoices = client.v1.invoices
        self.search_unavailable = False  # set after Stripe refused a search: list from then on

    def find_invoices(self, *, stripe_customer_id: str, customer_id: str, period: str) -> list[StripeInvoice]:
        wanted = invoice_metadata(customer_id, period)
        if not self.search_unavailable:
            params: InvoiceSearchParams = {"query": search_query(customer_id, period), "limit": 10}
            try:
                found = self._invoices.search(params=params).auto_paging_iter()
                return [_invoice(invoice) for invoice in found]
            except (stripe.InvalidRequestError, stripe.PermissionError) as error:
                # Search is not offered to every account (e.g. not in India): list from now on.
                LOG.warning("invoice search refused (%s); listing customers' invoices from now on", error)
                self.search_unavailable = True
            except stripe.StripeError as error:  # down for a moment: the listing answers the same question
                LOG.warning("invoice search failed (%s); listing the customer's invoices instead", error)
        listing: InvoiceListParams = {
            "customer": stripe_customer_id,
            "created": {"gte": int(period_start(period).timestamp())},
            "limit": 100,
        }
        invoices = self._call(
            "invoices.list", lambda: list(self._invoices.list(params=listing).auto_paging_iter())
        )
        found_invoices = [_invoice(invoice) for invoice in invoices]
        return [
            invoice
            for invoice in found_invoices
            if all(invoice.metadata.get(k) == v for k, v in wanted.items())
        ]

    def get_invoice(self, invoice_id: str) -> StripeInvoice:
        params: InvoiceRetrieveParams = {"expand": EXPAND_DETAILS}
        return _invoice(
            self._call("invoices.retrieve", lambda: self._invoices.retrieve(invoice_id, params=params))
        )

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice:
        params: InvoiceCreateParams = {
            "customer": draft.stripe_customer_id,
            "currency": draft.currency,
            "collection_method": draft.collection_method.value,
            "auto_advance": False,
            "pending_invoice_items_behavior": "exclude",
            "description": draft.description,
            "metadata": dict(draft.metadata),
        }
        if draft.days_until_due is not None:
            params["days_until_due"] = draft.days_until_due
        if draft.automatic_tax:
            params["automatic_tax"] = {"enabled": True}
        return _invoice(
            self._call(
                "invoices.create",
                lambda: self._invoices.create(params=params, options={"idempotency_key": idempotency_key}),
            )
        )

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        params: InvoiceAddLinesParams = {
            "lines": [_line_params(line) for line in lines],
            "expand": EXPAND_DETAILS,
        }
        return _invoice(
            self._call(
                "invoices.add_lines",
                lambda: self._invoices.add_lines(
                    invoice_id, params=params, options={"idempotency_key": idempotency_key}
                ),
            )
        )

    def apply_discount(self, invoice_id: str, coupon: str, *, idempotency_key: str) -> StripeInvoice:
        params: InvoiceUpdateParams = {"discounts": [{"coupon": coupon}], "expand": EXPAND_DETAILS}
        return _invoice(
            self._call(
                "invoices.update",
                lambda: self._invoices.update(
                    invoice_id, params=params, options={"idempotency_key": idempotency_key}
                ),
            )
        )

    def finalize(self, invoice_id: str, *, idempotency_key: str) -> StripeInvoice:
        return _invoice(
            self._call(
                "invoices.finalize",
                lambda: self._invoices.finalize_invoice(
                    invoice_id, params={"auto_advance": True}, options={"idempotency_key": idempotency_key}
                ),
            )
        )

    @staticmethod
    def _call(operation: str, request: Callable[[], T]) -> T:
        try:
            return request()
        except stripe.StripeError as error:
            raise StripeCallError(operation, error) from error


def _line_params(line: InvoiceLine) -> InvoiceAddLinesParamsLine:
    if line.unit_amount_decimal < 0:  # a credit: Stripe prices are never negative, amounts may be
        if line.quantity != 1 or line.unit_amount_decimal != line.unit_amount_decimal.to_integral_value():
            raise ValueError("a negative line is one whole amount in the minor unit")
        return {
            "amount": int(line.unit_amount_decimal),
            # A coupon takes its share off the period's usage in full: threshold invoices carry none.
            "discountable": False,
            "period": {"start": line.period_start, "end": line.period_end},
            "description": line.description,
            "metadata": dict(line.metadata),
        }
    price: InvoiceAddLinesParamsLinePriceData = {
        "currency": line.currency,
        "product_data": {"name": line.product_name},
        "unit_amount_decimal": plain_decimal(line.unit_amount_decimal),
    }
    if line.tax_behavior is not None:
        price["tax_behavior"] = "inclusive" if line.tax_behavior == "inclusive" else "exclusive"
    return {
        "price_data": price,
        # The pinned API version deprecates the integer ``quantity`` (since 2026-03-25.dahlia)
        "quantity_decimal": plain_decimal(Decimal(line.quantity)),
        "period": {"start": line.period_start, "end": line.period_end},
        "description": line.description,
        "metadata": dict(line.metadata),
    }


def _invoice(invoice: Any) -> StripeInvoice:
    """A ``stripe.Invoice`` (a ``StripeObject``, not a dict) -> :class:`StripeInvoice`. Fields other than the
    essentials are read when present (a test's hand-made invoice may lack them)."""
    customer = invoice.customer
    lines = getattr(invoice, "lines", None)
    metadata = getattr(invoice, "metadata", None)
    subtotal = getattr(invoice, "subtotal", None)
    discounts = getattr(invoice, "discounts", None) or []
    return StripeInvoice(
        id=invoice.id,
        stripe_customer_id=customer if isinstance(customer, str) else customer.id,
        status=invoice.status,
        total=int(invoice.total),
        amount_due=int(invoice.amount_due),
        hosted_invoice_url=invoice.hosted_invoice_url,
        has_lines=lines is not None and len(lines.data) > 0,
        metadata=_strings(metadata),
        subtotal=None if subtotal is None else int(subtotal),
        total_discount=sum(int(d.amount) for d in getattr(invoice, "total_discount_amounts", None) or []),
        total_tax=sum(int(t.amount) for t in getattr(invoice, "total_taxes", None) or []),
        coupons=tuple(_coupon_of(discount) for discount in discounts if not isinstance(discount, str)),
        customer_metadata=None
        if isinstance(customer, str)
        else _strings(getattr(customer, "metadata", None)),
        automatic_tax=bool(getattr(getattr(invoice, "automatic_tax", None), "enabled", False)),
        customer_tax=None if isinstance(customer, str) else _customer_tax(customer),
    )


def _customer_tax(customer: Any) -> str | None:
    tax = getattr(customer, "tax", None)
    status = getattr(tax, "automatic_tax", None) if tax is not None else None
    return None if status is None else str(status)


def _strings(metadata: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (metadata.to_dict() if metadata is not None else {}).items()}


def _coupon_of(discount: Any) -> str:
    """An expanded discount's coupon id (``source.coupon`` since 2025-09-30.clover; a string or a coupon)."""
    coupon = discount.source.coupon
    return coupon if isinstance(coupon, str) else str(coupon.id)
