"""``tollgate close``: run (or re-run) the close of a period here, through ``tollgate.billing.close.service``.

The same code as the deployed worker, with the CLI's table and Stripe client. Re-running is safe: a customer
already closed is reported as it stands and Stripe is not called for it again.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer, close_period
from tollgate.billing.close.summary import CloseSummary, CustomerClose
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.cli.config import app_context
from tollgate.cli.output import checked_period, dash, err, out, table
from tollgate.domain.money import format_amount
from tollgate.domain.periods import period_of, previous_period


def close(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option(help="YYYY-MM (default: the previous period).")] = None,
    customer: Annotated[str | None, typer.Option(help="Close only this customer.")] = None,
) -> None:
    """Close a period: rate every customer's usage and invoice it in Stripe. Safe to run again."""
    context = app_context(ctx)
    now = context.now()
    period = checked_period(period) if period is not None else previous_period(period_of(now))
    store = context.store()
    ledger = DynamoLedger(store)
    gateway = StripeClientInvoicing(context.stripe())
    if customer is not None:
        record = close_customer(ledger, gateway, customer, period, now=now)
        summary = CloseSummary(period=period, customers=(CustomerClose.of(record),))
    else:
        total = len(store.list_customers())
        with Progress(
            TextColumn("closing {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        ) as progress:
            task = progress.add_task(period, total=total)
            summary = close_period(
                ledger, gateway, period, now=now, on_progress=lambda _result: progress.advance(task)
            )
    print_summary(summary)
    if summary.failed:
        err().print(
            f"error: {len(summary.failed)} of {len(summary.customers)} customer(s) failed to close; "
            f"fix the cause and run `tollgate close --period {period}` again",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def print_summary(summary: CloseSummary) -> None:
    console = out()
    if not summary.customers:
        console.print(f"close of {summary.period}: no customers")
        return
    grid = table("customer", "status", "total", "invoice", "note", title=f"close of {summary.period}")
    for line in summary.customers:
        total = (
            "-" if line.total is None or line.currency is None else format_amount(line.total, line.currency)
        )
        note = line.error or ("Stripe total differs from the statement" if line.total_mismatch else "")
        grid.add_row(line.customer_id, str(line.status), total, dash(line.stripe_invoice_id), note)
    console.print(grid)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts.items()))
    console.print(f"{len(summary.customers)} customer(s): {counts}")
