"""Shared fixtures: an in-process DynamoDB (moto ``mock_aws``) with the table, and domain factories."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tollgate.dal.schema import create_table
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Customer, Plan
from tollgate.metering import handler as metering
from tollgate.metering.dynamo import TtlCache
from tollgate.metering.settings import MeteringSettings
from tollgate_local.lambda_context import LocalLambdaContext

TABLE = "tollgate-test"
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
CONTEXT: Any = LocalLambdaContext(function_name="tollgate-test")  # what Powertools reads of Lambda's context


def pytest_configure(config: pytest.Config) -> None:
    # The authorizer flushes no metrics on its happy path; tollgate.metering.observability silences the
    # warning Powertools gives for that, and pytest's own warning capture would bring it back.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish")


@pytest.fixture(autouse=True)
def _aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach AWS: fake credentials, a fixed region, the test table's name."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("TABLE_NAME", TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Tollgate")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws():
        create_table(boto3.client("dynamodb", region_name="us-east-1"), TABLE)
        yield


@pytest.fixture
def store(aws: None) -> TollgateStore:
    return TollgateStore(TABLE)


def make_plan(**overrides: Any) -> Plan:
    fields: dict[str, Any] = {
        "id": "payg",
        "name": "Pay as you go",
        "currency": "usd",
        "price_per_credit": Decimal("0.00042"),
        "route_costs": {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0},
    }
    fields.update(overrides)
    return Plan(**fields)


def make_customer(plan: Plan, **overrides: Any) -> Customer:
    fields: dict[str, Any] = {
        "id": "acme",
        "name": "Acme Corp",
        "email": "billing@acme.test",
        "plan_id": plan.id,
        "plan_version": plan.version,
        "created_at": NOW,
    }
    fields.update(overrides)
    return Customer(**fields)


@pytest.fixture
def env_table_name() -> str:
    return os.environ["TABLE_NAME"]


@dataclass
class Authorizer:
    """The metering authorizer on the test table, with its key cache and DynamoDB client at hand."""

    handle: Callable[[dict[str, Any], Any], dict[str, Any]]
    cache: TtlCache
    client: Any  # the boto3 DynamoDB client both the key lookups and the counter writes use

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        return self.handle(event, CONTEXT)


def make_authorizer(*, fail_open: bool = False, clock: Callable[[], float] = time.monotonic) -> Authorizer:
    """A fresh authorizer (empty key cache, new client) as a new execution environment would build it."""
    client = boto3.client("dynamodb", config=metering.CLIENT_CONFIG)
    cache = TtlCache(clock=clock)
    deps = metering.deps_from(MeteringSettings(TABLE, fail_open=fail_open), client=client, cache=cache)
    return Authorizer(metering.make_handler(deps), cache, client)


@pytest.fixture
def authorizer(aws: None) -> Authorizer:
    return make_authorizer()
