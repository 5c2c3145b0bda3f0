"""``tollgate portal link CUSTOMER [--minutes N]``: a signed link to a customer's usage page (GET /portal).

The URL it prints opens that customer's page, without their API key, until it expires (15 minutes by default,
24 hours at most). Where the page is served and what the link is signed with, in order:

- the portal's URL: ``--url``, else the stack's ``PortalUrl`` output (``MeteredApi.add_portal_route`` in the
  ``--stack``), else ``TOLLGATE_PORTAL_URL`` (``tollgate-local up`` prints it);
- the secret: ``PORTAL_LINK_SECRET`` (local mode), else the Secrets Manager secret of the stack's
  ``PortalLinkSecretArn`` output, else of ``PORTAL_LINK_SECRET_ARN``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import boto3
import typer

from tollgate.cli.config import AppContext, ConfigError, app_context
from tollgate.cli.output import err, out, when
from tollgate.portal.links import DEFAULT_LIFETIME, MAX_LIFETIME, link_url, sign_link
from tollgate.usage_api.settings import PORTAL_LINK_SECRET, PORTAL_LINK_SECRET_ARN

ENV_PORTAL_URL = "TOLLGATE_PORTAL_URL"

app = typer.Typer(help="The customers' usage page: signed links to it.", no_args_is_help=True)


def portal_url(context: AppContext, url: str | None) -> str:
    found = url or context.settings().portal_url or context.env.get(ENV_PORTAL_URL)
    if not found:
        raise ConfigError(
            f"no portal URL: pass --url, add MeteredApi.add_portal_route to --stack, or set {ENV_PORTAL_URL}"
        )
    return found


def link_secret(context: AppContext) -> str:
    value = context.env.get(PORTAL_LINK_SECRET, "").strip()
    if value:
        return value
    arn = context.settings().portal_link_secret_arn or context.env.get(PORTAL_LINK_SECRET_ARN)
    if not arn:
        raise ConfigError(
            f"no portal link secret: use --stack with a deployed stack, or set {PORTAL_LINK_SECRET} "
            f"or {PORTAL_LINK_SECRET_ARN}"
        )
    return str(boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]).strip()


@app.command("link")
def link(
    ctx: typer.Context,
    customer_id: Annotated[str, typer.Argument(help="Customer id.")],
    minutes: Annotated[
        int,
        typer.Option(
            min=1,
            max=int(MAX_LIFETIME.total_seconds()) // 60,
            help="How long the link opens the page (at most 1440: a day).",
        ),
    ] = int(DEFAULT_LIFETIME.total_seconds()) // 60,
    url: Annotated[
        str | None, typer.Option(help="The portal's URL (default: the stack's PortalUrl).")
    ] = None,
) -> None:
    """Print a signed link to CUSTOMER's usage page (stdout: the URL alone; stderr: when it expires)."""
    context = app_context(ctx)
    customer = context.store().get_customer(customer_id)  # an unknown customer is refused here
    lifetime = timedelta(minutes=minutes)
    now = context.now()
    token = sign_link(link_secret(context), customer.id, now=now, lifetime=lifetime)
    out().print(link_url(portal_url(context, url), token), markup=False, soft_wrap=True)
    err().print(f"opens {customer.id}'s usage page until {when(now + lifetime)}", markup=False)
