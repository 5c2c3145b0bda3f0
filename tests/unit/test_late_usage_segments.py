"""Late usage of a period with a plan change, billed on a later close, over an in-memory ledger.

Each plan segment's late credits are priced on the plan the statement recorded for that segment, with that
segment's prorated included credits and minimum commitment, and labelled with the plan's name; a statement
stored before plan changes existed (no segments) bills them on the statement's plan. The earlier record's
billed credits rise to what the counter now holds, per segment. The end-to-end version (moto) is in
``tests/integration/test_late_usage_lookback.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import cast

from tests.conftest import make_customer, make_plan
from tollgate.billing.close import steps
from tollgate.billing.invoicing import StripeInvoicing
from tollgate.domain.closes import BilledRaise, Carry, CloseStatus, PeriodClose
from tollgate.domain.credit_grants import CreditGrant
from tollgate.domain.models import Customer, Plan, PlanSegment, Usage
from tollgate.domain.rating import LineKind, StatementLine, late_usage_line, rate_period, usage_charge

PERIOD = "2026-11"  # 30 days
MID = datetime(2026, 11, 15, tzinfo=UTC)  # the upgrade: 14 days on Starter, 16 on Pro
LATER = "2026-12"
NOW = datetime(2027, 1, 1, 6, 0, tzinfo=UTC)
STARTER = make_plan(id="starter", name="Starter", base_fee=Decimal("10"), included_credits=1_000,
                    price_per_credit=Decimal("0.01"))  # fmt: skip
PRO = make_plan(id="pro", name="Pro", base_fee=Decimal("50"), included_credits=10_000,
                price_per_credit=Decimal("0.005"))  # fmt: skip
COMMITTED = make_plan(id="committed", name="Committed", price_per_credit=Decimal("0.01"),
                      minimum_commitment=Decimal("300"))  # fmt: skip


def history(second: Plan, since: datetime = MID) -> tuple[PlanSegment, ...]:
    return (
        PlanSegment(seq=1, plan_id="starter", plan_version=1),
        PlanSegment(seq=2, plan_id=second.id, plan_version=second.version, since=since),
    )


@dataclass
class Ledger:
    """Just what rating reads: plans, customers and counters (every other call is a test failure)."""

    plans: dict[tuple[str, int], Plan] = field(default_factory=dict)
    customers: dict[str, Customer] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    plan_reads: int = 0

    def count(self, period: str, segments: dict[int, int], credits: int | None = None) -> None:
        total = sum(segments.values()) if credits is None else credits
        self.usage[period] = Usage(customer_id="acme", period=period, credits=total, segments=segments)

    def list_customers(self) -> list[Customer]:
        return list(self.customers.values())

    def get_customer(self, customer_id: str) -> Customer:
        return self.customers[customer_id]

    def get_plan(self, plan_id: str, version: int) -> Plan:
        self.plan_reads += 1
        return self.plans[(plan_id, version)]  # a KeyError for a plan that was never stored

    def read_usage(self, customer_id: str, period: str, shards: int) -> Usage:
        return self.usage.get(period, Usage(customer_id=customer_id, period=period))

    def list_credit_grants(self, customer_id: str) -> list[CreditGrant]:
        return []

    def closes_up_to(self, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
        return []

    def get_close(self, customer_id: str, period: str, part: int = 0) -> PeriodClose | None:
        raise AssertionError("not read when rating")

    def threshold_invoices(self, customer_id: str, period: str) -> list[PeriodClose]:
        raise AssertionError("not read when rating")

    def save_new_close(
        self, record: PeriodClose, raised_billed_credits: dict[str, BilledRaise], threshold_invoices: int = 0
    ) -> None:
        raise AssertionError("not written when rating")

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        raise AssertionError("not written when rating")

    def mark_finalized(
        self,
        record: PeriodClose,
        *,
        invoice_status: str,
        hosted_invoice_url: str | None,
        amount_due: int | None,
        total_mismatch: bool,
        now: datetime,
    ) -> PeriodClose:
        raise AssertionError("not written when rating")

    def record_failure(self, customer_id: str, period: str, error: str, now: datetime, part: int = 0) -> None:
        raise AssertionError("not written when rating")


NO_STRIPE = cast(StripeInvoicing, object())  # rating never calls Stripe


def ledger_with(*plans: Plan) -> Ledger:
    return Ledger(plans={(plan.id, plan.version): plan for plan in plans})


def close(ledger: Ledger, customer: Customer, period: str = PERIOD) -> PeriodClose:
    """The record the close of ``period`` stores, rated on the ledger as it is now."""
    ledger.customers[customer.id] = customer
    return steps.rate(steps.CloseContext(ledger, NO_STRIPE, customer.id, period, NOW), []).record


Found = tuple[list[StatementLine], BilledRaise] | None


def late(ledger: Ledger, customer: Customer, before: PeriodClose) -> Found:
    """What the close of the next period bills of ``before``'s late usage (the same currency)."""
    ledger.customers[customer.id] = customer
    ctx = steps.CloseContext(ledger, NO_STRIPE, customer.id, LATER, NOW)
    return steps.late_usage(ctx, customer, before, "usd")


