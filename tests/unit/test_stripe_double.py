"""The Stripe double, driven through the real stripe-python ``StripeClient`` (raw HTTP for headers)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from typing import Any

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st
from stripe._encode import _api_encode

from tollgate_local.stripe_double import OPERATIONS, ROUTES, StripeDouble
from tollgate_local.stripe_double_params import decode_form, listify, typeddict_fields


@pytest.fixture
def client(double: StripeDouble) -> stripe.StripeClient:
    return double.client()


def usage_line(unit: str, quantity: int, currency: str = "usd", **extra: Any) -> dict[str, Any]:
    return {
        "price_data": {
            "currency": currency,
            "product_data": {"name": "API calls"},
            "unit_amount_decimal": Decimal(unit),
        },
        "quantity_decimal": Decimal(quantity),
        **extra,
    }


def draft(client: stripe.StripeClient, **params: Any) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"name": "Acme Corp", "email": "billing@acme.test"})
    return client.v1.invoices.create(params={"customer": customer.id, **params})


def raw(double: StripeDouble, method: str, path: str, body: str = "", **headers: str) -> tuple[int, Any, Any]:
    """One request without stripe-python: (status, decoded JSON, response headers)."""
    data = body.encode() if method == "POST" else None
    request = urllib.request.Request(double.base_url + path, data=data, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read()), error.headers


# ----------------------------------------------------------------------------------------------- server


def test_binds_loopback_only_and_stops(double: StripeDouble) -> None:
    host, port = double.address
    assert host == "127.0.0.1"
    assert port > 0
    assert double.base_url == f"http://127.0.0.1:{port}"
    with pytest.raises(ValueError, match=r"only binds 127\.0\.0\.1"):
        StripeDouble(host="0.0.0.0")  # noqa: S104 - this is the refusal under test


def test_stop_releases_the_port() -> None:
    double = StripeDouble().start()
    url = double.base_url
    double.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url + "/v1/customers", timeout=2)  # noqa: S310


def test_main_serves_until_interrupted() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tollgate_local.stripe_double", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in banner
        url = banner.split("listening on ")[1].split()[0]
        auth = {"Authorization": "Bearer sk_test_x"}
        request = urllib.request.Request(url + "/v1/customers", headers=auth)  # noqa: S310 - http://127.0.0.1
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310 - http://127.0.0.1
            assert json.loads(response.read())["object"] == "list"
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0  # a busy machine can take seconds to shut down
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_requires_a_test_secret_key(double: StripeDouble) -> None:
    status, body, _ = raw(double, "GET", "/v1/customers")
    assert status == 401
    assert "did not provide an API key" in body["error"]["message"]
    status, _, _ = raw(double, "GET", "/v1/customers", Authorization="Bearer sk_live_123456789")
    assert status == 401
    with pytest.raises(stripe.AuthenticationError):
        double.client(api_key="rk_test_restricted").v1.customers.list()
    assert double.client(api_key="sk_test_anything").v1.customers.list().data == []


def test_unknown_endpoint_is_404_like_stripe(double: StripeDouble) -> None:
    status, body, _ = raw(double, "GET", "/v1/charges", Authorization="Bearer sk_test_x")
    assert status == 404
    assert body["error"]["message"].startswith("Unrecognized request URL (GET: /v1/charges)")


# ----------------------------------------------------------------------------------------------- money


def test_usage_line_amount_and_totals_are_exact(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client, currency="usd")
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": [usage_line("0.042", 1_234_567)]})

    # 0.042 cent x 1,234,567 = 51,851.814 cents -> 51,852
    line = invoice.lines.data[0]
    assert line.amount == 51_852
    assert line.quantity == 1_234_567
    assert line.pricing is not None
    assert line.pricing.unit_amount_decimal == Decimal("0.042")
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_remaining) == (51_852,) * 4
    assert double.invoices[invoice.id]["total"] == 51_852


@pytest.mark.parametrize(
    ("unit", "quantity", "expected"),
    [("0.5", 1, 1), ("2.5", 1, 3), ("0.125", 4, 1), ("0.0001", 4_999, 0), ("0.0001", 5_000, 1)],
)
def test_line_amounts_round_half_up(
    client: stripe.StripeClient, unit: str, quantity: int, expected: int
) -> None:
    invoice = draft(client)
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": [usage_line(unit, quantity)]})
    assert invoice.lines.data[0].amount == expected


def test_zero_decimal_currency_and_amount_lines(client: stripe.StripeClient) -> None:
    invoice = draft(client, currency="jpy")
    lines = [usage_line("0.3", 1_001, currency="jpy"), {"amount": 500, "description": "Base fee"}]
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": lines})

    assert invoice.currency == "jpy"
    assert [line.amount for line in invoice.lines.data] == [300, 500]  # 300.3 yen -> 300
    assert invoice.total == 800
    with pytest.raises(stripe.InvalidRequestError) as mismatch:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [usage_line("1", 1, currency="usd")]})
    assert mismatch.value.param == "lines[0][price_data][currency]"


def test_quantity_decimal_and_line_details(client: stripe.StripeClient) -> None:
    invoice = draft(client)
    line = usage_line(
        "12.5", 0, period={"start": 1_790_000_000, "end": 1_792_000_000}, metadata={"route": "GET"}
    )
    line["quantity_decimal"] = Decimal("2.25")
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": [line]})

    added = invoice.lines.data[0]
    assert added.amount == 28  # 28.125 -> 28
    assert added.quantity_decimal == Decimal("2.25")
    assert added.quantity is None
    assert (added.period.start, added.period.end) == (1_790_000_000, 1_792_000_000)
    assert added.metadata["route"] == "GET"
    assert added.id.startswith("il_")


def test_invoice_shows_ten_lines_and_lists_the_rest(client: stripe.StripeClient) -> None:
    invoice = draft(client)
    lines = [{"amount": 100 + i, "description": f"line {i}"} for i in range(12)]
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": lines})

    assert len(invoice.lines.data) == 10
    assert invoice.lines.has_more is True
    assert invoice.total == sum(100 + i for i in range(12))
    every = client.v1.invoices.line_items.list(invoice.id, params={"limit": 100})
    assert [line.amount for line in every.data] == [100 + i for i in range(12)]


# ----------------------------------------------------------------------------------------------- parameters


def test_unknown_parameter_is_rejected_by_name(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client)
    bad = usage_line("1", 1)
    bad["price_data"]["unit_amount_decimals"] = bad["price_data"].pop("unit_amount_decimal")
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [bad]})

    assert error.value.http_status == 400
    assert error.value.param == "lines[0][price_data][unit_amount_decimals]"
    assert "Received unknown parameter: lines[0][price_data][unit_amount_decimals]" in str(error.value)
    assert double.invoices[invoice.id]["lines"]["data"] == []


def test_request_options_are_not_parameters(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.customers.create(params={"name": "x", "idempotency_key": "k"})
    assert error.value.param == "idempotency_key"


def test_missing_required_parameters(client: stripe.StripeClient) -> None:
    invoice = draft(client)
    with pytest.raises(stripe.InvalidRequestError) as top:
        client.v1.invoices.add_lines(invoice.id, params={})
    assert (top.value.param, "Missing required param: lines." in str(top.value)) == ("lines", True)

    nested = usage_line("1", 1)
    del nested["price_data"]["currency"]
    with pytest.raises(stripe.InvalidRequestError) as inner:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [nested]})
    assert inner.value.param == "lines[0][price_data][currency]"


def test_values_outside_a_literal_are_rejected(client: stripe.StripeClient, double: StripeDouble) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    with pytest.raises(stripe.InvalidRequestError) as enum:
        client.v1.invoices.create(params={"customer": customer.id, "collection_method": "weekly"})
    assert enum.value.param == "collection_method"
    assert "must be one of charge_automatically or send_invoice" in str(enum.value)

    with pytest.raises(stripe.InvalidRequestError) as pure:
        client.v1.invoices.create(
            params={"customer": customer.id, "from_invoice": {"action": "copy", "invoice": "in_1"}}
        )
    assert pure.value.param == "from_invoice[action]"
    assert double.invoices == {}


def test_malformed_scalars_are_rejected(client: stripe.StripeClient) -> None:
    invoice = draft(client)
    with pytest.raises(stripe.InvalidRequestError) as integer:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": "12.5"}]})
    assert (integer.value.param, "Invalid integer: 12.5" in str(integer.value)) == ("lines[0][amount]", True)
    with pytest.raises(stripe.InvalidRequestError) as exponent:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [usage_line("5E+2", 1)]})
    assert "Invalid decimal: 5E+2" in str(exponent.value)
    with pytest.raises(stripe.InvalidRequestError) as boolean:
        client.v1.invoices.finalize_invoice(invoice.id, params={"auto_advance": "yes"})
    assert boolean.value.param == "auto_advance"


def test_every_route_schema_resolves_without_request_options() -> None:
    assert {route.operation for route in ROUTES} == OPERATIONS
    for route in ROUTES:
        fields = typeddict_fields(route.schema)
        assert "expand" in fields or route.method == "DELETE"  # Stripe's deletes take no parameters
        assert not {"idempotency_key", "api_key", "stripe_account"} & set(fields)
    assert typeddict_fields(stripe.params.InvoiceAddLinesParams)["lines"][1] is True
    assert typeddict_fields(stripe.params.InvoiceSearchParams)["query"][1] is True


_names = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
_values = st.text(alphabet="abcXYZ0123 .-", max_size=8)
_params = st.recursive(
    _values,
    lambda inner: (
        st.dictionaries(_names, inner, min_size=1, max_size=3) | st.lists(inner, min_size=1, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_names, _params, max_size=4))
def test_decode_form_inverts_stripe_python_encoding(params: dict[str, Any]) -> None:
    assert listify(decode_form(_api_encode(params))) == params


# ----------------------------------------------------------------------------------------------- idempotency


def test_idempotent_replay_applies_once(client: stripe.StripeClient, double: StripeDouble) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    params: dict[str, Any] = {"customer": customer.id, "metadata": {"period": "2026-10"}}
    first = client.v1.invoices.create(params=params, options={"idempotency_key": "create-acme-2026-10"})
    again = client.v1.invoices.create(params=params, options={"idempotency_key": "create-acme-2026-10"})

    assert again.id == first.id
    assert again.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert len(double.invoices) == 1
    keys = [call.idempotency_key for call in double.calls_to("invoices.create")]
    assert keys == ["create-acme-2026-10", "create-acme-2026-10"]

    lines = {"lines": [{"amount": 700}]}
    client.v1.invoices.add_lines(first.id, params=lines, options={"idempotency_key": "lines-1"})
    replayed = client.v1.invoices.add_lines(first.id, params=lines, options={"idempotency_key": "lines-1"})
    assert replayed.total == 700
    assert double.invoices[first.id]["total"] == 700


def test_same_key_with_other_parameters_is_an_idempotency_error(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    client.v1.invoices.create(params={"customer": customer.id}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as error:
        client.v1.invoices.create(
            params={"customer": customer.id, "description": "other"}, options={"idempotency_key": "k"}
        )
    assert error.value.http_status == 400
    assert error.value.error is not None
    assert error.value.error.type == "idempotency_error"
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create(params={"name": "Acme"}, options={"idempotency_key": "k"})
    assert len(double.invoices) == 1


def test_rejected_parameters_do_not_consume_the_key(
    client: stripe.StripeClient, double: StripeDouble
) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.create(
            params={"customer": customer.id, "colour": "red"}, options={"idempotency_key": "k"}
        )
    invoice = client.v1.invoices.create(params={"customer": customer.id}, options={"idempotency_key": "k"})
    assert invoice.status == "draft"


def test_business_errors_are_replayed(client: stripe.StripeClient, double: StripeDouble) -> None:
    with pytest.raises(stripe.InvalidRequestError) as first:
        client.v1.invoices.create(params={"customer": "cus_missing"}, options={"idempotency_key": "k"})
    assert (first.value.code, first.value.param) == ("resource_missing", "customer")
    status, body, headers = raw(
        double,
        "POST",
        "/v1/invoices",
        "customer=cus_missing",
        **{"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k"},
    )
    assert (status, body["error"]["code"]) == (400, "resource_missing")
    assert headers["Idempotent-Replayed"] == "true"


# ----------------------------------------------------------------------------------------------- invoices


def test_draft_defaults(client: stripe.StripeClient) -> None:
    invoice = draft(client, metadata={"tenant": "acme"})
    assert invoice.id.startswith("in_")
    assert isinstance(invoice.customer, str)
    assert invoice.customer.startswith("cus_")
    assert (invoice.status, invoice.auto_advance, invoice.hosted_invoice_url) == ("draft", False, None)
    assert invoice.collection_method == "charge_automatically"
    assert invoice.metadata is not None
    assert invoice.metadata["tenant"] == "acme"
    assert invoice.number is None


def test_unknown_customer_and_invoice(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as customer:
        client.v1.invoices.create(params={"customer": "cus_nope"})
    assert (customer.value.code, customer.value.param) == ("resource_missing", "customer")
    with pytest.raises(stripe.InvalidRequestError) as invoice:
        client.v1.invoices.retrieve("in_nope")
    assert (invoice.value.http_status, invoice.value.code) == (404, "resource_missing")


def test_send_invoice_needs_days_until_due(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as error:
        draft(client, collection_method="send_invoice")
    assert error.value.param == "days_until_due"
    invoice = draft(client, collection_method="send_invoice", days_until_due=30)
    invoice = client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 100}]})
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status_transitions.finalized_at is not None
    assert finalized.due_date == finalized.status_transitions.finalized_at + 30 * 86_400


def test_finalize_opens_the_invoice(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client)
    client.v1.invoices.add_lines(invoice.id, params={"lines": [usage_line("0.042", 1_234_567)]})
    finalized = client.v1.invoices.finalize_invoice(invoice.id)

    assert finalized.status == "open"
    assert finalized.hosted_invoice_url == f"{double.base_url}/hosted/{invoice.id}"
    assert finalized.number is not None
    assert finalized.number.endswith("-0001")
    assert finalized.status_transitions.finalized_at is not None
    with urllib.request.urlopen(finalized.hosted_invoice_url, timeout=5) as page:  # noqa: S310
        html = page.read().decode()
    assert finalized.number in html
    assert "518.52 USD" in html

    with pytest.raises(stripe.InvalidRequestError) as again:
        client.v1.invoices.finalize_invoice(invoice.id)
    assert "re-finalize" in str(again.value)
    with pytest.raises(stripe.InvalidRequestError) as edit:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1}]})
    assert edit.value.code == "invoice_not_editable"
    assert double.invoices[invoice.id]["total"] == 51_852


def test_zero_total_invoice_is_paid_on_finalize(client: stripe.StripeClient) -> None:
    invoice = draft(client)
    assert client.v1.invoices.finalize_invoice(invoice.id).status == "paid"


def test_status_transitions(client: stripe.StripeClient) -> None:
    paid = draft(client)
    client.v1.invoices.add_lines(paid.id, params={"lines": [{"amount": 999}]})
    client.v1.invoices.finalize_invoice(paid.id)
    paid = client.v1.invoices.pay(paid.id)
    assert (paid.status, paid.amount_paid, paid.amount_remaining) == ("paid", 999, 0)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.void_invoice(paid.id)

    bad_debt = draft(client)
    client.v1.invoices.add_lines(bad_debt.id, params={"lines": [{"amount": 5}]})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.mark_uncollectible(bad_debt.id)
    client.v1.invoices.finalize_invoice(bad_debt.id)
    assert client.v1.invoices.mark_uncollectible(bad_debt.id).status == "uncollectible"
    voided = client.v1.invoices.void_invoice(bad_debt.id)
    assert voided.status == "void"
    assert voided.status_transitions.voided_at is not None


def test_expand_customer(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client)
    expanded = client.v1.invoices.retrieve(invoice.id, params={"expand": ["customer"]})
    assert isinstance(expanded.customer, stripe.Customer)
    assert expanded.customer.name == "Acme Corp"
    with pytest.raises(stripe.InvalidRequestError, match="cannot be expanded"):
        client.v1.invoices.retrieve(invoice.id, params={"expand": ["subscription"]})
    status, body, _ = raw(
        double, "GET", f"/v1/invoices/{invoice.id}?expand[]=customer", Authorization="Bearer sk_test_x"
    )
    assert (status, body["customer"]["object"]) == (200, "customer")


def test_list_filters_and_pages(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    ids = [client.v1.invoices.create(params={"customer": customer.id}).id for _ in range(3)]
    other = draft(client)
    client.v1.invoices.finalize_invoice(ids[0])

    first = client.v1.invoices.list(params={"customer": customer.id, "limit": 2})
    assert [invoice.id for invoice in first.data] == [ids[2], ids[1]]  # newest first
    assert first.has_more is True
    rest = client.v1.invoices.list(params={"customer": customer.id, "limit": 2, "starting_after": ids[1]})
    assert ([invoice.id for invoice in rest.data], rest.has_more) == ([ids[0]], False)
    drafts = client.v1.invoices.list(params={"status": "draft"})
    assert {invoice.id for invoice in drafts.data} == {ids[1], ids[2], other.id}
    every = [invoice.id for invoice in client.v1.invoices.list(params={"limit": 1}).auto_paging_iter()]
    assert sorted(every) == sorted([*ids, other.id])
    customers = client.v1.customers.list(params={"email": "billing@acme.test"})
    assert [c.id for c in customers.data] == [other.customer]


# ----------------------------------------------------------------------------------------------- search


def test_search_by_metadata(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    october = client.v1.invoices.create(
        params={"customer": customer.id, "metadata": {"tenant": "acme", "period": "2026-10"}}
    )
    client.v1.invoices.create(
        params={"customer": customer.id, "metadata": {"tenant": "acme", "period": "2026-09"}}
    )
    draft(client, metadata={"tenant": "globex", "period": "2026-10"})

    query = f"metadata['tenant']:'acme' AND metadata['period']:'2026-10' AND customer:'{customer.id}'"
    found = client.v1.invoices.search(params={"query": query})
    assert found.object == "search_result"
    assert [invoice.id for invoice in found.data] == [october.id]
    either = client.v1.invoices.search(params={"query": "metadata['period']:'2026-10' OR number:'x'"})
    assert len(either.data) == 2
    negated = client.v1.invoices.search(params={"query": "-metadata['tenant']:'acme'"})
    assert [invoice.metadata["tenant"] for invoice in negated.data if invoice.metadata] == ["globex"]


def test_search_pages_through_results(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    ids = {client.v1.invoices.create(params={"customer": customer.id}).id for _ in range(5)}
    first = client.v1.invoices.search(params={"query": f"customer:'{customer.id}'", "limit": 2})
    assert (len(first.data), first.has_more) == (2, True)
    assert {invoice.id for invoice in first.auto_paging_iter()} == ids


def test_search_rejects_unsupported_queries(client: stripe.StripeClient) -> None:
    for query in ("colour:'red'", "status:'open' AND total>1 OR status:'paid'", "metadata['a']"):
        with pytest.raises(stripe.InvalidRequestError) as error:
            client.v1.invoices.search(params={"query": query})
        assert error.value.param == "query"


def test_search_lag_hides_new_invoices(double: StripeDouble, client: stripe.StripeClient) -> None:
    double.search_lag = 60
    draft(client, metadata={"tenant": "acme"})
    query = {"query": "metadata['tenant']:'acme'"}
    assert client.v1.invoices.search(params=query).data == []
    assert len(client.v1.invoices.list().data) == 1  # list is read-after-write consistent
    double.search_lag = 0
    assert len(client.v1.invoices.search(params=query).data) == 1


# ----------------------------------------------------------------------------------------------- faults


def test_fail_before_write_applies_nothing(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client)
    double.faults.fail_before_write("invoices.add_lines", times=1)
    lines = {"lines": [{"amount": 250}]}
    with pytest.raises(stripe.APIError) as error:
        client.v1.invoices.add_lines(invoice.id, params=lines, options={"idempotency_key": "add-1"})
    assert error.value.http_status == 500
    assert double.invoices[invoice.id]["total"] == 0

    retried = client.v1.invoices.add_lines(invoice.id, params=lines, options={"idempotency_key": "add-1"})
    assert retried.total == 250
    assert len(double.calls_to("invoices.add_lines")) == 2
    assert double.faults.pending == []


def test_lost_response_after_write_keeps_the_write(client: stripe.StripeClient, double: StripeDouble) -> None:
    customer = client.v1.customers.create(params={"name": "Acme"})
    double.faults.lose_response_after_write("invoices.create", times=1)
    params = {"customer": customer.id, "metadata": {"period": "2026-10"}}
    with pytest.raises(stripe.APIConnectionError):
        client.v1.invoices.create(params=params, options={"idempotency_key": "create-1"})
    (created,) = double.invoices
    assert double.invoices[created]["metadata"] == {"period": "2026-10"}

    recovered = client.v1.invoices.create(params=params, options={"idempotency_key": "create-1"})
    assert recovered.id == created
    assert len(double.invoices) == 1


def test_lost_response_is_recovered_by_stripe_python_retries(double: StripeDouble) -> None:
    retrying = double.client(max_network_retries=1)
    double.faults.lose_response_after_write("customers.create")
    customer = retrying.v1.customers.create(params={"name": "Acme"})

    assert list(double.customers) == [customer.id]
    keys = [call.idempotency_key for call in double.calls_to("customers.create")]
    assert len(keys) == 2
    assert keys[0] == keys[1]


def test_timeout_applies_nothing(double: StripeDouble) -> None:
    impatient = double.client(timeout=0.2)
    invoice = draft(double.client())  # only the faulted call is impatient
    double.faults.timeout("invoices.finalize", times=1, delay=0.8)
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.invoices.finalize_invoice(invoice.id)
    waited = time.monotonic() - started
    assert waited < 0.75  # the client gave up before the double answered
    time.sleep(0.85 - waited)  # let the held request run out
    assert double.invoices[invoice.id]["status"] == "draft"
    assert impatient.v1.invoices.finalize_invoice(invoice.id).status in ("open", "paid")


def test_faults_fire_the_given_number_of_times(client: stripe.StripeClient, double: StripeDouble) -> None:
    double.faults.fail_before_write("customers.list", times=2)
    assert double.faults.pending == [("fail_before_write", "customers.list", 2)]
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            client.v1.customers.list()
    assert client.v1.customers.list().data == []
    with pytest.raises(ValueError, match="unknown operation"):
        double.faults.timeout("invoices.finalise")


# ------------------------------------------------------------------------------------------- introspection


def test_calls_and_reset(client: stripe.StripeClient, double: StripeDouble) -> None:
    invoice = draft(client)
    client.v1.invoices.add_lines(invoice.id, params={"lines": [{"amount": 1}, {"amount": 2}]})
    operations = [call.operation for call in double.calls]
    assert operations == ["customers.create", "invoices.create", "invoices.add_lines"]
    operation, params, key = double.calls[-1]
    assert (operation, params) == ("invoices.add_lines", {"lines": [{"amount": "1"}, {"amount": "2"}]})
    assert key is not None  # stripe-python sends one on every POST

    double.reset()
    assert (double.calls, double.invoices, double.customers) == ([], {}, {})
    assert client.v1.customers.list().data == []


def test_an_integer_quantity_is_refused_as_the_pinned_api_version_deprecates_it(
    client: stripe.StripeClient,
) -> None:
    invoice = draft(client)
    line = usage_line("1", 3)
    del line["quantity_decimal"]
    line["quantity"] = 3

    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.invoices.add_lines(invoice.id, params={"lines": [line]})

    assert refused.value.param == "lines[0][quantity]"
    assert "send quantity_decimal" in str(refused.value.user_message)
    assert client.v1.invoices.retrieve(invoice.id).lines.data == []


def test_the_double_emulates_the_api_version_the_pinned_library_sends() -> None:
    from tollgate_local.stripe_double_state import EMULATED_API_VERSION

    assert stripe.api_version == EMULATED_API_VERSION  # a library upgrade must revisit the emulation
