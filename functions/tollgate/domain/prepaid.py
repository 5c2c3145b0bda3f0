"""Prepaid credits: what a customer has bought, and what is left of it.

A prepaid plan (``billing: prepaid``) sells credits at its ``price_per_credit``. Each addition to a
customer's balance is a :class:`TopUp` named by a reference (a Stripe payment, a bank transfer's id): the
store adds it in the same transaction that records it, on the condition that the reference is new, so it
lands exactly once however often it is sent. Every request then draws its credits from the balance in the
write that counts it (``tollgate.metering.dynamo.DynamoUsageCounter.draw``): the balance never goes below
zero, and what was drawn in a period is on its statement as a line of amount 0 (paid when bought).

**Expiry.** A top-up may expire (``expires_at``: a pack bought with ``--pack``, or ``credits add
--expires-in-days``): each top-up is a **lot**, and what the wallet says was drawn (``bought - balance -
expired``) is allocated across the lots **soonest-expiring first**, lots that never expire last (the
customer's favour: a draw always comes out of the credits closest to expiring, whenever the lots were
bought). A lot is **settled** once, after its expiry, by the sweep (``tollgate.expiry.service``): its unused
credits under that allocation leave the balance (``expired``), and the draws it covered stay its own for
good. :func:`next_due` is the sweep's decision, :func:`unused_credits` the allocation, both pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.domain.models import MAX_PACK_DAYS, CreditPack, Identifier
from tollgate.errors import ConflictError

__all__ = ["CreditPack"]  # the plan's packs (tollgate.domain.models), with the rest of prepaid credits here

DAY_SECONDS = 86_400
REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"

# A Checkout Session selling credits says so in its metadata (set with the provider's secret key only).
METADATA_PURCHASE = "tollgate_purchase"
PURCHASE_KIND = "prepaid_credits"
METADATA_CUSTOMER = "tollgate_customer_id"
METADATA_CREDITS = "tollgate_credits"
AUTO_PURCHASE_KIND = "auto_top_up"  # an automatic top-up's PaymentIntent (tollgate.accounts.auto_top_up)
METADATA_CROSSING = "tollgate_crossing"
METADATA_PACK = "tollgate_pack"  # the pack bought (``--pack``), when it was one
METADATA_EXPIRES_IN_DAYS = "tollgate_expires_in_days"  # the credits expire this long after they are paid


class TopUpSource(StrEnum):
    MANUAL = "manual"  # added by the provider (`tollgate credits add`): a bank transfer, a goodwill gesture
    CHECKOUT = (
        "checkout"  # bought through a Stripe Checkout Session (`tollgate credits buy`), once it is paid
    )
    AUTO = "auto_top_up"  # charged off-session to the saved card when the balance ran low
    REFUND = "refund"  # a failed request's credits given back (a plan that bills what succeeded)


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
    created_at: datetime  # when the credits landed (a purchase: when Stripe said it was paid)
    pack: Identifier | None = None  # the plan's pack it bought, if any
    expires_at: datetime | None = None  # None: the credits never expire
    # set once, by the sweep, after ``expires_at``: the lot's unused credits that left the balance
    expired_credits: Annotated[int, Field(ge=0)] | None = None
    settled_at: datetime | None = None

    @model_validator(mode="after")
    def _expiry_is_consistent(self) -> TopUp:
        if self.expires_at is not None and self.expires_at <= self.created_at:
            raise ValueError("expires_at: credits expire after they are added")
        if (self.expired_credits is None) != (self.settled_at is None):
            raise ValueError("expired_credits and settled_at: a lot is settled with both")
        if self.expired_credits is not None:
            if self.expires_at is None:
                raise ValueError("expired_credits: only credits with an expiry expire")
            if self.expired_credits > self.credits:
                raise ValueError("expired_credits: more than the lot's credits")
        return self

    @property
    def settled(self) -> bool:
        """Its expiry has been accounted for (by the sweep): what it covered is fixed for good."""
        return self.expired_credits is not None

    def due(self, now: datetime) -> bool:
        """Expired by ``now`` and not settled yet: the sweep's to settle."""
        return self.expires_at is not None and self.expires_at <= now and not self.settled


