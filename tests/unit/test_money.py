"""Money: minor units per currency, the one rounding (half up, per line), and amounts as people read them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tollgate.domain.money import (
    format_amount,
    line_amount,
    minor_unit_exponent,
    to_minor_units,
)


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("usd", 2), ("eur", 2), ("USD", 2), ("jpy", 0), ("JPY", 0), ("krw", 0), ("xpf", 0), ("bif", 0)],
)
def test_cents_or_whole_units_per_currency_in_any_case(currency: str, exponent: int) -> None:
    assert minor_unit_exponent(currency) == exponent


@pytest.mark.parametrize("currency", ["bhd", "jod", "kwd", "omr", "tnd", "KWD"])
def test_three_decimal_currencies_are_refused(currency: str) -> None:
    with pytest.raises(ValueError, match="three decimals"):
        minor_unit_exponent(currency)


# Stripe's list: https://docs.stripe.com/currencies#zero-decimal
STRIPE_ZERO_DECIMAL = [
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


@pytest.mark.parametrize("currency", STRIPE_ZERO_DECIMAL)
def test_every_zero_decimal_currency_of_stripes_is_billed_in_whole_units(currency: str) -> None:
    assert minor_unit_exponent(currency) == 0
    assert format_amount(1_234, currency) == f"1,234 {currency.upper()}"


def test_a_price_in_major_units_becomes_exact_minor_units() -> None:
    assert to_minor_units(Decimal("0.00042"), "usd") == Decimal("0.042")  # of a cent: nothing rounded
    assert to_minor_units(Decimal("49"), "usd") == Decimal("4900")
    assert to_minor_units(Decimal("0.5"), "jpy") == Decimal("0.5")  # half a yen stays half a yen
    assert to_minor_units(Decimal("1000"), "JPY") == Decimal("1000")


@pytest.mark.parametrize(
    ("unit", "quantity", "amount"),
    [
        (Decimal("0.042"), 1_234_567, 51_852),  # 51,851.814 -> 51,852
        (Decimal("0.5"), 1, 1),  # half up, not to even
        (Decimal("0.5"), 3, 2),  # 1.5 -> 2
        (Decimal("0.5"), 5, 3),  # 2.5 -> 3 (to even would be 2)
        (Decimal("0.49"), 1, 0),
        (Decimal("0.042"), 11, 0),  # 0.462 -> nothing
        (Decimal("4900"), 1, 4_900),
        (Decimal("0.03"), 42_000, 1_260),
        (Decimal("7"), 0, 0),
    ],
)
def test_a_line_is_unit_times_quantity_rounded_half_up_once(
    unit: Decimal, quantity: int, amount: int
) -> None:
    assert line_amount(unit, quantity) == amount


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (6_160, "usd", "61.60 USD"),
        (123_456, "usd", "1,234.56 USD"),
        (5, "eur", "0.05 EUR"),
        (0, "usd", "0.00 USD"),
        (7_173, "jpy", "7,173 JPY"),
        (1_000, "JPY", "1,000 JPY"),
    ],
)
def test_amounts_are_shown_in_major_units_with_the_currency(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text
