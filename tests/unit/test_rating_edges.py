"""The rating engine at its edges: one credit, one cent, one second, one krona; what each line says; how
free credits, trials, minimums and segment-specific included credits combine. Each test pins a boundary a
plausible slip would cross (a ``> 0`` become ``> 1``, a sum become an assignment, a prorated share whose
currency rule is forgotten)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import make_plan
from tollgate.domain.models import Plan, Tier
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.rating import (
    FreeCredits,
    LineKind,
    PlanPart,
    late_usage_line,
    minimum_commitment,
    rate_parts,
    usage_charge,
    usage_lines,
)

PERIOD = "2026-11"  # 30 days
START, END = period_start(PERIOD), period_end(PERIOD)
MIDDLE = START + timedelta(days=15)
SECONDS = int((END - START).total_seconds())


def whole(plan: Plan, credits: int, segment: int = 1) -> PlanPart:
    return PlanPart(segment, plan, START, END, credits)


def kinds(lines: Any) -> list[tuple[LineKind, int, int]]:
    return [(line.kind, line.quantity, line.amount) for line in lines]


# -- refusals ------------------------------------------------------------------------------------------------
def test_a_statement_without_plan_parts_is_refused_saying_so() -> None:
    with pytest.raises(ValueError, match=r"^a statement needs at least one plan part$"):
        rate_parts([], "acme", PERIOD)


def test_a_period_in_two_currencies_is_refused_naming_both() -> None:
    usd, eur = make_plan(id="usd"), make_plan(id="eur", currency="eur")
    parts = [PlanPart(1, usd, START, MIDDLE, 0), PlanPart(2, eur, MIDDLE, END, 0)]

    with pytest.raises(ValueError, match=r"several currencies: eur, usd$"):
        rate_parts(parts, "acme", PERIOD)


def test_credits_of_a_segment_outside_the_period_are_rated_on_a_zero_length_part() -> None:
    plan = make_plan(price_per_credit=Decimal("0.01"))
    parts = [PlanPart(1, plan, START, START, 100), PlanPart(2, plan, START, END, 0)]

    statement = rate_parts(parts, "acme", PERIOD)

    assert statement.total == 100
    with pytest.raises(ValueError, match="does not lie within"):
        rate_parts([PlanPart(1, plan, START, END + timedelta(seconds=1), 0)], "acme", PERIOD)


# -- base fee and proration ----------------------------------------------------------------------------------
def test_a_base_fee_of_one_unit_is_billed() -> None:
    plan = make_plan(base_fee=Decimal("1.00"), price_per_credit=Decimal("0.01"))

    assert kinds(rate_parts([whole(plan, 0)], "acme", PERIOD).lines) == [(LineKind.BASE_FEE, 1, 100)]


def test_a_base_fee_for_one_second_after_the_trial_is_billed_prorated() -> None:
    plan = make_plan(base_fee=Decimal("999999"), price_per_credit=Decimal("0.01"))

    statement = rate_parts([whole(plan, 0)], "acme", PERIOD, trial_ends=END - timedelta(seconds=1))

    (line,) = statement.lines
    assert line.amount == 39  # 99,999,900 cents x 1 / 2,592,000 = 38.58, half-up
    assert line.description == (
        f"{plan.name}: base fee for Nov 30 23:59 to Dec 1 00:00 UTC (0.00 of 30 days, after the trial, "
        "prorated by the second)"
    )


def test_a_prorated_base_fee_says_its_share_of_the_period() -> None:
    plan = make_plan(base_fee=Decimal("30.00"), price_per_credit=Decimal("0.01"))
    parts = [PlanPart(1, plan, START, MIDDLE, 0), PlanPart(2, make_plan(id="b", name="B"), MIDDLE, END, 0)]

    (line,) = rate_parts(parts, "acme", PERIOD).lines

    assert line.amount == 1500
    assert "(15.00 of 30 days, prorated by the second)" in line.description


def test_the_share_of_days_is_the_seconds_over_a_days_86400() -> None:
    """1 day 21 minutes 36 seconds is exactly 1.015 days, shown to two places as 1.02 (to the even digit)."""
    plan = make_plan(base_fee=Decimal("30.00"), price_per_credit=Decimal("0.01"))
    ends = START + timedelta(days=1, minutes=21, seconds=36)
    parts = [PlanPart(1, plan, START, ends, 0), PlanPart(2, make_plan(id="b", name="B"), ends, END, 0)]

    (line,) = rate_parts(parts, "acme", PERIOD).lines

    assert line.amount == 102  # 3,000 cents x 87,696 / 2,592,000 = 101.5, half-up
    assert "(1.02 of 30 days, prorated by the second)" in line.description


def test_prorated_krona_amounts_are_whole_kronur() -> None:
    plan = make_plan(
        currency="isk",
        base_fee=Decimal("1000"),
        minimum_commitment=Decimal("5000"),
        price_per_credit=Decimal("1"),
    )
    third = START + timedelta(days=10)
    parts = [
        PlanPart(1, plan, START, third, 0),
        PlanPart(2, make_plan(id="b", currency="isk", price_per_credit=Decimal("1")), third, END, 0),
    ]

    lines = rate_parts(parts, "acme", PERIOD).lines

    assert kinds(lines) == [
        (LineKind.BASE_FEE, 1, 33_300),
        (LineKind.MINIMUM, 1, 166_700),
    ]  # 333.33, 1,666.67
    assert minimum_commitment(plan, 1, SECONDS) == 0  # 0.19 krona rounds to no whole krona


# -- minimum commitment --------------------------------------------------------------------------------------
def test_a_minimum_of_one_unit_is_trued_up() -> None:
    plan = make_plan(minimum_commitment=Decimal("1.00"), price_per_credit=Decimal("0.01"))

    assert minimum_commitment(plan, SECONDS, SECONDS) == 100
    assert kinds(rate_parts([whole(plan, 0)], "acme", PERIOD).lines) == [(LineKind.MINIMUM, 1, 100)]


def test_a_minimum_one_cent_short_is_trued_up_by_one_cent() -> None:
    plan = make_plan(minimum_commitment=Decimal("1.00"), price_per_credit=Decimal("0.01"))

    lines = rate_parts([whole(plan, 99)], "acme", PERIOD).lines

    assert kinds(lines) == [(LineKind.USAGE, 99, 99), (LineKind.MINIMUM, 1, 1)]


def test_a_minimum_for_one_second_is_prorated_not_dropped() -> None:
    plan = make_plan(minimum_commitment=Decimal("999999"), price_per_credit=Decimal("0.01"))

    assert minimum_commitment(plan, 1, SECONDS) == 39
    assert minimum_commitment(plan, 0, SECONDS) == 0


# -- free credits --------------------------------------------------------------------------------------------
def test_free_credits_cover_only_credits_above_the_included_ones() -> None:
    plan = make_plan(included_credits=100, price_per_credit=Decimal("0.01"))
    grant = FreeCredits("grt_1", "bonus", 10)

    statement = rate_parts([whole(plan, 50)], "acme", PERIOD, free_credits=[grant])

    assert statement.lines == ()
    assert statement.grants_used == {}


def test_a_grant_covering_one_credit_shows_it() -> None:
    plan = make_plan(included_credits=100, price_per_credit=Decimal("0.01"))
    grant = FreeCredits("grt_1", "bonus", 1)

    statement = rate_parts([whole(plan, 105)], "acme", PERIOD, free_credits=[grant])

    assert kinds(statement.lines) == [(LineKind.FREE_CREDITS, 1, 0), (LineKind.USAGE, 4, 4)]
    assert statement.grants_used == {"grt_1": 1}


def test_a_grant_never_covers_credits_drawn_from_a_prepaid_balance() -> None:
    plan = make_plan(billing="prepaid", price_per_credit=Decimal("0.01"))
    grant = FreeCredits("grt_1", "bonus", 50)

    statement = rate_parts([whole(plan, 100)], "acme", PERIOD, free_credits=[grant])

    assert kinds(statement.lines) == [(LineKind.PREPAID, 100, 0)]  # paid when bought: shown, not billed
    assert statement.grants_used == {}  # the grant is left for a period it can cover


def test_two_grants_together_cover_their_sum() -> None:
    plan = make_plan(price_per_credit=Decimal("0.01"))
    grants = [FreeCredits("grt_1", "a", 30), FreeCredits("grt_2", "b", 20)]

    statement = rate_parts([whole(plan, 100)], "acme", PERIOD, free_credits=grants)

    assert kinds(statement.lines) == [
        (LineKind.FREE_CREDITS, 30, 0),
        (LineKind.FREE_CREDITS, 20, 0),
        (LineKind.USAGE, 50, 50),
    ]
    assert statement.lines[2].description == "API usage: 50 credits above 50 free"


def test_a_grant_used_in_two_segments_records_both() -> None:
    first, second = make_plan(id="a", name="A"), make_plan(id="b", name="B")
    parts = [PlanPart(1, first, START, MIDDLE, 30), PlanPart(2, second, MIDDLE, END, 30)]

    statement = rate_parts(parts, "acme", PERIOD, free_credits=[FreeCredits("grt_1", "bonus", 50)])

    assert statement.grants_used == {"grt_1": 50}  # 30 in the first segment, 20 in the second


# -- what the lines say --------------------------------------------------------------------------------------
def test_a_usage_line_names_its_credits_and_nothing_more() -> None:
    (line,) = usage_lines(make_plan(price_per_credit=Decimal("0.01")), 1_000, PERIOD)

    assert line.description == "API usage: 1,000 credits"


def test_a_usage_line_above_included_and_free_credits_says_both() -> None:
    plan = make_plan(included_credits=400, price_per_credit=Decimal("0.01"))

    (line,) = usage_lines(plan, 1_000, PERIOD, free=100)

    assert line.description == "API usage: 500 credits above 400 included and 100 free"


def test_a_band_ending_exactly_at_the_usage_is_the_last_line() -> None:
    tiers: list[dict[str, Any]] = [
        {"up_to": 10, "price_per_credit": "0.10"},
        {"up_to": 20, "price_per_credit": "0.05"},
        {"up_to": None, "price_per_credit": "0.01"},
    ]
    plan = make_plan(tiers=tiers)

    assert kinds(usage_lines(plan, 20, PERIOD)) == [(LineKind.USAGE, 10, 100), (LineKind.USAGE, 10, 50)]
    assert kinds(usage_lines(plan, 10, PERIOD)) == [(LineKind.USAGE, 10, 100)]


# -- late usage on a segment's own included credits ---------------------------------------------------------
def test_late_usage_counts_the_segments_included_credits_not_the_plans() -> None:
    plan = make_plan(included_credits=1_000, price_per_credit=Decimal("0.01"))

    line = late_usage_line(plan, "2026-10", 400, 200, included=500)

    assert line is not None
    assert line.amount == 100  # 600 - 500 included in the segment: 100 credits at 1 cent
    assert usage_charge(plan, 600, included=500) == 100
    assert usage_charge(plan, 600) == 0


def test_a_trial_that_ended_before_the_segment_bills_its_whole_fee() -> None:
    plan = make_plan(base_fee=Decimal("10.00"), price_per_credit=Decimal("0.01"))
    before = START - timedelta(days=3)

    assert kinds(rate_parts([whole(plan, 0)], "acme", PERIOD, trial_ends=before).lines) == [
        (LineKind.BASE_FEE, 1, 1000)
    ]
    assert (
        rate_parts([whole(plan, 0)], "acme", PERIOD, trial_ends=datetime(2027, 1, 1, tzinfo=UTC)).lines == ()
    )


def test_free_credits_that_fill_a_band_exactly_leave_no_empty_line_for_it() -> None:
    plan = make_plan(
        tiers=(
            Tier(up_to=100, price_per_credit=Decimal("0.01")),
            Tier(up_to=None, price_per_credit=Decimal("0.005")),
        )
    )

    lines = usage_lines(plan, 150, "2026-11", free=100)  # the first band is all free: nothing paid in it

    assert [(line.quantity, line.amount) for line in lines] == [(50, 25)]
    assert lines[0].description == "API usage: 50 credits (band 101+) above 100 free"
