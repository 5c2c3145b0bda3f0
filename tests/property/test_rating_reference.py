"""The rating engine against an independent reference, line by line and in total, for any plan.

The reference below is written from the README's pricing rules, not from ``tollgate.domain.rating``: rational
arithmetic (``Fraction``), its own table of minor units, its own walk over the tiers. A statement is:

* the base fee, one line of quantity 1, when there is one;
* the credits above the included ones (*billable*): one line at the flat price, or one line per graduated
  tier band they reach (band *i* holds the credits from the previous ``up_to`` + 1 to its own ``up_to``);
* each line's amount is ``unit x quantity`` in the minor unit, rounded half up once.

The hard cap (``credit_limit``) is enforced by the authorizer, before a request is counted; the close bills
what was counted, so the cap never changes a statement (sharded counters, which the cap does not hold,
can exceed it). Tollgate prices are graduated only (no volume pricing).

Hypothesis draws small tier bounds and credits around every bound (``up_to + included + {-1, 0, 1}``), so the
edges are hit on every run, including a band that holds exactly one credit; the worked examples pin the cases
a mutation run must always see.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from math import floor
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from tollgate.domain.models import Plan, Tier
from tollgate.domain.rating import LineKind, late_usage_line, rate_period, usage_charge

PERIOD = "2026-10"
MINOR_UNITS_PER_MAJOR = {"usd": 100, "eur": 100, "gbp": 100, "jpy": 1, "krw": 1}


@dataclass(frozen=True)
class RefLine:
    kind: str
    quantity: int
    unit: Fraction  # minor units
    amount: int
    band: tuple[int, int | None] | None = None  # first and last credit of a tier band (None: no end)


def half_up(value: Fraction) -> int:
    return floor(value + Fraction(1, 2))  # amounts are never negative


def ref_line(
    kind: str, quantity: int, price: Decimal, currency: str, band: tuple[int, int | None] | None = None
) -> RefLine:
    unit = Fraction(price) * MINOR_UNITS_PER_MAJOR[currency]
    return RefLine(kind, quantity, unit, half_up(unit * quantity), band)


def ref_usage(plan: Plan, credits: int) -> list[RefLine]:
    billable = credits - plan.included_credits
    if billable <= 0:
        return []
    if not plan.tiers:
        return [ref_line("usage", billable, plan.price_per_credit, plan.currency)]
    if plan.tiers_mode == "volume":  # the whole quantity at the price of the band it ends in
        first = 1
        for tier in plan.tiers:
            if tier.up_to is None or billable <= tier.up_to:
                return [
                    ref_line("usage", billable, tier.price_per_credit, plan.currency, (first, tier.up_to))
                ]
            first = tier.up_to + 1
    lines = []
    first = 1  # the first credit of the current band
    for tier in plan.tiers:
        last = billable if tier.up_to is None else min(tier.up_to, billable)
        if last >= first:
            band = (first, tier.up_to)
            lines.append(ref_line("usage", last - first + 1, tier.price_per_credit, plan.currency, band))
        if tier.up_to is None or tier.up_to >= billable:
            break
        first = tier.up_to + 1
    return lines


def ref_minimum(plan: Plan) -> int:
    return half_up(Fraction(plan.minimum_commitment) * MINOR_UNITS_PER_MAJOR[plan.currency])


def ref_statement(plan: Plan, credits: int) -> list[RefLine]:
    base = [ref_line("base_fee", 1, plan.base_fee, plan.currency)] if plan.base_fee else []
    usage = ref_usage(plan, credits)
    short = ref_minimum(plan) - sum(line.amount for line in usage)
    true_up = [RefLine("minimum", 1, Fraction(short), short)] if short > 0 else []
    return base + usage + true_up


def ref_charge(plan: Plan, credits: int) -> int:
    return max(ref_minimum(plan), sum(line.amount for line in ref_usage(plan, credits)))


# -- plans and credits -----------------------------------------------------------------------------------
def prices(max_places: int = 8) -> st.SearchStrategy[Decimal]:
    return st.builds(
        lambda digits, places: Decimal(digits).scaleb(-places),
        st.integers(min_value=0, max_value=10**6),
        st.integers(min_value=0, max_value=max_places),
    )


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    tiers: tuple[Tier, ...] = ()
    if draw(st.booleans()):
        bounds = draw(st.sets(st.integers(min_value=1, max_value=2_000), min_size=1, max_size=4))
        if draw(st.booleans()):  # a band of exactly one credit
            low = min(bounds)
            bounds.add(low + 1)
        tiers = tuple(Tier(up_to=bound, price_per_credit=draw(prices())) for bound in sorted(bounds))
        tiers += (Tier(up_to=None, price_per_credit=draw(prices())),)
    return Plan(
        id="ref",
        name="Reference",
        currency=draw(st.sampled_from(sorted(MINOR_UNITS_PER_MAJOR))),
        price_per_credit=None if tiers else draw(prices()),
        base_fee=draw(
            st.sampled_from([Decimal(0), Decimal("0.5"), Decimal("0.01"), Decimal("1"), Decimal("49")])
        ),
        included_credits=draw(st.sampled_from([0, 1, 500])),
        tiers=tiers,
        tiers_mode=draw(st.sampled_from(["graduated", "volume"])) if tiers else "graduated",
        minimum_commitment=draw(
            st.sampled_from([Decimal(0), Decimal("0.01"), Decimal("2.5"), Decimal("300")])
        ),
        credit_limit=draw(st.sampled_from([None, 1, 1_000])),
    )


@st.composite
def plans_and_credits(draw: st.DrawFn) -> tuple[Plan, int]:
    plan = draw(plans())
    edges = [plan.included_credits + tier.up_to for tier in plan.tiers if tier.up_to is not None]
    edges.append(plan.included_credits)
    near_an_edge = st.builds(
        lambda edge, delta: max(0, edge + delta),
        st.sampled_from(edges),
        st.integers(min_value=-1, max_value=1),
    )
    used = draw(st.one_of(near_an_edge, st.integers(min_value=0, max_value=5_000), st.integers(0, 10**12)))
    return plan, used


def plan(**fields: Any) -> Plan:
    flat = {} if fields.get("tiers") else {"price_per_credit": Decimal("0.001")}
    return Plan(**{"id": "ref", "name": "Reference", **flat, **fields})


ONE_CREDIT_BAND = plan(
    base_fee=Decimal("0.50"),
    included_credits=10,
    tiers=(
        Tier(up_to=100, price_per_credit=Decimal("0.01")),
        Tier(up_to=101, price_per_credit=Decimal("0.5")),  # exactly one credit: the 101st billable
        Tier(up_to=None, price_per_credit=Decimal("0.004")),
    ),
)


# -- the properties --------------------------------------------------------------------------------------
@given(case=plans_and_credits())
@example(case=(ONE_CREDIT_BAND, 10 + 101))  # up_to + 1 billable: one credit in the one-credit band
@example(case=(ONE_CREDIT_BAND, 10 + 102))  # and one in the open band after it
@example(case=(ONE_CREDIT_BAND, 10 + 100))  # the one-credit band not reached
@example(case=(ONE_CREDIT_BAND, 10))  # base fee of 0.50 only
@example(case=(plan(base_fee=Decimal("0.5"), currency="jpy"), 0))  # 0.5 yen: rounded half up to 1
@example(case=(plan(included_credits=1), 2))  # one credit above the included one
def test_a_statement_is_the_reference_line_by_line(case: tuple[Plan, int]) -> None:
    plan_, used = case
    statement = rate_period(plan_, "acme", PERIOD, used)
    expected = ref_statement(plan_, used)

    got = [
        RefLine(line.kind.value, line.quantity, Fraction(line.unit_amount), line.amount)
        for line in statement.lines
    ]
    assert got == [RefLine(line.kind, line.quantity, line.unit, line.amount) for line in expected]
    assert statement.total == sum(line.amount for line in expected)
    assert all(line.period == PERIOD for line in statement.lines)
    for line, ref in zip(statement.lines, expected, strict=True):
        if ref.band is not None:  # the band's first and last credit, as the invoice shows them
            first, last = ref.band
            mode = "volume band" if plan_.tiers_mode == "volume" else "band"
            band = f"({mode} {first:,}-{last:,})" if last is not None else f"({mode} {first:,}+)"
            assert band in line.description
        if line.kind is LineKind.USAGE:
            assert f"{line.quantity:,} credits" in line.description


@given(case=plans_and_credits())
def test_the_cap_never_changes_what_counted_credits_cost(case: tuple[Plan, int]) -> None:
    plan_, used = case
    uncapped = plan_.model_copy(update={"credit_limit": None})

    assert rate_period(plan_, "acme", PERIOD, used).total == rate_period(uncapped, "acme", PERIOD, used).total


@given(case=plans_and_credits(), late=st.integers(min_value=0, max_value=3))
@example(case=(ONE_CREDIT_BAND, 10 + 100), late=1)  # one late credit, the one in the one-credit band
@example(case=(ONE_CREDIT_BAND, 0), late=1)  # one late credit still inside the included ones
def test_a_few_late_credits_cost_what_the_reference_adds(case: tuple[Plan, int], late: int) -> None:
    plan_, billed = case
    line = late_usage_line(plan_, PERIOD, billed, late, minimum=ref_minimum(plan_))

    expected = ref_charge(plan_, billed + late) - ref_charge(plan_, billed)
    if late == 0:
        assert line is None
    else:
        assert line is not None
        assert (line.kind, line.quantity, line.amount, line.period) == (
            LineKind.ADJUSTMENT,
            1,
            expected,
            PERIOD,
        )
        assert Fraction(line.unit_amount) == expected
    assert usage_charge(plan_, billed, minimum=ref_minimum(plan_)) == ref_charge(plan_, billed)


def test_the_one_credit_band_worked_example() -> None:
    """10 included, then 100 credits at 1 cent, the 101st at 50 cents, the rest at 0.4 cents; base fee 50c."""
    statement = rate_period(ONE_CREDIT_BAND, "acme", PERIOD, 10 + 103)

    assert [(line.quantity, line.amount) for line in statement.lines] == [
        (1, 50),
        (100, 100),
        (1, 50),
        (2, 1),
    ]
    assert statement.total == 201  # 50 + 100 + 50 + 0.8 rounded to 1
    assert "(band 101-101)" in statement.lines[2].description
    assert "(band 102+)" in statement.lines[3].description
    late = late_usage_line(ONE_CREDIT_BAND, PERIOD, 10 + 100, 1)
    assert late is not None
    assert late.amount == 50  # the one late credit lands in the 50-cent band
