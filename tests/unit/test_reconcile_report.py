"""The reconciliation's rules as pure functions: which difference is explained by what, and which is
flagged; unexplained is non-zero only for a real discrepancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tollgate.billing.close import steps
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.rating import LineKind, Statement, StatementLine
from tollgate.ledger.queries import CustomerLedger
from tollgate.ledger.report import (
    LATE_USAGE_LOOKBACK,
    CustomerFacts,
    Reason,
    reconcile,
    reconcile_customer,
)

PERIOD = "2026-10"
END = datetime(2026, 11, 1, tzinfo=UTC)
LONG_AFTER = datetime(2027, 6, 1, tzinfo=UTC)
LATER = ("2026-11", "2026-12", "2027-01", "2027-02")


def record(
    period: str = PERIOD,
    billed: int = 100,
    *,
    prepaid: bool = False,
    adjusted: dict[str, int] | None = None,
    part: int = 0,
    status: CloseStatus = CloseStatus.FINALIZED,
) -> PeriodClose:
    kind = LineKind.PREPAID if prepaid else LineKind.USAGE
    line = StatementLine(
        kind=kind,
        description="API usage",
        period=period,
        quantity=billed,
        unit_amount=0 if prepaid else 1,
        amount=0,
    )
    statement = Statement(
        customer_id="acme",
        period=period,
        plan_id="payg",
        plan_version=1,
        currency="usd",
        credits=billed,
        included_credits=0,
        lines=(line,) if billed else (),
    )
    return PeriodClose(
        customer_id="acme",
        period=period,
        part=part,
        status=status,
        statement=statement,
        billed_credits=billed,
        adjusted_periods=adjusted or {},
        created_at=END,
        updated_at=END,
    )


def facts(
    counters: int,
    ledger: int,
    close: PeriodClose | None,
    *,
    later: tuple[PeriodClose, ...] = (),
    uncertain: int = 0,
    requests: tuple[int, int] | None = None,
    **extra: object,
) -> CustomerFacts:
    counted, logged = requests if requests is not None else (counters, ledger)
    return CustomerFacts(
        customer_id="acme",
        counter_credits=counters,
        counter_requests=counted,
        ledger=CustomerLedger(
            "acme",
            requests=logged,
            metered_requests=logged,
            metered_credits=ledger,
            uncertain_requests=1 if uncertain else 0,
            uncertain_credits=uncertain,
        ),
        close=close,
        later_closes=later,
        **extra,  # type: ignore[arg-type]
    )


def later_closes(count: int) -> tuple[PeriodClose, ...]:
    return tuple(record(period, 0) for period in LATER[:count])


def reasons(row: object) -> list[tuple[str, int, bool]]:
    return [(str(d.reason), d.credits, d.explained) for d in row.differences]  # type: ignore[attr-defined]


def test_the_lookback_is_the_close_s_own() -> None:
    assert steps.LATE_USAGE_LOOKBACK == LATE_USAGE_LOOKBACK


def test_all_equal_is_ok() -> None:
    row = reconcile_customer(PERIOD, facts(100, 100, record(billed=100)), now=LONG_AFTER)

    assert (row.status, row.differences, row.unexplained) == ("ok", (), 0)
    assert (row.counters, row.ledger, row.invoiced) == (100, 100, 100)


def test_an_open_period_a_ledger_in_flight_and_no_close() -> None:
    now = datetime(2026, 10, 20, tzinfo=UTC)
    row = reconcile_customer(PERIOD, facts(100, 90, None), now=now)

    assert reasons(row) == [("ledger_in_flight", 10, True), ("period_open", 100, True)]
    assert (row.status, row.invoiced, row.unexplained) == ("explained", None, 0)


def test_the_ledger_is_late_only_within_the_delivery_delay() -> None:
    within = reconcile_customer(PERIOD, facts(100, 99, record()), now=END + timedelta(minutes=29))
    after = reconcile_customer(PERIOD, facts(100, 99, record()), now=END + timedelta(minutes=31))

    assert reasons(within) == [("ledger_in_flight", 1, True)]
    assert reasons(after) == [("counters_without_ledger", 1, False)]
    assert (after.status, after.unexplained) == ("flagged", 1)


def test_the_ledger_ahead_of_the_counters_is_always_flagged() -> None:
    row = reconcile_customer(PERIOD, facts(99, 100, None), now=datetime(2026, 10, 20, tzinfo=UTC))

    assert ("ledger_without_counters", -1, False) in reasons(row)
    assert row.unexplained == 1


def test_a_counter_write_of_unknown_outcome_explains_up_to_its_credits() -> None:
    exact = reconcile_customer(
        PERIOD, facts(125, 100, record(billed=125), uncertain=25, requests=(4, 3)), now=LONG_AFTER
    )
    beyond = reconcile_customer(
        PERIOD, facts(126, 100, record(billed=126), uncertain=25, requests=(5, 3)), now=LONG_AFTER
    )

    assert reasons(exact) == [("outcome_unknown", 25, True)]
    assert reasons(beyond) == [("outcome_unknown", 25, True), ("counters_without_ledger", 1, False)]
    assert (beyond.unexplained, beyond.unexplained_requests) == (1, 1)


def test_late_usage_is_pending_while_a_close_can_bill_it() -> None:
    now = datetime(2026, 11, 1, 8, tzinfo=UTC)
    row = reconcile_customer(PERIOD, facts(112, 112, record(billed=100)), now=now)

    assert reasons(row) == [("late_usage_pending", 12, True)]
    assert "close of 2026-11 bills it" in row.differences[0].detail
    two_later = reconcile_customer(
        PERIOD, facts(112, 112, record(billed=100), later=later_closes(2)), now=now
    )
    assert reasons(two_later) == [("late_usage_pending", 12, True)]


def test_late_usage_no_close_can_reach_is_flagged() -> None:
    row = reconcile_customer(
        PERIOD, facts(112, 112, record(billed=100), later=later_closes(3)), now=LONG_AFTER
    )

    assert reasons(row) == [("late_usage_unbilled", 12, False)]


def test_late_usage_billed_by_the_next_close_is_invoiced() -> None:
    next_close = record("2026-11", 50, adjusted={PERIOD: 12})
    row = reconcile_customer(PERIOD, facts(112, 112, record(billed=112), later=(next_close,)), now=LONG_AFTER)

    assert (row.status, row.invoiced, dict(row.late_billed)) == ("ok", 112, {"2026-11": 12})
    assert any("12 on 2026-11's invoice" in note for note in row.notes)


def test_invoiced_more_than_counted_is_flagged() -> None:
    row = reconcile_customer(PERIOD, facts(90, 90, record(billed=100)), now=LONG_AFTER)

    assert reasons(row) == [("invoiced_more_than_counted", -10, False)]


def test_not_closed_after_the_end_with_threshold_invoices() -> None:
    parts = (record(billed=40, part=1), record(billed=80, part=2))
    row = reconcile_customer(
        PERIOD, facts(100, 100, None, threshold_invoices=parts), now=END + timedelta(hours=2)
    )

    assert reasons(row) == [("not_closed", 100, True)]
    assert row.invoiced_early == 80
    assert "80 credits invoiced early" in row.differences[0].detail


def test_threshold_invoices_are_part_of_the_close_s_billed_credits() -> None:
    row = reconcile_customer(PERIOD, facts(100, 100, record(billed=100)), now=LONG_AFTER)

    assert row.status == "ok"


def test_prepaid_invoiced_is_the_prepaid_line_plus_late_credits_taken_over() -> None:
    closed = record(billed=100, prepaid=True)
    next_close = record("2026-11", 5, prepaid=True, adjusted={PERIOD: 3})
    row = reconcile_customer(PERIOD, facts(103, 103, closed, later=(next_close,)), now=LONG_AFTER)

    assert (row.prepaid, row.invoiced, row.status) == (True, 103, "ok")


def test_prepaid_counters_dropped_by_the_wallet_compare_the_ledger_with_invoiced() -> None:
    closed = record(billed=100, prepaid=True)
    later = tuple(record(period, 0, prepaid=True) for period in LATER)  # 2027-02: the wallet dropped 2026-10
    fine = reconcile_customer(PERIOD, facts(0, 100, closed, later=later, requests=(0, 4)), now=LONG_AFTER)
    short = reconcile_customer(PERIOD, facts(0, 99, closed, later=later, requests=(0, 4)), now=LONG_AFTER)

    assert (fine.counters, fine.status) == (None, "ok")
    assert reasons(short) == [("ledger_not_invoiced", -1, False)]
    # three later closes only: the counters are still there, so zero counters are a real difference
    kept = reconcile_customer(PERIOD, facts(0, 100, closed, later=later[:3]), now=LONG_AFTER)
    assert kept.flagged


def test_unknown_customers_conflicts_and_anonymous_refusals() -> None:
    report = reconcile(
        PERIOD,
        [
            facts(10, 10, record(billed=10)),
            CustomerFacts("ghost", known=False, ledger=CustomerLedger("ghost", 1, 1, 25)),
            CustomerFacts("-", known=False, ledger=CustomerLedger("-", requests=7, refused_requests=7)),
            CustomerFacts(
                "beta",
                counter_credits=5,
                counter_requests=2,
                ledger=CustomerLedger(
                    "beta", requests=2, metered_requests=2, metered_credits=5, conflicting_requests=1
                ),
                close=record(billed=5),
            ),
        ],
        now=LONG_AFTER,
    )

    by_customer = {row.customer_id: row for row in report.rows}
    assert sorted(by_customer) == ["acme", "beta", "ghost"]
    assert reasons(by_customer["ghost"]) == [("unknown_customer", 25, False)]
    assert reasons(by_customer["beta"]) == [("conflicting_records", 0, False)]
    assert [row.customer_id for row in report.flagged] == ["beta", "ghost"]
    assert (report.anonymous_refused, report.ok, report.unexplained) == (7, False, 25)
    assert report.as_dict()["flaggedCustomers"] == ["beta", "ghost"]


credits = st.integers(min_value=0, max_value=10**9)


@given(counters=credits, ledger=credits, invoiced=credits)
def test_long_after_the_close_only_equal_numbers_pass(counters: int, ledger: int, invoiced: int) -> None:
    row = reconcile_customer(
        PERIOD, facts(counters, ledger, record(billed=invoiced), later=later_closes(3)), now=LONG_AFTER
    )

    assert row.flagged == (not counters == ledger == invoiced)
    assert row.unexplained == abs(counters - ledger) + abs(counters - invoiced)


@given(counters=credits, shortfall=credits, late=credits, minutes=st.integers(min_value=0, max_value=29))
def test_what_the_rules_explain_is_never_flagged(
    counters: int, shortfall: int, late: int, minutes: int
) -> None:
    """Within the delivery delay a short ledger, and before the next closes late usage, are explained."""
    ledger = max(0, counters - shortfall)
    row = reconcile_customer(
        PERIOD,
        facts(counters + late, ledger + late, record(billed=counters), requests=(1, 1)),
        now=END + timedelta(minutes=minutes),
    )

    assert not row.flagged
    assert row.unexplained == 0
    assert {d.reason for d in row.differences} <= {Reason.LEDGER_IN_FLIGHT, Reason.LATE_USAGE_PENDING}
