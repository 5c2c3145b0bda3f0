"""Properties of rating, for any plan and any number of credits.

The total is the sum of the lines, never negative, and exact: each line is ``unit x quantity`` rounded half
up once, checked here against ``Fraction`` arithmetic. Late usage adds exactly what the credits would have
cost at the close. And the Stripe double, given the same lines, arrives at the same total.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction
from math import floor

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tollgate.billing.invoicing import InvoiceDraft, StripeClientInvoicing, invoice_lines, plain_decimal
from tollgate.domain.models import CollectionMethod, Plan, Tier
from tollgate.domain.rating import Statement, late_usage_line, rate_period, usage_charge
from tollgate_local.stripe_double import StripeDouble

PERIOD = "2026-10"
CURRENCIES = ("usd", "eur", "jpy", "krw")


def prices(max_places: int = 10) -> st.SearchStrategy[Decimal]:
    """Prices in major units with up to ``max_places`` decimals (at most 12 in the minor unit)."""
    return st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(min_value=0, max_value=10**7),
        st.integers(min_value=0, max_value=max_places),
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    tiers: tuple[Tier, ...] = ()
    if draw(st.booleans()):
        bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=3)))
        tiers = tuple(Tier(up_to=bound, price_per_credit=draw(prices())) for bound in bounds)
        tiers += (Tier(up_to=None, price_per_credit=draw(prices())),)
    return Plan(
        id="prop",
        name="Property",
        currency=draw(st.sampled_from(CURRENCIES)),
        price_per_credit=None if tiers else draw(prices()),
        base_fee=draw(st.sampled_from([Decimal(0), Decimal("49"), Decimal("0.5"), Decimal("1234.56")])),
        included_credits=draw(st.sampled_from([0, 0, 1_000, 100_000])),
        tiers=tiers,
    )


credits = st.integers(min_value=0, max_value=10**12)


def exact_line_amount(unit: Decimal, quantity: int) -> int:
    """Half up, in rationals: floor(x + 1/2) for the non-negative amounts a statement has."""
    return floor(Fraction(unit) * quantity + Fraction(1, 2))


@given(plan=plans(), used=credits)
def test_the_total_is_the_sum_of_exact_lines_and_never_negative(plan: Plan, used: int) -> None:
    statement = rate_period(plan, "acme", PERIOD, used)

    assert statement.total == sum(line.amount for line in statement.lines)
    assert statement.total >= 0
    for line in statement.lines:
        assert line.quantity >= 0
        assert line.amount == exact_line_amount(line.unit_amount, line.quantity)
        text = str(plain_decimal(line.unit_amount))  # what stripe-python puts in the form
        assert "E" not in text
        assert len(text.partition(".")[2]) <= 12
        assert Decimal(text) == line.unit_amount
    assert Statement.model_validate(statement.model_dump(mode="json")) == statement


@given(plan=plans(), used=credits, more=st.integers(min_value=0, max_value=10**9))
def test_more_credits_never_cost_less(plan: Plan, used: int, more: int) -> None:
    assert usage_charge(plan, used + more) >= usage_charge(plan, used)


@given(plan=plans(), billed=credits, late=st.integers(min_value=0, max_value=10**10))
def test_late_usage_adds_exactly_what_it_would_have_cost_at_the_close(
    plan: Plan, billed: int, late: int
) -> None:
    line = late_usage_line(plan, PERIOD, billed, late)

    added = 0 if line is None else line.amount
    assert usage_charge(plan, billed) + added == usage_charge(plan, billed + late)
    assert added >= 0
    assert (line is None) == (late == 0)


@given(plan=plans(), parts=st.lists(st.integers(min_value=0, max_value=10**8), min_size=1, max_size=4))
def test_late_usage_billed_in_instalments_sums_to_the_whole(plan: Plan, parts: list[int]) -> None:
    billed, charged = parts[0], usage_charge(plan, parts[0])
    for late in parts[1:]:
        line = late_usage_line(plan, PERIOD, billed, late)
        charged += 0 if line is None else line.amount
        billed += late
    assert charged == usage_charge(plan, billed)


# -- the same lines through the Stripe double ------------------------------------------------------------


@pytest.fixture(scope="module")
def stripe_account() -> Iterator[tuple[StripeClientInvoicing, str]]:
    with StripeDouble() as double:
        client = double.client()
        customer = client.v1.customers.create(params={"name": "Property", "invoice_prefix": "PROP"})
        yield StripeClientInvoicing(client), customer.id


TINY = Plan(id="tiny", name="Tiny", price_per_credit=Decimal("0.000000001"), base_fee=Decimal("5"))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=plans(), used=st.integers(min_value=1, max_value=10**10))
@example(plan=TINY, used=5_000_000)  # units 1E-7 and 5E+2 in str(): sent as 0.0000001 and 500
def test_the_double_totals_the_same_lines_to_the_same_amount(
    stripe_account: tuple[StripeClientInvoicing, str], plan: Plan, used: int
) -> None:
    gateway, stripe_customer = stripe_account
    statement = rate_period(plan, "acme", PERIOD, used)
    if not statement.lines:
        return
    draft = InvoiceDraft(
        stripe_customer_id=stripe_customer,
        currency=plan.currency,
        collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
        days_until_due=None,
        description="property",
        metadata={},
    )
    invoice = gateway.create_invoice(draft, idempotency_key=f"property-{uuid.uuid4()}")
    invoice = gateway.add_lines(
        invoice.id, invoice_lines(statement), idempotency_key=f"property-{uuid.uuid4()}"
    )

    assert invoice.total == statement.total
