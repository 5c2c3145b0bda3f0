"""The steps of one customer-period's close, each a small function with a typed result.

    (none) --rate--> rated --create/find invoice--> invoice_created --add lines, finalize--> finalized
    (none) --rate, nothing to bill--> no_charge

Each arrow is one conditional write (``tollgate.dal.closes``), made after the Stripe call it records. A crash
between a Stripe write and the write that records it is therefore always possible, and a re-run must find what
Stripe already has:

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

The steps raise; ``tollgate.billing.close.service`` drives them and records failures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from tollgate.billing.close.ledger import Ledger
from tollgate.billing.invoicing import (
    InvoiceDraft,
    StripeInvoice,
    StripeInvoicing,
    idempotency_key,
    invoice_lines,
    invoice_metadata,
)
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Customer
from tollgate.domain.rating import StatementLine, late_usage_line, rate_period
from tollgate.errors import (
    AlreadyExistsError,
    CloseError,
    ConflictError,
    InvoiceConflictError,
    MissingStripeCustomerError,
)

LOG = logging.getLogger(__name__)

LATE_USAGE_LOOKBACK = 3  # earlier close records checked for late usage (one Query, one read per record)
MAX_RATING_ATTEMPTS = 3  # rating retried when another close billed the same late usage first

STEP_CREATE = "create-invoice"
STEP_ADD_LINES = "add-lines"
STEP_FINALIZE = "finalize"


@dataclass
class CloseContext:
    """What every step of one run needs: where to read and write, which customer-period, and when."""

    ledger: Ledger
    gateway: StripeInvoicing
    customer_id: str
    period: str
    now: datetime
    known_customer: Customer | None = field(default=None, repr=False)  # read at most once per run

    def customer(self) -> Customer:
        if self.known_customer is None:
            self.known_customer = self.ledger.get_customer(self.customer_id)
        return self.known_customer

    def key(self, step: str) -> str:
        return idempotency_key(self.customer_id, self.period, step)


# -- (none) -> rated | no_charge -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rating:
    """A new record, and for each earlier period whose late usage it bills: (billed before, billed now)."""

    record: PeriodClose
    raised_billed_credits: dict[str, tuple[int, int]]


@dataclass(frozen=True)
class Rated:
    record: PeriodClose
    stored_now: bool  # this run stored the record: no invoice can exist before it


def rate(ctx: CloseContext, earlier: list[PeriodClose]) -> Rating:
    """Rate the period's usage, plus the late usage of the ``earlier`` records (same currency only)."""
    customer = ctx.customer()
    plan = ctx.ledger.get_plan(customer.plan_id, customer.plan_version)
    credits = ctx.ledger.read_credits(customer.id, ctx.period, customer.counter_shards)
    adjustments: list[StatementLine] = []
    raised: dict[str, tuple[int, int]] = {}
    for before in sorted(earlier, key=lambda record: record.period):
        counted = ctx.ledger.read_credits(customer.id, before.period, customer.counter_shards)
        late = counted - before.billed_credits
        if late <= 0:
            continue
        billed_plan = ctx.ledger.get_plan(before.statement.plan_id, before.statement.plan_version)
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
            if line.amount:  # late credits that cost nothing (included ones) are billed, with no line
                adjustments.append(line)
            raised[before.period] = (before.billed_credits, counted)
    statement = rate_period(plan, customer.id, ctx.period, credits, tuple(adjustments))
    record = PeriodClose(
        customer_id=customer.id,
        period=ctx.period,
        status=CloseStatus.RATED if statement.total > 0 else CloseStatus.NO_CHARGE,
        statement=statement,
        billed_credits=credits,
        adjusted_periods={period: new - old for period, (old, new) in raised.items()},
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    return Rating(record, raised)


def rated_record(ctx: CloseContext) -> Rated:
    """The stored record, or a new one: the statement is computed and stored once, never changed."""
    for _ in range(MAX_RATING_ATTEMPTS):
        found = ctx.ledger.closes_up_to(ctx.customer_id, ctx.period, 1 + LATE_USAGE_LOOKBACK)
        if found and found[0].period == ctx.period:
            return Rated(found[0], stored_now=False)
        rating = rate(ctx, found[:LATE_USAGE_LOOKBACK])
        try:
            ctx.ledger.save_new_close(rating.record, rating.raised_billed_credits)
        except (AlreadyExistsError, ConflictError):
            continue  # another run rated first, or billed the same late usage: read again
        return Rated(rating.record, stored_now=True)
    raise CloseError(f"rating {ctx.customer_id} {ctx.period} kept losing races; try again")


# -- rated -> invoice_created ----------------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceCreated:
    record: PeriodClose
    invoice: StripeInvoice  # as Stripe answered: finalizing may skip reading it again


def find_invoice(ctx: CloseContext, stripe_customer_id: str) -> StripeInvoice | None:
    """The one live Stripe invoice of this customer-period, if any; anything ambiguous stops the close."""
    found = ctx.gateway.find_invoices(
        stripe_customer_id=stripe_customer_id, customer_id=ctx.customer_id, period=ctx.period
    )
    live = [invoice for invoice in found if invoice.status != "void"]
    if len(live) > 1:
        ids = ", ".join(invoice.id for invoice in live)
        raise InvoiceConflictError(
            f"Stripe holds {len(live)} invoices for {ctx.customer_id} {ctx.period} ({ids}): "
            "void all but one by hand, then close again"
        )
    if not live and found:
        raise InvoiceConflictError(
            f"the Stripe invoice for {ctx.customer_id} {ctx.period} ({found[0].id}) was voided: "
            "the close will not bill that period again on its own"
        )
    return live[0] if live else None


def create_invoice(ctx: CloseContext, record: PeriodClose, *, search_first: bool) -> InvoiceCreated:
    """Create the draft invoice (after looking for one when ``search_first``) and record its id."""
    customer = ctx.customer()
    if not customer.stripe_customer_id:
        raise MissingStripeCustomerError(
            f"customer {customer.id!r} owes {record.total} ({record.statement.currency}) for "
            f"{ctx.period} but has no stripe_customer_id: link a Stripe customer, then close again"
        )
    invoice = find_invoice(ctx, customer.stripe_customer_id) if search_first else None
    if invoice is None:
        plan = ctx.ledger.get_plan(record.statement.plan_id, record.statement.plan_version)
        draft = InvoiceDraft(
            stripe_customer_id=customer.stripe_customer_id,
            currency=record.statement.currency,
            collection_method=plan.collection_method,
            days_until_due=plan.days_until_due,
            description=f"{plan.name}: API usage for {ctx.period}",
            metadata=invoice_metadata(customer.id, ctx.period),
        )
        invoice = ctx.gateway.create_invoice(draft, idempotency_key=ctx.key(STEP_CREATE))
    return InvoiceCreated(ctx.ledger.mark_invoice_created(record, invoice.id, ctx.now), invoice)


# -- invoice_created -> finalized ------------------------------------------------------------------------
def finalize_invoice(ctx: CloseContext, record: PeriodClose, seen: StripeInvoice | None) -> PeriodClose:
    """Add the lines to a draft that has none, finalize it, and record what Stripe says is owed.

    ``seen`` is the invoice as this run last saw it (read again unless it is the record's invoice).
    """
    invoice_id = record.stripe_invoice_id
    if invoice_id is None:
        raise CloseError(f"close {ctx.customer_id} {ctx.period} has no invoice id")
    invoice = seen if seen is not None and seen.id == invoice_id else ctx.gateway.get_invoice(invoice_id)
    if invoice.status == "draft":
        if not invoice.has_lines:
            lines = invoice_lines(record.statement)
            invoice = ctx.gateway.add_lines(invoice.id, lines, idempotency_key=ctx.key(STEP_ADD_LINES))
        invoice = ctx.gateway.finalize(invoice.id, idempotency_key=ctx.key(STEP_FINALIZE))
    mismatch = invoice.total != record.total
    if mismatch:
        LOG.error(
            "Stripe invoice %s totals %d but the statement of %s %s totals %d (%s)",
            invoice.id,
            invoice.total,
            ctx.customer_id,
            ctx.period,
            record.total,
            record.statement.currency,
        )
    return ctx.ledger.mark_finalized(
        record,
        invoice_status=invoice.status,
        hosted_invoice_url=invoice.hosted_invoice_url,
        amount_due=invoice.amount_due,
        total_mismatch=mismatch,
        now=ctx.now,
    )
