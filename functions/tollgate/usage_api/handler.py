"""``GET /usage``: a customer's own usage, estimate and recent invoices, behind the metering authorizer.

The route costs 0 credits in the plan (``"GET /usage": 0``), so it is metered (one request) but never
billed and stays reachable at the credit cap. The customer is whoever the authorizer says: REST APIs pass its
context as ``requestContext.authorizer.customerId``, HTTP APIs (v2) as
``requestContext.authorizer.lambda.customerId``.
The deployed API is a REST API; the HTTP API shape is served by the same route through its own resolver.

``?period=YYYY-MM`` asks for another period; anything else is a 400 that says what a period looks like. The
OpenAPI description in ``docs/usage-api.openapi.yaml`` is generated from this module (``python -m
tollgate.usage_api.openapi``) and a test keeps the committed file equal to it.

Errors are answered by type, in one place (:func:`answer_error`, statuses from ``tollgate.errors``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import ServiceError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field

from tollgate.accounts.budgets import budget_status, set_budget
from tollgate.dal.store import TollgateStore
from tollgate.errors import ConflictError, InvalidInputError, NotFoundError, http_status
from tollgate.usage_api.observability import logger
from tollgate.usage_api.report import BudgetReport, UsageReport, build_usage_report
from tollgate.usage_api.settings import UsageApiSettings

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
PERIOD_DESCRIPTION = "Billing period, YYYY-MM (UTC calendar month). Default: the current period."


class ErrorBody(BaseModel):
    statusCode: int = Field(examples=[400])  # the JSON field Powertools answers with
    message: str = Field(examples=["a period is written YYYY-MM, e.g. 2026-11, not '2026-13'"])


class GatewayError(BaseModel):
    """What API Gateway answers when the metering authorizer refuses (see ``tollgate.metering.decisions``)."""

    error: str = Field(examples=["payment_required"])
    message: str
    payUrl: str = Field(description="the invoice to pay when error is payment_required, else empty")
    requestId: str


def _gateway(description: str) -> OpenAPIResponse:
    return {"description": description, "content": {"application/json": {"model": GatewayError}}}


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    clock: Callable[[], datetime] = utc_now


def deps_from(settings: UsageApiSettings) -> Deps:
    return Deps(TollgateStore(settings.table_name))


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(UsageApiSettings.from_env())


def customer_id_of(raw_event: dict[str, Any]) -> str | None:
    """The customer the authorizer let through, from either event shape."""
    authorizer = (raw_event.get("requestContext") or {}).get("authorizer") or {}
    if raw_event.get("version") == "2.0":
        authorizer = authorizer.get("lambda") or {}
    value = authorizer.get("customerId")
    return str(value) if value else None


ANSWERED = (InvalidInputError, NotFoundError)  # what a caller can act on; anything else is a 500


class BudgetChange(BaseModel):
    """``PUT /usage/budget``'s body."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=20)] | None = Field(
        description='the monthly budget in the plan\'s currency (major units, e.g. "25.00"); null clears it',
        examples=["25.00"],
    )


def answer_error(error: InvalidInputError | NotFoundError | ConflictError) -> ServiceError:
    """The one place an error becomes this API's answer: its status by type, its message as the body."""
    return ServiceError(http_status(error), str(error))


