"""Prepaid credits: what a customer has bought, and what is left of it.

A prepaid plan (``billing: prepaid``) sells credits at its ``price_per_credit``. Each addition to a
customer's balance is a :class:`TopUp` named by a reference (a Stripe payment, a bank transfer's id): the
store adds it in the same transaction that records it, on the condition that the reference is new, so it
lands exactly once however often it is sent. Every request then draws its credits from the balance in the
write that counts it (``tollgate.metering.dynamo.DynamoUsageCounter.draw``): the balance never goes below
zero, and what was drawn in a period is on its statement as a line of amount 0 (paid when bought).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from tollgate.domain.models import Identifier

DAY_SECONDS = 86_400
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"

# A Checkout Session selling credits says so in its metadata (set with the provider's secret key only).
METADATA_PURCHASE = "tollgate_purchase"
PURCHASE_KIND = "prepaid_credits"
METADATA_CUSTOMER = "tollgate_customer_id"
METADATA_CREDITS = "tollgate_credits"
AUTO_PURCHASE_KIND = "auto_top_up"  # an automatic top-up's PaymentIntent (tollgate.accounts.auto_top_up)
METADATA_CROSSING = "tollgate_crossing"


class TopUpSource(StrEnum):
    MANUAL = "manual"  # added by the provider (`tollgate credits add`): a bank transfer, a goodwill gesture
    CHECKOUT = (
        "checkout"  # bought through a Stripe Checkout Session (`tollgate credits buy`), once it is paid
    )
    AUTO = "auto_top_up"  # charged off-session to the saved card when the balance ran low


class TopUp(BaseModel):
    """Credits added to a customer's prepaid balance, once per ``reference``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: Identifier
    reference: Annotated[str, Field(pattern=REFERENCE_PATTERN)]
    credits: Annotated[int, Field(gt=0, le=10**15)]
    source: TopUpSource = TopUpSource.MANUAL
    note: Annotated[str, Field(max_length=500)] | None = None
    amount: Annotated[int, Field(ge=0)] | None = None  # what was paid, in the minor unit (a purchase)
    currency: Annotated[str, Field(pattern=r"^[a-z]{3}$")] | None = None
    created_at: datetime


class Balance(BaseModel):
    """A customer's prepaid balance as the wallet holds it."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    credits: int = 0  # what requests can still draw
    bought: int = 0  # every credit ever added

    @property
    def drawn(self) -> int:
        return self.bought - self.credits


def purchase_top_up(session: dict[str, Any], at: datetime) -> TopUp | None:
    """The top-up a paid Checkout Session selling credits makes (its id the reference), or None for a session
    that does not sell Tollgate credits. ``ValueError`` for one whose metadata is not what Tollgate wrote."""
    metadata = session.get("metadata") or {}
    if metadata.get(METADATA_PURCHASE) != PURCHASE_KIND:
        return None
    credits = str(metadata.get(METADATA_CREDITS, ""))
    if not (credits.isascii() and credits.isdigit()):
        raise ValueError(
            f"checkout session {session.get('id')}: {METADATA_CREDITS} is not a number of credits"
        )
    return TopUp(
        customer_id=str(metadata.get(METADATA_CUSTOMER, "")),
        reference=str(session.get("id", "")),
        credits=int(credits),
        source=TopUpSource.CHECKOUT,
        amount=session.get("amount_total"),
        currency=session.get("currency"),
        created_at=at,
    )


def auto_top_up_payment(intent: dict[str, Any], at: datetime) -> TopUp | None:
    """The top-up a succeeded automatic top-up's PaymentIntent makes (its id the reference), or None for a
    PaymentIntent that is not one. ``ValueError`` for one whose metadata is not what Tollgate wrote."""
    metadata = intent.get("metadata") or {}
    if metadata.get(METADATA_PURCHASE) != AUTO_PURCHASE_KIND:
        return None
    credits = str(metadata.get(METADATA_CREDITS, ""))
    if not (credits.isascii() and credits.isdigit()):
        raise ValueError(f"payment intent {intent.get('id')}: {METADATA_CREDITS} is not a number of credits")
    return TopUp(
        customer_id=str(metadata.get(METADATA_CUSTOMER, "")),
        reference=str(intent.get("id", "")),
        credits=int(credits),
        source=TopUpSource.AUTO,
        note="automatic top-up",
        amount=intent.get("amount_received") or intent.get("amount"),
        currency=intent.get("currency"),
        created_at=at,
    )


@dataclass(frozen=True)
class BurnRate:
    """How fast a balance is drawn, and when it runs out at that pace."""

    credits_per_day: int  # rounded down
    runs_out_at: datetime | None  # None: nothing drawn yet, so never at this pace


def burn_rate(balance: int, drawn: int, since: datetime, now: datetime) -> BurnRate:
    """The pace of ``drawn`` credits drawn from ``since`` to ``now`` and when ``balance`` runs out at it."""
    seconds = int((now - since).total_seconds())
    if drawn <= 0 or seconds <= 0:
        return BurnRate(0, None)
    per_day = drawn * DAY_SECONDS // seconds
    left = max(0, balance) * seconds // drawn  # seconds until the balance is drawn, rounded down
    return BurnRate(per_day, now + timedelta(seconds=left))