def summary(lines: list[StatementLine]) -> list[tuple[LineKind, str, str, int, int]]:
    return [(line.kind, line.description, line.period, line.quantity, line.amount) for line in lines]


UPGRADED = make_customer(PRO, plan_segments=history(PRO))


def upgraded_close() -> tuple[Ledger, PeriodClose]:
    """November closed with 500 credits on Starter and 6,000 on Pro.

    Starter: 1,000 x 14/30 = 466 included (rounded down): 34 credits billed, 34 cents. Pro: 10,000 x 16/30 =
    5,333 included: 667 credits at 0.5 cents, 333.5 -> 334 cents."""
    ledger = ledger_with(STARTER, PRO)
    ledger.count(PERIOD, {1: 500, 2: 6_000})
    record = close(ledger, UPGRADED)
    assert [(s.segment, s.plan_id, s.credits, s.included_credits) for s in record.statement.segments] == [
        (1, "starter", 500, 466),
        (2, "pro", 6_000, 5_333),
    ]
    assert [line.amount for line in record.statement.lines if line.kind is LineKind.USAGE] == [34, 334]
    return ledger, record


# -- a period with an upgrade on the 15th ------------------------------------------------------------------
def test_late_credits_are_billed_on_each_segments_plan_with_its_prorated_included_credits() -> None:
    ledger, record = upgraded_close()
    ledger.count(PERIOD, {1: 600, 2: 7_000})  # 100 late on Starter, 1,000 late on Pro

    found = late(ledger, UPGRADED, record)

    assert found is not None
    lines, raised = found
    assert summary(lines) == [
        # 600 - 466 included = 134 cents, of which 34 were billed: 100 (not 134: the 466 are the segment's,
        # not Starter's 1,000, which would make it 0)
        (LineKind.ADJUSTMENT,
         "Late usage for 2026-11 on Starter: 100 credits counted after that period closed", PERIOD, 1, 100),
        # (7,000 - 5,333) x 0.5 = 833.5 -> 834 cents, of which 334 were billed: 500
        (LineKind.ADJUSTMENT,
         "Late usage for 2026-11 on Pro: 1,000 credits counted after that period closed", PERIOD, 1, 500),
    ]  # fmt: skip
    assert [line.unit_amount for line in lines] == [Decimal(100), Decimal(500)]
    assert raised == BilledRaise(6_500, 7_600, {1: 600, 2: 7_000}, None)


def test_late_credits_of_one_segment_only_bill_that_segment() -> None:
    ledger, record = upgraded_close()
    ledger.count(PERIOD, {1: 500, 2: 7_000})  # nothing late on Starter, the first segment

    found = late(ledger, UPGRADED, record)

    assert found is not None
    lines, raised = found
    assert [(line.description, line.amount) for line in lines] == [
        ("Late usage for 2026-11 on Pro: 1,000 credits counted after that period closed", 500)
    ]
    assert raised == BilledRaise(6_500, 7_500, {1: 500, 2: 7_000}, None)


def test_a_single_late_credit_is_billed() -> None:
    ledger, record = upgraded_close()
    ledger.count(PERIOD, {1: 501, 2: 6_000})

    found = late(ledger, UPGRADED, record)

    assert found is not None
    lines, raised = found
    assert [(line.description, line.amount) for line in lines] == [
        ("Late usage for 2026-11 on Starter: 1 credits counted after that period closed", 1)  # 35 - 34 cents
    ]
    assert raised == BilledRaise(6_500, 6_501, {1: 501, 2: 6_000}, None)


def test_a_period_with_no_credits_counted_since_its_close_has_no_late_usage_and_costs_no_plan_read() -> None:
    """Each close looks back at three periods for every customer: one with nothing late costs its counter
    read only, whether or not its record has billed segments (records stored before they existed have not)."""
    ledger, record = upgraded_close()
    reads = ledger.plan_reads

    assert late(ledger, UPGRADED, record) is None
    assert late(ledger, UPGRADED, record.model_copy(update={"billed_segments": {}})) is None
    assert ledger.plan_reads == reads


