"""``tollgate usage CUSTOMER``: live usage of a period and the charge so far (what ``GET /usage`` returns)."""

from __future__ import annotations

from typing import Annotated

import typer

from tollgate.cli.config import app_context
from tollgate.cli.output import checked_period, dash, out, table
from tollgate.usage_api.report import UsageReport, build_usage_report


def usage(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    period: Annotated[str | None, typer.Option(help="YYYY-MM (default: the current period).")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as the usage API's JSON.")
    ] = False,
) -> None:
    """Live usage of a customer: credits, requests, per route, included left, cap, estimated charge so far."""
    context = app_context(ctx)
    report = build_usage_report(
        context.store(),
        customer_id,
        now=context.now(),
        period=checked_period(period) if period is not None else None,
        recent_invoices=0,
    )
    if as_json:
        out().print_json(report.model_dump_json(by_alias=True))
        return
    print_report(report)


def print_report(report: UsageReport) -> None:
    console = out()
    console.print(
        f"{report.customer_id} usage in {report.period} (plan {report.plan_id} v{report.plan_version})",
        markup=False,
    )
    cap = (
        "none"
        if report.credit_limit is None
        else f"{report.credit_limit:,} ({report.credits_remaining:,} left)"
    )
    rows = [
        ("credits", f"{report.credits_used:,}"),
        ("requests", f"{report.requests:,}"),
        ("included left", f"{report.included_remaining:,} of {report.included_credits:,}"),
        ("cap", cap),
        ("estimated charge", f"{report.estimated_charge.formatted} (before discounts and tax)"),
    ]
    if report.prepaid is not None:
        runs_out = report.prepaid.runs_out_at
        rows.append(
            ("prepaid balance", f"{report.prepaid.credits:,} credits ({report.prepaid.bought:,} bought)")
        )
        rows.append(
            (
                "burn rate",
                f"{report.prepaid.burn_rate_per_day:,} credits/day; "
                + (f"runs out {runs_out:%Y-%m-%d %H:%M} UTC" if runs_out else "not running out"),
            )
        )
    if report.budget is not None and report.budget.amount is not None:
        allows = "not binding" if report.budget.credits is None else f"{report.budget.credits:,} credits"
        rows.append(("budget", f"{report.budget.amount.formatted} per period ({allows})"))
    for label, value in rows:
        console.print(f"  {label:<17} {value}", markup=False)
    if report.routes:
        grid = table("route", "credits", "requests", title="per route")
        for line in report.routes:
            grid.add_row(line.route, f"{line.credits:,}", f"{line.requests:,}")
        console.print(grid)
    if report.estimate_lines:
        grid = table("line", "quantity", "amount", title="estimate so far")
        for est in report.estimate_lines:
            grid.add_row(est.description, f"{est.quantity:,}", dash(est.amount.formatted))
        console.print(grid)
