"""Automatic top-ups: a prepaid customer's saved card charged off-session when their balance runs low.

``tollgate credits auto-top-up acme --below 1000 --credits 50000`` sets it (``Customer.auto_top_up``). The
alert function sees the balance cross ``below`` on the table's stream, off the hot path
(``tollgate.alerts.service``), and calls :func:`top_up_once` for that **crossing**: the crossing is named by
the credits the customer had bought when it happened (``bought``), which only a top-up changes, so each
refill makes the next crossing a new one and every replay of the same crossing the same one.

Once per crossing, whatever crashes or duplicates:

1. a marker for the crossing is claimed (``tollgate.dal.alerts.claim``): a second consumer of the same record
   leaves it alone; one that finds a crashed consumer's lease run out takes over;
2. the charge is a PaymentIntent created and confirmed in one call under the idempotency key
   ``tollgate-auto-top-up-{customer}-{crossing}``: sent again (the takeover), Stripe answers with the same
   PaymentIntent, so there are never two charges for one crossing;
3. a succeeded charge adds the credits under the PaymentIntent's id (``add_credits``: once per reference);
   one that needs the customer (``requires_action``) or is still processing adds nothing now: Stripe's
   ``payment_intent.succeeded`` webhook adds them under the same reference later;
4. a refused charge (a declined card, no saved card) is reported as a failure: the alert function publishes
   ``Tollgate Auto Top-up Failed`` and, with ``suspend_on_failure``, suspends the customer (once per crossing:
   the status change is recorded under the crossing's id).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import stripe

from tollgate.accounts.prepaid import add_credits, prepaid_plan, purchase_amount
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AutoTopUp, Customer, CustomerStatus, Plan
from tollgate.domain.money import format_amount
from tollgate.domain.prepaid import (
    AUTO_PURCHASE_KIND,
    METADATA_CREDITS,
    METADATA_CROSSING,
    METADATA_CUSTOMER,
    METADATA_PURCHASE,
    TopUpSource,
)
from tollgate.domain.stripe_limits import max_amount
from tollgate.errors import ConflictError, InvalidInputError, StripeCallError

SUSPENDED_REASON = "auto_top_up_failed"
ATTEMPTS = 3


@dataclass(frozen=True)
class TopUpOutcome:
    customer_id: str
    crossing: str
    credits: int
    amount: int
    currency: str
    payment_intent: str | None  # None: no charge could be made (no saved card)
    status: str  # "succeeded" (credits added), "pending" (the webhook adds them), "failed"
    failure: str | None = None  # Stripe's code (card_declined, ...), or "no_saved_card"

    @property
    def price(self) -> str:
        return format_amount(self.amount, self.currency)


def idempotency_key(customer_id: str, crossing: str) -> str:
    return f"tollgate-auto-top-up-{customer_id}-{crossing}"


def set_auto_top_up(store: TollgateStore, customer_id: str, settings: AutoTopUp | None) -> Customer:
    """Turn ``customer_id``'s automatic top-up on (``settings``) or off (None). ``InvalidInputError`` unless
    the customer is prepaid, linked to Stripe, and the top-up is one Stripe can charge."""
    for _ in range(ATTEMPTS - 1):  # the customer changed meanwhile: read it again
        with contextlib.suppress(ConflictError):
            return _set(store, customer_id, settings)
    return _set(store, customer_id, settings)


def _set(store: TollgateStore, customer_id: str, settings: AutoTopUp | None) -> Customer:
    customer, plan = prepaid_plan(store, customer_id)
    if settings is not None:
        _check(customer, plan, settings)
    if customer.auto_top_up == settings:
        return customer
    return store.update_customer(customer, customer.model_copy(update={"auto_top_up": settings}))


def charge(
    store: TollgateStore, client: stripe.StripeClient, customer_id: str, crossing: str, *, now: datetime
) -> TopUpOutcome:
    """Charge ``customer_id``'s saved card for their automatic top-up of ``crossing`` (idempotent per
    crossing: the same crossing again answers the same PaymentIntent) and add the credits if it succeeded."""
    customer, plan = prepaid_plan(store, customer_id)
    settings = customer.auto_top_up
    if settings is None or not customer.stripe_customer_id:
        raise InvalidInputError(f"customer {customer_id!r} has no automatic top-up")
    amount = purchase_amount(plan, settings.credits)
    outcome = TopUpOutcome(customer_id, crossing, settings.credits, amount, plan.currency, None, "failed")
    try:
        cards = client.v1.customers.payment_methods.list(
            customer.stripe_customer_id, params={"type": "card", "limit": 1}
        )
    except stripe.StripeError as error:
        raise StripeCallError("customers.payment_methods.list", error) from error
    if not cards.data:
        return replace(outcome, failure="no_saved_card")
    params: dict[str, Any] = {
        "amount": amount,
        "currency": plan.currency,
        "customer": customer.stripe_customer_id,
        "payment_method": cards.data[0].id,
        "off_session": True,
        "confirm": True,
        "description": f"{settings.credits:,} API credits ({plan.name}), automatic top-up",
        "metadata": {
            METADATA_PURCHASE: AUTO_PURCHASE_KIND,
            METADATA_CUSTOMER: customer.id,
            METADATA_CREDITS: str(settings.credits),
            METADATA_CROSSING: crossing,
        },
    }
    try:
        intent = client.v1.payment_intents.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": idempotency_key(customer.id, crossing)},
        )
    except stripe.CardError as error:  # declined, or the bank wants the customer: refused off-session
        body: Any = error.json_body or {}
        intent_id = ((body.get("error") or {}).get("payment_intent") or {}).get("id")
        return replace(outcome, payment_intent=intent_id, failure=str(error.code or "card_error"))
    except stripe.StripeError as error:
        raise StripeCallError("payment_intents.create", error) from error
    if intent.status != "succeeded":
        return replace(outcome, payment_intent=str(intent.id), status="pending")
    add_credits(
        store,
        customer_id,
        credits=settings.credits,
        reference=str(intent.id),
        now=now,
        source=TopUpSource.AUTO,
        note=f"automatic top-up below {settings.below:,} credits",
        amount=amount,
        currency=plan.currency,
    )
    return replace(outcome, payment_intent=str(intent.id), status="succeeded")


def suspend_after_failure(store: TollgateStore, outcome: TopUpOutcome, *, now: datetime) -> bool:
    """Suspend the customer for a failed automatic top-up (once per crossing); False: already recorded."""
    return store.set_customer_status(
        outcome.customer_id,
        CustomerStatus.SUSPENDED,
        reason=SUSPENDED_REASON,
        cause=f"automatic top-up failed: {outcome.failure}",
        at=now,
        event_id=f"auto-top-up-{outcome.crossing}",
    )


def _check(customer: Customer, plan: Plan, settings: AutoTopUp) -> None:
    if not customer.stripe_customer_id:
        raise InvalidInputError(f"customer {customer.id!r} has no Stripe customer to charge")
    amount = purchase_amount(plan, settings.credits)
    if amount < 1 or amount > max_amount(plan.currency):
        raise InvalidInputError(
            f"--credits: {settings.credits:,} credits cost {format_amount(amount, plan.currency)}: an "
            "automatic top-up charges between one minor unit and "
            f"{format_amount(max_amount(plan.currency), plan.currency)}"
        )
