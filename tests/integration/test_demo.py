"""The demo's story end to end (at a small scale), so CI keeps `make demo` working: real HTTP through the
local gateway, moto's DynamoDB server, the Stripe double, the close; invoices equal what the traffic costs."""

from __future__ import annotations

import io
import socket

import pytest
from rich.console import Console

from tollgate_local import demo


@pytest.fixture
def no_endpoint_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)


@pytest.mark.usefixtures("no_endpoint_override")
def test_demo_story_bills_what_the_requests_cost() -> None:
    out = io.StringIO()
    invoices = demo.run(Console(file=out, width=120), scale=0.05, threads=2)
    text = out.getvalue()

    assert [i.customer_id for i in invoices] == ["acme", "globex"]
    for invoice in invoices:
        assert invoice.invoiced_total == invoice.expected_total > 0
        assert (invoice.hosted_invoice_url or "").startswith("http://127.0.0.1:")
    assert "HTTP 403 credit_limit_reached" in text
    assert "HTTP 403 revoked_api_key" in text
    assert "HTTP 403 malformed_api_key" in text
    assert "Every service stopped" in text
    port = int(invoices[0].hosted_invoice_url.rsplit(":", 1)[1].split("/")[0])  # type: ignore[union-attr]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the Stripe double is gone
