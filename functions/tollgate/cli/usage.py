"""``tollgate usage CUSTOMER``: live usage of a period and the charge so far (what ``GET /usage`` returns);
``tollgate usage export CUSTOMER``: a period's usage as CSV (what ``GET /usage/export`` returns), or one row
per request of the ledger (``--per-request``).

    tollgate usage CUSTOMER [--period P] [--json]
    tollgate usage export CUSTOMER [--period P] [--per-request] [--ledger DIR | --athena] [--output FILE]

Without a ledger (neither ``--ledger``, ``TOLLGATE_LEDGER_DIR`` nor ``--athena``) the export's rows are the
counters' days under the route ``*``; ``--per-request`` needs the ledger.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from tollgate.cli.config import app_context
from tollgate.cli.output import checked_period, dash, out, table
from tollgate.cli.reconcile import (
    ENV_LEDGER_DIR,
    AthenaOption,
    DatabaseOption,
    LedgerDirOption,
    TableOption,
    WorkgroupOption,
    ledger_queries,
)
from tollgate.dal.refunds import RefundLedger
from tollgate.domain.periods import period_of
from tollgate.ledger.export import daily_usage, daily_usage_csv, requests_csv
from tollgate.usage_api.report import UsageReport, build_usage_report

SHOW = "show"


class UsageGroup(TyperGroup):
    """``tollgate usage CUSTOMER`` is ``tollgate usage show CUSTOMER``: anything that is not a subcommand's
    name (or help) goes to ``show``, so the report keeps its short form beside ``export``."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in {"--help", "-h"}:
            args = [SHOW, *args]
        return list(super().parse_args(ctx, args))


app = typer.Typer(
    cls=UsageGroup,
    help="A customer's usage: the live report (tollgate usage CUSTOMER), or a period's CSV export.",
    no_args_is_help=True,
)


@app.command(SHOW, hidden=True)
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
    if report.refunded_requests:
        refunded = f"{report.refunded_credits:,} credits of {report.refunded_requests:,} failed requests"
        rows.insert(2, ("refunded", refunded))
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
    if any(day.requests for day in report.daily):
        grid = table("date", "credits", "requests", title="per day (UTC)")
        for day in report.daily:
            grid.add_row(day.date.isoformat(), f"{day.credits:,}", f"{day.requests:,}")
        console.print(grid)
    if report.estimate_lines:
        grid = table("line", "quantity", "amount", title="estimate so far")
        for est in report.estimate_lines:
            grid.add_row(est.description, f"{est.quantity:,}", dash(est.amount.formatted))
        console.print(grid)


@app.command("export")
def export(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    period: Annotated[str | None, typer.Option(help="YYYY-MM (default: the current period).")] = None,
    per_request: Annotated[
        bool,
        typer.Option(
            "--per-request", help="One row per request of the ledger, instead of per day and route."
        ),
    ] = False,
    ledger_dir: LedgerDirOption = None,
    athena: AthenaOption = False,
    workgroup: WorkgroupOption = None,
    database: DatabaseOption = None,
    table_name: TableOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the CSV to FILE (default: standard output).")
    ] = None,
) -> None:
    """A period's usage as CSV: date,route,requests,credits,refunded per day and route (from the ledger;
    without one, per day from the counters, route *), or one row per request of the ledger with
    --per-request (refunded: a failed request refunded)."""
    context = app_context(ctx)
    period = checked_period(period) if period is not None else period_of(context.now())
    store = context.store()
    customer = store.get_customer(customer_id)
    refunds = RefundLedger(store).list(customer.id, period)
    if per_request:  # only the ledger knows each request
        ledger = ledger_queries(context, ledger_dir, athena, workgroup, database, table_name)
        refunded = {refund.request_id for refund in refunds}
        text = requests_csv(ledger.customer_requests(period, customer.id), refunded)
    else:
        kept = athena or ledger_dir or context.env.get(ENV_LEDGER_DIR)
        found = ledger_queries(context, ledger_dir, athena, workgroup, database, table_name) if kept else None
        days = daily_usage(found, store, customer.id, period, customer.counter_shards, refunds)
        text = daily_usage_csv(days)
    if output is None:
        typer.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8", newline="")
    rows = text.count("\r\n") - 1
    out().print(
        f"{rows:,} row(s) of {customer.id}'s {period} written to {output}", markup=False, soft_wrap=True
    )
