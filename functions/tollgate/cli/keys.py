"""``tollgate keys``: issue, list, revoke, rotate a customer's API keys.

A key is printed exactly once, by ``issue`` or ``rotate``, on stdout alone (so ``KEY=$(tollgate keys issue
acme)`` works); the warning goes to stderr. Only its SHA-256 and a display prefix are stored, so ``list`` can
show no more than the prefix.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from tollgate.accounts.keys import IssuedKey, issue_key, revoke_key, rotate_key
from tollgate.cli.config import app_context
from tollgate.cli.output import err, out, parse_duration, table, when
from tollgate.domain.models import ApiKey

app = typer.Typer(help="API keys: issue (shown once), list, revoke, rotate.", no_args_is_help=True)

SHOWN_ONCE = "This is the only time the key is shown: Tollgate stores only its hash. Store it now."


def _print_new_key(issued: IssuedKey) -> None:
    err().print(
        f"issued key {issued.record.key_id} ({issued.record.name}) for {issued.record.customer_id}. "
        + SHOWN_ONCE,
        markup=False,
        soft_wrap=True,
    )
    out().print(issued.key, markup=False, soft_wrap=True)


def key_state(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None and key.revoked_at <= now:
        return f"revoked {when(key.revoked_at)}"
    if key.valid_until is not None:
        return f"{'expired' if key.valid_until <= now else 'valid until'} {when(key.valid_until)}"
    return "active"


@app.command("issue")
def issue(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "default",
    test: Annotated[bool, typer.Option("--test", help="A tg_test_ key instead of tg_live_.")] = False,
) -> None:
    """Issue a new API key. The key is printed once and cannot be shown again."""
    context = app_context(ctx)
    issued = issue_key(
        context.store(), customer_id, now=context.now(), name=name, mode="test" if test else "live"
    )
    _print_new_key(issued)


@app.command("list")
def list_keys(ctx: typer.Context, customer_id: Annotated[str, typer.Argument(help="Customer id.")]) -> None:
    """List a customer's keys (display prefix only)."""
    context = app_context(ctx)
    store = context.store()
    store.get_customer(customer_id)  # an unknown customer is an error, not an empty list
    keys = store.list_api_keys(customer_id)
    if not keys:
        out().print(f"{customer_id} has no keys: tollgate keys issue {customer_id}")
        return
    now = context.now()
    grid = table("key id", "name", "prefix", "created", "state")
    for key in keys:
        grid.add_row(
            key.key_id, key.name, key.display_prefix + "…", when(key.created_at), key_state(key, now)
        )
    out().print(grid)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    key_id: Annotated[str, typer.Argument(help="Key id (key_...), from `keys list`.")],
) -> None:
    """Revoke a key now (the authorizer refuses it within its key cache TTL, 30 s)."""
    context = app_context(ctx)
    key = revoke_key(context.store(), customer_id, key_id, now=context.now())
    out().print(f"revoked {key.key_id} ({key.display_prefix}…) at {when(key.revoked_at)}", markup=False)


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    key_id: Annotated[str, typer.Argument(help="The key to replace.")],
    overlap: Annotated[
        str, typer.Option(help="How long the old key keeps working: 0, 30m, 1h, 2d (at most 30d).")
    ] = "0",
) -> None:
    """Issue a replacement key; the old one stops now, or after --overlap."""
    context = app_context(ctx)
    issued, old = rotate_key(
        context.store(), customer_id, key_id, now=context.now(), overlap=parse_duration(overlap)
    )
    ends = old.revoked_at or old.valid_until
    err().print(f"old key {old.key_id} ({old.display_prefix}…) stops working at {when(ends)}", markup=False)
    _print_new_key(issued)
