"""A plan in use is never edited: a new version is a new plan, and each period is billed by its own version.

A customer stays on the version they were given until moved; the close prices their usage, and the invoice's
terms (collection method, the plan's name), by that version even when a newer one exists, and late usage by
the version that rated the period it belongs to.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.accounts.plan_changes import change_plan
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.domain.models import CollectionMethod
from tollgate.domain.rating import LineKind
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

V1 = make_plan(id="team", name="Team", version=1, price_per_credit=Decimal("0.00042"))  # 0.042 cents
V2 = make_plan(
    id="team",
    name="Team 2027",
    version=2,
    price_per_credit=Decimal("0.001"),  # 0.1 cents
    collection_method=CollectionMethod.SEND_INVOICE,
    days_until_due=30,
)
LATER = datetime(2027, 1, 1, 6, 0, tzinfo=UTC)
MOVED = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def double() -> Iterator[StripeDouble]:
    with StripeDouble() as running:
        yield running


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def test_each_period_is_billed_by_the_plan_version_it_was_used_under(
    store: TollgateStore, double: StripeDouble
) -> None:
    double.reset()
    gateway = StripeClientInvoicing(double.client())
    ledger = DynamoLedger(store)
    store.put_plan(V1)
    store.put_plan(V2)  # published after the customer subscribed: they stay on version 1
    stripe_customer = double.client().v1.customers.create(
        params={"name": "acme", "invoice_prefix": "ACMEVER"}
    )
    store.put_customer(make_customer(V1, stripe_customer_id=stripe_customer.id))
    count(store, 1_234_567, "2026-10")
    moved = change_plan(store, "acme", "team", version=2, at_period_end=True, now=MOVED)  # from November
    assert moved.segment.since == datetime(2026, 11, 1, tzinfo=UTC)

    october = close_customer(ledger, gateway, "acme", "2026-10", now=LATER)

    assert (october.status, october.total, october.statement.plan_version) == (
        CloseStatus.FINALIZED,
        51_852,
        1,
    )
    invoice = double.invoices[october.stripe_invoice_id]
    assert invoice["collection_method"] == "charge_automatically"  # version 1's terms, not version 2's
    assert invoice["description"] == "Team: API usage for 2026-10"

    count(store, 10_000, "2026-10")  # late, for October: priced by version 1
    count(store, 1_000, "2026-11")

    november = close_customer(ledger, gateway, "acme", "2026-11", now=LATER)

    usage, late = november.statement.lines
    assert (usage.kind, usage.quantity, usage.amount) == (LineKind.USAGE, 1_000, 100)  # 0.1 cents, version 2
    assert (late.kind, late.period, late.amount) == (LineKind.ADJUSTMENT, "2026-10", 420)  # 0.042 cents, v1
    assert double.invoices[november.stripe_invoice_id]["collection_method"] == "send_invoice"
    assert double.invoices[november.stripe_invoice_id]["description"] == "Team 2027: API usage for 2026-11"
