"""Currencies a plan can bill in: Stripe's presentment currencies, less those whose rules Tollgate does not
bill by; ISK only in whole kronur; a base fee no larger than Stripe invoices. Refused when the plan is
created, with a message that names the field."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.billing.invoicing import InvoiceDraft, StripeClientInvoicing, invoice_lines
from tollgate.domain.currencies import (
    PRESENTMENT_CURRENCIES,
    REFUSED,
    WHOLE_UNITS_ONLY,
    amount_increment,
    check_currency,
    supported_currencies,
)
from tollgate.domain.models import CollectionMethod, Tier
from tollgate.domain.money import THREE_DECIMAL, ZERO_DECIMAL
from tollgate.domain.rating import rate_period
from tollgate_local.stripe_double import StripeDouble


def refusal(**fields: object) -> str:
    """The one error ``make_plan(**fields)`` raises, as ``field: message``."""
    with pytest.raises(ValidationError) as caught:
        make_plan(**fields)
    errors = caught.value.errors()
    assert len(errors) == 1
    where = ".".join(str(part) for part in errors[0]["loc"])
    return f"{where}: {errors[0]['msg']}" if where else errors[0]["msg"]


def test_the_list_is_stripes_lowercase_codes_with_every_special_currency_in_it() -> None:
    assert all(re.fullmatch(r"[a-z]{3}", code) for code in PRESENTMENT_CURRENCIES)
    assert len(PRESENTMENT_CURRENCIES) >= 130
    assert ZERO_DECIMAL <= PRESENTMENT_CURRENCIES
    assert WHOLE_UNITS_ONLY <= PRESENTMENT_CURRENCIES
    assert {"usd", "eur", "gbp", "jpy", "isk", "huf", "twd", "ugx", "idr", "sle"} <= PRESENTMENT_CURRENCIES
    assert REFUSED.keys() >= THREE_DECIMAL
    assert supported_currencies() == PRESENTMENT_CURRENCIES - REFUSED.keys()
    assert "ugx" not in supported_currencies()


@pytest.mark.parametrize("currency", sorted(supported_currencies()))
def test_a_plan_can_bill_in_every_supported_currency(currency: str) -> None:
    price = "3" if currency in WHOLE_UNITS_ONLY else "0.5"
    plan = make_plan(currency=currency.upper(), price_per_credit=price, base_fee="10")
    assert plan.currency == currency
    assert check_currency(currency.upper()) == currency


@pytest.mark.parametrize("code", ["abc", "xyz", "usx", "eeu", "sll", "xxx"])
def test_a_code_stripe_does_not_present_is_refused_at_plan_creation(code: str) -> None:
    assert refusal(currency=code) == (
        f"currency: Value error, currency {code!r} is not one of Stripe's presentment currencies "
        "(https://docs.stripe.com/currencies#presentment-currencies)"
    )


def test_ugx_is_refused_because_stripe_documents_two_minor_units_for_it() -> None:
    message = refusal(currency="UGX")
    assert message.startswith("currency: Value error, currency 'ugx' is not supported: ")
    assert "zero-decimal" in message
    assert "multiples of 100" in message


@pytest.mark.parametrize("currency", sorted(THREE_DECIMAL))
def test_three_decimal_currencies_are_refused_with_the_reason(currency: str) -> None:
    message = refusal(currency=currency)
    assert f"currency {currency!r} (three decimals) is not supported" in message
    assert "last digit is 0" in message


# -- ISK: whole kronur only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"price_per_credit": "1"},
        {"price_per_credit": "0", "base_fee": "4900"},
        {"price_per_credit": "2.00", "base_fee": "1.0"},
        {
            "tiers": (
                Tier(up_to=10, price_per_credit=Decimal(5)),
                Tier(up_to=None, price_per_credit=Decimal(1)),
            )
        },
    ],
)
def test_isk_prices_in_whole_kronur_are_accepted(fields: dict[str, object]) -> None:
    assert make_plan(currency="isk", **fields).currency == "isk"


@pytest.mark.parametrize(
    ("fields", "named", "price"),
    [
        ({"price_per_credit": "0.5"}, "price_per_credit", "0.5"),
        ({"price_per_credit": "1", "base_fee": "4900.01"}, "base_fee", "4900.01"),
        ({"price_per_credit": "0.000042"}, "price_per_credit", "0.000042"),
        (
            {
                "tiers": (
                    Tier(up_to=10, price_per_credit=Decimal(5)),
                    Tier(up_to=None, price_per_credit=Decimal("0.1")),
                )
            },
            "tiers[1].price_per_credit",
            "0.1",
        ),
    ],
)
def test_isk_prices_with_fractions_of_a_krona_are_refused_naming_the_field(
    fields: dict[str, object], named: str, price: str
) -> None:
    assert refusal(currency="isk", **fields) == (
        f"Value error, {named}: {price} ISK is not a multiple of 1 ISK: Stripe charges ISK in whole units "
        "only (amounts divisible by 100 in the minor unit)"
    )


@pytest.mark.parametrize("currency", ["huf", "twd"])
def test_huf_and_twd_are_charged_with_two_decimals_like_any_other(currency: str) -> None:
    """Stripe's whole-unit rule for HUF and TWD is for manual payouts, which Tollgate never makes."""
    assert amount_increment(currency) == 1
    plan = make_plan(currency=currency, price_per_credit="0.00042", base_fee="10.45")
    assert rate_period(plan, "acme", "2026-10", 1_001).total == 1_045 + 42


def test_only_isk_has_an_increment() -> None:
    assert {code for code in PRESENTMENT_CURRENCIES if amount_increment(code) != 1} == {"isk"}
    assert amount_increment("ISK") == 100


# -- a base fee Stripe can invoice -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "largest"),
    [
        ("usd", "999999.99"),
        ("jpy", "99999999"),
        ("isk", "999999"),
        ("idr", "9999999999.99"),
        ("inr", "9999999.99"),
    ],
)
def test_a_base_fee_up_to_stripes_maximum_is_accepted_and_one_unit_more_is_refused(
    currency: str, largest: str
) -> None:
    assert make_plan(currency=currency, base_fee=largest, price_per_credit="1").base_fee == Decimal(largest)
    one_more = Decimal(largest) + (1 if currency in ("jpy", "isk") else Decimal("0.01"))
    message = refusal(currency=currency, base_fee=str(one_more), price_per_credit="1")
    assert message.startswith(
        f"Value error, base_fee: {one_more} {currency.upper()} is more than Stripe invoices"
    )


# -- the special currencies through the Stripe double ----------------------------------------------------


@pytest.fixture(scope="module")
def stripe_account() -> Iterator[tuple[StripeClientInvoicing, str]]:
    with StripeDouble() as double:
        client = double.client()
        customer = client.v1.customers.create(params={"name": "Currencies", "invoice_prefix": "CURR"})
        yield StripeClientInvoicing(client), customer.id


@pytest.mark.parametrize(
    ("currency", "price", "base_fee", "credits", "total"),
    [
        ("isk", "3", "4900", 12_345, (4_900 + 3 * 12_345) * 100),
        ("huf", "0.0042", "175", 1_001, 17_500 + 420),  # 420.42 rounded half up
        ("twd", "0.015", "0", 333, 500),  # 499.5 -> 500
        ("idr", "12.5", "1000000", 7, 100_000_000 + 8_750),
        ("jpy", "0.3", "500", 1_001, 500 + 300),
    ],
)
def test_the_double_invoices_the_special_currencies_to_the_statement_total(
    stripe_account: tuple[StripeClientInvoicing, str],
    currency: str,
    price: str,
    base_fee: str,
    credits: int,
    total: int,
) -> None:
    gateway, stripe_customer = stripe_account
    statement = rate_period(
        make_plan(currency=currency, price_per_credit=price, base_fee=base_fee), "acme", "2026-10", credits
    )
    draft = InvoiceDraft(
        stripe_customer_id=stripe_customer,
        currency=currency,
        collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
        days_until_due=None,
        description="currencies",
        metadata={},
    )
    invoice = gateway.create_invoice(draft, idempotency_key=f"currencies-{uuid.uuid4()}")
    invoice = gateway.add_lines(
        invoice.id, invoice_lines(statement), idempotency_key=f"currencies-{uuid.uuid4()}"
    )

    assert statement.total == total
    assert invoice.total == statement.total
    assert all(line.amount % amount_increment(currency) == 0 for line in statement.lines)
