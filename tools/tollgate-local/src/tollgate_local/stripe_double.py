"""A stateful Stripe test double: an HTTP server on 127.0.0.1 that the real ``stripe`` library talks to.

Tollgate reaches Stripe only through ``stripe.StripeClient(api_key, base_addresses={"api": url}, ...)``.
Offline, tests and the local demo point ``url`` at this double, so the exact requests production sends (form
bodies, ``Idempotency-Key``, ``Authorization: Bearer sk_test_...``) hit something that answers like Stripe::

    from tollgate_local.stripe_double import StripeDouble

    with StripeDouble() as double:                 # serves on 127.0.0.1:<free port>, stops on exit
        client = double.client()                   # a StripeClient pointed at double.base_url, no retries
        customer = client.v1.customers.create(params={"name": "Acme"})
        double.faults.lose_response_after_write("invoices.create")
        double.calls, double.invoices, double.customers, double.reset()

    double = StripeDouble(port=12111).start()      # long-running (the demo); double.stop() when done
    # or: python -m tollgate_local.stripe_double --port 12111

Emulated (API version 2026-10-28.endive, as stripe-python 16.x sends it):

* Endpoints under ``/v1``: customers create / retrieve / update / list, a customer's tax ids create /
  list / delete; coupons create / retrieve / delete; invoices create / retrieve / update / list / search /
  add_lines / list lines / finalize / pay / void / mark_uncollectible; Checkout Sessions (payment mode)
  create / retrieve / expire; a customer's payment methods list / retrieve; PaymentIntents create
  (confirmed off-session, or unconfirmed) / retrieve. Operation names, used by ``double.faults`` and
  ``double.calls``, are listed in :data:`OPERATIONS`.
* Parameters are checked against stripe-python's generated TypedDicts (``stripe.params.InvoiceCreateParams``
  and so on, see :data:`ROUTES`): unknown or missing-required parameters, values outside an enum and malformed
  numbers get Stripe's 400 ``invalid_request_error`` naming the parameter (``stripe_double_params``).
* Idempotency: a POST with an ``Idempotency-Key`` that was seen before replays the first answer (same status
  and body, header ``Idempotent-Replayed: true``) without applying anything; the same key with other
  parameters, or on another endpoint, is a 400 ``idempotency_error``. Requests that fail parameter checking
  are not stored, as on Stripe. Keys never expire here (Stripe keeps them at least 24 hours).
* Authentication: ``Authorization: Bearer sk_test_...`` (or HTTP basic with the key as user); anything else
  is a 401. Live keys are refused: this is a test-mode account.
* Business rules, ids, object shapes and money (``Decimal``, ``ROUND_HALF_UP`` per line):
  ``stripe_double_state``; coupons and discounts: ``stripe_double_discounts``; Stripe Tax at a fixed rate per
  country: ``stripe_double_tax``; Checkout Sessions: ``stripe_double_checkout``; saved cards and
  PaymentIntents, declines (402 ``card_error``) included: ``stripe_double_payment_intents``. Search query
  language: ``stripe_double_search``. Faults: ``stripe_double_faults``.
* ``hosted_invoice_url`` points back at this server (``/hosted/in_...``), which serves a plain HTML page: the
  lines, the subtotal, each discount, the tax and the total. So does an open Checkout Session's ``url``
  (``/checkout/cs_test_...``): its lines and total, with nothing to pay.
* Checkout's customer is a test's Python call: ``double.complete_checkout(session_id)`` (``paid=False``:
  the payment is still pending) and ``double.async_payment_succeeded(session_id)`` move the session on and
  return the event Stripe would send (``checkout.session.completed``,
  ``checkout.session.async_payment_succeeded``) with ``double.checkout_sessions`` showing the result.
* Saved cards: a paid session with ``payment_intent_data[setup_future_usage]`` saves a card to its customer;
  ``double.attach_card(customer_id, decline=None)`` saves one directly (``decline="insufficient_funds"``,
  ``"authentication_required"``, ...: every off-session charge on it is declined with a 402). Charged with
  ``POST /v1/payment_intents`` (``confirm=true``, ``off_session=true``); ``double.payment_intents`` shows the
  intents, ``double.payment_methods`` the cards, and ``double.payment_intent_event(pi_id)`` returns the
  ``payment_intent.succeeded`` / ``payment_intent.payment_failed`` event Stripe would send.

Not emulated: every other endpoint (answered 404 ``Unrecognized request URL``, as Stripe does), Connect
(``Stripe-Account``), API-version differences, rate limits, webhook delivery and the events API (the
Checkout helpers and ``payment_intent_event`` return their events for a test or the demo to sign and post
itself; nothing else makes events), on-session payments, and concurrent requests with one idempotency key
(requests are applied one at a time, so Stripe's 409 for that case never happens). Search sees new invoices
at once unless ``search_lag`` is set.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import html
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import requests
import stripe
from stripe.params import (
    CouponCreateParams,
    CouponDeleteParams,
    CouponRetrieveParams,
    CustomerCreateParams,
    CustomerListParams,
    CustomerPaymentMethodListParams,
    CustomerPaymentMethodRetrieveParams,
    CustomerRetrieveParams,
    CustomerTaxIdCreateParams,
    CustomerTaxIdDeleteParams,
    CustomerTaxIdListParams,
    CustomerUpdateParams,
    InvoiceAddLinesParams,
    InvoiceCreateParams,
    InvoiceFinalizeInvoiceParams,
    InvoiceListLinesParams,
    InvoiceListParams,
    InvoiceMarkUncollectibleParams,
    InvoicePayParams,
    InvoiceRetrieveParams,
    InvoiceSearchParams,
    InvoiceUpdateParams,
    InvoiceVoidInvoiceParams,
    PaymentIntentCreateParams,
    PaymentIntentRetrieveParams,
)
from stripe.params.checkout import SessionCreateParams, SessionExpireParams, SessionRetrieveParams

from tollgate_local.stripe_double_checkout import CheckoutSession
from tollgate_local.stripe_double_errors import StripeApiError, invalid_request
from tollgate_local.stripe_double_faults import Fault, Faults
from tollgate_local.stripe_double_params import Tree, check_params, decode_form, listify
from tollgate_local.stripe_double_state import Invoice, StripeState, new_id

__all__ = ["OPERATIONS", "ROUTES", "Call", "Route", "StripeDouble", "main"]

LOG = logging.getLogger(__name__)
HOST = "127.0.0.1"
DEFAULT_PORT = 12111
TEST_KEY = "sk_test_double"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Stripe's currency rules, stated here again on purpose: the double models Stripe independently of the code
# it tests (tollgate.domain.money), so a mistake there shows up as a disagreement instead of being shared.
ZERO_DECIMAL = frozenset(
    (
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    )
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])

Action = Callable[[StripeState, str, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Route:
    """One emulated endpoint: ``method`` + ``path`` checked against ``schema``. ``{id}`` in the path is the
    object id; with ``{sub}`` too (a customer's tax id or payment method), the action gets
    ``"{id}/{sub}"``."""

    operation: str
    method: str
    path: str
    schema: type
    action: Action


ROUTES: tuple[Route, ...] = (
    Route(
        "customers.create",
        "POST",
        "/v1/customers",
        CustomerCreateParams,
        lambda s, _, p: s.create_customer(p),
    ),
    Route("customers.list", "GET", "/v1/customers", CustomerListParams, lambda s, _, p: s.list_customers(p)),
    Route(
        "customers.retrieve",
        "GET",
        "/v1/customers/{id}",
        CustomerRetrieveParams,
        StripeState.retrieve_customer,
    ),
    Route(
        "customers.update", "POST", "/v1/customers/{id}", CustomerUpdateParams, StripeState.update_customer
    ),
    Route(
        "customers.tax_ids.create",
        "POST",
        "/v1/customers/{id}/tax_ids",
        CustomerTaxIdCreateParams,
        StripeState.create_tax_id,
    ),
    Route(
        "customers.tax_ids.list",
        "GET",
        "/v1/customers/{id}/tax_ids",
        CustomerTaxIdListParams,
        StripeState.list_tax_ids,
    ),
    Route(
        "customers.tax_ids.delete",
        "DELETE",
        "/v1/customers/{id}/tax_ids/{sub}",
        CustomerTaxIdDeleteParams,
        StripeState.delete_tax_id,
    ),
    Route("coupons.create", "POST", "/v1/coupons", CouponCreateParams, lambda s, _, p: s.create_coupon(p)),
    Route("coupons.retrieve", "GET", "/v1/coupons/{id}", CouponRetrieveParams, StripeState.retrieve_coupon),
    Route("coupons.delete", "DELETE", "/v1/coupons/{id}", CouponDeleteParams, StripeState.delete_coupon),
    Route(
        "invoices.create", "POST", "/v1/invoices", InvoiceCreateParams, lambda s, _, p: s.create_invoice(p)
    ),
    Route("invoices.list", "GET", "/v1/invoices", InvoiceListParams, lambda s, _, p: s.list_invoices(p)),
    Route(
        "invoices.search",
        "GET",
        "/v1/invoices/search",
        InvoiceSearchParams,
        lambda s, _, p: s.search_invoices(p),
    ),
    Route(
        "invoices.retrieve", "GET", "/v1/invoices/{id}", InvoiceRetrieveParams, StripeState.retrieve_invoice
    ),
    Route("invoices.update", "POST", "/v1/invoices/{id}", InvoiceUpdateParams, StripeState.update_invoice),
    Route(
        "invoices.list_lines",
        "GET",
        "/v1/invoices/{id}/lines",
        InvoiceListLinesParams,
        StripeState.list_lines,
    ),
    Route(
        "invoices.add_lines",
        "POST",
        "/v1/invoices/{id}/add_lines",
        InvoiceAddLinesParams,
        StripeState.add_lines,
    ),
    Route(
        "invoices.finalize",
        "POST",
        "/v1/invoices/{id}/finalize",
        InvoiceFinalizeInvoiceParams,
        StripeState.finalize,
    ),
    Route("invoices.pay", "POST", "/v1/invoices/{id}/pay", InvoicePayParams, StripeState.pay),
    Route("invoices.void", "POST", "/v1/invoices/{id}/void", InvoiceVoidInvoiceParams, StripeState.void),
    Route(
        "invoices.mark_uncollectible",
        "POST",
        "/v1/invoices/{id}/mark_uncollectible",
        InvoiceMarkUncollectibleParams,
        StripeState.mark_uncollectible,
    ),
    Route(
        "checkout.sessions.create",
        "POST",
        "/v1/checkout/sessions",
        SessionCreateParams,
        lambda s, _, p: s.create_checkout_session(p),
    ),
    Route(
        "checkout.sessions.retrieve",
        "GET",
        "/v1/checkout/sessions/{id}",
        SessionRetrieveParams,
        StripeState.retrieve_checkout_session,
    ),
    Route(
        "checkout.sessions.expire",
        "POST",
        "/v1/checkout/sessions/{id}/expire",
        SessionExpireParams,
        StripeState.expire_checkout_session,
    ),
    Route(
        "customers.payment_methods.list",
        "GET",
        "/v1/customers/{id}/payment_methods",
        CustomerPaymentMethodListParams,
        StripeState.list_customer_payment_methods,
    ),
    Route(
        "customers.payment_methods.retrieve",
        "GET",
        "/v1/customers/{id}/payment_methods/{sub}",
        CustomerPaymentMethodRetrieveParams,
        StripeState.retrieve_customer_payment_method,
    ),
    Route(
        "payment_intents.create",
        "POST",
        "/v1/payment_intents",
        PaymentIntentCreateParams,
        lambda s, _, p: s.create_payment_intent(p),
    ),
    Route(
        "payment_intents.retrieve",
        "GET",
        "/v1/payment_intents/{id}",
        PaymentIntentRetrieveParams,
        StripeState.retrieve_payment_intent,
    ),
)
OPERATIONS: frozenset[str] = frozenset(route.operation for route in ROUTES)
_PATTERNS = tuple(
    (
        route,
        re.compile(
            "^" + route.path.replace("{id}", "(?P<id>[^/]+)").replace("{sub}", "(?P<sub>[^/]+)") + "$"
        ),
    )
    for route in ROUTES
)


class Call(NamedTuple):
    """One request the double received for an operation (replays and rejected requests included)."""

    operation: str
    params: Any
    """The decoded parameters as sent (strings; ``a[0]``-style keys shown as lists)."""
    idempotency_key: str | None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False
    """Close the connection without answering (lost response, timeout)."""


@dataclass(frozen=True)
class _Stored:
    """An answer kept under an idempotency key."""

    endpoint: str
    params: str
    status: int
    body: bytes
    request_id: str


def _json_response(status: int, payload: Mapping[str, Any], **headers: str) -> _Response:
    body = (json.dumps(payload, indent=2) + "\n").encode()
    return _Response(status, body, {"Content-Type": "application/json", **headers})


def _error_response(error: StripeApiError) -> _Response:
    return _json_response(error.status, error.body())


def _auth_error(authorization: str | None) -> StripeApiError | None:
    """None if the header carries a test secret key (Bearer, or Basic with the key as user)."""
    if not authorization:
        return StripeApiError(
            401,
            "You did not provide an API key. You need to provide your API key in the Authorization header, "
            "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        )
    scheme, _, credential = authorization.partition(" ")
    if scheme.lower() == "basic":
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            credential = base64.b64decode(credential).decode().partition(":")[0]
    if scheme.lower() in ("bearer", "basic") and credential.startswith("sk_test_") and len(credential) > 8:
        return None
    shown = credential[:8] + "*" * max(0, len(credential) - 12) + credential[-4:] if credential else "(empty)"
    return StripeApiError(401, f"Invalid API Key provided: {shown}")


def _route_for(method: str, path: str) -> tuple[Route, str] | None:
    for route, pattern in _PATTERNS:
        match = pattern.match(path)
        if route.method == method and match is not None:
            ids = match.groupdict()
            return route, "/".join(ids[name] for name in ("id", "sub") if name in ids)
    return None


def format_amount(amount: int, currency: str) -> str:
    """``123456, "usd"`` -> ``1,234.56 USD``; ``"jpy"`` has no minor unit, ``"kwd"`` has three digits."""
    places = 0 if currency in ZERO_DECIMAL else 3 if currency in THREE_DECIMAL else 2
    return f"{Decimal(amount).scaleb(-places):,.{places}f} {currency.upper()}"


def _hosted_page(invoice: Invoice) -> str:
    currency = invoice.currency
    money = invoice.amounts()
    rows = "".join(
        f"<tr><td>{html.escape(line.description or '')}</td><td>{line.quantity}</td>"
        f"<td>{format_amount(line.amount, currency)}</td></tr>"
        for line in invoice.lines
    )
    summary = [("Subtotal", format_amount(money.subtotal, currency))]
    for discount, amount in money.discounts.totals:
        coupon = discount.coupon
        what = coupon.describe(format_amount(coupon.amount_off or 0, currency))
        summary.append((f"{coupon.name or coupon.id} ({what})", "-" + format_amount(amount, currency)))
    rule = money.rule
    for behavior in ("exclusive", "inclusive"):
        tax = money.tax(behavior)
        if rule is not None and any(t.behavior == behavior for t in money.line_taxes.values()):
            included = " included" if behavior == "inclusive" else ""
            label = f"{rule.display_name} ({rule.country} {rule.percent}%{included}, {rule.reason})"
            summary.append((label, format_amount(tax, currency)))
    summary.append(("Total", format_amount(invoice.total, currency)))
    summary_rows = "".join(
        f"<tr><td colspan='2'>{html.escape(label)}</td><td>{html.escape(value)}</td></tr>"
        for label, value in summary
    )
    facts = invoice.tax_facts
    tax_ids = "".join(f" &middot; {html.escape(kind)} {html.escape(value)}" for kind, value in facts.tax_ids)
    title = html.escape(f"Invoice {invoice.number}")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>Billed to {html.escape(invoice.customer.name or invoice.customer.id)}{tax_ids}"
        f" &middot; status {html.escape(invoice.status)}</p>"
        f"<table><tr><th>Description</th><th>Quantity</th><th>Amount</th></tr>{rows}{summary_rows}</table>"
        f"<p><strong>Total {format_amount(invoice.total, currency)}</strong></p>"
        "<p><em>Served by the Tollgate Stripe double; no payment can be made here.</em></p></body></html>"
    )


def _checkout_page(session: CheckoutSession, customer_name: str) -> str:
    currency = session.currency
    rows = "".join(
        f"<tr><td>{html.escape(line.description)}</td><td>{line.quantity}</td>"
        f"<td>{format_amount(line.amount, currency)}</td></tr>"
        for line in session.lines
    )
    total = format_amount(session.amount_total, currency)
    title = "Checkout (Tollgate Stripe double)"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>Pay as {html.escape(customer_name)}"
        f" &middot; status {html.escape(session.status)}"
        f" &middot; payment {html.escape(session.payment_status)}</p>"
        f"<table><tr><th>Description</th><th>Quantity</th><th>Amount</th></tr>{rows}"
        f"<tr><td colspan='2'>Total</td><td>{total}</td></tr></table>"
        f"<p><strong>Total {total}</strong></p>"
        "<p><em>Served by the Tollgate Stripe double; no payment can be made here (a test completes the "
        "session with double.complete_checkout).</em></p></body></html>"
    )


class StripeDouble:
    """An in-memory Stripe account behind a local HTTP server (see the module docstring)."""

    def __init__(
        self,
        host: str = HOST,
        port: int = 0,
        *,
        clock: Callable[[], float] = time.time,
        search_lag: float = 0.0,
    ) -> None:
        if host not in (HOST, "localhost"):
            raise ValueError(f"the Stripe double only binds {HOST}, not {host!r}")
        self._port = port
        self._clock = clock
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._sessions: list[requests.Session] = []
        self._state = StripeState(clock, lambda: self.base_url, search_lag)
        self._calls: list[Call] = []
        self._idempotency: dict[str, _Stored] = {}
        self.faults = Faults(OPERATIONS, self._lock)

    # ------------------------------------------------------------------------------------- lifecycle

    def start(self) -> StripeDouble:
        """Bind 127.0.0.1 and serve from a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("the Stripe double is already running")
        self._stopping.clear()
        self._server = _Server((HOST, self._port), self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="stripe-double",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, release the port and close the HTTP sessions made by :meth:`client`."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for session in self._sessions:
            session.close()
        self._sessions.clear()

    def __enter__(self) -> StripeDouble:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server is bound to."""
        if self._server is None:
            raise RuntimeError(
                "the Stripe double is not running; call start() or use it as a context manager"
            )
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def client(
        self, *, api_key: str = TEST_KEY, max_network_retries: int = 0, timeout: float = 80.0
    ) -> stripe.StripeClient:
        """A ``StripeClient`` with every base address on this double (nothing can leak to api.stripe.com).

        Its HTTP session ignores proxy settings from the environment, and ``timeout`` (seconds) is the
        client's read timeout: set it below a ``faults.timeout`` delay to see a timeout.
        """
        session = requests.Session()
        session.trust_env = False
        self._sessions.append(session)
        url = self.base_url
        return stripe.StripeClient(
            api_key,
            base_addresses={"api": url, "connect": url, "files": url, "meter_events": url},
            max_network_retries=max_network_retries,
            http_client=stripe.RequestsClient(timeout=timeout, session=session),
        )

    # ------------------------------------------------------------------------------------- introspection

    @property
    def calls(self) -> list[Call]:
        """Every request routed to an operation, in arrival order (a copy)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, operation: str) -> list[Call]:
        return [call for call in self.calls if call.operation == operation]

    @property
    def invoices(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every invoice as Stripe JSON, all lines included, by id."""
        with self._lock:
            return {
                invoice.id: invoice.to_json(lines_shown=len(invoice.lines))
                for invoice in self._state.invoices.values()
            }

    @property
    def customers(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every customer as Stripe JSON (with ``tax`` and ``tax_ids``), by id."""
        with self._lock:
            return {
                customer.id: {
                    **customer.to_json(),
                    "tax": customer.tax_json(),
                    "tax_ids": [tax_id.to_json() for tax_id in customer.tax_ids],
                }
                for customer in self._state.customers.values()
            }

    @property
    def coupons(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every coupon as Stripe JSON, by id."""
        with self._lock:
            now = int(self._clock())
            return {coupon.id: coupon.to_json(now) for coupon in self._state.coupons.values()}

    @property
    def checkout_sessions(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every Checkout Session as Stripe JSON, by id, plus the ``payment_intent_data`` it was
        created with (``metadata``, ``setup_future_usage``: Stripe keeps those on the PaymentIntent)."""
        with self._lock:
            sessions = [self._state.find_checkout_session(id_) for id_ in self._state.checkout_sessions]
            return {
                session.id: {**session.to_json(), "payment_intent_data": session.payment_intent_data()}
                for session in sessions
                if session is not None
            }

    @property
    def payment_intents(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every PaymentIntent as Stripe JSON, by id (declined ones and Checkout's included)."""
        with self._lock:
            return {intent.id: intent.to_json() for intent in self._state.payments.intents.values()}

    @property
    def payment_methods(self) -> dict[str, dict[str, Any]]:
        """Snapshot of every card PaymentMethod as Stripe JSON, by id (``customer`` null: not saved)."""
        with self._lock:
            return {method.id: method.to_json() for method in self._state.payments.methods.values()}

    # ------------------------------------------------------------------------------------- checkout

    def complete_checkout(self, session_id: str, *, paid: bool = True) -> dict[str, Any]:
        """Play the customer finishing an open Checkout Session; return its completed event.

        The session becomes ``complete`` with a new ``payment_intent`` (``pi_...``) and ``customer_details``;
        ``payment_status`` is ``paid``, or ``unpaid`` with ``paid=False`` (an asynchronous payment method,
        still pending: settle it with :meth:`async_payment_succeeded`). The event is not delivered anywhere.
        Raises ``ValueError`` for an unknown session or one that is not open.
        """
        with self._lock:
            return self._state.complete_checkout(session_id, paid=paid)

    def async_payment_succeeded(self, session_id: str) -> dict[str, Any]:
        """Settle the pending payment of a session completed with ``paid=False``: ``payment_status`` becomes
        ``paid``; return the ``checkout.session.async_payment_succeeded`` event (not delivered anywhere).
        Raises ``ValueError`` for an unknown session or one that is not complete and unpaid.
        """
        with self._lock:
            return self._state.async_payment_succeeded(session_id)

    # ------------------------------------------------------------------------------------- payments

    def attach_card(self, customer_id: str, *, decline: str | None = None) -> str:
        """Save a new Visa card to a customer, as if they had saved it paying; return its ``pm_...`` id.

        Without ``decline`` it ends 4242 and every off-session charge on it succeeds. With ``decline`` (a
        key of ``stripe_double_payment_intents.DECLINES``: ``"card_declined"``, ``"insufficient_funds"``,
        ``"authentication_required"``, ...) every charge fails with Stripe's 402 ``card_error`` for it. The
        newest card is first in the customer's list. Raises ``ValueError`` for an unknown customer or decline.
        """
        with self._lock:
            return self._state.attach_card(customer_id, decline=decline)

    def payment_intent_event(self, payment_intent_id: str) -> dict[str, Any]:
        """The event Stripe would send about a PaymentIntent as it is now: ``payment_intent.succeeded``,
        ``payment_intent.payment_failed`` (declined) or ``payment_intent.processing``; not delivered anywhere.
        Raises ``ValueError`` for an unknown intent or one never charged (no such event on Stripe).
        """
        with self._lock:
            return self._state.payment_intent_event(payment_intent_id)

    @property
    def search_lag(self) -> float:
        return self._state.search_lag

    @search_lag.setter
    def search_lag(self, seconds: float) -> None:
        self._state.search_lag = seconds

    def reset(self) -> None:
        """Forget all objects, calls, idempotency keys and armed faults (the server keeps running)."""
        with self._lock:
            self._state = StripeState(self._clock, lambda: self.base_url, self._state.search_lag)
            self._calls.clear()
            self._idempotency.clear()
            self.faults.clear()

    # ------------------------------------------------------------------------------------- requests

    def _handle(self, method: str, target: str, raw_headers: Mapping[str, str], body: str) -> _Response:
        """Answer one HTTP request (the server's handler threads call this)."""
        headers = {name.lower(): value for name, value in raw_headers.items()}
        url = urlsplit(target)
        if method == "GET" and url.path.startswith("/hosted/"):
            return self._hosted(url.path.removeprefix("/hosted/"))
        if method == "GET" and url.path.startswith("/checkout/"):
            return self._checkout(url.path.removeprefix("/checkout/"))
        auth_error = _auth_error(headers.get("authorization"))
        if auth_error is not None:
            return _error_response(auth_error)
        found = _route_for(method, url.path)
        if found is None:
            return _error_response(
                StripeApiError(
                    404,
                    f"Unrecognized request URL ({method}: {url.path}). Please see https://stripe.com/docs "
                    "or we can help at https://support.stripe.com/.",
                )
            )
        route, object_id = found
        key = headers.get("idempotency-key") if method == "POST" else None
        try:
            tree = decode_form(parse_qsl(body if method == "POST" else url.query, keep_blank_values=True))
        except StripeApiError as error:
            self._record(Call(route.operation, {}, key))
            return _error_response(error)
        self._record(Call(route.operation, listify(tree), key))
        fault = self.faults.take(route.operation)
        if fault is not None and fault.kind != "lose_response_after_write":
            return self._inject(fault)
        response = self._execute(route, object_id, tree, key)
        response.headers.setdefault("Request-Id", new_id("req", 14))
        response.headers["Stripe-Version"] = headers.get("stripe-version") or stripe.api_version
        response.drop = fault is not None
        return response

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _inject(self, fault: Fault) -> _Response:
        if fault.kind == "timeout":
            self._stopping.wait(fault.delay)
            return _Response(504, drop=True)
        message = f"An unknown error occurred (injected by the Stripe double into {fault.operation})."
        return _error_response(StripeApiError(fault.status, message, error_type="api_error"))

    def _execute(self, route: Route, object_id: str, tree: dict[str, Tree], key: str | None) -> _Response:
        request_id = new_id("req", 14)
        object_id_, _, sub_id = object_id.partition("/")
        endpoint = f"{route.method} {route.path.replace('{id}', object_id_).replace('{sub}', sub_id)}"
        fingerprint = json.dumps(tree, sort_keys=True)
        with self._lock:
            if key is not None:
                replay = self._replay(key, endpoint, fingerprint, request_id)
                if replay is not None:
                    return replay
            try:
                params = check_params(tree, route.schema)
            except StripeApiError as error:  # not stored: the endpoint never started executing
                return _error_response(error)
            try:
                status, payload = 200, route.action(self._state, object_id, params)
            except StripeApiError as error:
                status, payload = error.status, error.body()
            response = _json_response(status, payload, **{"Request-Id": request_id})
            if key is not None:
                response.headers["Idempotency-Key"] = key
                self._idempotency[key] = _Stored(endpoint, fingerprint, status, response.body, request_id)
            return response

    def _replay(self, key: str, endpoint: str, fingerprint: str, request_id: str) -> _Response | None:
        if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH:
            return _error_response(
                invalid_request(
                    f"Idempotency keys can be at most {MAX_IDEMPOTENCY_KEY_LENGTH} characters long."
                )
            )
        stored = self._idempotency.get(key)
        if stored is None:
            return None
        if stored.endpoint != endpoint:
            message = (
                "Keys for idempotent requests can only be used for the same endpoint they were first used "
                f"for ('{stored.endpoint}' vs '{endpoint}'). Try using a key other than '{key}' if you "
                "meant to execute a different request."
            )
        elif stored.params != fingerprint:
            message = (
                "Keys for idempotent requests can only be used with the same parameters they were first used "
                f"with. Try using a key other than '{key}' if you meant to execute a different request."
            )
        else:
            headers = {
                "Content-Type": "application/json",
                "Request-Id": request_id,
                "Original-Request": stored.request_id,
                "Idempotency-Key": key,
                "Idempotent-Replayed": "true",
            }
            return _Response(stored.status, stored.body, headers)
        return _error_response(StripeApiError(400, message, error_type="idempotency_error"))

    def _hosted(self, invoice_id: str) -> _Response:
        with self._lock:
            invoice = self._state.invoices.get(invoice_id)
            if invoice is None or invoice.hosted_invoice_url is None:
                return _Response(
                    404, b"<h1>No such invoice</h1>", {"Content-Type": "text/html; charset=utf-8"}
                )
            page = _hosted_page(invoice)
        return _Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    def _checkout(self, session_id: str) -> _Response:
        with self._lock:
            session = self._state.find_checkout_session(session_id)
            if session is None:
                return _Response(
                    404, b"<h1>No such Checkout Session</h1>", {"Content-Type": "text/html; charset=utf-8"}
                )
            customer = self._state.customers[session.customer_id]
            page = _checkout_page(session, customer.name or customer.id)
        return _Response(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], double: StripeDouble) -> None:
        self.double = double
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        LOG.exception("Stripe double: error while serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "StripeDouble/1.0"

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
        try:
            response = self.server.double._handle(method, self.path, dict(self.headers.items()), body)
        except Exception as error:  # a bug in the double: answer like Stripe's 500 rather than hang up
            LOG.exception("Stripe double: failed to answer %s %s", method, self.path)
            response = _error_response(
                StripeApiError(500, f"Stripe double error: {error!r}", error_type="api_error")
            )
        if response.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        LOG.debug("Stripe double: " + format, *args)


def main(argv: list[str] | None = None) -> None:
    """``python -m tollgate_local.stripe_double [--port 12111]``: serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve the Tollgate Stripe double on 127.0.0.1.")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0 = any)"
    )
    args = parser.parse_args(argv)
    double = StripeDouble(port=args.port).start()
    try:  # the banner too: a Ctrl-C that lands while it is being written still stops cleanly
        print(
            f"Stripe double listening on {double.base_url} (API key: any sk_test_...; Ctrl-C to stop)",
            flush=True,
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        double.stop()


if __name__ == "__main__":
    main()
