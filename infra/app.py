"""This repository's CDK app (``app.py``, ``make synth``, ``npx cdk deploy``).

One stack that dog-foods the public constructs, ``tollgate.cdk.Tollgate`` and ``MeteredApi``, the way a
provider's own app does, plus the sample API. Context (``cdk.json`` or ``cdk synth -c key=value``):
``stackName`` (default ``Tollgate``), ``closeGraceHours`` (hours after midnight UTC on the 1st, default 6),
``dunningGraceDays`` (default 7), ``sampleApi`` (default true), ``stripeMode`` (``live``, the default:
Stripe's live rate limits; ``sandbox``: a sandbox's, 25 operations/s).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from constructs import Construct

from infra.sample_api import SampleApi
from tollgate.billing.close.settings import StripeRateLimits
from tollgate.cdk import Tollgate
from tollgate.cdk.constants import DEFAULT_CLOSE_GRACE_HOURS, DEFAULT_DUNNING_GRACE_DAYS
from tollgate.cdk.nag import add_checks

ID_STACK = "Tollgate"
ID_TOLLGATE = "Tollgate"
ID_SAMPLE_API = "SampleApi"
OUTPUT_API_URL = "ApiUrl"
CONTEXT_STACK_NAME = "stackName"
CONTEXT_CLOSE_GRACE_HOURS = "closeGraceHours"
CONTEXT_DUNNING_GRACE_DAYS = "dunningGraceDays"
CONTEXT_SAMPLE_API = "sampleApi"
CONTEXT_STRIPE_MODE = "stripeMode"
STRIPE_MODES = {"live": StripeRateLimits.live, "sandbox": StripeRateLimits.sandbox}
DEFAULT_STACK_NAME = "Tollgate"


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in {"false", "0", "no", "off", ""}
    return bool(value)


@dataclass(frozen=True)
class TollgateSettings:
    """Deploy-time settings, read from CDK context (``cdk.json`` or ``cdk synth -c closeGraceHours=2``)."""

    stack_name: str = DEFAULT_STACK_NAME
    close_grace_hours: int = DEFAULT_CLOSE_GRACE_HOURS
    dunning_grace_days: int = DEFAULT_DUNNING_GRACE_DAYS
    sample_api: bool = True
    stripe_mode: str = "live"

    @property
    def stripe_rate_limits(self) -> StripeRateLimits:
        return STRIPE_MODES[self.stripe_mode]()

    @classmethod
    def from_context(cls, scope: Construct) -> TollgateSettings:
        def context(key: str, default: Any) -> Any:
            value = scope.node.try_get_context(key)
            return default if value is None else value

        settings = cls(
            stack_name=str(context(CONTEXT_STACK_NAME, DEFAULT_STACK_NAME)),
            close_grace_hours=int(context(CONTEXT_CLOSE_GRACE_HOURS, DEFAULT_CLOSE_GRACE_HOURS)),
            dunning_grace_days=int(context(CONTEXT_DUNNING_GRACE_DAYS, DEFAULT_DUNNING_GRACE_DAYS)),
            sample_api=_as_bool(context(CONTEXT_SAMPLE_API, True)),
            stripe_mode=str(context(CONTEXT_STRIPE_MODE, "live")).strip().lower(),
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        """Name the context key at fault (``Tollgate`` itself names its keyword argument)."""
        if not 0 <= self.close_grace_hours <= 23:
            raise ValueError(f"{CONTEXT_CLOSE_GRACE_HOURS} must be 0..23, got {self.close_grace_hours}")
        if self.dunning_grace_days < 0:
            raise ValueError(f"{CONTEXT_DUNNING_GRACE_DAYS} must be >= 0, got {self.dunning_grace_days}")
        if self.stripe_mode not in STRIPE_MODES:
            raise ValueError(
                f"{CONTEXT_STRIPE_MODE} must be one of {sorted(STRIPE_MODES)}, got {self.stripe_mode!r}"
            )


class TollgateStack(cdk.Stack):
    """Tollgate (the public construct) and, by default, the sample API metered by it."""

    def __init__(
        self, scope: Construct, id: str, *, settings: TollgateSettings | None = None, **kwargs: Any
    ) -> None:
        settings = settings or TollgateSettings()
        kwargs.setdefault("stack_name", settings.stack_name)
        kwargs.setdefault(
            "description", "Tollgate: usage-based billing for APIs (metering authorizer, DynamoDB, Stripe)"
        )
        super().__init__(scope, id, **kwargs)
        self.settings = settings
        self.tollgate = Tollgate(
            self,
            ID_TOLLGATE,
            close_grace_hours=settings.close_grace_hours,
            dunning_grace_days=settings.dunning_grace_days,
            stripe_rate_limits=settings.stripe_rate_limits,
            ledger=settings.sample_api,  # the sample API's requests, one record each
        )
        self.sample_api: SampleApi | None = None
        if settings.sample_api:
            self.sample_api = SampleApi(
                self,
                ID_SAMPLE_API,
                authorizer_function=self.tollgate.authorizer_function,
                usage_function=self.tollgate.usage_function,
                ledger=self.tollgate.ledger,
            )
            cdk.CfnOutput(
                self, OUTPUT_API_URL, value=self.sample_api.url, description="Base URL of the sample API"
            )


def build_app(app: cdk.App, *, nag: bool = True) -> TollgateStack:
    """Add the Tollgate stack (settings from context) and the cdk-nag AwsSolutions checks to ``app``."""
    stack = TollgateStack(app, ID_STACK, settings=TollgateSettings.from_context(app))
    if nag:
        add_checks(app)
    return stack
