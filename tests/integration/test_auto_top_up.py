"""Automatic top-ups, on DynamoDB Local and the Stripe double: a draw that leaves a prepaid balance below the
customer's threshold charges their saved card off-session, once per crossing, whatever the replays, the
concurrent consumers or the crashes; the credits land once; a refused charge is alerted (and suspends, if
asked); each step can crash and the next attempt finishes the job without a second charge."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from tests.conftest import NOW, TABLE, Authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.auto_top_up import TopUpOutcome, charge, idempotency_key, set_auto_top_up
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits
from tollgate.alerts.service import process
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal import tablekeys as tk
from tollgate.dal.alerts import LEASE
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert
from tollgate.domain.models import AutoTopUp, CustomerStatus
from tollgate.domain.prepaid import TopUpSource
from tollgate.errors import InvalidInputError, RetryLaterError
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

PREPAID = make_plan(
    id="credits",
    name="Credits",
    billing="prepaid",
    price_per_credit=Decimal("0.01"),
    top_up_url="https://api.example.test/buy",
)
REFILL = AutoTopUp(below=5, credits=100)  # 1.00 USD a time


class Bus:
    def __init__(self) -> None:
        self.published: list[Alert] = []

    def publish(self, alert: Alert) -> None:
        self.published.append(alert)


class Wallet:
    """acme on the prepaid plan with a saved card (or a declining one), 10 credits, and its key."""

    def __init__(
        self, store: TollgateStore, double: StripeDouble, authorizer: Authorizer, **card: Any
    ) -> None:
        self.store, self.double, self.authorizer = store, double, authorizer
        self.client = double.client()
        stripe_id = self.client.v1.customers.create(params={"name": "Acme"}).id
        double.attach_card(stripe_id, **card)
        store.put_plan(PREPAID)
        store.put_customer(make_customer(PREPAID, stripe_customer_id=stripe_id))
        self.key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key
        add_credits(store, "acme", credits=10, reference="pi_first", now=NOW)
        self.bus = Bus()
        self.charges: list[TopUpOutcome] = []

    def top_up(self, customer_id: str, crossing: str, now: Any) -> TopUpOutcome:
        outcome = charge(self.store, self.client, customer_id, crossing, now=now)
        self.charges.append(outcome)
        return outcome

    def image(self) -> dict[str, Any] | None:
        return (
            boto3.resource("dynamodb")
            .Table(TABLE)
            .get_item(Key=tk.wallet_key("acme"), ConsistentRead=True)
            .get("Item")
        )

    def draw(self) -> tuple[Any, Any]:
        """One request of 1 credit; the wallet's (old, new) image, as the stream carries them."""
        old = self.image()
        self.authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": self.key}, epoch_ms=NOW_MS))
        return old, self.image()

    def process(self, record: tuple[Any, Any], now: Any = NOW) -> None:
        process(self.store, self.bus, record[0], record[1], at=NOW, now=now, top_up=self.top_up)


NOW_MS = int(NOW.timestamp() * 1000)


@pytest.fixture
def wallet(store: TollgateStore, double: StripeDouble, authorizer: Authorizer) -> Wallet:
    found = Wallet(store, double, authorizer)
    set_auto_top_up(store, "acme", REFILL)
    return found


def test_the_draw_that_leaves_the_balance_below_the_threshold_charges_once_and_adds_the_credits(
    wallet: Wallet,
) -> None:
    records = [wallet.draw() for _ in range(6)]  # 10 -> 4: the 6th draw crosses below 5
    for record in records:
        wallet.process(record)

    assert [c.status for c in wallet.charges] == ["succeeded"]
    (intent,) = wallet.double.payment_intents.values()
    assert (intent["amount"], intent["currency"], intent["status"]) == (100, "usd", "succeeded")
    assert intent["metadata"]["tollgate_crossing"] == "10"  # named by the credits bought before it
    assert wallet.store.read_balance("acme").credits == 104
    top_up = wallet.store.get_top_up("acme", intent["id"])
    assert (top_up.source, top_up.credits, top_up.amount) == (TopUpSource.AUTO, 100, 100)
    for record in records:  # the stream delivers them all again
        wallet.process(record)
    assert len(wallet.double.payment_intents) == 1
    assert wallet.store.read_balance("acme").credits == 104


