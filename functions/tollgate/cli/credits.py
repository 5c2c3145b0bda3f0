"""``tollgate credits``: a prepaid customer's balance (buy, add, show), automatic top-ups, and the expiry
of credits (``expire``: the hourly sweep, run by hand)."""

from __future__ import annotations

from typing import Annotated

import typer

from tollgate.accounts.auto_top_up import set_auto_top_up
from tollgate.accounts.prepaid import add_credits, buy_credits
from tollgate.cli.config import app_context
from tollgate.cli.grants import parse_moment
from tollgate.cli.output import dash, err, out, table, when
from tollgate.domain.models import AutoTopUp
from tollgate.domain.periods import period_of
from tollgate.domain.prepaid import LotsOutOfStepError, allocation_order, unused_credits
from tollgate.errors import InvalidInputError, TollgateError
from tollgate.expiry.service import sweep

app = typer.Typer(help="Prepaid credits: buy, add, show, expire, auto-top-up.", no_args_is_help=True)


@app.command("buy")
def buy(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id (on a prepaid plan).")],
    credits: Annotated[
        int | None, typer.Option(help="Credits to sell, at the plan's price (or --pack).", min=1)
    ] = None,
    pack: Annotated[
        str | None, typer.Option(help="One of the plan's credit_packs, by id (or --credits).")
    ] = None,
    success_url: Annotated[
        str | None, typer.Option(help="Where Stripe sends the customer after paying (default: top_up_url).")
    ] = None,
    purchase_id: Annotated[
        str | None, typer.Option(help="Names the purchase: the same id again answers the same link.")
    ] = None,
) -> None:
    """A Stripe Checkout link selling credits, or one of the plan's packs; they are added once Stripe says
    the payment went through (a pack's credits expire its validity in days after that)."""
    context = app_context(ctx)
    purchase = buy_credits(
        context.store(),
        context.stripe(),
        customer_id,
        credits=credits,
        pack=pack,
        success_url=success_url,
        purchase_id=purchase_id,
    )
    chosen = purchase.pack
    what = f"{purchase.credits:,} credits"
    if chosen is not None:
        valid = (
            "never expire"
            if chosen.expires_after_days is None
            else f"valid {chosen.expires_after_days:,} days"
        )
        what = f"pack {chosen.id}: {what} ({valid} once paid)"
    out().print(
        f"{what} for {purchase.price}: {purchase.url}\n"
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
    expires_in_days: Annotated[
        int | None, typer.Option(help="What is left of them expires this many days from now.", min=1)
    ] = None,
) -> None:
    """Add credits to a prepaid customer's balance (running it again with the same reference adds nothing)."""
    context = app_context(ctx)
    result = add_credits(
        context.store(),
        customer_id,
        credits=credits,
        reference=reference,
        now=context.now(),
        note=note,
        expires_in_days=expires_in_days,
    )
    done = "added" if result.added else "already added (nothing changed):"
    expiry = result.top_up.expires_at
    until = "" if expiry is None else f", expiring {when(expiry)}"
    out().print(
        f"{done} {result.top_up.credits:,} credits to {customer_id} ({reference}{until}); "
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
    expired = f", {balance.expired:,} expired" if balance.expired else ""
    out().print(
        f"{customer_id}: balance {balance.credits:,} credits ({balance.bought:,} bought, {balance.drawn:,} "
        f"drawn{expired}; {usage.credits:,} in {period})",
        markup=False,
    )
    top_ups = store.list_top_ups(customer_id)
    if not top_ups:
        out().print(f"no top-ups yet: tollgate credits add {customer_id} --credits N --reference R")
        return
    try:  # what is left of each lot, drawn soonest-expiring first
        left: dict[str, int] | None = unused_credits(balance, top_ups)
    except LotsOutOfStepError:  # a top-up landed between the two reads
        left = None
    grid = table("reference", "credits", "source", "added", "expires", "left", "expired", "note")
    for top_up in allocation_order(top_ups):
        settled = top_up.expired_credits
        grid.add_row(
            top_up.reference,
            f"{top_up.credits:,}",
            top_up.source.value,
            when(top_up.created_at),
            "never" if top_up.expires_at is None else when(top_up.expires_at),
            "-" if settled is not None or left is None else f"{left[top_up.reference]:,}",
            "-" if settled is None else f"{settled:,}",
            dash(top_up.note or (top_up.pack and f"pack {top_up.pack}")),
        )
    out().print(grid)
    out().print("credits are drawn soonest-expiring first; lots are listed in that order", markup=False)


@app.command("expire")
def expire(
    ctx: typer.Context,
    now: Annotated[
        str | None,
        typer.Option(help="Expire what is due at this time (default: now), e.g. 2026-12-31T12:00."),
    ] = None,
) -> None:
    """Expire the unused credits of every lot past its expiry (the hourly sweep, run now): once per lot,
    safe to run while the deployed sweep runs."""
    context = app_context(ctx)
    moment = parse_moment(now, "--now") or context.now()
    result = sweep(context.store(), now=moment)
    for customer_id, problem in result.failed.items():
        err().print(f"{customer_id}: its lots could not be settled: {problem}", markup=False)
    if not result.settled and not result.left and not result.failed:
        out().print(f"nothing due at {when(moment)}", markup=False)
        return
    grid = table("customer", "reference", "expired at", "credits expired")
    for lot in result.settled:
        grid.add_row(lot.customer_id, lot.reference, when(lot.expires_at), f"{lot.expired:,}")
    out().print(grid)
    out().print(
        f"{len(result.settled):,} lot(s) settled at {when(moment)}, "
        f"{result.credits_expired:,} credits expired",
        markup=False,
    )
    if result.failed:
        raise TollgateError(f"the lots of {len(result.failed)} customer(s) could not be settled (above)")
    if result.left:
        out().print(
            f"left for the next sweep (they kept changing): {', '.join(result.left)}; run it again",
            markup=False,
        )
