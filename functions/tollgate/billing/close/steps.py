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
this record, so they are billed exactly once (see ``tollgate.dal.closes.put_close``). Credits of failed
requests refunded after the close (``tollgate.domain.refunds``) are the same with a minus sign: a credit line,
and the earlier record's ``billed_credits`` lowered in that transaction. What a close cannot bill yet (usage
lines worth under half a minor unit, late usage in another currency than its invoice) it carries on its
record, and the next close takes that over in the same transaction (``tollgate.domain.carry_over``).

Threshold invoices (``tollgate.domain.progressive``) are records of the same state machine, one per part of
the period's usage invoiced early, each with its own Idempotency-Keys and metadata
(``tollgate_threshold_invoice``); :func:`next_threshold_invoice` stores the next one, and :func:`rate` takes
what they billed off the close's statement.

The steps raise; ``tollgate.billing.close.service`` drives them and records failures.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal

from tollgate.billing.close.ledger import Ledger
from tollgate.billing.invoicing import (
    InvoiceDraft,
    StripeInvoice,
    StripeInvoicing,
    idempotency_key,
    invoice_lines,
    invoice_metadata,
    threshold_part,
)
from tollgate.domain.carry_over import merge, settle, small_usage, take_small_usage
from tollgate.domain.closes import DONE, BilledRaise, Carry, CloseStatus, PeriodClose
from tollgate.domain.credit_grants import GrantKind, free_credits_for
from tollgate.domain.models import Customer, Usage
from tollgate.domain.periods import months_between, period_of, period_seconds, previous_period
from tollgate.domain.plan_history import period_shares
from tollgate.domain.progressive import invoiced_earlier_line, threshold_minor, threshold_statement
from tollgate.domain.rating import (
    FreeCredits,
    PlanPart,
    Statement,
    StatementLine,
    late_usage_line,
    minimum_commitment,
    rate_parts,
)
from tollgate.domain.stripe_limits import check_statement_limits
from tollgate.errors import (
    AlreadyExistsError,
    CloseError,
    ConflictError,
    InvoiceConflictError,
    MissingStripeCustomerError,
    PeriodClosedError,
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
    part: int = 0  # 0: the period's close; n: its n-th threshold invoice

    def customer(self) -> Customer:
        if self.known_customer is None:
            self.known_customer = self.ledger.get_customer(self.customer_id)
        return self.known_customer

    def key(self, step: str) -> str:
        return idempotency_key(self.customer_id, self.period, step, self.part)

    @property
    def name(self) -> str:
        suffix = f" threshold invoice {self.part}" if self.part else ""
        return f"{self.customer_id} {self.period}{suffix}"


def status_of(statement: Statement) -> CloseStatus:
    """A new record's status: rated (to invoice) unless the statement bills nothing. A negative total (the
    threshold invoices billed more than the period's usage came to, after a credit grant) is invoiced too:
    Stripe credits it to the customer's balance."""
    return CloseStatus.RATED if statement.total != 0 else CloseStatus.NO_CHARGE


# -- (none) -> rated | no_charge -------------------------------------------------------------------------
@dataclass(frozen=True)
class Rating:
    """A new record, and for each earlier period whose late usage it bills: how its billed credits rise."""

    record: PeriodClose
    raised_billed_credits: dict[str, BilledRaise]


@dataclass(frozen=True)
class Rated:
    record: PeriodClose
    stored_now: bool  # this run stored the record: no invoice can exist before it


def plan_parts(ctx: CloseContext, customer: Customer, period: str, usage: Usage) -> list[PlanPart]:
    """The period's plan segments with their plans and credits (``tollgate.domain.plan_history``)."""
    shares = period_shares(customer.segments, period, usage.segments, usage.credits)
    return [
        PlanPart(
            share.segment.seq,
            ctx.ledger.get_plan(share.segment.plan_id, share.segment.plan_version),
            share.starts,
            share.ends,
            share.credits,
        )
        for share in shares
    ]


def late_usage(
    ctx: CloseContext, customer: Customer, before: PeriodClose, currency: str
) -> tuple[list[StatementLine], BilledRaise] | None:
    """The adjustment lines for credits of ``before``'s period counted after it was rated, or refunded after
    it (``tollgate.domain.refunds``: a credit line), each on the plan segment they were counted under, and how
    that record's billed credits change; None when there are none.

    What of it this close cannot bill is in the raise's ``carry`` (``tollgate.domain.carry_over``): the value
    of late credits too small to bill, and, when ``before`` was billed in another currency than ``currency``
    (this close's invoice), its lines, carried until an invoice in that currency."""
    usage = ctx.ledger.read_usage(customer.id, before.period, customer.counter_shards)
    if usage.credits == before.billed_credits and (
        not before.billed_segments or _nonzero(usage.segments) == _nonzero(before.billed_segments)
    ):
        return None  # nothing counted or refunded since (segment by segment, when they were recorded)
    statement = before.statement
    parts = plan_parts(ctx, customer, before.period, usage)
    if statement.segments:
        billed = dict(before.billed_segments) or {s.segment: s.credits for s in statement.segments}
        included = {s.segment: s.included_credits for s in statement.segments}
        rated_on = {s.segment: (s.plan_id, s.plan_version) for s in statement.segments}
        parts = [  # each segment on the plan that rated it, whatever the history says now
            replace(part, plan=ctx.ledger.get_plan(*rated_on[part.segment]))
            if part.segment in rated_on
            else part
            for part in parts
        ]
    else:  # rated before plan changes existed: one plan, the statement's, for the whole period
        billed_plan = ctx.ledger.get_plan(statement.plan_id, statement.plan_version)
        whole = PlanPart(parts[0].segment, billed_plan, parts[0].starts, parts[0].ends, usage.credits)
        parts = [whole]
        billed = {whole.segment: before.billed_credits}
        included = {whole.segment: statement.included_credits}
    lines: list[StatementLine] = []
    small, small_credits = Decimal(0), 0  # what the late credits change in the value too small to bill
    changed = False
    for part in parts:
        late = part.credits - billed.get(part.segment, 0)  # negative: refunded since
        if late == 0:
            continue
        changed = True
        label = f" on {part.plan.name}" if len(parts) > 1 else ""
        segment_included = included.get(part.segment, 0)
        seconds = int((part.ends - part.starts).total_seconds())
        minimum = minimum_commitment(part.plan, seconds, period_seconds(before.period))
        was = billed.get(part.segment, 0)
        line = late_usage_line(part.plan, before.period, was, late, segment_included, label, minimum)
        if line is not None and line.amount:  # late credits that cost nothing are billed, with no line
            lines.append(line)
        value_before, credits_before = small_usage(part.plan, was, segment_included, minimum)
        value_after, credits_after = small_usage(part.plan, part.credits, segment_included, minimum)
        small += value_after - value_before
        small_credits += credits_after - credits_before
    if not changed:
        return None
    carry = Carry(currency=statement.currency, amount=small, credits=small_credits, since=before.period)
    if statement.currency != currency and lines:
        LOG.warning(
            "late usage of %s %s (%d credits, %s) cannot go on a %s invoice: carried until one in %s",
            customer.id,
            before.period,
            usage.credits - before.billed_credits,
            statement.currency,
            currency,
            statement.currency,
        )
        carry, lines = carry.model_copy(update={"lines": tuple(lines)}), []
    segments = {part.segment: part.credits for part in parts}
    raised = BilledRaise(before.billed_credits, usage.credits, segments, None if carry.empty else carry)
    return lines, raised


def _nonzero(credits: Mapping[int, int]) -> dict[int, int]:
    return {segment: n for segment, n in credits.items() if n}


def free_credits(ctx: CloseContext, customer_id: str) -> list[FreeCredits]:
    """The free credits the customer's grants offer this period; a one-time grant's are what the close
    records of earlier periods (since it started) left of it."""
    grants = [grant for grant in ctx.ledger.list_credit_grants(customer_id) if grant.applies_to(ctx.period)]
    used: dict[str, int] = {}
    one_time = [grant for grant in grants if grant.schedule is GrantKind.ONE_TIME]
    if one_time:
        first = min(period_of(grant.starts) for grant in one_time)
        months = months_between(first, ctx.period)
        if months > 0:
            for record in ctx.ledger.closes_up_to(customer_id, previous_period(ctx.period), months):
                for grant_id, credits in record.statement.grants_used.items():
                    used[grant_id] = used.get(grant_id, 0) + credits
    return free_credits_for(grants, ctx.period, used)


def rate(
    ctx: CloseContext, earlier: list[PeriodClose], invoiced_parts: list[PeriodClose] | None = None
) -> Rating:
    """Rate the period's usage, each plan segment on its own plan, plus the late usage of the ``earlier``
    records (same currency only), less what the period's threshold invoices ``parts`` billed."""
    customer = ctx.customer()
    usage = ctx.ledger.read_usage(customer.id, ctx.period, customer.counter_shards)
    parts = plan_parts(ctx, customer, ctx.period, usage)
    currency = parts[-1].plan.currency
    adjustments: list[StatementLine] = []
    raised: dict[str, BilledRaise] = {}
    for before in sorted(earlier, key=lambda record: record.period):
        found = late_usage(ctx, customer, before, currency)
        if found is not None:
            lines, raise_ = found
            adjustments.extend(lines)
            raised[before.period] = raise_
    invoiced_early = invoiced_earlier_line(ctx.period, currency, invoiced_parts or [])
    if invoiced_early is not None:
        adjustments.insert(0, invoiced_early)
    free = free_credits(ctx, customer.id)
    statement = rate_parts(parts, customer.id, ctx.period, tuple(adjustments), free, customer.trial_ends)
    check_statement_limits(statement)  # refused here, with the line named, never first at Stripe
    record = PeriodClose(
        customer_id=customer.id,
        period=ctx.period,
        status=status_of(statement),
        statement=statement,
        billed_credits=usage.credits,
        billed_segments={part.segment: part.credits for part in parts},
        adjusted_periods={period: r.new - r.old for period, r in raised.items()},
        created_at=ctx.now,
        updated_at=ctx.now,
    )
    return Rating(record, raised)


def carry_over(rating: Rating, earlier: list[PeriodClose]) -> Rating:
    """``rating`` with what is carried settled (``tollgate.domain.carry_over``): it takes over what the
    ``earlier`` records still carry (their ``carried_to`` is set in the same transaction), leaves its own
    small usage off the invoice, bills in its currency what has become billable and carries the rest on."""
    record = rating.record
    raised = dict(rating.raised_billed_credits)
    carries: list[Carry] = []
    taken: list[str] = []
    for before in sorted(earlier, key=lambda found: found.period):
        if before.carried and before.carried_to is None:
            carries.extend(before.carried)
            taken.append(before.period)
            was = raised.get(before.period, BilledRaise(before.billed_credits, before.billed_credits))
            raised[before.period] = was._replace(take_carry=True)
    carries.extend(raise_.carry for _, raise_ in sorted(raised.items()) if raise_.carry is not None)
    statement, own = take_small_usage(record.statement)
    if own is not None:
        carries.append(own)
    if not carries:
        return rating
    statement, carried = settle(statement, merge(carries))
    check_statement_limits(statement)
    status = status_of(statement)
    changes = {"statement": statement, "status": status, "carried": carried, "carried_from": tuple(taken)}
    return Rating(record.model_copy(update=changes), raised)


def rated_record(ctx: CloseContext) -> Rated:
    """The stored record, or a new one: the statement is computed and stored once, never changed. The
    period's threshold invoices must all be invoiced first (``service.finish_threshold_invoices``)."""
    for _ in range(MAX_RATING_ATTEMPTS):
        found = ctx.ledger.closes_up_to(ctx.customer_id, ctx.period, 1 + LATE_USAGE_LOOKBACK)
        if found and found[0].period == ctx.period:
            return Rated(found[0], stored_now=False)
        parts = ctx.ledger.threshold_invoices(ctx.customer_id, ctx.period)
        unfinished = [part.name for part in parts if part.status not in DONE]
        if unfinished:
            raise CloseError(f"{', '.join(unfinished)} not invoiced yet: close again once it is")
        earlier = found[:LATE_USAGE_LOOKBACK]
        rating = carry_over(rate(ctx, earlier, parts), earlier)
        try:
            ctx.ledger.save_new_close(rating.record, rating.raised_billed_credits, len(parts))
        except (AlreadyExistsError, ConflictError):
            continue  # another run rated first, billed the same late usage, or invoiced early: read again
        return Rated(rating.record, stored_now=True)
    raise CloseError(f"rating {ctx.customer_id} {ctx.period} kept losing races; try again")


# -- (none) -> rated: a threshold invoice ----------------------------------------------------------------
def rate_threshold(ctx: CloseContext, parts: list[PeriodClose]) -> PeriodClose | None:
    """The next threshold invoice's record, when the period's usage not invoiced yet has reached the plan's
    ``invoice_threshold`` (rated as the close rates it, up to now); None while it has not."""
    customer = ctx.customer()
    usage = ctx.ledger.read_usage(customer.id, ctx.period, customer.counter_shards)
    plan_shares = plan_parts(ctx, customer, ctx.period, usage)
    threshold = threshold_minor(plan_shares[-1].plan)
    if threshold is None:
        return None
    free = free_credits(ctx, customer.id)
    # no trial_ends: a trial waives the base fee and the minimum, and a threshold invoice bills neither
    rated = rate_parts(plan_shares, customer.id, ctx.period, (), free)
    statement = threshold_statement(rated, parts, threshold, ctx.now)
    if statement is None:
        return None
    check_statement_limits(statement)
    return PeriodClose(
        customer_id=customer.id,
        period=ctx.period,
        part=len(parts) + 1,
        status=CloseStatus.RATED,
        statement=statement,
        billed_credits=usage.credits,  # what it covered (shown; the close rates the whole period again)
        created_at=ctx.now,
        updated_at=ctx.now,
    )


def next_threshold_invoice(ctx: CloseContext, parts: list[PeriodClose]) -> Rated | None:
    """Store the period's next threshold invoice if one is due (``parts``: the ones stored before); None when
    none is, or the period's close has been rated (it bills what is left)."""
    for _ in range(MAX_RATING_ATTEMPTS):
        record = rate_threshold(ctx, parts)
        if record is None:
            return None
        try:
            ctx.ledger.save_threshold_invoice(record)
        except AlreadyExistsError:  # another run stored this one first: what is due now?
            parts = ctx.ledger.threshold_invoices(ctx.customer_id, ctx.period)
            continue
        except PeriodClosedError:
            return None
        return Rated(record, stored_now=True)
    raise CloseError(f"threshold invoicing of {ctx.name} kept losing races; try again")


# -- rated -> invoice_created ----------------------------------------------------------------------------
@dataclass(frozen=True)
class InvoiceCreated:
    record: PeriodClose
    invoice: StripeInvoice  # as Stripe answered: finalizing may skip reading it again


def find_invoice(ctx: CloseContext, stripe_customer_id: str) -> StripeInvoice | None:
    """The one live Stripe invoice of this customer-period, if any; anything ambiguous stops the close."""
    found = [
        invoice
        for invoice in ctx.gateway.find_invoices(
            stripe_customer_id=stripe_customer_id, customer_id=ctx.customer_id, period=ctx.period
        )
        if threshold_part(invoice.metadata) == ctx.part  # the period's other invoices are not this one
    ]
    live = [invoice for invoice in found if invoice.status != "void"]
    if len(live) > 1:
        ids = ", ".join(invoice.id for invoice in live)
        raise InvoiceConflictError(
            f"Stripe holds {len(live)} invoices for {ctx.name} ({ids}): "
            "void all but one by hand, then close again"
        )
    if not live and found:
        raise InvoiceConflictError(
            f"the Stripe invoice for {ctx.name} ({found[0].id}) was voided: "
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
        early = f" so far (threshold invoice {ctx.part})" if ctx.part else ""
        draft = InvoiceDraft(
            stripe_customer_id=customer.stripe_customer_id,
            currency=record.statement.currency,
            collection_method=plan.collection_method,
            days_until_due=plan.days_until_due,
            description=f"{plan.name}: API usage for {ctx.period}{early}",
            metadata=invoice_metadata(customer.id, ctx.period, ctx.part),
            automatic_tax=plan.tax is not None,
        )
        invoice = ctx.gateway.create_invoice(draft, idempotency_key=ctx.key(STEP_CREATE))
    return InvoiceCreated(ctx.ledger.mark_invoice_created(record, invoice.id, ctx.now), invoice)


# -- invoice_created -> finalized ------------------------------------------------------------------------
def finalize_invoice(ctx: CloseContext, record: PeriodClose, seen: StripeInvoice | None) -> PeriodClose:
    """Add the lines to a draft that has none, redeem the customer's coupon if one is due for this period,
    finalize it, and record what Stripe says is owed.

    ``seen`` is the invoice as this run last saw it (read again unless it is the record's invoice). Stripe's
    ``subtotal`` (before discounts and exclusive tax) must equal the statement's total; its ``total`` is what
    the customer pays after Stripe's discounts and tax.
    """
    invoice_id = record.stripe_invoice_id
    if invoice_id is None:
        raise CloseError(f"close {ctx.customer_id} {ctx.period} has no invoice id")
    invoice = seen if seen is not None and seen.id == invoice_id else ctx.gateway.get_invoice(invoice_id)
    if invoice.status == "draft":
        if not invoice.has_lines:
            plan = ctx.ledger.get_plan(record.statement.plan_id, record.statement.plan_version)
            lines = invoice_lines(record.statement, tax_behavior=plan.tax)
            invoice = ctx.gateway.add_lines(invoice.id, lines, idempotency_key=ctx.key(STEP_ADD_LINES))
        if invoice.customer_metadata is None:  # found by a search: read it with its customer
            invoice = ctx.gateway.get_invoice(invoice.id)
        # A coupon is redeemed on the close's invoice, on the period's usage in full (threshold invoices
        # are taken off it in a line it does not discount): once per period, whatever was invoiced early.
        coupon = None if ctx.part else invoice.coupon_due(ctx.period)
        if coupon is not None and coupon not in invoice.coupons:
            invoice = ctx.gateway.apply_discount(
                invoice.id, coupon, idempotency_key=ctx.key("apply-discount")
            )
        if invoice.automatic_tax and invoice.customer_tax == "unrecognized_location":
            # Checked here: Stripe would refuse to finalize, and replay that refusal to the same
            # Idempotency-Key for 24 hours, even after the address is fixed.
            raise CloseError(
                f"Stripe Tax cannot locate customer {ctx.customer_id!r} to tax its {ctx.period} invoice "
                f"{invoice.id}: give it an address (`tollgate customers tax-info {ctx.customer_id} --country "
                "CC --postal-code ...`), then close again"
            )
        invoice = ctx.gateway.finalize(invoice.id, idempotency_key=ctx.key(STEP_FINALIZE))
    mismatch = invoice.subtotal_before_tax != record.total
    if mismatch:
        LOG.error(
            "Stripe invoice %s totals %d%s but the statement of %s %s totals %d (%s)",
            invoice.id,
            invoice.subtotal_before_tax,
            " before discounts and tax" if invoice.subtotal_before_tax != invoice.total else "",
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
