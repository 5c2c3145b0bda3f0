"""Tax: the plan's ``tax`` field, what the close sends Stripe for it, and Stripe Tax as the double does it.

The double's rates are fixed and documented (``tollgate_local.stripe_double_tax``: DE 19%, FR 20%, ...; none
where the account is not registered), so totals can be asserted to the cent. The close end to end, with the
CLI: ``tests/integration/test_close_discounts_tax.py``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.billing.invoicing import InvoiceDraft, StripeClientInvoicing, invoice_lines
from tollgate.domain.models import CollectionMethod
from tollgate.domain.rating import rate_period
from tollgate_local.stripe_double import StripeDouble


# -- the plan --------------------------------------------------------------------------------------------
def test_a_plan_has_no_tax_unless_it_says_whether_its_prices_include_it() -> None:
    assert make_plan().tax is None
    assert make_plan(tax="exclusive").tax == "exclusive"
    assert make_plan(tax="inclusive").tax == "inclusive"

    with pytest.raises(ValidationError) as refused:
        make_plan(tax="automatic")

    assert refused.value.errors()[0]["loc"] == ("tax",)


# -- the double ------------------------------------------------------------------------------------------
@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return double.client()


def line(unit: str, quantity: int, behavior: str | None = "exclusive") -> dict[str, Any]:
    price: dict[str, Any] = {
        "currency": "usd",
        "product_data": {"name": "API usage"},
        "unit_amount_decimal": Decimal(unit),
    }
    if behavior is not None:
        price["tax_behavior"] = behavior
    return {"price_data": price, "quantity_decimal": Decimal(quantity)}


def customer_in(client: stripe.StripeClient, country: str | None, **params: Any) -> str:
    address = {} if country is None else {"address": {"country": country, "postal_code": "10115"}}
    return str(client.v1.customers.create(params={"name": "Acme", **address, **params}).id)


def taxed_invoice(
    client: stripe.StripeClient, customer: str, lines: list[dict[str, Any]], **params: Any
) -> stripe.Invoice:
    invoice = client.v1.invoices.create(
        params={"customer": customer, "automatic_tax": {"enabled": True}, **params}
    )
    return client.v1.invoices.add_lines(invoice.id, params={"lines": lines})


@pytest.mark.parametrize(
    ("behavior", "subtotal", "tax", "total"),
    [
        ("exclusive", 10_000, 1_900, 11_900),  # 19% on top
        ("inclusive", 10_000, 1_597, 10_000),  # 10,000 x 19 / 119 = 1,596.6 inside
    ],
)
def test_german_vat_is_added_to_exclusive_prices_and_found_inside_inclusive_ones(
    client: stripe.StripeClient, behavior: str, subtotal: int, tax: int, total: int
) -> None:
    invoice = taxed_invoice(client, customer_in(client, "DE"), [line("100", 100, behavior)])

    assert (invoice.subtotal, invoice.total, invoice.amount_due) == (subtotal, total, total)
    (charged,) = invoice.total_taxes
    assert (charged.amount, charged.tax_behavior, charged.taxability_reason) == (
        tax,
        behavior,
        "standard_rated",
    )
    assert invoice.automatic_tax.status == "complete"
    assert invoice.total_excluding_tax == total - tax if behavior == "exclusive" else subtotal - tax


def test_tax_is_rounded_once_per_line_on_what_is_left_after_the_discount(
    client: stripe.StripeClient,
) -> None:
    client.v1.coupons.create(params={"id": "TEN", "percent_off": 10})
    invoice = taxed_invoice(
        client,
        customer_in(client, "FR"),
        [line("0.042", 1_234_567), line("4900", 1)],  # 51,851.814 -> 51,852; 4,900
        discounts=[{"coupon": "TEN"}],
    )  # 10% of 56,752 = 5,675.2 -> 5,675, spread 5,185 / 490

    assert invoice.subtotal == 56_752
    assert [d.amount for d in invoice.total_discount_amounts] == [5_675]
    assert [t.amount for line in invoice.lines.data for t in line.taxes] == [
        9_333,
        882,
    ]  # 20% of 46,667 / 4,410
    assert invoice.total == 56_752 - 5_675 + 9_333 + 882


@pytest.mark.parametrize(
    ("country", "extra", "reason"),
    [
        ("US", {}, "not_collecting"),  # the double's account is not registered there
        ("DE", {"tax_exempt": "exempt"}, "customer_exempt"),
        ("DE", {"tax_exempt": "reverse"}, "reverse_charge"),
    ],
)
def test_where_no_tax_is_due_the_reason_is_given_and_nothing_is_added(
    client: stripe.StripeClient, country: str, extra: dict[str, str], reason: str
) -> None:
    invoice = taxed_invoice(client, customer_in(client, country, **extra), [line("100", 10)])

    assert (invoice.subtotal, invoice.total) == (1_000, 1_000)
    assert [(t.amount, t.taxability_reason) for t in invoice.total_taxes] == [(0, reason)]


def test_an_invoice_with_automatic_tax_for_a_customer_without_an_address_cannot_be_finalized(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = customer_in(client, None)
    invoice = taxed_invoice(client, customer, [line("100", 10)])
    assert invoice.automatic_tax.status == "requires_location_inputs"

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.finalize_invoice(invoice.id)

    assert refused.value.code == "customer_tax_location_invalid"
    assert double.invoices[invoice.id]["status"] == "draft"
    client.v1.customers.update(customer, params={"address": {"country": "NL"}})
    assert client.v1.invoices.finalize_invoice(invoice.id).total == 1_210  # 21%


def test_lines_without_a_tax_behavior_are_refused_on_an_automatic_tax_invoice(
    client: stripe.StripeClient,
) -> None:
    invoice = client.v1.invoices.create(
        params={"customer": customer_in(client, "DE"), "automatic_tax": {"enabled": True}}
    )

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [line("100", 1, behavior=None)]})

    assert refused.value.param == "lines[0][price_data][tax_behavior]"


def test_what_the_invoice_shows_of_the_customer_is_frozen_when_it_is_finalized(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = customer_in(client, "DE")
    client.v1.customers.tax_ids.create(customer, params={"type": "eu_vat", "value": "DE123456789"})
    invoice = taxed_invoice(client, customer, [line("100", 100)])
    client.v1.invoices.finalize_invoice(invoice.id)

    client.v1.customers.update(customer, params={"address": {"country": "FR", "postal_code": "75001"}})

    held = double.invoices[invoice.id]
    assert held["customer_address"]["country"] == "DE"
    assert held["customer_tax_ids"] == [{"type": "eu_vat", "value": "DE123456789"}]
    assert held["total"] == 11_900


def test_an_address_stripe_cannot_locate_is_refused_when_asked_to_validate_it(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = customer_in(client, None)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.update(
            customer,
            params={
                "address": {"country": "US", "line1": "1 Main St"},
                "tax": {"validate_location": "immediately"},
            },
        )

    assert refused.value.code == "customer_tax_location_invalid"
    assert double.customers[customer]["address"] is None  # nothing applied
    located = client.v1.customers.update(
        customer,
        params={"address": {"country": "US", "postal_code": "94107"}, "expand": ["tax"]},
    )
    assert (located.tax.automatic_tax, located.tax.location.country) == ("not_collecting", "US")


@pytest.mark.parametrize(
    ("kind", "value"),
    [("eu_vat", "123456789"), ("eu_vat", "US123456789"), ("gb_vat", "GB12"), ("us_ein", "")],
)
def test_a_tax_id_of_the_wrong_shape_is_refused(client: stripe.StripeClient, kind: str, value: str) -> None:
    customer = customer_in(client, "DE")

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.customers.tax_ids.create(customer, params={"type": kind, "value": value})

    assert (refused.value.param, refused.value.code) == ("value", "tax_id_invalid")
    assert client.v1.customers.tax_ids.list(customer).data == []


# -- what the close sends --------------------------------------------------------------------------------
DRAFT = InvoiceDraft(
    stripe_customer_id="",
    currency="usd",
    collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
    days_until_due=None,
    description="Pay as you go: API usage for 2026-10",
    metadata={"tollgate_customer_id": "acme", "tollgate_period": "2026-10"},
)


@pytest.mark.parametrize("tax", [None, "exclusive", "inclusive"])
def test_a_taxed_plans_invoice_asks_for_automatic_tax_and_says_how_its_prices_are_meant(
    client: stripe.StripeClient, double: StripeDouble, tax: str | None
) -> None:
    plan = make_plan(tax=tax)
    gateway = StripeClientInvoicing(client)
    draft = InvoiceDraft(**{**DRAFT.__dict__, "stripe_customer_id": customer_in(client, "DE")})

    created = gateway.create_invoice(
        InvoiceDraft(**{**draft.__dict__, "automatic_tax": plan.tax is not None}), idempotency_key="k1"
    )
    lines = invoice_lines(rate_period(plan, "acme", "2026-10", 1_234_567), tax_behavior=plan.tax)
    invoice = gateway.add_lines(created.id, lines, idempotency_key="k2")

    (create,) = double.calls_to("invoices.create")
    (add,) = double.calls_to("invoices.add_lines")
    assert create.params.get("automatic_tax") == (None if tax is None else {"enabled": "true"})
    assert add.params["lines"][0]["price_data"].get("tax_behavior") == tax
    expected_tax = {None: 0, "exclusive": 9_852, "inclusive": 8_279}[tax]  # 19% of 51,852, or 19/119 of it
    assert (invoice.subtotal_before_tax, invoice.total_tax) == (51_852, expected_tax)
    assert invoice.total == 51_852 + (expected_tax if tax == "exclusive" else 0)
    assert invoice.customer_metadata == {}  # add_lines answers with the customer: its discount, if any
