"""How far a period's close has got: the pure count behind the close watchdog and `tollgate close status`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.domain.close_progress import TERMINAL_STATES, CloseProgress, CloseState, close_progress
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Customer
from tollgate.domain.rating import rate_period

PERIOD = "2026-10"
PLAN = make_plan()
IN_OCTOBER = datetime(2026, 10, 3, tzinfo=UTC)
CLOSED_AT = datetime(2026, 11, 1, 6, tzinfo=UTC)


def customer(customer_id: str, created_at: datetime = IN_OCTOBER) -> Customer:
    return make_customer(PLAN, id=customer_id, created_at=created_at)


def record(customer_id: str, status: CloseStatus, credits: int = 1_000, **fields: Any) -> PeriodClose:
    return PeriodClose(
        customer_id=customer_id,
        period=PERIOD,
        status=status,
        statement=rate_period(PLAN, customer_id, PERIOD, credits),
        billed_credits=credits,
        created_at=CLOSED_AT,
        updated_at=CLOSED_AT,
        **fields,
    )


def test_every_state_is_counted_and_only_finalized_and_no_charge_are_terminal() -> None:
    progress = close_progress(
        PERIOD,
        [
            (customer("paid"), record("paid", CloseStatus.FINALIZED, stripe_invoice_id="in_1")),
            (customer("idle"), record("idle", CloseStatus.NO_CHARGE, credits=0)),
            (customer("rated"), record("rated", CloseStatus.RATED, attempts=3, last_error="Stripe down")),
            (customer("drafted"), record("drafted", CloseStatus.INVOICE_CREATED, stripe_invoice_id="in_2")),
            (customer("absent"), None),
        ],
    )

    assert progress.counts == {
        CloseState.MISSING: 1,
        CloseState.RATED: 1,
        CloseState.INVOICE_CREATED: 1,
        CloseState.FINALIZED: 1,
        CloseState.NO_CHARGE: 1,
    }
    assert {CloseState.FINALIZED, CloseState.NO_CHARGE} == TERMINAL_STATES
    assert (progress.customers, progress.terminal, progress.problems) == (5, 2, 3)
    assert [(s.customer_id, s.state) for s in progress.unfinished] == [
        ("absent", CloseState.MISSING),
        ("drafted", CloseState.INVOICE_CREATED),
        ("rated", CloseState.RATED),
    ]  # by customer id
    (rated,) = [s for s in progress.unfinished if s.state is CloseState.RATED]
    assert (rated.attempts, rated.last_error) == (3, "Stripe down")
    assert progress.mismatched == ()
    assert not progress.complete


def test_a_finalized_record_with_a_mismatched_total_is_a_problem() -> None:
    progress = close_progress(
        PERIOD,
        [
            (customer("ok"), record("ok", CloseStatus.FINALIZED)),
            (
                customer("skewed"),
                record("skewed", CloseStatus.FINALIZED, total_mismatch=True, stripe_invoice_id="in_9"),
            ),
        ],
    )

    assert progress.counts[CloseState.FINALIZED] == 2
    assert progress.unfinished == ()
    (mismatched,) = progress.mismatched
    assert (mismatched.customer_id, mismatched.stripe_invoice_id, mismatched.total) == ("skewed", "in_9", 42)
    assert mismatched.currency == "usd"
    assert progress.problems == 1


def test_a_done_close_is_complete() -> None:
    progress = close_progress(PERIOD, [(customer("a"), record("a", CloseStatus.FINALIZED))])
    assert progress.complete
    assert progress.problems == 0


def test_no_customers_is_complete_with_every_state_at_zero() -> None:
    progress = close_progress(PERIOD, [])
    assert progress == CloseProgress(period=PERIOD, counts=dict.fromkeys(CloseState, 0))
    assert progress.complete


@pytest.mark.parametrize(
    ("created_at", "expected"),
    [
        (datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC), CloseState.MISSING),  # could have used October
        (datetime(2026, 11, 1, tzinfo=UTC), None),  # created once October had ended: nothing to close
    ],
)
def test_a_customer_created_after_the_period_is_not_expected_without_a_record(
    created_at: datetime, expected: CloseState | None
) -> None:
    progress = close_progress(PERIOD, [(customer("new", created_at), None)])
    if expected is None:
        assert (progress.customers, progress.joined_after, progress.complete) == (0, 1, True)
    else:
        assert progress.counts[expected] == 1
        assert progress.joined_after == 0


def test_a_customer_created_after_the_period_with_a_record_counts_like_any_other() -> None:
    late = customer("new", datetime(2026, 11, 1, 2, tzinfo=UTC))
    progress = close_progress(PERIOD, [(late, record("new", CloseStatus.NO_CHARGE, credits=0))])
    assert (progress.counts[CloseState.NO_CHARGE], progress.joined_after) == (1, 0)


def test_a_record_of_another_customer_or_period_is_refused() -> None:
    with pytest.raises(ValueError, match="not b's"):
        close_progress(PERIOD, [(customer("b"), record("a", CloseStatus.FINALIZED))])
    with pytest.raises(ValueError, match="for 2026-09"):
        close_progress("2026-09", [(customer("a"), record("a", CloseStatus.FINALIZED))])


def test_the_states_follow_the_close_statuses() -> None:
    assert {state.value for state in CloseState} == {status.value for status in CloseStatus} | {"missing"}


def test_it_consumes_an_iterator_once() -> None:
    pairs = iter([(customer(f"c{i}"), None) for i in range(3)])
    assert close_progress(PERIOD, pairs).counts[CloseState.MISSING] == 3
