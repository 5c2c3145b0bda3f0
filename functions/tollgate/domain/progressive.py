"""Progressive billing: a period's usage invoiced before the period ends, once it reaches an amount.

A plan with an ``invoice_threshold`` has a customer's usage invoiced as soon as what is not invoiced yet
reaches that amount (a *threshold invoice*), so a customer cannot run up a large bill between two closes.
What a threshold invoice bills is the period's usage charge so far, rated exactly as the close would rate
it (included credits, tiers, plan segments, free credits), less what the period's earlier threshold invoices
billed: one line, its amount in the minor unit. Base fee, minimum commitment, late and carried usage wait
for the close.

The close rates the whole period as always, and its invoice takes off what the threshold invoices billed
(one negative line, :func:`invoiced_earlier_line`): each credit is billed exactly once, and the customer
sees the period's usage in full on the last invoice. Which threshold invoices the close takes off is fixed
in the transaction that stores its record (``tollgate.dal.closes.put_close``), and a threshold invoice is
only stored while the period's close record does not exist, so none is ever left out or taken off twice.

Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from tollgate.domain.closes import PeriodClose
from tollgate.domain.models import Plan
from tollgate.domain.money import format_amount, to_minor_units
from tollgate.domain.rating import LineKind, Statement, StatementLine


def threshold_minor(plan: Plan) -> int | None:
    """The plan's ``invoice_threshold`` in the minor unit (None: no progressive billing)."""
    if plan.invoice_threshold is None:
        return None
    return int(to_minor_units(plan.invoice_threshold, plan.currency))


def usage_amount(statement: Statement) -> int:
    """What ``statement``'s usage lines bill (minor units): what a threshold invoice bills ahead."""
    return sum(line.amount for line in statement.lines if line.kind is LineKind.USAGE)


def invoiced(parts: Sequence[PeriodClose]) -> int:
    """What the period's threshold invoices ``parts`` billed, in the minor unit."""
    return sum(part.total for part in parts)


def threshold_statement(
    rated: Statement, parts: Sequence[PeriodClose], threshold: int, at: datetime
) -> Statement | None:
    """The statement of the next threshold invoice: the usage of ``rated`` (the period rated up to ``at``)
    not billed by the earlier threshold invoices ``parts``; None while that is below ``threshold``."""
    billed = invoiced(parts)
    due = usage_amount(rated) - billed
    if due < threshold or due <= 0:
        return None
    less = f", less {format_amount(billed, rated.currency)} invoiced before" if billed else ""
    line = StatementLine(
        kind=LineKind.THRESHOLD,
        description=(
            f"API usage for {rated.period} up to {at:%b} {at.day} {at:%H:%M} UTC: {rated.credits:,} credits"
            f"{less}"
        ),
        period=rated.period,
        quantity=1,
        unit_amount=Decimal(due),
        amount=due,
    )
    # Free credits used here are the close's to record: a threshold invoice records none.
    return rated.model_copy(update={"lines": (line,), "grants_used": {}})


def invoiced_earlier_line(period: str, currency: str, parts: Sequence[PeriodClose]) -> StatementLine | None:
    """The close's line taking off what the period's threshold invoices billed (None: there are none)."""
    billed = invoiced(parts)
    if not parts or billed == 0:
        return None
    invoices = ", ".join(part.stripe_invoice_id or f"#{part.part}" for part in parts)
    count = f"{len(parts)} threshold invoices" if len(parts) > 1 else "a threshold invoice"
    return StatementLine(
        kind=LineKind.INVOICED_EARLIER,
        description=(
            f"API usage for {period} invoiced during the period ({count}: {invoices}), "
            f"{format_amount(billed, currency)}"
        ),
        period=period,
        quantity=1,
        unit_amount=Decimal(-billed),
        amount=-billed,
    )
