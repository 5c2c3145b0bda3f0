"""Settings of the period close's three functions: every environment variable, with its default.

Read once per execution environment (``from_env``); the handlers read their environment only through these.
The Stripe key's variables are shared with the CLI: ``tollgate.billing.settings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tollgate.billing.settings import StripeSettings
from tollgate.settings import TABLE_NAME, required

CLOSE_QUEUE_URL = "CLOSE_QUEUE_URL"  # the starter sends one message per customer-period there


@dataclass(frozen=True)
class StarterSettings:
    table_name: str
    close_queue_url: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StarterSettings:
        return cls(table_name=required(env, TABLE_NAME), close_queue_url=required(env, CLOSE_QUEUE_URL))


@dataclass(frozen=True)
class WorkerSettings:
    table_name: str
    stripe: StripeSettings = field(default_factory=StripeSettings)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerSettings:
        return cls(table_name=required(env, TABLE_NAME), stripe=StripeSettings.from_env(env))


@dataclass(frozen=True)
class WatchdogSettings:
    """The close watchdog's: it only reads the table (customers and their close records)."""

    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WatchdogSettings:
        return cls(table_name=required(env, TABLE_NAME))
