"""The Stripe edge of the close (``StripeClientInvoicing``) over a fake ``client.v1.invoices``.

What the Stripe double cannot easily show: an account where invoice search is refused (then the close lists
the customer's invoices, from then on), which invoices a listing keeps, what a failed call is reported as,
and how Stripe's invoice objects are read (an expanded customer, an invoice without lines or metadata).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import stripe

from tests.conftest import make_plan
from tollgate.billing.invoicing import (
    METADATA_THRESHOLD,
    InvoiceDraft,
    InvoiceLine,
    StripeClientInvoicing,
    invoice_lines,
    threshold_part,
)
from tollgate.domain.models import CollectionMethod
from tollgate.domain.periods import period_start
from tollgate.domain.rating import late_usage_line, rate_period
from tollgate.errors import StripeCallError

PERIOD = "2026-10"
MINE = {"tollgate_customer_id": "acme", "tollgate_period": PERIOD}


def stripe_invoice(invoice_id: str, metadata: dict[str, str] | None = None, **fields: Any) -> stripe.Invoice:
    values: dict[str, Any] = {
        "id": invoice_id,
        "customer": "cus_acme",
        "status": "draft",
        "total": 0,
        "amount_due": 0,
        "hosted_invoice_url": None,
        "lines": {"object": "list", "data": []},
        "metadata": metadata if metadata is not None else dict(MINE),
    }
    values.update(fields)
    return stripe.Invoice.construct_from(values, "sk_test_fake")


class Page:
    def __init__(self, items: list[stripe.Invoice]) -> None:
        self.items = items

    def auto_paging_iter(self) -> Iterator[stripe.Invoice]:
        return iter(self.items)


@dataclass
class FakeInvoices:
    """``client.v1.invoices``: what it holds, what it raises, and every call it was made."""

    held: list[stripe.Invoice] = field(default_factory=list)
    search_error: Exception | None = None
    errors: dict[str, Exception] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def _answer(self, operation: str, params: Any) -> None:
        self.calls.append((operation, params))
        if operation in self.errors:
            raise self.errors[operation]

    def search(self, params: Any) -> Page:
        self._answer("search", params)
        if self.search_error is not None:
            raise self.search_error
        return Page(self.held)

    def list(self, params: Any) -> Page:
        self._answer("list", params)
        return Page(self.held)

    def retrieve(self, invoice_id: str, params: Any = None) -> stripe.Invoice:
        self._answer("retrieve", invoice_id)
        return next(invoice for invoice in self.held if invoice.id == invoice_id)

    def create(self, params: Any, options: Any) -> stripe.Invoice:
        self._answer("create", (params, options))
        return stripe_invoice("in_new")

    def add_lines(self, invoice_id: str, params: Any, options: Any) -> stripe.Invoice:
        self._answer("add_lines", (invoice_id, params, options))
        return stripe_invoice(invoice_id, lines={"object": "list", "data": [{"id": "il_1"}]})

    def finalize_invoice(self, invoice_id: str, params: Any, options: Any) -> stripe.Invoice:
        self._answer("finalize", (invoice_id, params, options))
        return stripe_invoice(invoice_id, status="open")

    def operations(self) -> list[str]:
        return [operation for operation, _ in self.calls]


def gateway(invoices: FakeInvoices) -> StripeClientInvoicing:
    return StripeClientInvoicing(SimpleNamespace(v1=SimpleNamespace(invoices=invoices)))  # type: ignore[arg-type]


def find(edge: StripeClientInvoicing) -> list[str]:
    found = edge.find_invoices(stripe_customer_id="cus_acme", customer_id="acme", period=PERIOD)
    return [invoice.id for invoice in found]


@pytest.mark.parametrize(
    "refusal",
    [
        stripe.InvalidRequestError("Search is not supported in your region", param="query"),
        stripe.PermissionError("This API key cannot search invoices"),
    ],
)
def test_where_search_is_refused_the_customers_invoices_are_listed_from_then_on(
    refusal: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    invoices = FakeInvoices(
        held=[
            stripe_invoice("in_mine"),
            stripe_invoice("in_other_period", {**MINE, "tollgate_period": "2026-09"}),
            stripe_invoice("in_other_customer", {**MINE, "tollgate_customer_id": "beta"}),
            stripe_invoice("in_by_hand", {}),
        ],
        search_error=refusal,
    )
    edge = gateway(invoices)

    assert find(edge) == ["in_mine"]  # only the invoice of this customer *and* period
    assert find(edge) == ["in_mine"]

    assert invoices.operations() == ["search", "list", "list"]  # refused once: not asked again
    assert edge.search_unavailable is True
    assert [record.getMessage() for record in caplog.records] == [
        f"invoice search refused ({refusal}); listing customers' invoices from now on"
    ]
    listing = invoices.calls[1][1]
    assert listing == {
        "customer": "cus_acme",
        "created": {"gte": int(period_start(PERIOD).timestamp())},
        "limit": 100,
    }


def test_a_search_that_fails_for_a_moment_is_answered_by_a_listing_and_tried_again_next_time(
    caplog: pytest.LogCaptureFixture,
) -> None:
    invoices = FakeInvoices(held=[stripe_invoice("in_mine")], search_error=stripe.APIConnectionError("reset"))
    edge = gateway(invoices)

    assert find(edge) == ["in_mine"]
    assert find(edge) == ["in_mine"]

    assert invoices.operations() == ["search", "list", "search", "list"]
    assert edge.search_unavailable is False
    assert [record.getMessage() for record in caplog.records] == [
        "invoice search failed (reset); listing the customer's invoices instead"
    ] * 2


def test_search_asks_for_this_customer_periods_metadata() -> None:
    invoices = FakeInvoices(held=[stripe_invoice("in_mine")])

    assert find(gateway(invoices)) == ["in_mine"]

    assert invoices.calls == [
        (
            "search",
            {
                "query": "metadata['tollgate_customer_id']:'acme' AND metadata['tollgate_period']:'2026-10'",
                "limit": 10,
            },
        )
    ]


@pytest.mark.parametrize(
    ("operation", "call", "name"),
    [
        ("list", lambda edge: find(edge), "invoices.list"),
        ("retrieve", lambda edge: edge.get_invoice("in_1"), "invoices.retrieve"),
        ("create", lambda edge: edge.create_invoice(DRAFT, idempotency_key="k"), "invoices.create"),
        ("add_lines", lambda edge: edge.add_lines("in_1", [LINE], idempotency_key="k"), "invoices.add_lines"),
        ("finalize", lambda edge: edge.finalize("in_1", idempotency_key="k"), "invoices.finalize"),
    ],
)
def test_a_failed_call_is_one_error_naming_the_operation(operation: str, call: Any, name: str) -> None:
    cause = stripe.APIError("Stripe is having a moment")
    invoices = FakeInvoices(search_error=stripe.APIConnectionError("reset"), errors={operation: cause})

    with pytest.raises(StripeCallError) as raised:
        call(gateway(invoices))

    assert raised.value.operation == name
    assert raised.value.cause is cause
    assert str(raised.value) == f"Stripe {name} failed: APIError: Stripe is having a moment"


DRAFT = InvoiceDraft(
    stripe_customer_id="cus_acme",
    currency="usd",
    collection_method=CollectionMethod.SEND_INVOICE,
    days_until_due=0,
    description="Pay as you go: API usage for 2026-10",
    metadata=MINE,
)
LINE = InvoiceLine(
    product_name="API usage",
    description="API usage: 1,234,567 credits",
    currency="usd",
    unit_amount_decimal=Decimal("1E-7"),
    quantity=1_234_567,
    period_start=1,
    period_end=2,
    metadata={"tollgate_line_kind": "usage"},
)


@pytest.mark.parametrize(("days", "sent"), [(0, {"days_until_due": 0}), (None, {})])
def test_a_draft_is_created_as_asked_and_due_today_is_a_due_date(
    days: int | None, sent: dict[str, int]
) -> None:
    invoices = FakeInvoices()

    created = gateway(invoices).create_invoice(
        replace(DRAFT, days_until_due=days),
        idempotency_key="tollgate:acme:2026-10:create",
    )

    assert created.id == "in_new"
    ((_, (params, options)),) = invoices.calls
    assert params == {
        "customer": "cus_acme",
        "currency": "usd",
        "collection_method": "send_invoice",
        "auto_advance": False,  # Stripe leaves the draft alone while its lines are added
        "pending_invoice_items_behavior": "exclude",
        "description": "Pay as you go: API usage for 2026-10",
        "metadata": MINE,
        **sent,
    }
    assert options == {"idempotency_key": "tollgate:acme:2026-10:create"}


def test_lines_are_sent_in_one_call_with_plain_decimal_unit_amounts() -> None:
    invoices = FakeInvoices()

    answer = gateway(invoices).add_lines("in_1", [LINE, LINE], idempotency_key="tollgate:acme:2026-10:add")

    assert answer.has_lines is True
    ((_, (invoice_id, params, options)),) = invoices.calls
    assert invoice_id == "in_1"
    assert options == {"idempotency_key": "tollgate:acme:2026-10:add"}
    line = params["lines"][0]
    assert len(params["lines"]) == 2
    assert str(line["price_data"]["unit_amount_decimal"]) == "0.0000001"  # not "1E-7"
    assert line == {
        "price_data": {
            "currency": "usd",
            "product_data": {"name": "API usage"},
            "unit_amount_decimal": Decimal("1E-7"),
        },
        "quantity_decimal": Decimal(1_234_567),
        "period": {"start": 1, "end": 2},
        "description": "API usage: 1,234,567 credits",
        "metadata": {"tollgate_line_kind": "usage"},
    }


def test_a_negative_line_is_sent_as_one_whole_amount_and_anything_else_negative_is_refused() -> None:
    """Stripe's prices cannot be negative: a credit goes as ``amount``, which has no quantity and no
    fraction of the minor unit. A negative line with either would bill the wrong amount: it is refused."""
    invoices = FakeInvoices()
    credit = replace(LINE, description="Refund", unit_amount_decimal=Decimal(-34), quantity=1)

    gateway(invoices).add_lines("in_1", [credit], idempotency_key="k")

    ((_, (_, params, _)),) = invoices.calls
    assert params["lines"] == [
        {
            "amount": -34,
            "discountable": False,
            "period": {"start": 1, "end": 2},
            "description": "Refund",
            "metadata": {"tollgate_line_kind": "usage"},
        }
    ]
    for wrong in (replace(credit, quantity=2), replace(credit, unit_amount_decimal=Decimal("-34.5"))):
        with pytest.raises(ValueError, match="a negative line is one whole amount in the minor unit"):
            gateway(FakeInvoices()).add_lines("in_1", [wrong], idempotency_key="k")


def test_finalizing_lets_stripe_collect() -> None:
    invoices = FakeInvoices()

    answer = gateway(invoices).finalize("in_1", idempotency_key="tollgate:acme:2026-10:finalize")

    assert answer.status == "open"
    assert invoices.calls == [
        ("finalize", ("in_1", {"auto_advance": True}, {"idempotency_key": "tollgate:acme:2026-10:finalize"}))
    ]


def test_stripes_invoice_objects_are_read_whatever_shape_they_come_in() -> None:
    expanded = stripe_invoice(
        "in_1",
        customer={"id": "cus_acme", "object": "customer"},
        status="open",
        total=51_852,
        amount_due=51_000,
        hosted_invoice_url="https://invoice.stripe.com/i/in_1",
        lines={"object": "list", "data": [{"id": "il_1"}]},
    )
    bare = stripe.Invoice.construct_from(
        {"id": "in_2", "customer": "cus_acme", "status": "draft", "total": 0, "amount_due": 0}, "sk_test_fake"
    )
    bare["hosted_invoice_url"] = None
    invoices = FakeInvoices(held=[expanded, bare])
    edge = gateway(invoices)

    first, second = edge.get_invoice("in_1"), edge.get_invoice("in_2")

    assert (first.stripe_customer_id, first.status, first.total, first.amount_due) == (
        "cus_acme",
        "open",
        51_852,
        51_000,
    )
    assert (first.hosted_invoice_url, first.has_lines, dict(first.metadata)) == (
        "https://invoice.stripe.com/i/in_1",
        True,
        MINE,
    )
    assert (second.stripe_customer_id, second.has_lines, dict(second.metadata)) == ("cus_acme", False, {})


def test_a_statements_lines_are_the_invoices_lines_and_an_adjustment_carries_its_own_period() -> None:
    """The hybrid example of the README (142,000 credits in November) plus 1,000 credits of October counted
    after October closed: what the customer reads on the Stripe invoice, line by line."""
    pro = make_plan(
        id="pro",
        name="Pro",
        base_fee=Decimal("49"),
        included_credits=100_000,
        price_per_credit=Decimal("0.0003"),
    )
    late = late_usage_line(pro, "2026-10", 100_000, 1_000)
    assert late is not None
    statement = rate_period(pro, "acme", "2026-11", 142_000, (late,))
    november = (int(period_start("2026-11").timestamp()), int(period_start("2026-12").timestamp()) - 1)
    october = (int(period_start("2026-10").timestamp()), november[0] - 1)

    lines = invoice_lines(statement)

    assert [(line.product_name, line.description) for line in lines] == [
        ("Base fee", "Pro: base fee"),
        ("API usage", "API usage: 42,000 credits above 100,000 included"),
        ("Late API usage", "Late usage for 2026-10: 1,000 credits counted after that period closed"),
    ]
    assert [(line.currency, line.unit_amount_decimal, line.quantity) for line in lines] == [
        ("usd", Decimal("4900"), 1),
        ("usd", Decimal("0.03"), 42_000),
        ("usd", Decimal("30"), 1),
    ]
    assert [(line.period_start, line.period_end) for line in lines] == [november, november, october]
    assert [dict(line.metadata) for line in lines] == [
        {"tollgate_line_kind": "base_fee", "tollgate_period": "2026-11"},
        {"tollgate_line_kind": "usage", "tollgate_period": "2026-11"},
        {"tollgate_line_kind": "adjustment", "tollgate_period": "2026-10"},
    ]
    assert statement.total == 4_900 + 1_260 + 30


def test_every_kind_of_statement_line_has_a_stripe_product_name() -> None:
    from tollgate.billing.invoicing import PRODUCT_NAMES
    from tollgate.domain.rating import LineKind

    assert set(PRODUCT_NAMES) == set(LineKind)


@pytest.mark.parametrize(
    ("metadata", "part"),
    [
        pytest.param({}, 0, id="no-mark-is-the-close-s-own"),
        pytest.param({METADATA_THRESHOLD: "0"}, 0, id="zero"),
        pytest.param({METADATA_THRESHOLD: "3"}, 3, id="the-third-threshold-invoice"),
        pytest.param({METADATA_THRESHOLD: "12"}, 12, id="two-digits"),
        pytest.param({METADATA_THRESHOLD: "\u0663"}, None, id="an-arabic-indic-three-is-not-tollgate-s"),
        pytest.param({METADATA_THRESHOLD: "\u00b2"}, None, id="a-superscript-two-is-not-tollgate-s"),
        pytest.param({METADATA_THRESHOLD: "-1"}, None, id="negative"),
        pytest.param({METADATA_THRESHOLD: ""}, None, id="empty"),
        pytest.param({METADATA_THRESHOLD: "t1"}, None, id="not-a-number"),
    ],
)
def test_which_of_a_periods_invoices_the_metadata_names(metadata: dict[str, str], part: int | None) -> None:
    """The close's invoice (0) or its n-th threshold invoice; anything Tollgate would not have written is
    neither (None): such an invoice is never taken for one of the period's own."""
    assert threshold_part(metadata) == part
