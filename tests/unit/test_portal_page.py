"""The usage page's HTML from a usage report, and its signed links: what a customer sees, and what no link
forged, tampered with or expired can open."""

from __future__ import annotations

import base64
import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from typing import Any

import pytest

from tollgate.portal.links import (
    DEFAULT_LIFETIME,
    MAX_LIFETIME,
    ExpiredLinkError,
    InvalidLinkError,
    sign_link,
    verify_link,
)
from tollgate.portal.page import CONTENT_SECURITY_POLICY, STYLE, render_error_page, render_usage_page
from tollgate.usage_api.report import (
    Amount,
    BudgetReport,
    DayLine,
    EstimateLine,
    InvoiceSummary,
    PrepaidBalance,
    RouteLine,
    UsageReport,
)

AS_OF = datetime(2026, 11, 4, 18, 30, tzinfo=UTC)
SECRET = "portal-test-secret"


def invoice(period: str, url: str | None, status: str = "paid") -> InvoiceSummary:
    return InvoiceSummary(
        period=period,
        close_status="finalized",
        invoice_status=status,
        invoice_id="in_1",
        hosted_invoice_url=url,
        total=Amount.of(1234, "usd"),
        amount_due=Amount.of(1234, "usd"),
    )


def report(**overrides: Any) -> UsageReport:
    fields: dict[str, Any] = {
        "customer_id": "acme",
        "period": "2026-11",
        "as_of": AS_OF,
        "plan_id": "pro",
        "plan_version": 2,
        "credits_used": 1_530,
        "requests": 130,
        "included_credits": 1_000,
        "included_remaining": 0,
        "credit_limit": 5_000,
        "credits_remaining": 3_470,
        "estimated_charge": Amount.of(5_795, "usd"),
        "estimate_lines": [
            EstimateLine(description="Pro base fee", quantity=1, amount=Amount.of(4_900, "usd")),
            EstimateLine(
                description="API usage past 1,000 included", quantity=530, amount=Amount.of(895, "usd")
            ),
        ],
        "routes": [
            RouteLine(route="GET /v1/search", credits=30, requests=30),
            RouteLine(route="POST /v1/generate", credits=1_500, requests=60),
            RouteLine(route="GET /usage", credits=0, requests=40),
        ],
        "daily": [
            DayLine(date=date(2026, 11, 1), credits=500, requests=40),
            DayLine(date=date(2026, 11, 2), credits=0, requests=0),
            DayLine(date=date(2026, 11, 3), credits=1_000, requests=80),
            DayLine(date=date(2026, 11, 4), credits=30, requests=10),
        ],
        "recent_invoices": [
            invoice("2026-10", "https://invoice.stripe.com/i/acct_1/test_2"),
            invoice("2026-09", None),
        ],
    }
    fields.update(overrides)
    return UsageReport(**fields)


