"""Local mode: the services Tollgate needs, started in this process on 127.0.0.1 and stopped on exit.

- DynamoDB: moto's server mode (a real HTTP endpoint; boto3 reaches it through ``AWS_ENDPOINT_URL``).
- Stripe: the Stripe double, or real Stripe test mode when ``STRIPE_API_KEY=sk_test_...`` is set (same code
  path: only the base address and the key differ).
- API Gateway: :mod:`tollgate_local.gateway` in front of the real authorizer and backend handlers.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


def atomic(update_item: Callable[..., Any]) -> Callable[..., Any]:
    """DynamoDB applies the updates of one item one at a time; moto's emulation does not lock, so concurrent
    ``ADD``s can interleave inside moto. Wrap its ``update_item`` to give it the real service's atomicity."""
    if getattr(update_item, "_tollgate_atomic", False):
        return update_item
    lock = threading.Lock()

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with lock:
            return update_item(self, *args, **kwargs)

    locked._tollgate_atomic = True  # type: ignore[attr-defined]
    return locked


def make_moto_writes_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.update_item = atomic(DynamoDBBackend.update_item)  # type: ignore[method-assign]


def sample_routes(table: str) -> list[Any]:
    """The example API of ``app.py``: two paid routes with different costs, an unlisted one, and /usage (the
    real usage handler, on ``table``)."""
    from sample_api.handler import handler as sample
    from tollgate.dal.store import TollgateStore
    from tollgate.usage_api import handler as usage_api
    from tollgate_local.gateway import Route

    usage = usage_api.make_handler(usage_api.Deps(TollgateStore(table)))
    return [
        Route("GET", "/v1/search", sample),
        Route("POST", "/v1/generate", sample),
        Route("GET", "/v1/items/{id}", sample),
        Route("GET", "/usage", usage),
    ]


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
) -> Iterator[LocalStack]:
    """Start everything; yield the addresses; stop everything (also on error or Ctrl-C)."""
    import boto3
    from moto.server import ThreadedMotoServer

    from tollgate.dal.schema import create_table
    from tollgate.metering import handler as authorizer
    from tollgate.metering.observability import logger as authorizer_logger
    from tollgate.metering.settings import MeteringSettings
    from tollgate_local.gateway import LocalGateway
    from tollgate_local.stripe_double import StripeDouble

    make_moto_writes_atomic()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's server logs every request otherwise
    dynamodb = ThreadedMotoServer(ip_address="127.0.0.1", port=dynamodb_port, verbose=False)
    dynamodb.start()
    double = None
    try:
        host, port = dynamodb.get_host_and_port()
        env = {**LOCAL_ENV, "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        real_stripe = os.environ.get("STRIPE_API_KEY", "").startswith("sk_test_")
        if not real_stripe:
            double = StripeDouble(port=stripe_port).start()
            env.update(STRIPE_API_KEY="sk_test_tollgate_local", STRIPE_API_BASE=double.base_url)
        with _environment(env):
            create_table(boto3.client("dynamodb"), LOCAL_TABLE)
            # The real handlers, wired here: their clients are made now, on the local endpoint.
            metering = authorizer.make_handler(authorizer.deps_from(MeteringSettings.from_env()))
            authorizer_logger.setLevel(os.environ["POWERTOOLS_LOG_LEVEL"])
            routes = sample_routes(LOCAL_TABLE)
            gateway = LocalGateway(routes, metering, clock=clock).serve(gateway_port)
            try:
                yield LocalStack(
                    dynamodb_url=env["AWS_ENDPOINT_URL"],
                    gateway_url=gateway.url,
                    stripe_base=None if double is None else double.base_url,
                    table=LOCAL_TABLE,
                    stripe_double=double,
                )
            finally:
                gateway.stop()
    finally:
        if double is not None:
            double.stop()
        dynamodb.stop()
