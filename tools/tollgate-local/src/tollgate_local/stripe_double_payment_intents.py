"""PaymentIntents and saved cards in the Stripe double, as an off-session top-up uses them.

Saved cards. A customer gets a card ``PaymentMethod`` (``pm_...``, ``type`` card, a Visa with a future expiry)
two ways: a paid Checkout Session that asked ``payment_intent_data[setup_future_usage]`` saves the card it was
paid with (last4 ``4242``, ``allow_redisplay`` ``limited``), as Stripe does; and a test attaches one directly
with ``double.attach_card(customer_id, decline=None)`` (``allow_redisplay`` ``unspecified``). ``decline``
names how every off-session charge on that card fails, with the last4 of Stripe's test card for it (see
:data:`DECLINES`: ``card_declined`` ``0002``, ``insufficient_funds`` ``9995``, ``authentication_required``
``3184``, ...). A Checkout Session paid without ``setup_future_usage`` leaves its card unattached: it is on
the PaymentIntent but in no customer's list, and cannot be charged again (Stripe's rule for a used, unattached
PaymentMethod). ``GET /v1/customers/{id}/payment_methods`` lists a customer's cards newest first.

PaymentIntents (``POST /v1/payment_intents``): ``amount`` (an integer from 1 to 99,999,999 minor units;
Stripe's per-currency minimum charge is not checked) and ``currency`` are required; ``customer``,
``payment_method``, ``confirm``, ``off_session``, ``description``, ``metadata``,
``statement_descriptor_suffix``, ``receipt_email`` and ``expand`` (``customer``, ``payment_method``) are
emulated. Every other parameter stripe-python knows is refused with a 400 naming it, never ignored. The rules:

* ``payment_method`` must exist (400 ``resource_missing``) and belong to ``customer``: a card of another
  customer, or one sent without its customer, or an unattached one, is a 400 naming ``payment_method``.
* ``off_session`` needs ``confirm=true`` (Stripe's rule), and ``confirm=true`` is emulated off-session only
  (an on-session confirmation needs the customer: next actions, ``return_url``), so ``confirm=true`` without
  ``off_session`` is refused as not emulated. ``confirm=true`` needs a ``payment_method`` (400 naming it).
* Without ``confirm`` the intent waits: ``requires_confirmation`` with a payment method,
  ``requires_payment_method`` without (the confirm endpoint is not emulated).
* Confirmed off-session, the card is charged at once: ``succeeded`` with ``amount_received`` = ``amount`` and
  a ``latest_charge`` ``ch_...``. A declining card fails the charge instead: the intent is still created
  (retrievable, back in ``requires_payment_method`` with ``payment_method`` null, as Stripe clears it, and
  ``last_payment_error`` set) and the request answers HTTP 402 with a ``card_error`` (``code``,
  ``decline_code``, ``charge``, ``payment_method`` and the ``payment_intent`` itself), which stripe-python
  raises as ``stripe.CardError``. Replaying its ``Idempotency-Key`` replays the same 402.

The intents a paid Checkout Session makes exist too (``succeeded``; ``processing`` while an asynchronous
payment is pending, ``payment_method`` then null: the bank debit is not modelled), with the session's
``payment_intent_data[metadata]`` and ``setup_future_usage``.

``double.payment_intent_event(id)`` returns the event Stripe would send about an intent as it is now:
``payment_intent.succeeded``, ``payment_intent.payment_failed`` or ``payment_intent.processing``. As with the
Checkout events, nothing is delivered and ``request`` is ``{"id": null, "idempotency_key": null}``.

Not emulated: the confirm, capture, cancel, update, list and search endpoints; on-session confirmation and
next actions (3-D Secure); manual capture; Charges (``latest_charge`` is an id that resolves nowhere);
refunds; ``advice_code`` and the network codes of a decline; PaymentMethods by themselves
(``/v1/payment_methods``), attaching and detaching them through the API, and default payment methods.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tollgate_local.stripe_double_checkout import CheckoutSession, stripe_event
from tollgate_local.stripe_double_errors import (
    CardError,
    StripeApiError,
    invalid_request,
    resource_missing,
)

MAX_AMOUNT = 99_999_999
"""Stripe takes at most eight digits of minor units."""
MAX_STATEMENT_DESCRIPTOR = 22
STATEMENT_DESCRIPTOR_FORBIDDEN = frozenset("<>\\'\"*")
CARD_YEARS_VALID = 3
SUCCESS_LAST4 = "4242"
PAYMENT_INTENT_EXPANSIONS = ("customer", "payment_method")
# What a PaymentIntent may be created with; anything else sent is refused as not emulated.
PAYMENT_INTENT_PARAMS = frozenset(
    (
        "amount",
        "confirm",
        "currency",
        "customer",
        "description",
        "expand",
        "metadata",
        "off_session",
        "payment_method",
        "receipt_email",
        "statement_descriptor_suffix",
    )
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

NewId = Callable[[str, int], str]
"""``new_id(prefix, length)``: a Stripe-looking id (``stripe_double_state.new_id``)."""


@dataclass(frozen=True)
class Decline:
    """How a charge on a declining test card fails, as Stripe's test card for it does."""

    code: str
    decline_code: str
    message: str
    last4: str
    param: str | None = None


