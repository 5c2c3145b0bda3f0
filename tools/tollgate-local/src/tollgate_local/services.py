"""Local mode: the services Tollgate needs, reached on 127.0.0.1 and stopped on exit.

- DynamoDB: Amazon DynamoDB Local (:mod:`tollgate_local.dynamodb_local`, a Java child process on a random free
  port, stopped by its pid; boto3 reaches it through ``AWS_ENDPOINT_URL``).
- Stripe: the Stripe double, or real Stripe test mode when ``STRIPE_API_KEY=sk_test_...`` is set (same code
  path: only the base address and the key differ).
- API Gateway: :mod:`tollgate_local.gateway` in front of the real authorizer and backend handlers, writing
  each request's usage ledger record into ``ledger_dir`` (the deployed stage's access log to Firehose).
- Firehose, S3's notification and the refund function: :mod:`tollgate_local.deliveries`, delivering the new
  ledger records every second to the refunds of failed requests (``Plan.refund_statuses``).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOCAL_TABLE = "tollgate-local"
LOCAL_ENV = {
    "AWS_ACCESS_KEY_ID": "local",
    "AWS_SECRET_ACCESS_KEY": "local",
    "AWS_DEFAULT_REGION": "us-east-1",
    "TABLE_NAME": LOCAL_TABLE,
    "POWERTOOLS_METRICS_NAMESPACE": "Tollgate",
    "POWERTOOLS_METRICS_DISABLED": "true",  # no EMF lines in the demo's output
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@dataclass(frozen=True)
class LocalStack:
    dynamodb_url: str
    gateway_url: str
    stripe_base: str | None  # None: real Stripe test mode
    table: str
    stripe_double: Any  # the StripeDouble, or None
    dynamodb_pid: int | None = None  # DynamoDB Local's process
    alerts: Any = None  # the LocalEventBus: usage alerts published (tollgate_local.streams)
    stream: Any = None  # the StreamConsumer running the alert function on the table's stream
    # the LedgerDelivery refunding failed requests off the ledger (tollgate_local.deliveries): flush() it
    deliveries: Any = None
    # the usage ledger: {ledger_dir}/period=YYYY-MM/day=YYYY-MM-DD/*.jsonl (tollgate.domain.ledger)
    ledger_dir: Path | None = None
    # what the usage page's signed links (GET /portal?token=...) are signed with: made anew for each stack
    portal_link_secret: str = ""

    @property
    def portal_url(self) -> str:
        return f"{self.gateway_url}/portal"


def sample_routes(
    table: str,
    portal_link_secret: str | None = None,
    clock: Callable[[], float] = time.time,
    ledger_dir: Path | None = None,
) -> list[Any]:
    """The example API of ``app.py``: two paid routes with different costs, an unlisted one, and /usage (the
    real usage handler, on ``table``), with the usage page (``GET /usage/page``) and its signed links
    (``GET /portal``, no authorizer; signed with ``portal_link_secret``), on the gateway's ``clock``; and the
    CSV export (``GET /usage/export``), read from the ledger in ``ledger_dir`` (DuckDB) when there is one."""
    from sample_api.handler import handler as sample
    from tollgate.dal.store import TollgateStore
    from tollgate.ledger.duckdb_ledger import DuckDbLedger
    from tollgate.usage_api import handler as usage_api
    from tollgate_local.gateway import Route

    usage = usage_api.make_handler(
        usage_api.Deps(
            TollgateStore(table),
            clock=lambda: datetime.fromtimestamp(clock(), UTC),
            portal_link_secret=lambda: portal_link_secret,
            ledger=None if ledger_dir is None else DuckDbLedger(ledger_dir),
        )
    )
    return [
        Route("GET", "/v1/search", sample),
        Route("POST", "/v1/generate", sample),
        Route("GET", "/v1/items/{id}", sample),
        Route("GET", "/usage", usage),
        Route("GET", "/usage/export", usage),
        Route("GET", "/usage/budget", usage),
        Route("PUT", "/usage/budget", usage),
        Route("GET", "/usage/alerts", usage),
        Route("PUT", "/usage/alerts", usage),
        Route("GET", "/usage/alerts/webhook", usage),
        Route("PUT", "/usage/alerts/webhook", usage),
        Route("DELETE", "/usage/alerts/webhook", usage),
        Route("GET", "/usage/page", usage),
        Route("GET", "/portal", usage, authorized=False),
    ]


def local_webhooks(
    store: Any, then: Callable[[dict[str, Any]], None] | None
) -> Callable[[dict[str, Any]], None]:
    """What the webhook queue and function do in AWS, inline: each alert event POSTed (signed) to its
    customer's webhook, if they have one; a failure is logged, not retried (local mode has no queue)."""
    from tollgate.alerts.observability import logger
    from tollgate.alerts.webhooks import deliver_event

    def on_event(event: dict[str, Any]) -> None:
        try:
            deliver_event(event, store, now=int(time.time()))
        except Exception as error:
            logger.warning("local webhook delivery failed", extra={"error": str(error)})
        if then is not None:
            then(event)

    return on_event


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def local_stack(
    *,
    gateway_port: int = 0,
    dynamodb_port: int = 0,
    stripe_port: int = 0,
    clock: Callable[[], float] = time.time,
    dynamodb_url: str | None = None,
    on_alert: Callable[[dict[str, Any]], None] | None = None,
    ledger_dir: Path | str | None = None,
    on_refund: Callable[[Any], None] | None = None,
    delivery_interval: float = 1.0,
) -> Iterator[LocalStack]:
    """Start everything; yield the addresses; stop everything (also on error or Ctrl-C). ``dynamodb_port`` 0
    is a random free port. Without Java 17+ or ``npm ci``: ``DynamoDBLocalError``, before anything starts.
    ``dynamodb_url``: a DynamoDB already running (the tests' DynamoDB Local), used and left running.
    ``on_alert``: called with each usage alert event as it is published (``tollgate_local.streams``).
    ``ledger_dir``: where the gateway writes the usage ledger (kept); by default a temporary directory,
    removed when the stack stops. ``on_refund``: called with each refund of a failed request
    (``tollgate.domain.refunds.Refund``) as the ledger's delivery makes it, every ``delivery_interval``
    seconds (Firehose's buffer, 300 s in AWS) or at ``stack.deliveries.flush()``."""
    import boto3

    from tollgate.alerts import handler as alert_handler
    from tollgate.alerts.observability import logger as alerts_logger
    from tollgate.alerts.service import InvoiceThresholds
    from tollgate.billing.settings import StripeSettings
    from tollgate.dal.schema import create_table
    from tollgate.dal.store import TollgateStore
    from tollgate.metering import handler as authorizer
    from tollgate.metering.observability import logger as authorizer_logger
    from tollgate.metering.observability import metrics as authorizer_metrics
    from tollgate.metering.settings import MeteringSettings
    from tollgate.refunds.observability import logger as refunds_logger
    from tollgate_local.deliveries import LedgerDelivery
    from tollgate_local.dynamodb_local import DynamoDBLocal
    from tollgate_local.gateway import LocalGateway, LocalLedger
    from tollgate_local.streams import LocalEventBus, StreamConsumer
    from tollgate_local.stripe_double import StripeDouble

    temporary_ledger = ledger_dir is None
    ledger_root = Path(tempfile.mkdtemp(prefix="tollgate-ledger-") if ledger_dir is None else ledger_dir)
    dynamodb = None
    if dynamodb_url is None:
        dynamodb = DynamoDBLocal(port=dynamodb_port).start()
        dynamodb_url = dynamodb.endpoint_url
    double = None
    try:
        env = {**LOCAL_ENV, "AWS_ENDPOINT_URL": dynamodb_url}
        real_stripe = os.environ.get("STRIPE_API_KEY", "").startswith("sk_test_")
        if not real_stripe:
            double = StripeDouble(port=stripe_port).start()
            env.update(STRIPE_API_KEY="sk_test_tollgate_local", STRIPE_API_BASE=double.base_url)
        with _environment(env):
            create_table(boto3.client("dynamodb"), LOCAL_TABLE)
            # The real handlers, wired here: their clients are made now, on the local endpoint. The authorizer
            # checks each request's timestamp against the clock the gateway stamps requests with.
            metering = authorizer.make_handler(authorizer.deps_from(MeteringSettings.from_env(), clock=clock))
            level = authorizer_logger.log_level  # the process's own, given back when the stack stops
            authorizer_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
            alerts_level = alerts_logger.log_level
            alerts_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
            refunds_level = refunds_logger.log_level
            refunds_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
            portal_link_secret = secrets.token_urlsafe(32)
            routes = sample_routes(LOCAL_TABLE, portal_link_secret, clock, ledger_root)
            deliveries = LedgerDelivery(  # what is in ledger_root before the gateway starts is not delivered
                ledger_root,
                TollgateStore(LOCAL_TABLE),
                interval=delivery_interval,
                clock=lambda: datetime.fromtimestamp(clock(), UTC),
                on_refund=on_refund,
            )
            gateway = LocalGateway(routes, metering, clock=clock, ledger=LocalLedger(ledger_root)).serve(
                gateway_port
            )
            bus = LocalEventBus(local_webhooks(TollgateStore(LOCAL_TABLE), on_alert))
            alert_store = TollgateStore(LOCAL_TABLE)
            stripe_settings = StripeSettings.from_env()  # the double's
            top_ups = alert_handler.StripeTopUps(alert_store, stripe_settings)
            billing = alert_handler.StripeThresholdBilling(alert_store, stripe_settings)
            alert_deps = alert_handler.Deps(
                alert_store,
                bus,
                clock=lambda: datetime.fromtimestamp(clock(), UTC),
                top_up=top_ups,
                thresholds=InvoiceThresholds(billing),
            )
            alert_function = alert_handler.make_handler(alert_deps)
            consumer = StreamConsumer(
                boto3.client("dynamodb"), boto3.client("dynamodbstreams"), LOCAL_TABLE, alert_function
            ).start()
            deliveries.start()
            try:
                yield LocalStack(
                    dynamodb_url=env["AWS_ENDPOINT_URL"],
                    gateway_url=gateway.url,
                    stripe_base=None if double is None else double.base_url,
                    table=LOCAL_TABLE,
                    stripe_double=double,
                    dynamodb_pid=None if dynamodb is None else dynamodb.pid,
                    alerts=bus,
                    stream=consumer,
                    deliveries=deliveries,
                    ledger_dir=ledger_root,
                    portal_link_secret=portal_link_secret,
                )
            finally:
                consumer.stop()
                deliveries.stop()
                gateway.stop()
                authorizer_logger.setLevel(level)
                alerts_logger.setLevel(alerts_level)
                refunds_logger.setLevel(refunds_level)
                # metrics are off locally (POWERTOOLS_METRICS_DISABLED): what the authorizer added and never
                # flushed must not be flushed later by another handler of this process
                authorizer_metrics.clear_metrics()
    finally:
        if double is not None:
            double.stop()
        if dynamodb is not None:
            dynamodb.stop()
        if temporary_ledger:
            shutil.rmtree(ledger_root, ignore_errors=True)