class Balance(BaseModel):
    """A customer's prepaid balance as the wallet holds it."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    credits: int = 0  # what requests can still draw
    bought: int = 0  # every credit ever added
    expired: int = 0  # credits that expired unused (the sweep)

    @property
    def drawn(self) -> int:
        """Credits requests drew: what was added and is neither left nor expired."""
        return self.bought - self.credits - self.expired


def expiry_after(added_at: datetime, days: int | None) -> datetime | None:
    """When credits added at ``added_at`` and valid ``days`` expire (None: never)."""
    return None if days is None else added_at + timedelta(days=days)


def _expiry_days(metadata: dict[str, Any], what: str) -> int | None:
    raw = metadata.get(METADATA_EXPIRES_IN_DAYS)
    if raw is None or raw == "":
        return None
    days = str(raw)
    if not (days.isascii() and days.isdigit()) or not 1 <= int(days) <= MAX_PACK_DAYS:
        raise ValueError(f"{what}: {METADATA_EXPIRES_IN_DAYS} is not a number of days (1 to {MAX_PACK_DAYS})")
    return int(days)


def purchase_top_up(session: dict[str, Any], at: datetime) -> TopUp | None:
    """The top-up a paid Checkout Session selling credits makes (its id the reference), or None for a session
    that does not sell Tollgate credits. ``ValueError`` for one whose metadata is not what Tollgate wrote.

    ``at`` is when Stripe said it was paid (the event's ``created``): a pack's credits expire counted from
    then, so every delivery of the same event makes the same top-up."""
    metadata = session.get("metadata") or {}
    if metadata.get(METADATA_PURCHASE) != PURCHASE_KIND:
        return None
    credits = str(metadata.get(METADATA_CREDITS, ""))
    if not (credits.isascii() and credits.isdigit()):
        raise ValueError(
            f"checkout session {session.get('id')}: {METADATA_CREDITS} is not a number of credits"
        )
    days = _expiry_days(metadata, f"checkout session {session.get('id')}")
    return TopUp(
        customer_id=str(metadata.get(METADATA_CUSTOMER, "")),
        reference=str(session.get("id", "")),
        credits=int(credits),
        source=TopUpSource.CHECKOUT,
        amount=session.get("amount_total"),
        currency=session.get("currency"),
        created_at=at,
        pack=metadata.get(METADATA_PACK) or None,
        expires_at=expiry_after(at, days),
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


# -- expiry: lots, drawn soonest-expiring first --------------------------------------------------------------


class LotsOutOfStepError(ConflictError):
    """The wallet and the top-ups disagree: they were read at different moments (a top-up or a settlement
    landed between the two reads). Read both again."""


def _allocation_key(lot: TopUp) -> tuple[bool, datetime, str]:
    return (lot.expires_at is None, lot.expires_at or lot.created_at, lot.reference)


def allocation_order(top_ups: Iterable[TopUp]) -> list[TopUp]:
    """The order draws come out of the lots: soonest expiry first (equal expiries by reference), the lots
    that never expire last."""
    return sorted(top_ups, key=_allocation_key)


def unattributed_draws(balance: Balance, top_ups: Sequence[TopUp]) -> int:
    """The drawn credits the unsettled lots share: what was drawn less what the settled lots covered (their
    credits less what expired of them, fixed when they were settled).

    ``LotsOutOfStepError`` unless the wallet and the top-ups agree: every credit bought is a top-up's, every
    credit expired a settled lot's, the balance is not negative, and the settled lots covered no more than was
    drawn (so the unsettled lots hold the balance: their credits less what they share)."""
    bought = sum(lot.credits for lot in top_ups)
    expired = sum(lot.expired_credits or 0 for lot in top_ups)
    covered = sum(lot.credits - (lot.expired_credits or 0) for lot in top_ups if lot.settled)
    shared = balance.drawn - covered
    if bought != balance.bought or expired != balance.expired or balance.credits < 0 or shared < 0:
        raise LotsOutOfStepError(
            f"{balance.customer_id}: the wallet ({balance.bought:,} bought, {balance.expired:,} expired, "
            f"{balance.credits:,} left) and its top-ups ({bought:,} credits, {expired:,} expired, "
            f"{covered:,} covered by settled lots) disagree"
        )
    return shared


def unused_credits(balance: Balance, top_ups: Sequence[TopUp]) -> dict[str, int]:
    """What is left of each unsettled lot, by reference, once the drawn credits they share are allocated to
    them soonest-expiring first. The values add up to the balance. ``LotsOutOfStepError``: read again."""
    left = unattributed_draws(balance, top_ups)
    unused: dict[str, int] = {}
    for lot in allocation_order(lot for lot in top_ups if not lot.settled):
        used = min(lot.credits, left)
        left -= used
        unused[lot.reference] = lot.credits - used
    return unused


def next_due(balance: Balance, top_ups: Sequence[TopUp], now: datetime) -> tuple[TopUp, int] | None:
    """The lot the sweep settles next and the credits that expire with it: the first lot in allocation order
    that is due by ``now`` (expired, not settled), and its unused credits; None when none is due.

    Lots are settled in allocation order, one at a time: every lot before the one settled is settled already
    (what it covered is fixed), and a lot after it is never settled before it. ``LotsOutOfStepError``: read
    again."""
    unused = unused_credits(balance, top_ups)
    for lot in allocation_order(top_ups):
        if lot.due(now):
            return lot, unused[lot.reference]
    return None


def expiring(
    balance: Balance, top_ups: Sequence[TopUp], *, until: datetime | None = None
) -> list[tuple[datetime, int]]:
    """The balance's credits that will expire if nothing more is drawn: per expiry, soonest first, the unused
    credits of the unsettled lots expiring then (``until`` at the latest). A lot past its expiry that the
    sweep has not settled yet is included (its credits leave at the next sweep); nothing left, nothing
    listed. ``LotsOutOfStepError``: read again."""
    unused = unused_credits(balance, top_ups)
    per_expiry: dict[datetime, int] = {}
    for lot in allocation_order(top_ups):
        when = lot.expires_at
        if when is None or lot.settled or (until is not None and when > until) or not unused[lot.reference]:
            continue
        per_expiry[when] = per_expiry.get(when, 0) + unused[lot.reference]
    return sorted(per_expiry.items())


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
