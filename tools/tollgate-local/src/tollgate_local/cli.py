"""``tollgate-local demo`` and ``tollgate-local up``: Tollgate on this machine, offline, on 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="Run Tollgate locally: Amazon DynamoDB Local, the Stripe double, a local API gateway.")

DEFAULT_PORTS = {"gateway": 8787, "dynamodb": 0, "stripe": 12111}  # 0: a random free port


@contextlib.contextmanager
def _one_line_errors() -> Iterator[None]:
    """What the local services need and this machine lacks (Java 17+, ``npm ci``): one line, exit code 1."""
    from tollgate_local.dynamodb_local import DynamoDBLocalError

    try:
        yield
    except DynamoDBLocalError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


@app.command("demo")
def demo(
    scale: Annotated[
        float, typer.Option(min=0.01, max=10, help="Traffic multiplier (1 = about 2,000 requests).")
    ] = 1.0,
) -> None:
    """The whole billing cycle in about a minute: plans, customers, keys, traffic, refusals, invoices."""
    from tollgate_local import demo as story

    with _one_line_errors():
        invoices = story.run(Console(), scale=scale)
    wrong = [invoice.customer_id for invoice in invoices if invoice.invoiced_total != invoice.expected_total]
    if wrong:
        Console(stderr=True).print(f"error: invoices of {', '.join(wrong)} differ from what the traffic cost")
        raise typer.Exit(1)


@app.command("up")
def up(
    port: Annotated[int, typer.Option(help="Local API gateway port.")] = DEFAULT_PORTS["gateway"],
    dynamodb_port: Annotated[
        int, typer.Option(help="DynamoDB Local port (0: a random free one; it listens on every interface).")
    ] = DEFAULT_PORTS["dynamodb"],
    stripe_port: Annotated[int, typer.Option(help="Stripe double port.")] = DEFAULT_PORTS["stripe"],
    minutes: Annotated[float, typer.Option(min=0.01, help="Stop by itself after this long.")] = 60,
    seed: Annotated[bool, typer.Option(help="Create the demo plans, two customers and their keys.")] = True,
    ledger_dir: Annotated[
        Path | None,
        typer.Option(help="Keep the usage ledger here (default: a temporary directory removed on exit)."),
    ] = None,
) -> None:
    """Keep the local services running for manual use (curl, the tollgate CLI) until Ctrl-C or --minutes."""
    from tollgate.billing.settings import StripeSettings
    from tollgate.billing.stripe_client import stripe_client_from
    from tollgate.dal.store import TollgateStore
    from tollgate_local.demo import create_customers, demo_plans, scaled_traffic
    from tollgate_local.services import local_stack

    console = Console()
    with (
        _one_line_errors(),
        local_stack(
            gateway_port=port,
            dynamodb_port=dynamodb_port,
            stripe_port=stripe_port,
            ledger_dir=ledger_dir,
            on_alert=lambda event: console.print(
                f"alert: {event['detail-type']}: {event['detail']['alertId']}", markup=False
            ),
            on_refund=lambda refund: console.print(
                f"refund: {refund.customer_id} request {refund.request_id} ended in HTTP {refund.status}: "
                f"{refund.credits:,} credit(s) back",
                markup=False,
                soft_wrap=True,
            ),
        ) as stack,
    ):
        keys: dict[str, str] = {}
        refunding: set[str] = set()  # customers whose plan refunds failed requests
        if seed:
            store, plans = TollgateStore(stack.table), demo_plans(scaled_traffic(1.0))
            for plan in plans.values():
                store.put_plan(plan)
            stripe_client = stripe_client_from(StripeSettings.from_env())
            issued = create_customers(store, stripe_client, plans, now=datetime.now(UTC))
            keys = {customer_id: key.key for customer_id, key in issued.items()}
            refunding = {customer_id for customer_id, plan in plans.items() if plan.refund_statuses}
        stripe = stack.stripe_base or "real Stripe test mode"
        console.print(
            f"[bold]Tollgate local[/bold]: gateway {stack.gateway_url}, DynamoDB {stack.dynamodb_url}, "
            f"Stripe {stripe}"
        )
        kept = "kept" if ledger_dir is not None else "removed when it stops"
        console.print(
            f"Usage ledger (one JSON line per request, {kept}): "
            f"{stack.ledger_dir}/period=YYYY-MM/day=YYYY-MM-DD/; delivered every second to the refunds of "
            "failed requests (Firehose's 300 s buffer in AWS)",
            soft_wrap=True,
            markup=False,
        )
        console.print("\nFor the tollgate CLI in another shell:")
        console.print(
            f"  export AWS_ENDPOINT_URL={stack.dynamodb_url} AWS_ACCESS_KEY_ID=local "
            f"AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1 TABLE_NAME={stack.table}"
            f" PORTAL_LINK_SECRET={stack.portal_link_secret} TOLLGATE_PORTAL_URL={stack.portal_url}"
            + (
                f" STRIPE_API_KEY=sk_test_tollgate_local STRIPE_API_BASE={stack.stripe_base}"
                if stack.stripe_base
                else ""
            ),
            soft_wrap=True,
        )
        for customer_id, key in keys.items():
            console.print(f"\n{customer_id}'s key (shown once): {key}", soft_wrap=True)
            console.print(f"  curl -s -H 'x-api-key: {key}' {stack.gateway_url}/v1/search", soft_wrap=True)
            if customer_id in refunding:  # the sample backend fails on request; the delivery refunds it
                console.print(
                    f"  curl -s -H 'x-api-key: {key}' '{stack.gateway_url}/v1/search?fail=503'"
                    "   (refunded within a second: its plan bills only what succeeded)",
                    soft_wrap=True,
                )
        console.print(f"\nStops by itself in {minutes:g} minutes; Ctrl-C stops it now.")
        with contextlib.suppress(KeyboardInterrupt):
            time.sleep(minutes * 60)
    console.print("Stopped every local service.")
