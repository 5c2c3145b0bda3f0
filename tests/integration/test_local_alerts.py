"""Usage alerts in local mode: requests through the local gateway, DynamoDB Local's own stream read like
Lambda's event source mapping does, the real alert function, and the local event bus in EventBridge's place.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.accounts.keys import issue_key
from tollgate.alerts.webhooks import SIGNATURE_HEADER, verify
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertWebhook
from tollgate_local.dynamodb_local import DynamoDBLocal
from tollgate_local.services import LOCAL_TABLE, LocalStack, local_stack

pytestmark = pytest.mark.dynamodb_local


@pytest.fixture
def stack(dynamodb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalStack]:
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("STRIPE_API_BASE", raising=False)
    try:
        with local_stack(dynamodb_url=dynamodb_local.endpoint_url) as running:
            yield running
    finally:
        dynamodb_local.admin.delete_table(TableName=LOCAL_TABLE)


def call(stack: LocalStack, key: str, path: str = "/v1/search") -> int:
    request = urllib.request.Request(stack.gateway_url + path, headers={"x-api-key": key})  # noqa: S310 - the local gateway
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local gateway
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def test_local_mode_runs_the_alert_function_on_the_tables_stream_and_posts_signed_webhooks(
    stack: LocalStack,
) -> None:
    store = TollgateStore(LOCAL_TABLE)
    plan = make_plan(
        id="capped",
        name="Capped",
        price_per_credit=Decimal("0.01"),
        credit_limit=20,
        route_costs={"GET /v1/search": 1, "GET /usage": 0},
        alerts=[{"cap_percent": 50}, {"cap_percent": 100}],
    )
    store.put_plan(plan)
    secret = "whsec_" + "s" * 32
    received: list[dict[str, object]] = []

    class Receiver(BaseHTTPRequestHandler):  # the customer's own endpoint
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            verify(body, self.headers[SIGNATURE_HEADER], secret, now=int(time.time()))  # or a 500
            received.append(json.loads(body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    webhook = AlertWebhook(url=f"http://127.0.0.1:{server.server_port}/hooks", secret=secret)
    store.put_customer(make_customer(plan, stripe_customer_id="cus_acme", alert_webhook=webhook))
    now = datetime.now(UTC)
    key = issue_key(store, "acme", now=now - timedelta(minutes=1)).key

    statuses = [call(stack, key) for _ in range(21)]
    stack.stream.drain()

    assert statuses == [200] * 20 + [403]  # the 21st passes the cap
    events = stack.alerts.events
    assert [(e["detail-type"], e["detail"]["rule"], e["detail"]["credits"]) for e in events] == [
        ("Tollgate Usage Threshold Crossed", "cap_percent:50", 10),
        ("Tollgate Usage Threshold Crossed", "cap_percent:100", 20),
    ]
    assert all(e["source"] == "tollgate" for e in events)
    assert json.dumps(events)  # what EventBridge would carry: plain JSON
    assert stack.stream.failures == 0
    server.shutdown()
    assert [(r["type"], r["alertId"]) for r in received] == [  # signed, verified by the customer
        (e["detail-type"], e["detail"]["alertId"]) for e in events
    ]
