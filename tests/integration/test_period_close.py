"""The period close end to end: DynamoDB Local + the Stripe double, through the real stripe-python client.

Worked amounts, zero charge, a customer with no Stripe customer, refusing an open period, the whole-period
run, and late usage billed exactly once. Faults and crashes: ``test_period_close_faults.py``; the Lambda
handlers: ``test_period_close_handlers.py``. The helpers here are shared with both.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.conftest import NOW, make_customer, make_plan
from tollgate.accounts.plan_changes import change_plan
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer, close_period
from tollgate.billing.close.summary import CustomerClose
from tollgate.billing.invoicing import METADATA_CUSTOMER, METADATA_PERIOD, StripeClientInvoicing
from tollgate.dal import closes
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import closes_of_period, get_close
from tollgate.dal.store import TollgateStore
from tollgate.domain.close_progress import close_progress
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.models import CollectionMethod, Customer, Plan, Tier
from tollgate.domain.periods import period_end, period_start
from tollgate.domain.rating import LineKind
from tollgate.errors import (
    AlreadyExistsError,
    ConflictError,
    MissingStripeCustomerError,
    NotFoundError,
    PeriodNotEndedError,
)
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

PERIOD = "2026-10"
CLOSE_AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)  # the schedule: 06:00 UTC on the 1st
WRITES = ("invoices.create", "invoices.add_lines", "invoices.finalize")

PAYG = make_plan()
HYBRID = make_plan(
    id="team",
    name="Team",
    base_fee=Decimal("49"),
    included_credits=100_000,
    price_per_credit=Decimal("0.0005"),
)
YEN = make_plan(
    id="yen", name="Yen", currency="jpy", base_fee=Decimal("1000"), price_per_credit=Decimal("0.05")
)
TIERED = make_plan(
    id="tiered",
    name="Tiered",
    tiers=(
        Tier(up_to=1_000, price_per_credit=Decimal("0.001")),
        Tier(up_to=10_000, price_per_credit=Decimal("0.0005")),
        Tier(up_to=None, price_per_credit=Decimal("0.0001")),
    ),
)


def close_time(period: str) -> datetime:
    return period_end(period).replace(hour=6)


@dataclass
class World:
    """A Tollgate table (DynamoDB Local) and a Stripe account (the double), the real ledger and gateway."""

    store: TollgateStore
    double: StripeDouble
    ledger: DynamoLedger
    gateway: StripeClientInvoicing
    plans: set[tuple[str, int]] = field(default_factory=set)

    def customer(
        self,
        customer_id: str = "acme",
        plan: Plan = PAYG,
        *,
        credits: int = 0,
        period: str = PERIOD,
        linked: bool = True,
        shards: int = 1,
    ) -> Customer:
        if (plan.id, plan.version) not in self.plans:
            self.store.put_plan(plan)
            self.plans.add((plan.id, plan.version))
        stripe_id = self.stripe_customer(customer_id) if linked else None
        customer = self.store.put_customer(
            make_customer(
                plan,
                id=customer_id,
                email=f"billing@{customer_id}.test",
                stripe_customer_id=stripe_id,
                counter_shards=shards,
            )
        )
        if credits:
            self.count(customer_id, credits, period)
        return customer

    def stripe_customer(self, customer_id: str) -> str:
        created = self.double.client().v1.customers.create(
            params={
                "name": customer_id,
                "email": f"billing@{customer_id}.test",
                # explicit: the double's random prefix is refused by its own check when it is all digits
                "invoice_prefix": "TG" + uuid.uuid4().hex[:8].upper(),
            }
        )
        return str(created.id)

    def count(self, customer_id: str, credits: int, period: str = PERIOD, shard: int = 0) -> None:
        """Usage as the authorizer counts it: an atomic ADD on a counter shard."""
        self.store.table.update_item(
            Key=tk.counter_key(customer_id, period, shard),
            UpdateExpression="ADD credits :c, requests :r",
            ExpressionAttributeValues={":c": credits, ":r": 1},
        )

    def close(
        self,
        customer_id: str = "acme",
        period: str = PERIOD,
        *,
        now: datetime | None = None,
        ledger: Any = None,
        gateway: Any = None,
    ) -> PeriodClose:
        return close_customer(
            ledger or self.ledger,
            gateway or self.gateway,
            customer_id,
            period,
            now=now or close_time(period),
        )

    def record(self, customer_id: str = "acme", period: str = PERIOD) -> PeriodClose:
        record = get_close(self.store.table, customer_id, period)
        assert record is not None
        return record

    def invoices(self, customer_id: str = "acme", period: str = PERIOD) -> list[dict[str, Any]]:
        return [
            invoice
            for invoice in self.double.invoices.values()
            if invoice["metadata"].get(METADATA_CUSTOMER) == customer_id
            and invoice["metadata"].get(METADATA_PERIOD) == period
        ]

    def stripe_operations(self) -> Counter[str]:
        return Counter(call.operation for call in self.double.calls if call.operation.startswith("invoices."))

    def assert_billed_once(
        self, record: PeriodClose, total: int, customer_id: str = "acme"
    ) -> dict[str, Any]:
        """Exactly one finalized invoice with the right total and lines, and at most 3 distinct writes."""
        (invoice,) = self.invoices(customer_id, record.period)
        assert invoice["id"] == record.stripe_invoice_id
        assert (invoice["status"], invoice["total"]) == ("open", total)
        assert invoice["lines"]["total_count"] == len(record.statement.lines)
        assert record.status is CloseStatus.FINALIZED
        assert (record.total, record.amount_due, record.total_mismatch) == (total, total, False)
        assert record.hosted_invoice_url == invoice["hosted_invoice_url"]
        writes = {
            (call.operation, call.idempotency_key)
            for call in self.double.calls
            if call.operation in WRITES
            and call.idempotency_key
            and call.idempotency_key.startswith(f"tollgate:{customer_id}:{record.period}:")
        }
        assert len(writes) <= 3, writes
        return invoice


@pytest.fixture(scope="module")
def running_double() -> Iterator[StripeDouble]:
    with StripeDouble() as double:
        yield double


def make_world(store: TollgateStore, double: StripeDouble, *, timeout: float = 10.0) -> World:
    double.reset()
    gateway = StripeClientInvoicing(double.client(timeout=timeout))
    return World(store, double, DynamoLedger(store), gateway)


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:
    return make_world(store, running_double)


# -- amounts ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("plan", "credits", "total"),
    [
        pytest.param(PAYG, 1_234_567, 51_852, id="payg-1234567-credits-is-518.52-usd"),
        pytest.param(HYBRID, 80_000, 4_900, id="hybrid-under-included-is-the-base-fee"),
        pytest.param(HYBRID, 250_000, 12_400, id="hybrid-over-included-adds-the-excess"),
        pytest.param(YEN, 123_457, 7_173, id="jpy-whole-yen"),
        pytest.param(TIERED, 25_000, 700, id="tiers-band-by-band"),
    ],
)
def test_the_invoice_bills_exactly_the_statement(world: World, plan: Plan, credits: int, total: int) -> None:
    world.customer(plan=plan, credits=credits)

    record = world.close()

    invoice = world.assert_billed_once(record, total)
    assert invoice["currency"] == plan.currency
    assert record.billed_credits == record.statement.credits == credits
    assert [line["amount"] for line in invoice["lines"]["data"]] == [
        line.amount for line in record.statement.lines
    ]
    assert world.stripe_operations() == Counter(WRITES)  # one create, one add_lines, one finalize; no search


def test_usage_summed_over_counter_shards_is_billed(world: World) -> None:
    world.customer(shards=3)
    for shard, credits in enumerate((1_000_000, 200_000, 34_567)):
        world.count("acme", credits, shard=shard)

    world.assert_billed_once(world.close(), 51_852)


def test_what_stripe_is_sent(world: World) -> None:
    plan = make_plan(id="invoiced", collection_method=CollectionMethod.SEND_INVOICE, days_until_due=30)
    customer = world.customer(plan=plan, credits=1_234_567)

    record = world.close()

    create = world.double.calls_to("invoices.create")[0]
    assert create.idempotency_key == "tollgate:acme:2026-10:create-invoice"
    assert create.params["customer"] == customer.stripe_customer_id
    assert create.params["collection_method"] == "send_invoice"
    assert create.params["days_until_due"] == "30"
    assert create.params["auto_advance"] == "false"
    assert create.params["currency"] == "usd"
    assert create.params["metadata"] == {"tollgate_customer_id": "acme", "tollgate_period": "2026-10"}
    add = world.double.calls_to("invoices.add_lines")[0]
    assert add.idempotency_key == "tollgate:acme:2026-10:add-lines"
    (line,) = add.params["lines"]
    assert line["price_data"] == {
        "currency": "usd",
        "product_data": {"name": "API usage"},
        "unit_amount_decimal": "0.042",
    }
    assert line["quantity_decimal"] == "1234567"  # the integer quantity is deprecated in the pinned version
    assert "quantity" not in line
    assert line["period"] == {
        "start": str(int(period_start(PERIOD).timestamp())),
        "end": str(int(period_end(PERIOD).timestamp()) - 1),
    }
    finalize = world.double.calls_to("invoices.finalize")[0]
    assert finalize.idempotency_key == "tollgate:acme:2026-10:finalize"
    assert finalize.params == {"auto_advance": "true"}  # Stripe collects (here: emails) once it is final
    invoice = world.assert_billed_once(record, 51_852)
    assert invoice["due_date"] is not None


# -- idempotency and the things that are not charges -----------------------------------------------------


def test_closing_again_returns_the_same_record_and_calls_stripe_no_more(world: World) -> None:
    world.customer(credits=1_234_567)
    first = world.close()
    calls = len(world.double.calls)

    again = world.close(now=close_time(PERIOD).replace(day=20))

    assert again == first
    assert len(world.double.calls) == calls
    assert world.record().version == 3  # rated (1) -> invoice_created (2) -> finalized (3)


def test_zero_usage_is_no_charge_without_any_stripe_call(world: World) -> None:
    world.customer(credits=0)

    record = world.close()

    assert record.status is CloseStatus.NO_CHARGE
    assert (record.total, record.statement.lines, record.stripe_invoice_id) == (0, (), None)
    assert world.stripe_operations() == Counter()
    assert world.close() == record


def test_usage_that_rounds_to_nothing_is_no_charge(world: World) -> None:
    world.customer(credits=11)  # 11 x 0.042 cents = 0.462 cents -> 0

    record = world.close()

    assert record.status is CloseStatus.NO_CHARGE
    assert record.billed_credits == 11  # rated and billed (at zero): later credits add to these
    assert world.stripe_operations() == Counter()


def test_a_customer_with_no_charge_needs_no_stripe_customer(world: World) -> None:
    world.customer(plan=HYBRID, linked=False)
    world.customer("quiet", linked=False)

    assert world.close("quiet").status is CloseStatus.NO_CHARGE
    with pytest.raises(MissingStripeCustomerError):
        world.close()  # the hybrid base fee is a charge


def test_a_charge_without_a_stripe_customer_fails_clearly_and_is_recorded(world: World) -> None:
    world.customer(credits=1_234_567, linked=False)

    with pytest.raises(MissingStripeCustomerError, match="no stripe_customer_id"):
        world.close()

    failed = world.record()
    assert failed.status is CloseStatus.RATED
    assert failed.attempts == 1
    assert "stripe_customer_id" in str(failed.last_error)
    assert world.stripe_operations() == Counter()

    customer = world.store.get_customer("acme")
    world.store.update_customer(
        customer, customer.model_copy(update={"stripe_customer_id": world.stripe_customer("acme")})
    )
    record = world.close()
    world.assert_billed_once(record, 51_852)
    assert (record.attempts, record.last_error) == (1, None)


def test_a_period_that_has_not_ended_is_refused(world: World) -> None:
    world.customer(credits=1_234_567)
    last_second = datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)

    with pytest.raises(PeriodNotEndedError, match="2026-10 has not ended"):
        world.close(now=last_second)
    with pytest.raises(PeriodNotEndedError):
        close_period(world.ledger, world.gateway, "2026-11", now=NOW)
    with pytest.raises(ValueError, match="YYYY-MM"):
        world.close(period="2026-13")
    with pytest.raises(ValueError, match="timezone-aware"):
        world.close(now=datetime(2026, 12, 1))

    assert get_close(world.store.table, "acme", PERIOD) is None
    assert world.stripe_operations() == Counter()
    world.close(now=period_end(PERIOD))  # from its first instant on, it can be closed


def test_an_unknown_customer_is_an_error_and_writes_nothing(world: World) -> None:
    with pytest.raises(NotFoundError):
        world.close("ghost")
    assert closes.list_closes(world.store.table, "ghost") == []


# -- the whole period ------------------------------------------------------------------------------------


def test_close_period_closes_everyone_and_one_failure_stops_nothing(world: World) -> None:
    world.customer("acme", credits=1_234_567)
    world.customer("idle")
    world.customer("nolink", credits=5_000, linked=False)
    world.customer("yen", plan=YEN, credits=123_457)
    seen: list[CustomerClose] = []

    summary = close_period(world.ledger, world.gateway, PERIOD, now=CLOSE_AT, on_progress=seen.append)

    assert [c.customer_id for c in seen] == ["acme", "idle", "nolink", "yen"]
    by_id = {c.customer_id: c for c in summary.customers}
    assert (by_id["acme"].status, by_id["acme"].total, by_id["acme"].currency) == ("finalized", 51_852, "usd")
    assert by_id["acme"].stripe_invoice_id == world.record("acme").stripe_invoice_id is not None
    assert (by_id["idle"].status, by_id["idle"].total, by_id["idle"].stripe_invoice_id) == (
        "no_charge",
        0,
        None,
    )
    assert by_id["nolink"].status == "failed"
    assert "stripe_customer_id" in str(by_id["nolink"].error)
    assert (by_id["yen"].status, by_id["yen"].total, by_id["yen"].currency) == ("finalized", 7_173, "jpy")
    assert summary.failed == (by_id["nolink"],)
    assert summary.counts == {"finalized": 2, "no_charge": 1, "failed": 1}

    calls = len(world.double.calls)
    again = close_period(world.ledger, world.gateway, PERIOD, now=CLOSE_AT)
    assert again == summary
    assert len(world.double.calls) == calls
    assert len(world.double.invoices) == 2


# -- late usage ------------------------------------------------------------------------------------------


def test_late_usage_is_billed_once_on_the_next_invoice(world: World) -> None:
    world.customer(credits=1_000_000)
    october = world.close()
    assert october.total == 42_000
    world.count("acme", 50_000, PERIOD)  # counted after October's close
    world.count("acme", 10_000, "2026-11")

    november = world.close(period="2026-11")

    usage, adjustment = november.statement.lines
    assert (usage.kind, usage.period, usage.amount) == (LineKind.USAGE, "2026-11", 420)
    assert (adjustment.kind, adjustment.period, adjustment.amount) == (LineKind.ADJUSTMENT, PERIOD, 2_100)
    assert november.adjusted_periods == {PERIOD: 50_000}
    invoice = world.assert_billed_once(november, 2_520)
    stripe_adjustment = invoice["lines"]["data"][1]
    assert stripe_adjustment["period"] == {
        "start": int(period_start(PERIOD).timestamp()),
        "end": int(period_end(PERIOD).timestamp()) - 1,
    }
    assert world.record(period=PERIOD).billed_credits == 1_050_000
    assert world.record(period=PERIOD).statement == october.statement  # a statement never changes

    assert world.close(period="2026-11") == november  # re-run: nothing billed again
    december = world.close(period="2026-12")
    assert december.status is CloseStatus.NO_CHARGE
    assert december.adjusted_periods == {}
    assert len(world.double.invoices) == 2


def test_late_usage_alone_is_a_charge(world: World) -> None:
    world.customer(credits=0)
    assert world.close().status is CloseStatus.NO_CHARGE
    world.count("acme", 100_000, PERIOD)  # a no_charge period's late usage counts too

    november = world.close(period="2026-11")

    assert [line.kind for line in november.statement.lines] == [LineKind.ADJUSTMENT]
    world.assert_billed_once(november, 4_200)
    assert world.record(period=PERIOD).billed_credits == 100_000


def test_late_usage_of_older_periods_is_found_too(world: World) -> None:
    world.customer(credits=1_000, period="2026-08")
    for period in ("2026-08", "2026-09", "2026-10"):
        world.close(period=period)
    world.count("acme", 10_000, "2026-08")
    world.count("acme", 20_000, "2026-09")

    november = world.close(period="2026-11")

    assert november.adjusted_periods == {"2026-08": 10_000, "2026-09": 20_000}
    assert [line.period for line in november.statement.lines] == ["2026-08", "2026-09"]
    world.assert_billed_once(november, 420 + 840)


def test_late_usage_respects_the_earlier_periods_plan(world: World) -> None:
    world.customer(plan=HYBRID, credits=90_000)
    world.close()  # base fee only: 10,000 included credits left
    world.count("acme", 30_000, PERIOD)

    november = world.close(period="2026-11")

    adjustment = november.statement.lines[-1]
    assert adjustment.amount == 20_000 * 5 // 100  # only the credits above October's included 100,000
    world.assert_billed_once(november, 4_900 + 1_000)


def test_put_close_is_atomic_with_the_billed_credits_it_raises(world: World) -> None:
    world.customer(credits=1_000)
    october = world.close()
    november = october.model_copy(
        update={"period": "2026-11", "status": CloseStatus.RATED, "adjusted_periods": {PERIOD: 5}}
    )

    with pytest.raises(ConflictError):  # October's billed_credits is 1,000, not 999
        closes.put_close(world.store.table, november, {PERIOD: (999, 1_004)})
    assert get_close(world.store.table, "acme", "2026-11") is None  # nothing written

    closes.put_close(world.store.table, november, {PERIOD: (1_000, 1_005)})
    assert world.record(period=PERIOD).billed_credits == 1_005
    with pytest.raises(AlreadyExistsError):
        closes.put_close(world.store.table, november, {PERIOD: (1_005, 1_010)})
    with pytest.raises(AlreadyExistsError):
        closes.put_close(world.store.table, november, {})
    assert world.record(period=PERIOD).billed_credits == 1_005


def test_late_usage_in_another_currency_waits_for_an_invoice_in_it_and_is_billed_once(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    customer = world.customer(credits=1_000)
    world.close()
    world.store.put_plan(YEN)
    change_plan(world.store, customer.id, "yen", at_period_end=True, now=datetime(2026, 10, 15, tzinfo=UTC))
    world.count("acme", 5_000, PERIOD)  # October's, in dollars, counted after its close

    november = world.close(period="2026-11")  # in yen: the dollars cannot go on it

    assert [line.kind for line in november.statement.lines] == [LineKind.BASE_FEE]
    world.assert_billed_once(november, 1_000)
    (waiting,) = november.waiting
    (late,) = waiting.lines
    assert (waiting.currency, late.period, late.quantity, late.amount) == ("usd", PERIOD, 1, 210)
    assert "Late usage for 2026-10: 5,000 credits" in late.description
    assert november.adjusted_periods == {PERIOD: 5_000}
    assert world.record(period=PERIOD).billed_credits == 6_000  # taken over by November, in its transaction
    assert "cannot go on a jpy invoice: carried until one in usd" in caplog.text
    progress = close_progress("2026-11", closes_of_period(world.store, "2026-11"))
    assert [(line.customer_id, line.waiting) for line in progress.waiting] == [("acme", {"usd": 210})]

    change_plan(world.store, customer.id, "payg", at_period_end=True, now=datetime(2026, 11, 15, tzinfo=UTC))
    december = world.close(period="2026-12")  # back in dollars: billed, once

    (billed,) = december.statement.lines
    assert billed == late
    assert (december.carried_from, december.waiting, december.carried) == (("2026-11",), (), ())
    world.assert_billed_once(december, 210)  # the Stripe invoice, in dollars, bills exactly the statement
    (invoice,) = world.invoices(period="2026-12")
    assert invoice["currency"] == "usd"
    assert world.record(period="2026-11").carried_to == "2026-12"
    assert world.close(period="2026-12") == december  # a re-run bills nothing again
    assert world.close(period="2027-01").status is CloseStatus.NO_CHARGE
    assert close_progress("2026-12", closes_of_period(world.store, "2026-12")).waiting == ()
