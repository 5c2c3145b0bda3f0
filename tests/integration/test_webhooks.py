"""Stripe webhooks end to end: signed Function URL events -> handler -> DynamoDB Local.

The invoices in the events are real ones: a period close run against the Stripe double makes them, so their
metadata is exactly what the close sends. Signatures are computed as Stripe computes them (HMAC-SHA256 of
``"{t}.{raw body}"`` with the endpoint secret), independently of the library the handler verifies with.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import CONTEXT, NOW, TABLE, make_customer, make_plan
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import close_customer
from tollgate.billing.invoicing import StripeClientInvoicing
from tollgate.billing.webhooks import handler as webhooks
from tollgate.billing.webhooks.settings import WebhookSettings
from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import get_close
from tollgate.dal.store import TollgateStore
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

SECRET = "whsec_test_0123456789abcdef"
PERIOD = "2026-10"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def sign(body: str, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header, as Stripe makes it."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def stripe_event(
    event_type: str, invoice: dict[str, Any], *, created: datetime = NOW, event_id: str | None = None
) -> dict[str, Any]:
    return {
        "id": event_id or f"evt_{uuid.uuid4().hex[:24]}",
        "object": "event",
        "api_version": "2026-10-28.endive",
        "created": int(created.timestamp()),
        "data": {"object": invoice},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def function_url_event(body: str, headers: dict[str, str], *, encode: bool = False) -> dict[str, Any]:
    """A Lambda Function URL request (payload 2.0): header names lower-cased, body possibly base64."""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json; charset=utf-8",
            **{k.lower(): v for k, v in headers.items()},
        },
        "requestContext": {
            "http": {"method": "POST", "path": "/", "sourceIp": "3.18.12.63"},
            "requestId": "r",
        },
        "body": base64.b64encode(body.encode()).decode() if encode else body,
        "isBase64Encoded": encode,
    }


@dataclass
class World:
    store: TollgateStore
    double: StripeDouble
    invoice: dict[str, Any]  # the October invoice as Stripe holds it (open)
    handler: Handler
    now: list[datetime]

    def deliver(self, event: dict[str, Any], *, encode: bool = False, secret: str = SECRET) -> dict[str, Any]:
        body = json.dumps(event)
        return self.handler(
            function_url_event(body, {"Stripe-Signature": sign(body, secret)}, encode=encode), CONTEXT
        )

    def invoice_status(self) -> str | None:
        close = get_close(self.store.table, "acme", PERIOD)
        assert close is not None
        return close.invoice_status

    def items(self, prefix: str) -> list[dict[str, Any]]:
        return [i for i in self.store.table.scan()["Items"] if str(i["pk"]).startswith(prefix)]

    def failures(self) -> list[dict[str, Any]]:
        return [i for i in self.items("CUSTOMER#acme") if str(i["sk"]).startswith("DUNNING#")]


def webhook_handler(store: TollgateStore, now: list[datetime]) -> Handler:
    """The webhook function as deployed (secret and grace from the environment), on the test's table and
    clock ``now[0]``."""
    deps = webhooks.deps_from(WebhookSettings.from_env())
    return webhooks.make_handler(replace(deps, store=store, clock=lambda: now[0]))


def invoiced_world(store: TollgateStore, double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> World:
    """acme on a pay-as-you-go plan, October closed and invoiced in the Stripe double (open)."""
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", SECRET)
    plan = store.put_plan(make_plan())
    customer = double.client().v1.customers.create(params={"name": "Acme", "email": "billing@acme.test"})
    store.put_customer(make_customer(plan, stripe_customer_id=customer.id))
    from tests.integration.test_cli import add_usage

    add_usage(store, "acme", PERIOD, 0, {"POST /v1/generate": (1_000_000, 40_000)})
    record = close_customer(
        DynamoLedger(store), StripeClientInvoicing(double.client()), "acme", PERIOD, now=NOW
    )
    assert record.stripe_invoice_id is not None
    now = [NOW]
    return World(
        store,
        double,
        double.invoices[record.stripe_invoice_id],
        webhook_handler(store, now),
        now,
    )


@pytest.fixture
def world(store: TollgateStore, double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> World:
    return invoiced_world(store, double, monkeypatch)


def answer_body(answer: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads(answer["body"]))


# -- signatures ------------------------------------------------------------------------------------------
def test_a_signed_invoice_paid_event_marks_the_invoice_paid(world: World) -> None:
    assert world.invoice_status() == "open"
    event = stripe_event("invoice.paid", {**world.invoice, "status": "paid"})

    answer = world.deliver(event)

    assert answer["statusCode"] == 200, answer
    assert answer_body(answer)["result"] == "applied"
    assert world.invoice_status() == "paid"
    (marker,) = world.items("WEBHOOK#")
    assert {k: marker[k] for k in ("pk", "sk")} == tk.webhook_event_key(event["id"])
    assert int(marker[tk.TTL_ATTRIBUTE]) == int((NOW + timedelta(days=30)).timestamp())


def test_a_base64_body_is_verified_over_its_decoded_bytes(world: World) -> None:
    answer = world.deliver(stripe_event("invoice.paid", world.invoice), encode=True)
    assert answer["statusCode"] == 200, answer
    assert world.invoice_status() == "paid"


def test_an_api_gateway_style_header_name_is_found(world: World) -> None:
    body = json.dumps(stripe_event("invoice.voided", world.invoice))
    event = function_url_event(body, {})
    event["headers"] = {"Stripe-Signature": sign(body), "Content-Type": "application/json"}
    assert world.handler(event, CONTEXT)["statusCode"] == 200
    assert world.invoice_status() == "void"


def _rejected(world: World, answer: dict[str, Any], message: str) -> None:
    assert answer["statusCode"] == 400
    assert message in answer_body(answer)["message"]
    assert world.invoice_status() == "open"
    assert world.items("WEBHOOK#") == []


def test_a_forged_signature_is_rejected_and_changes_nothing(world: World) -> None:
    answer = world.deliver(stripe_event("invoice.paid", world.invoice), secret="whsec_someone_else")
    _rejected(world, answer, "invalid or expired Stripe-Signature")


def test_a_body_changed_after_signing_is_rejected(world: World) -> None:
    signed_body = json.dumps(stripe_event("invoice.finalized", world.invoice))
    other_body = json.dumps(stripe_event("invoice.paid", world.invoice))
    answer = world.handler(function_url_event(other_body, {"Stripe-Signature": sign(signed_body)}), CONTEXT)
    _rejected(world, answer, "invalid or expired Stripe-Signature")


def test_an_old_timestamp_is_rejected(world: World) -> None:
    body = json.dumps(stripe_event("invoice.paid", world.invoice))
    stale = sign(body, timestamp=int(time.time()) - 301)
    answer = world.handler(function_url_event(body, {"Stripe-Signature": stale}), CONTEXT)
    _rejected(world, answer, "invalid or expired Stripe-Signature")


def test_a_missing_signature_header_is_rejected(world: World) -> None:
    body = json.dumps(stripe_event("invoice.paid", world.invoice))
    answer = world.handler(function_url_event(body, {}), CONTEXT)
    _rejected(world, answer, "missing Stripe-Signature header")


def test_a_signed_body_that_is_not_json_is_rejected(world: World) -> None:
    body = "not json"
    answer = world.handler(function_url_event(body, {"Stripe-Signature": sign(body)}), CONTEXT)
    _rejected(world, answer, "not a JSON Stripe event")


def test_the_secret_can_come_from_secrets_manager(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from aws_lambda_powertools.utilities import parameters

    arn = boto3.client("secretsmanager").create_secret(Name="webhook", SecretString=SECRET)["ARN"]
    monkeypatch.delenv("STRIPE_WEBHOOK_SECRET")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET_ARN", arn)
    world.handler = webhook_handler(world.store, world.now)  # a new execution environment reads the ARN
    parameters.clear_caches()
    try:
        answer = world.deliver(stripe_event("invoice.paid", world.invoice))
    finally:
        parameters.clear_caches()
    assert answer["statusCode"] == 200, answer
    assert world.invoice_status() == "paid"


# -- once only -------------------------------------------------------------------------------------------
def test_a_redelivered_event_is_applied_once(world: World) -> None:
    event = stripe_event("invoice.payment_failed", world.invoice)

    first, second = world.deliver(event), world.deliver(event)

    assert answer_body(first)["result"] == "applied"
    assert second["statusCode"] == 200
    assert answer_body(second)["result"] == "duplicate"
    assert [f["attempts"] for f in world.failures()] == [1]
    assert len(world.items("WEBHOOK#")) == 1


def test_a_duplicate_racing_past_the_first_read_is_still_applied_once(world: World) -> None:
    """Two deliveries of one event in flight at once: both read 'not seen', only one transaction wins."""
    event = stripe_event("invoice.payment_failed", world.invoice)

    class TwinLandsFirst(TollgateStore):
        """The table, except that the twin delivery is applied just before this delivery's transaction."""

        raced = False

        def transact(self, actions: Any) -> None:
            if not self.raced:
                self.raced = True
                assert answer_body(world.deliver(event))["result"] == "applied"
            super().transact(actions)

    racing = replace(world, handler=webhook_handler(TwinLandsFirst(TABLE), world.now))
    answer = racing.deliver(event)
    assert answer_body(answer)["result"] == "duplicate"
    assert [f["attempts"] for f in world.failures()] == [1]