_DECLINED = "Your card was declined."
DECLINES: dict[str, Decline] = {
    "card_declined": Decline("card_declined", "generic_decline", _DECLINED, "0002"),
    "generic_decline": Decline("card_declined", "generic_decline", _DECLINED, "0002"),
    "insufficient_funds": Decline(
        "card_declined", "insufficient_funds", "Your card has insufficient funds.", "9995"
    ),
    "lost_card": Decline("card_declined", "lost_card", _DECLINED, "9987"),
    "stolen_card": Decline("card_declined", "stolen_card", _DECLINED, "9979"),
    "fraudulent": Decline("card_declined", "fraudulent", _DECLINED, "0019"),
    "expired_card": Decline("expired_card", "expired_card", "Your card has expired.", "0069", "exp_month"),
    "incorrect_cvc": Decline(
        "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "0127", "cvc"
    ),
    "processing_error": Decline(
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
        "0119",
    ),
    "authentication_required": Decline(
        "authentication_required",
        "authentication_required",
        "Your card was declined. This transaction requires authentication.",
        "3184",
    ),
}
"""``double.attach_card(..., decline=NAME)``: the names accepted and what each charge answers. A
``card_declined`` code carries the reason in ``decline_code`` (``insufficient_funds`` is code
``card_declined``, decline code ``insufficient_funds``), as on Stripe."""


# ----------------------------------------------------------------------------------------------- objects


@dataclass
class PaymentMethod:
    id: str
    created: int
    customer_id: str | None
    last4: str
    exp_month: int
    exp_year: int
    allow_redisplay: str
    decline: Decline | None = None

    def to_json(self) -> dict[str, Any]:
        fingerprint = hashlib.sha256(f"visa-{self.last4}".encode()).hexdigest()[:16]
        return {
            "id": self.id,
            "object": "payment_method",
            "allow_redisplay": self.allow_redisplay,
            "billing_details": {
                "address": {
                    "city": None,
                    "country": None,
                    "line1": None,
                    "line2": None,
                    "postal_code": None,
                    "state": None,
                },
                "email": None,
                "name": None,
                "phone": None,
                "tax_id": None,
            },
            "card": {
                "brand": "visa",
                "checks": {
                    "address_line1_check": None,
                    "address_postal_code_check": None,
                    "cvc_check": "pass",
                },
                "country": "US",
                "display_brand": "visa",
                "exp_month": self.exp_month,
                "exp_year": self.exp_year,
                "fingerprint": fingerprint,
                "funding": "credit",
                "generated_from": None,
                "last4": self.last4,
                "networks": {"available": ["visa"], "preferred": None},
                "regulated_status": "unregulated",
                "three_d_secure_usage": {"supported": True},
                "wallet": None,
            },
            "created": self.created,
            "customer": self.customer_id,
            "customer_account": None,
            "livemode": False,
            "metadata": {},
            "type": "card",
        }


