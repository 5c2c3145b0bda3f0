"""Adding credits to a prepaid customer's balance: ``tollgate credits add`` (the provider adds them) and
``tollgate credits buy`` (a Stripe Checkout Session the customer pays; the webhook adds them once paid).

The balance rules are in ``tollgate.domain.prepaid``; the draw is the authorizer's
(``tollgate.metering.dynamo.DynamoUsageCounter.draw``).

A purchase is a Checkout Session in payment mode on the customer's Stripe customer: one line, the credits at
the plan's price, the amount computed here (``Decimal``, rounded half-up once) so the page shows exactly what
the statement of account will. The credits, the customer and the purchase id ride in the session's metadata,
which only the provider's secret key can set; ``checkout.session.completed`` (or
``checkout.session.async_payment_succeeded`` for a delayed payment method) with ``payment_status: paid``
adds them under the session's id as reference, so however often Stripe delivers either event, they land once
(``tollgate.billing.webhooks.processing``). The card is saved for later off-session charges
(``setup_future_usage``), which automatic top-ups will use.

A plan's **pack** (``credit_packs``, ``--pack ID``) is bought the same way, for its credits; its validity in
days rides in the metadata too, and its credits expire that long after Stripe says the session is paid (the
event's time: every delivery of it makes the same top-up). Credits added by hand may expire
(``expires_in_days``); automatic top-ups never do. Expiry itself is ``tollgate.expiry.service``'s.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe
from pydantic import ValidationError

from tollgate.dal.store import TollgateStore
from tollgate.domain.models import MAX_PACK_DAYS, Customer, Plan
from tollgate.domain.money import format_amount, line_amount, to_minor_units
from tollgate.domain.prepaid import (
    METADATA_CREDITS,
    METADATA_CUSTOMER,
    METADATA_EXPIRES_IN_DAYS,
    METADATA_PACK,
    METADATA_PURCHASE,
    PURCHASE_KIND,
    Balance,
    CreditPack,
    TopUp,
    TopUpSource,
    expiry_after,
)
from tollgate.domain.stripe_limits import max_amount
from tollgate.errors import InvalidInputError, StripeCallError


def prepaid_plan(store: TollgateStore, customer_id: str) -> tuple[Customer, Plan]:
    """The customer and its current plan, which must be prepaid (``InvalidInputError``)."""
    customer = store.get_customer(customer_id)
    plan = store.get_plan(customer.plan_id, customer.plan_version)
    if not plan.prepaid:
        raise InvalidInputError(
            f"customer {customer_id!r} is on plan {plan.id!r}, billed in arrears: only a prepaid plan "
            "(billing: prepaid) has a balance to add credits to"
        )
    return customer, plan


@dataclass(frozen=True)
class CreditsAdded:
    top_up: TopUp  # as recorded: the first time its reference was added
    added: bool  # False: the reference was added before, and nothing changed now
    balance: Balance


def add_credits(
    store: TollgateStore,
    customer_id: str,
    *,
    credits: int,
    reference: str,
    now: datetime,
    note: str | None = None,
    source: TopUpSource = TopUpSource.MANUAL,
    amount: int | None = None,
    currency: str | None = None,
    expires_in_days: int | None = None,
) -> CreditsAdded:
    """Add ``credits`` to a prepaid customer's balance, once per ``reference`` (a payment's id): sending the
    same reference again changes nothing, and one with other credits is refused. With ``expires_in_days``,
    what is left of them that many days after ``now`` expires (the sweep, ``tollgate.expiry.service``).

    ``NotFoundError``: unknown customer; ``InvalidInputError``: the customer's plan is not prepaid, or the
    top-up is malformed."""
    prepaid_plan(store, customer_id)
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_PACK_DAYS:
        raise InvalidInputError(
            f"--expires-in-days: {expires_in_days}; credits expire 1 to {MAX_PACK_DAYS} days on"
        )
    try:
        top_up = TopUp(
            customer_id=customer_id,
            reference=reference,
            credits=credits,
            source=source,
            note=note,
            amount=amount,
            currency=currency,
            created_at=now,
            expires_at=expiry_after(now, expires_in_days),
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors()
        )
        raise InvalidInputError(problems) from error
    added = store.add_prepaid_credits(top_up)
    if not added:
        top_up = store.get_top_up(customer_id, reference)
        if top_up.credits != credits:
            raise InvalidInputError(
                f"reference {reference!r} already added {top_up.credits:,} credits to {customer_id}, not "
                f"{credits:,}: a reference names one top-up"
            )
    return CreditsAdded(top_up, added, store.read_balance(customer_id))


@dataclass(frozen=True)
class Purchase:
    """A Checkout Session selling credits: the customer pays at ``url``."""

    session_id: str
    url: str
    credits: int
    amount: int  # minor units
    currency: str
    pack: CreditPack | None = None  # the plan's pack it sells, if any

    @property
    def price(self) -> str:
        return format_amount(self.amount, self.currency)


def purchase_amount(plan: Plan, credits: int) -> int:
    """What ``credits`` cost on ``plan``, in minor units: the exact price rounded half-up once."""
    return line_amount(to_minor_units(plan.flat_price, plan.currency), credits)


def plan_pack(plan: Plan, pack_id: str) -> CreditPack:
    """The pack ``pack_id`` of ``plan`` (``InvalidInputError`` naming the plan's packs if it has no such)."""
    for pack in plan.credit_packs:
        if pack.id == pack_id:
            return pack
    sold = ", ".join(pack.id for pack in plan.credit_packs) or "none"
    raise InvalidInputError(f"--pack: plan {plan.id!r} sells no pack {pack_id!r} (its packs: {sold})")


def buy_credits(
    store: TollgateStore,
    client: stripe.StripeClient,
    customer_id: str,
    *,
    credits: int | None = None,
    pack: str | None = None,
    success_url: str | None = None,
    purchase_id: str | None = None,
) -> Purchase:
    """A Stripe Checkout Session for ``credits``, or for the plan's pack ``pack`` (one or the other), at the
    customer's prepaid plan's price; the webhook adds them once Stripe says the session is paid (a pack's
    expiring ``expires_after_days`` after that). ``purchase_id`` names the purchase (default: a new one): the
    same id again within Stripe's 24 hours answers the same session rather than creating a second one."""
    customer, plan = prepaid_plan(store, customer_id)
    if (credits is None) == (pack is None):
        raise InvalidInputError("give --credits N or --pack ID (one of them)")
    chosen = None if pack is None else plan_pack(plan, pack)
    if chosen is not None:
        credits = chosen.credits
    assert credits is not None
    if not customer.stripe_customer_id:
        raise InvalidInputError(
            f"customer {customer_id!r} has no Stripe customer yet: run `tollgate customers create "
            f"{customer_id} ...` again to finish linking it"
        )
    if credits < 1:
        raise InvalidInputError(f"--credits: {credits} credits cannot be bought; buy 1 or more")
    amount = purchase_amount(plan, credits)
    if amount < 1:
        raise InvalidInputError(
            f"--credits: {credits:,} credits at {plan.flat_price} {plan.currency.upper()} cost less than the "
            "smallest amount Stripe charges; buy more"
        )
    if amount > max_amount(plan.currency):
        raise InvalidInputError(
            f"--credits: {credits:,} credits cost {format_amount(amount, plan.currency)}, more than Stripe "
            f"charges at once ({format_amount(max_amount(plan.currency), plan.currency)}); buy fewer"
        )
    purchase = purchase_id or uuid.uuid4().hex
    metadata = {
        METADATA_PURCHASE: PURCHASE_KIND,
        METADATA_CUSTOMER: customer.id,
        METADATA_CREDITS: str(credits),
        "tollgate_purchase_id": purchase,
    }
    name = f"{credits:,} API credits ({plan.name})"
    if chosen is not None:
        metadata[METADATA_PACK] = chosen.id
        if chosen.expires_after_days is not None:
            metadata[METADATA_EXPIRES_IN_DAYS] = str(chosen.expires_after_days)
            name = f"{credits:,} API credits, valid {chosen.expires_after_days:,} days ({plan.name})"
    params: dict[str, Any] = {
        "mode": "payment",
        "customer": customer.stripe_customer_id,
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": plan.currency,
                    "unit_amount": amount,
                    "product_data": {"name": name},
                },
            }
        ],
        "metadata": metadata,
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": metadata},
    }
    if success_url or plan.top_up_url:
        params["success_url"] = success_url or plan.top_up_url
    try:
        session = client.v1.checkout.sessions.create(
            params=params,  # type: ignore[arg-type]
            options={"idempotency_key": f"tollgate-credits-{customer.id}-{purchase}"},
        )
    except stripe.StripeError as error:
        raise StripeCallError("checkout.sessions.create", error) from error
    return Purchase(str(session.id), str(session.url), credits, amount, plan.currency, chosen)
