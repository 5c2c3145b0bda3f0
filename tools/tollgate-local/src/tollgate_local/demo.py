"""``make demo``: the whole billing cycle, offline, in under a minute.

Four plans (pay-as-you-go with a cap, pay-as-you-go, hybrid with a base fee and included credits, and
pay-as-you-go that bills only what succeeded), four customers, their keys, a few thousand real HTTP requests
through the local gateway, one customer upgraded mid-month (its usage split exactly at the change, base fees
and included credits prorated), live usage, a revoked key and an over-cap request refused, failed requests
refunded off the delivered ledger, the period close, and each customer's invoice, checked against what the
requests should cost.
"""

from __future__ import annotations

import http.client
import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from rich.console import Console, Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from tollgate.accounts.keys import IssuedKey, issue_key, revoke_key
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertRule, Plan
from tollgate.domain.money import format_amount
from tollgate.domain.periods import period_end, period_of, period_start, previous_period
from tollgate.domain.rating import FreeCredits, PlanPart, rate_parts, rate_period

if TYPE_CHECKING:
    from stripe import StripeClient

ROUTE_COSTS = {
    "GET /v1/search": 1,
    "POST /v1/generate": 25,
    "GET /usage": 0,
    "GET /usage/export": 0,
    "GET /usage/page": 0,
    "ANY /usage/budget": 0,
    "ANY /usage/alerts": 0,
    "ANY /usage/alerts/webhook": 0,
}
# (GET /v1/items/{id}: the default cost, 1)
# Requests per customer and route at scale 1: about two thousand in all.
TRAFFIC: dict[str, dict[tuple[str, str], int]] = {
    "acme": {("GET", "/v1/search"): 600, ("POST", "/v1/generate"): 120},
    "globex": {("GET", "/v1/search"): 800, ("POST", "/v1/generate"): 300, ("GET", "/v1/items/7"): 100},
    "initech": {("GET", "/v1/search"): 300, ("POST", "/v1/generate"): 120},  # before its upgrade, and after
    "vandelay": {("GET", "/v1/search"): 150, ("POST", "/v1/generate"): 30},  # and FAILING's, later
}
SCREENSHOT_DIR = Path("build") / "demo"  # make demo's screenshots, under the checkout's build/
UPGRADED = "initech"  # moves from its pay-as-you-go plan to globex's hybrid plan mid-month
WELCOMED = "globex"  # gets a sign-up bonus of free credits and a launch coupon
BONUS = FreeCredits("sign-up", "sign-up bonus", 200)  # credits
COUPON = {"id": "LAUNCH20", "name": "Launch offer", "percent_off": 20, "duration": "once"}
REFUNDED = "vandelay"  # its plan bills only what succeeded: requests that end in a 5xx are refunded
# Requests of REFUNDED's at scale 1 that the sample backend fails on request (?fail=STATUS), by (method, path,
# status): the 5xx are refunded once the ledger is delivered, the 429s are billed (the plan refunds 5xx only).
FAILING: dict[tuple[str, str, int], int] = {
    ("GET", "/v1/search", 503): 40,
    ("POST", "/v1/generate", 500): 8,
    ("GET", "/v1/search", 429): 10,
}


def scaled_traffic(scale: float) -> dict[str, dict[tuple[str, str], int]]:
    return {
        cid: {call: max(1, round(n * scale)) for call, n in calls.items()} for cid, calls in TRAFFIC.items()
    }


def scaled_failures(scale: float) -> dict[tuple[str, str, int], int]:
    return {call: max(1, round(n * scale)) for call, n in FAILING.items()}


def credits_of(plan: Plan, calls: dict[tuple[str, str], int]) -> int:
    """What the traffic costs under ``plan``, from the plan's route table alone (not from the counters)."""
    return sum(
        (plan.cost_of(f"{method} {template_of(path)}") or 0) * n for (method, path), n in calls.items()
    )


