"""Discounts and tax through the close and the CLI: DynamoDB Local + the Stripe double (its fixed tax rates).

What a provider sees: a coupon attached with ``tollgate customers discount`` is on the next invoices for the
coupon's duration and then stops; ``tollgate customers tax-info`` gives Stripe Tax what it needs; Stripe
computes both on the invoice, the close checks the pre-discount, pre-tax subtotal against the statement (so
a discount or tax is never a mismatch, a wrong line still is), and a re-run never discounts twice.
"""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import make_plan
from tests.integration.test_period_close import (
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tests.integration.test_period_close_faults import SkewedGateway
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.errors import CloseError, StripeCallError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

PRO = make_plan(
    id="pro", name="Pro", base_fee=Decimal("49"), included_credits=100_000, price_per_credit=Decimal("0.0003")
)
PRO_EXCLUSIVE = make_plan(**{**PRO.model_dump(), "id": "pro-ex", "tax": "exclusive"})
PRO_INCLUSIVE = make_plan(**{**PRO.model_dump(), "id": "pro-in", "tax": "inclusive"})
CREDITS = 142_000  # 49.00 + 42,000 x 0.03 cents = 61.60 USD: the README's example
SUBTOTAL = 6_160
PERIODS = ("2026-10", "2026-11", "2026-12", "2027-01")
OCTOBER = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811
    return make_world(store, running_double)


def cli(world: World, *args: str, now: datetime = OCTOBER) -> Result:
    context = AppContext(clock=lambda: now, _stripe=world.double.client())
    return CliRunner().invoke(app, list(args), obj=context, env={"COLUMNS": "200"})


def coupon(world: World, coupon_id: str, **terms: Any) -> None:
    world.double.client().v1.coupons.create(params={"id": coupon_id, **terms})


def close_each(
    world: World, periods: tuple[str, ...] = PERIODS, customer_id: str = "acme"
) -> list[dict[str, Any]]:
    """Count the same usage in each period and close it; Stripe's invoices, one per period."""
    invoices = []
    for period in periods:
        world.count(customer_id, CREDITS, period)
        record = world.close(customer_id, period)
        assert record.status is CloseStatus.FINALIZED
        assert (record.total, record.total_mismatch) == (SUBTOTAL, False)
        (invoice,) = world.invoices(customer_id, period)
        assert record.amount_due == invoice["amount_due"]
        invoices.append(invoice)
    return invoices


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert "Traceback" not in result.output
    return line


# -- discounts -------------------------------------------------------------------------------------------
def test_a_three_month_coupon_discounts_the_next_three_invoices_and_not_the_fourth(world: World) -> None:
    world.customer("acme", PRO)
    coupon(world, "SPRING20", percent_off=20, duration="repeating", duration_in_months=3, name="Spring")

    attached = cli(world, "customers", "discount", "acme", "--coupon", "SPRING20")

    assert attached.exit_code == 0, attached.output
    assert attached.stdout.strip() == (
        "acme: coupon SPRING20 (20% off, for 3 months) on the invoices for 2026-10 to 2026-12"
    )
    invoices = close_each(world)
    assert [invoice["subtotal"] for invoice in invoices] == [SUBTOTAL] * 4
    assert [invoice["total"] for invoice in invoices] == [4_928, 4_928, 4_928, SUBTOTAL]
    assert [[d["amount"] for d in invoice["total_discount_amounts"]] for invoice in invoices] == [
        [1_232],
        [1_232],
        [1_232],
        [],
    ]
    assert world.double.coupons["SPRING20"]["times_redeemed"] == 3
    with urllib.request.urlopen(invoices[0]["hosted_invoice_url"], timeout=5) as page:  # noqa: S310
        shown = page.read().decode()
    assert "<td colspan='2'>Spring (20% off)</td><td>-12.32 USD</td>" in shown
    assert "<strong>Total 49.28 USD</strong>" in shown


@pytest.mark.parametrize(
    ("terms", "totals"),
    [
        ({"percent_off": 10, "duration": "once"}, [5_544, SUBTOTAL, SUBTOTAL, SUBTOTAL]),
        ({"percent_off": 10, "duration": "forever"}, [5_544] * 4),
        (
            {"amount_off": 10_000, "currency": "usd", "duration": "repeating", "duration_in_months": 2},
            [0, 0, SUBTOTAL, SUBTOTAL],
        ),
    ],
)
def test_once_forever_and_an_amount_off_larger_than_the_bill(
    world: World, terms: dict[str, Any], totals: list[int]
) -> None:
    world.customer("acme", PRO)
    coupon(world, "PROMO", **terms)
    assert cli(world, "customers", "discount", "acme", "--coupon", "PROMO").exit_code == 0

    invoices = close_each(world)

    assert [invoice["total"] for invoice in invoices] == totals
    assert [invoice["status"] for invoice in invoices] == ["paid" if t == 0 else "open" for t in totals]


def test_a_removed_discount_stops_at_the_next_close_and_a_later_start_waits_for_its_period(
    world: World,
) -> None:
    world.customer("acme", PRO)
    coupon(world, "LOYAL", percent_off=10, duration="forever")
    assert (
        cli(world, "customers", "discount", "acme", "--coupon", "LOYAL", "--from", "2026-11").exit_code == 0
    )
    first_two = close_each(world, PERIODS[:2])

    removed = cli(world, "customers", "discount", "acme", "--remove")
    shown = cli(world, "customers", "discount", "acme")

    assert removed.stdout.strip() == "acme: coupon LOYAL removed; invoices not finalized yet get no discount"
    assert shown.stdout.strip() == "acme has no discount"
    later = close_each(world, PERIODS[2:])
    assert [invoice["total"] for invoice in first_two + later] == [SUBTOTAL, 5_544, SUBTOTAL, SUBTOTAL]


def test_a_forged_coupon_is_one_clear_line_and_changes_nothing(world: World) -> None:
    world.customer("acme", PRO)
    stripe_id = world.store.get_customer("acme").stripe_customer_id
    assert stripe_id is not None

    result = cli(world, "customers", "discount", "acme", "--coupon", "FREE4EVER")

    assert one_line_error(result) == (
        "error: --coupon: Stripe has no coupon 'FREE4EVER': create it in the Stripe Dashboard (or with the "
        "API) first; nothing was changed"
    )
    assert world.double.calls_to("customers.update") == []
    assert world.double.customers[stripe_id]["metadata"] == {}
    assert close_each(world, PERIODS[:1])[0]["total"] == SUBTOTAL


@pytest.mark.parametrize(
    ("terms", "fragment"),
    [
        (
            {"amount_off": 500, "currency": "eur"},
            "takes an amount off in eur, but the customer's plan bills in usd",
        ),
        ({"percent_off": 10, "redeem_by": 1_000_000_000}, "can no longer be redeemed"),
    ],
)
def test_a_coupon_that_could_never_apply_is_refused_before_anything_is_written(
    world: World, terms: dict[str, Any], fragment: str
) -> None:
    world.customer("acme", PRO)
    coupon(world, "NOPE", **terms)

    line = one_line_error(cli(world, "customers", "discount", "acme", "--coupon", "NOPE"))

    assert fragment in line
    assert world.double.calls_to("customers.update") == []


def test_a_coupon_deleted_in_stripe_stops_the_close_with_its_name_until_the_discount_is_removed(
    world: World,
) -> None:
    world.customer("acme", PRO, credits=CREDITS)
    coupon(world, "GONE", percent_off=10, duration="forever")
    assert cli(world, "customers", "discount", "acme", "--coupon", "GONE").exit_code == 0
    world.double.client().v1.coupons.delete("GONE")

    with pytest.raises(StripeCallError, match="No such coupon: 'GONE'"):
        world.close("acme", "2026-10")

    assert world.record("acme", "2026-10").last_error is not None
    shown = cli(world, "customers", "discount", "acme")
    assert shown.stdout.strip() == "acme: coupon GONE (no longer in Stripe) on the invoices from 2026-10 on"
    assert cli(world, "customers", "discount", "acme", "--remove").exit_code == 0
    record = world.close("acme", "2026-10")
    assert (record.status, record.amount_due, record.total_mismatch) == (
        CloseStatus.FINALIZED,
        SUBTOTAL,
        False,
    )


@pytest.mark.parametrize("operation", ["invoices.add_lines", "invoices.update"])
def test_a_lost_answer_around_the_discount_then_a_rerun_discounts_exactly_once(
    world: World, operation: str
) -> None:
    world.customer("acme", PRO, credits=CREDITS)
    coupon(world, "SPRING20", percent_off=20, duration="once")
    assert cli(world, "customers", "discount", "acme", "--coupon", "SPRING20").exit_code == 0
    world.double.faults.lose_response_after_write(operation)

    with pytest.raises(StripeCallError):
        world.close("acme", "2026-10")
    record = world.close("acme", "2026-10")

    (invoice,) = world.invoices("acme", "2026-10")
    assert (invoice["status"], invoice["total"], len(invoice["discounts"])) == ("open", 4_928, 1)
    assert (record.amount_due, record.total_mismatch) == (4_928, False)
    assert world.double.coupons["SPRING20"]["times_redeemed"] == 1


def test_the_total_check_still_flags_a_real_difference_on_a_discounted_taxed_invoice(world: World) -> None:
    world.customer("acme", PRO_EXCLUSIVE, credits=CREDITS)
    assert (
        cli(world, "customers", "tax-info", "acme", "--country", "DE", "--postal-code", "10115").exit_code
        == 0
    )
    coupon(world, "TEN", percent_off=10)
    assert cli(world, "customers", "discount", "acme", "--coupon", "TEN").exit_code == 0

    record = world.close("acme", "2026-10", gateway=SkewedGateway(world.gateway))  # +1 cent per credit

    assert record.total_mismatch is True


# -- tax -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "total", "tax"),
    [
        (PRO_EXCLUSIVE, 7_330, 1_170),  # 61.60 + 19% = 73.30
        (PRO_INCLUSIVE, SUBTOTAL, 983),  # 61.60 includes 19/119 of each line: 7.82 + 2.01
        (PRO, SUBTOTAL, 0),  # a plan without tax: no Stripe Tax at all
    ],
)
def test_a_taxed_plans_invoice_gets_stripe_tax_and_the_close_checks_the_pre_tax_subtotal(
    world: World, plan: Any, total: int, tax: int
) -> None:
    world.customer("acme", plan)
    assert (
        cli(world, "customers", "tax-info", "acme", "--country", "DE", "--postal-code", "10115").exit_code
        == 0
    )

    (invoice,) = close_each(world, PERIODS[:1])

    assert (invoice["subtotal"], invoice["total"]) == (SUBTOTAL, total)
    assert sum(t["amount"] for t in invoice["total_taxes"]) == tax
    assert invoice["automatic_tax"]["enabled"] is (plan.tax is not None)


