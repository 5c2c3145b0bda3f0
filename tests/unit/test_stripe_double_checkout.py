"""Checkout Sessions (payment mode) in the Stripe double, driven through the real stripe-python client."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tollgate_local.stripe_double import OPERATIONS, StripeDouble
from tollgate_local.stripe_double_state import EMULATED_API_VERSION

DAY = 86_400
METADATA = {
    "tollgate_purchase": "prepaid_credits",
    "tollgate_customer_id": "acme",
    "tollgate_credits": "50000",
}


@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return double.client()


@pytest.fixture
def customer(client: stripe.StripeClient) -> str:
    return client.v1.customers.create(params={"name": "Acme Corp", "email": "billing@acme.test"}).id


def credits_line(unit: str = "0.2", quantity: int = 50_000, currency: str = "usd") -> dict[str, Any]:
    return {
        "quantity": quantity,
        "price_data": {
            "currency": currency,
            "unit_amount_decimal": Decimal(unit),
            "product_data": {"name": "50,000 API credits"},
        },
    }


def whole_cents_line(unit_amount: int, quantity: int) -> dict[str, Any]:
    line = credits_line(quantity=quantity)
    del line["price_data"]["unit_amount_decimal"]
    line["price_data"]["unit_amount"] = unit_amount
    return line


def session_params(customer: str, /, **overrides: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "mode": "payment",
        "customer": customer,
        "line_items": [credits_line()],
        "metadata": METADATA,
        "success_url": "https://api.example.test/billing/credits",
        "payment_intent_data": {"setup_future_usage": "off_session", "metadata": {"purchase": "p-1"}},
    }
    params.update(overrides)
    return params


def create(client: stripe.StripeClient, customer: str, /, **overrides: Any) -> stripe.checkout.Session:
    return client.v1.checkout.sessions.create(params=session_params(customer, **overrides))  # type: ignore[arg-type]


def page(url: str) -> tuple[int, str, str]:
    """GET a page of the double without credentials: (status, content type, body)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers["Content-Type"], error.read().decode()


# ----------------------------------------------------------------------------------------------- create


def test_a_session_sells_credits_at_a_fraction_of_a_cent(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)

    # 0.2 cent x 50,000 credits = 10,000 cents
    assert (session.amount_subtotal, session.amount_total, session.currency) == (10_000, 10_000, "usd")
    assert session.id.startswith("cs_test_")
    assert (session.object, session.mode, session.status, session.payment_status) == (
        "checkout.session",
        "payment",
        "open",
        "unpaid",
    )
    assert (session.customer, session.payment_intent, session.livemode) == (customer, None, False)
    assert session.metadata is not None
    assert session.metadata.to_dict() == METADATA
    assert session.success_url == "https://api.example.test/billing/credits"
    assert session.expires_at == session.created + DAY
    assert session.url == f"{double.base_url}/checkout/{session.id}"
    assert isinstance(session, stripe.checkout.Session)
    kept = double.checkout_sessions[session.id]
    assert kept["payment_intent_data"] == {
        "metadata": {"purchase": "p-1"},
        "setup_future_usage": "off_session",
    }
    assert kept["amount_total"] == 10_000


@pytest.mark.parametrize(
    ("lines", "currency", "total"),
    [
        ([credits_line("2.5", 1)], "usd", 3),  # half a cent rounds up
        ([credits_line("0.125", 4), credits_line("0.0001", 4_999)], "usd", 1),  # 0.5 -> 1, 0.4999 -> 0
        ([credits_line("0.3", 1_001, "jpy")], "jpy", 300),  # zero-decimal: 300.3 yen -> 300
        ([whole_cents_line(7, 3)], "usd", 21),
    ],
    ids=["half-up", "per line", "jpy", "unit_amount"],
)
def test_each_line_is_rounded_half_up_like_an_invoice_line(
    client: stripe.StripeClient, customer: str, lines: list[dict[str, Any]], currency: str, total: int
) -> None:
    session = create(client, customer, line_items=lines)
    assert (session.currency, session.amount_subtotal, session.amount_total) == (currency, total, total)


