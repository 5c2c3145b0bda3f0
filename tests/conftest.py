"""Shared fixtures: the test table, and domain factories.

The table is in-process moto (``mock_aws``) by default, enough where DynamoDB's semantics do not matter. Tests
marked ``dynamodb_local`` (the integration tests) get it on Amazon DynamoDB Local instead, AWS's own emulator:
atomic ``ADD``s under concurrency, ``ClientRequestToken`` dedup, validation like DynamoDB's, and faster than
moto for these tests. One process serves the whole session, started by the first test that needs it, with a
fresh table for each test; the other AWS services (SQS, Secrets Manager) stay in-process moto.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider
from moto import mock_aws

from tollgate.dal.schema import create_table
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Customer, Plan
from tollgate.metering import handler as metering
from tollgate.metering.dynamo import TtlCache
from tollgate.metering.settings import MeteringSettings
from tollgate_local.dynamodb_local import DynamoDBLocal, DynamoDBLocalError
from tollgate_local.lambda_context import LocalLambdaContext
from tollgate_local.stripe_double import StripeDouble

TABLE = "tollgate-test"
NOW = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
CONTEXT: Any = LocalLambdaContext(function_name="tollgate-test")  # what Powertools reads of Lambda's context


def pytest_configure(config: pytest.Config) -> None:
    # The authorizer flushes no metrics on its happy path; tollgate.metering.observability silences the
    # warning Powertools gives for that, and pytest's own warning capture would bring it back.
    config.addinivalue_line("filterwarnings", "ignore:No application metrics to publish")
    config.addinivalue_line(
        "markers",
        "dynamodb_local: the test table is on Amazon DynamoDB Local (Java 17+, npm ci), not in-process moto",
    )


@pytest.fixture(scope="session", autouse=True)
def _one_metric_set_at_a_time() -> Iterator[None]:
    """Powertools keeps one metric set per process, which Lambda runs one invocation at a time. The threaded
    tests run several handlers in one process at once, so their metric calls are made atomic here: otherwise
    one thread's flush can empty the set between another's check and its serialization (SchemaValidationError,
    "Must contain at least one metric"). The handlers' DynamoDB calls still run concurrently."""
    lock = threading.RLock()
    names = ("add_metric", "serialize_metric_set", "flush_metrics", "clear_metrics")
    originals = {name: getattr(AmazonCloudWatchEMFProvider, name) for name in names}

    def atomic(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return method(*args, **kwargs)

        return call

    for name, method in originals.items():
        setattr(AmazonCloudWatchEMFProvider, name, atomic(method))
    yield
    for name, method in originals.items():
        setattr(AmazonCloudWatchEMFProvider, name, method)


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


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[DynamoDBLocal]:
    """One DynamoDB Local for the session (2 s to start), only if a test needs it; stopped at the end."""
    try:
        server = DynamoDBLocal().start()
    except DynamoDBLocalError as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def local_table(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The test table on DynamoDB Local, created for this test and deleted after it (about 40 ms in all).
    Every boto3 DynamoDB client the test makes reaches it through ``AWS_ENDPOINT_URL_DYNAMODB``."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_local.endpoint_url)
    client = dynamodb_local.admin
    create_table(client, TABLE)
    try:
        yield TABLE
    finally:
        client.delete_table(TableName=TABLE)


@pytest.fixture
def aws(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every AWS service in-process (moto) and the test table, in moto too, or on DynamoDB Local for a test
    marked ``dynamodb_local`` (moto passes requests to DynamoDB Local's address through)."""
    with mock_aws():
        if request.node.get_closest_marker("dynamodb_local") is not None:
            request.getfixturevalue("local_table")
        else:
            create_table(boto3.client("dynamodb", region_name="us-east-1"), TABLE)
        yield


@pytest.fixture
def double() -> Iterator[StripeDouble]:
    """The Stripe test double on 127.0.0.1, stopped after the test."""
    with StripeDouble() as running:
        yield running


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
    if fields.get("tiers") and "price_per_credit" not in overrides:
        del fields["price_per_credit"]  # a tiered plan has no flat price
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
    """The metering authorizer on the test table, with its key cache and DynamoDB client at hand.

    Unless the test gave it a wall clock, the authorizer's clock (a request stamped more than five minutes
    away from it is refused) reads the timestamp of the event being handled: as if each request were made
    just now.
    """

    handle: Callable[[dict[str, Any], Any], dict[str, Any]]
    cache: TtlCache
    client: Any  # the boto3 DynamoDB client both the key lookups and the counter writes use
    stamped: list[float] | None = None  # the wall clock that follows the events' own timestamps

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        if self.stamped is not None:
            self.stamped[0] = _stamp_seconds(event, self.stamped[0])
        return self.handle(event, CONTEXT)


def _stamp_seconds(event: Any, default: float) -> float:
    """API Gateway's timestamp of ``event`` in seconds (REST ``requestTimeEpoch``, v2 ``timeEpoch``)."""
    context = event.get("requestContext") if isinstance(event, dict) else None
    stamp = context.get("requestTimeEpoch", context.get("timeEpoch")) if isinstance(context, dict) else None
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and abs(stamp) < 1e15:
        return stamp / 1000
    return default


def make_authorizer(
    *,
    fail_open: bool = False,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] | None = None,
) -> Authorizer:
    """A fresh authorizer (empty key cache, new client) as a new execution environment would build it.

    ``clock`` drives the key cache's TTLs; ``wall_clock`` (seconds since the epoch) is the authorizer's own
    clock, which request timestamps are checked against (default: each event's own timestamp).
    """
    client = boto3.client("dynamodb", config=metering.CLIENT_CONFIG)
    cache = TtlCache(clock=clock)
    stamped = [NOW.timestamp()]
    settings = MeteringSettings(TABLE, fail_open=fail_open)
    deps = metering.deps_from(settings, client=client, cache=cache, clock=wall_clock or (lambda: stamped[0]))
    return Authorizer(metering.make_handler(deps), cache, client, None if wall_clock else stamped)


@pytest.fixture
def authorizer(aws: None) -> Authorizer:
    return make_authorizer()
