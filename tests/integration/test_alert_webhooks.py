"""Alert webhooks end to end, on Amazon DynamoDB Local: the webhook function reads SQS messages holding alert
events, looks the customer up in the table, and POSTs each alert to a real HTTP receiver on 127.0.0.1 that
verifies the signature the way the README tells customers to. A retryable answer hides the message for the
backoff (``ChangeMessageVisibility``, checked against SQS's own API model with a botocore ``Stubber``) and
reports it failed; a refusal drops it; the secret is never logged."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from tests.conftest import CONTEXT, make_customer, make_plan
from tests.unit.test_alert_webhooks import event
from tollgate.alerts.webhooks import SIGNATURE_HEADER, Deps, SignatureError, make_handler, post, verify
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertWebhook
from tollgate_local.lambda_context import LocalLambdaContext

pytestmark = pytest.mark.dynamodb_local

SECRET = "whsec_" + "x" * 32
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:tollgate-alert-webhooks"
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/tollgate-alert-webhooks"
PLAN = make_plan(id="capped", credit_limit=100, alerts=[{"cap_percent": 90}])


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool


@dataclass
class Receiver:
    """The customer's endpoint: verifies each request's signature, records it, answers the next scripted
    status (200 once the script is done)."""

    port: int = 0
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    delay: float = 0.0

    def url(self, path: str = "/hooks") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                verify(body, self.headers.get(SIGNATURE_HEADER), SECRET, now=int(time.time()))
                verified = True
            except SignatureError:
                verified = False
            state.received.append(Received(self.path, dict(self.headers.items()), body, verified))
            time.sleep(state.delay)
            status = state.answers.pop(0) if state.answers else 200
            self.send_response(status if verified else 400)
            if 300 <= status < 400:
                self.send_header("Location", state.url("/elsewhere"))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    state.port = server.server_address[1]
    thread = threading.Thread(target=partial(server.serve_forever, poll_interval=0.05), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class EndingContext(LocalLambdaContext):
    """An invocation with 3 s left."""

    def get_remaining_time_in_millis(self) -> int:
        return 3_000


def alert_event(customer_id: str = "acme") -> dict[str, Any]:
    """A usage alert as EventBridge puts it on the queue."""
    return event(customer_id)


def message(event: dict[str, Any], receives: int = 1, message_id: str = "m1") -> dict[str, Any]:
    """One SQS record of the webhook queue, as Lambda's event source mapping gives it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}-{receives}",
        "body": json.dumps(event),
        "attributes": {
            "ApproximateReceiveCount": str(receives),
            "SentTimestamp": "1794744000000",
            "SenderId": "AIDAEVENTBRIDGE",
            "ApproximateFirstReceiveTimestamp": "1794744000001",
        },
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN,
        "awsRegion": "us-east-1",
    }


def hidden_for(seconds: int, receipt_handle: str) -> dict[str, Any]:
    return {"QueueUrl": QUEUE_URL, "ReceiptHandle": receipt_handle, "VisibilityTimeout": seconds}


def sqs_client() -> Any:
    return boto3.client("sqs", region_name="us-east-1")


def customer(store: TollgateStore, url: str | None, customer_id: str = "acme") -> None:
    if customer_id == "acme":
        store.put_plan(PLAN)  # acme is the first customer of every test
    webhook = None if url is None else AlertWebhook(url=url, secret=SECRET)
    store.put_customer(make_customer(PLAN, id=customer_id, alert_webhook=webhook))


def test_an_alert_is_delivered_once_signed(store: TollgateStore, receiver: Receiver) -> None:
    customer(store, receiver.url())
    client = sqs_client()
    event = alert_event()

    with Stubber(client) as stub:  # no SQS call expected: any would fail the stub
        answer = make_handler(Deps(store, client))({"Records": [message(event)]}, CONTEXT)
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": []}
    (got,) = receiver.received
    assert got.verified
    assert got.path == "/hooks"
    assert json.loads(got.body) == {**event["detail"], "type": "Tollgate Usage Threshold Crossed"}
    assert got.headers["Tollgate-Alert-Id"] == "acme:2026-11:cap_percent:90"
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "Tollgate-Webhooks/1"


def test_a_5xx_is_retried_after_a_backoff_then_delivered(store: TollgateStore, receiver: Receiver) -> None:
    customer(store, receiver.url())
    client = sqs_client()
    handle = make_handler(Deps(store, client))
    receiver.answers = [500]

    with Stubber(client) as stub:
        stub.add_response("change_message_visibility", {}, hidden_for(30, "rh-m1-1"))
        first = handle({"Records": [message(alert_event(), receives=1)]}, CONTEXT)
        stub.assert_no_pending_responses()
        second = handle({"Records": [message(alert_event(), receives=2)]}, CONTEXT)
        stub.assert_no_pending_responses()

    assert first == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert second == {"batchItemFailures": []}
    assert [r.verified for r in receiver.received] == [True, True]
    assert receiver.received[0].body == receiver.received[1].body  # the same alert, signed anew
    assert len({r.headers["Tollgate-Alert-Id"] for r in receiver.received}) == 1


