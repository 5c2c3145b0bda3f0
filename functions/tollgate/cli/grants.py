"""``tollgate grants``: free credits for a customer (add, list, revoke)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from tollgate.accounts.credit_grants import add_grant, revoke_grant
from tollgate.cli.config import app_context
from tollgate.cli.output import dash, out, table, when
from tollgate.domain.credit_grants import GrantKind
from tollgate.errors import InvalidInputError

app = typer.Typer(help="Free credits: add, list, revoke.", no_args_is_help=True)


def parse_moment(text: str | None, option: str) -> datetime | None:
    """``2026-12-31`` (midnight UTC) or an ISO 8601 date-time; naive times are UTC."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise InvalidInputError(
            f"{option}: {text!r} is not a date like 2026-12-31 or 2026-12-31T12:00"
        ) from error
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@app.command("add")
def add(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    credits: Annotated[int, typer.Option(help="Free credits (every period with --recurring).", min=1)],
    recurring: Annotated[bool, typer.Option("--recurring", help="Give the credits every period.")] = False,
    description: Annotated[str, typer.Option(help="Shown on the invoice line.")] = "free credits",
    starts: Annotated[str | None, typer.Option(help="From (default: now), e.g. 2026-12-01.")] = None,
    expires: Annotated[str | None, typer.Option(help="Until, e.g. 2026-12-31 (default: never).")] = None,
) -> None:
    """Give a customer free credits, used before paid usage and shown on their invoices."""
    context = app_context(ctx)
    grant = add_grant(
        context.store(),
        customer_id,
        credits=credits,
        now=context.now(),
        schedule=GrantKind.RECURRING if recurring else GrantKind.ONE_TIME,
        description=description,
        starts=parse_moment(starts, "--starts"),
        expires=parse_moment(expires, "--expires"),
    )
    every = " every period" if recurring else ""
    granted = f"granted {grant.credits:,} free credits{every} to {customer_id} ({grant.description})"
    out().print(f"{granted}: {grant.grant_id}", markup=False)


@app.command("list")
def list_grants(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """List a customer's grants: what is left of one-time grants is on the close records."""
    store = app_context(ctx).store()
    store.get_customer(customer_id)
    grants = store.list_credit_grants(customer_id)
    if not grants:
        out().print(f"{customer_id} has no credit grants: tollgate grants add {customer_id} --credits N")
        return
    grid = table("grant", "credits", "kind", "description", "starts", "expires", "revoked")
    for grant in grants:
        grid.add_row(
            grant.grant_id,
            f"{grant.credits:,}",
            grant.schedule.value.replace("_", "-"),
            grant.description,
            when(grant.starts),
            dash(grant.expires and when(grant.expires)),
            dash(grant.revoked_at and when(grant.revoked_at)),
        )
    out().print(grid)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    grant_id: Annotated[str, typer.Argument(help="Grant id (grt_...).")],
) -> None:
    """Stop a grant from now on."""
    context = app_context(ctx)
    changed = revoke_grant(context.store(), customer_id, grant_id, now=context.now())
    out().print(f"revoked {grant_id}" if changed else f"{grant_id} was already revoked")
