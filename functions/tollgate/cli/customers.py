"""``tollgate customers``: create (with its Stripe customer), list, show (status history), suspend, resume;
a Stripe coupon on the invoices (``discount``), what Stripe Tax needs (``tax-info``), the customer's
spend limit (``budget``), their own usage alert rules (``alerts``) and their alert webhook
(``alert-webhook``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import typer

from tollgate.accounts.alert_rules import AlertRulesStatus, alert_rules_status, set_alert_rules
from tollgate.accounts.alert_webhooks import change_alert_webhook
from tollgate.accounts.budgets import budget_status, set_budget
from tollgate.accounts.credit_grants import set_trial
from tollgate.accounts.customers import create_customer, resume_customer, status_history, suspend_customer
from tollgate.accounts.discounts import attach_discount, current_discount, remove_discount
from tollgate.accounts.plan_changes import PLAN_CHANGE_DELAY, change_plan
from tollgate.accounts.tax import Address, TaxExempt, parse_tax_id, set_tax_info, tax_info
from tollgate.cli.config import app_context
from tollgate.cli.grants import parse_moment
from tollgate.cli.output import dash, out, table, when
from tollgate.dal.dunning import list_failures
from tollgate.domain.dunning import open_failures
from tollgate.domain.models import Customer
from tollgate.domain.money import format_amount
from tollgate.domain.plan_files import parse_text
from tollgate.errors import InvalidInputError

app = typer.Typer(
    help="Customers: create, list, show, suspend, resume, discount, tax-info, budget, alerts, alert-webhook.",
    no_args_is_help=True,
)


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
    current, latest = customer.segment_at(app_context(ctx).now()), customer.segments[-1]
    plan = f"{current.plan_id} v{current.plan_version}"
    if latest != current:
        plan += f" (moves to {latest.plan_id} v{latest.plan_version} at {when(latest.since)})"
    rows = [
        ("name", customer.name),
        ("email", customer.email),
        ("plan", plan),
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
    _print_plan_history(customer, app_context(ctx).now())
    history = status_history(store, customer.id)
    if not history:
        console.print("status history: no changes since creation (active)")
        return
    grid = table("at", "status", "reason", "cause", title="status history")
    for change in history:
        grid.add_row(when(change.at), change.status, dash(change.reason), change.cause)
    console.print(grid)


def _print_plan_history(customer: Customer, now: datetime) -> None:
    segments = customer.segments
    if len(segments) == 1:
        return
    grid = table("from", "plan", "", title="plan history")
    for segment in segments:
        state = "scheduled" if segment.since is not None and segment.since > now else ""
        start = "creation" if segment.since is None else when(segment.since)
        grid.add_row(start, f"{segment.plan_id} v{segment.plan_version}", state)
    out().print(grid)


@app.command("change-plan")
def change_plan_command(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    plan: Annotated[str, typer.Option(help="The new plan's id.")],
    version: Annotated[int | None, typer.Option(help="Plan version (default: the latest).")] = None,
    at_period_end: Annotated[
        bool, typer.Option("--at-period-end", help="Take effect at the next period's start (no proration).")
    ] = False,
    delay: Annotated[
        int,
        typer.Option(
            help="Seconds until an immediate change takes effect: at least the authorizer's key cache TTL.",
            min=0,
        ),
    ] = int(PLAN_CHANGE_DELAY.total_seconds()),
) -> None:
    """Move a customer to another plan: usage before the change is billed on the old plan, after it on the
    new one, base fees and included credits prorated by the second (or from the next period, with
    --at-period-end)."""
    context = app_context(ctx)
    change = change_plan(
        context.store(),
        customer_id,
        plan,
        version=version,
        at_period_end=at_period_end,
        now=context.now(),
        delay=timedelta(seconds=delay),
    )
    segment = change.segment
    target = f"{segment.plan_id} v{segment.plan_version}"
    starts = "creation" if segment.since is None else when(segment.since)
    if not change.changed:
        out().print(
            f"{customer_id} is already on (or scheduled for) plan {target} from {starts}", markup=False
        )
        return
    for cancelled in change.cancelled:
        out().print(
            f"cancelled the scheduled change to {cancelled.plan_id} v{cancelled.plan_version}", markup=False
        )
    out().print(f"{customer_id} moves to plan {target} at {starts}", markup=False)


@app.command("trial")
def trial(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    until: Annotated[str | None, typer.Option(help="Trial end, e.g. 2026-12-15 (UTC).")] = None,
    days: Annotated[
        int | None, typer.Option(help="Or: the trial ends this many days from now.", min=1)
    ] = None,
    end: Annotated[bool, typer.Option("--end", help="Remove the trial: the base fee applies again.")] = False,
) -> None:
    """Set a trial: no base fee (or minimum commitment) is billed before it ends; usage is billed as usual
    (free credits: tollgate grants add)."""
    context = app_context(ctx)
    if sum((until is not None, days is not None, end)) != 1:
        raise InvalidInputError("give one of --until DATE, --days N or --end")
    ends = None if end else parse_moment(until, "--until") or context.now() + timedelta(days=days or 0)
    customer = set_trial(context.store(), customer_id, ends=ends)
    message = (
        f"{customer_id}: no trial"
        if ends is None
        else f"{customer_id}: trial until {when(customer.trial_ends)}"
    )
    out().print(message, markup=False)


@app.command("budget")
def budget(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    amount: Annotated[
        str | None, typer.Option("--set", help="A monthly spend limit in the plan's currency, e.g. 25.00.")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the spend limit.")] = False,
) -> None:
    """Show or set the monthly spend limit the customer can also set themselves (PUT /usage/budget):
    requests past it are refused with budget_reached."""
    context = app_context(ctx)
    if amount is not None and clear:
        raise InvalidInputError("give --set AMOUNT or --clear, not both")
    if amount is None and not clear:
        status = budget_status(context.store(), customer_id, now=context.now())
    else:
        status = set_budget(
            context.store(), customer_id, None if clear else parse_amount(amount), now=context.now()
        )
    currency = status.currency
    limit = status.budget
    if limit is None:
        out().print(
            f"{customer_id}: no budget (plan {status.plan.id}: {_cap(status.cap, currency)})", markup=False
        )
        return
    credits = "not binding below the plan's cap" if status.credits is None else f"{status.credits:,} credits"
    out().print(
        f"{customer_id}: budget {limit.amount} {limit.currency.upper()} per period, {credits} on plan "
        f"{status.plan.id} ({_cap(status.cap, currency)}), set {when(limit.set_at)}",
        markup=False,
    )


def _cap(cap: int | None, currency: str) -> str:
    return "no cap" if cap is None else f"cap {format_amount(cap, currency)}"


def parse_amount(text: str | None) -> Decimal:
    try:
        return Decimal(text or "")
    except InvalidOperation as error:
        raise InvalidInputError(f"--set takes an amount such as 25.00, not {text!r}") from error


RULE_FILE_SUFFIXES = frozenset({".yaml", ".yml", ".json"})


@app.command("alerts")
def alerts(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    rules_file: Annotated[
        Path | None,
        typer.Option(
            "--set",
            help="A YAML or JSON list of alert rules, as under a plan's alerts: (- cap_percent: 90).",
            dir_okay=False,
        ),
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Back to the plan's alert rules.")] = False,
) -> None:
    """Show the usage alert rules in force for the customer (their own, which they can also set with
    PUT /usage/alerts, or their plan's), or set their own (--set FILE) or clear them (--clear)."""
    context = app_context(ctx)
    if rules_file is not None and clear:
        raise InvalidInputError("give --set FILE or --clear, not both")
    if rules_file is None and not clear:
        status = alert_rules_status(context.store(), customer_id, now=context.now())
    else:
        rules = None if clear else read_rules_file(rules_file)
        status = set_alert_rules(context.store(), customer_id, rules, now=context.now())
    _print_rules(status)


def _print_rules(status: AlertRulesStatus) -> None:
    plan = f"plan {status.plan.id} v{status.plan.version}"
    if status.own is None:
        whose = f"{plan}'s alert rules"
    else:
        count = len(status.plan.alerts)
        whose = f"their own alert rules (replacing {plan}'s {count} rule{'' if count == 1 else 's'})"
    rules = status.rules
    console = out()
    none = "" if rules else ": none, no alerts"
    console.print(f"{status.customer_id}: {whose}{none}", markup=False, soft_wrap=True)
    for rule in rules:
        console.print(f"  {rule.rule_id}", markup=False, soft_wrap=True)


def read_rules_file(path: Path | None) -> list[Any]:
    """A rules file's list (YAML or JSON; amounts read as ``Decimal``, never through a float): a list of
    rules, or a mapping with only ``alerts:`` (a plan's section, copied)."""
    if path is None or path.suffix.lower() not in RULE_FILE_SUFFIXES:
        raise InvalidInputError(f"{path}: a rules file ends in .yaml, .yml or .json")
    try:
        data = parse_text(path.read_text(encoding="utf-8"), "yaml")  # JSON is YAML too
    except OSError as error:
        raise InvalidInputError(f"{path.name}: cannot read the file: {error.strerror or error}") from error
    except UnicodeDecodeError as error:
        raise InvalidInputError(f"{path.name}: not UTF-8 text") from error
    except ValueError as error:
        raise InvalidInputError(f"{path.name}: {error}") from error
    if isinstance(data, dict) and set(data) == {"alerts"}:
        data = data["alerts"]
    if not isinstance(data, list):
        raise InvalidInputError(
            f"{path.name}: expected a list of alert rules (- cap_percent: 90), or alerts: and such a list"
        )
    return data


@app.command("alert-webhook")
def alert_webhook(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    url: Annotated[
        str | None, typer.Option(help="The customer's HTTPS endpoint for their usage alerts.")
    ] = None,
    rotate: Annotated[bool, typer.Option("--rotate", help="A new signing secret for the same URL.")] = False,
    remove: Annotated[bool, typer.Option("--remove", help="Stop posting alerts to the customer.")] = False,
) -> None:
    """Post the customer's usage alerts to their own URL, signed (Tollgate-Signature); the signing secret is
    printed once, for the customer."""
    context = app_context(ctx)
    store = context.store()
    if remove:
        if url is not None or rotate:
            raise InvalidInputError("--remove takes no --url or --rotate")
        change_alert_webhook(store, customer_id, None, remove=True)
        out().print(f"{customer_id}: no alert webhook", markup=False)
        return
    if url is None:
        kept = store.get_customer(customer_id).alert_webhook
        if not rotate or kept is None:
            shown = "none" if kept is None else kept.url
            out().print(f"{customer_id}: alert webhook {shown}", markup=False, soft_wrap=True)
            return
    change = change_alert_webhook(store, customer_id, url, rotate=rotate)
    webhook = change.webhook
    assert webhook is not None
    out().print(f"{customer_id}: alerts are posted to {webhook.url}", markup=False, soft_wrap=True)
    if change.new_secret is not None:
        out().print(
            f"signing secret (shown once, give it to the customer): {change.new_secret}",
            markup=False,
            soft_wrap=True,
        )


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


@app.command("discount")
def discount(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    coupon: Annotated[
        str | None, typer.Option(help="A Stripe coupon id: its percent or amount off goes on the invoices.")
    ] = None,
    from_period: Annotated[
        str | None,
        typer.Option("--from", help="First period it applies to, YYYY-MM (default: the current one)."),
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Take the customer's discount off.")] = False,
) -> None:
    """Give a customer a Stripe coupon on its invoices (--coupon), take it off (--remove), or show it.

    The coupon's duration decides the periods: once (the first), repeating N months (N periods), forever
    (until removed). Stripe computes the discount on each invoice and shows it on the hosted page.
    """
    if remove and (coupon is not None or from_period is not None):
        raise typer.BadParameter("--remove takes no --coupon or --from")
    if from_period is not None and coupon is None:
        raise typer.BadParameter("--from needs --coupon")
    context = app_context(ctx)
    store, stripe_client = context.store(), context.stripe()
    console = out()
    if remove:
        removed = remove_discount(store, stripe_client, customer_id)
        console.print(
            f"{customer_id}: coupon {removed.coupon} removed; invoices not finalized yet get no discount"
            if removed is not None
            else f"{customer_id} has no discount",
            markup=False,
        )
        return
    if coupon is not None:
        attached = attach_discount(
            store, stripe_client, customer_id, coupon, first_period=from_period, now=context.now()
        )
        console.print(f"{customer_id}: {attached.describe()}", markup=False, soft_wrap=True)
        return
    found = current_discount(store, stripe_client, customer_id)
    console.print(
        f"{customer_id}: {found.describe()}" if found is not None else f"{customer_id} has no discount",
        markup=False,
        soft_wrap=True,
    )


@app.command("tax-info")
def tax_info_command(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    country: Annotated[str | None, typer.Option(help="Billing address: two-letter country code.")] = None,
    postal_code: Annotated[str | None, typer.Option(help="Postal code (required in the US and CA).")] = None,
    line1: Annotated[str | None, typer.Option(help="Street address.")] = None,
    line2: Annotated[str | None, typer.Option(help="Apartment, suite, building.")] = None,
    city: Annotated[str | None, typer.Option(help="City.")] = None,
    state: Annotated[str | None, typer.Option(help="State, county or province.")] = None,
    tax_id: Annotated[
        list[str] | None, typer.Option("--tax-id", help="Add a tax id, TYPE:VALUE (eu_vat:DE123456789).")
    ] = None,
    remove_tax_id: Annotated[
        list[str] | None, typer.Option("--remove-tax-id", help="Remove a tax id, TYPE:VALUE.")
    ] = None,
    tax_exempt: Annotated[
        str | None, typer.Option(help="none, exempt, or reverse (reverse charge: the customer pays the tax).")
    ] = None,
) -> None:
    """Set what Stripe Tax needs on the customer's Stripe customer (address, tax ids, exemption), or show it.

    The address replaces the whole billing address; Stripe refuses one it cannot locate.
    """
    address_given = any(v is not None for v in (postal_code, line1, line2, city, state))
    if address_given and country is None:
        raise typer.BadParameter("an address needs --country")
    if tax_exempt is not None and tax_exempt not in ("none", "exempt", "reverse"):
        raise typer.BadParameter(f"--tax-exempt must be none, exempt or reverse, not {tax_exempt!r}")
    add = [parse_tax_id(text) for text in tax_id or []]
    remove = [parse_tax_id(text, "--remove-tax-id") for text in remove_tax_id or []]
    context = app_context(ctx)
    store, stripe_client = context.store(), context.stripe()
    if country is None and tax_exempt is None and not add and not remove:
        info = tax_info(store, stripe_client, customer_id)
    else:
        address = None if country is None else Address(country, line1, line2, city, state, postal_code)
        exempt: TaxExempt | None = tax_exempt  # type: ignore[assignment]  # checked above
        info = set_tax_info(
            store, stripe_client, customer_id, address=address, tax_exempt=exempt, add=add, remove=remove
        )
    console = out()
    console.print(f"tax details of {customer_id} (on its Stripe customer)", markup=False)
    where = f" ({info.location})" if info.location else ""
    rows = [
        ("address", info.address_line()),
        ("tax ids", ", ".join(str(t) for t in info.tax_ids) or "-"),
        ("tax exempt", info.tax_exempt),
        ("Stripe Tax", f"{info.automatic_tax}{where}"),
    ]
    for label, value in rows:
        console.print(f"  {label:<12} {value}", markup=False, soft_wrap=True)
