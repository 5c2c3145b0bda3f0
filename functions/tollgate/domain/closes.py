"""The record of one (customer, period) close: the state machine the period close drives.

    rated -> invoice_created -> finalized        (a charge)
    rated -> no_charge                           (nothing to bill: no Stripe call at all)

A close with nothing to bill takes both steps in one write: its record is stored as ``no_charge`` directly.
``invoice_status`` follows Stripe's webhooks (open, paid, void, uncollectible) after finalization, and only
ever moves forward (:func:`invoice_status_may_move`). How a record is stored: ``tollgate.dal.closes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict

from tollgate.domain.periods import parse_period, period_end
from tollgate.domain.rating import Statement
from tollgate.errors import PeriodNotEndedError


class CloseStatus(StrEnum):
    RATED = "rated"
    INVOICE_CREATED = "invoice_created"
    FINALIZED = "finalized"
    NO_CHARGE = "no_charge"


DONE = frozenset({CloseStatus.FINALIZED, CloseStatus.NO_CHARGE})
NEW = frozenset({CloseStatus.RATED, CloseStatus.NO_CHARGE})  # what a record is stored as


class BilledRaise(NamedTuple):
    """An earlier period's ``billed_credits`` raised from ``old`` to ``new`` by a later close that bills its
    late usage; ``segments``: that period's credits billed per plan segment afterwards."""

    old: int
    new: int
    segments: Mapping[int, int] | None = None


class PeriodClose(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    status: CloseStatus
    version: int = 1
    statement: Statement
    billed_credits: int  # this period's credits billed so far (the close, plus later adjustments)
    billed_segments: dict[int, int] = {}  # the same per plan segment (empty in records before plan changes)
    adjusted_periods: dict[str, int] = {}  # earlier period -> late credits this invoice bills for it
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
