"""``tollgate invoices``: a customer's invoices, from the period close records (status, total, hosted URL).

A statement's total is before discounts and tax: Stripe applies those (a customer's coupon, Stripe Tax) on the
invoice; ``amount due`` is what Stripe says the customer owes after them.
"""

from __future__ import annotations

from typing import Annotated

import typer

from tollgate.cli.config import app_context
from tollgate.cli.output import checked_period, dash, out, table, when
from tollgate.dal.closes import get_close, list_closes, list_threshold_invoices
from tollgate.domain.carry_over import describe as describe_carry
from tollgate.domain.money import format_amount
from tollgate.errors import NotFoundError

app = typer.Typer(help="Invoices from the period closes: list, show.", no_args_is_help=True)


@app.command("list")
def list_invoices(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    limit: Annotated[int, typer.Option(min=1, max=120, help="How many periods, newest first.")] = 12,
) -> None:
    """List a customer's closed periods, newest first."""
    store = app_context(ctx).store()
    store.get_customer(customer_id)
    closes = list_closes(store.table, customer_id, limit=limit)
    if not closes:
        out().print(f"{customer_id} has no closed periods yet")
        return
    grid = table("period", "close", "invoice", "invoice status", "total before tax")
    for close in closes:
        grid.add_row(
            close.period,
            close.status.value,
            dash(close.stripe_invoice_id),
            dash(close.invoice_status),
            format_amount(close.total, close.statement.currency),
        )
    out().print(grid)


@app.command("show")
def show(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    period: Annotated[str, typer.Argument(help="YYYY-MM.")],
) -> None:
    """Show the invoice of one period: status, lines, total, hosted invoice URL; and the period's threshold
    invoices (progressive billing), also before it closes."""
    store = app_context(ctx).store()
    store.get_customer(customer_id)
    close = get_close(store.table, customer_id, checked_period(period, "PERIOD"))
    early = list_threshold_invoices(store.table, customer_id, period)
    if close is None and not early:
        raise NotFoundError("invoice", f"{customer_id} {period}")
    if early:
        grid = table("threshold invoice", "status", "invoice", "invoice status", "credits", "total", "pay at")
        for part in early:
            grid.add_row(
                str(part.part),
                part.status.value,
                dash(part.stripe_invoice_id),
                dash(part.invoice_status),
                f"{part.billed_credits:,}",
                format_amount(part.total, part.statement.currency),
                dash(part.hosted_invoice_url),
            )
        out().print(grid)
    if close is None:
        out().print(f"{customer_id} {period} is not closed yet", markup=False)
        return
    currency = close.statement.currency
    console = out()
    console.print(f"invoice of {customer_id} for {close.period}", markup=False)
    rows = [
        ("close status", close.status.value),
        ("stripe invoice", dash(close.stripe_invoice_id)),
        ("invoice status", dash(close.invoice_status)),
        ("total", f"{format_amount(close.total, currency)} (before discounts and tax)"),
        (
            "amount due",
            "-"
            if close.amount_due is None
            else f"{format_amount(close.amount_due, currency)} (after Stripe's discounts and tax)",
        ),
        ("hosted invoice", dash(close.hosted_invoice_url)),
        ("plan", f"{close.statement.plan_id} v{close.statement.plan_version}"),
        ("credits billed", f"{close.billed_credits:,}"),
        ("updated", when(close.updated_at)),
    ]
    for carry in close.carried:
        rows.append(("carried", describe_carry(carry)))
    if close.carried_to:
        rows.append(("carried to", f"the close of {close.carried_to}"))
    if close.last_error:
        rows.append(("last error", close.last_error))
    for label, value in rows:
        console.print(f"  {label:<15} {value}", markup=False, soft_wrap=True)
    if close.statement.lines:
        grid = table("line", "quantity", "amount")
        for line in close.statement.lines:
            grid.add_row(line.description, f"{line.quantity:,}", format_amount(line.amount, currency))
        console.print(grid)
