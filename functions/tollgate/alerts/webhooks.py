"""Usage alerts as signed webhooks to the customer's own URL (``Customer.alert_webhook``), and how the
customer checks them.

An EventBridge rule sends every alert event (``source: tollgate``) to the webhook queue; this function reads
it (one SQS message per event, ``{"source", "detail-type", "detail"}``) and POSTs the alert to the URL of the
customer it is about, if they have one. The body is the event's ``detail`` plus ``"type"`` (the detail type),
compact JSON with sorted keys (:func:`body_of`); ``Tollgate-Signature: t=<unix seconds>,v1=<hex>`` is an
HMAC-SHA256 of ``"<t>." + body`` under the webhook's secret (:func:`sign`), and :func:`verify` is what a
receiver runs: the signature and a timestamp within five minutes, so a captured request cannot be replayed
later. Delivery is at least once: a receiver deduplicates on ``alertId`` (also ``Tollgate-Alert-Id``).

Answers (:func:`deliver`): 2xx is delivered; 408, 429, 5xx, a timeout (5 s) or no connection is retried; any
other answer (4xx, or a redirect: never followed, the URL is the customer's to fix) means the endpoint
refuses the alert, which is logged and dropped. A retried message is hidden for 30 s x 2^(receive count - 1),
at most 15 minutes (the queue's visibility timeout, changed per message), and reported as a partial batch
failure; after the queue's maximum receive count it lands in the webhook dead-letter queue. Every attempt is
signed anew, so a retry's timestamp is current. A message is not tried with less than 12 s of the invocation
left (it is retried like a failure), so a batch of slow endpoints does not time the function out. Neither
the secret nor a signature is ever logged, nor the URL's path (it may hold a token of the customer's): only
its host.

Environment: ``TABLE_NAME``.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any, Protocol

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.exceptions import BotoCoreError, ClientError

from tollgate.alerts.observability import logger
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertWebhook
from tollgate.errors import NotFoundError, RetryLaterError
from tollgate.settings import TABLE_NAME, required

SIGNATURE_HEADER = "Tollgate-Signature"
ALERT_ID_HEADER = "Tollgate-Alert-Id"
USER_AGENT = "Tollgate-Webhooks/1"
TOLERANCE_SECONDS = 300  # a signature older (or newer) than this is refused by verify
TIMEOUT_SECONDS = 5.0
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx
BACKOFF_SECONDS = 30  # the first retry's delay, doubled with every receive
MAX_BACKOFF_SECONDS = 900
MIN_REMAINING_MS = 12_000  # an attempt needs this much of the invocation left (connect and answer, 5 s each)

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
# a batch whose every message failed is reported like any other (a customer's endpoint being down is no error
# of this function's: the dead-letter queue's alarm says when deliveries give up)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


# -- signing ---------------------------------------------------------------------------------------------
class SignatureError(ValueError):
    """A webhook that does not verify: no or a malformed signature header, a timestamp out of tolerance,
    or no signature that matches."""


def sign(payload: bytes, secret: str, timestamp: int) -> str:
    """The ``Tollgate-Signature`` value of ``payload`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(payload, secret, timestamp)}"


def verify(
    payload: bytes, header: str | None, secret: str, *, now: int, tolerance: int = TOLERANCE_SECONDS
) -> None:
    """Raise :class:`SignatureError` unless ``header`` signs ``payload`` (the raw body, as received) under
    ``secret`` at a time within ``tolerance`` seconds of ``now``. Several ``v1`` entries are accepted, any one
    matching: a secret being rotated signs with both."""
    if not header:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    if abs(now - timestamp) > tolerance:
        raise SignatureError(f"the signature's timestamp is more than {tolerance} s away from now")
    expected = _digest(payload, secret, timestamp).encode()
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures):
        raise SignatureError("no v1 signature matches the body")


def _digest(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures = []
    for entry in header.split(","):
        name, sep, value = entry.strip().partition("=")
        if not sep:
            raise SignatureError(f"malformed {SIGNATURE_HEADER} header")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise SignatureError(f"malformed {SIGNATURE_HEADER} header: t must be unix seconds, once")
            timestamp = int(value)
        elif name == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError(f"malformed {SIGNATURE_HEADER} header: it needs t and at least one v1")
    return timestamp, signatures


# -- one delivery ----------------------------------------------------------------------------------------
class DeliveryFailedError(RetryLaterError):
    """The endpoint did not take the alert this time (408, 429, 5xx, timeout, no connection): retry later."""

    def __init__(self, alert_id: str, reason: str, status: int | None = None) -> None:
        super().__init__(f"alert {alert_id} not delivered: {reason}")
        self.alert_id, self.reason, self.status = alert_id, reason, status


@dataclass(frozen=True)
class Delivery:
    alert_id: str
    status: int
    delivered: bool  # False: the endpoint refused it for good (a 4xx or a redirect): dropped, not retried


class Sender(Protocol):
    def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        """POST ``body`` to ``url``; the answer's status. ``OSError`` or ``HTTPException`` when no answer
        came (timeout, refused connection, TLS failure)."""
        ...


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # urllib then raises HTTPError with the 3xx status


_opener = urllib.request.build_opener(_NoRedirects)


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float = TIMEOUT_SECONDS) -> int:
    """The standard library's POST (:class:`Sender`): redirects are not followed, the answer is not read."""
    if urllib.parse.urlsplit(url).scheme not in ("https", "http"):
        raise ValueError("a webhook URL is https (http to 127.0.0.1 locally)")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310 - scheme checked
    try:
        with _opener.open(request, timeout=timeout) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:  # any answer outside 2xx
        error.close()
        return int(error.code)


def post_https(url: str, body: bytes, headers: Mapping[str, str]) -> int:
    """:func:`post`, for HTTPS URLs only: the deployed function's sender. Plain HTTP to 127.0.0.1 is for local
    mode; in Lambda it would reach the function's own runtime API, so it is refused (``ValueError``)."""
    if urllib.parse.urlsplit(url).scheme != "https":
        raise ValueError("a deployed webhook URL is https")
    return post(url, body, headers)


def body_of(event: Mapping[str, Any]) -> bytes:
    """The POSTed body of an alert event: its ``detail`` and ``"type"`` (the ``detail-type``), as compact
    UTF-8 JSON with sorted keys."""
    detail, detail_type = event.get("detail"), event.get("detail-type")
    if not isinstance(detail, Mapping) or not isinstance(detail_type, str) or "alertId" not in detail:
        raise ValueError("not a Tollgate alert event: it needs detail-type and a detail with alertId")
    document = {**detail, "type": detail_type}
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def deliver(webhook: AlertWebhook, event: Mapping[str, Any], *, now: int, send: Sender = post) -> Delivery:
    """POST the alert ``event`` to ``webhook``, signed at ``now`` (unix seconds). Delivered, or refused for
    good (a 4xx other than 408 and 429, or a redirect); :class:`DeliveryFailedError` when worth retrying."""
    body = body_of(event)
    alert_id = str(event["detail"]["alertId"])
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        SIGNATURE_HEADER: sign(body, webhook.secret, now),
        ALERT_ID_HEADER: alert_id,
    }
    try:
        status = send(webhook.url, body, headers)
    except (OSError, http.client.HTTPException) as error:
        raise DeliveryFailedError(alert_id, f"no answer ({type(error).__name__})") from error
    except ValueError as error:  # a URL the sender refuses: it will not change by retrying
        logger.warning("webhook URL refused; alert dropped", extra={"alert_id": alert_id, "why": str(error)})
        return Delivery(alert_id, 0, delivered=False)
    if status in RETRIED_STATUSES or status >= 500:
        raise DeliveryFailedError(alert_id, f"the endpoint answered {status}", status)
    return Delivery(alert_id, status, delivered=200 <= status < 300)


def deliver_event(
    event: Mapping[str, Any], store: TollgateStore, *, now: int, send: Sender = post
) -> Delivery | None:
    """Deliver ``event`` to the webhook of the customer it is about; None if they have none (or are gone)."""
    body_of(event)  # a malformed event fails here, before any lookup
    customer_id = str(event["detail"].get("customerId", ""))
    try:
        customer = store.get_customer(customer_id)
    except NotFoundError:
        logger.info("alert for an unknown customer; nothing to deliver", extra={"customer_id": customer_id})
        return None
    if customer.alert_webhook is None:
        return None
    delivery = deliver(customer.alert_webhook, event, now=now, send=send)
    context = {
        "alert_id": delivery.alert_id,
        "customer_id": customer_id,
        "host": urllib.parse.urlsplit(customer.alert_webhook.url).hostname,
        "status": delivery.status,
    }
    if delivery.delivered:
        logger.info("alert webhook delivered", extra=context)
    else:
        logger.warning("alert webhook refused by the customer's endpoint; dropped", extra=context)
    return delivery


# -- the SQS consumer ------------------------------------------------------------------------------------
def backoff_seconds(receive_count: int) -> int:
    """How long a message that failed on its ``receive_count``-th receive stays hidden: 30 s, 60 s, ...,
    at most 15 minutes."""
    doublings = min(max(receive_count, 1), 16) - 1
    return min(BACKOFF_SECONDS << doublings, MAX_BACKOFF_SECONDS)


def queue_url(queue_arn: str, endpoint_url: str) -> str:
    """The URL of the queue ``arn:aws:sqs:<region>:<account>:<name>`` on the SQS client's endpoint."""
    *_, account, name = queue_arn.split(":")
    return f"{endpoint_url.rstrip('/')}/{account}/{name}"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    sqs: Any  # a boto3 SQS client: change_message_visibility, for the backoff
    send: Sender = post
    clock: Callable[[], datetime] = utc_now


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return Deps(TollgateStore(required(os.environ, TABLE_NAME)), boto3.client("sqs"), send=post_https)


def deliver_record(record: SQSRecord, deps: Deps, lambda_context: Any = None) -> None:
    """One message: its alert delivered (or dropped); on a retryable failure the message is hidden for the
    backoff and the error raised, so the batch reports it failed."""
    event = json.loads(record.body)
    try:
        if lambda_context is not None and lambda_context.get_remaining_time_in_millis() < MIN_REMAINING_MS:
            alert_id = str(event.get("detail", {}).get("alertId", ""))
            raise DeliveryFailedError(alert_id, "too little of the invocation left to try")
        deliver_event(event, deps.store, now=int(deps.clock().timestamp()), send=deps.send)
    except DeliveryFailedError as error:
        receives = int(record.attributes.get("ApproximateReceiveCount") or 1)
        delay = backoff_seconds(receives)
        _hide(deps.sqs, record, delay)
        logger.warning(
            "alert webhook not delivered; it will be retried",
            extra={
                "alert_id": error.alert_id,
                "reason": error.reason,
                "message_id": record.message_id,
                "receive_count": receives,
                "retry_in_seconds": delay,
            },
        )
        raise


def _hide(sqs: Any, record: SQSRecord, seconds: int) -> None:
    """Hide the message for ``seconds``; if SQS refuses, the queue's own visibility timeout applies."""
    try:
        sqs.change_message_visibility(
            QueueUrl=queue_url(record.event_source_arn, sqs.meta.endpoint_url),
            ReceiptHandle=record.receipt_handle,
            VisibilityTimeout=seconds,
        )
    except (BotoCoreError, ClientError) as error:
        logger.warning(
            "could not delay the message's retry",
            extra={"message_id": record.message_id, "error": str(error)},
        )


def make_handler(deps: Deps | None = None) -> Handler:
    """The webhook function over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        answer = process_partial_response(event, partial(deliver_record, deps=wired), processor, context)
        return dict(answer)

    return handle


handler = make_handler()
