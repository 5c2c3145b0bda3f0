"""What a close cannot bill yet is carried to the next one: usage too small to bill, and late usage in another
currency than the invoice. Pure functions over ``Decimal``; no I/O.

**Small usage.** Stripe bills a line as ``unit_amount x quantity`` rounded half-up to the minor unit, so a
usage line worth less than half a minor unit (3 credits at 0.042 cents: 0.126 cents) is billed as nothing.
Such a line is left off the invoice and its exact value carried (:func:`take_small_usage`); every close adds
what it takes over to its own small usage, and once the sum rounds to at least one minor unit it is billed on
one line (kind ``carried``, quantity 1, ``unit_amount`` the exact sum), which Stripe rounds once. What that
rounding leaves, up or down, is carried on (negative: billed ahead), so over any run of periods the customer
pays the exact value of their small usage rounded once, never more. A statement that bills a minimum
commitment true-up carries nothing: the commitment already bills more than the usage.

**Late usage in another currency.** A Stripe invoice has one currency. Late usage of a period billed in
another currency than this close's invoice is priced on its own plan as usual, and its lines are carried
until a close invoices in that currency.

Each close takes over what the earlier records it reads still carry, in the transaction that stores its own
record (``tollgate.dal.closes.put_close``), and carries on what it cannot bill: nothing is billed twice, and
nothing waits on a record the next close does not read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, localcontext

from tollgate.domain.closes import Carry
from tollgate.domain.models import Plan
from tollgate.domain.money import format_amount, line_amount, minor_unit_exponent
from tollgate.domain.rating import EXACT_DIGITS, LineKind, Statement, StatementLine, usage_lines


def exact_value(line: StatementLine) -> Decimal:
    """A line's value before Stripe rounds it, in minor units."""
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        return line.unit_amount * line.quantity


def is_small(line: StatementLine) -> bool:
    """A usage line worth something that Stripe would bill as nothing."""
    return line.kind is LineKind.USAGE and line.amount == 0 and exact_value(line) > 0


def take_small_usage(statement: Statement) -> tuple[Statement, Carry | None]:
    """The statement without its small usage lines, and their value to carry (None: there are none)."""
    if any(line.kind is LineKind.MINIMUM for line in statement.lines):
        return statement, None  # the true-up bills the commitment, more than the usage it covers
    small = [line for line in statement.lines if is_small(line)]
    if not small:
        return statement, None
    kept = tuple(line for line in statement.lines if not is_small(line))
    carry = Carry(
        currency=statement.currency,
        amount=_sum(exact_value(line) for line in small),
        credits=sum(line.quantity for line in small),
        since=statement.period,
    )
    return statement.model_copy(update={"lines": kept}), carry


def small_usage(plan: Plan, credits: int, included: int, minimum: int) -> tuple[Decimal, int]:
    """The value (minor units, exact) and credits of the small usage lines of ``credits`` on ``plan``, as the
    close carries them: none when the usage is billed at the ``minimum`` commitment."""
    lines = usage_lines(plan, credits, "-", included)
    if sum(line.amount for line in lines) < minimum:
        return Decimal(0), 0
    small = [line for line in lines if is_small(line)]
    return _sum(exact_value(line) for line in small), sum(line.quantity for line in small)


def merge(carries: Iterable[Carry]) -> dict[str, Carry]:
    """The carries by currency, each currency's summed (lines oldest period first)."""
    merged: dict[str, Carry] = {}
    for carry in carries:
        if carry.empty:
            continue
        was = merged.get(carry.currency)
        if was is None:
            merged[carry.currency] = carry
            continue
        starts = [period for period in (was.since, carry.since) if period is not None]
        merged[carry.currency] = Carry(
            currency=carry.currency,
            amount=_sum((was.amount, carry.amount)),
            credits=was.credits + carry.credits,
            since=min(starts) if starts else None,
            lines=tuple(sorted((*was.lines, *carry.lines), key=lambda line: line.period)),
        )
    return merged


def carried_line(carry: Carry, period: str) -> StatementLine:
    """The line that bills small usage carried up to ``period``: the exact sum, rounded once by Stripe."""
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        unit = Decimal(format(carry.amount.normalize(), "f"))
    since = carry.since or period
    span = period if since == period else f"{since} to {period}"
    return StatementLine(
        kind=LineKind.CARRIED,
        description=(
            f"API usage carried over ({span}): {carry.credits:,} credits worth less than "
            f"{format_amount(1, carry.currency)} in their period"
        ),
        period=period,
        quantity=1,
        unit_amount=unit,
        amount=line_amount(unit, 1),
    )


def settle(statement: Statement, carries: Mapping[str, Carry]) -> tuple[Statement, tuple[Carry, ...]]:
    """Bill on ``statement`` what ``carries`` hold in its currency: the waiting lines, and the small usage
    once it rounds to a minor unit or more. Returns the statement and what is carried on, by currency."""
    currency = statement.currency
    left = [carry for other, carry in sorted(carries.items()) if other != currency]
    mine = carries.get(currency)
    if mine is None:
        return statement, tuple(left)
    lines = [*statement.lines, *mine.lines]
    billed = line_amount(mine.amount, 1) if mine.amount > 0 else 0
    if billed > 0:
        lines.append(carried_line(mine, statement.period))
        rest = Carry(currency=currency, amount=_sum((mine.amount, Decimal(-billed))))
    else:
        rest = mine.model_copy(update={"lines": ()})
    if not rest.empty:
        left = sorted([*left, rest], key=lambda carry: carry.currency)
    return statement.model_copy(update={"lines": tuple(lines)}), tuple(left)


def describe(carry: Carry) -> str:
    """What a carry holds, for people (``tollgate invoices show``)."""
    currency = carry.currency.upper()
    parts = []
    if carry.lines:
        late = format_amount(sum(line.amount for line in carry.lines), carry.currency)
        parts.append(f"{late} of late usage waiting for an invoice in {currency}")
    if carry.amount:
        exact = format(carry.amount.scaleb(-minor_unit_exponent(carry.currency)).normalize(), "f")
        if carry.amount < 0:
            parts.append(f"{exact} {currency} billed ahead by rounding")
        else:
            since = f", {carry.credits:,} credits since {carry.since}" if carry.since else ""
            parts.append(f"{exact} {currency} of usage too small to bill yet{since}")
    return "; ".join(parts)


def _sum(values: Iterable[Decimal]) -> Decimal:
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        return sum(values, Decimal(0))
