"""Stripe's largest amount and quantity, and whole-unit currencies, checked on a rated statement: refused with
a message that names the line, before anything is sent to Stripe."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import make_plan
from tollgate.domain.currencies import WHOLE_UNITS_ONLY, amount_increment, supported_currencies
from tollgate.domain.models import Plan, Tier
from tollgate.domain.rating import LineKind, StatementLine, late_usage_line, rate_period
from tollgate.domain.stripe_limits import (
    MAX_QUANTITY,
    StripeLimitError,
    check_statement_limits,
    max_amount,
    statement_problems,
)
from tollgate_local.stripe_double_state import line_amount as doubles_line_amount

PERIOD = "2026-10"


@pytest.mark.parametrize(
    ("currency", "largest"),
    [
        ("usd", 99_999_999),
        ("USD", 99_999_999),
        ("jpy", 99_999_999),
        ("isk", 99_999_999),
        ("huf", 99_999_999),
        ("idr", 999_999_999_999),
        ("cop", 9_999_999_999),
        ("inr", 999_999_999),
    ],
)
def test_the_largest_amount_is_eight_digits_but_for_idr_cop_and_inr(currency: str, largest: int) -> None:
    assert max_amount(currency) == largest


def test_a_statement_up_to_the_maximum_passes_and_a_cent_more_is_refused_naming_the_total() -> None:
    plan = make_plan(price_per_credit="0.01", base_fee="999000")  # base fee 99,900,000 cents
    check_statement_limits(rate_period(plan, "acme", PERIOD, 99_999))  # 99,999,999 cents: the maximum

    with pytest.raises(StripeLimitError) as refused:
        check_statement_limits(rate_period(plan, "acme", PERIOD, 100_000))
    assert str(refused.value) == (
        "statement of acme for 2026-10 cannot be invoiced by Stripe: total 1,000,000.00 USD is above the "
        "largest amount Stripe charges in USD, 999,999.99 USD (whatever the payment method)"
    )


def test_a_line_above_the_maximum_is_named() -> None:
    plan = make_plan(price_per_credit="10", base_fee="49")
    with pytest.raises(StripeLimitError) as refused:
        check_statement_limits(rate_period(plan, "acme", PERIOD, 100_000))
    message = str(refused.value)
    assert (
        "line 2 ('API usage: 100,000 credits'): amount 1,000,000.00 USD is above Stripe's maximum of "
        "999,999.99 USD" in message
    )
    assert "line 1" not in message
    assert "total 1,000,049.00 USD is above" in message


def test_a_unit_amount_with_more_digits_than_stripe_takes_is_named() -> None:
    line = StatementLine(
        kind=LineKind.ADJUSTMENT,
        description="Late usage",
        period="2026-09",
        quantity=0,
        unit_amount=Decimal(100_000_000),
        amount=0,
    )
    assert statement_problems("usd", [line], 0) == [
        "line 1 ('Late usage'): unit amount 100000000 (minor units) has more digits than Stripe takes: "
        "at most 99,999,999 (999,999.99 USD)"
    ]
    assert (
        statement_problems("usd", [line.model_copy(update={"unit_amount": Decimal("99999999.99")})], 0) == []
    )


def test_idr_takes_twelve_digits() -> None:
    plan = make_plan(currency="idr", price_per_credit="1", base_fee="9000000000")
    statement = rate_period(plan, "acme", PERIOD, 999_999_999)
    assert statement.total == 999_999_999_900
    check_statement_limits(statement)


def test_a_quantity_beyond_stripes_integers_is_refused_even_at_no_charge() -> None:
    free = make_plan(price_per_credit="0")
    check_statement_limits(rate_period(free, "acme", PERIOD, MAX_QUANTITY))

    with pytest.raises(
        StripeLimitError, match=r"line 1 \('API usage: .*'\): quantity 9,223,372,036,854,775,808"
    ):
        check_statement_limits(rate_period(free, "acme", PERIOD, MAX_QUANTITY + 1))


def test_an_isk_line_that_is_not_whole_kronur_is_refused_at_rating() -> None:
    plan = make_plan(currency="isk", price_per_credit="1", base_fee="100")
    fraction = StatementLine(
        kind=LineKind.ADJUSTMENT,
        description="Late usage for 2026-09",
        period="2026-09",
        quantity=1,
        unit_amount=Decimal(150),
        amount=150,
    )
    check_statement_limits(rate_period(plan, "acme", PERIOD, 10))

    with pytest.raises(StripeLimitError) as refused:
        check_statement_limits(rate_period(plan, "acme", PERIOD, 10, (fraction,)))
    assert str(refused.value).endswith(
        "line 3 ('Late usage for 2026-09'): ISK is charged in whole units only: unit amount 150 and "
        "amount 150 (minor units) must be multiples of 100"
    )


# -- every supported currency, any plan ------------------------------------------------------------------


def prices(currency: str) -> st.SearchStrategy[Decimal]:
    """Prices a plan in ``currency`` may have: whole kronur for ISK, else up to 10 decimals."""
    if currency in WHOLE_UNITS_ONLY:
        return st.integers(min_value=0, max_value=10**6).map(Decimal)
    return st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(min_value=0, max_value=10**7),
        st.integers(min_value=0, max_value=10),
    )


SUPPORTED = st.sampled_from(sorted(supported_currencies()))


@st.composite
def plans(draw: st.DrawFn, currencies: st.SearchStrategy[str] = SUPPORTED) -> Plan:
    currency = draw(currencies)
    tiers: tuple[Tier, ...] = ()
    if draw(st.booleans()):
        bounds = sorted(draw(st.sets(st.integers(min_value=1, max_value=10**9), min_size=1, max_size=3)))
        tiers = tuple(Tier(up_to=bound, price_per_credit=draw(prices(currency))) for bound in bounds)
        tiers += (Tier(up_to=None, price_per_credit=draw(prices(currency))),)
    return Plan(
        id="limits",
        name="Limits",
        currency=currency,
        price_per_credit=None if tiers else draw(prices(currency)),
        base_fee=draw(st.sampled_from([Decimal(0), Decimal(1), Decimal(49), Decimal(999_999)])),
        included_credits=draw(st.sampled_from([0, 1_000])),
        tiers=tiers,
    )


@given(plan=plans(), used=st.integers(min_value=0, max_value=10**12))
def test_every_line_obeys_its_currencys_rule_and_is_what_stripe_computes(plan: Plan, used: int) -> None:
    statement = rate_period(plan, "acme", PERIOD, used)
    increment = amount_increment(plan.currency)

    for line in statement.lines:
        assert line.amount % increment == 0
        if plan.currency in WHOLE_UNITS_ONLY:
            assert line.unit_amount % increment == 0
        assert line.amount == doubles_line_amount(line.unit_amount, Decimal(line.quantity))
        assert 0 <= line.quantity <= MAX_QUANTITY
    problems = statement_problems(statement.currency, statement.lines, statement.total)
    assert (problems == []) == (statement.total <= max_amount(plan.currency))
    if problems:
        with pytest.raises(StripeLimitError):
            check_statement_limits(statement)
    else:
        check_statement_limits(statement)


@given(
    plan=plans(st.just("isk")),
    billed=st.integers(min_value=0, max_value=10**9),
    late=st.integers(min_value=0, max_value=10**9),
)
def test_isk_plans_bill_whole_kronur_at_the_close_and_for_late_usage(
    plan: Plan, billed: int, late: int
) -> None:
    adjustment = late_usage_line(plan, "2026-09", billed, late)
    adjustments = () if adjustment is None else (adjustment,)
    statement = rate_period(plan, "acme", PERIOD, billed, adjustments)

    assert all(line.amount % 100 == 0 and line.unit_amount % 100 == 0 for line in statement.lines)
    problems = statement_problems("isk", statement.lines, statement.total)
    assert not [problem for problem in problems if "whole units" in problem]
    assert (problems == []) == (statement.total <= max_amount("isk"))
