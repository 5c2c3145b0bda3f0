"""Expiring prepaid credits on Amazon DynamoDB Local: a pack bought through a Stripe Checkout Session
expires counted from when Stripe says it is paid; the sweep expires exactly what is left of each lot
(credits are drawn soonest-expiring first), once, however often and however many sweeps run, while requests
draw the balance.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.conditions import Key
from typer.testing import CliRunner

from tests.conftest import CONTEXT, NOW, TABLE, make_authorizer, make_customer, make_plan
from tests.integration.test_prepaid import allowed, rest
from tests.integration.test_webhooks import SECRET, function_url_event, sign, webhook_handler
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits, buy_credits
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore
from tollgate.domain.prepaid import TopUpSource
from tollgate.errors import InvalidInputError
from tollgate.expiry import handler as expiry_handler
from tollgate.expiry.service import expiring_soon, settle_due_lots, sweep
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate.usage_api.report import build_usage_report
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local

DAY = timedelta(days=1)
PAID_AT = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # when the Stripe double says the session was paid
PREPAID = make_plan(
    id="credits",
    name="Credits",
    billing="prepaid",
    price_per_credit=Decimal("0.002"),
    top_up_url="https://api.example.test/billing/credits",
    credit_packs=[
        {"id": "month", "credits": 1_000, "expires_after_days": 30},
        {"id": "forever", "credits": 500},
    ],
)


def prepaid_customer(store: TollgateStore, customer_id: str = "acme", stripe_id: str | None = None) -> str:
    """A prepaid customer on PREPAID and an API key of theirs."""
    if PREPAID.id not in {plan.id for plan in store.list_plans()}:
        store.put_plan(PREPAID)
    store.put_customer(
        make_customer(PREPAID, id=customer_id, stripe_customer_id=stripe_id or f"cus_{customer_id}")
    )
    return issue_key(store, customer_id, now=NOW - 60 * DAY).key


def raw_item(key: dict[str, str]) -> dict[str, Any]:
    return dict(boto3.resource("dynamodb").Table(TABLE).get_item(Key=key, ConsistentRead=True)["Item"])


def index_entries() -> list[dict[str, Any]]:
    """The index of expiring lots, as the sweep queries it."""
    table = boto3.resource("dynamodb").Table(TABLE)
    answer = table.query(
        IndexName=tk.GSI1,
        KeyConditionExpression=Key(tk.GSI1_PK).eq(tk.EXPIRING_INDEX_PK),
    )
    return list(answer["Items"])


def cells(line: str) -> list[str]:
    """The cells of a row of a table the CLI printed."""
    return [cell.strip() for cell in line.split("│") if cell.strip()]


def draw(store: TollgateStore, credits: int, customer_id: str = "acme") -> None:
    """The authorizer's write for a request of ``credits`` (in November 2026)."""
    DynamoUsageCounter(boto3.client("dynamodb"), store.table_name).draw(
        customer_id, "2026-11", "GET /v1/search", credits, day=30
    )


# -- buying a pack -------------------------------------------------------------------------------------------
@pytest.fixture
def paid_double() -> Iterator[StripeDouble]:
    """The Stripe double, its clock at PAID_AT (so its events are created then)."""
    with StripeDouble(clock=lambda: PAID_AT.timestamp()) as running:
        yield running


