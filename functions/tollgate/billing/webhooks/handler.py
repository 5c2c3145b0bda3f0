"""Stripe webhook endpoint (Lambda Function URL, or an API Gateway route): verify, then apply once.

* The raw body (base64-decoded when ``isBase64Encoded``) and the ``Stripe-Signature`` header go to
  ``stripe.Webhook.construct_event`` with the endpoint's signing secret and Stripe's 300 s tolerance. A
  missing, forged or expired signature is answered 400 and nothing is read or written.
* The secret: ``STRIPE_WEBHOOK_SECRET`` (local use), else the Secrets Manager secret named by
  ``STRIPE_WEBHOOK_SECRET_ARN`` through Powertools Parameters (cached for 5 minutes).
* Handled types (see ``tollgate.billing.webhooks.processing``) answer 200 once applied or when a duplicate;
  any other type is answered 200 and ignored. An event that cannot be applied yet is answered 503 so Stripe
  sends it again. Statuses come from the errors' types (``tollgate.errors.http_status``).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import stripe

from tollgate.billing.secrets import read_secret
from tollgate.billing.webhooks.observability import logger
from tollgate.billing.webhooks.processing import process_event
from tollgate.billing.webhooks.settings import (
    STRIPE_WEBHOOK_SECRET,
    STRIPE_WEBHOOK_SECRET_ARN,
    WebhookSettings,
)
from tollgate.dal.store import TollgateStore
from tollgate.errors import InvalidInputError, RetryLaterError, http_status

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]

SIGNATURE_HEADER = "stripe-signature"
SIGNATURE_TOLERANCE_SECONDS = 300


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    signing_secret: Callable[[], str]  # called per event: a rotated secret is picked up within 5 minutes
    grace: timedelta  # dunning's grace period
    clock: Callable[[], datetime] = utc_now


def deps_from(settings: WebhookSettings) -> Deps:
    def signing_secret() -> str:
        names = (STRIPE_WEBHOOK_SECRET, STRIPE_WEBHOOK_SECRET_ARN)
        return read_secret(settings.signing_secret, settings.signing_secret_arn, names=names)

    return Deps(TollgateStore(settings.dunning.table_name), signing_secret, settings.dunning.grace)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(WebhookSettings.from_env())


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


def verified_event(event: dict[str, Any], secret: Callable[[], str]) -> dict[str, Any]:
    """The Stripe event in a Function URL request, once its signature checks out (``InvalidInputError``).

    The secret is read only for a request that carries a body and a signature."""
    try:
        payload = raw_body(event)
    except (binascii.Error, ValueError) as error:
        raise InvalidInputError("the body is not valid base64") from error
    signature = _header(event, SIGNATURE_HEADER)
    if not signature:
        raise InvalidInputError("missing Stripe-Signature header")
    try:
        verified = stripe.Webhook.construct_event(
            payload, signature, secret(), tolerance=SIGNATURE_TOLERANCE_SECONDS
        )
    except stripe.SignatureVerificationError as error:
        raise InvalidInputError("invalid or expired Stripe-Signature") from error
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError("the body is not a JSON Stripe event") from error
    return dict(verified.to_dict())


def make_handler(deps: Deps | None = None) -> Handler:
    """The webhook handler over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        stripe_event: dict[str, Any] = {}
        try:
            stripe_event = verified_event(event, wired.signing_secret)
            outcome = process_event(wired.store, stripe_event, now=wired.clock(), grace=wired.grace)
        except (InvalidInputError, RetryLaterError) as error:
            logger.warning("webhook refused", event_id=stripe_event.get("id"), reason=str(error))
            return _answer(http_status(error), str(error))
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
