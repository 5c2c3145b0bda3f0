"""``tollgate close``: run (or re-run) the close of a period here, or see how far a period's close has got.

    tollgate close [--period P] [--customer ID]     # the same as `tollgate close run`
    tollgate close status [--period P] [--check]

``run`` is the same code as the deployed worker (``tollgate.billing.close.service``), with the CLI's table and
Stripe client. Re-running is safe: a customer already closed is reported as it stands and Stripe is not called
for it again. ``status`` only reads the table and counts the customers by close state with the deployed close
watchdog's own function (``tollgate.domain.close_progress``).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer, close_period
from tollgate.billing.close.summary import CloseSummary, CustomerClose
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.cli.config import app_context
from tollgate.cli.output import checked_period, dash, err, out, table
from tollgate.dal.closes import closes_of_period
from tollgate.domain.close_progress import CloseProgress, CustomerCloseState, close_progress
from tollgate.domain.closes import ensure_period_ended
from tollgate.domain.money import format_amount
from tollgate.domain.periods import period_of, previous_period

PeriodOption = Annotated[str | None, typer.Option(help="YYYY-MM (default: the previous period).")]
CustomerOption = Annotated[str | None, typer.Option(help="Close only this customer.")]

app = typer.Typer(
    help="Close a period (`tollgate close [--period P]`, the same as `close run`), or see how far its close "
    "has got (`tollgate close status`).",
    no_args_is_help=False,
)


@app.callback(invoke_without_command=True)
def default(ctx: typer.Context, period: PeriodOption = None, customer: CustomerOption = None) -> None:
    """Close a period (`run`, the default), or see how far its close has got (`status`)."""
    if ctx.invoked_subcommand is None:
        close(ctx, period=period, customer=customer)
    elif period is not None or customer is not None:
        raise typer.BadParameter(
            f"put the options after the subcommand: `tollgate close {ctx.invoked_subcommand} --period ...`"
        )


@app.command("run")
def close(
    ctx: typer.Context,
    period: PeriodOption = None,
    customer: CustomerOption = None,
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
    grid = table(
        "customer", "status", "total before tax", "invoice", "note", title=f"close of {summary.period}"
    )
    for line in summary.customers:
        total = (
            "-" if line.total is None or line.currency is None else format_amount(line.total, line.currency)
        )
        note = line.error or ("Stripe total differs from the statement" if line.total_mismatch else "")
        grid.add_row(line.customer_id, str(line.status), total, dash(line.stripe_invoice_id), note)
    console.print(grid)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(summary.counts.items()))
    console.print(f"{len(summary.customers)} customer(s): {counts}")


@app.command("status")
def status(
    ctx: typer.Context,
    period: PeriodOption = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 when any customer is unfinished or mismatched (use once the close should be done).",
        ),
    ] = False,
) -> None:
    """How far a period's close has got: customers by state, unfinished ones, mismatched totals.

    Unfinished: no finalized or no_charge record yet. Waiting (listed, not a failure): late usage carried in
    another currency, until a close invoices in it. Reads only; the close watchdog counts the same way.

    Exit code: 0 whatever it finds, so it can be watched while the close is still running.

    With --check: 1 when any customer is unfinished or mismatched (once the close should be done).
    """
    context = app_context(ctx)
    now = context.now()
    period = checked_period(period) if period is not None else previous_period(period_of(now))
    ensure_period_ended(period, now)
    progress = close_progress(period, closes_of_period(context.store(), period))
    print_progress(progress)
    if check and not progress.complete:
        err().print(
            f"error: the close of {period} is not complete: {len(progress.unfinished)} unfinished, "
            f"{len(progress.mismatched)} mismatched",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def print_progress(progress: CloseProgress) -> None:
    console = out()
    grid = table("state", "customers", title=f"close of {progress.period}")
    for state, count in progress.counts.items():
        grid.add_row(str(state), str(count))
    console.print(grid)
    joined = (
        f" ({progress.joined_after} created after the period: not billed)" if progress.joined_after else ""
    )
    console.print(
        f"{progress.terminal} of {progress.customers} customer(s) closed, {len(progress.unfinished)} "
        f"unfinished, {len(progress.mismatched)} mismatched{joined}",
        markup=False,
    )
    if progress.unfinished:
        unfinished = table("customer", "state", "attempts", "last error", title="unfinished")
        for line in progress.unfinished:
            error = escape(line.last_error) if line.last_error else "-"  # an error's text is not markup
            unfinished.add_row(line.customer_id, str(line.state), str(line.attempts), error)
        console.print(unfinished)
    if progress.mismatched:
        mismatched = table("customer", "invoice", "statement total", title="Stripe total differs")
        for line in progress.mismatched:
            mismatched.add_row(line.customer_id, dash(line.stripe_invoice_id), _total(line))
        console.print(mismatched)
    if progress.waiting:
        console.print(
            f"{len(progress.waiting)} customer(s) with late usage waiting for an invoice in its currency "
            "(the first close in that currency bills it)",
            markup=False,
        )
        waiting = table("customer", "carried", title="waiting")
        for line in progress.waiting:
            carried = ", ".join(format_amount(amount, currency) for currency, amount in line.waiting.items())
            waiting.add_row(line.customer_id, carried)
        console.print(waiting)


def _total(line: CustomerCloseState) -> str:
    if line.total is None or line.currency is None:
        return "-"
    return format_amount(line.total, line.currency)
