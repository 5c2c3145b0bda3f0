"""Buying prepaid credits: a Stripe Checkout Session made by ``tollgate credits buy`` and, once Stripe says it
is paid, the webhook adds its credits exactly once, whatever Stripe redelivers. On DynamoDB Local, through the
webhook function as deployed (signature checked), with the Stripe double's Checkout Sessions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, NOW, make_customer, make_plan
from tests.integration.test_webhooks import SECRET, function_url_event, sign, stripe_event, webhook_handler
from tollgate.accounts.prepaid import buy_credits
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.domain.prepaid import TopUpSource
from tollgate.errors import InvalidInputError
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate.usage_api.report import build_usage_report
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

TOP_UP_URL = "https://api.example.test/billing/credits"
PREPAID = make_plan(
    id="credits", name="Credits", billing="prepaid", price_per_credit=Decimal("0.002"), top_up_url=TOP_UP_URL
)


class Shop:
    """acme on a prepaid plan with a Stripe customer in the double, and the webhook function."""

    def __init__(self, store: TollgateStore, double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
        self.store, self.double = store, double
        store.put_plan(PREPAID)
        stripe_customer = double.client().v1.customers.create(params={"name": "Acme"})
        joined = datetime(2026, 10, 1, tzinfo=UTC)
        store.put_customer(make_customer(PREPAID, stripe_customer_id=stripe_customer.id, created_at=joined))
        self.now = [NOW]
        self.handler = webhook_handler(store, self.now)

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(event)
        answer = self.handler(function_url_event(body, {"Stripe-Signature": sign(body)}), CONTEXT)
        return dict(json.loads(answer["body"]), status=answer["statusCode"])

    def balance(self) -> int:
        return self.store.read_balance("acme").credits


@pytest.fixture
def shop(store: TollgateStore, double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> Shop:
    return Shop(store, double, monkeypatch)


def paid_session(**overrides: Any) -> dict[str, Any]:
    """A Checkout Session as Stripe sends it in the event, selling 50,000 credits to acme."""
    fields: dict[str, Any] = {
        "id": "cs_test_hand_made",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_total": 10_000,
        "currency": "usd",
        "metadata": {
            "tollgate_purchase": "prepaid_credits",
            "tollgate_customer_id": "acme",
            "tollgate_credits": "50000",
        },
    }
    fields.update(overrides)
    return fields


def test_a_paid_session_adds_its_credits_once_however_often_stripe_sends_it(shop: Shop) -> None:
    completed = stripe_event("checkout.session.completed", paid_session())

    first = shop.deliver(completed)
    again = shop.deliver(completed)  # Stripe redelivers the same event
    other = shop.deliver(stripe_event("checkout.session.async_payment_succeeded", paid_session()))

    assert (first["status"], first["result"]) == (200, "applied")
    assert (again["result"], other["result"]) == ("duplicate", "duplicate")
    assert shop.balance() == 50_000
    (top_up,) = shop.store.list_top_ups("acme")
    assert (top_up.reference, top_up.source, top_up.amount) == (
        "cs_test_hand_made",
        TopUpSource.CHECKOUT,
        10_000,
    )


def test_an_unpaid_session_adds_nothing_until_its_payment_succeeds(shop: Shop) -> None:
    unpaid = paid_session(payment_status="unpaid")

    waiting = shop.deliver(stripe_event("checkout.session.completed", unpaid))
    assert waiting["result"] == "ignored"
    assert shop.balance() == 0

    paid = shop.deliver(stripe_event("checkout.session.async_payment_succeeded", paid_session()))
    assert paid["result"] == "applied"
    assert shop.balance() == 50_000


@pytest.mark.parametrize(
    "session",
    [
        paid_session(metadata={"order": "42"}),  # another product of the provider's
        paid_session(metadata={**paid_session()["metadata"], "tollgate_customer_id": "nobody"}),
        paid_session(metadata={**paid_session()["metadata"], "tollgate_credits": "lots"}),
    ],
    ids=["not credits", "unknown customer", "unreadable credits"],
)
def test_a_session_that_is_not_a_readable_credit_purchase_changes_nothing(
    shop: Shop, session: dict[str, Any]
) -> None:
    answer = shop.deliver(stripe_event("checkout.session.completed", session))

    assert (answer["status"], answer["result"]) == (200, "ignored")
    assert shop.balance() == 0
    assert shop.store.list_top_ups("acme") == []


def test_a_forged_purchase_event_is_refused(shop: Shop) -> None:
    body = json.dumps(stripe_event("checkout.session.completed", paid_session()))

    answer = shop.handler(function_url_event(body, {"Stripe-Signature": sign(body, "whsec_forged")}), CONTEXT)

    assert answer["statusCode"] == 400
    assert shop.balance() == 0


def test_the_usage_report_shows_the_balance_and_when_it_runs_out(shop: Shop) -> None:
    shop.deliver(stripe_event("checkout.session.completed", paid_session()))
    counter = DynamoUsageCounter(boto3.client("dynamodb"), shop.store.table_name)
    for _ in range(14):
        counter.draw("acme", "2026-11", "POST /v1/generate", 25, day=30)  # 350 credits since November began

    report = build_usage_report(shop.store, "acme", now=NOW)  # 2026-11-15 12:00: 14.5 days in

    assert report.prepaid is not None
    assert (report.prepaid.credits, report.prepaid.bought) == (49_650, 50_000)
    assert report.prepaid.burn_rate_per_day == 24  # 350 / 14.5, rounded down
    elapsed = int(timedelta(days=14, hours=12).total_seconds())
    assert report.prepaid.runs_out_at == NOW + timedelta(seconds=49_650 * elapsed // 350)
    assert report.estimated_charge.amount == 0
    assert report.credits_used == 350


def test_an_arrears_customers_report_has_no_balance(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))

    assert build_usage_report(store, "acme", now=NOW).prepaid is None


def test_credits_are_sold_only_on_a_prepaid_plan(store: TollgateStore, double: StripeDouble) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan, stripe_customer_id="cus_x"))

    with pytest.raises(InvalidInputError, match="billed in arrears"):
        buy_credits(store, double.client(), "acme", credits=100)
    assert double.calls == []


def test_a_bought_checkout_session_adds_its_credits_once_paid(shop: Shop) -> None:
    purchase = buy_credits(shop.store, shop.double.client(), "acme", credits=50_000, purchase_id="p1")
    again = buy_credits(shop.store, shop.double.client(), "acme", credits=50_000, purchase_id="p1")

    assert (purchase.amount, purchase.currency, purchase.price) == (10_000, "usd", "100.00 USD")
    assert again.session_id == purchase.session_id  # the same purchase id answers the same session
    assert len(shop.double.checkout_sessions) == 1
    session = shop.double.checkout_sessions[purchase.session_id]
    assert session["amount_total"] == 10_000
    assert session["success_url"] == TOP_UP_URL
    assert session["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert shop.balance() == 0  # nothing lands before Stripe says it is paid

    event = shop.double.complete_checkout(purchase.session_id)
    assert shop.deliver(event)["result"] == "applied"
    assert shop.deliver(event)["result"] == "duplicate"

    assert shop.balance() == 50_000
    (top_up,) = shop.store.list_top_ups("acme")
    assert (top_up.reference, top_up.credits, top_up.amount) == (purchase.session_id, 50_000, 10_000)


def test_a_delayed_payment_adds_the_credits_when_it_succeeds(shop: Shop) -> None:
    purchase = buy_credits(shop.store, shop.double.client(), "acme", credits=1_001)

    assert purchase.amount == 200  # 1,001 x 0.2 cents = 200.2, rounded half-up once
    assert shop.deliver(shop.double.complete_checkout(purchase.session_id, paid=False))["result"] == "ignored"
    assert shop.balance() == 0
    assert shop.deliver(shop.double.async_payment_succeeded(purchase.session_id))["result"] == "applied"
    assert shop.balance() == 1_001


def test_the_cli_prints_the_checkout_link(shop: Shop) -> None:
    runner = CliRunner()
    context = AppContext(clock=lambda: NOW, _stripe=shop.double.client())

    bought = runner.invoke(
        app, ["credits", "buy", "acme", "--credits", "2500"], obj=context, env={"COLUMNS": "200"}
    )

    assert bought.exit_code == 0, bought.output
    (session_id,) = shop.double.checkout_sessions
    assert f"2,500 credits for 5.00 USD: {shop.double.base_url}/checkout/{session_id}" in bought.output


class ProcessDied(BaseException):
    """The Lambda was killed here: nothing after it runs, and Stripe gets no answer (it redelivers)."""


@pytest.mark.parametrize("dies", ["before-its-write", "after-its-write"])
def test_the_webhook_dying_around_its_one_write_then_stripes_redelivery_adds_the_credits_once(
    shop: Shop, monkeypatch: pytest.MonkeyPatch, dies: str
) -> None:
    purchase = buy_credits(shop.store, shop.double.client(), "acme", credits=50_000, purchase_id="p1")
    event = shop.double.complete_checkout(purchase.session_id)
    write = shop.store.transact

    def killed(actions: Any) -> None:
        if dies == "after-its-write":
            write(actions)
        raise ProcessDied(dies)

    monkeypatch.setattr(shop.store, "transact", killed)
    with pytest.raises(ProcessDied):
        shop.deliver(event)
    monkeypatch.setattr(shop.store, "transact", write)
    redelivered = shop.deliver(event)

    assert redelivered["result"] == ("applied" if dies == "before-its-write" else "duplicate")
    assert shop.balance() == 50_000
    assert [top_up.reference for top_up in shop.store.list_top_ups("acme")] == [purchase.session_id]


def test_a_purchase_that_died_before_its_link_was_shown_is_the_same_session_when_run_again(
    shop: Shop,
) -> None:
    client = shop.double.client()
    created = client.v1.checkout.sessions.create

    def killed(*args: Any, **kwargs: Any) -> Any:
        created(*args, **kwargs)  # Stripe made the session; the link never reached anyone
        raise ProcessDied("after checkout.sessions.create")

    client.v1.checkout.sessions.create = killed  # type: ignore[method-assign]
    with pytest.raises(ProcessDied):
        buy_credits(shop.store, client, "acme", credits=50_000, purchase_id="p1")
    again = buy_credits(shop.store, shop.double.client(), "acme", credits=50_000, purchase_id="p1")

    assert list(shop.double.checkout_sessions) == [again.session_id]  # one session: the customer pays once
    assert shop.deliver(shop.double.complete_checkout(again.session_id))["result"] == "applied"
    assert shop.balance() == 50_000
