"""Dunning: what a failed payment does to a customer's access, and when. Plain models and pure decisions.

Rules
-----
* ``invoice.payment_failed`` records the failure on the customer, one record per failing invoice, holding the
  time of the *first* failure, the latest hosted invoice URL and the number of failed attempts. Stripe's
  automatic retries fail again and again; the grace period still runs from the first failure. Access is
  unchanged.
* The daily sweep suspends an **active** customer whose oldest open failure is older than the grace period
  (``DUNNING_GRACE_DAYS``, default 7): status ``suspended``, reason ``payment_failed``, ``pay_url`` = the
  hosted invoice URL. The authorizer then denies with ``payment_required`` and that URL. A customer who is
  already suspended (by hand, say) is left alone.
* ``invoice.paid`` (or ``invoice.voided``: the provider cancelled the debt) resolves that invoice's failure at
  once. A customer suspended for ``payment_failed`` becomes active again, unless another invoice of theirs is
  also overdue, in which case they stay suspended and ``pay_url`` moves to that invoice. A customer suspended
  by hand (reason ``manual``) is never resumed by a payment. ``invoice.marked_uncollectible`` changes nothing:
  the invoice can still be paid at its URL.
* Resuming a customer by hand waives their open failures, so the next sweep does not suspend them again.

A decision is a list of :data:`Effect` values. ``tollgate.dal.dunning`` writes them in one DynamoDB
transaction, each conditional on the state it was decided from (a status change also adds its audit item),
so a change that raced with another is decided again, never applied on stale facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from tollgate.domain.models import Customer, CustomerStatus

PAYMENT_FAILED = "payment_failed"  # status_reason set by the sweep; the only one a payment lifts
SWEEP_CAUSE = "dunning_sweep"


class FailureState(StrEnum):
    OPEN = "open"  # unpaid: counts towards suspension
    RESOLVED = "resolved"  # paid or voided
    WAIVED = "waived"  # the provider resumed the customer by hand


class PaymentFailure(BaseModel):
    """One failing invoice of a customer."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    invoice_id: str
    period: str | None = None
    hosted_invoice_url: str | None = None
    first_failed_at: datetime
    last_failed_at: datetime
    attempts: int = 1
    state: FailureState = FailureState.OPEN
    suspended_at: datetime | None = None
    resolved_at: datetime | None = None
    resolution: str | None = None

    def deadline(self, grace: timedelta) -> datetime:
        return self.first_failed_at + grace

    def overdue(self, now: datetime, grace: timedelta) -> bool:
        return self.state is FailureState.OPEN and self.deadline(grace) <= now


@dataclass(frozen=True)
class InvoiceRef:
    """What an invoice event tells us about the invoice (from its metadata and fields)."""

    invoice_id: str
    customer_id: str
    period: str | None
    hosted_invoice_url: str | None
    part: int = 0  # 0: the period's close's invoice; n: its n-th threshold invoice


# -- effects -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RecordFailure:
    """Record (or refresh) the failure of ``invoice``; the first failure time is kept."""

    invoice: InvoiceRef
    at: datetime


@dataclass(frozen=True)
class EndFailure:
    """Take a failure out of the sweep: ``resolved`` (paid, voided) or ``waived`` (resumed by hand)."""

    failure: PaymentFailure
    state: FailureState
    at: datetime
    resolution: str | None


@dataclass(frozen=True)
class MarkSuspended:
    """Note on the failure that it suspended the customer (only while it is still open)."""

    failure: PaymentFailure
    at: datetime


@dataclass(frozen=True)
class ChangeStatus:
    """Move ``customer`` (as it was read) to ``status``, with its audit item."""

    customer: Customer
    status: CustomerStatus
    reason: str | None
    pay_url: str | None
    cause: str
    at: datetime
    event_id: str


Effect = RecordFailure | EndFailure | MarkSuspended | ChangeStatus


# -- decisions ---------------------------------------------------------------------------------------------
def stamp(moment: datetime) -> str:
    """Fixed-width UTC time (string order = time order)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def open_failures(failures: Iterable[PaymentFailure]) -> list[PaymentFailure]:
    return [failure for failure in failures if failure.state is FailureState.OPEN]


def on_payment_failed(existing: PaymentFailure | None, invoice: InvoiceRef, *, at: datetime) -> list[Effect]:
    """``invoice.payment_failed``: record (or refresh) the failure. Nothing if it was resolved or waived."""
    if existing is not None and existing.state is not FailureState.OPEN:
        return []  # paid/voided already (events arrive out of order) or waived by the provider
    return [RecordFailure(invoice, at)]


def on_payment_settled(
    customer: Customer,
    failures: Sequence[PaymentFailure],
    invoice: InvoiceRef,
    *,
    resolution: str,
    at: datetime,
    now: datetime,
    grace: timedelta,
    event_id: str,
    cause: str,
) -> list[Effect]:
    """``invoice.paid`` / ``invoice.voided``: resolve the failure and, if the customer was suspended for
    ``payment_failed``, restore access (or point ``pay_url`` at another overdue invoice)."""
    this = next((f for f in failures if f.invoice_id == invoice.invoice_id), None)
    effects: list[Effect] = []
    if this is not None and this.state is FailureState.OPEN:
        effects.append(EndFailure(this, FailureState.RESOLVED, at, resolution))
    if customer.status is not CustomerStatus.SUSPENDED or customer.status_reason != PAYMENT_FAILED:
        return effects  # active already, or suspended for another reason (manual): not ours to lift
    others = [f for f in failures if f.invoice_id != invoice.invoice_id and f.overdue(now, grace)]
    if not others:
        effects.append(ChangeStatus(customer, CustomerStatus.ACTIVE, None, None, cause, at, event_id))
    elif customer.pay_url != others[0].hosted_invoice_url:
        pay_url = others[0].hosted_invoice_url
        effects.append(
            ChangeStatus(customer, CustomerStatus.SUSPENDED, PAYMENT_FAILED, pay_url, cause, at, event_id)
        )
    return effects


def on_sweep(
    customer: Customer, failures: Sequence[PaymentFailure], *, now: datetime, grace: timedelta
) -> list[Effect]:
    """The sweep: suspend an active customer for their oldest overdue failure. Nothing for a customer who is
    not active (suspended already, by hand or by an earlier sweep) or has nothing overdue (paid meanwhile)."""
    if customer.status is not CustomerStatus.ACTIVE:
        return []
    overdue = [f for f in failures if f.overdue(now, grace)]
    if not overdue:
        return []
    oldest = overdue[0]
    event_id = f"dunning-{oldest.invoice_id}-{stamp(now)}"
    return [
        ChangeStatus(
            customer,
            CustomerStatus.SUSPENDED,
            PAYMENT_FAILED,
            oldest.hosted_invoice_url,
            SWEEP_CAUSE,
            now,
            event_id,
        ),
        MarkSuspended(oldest, now),
    ]


def on_manual_resume(failures: Iterable[PaymentFailure], *, now: datetime) -> list[EndFailure]:
    """Resuming by hand waives every open failure (each written on its own: one resolved meanwhile is
    skipped)."""
    return [EndFailure(failure, FailureState.WAIVED, now, "waived") for failure in open_failures(failures)]