def billable_credits(plan: Plan, calls: dict[tuple[str, str], int]) -> int:
    """The credits the traffic should be billed for: requests past the plan's cap are refused, not counted."""
    credits = credits_of(plan, calls)
    return credits if plan.credit_limit is None else min(credits, plan.credit_limit)


def refunded_credits(plan: Plan, failures: dict[tuple[str, str, int], int]) -> int:
    """The credits of the failed requests ``plan`` refunds (its ``refund_statuses``), from its route table."""
    from tollgate.domain.refunds import status_matches

    return sum(
        (plan.cost_of(f"{method} {template_of(path)}") or 0) * n
        for (method, path, status), n in failures.items()
        if status_matches(status, plan.refund_statuses)
    )


def failed_calls(failures: dict[tuple[str, str, int], int]) -> dict[tuple[str, str], int]:
    """The failed requests by route, whatever their status: what the authorizer counted of them."""
    calls: Counter[tuple[str, str]] = Counter()
    for (method, path, _), n in failures.items():
        calls[(method, path)] += n
    return dict(calls)


def demo_plans(traffic: dict[str, dict[tuple[str, str], int]]) -> dict[str, Plan]:
    """Acme: pay as you go, capped exactly where its traffic ends. Globex: hybrid, past its included
    credits. Vandelay: pay as you go, its 5xx refunded."""
    payg = Plan(
        id="starter",
        name="Starter (pay as you go)",
        price_per_credit=Decimal("0.002"),
        route_costs=ROUTE_COSTS,
    )
    payg = Plan.model_validate(  # alerts at 80% and 100% of the cap (tollgate.domain.alerts)
        {
            **payg.model_dump(),
            "credit_limit": credits_of(payg, traffic["acme"]),
            "alerts": [{"cap_percent": 80}, {"cap_percent": 100}],
        }
    )
    hybrid = Plan(
        id="pro",
        name="Pro (hybrid)",
        price_per_credit=Decimal("0.0015"),
        base_fee=Decimal("49.00"),
        included_credits=credits_of(payg, traffic["globex"]) // 2,
        route_costs=ROUTE_COSTS,
        alerts=(AlertRule(included_percent=100),),
    )
    basic = Plan(
        id="basic", name="Basic (pay as you go)", price_per_credit=Decimal("0.003"), route_costs=ROUTE_COSTS
    )
    reliable = Plan(
        id="reliable",
        name="Reliable (pay as you go, 5xx refunded)",
        price_per_credit=Decimal("0.0025"),
        route_costs=ROUTE_COSTS,
        refund_statuses=("5xx",),
    )
    return {"acme": payg, "globex": hybrid, UPGRADED: basic, REFUNDED: reliable}


@dataclass(frozen=True)
class DemoInvoice:
    customer_id: str
    expected_total: int
    invoiced_total: int  # Stripe's subtotal: before its discounts and tax, what the statement totals
    total_due: int  # after Stripe's discounts
    hosted_invoice_url: str | None


