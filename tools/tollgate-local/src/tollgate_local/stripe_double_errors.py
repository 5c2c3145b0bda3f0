"""Stripe-shaped errors raised inside the Stripe double (see ``stripe_double``).

Stripe answers every failure with ``{"error": {"type": ..., "message": ..., "param": ..., "code": ...}}``
and an HTTP status (400 bad request, 401 bad key, 402 declined card, 404 missing object, 500 internal error);
stripe-python turns that into ``InvalidRequestError``, ``AuthenticationError``, ``CardError``,
``IdempotencyError`` or ``APIError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class StripeApiError(Exception):
    """An error the double answers with, in Stripe's JSON error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.param is not None:
            error["param"] = self.param
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://docs.stripe.com/error-codes/{self.code.replace('_', '-')}"
        return {"error": error}


class CardError(StripeApiError):
    """A 402 ``card_error``: a charge was attempted and declined. ``details`` join the error hash as they are
    (``decline_code``, ``charge``, ``payment_intent``, ``payment_method``), as Stripe sends them."""

    def __init__(
        self, message: str, *, code: str, param: str | None = None, details: Mapping[str, Any]
    ) -> None:
        super().__init__(402, message, error_type="card_error", param=param, code=code)
        self.details = dict(details)

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["error"].update(self.details)
        return body


def invalid_request(message: str, param: str | None = None, *, code: str | None = None) -> StripeApiError:
    """A 400 ``invalid_request_error``, optionally naming the offending parameter."""
    return StripeApiError(400, message, param=param, code=code)


def resource_missing(kind: str, object_id: str, param: str | None = None) -> StripeApiError:
    """Stripe's ``resource_missing``: 404 for an id in the URL, 400 for an id passed as a parameter."""
    status = 404 if param is None else 400
    return StripeApiError(
        status, f"No such {kind}: '{object_id}'", param=param or "id", code="resource_missing"
    )
