"""``tollgate``: the provider's command line.

    tollgate [--stack NAME] plans | customers | keys | usage | invoices | close [run | status] | reconcile ...

Every subcommand group lives in its own module; this one wires them together, resolves the configuration
(``tollgate.cli.config``) and turns expected errors into one line each on stderr with exit code 1.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer._click.core import Context as ClickContext
from typer.core import TyperGroup

from tollgate.cli import close, credits, customers, grants, invoices, keys, plans, portal, reconcile, usage
from tollgate.cli.config import ENV_STACK, AppContext
from tollgate.cli.output import err, error_lines


class TollgateGroup(TyperGroup):
    """The root group: an expected error (bad input, unknown id, missing configuration, AWS or Stripe
    refusing) is printed as ``error: ...`` lines on stderr with exit code 1, never as a traceback."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):  # typer's own: it prints those itself
            raise
        except Exception as error:
            lines = error_lines(error)
            if lines is None:
                raise
            console = err()
            for line in lines:
                console.print(f"error: {line}", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    name="tollgate",
    cls=TollgateGroup,
    help="Usage-based billing for APIs: plans, customers, API keys, usage, invoices and the monthly close.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def main(
    ctx: typer.Context,
    stack: Annotated[
        str | None,
        typer.Option(
            "--stack",
            envvar=ENV_STACK,
            help="Deployed stack whose outputs name the table and the Stripe secret. Default: TABLE_NAME.",
        ),
    ] = None,
) -> None:
    if isinstance(ctx.obj, AppContext):  # handed in (tests, the demo)
        ctx.obj.stack = stack or ctx.obj.stack
    else:
        ctx.obj = AppContext(stack=stack)


app.add_typer(plans.app, name="plans")
app.add_typer(customers.app, name="customers")
app.add_typer(keys.app, name="keys")
app.add_typer(grants.app, name="grants")
app.add_typer(credits.app, name="credits")
app.add_typer(invoices.app, name="invoices")
app.add_typer(usage.app, name="usage")
app.add_typer(close.app, name="close")
app.command("reconcile")(reconcile.reconcile)
app.add_typer(portal.app, name="portal")
