"""`tollgate portal link`: the signed URL of a customer's usage page, from local settings or a stack's outputs
and its Secrets Manager secret (moto)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from typer.testing import CliRunner, Result

from tests.conftest import NOW, TABLE, make_customer, make_plan
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.store import TollgateStore
from tollgate.portal.links import verify_link

SECRET = "cli-portal-secret"
LOCAL = {
    "PORTAL_LINK_SECRET": SECRET,
    "TOLLGATE_PORTAL_URL": "http://127.0.0.1:8787/portal",
    "TABLE_NAME": TABLE,
}


@pytest.fixture
def acme(store: TollgateStore) -> TollgateStore:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))
    return store


def invoke(*args: str, env: dict[str, str], **context: Any) -> Result:
    obj = AppContext(clock=lambda: NOW, env=env, **context)
    return CliRunner().invoke(app, ["portal", "link", *args], obj=obj, env={"COLUMNS": "300"})


@pytest.mark.usefixtures("acme")
def test_the_link_opens_the_customers_page_for_the_minutes_asked() -> None:
    result = invoke("acme", "--minutes", "60", env=LOCAL)

    assert result.exit_code == 0, result.output
    url = result.stdout.strip()
    assert url.startswith("http://127.0.0.1:8787/portal?token=v1.acme.")
    (token,) = parse_qs(urlsplit(url).query)["token"]
    assert verify_link(SECRET, token, now=NOW).expires_at == NOW + timedelta(minutes=60)
    assert "opens acme's usage page until" in result.stderr


@pytest.mark.usefixtures("acme")
def test_an_unknown_customer_or_a_too_long_life_gets_no_link() -> None:
    unknown = invoke("nobody", env=LOCAL)
    too_long = invoke("acme", "--minutes", "1441", env=LOCAL)

    assert unknown.exit_code == 1
    assert unknown.stdout == ""
    assert "customer 'nobody' not found" in unknown.stderr
    assert too_long.exit_code == 2


@pytest.mark.usefixtures("acme")
def test_a_stack_gives_the_portal_url_and_the_secret() -> None:
    secret_arn = boto3.client("secretsmanager").create_secret(Name="portal", SecretString=SECRET)["ARN"]
    boto3.client("cloudformation").create_stack(
        StackName="weather",
        TemplateBody=json.dumps(
            {
                "Resources": {"Queue": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {
                    "TableName": {"Value": TABLE},
                    "PortalLinkSecretArn": {"Value": secret_arn},
                    "PortalUrl": {"Value": "https://api.weather.example/live/portal"},
                },
            }
        ),
    )

    result = invoke("acme", env={}, stack="weather")

    assert result.exit_code == 0, result.output
    (token,) = parse_qs(urlsplit(result.stdout.strip()).query)["token"]
    assert result.stdout.startswith("https://api.weather.example/live/portal?token=")
    assert verify_link(SECRET, token, now=NOW).customer_id == "acme"


@pytest.mark.usefixtures("acme")
def test_without_a_secret_it_says_what_to_set() -> None:
    result = invoke("acme", env={"TABLE_NAME": TABLE, "TOLLGATE_PORTAL_URL": "https://x.example/portal"})

    assert result.exit_code == 1
    assert "no portal link secret" in result.stderr
