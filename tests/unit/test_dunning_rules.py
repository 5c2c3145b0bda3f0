"""Dunning's rules as pure decisions: facts in, effects out (no table involved)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from tests.conftest import make_customer, make_plan
from tollgate.domain.dunning import (
    PAYMENT_FAILED,
    ChangeStatus,
    EndFailure,
    FailureState,
    InvoiceRef,
    MarkSuspended,
    PaymentFailure,
    RecordFailure,
    on_manual_resume,
    on_payment_failed,
    on_payment_settled,
    on_sweep,
)
from tollgate.domain.models import Customer, CustomerStatus

FAILED_AT = datetime(2026, 11, 2, tzinfo=UTC)
GRACE = timedelta(days=7)
INVOICE = InvoiceRef("in_1", "acme", "2026-10", "https://pay.test/in_1")


def failure(invoice_id: str = "in_1", **fields: Any) -> PaymentFailure:
    return PaymentFailure(
        customer_id="acme",
        invoice_id=invoice_id,
        hosted_invoice_url=f"https://pay.test/{invoice_id}",
        first_failed_at=fields.pop("first_failed_at", FAILED_AT),
        last_failed_at=FAILED_AT,
        **fields,
    )


def customer(**fields: Any) -> Customer:
    return make_customer(make_plan(), **fields)


def test_a_failed_payment_is_recorded_unless_it_was_settled_or_waived_already() -> None:
    assert on_payment_failed(None, INVOICE, at=FAILED_AT) == [RecordFailure(INVOICE, FAILED_AT)]
    assert on_payment_failed(failure(), INVOICE, at=FAILED_AT) == [RecordFailure(INVOICE, FAILED_AT)]
    assert on_payment_failed(failure(state=FailureState.RESOLVED), INVOICE, at=FAILED_AT) == []


def test_the_sweep_suspends_an_active_customer_for_the_oldest_overdue_failure_only_after_the_grace() -> None:
    older = failure("in_0", first_failed_at=FAILED_AT - timedelta(days=3))
    now = FAILED_AT + GRACE

    effects = on_sweep(customer(), [older, failure()], now=now, grace=GRACE)

    change, mark = effects
    assert isinstance(change, ChangeStatus)
    assert (change.status, change.reason, change.pay_url) == (
        CustomerStatus.SUSPENDED,
        PAYMENT_FAILED,
        "https://pay.test/in_0",
    )
    assert mark == MarkSuspended(older, now)
    assert on_sweep(customer(), [failure()], now=now - timedelta(seconds=1), grace=GRACE) == []
    assert on_sweep(customer(status="suspended"), [failure()], now=now, grace=GRACE) == []


def test_a_payment_lifts_only_a_payment_failed_suspension() -> None:
    suspended = customer(status="suspended", status_reason=PAYMENT_FAILED, pay_url="https://pay.test/in_1")
    manual = customer(status="suspended", status_reason="manual")
    settle = {
        "resolution": "paid",
        "at": FAILED_AT + GRACE,
        "now": FAILED_AT + GRACE,
        "grace": GRACE,
        "event_id": "evt",
        "cause": "invoice.paid",
    }

    lifted = on_payment_settled(suspended, [failure()], INVOICE, **settle)
    kept = on_payment_settled(manual, [failure()], INVOICE, **settle)

    resolved, restored = lifted
    assert isinstance(resolved, EndFailure)
    assert resolved.state is FailureState.RESOLVED
    assert isinstance(restored, ChangeStatus)
    assert restored.status is CustomerStatus.ACTIVE
    assert [type(effect) for effect in kept] == [EndFailure]


def test_resuming_by_hand_waives_the_open_failures_only() -> None:
    waivers = on_manual_resume([failure(), failure("in_2", state=FailureState.RESOLVED)], now=FAILED_AT)
    assert [(w.failure.invoice_id, w.state) for w in waivers] == [("in_1", FailureState.WAIVED)]
