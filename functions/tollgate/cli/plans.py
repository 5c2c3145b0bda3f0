"""``tollgate plans``: create plans from a plan file or from flags, list them, show one.

Plans are never edited in place. Creating a plan whose id exists is refused unless ``--new-version`` is given,
which stores the next version; customers stay on the version they were created with. Re-running ``create``
with terms identical to the latest version changes nothing (so a plan file can be applied twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tollgate.cli.config import app_context
from tollgate.cli.output import dash, out, table
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import CollectionMethod, Plan
from tollgate.domain.money import format_amount, to_minor_units
from tollgate.domain.plan_files import field_path, load_plan_file
from tollgate.errors import InvalidInputError, NotFoundError

app = typer.Typer(
    help="Price plans: create (from a YAML/TOML plan file or flags), list, show.", no_args_is_help=True
)


@dataclass(frozen=True)
class PlanChange:
    plan: Plan
    action: str  # "create" | "unchanged"
    previous: int | None = None  # the latest existing version


def same_terms(a: Plan, b: Plan) -> bool:
    return a.model_dump(exclude={"version"}) == b.model_dump(exclude={"version"})


def plan_changes(store: TollgateStore, plans: list[Plan], *, new_version: bool) -> list[PlanChange]:
    """Decide, before writing anything, what each plan becomes; raise if any would edit a plan in place."""
    changes: list[PlanChange] = []
    for plan in plans:
        try:
            latest = store.get_plan(plan.id)
        except NotFoundError:
            changes.append(PlanChange(plan, "create"))
            continue
        if same_terms(latest, plan):
            changes.append(PlanChange(latest, "unchanged", latest.version))
        elif new_version:
            changes.append(
                PlanChange(plan.model_copy(update={"version": latest.version + 1}), "create", latest.version)
            )
        else:
            raise InvalidInputError(
                f"plan {plan.id!r} already exists (latest v{latest.version}) and plans are never edited in "
                f"place: pass --new-version to create v{latest.version + 1}"
            )
    return changes


def _route_costs(values: list[str]) -> dict[str, int]:
    costs: dict[str, int] = {}
    for value in values:
        route, sep, credits = value.rpartition("=")
        if not sep or not route.strip() or not credits.strip().isdigit():
            raise InvalidInputError(
                f"--route-cost: {value!r} is not 'METHOD /path=credits', e.g. 'GET /v1/search=1'"
            )
        costs[route.strip()] = int(credits)
    return costs


def plan_from_flags(fields: dict[str, Any]) -> Plan:
    """Validate flag values as a Plan; errors name the flag (``--price-per-credit: ...``)."""
    try:
        return Plan.model_validate(fields)
    except ValidationError as error:
        problems = []
        for item in error.errors(include_url=False):
            loc = list(item["loc"])
            flag = f"--{str(loc[0]).replace('_', '-')}" if loc else "plan"
            rest = field_path(loc[1:]) if len(loc) > 1 else ""
            message = str(item["msg"]).removeprefix("Value error, ")
            problems.append(f"{flag}{' ' + rest if rest else ''}: {message}")
        raise InvalidInputError("\n".join(problems)) from None


@app.command("create")
def create(
    ctx: typer.Context,
    plan_file: Annotated[
        Path | None, typer.Argument(help="A YAML or TOML plan file (one plan, or a 'plans' list).")
    ] = None,
    new_version: Annotated[
        bool,
        typer.Option(
            "--new-version", help="If the id exists with other terms, store them as its next version."
        ),
    ] = False,
    plan_id: Annotated[str | None, typer.Option("--id", help="Plan id (flags mode).")] = None,
    name: Annotated[str | None, typer.Option(help="Display name, on invoices.")] = None,
    price_per_credit: Annotated[str | None, typer.Option(help="Price of one credit, in major units.")] = None,
    currency: Annotated[str | None, typer.Option(help="ISO currency code, e.g. usd.")] = None,
    base_fee: Annotated[str | None, typer.Option(help="Monthly base fee (hybrid plans).")] = None,
    included_credits: Annotated[int | None, typer.Option(help="Credits included in the base fee.")] = None,
    credit_limit: Annotated[int | None, typer.Option(help="Hard cap of credits per period.")] = None,
    default_cost: Annotated[
        str | None, typer.Option(help="Credits for routes not listed; 'none' refuses them.")
    ] = None,
    route_cost: Annotated[
        list[str] | None, typer.Option(help="'METHOD /path=credits', repeatable.", show_default=False)
    ] = None,
    collection_method: Annotated[CollectionMethod | None, typer.Option(help="How Stripe collects.")] = None,
    days_until_due: Annotated[int | None, typer.Option(help="For send_invoice.")] = None,
) -> None:
    """Create plans from a plan file, or one plan from flags."""
    given = {
        "id": plan_id,
        "name": name,
        "price_per_credit": price_per_credit,
        "currency": currency,
        "base_fee": base_fee,
        "included_credits": included_credits,
        "credit_limit": credit_limit,
        "route_costs": _route_costs(route_cost) if route_cost else None,
        "collection_method": collection_method,
        "days_until_due": days_until_due,
    }
    flags: dict[str, Any] = {field: value for field, value in given.items() if value is not None}
    if default_cost is not None:
        flags["default_cost"] = (
            None if default_cost.lower() == "none" else _int(default_cost, "--default-cost")
        )
    if plan_file is not None:
        if flags:
            raise InvalidInputError("give a plan file or plan flags (--id, --name, ...), not both")
        plans = load_plan_file(plan_file)
    elif not flags:
        raise InvalidInputError(
            "give a plan file, or the plan as flags: --id, --name, --price-per-credit, ..."
        )
    else:
        plans = [plan_from_flags(flags)]

    store = app_context(ctx).store()
    changes = plan_changes(store, plans, new_version=new_version)
    console = out()
    for change in changes:
        plan = change.plan
        if change.action == "unchanged":
            console.print(f"plan {plan.id} v{plan.version} unchanged (same terms as stored)")
            continue
        store.put_plan(plan)
        note = f" (customers on v{change.previous} stay there)" if change.previous else ""
        console.print(f"created plan {plan.id} v{plan.version}: {plan.name}{note}")


def _int(text: str, option: str) -> int:
    if not text.strip().isdigit():
        raise InvalidInputError(f"{option}: {text!r} is not a whole number of credits (or 'none')")
    return int(text)


def _price(plan: Plan, amount: Decimal | None) -> str:
    return "by tiers" if amount is None else f"{amount} {plan.currency.upper()}"


@app.command("list")
def list_plans(
    ctx: typer.Context,
    all_versions: Annotated[
        bool, typer.Option("--all-versions", help="Every version, not only the latest.")
    ] = False,
) -> None:
    """List plans (the latest version of each, unless --all-versions)."""
    plans = app_context(ctx).store().list_plans()
    if not all_versions:
        latest: dict[str, Plan] = {}
        for plan in plans:
            if plan.id not in latest or plan.version > latest[plan.id].version:
                latest[plan.id] = plan
        plans = list(latest.values())
    if not plans:
        out().print("no plans yet: tollgate plans create PLAN_FILE")
        return
    grid = table("id", "version", "name", "price/credit", "base fee", "included", "cap")
    for plan in sorted(plans, key=lambda p: (p.id, p.version)):
        grid.add_row(
            plan.id,
            str(plan.version),
            plan.name,
            _price(plan, plan.price_per_credit),
            format_amount(int(to_minor_units(plan.base_fee, plan.currency)), plan.currency),
            f"{plan.included_credits:,}",
            dash(plan.credit_limit and f"{plan.credit_limit:,}"),
        )
    out().print(grid)


@app.command("show")
def show(
    ctx: typer.Context,
    plan_id: Annotated[str, typer.Argument(help="Plan id.")],
    version: Annotated[int | None, typer.Option(help="A version (default: the latest).")] = None,
) -> None:
    """Show one plan: prices, included credits, cap, route costs, tiers."""
    plan = app_context(ctx).store().get_plan(plan_id, version)
    console = out()
    console.print(f"plan {plan.id} v{plan.version}: {plan.name}", markup=False)
    rows = [
        ("currency", plan.currency),
        ("price per credit", _price(plan, plan.price_per_credit)),
        ("base fee", _price(plan, plan.base_fee)),
        ("included credits", f"{plan.included_credits:,}"),
        ("minimum", "none" if not plan.minimum_commitment else _price(plan, plan.minimum_commitment)),
        ("credit limit", dash(plan.credit_limit and f"{plan.credit_limit:,}")),
        ("unlisted routes", "refused" if plan.default_cost is None else f"{plan.default_cost} credit(s)"),
        (
            "collection",
            plan.collection_method.value
            + (f", due in {plan.days_until_due} days" if plan.days_until_due is not None else ""),
        ),
        ("tax", "none" if plan.tax is None else f"Stripe Tax, prices {plan.tax} of tax"),
    ]
    for label, value in rows:
        console.print(f"  {label:<17} {value}", markup=False)
    if plan.route_costs:
        grid = table("route", "credits", title="route costs")
        for route, credits in sorted(plan.route_costs.items()):
            grid.add_row(route, str(credits))
        console.print(grid)
    if plan.tiers:
        grid = table("up to (credits)", "price/credit", title=f"tiers ({plan.tiers_mode})")
        for tier in plan.tiers:
            grid.add_row(
                dash(tier.up_to and f"{tier.up_to:,}") if tier.up_to else "and above",
                _price(plan, tier.price_per_credit),
            )
        console.print(grid)
