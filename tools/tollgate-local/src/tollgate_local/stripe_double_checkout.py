"""Checkout Sessions in the Stripe double: one-off purchases (``mode=payment``) and the events that end them.

A session (``POST /v1/checkout/sessions``) sells ``line_items`` to an existing customer of the double. Each
line has an integer ``quantity`` (at least 1) and an inline ``price_data`` (``currency``, ``unit_amount`` or
``unit_amount_decimal``, ``product_data[name]``); prices and products by id are not emulated. Every line is in
one currency, which becomes the session's. A line's amount is ``unit_amount_decimal x quantity`` rounded
half-up to a whole minor unit, exactly as an invoice line (``stripe_double_state.line_amount``);
``amount_subtotal`` and ``amount_total`` are their sum (no discounts, tax or shipping here, so they are
equal; ``price_data[tax_behavior]`` is accepted and changes nothing). A total of 0 is refused: Stripe wants
at least its minimum charge amount, which the double does not check otherwise.

Lifecycle, as on Stripe: a session starts ``open`` (``payment_status`` ``unpaid``, ``payment_intent`` null,
``url`` on this double's ``/checkout/cs_test_...`` page) and ends ``complete`` or ``expired``, after which
``url`` is null. ``expire`` takes an open session only. An open session past its ``expires_at`` (30 minutes
to 24 hours after creation, 24 hours by default) reads as expired, as Stripe expires it by itself.

Nobody can pay on the double's page. A test (or the demo) plays the customer through the double's Python API:
``double.complete_checkout(id)`` completes it paid (``paid=False``: completed, the payment still pending, as
with a bank debit) and gives it a ``pi_...`` id; ``double.async_payment_succeeded(id)`` settles such a
pending payment. Each returns the Stripe event a webhook endpoint would receive
(``checkout.session.completed``, ``checkout.session.async_payment_succeeded``); the double delivers nothing
itself, so the caller signs and posts it where it likes.

``payment_intent_data[setup_future_usage]`` and ``payment_intent_data[metadata]`` are kept (shown by
``double.checkout_sessions``) and copied onto the session's PaymentIntent, which completing the session
creates (``stripe_double_payment_intents``): ``succeeded``, or ``processing`` while the payment is pending. A
paid session with ``setup_future_usage`` saves the card it was paid with to the customer (``pm_...``, a Visa
ending 4242), where ``GET /v1/customers/{id}/payment_methods`` finds it for later off-session charges.

Not emulated (400 naming the parameter): other modes, ``ui_mode`` other than ``hosted_page``, discounts and
promotion codes, automatic tax and tax rates, shipping, adjustable quantities, optional items, subscriptions,
customer creation (``customer`` is required), Connect, and the line items list
(``/v1/checkout/sessions/{id}/line_items``, ``expand[]=line_items``). ``expand[]=payment_intent`` is
emulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tollgate_local.stripe_double_errors import invalid_request

MIN_LIFETIME = 30 * 60
MAX_LIFETIME = 24 * 60 * 60
"""``expires_at`` must fall 30 minutes to 24 hours after creation; the default is the maximum."""


@dataclass
class CheckoutLine:
    description: str
    quantity: int
    unit_amount_decimal: Decimal
    amount: int
    metadata: dict[str, str]


@dataclass
class CheckoutSession:
    id: str
    created: int
    expires_at: int
    customer_id: str
    currency: str
    lines: list[CheckoutLine]
    page_url: str
    """Where this double serves the session's page; ``url`` shows it while the session is open."""
    metadata: dict[str, str]
    success_url: str | None
    cancel_url: str | None
    client_reference_id: str | None
    setup_future_usage: str | None = None
    payment_intent_metadata: dict[str, str] = field(default_factory=dict)
    status: str = "open"
    payment_status: str = "unpaid"
    payment_intent: str | None = None
    customer_details: dict[str, Any] | None = None

    @property
    def amount_subtotal(self) -> int:
        return sum(line.amount for line in self.lines)

    @property
    def amount_total(self) -> int:
        return self.amount_subtotal

    def expire_if_due(self, now: int) -> None:
        """An open session past ``expires_at`` is expired, as Stripe expires it by itself."""
        if self.status == "open" and now >= self.expires_at:
            self.status = "expired"

    def expire(self) -> None:
        if self.status != "open":
            raise invalid_request(
                'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout Session '
                f"has a status of `{self.status}`."
            )
        self.status = "expired"

    def complete(self, payment_intent: str, customer_details: dict[str, Any], *, paid: bool) -> None:
        """The customer finished Checkout: paid, or (``paid=False``) with an asynchronous payment pending."""
        if self.status != "open":
            raise ValueError(
                f"Checkout Session {self.id} is {self.status}; only an open one can be completed"
            )
        self.status = "complete"
        self.payment_status = "paid" if paid else "unpaid"
        self.payment_intent = payment_intent
        self.customer_details = customer_details

    def settle_async_payment(self) -> None:
        if self.status != "complete" or self.payment_status != "unpaid":
            raise ValueError(
                f"Checkout Session {self.id} is {self.status} with payment_status {self.payment_status}; "
                "only a complete session whose payment is pending (complete_checkout(..., paid=False)) "
                "can settle"
            )
        self.payment_status = "paid"

    def payment_intent_data(self) -> dict[str, Any]:
        """What was sent as ``payment_intent_data`` (shown by ``double.checkout_sessions``, not the API)."""
        return {"metadata": dict(self.payment_intent_metadata), "setup_future_usage": self.setup_future_usage}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": False},
            "after_expiration": None,
            "allow_promotion_codes": None,
            "amount_subtotal": self.amount_subtotal,
            "amount_total": self.amount_total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None, "status": None},
            "billing_address_collection": None,
            "branding_settings": None,
            "cancel_url": self.cancel_url,
            "client_reference_id": self.client_reference_id,
            "client_secret": None,
            "collected_information": None,
            "consent": None,
            "consent_collection": None,
            "created": self.created,
            "currency": self.currency,
            "currency_conversion": None,
            "custom_fields": [],
            "custom_text": {
                "after_submit": None,
                "shipping_address": None,
                "submit": None,
                "terms_of_service_acceptance": None,
            },
            "customer": self.customer_id,
            "customer_account": None,
            "customer_creation": None,
            "customer_details": None if self.customer_details is None else dict(self.customer_details),
            "customer_email": None,
            "discounts": [],
            "excluded_payment_method_types": None,
            "expires_at": self.expires_at,
            "integration_identifier": None,
            "invoice": None,
            "invoice_creation": None,
            "livemode": False,
            "locale": None,
            "managed_payments": None,
            "metadata": dict(self.metadata),
            "mode": "payment",
            "name_collection": None,
            "optional_items": None,
            "origin_context": None,
            "payment_intent": self.payment_intent,
            "payment_link": None,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": None,
            "payment_method_options": {},
            "payment_method_types": ["card"],
            "payment_status": self.payment_status,
            "permissions": None,
            "phone_number_collection": {"enabled": False},
            "presentment_details": None,
            "recovered_from": None,
            "redirect_on_completion": None,
            "return_url": None,
            "saved_payment_method_options": None,
            "setup_intent": None,
            "shipping_address_collection": None,
            "shipping_cost": None,
            "shipping_options": [],
            "status": self.status,
            "submit_type": None,
            "subscription": None,
            "success_url": self.success_url,
            "tax_id_collection": {"enabled": False, "required": "never"},
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            "url": self.page_url if self.status == "open" else None,
            "wallet_options": None,
        }


def checkout_event(
    event_id: str, event_type: str, session: CheckoutSession, created: int, api_version: str
) -> dict[str, Any]:
    """The event Stripe would send a webhook endpoint about ``session`` as it is now."""
    return stripe_event(event_id, event_type, session.to_json(), created, api_version)


def stripe_event(
    event_id: str, event_type: str, data_object: dict[str, Any], created: int, api_version: str
) -> dict[str, Any]:
    """A Stripe event about ``data_object`` as a webhook endpoint receives it (the double sends none itself:
    ``request`` is empty, as for an event no API request caused)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": api_version,
        "created": created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }
