"""Discounts: which periods a customer's coupon covers, and what Stripe (the double) takes off an invoice.

The close applying them period after period, and the CLI: ``tests/integration/test_close_discounts_tax.py``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe

from tollgate.domain.discounts import (
    NO_DISCOUNT_METADATA,
    CustomerDiscount,
    coupon_due,
    discount_from_metadata,
    last_period,
)
from tollgate_local.stripe_double import StripeDouble


# -- the schedule ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("duration", "months", "last"),
    [
        ("once", None, "2026-11"),
        ("repeating", 1, "2026-11"),
        ("repeating", 3, "2027-01"),  # November, December, January: across the year's end
        ("repeating", 14, "2027-12"),
        ("forever", None, None),
    ],
)
def test_a_coupons_duration_is_a_range_of_periods_from_the_first(
    duration: str, months: int | None, last: str | None
) -> None:
    assert last_period("2026-11", duration, months) == last


def test_a_three_month_coupon_is_due_on_three_periods_only() -> None:
    metadata = CustomerDiscount("SPRING20", "2026-11", last_period("2026-11", "repeating", 3)).to_metadata()

    due = {period: coupon_due(metadata, period) for period in ("2026-10", "2026-11", "2027-01", "2027-02")}

    assert due == {"2026-10": None, "2026-11": "SPRING20", "2027-01": "SPRING20", "2027-02": None}


def test_a_forever_coupon_has_no_last_period_and_removal_clears_every_key() -> None:
    forever = CustomerDiscount("LOYAL10", "2026-11", None)
    metadata = forever.to_metadata()

    assert metadata == {
        "tollgate_coupon": "LOYAL10",
        "tollgate_coupon_from": "2026-11",
        "tollgate_coupon_until": "",
    }
    assert discount_from_metadata(metadata) == forever
    assert coupon_due(metadata, "2036-01") == "LOYAL10"
    assert discount_from_metadata({**metadata, **NO_DISCOUNT_METADATA}) is None


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        {},
        {"tollgate_coupon": "X"},  # no first period
        {"tollgate_coupon": "X", "tollgate_coupon_from": "November"},  # not written by Tollgate
        {"tollgate_coupon": "X", "tollgate_coupon_from": "2026-11", "tollgate_coupon_until": "soon"},
        {"other": "metadata"},
    ],
)
def test_metadata_that_is_not_a_tollgate_discount_gives_no_discount(metadata: dict[str, str] | None) -> None:
    assert discount_from_metadata(metadata) is None
    assert coupon_due(metadata, "2026-11") is None


def test_a_repeating_coupon_without_months_or_an_unknown_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="duration_in_months"):
        last_period("2026-11", "repeating", None)
    with pytest.raises(ValueError, match="unknown coupon duration 'sometimes'"):
        last_period("2026-11", "sometimes", None)


# -- what Stripe takes off (the double) -------------------------------------------------------------------
@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return double.client()


def line(unit: str, quantity: int, currency: str = "usd", **extra: Any) -> dict[str, Any]:
    return {
        "price_data": {
            "currency": currency,
            "product_data": {"name": "API usage"},
            "unit_amount_decimal": Decimal(unit),
        },
        "quantity_decimal": Decimal(quantity),
        **extra,
    }


def invoice_with(client: stripe.StripeClient, lines: list[dict[str, Any]], **params: Any) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"name": "Acme"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, **params})
    return client.v1.invoices.add_lines(invoice.id, params={"lines": lines})


def test_a_percent_coupon_takes_its_share_of_the_subtotal_and_spreads_it_over_the_lines(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    client.v1.coupons.create(params={"id": "SPRING20", "percent_off": 20, "duration": "once"})
    invoice = invoice_with(
        client, [line("4900", 1), line("0.03", 42_001)], discounts=[{"coupon": "SPRING20"}]
    )  # 4900 + 1260.03 -> 1260 cents

    held = double.invoices[invoice.id]

    assert (held["subtotal"], held["total"], held["amount_due"]) == (6160, 4928, 4928)
    assert [d["amount"] for d in held["total_discount_amounts"]] == [1232]
    shares = [sum(d["amount"] for d in line["discount_amounts"]) for line in held["lines"]["data"]]
    assert shares == [980, 252]  # in proportion to each line, adding up exactly
    assert double.coupons["SPRING20"]["times_redeemed"] == 1


def test_an_amount_off_never_takes_more_than_the_subtotal_and_a_zero_total_is_paid_on_finalizing(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    client.v1.coupons.create(
        params={"id": "WELCOME50", "amount_off": 5000, "currency": "usd", "duration": "forever"}
    )
    invoice = invoice_with(
        client, [line("0.042", 1_234)], discounts=[{"coupon": "WELCOME50"}]
    )  # 51.828 -> 52

    finalized = client.v1.invoices.finalize_invoice(invoice.id)

    assert (finalized.subtotal, finalized.total, finalized.status) == (52, 0, "paid")
    assert [d.amount for d in finalized.total_discount_amounts] == [52]


def test_a_discount_on_a_draft_can_be_replaced_and_is_shown_expanded(client: stripe.StripeClient) -> None:
    client.v1.coupons.create(params={"id": "TEN", "percent_off": 10})
    client.v1.coupons.create(params={"id": "HALF", "percent_off": 50, "name": "Half price"})
    invoice = invoice_with(client, [line("100", 10)], discounts=[{"coupon": "TEN"}])

    updated = client.v1.invoices.update(
        invoice.id, params={"discounts": [{"coupon": "HALF"}], "expand": ["discounts"]}
    )

    assert [d.source.coupon for d in updated.discounts] == ["HALF"]
    assert updated.total == 500
    cleared = client.v1.invoices.update(invoice.id, params={"discounts": ""})
    assert (cleared.discounts, cleared.total) == ([], 1000)


def test_an_unknown_expired_or_foreign_currency_coupon_is_refused_and_nothing_is_made(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    client.v1.coupons.create(params={"id": "ONCE", "percent_off": 5, "max_redemptions": 1})
    client.v1.coupons.create(params={"id": "EURO", "amount_off": 500, "currency": "eur"})
    client.v1.invoices.create(params={"customer": customer.id, "discounts": [{"coupon": "ONCE"}]})

    refusals = {}
    for coupon in ("FORGED", "ONCE", "EURO"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.invoices.create(params={"customer": customer.id, "discounts": [{"coupon": coupon}]})
        refusals[coupon] = (refused.value.param, refused.value.code)

    assert refusals == {
        "FORGED": ("discounts[0][coupon]", "resource_missing"),
        "ONCE": ("discounts[0][coupon]", "coupon_expired"),
        "EURO": ("discounts[0][coupon]", None),
    }
    assert len(double.invoices) == 1
    assert double.coupons["ONCE"]["valid"] is False


def test_a_finalized_invoices_discounts_cannot_change(client: stripe.StripeClient) -> None:
    client.v1.coupons.create(params={"id": "TEN", "percent_off": 10})
    invoice = invoice_with(client, [line("100", 1)])
    client.v1.invoices.finalize_invoice(invoice.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.update(invoice.id, params={"discounts": [{"coupon": "TEN"}]})

    assert refused.value.code == "invoice_not_editable"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"percent_off": 10, "amount_off": 100, "currency": "usd"}, "percent_off"),
        ({"amount_off": 100}, "currency"),
        ({"percent_off": 120}, "percent_off"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": 10, "duration": "once", "duration_in_months": 3}, "duration_in_months"),
        ({"percent_off": 10, "applies_to": {"products": ["prod_1"]}}, "applies_to"),
    ],
)
def test_coupons_are_checked_as_stripe_checks_them(
    client: stripe.StripeClient, params: dict[str, Any], param: str
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.coupons.create(params=params)

    assert refused.value.param == param


def test_a_deleted_coupon_cannot_be_redeemed_but_an_invoice_that_has_it_keeps_it(
    client: stripe.StripeClient,
) -> None:
    client.v1.coupons.create(params={"id": "TEN", "percent_off": 10})
    kept = invoice_with(client, [line("100", 10)], discounts=[{"coupon": "TEN"}])

    client.v1.coupons.delete("TEN")

    with pytest.raises(stripe.InvalidRequestError, match="No such coupon: 'TEN'"):
        client.v1.coupons.retrieve("TEN")
    assert client.v1.invoices.finalize_invoice(kept.id).total == 900
