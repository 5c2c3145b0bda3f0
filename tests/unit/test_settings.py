"""Each deployable reads its environment through one typed settings object: names, defaults, bad values."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tollgate.billing.close.settings import StarterSettings, WorkerSettings
from tollgate.billing.settings import StripeSettings
from tollgate.billing.webhooks.settings import DunningSettings, WebhookSettings
from tollgate.metering.settings import MeteringSettings
from tollgate.settings import SettingsError
from tollgate.usage_api.settings import UsageApiSettings


def test_the_authorizer_defaults_to_a_30_second_key_cache_and_failing_closed() -> None:
    assert MeteringSettings.from_env({"TABLE_NAME": "t"}) == MeteringSettings(
        table_name="t", key_cache_ttl_seconds=30, negative_cache_ttl_seconds=5, fail_open=False
    )


def test_the_authorizer_reads_every_variable() -> None:
    env = {
        "TABLE_NAME": "t",
        "KEY_CACHE_TTL_SECONDS": "2.5",
        "NEGATIVE_CACHE_TTL_SECONDS": "0",
        "FAIL_OPEN": "TRUE",
    }
    assert MeteringSettings.from_env(env) == MeteringSettings("t", 2.5, 0, fail_open=True)


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({}, "TABLE_NAME must be set"),
        ({"TABLE_NAME": "t", "KEY_CACHE_TTL_SECONDS": "half a minute"}, "KEY_CACHE_TTL_SECONDS"),
        ({"TABLE_NAME": "t", "NEGATIVE_CACHE_TTL_SECONDS": "-1"}, "NEGATIVE_CACHE_TTL_SECONDS"),
    ],
)
def test_a_missing_or_bad_authorizer_setting_names_the_variable(env: dict[str, str], match: str) -> None:
    with pytest.raises(SettingsError, match=match):
        MeteringSettings.from_env(env)


def test_the_close_functions_read_the_queue_and_the_stripe_key() -> None:
    env = {"TABLE_NAME": "t", "CLOSE_QUEUE_URL": "https://sqs/q", "STRIPE_API_KEY_SECRET_ARN": "arn:s"}
    assert StarterSettings.from_env(env) == StarterSettings("t", "https://sqs/q")
    assert WorkerSettings.from_env(env) == WorkerSettings("t", StripeSettings(api_key_secret_arn="arn:s"))
    with pytest.raises(SettingsError, match="CLOSE_QUEUE_URL"):
        StarterSettings.from_env({"TABLE_NAME": "t"})


def test_dunning_grace_defaults_to_seven_days() -> None:
    assert DunningSettings.from_env({"TABLE_NAME": "t"}).grace == timedelta(days=7)
    assert DunningSettings.from_env({"TABLE_NAME": "t", "DUNNING_GRACE_DAYS": "2"}).grace == timedelta(days=2)
    with pytest.raises(SettingsError, match="whole number of days"):
        DunningSettings.from_env({"TABLE_NAME": "t", "DUNNING_GRACE_DAYS": "a week"})


def test_the_webhook_reads_its_signing_secret_or_its_arn() -> None:
    settings = WebhookSettings.from_env({"TABLE_NAME": "t", "STRIPE_WEBHOOK_SECRET_ARN": "arn:w"})
    assert (settings.signing_secret, settings.signing_secret_arn) == (None, "arn:w")
    assert UsageApiSettings.from_env({"TABLE_NAME": "t"}) == UsageApiSettings("t")
