"""Free credits and trials: a grant's credits are used before paid usage, on a line of their own; a one-time
grant is used up across periods exactly once; a trial holds the base fee back until it ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.accounts.credit_grants import add_grant, revoke_grant, set_trial
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.credit_grants import GrantKind
from tollgate.domain.rating import LineKind
from tollgate.errors import InvalidInputError, NotFoundError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

PLAN = make_plan(id="pro", name="Pro", base_fee=Decimal("30"), price_per_credit=Decimal("0.01"))  # 1 cent
SIGN_UP = datetime(2026, 9, 20, tzinfo=UTC)
LATER = datetime(2027, 6, 1, 6, 0, tzinfo=UTC)


@pytest.fixture
def ledger(store: TollgateStore) -> DynamoLedger:
    store.put_plan(PLAN)
    store.put_customer(make_customer(PLAN, stripe_customer_id="cus_acme"))
    return DynamoLedger(store)


def count(store: TollgateStore, credits: int, period: str) -> None:
    store.table.update_item(
        Key=tk.counter_key("acme", period, 0),
        UpdateExpression="ADD credits :c, requests :r",
        ExpressionAttributeValues={":c": credits, ":r": 1},
    )


def rate(ledger: DynamoLedger, period: str) -> PeriodClose:
    return steps.rated_record(steps.CloseContext(ledger, None, "acme", period, LATER)).record  # type: ignore[arg-type]


def usage_lines(record: PeriodClose) -> list[tuple[LineKind, int, int]]:
    return [
        (line.kind, line.quantity, line.amount)
        for line in record.statement.lines
        if line.kind is not LineKind.BASE_FEE
    ]


def test_a_sign_up_bonus_is_used_before_paid_usage_and_only_once(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    grant = add_grant(store, "acme", credits=1_000, description="sign-up bonus", now=SIGN_UP)
    count(store, 600, "2026-10")
    count(store, 1_000, "2026-11")
    count(store, 300, "2026-12")

    october, again = rate(ledger, "2026-10"), rate(ledger, "2026-10")  # the second run reads the record
    november = rate(ledger, "2026-11")
    december = rate(ledger, "2026-12")

    assert usage_lines(october) == [(LineKind.FREE_CREDITS, 600, 0)]
    assert october.statement.lines[1].description == "Free credits (sign-up bonus): 600 credits"
    assert (october.total, again.statement.grants_used) == (
        3_000,
        {grant.grant_id: 600},
    )  # the base fee alone
    assert usage_lines(november) == [(LineKind.FREE_CREDITS, 400, 0), (LineKind.USAGE, 600, 600)]
    assert "API usage: 600 credits above 400 free" in november.statement.lines[2].description
    assert usage_lines(december) == [(LineKind.USAGE, 300, 300)]  # spent: 600 + 400


def test_a_recurring_grant_gives_its_credits_every_period_until_it_expires(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    add_grant(
        store,
        "acme",
        credits=500,
        schedule=GrantKind.RECURRING,
        now=SIGN_UP,
        expires=datetime(2026, 11, 10, tzinfo=UTC),
    )
    for period in ("2026-10", "2026-11", "2026-12"):
        count(store, 800, period)

    assert [usage_lines(rate(ledger, p)) for p in ("2026-10", "2026-11", "2026-12")] == [
        [(LineKind.FREE_CREDITS, 500, 0), (LineKind.USAGE, 300, 300)],
        [(LineKind.FREE_CREDITS, 500, 0), (LineKind.USAGE, 300, 300)],  # in effect during November
        [(LineKind.USAGE, 800, 800)],
    ]


def test_grants_end_first_first_and_a_revoked_grant_stops(store: TollgateStore, ledger: DynamoLedger) -> None:
    lasting = add_grant(store, "acme", credits=100, description="lasting", now=SIGN_UP)
    ending = add_grant(
        store,
        "acme",
        credits=100,
        description="ending",
        now=SIGN_UP,
        expires=datetime(2027, 1, 1, tzinfo=UTC),
    )
    count(store, 150, "2026-10")
    october = rate(ledger, "2026-10")
    assert october.statement.grants_used == {ending.grant_id: 100, lasting.grant_id: 50}

    assert revoke_grant(store, "acme", lasting.grant_id, now=datetime(2026, 10, 15, tzinfo=UTC))
    assert not revoke_grant(store, "acme", lasting.grant_id, now=datetime(2026, 10, 16, tzinfo=UTC))
    count(store, 150, "2026-11")
    assert usage_lines(rate(ledger, "2026-11")) == [(LineKind.USAGE, 150, 150)]


def test_first_month_free_a_trial_and_credits_that_expire_with_it(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    trial_end = datetime(2026, 11, 1, tzinfo=UTC)
    set_trial(store, "acme", ends=trial_end)
    add_grant(store, "acme", credits=50_000, description="first month", now=SIGN_UP, expires=trial_end)
    count(store, 60_000, "2026-10")
    count(store, 100, "2026-11")

    october = rate(ledger, "2026-10")
    november = rate(ledger, "2026-11")

    assert [line.kind for line in october.statement.lines] == [LineKind.FREE_CREDITS, LineKind.USAGE]
    assert october.total == 10_000  # no base fee; 10,000 paid credits
    assert november.total == 3_000 + 100  # the base fee from the trial's end; no free credits left


def test_a_trial_ending_mid_period_prorates_the_base_fee_from_its_end(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    set_trial(store, "acme", ends=datetime(2026, 11, 16, tzinfo=UTC))  # 15 of 30 days still to bill

    (fee,) = rate(ledger, "2026-11").statement.lines

    assert (fee.kind, fee.amount) == (LineKind.BASE_FEE, 1_500)
    assert "after the trial" in fee.description


def test_stripe_shows_the_free_credits_and_totals_the_invoice_as_the_statement(
    store: TollgateStore, ledger: DynamoLedger, double: StripeDouble
) -> None:
    stripe_customer = double.client().v1.customers.create(params={"name": "acme"})
    customer = store.get_customer("acme")
    store.update_customer(customer, customer.model_copy(update={"stripe_customer_id": stripe_customer.id}))
    add_grant(store, "acme", credits=1_000, description="sign-up bonus", now=SIGN_UP)
    count(store, 1_500, "2026-10")

    record = close_customer(ledger, StripeClientInvoicing(double.client()), "acme", "2026-10", now=LATER)

    assert (record.status, record.total, record.total_mismatch) == (CloseStatus.FINALIZED, 3_500, False)
    lines = double.invoices[record.stripe_invoice_id]["lines"]["data"]
    assert [(line["description"], line["amount"]) for line in lines][1] == (
        "Free credits (sign-up bonus): 1,000 credits",
        0,
    )


def test_a_grant_for_no_one_or_that_could_never_be_used_is_refused(
    store: TollgateStore, ledger: DynamoLedger
) -> None:
    with pytest.raises(NotFoundError):
        add_grant(store, "nobody", credits=5, now=SIGN_UP)
    with pytest.raises(InvalidInputError, match="has passed"):
        add_grant(store, "acme", credits=5, now=SIGN_UP, expires=SIGN_UP - timedelta(days=1))
    with pytest.raises(InvalidInputError, match="after starts"):
        add_grant(
            store,
            "acme",
            credits=5,
            now=SIGN_UP,
            starts=SIGN_UP + timedelta(days=9),
            expires=SIGN_UP + timedelta(days=1),
        )
    assert store.list_credit_grants("acme") == []