def test_tax_and_a_discount_together(world: World) -> None:
    world.customer("acme", PRO_EXCLUSIVE)
    cli(world, "customers", "tax-info", "acme", "--country", "FR", "--postal-code", "75001")
    coupon(world, "SPRING20", percent_off=20, duration="once")
    cli(world, "customers", "discount", "acme", "--coupon", "SPRING20")

    first, second = close_each(world, PERIODS[:2])

    assert first["total"] == 4_928 + 986  # 20% off, then 20% French VAT on the 49.28 left
    assert second["total"] == SUBTOTAL + 1_232


def test_a_taxed_customer_without_an_address_fails_its_close_saying_what_to_do(world: World) -> None:
    world.customer("acme", PRO_EXCLUSIVE, credits=CREDITS)

    with pytest.raises(CloseError) as refused:
        world.close("acme", "2026-10")

    assert str(refused.value).startswith(
        "Stripe Tax cannot locate customer 'acme' to tax its 2026-10 invoice in_"
    )
    assert str(refused.value).endswith(
        "give it an address (`tollgate customers tax-info acme --country CC --postal-code ...`), "
        "then close again"
    )
    assert world.record("acme", "2026-10").last_error is not None
    assert world.double.calls_to("invoices.finalize") == []  # never refused, so never replayed refused
    set_up = cli(world, "customers", "tax-info", "acme", "--country", "NL", "--postal-code", "1012")
    assert set_up.exit_code == 0, set_up.output
    record = world.close("acme", "2026-10")
    assert (record.status, record.amount_due, record.total_mismatch) == (CloseStatus.FINALIZED, 7_454, False)


