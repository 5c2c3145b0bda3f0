"""``tollgate credits``: a prepaid customer's balance (buy, add, show) and automatic top-ups."""

from __future__ import annotations

from typing import Annotated

import typer

from tollgate.accounts.auto_top_up import set_auto_top_up
from tollgate.accounts.prepaid import add_credits, buy_credits
from tollgate.cli.config import app_context
from tollgate.cli.output import dash, out, table, when
from tollgate.domain.models import AutoTopUp
from tollgate.domain.periods import period_of
from tollgate.errors import InvalidInputError

app = typer.Typer(help="Prepaid credits: buy, add, show, auto-top-up.", no_args_is_help=True)


@app.command("buy")
def buy(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id (on a prepaid plan).")],
    credits: Annotated[int, typer.Option(help="Credits to sell, at the plan's price.", min=1)],
    success_url: Annotated[
        str | None, typer.Option(help="Where Stripe sends the customer after paying (default: top_up_url).")
    ] = None,
    purchase_id: Annotated[
        str | None, typer.Option(help="Names the purchase: the same id again answers the same link.")
    ] = None,
) -> None:
    """A Stripe Checkout link selling credits; they are added once Stripe says the payment went through."""
    context = app_context(ctx)
    purchase = buy_credits(
        context.store(),
        context.stripe(),
        customer_id,
        credits=credits,
        success_url=success_url,
        purchase_id=purchase_id,
    )
    out().print(
        f"{purchase.credits:,} credits for {purchase.price}: {purchase.url}\n"
        f"(checkout session {purchase.session_id}; the credits are added when Stripe reports it paid)",
        markup=False,
    )


@app.command("add")
def add(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id (on a prepaid plan).")],
    credits: Annotated[int, typer.Option(help="Credits to add to the balance.", min=1)],
    reference: Annotated[
        str,
        typer.Option(help="What paid for them (a transfer's id): the credits are added once per reference."),
    ],
    note: Annotated[str | None, typer.Option(help="Kept with the top-up.")] = None,
) -> None:
    """Add credits to a prepaid customer's balance (running it again with the same reference adds nothing)."""
    context = app_context(ctx)
    result = add_credits(
        context.store(), customer_id, credits=credits, reference=reference, now=context.now(), note=note
    )
    done = "added" if result.added else "already added (nothing changed):"
    out().print(
        f"{done} {result.top_up.credits:,} credits to {customer_id} ({reference}); "
        f"balance {result.balance.credits:,} credits",
        markup=False,
    )


@app.command("auto-top-up")
def auto_top_up(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id (on a prepaid plan).")],
    below: Annotated[
        int | None, typer.Option(help="Top up when the balance falls below this.", min=1)
    ] = None,
    credits: Annotated[int | None, typer.Option(help="Credits each top-up buys.", min=1)] = None,
    suspend_on_failure: Annotated[
        bool, typer.Option("--suspend-on-failure", help="Suspend the customer if the charge fails.")
    ] = False,
    off: Annotated[bool, typer.Option("--off", help="No more automatic top-ups.")] = False,
) -> None:
    """Charge the customer's saved card (from a credits purchase) off-session when their balance falls below
    --below: --credits at the plan's price, once per crossing."""
    context = app_context(ctx)
    if off == (below is not None or credits is not None) or (not off and (below is None or credits is None)):
        raise InvalidInputError("give --below N --credits M, or --off")
    settings = None if off else AutoTopUp(below=below, credits=credits, suspend_on_failure=suspend_on_failure)
    customer = set_auto_top_up(context.store(), customer_id, settings)
    chosen = customer.auto_top_up
    if chosen is None:
        out().print(f"{customer_id}: no automatic top-up", markup=False)
        return
    failing = "suspends the customer" if chosen.suspend_on_failure else "alerts only"
    out().print(
        f"{customer_id}: {chosen.credits:,} credits charged to the saved card when the balance falls below "
        f"{chosen.below:,} (a failed charge {failing})",
        markup=False,
        soft_wrap=True,
    )


@app.command("show")
def show(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """A prepaid customer's balance, what this period drew from it, and every top-up."""
    context = app_context(ctx)
    store = context.store()
    customer = store.get_customer(customer_id)
    balance = store.read_balance(customer_id)
    period = period_of(context.now())
    usage = store.read_usage(customer_id, period, customer.counter_shards)
    out().print(
        f"{customer_id}: balance {balance.credits:,} credits ({balance.bought:,} bought, {balance.drawn:,} "
        f"drawn; {usage.credits:,} in {period})",
        markup=False,
    )
    top_ups = store.list_top_ups(customer_id)
    if not top_ups:
        out().print(f"no top-ups yet: tollgate credits add {customer_id} --credits N --reference R")
        return
    grid = table("reference", "credits", "source", "added", "note")
    for top_up in top_ups:
        grid.add_row(
            top_up.reference,
            f"{top_up.credits:,}",
            top_up.source.value,
            when(top_up.created_at),
            dash(top_up.note),
        )
    out().print(grid)
