"""The largest amount and quantity Stripe invoices, checked on a statement before any of it is sent.

Amounts. Stripe's currency page (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts) limits
what it charges by the number of digits of the amount in the minor unit. For card payments most networks
take 12 digits (American Express 9); for every other payment method, 12 digits for IDR, 10 for COP, 9 for
INR and 8 for all other currencies: 999,999.99 USD (``99999999``), 99,999,999 JPY. Tollgate does not know
how a customer will pay an invoice (a card, a bank debit, a transfer for ``send_invoice``), so it holds every
invoice to the limits that hold for all of them. An invoice line is held to the same limit (Stripe refuses a
line above it: "total amount (quantity * plan amount) must be no more than $999,999.99 USD"), and so is a
unit amount (Stripe's ``unit_amount_decimal`` has as many digits before the point as the amount).

Quantities. Stripe documents no maximum for ``quantity_decimal``; setting it also sets the line's integer
``quantity``, truncated (https://docs.stripe.com/changelog/dahlia/2026-03-25/invoice-items-decimal-quantity),
and Stripe's integers are 64-bit (its typed libraries declare them ``int64``). A quantity is therefore at most
``2**63 - 1``; lines also carry at most 12 decimal places of quantity, and Tollgate's quantities are whole.

Split or refuse? Refuse. Every line of a statement is 0 or more, so the total is at least as large as any
line: a statement whose line is over the limit has a total over it too, and splitting the line into several
would leave that total, which is what the customer is charged, as large as before. A quantity over
``2**63 - 1`` credits in one month is some 3.5 trillion requests a second. The close refuses such a
statement with a message naming the line, before anything is sent to Stripe (``check_statement_limits``); a
plan whose base fee alone is over the limit is refused when it is created (``check_line_price``).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING

from tollgate.domain.currencies import amount_increment
from tollgate.domain.money import format_amount, to_minor_units

if TYPE_CHECKING:
    from tollgate.domain.rating import Statement, StatementLine

DEFAULT_AMOUNT_DIGITS = 8
# Currencies whose amounts may have more digits, for every payment method (Stripe's currency page).
AMOUNT_DIGITS: dict[str, int] = {"idr": 12, "cop": 10, "inr": 9}
MAX_QUANTITY = 2**63 - 1


class StripeLimitError(ValueError):
    """A statement Stripe cannot invoice as it is; the message names the line and the limit."""


def max_amount(currency: str) -> int:
    """The largest amount, in the minor unit, Stripe charges in ``currency`` whatever the payment method."""
    return 10 ** AMOUNT_DIGITS.get(currency.lower(), DEFAULT_AMOUNT_DIGITS) - 1


def check_line_price(name: str, price: Decimal, currency: str) -> None:
    """A price billed as a whole line of quantity 1 (a plan's ``base_fee``) must fit in one invoice."""
    limit = max_amount(currency)
    if to_minor_units(price, currency) > limit:
        raise ValueError(
            f"{name}: {price} {currency.upper()} is more than Stripe invoices in {currency.upper()} "
            f"({format_amount(limit, currency)})"
        )


def line_problems(line: StatementLine, currency: str) -> list[str]:
    """What Stripe would refuse in ``line`` (empty: nothing)."""
    problems = []
    limit = max_amount(currency)
    increment = amount_increment(currency)
    if not 0 <= line.quantity <= MAX_QUANTITY:
        problems.append(
            f"quantity {line.quantity:,} is outside 0 to {MAX_QUANTITY:,}, Stripe's integer range"
        )
    if line.unit_amount >= limit + 1:  # unit_amount_decimal: as many digits before the point as an amount
        problems.append(
            f"unit amount {line.unit_amount} (minor units) has more digits than Stripe takes: at most "
            f"{limit:,} ({format_amount(limit, currency)})"
        )
    if line.amount > limit:
        problems.append(
            f"amount {format_amount(line.amount, currency)} is above Stripe's maximum of "
            f"{format_amount(limit, currency)}"
        )
    if increment != 1 and (line.amount % increment != 0 or line.unit_amount % increment != 0):
        problems.append(
            f"{currency.upper()} is charged in whole units only: unit amount {line.unit_amount} and amount "
            f"{line.amount} (minor units) must be multiples of {increment}"
        )
    return problems


def statement_problems(currency: str, lines: Iterable[StatementLine], total: int) -> list[str]:
    """Every reason Stripe would refuse an invoice of ``lines`` in ``currency`` (empty: none)."""
    problems = [
        f"line {number} ({line.description!r}): {problem}"
        for number, line in enumerate(lines, start=1)
        for problem in line_problems(line, currency)
    ]
    limit = max_amount(currency)
    if total > limit:
        problems.append(
            f"total {format_amount(total, currency)} is above the largest amount Stripe charges in "
            f"{currency.upper()}, {format_amount(limit, currency)} (whatever the payment method)"
        )
    return problems


def check_statement_limits(statement: Statement) -> None:
    """Refuse, with :class:`StripeLimitError`, a statement Stripe could not invoice exactly as it is: a line
    or the total above the currency's maximum amount, a quantity outside Stripe's integer range, or an ISK
    amount that is not whole kronur. Call it on every statement as it is rated, before it is stored."""
    problems = statement_problems(statement.currency, statement.lines, statement.total)
    if problems:
        raise StripeLimitError(
            f"statement of {statement.customer_id} for {statement.period} cannot be invoiced by Stripe: "
            + "; ".join(problems)
        )
