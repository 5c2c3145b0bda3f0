"""The demo's story end to end (at a small scale), so CI keeps `make demo` working: real HTTP through the
local gateway, DynamoDB Local, the Stripe double, the close; invoices equal what the traffic costs.

It runs on the session's DynamoDB Local (starting another JVM costs seconds); `make demo` starts and stops its
own, the same :class:`~tollgate_local.dynamodb_local.DynamoDBLocal` the session fixture uses."""

from __future__ import annotations

import io
import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tollgate_local import demo
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE


@pytest.fixture
def no_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)


@pytest.fixture
def dynamodb(dynamodb_local: DynamoDBLocal) -> Iterator[DynamoDBLocal]:
    """The session's DynamoDB Local, without the demo's table before and after."""
    client = dynamodb_local.admin
    assert LOCAL_TABLE not in client.list_tables()["TableNames"]
    try:
        yield dynamodb_local
    finally:
        client.delete_table(TableName=LOCAL_TABLE)


@pytest.mark.usefixtures("no_endpoint_override")
def test_demo_story_bills_what_the_requests_cost(dynamodb: DynamoDBLocal, tmp_path: Path) -> None:
    out = io.StringIO()
    invoices = demo.run(
        Console(file=out, width=120),
        scale=0.05,
        threads=2,
        dynamodb_url=dynamodb.endpoint_url,
        screenshot_dir=tmp_path,
    )
    text = out.getvalue()

    assert [i.customer_id for i in invoices] == ["acme", "globex", "initech", "vandelay"]
    for invoice in invoices:
        assert invoice.invoiced_total == invoice.expected_total > 0
        assert (invoice.hosted_invoice_url or "").startswith("http://127.0.0.1:")
    assert f"DynamoDB Local {dynamodb.endpoint_url}" in text
    assert "HTTP 403 credit_limit_reached" in text
    assert "initech changed plan at" in text  # the upgrade, billed on both plans:
    assert "base fee for" in text
    assert "prorated by the second" in text
    assert "API usage on Basic (pay as you go) from" in text
    assert "Free credits (sign-up bonus): 200 credits" in text  # globex's welcome: free credits and a coupon
    (globex,) = [i for i in invoices if i.customer_id == "globex"]
    assert globex.total_due == globex.invoiced_total - (globex.invoiced_total * 20 + 50) // 100  # 20% off
    # alerts off the table's stream, once each: acme at 80% and 100% of its cap, globex past its included
    assert text.count("Tollgate Usage Threshold Crossed: acme:") == 2
    assert "% of the " in text
    assert "Tollgate Usage Threshold Crossed: globex:" in text
    # the prepaid story: refused at zero, bought through Checkout, topped up off-session by the alert function
    assert "umbrella with no credits → HTTP 403 insufficient_credits" in text
    assert "bought 500 credits for 1.00 USD" in text
    assert "USD succeeded; balance now 550 (bought 1,000)" in text
    assert "Tollgate Prepaid Balance Low: umbrella:balance500:balance_below:100" in text
    # progressive billing: the alert function invoiced hooli's usage once 5.00 USD of it was unbilled
    assert "hooli: 12 requests of 25 credits (12 x HTTP 200)" in text
    found = re.search(
        r"threshold invoice 1 for \d{4}-\d\d: ([\d,]+) credits, ([\d.]+) USD, Stripe in_\w+ open", text
    )
    assert found is not None, text
    assert found.group(1) in ("250", "275", "300")  # wherever the stream's check was when it reached 5.00 USD
    assert found.group(2) == f"{int(found.group(1).replace(',', '')) * 2 / 100:.2f}"
    # bill only what succeeded: vandelay's 5xx refunded off the delivered ledger (scale 0.05: 2 x 503 of 1
    # credit, 1 x 500 of 25), its 429 billed, once per request however often delivered; its invoice bills the
    # rest (checked above against what succeeded and the 429)
    assert "1 x HTTP 429, 1 x HTTP 500, 2 x HTTP 503" in text
    assert "ledger delivered: 3 failed requests refunded, 27 credits" in text
    assert "the ledger delivered again: 0 more refunded, 3 already refunded" in text
    assert "vandelay's counters now hold 59 credits for its 15 requests" in text  # 8 x 1 + 2 x 25, the 429
    assert "API usage: 59 credits" in text  # on its invoice: 0.15 USD at 0.0025 USD a credit
    (vandelay,) = [i for i in invoices if i.customer_id == "vandelay"]
    assert vandelay.invoiced_total == vandelay.expected_total == 15
    # the reconciliation: the counters, the request ledger the local gateway wrote and the invoices agree
    assert "request ledger: " in text
    assert "0 flagged, 0 credits unexplained" in text
    assert "flagged a difference" not in text
    assert "HTTP 403 revoked_api_key" in text
    assert "HTTP 403 malformed_api_key" in text
    # globex's usage page: a signed link (no key) opened in headless Chromium, its screenshot saved
    assert re.search(r"portal link \(15 minutes\): http://127\.0\.0\.1:\d+/portal\?token=v1\.globex\.", text)
    screenshot = tmp_path / "usage-page-globex.png"
    assert f"screenshot of the page: {screenshot}" in text
    assert screenshot.read_bytes().startswith(b"\x89PNG")
    assert "Every service stopped" in text
    port = int(invoices[0].hosted_invoice_url.rsplit(":", 1)[1].split("/")[0])  # type: ignore[union-attr]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the Stripe double is gone
    assert dynamodb.client().list_tables()  # a DynamoDB the demo did not start is left running
