"""Prepaid credits on Amazon DynamoDB Local: each request draws its credits from the customer's balance in the
one conditional write that counts it; a request the balance cannot cover is refused, never overdrawn, exact
under concurrency; a top-up lands once per reference; the close shows what was drawn and bills nothing."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from tests.conftest import NOW, TABLE, Authorizer, make_authorizer, make_customer, make_plan
from tests.events import http_event, rest_event
from tollgate.accounts.keys import issue_key
from tollgate.accounts.plan_changes import change_plan
from tollgate.accounts.prepaid import add_credits
from tollgate.billing.close import steps
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.domain.models import Plan
from tollgate.domain.rating import LineKind
from tollgate.errors import InvalidInputError
from tollgate.metering.dynamo import DynamoUsageCounter

pytestmark = pytest.mark.dynamodb_local

NOW_MS = int(NOW.timestamp() * 1000)
PERIOD = "2026-11"
TOP_UP_URL = "https://api.example.test/billing/credits"
PREPAID = make_plan(
    id="credits",
    name="Credits",
    billing="prepaid",
    price_per_credit=Decimal("0.002"),
    top_up_url=TOP_UP_URL,
)


def prepaid_customer(store: TollgateStore, customer_id: str = "acme", plan: Plan = PREPAID) -> str:
    if plan.id not in {p.id for p in store.list_plans()}:
        store.put_plan(plan)
    store.put_customer(make_customer(plan, id=customer_id, stripe_customer_id=f"cus_{customer_id}"))
    return issue_key(store, customer_id, now=NOW - timedelta(days=1)).key


def rest(
    authorizer: Authorizer, key: str, method: str = "GET", resource: str = "/v1/search", **kw: Any
) -> Any:
    return authorizer(rest_event(method, resource, headers={"x-api-key": key}, epoch_ms=kw.pop("at", NOW_MS)))


def allowed(answer: dict[str, Any]) -> bool:
    if "isAuthorized" in answer:
        return bool(answer["isAuthorized"])
    return bool(answer["policyDocument"]["Statement"][0]["Effect"] == "Allow")


def test_each_request_draws_its_credits_and_one_the_balance_cannot_cover_is_refused(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = prepaid_customer(store)
    add_credits(store, "acme", credits=30, reference="pi_1", now=NOW)

    generate = rest(authorizer, key, "POST", "/v1/generate")  # 25 credits
    assert allowed(generate)
    assert generate["context"]["creditsLeft"] == 5
    assert "creditsUsed" not in generate["context"]
    for left in range(4, -1, -1):
        answer = rest(authorizer, key)  # 1 credit
        assert allowed(answer)
        assert answer["context"]["creditsLeft"] == left
    refused = rest(authorizer, key)

    assert not allowed(refused)
    assert refused["context"]["reason"] == "insufficient_credits"
    assert refused["context"]["payUrl"] == TOP_UP_URL
    assert allowed(rest(authorizer, key, "GET", "/usage"))  # a free route needs no credits
    assert store.read_balance("acme").credits == 0
    usage = store.read_usage("acme", PERIOD)
    assert (usage.credits, usage.requests) == (30, 7)  # the refused request is not counted
    assert usage.routes["POST /v1/generate"].credits == 25
    assert usage.routes["GET /v1/search"].requests == 5
    assert usage.segments == {1: 30}
    items = boto3.resource("dynamodb").Table(TABLE).scan()["Items"]
    assert not [item for item in items if item["pk"].startswith("USAGE#")]  # counted on the wallet only


def test_a_customer_who_never_bought_credits_is_refused_paid_routes_not_free_ones(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = prepaid_customer(store)

    refused = authorizer(http_event("GET /v1/search", headers={"x-api-key": key}, epoch_ms=NOW_MS))

    assert refused["isAuthorized"] is False
    assert refused["context"]["reason"] == "insufficient_credits"
    assert allowed(rest(authorizer, key, "GET", "/usage"))
    assert store.read_balance("acme").credits == 0
    assert store.read_usage("acme", PERIOD).requests == 1


def test_concurrent_requests_never_overdraw_and_draw_exactly_what_they_were_allowed(
    store: TollgateStore,
) -> None:
    key = prepaid_customer(store)
    add_credits(store, "acme", credits=1_000, reference="pi_big", now=NOW)
    allowed_credits: list[int] = []
    refused_costs: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def client(seed: int) -> None:
        authorizer = make_authorizer()  # each thread an execution environment of its own
        chooser = random.Random(seed)
        start.wait()
        for _ in range(60):
            route, cost = chooser.choice([(("GET", "/v1/search"), 1), (("POST", "/v1/generate"), 25)])
            answer = rest(authorizer, key, *route)
            with lock:
                (allowed_credits if allowed(answer) else refused_costs).append(cost)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    balance = store.read_balance("acme")
    assert balance.credits >= 0
    assert balance.credits + sum(allowed_credits) == 1_000  # drawn == allowed x cost
    assert store.read_usage("acme", PERIOD).credits == sum(allowed_credits)
    assert refused_costs  # the demand was far above the balance
    # The balance only fell: every refusal saw a balance below its cost, so the end balance is too.
    assert balance.credits < min(refused_costs)


def test_a_top_up_lands_once_per_reference(store: TollgateStore) -> None:
    prepaid_customer(store)

    first = add_credits(store, "acme", credits=500, reference="pi_2", now=NOW, note="card")
    again = add_credits(store, "acme", credits=500, reference="pi_2", now=NOW + timedelta(minutes=5))

    assert (first.added, again.added) == (True, False)
    assert again.top_up.created_at == NOW  # the one recorded the first time
    assert again.balance.credits == 500
    with pytest.raises(InvalidInputError, match="already added 500 credits"):
        add_credits(store, "acme", credits=800, reference="pi_2", now=NOW)
    add_credits(store, "acme", credits=200, reference="pi_3", now=NOW)
    assert [(t.reference, t.credits) for t in store.list_top_ups("acme")] == [("pi_2", 500), ("pi_3", 200)]
    balance = store.read_balance("acme")
    assert (balance.credits, balance.bought, balance.drawn) == (700, 700, 0)


@pytest.mark.parametrize(
    ("credits", "reference", "problem"),
    [(0, "pi_4", "credits"), (10, "has space", "reference"), (10, "", "reference")],
)
def test_a_malformed_top_up_is_refused_and_changes_nothing(
    store: TollgateStore, credits: int, reference: str, problem: str
) -> None:
    prepaid_customer(store)

    with pytest.raises(InvalidInputError, match=problem):
        add_credits(store, "acme", credits=credits, reference=reference, now=NOW)

    assert store.read_balance("acme").bought == 0
    assert store.list_top_ups("acme") == []


def test_credits_are_added_only_to_a_prepaid_customer(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))

    with pytest.raises(InvalidInputError, match="billed in arrears"):
        add_credits(store, "acme", credits=10, reference="pi_5", now=NOW)
    assert store.read_balance("acme").bought == 0


def test_each_period_counts_its_own_requests_on_the_one_balance(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="pi_6", now=NOW)
    last_second = int(datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC).timestamp() * 1000)
    next_month = int(datetime(2026, 12, 1, tzinfo=UTC).timestamp() * 1000)

    assert allowed(rest(authorizer, key, "POST", "/v1/generate", at=last_second))
    assert allowed(rest(authorizer, key, at=next_month))
    assert allowed(rest(authorizer, key, at=next_month + 1))

    november, december = store.read_usage("acme", "2026-11"), store.read_usage("acme", "2026-12")
    assert (november.credits, november.requests) == (25, 1)
    assert (december.credits, december.requests) == (2, 2)
    assert store.read_balance("acme").credits == 73


def test_the_close_shows_what_was_drawn_and_bills_nothing(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = prepaid_customer(store)
    add_credits(store, "acme", credits=100, reference="pi_7", now=NOW)
    for _ in range(3):
        rest(authorizer, key, "POST", "/v1/generate")

    context = steps.CloseContext(DynamoLedger(store), None, "acme", PERIOD, datetime(2026, 12, 2, tzinfo=UTC))  # type: ignore[arg-type]
    record = steps.rated_record(context).record

    assert record.status is CloseStatus.NO_CHARGE
    assert record.total == 0
    (line,) = record.statement.lines
    assert (line.kind, line.quantity, line.amount) == (LineKind.PREPAID, 75, 0)
    assert "75 credits drawn from the prepaid balance" in line.description
    assert record.billed_credits == 75


def test_billing_changes_between_arrears_and_prepaid_only_at_a_periods_end(store: TollgateStore) -> None:
    arrears = store.put_plan(make_plan())
    store.put_plan(PREPAID)
    store.put_customer(make_customer(arrears))

    with pytest.raises(InvalidInputError, match="at the period's end"):
        change_plan(store, "acme", PREPAID.id, now=NOW)
    change = change_plan(store, "acme", PREPAID.id, now=NOW, at_period_end=True)

    assert change.segment.since == datetime(2026, 12, 1, tzinfo=UTC)


def test_a_sharded_customer_cannot_move_to_a_prepaid_plan(store: TollgateStore) -> None:
    arrears = store.put_plan(make_plan())
    store.put_plan(PREPAID)
    store.put_customer(make_customer(arrears, counter_shards=4))

    with pytest.raises(InvalidInputError, match="prepaid: its balance is drawn on one item"):
        change_plan(store, "acme", PREPAID.id, now=NOW, at_period_end=True)


def test_the_cli_adds_credits_once_and_shows_the_balance(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = prepaid_customer(store)
    runner = CliRunner()

    def cli(*args: str) -> Any:
        return runner.invoke(app, list(args), obj=AppContext(clock=lambda: NOW), env={"COLUMNS": "200"})

    added = cli("credits", "add", "acme", "--credits", "50", "--reference", "wire-2026-11-15")
    again = cli("credits", "add", "acme", "--credits", "50", "--reference", "wire-2026-11-15")
    rest(authorizer, key, "POST", "/v1/generate")
    shown = cli("credits", "show", "acme")

    assert added.exit_code == 0, added.output
    assert "added 50 credits to acme (wire-2026-11-15); balance 50 credits" in added.output
    assert "already added (nothing changed)" in again.output
    assert "balance 25 credits (50 bought, 25 drawn; 25 in 2026-11)" in shown.output
    assert "wire-2026-11-15" in shown.output
    refused = cli("credits", "add", "acme", "--credits", "5", "--reference", "bad ref")
    assert refused.exit_code != 0
    assert "reference" in refused.output
    assert store.read_balance("acme").bought == 50


def test_the_close_drops_wallet_counters_late_usage_can_no_longer_reach(store: TollgateStore) -> None:
    prepaid_customer(store)
    add_credits(store, "acme", credits=1_000, reference="pi_8", now=NOW)
    counter = DynamoUsageCounter(boto3.client("dynamodb"), TABLE)
    for period in ("2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"):
        counter.draw("acme", period, "GET /v1/search", 10, day=1)
    after = datetime(2026, 12, 2, tzinfo=UTC)

    record = close_customer(DynamoLedger(store), None, "acme", PERIOD, now=after)  # type: ignore[arg-type]
    close_customer(DynamoLedger(store), None, "acme", PERIOD, now=after)  # type: ignore[arg-type]

    assert record.status is CloseStatus.NO_CHARGE
    wallet = (
        boto3.resource("dynamodb").Table(TABLE).get_item(Key={"pk": "WALLET#acme", "sk": "WALLET"})["Item"]
    )
    assert {name[:4] for name in wallet if name[:4].isdigit()} == {"2608", "2609", "2610", "2611"}
    assert (wallet["balance"], wallet["bought"]) == (940, 1_000)
    assert store.read_usage("acme", "2026-08").credits == 10  # the lookback's periods are still read
    assert store.read_usage("acme", "2026-07").credits == 0