def test_only_the_failed_message_of_a_batch_is_retried_and_later_ones_wait_longer(
    store: TollgateStore, receiver: Receiver
) -> None:
    customer(store, receiver.url())
    customer(store, receiver.url("/globex"), customer_id="globex")
    client = sqs_client()
    receiver.answers = [429, 200]

    with Stubber(client) as stub:
        stub.add_response("change_message_visibility", {}, hidden_for(240, "rh-m1-4"))
        answer = make_handler(Deps(store, client))(
            {"Records": [message(alert_event(), 4, "m1"), message(alert_event("globex"), 1, "m2")]}, CONTEXT
        )
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert [r.path for r in receiver.received] == ["/hooks", "/globex"]


def test_a_410_is_dropped_without_a_retry(store: TollgateStore, receiver: Receiver) -> None:
    customer(store, receiver.url())
    client = sqs_client()
    receiver.answers = [410]

    with Stubber(client) as stub:
        answer = make_handler(Deps(store, client))({"Records": [message(alert_event())]}, CONTEXT)
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": []}
    assert len(receiver.received) == 1


def test_a_redirect_is_not_followed_and_the_alert_is_dropped(
    store: TollgateStore, receiver: Receiver
) -> None:
    customer(store, receiver.url())
    receiver.answers = [302]

    answer = make_handler(Deps(store, sqs_client()))({"Records": [message(alert_event())]}, CONTEXT)

    assert answer == {"batchItemFailures": []}
    assert [r.path for r in receiver.received] == ["/hooks"]  # never /elsewhere


def test_a_timeout_or_no_connection_is_retried(store: TollgateStore, receiver: Receiver) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    customer(store, f"http://127.0.0.1:{closed_port}/hooks")
    customer(store, receiver.url(), customer_id="globex")
    receiver.delay = 1.0
    client = sqs_client()
    deps = Deps(store, client, send=partial(post, timeout=0.2))

    with Stubber(client) as stub:
        stub.add_response("change_message_visibility", {}, hidden_for(30, "rh-m1-1"))
        stub.add_response("change_message_visibility", {}, hidden_for(60, "rh-m2-2"))
        answer = make_handler(deps)(
            {"Records": [message(alert_event(), 1, "m1"), message(alert_event("globex"), 2, "m2")]}, CONTEXT
        )
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}, {"itemIdentifier": "m2"}]}
    assert len(receiver.received) == 1  # globex's endpoint got it, too late


def test_a_message_is_not_tried_with_too_little_of_the_invocation_left(
    store: TollgateStore, receiver: Receiver
) -> None:
    customer(store, receiver.url())
    client = sqs_client()
    ending = EndingContext(function_name="tollgate-test")

    with Stubber(client) as stub:
        stub.add_response("change_message_visibility", {}, hidden_for(30, "rh-m1-1"))
        answer = make_handler(Deps(store, client))({"Records": [message(alert_event())]}, ending)
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    assert receiver.received == []


def test_a_customer_without_a_webhook_gets_nothing(store: TollgateStore, receiver: Receiver) -> None:
    customer(store, None)
    client = sqs_client()

    with Stubber(client) as stub:
        answer = make_handler(Deps(store, client))(
            {"Records": [message(alert_event()), message(alert_event("gone"), message_id="m2")]}, CONTEXT
        )
        stub.assert_no_pending_responses()

    assert answer == {"batchItemFailures": []}
    assert receiver.received == []


def test_the_secret_and_the_signature_are_never_logged(
    store: TollgateStore,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="tollgate-alerts")  # the function's own logs (not botocore's)
    customer(store, receiver.url("/hooks?token=customer-token"))
    client = sqs_client()
    handle = make_handler(Deps(store, client))
    receiver.answers = [503, 200]

    with Stubber(client) as stub:
        stub.add_response("change_message_visibility", {}, hidden_for(30, "rh-m1-1"))
        handle({"Records": [message(alert_event(), receives=1)]}, CONTEXT)
        handle({"Records": [message(alert_event(), receives=2)]}, CONTEXT)

    logged = [f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name.startswith("tollgate-alerts")]
    assert any("not delivered; it will be retried" in line for line in logged)
    assert any("alert webhook delivered" in line for line in logged)
    signatures = [r.headers[SIGNATURE_HEADER].split("v1=")[1] for r in receiver.received]
    everything = "\n".join(logged) + caplog.text + capsys.readouterr().out
    for secret in (SECRET, "customer-token", *signatures):
        assert secret not in everything
