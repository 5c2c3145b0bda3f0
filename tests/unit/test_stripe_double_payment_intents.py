"""Saved cards and off-session PaymentIntents in the Stripe double, driven through the real stripe-python
client as an automatic top-up uses them: list the customer's cards, charge the newest one off-session."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tollgate_local.stripe_double import OPERATIONS, StripeDouble
from tollgate_local.stripe_double_payment_intents import DECLINES
from tollgate_local.stripe_double_state import EMULATED_API_VERSION

METADATA = {"tollgate_purchase": "auto_top_up", "tollgate_customer_id": "acme", "tollgate_crossing": "10"}


@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return double.client()


@pytest.fixture
def customer(client: stripe.StripeClient) -> str:
    return client.v1.customers.create(params={"name": "Acme Corp", "email": "billing@acme.test"}).id


def top_up(customer: str, payment_method: str, /, **overrides: Any) -> dict[str, Any]:
    """What Tollgate sends to charge a saved card off-session."""
    params: dict[str, Any] = {
        "amount": 2000,
        "currency": "usd",
        "customer": customer,
        "payment_method": payment_method,
        "off_session": True,
        "confirm": True,
        "description": "2,000 API credits (Credits), automatic top-up",
        "metadata": METADATA,
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def charge(
    client: stripe.StripeClient, params: dict[str, Any], key: str | None = None
) -> stripe.PaymentIntent:
    options: Any = {} if key is None else {"idempotency_key": key}
    return client.v1.payment_intents.create(params=params, options=options)  # type: ignore[arg-type]


def saved_cards(client: stripe.StripeClient, customer: str, **params: Any) -> list[stripe.PaymentMethod]:
    return client.v1.customers.payment_methods.list(customer, params=params).data  # type: ignore[arg-type]


def checkout(client: stripe.StripeClient, customer: str, *, save: bool = True) -> stripe.checkout.Session:
    intent_data: dict[str, Any] = {"metadata": {"purchase": "p-1"}}
    if save:
        intent_data["setup_future_usage"] = "off_session"
    params: dict[str, Any] = {
        "mode": "payment",
        "customer": customer,
        "line_items": [
            {
                "quantity": 50_000,
                "price_data": {
                    "currency": "usd",
                    "unit_amount_decimal": Decimal("0.2"),
                    "product_data": {"name": "50,000 API credits"},
                },
            }
        ],
        "success_url": "https://api.example.test/billing/credits",
        "payment_intent_data": intent_data,
    }
    return client.v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]


def signed(event: dict[str, Any]) -> stripe.Event:
    """The event as a webhook endpoint would verify it with stripe-python."""
    payload = json.dumps(event)
    secret, timestamp = "whsec_test", int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return stripe.Webhook.construct_event(payload, f"t={timestamp},v1={signature}", secret)


# ----------------------------------------------------------------------------------------------- saved cards


def test_a_paid_checkout_that_sets_up_future_usage_saves_the_card(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = checkout(client, customer)
    assert saved_cards(client, customer) == []

    event = double.complete_checkout(session.id)

    (card,) = saved_cards(client, customer, type="card", limit=1)
    assert isinstance(card, stripe.PaymentMethod)
    assert card.id.startswith("pm_")
    assert (card.object, card.type, card.customer, card.livemode) == (
        "payment_method",
        "card",
        customer,
        False,
    )
    assert card.card is not None
    assert (card.card.brand, card.card.last4, card.card.funding) == ("visa", "4242", "credit")
    today = time.gmtime()
    assert (card.card.exp_year, card.card.exp_month) > (today.tm_year, today.tm_mon)
    assert card.allow_redisplay == "limited"
    intent_id = event["data"]["object"]["payment_intent"]
    intent = client.v1.payment_intents.retrieve(intent_id)
    assert (intent.status, intent.amount, intent.amount_received, intent.currency) == (
        "succeeded",
        10_000,
        10_000,
        "usd",
    )
    assert (intent.customer, intent.payment_method, intent.setup_future_usage) == (
        customer,
        card.id,
        "off_session",
    )
    assert intent.metadata is not None
    assert intent.metadata.to_dict() == {"purchase": "p-1"}
    assert double.payment_intents[intent_id]["payment_method"] == card.id
    expanded = client.v1.checkout.sessions.retrieve(session.id, params={"expand": ["payment_intent"]})
    assert isinstance(expanded.payment_intent, stripe.PaymentIntent)
    assert expanded.payment_intent.payment_method == card.id


def test_a_checkout_without_setup_future_usage_saves_nothing(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = checkout(client, customer, save=False)

    event = double.complete_checkout(session.id)

    assert saved_cards(client, customer) == []
    intent = double.payment_intents[event["data"]["object"]["payment_intent"]]
    assert (intent["status"], intent["setup_future_usage"]) == ("succeeded", None)
    used = intent["payment_method"]
    assert double.payment_methods[used]["customer"] is None
    with pytest.raises(stripe.InvalidRequestError) as refused:  # used once, never attached: not reusable
        charge(client, top_up(customer, used))
    assert (refused.value.http_status, refused.value.param) == (400, "payment_method")
    assert "It may not be used again" in str(refused.value.user_message)


def test_a_pending_checkout_payment_is_processing_until_it_succeeds(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    session = checkout(client, customer)
    intent_id = double.complete_checkout(session.id, paid=False)["data"]["object"]["payment_intent"]

    pending = client.v1.payment_intents.retrieve(intent_id)
    assert (pending.status, pending.amount_received, pending.payment_method) == ("processing", 0, None)
    assert double.payment_intent_event(intent_id)["type"] == "payment_intent.processing"

    double.async_payment_succeeded(session.id)

    settled = client.v1.payment_intents.retrieve(intent_id)
    assert (settled.status, settled.amount_received) == ("succeeded", 10_000)
    assert saved_cards(client, customer) == []  # the bank debit is not modelled as a card


def test_the_list_is_newest_first_paged_and_filtered(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    first, second, third = (double.attach_card(customer) for _ in range(3))
    other = client.v1.customers.create(params={"name": "Other"}).id
    double.attach_card(other)

    page = client.v1.customers.payment_methods.list(customer, params={"type": "card", "limit": 2})

    assert [card.id for card in page.data] == [third, second]
    assert (page["object"], page.has_more, page.url) == (
        "list",
        True,
        f"/v1/customers/{customer}/payment_methods",
    )
    rest = client.v1.customers.payment_methods.list(customer, params={"starting_after": second})
    assert ([card.id for card in rest.data], rest.has_more) == ([first], False)
    assert [card.id for card in saved_cards(client, customer)] == [third, second, first]
    assert saved_cards(client, customer, type="sepa_debit") == []  # every saved method is a card
    assert [card.id for card in saved_cards(client, customer, allow_redisplay="unspecified")] == [
        third,
        second,
        first,
    ]
    assert saved_cards(client, customer, allow_redisplay="always") == []
    found = client.v1.customers.payment_methods.retrieve(customer, first)
    assert (found.id, found.customer) == (first, customer)


def test_listing_cards_refuses_what_stripe_refuses(client: stripe.StripeClient, customer: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.customers.payment_methods.list("cus_nope", params={"type": "card"})
    assert (unknown.value.http_status, unknown.value.code) == (404, "resource_missing")
    assert "No such customer: 'cus_nope'" in str(unknown.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as kind:
        client.v1.customers.payment_methods.list(customer, params={"type": "cheque"})
    assert (kind.value.http_status, kind.value.param) == (400, "type")
    with pytest.raises(stripe.InvalidRequestError) as limit:
        client.v1.customers.payment_methods.list(customer, params={"limit": 101})
    assert limit.value.param == "limit"
    with pytest.raises(stripe.InvalidRequestError) as typo:
        client.v1.customers.payment_methods.list(customer, params={"types": "card"})  # type: ignore[arg-type]
    assert typo.value.param == "types"
    assert "Received unknown parameter: types. Did you mean type?" in str(typo.value.user_message)


def test_a_card_of_another_customer_cannot_be_retrieved_through_this_one(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    other = client.v1.customers.create(params={"name": "Other"}).id
    theirs = double.attach_card(other)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.payment_methods.retrieve(customer, theirs)
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")


def test_attach_card_checks_its_arguments(double: StripeDouble, customer: str) -> None:
    with pytest.raises(ValueError, match="no such customer"):
        double.attach_card("cus_nope")
    with pytest.raises(ValueError, match="unknown decline 'bounced'"):
        double.attach_card(customer, decline="bounced")
    assert double.payment_methods == {}
    declining = double.attach_card(customer, decline="insufficient_funds")
    assert double.payment_methods[declining]["card"]["last4"] == "9995"  # Stripe's test card for it


# ----------------------------------------------------------------------------------------------- charging


def test_an_off_session_charge_of_the_newest_saved_card_succeeds(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    double.attach_card(customer, decline="card_declined")
    newest = double.attach_card(customer)
    (card,) = saved_cards(client, customer, type="card", limit=1)
    assert card.id == newest

    intent = charge(client, top_up(customer, card.id, statement_descriptor_suffix="TOP-UP"), "top-up-acme-10")

    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.id.startswith("pi_")
    assert (intent.object, intent.status, intent.livemode) == ("payment_intent", "succeeded", False)
    assert (intent.amount, intent.amount_received, intent.currency) == (2000, 2000, "usd")
    assert (intent.customer, intent.payment_method) == (customer, card.id)
    assert intent.latest_charge is not None
    assert str(intent.latest_charge).startswith("ch_")
    assert intent.description == "2,000 API credits (Credits), automatic top-up"
    assert intent.statement_descriptor_suffix == "TOP-UP"
    assert intent.metadata is not None
    assert intent.metadata.to_dict() == METADATA
    assert intent.last_payment_error is None
    assert intent.client_secret is not None
    assert intent.client_secret.startswith(f"{intent.id}_secret_")
    assert isinstance(intent.created, int)
    body = double.payment_intents[intent.id]
    assert "off_session" not in body  # a request parameter, not a field
    assert "confirm" not in body
    assert body == intent.to_dict()
    assert client.v1.payment_intents.retrieve(intent.id).to_dict() == body


@pytest.mark.parametrize(
    ("decline", "code", "decline_code", "message"),
    [
        ("card_declined", "card_declined", "generic_decline", "Your card was declined."),
        ("insufficient_funds", "card_declined", "insufficient_funds", "Your card has insufficient funds."),
        (
            "authentication_required",
            "authentication_required",
            "authentication_required",
            "Your card was declined. This transaction requires authentication.",
        ),
        ("expired_card", "expired_card", "expired_card", "Your card has expired."),
    ],
)
def test_a_declining_card_fails_with_a_402_card_error_and_the_intent_is_kept(
    client: stripe.StripeClient,
    double: StripeDouble,
    customer: str,
    decline: str,
    code: str,
    decline_code: str,
    message: str,
) -> None:
    card = double.attach_card(customer, decline=decline)

    with pytest.raises(stripe.CardError) as declined:
        charge(client, top_up(customer, card))

    error = declined.value
    assert (error.http_status, error.code, error.user_message) == (402, code, message)
    assert error.error is not None
    assert (error.error.type, error.error.decline_code) == ("card_error", decline_code)
    assert error.error.doc_url == f"https://docs.stripe.com/error-codes/{code.replace('_', '-')}"
    failed = error.error.payment_intent
    assert isinstance(failed, stripe.PaymentIntent)
    assert (failed.status, failed.amount, failed.amount_received) == ("requires_payment_method", 2000, 0)
    assert failed.payment_method is None  # Stripe clears it; the failure keeps it
    assert isinstance(error.error.payment_method, stripe.PaymentMethod)
    assert error.error.payment_method.id == card
    assert error.error.charge == failed.latest_charge
    assert failed.last_payment_error is not None
    assert (failed.last_payment_error.code, failed.last_payment_error.decline_code) == (code, decline_code)
    assert failed.last_payment_error.payment_method is not None
    assert failed.last_payment_error.payment_method.id == card
    kept = client.v1.payment_intents.retrieve(failed.id)
    assert kept.to_dict() == failed.to_dict()
    assert list(double.payment_intents) == [failed.id]


def test_every_named_decline_is_a_402(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    for decline in DECLINES:
        with pytest.raises(stripe.CardError) as declined:
            charge(client, top_up(customer, double.attach_card(customer, decline=decline)))
        assert declined.value.http_status == 402
        assert declined.value.code == DECLINES[decline].code
    assert all(intent["status"] == "requires_payment_method" for intent in double.payment_intents.values())
    assert len(double.payment_intents) == len(DECLINES)


def test_without_confirm_the_intent_waits(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    card = double.attach_card(customer)

    waiting = charge(client, top_up(customer, card, off_session=None, confirm=None))
    empty = charge(client, {"amount": 500, "currency": "eur"})

    assert (waiting.status, waiting.payment_method, waiting.amount_received) == (
        "requires_confirmation",
        card,
        0,
    )
    assert waiting.latest_charge is None
    assert (empty.status, empty.customer, empty.payment_method) == ("requires_payment_method", None, None)
    unconfirmed = charge(client, top_up(customer, card, off_session=None, confirm=False))
    assert unconfirmed.status == "requires_confirmation"
    with pytest.raises(ValueError, match="never charged"):
        double.payment_intent_event(waiting.id)


@pytest.mark.parametrize(
    ("overrides", "param", "message"),
    [
        ({"amount": "20.00"}, "amount", "Invalid integer: 20.00"),
        ({"amount": "twenty"}, "amount", "Invalid integer: twenty"),
        ({"amount": 0}, "amount", "greater than or equal to 1"),
        ({"amount": 100_000_000}, "amount", "no more than"),
        ({"currency": "dollars"}, "currency", "Invalid currency: dollars"),
        ({"amount_to_charge": 2000}, "amount_to_charge", "Received unknown parameter: amount_to_charge"),
        ({"payment_method_types": ["card"]}, "payment_method_types", "Received unknown parameter"),
        ({"setup_future_usage": "off_session"}, "setup_future_usage", "does not emulate setup_future_usage"),
        ({"capture_method": "manual"}, "capture_method", "does not emulate capture_method"),
        ({"error_on_requires_action": True}, "error_on_requires_action", "does not emulate"),
        ({"capture_method": "later"}, "capture_method", "must be one of"),
        ({"off_session": "sometimes"}, "off_session", "must be one of one_off or recurring"),
        ({"confirm": "yes"}, "confirm", "Invalid boolean: yes"),
        ({"customer": "cus_nope"}, "customer", "No such customer: 'cus_nope'"),
        ({"payment_method": "pm_nope"}, "payment_method", "No such PaymentMethod: 'pm_nope'"),
        ({"confirm": None}, "off_session", "can only be used when `confirm=true`"),
        ({"off_session": None}, "confirm", "off-session only"),
        ({"off_session": False}, "confirm", "off-session only"),
        ({"payment_method": None}, "payment_method", "missing a payment method"),
        ({"customer": None}, "payment_method", "pass that Customer"),
        ({"metadata": {"k" * 41: "v"}}, f"metadata[{'k' * 41}]", "up to 40 characters"),
        ({"receipt_email": "not an email"}, "receipt_email", "Invalid email address"),
        ({"statement_descriptor_suffix": "X" * 23}, "statement_descriptor_suffix", "at most 22"),
        ({"expand": ["latest_charge"]}, "expand[0]", "cannot be expanded"),
    ],
    ids=[
        "amount as a decimal string",
        "amount as a word",
        "zero amount",
        "nine-digit amount",
        "currency",
        "unknown parameter",
        "payment_method_types (not in this API version)",
        "setup_future_usage",
        "manual capture",
        "error_on_requires_action",
        "capture_method outside the enum",
        "off_session outside the enum",
        "confirm not a boolean",
        "unknown customer",
        "unknown payment method",
        "off_session without confirm",
        "confirm on-session",
        "confirm with off_session false",
        "confirm without a payment method",
        "saved card without its customer",
        "metadata key",
        "receipt_email",
        "statement_descriptor_suffix",
        "expand latest_charge",
    ],
)
def test_a_refused_intent_names_the_parameter_and_creates_nothing(
    client: stripe.StripeClient,
    double: StripeDouble,
    customer: str,
    overrides: dict[str, Any],
    param: str,
    message: str,
) -> None:
    card = double.attach_card(customer)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        charge(client, top_up(customer, card, **overrides))

    assert (refused.value.http_status, refused.value.param) == (400, param)
    assert refused.value.error is not None
    assert refused.value.error.type == "invalid_request_error"
    assert message in str(refused.value.user_message)
    assert double.payment_intents == {}


def test_amount_and_currency_are_required(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    card = double.attach_card(customer)
    for missing in ("amount", "currency"):
        with pytest.raises(stripe.InvalidRequestError) as refused:
            charge(client, top_up(customer, card, **{missing: None}))
        assert refused.value.param == missing
        assert f"Missing required param: {missing}." in str(refused.value.user_message)
    assert double.payment_intents == {}


def test_a_card_of_another_customer_cannot_be_charged(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    other = client.v1.customers.create(params={"name": "Other"}).id
    theirs = double.attach_card(other)

    with pytest.raises(stripe.InvalidRequestError) as refused:
        charge(client, top_up(customer, theirs))

    assert (refused.value.http_status, refused.value.param) == (400, "payment_method")
    assert "belongs to another Customer" in str(refused.value.user_message)
    with pytest.raises(stripe.InvalidRequestError) as unconfirmed:  # refused before any confirmation too
        charge(client, top_up(customer, theirs, off_session=None, confirm=None))
    assert unconfirmed.value.param == "payment_method"
    assert double.payment_intents == {}


# ----------------------------------------------------------------------------------------------- idempotency


def test_the_same_key_and_parameters_replay_the_same_charge(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    params = top_up(customer, double.attach_card(customer))

    first = charge(client, params, "tollgate-auto-top-up-acme-10")
    again = charge(client, params, "tollgate-auto-top-up-acme-10")

    assert again.to_dict() == first.to_dict()
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert list(double.payment_intents) == [first.id]
    keys = [call.idempotency_key for call in double.calls_to("payment_intents.create")]
    assert keys == ["tollgate-auto-top-up-acme-10"] * 2
    later = charge(client, params, "tollgate-auto-top-up-acme-110")
    assert later.id != first.id
    assert len(double.payment_intents) == 2


def test_a_declined_charge_replays_the_same_402(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    params = top_up(customer, double.attach_card(customer, decline="insufficient_funds"))

    with pytest.raises(stripe.CardError) as first:
        charge(client, params, "tollgate-auto-top-up-acme-10")
    with pytest.raises(stripe.CardError) as again:
        charge(client, params, "tollgate-auto-top-up-acme-10")

    assert again.value.json_body == first.value.json_body
    assert again.value.headers is not None
    assert again.value.headers["Idempotent-Replayed"] == "true"
    assert len(double.payment_intents) == 1


def test_the_same_key_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    card = double.attach_card(customer)
    charge(client, top_up(customer, card), "tollgate-auto-top-up-acme-10")

    with pytest.raises(stripe.IdempotencyError) as refused:
        charge(client, top_up(customer, card, amount=3000), "tollgate-auto-top-up-acme-10")

    assert refused.value.http_status == 400
    assert refused.value.error is not None
    assert refused.value.error.type == "idempotency_error"
    assert "same parameters" in str(refused.value.user_message)
    assert len(double.payment_intents) == 1


def test_a_lost_answer_is_recovered_by_a_retry_with_the_same_key(double: StripeDouble, customer: str) -> None:
    client = double.client(max_network_retries=2)  # stripe-python retries with the same Idempotency-Key
    params = top_up(customer, double.attach_card(customer))
    double.faults.lose_response_after_write("payment_intents.create")

    intent = charge(client, params, "tollgate-auto-top-up-acme-10")

    assert intent.status == "succeeded"
    assert list(double.payment_intents) == [intent.id]
    assert len(double.calls_to("payment_intents.create")) == 2


# ----------------------------------------------------------------------------------------------- retrieve


def test_retrieve_answers_the_intent(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    card = double.attach_card(customer)
    intent = charge(client, top_up(customer, card))

    expanded = client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["customer", "payment_method"]}
    )

    assert isinstance(expanded.customer, stripe.Customer)
    assert expanded.customer.name == "Acme Corp"
    assert isinstance(expanded.payment_method, stripe.PaymentMethod)
    assert expanded.payment_method.id == card
    assert client.v1.payment_intents.retrieve(
        intent.id, params={"client_secret": str(intent.client_secret)}
    ).id == (intent.id)
    with pytest.raises(stripe.InvalidRequestError) as secret:
        client.v1.payment_intents.retrieve(intent.id, params={"client_secret": "pi_x_secret_y"})
    assert secret.value.param == "client_secret"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_nope")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    assert "No such payment_intent: 'pi_nope'" in str(missing.value.user_message)


# ----------------------------------------------------------------------------------------------- events


def test_a_succeeded_charge_has_its_event(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    intent = charge(client, top_up(customer, double.attach_card(customer)))

    event = double.payment_intent_event(intent.id)

    assert event["id"].startswith("evt_")
    assert (event["object"], event["type"], event["livemode"]) == ("event", "payment_intent.succeeded", False)
    assert event["api_version"] == EMULATED_API_VERSION
    assert (event["pending_webhooks"], event["request"]) == (1, {"id": None, "idempotency_key": None})
    assert event["data"]["object"] == double.payment_intents[intent.id]
    received = signed(event)
    assert received.type == "payment_intent.succeeded"
    assert isinstance(received.data.object, stripe.PaymentIntent)
    assert received.data.object.id == intent.id
    with pytest.raises(ValueError, match="no such PaymentIntent"):
        double.payment_intent_event("pi_nope")


def test_a_declined_charge_has_its_failed_event(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    with pytest.raises(stripe.CardError) as declined:
        charge(client, top_up(customer, double.attach_card(customer, decline="authentication_required")))
    assert declined.value.error is not None
    assert declined.value.error.payment_intent is not None
    intent_id = declined.value.error.payment_intent.id

    event = double.payment_intent_event(intent_id)

    assert event["type"] == "payment_intent.payment_failed"
    failed = event["data"]["object"]
    assert (failed["id"], failed["status"]) == (intent_id, "requires_payment_method")
    assert failed["last_payment_error"]["code"] == "authentication_required"
    assert signed(event).type == "payment_intent.payment_failed"


# ----------------------------------------------------------------------------------------------- operations


def test_the_operations_are_named_for_faults_and_calls(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    assert {
        "customers.payment_methods.list",
        "customers.payment_methods.retrieve",
        "payment_intents.create",
        "payment_intents.retrieve",
    } <= OPERATIONS
    params = top_up(customer, double.attach_card(customer))
    double.faults.fail_before_write("payment_intents.create", times=1)
    with pytest.raises(stripe.APIError):
        charge(client, params, "k")
    assert double.payment_intents == {}
    assert charge(client, params, "k").status == "succeeded"  # the failure did not consume the key


def test_reset_forgets_cards_and_intents(
    client: stripe.StripeClient, double: StripeDouble, customer: str
) -> None:
    intent = charge(client, top_up(customer, double.attach_card(customer)))

    double.reset()

    assert (double.payment_intents, double.payment_methods) == ({}, {})
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve(intent.id)
    assert missing.value.http_status == 404
