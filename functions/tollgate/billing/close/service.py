"""The period close: rate each customer's period and invoice it through Stripe, every credit billed once.

Three entry points over the same run: :func:`run_close` (the worker: one customer-period, and whether this run
finalized its invoice), :func:`close_customer` (the CLI, for one customer) and :func:`close_period` (the CLI,
every customer). :func:`run_threshold` invoices a period's usage early, once it reaches the plan's
``invoice_threshold`` (the alert function calls it; ``tollgate.domain.progressive``). Everything they touch
is passed in: a :class:`~tollgate.billing.close.ledger.Ledger` (DynamoDB in production), a
:class:`~tollgate.billing.invoicing.StripeInvoicing` gateway and the time ``now``. The steps and why they
are safe to re-run: :mod:`tollgate.billing.close.steps`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

from tollgate.billing.close import steps
from tollgate.billing.close.ledger import Ledger
from tollgate.billing.close.summary import CloseSummary, CustomerClose
from tollgate.billing.invoicing import StripeInvoice, StripeInvoicing
from tollgate.domain.closes import DONE, CloseStatus, PeriodClose, ensure_period_ended
from tollgate.domain.models import Customer
from tollgate.domain.periods import period_end, previous_period
from tollgate.domain.rating import LineKind
from tollgate.errors import CloseError, ConflictError

LOG = logging.getLogger(__name__)

MAX_STEPS = 6  # transitions tried in one run (a lost race costs one more)


@dataclass(frozen=True)
class CloseOutcome:
    """A run's result: the record, and whether this run is the one that stored the record (``rated_now``) or
    recorded the finalization (``finalized_now``): what the worker counts once in its metrics."""

    record: PeriodClose
    finalized_now: bool = False
    rated_now: bool = False


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
    ctx = steps.CloseContext(ledger, stripe_gateway, customer_id, period, now, customer)
    finish_threshold_invoices(ctx)  # the close takes off what they billed: each must be invoiced first
    rated = steps.rated_record(ctx)  # a failure before a record exists has nowhere to be recorded
    if rated.stored_now:
        _forget_drawn_periods(ctx, rated.record)
    try:
        outcome = _drive(ctx, rated)
    except Exception as error:
        _record_failure(ctx, error)
        raise
    return replace(outcome, rated_now=rated.stored_now)


def run_threshold(
    ledger: Ledger,
    stripe_gateway: StripeInvoicing,
    customer_id: str,
    period: str,
    *,
    now: datetime,
) -> list[CloseOutcome]:
    """Invoice the period's threshold invoices that are not done yet, then store and invoice the next one if
    the usage not invoiced yet has reached the plan's ``invoice_threshold``; the outcomes of the ones this run
    moved. Nothing once the period has ended: its close bills what is left. Safe to run again, and in
    parallel: each threshold invoice is stored once (``tollgate.dal.closes.put_threshold_invoice``)."""
    if now >= period_end(period):
        return []
    ctx = steps.CloseContext(ledger, stripe_gateway, customer_id, period, now)
    parts = ledger.threshold_invoices(customer_id, period)
    outcomes = finish_threshold_invoices(ctx, parts)
    rated = steps.next_threshold_invoice(ctx, parts)  # finishing changes no part's amount
    if rated is not None:
        outcomes.append(_run_part(replace(ctx, part=rated.record.part), rated))
    return outcomes


def finish_threshold_invoices(
    ctx: steps.CloseContext, parts: list[PeriodClose] | None = None
) -> list[CloseOutcome]:
    """Drive each of the period's threshold invoices (``parts``, else read) that is not done to done (a run
    that crashed midway)."""
    outcomes = []
    for part in parts if parts is not None else ctx.ledger.threshold_invoices(ctx.customer_id, ctx.period):
        if part.status not in DONE:
            rated = steps.Rated(part, stored_now=False)
            outcomes.append(_run_part(replace(ctx, part=part.part), rated))
    return outcomes


def _run_part(ctx: steps.CloseContext, rated: steps.Rated) -> CloseOutcome:
    try:
        return replace(_drive(ctx, rated), rated_now=rated.stored_now)
    except Exception as error:
        _record_failure(ctx, error)
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


def _drive(ctx: steps.CloseContext, rated: steps.Rated) -> CloseOutcome:
    """Move the record on until it is done; a lost race re-reads the record and carries on from there."""
    record, search_first = rated.record, not rated.stored_now
    seen: StripeInvoice | None = None  # the invoice as this run last saw it
    for _ in range(MAX_STEPS):
        if record.status in DONE:
            return CloseOutcome(record)
        try:
            if record.status is CloseStatus.RATED:
                created = steps.create_invoice(ctx, record, search_first=search_first)
                record, seen = created.record, created.invoice
            else:
                record = steps.finalize_invoice(ctx, record, seen)
                return CloseOutcome(record, finalized_now=True)
        except ConflictError:  # another run moved the record: carry on from where it is now
            record, search_first, seen = _reload(ctx), True, None
    raise CloseError(f"close of {ctx.name} kept losing races; try again")


def _forget_drawn_periods(ctx: steps.CloseContext, record: PeriodClose) -> None:
    """A prepaid customer's wallet keeps the periods late usage may still reach (this one and the
    ``LATE_USAGE_LOOKBACK`` before it); older ones are dropped, so the item every request writes stays small.
    A failure is only logged: the next close drops them too."""
    if not any(line.kind is LineKind.PREPAID for line in record.statement.lines):
        return
    oldest_kept = ctx.period
    for _ in range(steps.LATE_USAGE_LOOKBACK):
        oldest_kept = previous_period(oldest_kept)
    try:
        ctx.ledger.forget_wallet_periods(ctx.customer_id, oldest_kept)
    except Exception:
        LOG.exception("could not drop the old wallet counters of %s", ctx.customer_id)


def _reload(ctx: steps.CloseContext) -> PeriodClose:
    record = ctx.ledger.get_close(ctx.customer_id, ctx.period, ctx.part)
    if record is None:
        raise CloseError(f"close record of {ctx.name} disappeared")
    return record


def _record_failure(ctx: steps.CloseContext, error: Exception) -> None:
    try:
        ctx.ledger.record_failure(ctx.customer_id, ctx.period, describe(error), ctx.now, ctx.part)
    except Exception:
        LOG.exception("could not record the failure of %s", ctx.name)