@dataclass
class PaymentIntent:
    id: str
    created: int
    amount: int
    currency: str
    customer_id: str | None
    metadata: dict[str, str]
    description: str | None = None
    receipt_email: str | None = None
    statement_descriptor_suffix: str | None = None
    setup_future_usage: str | None = None
    automatic_payment_methods: bool = True
    status: str = "requires_payment_method"
    payment_method_id: str | None = None
    amount_received: int = 0
    latest_charge: str | None = None
    last_payment_error: dict[str, Any] | None = None
    client_secret: str = ""

    def to_json(self) -> dict[str, Any]:
        automatic = {"allow_redirects": "always", "enabled": True} if self.automatic_payment_methods else None
        return {
            "id": self.id,
            "object": "payment_intent",
            "allowed_payment_method_types": None,
            "amount": self.amount,
            "amount_capturable": 0,
            "amount_details": {"tip": {}},
            "amount_received": self.amount_received,
            "application": None,
            "application_fee_amount": None,
            "automatic_payment_methods": automatic,
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer_id,
            "customer_account": None,
            "description": self.description,
            "excluded_payment_method_types": None,
            "hooks": None,
            "last_payment_error": None if self.last_payment_error is None else dict(self.last_payment_error),
            "latest_charge": self.latest_charge,
            "livemode": False,
            "managed_payments": None,
            "metadata": dict(self.metadata),
            "next_action": None,
            "on_behalf_of": None,
            "payment_details": None,
            "payment_method": self.payment_method_id,
            "payment_method_configuration_details": None,
            "payment_method_options": {
                "card": {
                    "installments": None,
                    "mandate_options": None,
                    "network": None,
                    "request_three_d_secure": "automatic",
                }
            },
            "payment_method_types": ["card"],
            "payment_record": None,
            "presentment_details": None,
            "processing": None,
            "receipt_email": self.receipt_email,
            "review": None,
            "setup_future_usage": self.setup_future_usage,
            "shipping": None,
            "source": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": self.statement_descriptor_suffix,
            "status": self.status,
            "transfer_data": None,
            "transfer_group": None,
        }

    def event_type(self) -> str:
        """The event Stripe sends about the intent as it is now; ``ValueError`` if it would send none."""
        if self.status == "succeeded":
            return "payment_intent.succeeded"
        if self.status == "processing":
            return "payment_intent.processing"
        if self.status == "requires_payment_method" and self.last_payment_error is not None:
            return "payment_intent.payment_failed"
        raise ValueError(
            f"PaymentIntent {self.id} is {self.status} and was never charged: Stripe sends no payment event "
            "about it (payment_intent.created is not emulated)"
        )


# ----------------------------------------------------------------------------------------------- rules


def reject_unsupported(params: dict[str, Any]) -> None:
    """A 400 naming the first parameter stripe-python knows that the double does not emulate."""
    for name in params:
        if name not in PAYMENT_INTENT_PARAMS:
            raise invalid_request(
                f"The Stripe double does not emulate {name} on PaymentIntents; leave it out of local "
                "requests (emulated: " + ", ".join(sorted(PAYMENT_INTENT_PARAMS)) + ").",
                name,
            )


def _check_amount(amount: int) -> None:
    if amount < 1:
        raise invalid_request(
            "This value must be greater than or equal to 1.", "amount", code="parameter_invalid_integer"
        )
    if amount > MAX_AMOUNT:
        raise invalid_request(
            f"Amount must be no more than {MAX_AMOUNT:,} (eight digits of the currency's smallest unit).",
            "amount",
            code="amount_too_large",
        )


def _check_descriptor_suffix(suffix: str | None) -> None:
    if suffix is None:
        return
    if len(suffix) > MAX_STATEMENT_DESCRIPTOR:
        raise invalid_request(
            f"The statement descriptor suffix must be at most {MAX_STATEMENT_DESCRIPTOR} characters.",
            "statement_descriptor_suffix",
        )
    if STATEMENT_DESCRIPTOR_FORBIDDEN & set(suffix):
        raise invalid_request(
            "The statement descriptor suffix may not contain any of < > \\ ' \" *.",
            "statement_descriptor_suffix",
        )


def _check_email(email: str | None) -> None:
    if email is not None and not _EMAIL.match(email):
        raise invalid_request(f"Invalid email address: {email}", "receipt_email", code="email_invalid")