def test_tax_info_sets_the_address_and_tax_ids_once_and_shows_them(world: World) -> None:
    world.customer("acme", PRO_EXCLUSIVE)
    args = (
        "customers",
        "tax-info",
        "acme",
        "--country",
        "de",
        "--postal-code",
        "10115",
        "--line1",
        "Unter den Linden 1",
    )

    first = cli(world, *args, "--city", "Berlin", "--tax-id", "eu_vat:DE123456789")
    again = cli(world, *args, "--city", "Berlin", "--tax-id", "eu_vat:DE 123456789")

    assert first.exit_code == again.exit_code == 0, first.output + again.output
    assert again.stdout.splitlines() == [
        "tax details of acme (on its Stripe customer)",
        "  address      Unter den Linden 1, Berlin, 10115, DE",
        "  tax ids      eu_vat:DE123456789",
        "  tax exempt   none",
        "  Stripe Tax   supported (DE)",
    ]
    stripe_id = world.store.get_customer("acme").stripe_customer_id
    assert stripe_id is not None
    assert len(world.double.customers[stripe_id]["tax_ids"]) == 1  # the second run added nothing
    removed = cli(world, "customers", "tax-info", "acme", "--remove-tax-id", "eu_vat:DE123456789")
    assert "  tax ids      -" in removed.stdout.splitlines()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--country", "US", "--line1", "1 Main St"), "location isn't recognized"),  # no postal code
        (("--tax-id", "eu_vat:123"), "Invalid value for eu_vat"),
        (("--tax-id", "DE123456789"), "--tax-id: 'DE123456789' is not TYPE:VALUE"),
        (("--remove-tax-id", "eu_vat:DE999999999"), "acme has no tax id eu_vat:DE999999999"),
    ],
)
def test_tax_info_errors_are_one_line(world: World, args: tuple[str, ...], fragment: str) -> None:
    world.customer("acme", PRO_EXCLUSIVE)

    line = one_line_error(cli(world, "customers", "tax-info", "acme", *args))

    assert fragment in line