def test_two_consumers_of_the_crossing_charge_once(wallet: Wallet) -> None:
    for _ in range(5):
        wallet.process(wallet.draw())
    crossing = wallet.draw()
    start, busy = threading.Barrier(4), []

    def consume() -> None:
        start.wait()
        try:
            wallet.process(crossing)
        except RetryLaterError:
            busy.append(1)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in busy:
        wallet.process(crossing, now=NOW + LEASE + timedelta(seconds=1))

    assert len(wallet.double.payment_intents) == 1
    assert wallet.store.read_balance("acme").credits == 104


@pytest.mark.parametrize("dies", ["before_charging", "after_charging", "after_adding_credits"])
def test_a_consumer_that_dies_at_any_step_is_finished_by_the_retry_with_one_charge(
    wallet: Wallet, dies: str
) -> None:
    for _ in range(5):
        wallet.process(wallet.draw())
    crossing = wallet.draw()

    def dying(customer_id: str, at: str, now: Any) -> TopUpOutcome:
        if dies == "before_charging":
            raise ConnectionError("the function timed out")
        outcome = charge(wallet.store, wallet.client, customer_id, at, now=now)
        if dies == "after_charging":
            wallet.store.table.delete_item(
                Key={tk.PK: "CUSTOMER#acme", tk.SK: f"TOPUP#{outcome.payment_intent}"}
            )
            wallet.store.table.update_item(  # as if the credits had never been added
                Key=tk.wallet_key("acme"), UpdateExpression="ADD balance :minus, bought :minus",
                ExpressionAttributeValues={":minus": -100},
            )  # fmt: skip
        raise ConnectionError("the function timed out")

    with pytest.raises(ConnectionError):
        process(wallet.store, wallet.bus, *crossing, at=NOW, now=NOW, top_up=dying)
    with pytest.raises(RetryLaterError):  # within the dead consumer's lease: left to it
        wallet.process(crossing, now=NOW + LEASE - timedelta(seconds=1))
    wallet.process(crossing, now=NOW + LEASE + timedelta(seconds=1))

    assert len(wallet.double.payment_intents) == 1  # Stripe replayed the charge to its idempotency key
    assert wallet.store.read_balance("acme").credits == 104
    assert [c.status for c in wallet.charges] == ["succeeded"]
    assert len(wallet.store.list_top_ups("acme")) == 2


def test_a_declined_card_is_alerted_once_and_suspends_only_when_asked(
    store: TollgateStore, double: StripeDouble, authorizer: Authorizer
) -> None:
    wallet = Wallet(store, double, authorizer, decline="card_declined")
    set_auto_top_up(store, "acme", AutoTopUp(below=5, credits=100, suspend_on_failure=True))

    records = [wallet.draw() for _ in range(6)]
    for record in records + records:
        wallet.process(record)

    (failed,) = wallet.bus.published
    assert failed.detail_type == "Tollgate Auto Top-up Failed"
    assert failed.alert_id == "acme:topup10:balance_below:5"
    assert failed.detail["failure"] == "card_declined"
    assert failed.detail["paymentIntent"] in double.payment_intents
    assert store.read_balance("acme").credits == 4
    customer = store.get_customer("acme")
    assert (customer.status, customer.status_reason) == (CustomerStatus.SUSPENDED, "auto_top_up_failed")
    assert len(double.payment_intents) == 1


def test_without_a_saved_card_the_failure_is_alerted_and_nothing_charged(
    store: TollgateStore, double: StripeDouble, authorizer: Authorizer
) -> None:
    client = double.client()
    stripe_id = client.v1.customers.create(params={"name": "Acme"}).id
    store.put_plan(PREPAID)
    store.put_customer(make_customer(PREPAID, stripe_customer_id=stripe_id))
    key = issue_key(store, "acme", now=NOW - timedelta(days=1)).key
    add_credits(store, "acme", credits=5, reference="wire-1", now=NOW)
    set_auto_top_up(store, "acme", REFILL)
    table = boto3.resource("dynamodb").Table(TABLE)
    old = table.get_item(Key=tk.wallet_key("acme"), ConsistentRead=True)["Item"]
    authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": key}, epoch_ms=NOW_MS))
    new = table.get_item(Key=tk.wallet_key("acme"), ConsistentRead=True)["Item"]
    bus = Bus()

    process(store, bus, old, new, at=NOW, now=NOW, top_up=lambda c, x, n: charge(store, client, c, x, now=n))

    assert [(a.detail["failure"], a.detail["suspended"]) for a in bus.published] == [("no_saved_card", False)]
    assert double.payment_intents == {}
    assert store.get_customer("acme").status is CustomerStatus.ACTIVE