def _is_off_session(value: bool | str | None) -> bool:
    """``off_session`` as sent: ``true``, ``one_off`` or ``recurring`` (a bool or one of those strings)."""
    return value is not None and value is not False


class Payments:
    """One account's payment methods and PaymentIntents (held by ``StripeState``; callers hold the lock)."""

    def __init__(self, now: Callable[[], int], new_id: NewId) -> None:
        self._now = now
        self._new_id = new_id
        self.methods: dict[str, PaymentMethod] = {}
        self.intents: dict[str, PaymentIntent] = {}

    # ------------------------------------------------------------------------------------- payment methods

    def add_card(
        self, customer_id: str | None, *, decline: str | None = None, allow_redisplay: str = "unspecified"
    ) -> PaymentMethod:
        """A new Visa card attached to ``customer_id`` (None: unattached); ``ValueError``: unknown decline."""
        failure = None
        if decline is not None:
            failure = DECLINES.get(decline)
            if failure is None:
                raise ValueError(
                    f"unknown decline {decline!r}; the double knows {', '.join(sorted(DECLINES))}"
                )
        now = self._now()
        today = time.gmtime(now)
        method = PaymentMethod(
            id=self._new_id("pm", 24),
            created=now,
            customer_id=customer_id,
            last4=SUCCESS_LAST4 if failure is None else failure.last4,
            exp_month=today.tm_mon,
            exp_year=today.tm_year + CARD_YEARS_VALID,
            allow_redisplay=allow_redisplay,
            decline=failure,
        )
        self.methods[method.id] = method
        return method

    def methods_of(
        self, customer_id: str, method_type: str | None = None, allow_redisplay: str | None = None
    ) -> list[PaymentMethod]:
        """The customer's payment methods, newest first (all cards: another ``type`` finds none)."""
        return [
            method
            for method in reversed(self.methods.values())
            if method.customer_id == customer_id
            and method_type in (None, "card")
            and allow_redisplay in (None, method.allow_redisplay)
        ]

    def customer_method(self, customer_id: str, method_id: str) -> PaymentMethod:
        method = self.methods.get(method_id)
        if method is None or method.customer_id != customer_id:
            raise resource_missing("PaymentMethod", method_id)
        return method

    def _usable_method(self, method_id: str, customer_id: str | None) -> PaymentMethod:
        method = self.methods.get(method_id)
        if method is None:
            raise resource_missing("PaymentMethod", method_id, "payment_method")
        if method.customer_id is None:
            raise invalid_request(
                "The provided PaymentMethod was previously used with a PaymentIntent without Customer "
                "attachment, shared with a connected account without Customer attachment, or was detached "
                "from a Customer. It may not be used again. To use a PaymentMethod multiple times, you must "
                "attach it to a Customer first.",
                "payment_method",
            )
        if customer_id is None:
            raise invalid_request(
                f"The provided PaymentMethod {method.id} is attached to a Customer: pass that Customer "
                f"({method.customer_id}) as `customer` to use it.",
                "payment_method",
            )
        if method.customer_id != customer_id:
            raise invalid_request(
                f"The provided PaymentMethod {method.id} belongs to another Customer than {customer_id}; "
                "payment methods attached to other Customers cannot be used with this PaymentIntent.",
                "payment_method",
            )
        return method

    # ------------------------------------------------------------------------------------- payment intents

    def intent(self, intent_id: str) -> PaymentIntent:
        intent = self.intents.get(intent_id)
        if intent is None:
            raise resource_missing("payment_intent", intent_id)
        return intent

    def _client_secret(self, intent_id: str) -> str:
        return f"{intent_id}_{self._new_id('secret', 25)}"

    def create_intent(
        self, params: dict[str, Any], *, currency: str, customer_id: str | None, metadata: dict[str, str]
    ) -> PaymentIntent:
        """``POST /v1/payment_intents`` with ``params`` already checked against the TypedDict, unsupported
        ones refused (:func:`reject_unsupported`), currency, customer and metadata checked by the caller.
        Raises :class:`CardError` (402) after storing the intent when a confirmed charge is declined."""
        _check_amount(params["amount"])
        _check_descriptor_suffix(params.get("statement_descriptor_suffix"))
        _check_email(params.get("receipt_email"))
        confirm = params.get("confirm", False)
        off_session = _is_off_session(params.get("off_session"))
        if "off_session" in params and not confirm:
            raise invalid_request(
                "The `off_session` parameter can only be used when `confirm=true`.", "off_session"
            )
        if confirm and not off_session:
            raise invalid_request(
                "The Stripe double emulates confirming a PaymentIntent off-session only (confirm=true with "
                "off_session=true): an on-session confirmation needs the customer (next actions, "
                "return_url).",
                "confirm",
            )
        method = None
        if "payment_method" in params:
            method = self._usable_method(params["payment_method"], customer_id)
        elif confirm:
            raise invalid_request(
                "You cannot confirm this PaymentIntent because it's missing a payment method. You can either "
                "update the PaymentIntent with a payment method and then confirm it again, or confirm it "
                "again directly with a payment method.",
                "payment_method",
                code="payment_intent_unexpected_state",
            )
        intent_id = self._new_id("pi", 24)
        intent = PaymentIntent(
            id=intent_id,
            created=self._now(),
            client_secret=self._client_secret(intent_id),
            amount=params["amount"],
            currency=currency,
            customer_id=customer_id,
            metadata=metadata,
            description=params.get("description"),
            receipt_email=params.get("receipt_email"),
            statement_descriptor_suffix=params.get("statement_descriptor_suffix"),
            status="requires_payment_method" if method is None else "requires_confirmation",
            payment_method_id=None if method is None else method.id,
        )
        self.intents[intent.id] = intent
        if confirm and method is not None:
            self._charge(intent, method)
        return intent

    def _charge(self, intent: PaymentIntent, method: PaymentMethod) -> None:
        """Charge the card off-session: ``succeeded``, or declined (stored, then a 402 ``CardError``)."""
        intent.latest_charge = self._new_id("ch", 24)
        decline = method.decline
        if decline is None:
            intent.status = "succeeded"
            intent.amount_received = intent.amount
            return
        error = StripeApiError(
            402, decline.message, error_type="card_error", param=decline.param, code=decline.code
        ).body()["error"]
        intent.last_payment_error = {
            **error,
            "charge": intent.latest_charge,
            "decline_code": decline.decline_code,
            "payment_method": method.to_json(),
        }
        intent.status = "requires_payment_method"
        intent.payment_method_id = None  # Stripe clears it: last_payment_error.payment_method keeps it
        raise CardError(
            decline.message,
            code=decline.code,
            param=decline.param,
            details={
                "charge": intent.latest_charge,
                "decline_code": decline.decline_code,
                "payment_intent": intent.to_json(),
                "payment_method": method.to_json(),
            },
        )

    def checkout_payment(self, intent_id: str, session: CheckoutSession, *, paid: bool) -> PaymentIntent:
        """The PaymentIntent of a Checkout Session just completed: ``succeeded`` with the card it was paid
        with (saved to the customer when ``setup_future_usage`` was asked), or ``processing`` if unpaid."""
        intent = PaymentIntent(
            id=intent_id,
            created=self._now(),
            amount=session.amount_total,
            currency=session.currency,
            customer_id=session.customer_id,
            metadata=dict(session.payment_intent_metadata),
            setup_future_usage=session.setup_future_usage,
            automatic_payment_methods=False,
            status="processing",
            latest_charge=self._new_id("ch", 24),
            client_secret=self._client_secret(intent_id),
        )
        if paid:
            saved = session.setup_future_usage is not None
            card = self.add_card(
                session.customer_id if saved else None, allow_redisplay="limited" if saved else "unspecified"
            )
            intent.payment_method_id = card.id
            intent.status = "succeeded"
            intent.amount_received = intent.amount
        self.intents[intent.id] = intent
        return intent

    def settle(self, intent_id: str) -> None:
        """A pending (``processing``) Checkout payment succeeded."""
        intent = self.intent(intent_id)
        intent.status = "succeeded"
        intent.amount_received = intent.amount


def payment_intent_event(
    event_id: str, intent: PaymentIntent, created: int, api_version: str
) -> dict[str, Any]:
    """The event Stripe would send a webhook endpoint about ``intent`` as it is now."""
    return stripe_event(event_id, intent.event_type(), intent.to_json(), created, api_version)
