"""The period close: rate each customer's period and invoice it through Stripe, every credit billed once.

Plain logic; everything it touches is passed in: a :class:`Ledger` (DynamoDB in production, see
``tollgate.billing.close.ledger``), a :class:`~tollgate.billing.invoicing.StripeInvoicing` gateway and the
time ``now``.

One customer-period is driven through the record of ``tollgate.dal.closes``::

    (none) --rate--> rated --create/find invoice--> invoice_created --add lines, finalize--> finalized
    (none) --rate, nothing to bill--> no_charge

Each arrow is one conditional write, made after the Stripe call it records. A crash between a Stripe write
and the write that records it is therefore always possible, and a re-run must find what Stripe already has:

* ``rated`` without an invoice id: search Stripe for the invoice of this customer-period (its metadata) before
  creating one; the create's Idempotency-Key only protects for 24 hours, the search for ever. The one run that
  skips the search is the run that has just stored the record itself: no invoice can predate the record, and
  a concurrent run would send the same Idempotency-Key within seconds.
* ``invoice_created``: read the invoice; a draft that already has lines gets none added (``add_lines`` sends
  all lines in one call, so a draft has all of them or none); a draft is finalized; anything else was
  finalized already and is only recorded.

Late usage: credits counted for an earlier period after its close are billed on this period's statement as
adjustment lines, and the earlier record's ``billed_credits`` is raised in the same transaction that stores
this record, so they are billed exactly once (see ``tollgate.dal.closes.put_close``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from tollgate.billing.invoicing import (
    InvoiceDraft,
    StripeInvoice,
    StripeInvoicing,
    idempotency_key,
    invoice_lines,
    invoice_metadata,
)
from tollgate.dal.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Customer, Plan
from tollgate.domain.periods import parse_period, period_end
from tollgate.domain.rating import StatementLine, late_usage_line, rate_period
from tollgate.errors import AlreadyExistsError, ConflictError, TollgateError

LOG = logging.getLogger(__name__)

LATE_USAGE_LOOKBACK = 3  # earlier close records checked for late usage (one Query, one read per record)
MAX_RATING_ATTEMPTS = 3  # rating retried when another close billed the same late usage first
MAX_STEPS = 6  # transitions tried in one run (a lost race costs one more)
DONE = frozenset({CloseStatus.FINALIZED, CloseStatus.NO_CHARGE})

STEP_CREATE = "create-invoice"
STEP_ADD_LINES = "add-lines"
STEP_FINALIZE = "finalize"


class CloseError(TollgateError):
    """A customer-period that cannot be closed as things are (the message says what to do)."""


class PeriodNotEndedError(CloseError):
    pass


class MissingStripeCustomerError(CloseError):
    pass


class InvoiceConflictError(CloseError):
    """Stripe holds something for this customer-period that the close will not guess about."""


class Ledger(Protocol):
    """What the close reads and writes besides Stripe (``tollgate.billing.close.ledger.DynamoLedger``)."""

    def list_customers(self) -> list[Customer]: ...

    def get_customer(self, customer_id: str) -> Customer: ...

    def get_plan(self, plan_id: str, version: int) -> Plan: ...

    def read_credits(self, customer_id: str, period: str, shards: int) -> int: ...

    def closes_up_to(self, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
        """The records of ``period`` and earlier, newest first (``period``'s own first when it exists)."""
        ...

    def get_close(self, customer_id: str, period: str) -> PeriodClose | None: ...

    def save_new_close(self, record: PeriodClose, raised_billed_credits: dict[str, tuple[int, int]]) -> None:
        """Raises ``AlreadyExistsError`` (record exists) or ``ConflictError`` (late usage billed since)."""
        ...

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose: ...

    def mark_finalized(
        self,
        record: PeriodClose,
        *,
        invoice_status: str,
        hosted_invoice_url: str | None,
        amount_due: int | None,
        total_mismatch: bool,
        now: datetime,
    ) -> PeriodClose: ...

    def record_failure(self, customer_id: str, period: str, error: str, now: datetime) -> None: ...


@dataclass(frozen=True)
class CloseOutcome:
    """A run's result: the record, and whether this run is the one that recorded the finalization."""

    record: PeriodClose
    finalized_now: bool = False


class CustomerClose(BaseModel):
    """One customer's line in a :class:`CloseSummary`."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    status: CloseStatus | Literal["failed"]
    total: int | None = None  # minor units of ``currency``: the statement total
    currency: str | None = None
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    total_mismatch: bool = False
    error: str | None = None

    @classmethod
    def of(cls, record: PeriodClose) -> CustomerClose:
        return cls(
            customer_id=record.customer_id,
            status=record.status,
            total=record.total,
            currency=record.statement.currency,
            stripe_invoice_id=record.stripe_invoice_id,
            hosted_invoice_url=record.hosted_invoice_url,
            total_mismatch=record.total_mismatch,
        )


class CloseSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: str
    customers: tuple[CustomerClose, ...]

    @property
    def failed(self) -> tuple[CustomerClose, ...]:
        return tuple(c for c in self.customers if c.status == "failed")

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for customer in self.customers:
            counts[str(customer.status)] = counts.get(str(customer.status), 0) + 1
        return counts


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


def close_customer(
    ledger: Ledger, stripe_gateway: StripeInvoicing, customer_id: str, period: str, *, now: datetime
) -> PeriodClose:
    """Close one customer's period: rate it (once), then invoice it in Stripe (once). Safe to run again:
    after success it returns the same record and calls Stripe not at all."""
    return run_close(ledger, stripe_gateway, customer_id, period, now=now).record


def run_close(
    ledger: Ledger,
    stripe_gateway: StripeInvoicing,
    customer_id: str,
    period: str,
    *,
    now: datetime,
    customer: Customer | None = None,
) -> CloseOutcome:
    """:func:`close_customer`, also telling whether this run finalized the invoice (for metrics).

    ``customer`` may be passed when the caller has just read it (saves a read). On failure the error is
    recorded on the record (``attempts``, ``last_error``) when one exists, and raised.
    """
    ensure_period_ended(period, now)
    run = _CustomerRun(ledger, stripe_gateway, customer_id, period, now, customer)
    try:
        return run.run()
    except Exception as error:
        if run.record_stored:
            run.record_failure(error)
        raise


def close_period(
    ledger: Ledger,
    stripe_gateway: StripeInvoicing,
    period: str,
    *,
    now: datetime,
    on_progress: Callable[[CustomerClose], None] | None = None,
) -> CloseSummary:
    """Close ``period`` for every customer, one after the other; a customer's failure never stops the run."""
    ensure_period_ended(period, now)
    results: list[CustomerClose] = []
    for customer in ledger.list_customers():
        try:
            outcome = run_close(ledger, stripe_gateway, customer.id, period, now=now, customer=customer)
            result = CustomerClose.of(outcome.record)
        except Exception as error:
            LOG.exception("close of %s %s failed", customer.id, period)
            result = CustomerClose(customer_id=customer.id, status="failed", error=describe(error))
        results.append(result)
        if on_progress is not None:
            on_progress(result)
    return CloseSummary(period=period, customers=tuple(results))


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class _CustomerRun:
    """One run of one customer-period's close (what it has learnt so far lives here)."""

    def __init__(
        self,
        ledger: Ledger,
        gateway: StripeInvoicing,
        customer_id: str,
        period: str,
        now: datetime,
        customer: Customer | None,
    ) -> None:
        self.ledger = ledger
        self.gateway = gateway
        self.customer_id = customer_id
        self.period = period
        self.now = now
        self._customer = customer
        self.record_stored = False  # a record exists: failures are recorded on it
        self.stored_by_us = False  # this run stored the record: no invoice can exist before it
        self.invoice: StripeInvoice | None = None  # the invoice as this run last saw it

    # -- the run -------------------------------------------------------------------------------------
    def run(self) -> CloseOutcome:
        record = self.rated_record()
        for _ in range(MAX_STEPS):
            if record.status in DONE:
                return CloseOutcome(record)
            try:
                if record.status is CloseStatus.RATED:
                    record = self.create_invoice(record)
                else:
                    record = self.finalize_invoice(record)
                    return CloseOutcome(record, finalized_now=True)
            except ConflictError:  # another run moved the record: carry on from where it is now
                record = self.reload()
        raise CloseError(f"close of {self.customer_id} {self.period} kept losing races; try again")

    def record_failure(self, error: Exception) -> None:
        try:
            self.ledger.record_failure(self.customer_id, self.period, describe(error), self.now)
        except Exception:
            LOG.exception("could not record the failure of %s %s", self.customer_id, self.period)

    def customer(self) -> Customer:
        if self._customer is None:
            self._customer = self.ledger.get_customer(self.customer_id)
        return self._customer

    def reload(self) -> PeriodClose:
        self.invoice = None
        self.stored_by_us = False
        record = self.ledger.get_close(self.customer_id, self.period)
        if record is None:
            raise CloseError(f"close record of {self.customer_id} {self.period} disappeared")
        return record

    # -- rated ---------------------------------------------------------------------------------------
    def rated_record(self) -> PeriodClose:
        """The stored record, or a new one: the statement is computed and stored once, never changed."""
        for _ in range(MAX_RATING_ATTEMPTS):
            closes = self.ledger.closes_up_to(self.customer_id, self.period, 1 + LATE_USAGE_LOOKBACK)
            if closes and closes[0].period == self.period:
                self.record_stored = True
                return closes[0]
            record, raised = self.rate(closes[:LATE_USAGE_LOOKBACK])
            try:
                self.ledger.save_new_close(record, raised)
            except (AlreadyExistsError, ConflictError):
                continue  # another run rated first, or billed the same late usage: read again
            self.record_stored = self.stored_by_us = True
            return record
        raise CloseError(f"rating {self.customer_id} {self.period} kept losing races; try again")

    def rate(self, earlier: list[PeriodClose]) -> tuple[PeriodClose, dict[str, tuple[int, int]]]:
        customer = self.customer()
        plan = self.ledger.get_plan(customer.plan_id, customer.plan_version)
        credits = self.ledger.read_credits(customer.id, self.period, customer.counter_shards)
        adjustments: list[StatementLine] = []
        raised: dict[str, tuple[int, int]] = {}
        for before in sorted(earlier, key=lambda record: record.period):
            counted = self.ledger.read_credits(customer.id, before.period, customer.counter_shards)
            late = counted - before.billed_credits
            if late <= 0:
                continue
            billed_plan = self.ledger.get_plan(before.statement.plan_id, before.statement.plan_version)
            if billed_plan.currency != plan.currency:
                LOG.warning(
                    "late usage of %s %s (%d credits, %s) cannot go on a %s invoice: left unbilled",
                    customer.id,
                    before.period,
                    late,
                    billed_plan.currency,
                    plan.currency,
                )
                continue
            line = late_usage_line(billed_plan, before.period, before.billed_credits, late)
            if line is not None:
                adjustments.append(line)
                raised[before.period] = (before.billed_credits, counted)
        statement = rate_period(plan, customer.id, self.period, credits, tuple(adjustments))
        record = PeriodClose(
            customer_id=customer.id,
            period=self.period,
            status=CloseStatus.RATED if statement.total > 0 else CloseStatus.NO_CHARGE,
            statement=statement,
            billed_credits=credits,
            adjusted_periods={period: new - old for period, (old, new) in raised.items()},
            created_at=self.now,
            updated_at=self.now,
        )
        return record, raised

    # -- rated -> invoice_created --------------------------------------------------------------------
    def create_invoice(self, record: PeriodClose) -> PeriodClose:
        customer = self.customer()
        if not customer.stripe_customer_id:
            raise MissingStripeCustomerError(
                f"customer {customer.id!r} owes {record.total} ({record.statement.currency}) for "
                f"{self.period} but has no stripe_customer_id: link a Stripe customer, then close again"
            )
        invoice = None if self.stored_by_us else self.find_invoice(customer.stripe_customer_id)
        if invoice is None:
            plan = self.ledger.get_plan(record.statement.plan_id, record.statement.plan_version)
            draft = InvoiceDraft(
                stripe_customer_id=customer.stripe_customer_id,
                currency=record.statement.currency,
                collection_method=plan.collection_method,
                days_until_due=plan.days_until_due,
                description=f"{plan.name}: API usage for {self.period}",
                metadata=invoice_metadata(customer.id, self.period),
            )
            invoice = self.gateway.create_invoice(draft, idempotency_key=self.key(STEP_CREATE))
        record = self.ledger.mark_invoice_created(record, invoice.id, self.now)
        self.invoice = invoice
        return record

    def find_invoice(self, stripe_customer_id: str) -> StripeInvoice | None:
        found = self.gateway.find_invoices(
            stripe_customer_id=stripe_customer_id, customer_id=self.customer_id, period=self.period
        )
        live = [invoice for invoice in found if invoice.status != "void"]
        if len(live) > 1:
            ids = ", ".join(invoice.id for invoice in live)
            raise InvoiceConflictError(
                f"Stripe holds {len(live)} invoices for {self.customer_id} {self.period} ({ids}): "
                "void all but one by hand, then close again"
            )
        if not live and found:
            raise InvoiceConflictError(
                f"the Stripe invoice for {self.customer_id} {self.period} ({found[0].id}) was voided: "
                "the close will not bill that period again on its own"
            )
        return live[0] if live else None

    # -- invoice_created -> finalized ----------------------------------------------------------------
    def finalize_invoice(self, record: PeriodClose) -> PeriodClose:
        invoice_id = record.stripe_invoice_id
        if invoice_id is None:
            raise CloseError(f"close {self.customer_id} {self.period} has no invoice id")
        invoice = self.invoice if self.invoice is not None and self.invoice.id == invoice_id else None
        if invoice is None:
            invoice = self.gateway.get_invoice(invoice_id)
        if invoice.status == "draft":
            if not invoice.has_lines:
                lines = invoice_lines(record.statement)
                invoice = self.gateway.add_lines(invoice.id, lines, idempotency_key=self.key(STEP_ADD_LINES))
            invoice = self.gateway.finalize(invoice.id, idempotency_key=self.key(STEP_FINALIZE))
        mismatch = invoice.total != record.total
        if mismatch:
            LOG.error(
                "Stripe invoice %s totals %d but the statement of %s %s totals %d (%s)",
                invoice.id,
                invoice.total,
                self.customer_id,
                self.period,
                record.total,
                record.statement.currency,
            )
        return self.ledger.mark_finalized(
            record,
            invoice_status=invoice.status,
            hosted_invoice_url=invoice.hosted_invoice_url,
            amount_due=invoice.amount_due,
            total_mismatch=mismatch,
            now=self.now,
        )

    def key(self, step: str) -> str:
        return idempotency_key(self.customer_id, self.period, step)