def test_the_charge_is_idempotent_per_crossing_and_a_new_crossing_is_a_new_charge(wallet: Wallet) -> None:
    first = charge(wallet.store, wallet.client, "acme", "10", now=NOW)
    again = charge(wallet.store, wallet.client, "acme", "10", now=NOW)
    later = charge(wallet.store, wallet.client, "acme", "110", now=NOW)

    assert first.payment_intent == again.payment_intent != later.payment_intent
    assert idempotency_key("acme", "10") == "tollgate-auto-top-up-acme-10"
    assert wallet.store.read_balance("acme").credits == 210  # 10, and two top-ups of 100


def test_the_provider_turns_it_on_and_off_from_the_cli(wallet: Wallet) -> None:
    def cli(*args: str) -> Any:
        return CliRunner().invoke(
            app, ["credits", "auto-top-up", "acme", *args], obj=AppContext(clock=lambda: NOW)
        )

    on = cli("--below", "1000", "--credits", "50000", "--suspend-on-failure")
    assert on.exit_code == 0
    assert "50,000 credits charged to the saved card when the balance falls below 1,000" in on.output
    assert wallet.store.get_customer("acme").auto_top_up == AutoTopUp(
        below=1000, credits=50_000, suspend_on_failure=True
    )
    assert cli("--below", "1000").exit_code != 0  # both, or --off
    assert cli("--off").output == "acme: no automatic top-up\n"
    assert wallet.store.get_customer("acme").auto_top_up is None


def test_only_a_prepaid_customer_can_have_one(store: TollgateStore) -> None:
    arrears = make_plan(id="payg", name="PAYG")
    store.put_plan(arrears)
    store.put_customer(make_customer(arrears, stripe_customer_id="cus_1"))

    with pytest.raises(InvalidInputError, match="billed in arrears"):
        set_auto_top_up(store, "acme", REFILL)


def test_stripes_payment_intent_succeeded_adds_the_credits_of_a_charge_once(wallet: Wallet) -> None:
    from tollgate.billing.webhooks.processing import process_event

    outcome = charge(wallet.store, wallet.client, "acme", "10", now=NOW)
    assert outcome.payment_intent is not None
    event = wallet.double.payment_intent_event(outcome.payment_intent)
    assert event["type"] == "payment_intent.succeeded"
    grace = timedelta(days=7)

    duplicate = process_event(wallet.store, event, now=NOW, grace=grace)  # the charge added them already
    assert (duplicate.result, wallet.store.read_balance("acme").credits) == ("duplicate", 110)

    wallet.store.table.delete_item(Key={tk.PK: "CUSTOMER#acme", tk.SK: f"TOPUP#{outcome.payment_intent}"})
    wallet.store.table.update_item(  # as if the charge had still been processing when it was made
        Key=tk.wallet_key("acme"), UpdateExpression="ADD balance :minus, bought :minus",
        ExpressionAttributeValues={":minus": -100},
    )  # fmt: skip
    redelivered = dict(event, id="evt_again")
    applied = process_event(wallet.store, redelivered, now=NOW, grace=grace)
    again = process_event(wallet.store, redelivered, now=NOW, grace=grace)

    assert (applied.result, again.result) == ("applied", "duplicate")
    assert wallet.store.read_balance("acme").credits == 110
    assert wallet.store.get_top_up("acme", outcome.payment_intent).source is TopUpSource.AUTO


def test_a_payment_intent_that_is_not_an_automatic_top_up_is_ignored(wallet: Wallet) -> None:
    from tollgate.billing.webhooks.processing import process_event

    stranger = {
        "id": "evt_1",
        "type": "payment_intent.succeeded",
        "created": int(NOW.timestamp()),
        "data": {"object": {"id": "pi_other", "object": "payment_intent", "metadata": {}, "amount": 500}},
    }

    outcome = process_event(wallet.store, stranger, now=NOW, grace=timedelta(days=7))

    assert outcome.result == "ignored"
    assert wallet.store.read_balance("acme").credits == 10
