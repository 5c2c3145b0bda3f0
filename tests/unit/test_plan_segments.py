"""Plan segments without I/O: the customer's history, a period's shares of it, proration by the second,
and the authorizer's grant switching plans at a request's own timestamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import make_customer, make_plan
from tollgate.dal.counter_item import segment_attribute, segment_of
from tollgate.domain.models import PlanSegment, Tier
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.plan_history import period_shares
from tollgate.domain.rating import LineKind, PlanPart, prorated, rate_parts, rate_period
from tollgate.metering.grants import grant_from_items, plan_segments

PERIOD = "2026-11"  # 30 days
START, END = period_start(PERIOD), period_end(PERIOD)
MID = datetime(2026, 11, 15, tzinfo=UTC)  # 14 days in
STARTER = make_plan(id="starter", name="Starter", base_fee=Decimal("10"), included_credits=1_000,
                    price_per_credit=Decimal("0.01"))  # fmt: skip
PRO = make_plan(id="pro", name="Pro", base_fee=Decimal("50"), included_credits=10_000,
                price_per_credit=Decimal("0.005"))  # fmt: skip


def segments(*changes: tuple[str, datetime]) -> tuple[PlanSegment, ...]:
    first = PlanSegment(seq=1, plan_id="starter", plan_version=1)
    later = [PlanSegment(seq=i + 2, plan_id=p, plan_version=1, since=t) for i, (p, t) in enumerate(changes)]
    return (first, *later)


# -- the history ---------------------------------------------------------------------------------------------
def test_a_customer_without_a_history_has_one_segment_on_its_plan() -> None:
    customer = make_customer(STARTER)
    assert customer.segments == (PlanSegment(seq=1, plan_id="starter", plan_version=1),)
    assert customer.segment_at(datetime(1999, 1, 1, tzinfo=UTC)).seq == 1


def test_the_segment_in_force_is_the_last_one_started() -> None:
    customer = make_customer(PRO, plan_segments=segments(("pro", MID)))
    assert customer.segment_at(MID - timedelta(microseconds=1)).plan_id == "starter"
    assert customer.segment_at(MID).plan_id == "pro"


@pytest.mark.parametrize(
    "history",
    [
        segments(("pro", MID), ("starter", MID)),  # two segments starting at once
        segments(("pro", MID), ("starter", MID - timedelta(days=1))),  # out of order
        (PlanSegment(seq=1, plan_id="pro", plan_version=1, since=MID),),  # the first has a start
        (
            PlanSegment(seq=1, plan_id="starter", plan_version=1),
            PlanSegment(seq=1, plan_id="pro", plan_version=1, since=MID),
        ),
        segments(("starter", MID)),  # the last segment is not the customer's plan (pro)
    ],
)  # fmt: skip
def test_a_history_out_of_order_or_not_ending_on_the_customers_plan_is_refused(
    history: tuple[PlanSegment, ...],
) -> None:
    with pytest.raises(ValidationError, match="plan_segments"):
        make_customer(PRO, plan_segments=history)


def test_segment_attributes_round_trip_and_nothing_else_is_one() -> None:
    assert [segment_of(segment_attribute(n)) for n in (1, 7, 1234)] == [1, 7, 1234]
    for name in ("credits", "requests", "seg", "seg0", "seg01", "segx", "seg²", "ABCDEF", "xseg1"):
        assert segment_of(name) is None


# -- a period's shares -------------------------------------------------------------------------------------
def test_a_change_splits_the_period_at_its_start_and_credits_go_by_tally() -> None:
    shares = period_shares(segments(("pro", MID)), PERIOD, {1: 300, 2: 700}, 1_000)
    assert [(s.segment.seq, s.starts, s.ends, s.credits) for s in shares] == [
        (1, START, MID, 300),
        (2, MID, END, 700),
    ]


def test_credits_no_tally_accounts_for_belong_to_the_segment_in_force_at_the_start() -> None:
    history = segments(("pro", datetime(2026, 10, 10, tzinfo=UTC)), ("starter", MID))
    shares = period_shares(history, PERIOD, {3: 5, 99: 7}, 1_000)  # 99: never a segment of this customer
    assert [(s.segment.seq, s.credits) for s in shares] == [(2, 995), (3, 5)]


def test_credits_counted_under_a_segment_outside_the_period_are_kept_with_no_time() -> None:
    history = segments(("pro", datetime(2026, 10, 10, tzinfo=UTC)))
    shares = period_shares(history, PERIOD, {1: 4, 2: 6}, 10)
    assert [(s.segment.seq, s.starts, s.ends, s.credits) for s in shares] == [
        (1, START, START, 4),
        (2, START, END, 6),
    ]


def test_tallies_above_the_total_are_refused() -> None:
    with pytest.raises(ValueError, match="exceed"):
        period_shares(segments(("pro", MID)), PERIOD, {1: 6, 2: 6}, 10)


# -- proration ---------------------------------------------------------------------------------------------
def test_an_upgrade_on_the_15th_prorates_base_fees_and_included_credits_by_the_second() -> None:
    parts = [PlanPart(1, STARTER, START, MID, 3_000), PlanPart(2, PRO, MID, END, 20_000)]

    statement = rate_parts(parts, "acme", PERIOD)

    amounts = [(line.kind, line.quantity, line.amount) for line in statement.lines]
    assert amounts == [
        (LineKind.BASE_FEE, 1, 467),  # $10 x 14/30 = 466.67 cents
        (LineKind.USAGE, 2_534, 2_534),  # 3,000 - 466 included (1,000 x 14/30, rounded down), 1 cent each
        (LineKind.BASE_FEE, 1, 2_667),  # $50 x 16/30
        (LineKind.USAGE, 14_667, 7_334),  # 20,000 - 5,333 included, 0.5 cents each (7,333.5 rounds up)
    ]
    assert statement.total == 13_002
    assert (statement.plan_id, statement.credits, statement.included_credits) == ("pro", 23_000, 5_799)
    assert statement.lines[0].description.startswith("Starter: base fee for Nov 1 00:00 to Nov 15 00:00 UTC")
    assert "(14.00 of 30 days, prorated by the second)" in statement.lines[0].description
    assert statement.lines[3].description.startswith("API usage on Pro from Nov 15 00:00 to Dec 1 00:00 UTC:")


def test_a_period_on_one_plan_is_rated_as_it_always_was() -> None:
    statement = rate_period(STARTER, "acme", PERIOD, 3_000)
    assert [line.description for line in statement.lines] == [
        "Starter: base fee",
        "API usage: 2,000 credits above 1,000 included",
    ]
    assert statement.total == 1_000 + 2_000
    assert [(s.segment, s.starts, s.ends) for s in statement.segments] == [(1, START, END)]


@given(seconds=st.integers(1, 30 * 86400 - 1), fee=st.decimals(min_value=0, max_value=1_000_000, places=2))
def test_prorated_shares_of_a_fee_add_up_to_the_fee_within_a_cent(seconds: int, fee: Decimal) -> None:
    period = 30 * 86400
    minor = fee * 100
    assert abs(prorated(minor, seconds, period) + prorated(minor, period - seconds, period) - minor) <= 1


def test_prorated_rounds_half_up_to_the_currencys_increment() -> None:
    assert prorated(Decimal(1_000), 1, 2) == 500
    assert prorated(Decimal(1_001), 1, 2) == 501  # 500.5
    assert prorated(Decimal(15_000), 1, 2, increment=100) == 7_500
    assert prorated(Decimal(15_100), 1, 2, increment=100) == 7_600  # 7,550 -> whole kronur, half up


def test_a_part_outside_the_period_or_in_another_currency_is_refused() -> None:
    with pytest.raises(ValueError, match="within"):
        rate_parts([PlanPart(1, STARTER, START - timedelta(days=1), MID, 0)], "acme", PERIOD)
    euro = make_plan(id="euro", name="Euro", currency="eur")
    with pytest.raises(ValueError, match="several currencies"):
        rate_parts([PlanPart(1, STARTER, START, MID, 0), PlanPart(2, euro, MID, END, 0)], "acme", PERIOD)


# -- the authorizer's grant --------------------------------------------------------------------------------
def wire_plan(plan_id: str, search_cost: int) -> dict[str, object]:
    return {
        "id": {"S": plan_id},
        "version": {"N": "1"},
        "route_costs": {"M": {"GET /s": {"N": str(search_cost)}}},
    }


def wire_segment(seq: int, plan_id: str, since: str | None) -> dict[str, object]:
    at = {"NULL": True} if since is None else {"S": since}
    fields = {"seq": {"N": str(seq)}, "plan_id": {"S": plan_id}, "plan_version": {"N": "1"}, "since": at}
    return {"M": fields}


def test_a_grant_switches_plan_and_segment_at_the_change_to_the_millisecond() -> None:
    since_ms = int(MID.timestamp() * 1000)
    customer = {
        "id": {"S": "acme"},
        "status": {"S": "active"},
        "plan_id": {"S": "pro"},
        "plan_version": {"N": "1"},
        "plan_segments": {"L": [wire_segment(1, "starter", None), wire_segment(2, "pro", MID.isoformat())]},
    }  # fmt: skip
    before, last = plan_segments(customer)
    assert (before.seq, before.since_ms, last.seq, last.since_ms) == (1, None, 2, since_ms)

    grant = grant_from_items(
        {}, customer, wire_plan("pro", 3), (before, wire_plan("starter", 1)), 2, since_ms
    )

    old, new = grant.in_force(since_ms - 1), grant.in_force(since_ms)
    assert (old.plan_id, old.segment, old.cost_of("GET /s")) == ("starter", 1, 1)
    assert (new.plan_id, new.segment, new.cost_of("GET /s")) == ("pro", 2, 3)
    assert new.in_force(0) is new  # the new plan's grant does not switch back


def test_a_customer_item_without_a_history_is_one_segment_on_its_plan() -> None:
    (only,) = plan_segments({"plan_id": {"S": "payg"}, "plan_version": {"N": "4"}})
    assert (only.seq, only.plan_id, only.plan_version, only.since_ms) == (1, "payg", 4, None)


# -- volume tiers and minimum commitments ----------------------------------------------------------------
def test_volume_tiers_price_every_credit_at_the_band_the_total_ends_in() -> None:
    bands = (
        Tier(up_to=1_000, price_per_credit=Decimal("0.01")),
        Tier(up_to=None, price_per_credit=Decimal("0.005")),
    )
    graduated = make_plan(id="g", name="G", tiers=bands)
    volume = make_plan(id="v", name="V", tiers=bands, tiers_mode="volume")

    assert rate_period(graduated, "acme", PERIOD, 1_500).total == 1_000 * 1 + 500 // 2
    (line,) = rate_period(volume, "acme", PERIOD, 1_500).lines
    assert (line.quantity, line.unit_amount, line.amount) == (1_500, Decimal("0.5"), 750)
    assert "(volume band 1,001+)" in line.description
    assert rate_period(volume, "acme", PERIOD, 1_000).total == 1_000  # still in the first band


def test_volume_tiers_need_tiers() -> None:
    with pytest.raises(ValidationError, match="tiers_mode"):
        make_plan(tiers_mode="volume")


def test_a_minimum_commitment_trues_up_short_usage_and_is_prorated_with_its_plan() -> None:
    committed = make_plan(
        id="c", name="Committed", price_per_credit=Decimal("0.01"), minimum_commitment=Decimal("300")
    )

    short = rate_period(committed, "acme", PERIOD, 12_000)  # $120 of usage
    assert [(line.kind, line.amount) for line in short.lines] == [
        (LineKind.USAGE, 12_000),
        (LineKind.MINIMUM, 18_000),
    ]
    assert short.lines[1].description == "Committed: minimum commitment 300.00 USD, usage 120.00 USD"
    assert rate_period(committed, "acme", PERIOD, 40_000).total == 40_000  # above the minimum: no true-up

    half = rate_parts(
        [PlanPart(1, STARTER, START, MID, 0), PlanPart(2, committed, MID, END, 0)], "acme", PERIOD
    )
    assert [(line.kind, line.amount) for line in half.lines if line.kind is LineKind.MINIMUM] == [
        (LineKind.MINIMUM, 16_000)  # $300 x 16/30
    ]
