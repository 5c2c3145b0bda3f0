"""Edges of the money path that the other tests pass by: what is read from Stripe's invoice objects, the
coupon's redemption and its idempotency key, the total check's wording, a one-time grant's leftover, the plan
version a segment is rated on, and credits no segment tally accounts for.

The close's steps over the in-memory ledger of ``tests/unit/test_close_steps.py`` and the Stripe double, or
over moto where what the close reads depends on DynamoDB's key order.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, cast

import pytest
import stripe

from tests.conftest import make_customer, make_plan
from tests.unit import test_close_steps as memory
from tollgate.accounts.credit_grants import add_grant
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.invoicing import (
    StripeClientInvoicing,
    StripeInvoice,
    StripeInvoicing,
    idempotency_key,
    invoice_lines,
)
from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import PeriodClose
from tollgate.domain.discounts import CustomerDiscount
from tollgate.domain.models import PlanSegment
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.plan_history import SegmentShare, period_shares
from tollgate.domain.rating import FreeCredits
from tollgate.errors import ConflictError, StripeCallError
from tollgate_local.stripe_double import StripeDouble

PERIOD = "2026-10"
NOW = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
PRO = make_plan(
    id="pro", name="Pro", base_fee=Decimal("49"), included_credits=100_000, price_per_credit=Decimal("0.0003")
)
CREDITS = 142_000  # 49.00 + 42,000 x 0.03 cents = 61.60 USD
SUBTOTAL = 6_160
DISCOUNTED = 4_928  # 20% off
DISCOUNT_KEY = "tollgate:acme:2026-10:apply-discount"
NO_STRIPE = cast(StripeInvoicing, object())  # rating never calls Stripe


# -- reading Stripe's invoice objects ----------------------------------------------------------------------
def read(**fields: Any) -> StripeInvoice:
    """``get_invoice`` of an invoice with ``fields`` beside the essentials."""
    values = {"id": "in_1", "customer": "cus_acme", "status": "draft", "total": 0, "amount_due": 0}
    invoice = stripe.Invoice.construct_from({**values, **fields}, "sk_test_fake")
    invoice["hosted_invoice_url"] = None
    invoices = SimpleNamespace(retrieve=lambda invoice_id, params=None: invoice)
    gateway = StripeClientInvoicing(SimpleNamespace(v1=SimpleNamespace(invoices=invoices)))  # type: ignore[arg-type]
    return gateway.get_invoice("in_1")


def test_an_invoice_without_its_customer_expanded_knows_nothing_of_the_customer_and_no_discount_or_tax() -> (
    None
):
    invoice = read()  # as a search answers: the customer is an id; no metadata, discounts or automatic_tax

    assert invoice.customer_metadata is None  # unknown, not "no discount": the close reads it again
    assert invoice.customer_tax is None
    assert dict(invoice.metadata) == {}
    assert (invoice.automatic_tax, invoice.total_discount, invoice.total_tax, invoice.coupons) == (
        False,
        0,
        0,
        (),
    )


@pytest.mark.parametrize(
    ("tax", "status"),
    [
        ({}, None),  # customer.tax not expanded
        ({"tax": {"location": None, "ip_address": None}}, None),  # expanded without a status
        ({"tax": {"automatic_tax": "unrecognized_location", "location": None}}, "unrecognized_location"),
    ],
)
def test_the_customers_stripe_tax_status_is_read_only_when_stripe_gave_it(
    tax: dict[str, Any], status: str | None
) -> None:
    customer = {"id": "cus_acme", "object": "customer", "metadata": {"tollgate_coupon": "TEN"}, **tax}

    invoice = read(customer=customer)

    assert invoice.customer_tax == status
    assert (invoice.stripe_customer_id, dict(invoice.customer_metadata or {})) == (
        "cus_acme",
        {"tollgate_coupon": "TEN"},
    )


def test_the_discount_and_the_coupons_on_the_invoice_are_read_from_stripes_answer() -> None:
    invoice = read(
        discounts=[
            "di_not_expanded",  # only an id: its coupon is unknown, and it is not guessed
            {"id": "di_1", "object": "discount", "source": {"type": "coupon", "coupon": "SPRING20"}},
            {"id": "di_2", "object": "discount", "source": {"type": "coupon", "coupon": {"id": "LOYAL"}}},
        ],
        total_discount_amounts=[{"amount": 1_232, "discount": "di_1"}, {"amount": 308, "discount": "di_2"}],
    )

    assert invoice.coupons == ("SPRING20", "LOYAL")  # an expanded coupon object gives its id
    assert invoice.total_discount == 1_540


# -- redeeming the coupon (the Stripe double) --------------------------------------------------------------
def draft_with_lines(client: stripe.StripeClient, **customer: Any) -> str:
    """A draft of 61.60 USD for a new Stripe customer; its id."""
    stripe_id = client.v1.customers.create(params={"name": "Acme", **customer}).id
    draft = client.v1.invoices.create(params={"customer": stripe_id})
    client.v1.invoices.add_lines(
        draft.id,
        params={
            "lines": [
                {
                    "price_data": {
                        "currency": "usd",
                        "product_data": {"name": "API usage"},
                        "unit_amount_decimal": Decimal(SUBTOTAL),
                    },
                    "quantity_decimal": Decimal(1),
                }
            ]
        },
    )
    return str(draft.id)


def test_a_redemption_sent_again_with_its_key_is_replayed_not_redeemed_twice(
    double: StripeDouble,
) -> None:
    client = double.client()
    client.v1.coupons.create(params={"id": "SPRING20", "percent_off": 20, "duration": "once"})
    gateway = StripeClientInvoicing(client)
    draft = draft_with_lines(client)

    first = gateway.apply_discount(draft, "SPRING20", idempotency_key=DISCOUNT_KEY)
    again = gateway.apply_discount(draft, "SPRING20", idempotency_key=DISCOUNT_KEY)  # a retry

    assert again == first
    assert (first.coupons, first.total_discount, first.total) == (("SPRING20",), 1_232, DISCOUNTED)
    assert [call.idempotency_key for call in double.calls_to("invoices.update")] == [DISCOUNT_KEY] * 2
    assert double.coupons["SPRING20"]["times_redeemed"] == 1


def test_a_refused_redemption_is_an_error_naming_the_update_call(double: StripeDouble) -> None:
    client = double.client()
    draft = draft_with_lines(client)

    with pytest.raises(StripeCallError) as raised:
        StripeClientInvoicing(client).apply_discount(draft, "FORGED", idempotency_key=DISCOUNT_KEY)

    assert raised.value.operation == "invoices.update"
    assert "No such coupon: 'FORGED'" in str(raised.value)


# -- the close's finalize step (in-memory ledger, the Stripe double) ----------------------------------------
def discounted_world(double: StripeDouble) -> tuple[memory.Ledger, StripeClientInvoicing, steps.CloseContext]:
    """Acme on Pro with 142,000 credits in October, and a 20% coupon due on its October invoice."""
    client = double.client()
    client.v1.coupons.create(params={"id": "SPRING20", "percent_off": 20, "duration": "once"})
    discount = CustomerDiscount("SPRING20", PERIOD, PERIOD).to_metadata()
    stripe_id = client.v1.customers.create(params={"name": "Acme", "metadata": discount}).id
    ledger = memory.Ledger()
    ledger.add(make_customer(PRO, stripe_customer_id=stripe_id), plan=PRO, credits=CREDITS)
    gateway = StripeClientInvoicing(client)
    return ledger, gateway, steps.CloseContext(ledger, gateway, "acme", PERIOD, NOW)


def test_a_draft_found_by_a_search_is_read_with_its_customer_and_gets_the_discount_due(
    double: StripeDouble,
) -> None:
    _, gateway, ctx = discounted_world(double)
    created = steps.create_invoice(ctx, steps.rated_record(ctx).record, search_first=False)
    lines = invoice_lines(created.record.statement)
    gateway.add_lines(created.invoice.id, lines, idempotency_key=ctx.key(steps.STEP_ADD_LINES))
    # ... and that run died; the next one finds the draft, its lines on it, by a search
    stripe_id = created.invoice.stripe_customer_id
    (found,) = gateway.find_invoices(stripe_customer_id=stripe_id, customer_id="acme", period=PERIOD)
    assert (found.id, found.has_lines, found.customer_metadata) == (created.invoice.id, True, None)

    record = steps.finalize_invoice(ctx, created.record, found)

    assert (record.amount_due, record.total_mismatch) == (DISCOUNTED, False)
    (update,) = double.calls_to("invoices.update")
    assert update.idempotency_key == idempotency_key("acme", PERIOD, "apply-discount") == DISCOUNT_KEY
    assert double.coupons["SPRING20"]["times_redeemed"] == 1


def test_two_runs_that_both_saw_the_undiscounted_draft_redeem_the_coupon_once(double: StripeDouble) -> None:
    _, gateway, ctx = discounted_world(double)
    created = steps.create_invoice(ctx, steps.rated_record(ctx).record, search_first=False)
    lines = invoice_lines(created.record.statement)
    seen = gateway.add_lines(created.invoice.id, lines, idempotency_key=ctx.key(steps.STEP_ADD_LINES))
    assert (seen.coupons, seen.coupon_due(PERIOD)) == ((), "SPRING20")

    first = steps.finalize_invoice(ctx, created.record, seen)
    with pytest.raises(ConflictError):  # Stripe replays the first run's answers; the ledger has moved on
        steps.finalize_invoice(ctx, created.record, seen)

    assert (first.amount_due, first.total_mismatch) == (DISCOUNTED, False)
    assert [call.idempotency_key for call in double.calls_to("invoices.update")] == [DISCOUNT_KEY] * 2
    assert double.coupons["SPRING20"]["times_redeemed"] == 1
    assert double.invoices[created.invoice.id]["total"] == DISCOUNTED


# -- the total check's log line ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("total", "said"),
    [
        (41_482, "totals 51853 before discounts and tax but"),  # a 20% discount on it
        (51_853, "totals 51853 but"),  # nothing off, nothing added: the total is the subtotal
    ],
)
def test_a_mismatch_says_before_discounts_and_tax_only_when_the_invoice_has_either(
    caplog: pytest.LogCaptureFixture, total: int, said: str
) -> None:
    _, _, ctx = memory.world()  # a statement of 51,852
    created = steps.create_invoice(ctx, steps.rated_record(ctx).record, search_first=False)
    finalized_elsewhere = StripeInvoice(
        id=created.invoice.id,
        stripe_customer_id="cus_acme",
        status="open",
        total=total,
        amount_due=total,
        hosted_invoice_url="https://invoice.stripe.com/i/in_1",
        has_lines=True,
        metadata={},
        subtotal=51_853,  # one cent more than the statement
    )

    record = steps.finalize_invoice(ctx, created.record, finalized_elsewhere)

    assert (record.total_mismatch, record.amount_due) == (True, total)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        f"Stripe invoice {created.invoice.id} {said} the statement of acme 2026-10 totals 51852 (usd)"
    ]


# -- free credits and plan versions (moto: the close's reads as DynamoDB answers them) ---------------------
ONE_CENT = make_plan(id="pro", name="Pro", price_per_credit=Decimal("0.01"))


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def context(store: TollgateStore, period: str) -> steps.CloseContext:
    return steps.CloseContext(DynamoLedger(store), NO_STRIPE, "acme", period, NOW)


def store_closes(store: TollgateStore) -> list[PeriodClose]:
    return DynamoLedger(store).closes_up_to("acme", "2026-12", 12)


def test_a_one_time_grants_leftover_counts_the_periods_before_the_one_closed_not_after(
    store: TollgateStore,
) -> None:
    store.put_plan(ONE_CENT)
    store.put_customer(make_customer(ONE_CENT, stripe_customer_id="cus_acme"))
    grant = add_grant(store, "acme", credits=1_000, description="sign-up bonus",
                      now=datetime(2026, 8, 10, tzinfo=UTC))  # fmt: skip
    for period, credits in (("2026-08", 200), ("2026-09", 300), ("2026-11", 100)):
        count(store, credits, period)
        steps.rated_record(context(store, period))  # October's close failed until after November's
    assert [r.statement.grants_used for r in store_closes(store)] == [
        {grant.grant_id: 100},
        {grant.grant_id: 300},
        {grant.grant_id: 200},
    ]

    offered = steps.free_credits(context(store, "2026-10"), "acme")

    assert offered == [FreeCredits(grant.grant_id, "sign-up bonus", 500)]  # 1,000 - 200 - 300


def test_each_segment_is_rated_on_its_own_plan_version_not_the_newest(store: TollgateStore) -> None:
    doubled = make_plan(id="pro", version=2, name="Pro", price_per_credit=Decimal("0.02"))
    store.put_plan(ONE_CENT)
    store.put_plan(doubled)  # a new version, which the customer has not moved to
    store.put_customer(make_customer(ONE_CENT, stripe_customer_id="cus_acme"))
    count(store, 1_000, PERIOD)

    record = steps.rated_record(context(store, PERIOD)).record

    assert (record.statement.plan_version, record.total) == (1, 1_000)  # 1,000 credits at 1 cent, not 2


# -- plan history ------------------------------------------------------------------------------------------
def test_credits_no_tally_accounts_for_go_to_the_segment_in_force_not_to_one_outside_the_period() -> None:
    start, end = period_start(PERIOD), period_end(PERIOD)
    starter = PlanSegment(seq=1, plan_id="starter", plan_version=1)
    pro = PlanSegment(seq=2, plan_id="pro", plan_version=1, since=datetime(2026, 9, 20, tzinfo=UTC))
    # Pro since September; 50 credits still counted under Starter in October (a stale cache), 1,000 by an
    # authorizer that kept no segment tallies

    shares = period_shares([starter, pro], PERIOD, {1: 50}, 1_050)

    assert shares == [SegmentShare(starter, start, start, 50), SegmentShare(pro, start, end, 1_000)]
