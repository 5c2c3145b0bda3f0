"""Usage worth less than a minor unit in its period is carried to the next close, not dropped, and billed once
its value rounds to a cent; over any run of periods a customer pays its exact value rounded once, never more.

End to end: DynamoDB Local and the Stripe double, through the real close (``close_customer``). The pure rules:
tests/unit/test_carry_over.py; late usage in another currency: test_period_close.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, make_plan
from tests.integration.test_period_close import (
    YEN,
    World,
    close_time,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tests.integration.test_period_close_faults import CrashingGateway, ProcessDied
from tests.integration.test_period_close_race import RacingLedger
from tollgate.accounts.plan_changes import change_plan
from tollgate.billing.close import steps, watchdog
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal import closes
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import BilledRaise, Carry, CloseStatus, PeriodClose
from tollgate.domain.periods import next_period
from tollgate.domain.rating import LineKind
from tollgate.errors import ConflictError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

CENT = Decimal("0.042")  # cents a credit on the pay-as-you-go plan ($0.00042)
WIDE = {"COLUMNS": "200"}  # the CLI's tables on one line each
FEE = make_plan(id="fee", name="Fee", base_fee=Decimal("10"), price_per_credit=Decimal("0.00042"))


@pytest.fixture
def world(store: TollgateStore, running_double: StripeDouble) -> World:  # noqa: F811 - the fixture above
    return make_world(store, running_double)


def periods(first: str, count: int) -> list[str]:
    found = [first]
    while len(found) < count:
        found.append(next_period(found[-1]))
    return found


def rounded_once(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def close_months(world: World, credits: int, months: list[str]) -> list[PeriodClose]:
    """``credits`` counted in each of ``months`` and each month closed (invoiced in Stripe when it bills)."""
    records = []
    for period in months:
        world.count("acme", credits, period)
        records.append(world.close(period=period))
    return records


def billed_months(records: list[PeriodClose]) -> list[tuple[str, int]]:
    return [(record.period, record.total) for record in records if record.total]


@pytest.mark.parametrize(
    ("credits", "billed"),
    [
        pytest.param(3, [("2026-04", 1), ("2026-12", 1)], id="3-credits-a-month-0.126-cents"),
        pytest.param(1, [("2026-12", 1)], id="1-credit-a-month-carried-past-the-late-usage-lookback"),
    ],
)
def test_tiny_monthly_usage_is_billed_once_it_is_worth_a_cent_and_a_year_bills_it_rounded_once(
    world: World, credits: int, billed: list[tuple[str, int]]
) -> None:
    world.customer()
    year = periods("2026-01", 12)

    records = close_months(world, credits, year)

    assert billed_months(records) == billed
    assert sum(record.total for record in records) == rounded_once(CENT * credits * 12)  # never more
    for record in records:
        exact_so_far = CENT * credits * (year.index(record.period) + 1)
        billed_so_far = sum(r.total for r in records if r.period <= record.period)
        assert billed_so_far == rounded_once(exact_so_far)
        if record.total == 0:
            assert record.status is CloseStatus.NO_CHARGE
            assert world.invoices(period=record.period) == []  # nothing sent to Stripe
            continue
        (line,) = record.statement.lines
        assert (line.kind, line.quantity, line.amount) == (LineKind.CARRIED, 1, 1)
        world.assert_billed_once(record, 1)  # Stripe bills exactly the statement
        key = f"tollgate:acme:{record.period}:add-lines"
        (sent,) = [
            call for call in world.double.calls_to("invoices.add_lines") if call.idempotency_key == key
        ]
        assert sent.params["lines"][0]["price_data"] == {  # the exact value (0.504): Stripe rounds it once
            "currency": "usd",
            "product_data": {"name": "API usage carried over"},
            "unit_amount_decimal": str(line.unit_amount),
        }
    first = records[3] if credits == 3 else records[11]
    assert first.statement.lines[0].description == (
        f"API usage carried over (2026-01 to {first.period}): 12 credits worth less than 0.01 USD in "
        "their period"
    )
    assert first.carried_from == (year[year.index(first.period) - 1],)
    carried_to = [world.record(period=period).carried_to for period in year]
    assert carried_to == [*year[1:], None]  # each month's carry taken over once, by the next month


def test_small_usage_on_an_invoice_with_a_base_fee_is_billed_with_a_later_one(world: World) -> None:
    world.customer(plan=FEE)

    records = close_months(world, 3, periods("2026-01", 4))

    assert [record.total for record in records] == [1_000, 1_000, 1_000, 1_001]
    assert [line.kind for line in records[0].statement.lines] == [LineKind.BASE_FEE]  # no 0.00 usage line
    assert [line.kind for line in records[3].statement.lines] == [LineKind.BASE_FEE, LineKind.CARRIED]
    for record in records:
        world.assert_billed_once(record, record.total)


@pytest.mark.parametrize("method", ["create_invoice", "add_lines", "finalize"])
def test_a_crash_while_invoicing_the_carried_usage_bills_it_once(world: World, method: str) -> None:
    world.customer()
    year = periods("2026-01", 12)
    close_months(world, 3, year[:3])
    world.count("acme", 3, "2026-04")

    with pytest.raises(ProcessDied):
        world.close(period="2026-04", gateway=CrashingGateway(world.gateway, method))
    april = world.close(period="2026-04")  # the re-run

    world.assert_billed_once(april, 1)
    assert world.record(period="2026-03").carried_to == "2026-04"
    rest = close_months(world, 3, year[4:])
    assert sum(record.total for record in [april, *rest]) == rounded_once(CENT * 36) == 2


def test_two_closes_racing_for_the_same_carry_take_it_once(world: World) -> None:
    """April's close rates, but a backfilled May close takes March's carry first: April's transaction fails on
    March's ``carried_to`` and April rates again without it; June takes over what April carries."""
    world.customer()
    close_months(world, 3, periods("2026-01", 3))
    for period in ("2026-04", "2026-05", "2026-06"):
        world.count("acme", 3, period)

    def rate(period: str, ledger: Any = None) -> Callable[[], steps.Rated]:
        context = steps.CloseContext(
            ledger or world.ledger, world.gateway, "acme", period, close_time("2026-06")
        )
        return lambda: steps.rated_record(context)

    racing = RacingLedger(world.ledger, rate("2026-05"))
    april = rate("2026-04", racing)().record

    may = world.record(period="2026-05")
    assert racing.saves == 2  # rated again after losing March's carry
    assert (may.carried_from, may.total) == (("2026-03",), 1)  # 0.378 + 0.126 = 0.504 cents
    assert (april.carried_from, april.total, april.carried) == (
        (),
        0,
        (Carry(currency="usd", amount=Decimal("0.126"), credits=3, since="2026-04"),),
    )
    june = rate("2026-06")().record
    assert june.carried_from == ("2026-04", "2026-05")
    assert sum(world.record(period=p).total for p in periods("2026-01", 6)) == rounded_once(CENT * 18) == 1


