"""``tollgate customers``: create (with its Stripe customer), list, show (status history), suspend, resume."""

from __future__ import annotations

from typing import Annotated

import typer

from tollgate.accounts.customers import create_customer, resume_customer, status_history, suspend_customer
from tollgate.cli.config import app_context
from tollgate.cli.output import dash, out, table, when
from tollgate.dal.dunning import list_failures
from tollgate.domain.dunning import open_failures
from tollgate.domain.models import Customer

app = typer.Typer(help="Customers: create, list, show, suspend, resume.", no_args_is_help=True)


def _status(customer: Customer) -> str:
    return customer.status.value + (f" ({customer.status_reason})" if customer.status_reason else "")


@app.command("create")
def create(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id: lowercase letters, digits, '-' and '_'.")],
    name: Annotated[str, typer.Option(help="Name, as on invoices.")],
    email: Annotated[str, typer.Option(help="Billing email.")],
    plan: Annotated[str, typer.Option(help="Plan id.")],
    plan_version: Annotated[int | None, typer.Option(help="Plan version (default: the latest).")] = None,
    shards: Annotated[int, typer.Option(help="Usage counter shards (hot customers, no cap).")] = 1,
) -> None:
    """Create a customer on a plan, and its Stripe customer."""
    context = app_context(ctx)
    created = create_customer(
        context.store(),
        context.stripe(),
        customer_id=customer_id,
        name=name,
        email=email,
        plan_id=plan,
        plan_version=plan_version,
        counter_shards=shards,
        now=context.now(),
    )
    customer = created.customer
    verb = "linked existing customer" if created.resumed else "created customer"
    out().print(
        f"{verb} {customer.id} on plan {customer.plan_id} v{customer.plan_version}; "
        f"Stripe customer {customer.stripe_customer_id}",
        markup=False,
    )


@app.command("list")
def list_customers(ctx: typer.Context) -> None:
    """List customers."""
    customers = app_context(ctx).store().list_customers()
    if not customers:
        out().print("no customers yet: tollgate customers create ID --name ... --email ... --plan ...")
        return
    grid = table("id", "name", "plan", "status", "stripe customer")
    for customer in sorted(customers, key=lambda c: c.id):
        grid.add_row(
            customer.id,
            customer.name,
            f"{customer.plan_id} v{customer.plan_version}",
            _status(customer),
            dash(customer.stripe_customer_id),
        )
    out().print(grid)


@app.command("show")
def show(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """Show a customer, its open payment failures and its status history."""
    store = app_context(ctx).store()
    customer = store.get_customer(customer_id)
    console = out()
    rows = [
        ("name", customer.name),
        ("email", customer.email),
        ("plan", f"{customer.plan_id} v{customer.plan_version}"),
        ("status", _status(customer)),
        ("pay url", dash(customer.pay_url)),
        ("stripe customer", dash(customer.stripe_customer_id)),
        ("counter shards", str(customer.counter_shards)),
        ("created", when(customer.created_at)),
    ]
    console.print(f"customer {customer.id}", markup=False)
    for label, value in rows:
        console.print(f"  {label:<16} {value}", markup=False, soft_wrap=True)
    failures = open_failures(list_failures(store.table, customer.id))
    if failures:
        grid = table("invoice", "period", "first failed", "attempts", title="open payment failures")
        for failure in failures:
            grid.add_row(
                failure.invoice_id, dash(failure.period), when(failure.first_failed_at), str(failure.attempts)
            )
        console.print(grid)
    history = status_history(store, customer.id)
    if not history:
        console.print("status history: no changes since creation (active)")
        return
    grid = table("at", "status", "reason", "cause", title="status history")
    for change in history:
        grid.add_row(when(change.at), change.status, dash(change.reason), change.cause)
    console.print(grid)


@app.command("suspend")
def suspend(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """Suspend a customer by hand: every request is refused (customer_suspended); paying does not lift it."""
    context = app_context(ctx)
    changed = suspend_customer(context.store(), customer_id, now=context.now())
    out().print(f"suspended {customer_id}" if changed else f"{customer_id} was already suspended by hand")


@app.command("resume")
def resume(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """Restore a suspended customer's access (open payment failures are waived)."""
    context = app_context(ctx)
    changed = resume_customer(context.store(), customer_id, now=context.now())
    out().print(f"resumed {customer_id}" if changed else f"{customer_id} was already active")
