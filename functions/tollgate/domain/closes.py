"""The record of one (customer, period) close: the state machine the period close drives.

    rated -> invoice_created -> finalized        (a charge)
    rated -> no_charge                           (nothing to bill: no Stripe call at all)

A close with nothing to bill takes both steps in one write: its record is stored as ``no_charge`` directly.
What a close cannot bill yet, it *carries* (:class:`Carry`): the next close takes it over, in the transaction
that stores its own record, and bills what it can (``tollgate.domain.carry_over``).
``invoice_status`` follows Stripe's webhooks (open, paid, void, uncollectible) after finalization, and only
ever moves forward (:func:`invoice_status_may_move`). How a record is stored: ``tollgate.dal.closes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from tollgate.domain.money import line_amount
from tollgate.domain.periods import parse_period, period_end
from tollgate.domain.rating import Statement, StatementLine
from tollgate.errors import PeriodNotEndedError


class CloseStatus(StrEnum):
    RATED = "rated"
    INVOICE_CREATED = "invoice_created"
    FINALIZED = "finalized"
    NO_CHARGE = "no_charge"


DONE = frozenset({CloseStatus.FINALIZED, CloseStatus.NO_CHARGE})
NEW = frozenset({CloseStatus.RATED, CloseStatus.NO_CHARGE})  # what a record is stored as


class Carry(BaseModel):
    """What a close leaves for a later one to bill, in one currency.

    ``amount``: the exact value, in minor units, of usage too small to bill in its period (each line under
    half a minor unit), not billed yet; negative when the last carried line rounded up: that much was
    billed ahead. ``credits`` and ``since``: the credits in it and the first period they come from.
    ``lines``: late usage of an earlier period, priced on its plan in this currency, waiting for an invoice
    in it.
    """

    model_config = ConfigDict(frozen=True)

    currency: str
    amount: Decimal = Decimal(0)
    credits: int = 0
    since: str | None = None
    lines: tuple[StatementLine, ...] = ()

    @property
    def billable(self) -> int:
        """Minor units an invoice in ``currency`` would bill for it now."""
        small = line_amount(self.amount, 1) if self.amount > 0 else 0
        return sum(line.amount for line in self.lines) + small

    @property
    def empty(self) -> bool:
        return self.amount == 0 and not self.lines


class BilledRaise(NamedTuple):
    """What a new close record changes on an earlier one, in the same transaction.

    ``old`` -> ``new``: the earlier period's ``billed_credits`` raised by the close that takes over its late
    usage (equal when it only takes over the carry); ``segments``: that period's credits billed per plan
    segment afterwards. ``carry``: what of that late usage the new record carries instead of billing it
    (priced lines in another currency, the value of late credits too small to bill); ``take_carry``: the new
    record takes over the earlier record's ``carried`` (its ``carried_to`` is set, once).
    """

    old: int
    new: int
    segments: Mapping[int, int] | None = None
    carry: Carry | None = None
    take_carry: bool = False


class PeriodClose(BaseModel):
    """The record of a period's close, or (``part`` 1, 2...) of one of its threshold invoices
    (``tollgate.domain.progressive``): the same state machine, each with its own invoice."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    status: CloseStatus
    part: int = 0  # 0: the period's close; n: the period's n-th threshold invoice
    version: int = 1
    statement: Statement
    billed_credits: int  # this period's credits billed so far (the close, plus later adjustments)
    billed_segments: dict[int, int] = {}  # the same per plan segment (empty in records before plan changes)
    adjusted_periods: dict[str, int] = {}  # earlier period -> late credits this close billed or carries
    carried: tuple[Carry, ...] = ()  # what this close leaves for a later one, one per currency
    carried_from: tuple[str, ...] = ()  # the earlier periods whose ``carried`` this close took over
    carried_to: str | None = None  # the period whose close took ``carried`` over (set once, in that close)
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    amount_due: int | None = None
    invoice_status: str | None = None
    total_mismatch: bool = False
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def total(self) -> int:
        return self.statement.total

    @property
    def name(self) -> str:
        """``acme 2026-11``, or ``acme 2026-11 threshold invoice 2``: for messages and logs."""
        suffix = f" threshold invoice {self.part}" if self.part else ""
        return f"{self.customer_id} {self.period}{suffix}"

    @property
    def waiting(self) -> tuple[Carry, ...]:
        """What this record still carries in another currency than its own invoice's and could bill: late
        usage waiting for an invoice in its currency (shown by ``tollgate close status`` and the watchdog)."""
        if self.carried_to is not None:
            return ()
        currency = self.statement.currency
        return tuple(carry for carry in self.carried if carry.currency != currency and carry.billable > 0)


def ensure_period_ended(period: str, now: datetime) -> None:
    """Refuse to close a period before its last instant has passed (``now`` must be timezone-aware)."""
    parse_period(period)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    end = period_end(period)
    if now < end:
        raise PeriodNotEndedError(
            f"period {period} has not ended: it ends at {end:%Y-%m-%d %H:%M} UTC and cannot be closed before "
            f"then (now is {now.isoformat()})"
        )


# Stripe delivers events in no guaranteed order: an invoice's status may only move forward.
# invoice_status -> the statuses it may move to (None: not known yet)
_FORWARD: dict[str | None, frozenset[str]] = {
    None: frozenset({"open", "paid", "void", "uncollectible"}),
    "draft": frozenset({"open", "paid", "void", "uncollectible"}),
    "open": frozenset({"paid", "void", "uncollectible"}),
    "uncollectible": frozenset({"paid", "void"}),
    "paid": frozenset(),
    "void": frozenset(),
}
SETTLED = frozenset({"paid", "void"})


def invoice_status_may_move(current: str | None, target: str) -> bool:
    return target in _FORWARD.get(current, frozenset())
