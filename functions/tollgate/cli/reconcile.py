"""``tollgate reconcile``: prove, per customer of a period, counters = request ledger = invoiced credits.

    tollgate reconcile [--period P] [--customer C] [--ledger DIR | --athena] [--json]

The rules that explain a difference, and those that flag one, are ``tollgate.ledger.report``'s. Exit code 1
when any difference is flagged (unexplained), 0 otherwise.

Where the ledger is:

* ``--ledger DIR`` (or ``TOLLGATE_LEDGER_DIR``): a local directory in the ledger's layout, read with DuckDB
  (the ``tollgate[local]`` extra; the local gateway writes one).
* ``--athena``: the deployed Glue table through Athena. Workgroup, database and table from
  ``--athena-workgroup``/``--athena-database``/``--athena-table`` (or ``TOLLGATE_LEDGER_WORKGROUP``,
  ``TOLLGATE_LEDGER_DATABASE``, ``TOLLGATE_LEDGER_TABLE``), else from the stack's outputs
  ``LedgerWorkGroupName``, ``LedgerDatabaseName``, ``LedgerTableName`` when ``--stack`` names one that has
  them. The table defaults to ``ledger``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import boto3
import typer
from rich.console import Console
from rich.markup import escape

from tollgate.cli.config import AppContext, ConfigError, app_context, stack_outputs
from tollgate.cli.output import checked_period, err, out, table
from tollgate.domain.periods import period_of, previous_period
from tollgate.errors import InvalidInputError
from tollgate.ledger.queries import LEDGER_RELATION, LedgerQueries
from tollgate.ledger.reconcile import reconcile_period
from tollgate.ledger.report import DEFAULT_DELIVERY_DELAY, Between, Reconciliation, Row

ENV_LEDGER_DIR = "TOLLGATE_LEDGER_DIR"
ENV_WORKGROUP = "TOLLGATE_LEDGER_WORKGROUP"
ENV_DATABASE = "TOLLGATE_LEDGER_DATABASE"
ENV_TABLE = "TOLLGATE_LEDGER_TABLE"
# The stack outputs naming the ledger's Athena workgroup, Glue database and table, once the stack has them.
OUTPUT_LEDGER_WORKGROUP = "LedgerWorkGroupName"
OUTPUT_LEDGER_DATABASE = "LedgerDatabaseName"
OUTPUT_LEDGER_TABLE = "LedgerTableName"


def athena_names(
    workgroup: str | None,
    database: str | None,
    table_name: str | None,
    env: Mapping[str, str],
    outputs: Callable[[], Mapping[str, str]] | None,
) -> tuple[str, str, str]:
    """The ledger's Athena workgroup, database and table: the options, else the environment, else the stack's
    outputs (``outputs``, read only when something is missing)."""
    found = {
        "workgroup": workgroup or env.get(ENV_WORKGROUP),
        "database": database or env.get(ENV_DATABASE),
        "table": table_name or env.get(ENV_TABLE),
    }
    if not all(found.values()) and outputs is not None:
        names = outputs()
        found["workgroup"] = found["workgroup"] or names.get(OUTPUT_LEDGER_WORKGROUP)
        found["database"] = found["database"] or names.get(OUTPUT_LEDGER_DATABASE)
        found["table"] = found["table"] or names.get(OUTPUT_LEDGER_TABLE)
    missing = [
        f"--athena-{name} ({env_name})"
        for name, env_name in (("workgroup", ENV_WORKGROUP), ("database", ENV_DATABASE))
        if not found[name]
    ]
    if missing:
        raise ConfigError(f"the ledger's Athena {' and '.join(missing)} not set, nor in the stack's outputs")
    return str(found["workgroup"]), str(found["database"]), str(found["table"] or LEDGER_RELATION)


def ledger_queries(
    context: AppContext,
    ledger_dir: str | None,
    athena: bool,
    workgroup: str | None,
    database: str | None,
    table_name: str | None,
) -> LedgerQueries:
    if athena and ledger_dir:
        raise InvalidInputError("pass --ledger DIR or --athena, not both")
    if not athena:
        ledger_dir = ledger_dir or context.env.get(ENV_LEDGER_DIR)
        if not ledger_dir:
            raise InvalidInputError(
                f"where is the ledger? pass --ledger DIR (or {ENV_LEDGER_DIR}) or --athena"
            )
        from tollgate.ledger.duckdb_ledger import DuckDbLedger  # DuckDB: only here, only locally

        return DuckDbLedger(Path(ledger_dir))
    from tollgate.ledger.athena import AthenaLedger

    stack = context.stack or context.env.get("TOLLGATE_STACK") or None
    outputs = (lambda: stack_outputs(stack)) if stack else None
    names = athena_names(workgroup, database, table_name, context.env, outputs)
    return AthenaLedger(boto3.client("athena"), *names)


# Where the ledger is: the options of every command that reads it (reconcile, usage export).
LedgerDirOption = Annotated[
    str | None,
    typer.Option("--ledger", help=f"A local ledger directory (DuckDB). Env: {ENV_LEDGER_DIR}."),
]
AthenaOption = Annotated[bool, typer.Option("--athena", help="The deployed ledger, through Athena.")]
WorkgroupOption = Annotated[
    str | None, typer.Option("--athena-workgroup", help=f"Athena workgroup. Env: {ENV_WORKGROUP}.")
]
DatabaseOption = Annotated[
    str | None, typer.Option("--athena-database", help=f"Glue database. Env: {ENV_DATABASE}.")
]
TableOption = Annotated[
    str | None, typer.Option("--athena-table", help=f"Glue table (default ledger). Env: {ENV_TABLE}.")
]


def reconcile(
    ctx: typer.Context,
    period: Annotated[str | None, typer.Option(help="YYYY-MM (default: the previous period).")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer.")] = None,
    ledger_dir: LedgerDirOption = None,
    athena: AthenaOption = False,
    workgroup: WorkgroupOption = None,
    database: DatabaseOption = None,
    table_name: TableOption = None,
    delivery_delay: Annotated[
        int,
        typer.Option(
            "--delivery-delay-minutes",
            min=0,
            help="How long after a period's end ledger records may still be landing.",
        ),
    ] = int(DEFAULT_DELIVERY_DELAY.total_seconds() // 60),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Per customer of a period: counters = request ledger = invoiced credits, every difference explained
    or flagged. Exit code 1 when any difference is unexplained."""
    context = app_context(ctx)
    now = context.now()
    period = checked_period(period) if period is not None else previous_period(period_of(now))
    ledger = ledger_queries(context, ledger_dir, athena, workgroup, database, table_name)
    report = reconcile_period(
        context.store(),
        ledger,
        period,
        now=now,
        customer_id=customer,
        delivery_delay=timedelta(minutes=delivery_delay),
    )
    if as_json:
        out().print_json(json.dumps(report.as_dict()))
    else:
        print_report(report)
    if not report.ok:
        names = ", ".join(row.customer_id for row in report.flagged)
        err().print(
            f"error: {len(report.flagged)} customer(s) with unexplained differences in {period}: {names}",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def _number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _difference(row: Row, between: Between) -> str:
    total = sum(d.credits for d in row.differences if d.between is between)
    return f"{total:+,}" if total else ""


def _explanations(row: Row) -> str:
    parts = [
        f"{'' if d.explained else 'FLAG '}{d.reason} ({d.credits:+,} credits"
        + (f", {d.requests:+,} requests" if d.requests else "")
        + f"): {d.detail}"
        for d in row.differences
    ]
    return "\n".join(escape(part) for part in [*parts, *row.notes])


def print_report(report: Reconciliation, console: Console | None = None) -> None:
    """The report as a table and a summary line, on ``console`` (default: the CLI's standard output)."""
    console = console or out()
    scope = f" ({report.customer})" if report.customer else ""
    grid = table(
        "customer",
        "counters",
        "ledger",
        "refunded",
        "invoiced",
        "counters-ledger",
        "counters-invoiced",
        "unexplained",
        "explanation",
        title=f"reconciliation of {report.period}{scope}",
    )
    for row in report.rows:
        unexplained = f"[bold red]{row.unexplained:,}[/]" if row.flagged else "0"
        if row.flagged and not row.unexplained:
            unexplained = f"[bold red]{row.unexplained_requests:,} requests[/]"
        invoiced = _number(row.invoiced)
        if row.invoiced is None and row.invoiced_early is not None:
            invoiced = f"- ({row.invoiced_early:,} early)"
        grid.add_row(
            escape(row.customer_id),
            _number(row.counters),
            _number(row.ledger),
            f"{row.refunded:,}",
            invoiced,
            _difference(row, Between.COUNTERS_LEDGER),
            _difference(row, Between.COUNTERS_INVOICED),
            unexplained,
            _explanations(row),
        )
    console.print(grid)
    totals = report.totals()
    console.print(
        f"{len(report.rows)} customer(s): counters {totals['counters']:,}, ledger {totals['ledger']:,}, "
        f"refunded {totals['refunded']:,}, invoiced {totals['invoiced']:,} credits; "
        f"{len(report.flagged)} flagged, "
        f"{totals['unexplained']:,} credits unexplained",
        markup=False,
        soft_wrap=True,
    )
    if report.anonymous_refused:
        console.print(
            f"{report.anonymous_refused:,} request(s) refused before a key named a customer", markup=False
        )
