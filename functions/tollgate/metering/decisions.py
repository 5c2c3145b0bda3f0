"""Why a request is refused, and what the caller is told.

The deployed REST API turns every deny into its ACCESS_DENIED gateway response (HTTP 403) whose JSON body
carries ``error`` (one of the reasons below), ``message`` and, for ``payment_required`` and
``insufficient_credits``, ``payUrl`` (the open invoice; the prepaid plan's top-up page). An authorizer crash
or timeout becomes AUTHORIZER_FAILURE, answered as 503 ``metering_unavailable``. Both the deployed API
(``infra``) and the local gateway take these answers from
:mod:`tollgate.metering.gateway_responses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    MISSING_KEY = "missing_api_key"
    MALFORMED_KEY = "malformed_api_key"
    INVALID_KEY = "invalid_api_key"  # well-formed, but unknown
    REVOKED_KEY = "revoked_api_key"
    SUSPENDED = "customer_suspended"
    PAYMENT_REQUIRED = "payment_required"
    UNKNOWN_ROUTE = "unknown_route"
    CREDIT_LIMIT = "credit_limit_reached"
    BUDGET_REACHED = "budget_reached"  # the spend limit the customer set (PUT /usage/budget)
    INSUFFICIENT_CREDITS = "insufficient_credits"  # a prepaid balance that does not cover the request
    UNAVAILABLE = "metering_unavailable"
    MALFORMED_REQUEST = "malformed_request"  # the event is not API Gateway's shape (tollgate.metering.events)


MESSAGES: dict[Reason, str] = {
    Reason.MISSING_KEY: "Send your API key in the x-api-key header or as 'Authorization: Bearer <key>'.",
    Reason.MALFORMED_KEY: "The API key is malformed, or the request carries two different keys.",
    Reason.INVALID_KEY: "The API key is not valid.",
    Reason.REVOKED_KEY: "The API key was revoked or has expired.",
    Reason.SUSPENDED: "The account is suspended. Contact the API provider.",
    Reason.PAYMENT_REQUIRED: "Payment is required: pay the open invoice at payUrl to restore access.",
    Reason.UNKNOWN_ROUTE: "This route is not part of your plan.",
    Reason.CREDIT_LIMIT: "The credit limit of your plan for this billing period is reached.",
    Reason.BUDGET_REACHED: (
        "The monthly budget you set is reached for this billing period: raise it with PUT /usage/budget."
    ),
    Reason.INSUFFICIENT_CREDITS: "Your prepaid credits do not cover this request: buy more at payUrl.",
    Reason.UNAVAILABLE: "Metering is unavailable; the request was not served. Retry shortly.",
    Reason.MALFORMED_REQUEST: "The request is malformed (time, route or resource); it was not served.",
}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    principal: str  # the customer id, or "anonymous"
    reason: Reason | None = None
    context: dict[str, str | int | bool] = field(default_factory=dict)
    # The counter write was sent but its answer was lost: the request may have been counted although it was
    # refused (or served unmetered under FAIL_OPEN). Logged and counted apart (MeteringOutcomeUnknown).
    outcome_unknown: bool = False

    @classmethod
    def deny(cls, reason: Reason, principal: str = "anonymous", pay_url: str | None = None) -> Decision:
        context: dict[str, str | int | bool] = {
            "reason": reason.value,
            "message": MESSAGES[reason],
            "payUrl": pay_url or "",
        }
        if principal != "anonymous":  # the usage ledger names the customer of a refusal too
            context["customerId"] = principal
        return cls(allowed=False, principal=principal, reason=reason, context=context)