@pytest.mark.parametrize(
    ("overrides", "param", "message"),
    [
        (
            {
                "line_items": [
                    {**credits_line(), "price_data": {"currency": "usd", "unit_amount_decimals": "1"}}
                ]
            },
            "line_items[0][price_data][unit_amount_decimals]",
            "Received unknown parameter: line_items[0][price_data][unit_amount_decimals]",
        ),
        (
            {"line_items": [{"price": "price_123", "quantity": 1}]},
            "line_items[0][price]",
            "does not emulate prices by id",
        ),
        ({"mode": "subscription"}, "mode", "payment mode only"),
        ({"mode": "weekly"}, "mode", "must be one of payment, setup, or subscription"),
        ({"customer": "cus_nope"}, "customer", "No such customer: 'cus_nope'"),
        ({"line_items": []}, "line_items", "Missing required param: line_items"),
        (
            {"line_items": [credits_line(), credits_line(currency="eur")]},
            "line_items[1][price_data][currency]",
            "one currency",
        ),
        ({"line_items": [credits_line(quantity=0)]}, "line_items[0][quantity]", "at least 1"),
        ({"line_items": [credits_line(unit="0")]}, "line_items", "must be greater than 0"),
        ({"discounts": [{"coupon": "SPRING"}]}, "discounts", "does not emulate discounts"),
        (
            {"payment_intent_data": {"capture_method": "manual"}},
            "payment_intent_data[capture_method]",
            "emulate",
        ),
        (
            {"payment_intent_data": {"setup_future_usage": "always"}},
            "payment_intent_data[setup_future_usage]",
            "",
        ),
        ({"expires_at": int(time.time()) + 2 * DAY}, "expires_at", "24 hours"),
        ({"success_url": "not a url"}, "success_url", "Not a valid URL"),
        ({"metadata": {"k" * 41: "v"}}, f"metadata[{'k' * 41}]", "up to 40 characters"),
    ],
    ids=[
        "unknown parameter",
        "price id",
        "subscription mode",
        "unknown mode",
        "unknown customer",
        "no line items",
        "two currencies",
        "zero quantity",
        "nothing to pay",
        "discounts",
        "manual capture",
        "bad setup_future_usage",
        "expires after 24 hours",
        "success_url",
        "metadata key",
    ],
)
def test_a_refused_session_names_the_parameter_and_creates_nothing(
    client: stripe.StripeClient,
    double: StripeDouble,
    customer: str,
    overrides: dict[str, Any],
    param: str,
    message: str,
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create(client, customer, **overrides)

    assert (refused.value.http_status, refused.value.param) == (400, param)
    assert refused.value.error is not None
    assert refused.value.error.type == "invalid_request_error"
    assert message in str(refused.value.user_message)
    assert double.checkout_sessions == {}


def test_an_unknown_customer_is_resource_missing(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as refused:
        create(client, "cus_nope")
    assert refused.value.code == "resource_missing"


def test_customer_and_mode_are_required(client: stripe.StripeClient, customer: str) -> None:
    for missing in ("customer", "mode"):
        params = session_params(customer)
        del params[missing]
        with pytest.raises(stripe.InvalidRequestError) as refused:
            client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
        assert refused.value.param == missing


def test_expires_at_is_kept_within_thirty_minutes_to_a_day(
    client: stripe.StripeClient, customer: str
) -> None:
    now = int(time.time())
    session = create(client, customer, expires_at=now + 3_600)
    assert session.expires_at == now + 3_600
    with pytest.raises(stripe.InvalidRequestError) as soon:
        create(client, customer, expires_at=now + 600)
    assert soon.value.param == "expires_at"


def test_idempotent_replay_answers_the_same_session_once(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    params = session_params(customer)
    options: Any = {"idempotency_key": "tollgate-credits-acme-p-1"}
    first = client.v1.checkout.sessions.create(params=params, options=options)  # type: ignore[arg-type]
    again = client.v1.checkout.sessions.create(params=params, options=options)  # type: ignore[arg-type]

    assert again.id == first.id
    assert again.url == first.url
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert list(double.checkout_sessions) == [first.id]
    keys = [call.idempotency_key for call in double.calls_to("checkout.sessions.create")]
    assert keys == ["tollgate-credits-acme-p-1"] * 2
    other = session_params(customer, line_items=[credits_line(quantity=1)])
    with pytest.raises(stripe.IdempotencyError):
        client.v1.checkout.sessions.create(params=other, options=options)  # type: ignore[arg-type]
    assert len(double.checkout_sessions) == 1


def test_the_operations_are_named_for_faults_and_calls(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    assert {
        "checkout.sessions.create",
        "checkout.sessions.retrieve",
        "checkout.sessions.expire",
    } <= OPERATIONS
    double.faults.fail_before_write("checkout.sessions.create", times=1)
    with pytest.raises(stripe.APIError):
        create(client, customer)
    assert double.checkout_sessions == {}
    assert create(client, customer).status == "open"


# ------------------------------------------------------------------------------------------ retrieve, expire


def test_retrieve_answers_the_session(client: stripe.StripeClient, customer: str) -> None:
    session = create(client, customer)

    found = client.v1.checkout.sessions.retrieve(session.id)

    assert found.to_dict() == session.to_dict()
    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["customer"]})
    assert isinstance(expanded.customer, stripe.Customer)
    assert expanded.customer.name == "Acme Corp"
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["line_items"]})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve("cs_test_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert "No such checkout.session: 'cs_test_nope'" in str(missing.value.user_message)


def test_expire_closes_an_open_session(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)

    expired = client.v1.checkout.sessions.expire(session.id)

    assert (expired.status, expired.payment_status, expired.url) == ("expired", "unpaid", None)
    assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.checkout.sessions.expire(session.id)
    assert "This Checkout Session has a status of `expired`" in str(again.value.user_message)
    with pytest.raises(ValueError, match="only an open one can be completed"):
        double.complete_checkout(session.id)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.checkout.sessions.expire("cs_test_nope")
    assert unknown.value.http_status == 404


def test_a_completed_session_cannot_be_expired(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)
    double.complete_checkout(session.id)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.checkout.sessions.expire(session.id)

    assert refused.value.http_status == 400
    assert 'Only Checkout Sessions with a status in ["open"] can be expired' in str(
        refused.value.user_message
    )
    assert client.v1.checkout.sessions.retrieve(session.id).status == "complete"


def test_an_open_session_past_expires_at_has_expired() -> None:
    now = [1_790_000_000.0]
    with StripeDouble(clock=lambda: now[0]) as double:
        client = double.client()
        customer = client.v1.customers.create(params={"name": "Acme"}).id
        session = create(client, customer, expires_at=int(now[0]) + 1_800)
        now[0] += 1_799
        assert client.v1.checkout.sessions.retrieve(session.id).status == "open"
        now[0] += 1
        assert client.v1.checkout.sessions.retrieve(session.id).status == "expired"
        assert double.checkout_sessions[session.id]["url"] is None
        with pytest.raises(ValueError, match="expired"):
            double.complete_checkout(session.id)


# ----------------------------------------------------------------------------------------------- completion


def test_complete_checkout_returns_the_completed_event(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)

    event = double.complete_checkout(session.id)

    assert event["id"].startswith("evt_")
    assert (event["object"], event["type"], event["livemode"]) == (
        "event",
        "checkout.session.completed",
        False,
    )
    assert event["api_version"] == EMULATED_API_VERSION == stripe.api_version
    assert isinstance(event["created"], int)
    assert event["created"] >= session.created
    assert (event["pending_webhooks"], event["request"]) == (1, {"id": None, "idempotency_key": None})
    completed = event["data"]["object"]
    assert (completed["id"], completed["status"], completed["payment_status"]) == (
        session.id,
        "complete",
        "paid",
    )
    assert completed["metadata"] == METADATA
    assert completed["amount_total"] == 10_000
    assert completed["payment_intent"].startswith("pi_")
    assert completed["url"] is None
    assert completed["customer_details"]["email"] == "billing@acme.test"
    retrieved = client.v1.checkout.sessions.retrieve(session.id)
    assert retrieved.to_dict() == completed  # the session as the API answers it now
    with pytest.raises(ValueError, match="is complete"):
        double.complete_checkout(session.id)


def test_the_event_is_one_stripe_python_accepts_from_a_webhook(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)
    payload = json.dumps(double.complete_checkout(session.id))
    secret, timestamp = "whsec_test", int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()

    event = stripe.Webhook.construct_event(payload, f"t={timestamp},v1={signature}", secret)

    assert event.type == "checkout.session.completed"
    received = event.data.object
    assert isinstance(received, stripe.checkout.Session)
    assert (received.id, received.payment_status) == (session.id, "paid")


def test_an_asynchronous_payment_completes_unpaid_then_succeeds(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)
    with pytest.raises(ValueError, match="only a complete session whose payment is pending"):
        double.async_payment_succeeded(session.id)

    pending = double.complete_checkout(session.id, paid=False)

    waiting = pending["data"]["object"]
    assert (pending["type"], waiting["status"], waiting["payment_status"]) == (
        "checkout.session.completed",
        "complete",
        "unpaid",
    )
    assert waiting["payment_intent"].startswith("pi_")
    assert client.v1.checkout.sessions.retrieve(session.id).payment_status == "unpaid"

    settled = double.async_payment_succeeded(session.id)

    paid = settled["data"]["object"]
    assert settled["type"] == "checkout.session.async_payment_succeeded"
    assert settled["id"] != pending["id"]
    assert (paid["status"], paid["payment_status"]) == ("complete", "paid")
    assert paid["payment_intent"] == waiting["payment_intent"]
    assert paid["metadata"] == METADATA
    assert double.checkout_sessions[session.id]["payment_status"] == "paid"
    with pytest.raises(ValueError, match="payment_status paid"):
        double.async_payment_succeeded(session.id)
    with pytest.raises(ValueError, match="no such Checkout Session"):
        double.async_payment_succeeded("cs_test_nope")
    with pytest.raises(ValueError, match="no such Checkout Session"):
        double.complete_checkout("cs_test_nope")


# ----------------------------------------------------------------------------------------------- page, reset


def test_the_session_page_shows_the_lines_and_total(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = create(client, customer)
    assert session.url is not None

    status, content_type, body = page(session.url)

    assert (status, content_type) == (200, "text/html; charset=utf-8")
    assert "50,000 API credits" in body
    assert "Total 100.00 USD" in body
    assert "Acme Corp" in body
    missing, _, _ = page(f"{double.base_url}/checkout/cs_test_nope")
    assert missing == 404


def test_reset_forgets_sessions(client: stripe.StripeClient, double: StripeDouble, customer: str) -> None:
    session = create(client, customer)
    assert list(double.checkout_sessions) == [session.id]

    double.reset()

    assert double.checkout_sessions == {}
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.checkout.sessions.retrieve(session.id)
    assert missing.value.http_status == 404
    assert page(f"{double.base_url}/checkout/{session.id}")[0] == 404