# -- invoice status --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("invoice.finalized", "open"),
        ("invoice.paid", "paid"),
        ("invoice.voided", "void"),
        ("invoice.marked_uncollectible", "uncollectible"),
        ("invoice.payment_failed", "open"),
    ],
)
def test_each_invoice_event_sets_its_status(world: World, event_type: str, status: str) -> None:
    assert world.deliver(stripe_event(event_type, world.invoice))["statusCode"] == 200
    assert world.invoice_status() == status


def test_status_only_moves_forward_whatever_the_delivery_order(world: World) -> None:
    world.deliver(stripe_event("invoice.marked_uncollectible", world.invoice))
    world.deliver(stripe_event("invoice.paid", world.invoice))
    late = world.deliver(stripe_event("invoice.finalized", world.invoice))

    assert late["statusCode"] == 200
    assert world.invoice_status() == "paid"
    assert len(world.items("WEBHOOK#")) == 3  # the stale event is recorded as seen all the same


def test_other_event_types_and_foreign_invoices_are_ignored_with_200(world: World) -> None:
    customer_event = stripe_event("customer.created", {"id": "cus_1", "object": "customer"})
    foreign = stripe_event("invoice.paid", {**world.invoice, "metadata": {}})
    unknown = stripe_event("invoice.paid", {**world.invoice, "metadata": {"tollgate_customer_id": "ghost"}})

    for event in (customer_event, foreign, unknown):
        answer = world.deliver(event)
        assert answer["statusCode"] == 200
        assert answer_body(answer)["result"] == "ignored"
    assert world.invoice_status() == "open"
    assert world.items("WEBHOOK#") == []


def test_an_invoice_that_is_not_the_closes_own_leaves_the_close_alone(world: World) -> None:
    stray = {**world.invoice, "id": "in_someother"}
    assert world.deliver(stripe_event("invoice.voided", stray))["statusCode"] == 200
    assert world.invoice_status() == "open"


def test_an_event_the_close_has_not_caught_up_with_is_deferred(world: World) -> None:
    """The close finalized the invoice in Stripe but has not recorded it yet: applying now could be lost."""
    world.store.table.update_item(
        Key=tk.close_key("acme", PERIOD),
        UpdateExpression="SET #s = :s REMOVE invoice_status",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "invoice_created"},
    )
    event = stripe_event("invoice.paid", world.invoice)

    deferred = world.deliver(event)
    assert deferred["statusCode"] == 503
    assert world.items("WEBHOOK#") == []

    world.store.table.update_item(
        Key=tk.close_key("acme", PERIOD),
        UpdateExpression="SET #s = :s, invoice_status = :o",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": "finalized", ":o": "open"},
    )
    assert world.deliver(event)["statusCode"] == 200  # Stripe's redelivery
    assert world.invoice_status() == "paid"