def register_routes(app: ApiGatewayResolver, deps: Callable[[], Deps]) -> None:
    @app.get(
        "/usage",
        summary="Usage so far in a billing period",
        description=(
            "Credits and requests counted for the calling customer in the period, per route; included "
            "credits left; the plan's cap; the charge so far, rated exactly as the period close will rate "
            "it; and the most recent invoices with their hosted invoice URLs. This route costs 0 credits."
        ),
        operation_id="getUsage",
        tags=["usage"],
        responses={
            200: {"description": "The customer's usage report"},
            400: {
                "description": "The period is not YYYY-MM",
                "content": {"application/json": {"model": ErrorBody}},
            },
            401: _gateway("No valid API key (error: missing_api_key, malformed_api_key, invalid_api_key)"),
            403: _gateway(
                "Refused by the authorizer: revoked_api_key, customer_suspended, payment_required (payUrl)"
            ),
            503: _gateway("metering_unavailable: the request could not be metered, so it was not served"),
        },
    )
    def get_usage(
        period: Annotated[str | None, Query(description=PERIOD_DESCRIPTION, examples=["2026-11"])] = None,
    ) -> UsageReport:
        customer_id = customer_id_of(app.current_event.raw_event)
        if customer_id is None:
            raise UnauthorizedError("no customer in the authorizer context")
        wired = deps()
        try:
            return build_usage_report(wired.store, customer_id, now=wired.clock(), period=period)
        except ANSWERED as error:
            raise answer_error(error) from error

    budget_errors: dict[int | HTTPStatus, OpenAPIResponse] = {
        401: _gateway("No valid API key (error: missing_api_key, malformed_api_key, invalid_api_key)"),
        403: _gateway("Refused by the authorizer: revoked_api_key, customer_suspended, payment_required"),
        503: _gateway("metering_unavailable: the request could not be metered, so it was not served"),
    }

    @app.get(
        "/usage/budget",
        summary="The monthly spend limit the customer set",
        description=(
            "The budget, what it allows in credits per period on the current plan, and the plan's cap as an "
            "amount (the highest budget allowed). This route costs 0 credits."
        ),
        operation_id="getBudget",
        tags=["usage"],
        responses={200: {"description": "The customer's budget"}, **budget_errors},
    )
    def get_budget() -> BudgetReport:
        wired = deps()
        try:
            return BudgetReport.of(budget_status(wired.store, _customer(app), now=wired.clock()))
        except ANSWERED as error:
            raise answer_error(error) from error

    @app.put(
        "/usage/budget",
        summary="Set or clear the monthly spend limit",
        description=(
            "Requests that would take the period's charge (base fee and usage, before discounts and tax) "
            "past the budget are refused with budget_reached, in the same write that counts them, so the "
            "budget is never passed. Set it at or below the plan's cap and at or above what the plan charges "
            "whatever the usage; amount null clears it. Setting the same budget again changes nothing. "
            "This route costs 0 credits, so it stays reachable once the budget is reached."
        ),
        operation_id="putBudget",
        tags=["usage"],
        responses={
            200: {"description": "The budget now"},
            400: {
                "description": "Not an amount the currency can charge, or outside what the plan allows",
                "content": {"application/json": {"model": ErrorBody}},
            },
            **budget_errors,
        },
    )
    def put_budget(change: Annotated[BudgetChange, Body()]) -> BudgetReport:
        wired = deps()
        try:
            status = set_budget(wired.store, _customer(app), change.amount, now=wired.clock())
        except (*ANSWERED, ConflictError) as error:
            raise answer_error(error) from error
        logger.info("budget set", customer_id=status.customer_id, amount=str(change.amount))
        return BudgetReport.of(status)


def _customer(app: ApiGatewayResolver) -> str:
    customer_id = customer_id_of(app.current_event.raw_event)
    if customer_id is None:
        raise UnauthorizedError("no customer in the authorizer context")
    return customer_id


def make_resolvers(deps: Deps | None = None) -> tuple[APIGatewayRestResolver, APIGatewayHttpResolver]:
    """The REST and HTTP API resolvers over ``deps`` (default: :func:`default_deps`, built on first use)."""

    def wired() -> Deps:
        return deps if deps is not None else default_deps()

    rest, http = (
        APIGatewayRestResolver(enable_validation=True),
        APIGatewayHttpResolver(enable_validation=True),
    )
    register_routes(rest, wired)
    register_routes(http, wired)
    return rest, http


def make_handler(deps: Deps | None = None) -> Handler:
    """The usage API over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""
    rest, http = make_resolvers(deps)

    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        app = http if event.get("version") == "2.0" else rest
        return app.resolve(event, context)

    return handle


handler = make_handler()
