"""Settings of the webhook function and the dunning sweeper: every environment variable, with its default.

Read once per execution environment (``from_env``); the handlers read their environment only through these.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from tollgate.settings import TABLE_NAME, optional, required, whole_number

STRIPE_WEBHOOK_SECRET = "STRIPE_WEBHOOK_SECRET"  # noqa: S105 - a name, not a secret (local use)
STRIPE_WEBHOOK_SECRET_ARN = "STRIPE_WEBHOOK_SECRET_ARN"  # noqa: S105 - a name, not a secret (deployed)
DUNNING_GRACE_DAYS = "DUNNING_GRACE_DAYS"

DEFAULT_DUNNING_GRACE_DAYS = 7  # a failed payment suspends the customer this many days after it first failed


@dataclass(frozen=True)
class DunningSettings:
    """The sweeper's (and the dunning part of the webhook's)."""

    table_name: str
    grace_days: int = DEFAULT_DUNNING_GRACE_DAYS

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> DunningSettings:
        return cls(
            table_name=required(env, TABLE_NAME),
            grace_days=whole_number(env, DUNNING_GRACE_DAYS, DEFAULT_DUNNING_GRACE_DAYS, "days"),
        )


@dataclass(frozen=True)
class WebhookSettings:
    dunning: DunningSettings
    # The endpoint's signing secret: the value itself (local use), else the Secrets Manager secret's ARN.
    signing_secret: str | None = None
    signing_secret_arn: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WebhookSettings:
        return cls(
            dunning=DunningSettings.from_env(env),
            signing_secret=optional(env, STRIPE_WEBHOOK_SECRET),
            signing_secret_arn=optional(env, STRIPE_WEBHOOK_SECRET_ARN),
        )
