"""Deploy-time settings from CDK context (cdk.json or ``cdk synth -c key=value``)."""

from __future__ import annotations

import aws_cdk as cdk
import pytest

from infra.app import TollgateSettings
from tests.infra.cfn import cdk_json_context
from tests.infra.conftest import Synthesized
from tollgate.billing.close.settings import StripeRateLimits


def test_defaults_without_context() -> None:
    settings = TollgateSettings.from_context(cdk.App())
    assert settings == TollgateSettings(
        stack_name="Tollgate", close_grace_hours=6, dunning_grace_days=7, sample_api=True, stripe_mode="live"
    )
    assert settings.stripe_rate_limits == StripeRateLimits.live()


def test_context_values_as_the_cli_passes_them() -> None:
    app = cdk.App(
        context={
            "stackName": "Billing",
            "closeGraceHours": "2",
            "dunningGraceDays": "10",
            "sampleApi": "false",
            "stripeMode": "Sandbox",
        }
    )
    settings = TollgateSettings.from_context(app)
    assert settings == TollgateSettings(
        stack_name="Billing",
        close_grace_hours=2,
        dunning_grace_days=10,
        sample_api=False,
        stripe_mode="sandbox",
    )
    assert settings.stripe_rate_limits == StripeRateLimits.sandbox()


@pytest.mark.parametrize(
    ("key", "value"), [("closeGraceHours", "24"), ("dunningGraceDays", "-1"), ("stripeMode", "test")]
)
def test_invalid_context_is_refused(key: str, value: str) -> None:
    with pytest.raises(ValueError, match=key):
        TollgateSettings.from_context(cdk.App(context={key: value}))


def test_stack_name_comes_from_context(tollgate: Synthesized) -> None:
    assert tollgate.stack.stack_name == cdk_json_context()["stackName"]
    assert tollgate.stack.settings.close_grace_hours == cdk_json_context()["closeGraceHours"]
