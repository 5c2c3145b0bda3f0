"""The customer's usage page: one self-contained HTML document rendered from their ``UsageReport``.

No script, no external resource of any kind: the CSS is inline (allowed by its hash in the Content-Security-
Policy, which allows nothing else) and the chart is inline SVG drawn here, one bar per day, each carrying its
numbers (``data-date``, ``data-credits``, ``data-requests`` and a ``<title>``). Every value from the report is
escaped; a URL is a link only when it is ``https:`` or ``http:``. Plain functions over the report: the handler
does the I/O.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from html import escape
from urllib.parse import urlsplit

from tollgate.domain.periods import next_period, period_end, period_of, period_start, previous_period
from tollgate.usage_api.report import DayLine, InvoiceSummary, UsageReport

PeriodLink = Callable[[str], str]  # period -> the href of its page

STYLE = """
:root{--ink:#1d2433;--muted:#5d6678;--line:#e3e7ee;--bg:#f5f7fa;--card:#fff;--accent:#3758f9;--ok:#16794c}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--ink);font:15px/1.5 system-ui,-apple-system,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif}
.wrap{max-width:1040px;margin:0 auto;padding:32px 28px 40px}
header{display:flex;justify-content:space-between;align-items:flex-end;gap:16px;margin-bottom:24px}
.eyebrow{margin:0;color:var(--accent);font-size:12px;font-weight:600;letter-spacing:.08em;
text-transform:uppercase}
h1{margin:2px 0 4px;font-size:28px;line-height:1.2}
h2{margin:0 0 14px;font-size:16px}
.muted{color:var(--muted);margin:0}
nav a{display:inline-block;margin-left:8px;padding:6px 12px;border:1px solid var(--line);border-radius:8px;
background:var(--card);color:var(--ink);text-decoration:none;font-size:14px}
nav a:hover{border-color:var(--accent)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(180px,1fr));gap:14px;margin-bottom:18px}
.card,.panel{background:var(--card);border:1px solid var(--line);border-radius:12px}
.card{padding:14px 16px}
.card .label{color:var(--muted);font-size:13px}
.card .value{font-size:22px;font-weight:650;margin:2px 0;font-variant-numeric:tabular-nums}
.card .note{color:var(--muted);font-size:12px}
.panel{padding:18px 20px;margin-bottom:18px}
.two{display:grid;grid-template-columns:1fr 1fr;gap:18px}
.two .panel{margin-bottom:0}
.two+.panel{margin-top:18px}
table{width:100%;border-collapse:collapse;font-size:14px}
th{color:var(--muted);font-weight:600;text-align:left;font-size:12px;text-transform:uppercase;
letter-spacing:.04em}
th,td{padding:8px 6px;border-bottom:1px solid var(--line)}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tfoot td{font-weight:650;border-bottom:0}
code{font:13px ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
a{color:var(--accent)}
.status{display:inline-block;padding:1px 8px;border-radius:999px;background:#eef1f6;font-size:12px}
.status.paid{background:#e3f4eb;color:var(--ok)}
.empty{color:var(--muted);margin:0}
svg{display:block;width:100%;height:auto}
svg .grid{stroke:var(--line);stroke-width:1}
svg .axis{fill:var(--muted);font-size:11px}
svg .bar{fill:var(--accent)}
svg .day:hover .bar{fill:#1f3fd6}
footer{color:var(--muted);font-size:12px;text-align:center}
.error{max-width:520px;margin:12vh auto;text-align:center}
@media (max-width:720px){.two{grid-template-columns:1fr}header{flex-direction:column;align-items:flex-start}}
"""

_STYLE_HASH = base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# Nothing but the one inline style block: no script, image, font, frame, form or connection of any kind.
_POLICY = f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; form-action 'none'"
CONTENT_SECURITY_POLICY = f"{_POLICY}; frame-ancestors 'none'"  # the header (a meta tag cannot say this)
HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",  # a signed link's token never leaves in a Referer header
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

# the chart's geometry, in SVG user units (it scales to the panel's width)
CHART_WIDTH = 960
CHART_HEIGHT = 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 8, 12, 28
_GRID_LINES = 4


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def safe_href(url: str | None) -> str | None:
    """``url`` if it is an absolute ``https:``/``http:`` URL (anything else is never made a link)."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return url if parts.scheme in ("https", "http") and parts.netloc else None


def document(title: str, body: str) -> str:
    """A whole page around ``body`` (already escaped HTML)."""
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_POLICY)}">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{_e(title)}</title><style>{STYLE}</style></head>\n"
        f'<body><div class="wrap">{body}</div></body></html>\n'
    )


def render_error_page(title: str, message: str) -> str:
    """A page that says what went wrong and what to do, and nothing else."""
    return document(
        title,
        f'<main class="error panel"><p class="eyebrow">Usage and billing</p><h1>{_e(title)}</h1>'
        f'<p class="muted">{_e(message)}</p></main>',
    )


def render_usage_page(report: UsageReport, *, period_link: PeriodLink | None = None) -> str:
    """The customer's page for ``report``'s period. ``period_link``: the href of another period's page
    (previous and, up to the current one, next); None: no period navigation."""
    as_of = report.as_of.strftime("%Y-%m-%d %H:%M UTC")
    header = (
        '<header><div><p class="eyebrow">Usage and billing</p>'
        f'<h1 id="customer">{_e(report.customer_id)}</h1>'
        f'<p class="muted">Period <strong id="period">{_e(report.period)}</strong> · plan '
        f"{_e(report.plan_id)} v{report.plan_version} · as of {_e(as_of)}</p></div>"
        f"{_period_nav(report, period_link)}</header>"
    )
    chart = (
        '<section class="panel"><h2>Credits per day</h2>'
        f"{render_daily_chart(report.period, report.daily)}</section>"
    )
    tables = (
        f'<div class="two"><section class="panel"><h2>Usage by route</h2>{_routes_table(report)}</section>'
        f'<section class="panel"><h2>Estimated bill</h2>{_estimate_table(report)}</section></div>'
    )
    invoices = f'<section class="panel"><h2>Invoices</h2>{_invoices_table(report)}</section>'
    footer = (
        "<footer>Estimates are rated exactly as the period's invoice will be, before discounts and tax. "
        "Invoices open on Stripe's hosted invoice page.</footer>"
    )
    body = header + f"<main>{_cards(report)}{chart}{tables}{invoices}</main>" + footer
    return document(f"Usage · {report.customer_id} · {report.period}", body)


def _period_nav(report: UsageReport, period_link: PeriodLink | None) -> str:
    if period_link is None:
        return ""
    links = [
        f'<a rel="prev" href="{_e(period_link(previous_period(report.period)))}">← '
        f"{_e(previous_period(report.period))}</a>"
    ]
    following = next_period(report.period)
    if following <= period_of(report.as_of):
        links.append(f'<a rel="next" href="{_e(period_link(following))}">{_e(following)} →</a>')
    return f'<nav aria-label="Periods">{"".join(links)}</nav>'


def _card(label: str, value: str, note: str, ident: str) -> str:
    return (
        f'<div class="card" id="{ident}"><div class="label">{_e(label)}</div>'
        f'<div class="value">{_e(value)}</div><div class="note">{_e(note)}</div></div>'
    )


def _cards(report: UsageReport) -> str:
    cards = [
        _card("Credits used", f"{report.credits_used:,}", "this period", "credits-used"),
        _card("Requests", f"{report.requests:,}", "this period", "requests"),
        _card(
            "Estimated bill", report.estimated_charge.formatted, "so far, before discounts and tax", "bill"
        ),
    ]
    if report.refunded_requests:
        cards.append(
            _card(
                "Refunded",
                f"{report.refunded_credits:,} credits",
                f"of {report.refunded_requests:,} failed requests, not billed",
                "refunded",
            )
        )
    if report.included_credits:
        cards.append(
            _card(
                "Included credits left",
                f"{report.included_remaining:,}",
                f"of {report.included_credits:,} included",
                "included-left",
            )
        )
    if report.credit_limit is not None and report.credits_remaining is not None:
        cards.append(
            _card(
                "Credits left",
                f"{report.credits_remaining:,}",
                f"under a cap of {report.credit_limit:,}",
                "cap",
            )
        )
    if report.prepaid is not None:
        runs_out = report.prepaid.runs_out_at
        note = (
            f"runs out about {runs_out:%Y-%m-%d}" if runs_out else f"{report.prepaid.bought:,} bought in all"
        )
        cards.append(_card("Prepaid balance", f"{report.prepaid.credits:,} credits", note, "balance"))
    if report.budget is not None and report.budget.amount is not None:
        credits = report.budget.credits
        note = f"about {credits:,} credits a period" if credits is not None else "monthly spend limit"
        cards.append(_card("Budget", report.budget.amount.formatted, note, "budget"))
    return f'<section class="cards">{"".join(cards)}</section>'


def _nice_step(largest: int) -> int:
    """The gridline step: 1, 2 or 5 times a power of ten, so that ``_GRID_LINES`` steps reach ``largest``."""
    magnitude = 1
    while True:
        for step in (magnitude, 2 * magnitude, 5 * magnitude):
            if step * _GRID_LINES >= largest:
                return step
        magnitude *= 10


def render_daily_chart(period: str, daily: Sequence[DayLine]) -> str:
    """Credits per day as an inline SVG bar chart: one slot per day of the period, a bar per day so far."""
    first = period_start(period).date()
    days = (period_end(period).date() - first).days
    plot_height = CHART_HEIGHT - _TOP - _BOTTOM
    slot = (CHART_WIDTH - _LEFT - _RIGHT) // days
    width = _LEFT + slot * days + _RIGHT
    step = _nice_step(max((day.credits for day in daily), default=0))
    top = step * _GRID_LINES
    parts = [
        f'<svg id="daily-chart" viewBox="0 0 {width} {CHART_HEIGHT}" role="img" '
        f'aria-label="Credits per day in {_e(period)}" xmlns="http://www.w3.org/2000/svg">'
    ]
    for gridline in range(_GRID_LINES + 1):
        y = _TOP + plot_height - plot_height * gridline // _GRID_LINES
        parts.append(f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y}" y2="{y}"/>')
        parts.append(
            f'<text class="axis" x="{_LEFT - 8}" y="{y + 4}" text-anchor="end">{step * gridline:,}</text>'
        )
    for index in range(days):
        day = date.fromordinal(first.toordinal() + index)
        if index % 7 == 0:
            x = _LEFT + slot * index + slot // 2
            parts.append(
                f'<text class="axis" x="{x}" y="{CHART_HEIGHT - 8}" text-anchor="middle">'
                f"{day:%b} {day.day}</text>"
            )
    bar = max(1, slot * 7 // 10)
    for line in daily:
        index = (line.date - first).days
        if not 0 <= index < days:
            continue
        height = (2 * line.credits * plot_height + top) // (2 * top)  # rounded, whole units
        x = _LEFT + slot * index + (slot - bar) // 2
        y = _TOP + plot_height - height
        title = f"{line.date:%a %d %b %Y}: {line.credits:,} credits, {line.requests:,} requests"
        parts.append(
            f'<g class="day" data-date="{line.date.isoformat()}" data-credits="{line.credits}" '
            f'data-requests="{line.requests}"><title>{_e(title)}</title>'
            f'<rect class="bar" x="{x}" y="{y}" width="{bar}" height="{height}" rx="2"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(head: Iterable[tuple[str, bool]], rows: Iterable[str], foot: str = "", ident: str = "") -> str:
    cells = "".join(f"<th{' class=num' if numeric else ''}>{_e(name)}</th>" for name, numeric in head)
    return (
        f'<table id="{ident}"><thead><tr>{cells}</tr></thead><tbody>{"".join(rows)}</tbody>'
        f"{f'<tfoot>{foot}</tfoot>' if foot else ''}</table>"
    )


def _routes_table(report: UsageReport) -> str:
    if not report.routes:
        return '<p class="empty" id="routes">No requests yet this period.</p>'
    routes = sorted(report.routes, key=lambda r: (-r.credits, -r.requests, r.route))
    rows = [
        f'<tr data-route="{_e(r.route)}"><td><code>{_e(r.route)}</code></td>'
        f'<td class="num">{r.requests:,}</td><td class="num">{r.credits:,}</td></tr>'
        for r in routes
    ]
    foot = (
        f'<tr><td>Total</td><td class="num">{report.requests:,}</td>'
        f'<td class="num">{report.credits_used:,}</td></tr>'
    )
    return _table((("Route", False), ("Requests", True), ("Credits", True)), rows, foot, "routes")


def _estimate_table(report: UsageReport) -> str:
    rows = [
        f'<tr><td>{_e(line.description)}</td><td class="num">{line.quantity:,}</td>'
        f'<td class="num">{_e(line.amount.formatted)}</td></tr>'
        for line in report.estimate_lines
    ]
    foot = (
        f'<tr><td colspan="2">Estimated total</td>'
        f'<td class="num" id="estimated-total">{_e(report.estimated_charge.formatted)}</td></tr>'
    )
    return _table((("Line", False), ("Quantity", True), ("Amount", True)), rows, foot, "estimate")


def _invoice_row(invoice: InvoiceSummary, kind: str) -> str:
    status = invoice.invoice_status or invoice.close_status.replace("_", " ")
    href = safe_href(invoice.hosted_invoice_url)
    link = (
        f'<a class="invoice-link" href="{_e(href)}" rel="noopener noreferrer">View invoice</a>'
        if href
        else '<span class="muted">—</span>'
    )
    due = invoice.amount_due.formatted if invoice.amount_due is not None else "—"
    return (
        f'<tr data-period="{_e(invoice.period)}"><td>{_e(invoice.period)}{_e(kind)}</td>'
        f'<td><span class="status {_e(status)}">{_e(status)}</span></td>'
        f'<td class="num">{_e(invoice.total.formatted)}</td><td class="num">{_e(due)}</td>'
        f"<td>{link}</td></tr>"
    )


def _invoices_table(report: UsageReport) -> str:
    rows = [_invoice_row(i, " (early)") for i in report.threshold_invoices]
    rows += [_invoice_row(i, "") for i in report.recent_invoices]
    if not rows:
        return '<p class="empty" id="invoices">No invoices yet.</p>'
    head = (("Period", False), ("Status", False), ("Total", True), ("Due", True), ("Invoice", False))
    return _table(head, rows, ident="invoices")
