"""Rating: plan + credits -> statement, to the minor unit, rounded once per line (where Stripe rounds)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import make_plan
from tollgate.domain.models import Plan, Tier
from tollgate.domain.rating import (
    LineKind,
    Statement,
    late_usage_line,
    rate_period,
    unit_amount_decimal,
    usage_charge,
)

PERIOD = "2026-10"


def hybrid(**overrides: Any) -> Plan:
    fields: dict[str, Any] = {
        "id": "team",
        "name": "Team",
        "base_fee": Decimal("49"),
        "included_credits": 100_000,
        "price_per_credit": Decimal("0.0005"),
    }
    fields.update(overrides)
    return make_plan(**fields)


TIERED = make_plan(
    id="tiered",
    name="Tiered",
    tiers=(
        Tier(up_to=1_000, price_per_credit=Decimal("0.001")),
        Tier(up_to=10_000, price_per_credit=Decimal("0.0005")),
        Tier(up_to=None, price_per_credit=Decimal("0.0001")),
    ),
)


def test_pay_as_you_go_1234567_credits_at_0_00042_is_518_52() -> None:
    statement = rate_period(make_plan(), "acme", PERIOD, 1_234_567)

    (line,) = statement.lines
    assert line.kind is LineKind.USAGE
    assert (line.quantity, line.unit_amount, line.amount) == (1_234_567, Decimal("0.042"), 51_852)
    assert statement.total == 51_852  # 51,851.814 cents, rounded once: $518.52
    assert "1,234,567 credits" in line.description


def test_hybrid_under_its_included_credits_pays_the_base_fee_only() -> None:
    statement = rate_period(hybrid(), "acme", PERIOD, 80_000)

    assert [line.kind for line in statement.lines] == [LineKind.BASE_FEE]
    assert statement.total == 4_900
    assert statement.included_credits == 100_000


def test_hybrid_over_its_included_credits_pays_the_excess() -> None:
    statement = rate_period(hybrid(), "acme", PERIOD, 250_000)

    base, usage = statement.lines
    assert (base.amount, base.unit_amount) == (4_900, Decimal("4900"))
    assert (usage.quantity, usage.unit_amount, usage.amount) == (150_000, Decimal("0.05"), 7_500)
    assert "above 100,000 included" in usage.description
    assert statement.total == 12_400


def test_a_zero_decimal_currency_bills_whole_yen() -> None:
    plan = make_plan(id="yen", currency="JPY", price_per_credit=Decimal("0.05"), base_fee=Decimal("1000"))

    statement = rate_period(plan, "acme", PERIOD, 123_457)

    assert statement.currency == "jpy"
    assert [line.unit_amount for line in statement.lines] == [Decimal("1000"), Decimal("0.05")]
    assert [line.amount for line in statement.lines] == [1_000, 6_173]  # 6,172.85 yen -> 6,173
    assert statement.total == 7_173


def test_tiers_bill_each_band_at_its_own_price() -> None:
    statement = rate_period(TIERED, "acme", PERIOD, 25_000)

    bands = [(line.quantity, line.amount) for line in statement.lines]
    assert bands == [(1_000, 100), (9_000, 450), (15_000, 150)]
    assert statement.total == 700
    assert [line.description.split("(band ")[1] for line in statement.lines] == [
        "1-1,000)",
        "1,001-10,000)",
        "10,001+)",
    ]


def test_tiers_count_from_the_first_credit_above_the_included_ones() -> None:
    plan = TIERED.model_copy(update={"included_credits": 500})

    assert [line.quantity for line in rate_period(plan, "acme", PERIOD, 2_000).lines] == [1_000, 500]
    assert usage_charge(plan, 2_000) == 100 + 25


def test_usage_inside_the_first_tier_gives_one_line() -> None:
    assert [line.quantity for line in rate_period(TIERED, "acme", PERIOD, 999).lines] == [999]


def test_zero_usage_on_pay_as_you_go_is_an_empty_statement() -> None:
    statement = rate_period(make_plan(), "acme", PERIOD, 0)

    assert statement.lines == ()
    assert statement.total == 0


def test_each_line_is_rounded_once_half_up() -> None:
    plan = make_plan(price_per_credit=Decimal("0.00005"))  # half a cent per 100 credits

    assert rate_period(plan, "acme", PERIOD, 100).total == 1  # 0.5 cent -> 1
    assert rate_period(plan, "acme", PERIOD, 1).total == 0  # 0.005 cent -> 0
    assert rate_period(plan, "acme", PERIOD, 300).total == 2  # 1.5 -> 2, not to even


def test_unit_amounts_are_written_as_plain_decimals_stripe_accepts() -> None:
    plan = make_plan(base_fee=Decimal("5"), price_per_credit=Decimal("0.000420"))

    base, usage = rate_period(plan, "acme", PERIOD, 10).lines

    assert str(base.unit_amount) == "500"  # not "5E+2", which is what Decimal("5").scaleb(2) prints
    assert str(usage.unit_amount) == "0.042"
    assert unit_amount_decimal(Decimal("0.000000000001"), "usd") == Decimal("1E-10")


def test_a_price_finer_than_stripe_accepts_is_refused() -> None:
    plan = make_plan(price_per_credit=Decimal("0.00000000000001"))  # 1e-12 cents: 12 places is the limit

    assert rate_period(plan, "acme", PERIOD, 1).lines[0].unit_amount == Decimal("1E-12")
    finer = plan.model_copy(update={"price_per_credit": Decimal("0.000000000000001")})  # skips validation
    with pytest.raises(ValueError) as refused:  # the rating engine checks again
        rate_period(finer, "acme", PERIOD, 1)
    assert str(refused.value) == (
        "price 1E-15 USD is 1E-13 in the minor unit: "
        "Stripe's unit_amount_decimal takes at most 12 decimal places"
    )


def test_line_amounts_are_exact_beyond_the_default_decimal_precision() -> None:
    plan = make_plan(price_per_credit=Decimal("0.01000000000001"))  # 1.000000000001 cents
    credits = 10**16 + 499_999_999_999  # x 1.000000000001 = ...9999.499999999999: 29 digits

    (line,) = rate_period(plan, "acme", PERIOD, credits).lines

    # Decimal's default 28 digits would round the product to ...10000.5 and then up: one cent too many.
    exact = (2 * 1_000_000_000_001 * credits + 10**12) // (2 * 10**12)
    assert line.amount == exact == 10_000_500_000_009_999


def test_negative_credits_are_refused() -> None:
    with pytest.raises(ValueError, match=r"^credits cannot be negative$"):
        rate_period(make_plan(), "acme", PERIOD, -1)


def test_late_usage_costs_what_it_adds_to_its_period() -> None:
    plan = hybrid()

    inside = late_usage_line(plan, PERIOD, 90_000, 5_000)
    across = late_usage_line(plan, PERIOD, 90_000, 20_000)

    assert inside is not None
    assert (inside.kind, inside.quantity, inside.amount) == (LineKind.ADJUSTMENT, 1, 0)  # still included
    assert across is not None
    assert across.amount == 10_000 * 5 // 100  # only the 10,000 above the included credits
    assert across.period == PERIOD
    assert "20,000 credits" in across.description
    assert late_usage_line(plan, PERIOD, 90_000, 0) is None


def test_a_refund_after_the_close_credits_what_its_credits_added_to_the_period() -> None:
    """Credits of failed requests refunded after the close (tollgate.domain.refunds): the line takes off
    what they cost, no more (included credits and tiers respected), so the period is billed as if they had
    been refunded before it closed."""
    plan = hybrid()  # 100,000 included, then 0.05 cents a credit

    above = late_usage_line(plan, PERIOD, 110_000, -4_000)
    across = late_usage_line(plan, PERIOD, 110_000, -30_000)
    inside = late_usage_line(plan, PERIOD, 90_000, -5_000)

    assert above is not None
    assert (above.kind, above.quantity, above.amount) == (LineKind.ADJUSTMENT, 1, -(4_000 * 5 // 100))
    assert above.description == (
        f"Refund for {PERIOD}: 4,000 credits of failed requests, refunded after that period closed"
    )
    assert across is not None
    assert across.amount == -(10_000 * 5 // 100)  # only the 10,000 that were above the included credits
    assert inside is not None
    assert inside.amount == 0  # still within the included credits: nothing was billed for them
    assert rate_period(plan, "acme", PERIOD, 106_000).total - rate_period(
        plan, "acme", PERIOD, 110_000
    ).total == (above.amount)
    with pytest.raises(ValueError, match=r"^90001 credits cannot be refunded of 90000 billed$"):
        late_usage_line(plan, PERIOD, 90_000, -90_001)
    assert late_usage_line(plan, PERIOD, 90_000, -90_000) is not None  # every billed credit refunded


def test_late_usage_across_tiers_and_rounding_sums_to_the_whole_period() -> None:
    billed, late = 999, 9_123

    line = late_usage_line(TIERED, PERIOD, billed, late)

    assert line is not None
    assert usage_charge(TIERED, billed) + line.amount == usage_charge(TIERED, billed + late)


def test_adjustments_go_on_the_statement_after_the_period_lines() -> None:
    adjustment = late_usage_line(make_plan(), "2026-09", 100, 10_000)
    assert adjustment is not None

    statement = rate_period(make_plan(), "acme", PERIOD, 0, (adjustment,))

    assert statement.lines == (adjustment,)
    assert statement.total == adjustment.amount == 420
    assert statement.credits == 0


def test_a_statement_survives_its_json_form_unchanged() -> None:
    statement = rate_period(hybrid(base_fee=Decimal("5")), "acme", PERIOD, 123_456)

    stored = statement.model_dump(mode="json")

    assert stored["total"] == statement.total
    units = [line["unit_amount"] for line in stored["lines"]]
    assert units == ["500", "0.05"]  # strings in DynamoDB, plain digits
    assert Statement.model_validate(stored) == statement
