"""Stripe webhook endpoint (Lambda Function URL, or an API Gateway route): verify, then apply once.

* The raw body (base64-decoded when ``isBase64Encoded``) and the ``Stripe-Signature`` header go to
  ``stripe.Webhook.construct_event`` with the endpoint's signing secret and Stripe's 300 s tolerance. A
  missing, forged or expired signature is answered 400 and nothing is read or written.
* The secret: ``STRIPE_WEBHOOK_SECRET`` (local use), else the Secrets Manager secret named by
  ``STRIPE_WEBHOOK_SECRET_ARN`` through Powertools Parameters (cached for 5 minutes).
* Handled types (see ``tollgate.billing.webhooks.processing``) answer 200 once applied or when a duplicate;
any other type is
  answered 200 and ignored. An event that cannot be applied yet is answered 503 so Stripe sends it again.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import stripe
from aws_lambda_powertools import Logger

from tollgate.billing.dunning.rules import grace_from_env
from tollgate.billing.secrets import read_secret
from tollgate.billing.webhooks.processing import RetryLaterError, process_event
from tollgate.dal.store import TollgateStore

logger = Logger(service="tollgate-webhooks")

SIGNATURE_HEADER = "stripe-signature"
SIGNATURE_TOLERANCE_SECONDS = 300

Clock = Callable[[], datetime]


def webhook_secret() -> str:
    return read_secret("STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_ARN")


@cache
def _store() -> TollgateStore:
    return TollgateStore()


def _answer(status: int, message: str, **extra: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"message": message, **extra}),
    }


def _header(event: dict[str, Any], name: str) -> str | None:
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == name:
            return str(value)
    return None


def raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=True)
    return body.encode("utf-8")


def make_handler(
    clock: Clock = lambda: datetime.now(UTC), store: Callable[[], TollgateStore] = _store
) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """A webhook handler with its clock and store passed in (tests control time; Lambda uses the defaults)."""

    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        try:
            payload = raw_body(event)
        except (binascii.Error, ValueError):
            return _answer(400, "the body is not valid base64")
        signature = _header(event, SIGNATURE_HEADER)
        if not signature:
            return _answer(400, "missing Stripe-Signature header")
        try:
            verified = stripe.Webhook.construct_event(
                payload, signature, webhook_secret(), tolerance=SIGNATURE_TOLERANCE_SECONDS
            )
        except stripe.SignatureVerificationError:
            logger.warning("webhook signature rejected")
            return _answer(400, "invalid or expired Stripe-Signature")
        except (ValueError, UnicodeDecodeError):
            return _answer(400, "the body is not a JSON Stripe event")
        stripe_event = verified.to_dict()
        try:
            outcome = process_event(store(), stripe_event, now=clock(), grace=grace_from_env())
        except RetryLaterError as error:
            logger.warning("event deferred", event_id=stripe_event.get("id"), reason=str(error))
            return _answer(503, str(error))
        logger.info(
            "webhook event",
            event_id=stripe_event.get("id"),
            event_type=stripe_event.get("type"),
            result=outcome.result,
            detail=outcome.detail,
        )
        return _answer(200, outcome.detail, result=outcome.result)

    return handle


handler = make_handler()
