"""CLI helpers without AWS: durations, periods, configuration resolution, and how errors are worded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import stripe
from botocore.exceptions import ClientError, NoRegionError
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.cli.config import ConfigError, resolve_settings
from tollgate.cli.output import checked_period, error_lines, parse_duration
from tollgate.errors import InvalidInputError, NotFoundError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 1H ", timedelta(hours=1)),
    ],
)
def test_durations(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "h", "1 hour", "-1h", "1.5h", "30m1h"])
def test_bad_durations_name_the_option(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--overlap"):
        parse_duration(text)


def test_a_bad_period_names_the_option() -> None:
    assert checked_period("2026-02") == "2026-02"
    with pytest.raises(InvalidInputError, match=r"^--period: a period is written YYYY-MM"):
        checked_period("2026-2")


class Outputs:
    def __init__(self, outputs: dict[str, str]) -> None:
        self.outputs = outputs

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # boto3's parameter name
        return {
            "Stacks": [{"Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in self.outputs.items()]}]
        }


def test_the_stack_wins_over_table_name() -> None:
    settings = resolve_settings(
        "Tollgate",
        {"TABLE_NAME": "other"},
        Outputs({"TableName": "tollgate-table", "StripeApiKeySecretArn": "arn:secret"}),
    )
    assert (settings.table_name, settings.stack, settings.stripe_api_key_secret_arn) == (
        "tollgate-table",
        "Tollgate",
        "arn:secret",
    )
    from_env = resolve_settings(None, {"TOLLGATE_STACK": "Tollgate"}, Outputs({"TableName": "t"}))
    assert from_env.table_name == "t"


def test_table_name_without_a_stack() -> None:
    assert resolve_settings(None, {"TABLE_NAME": "local"}).table_name == "local"
    with pytest.raises(ConfigError, match="no table configured"):
        resolve_settings(None, {})


def test_errors_become_lines() -> None:
    with pytest.raises(ValidationError) as invalid:
        make_plan(price_per_credit="-1", id="Bad")
    assert error_lines(invalid.value) == [
        "id: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$'",
        "price_per_credit: Input should be greater than or equal to 0",
    ]
    assert error_lines(NotFoundError("customer", "x")) == ["customer 'x' not found"]
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Query")
    assert error_lines(throttled) == ["AWS Query: ThrottlingException: slow down"]
    assert error_lines(NoRegionError()) == ["AWS: You must specify a region."]
    card = stripe.InvalidRequestError("No such customer: 'cus_x'", param="customer")
    assert error_lines(card) == ["Stripe: No such customer: 'cus_x'"]
    assert error_lines(KeyError("bug")) is None  # not an expected error: it keeps its traceback