class Client:
    """A keep-alive HTTP client per thread, like a customer's SDK."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)

    def call(self, method: str, path: str, key: str | None) -> tuple[int, dict[str, object]]:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["x-api-key"] = key
        self._conn.request(method, path, body="{}" if method == "POST" else None, headers=headers)
        answer = self._conn.getresponse()
        return answer.status, json.loads(answer.read() or b"{}")

    def close(self) -> None:
        self._conn.close()


def send(
    base_url: str, key: str, calls: list[tuple[str, str]], progress: Progress, task: TaskID
) -> Counter[int]:
    client, statuses = Client(base_url), Counter[int]()
    try:
        for method, path in calls:
            status, _ = client.call(method, path, key)
            statuses[status] += 1
            progress.advance(task)
    finally:
        client.close()
    return statuses


def run(
    console: Console | None = None,
    *,
    scale: float = 1.0,
    threads: int = 4,
    dynamodb_url: str | None = None,
    screenshot_dir: Path = SCREENSHOT_DIR,
) -> list[DemoInvoice]:
    """Tell the story; return each customer's invoice with the total the requests should have cost.
    ``dynamodb_url``: a DynamoDB Local already running (the tests'), else one is started and stopped here.
    ``screenshot_dir``: where the usage page's screenshot goes."""
    from tollgate_local.services import local_stack

    console = console or Console()
    started = time.monotonic()
    now = datetime.now(UTC)
    period = previous_period(period_of(now))
    business_time = period_start(period) + timedelta(days=14, hours=9)  # requests are stamped mid-period
    shift = [business_time.timestamp() - time.time()]  # the gateway's clock: the demo moves it on once
    traffic = scaled_traffic(scale)
    failures = scaled_failures(scale)
    plans = demo_plans(traffic)

    with local_stack(clock=lambda: time.time() + shift[0], dynamodb_url=dynamodb_url) as stack:
        stripe_where = f"double {stack.stripe_base}" if stack.stripe_base else "test mode (STRIPE_API_KEY)"
        console.print(
            Panel.fit(
                f"DynamoDB Local {stack.dynamodb_url} (listens on every interface, on a random port)\n"
                f"Stripe {stripe_where}\n"
                f"API gateway {stack.gateway_url}\n"
                f"Requests are stamped {business_time:%Y-%m-%d} so that period {period} can be closed now.",
                title="Tollgate local mode: every service reached on 127.0.0.1",
            )
        )
        from tollgate.billing.settings import StripeSettings
        from tollgate.billing.stripe_client import stripe_client_from

        store, stripe = TollgateStore(stack.table), stripe_client_from(StripeSettings.from_env())
        console.rule("1. Plans")
        for plan in plans.values():
            store.put_plan(plan)
        console.print(plans_table(list(plans.values())))

        console.rule("2. Customers and their API keys")
        issued = create_customers(store, stripe, plans, now=business_time - timedelta(days=14))
        keys = {cid: key.key for cid, key in issued.items()}
        width = max(map(len, issued))
        for customer_id, key in issued.items():
            plan_id = plans[customer_id].id
            console.print(
                f"  {customer_id:{width}} on {plan_id:8} key {key.record.display_prefix}… (shown once)"
            )
        welcome(store, stripe, period, now=business_time - timedelta(days=14))
        console.print(
            f"  {WELCOMED} gets {BONUS.credits:,} free credits ({BONUS.description}) and coupon "
            f"{COUPON['id']} ({COUPON['percent_off']}% off its first invoice)"
        )

        console.rule("3. Traffic: real HTTP requests through the gateway")
        jobs = {cid: [call for call, n in calls.items() for _ in range(n)] for cid, calls in traffic.items()}
        total = sum(len(calls) for calls in jobs.values())
        statuses: Counter[int] = Counter()
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task("requests", total=total)
            with ThreadPoolExecutor(max_workers=threads) as pool:
                futures = [
                    pool.submit(send, stack.gateway_url, keys[cid], calls[i :: threads // 2], progress, task)
                    for cid, calls in jobs.items()
                    for i in range(threads // 2)
                ]
                for future in futures:
                    statuses.update(future.result())
        console.print(
            f"  {total:,} requests: " + ", ".join(f"{n:,} x HTTP {s}" for s, n in sorted(statuses.items()))
        )

        console.rule(f"4. A mid-month upgrade: {UPGRADED} moves to {plans['globex'].name}")
        upgrade = upgrade_mid_month(
            store, stack.gateway_url, keys[UPGRADED], traffic[UPGRADED], shift, console
        )

        console.rule("5. Live usage (GET /usage, 0 credits)")
        client = Client(stack.gateway_url)
        for customer_id in traffic:
            status, body = client.call("GET", f"/usage?period={period}", keys[customer_id])
            console.print(f"  {customer_id}: HTTP {status}")
            console.print_json(json.dumps(body))

        console.rule("6. Refusals")
        status, body = client.call("GET", "/v1/search", keys["acme"])
        console.print(f"  acme over its cap          → HTTP {status} {body.get('error')}")
        spare = issue_key(store, "globex", now=business_time, name="laptop")
        revoke_key(store, "globex", spare.record.key_id, now=business_time)
        status, body = client.call("GET", "/v1/search", spare.key)
        console.print(f"  globex with a revoked key  → HTTP {status} {body.get('error')}")
        status, body = client.call("GET", "/v1/search", "tg_live_not-a-real-key")
        console.print(f"  a malformed key            → HTTP {status} {body.get('error')}")
        client.close()

        console.rule("7. Usage alerts: the table's stream -> the alert function -> EventBridge")
        stack.stream.drain()
        for event in stack.alerts.events:
            detail = event["detail"]
            console.print(f"  {event['detail-type']}: {detail['alertId']}", markup=False)
            console.print(f"    at {detail['threshold']}", markup=False)

        console.rule(f"8. Bill only what succeeded: {REFUNDED}'s plan refunds requests that end in a 5xx")
        refund_story(store, stack, keys[REFUNDED], failures, period, plans[REFUNDED], console=console)

        console.rule(f"9. Closing period {period}")
        expected = {
            cid: rate_period(plan, cid, period, billable_credits(plan, traffic[cid])).total
            for cid, plan in plans.items()
        }
        whole = PlanPart(1, plans[WELCOMED], period_start(period), period_end(period), 0)
        credits = billable_credits(plans[WELCOMED], traffic[WELCOMED])
        expected[WELCOMED] = rate_parts(
            [replace(whole, credits=credits)], WELCOMED, period, (), [BONUS]
        ).total
        basic, pro, calls = plans[UPGRADED], plans["globex"], traffic[UPGRADED]
        expected[UPGRADED] = rate_parts(  # each plan's share of the period, and of the requests
            [
                PlanPart(1, basic, period_start(period), upgrade, credits_of(basic, calls)),
                PlanPart(2, pro, upgrade, period_end(period), credits_of(pro, calls)),
            ],
            UPGRADED,
            period,
        ).total
        refunding = plans[REFUNDED]  # billed: what succeeded, and what failed but is not refunded
        failed = credits_of(refunding, failed_calls(failures))  # what the authorizer counted of the failures
        billed = (
            billable_credits(refunding, traffic[REFUNDED]) + failed - refunded_credits(refunding, failures)
        )
        expected[REFUNDED] = rate_period(refunding, REFUNDED, period, billed).total
        invoices = close_and_check(store, stripe, period, plans, expected, console)

        console.rule("10. Prepaid credits: refused at zero, bought through Checkout, topped up automatically")
        prepaid_story(store, stripe, stack, now=business_time, console=console)

        console.rule("11. Progressive billing: usage invoiced as soon as $5.00 of it is unbilled")
        shift[0] = 0.0  # this story happens now, in the current period
        threshold_story(store, stripe, stack, now=datetime.now(UTC), console=console)

        console.rule(f"12. Reconciliation of {period}: counters = request ledger = invoices")
        if not reconcile_story(store, stack, period, console=console):
            console.print("[bold red]The reconciliation flagged a difference: see the table.[/bold red]")

        console.rule(f"13. {WELCOMED}'s usage page: a signed link, no API key")
        usage_page_story(stack, period, screenshot_dir, console=console)
    console.print(f"[bold]Done in {time.monotonic() - started:.1f} s.[/bold] Every service stopped.")
    return invoices


def refund_story(
    store: TollgateStore,
    stack: Any,
    key: str,
    failures: dict[tuple[str, str, int], int],
    period: str,
    plan: Plan,
    *,
    console: Console,
) -> None:
    """Requests the sample backend fails (``?fail=503``): the authorizer counted them, the gateway logged
    what the caller got; the ledger's delivery (Firehose's 300 s buffer in AWS, 1 s here: ``flush()`` waits
    for it) refunds those the plan refunds, once per request: delivered again, nothing more."""
    from tollgate.dal.refunds import RefundLedger

    client, statuses = Client(stack.gateway_url), Counter[int]()
    try:
        for (method, path, status), n in failures.items():
            for _ in range(n):
                statuses[client.call(method, f"{path}?fail={status}", key)[0]] += 1
    finally:
        client.close()
    answered = ", ".join(f"{n:,} x HTTP {s}" for s, n in sorted(statuses.items()))
    refunds_what = ", ".join(plan.refund_statuses)
    console.print(
        f"  {REFUNDED} on {plan.id} (refunds {refunds_what}): {sum(statuses.values()):,} requests the "
        f"backend failed on request ({answered}); the authorizer counted each",
        soft_wrap=True,
    )
    stack.deliveries.flush()  # the ledger delivered now, rather than on the delivery's next tick
    markers = RefundLedger(store).list(REFUNDED, period)
    names = store.route_names()
    refunds: Counter[tuple[str, int]] = Counter()
    credits: Counter[tuple[str, int]] = Counter()
    for marker in markers:
        route = " | ".join(names.get(marker.route_code, [marker.route_code]))
        refunds[(route, marker.status)] += 1
        credits[(route, marker.status)] += marker.credits
    table = Table("route", "status", "requests refunded", "credits refunded")
    for route, status in sorted(refunds):
        table.add_row(route, str(status), f"{refunds[(route, status)]:,}", f"{credits[(route, status)]:,}")
    console.print(table)
    usage = store.read_usage(REFUNDED, period)
    console.print(
        f"  ledger delivered: {usage.refunded.requests:,} failed requests refunded, "
        f"{usage.refunded.credits:,} credits; {REFUNDED}'s counters now hold {usage.credits:,} credits for "
        f"its {usage.requests:,} requests (a failure outside {refunds_what} stays billed)",
        soft_wrap=True,
    )
    again = stack.deliveries.redeliver()  # Firehose and the queue deliver at least once: the same records
    console.print(
        f"  the ledger delivered again: {len(again.refunded):,} more refunded, {again.duplicates:,} "
        "already refunded (once per request id)",
        soft_wrap=True,
    )


PREPAID = Plan(
    id="credits",
    name="Prepaid credits",
    billing="prepaid",
    price_per_credit=Decimal("0.002"),
    top_up_url="https://api.example.test/billing/credits",
    route_costs=ROUTE_COSTS,
    alerts=(AlertRule(balance_below=100),),
)
PREPAID_CUSTOMER = "umbrella"


def prepaid_story(
    store: TollgateStore, stripe: StripeClient, stack: Any, *, now: datetime, console: Console
) -> None:
    """A prepaid customer: refused with no credits, buys 500 through a Checkout Session (the double plays the
    customer paying; the webhook's processing adds them), turns on automatic top-ups, and draws the balance
    below 100: the alert function charges the saved card off-session and says so."""
    from tollgate.accounts.auto_top_up import set_auto_top_up
    from tollgate.accounts.customers import create_customer
    from tollgate.accounts.prepaid import buy_credits
    from tollgate.billing.webhooks.processing import process_purchase
    from tollgate.domain.models import AutoTopUp

    store.put_plan(PREPAID)
    create_customer(
        store,
        stripe,
        customer_id=PREPAID_CUSTOMER,
        name="Umbrella Corp.",
        email="billing@umbrella.example",
        plan_id=PREPAID.id,
        now=now,
    )
    key = issue_key(store, PREPAID_CUSTOMER, now=now).key
    client = Client(stack.gateway_url)
    status, body = client.call("GET", "/v1/search", key)
    console.print(
        f"  {PREPAID_CUSTOMER} with no credits → HTTP {status} {body.get('error')} "
        f"(payUrl {body.get('payUrl')})"
    )
    purchase = buy_credits(store, stripe, PREPAID_CUSTOMER, credits=500)
    paid = stack.stripe_double.complete_checkout(purchase.session_id)  # the customer pays on Stripe's page
    process_purchase(store, paid, now=now)  # what the webhook function does with Stripe's event
    console.print(
        f"  bought {purchase.credits:,} credits for {purchase.price} "
        f"(Checkout Session {purchase.session_id}): "
        f"balance {store.read_balance(PREPAID_CUSTOMER).credits:,}"
    )
    set_auto_top_up(store, PREPAID_CUSTOMER, AutoTopUp(below=100, credits=500))
    console.print("  automatic top-up: 500 credits whenever the balance falls below 100")
    statuses = Counter(client.call("POST", "/v1/generate", key)[0] for _ in range(18))  # 25 credits each
    client.close()
    stack.stream.drain()
    intents = [  # the automatic top-ups (the Checkout purchase made one too)
        i
        for i in stack.stripe_double.payment_intents.values()
        if i["metadata"].get("tollgate_purchase") == "auto_top_up"
    ]
    balance = store.read_balance(PREPAID_CUSTOMER)
    answered = ", ".join(f"{n:,} x HTTP {s}" for s, n in sorted(statuses.items()))
    console.print(
        f"  18 requests of 25 credits ({answered}) "
        "drew the balance below 100; the alert function charged the saved card off-session: "
        + ", ".join(f"{i['id']} {format_amount(i['amount'], i['currency'])} {i['status']}" for i in intents)
        + f"; balance now {balance.credits:,} (bought {balance.bought:,})"
    )
    for event in stack.alerts.events:
        if event["detail"]["customerId"] == PREPAID_CUSTOMER:
            console.print(f"  {event['detail-type']}: {event['detail']['alertId']}", markup=False)


THRESHOLD_PLAN = Plan(
    id="scale",
    name="Scale (invoiced every 5.00 USD)",
    price_per_credit=Decimal("0.02"),
    invoice_threshold=Decimal("5.00"),
    route_costs=ROUTE_COSTS,
)
THRESHOLD_CUSTOMER = "hooli"
THRESHOLD_REQUESTS = 12  # of 25 credits: 300 credits, 6.00 USD


def threshold_story(
    store: TollgateStore, stripe: StripeClient, stack: Any, *, now: datetime, console: Console
) -> None:
    """A customer on a plan with an ``invoice_threshold``: once 5.00 USD of this period's usage is not
    invoiced, the alert function (off the table's stream) invoices it at once, in Stripe; the period's close
    will take that invoice off its own."""
    from tollgate.accounts.customers import create_customer
    from tollgate.dal.closes import list_threshold_invoices

    store.put_plan(THRESHOLD_PLAN)
    create_customer(
        store,
        stripe,
        customer_id=THRESHOLD_CUSTOMER,
        name="Hooli",
        email="billing@hooli.example",
        plan_id=THRESHOLD_PLAN.id,
        now=now,
    )
    key = issue_key(store, THRESHOLD_CUSTOMER, now=now).key
    client = Client(stack.gateway_url)
    statuses = Counter(client.call("POST", "/v1/generate", key)[0] for _ in range(THRESHOLD_REQUESTS))
    client.close()
    stack.stream.drain()
    answered = ", ".join(f"{n:,} x HTTP {s}" for s, n in sorted(statuses.items()))
    console.print(f"  {THRESHOLD_CUSTOMER}: {THRESHOLD_REQUESTS} requests of 25 credits ({answered})")
    for part in list_threshold_invoices(store.table, THRESHOLD_CUSTOMER, period_of(now)):
        invoice = stripe.v1.invoices.retrieve(str(part.stripe_invoice_id))
        console.print(
            f"  threshold invoice {part.part} for {part.period}: {part.billed_credits:,} credits, "
            f"{format_amount(part.total, THRESHOLD_PLAN.currency)}, Stripe {invoice.id} {invoice.status}",
            markup=False,
        )
        console.print(f"    {part.statement.lines[0].description}", markup=False)
        console.print(f"    pay at {invoice.hosted_invoice_url}", markup=False)


def usage_page_story(stack: Any, period: str, screenshot_dir: Path, *, console: Console) -> None:
    """What ``tollgate portal link globex`` prints (a URL signed for 15 minutes), opened in headless
    Chromium on the closed period: the page the customer would see, saved as a screenshot."""
    from tollgate.portal.links import link_url, sign_link
    from tollgate_local.browser import BrowserMissingError, screenshot

    token = sign_link(stack.portal_link_secret, WELCOMED, now=datetime.now(UTC))
    url = link_url(stack.portal_url, token, period)
    console.print(f"  portal link (15 minutes): {url}", markup=False, soft_wrap=True)
    try:
        path = screenshot(url, screenshot_dir / f"usage-page-{WELCOMED}.png")
    except BrowserMissingError as error:
        console.print(f"  no screenshot: {error}", markup=False)
        return
    console.print(f"  screenshot of the page: {path}", markup=False, soft_wrap=True)


def reconcile_story(store: TollgateStore, stack: Any, period: str, *, console: Console) -> bool:
    """``tollgate reconcile --period P --ledger DIR`` on what the demo did: the counters, the request ledger
    the local gateway wrote (read with DuckDB, the same SQL Athena runs) and the close records. True when no
    difference is unexplained."""
    from tollgate.cli.reconcile import print_report
    from tollgate.ledger.duckdb_ledger import DuckDbLedger
    from tollgate.ledger.reconcile import reconcile_period

    report = reconcile_period(store, DuckDbLedger(stack.ledger_dir), period, now=datetime.now(UTC))
    console.print(f"  request ledger: {stack.ledger_dir}", markup=False, soft_wrap=True)
    print_report(report, console)
    return report.ok


def welcome(store: TollgateStore, stripe: StripeClient, period: str, *, now: datetime) -> None:
    """Free credits and a coupon for one customer: a Tollgate grant, and a Stripe coupon on its invoice."""
    from tollgate.accounts.credit_grants import add_grant
    from tollgate.accounts.discounts import attach_discount

    add_grant(store, WELCOMED, credits=BONUS.credits, description=BONUS.description, now=now)
    stripe.v1.coupons.create(params=COUPON)  # type: ignore[arg-type]
    attach_discount(store, stripe, WELCOMED, str(COUPON["id"]), first_period=period, now=now)


def upgrade_mid_month(
    store: TollgateStore,
    gateway_url: str,
    key: str,
    calls: dict[tuple[str, str], int],
    shift: list[float],
    console: Console,
) -> datetime:
    """Move the customer to the hybrid plan now; send the same traffic again once the change has started (the
    gateway's clock moved on past it). Returns when the new plan started."""
    from tollgate.accounts.plan_changes import PLAN_CHANGE_DELAY, change_plan

    made = datetime.fromtimestamp(time.time() + shift[0], UTC)
    change = change_plan(store, UPGRADED, "pro", now=made)
    starts = change.segment.since
    assert starts is not None
    shift[0] += (PLAN_CHANGE_DELAY + timedelta(seconds=30)).total_seconds()
    client, statuses = Client(gateway_url), Counter[int]()
    try:
        for (method, path), n in calls.items():
            for _ in range(n):
                statuses[client.call(method, path, key)[0]] += 1
    finally:
        client.close()
    console.print(
        f"  {UPGRADED} changed plan at {made:%Y-%m-%d %H:%M:%S} UTC; Pro starts at {starts:%H:%M:%S} "
        f"(once every authorizer has it): {sum(statuses.values()):,} more requests "
        f"({', '.join(f'{n:,} x HTTP {s}' for s, n in sorted(statuses.items()))}), counted under Pro"
    )
    return starts


def create_customers(
    store: TollgateStore, stripe: StripeClient, plans: dict[str, Plan], *, now: datetime
) -> dict[str, IssuedKey]:
    """One customer per plan (with its Stripe customer) and a key each."""
    from tollgate.accounts.customers import create_customer

    keys = {}
    for customer_id, plan in plans.items():
        create_customer(
            store,
            stripe,
            customer_id=customer_id,
            name=customer_id.title() + " Inc.",
            email=f"billing@{customer_id}.example",
            plan_id=plan.id,
            now=now,
        )
        keys[customer_id] = issue_key(store, customer_id, now=now)
    return keys


def template_of(path: str) -> str:
    return "/v1/items/{id}" if path.startswith("/v1/items/") else path


def plans_table(plans: list[Plan]) -> Table:
    table = Table("plan", "price / credit", "base fee", "included", "cap", "refunds", "routes")
    for plan in plans:
        table.add_row(
            plan.name,
            f"{plan.price_per_credit} {plan.currency.upper()}",
            str(plan.base_fee),
            f"{plan.included_credits:,}",
            f"{plan.credit_limit:,}" if plan.credit_limit else "-",
            ", ".join(plan.refund_statuses) or "-",
            "\n".join(f"{route} = {cost}" for route, cost in plan.route_costs.items()),
        )
    return table


def close_and_check(
    store: TollgateStore,
    stripe: StripeClient,
    period: str,
    plans: dict[str, Plan],
    expected_totals: dict[str, int],
    console: Console,
) -> list[DemoInvoice]:
    from tollgate.billing.close.ledger import DynamoLedger
    from tollgate.billing.close.service import close_period
    from tollgate.billing.invoicing import StripeClientInvoicing

    summary = close_period(DynamoLedger(store), StripeClientInvoicing(stripe), period, now=datetime.now(UTC))
    table = Table("customer", "status", "total", "Stripe invoice")
    for result in summary.customers:
        total = (
            format_amount(result.total, result.currency)
            if result.total is not None and result.currency
            else "-"
        )
        table.add_row(
            result.customer_id, str(result.status), total, result.stripe_invoice_id or result.error or "-"
        )
    console.print(table)

    invoices = []
    for result in summary.customers:
        plan, expected = plans[result.customer_id], expected_totals[result.customer_id]
        invoice = stripe.v1.invoices.retrieve(result.stripe_invoice_id) if result.stripe_invoice_id else None
        invoices.append(
            DemoInvoice(
                customer_id=result.customer_id,
                expected_total=expected,
                invoiced_total=int(invoice.subtotal) if invoice else 0,
                total_due=int(invoice.total) if invoice else 0,
                hosted_invoice_url=invoice.hosted_invoice_url if invoice else None,
            )
        )
        console.print(invoice_panel(result.customer_id, plan, invoice, expected))
    return invoices


def invoice_panel(customer_id: str, plan: Plan, invoice: Any, expected: int) -> Panel:
    lines = Table("line", "quantity", "unit (minor units)", "amount", box=None)
    for line in invoice.lines.data if invoice else []:
        unit = line.pricing.unit_amount_decimal if getattr(line, "pricing", None) else "-"
        lines.add_row(
            line.description, f"{line.quantity:,}", str(unit), format_amount(line.amount, plan.currency)
        )
    subtotal = int(invoice.subtotal) if invoice else 0
    check = (
        "[green]= expected[/green]"
        if subtotal == expected
        else f"[red]expected {format_amount(expected, plan.currency)}[/red]"
    )
    rows: list[Any] = [lines, f"[bold]Subtotal {format_amount(subtotal, plan.currency)}[/bold] {check}"]
    for discount in getattr(invoice, "total_discount_amounts", None) or []:
        off = format_amount(int(discount.amount), plan.currency)
        rows.append(f"Discount (Stripe coupon {COUPON['id'] if discount.amount else ''}): -{off}")
    if invoice and int(invoice.total) != subtotal:
        rows.append(f"[bold]Total due {format_amount(int(invoice.total), plan.currency)}[/bold]")
    rows.append(f"Pay at: {invoice.hosted_invoice_url if invoice else '-'}")
    body = Group(*rows)
    return Panel(body, title=f"Invoice for {customer_id} ({plan.name}), {invoice.number if invoice else ''}")
