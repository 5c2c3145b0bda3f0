"""Where the CLI finds the table and Stripe, and the per-invocation context the commands share.

In order:

1. ``--stack NAME`` (or ``TOLLGATE_STACK``): the deployed stack's CloudFormation outputs ``TableName`` and
   ``StripeApiKeySecretArn`` (the Stripe key is read from that secret when a command needs Stripe).
2. Otherwise ``TABLE_NAME``. Point boto3 at a local DynamoDB with ``AWS_ENDPOINT_URL`` (boto3 reads it).

Stripe, for either: ``STRIPE_API_KEY`` wins when set (``STRIPE_API_BASE`` points the client at another
address, such as the offline Stripe double); else the stack's secret; else ``STRIPE_API_KEY_SECRET_ARN``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import typer
from stripe import StripeClient

from tollgate import outputs
from tollgate.billing.settings import STRIPE_API_KEY, StripeSettings
from tollgate.billing.stripe_client import make_stripe_client
from tollgate.dal.store import TollgateStore
from tollgate.errors import TollgateError
from tollgate.settings import TABLE_NAME

OUTPUT_TABLE_NAME = outputs.TABLE_NAME
OUTPUT_STRIPE_API_KEY_SECRET_ARN = outputs.STRIPE_API_KEY_SECRET_ARN
OUTPUT_PORTAL_LINK_SECRET_ARN = outputs.PORTAL_LINK_SECRET_ARN
OUTPUT_PORTAL_URL = outputs.PORTAL_URL
ENV_STACK = "TOLLGATE_STACK"


class ConfigError(TollgateError):
    """The CLI cannot tell which table or Stripe account to use."""


@dataclass(frozen=True)
class Settings:
    table_name: str
    stack: str | None = None
    stripe_api_key_secret_arn: str | None = None
    portal_link_secret_arn: str | None = None  # the stack's PortalLinkSecretArn output
    portal_url: str | None = None  # the stack's PortalUrl output (MeteredApi.add_portal_route in that stack)


def stack_outputs(stack: str, cloudformation: Any = None) -> dict[str, str]:
    client = cloudformation or boto3.client("cloudformation")
    stacks = client.describe_stacks(StackName=stack)["Stacks"]
    if not stacks:
        raise ConfigError(f"stack {stack!r} not found")
    return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}


def resolve_settings(
    stack: str | None, env: Mapping[str, str] = os.environ, cloudformation: Any = None
) -> Settings:
    stack = stack or env.get(ENV_STACK) or None
    if stack:
        outputs = stack_outputs(stack, cloudformation)
        table = outputs.get(OUTPUT_TABLE_NAME)
        if not table:
            raise ConfigError(f"stack {stack!r} has no {OUTPUT_TABLE_NAME} output; is it a Tollgate stack?")
        return Settings(
            table,
            stack,
            outputs.get(OUTPUT_STRIPE_API_KEY_SECRET_ARN),
            outputs.get(OUTPUT_PORTAL_LINK_SECRET_ARN),
            outputs.get(OUTPUT_PORTAL_URL),
        )
    table = env.get(TABLE_NAME)
    if not table:
        raise ConfigError(
            f"no table configured: pass --stack NAME (or set {ENV_STACK}), or set {TABLE_NAME} "
            "(with AWS_ENDPOINT_URL for a local DynamoDB)"
        )
    return Settings(table)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """What every command gets: settings resolved on first use, one store, one Stripe client, one clock.

    Tests pass their own (``CliRunner().invoke(app, args, obj=AppContext(clock=...))``).
    """

    stack: str | None = None
    clock: Callable[[], datetime] = utc_now
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _settings: Settings | None = None
    _store: TollgateStore | None = None
    _stripe: StripeClient | None = None

    def now(self) -> datetime:
        return self.clock()

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = resolve_settings(self.stack, self.env)
        return self._settings

    def store(self) -> TollgateStore:
        if self._store is None:
            self._store = TollgateStore(self.settings().table_name)
        return self._store

    def stripe(self) -> StripeClient:
        if self._stripe is None:
            self._stripe = self._make_stripe()
        return self._stripe

    def _make_stripe(self) -> StripeClient:
        stripe = StripeSettings.from_env(self.env)
        if stripe.api_key:
            return make_stripe_client(stripe.api_key, stripe.api_base)
        arn = self.settings().stripe_api_key_secret_arn or stripe.api_key_secret_arn
        if not arn:
            raise ConfigError(
                f"Stripe is not configured: set {STRIPE_API_KEY}, or use --stack with a deployed stack"
            )
        secret = boto3.client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        return make_stripe_client(str(secret).strip(), stripe.api_base)


def app_context(ctx: typer.Context) -> AppContext:
    """The command's ``AppContext`` (set by the root callback)."""
    obj = ctx.find_object(AppContext)
    if obj is None:  # a sub-app invoked on its own
        obj = ctx.ensure_object(AppContext)
    return obj