def test_put_close_takes_a_carry_over_exactly_once(world: World) -> None:
    world.customer(credits=3)
    october = world.close()
    assert october.carried == (Carry(currency="usd", amount=Decimal("0.126"), credits=3, since="2026-10"),)
    take = {"2026-10": BilledRaise(3, 3, take_carry=True)}
    november = october.model_copy(update={"period": "2026-11", "carried": (), "carried_from": ("2026-10",)})
    december = november.model_copy(update={"period": "2026-12"})
    closes.put_close(world.store.table, november, take)

    with pytest.raises(ConflictError):
        closes.put_close(world.store.table, december, take)

    assert closes.get_close(world.store.table, "acme", "2026-12") is None  # nothing written
    assert world.record(period="2026-10").carried_to == "2026-11"


def test_late_usage_that_makes_a_carried_period_worth_a_cent_is_billed_once(world: World) -> None:
    world.customer(credits=3)
    world.close()  # 0.126 cents, carried
    world.count("acme", 10, "2026-10")  # late: October is now worth 0.546 cents

    november = world.close(period="2026-11")

    (late,) = november.statement.lines
    assert (late.kind, late.period, late.amount) == (LineKind.ADJUSTMENT, "2026-10", 1)
    assert november.carried == ()  # October's 0.126 carried is billed within the late line: not again
    world.assert_billed_once(november, 1)


def test_late_usage_still_too_small_adds_its_value_to_the_carry(world: World) -> None:
    world.customer(credits=3)
    world.close()
    world.count("acme", 2, "2026-10")  # late, October now 0.21 cents
    world.count("acme", 3, "2026-11")

    november = world.close(period="2026-11")

    assert (november.status, november.adjusted_periods) == (CloseStatus.NO_CHARGE, {"2026-10": 2})
    assert november.carried == (Carry(currency="usd", amount=Decimal("0.336"), credits=8, since="2026-10"),)
    world.count("acme", 4, "2026-12")
    assert world.close(period="2026-12").total == 1  # 0.504 cents: billed


def test_a_carry_survives_a_plan_in_another_currency(world: World) -> None:
    customer = world.customer(credits=3)
    world.close()
    world.store.put_plan(YEN)
    change_plan(world.store, customer.id, "yen", at_period_end=True, now=datetime(2026, 10, 15, tzinfo=UTC))

    november = world.close(period="2026-11")  # in yen: the dollar cents wait, and are not billable yet

    assert november.carried == (Carry(currency="usd", amount=Decimal("0.126"), credits=3, since="2026-10"),)
    assert november.waiting == ()  # nothing a person must look at: under half a cent
    change_plan(world.store, customer.id, "payg", at_period_end=True, now=datetime(2026, 11, 15, tzinfo=UTC))
    world.count("acme", 9, "2026-12")
    december = world.close(period="2026-12")
    assert (december.total, december.carried_from) == (1, ("2026-11",))
    world.assert_billed_once(december, 1)


def test_late_usage_waiting_for_its_currency_is_shown_by_close_status_and_the_watchdog(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    customer = world.customer(credits=1_000)
    world.close()
    world.store.put_plan(YEN)
    change_plan(world.store, customer.id, "yen", at_period_end=True, now=datetime(2026, 10, 15, tzinfo=UTC))
    world.count("acme", 5_000, "2026-10")  # late, in dollars
    world.close(period="2026-11")  # in yen
    december = datetime(2026, 12, 15, tzinfo=UTC)
    context = AppContext(clock=lambda: december, _stripe=world.double.client())

    shown = CliRunner().invoke(
        app, ["close", "status", "--period", "2026-11", "--check"], obj=context, env=WIDE
    )
    answer = watchdog.make_handler(watchdog.Deps(world.store, lambda: december))(
        {"period": "2026-11"}, CONTEXT
    )

    assert shown.exit_code == 0, shown.output  # not a failure of the close: nothing to run again
    assert "late usage waiting for an invoice in its currency" in shown.stdout
    assert re.search(r"acme\s+│?\s*2\.10 USD", shown.stdout)
    record = CliRunner().invoke(app, ["invoices", "show", "acme", "2026-11"], obj=context, env=WIDE)
    assert "2.10 USD of late usage waiting for an invoice in USD" in record.stdout
    assert (answer["waiting"], answer["unfinished"]) == (["acme"], [])
    assert "late usage carried in another currency, waiting for an invoice in it" in caplog.text