def test_a_refund_on_one_segment_and_as_many_late_credits_on_another_are_both_billed() -> None:
    """The period's total is what was billed, but 100 credits left Starter (refunded) and 100 came to Pro
    (late): each segment is adjusted on its own plan."""
    ledger, record = upgraded_close()
    ledger.count(PERIOD, {1: 400, 2: 6_100})

    found = late(ledger, UPGRADED, record)

    assert found is not None
    lines, raised = found
    assert [line.description for line in lines] == [
        "Refund for 2026-11 on Starter: 100 credits of failed requests, refunded after that period closed",
        "Late usage for 2026-11 on Pro: 100 credits counted after that period closed",
    ]
    # Starter: 400 credits are within its 466 included, so the 34 cents billed come back; Pro: (6,100 -
    # 5,333) x 0.5 = 383.5 -> 384 cents, of which 334 were billed
    assert [line.amount for line in lines] == [-34, 50]
    assert raised == BilledRaise(6_500, 6_500, {1: 400, 2: 6_100}, None)


def test_late_credits_already_billed_by_an_earlier_adjustment_are_not_billed_again() -> None:
    ledger, record = upgraded_close()
    adjusted = record.model_copy(update={"billed_credits": 6_600, "billed_segments": {1: 600, 2: 6_000}})
    ledger.count(PERIOD, {1: 600, 2: 7_000})  # Starter's 100 were billed by the December close

    found = late(ledger, UPGRADED, adjusted)

    assert found is not None
    lines, raised = found
    assert [(line.description, line.amount) for line in lines] == [
        ("Late usage for 2026-11 on Pro: 1,000 credits counted after that period closed", 500)
    ]
    assert raised == BilledRaise(6_600, 7_600, {1: 600, 2: 7_000}, None)


def test_a_record_without_billed_segments_counts_the_statements_segments_as_billed() -> None:
    ledger, record = upgraded_close()
    older = record.model_copy(update={"billed_segments": {}})
    ledger.count(PERIOD, {1: 600, 2: 7_000})

    found = late(ledger, UPGRADED, older)

    assert found is not None
    lines, raised = found
    assert [line.amount for line in lines] == [100, 500]  # as when the record has them: nothing billed twice
    assert raised == BilledRaise(6_500, 7_600, {1: 600, 2: 7_000}, None)


def test_late_credits_are_priced_on_the_plan_the_statement_recorded_not_on_the_history_now() -> None:
    ledger, record = upgraded_close()
    pro_v2 = make_plan(id="pro", version=2, name="Pro", base_fee=Decimal("50"), included_credits=10_000,
                       price_per_credit=Decimal("0.004"))  # fmt: skip
    ledger.plans[("pro", 2)] = pro_v2
    rewritten = make_customer(pro_v2, plan_segments=history(pro_v2))
    ledger.count(PERIOD, {1: 500, 2: 7_000})

    found = late(ledger, rewritten, record)

    assert found is not None
    lines, _ = found
    # on Pro v1, as rated: 834 - 334 = 500 cents; v2's 0.4 cents would give 667 - 267 = 400
    assert [(line.description, line.amount) for line in lines] == [
        ("Late usage for 2026-11 on Pro: 1,000 credits counted after that period closed", 500)
    ]


def test_credits_under_a_segment_the_statement_did_not_rate_are_billed_on_its_plan_none_included() -> None:
    ledger = ledger_with(STARTER, PRO)
    on_starter = make_customer(STARTER)
    ledger.count("2026-10", {1: 500})
    october = close(ledger, on_starter, "2026-10")  # one segment, on Starter: 500 credits within its 1,000
    moved = make_customer(PRO, plan_segments=history(PRO, since=datetime(2026, 11, 1, tzinfo=UTC)))
    ledger.count("2026-10", {1: 500, 2: 501})  # counted under Pro, which started when October ended

    found = late(ledger, moved, october)

    assert found is not None
    lines, raised = found
    # Pro had no time in October, so nothing of its 10,000 is included: 501 x 0.5 = 250.5 -> 251 cents
    assert [(line.description, line.amount) for line in lines] == [
        ("Late usage for 2026-10 on Pro: 501 credits counted after that period closed", 251)
    ]
    assert raised == BilledRaise(500, 1_001, {1: 500, 2: 501}, None)


# -- minimum commitments -----------------------------------------------------------------------------------
def committed_close() -> tuple[Ledger, Customer, PeriodClose]:
    """November: Starter until the 15th, then Committed ($300 a month minimum: 300 x 16/30 = $160 for its
    16 days); 10,000 credits on Committed, $100 of usage, trued up by $60."""
    ledger = ledger_with(STARTER, COMMITTED)
    customer = make_customer(COMMITTED, plan_segments=history(COMMITTED))
    ledger.count(PERIOD, {2: 10_000})
    record = close(ledger, customer)
    minimum = [line.amount for line in record.statement.lines if line.kind is LineKind.MINIMUM]
    assert minimum == [6_000]
    return ledger, customer, record


