"""The close of a customer with the whole plan lifecycle (a mid-period upgrade, a sign-up grant and a coupon)
under the same faults as the plain close: a Stripe fault on any write, or the process dying after any Stripe
write, then a re-run. Exactly one invoice, the statement rated once (each plan segment on its plan, the grant
used once), the coupon redeemed once, and the grant's remainder right in the next period."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import make_plan
from tests.integration.test_period_close import (
    PERIOD,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tests.integration.test_period_close_faults import (
    FAULTS,
    CrashingGateway,
    CrashingLedger,
    ProcessDied,
    arm,
)
from tollgate.accounts.credit_grants import add_grant
from tollgate.accounts.discounts import attach_discount
from tollgate.accounts.plan_changes import change_plan
from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.domain.rating import LineKind
from tollgate.errors import StripeCallError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

TEAM = make_plan(id="team", name="Team", base_fee=Decimal("10"), price_per_credit=Decimal("0.01"))
SCALE = make_plan(id="scale", name="Scale", base_fee=Decimal("40"), price_per_credit=Decimal("0.005"))
UPGRADED_AT = datetime(2026, 10, 16, tzinfo=UTC)  # 15 of 31 days on Team, 16 on Scale
# Team: base 1000 x 15/31 = 483.87 -> 484; 3,000 credits, 1,000 of them free -> 2,000 x 1 cent = 2,000
# Scale: base 4000 x 16/31 = 2064.52 -> 2,065; 4,000 credits x 0.5 cents = 2,000
SUBTOTAL = 484 + 2_000 + 2_065 + 2_000
DUE = SUBTOTAL - SUBTOTAL // 4  # 25% off, once (6,549 - 1,637.25 -> 1,637 off)
WRITES = ("invoices.create", "invoices.add_lines", "invoices.update", "invoices.finalize")


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811 - the fixture above
    world = make_world(store, running_double, timeout=2.0)  # seconds: generous on a busy CI machine
    world.customer(plan=TEAM)
    store.put_plan(SCALE)
    change_plan(store, "acme", "scale", now=UPGRADED_AT, delay=UPGRADED_AT - UPGRADED_AT)
    add_grant(
        store, "acme", credits=1_000, description="sign-up bonus", now=datetime(2026, 10, 1, tzinfo=UTC)
    )
    running_double.client().v1.coupons.create(
        params={"id": "WELCOME25", "percent_off": 25, "duration": "once"}
    )
    attach_discount(store, running_double.client(), "acme", "WELCOME25", first_period=PERIOD, now=UPGRADED_AT)
    for segment, credits in ((1, 3_000), (2, 4_000)):  # as the authorizer counts them
        store.table.update_item(
            Key=tk.counter_key("acme", PERIOD, 0),
            UpdateExpression=f"ADD credits :c, requests :r, seg{segment} :c",
            ExpressionAttributeValues={":c": credits, ":r": 1},
        )
    return world


def assert_billed_once(world: World) -> None:
    record = world.record()
    (invoice,) = world.invoices("acme", PERIOD)
    assert (record.status, record.total, record.total_mismatch) == (CloseStatus.FINALIZED, SUBTOTAL, False)
    assert (invoice["id"], invoice["subtotal"], invoice["total"]) == (record.stripe_invoice_id, SUBTOTAL, DUE)
    assert len(invoice["total_discount_amounts"]) == 1
    assert [s.plan_id for s in record.statement.segments] == ["team", "scale"]
    assert list(record.statement.grants_used.values()) == [1_000]
    kinds = [line.kind for line in record.statement.lines]
    assert kinds == [
        LineKind.BASE_FEE,
        LineKind.FREE_CREDITS,
        LineKind.USAGE,
        LineKind.BASE_FEE,
        LineKind.USAGE,
    ]
    assert invoice["lines"]["total_count"] == len(kinds)


@pytest.mark.parametrize("operation", WRITES)
@pytest.mark.parametrize("kind", FAULTS)
def test_a_stripe_fault_on_any_write_then_a_rerun_bills_the_lifecycle_once(
    world: World, kind: str, operation: str
) -> None:
    arm(world.double, kind, operation)
    with pytest.raises(StripeCallError, match=operation):
        world.close()

    world.close()

    assert_billed_once(world)


@pytest.mark.parametrize(
    ("ledger_method", "gateway_method"),
    [
        ("save_new_close", None),
        (None, "create_invoice"),
        ("mark_invoice_created", None),
        (None, "add_lines"),
        (None, "apply_discount"),
        (None, "finalize"),
        ("mark_finalized", None),
    ],
)
def test_a_crash_after_any_step_then_a_rerun_bills_the_lifecycle_once(
    world: World, ledger_method: str | None, gateway_method: str | None
) -> None:
    ledger = CrashingLedger(world.ledger, ledger_method) if ledger_method else world.ledger
    gateway = CrashingGateway(world.gateway, gateway_method) if gateway_method else world.gateway
    with pytest.raises(ProcessDied):
        world.close(ledger=ledger, gateway=gateway)

    world.close()
    world.close()  # a duplicate message: nothing more

    assert_billed_once(world)
    world.count("acme", 500, "2026-11")  # the grant is spent: November's credits are all paid
    november = world.close(period="2026-11", now=datetime(2026, 12, 1, 7, tzinfo=UTC))
    assert [line.kind for line in november.statement.lines] == [LineKind.BASE_FEE, LineKind.USAGE]
    assert november.total == 4_000 + 250