class Page(HTMLParser):
    """What a browser would build from the page, enough to look at it like a user: elements and text."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())

    def all(self, tag: str, **attrs: str) -> list[dict[str, str | None]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    @property
    def words(self) -> str:
        return " ".join(self.text)


def test_each_day_is_a_bar_carrying_its_credits_and_requests() -> None:
    page = Page(render_usage_page(report()))

    bars = [
        (g["data-date"], g["data-credits"], g["data-requests"]) for g in page.all("g", **{"class": "day"})
    ]
    assert bars == [
        ("2026-11-01", "500", "40"),
        ("2026-11-02", "0", "0"),
        ("2026-11-03", "1000", "80"),
        ("2026-11-04", "30", "10"),
    ]
    assert "Tue 03 Nov 2026: 1,000 credits, 80 requests" in page.words  # the bar's tooltip
    heights = [int(str(r["height"])) for r in page.all("rect", **{"class": "bar"})]
    assert heights[2] == 2 * heights[0] > 0
    assert heights[1] == 0
    assert "1,000" in page.words  # a gridline's label: the scale reaches the highest day


def test_the_page_shows_usage_by_route_the_estimate_caps_and_invoices() -> None:
    page = Page(render_usage_page(report()))
    words = page.words

    routes = [r["data-route"] for r in page.all("tr") if r.get("data-route")]
    assert routes == ["POST /v1/generate", "GET /v1/search", "GET /usage"]  # most credits first
    for expected in (
        "Credits used 1,530",
        "Requests 130",
        "Estimated bill 57.95 USD",
        "Included credits left 0 of 1,000 included",
        "Credits left 3,470 under a cap of 5,000",
        "Pro base fee 1 49.00 USD",
        "API usage past 1,000 included 530 8.95 USD",
        "Estimated total 57.95 USD",
        "2026-10 paid 12.34 USD 12.34 USD View invoice",
    ):
        assert expected in words
    links = [a["href"] for a in page.all("a", **{"class": "invoice-link"})]
    assert links == ["https://invoice.stripe.com/i/acct_1/test_2"]  # the period without one has no link
    assert "Prepaid balance" not in words
    assert "Budget" not in words
    assert "Refunded" not in words  # nothing refunded, no card


def test_refunds_of_failed_requests_are_shown_apart_from_the_credits_used() -> None:
    words = Page(render_usage_page(report(refunded_credits=250, refunded_requests=10))).words

    assert "Refunded 250 credits of 10 failed requests, not billed" in words
    assert "Credits used 1,530" in words  # what is billed: the refunded credits are not in it


def test_balance_and_budget_are_shown_where_they_exist() -> None:
    prepaid = PrepaidBalance(credits=2_500, bought=10_000, burn_rate_per_day=100, runs_out_at=None)
    budget = BudgetReport(amount=Amount.of(2_500, "usd"), credits=12_000, cap=None, set_at=AS_OF)

    words = Page(render_usage_page(report(prepaid=prepaid, budget=budget))).words

    assert "Prepaid balance 2,500 credits 10,000 bought in all" in words
    assert "Budget 25.00 USD about 12,000 credits a period" in words


def test_everything_from_the_report_is_escaped_and_only_web_links_are_links() -> None:
    hostile = '<script>alert("x")</script>'
    html = render_usage_page(
        report(
            routes=[RouteLine(route=f"GET /v1/{hostile}", credits=1, requests=1)],
            estimate_lines=[EstimateLine(description=hostile, quantity=1, amount=Amount.of(1, "usd"))],
            recent_invoices=[
                invoice("2026-10", "javascript:alert(1)"),
                invoice("2026-09", 'https://x.test/"a'),
            ],
        )
    )
    page = Page(html)

    assert "<script" not in html
    assert page.all("script") == []
    assert f"GET /v1/{hostile}" in page.words  # shown as text
    assert [a["href"] for a in page.all("a")] == ['https://x.test/"a']  # javascript: is never a link


def test_the_page_loads_nothing_from_anywhere_and_says_so_in_its_policy() -> None:
    html = render_usage_page(report())
    page = Page(html)

    assert not re.search(r"\b(src|srcset|action)=|url\(|@import|<link|<script|<iframe", html)
    (meta,) = page.all("meta", **{"http-equiv": "Content-Security-Policy"})
    policy = str(meta["content"])
    assert policy.startswith("default-src 'none'")
    style_hash = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
    assert f"style-src 'sha256-{style_hash}'" in policy  # the one inline style block, by its hash
    assert CONTENT_SECURITY_POLICY.startswith(policy)
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY


def test_period_links_lead_back_and_forward_up_to_the_current_period() -> None:
    current = Page(render_usage_page(report(), period_link=lambda p: f"?period={p}"))
    earlier = Page(render_usage_page(report(period="2026-09"), period_link=lambda p: f"?period={p}"))

    assert [a["href"] for a in current.all("a", rel="prev")] == ["?period=2026-10"]
    assert current.all("a", rel="next") == []
    assert [a["href"] for a in earlier.all("a", rel="next")] == ["?period=2026-10"]


def test_an_error_page_says_what_happened_and_nothing_else() -> None:
    words = Page(render_error_page("Link expired", "Ask for a new <link>.")).words

    assert words.endswith("Link expired Ask for a new <link>.")


# --- signed links ------------------------------------------------------------------------------------------
def test_a_signed_link_opens_its_customers_page_until_it_expires() -> None:
    token = sign_link(SECRET, "acme", now=AS_OF)

    link = verify_link(SECRET, token, now=AS_OF + DEFAULT_LIFETIME - timedelta(seconds=1))
    assert (link.customer_id, link.expires_at) == ("acme", AS_OF + DEFAULT_LIFETIME)
    with pytest.raises(ExpiredLinkError, match="has expired"):
        verify_link(SECRET, token, now=AS_OF + DEFAULT_LIFETIME)


def test_forged_tampered_or_malformed_tokens_open_nothing() -> None:
    token = sign_link(SECRET, "acme", now=AS_OF, lifetime=timedelta(hours=1))
    version, customer, expires, signature = token.split(".")
    forged = sign_link("another-secret", "acme", now=AS_OF, lifetime=timedelta(hours=1))

    for bad in (
        forged,
        f"{version}.globex.{expires}.{signature}",  # another customer
        f"{version}.{customer}.{int(expires) + 3600}.{signature}",  # a longer life
        f"{version}.{customer}.{expires}.{signature[:-1]}B",
        token + "x",
        "",
        None,
        "v2." + token[3:],
        "v1.ACME.1.x",
    ):
        with pytest.raises(InvalidLinkError, match="not valid"):
            verify_link(SECRET, bad, now=AS_OF)


def test_a_link_lives_at_most_a_day_even_when_signed_for_longer() -> None:
    with pytest.raises(ValueError, match="at most"):
        sign_link(SECRET, "acme", now=AS_OF, lifetime=MAX_LIFETIME + timedelta(seconds=1))
    far = sign_link(SECRET, "acme", now=AS_OF + timedelta(days=2), lifetime=MAX_LIFETIME)  # a clock ahead

    with pytest.raises(InvalidLinkError):
        verify_link(SECRET, far, now=AS_OF)