def deliver(store: TollgateStore, event: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    handler = webhook_handler(store, [PAID_AT + timedelta(minutes=2)])
    body = json.dumps(event)
    answer = handler(function_url_event(body, {"Stripe-Signature": sign(body)}), CONTEXT)
    return dict(json.loads(answer["body"]), status=answer["statusCode"])


def test_a_pack_bought_through_checkout_expires_counted_from_when_stripe_said_it_was_paid(
    store: TollgateStore, paid_double: StripeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_customer = paid_double.client().v1.customers.create(params={"name": "Acme"})
    prepaid_customer(store, stripe_id=stripe_customer.id)

    purchase = buy_credits(store, paid_double.client(), "acme", pack="month", purchase_id="p1")

    assert (purchase.credits, purchase.amount, purchase.pack and purchase.pack.id) == (1_000, 200, "month")
    session = paid_double.checkout_sessions[purchase.session_id]
    assert session["metadata"]["tollgate_pack"] == "month"
    assert session["metadata"]["tollgate_expires_in_days"] == "30"
    (create,) = [call for call in paid_double.calls if call.operation.startswith("checkout")]
    (line,) = create.params["line_items"]
    assert line["price_data"]["product_data"]["name"] == "1,000 API credits, valid 30 days (Credits)"
    assert store.read_balance("acme").credits == 0  # nothing before Stripe says it is paid

    event = paid_double.complete_checkout(purchase.session_id)
    assert deliver(store, event, monkeypatch)["result"] == "applied"
    assert deliver(store, event, monkeypatch)["result"] == "duplicate"  # replayed: the same top-up, once

    (top_up,) = store.list_top_ups("acme")
    assert (top_up.reference, top_up.source, top_up.pack) == (
        purchase.session_id,
        TopUpSource.CHECKOUT,
        "month",
    )
    assert top_up.created_at == PAID_AT
    assert top_up.expires_at == PAID_AT + 30 * DAY
    assert store.read_balance("acme").credits == 1_000
    item = raw_item(tk.top_up_key("acme", purchase.session_id))
    assert "expires_at" not in item  # the table's TTL attribute: a lot must never be deleted by TTL
    assert item[tk.LOT_EXPIRES_AT] == top_up.model_dump(mode="json")["expires_at"]
    (entry,) = index_entries()
    assert entry[tk.GSI1_SK].startswith("2026-12-01T09:30:00.000000Z#acme#cs_")


def test_a_pack_that_never_expires_and_credits_bought_by_number_are_not_in_the_index(
    store: TollgateStore, paid_double: StripeDouble, monkeypatch: pytest.MonkeyPatch
) -> None:
    stripe_customer = paid_double.client().v1.customers.create(params={"name": "Acme"})
    prepaid_customer(store, stripe_id=stripe_customer.id)

    for purchase in (
        buy_credits(store, paid_double.client(), "acme", pack="forever"),
        buy_credits(store, paid_double.client(), "acme", credits=250),
    ):
        assert (
            "tollgate_expires_in_days" not in paid_double.checkout_sessions[purchase.session_id]["metadata"]
        )
        deliver(store, paid_double.complete_checkout(purchase.session_id), monkeypatch)

    assert sorted((t.credits, t.expires_at) for t in store.list_top_ups("acme")) == [(250, None), (500, None)]
    assert index_entries() == []
    with pytest.raises(InvalidInputError, match="sells no pack 'yearly' \\(its packs: month, forever\\)"):
        buy_credits(store, paid_double.client(), "acme", pack="yearly")
    with pytest.raises(InvalidInputError, match="--credits N or --pack ID"):
        buy_credits(store, paid_double.client(), "acme", credits=10, pack="month")


# -- the sweep -----------------------------------------------------------------------------------------------
def test_the_sweep_expires_exactly_the_unused_part_once(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=1_000, reference="wire-1", now=NOW - 40 * DAY, expires_in_days=30)
    add_credits(store, "acme", credits=300, reference="wire-2", now=NOW - 40 * DAY)  # never expires
    draw(store, 650)
    expiry = NOW - 10 * DAY

    early = sweep(store, now=expiry - timedelta(microseconds=1))
    first = sweep(store, now=expiry)  # due at its expiry exactly
    second = sweep(store, now=NOW)

    assert (early.settled, second.settled) == ([], [])
    assert [(lot.reference, lot.expired) for lot in first.settled] == [("wire-1", 350)]
    balance = store.read_balance("acme")
    assert (balance.credits, balance.bought, balance.expired, balance.drawn) == (300, 1_300, 350, 650)
    lot = store.get_top_up("acme", "wire-1")
    assert (lot.expired_credits, lot.settled_at) == (350, expiry)
    assert index_entries() == []  # settled: out of the index
    assert "gsi1pk" not in raw_item(tk.top_up_key("acme", "wire-1"))
    draw(store, 300)  # what is left is the lot that never expires
    assert store.read_balance("acme").credits == 0


def test_a_used_up_lot_is_settled_with_nothing_expiring(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="a", now=NOW - 40 * DAY, expires_in_days=30)
    add_credits(store, "acme", credits=100, reference="b", now=NOW - 40 * DAY)
    draw(store, 120)

    result = sweep(store, now=NOW)

    assert [(lot.reference, lot.expired) for lot in result.settled] == [("a", 0)]
    assert store.get_top_up("acme", "a").expired_credits == 0
    assert store.read_balance("acme").credits == 80
    assert raw_item(tk.wallet_key("acme"))["expired"] == 0
    assert index_entries() == []


def test_concurrent_sweeps_settle_each_lot_once(store: TollgateStore) -> None:
    customers = [f"c{n}" for n in range(6)]
    for number, customer_id in enumerate(customers):
        prepaid_customer(store, customer_id)
        for lot in range(3):
            add_credits(
                store,
                customer_id,
                credits=100,
                reference=f"lot-{lot}",
                now=NOW - 40 * DAY,
                expires_in_days=10 + lot,
            )
        draw(store, 40 * number, customer_id)
    results: list[Any] = []
    start = threading.Barrier(4)

    def sweeper() -> None:
        start.wait()
        results.append(sweep(store, now=NOW))

    threads = [threading.Thread(target=sweeper) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    settled = sorted((lot.customer_id, lot.reference, lot.expired) for r in results for lot in r.settled)
    assert len(settled) == len({(c, ref) for c, ref, _ in settled}) == 18  # each lot once, by one sweep
    for number, customer_id in enumerate(customers):
        balance = store.read_balance(customer_id)
        assert (balance.credits, balance.expired, balance.drawn) == (0, 300 - 40 * number, 40 * number)
    assert sweep(store, now=NOW).settled == []  # and once more: nothing
    assert index_entries() == []


def test_lots_with_different_expiries_expire_one_by_one_soonest_first(store: TollgateStore) -> None:
    prepaid_customer(store)
    start = NOW - 60 * DAY
    add_credits(store, "acme", credits=500, reference="late", now=start, expires_in_days=50)
    # bought after, expires first
    add_credits(store, "acme", credits=200, reference="soon", now=start + DAY, expires_in_days=20)
    add_credits(store, "acme", credits=100, reference="auto", now=start, source=TopUpSource.AUTO)
    draw(store, 150)  # comes out of "soon" first: it expires first

    assert expiring_soon(store, "acme", start + 2 * DAY) == [(start + 21 * DAY, 50), (start + 50 * DAY, 500)]
    first = sweep(store, now=start + 30 * DAY)
    draw(store, 420)  # now out of "late"
    second = sweep(store, now=start + 55 * DAY)

    assert [(lot.reference, lot.expired) for lot in first.settled] == [("soon", 50)]
    assert [(lot.reference, lot.expired) for lot in second.settled] == [("late", 80)]
    balance = store.read_balance("acme")
    assert (balance.credits, balance.expired, balance.drawn, balance.bought) == (100, 130, 570, 800)
    assert expiring_soon(store, "acme", start + 55 * DAY) == []


def test_requests_drawing_while_the_sweep_runs_never_overdraw_and_draw_what_they_were_allowed(
    store: TollgateStore,
) -> None:
    key = prepaid_customer(store)
    for number in range(4):  # four lots expiring a day apart (6 to 3 days ago), one that never expires
        add_credits(
            store,
            "acme",
            credits=150,
            reference=f"old-{number}",
            now=NOW - 40 * DAY,
            expires_in_days=34 + number,
        )
    add_credits(store, "acme", credits=200, reference="forever", now=NOW - 40 * DAY)
    allowed_credits: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(9)
    lows: list[int] = []

    def client(seed: int) -> None:
        authorizer = make_authorizer()
        start.wait()
        for number in range(30):  # about 80 credits a thread: the balance is not simply drained
            cost = 25 if (seed + number) % 15 == 0 else 1
            answer = rest(authorizer, key, "POST", "/v1/generate") if cost == 25 else rest(authorizer, key)
            if allowed(answer):
                with lock:
                    allowed_credits.append(cost)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    start.wait()
    swept = []
    for step in range(4):  # each lot's sweep lands while the requests draw
        swept.extend(sweep(store, now=NOW - (6 - step) * DAY).settled)
        lows.append(store.read_balance("acme").credits)
    for thread in threads:
        thread.join()

    balance = store.read_balance("acme")
    drawn = sum(allowed_credits)
    assert min([*lows, balance.credits]) >= 0
    assert balance.drawn == drawn  # allowed x cost, exactly
    assert store.read_usage("acme", "2026-11").credits == drawn
    assert balance.expired == sum(lot.expired for lot in swept)
    assert balance.expired + drawn + balance.credits == balance.bought == 800
    assert sorted(lot.reference for lot in swept) == [f"old-{n}" for n in range(4)]
    # every draw before the sweeps would leave less to expire, every draw after them more
    assert max(0, 600 - drawn) <= balance.expired <= 600


def test_a_top_up_racing_the_sweep_makes_it_read_again(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="a", now=NOW - 40 * DAY, expires_in_days=30)
    seen = store.read_balance("acme")
    (lot,) = store.list_top_ups("acme")
    add_credits(store, "acme", credits=50, reference="b", now=NOW)

    assert store.settle_lot(lot, 100, seen=seen, at=NOW).value == "moved"  # bought moved: nothing changed
    assert store.read_balance("acme").credits == 150
    settled, left = settle_due_lots(store, "acme", now=NOW)

    assert ([(s.reference, s.expired) for s in settled], left) == ([("a", 100)], False)
    assert store.settle_lot(lot, 100, seen=store.read_balance("acme"), at=NOW).value == "already"
    assert store.read_balance("acme").credits == 50


# -- the function and the CLI --------------------------------------------------------------------------------
def test_the_hourly_function_sweeps_at_the_schedules_time(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="a", now=NOW - 40 * DAY, expires_in_days=30)
    handle = expiry_handler.make_handler(expiry_handler.Deps(store, clock=lambda: NOW - 50 * DAY))

    answer = handle({"trigger": "schedule", "scheduledTime": "2026-11-15T12:00:00Z"}, CONTEXT)
    scheduled = {"trigger": "schedule", "scheduledTime": "2026-11-15T12:00:00Z"}
    again = handle(scheduled, CONTEXT)  # Lambda's retry
    by_hand = handle({}, CONTEXT)  # the clock: before the expiry

    assert answer["settled"] == [{"customer": "acme", "reference": "a", "expired": 100}]
    assert (answer["creditsExpired"], answer["left"], answer["outOfTime"]) == (100, [], False)
    assert (again["settled"], by_hand["settled"]) == ([], [])
    assert store.get_top_up("acme", "a").settled_at == NOW


def test_a_customer_whose_lots_cannot_be_read_holds_no_one_else_back(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="a", now=NOW - 40 * DAY, expires_in_days=30)
    boto3.resource("dynamodb").Table(TABLE).put_item(  # a lot no model reads, due first
        Item={
            **tk.top_up_key("broken", "x"),
            tk.GSI1_PK: tk.EXPIRING_INDEX_PK,
            tk.GSI1_SK: tk.expiring_lot_sort_key(NOW - 90 * DAY, "broken", "x"),
            "customer_id": "broken",
            "credits": "lots",
        }
    )
    handle = expiry_handler.make_handler(expiry_handler.Deps(store))

    result = sweep(store, now=NOW)
    with pytest.raises(expiry_handler.SweepFailedError, match="1 customer"):
        handle({"scheduledTime": NOW.isoformat()}, CONTEXT)

    assert [(lot.customer_id, lot.expired) for lot in result.settled] == [("acme", 100)]
    assert list(result.failed) == ["broken"]
    assert "ValidationError" in result.failed["broken"]


def test_the_cli_adds_expiring_credits_shows_the_lots_and_expires_them(store: TollgateStore) -> None:
    prepaid_customer(store)
    runner = CliRunner()

    def cli(*args: str, at: datetime = NOW) -> Any:
        result = runner.invoke(app, list(args), obj=AppContext(clock=lambda: at), env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        return result.output

    added = cli(
        "credits", "add", "acme", "--credits", "500", "--reference", "promo-1", "--expires-in-days", "7"
    )
    cli("credits", "add", "acme", "--credits", "100", "--reference", "wire-1")
    draw(store, 200)
    shown = cli("credits", "show", "acme")
    nothing = cli("credits", "expire", "--now", "2026-11-20T00:00")
    expired = cli("credits", "expire", "--now", "2026-11-23")
    after = cli("credits", "show", "acme")

    assert "added 500 credits to acme (promo-1, expiring 2026-11-22 12:00:00 UTC); balance 500" in added
    assert "balance 400 credits (600 bought, 200 drawn; 200 in 2026-11)" in shown
    promo = next(line for line in shown.splitlines() if "promo-1" in line)
    assert cells(promo)[4:7] == ["2026-11-22 12:00:00 UTC", "300", "-"]  # expires then, 300 of it left
    assert "nothing due at 2026-11-20 00:00:00 UTC" in nothing
    assert "1 lot(s) settled at 2026-11-23 00:00:00 UTC, 300 credits expired" in expired
    assert "balance 100 credits (600 bought, 200 drawn, 300 expired; 200 in 2026-11)" in after
    promo = next(line for line in after.splitlines() if "promo-1" in line)
    assert cells(promo)[-3:] == ["-", "300", "-"]  # nothing left, 300 expired, no note
    refused = runner.invoke(
        app,
        ["credits", "add", "acme", "--credits", "5", "--reference", "x", "--expires-in-days", "0"],
        obj=AppContext(clock=lambda: NOW),
    )
    assert refused.exit_code != 0


def test_the_cli_sells_a_pack(store: TollgateStore, double: StripeDouble) -> None:
    stripe_customer = double.client().v1.customers.create(params={"name": "Acme"})
    prepaid_customer(store, stripe_id=stripe_customer.id)

    bought = CliRunner().invoke(
        app,
        ["credits", "buy", "acme", "--pack", "month"],
        obj=AppContext(clock=lambda: NOW, _stripe=double.client()),
        env={"COLUMNS": "200"},
    )

    assert bought.exit_code == 0, bought.output
    (session_id,) = double.checkout_sessions
    assert "pack month: 1,000 credits (valid 30 days once paid) for 2.00 USD" in bought.output
    assert session_id in bought.output


def test_the_customers_usage_report_says_what_expires_when(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=1_000, reference="wire-1", now=NOW - DAY, expires_in_days=30)
    add_credits(store, "acme", credits=500, reference="wire-2", now=NOW - DAY, expires_in_days=10)
    add_credits(store, "acme", credits=300, reference="wire-3", now=NOW - DAY)  # never expires
    draw(store, 600)  # the lot expiring soonest first: wire-2's 500, then 100 of wire-1

    report = build_usage_report(store, "acme", now=NOW)

    assert report.prepaid is not None
    assert [(e.expires_at, e.credits) for e in report.prepaid.expiring] == [(NOW + 29 * DAY, 900)]