def test_late_usage_still_below_the_segments_minimum_commitment_adds_nothing() -> None:
    ledger, customer, record = committed_close()
    ledger.count(PERIOD, {2: 13_000})  # $130 of usage, still under the $160 already billed

    found = late(ledger, customer, record)

    assert found is not None
    lines, raised = found
    assert lines == []  # billed, with no line of 0.00
    assert raised == BilledRaise(10_000, 13_000, {1: 0, 2: 13_000}, None)


def test_late_usage_above_the_segments_prorated_minimum_bills_only_what_exceeds_it() -> None:
    ledger, customer, record = committed_close()
    ledger.count(PERIOD, {2: 17_000})  # $170 of usage: $10 above the $160 minimum (not $70, not $0)

    found = late(ledger, customer, record)

    assert found is not None
    lines, raised = found
    assert summary(lines) == [
        (LineKind.ADJUSTMENT,
         "Late usage for 2026-11 on Committed: 7,000 credits counted after that period closed", PERIOD, 1,
         1_000)
    ]  # fmt: skip
    assert raised == BilledRaise(10_000, 17_000, {1: 0, 2: 17_000}, None)


# -- a statement stored before plan changes existed ----------------------------------------------------------
def test_a_statement_without_segments_bills_late_usage_on_its_own_plan() -> None:
    starter_v2 = make_plan(id="starter", version=2, name="Starter", base_fee=Decimal("10"),
                           included_credits=1_000, price_per_credit=Decimal("0.02"))  # fmt: skip
    ledger = ledger_with(STARTER, starter_v2)
    statement = rate_period(STARTER, "acme", PERIOD, 900).model_copy(update={"segments": ()})
    legacy = PeriodClose(
        customer_id="acme",
        period=PERIOD,
        status=CloseStatus.RATED,
        statement=statement,
        billed_credits=900,
        created_at=NOW,
        updated_at=NOW,
    )
    now_on_v2 = make_customer(starter_v2)  # no history: one segment, on the plan it has now
    ledger.count(PERIOD, {}, credits=1_200)

    found = late(ledger, now_on_v2, legacy)

    assert found is not None
    lines, raised = found
    # on Starter v1 as billed: 1,200 - 1,000 included = 200 credits at 1 cent (v2's 2 cents would be 400)
    assert summary(lines) == [
        (LineKind.ADJUSTMENT, "Late usage for 2026-11: 300 credits counted after that period closed", PERIOD,
         1, 200)
    ]  # fmt: skip
    assert raised == BilledRaise(900, 1_200, {1: 1_200}, None)


# -- late credits too small to bill -------------------------------------------------------------------------
CHEAP = make_plan(id="starter", name="Starter", included_credits=1_000, price_per_credit=Decimal("0.001"))
CHEAPER = make_plan(id="pro", name="Pro", included_credits=10_000, price_per_credit=Decimal("0.001"))


def test_late_credits_too_small_to_bill_in_each_segment_are_carried_together_from_their_period() -> None:
    """0.1 cent a credit: November closed with 467 credits on the first segment (1 past its prorated 466
    included, 0.1 cent: carried by that close) and 5,000 on the second (within its 5,333). 2 late credits on
    the first and 3 past the second's included credits are worth 0.2 and 0.3 cents: no line, all of it
    carried, from November, for a later invoice to bill. (Against Starter's whole 1,000 included credits
    the first segment's late credits would be worth nothing.)"""
    ledger = ledger_with(CHEAP, CHEAPER)
    customer = make_customer(CHEAPER, plan_segments=history(CHEAPER))
    ledger.count(PERIOD, {1: 467, 2: 5_000})
    record = close(ledger, customer)
    ledger.count(PERIOD, {1: 469, 2: 5_336})  # 2 and 336 late, of which 2 and 3 past the included credits

    found = late(ledger, customer, record)

    assert found is not None
    lines, raised = found
    assert lines == []  # 0.2 and 0.3 cents: lines of 0 are not billed
    assert raised.carry == Carry(currency="usd", amount=Decimal("0.5"), credits=5, since=PERIOD)
    assert (raised.old, raised.new, raised.segments) == (5_467, 5_805, {1: 469, 2: 5_336})


# -- the rating functions themselves ---------------------------------------------------------------------
def test_usage_charge_and_late_usage_line_use_the_included_credits_they_are_given() -> None:
    assert usage_charge(STARTER, 600) == 0  # within Starter's 1,000
    assert usage_charge(STARTER, 600, 466) == 134
    assert usage_charge(STARTER, 600, 0) == 600
    assert usage_charge(STARTER, 600, 466, minimum=200) == 200

    line = late_usage_line(STARTER, PERIOD, 500, 100, 466, " on Starter")

    assert line is not None
    assert (line.quantity, line.amount) == (1, 100)  # 134 - 34, both on the 466 given
    assert line.description.startswith("Late usage for 2026-11 on Starter: 100 credits counted after")