def test_the_cli_says_statement_amounts_are_before_discounts_and_tax(world: World) -> None:
    world.customer("acme", PRO_EXCLUSIVE)
    cli(world, "customers", "tax-info", "acme", "--country", "DE", "--postal-code", "10115")
    close_each(world, PERIODS[:1])

    shown = cli(world, "invoices", "show", "acme", "2026-10", now=datetime(2026, 11, 2, tzinfo=UTC))

    assert "61.60 USD (before discounts and tax)" in shown.stdout
    assert "73.30 USD (after Stripe's discounts and tax)" in shown.stdout


def test_a_plan_file_turns_stripe_tax_on_and_plans_show_says_how(world: World, tmp_path: Path) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(
        "plans:\n  - id: eu-pro\n    name: EU Pro\n    currency: eur\n    price_per_credit: 0.0003\n"
        "    tax: inclusive\n",
        encoding="utf-8",
    )

    created = cli(world, "plans", "create", str(plans))
    shown = cli(world, "plans", "show", "eu-pro")

    assert created.exit_code == 0, created.output
    assert world.store.get_plan("eu-pro").tax == "inclusive"
    assert "  tax               Stripe Tax, prices inclusive of tax" in shown.stdout.splitlines()
    plans.write_text(plans.read_text().replace("inclusive", "included"), encoding="utf-8")
    refused = one_line_error(cli(world, "plans", "create", str(plans), "--new-version"))
    assert "plans[0].tax" in refused
