"""Progressive billing on DynamoDB Local and the Stripe double: threshold invoices during the period, a close
that bills only the rest, and every credit billed exactly once through crashes, duplicates and races."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, make_plan
from tests.integration.test_alerts import Bus
from tests.integration.test_period_close import (
    PERIOD,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tests.integration.test_period_close_faults import CrashingGateway, CrashingLedger, ProcessDied
from tests.integration.test_webhooks import SECRET, function_url_event, sign, stripe_event, webhook_handler
from tollgate.accounts.credit_grants import add_grant
from tollgate.accounts.discounts import attach_discount
from tollgate.alerts.handler import StripeThresholdBilling
from tollgate.alerts.service import CHECK_SECONDS, Accounts, InvoiceThresholds, process
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import CloseOutcome, run_threshold
from tollgate.billing.invoicing import METADATA_THRESHOLD
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import get_close, list_threshold_invoices
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import Plan, Tier
from tollgate.domain.rating import LineKind
from tollgate.errors import ConflictError, StripeCallError
from tollgate.usage_api.report import build_usage_report
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

DURING = datetime(2026, 10, 20, 9, 30, tzinfo=UTC)  # within PERIOD (2026-10)
# $10 a month with 1,000 credits included, then 1 cent a credit; usage is invoiced once $50 of it is unbilled
HYBRID = make_plan(
    id="growth",
    name="Growth",
    base_fee=Decimal("10"),
    included_credits=1_000,
    price_per_credit=Decimal("0.01"),
    invoice_threshold=Decimal("50"),
)
# graduated tiers: the first 10,000 billable credits at 1 cent, the rest at half a cent
TIERED = make_plan(
    id="tiered",
    name="Tiered",
    tiers=(
        Tier(up_to=10_000, price_per_credit=Decimal("0.01")),
        Tier(up_to=None, price_per_credit=Decimal("0.005")),
    ),
    invoice_threshold=Decimal("40"),
)


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811 - the fixture above
    return make_world(store, running_double, timeout=2.0)


def threshold(world: World, *, now: datetime = DURING, ledger: Any = None, gateway: Any = None) -> list[int]:
    """Run the threshold billing as the alert function does; the amounts of the invoices it moved."""
    outcomes = run_threshold(ledger or world.ledger, gateway or world.gateway, "acme", PERIOD, now=now)
    return [outcome.record.total for outcome in outcomes]


def parts(world: World) -> list[PeriodClose]:
    return list_threshold_invoices(world.store.table, "acme", PERIOD)


def stripe_invoices(world: World) -> dict[str, dict[str, Any]]:
    """The period's Stripe invoices by part: "0" the close's, "1", "2"... the threshold invoices."""
    found: dict[str, dict[str, Any]] = {}
    for invoice in world.invoices():
        part = invoice["metadata"].get(METADATA_THRESHOLD, "0")
        assert part not in found, f"two Stripe invoices for part {part}"
        found[part] = invoice
    return found


def period_charge_without_thresholds(world: World, plan: Plan, credits: int) -> int:
    """What one close bills the same usage without progressive billing (a twin customer)."""
    twin = plan.model_copy(update={"id": f"{plan.id}-twin", "invoice_threshold": None})
    world.customer("twin", plan=twin, credits=credits)
    return world.close("twin").total


def test_usage_is_invoiced_once_it_reaches_the_threshold_and_the_close_bills_the_rest(world: World) -> None:
    world.customer(plan=HYBRID, credits=5_000)  # 4,000 billable: $40, below $50
    assert threshold(world) == []
    assert parts(world) == []

    world.count("acme", 1_500)  # 6,500: $55 unbilled
    assert threshold(world) == [5_500]
    world.count("acme", 4_000)  # 10,500: $95, $40 of it unbilled
    assert threshold(world) == []
    world.count("acme", 1_200)  # 11,700: $107, $52 unbilled
    assert threshold(world) == [5_200]

    first, second = parts(world)
    assert [(p.part, p.status, p.billed_credits) for p in (first, second)] == [
        (1, CloseStatus.FINALIZED, 6_500),
        (2, CloseStatus.FINALIZED, 11_700),
    ]
    assert [line.kind for line in second.statement.lines] == [LineKind.THRESHOLD]
    assert "less 55.00 USD invoiced before" in second.statement.lines[0].description
    world.count("acme", 300)  # 12,000 credits in all: $10 + $110
    record = world.close()

    invoices = stripe_invoices(world)
    assert sorted(invoices) == ["0", "1", "2"]
    assert [invoices[p]["total"] for p in ("1", "2")] == [5_500, 5_200]
    assert record.total == invoices["0"]["total"] == 1_000 + 11_000 - 10_700
    earlier = record.statement.lines[-1]
    assert (earlier.kind, earlier.amount) == (LineKind.INVOICED_EARLIER, -10_700)
    assert first.stripe_invoice_id in earlier.description
    assert second.stripe_invoice_id in earlier.description
    assert record.billed_credits == 12_000
    billed = sum(invoice["total"] for invoice in invoices.values())
    assert billed == period_charge_without_thresholds(world, HYBRID, 12_000) == 12_000


def test_what_stripe_is_sent_for_a_threshold_invoice(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)

    threshold(world)

    create = world.double.calls_to("invoices.create")[0]
    assert create.idempotency_key == "tollgate:acme:2026-10#t1:create-invoice"
    assert create.params["metadata"] == {
        "tollgate_customer_id": "acme",
        "tollgate_period": "2026-10",
        METADATA_THRESHOLD: "1",
    }
    assert create.params["description"] == "Growth: API usage for 2026-10 so far (threshold invoice 1)"
    keys = [
        call.idempotency_key
        for call in world.double.calls
        if call.idempotency_key and call.idempotency_key.startswith("tollgate:")
    ]
    assert keys == [
        f"tollgate:acme:2026-10#t1:{step}" for step in ("create-invoice", "add-lines", "finalize")
    ]
    (line,) = world.double.calls_to("invoices.add_lines")[0].params["lines"]
    assert line["price_data"]["unit_amount_decimal"] == "6000"
    assert line["description"].startswith("API usage for 2026-10 up to Oct 20 09:30 UTC: 7,000 credits")


def test_the_run_that_stores_a_threshold_invoice_creates_it_without_searching_stripe_first(
    world: World,
) -> None:
    """No invoice can predate the record this run has just stored: the search (Stripe's slowest call, and
    rate-limited) is skipped; a run that finds the record stored before searches first (the crash tests
    below)."""
    world.customer(plan=HYBRID, credits=7_000)

    assert threshold(world) == [6_000]

    operations = [call.operation for call in world.double.calls if call.operation.startswith("invoices.")]
    assert operations[0] == "invoices.create"
    assert "invoices.search" not in operations


def test_the_close_takes_the_threshold_invoices_off_in_a_negative_line_stripe_does_not_discount(
    world: World,
) -> None:
    world.customer(plan=HYBRID, credits=9_000)
    threshold(world)  # $80
    world.count("acme", 1_000)  # $90 in all

    world.close()

    add = world.double.calls_to("invoices.add_lines")[-1]
    negative = add.params["lines"][-1]
    assert negative["amount"] == "-8000"
    assert negative["discountable"] == "false"
    assert "price_data" not in negative


def test_tiers_and_free_credits_are_rated_as_the_close_rates_them(world: World) -> None:
    world.customer(plan=TIERED, credits=3_000)
    add_grant(world.store, "acme", credits=1_000, description="welcome", now=DURING - timedelta(days=10))
    world.count("acme", 2_500)  # 5,500: 4,500 paid at 1 cent = $45
    assert threshold(world) == [4_500]
    world.count("acme", 9_000)  # 14,500: 9,000 at 1c + 4,500 at 0.5c = $112.50, $67.50 unbilled
    assert threshold(world) == [6_750]

    record = world.close()

    billed = sum(invoice["total"] for invoice in stripe_invoices(world).values())
    assert record.statement.grants_used  # the close records the grant's use, the threshold invoices do not
    assert all(not part.statement.grants_used for part in parts(world))
    assert record.total == 0  # the threshold invoices billed everything
    assert billed == 11_250


@pytest.mark.parametrize(
    "increments",
    [
        pytest.param((7_000,), id="one-threshold-invoice"),
        pytest.param((6_001, 5_000, 5_000, 5_000, 3), id="several"),
        pytest.param((500, 500, 200), id="never-reached"),
        pytest.param((60_000, 1), id="one-big-jump"),
    ],
)
def test_all_of_a_periods_invoices_together_bill_what_one_close_would(
    world: World, increments: tuple[int, ...]
) -> None:
    world.customer(plan=HYBRID)
    for credits in increments:
        world.count("acme", credits)
        threshold(world)

    world.close()

    billed = sum(invoice["total"] for invoice in stripe_invoices(world).values())
    assert billed == period_charge_without_thresholds(world, HYBRID, sum(increments))


# -- crashes, duplicates and races ----------------------------------------------------------------------
CRASHES = {
    "before-storing-the-record": ("save_threshold_invoice", None),
    "after-storing-before-stripe": (None, "create_invoice-before"),
    "after-create-before-saving-the-invoice-id": ("mark_invoice_created", None),
    "after-add-lines": (None, "add_lines"),
    "after-finalize-before-saving-it": ("mark_finalized", None),
}


def crashing(world: World, where: str) -> tuple[Any, Any]:
    ledger_method, gateway_method = CRASHES[where]
    ledger = CrashingLedger(world.ledger, ledger_method) if ledger_method else world.ledger
    gateway = world.gateway
    if gateway_method:
        name, _, before = gateway_method.partition("-")
        gateway = CrashingGateway(world.gateway, name, before=before == "before")
    return ledger, gateway


@pytest.mark.parametrize("where", CRASHES)
def test_a_crash_at_any_step_of_a_threshold_invoice_then_the_next_check_bills_it_once(
    world: World, where: str
) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    ledger, gateway = crashing(world, where)
    with pytest.raises(ProcessDied):
        threshold(world, ledger=ledger, gateway=gateway)

    threshold(world, now=DURING + timedelta(minutes=1))
    threshold(world, now=DURING + timedelta(minutes=2))  # a duplicate: nothing more

    (part,) = parts(world)
    invoices = stripe_invoices(world)
    assert sorted(invoices) == ["1"]
    assert (part.status, part.total, part.stripe_invoice_id) == (
        CloseStatus.FINALIZED,
        6_000,
        invoices["1"]["id"],
    )
    assert invoices["1"]["total"] == 6_000
    assert invoices["1"]["status"] == "open"
    assert invoices["1"]["lines"]["total_count"] == 1


@pytest.mark.parametrize("where", [w for w in CRASHES if w != "before-storing-the-record"])
def test_a_threshold_invoice_a_crash_left_unfinished_is_finished_by_the_close_before_it_rates(
    world: World, where: str
) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    ledger, gateway = crashing(world, where)
    with pytest.raises(ProcessDied):
        threshold(world, ledger=ledger, gateway=gateway)
    world.count("acme", 1_000)

    record = world.close()

    invoices = stripe_invoices(world)
    assert sorted(invoices) == ["0", "1"]
    assert invoices["1"]["total"] == 6_000
    assert record.total == invoices["0"]["total"] == 1_000 + 7_000 - 6_000
    assert sum(invoice["total"] for invoice in invoices.values()) == 8_000


def test_a_threshold_invoice_that_fails_at_stripe_records_the_failure_on_its_own_record(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    world.double.faults.fail_before_write("invoices.create", status=500)

    with pytest.raises(StripeCallError):
        threshold(world)

    (part,) = parts(world)
    assert (part.part, part.status, part.attempts) == (1, CloseStatus.RATED, 1)
    assert part.last_error is not None
    assert part.last_error.startswith("StripeCallError"), part.last_error
    assert get_close(world.store.table, "acme", PERIOD) is None  # the period's close record: none yet
    assert threshold(world, now=DURING + timedelta(minutes=1)) == [6_000]  # the next check invoices it


class MovedUnderneath:
    """The ledger, but its first ``mark_invoice_created`` answers as if another run had moved the record
    first (the move applied, the answer a conflict): the run must read its record again and carry on."""

    def __init__(self, ledger: DynamoLedger) -> None:
        self._ledger, self.conflicts = ledger, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ledger, name)

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        moved = self._ledger.mark_invoice_created(record, invoice_id, now)
        if self.conflicts == 0:
            self.conflicts += 1
            raise ConflictError("another run moved it")
        return moved


def test_a_threshold_invoice_that_loses_a_race_reads_its_own_record_again(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    ledger = MovedUnderneath(world.ledger)

    assert threshold(world, ledger=ledger) == [6_000]

    assert ledger.conflicts == 1
    (part,) = parts(world)
    assert (part.status, part.total) == (CloseStatus.FINALIZED, 6_000)
    assert sorted(stripe_invoices(world)) == ["1"]


def test_the_outcomes_say_which_threshold_invoice_this_run_stored(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    ledger, gateway = crashing(world, "after-add-lines")
    with pytest.raises(ProcessDied):
        threshold(world, ledger=ledger, gateway=gateway)  # stored, then died: left unfinished
    world.count("acme", 5_000)  # a second one is due too

    outcomes = run_threshold(world.ledger, world.gateway, "acme", PERIOD, now=DURING + timedelta(minutes=1))

    assert [(o.record.part, o.rated_now, o.finalized_now) for o in outcomes] == [
        (1, False, True),
        (2, True, True),
    ]


def test_concurrent_checks_store_one_threshold_invoice(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def check() -> None:
        barrier.wait()
        try:
            run_threshold(DynamoLedger(world.store), world.gateway, "acme", PERIOD, now=DURING)
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=check) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert [(part.part, part.status) for part in parts(world)] == [(1, CloseStatus.FINALIZED)]
    assert [invoice["total"] for invoice in stripe_invoices(world).values()] == [6_000]


def test_no_threshold_invoice_once_the_period_has_ended_or_its_close_is_rated(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    assert threshold(world, now=datetime(2026, 11, 1, tzinfo=UTC)) == []  # the close bills it

    world.close()
    ctx = steps.CloseContext(world.ledger, world.gateway, "acme", PERIOD, DURING)
    assert steps.next_threshold_invoice(ctx, []) is None  # the close record's existence refuses it
    assert parts(world) == []


class InterleavingLedger:
    """The real ledger, except that ``save_new_close`` first lets ``competitor`` run (once)."""

    def __init__(self, inner: DynamoLedger, competitor: Callable[[], object]) -> None:
        self._inner, self._competitor = inner, competitor
        self.saves = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def save_new_close(
        self, record: PeriodClose, raised: dict[str, Any], threshold_invoices: int = 0
    ) -> None:
        self.saves += 1
        if self.saves == 1:
            self._competitor()
        self._inner.save_new_close(record, raised, threshold_invoices)


def test_a_threshold_invoice_stored_while_the_close_rates_is_taken_off_too(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    late_check: list[CloseOutcome] = []
    last_minute = datetime(2026, 10, 31, 23, 59, tzinfo=UTC)
    ledger = InterleavingLedger(
        world.ledger,
        lambda: late_check.extend(
            run_threshold(world.ledger, world.gateway, "acme", PERIOD, now=last_minute)
        ),
    )

    # the close read no threshold invoice, then one was stored (and invoiced) before the close's write:
    # the write is refused, and the close rates again with it
    record = world.close(ledger=ledger)

    assert ledger.saves == 2
    assert [outcome.record.total for outcome in late_check] == [6_000]
    assert record.total == 1_000 + 6_000 - 6_000
    assert sum(invoice["total"] for invoice in stripe_invoices(world).values()) == 7_000


def test_a_threshold_invoice_stored_while_the_close_rates_makes_the_close_rate_again(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    ctx = steps.CloseContext(world.ledger, world.gateway, "acme", PERIOD, DURING)
    stored_meanwhile = steps.next_threshold_invoice(ctx, [])
    assert stored_meanwhile is not None
    rating = steps.rate(
        steps.CloseContext(world.ledger, world.gateway, "acme", PERIOD, datetime(2026, 11, 1, 6, tzinfo=UTC)),
        [],
        [],
    )

    with pytest.raises(Exception, match="threshold invoice"):
        world.ledger.save_new_close(rating.record, {}, 0)  # it saw none: refused

    assert get_close(world.store.table, "acme", PERIOD) is None


# -- the customer's money ------------------------------------------------------------------------------
def test_a_coupon_takes_its_share_off_the_whole_period_on_the_close(world: World) -> None:
    world.customer(plan=HYBRID, credits=9_000)
    world.double.client().v1.coupons.create(params={"id": "TEN", "percent_off": 10, "duration": "forever"})
    attach_discount(world.store, world.double.client(), "acme", "TEN", first_period=PERIOD, now=DURING)
    threshold(world)  # $80, no coupon on it
    world.count("acme", 2_000)  # $10 + $100 in all

    world.close()

    invoices = stripe_invoices(world)
    assert invoices["1"]["total"] == 8_000
    assert invoices["1"]["discounts"] == []
    assert invoices["0"]["subtotal"] == 11_000 - 8_000
    assert invoices["0"]["total"] == 11_000 - 8_000 - 1_100  # 10% of the period's $110
    assert invoices["1"]["total"] + invoices["0"]["total"] == 9_900


def test_a_grant_after_a_threshold_invoice_credits_the_difference_to_the_stripe_balance(world: World) -> None:
    world.customer(plan=HYBRID, credits=9_000)
    threshold(world)  # $80 for 8,000 billable credits
    add_grant(world.store, "acme", credits=5_000, description="apology", now=DURING)

    record = world.close()  # $10 + $30 (3,000 paid credits) - $80

    assert record.total == -4_000
    assert record.status is CloseStatus.FINALIZED
    invoice = stripe_invoices(world)["0"]
    assert (invoice["total"], invoice["amount_due"], invoice["status"]) == (-4_000, 0, "paid")
    stripe_customer = world.double.client().v1.customers.retrieve(str(invoice["customer"]))
    assert stripe_customer.balance == -4_000  # Stripe applies it to the next invoice


# -- Stripe's events ---------------------------------------------------------------------------------------
def test_stripe_events_for_a_threshold_invoice_move_its_own_record(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    world.customer(plan=HYBRID, credits=7_000)
    threshold(world)
    (part,) = parts(world)
    handler = webhook_handler(world.store, [DURING + timedelta(hours=1)])
    invoice = world.double.invoices[str(part.stripe_invoice_id)]

    def deliver(event_type: str, status: str) -> dict[str, Any]:
        body = json.dumps(stripe_event(event_type, {**invoice, "status": status}))
        return handler(function_url_event(body, {"Stripe-Signature": sign(body)}), CONTEXT)

    failed = deliver("invoice.payment_failed", "open")
    paid = deliver("invoice.paid", "paid")

    assert (failed["statusCode"], paid["statusCode"]) == (200, 200)
    moved = get_close(world.store.table, "acme", PERIOD, 1)
    assert moved is not None
    assert moved.invoice_status == "paid"
    assert get_close(world.store.table, "acme", PERIOD) is None  # the close's record is not touched
    dunning = [
        item
        for item in world.store.table.scan()["Items"]
        if str(item["sk"]).startswith("DUNNING#") and item.get("invoice_id") == part.stripe_invoice_id
    ]
    assert len(dunning) == 1  # the failure was recorded for the threshold invoice, then resolved


def test_the_cli_shows_a_periods_threshold_invoices_before_and_after_its_close(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    threshold(world)
    (part,) = parts(world)
    runner = CliRunner()

    def show() -> str:
        context = AppContext(clock=lambda: DURING, _store=world.store, _stripe=world.double.client())
        result = runner.invoke(app, ["invoices", "show", "acme", PERIOD], obj=context, env={"COLUMNS": "250"})
        assert result.exit_code == 0, result.output
        return result.output

    during = show()
    assert "acme 2026-10 is not closed yet" in during
    assert str(part.stripe_invoice_id) in during
    assert "60.00 USD" in during
    world.close()
    after = show()
    assert "API usage for 2026-10 invoiced during the period" in after
    assert "-60.00 USD" in after


def test_the_alert_function_invoices_a_counter_change_that_reaches_the_threshold(world: World) -> None:
    world.customer(plan=HYBRID, credits=3_000)
    key = tk.counter_key("acme", PERIOD, 0)
    billing = StripeThresholdBilling.over(world.store, world.gateway)
    clock = [0.0]
    thresholds = InvoiceThresholds(billing, clock=lambda: clock[0])
    accounts = Accounts(world.store)

    def counted(credits: int) -> None:
        old = world.store.table.get_item(Key=key, ConsistentRead=True)["Item"]
        world.count("acme", credits)
        new = world.store.table.get_item(Key=key, ConsistentRead=True)["Item"]
        process(world.store, Bus(), old, new, DURING, DURING, accounts, None, thresholds)

    counted(2_000)  # 5,000 credits: $10 + $40, which could be $50 of usage: checked, $40 is not due
    counted(1_500)  # 6,500: $55 of usage, but checked less than 30 s ago
    assert parts(world) == []
    clock[0] += CHECK_SECONDS
    counted(1)  # 6,501
    (part,) = parts(world)
    assert (part.status, part.total, part.billed_credits) == (CloseStatus.FINALIZED, 5_501, 6_501)
    assert [invoice["total"] for invoice in stripe_invoices(world).values()] == [5_501]


def test_the_customers_usage_report_lists_the_periods_threshold_invoices(world: World) -> None:
    world.customer(plan=HYBRID, credits=7_000)
    threshold(world)
    (part,) = parts(world)

    report = build_usage_report(world.store, "acme", now=DURING + timedelta(hours=1))

    (early,) = report.threshold_invoices
    assert (early.invoice_id, early.hosted_invoice_url) == (part.stripe_invoice_id, part.hosted_invoice_url)
    assert early.total.amount == 6_000
    assert report.estimated_charge.amount == 1_000 + 6_000  # the whole period's, as the close will rate it
    assert report.recent_invoices == []
