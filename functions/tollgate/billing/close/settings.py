"""Settings of the period close's three functions: every environment variable, with its default.

Read once per execution environment (``from_env``); the handlers read their environment only through these.
The Stripe key's variables are shared with the CLI: ``tollgate.billing.settings``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from tollgate.billing.settings import StripeSettings
from tollgate.settings import TABLE_NAME, SettingsError, optional, required, whole_number

CLOSE_QUEUE_URL = "CLOSE_QUEUE_URL"  # the starter sends one message per customer-period there

# The worker's Stripe rate limits (tollgate.billing.close.pacing paces every request under them). Stripe's
# defaults for live mode: 100 operations/s per account and 25 requests/s per endpoint; a sandbox allows 25
# operations/s per account. Stripe can raise an account's limits: the construct sets them
# (``Tollgate(stripe_rate_limits=...)``).
STRIPE_ENDPOINT_RATE = "STRIPE_ENDPOINT_RATE"  # requests/s Stripe allows on each endpoint
STRIPE_ACCOUNT_RATE = "STRIPE_ACCOUNT_RATE"  # operations/s Stripe allows on the whole account
CLOSE_WORKER_FLEET_SIZE = (
    "CLOSE_WORKER_FLEET_SIZE"  # workers running at once: each paces at 1/fleet of a limit
)
LIVE_ENDPOINT_RATE = 25.0
LIVE_ACCOUNT_RATE = 100.0
SANDBOX_ACCOUNT_RATE = 25.0
DEFAULT_FLEET_SIZE = 1  # outside Lambda (tests, local runs) one process has the whole limit


@dataclass(frozen=True)
class StripeRateLimits:
    """Stripe's rate limits for the account the close invoices through (live mode's by default)."""

    per_endpoint: float = (
        LIVE_ENDPOINT_RATE  # requests/s on each endpoint (POST /v1/invoices, .../finalize, ...)
    )
    per_account: float = LIVE_ACCOUNT_RATE  # operations/s on the whole account, every endpoint together

    def __post_init__(self) -> None:
        for name, value in (("per_endpoint", self.per_endpoint), ("per_account", self.per_account)):
            if not value >= 1:
                raise ValueError(f"Stripe's {name} rate limit must be at least 1 request/s, got {value}")

    @classmethod
    def live(cls) -> StripeRateLimits:
        return cls()

    @classmethod
    def sandbox(cls) -> StripeRateLimits:
        """A sandbox (test mode): 25 operations/s for the whole account."""
        return cls(per_account=SANDBOX_ACCOUNT_RATE)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StripeRateLimits:
        try:
            return cls(
                per_endpoint=_rate(env, STRIPE_ENDPOINT_RATE, LIVE_ENDPOINT_RATE),
                per_account=_rate(env, STRIPE_ACCOUNT_RATE, LIVE_ACCOUNT_RATE),
            )
        except ValueError as error:
            raise SettingsError(str(error)) from error

    def as_env(self) -> dict[str, str]:
        """The worker's environment variables for these limits (what the construct sets)."""
        return {STRIPE_ENDPOINT_RATE: f"{self.per_endpoint:g}", STRIPE_ACCOUNT_RATE: f"{self.per_account:g}"}


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a number of requests per second, not {raw!r}") from error


CLOSE_STARTER_PAGE_SIZE = "CLOSE_STARTER_PAGE_SIZE"  # customers per Query page: one cursor write per page
CLOSE_STARTER_SEND_THREADS = "CLOSE_STARTER_SEND_THREADS"  # SendMessageBatch calls in flight at once
DEFAULT_STARTER_PAGE_SIZE = 1000
DEFAULT_STARTER_SEND_THREADS = 8
MAX_STARTER_SEND_THREADS = 32


@dataclass(frozen=True)
class StarterSettings:
    table_name: str
    close_queue_url: str
    page_size: int = DEFAULT_STARTER_PAGE_SIZE  # also the most messages a crash can make the starter resend
    send_threads: int = DEFAULT_STARTER_SEND_THREADS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StarterSettings:
        page_size = whole_number(env, CLOSE_STARTER_PAGE_SIZE, DEFAULT_STARTER_PAGE_SIZE, "customers")
        threads = whole_number(env, CLOSE_STARTER_SEND_THREADS, DEFAULT_STARTER_SEND_THREADS, "threads")
        if page_size < 1:
            raise SettingsError(f"{CLOSE_STARTER_PAGE_SIZE} must be at least 1, not {page_size}")
        if not 1 <= threads <= MAX_STARTER_SEND_THREADS:
            raise SettingsError(
                f"{CLOSE_STARTER_SEND_THREADS} must be 1..{MAX_STARTER_SEND_THREADS}, not {threads}"
            )
        return cls(
            table_name=required(env, TABLE_NAME),
            close_queue_url=required(env, CLOSE_QUEUE_URL),
            page_size=page_size,
            send_threads=threads,
        )


@dataclass(frozen=True)
class WorkerSettings:
    table_name: str
    stripe: StripeSettings = field(default_factory=StripeSettings)
    stripe_limits: StripeRateLimits = field(default_factory=StripeRateLimits)
    fleet_size: int = DEFAULT_FLEET_SIZE  # the event source's maximum concurrency (= reserved concurrency)

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WorkerSettings:
        fleet_size = whole_number(env, CLOSE_WORKER_FLEET_SIZE, DEFAULT_FLEET_SIZE, "workers")
        if fleet_size < 1:
            raise SettingsError(f"{CLOSE_WORKER_FLEET_SIZE} must be at least 1, not {fleet_size}")
        return cls(
            table_name=required(env, TABLE_NAME),
            stripe=StripeSettings.from_env(env),
            stripe_limits=StripeRateLimits.from_env(env),
            fleet_size=fleet_size,
        )


# The ledger reconciler the watchdog starts once a close finished (Tollgate(ledger=True) sets it).
LEDGER_RECONCILER_FUNCTION = "LEDGER_RECONCILER_FUNCTION"


@dataclass(frozen=True)
class WatchdogSettings:
    """The close watchdog's: it only reads the table (customers and their close records), and starts the
    ledger reconciler when there is one."""

    table_name: str
    reconciler_function: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> WatchdogSettings:
        return cls(
            table_name=required(env, TABLE_NAME),
            reconciler_function=optional(env, LEDGER_RECONCILER_FUNCTION),
        )
