"""The customer usage page in a real browser: local mode (DynamoDB Local, the local gateway, the Stripe
double), requests on a fixed clock across several days and a closed earlier period, a link made by
`tollgate portal link`, and headless Chromium (Debian's, `make browser`) driven by selenium reading what
the customer sees.

It also saves the page's screenshot as docs/usage-page.png: a fixed clock, fixed traffic and a fixed window
make it the same picture on every run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from typer.testing import CliRunner

from tollgate.accounts.customers import create_customer
from tollgate.accounts.keys import issue_key
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_period
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.billing.settings import StripeSettings
from tollgate.billing.stripe_client import stripe_client_from
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Plan
from tollgate_local.browser import CHROMEDRIVER, CHROMIUM, FLAGS, WINDOW
from tollgate_local.demo import Client
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE, LocalStack, local_stack

pytestmark = pytest.mark.dynamodb_local

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "usage-page.png"
PLAN = Plan(
    id="pro",
    name="Pro",
    price_per_credit=Decimal("0.002"),
    base_fee=Decimal("29.00"),
    included_credits=2_000,
    credit_limit=20_000,
    route_costs={
        "GET /v1/search": 1,
        "POST /v1/generate": 25,
        "GET /usage": 0,
        "GET /usage/page": 0,
    },
)
CLOSED = datetime(2026, 2, 20, 10, 0, tzinfo=UTC)  # traffic in February, closed and invoiced
FIRST_DAY = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
NOW = datetime(2026, 3, 12, 17, 30, tzinfo=UTC)  # the page is looked at then
# March's traffic, per day of the month: (searches, generations); a day off on the 7th and 8th
MARCH = {1: (40, 6), 2: (65, 10), 3: (80, 14), 4: (55, 9), 5: (90, 18), 6: (30, 4), 9: (120, 22),
         10: (75, 12), 11: (100, 20), 12: (45, 7)}  # fmt: skip


@dataclass
class Portal:
    stack: LocalStack
    clock: list[float]
    key: str
    url: str  # what `tollgate portal link` printed
    usage: dict[str, Any]  # GET /usage, with the customer's key


def chromium() -> Iterator[webdriver.Chrome]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"no {CHROMIUM} or {CHROMEDRIVER}: run `make browser`", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="tollgate-chromium-")
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[webdriver.Chrome]:
    yield from chromium()


def send(client: Client, key: str, clock: list[float], at: datetime, calls: list[tuple[str, str]]) -> None:
    clock[0] = at.timestamp()
    for method, path in calls:
        status, _ = client.call(method, path, key)
        assert status == 200, (method, path, status)


@pytest.fixture(scope="module")
def portal(dynamodb_local: DynamoDBLocal) -> Iterator[Portal]:
    saved = {name: os.environ.pop(name, None) for name in ("STRIPE_API_KEY", "STRIPE_API_BASE")}
    clock = [CLOSED.timestamp()]
    try:
        with local_stack(clock=lambda: clock[0], dynamodb_url=dynamodb_local.endpoint_url) as stack:
            store = TollgateStore(LOCAL_TABLE)
            stripe = stripe_client_from(StripeSettings.from_env())
            store.put_plan(PLAN)
            opened = CLOSED - timedelta(days=30)
            create_customer(
                store, stripe, customer_id="acme", name="Acme Inc.", email="billing@acme.example",
                plan_id=PLAN.id, now=opened,
            )  # fmt: skip
            key = issue_key(store, "acme", now=opened).key
            client = Client(stack.gateway_url)
            send(client, key, clock, CLOSED, [("GET", "/v1/search")] * 300 + [("POST", "/v1/generate")] * 80)
            close_period(DynamoLedger(store), StripeClientInvoicing(stripe), "2026-02", now=FIRST_DAY)
            for day, (searches, generations) in MARCH.items():
                calls = [("GET", "/v1/search")] * searches + [("POST", "/v1/generate")] * generations
                send(client, key, clock, FIRST_DAY.replace(day=day), calls)
            send(client, key, clock, NOW, [("GET", "/usage")])  # free: counted as a request, no credits
            status, usage = client.call("GET", "/usage", key)
            assert status == 200
            client.close()
            env = {
                "TABLE_NAME": LOCAL_TABLE,
                "PORTAL_LINK_SECRET": stack.portal_link_secret,
                "TOLLGATE_PORTAL_URL": stack.portal_url,
            }
            made = CliRunner().invoke(
                app, ["portal", "link", "acme", "--minutes", "60"], obj=AppContext(clock=lambda: NOW, env=env)
            )
            assert made.exit_code == 0, made.output
            yield Portal(stack, clock, key, made.stdout.strip(), usage)
    finally:
        for name, value in saved.items():
            if value is not None:
                os.environ[name] = value
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)  # the next local stack makes its own


def test_the_chart_shows_each_days_credits_and_requests_as_counted(
    portal: Portal, browser: webdriver.Chrome
) -> None:
    browser.get(portal.url)

    bars = [
        (
            bar.get_attribute("data-date"),
            bar.get_attribute("data-credits"),
            bar.get_attribute("data-requests"),
        )
        for bar in browser.find_elements(By.CSS_SELECTOR, "#daily-chart g.day")
    ]
    counted = [(day["date"], str(day["credits"]), str(day["requests"])) for day in portal.usage["daily"]]
    assert bars == counted  # the page's bars are the counters' days
    sent = {
        f"2026-03-{day:02d}": (searches + 25 * generations, searches + generations)
        for day, (searches, generations) in MARCH.items()
    }
    sent["2026-03-12"] = (sent["2026-03-12"][0], sent["2026-03-12"][1] + 2)  # and its two GET /usage
    assert [b for b in bars if b[1] != "0" or b[2] != "0"] == [
        (date, str(credits), str(requests)) for date, (credits, requests) in sorted(sent.items())
    ]
    assert [b[0] for b in bars] == [f"2026-03-{day:02d}" for day in range(1, 13)]  # the days so far, with 0s
    tooltip = browser.find_element(By.CSS_SELECTOR, '#daily-chart g.day[data-date="2026-03-09"] title')
    assert tooltip.get_attribute("textContent") == "Mon 09 Mar 2026: 670 credits, 142 requests"


def test_the_route_table_the_bill_and_the_invoice_link_are_the_customers(
    portal: Portal, browser: webdriver.Chrome
) -> None:
    browser.get(portal.url)

    rows = [
        [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#routes tbody tr")
    ]
    routes = {line["route"]: line for line in portal.usage["routes"]}
    assert [row[0] for row in rows] == ["POST /v1/generate", "GET /v1/search", "GET /usage"]
    for route, requests, credits in rows:
        assert (requests, credits) == (f"{routes[route]['requests']:,}", f"{routes[route]['credits']:,}")
    assert browser.find_element(By.ID, "estimated-total").text == portal.usage["estimatedCharge"]["formatted"]
    used = sum(searches + 25 * generations for searches, generations in MARCH.values())
    bill = PLAN.base_fee + (used - PLAN.included_credits) * Decimal(str(PLAN.price_per_credit))
    assert browser.find_element(By.CSS_SELECTOR, "#bill .value").text == f"{bill:.2f} USD"
    (invoice,) = portal.usage["recentInvoices"]
    link = browser.find_element(By.CSS_SELECTOR, '#invoices tr[data-period="2026-02"] a.invoice-link')
    assert link.get_attribute("href") == invoice["hostedInvoiceUrl"]  # Stripe's hosted invoice page
    assert invoice["hostedInvoiceUrl"].startswith(portal.stack.stripe_base)
    assert link.text == "View invoice"
    row = browser.find_element(By.CSS_SELECTOR, '#invoices tr[data-period="2026-02"]').text
    assert row == f"2026-02 {invoice['invoiceStatus']} 29.60 USD 29.60 USD View invoice"  # 29 + 300 x 0.002
    browser.save_screenshot(str(SCREENSHOT))


def test_a_forged_or_expired_link_opens_nothing(portal: Portal, browser: webdriver.Chrome) -> None:
    forged = portal.url.replace("v1.acme.", "v1.globex.")
    browser.get(forged)
    assert browser.find_element(By.TAG_NAME, "h1").text == "Link not valid"
    assert "acme" not in browser.page_source

    portal.clock[0] = (NOW + timedelta(minutes=61)).timestamp()
    try:
        browser.get(portal.url)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Link expired"
        assert (
            "This link has expired. Ask your API provider for a new usage page link." in browser.page_source
        )
        statuses = [http_status(portal.url), http_status(forged)]
    finally:
        portal.clock[0] = NOW.timestamp()
    assert statuses == [401, 403]


def test_the_keyed_page_is_the_same_page_for_free(portal: Portal) -> None:
    page = portal.stack.gateway_url + "/usage/page"
    request = urllib.request.Request(page, headers={"x-api-key": portal.key})  # noqa: S310 - the local gateway
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local gateway
        html = answer.read().decode()
        assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert '<h1 id="customer">acme</h1>' in html
    _, usage = Client(portal.stack.gateway_url).call("GET", "/usage", portal.key)
    assert usage["creditsUsed"] == portal.usage["creditsUsed"]  # the page and GET /usage cost nothing


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - the local gateway
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code
