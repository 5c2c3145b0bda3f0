"""Usage too small to bill in its period is carried, and billed once its value rounds to a minor unit: the
pure rules of ``tollgate.domain.carry_over``. The close that applies them is tested in
tests/integration/test_carry_over.py.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import make_plan
from tollgate.domain.carry_over import merge, settle, small_usage, take_small_usage
from tollgate.domain.closes import Carry
from tollgate.domain.periods import next_period
from tollgate.domain.rating import LineKind, Statement, rate_period

PAYG = make_plan()  # 0.042 cents a credit
MINIMUM = make_plan(id="committed", minimum_commitment=Decimal("10"))


def rated(credits: int, period: str = "2026-01") -> Statement:
    return rate_period(PAYG, "acme", period, credits)


def months(credits_each_month: list[int]) -> list[tuple[Statement, tuple[Carry, ...]]]:
    """Every month rated, its small usage taken off and settled with what the month before carried."""
    carried: tuple[Carry, ...] = ()
    closes = []
    period = "2026-01"
    for credits in credits_each_month:
        statement, own = take_small_usage(rated(credits, period))
        statement, carried = settle(statement, merge([*carried, *([own] if own else [])]))
        closes.append((statement, carried))
        period = next_period(period)
    return closes


def rounded_once(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def test_a_usage_line_worth_under_half_a_cent_is_taken_off_and_carried() -> None:
    statement, carry = take_small_usage(rated(3))  # 3 x 0.042 = 0.126 cents: Stripe would bill 0

    assert statement.lines == ()
    assert carry == Carry(currency="usd", amount=Decimal("0.126"), credits=3, since="2026-01")


def test_a_usage_line_worth_a_cent_or_more_stays_and_nothing_is_carried() -> None:
    statement = rated(12)  # 0.504 cents: Stripe bills 1 cent

    assert take_small_usage(statement) == (statement, None)
    assert statement.total == 1


def test_usage_billed_at_a_minimum_commitment_carries_nothing() -> None:
    statement = rate_period(MINIMUM, "acme", "2026-01", 3)  # the 10.00 USD commitment covers the 3 credits

    assert take_small_usage(statement) == (statement, None)
    assert small_usage(MINIMUM, 3, 0, 1_000) == (Decimal(0), 0)
    assert small_usage(PAYG, 3, 0, 0) == (Decimal("0.126"), 3)


def test_three_credits_a_month_are_billed_in_the_fourth_month_and_a_year_bills_the_exact_value_once() -> None:
    closes = months([3] * 12)  # 0.126 cents a month, 1.512 cents a year

    totals = [statement.total for statement, _ in closes]
    assert totals == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert sum(totals) == rounded_once(Decimal("1.512")) == 2  # rounded once, never more
    april, carried = closes[3]
    (line,) = april.lines
    assert (line.kind, line.quantity, line.unit_amount, line.amount) == (
        LineKind.CARRIED,
        1,
        Decimal("0.504"),
        1,
    )
    assert (
        line.description
        == "API usage carried over (2026-01 to 2026-04): 12 credits worth less than 0.01 USD in their period"
    )
    assert carried == (Carry(currency="usd", amount=Decimal("-0.496")),)  # billed ahead by the rounding
    assert closes[-1][1] == (Carry(currency="usd", amount=Decimal("-0.488")),)


def test_waiting_lines_in_the_statements_currency_are_billed_and_others_carried_on() -> None:
    late = rate_period(PAYG, "acme", "2026-01", 5_000).lines[0]
    yen = Carry(currency="jpy", amount=Decimal("0.3"), credits=6, since="2026-01")
    statement, carried = settle(rated(0, "2026-03"), merge([Carry(currency="usd", lines=(late,)), yen]))

    assert statement.lines == (late,)
    assert carried == (yen,)


@given(st.lists(st.integers(min_value=0, max_value=11), min_size=1, max_size=40))
def test_what_is_billed_is_always_the_exact_value_so_far_rounded_once(credits: list[int]) -> None:
    billed = 0
    for month, (statement, carried) in enumerate(months(credits), start=1):
        billed += statement.total
        exact = Decimal("0.042") * sum(credits[:month])
        assert billed == rounded_once(exact)
        assert sum((carry.amount for carry in carried), Decimal(0)) == exact - billed
