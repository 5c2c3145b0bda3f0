"""Currencies and rounding. Amounts on invoices are integers in the currency's minor unit (cents, yen);
prices stay exact ``Decimal`` until a line amount is computed, which is the one place we round."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

# Stripe's zero-decimal currencies: an amount of 500 JPY is sent as 500. Which currencies a plan may bill in,
# and the special rules (ISK, UGX, ...), are in tollgate.domain.currencies.
ZERO_DECIMAL = frozenset(
    [
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    ]
)
# Stripe's three-decimal currencies need amounts rounded to tens: not supported, refused by plan validation.
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
MAX_UNIT_DECIMALS = 12  # Stripe's limit for unit_amount_decimal


def minor_unit_exponent(currency: str) -> int:
    currency = currency.lower()
    if currency in THREE_DECIMAL:
        raise ValueError(f"currency {currency!r} (three decimals) is not supported")
    return 0 if currency in ZERO_DECIMAL else 2


def to_minor_units(amount: Decimal, currency: str) -> Decimal:
    """A price in major units (``0.00042`` USD) -> exact minor units (``0.042`` cents)."""
    return amount.scaleb(minor_unit_exponent(currency))


def line_amount(unit_amount_minor: Decimal, quantity: int) -> int:
    """What Stripe charges for a line: unit amount x quantity, rounded half-up to a whole minor unit."""
    return int((unit_amount_minor * quantity).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_amount(minor: int, currency: str) -> str:
    """``123456, "usd"`` -> ``"1,234.56 USD"`` (for people; never parsed back)."""
    exponent = minor_unit_exponent(currency)
    major = Decimal(minor).scaleb(-exponent)
    return f"{major:,.{exponent}f} {currency.upper()}"
