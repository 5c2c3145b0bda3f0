"""``GET /usage``: a customer's own usage, estimate and recent invoices, behind the metering authorizer; and
what the customer sets for themselves: ``GET``/``PUT /usage/budget`` (their spend limit), ``GET``/``PUT
/usage/alerts`` (their own usage alert rules) and ``GET``/``PUT``/``DELETE /usage/alerts/webhook`` (where
their alerts are posted, signed; the signing secret is in the one answer that made it, and never logged).

The routes cost 0 credits in the plan (``"GET /usage": 0``, ``"ANY /usage/budget": 0``, ``"ANY
/usage/alerts": 0``, ``"ANY /usage/alerts/webhook": 0``), so they are metered (one request) but never billed
and stay reachable at the credit cap. The customer is whoever the authorizer says: REST APIs pass its
context as ``requestContext.authorizer.customerId``, HTTP APIs (v2) as
``requestContext.authorizer.lambda.customerId``.
The deployed API is a REST API; the HTTP API shape is served by the same route through its own resolver.

``?period=YYYY-MM`` asks for another period; anything else is a 400 that says what a period looks like. The
OpenAPI description in ``docs/usage-api.openapi.yaml`` is generated from this module (``python -m
tollgate.usage_api.openapi``) and a test keeps the committed file equal to it.

Errors are answered by type, in one place (:func:`answer_error`, statuses from ``tollgate.errors``).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache, partial
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import ServiceError, UnauthorizedError
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.accounts.alert_rules import alert_rules_status, set_alert_rules
from tollgate.accounts.alert_webhooks import change_alert_webhook
from tollgate.accounts.budgets import budget_status, set_budget
from tollgate.billing.secrets import read_secret
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertRule
from tollgate.errors import ConflictError, InvalidInputError, NotFoundError, http_status
from tollgate.ledger.queries import LEDGER_RELATION, LedgerQueries
from tollgate.ledger.settings import AthenaLedgerNames, athena_ledger
from tollgate.usage_api.alert_reports import (
    RULES_EXAMPLE,
    AlertRulesReport,
    AlertWebhookReport,
    AlertWebhookSet,
)
from tollgate.usage_api.exports import register_export_routes
from tollgate.usage_api.observability import logger
from tollgate.usage_api.pages import register_page_routes
from tollgate.usage_api.report import BudgetReport, UsageReport, build_usage_report
from tollgate.usage_api.settings import PORTAL_LINK_SECRET, PORTAL_LINK_SECRET_ARN, UsageApiSettings

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
    # the usage page's link signing secret (GET /portal); None: not configured, the portal answers 503
    portal_link_secret: Callable[[], str | None] = lambda: None
    # the request ledger GET /usage/export reads; None: the deployment keeps none (the counters answer)
    ledger: LedgerQueries | None = None


def portal_link_secret_of(settings: UsageApiSettings) -> str | None:
    """The value locally, else the Secrets Manager secret (Powertools Parameters, cached for 5 minutes)."""
    if not (settings.portal_link_secret or settings.portal_link_secret_arn):
        return None
    return read_secret(
        settings.portal_link_secret,
        settings.portal_link_secret_arn,
        names=(PORTAL_LINK_SECRET, PORTAL_LINK_SECRET_ARN),
    )


def deps_from(settings: UsageApiSettings) -> Deps:
    return Deps(
        TollgateStore(settings.table_name),
        portal_link_secret=partial(portal_link_secret_of, settings),
        ledger=ledger_of(settings),
    )


def ledger_of(settings: UsageApiSettings) -> LedgerQueries | None:
    """Athena when the ledger's workgroup and database are set (AWS), DuckDB over a directory (local mode),
    else None."""
    if settings.ledger_workgroup and settings.ledger_database:
        names = AthenaLedgerNames(
            settings.ledger_workgroup, settings.ledger_database, settings.ledger_table or LEDGER_RELATION
        )
        return athena_ledger(names)
    if settings.ledger_dir:
        from tollgate.ledger.duckdb_ledger import DuckDbLedger  # DuckDB: only locally (tollgate[local])

        return DuckDbLedger(settings.ledger_dir)
    return None


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


# request bodies: a number with a fraction is read as Decimal, straight from the text (money is never a float)
DECIMAL_JSON: Callable[[str], Any] = partial(json.loads, parse_float=Decimal)

ANSWERED = (InvalidInputError, NotFoundError)  # what a caller can act on; anything else is a 500


class BudgetChange(BaseModel):
    """``PUT /usage/budget``'s body."""

    model_config = ConfigDict(extra="forbid")

    amount: Annotated[Decimal, Field(ge=0, allow_inf_nan=False, max_digits=20)] | None = Field(
        description='the monthly budget in the plan\'s currency (major units, e.g. "25.00"); null clears it',
        examples=["25.00"],
    )


class AlertRulesChange(BaseModel):
    """``PUT /usage/alerts``'s body."""

    model_config = ConfigDict(extra="forbid")

    rules: list[AlertRule] | None = Field(
        description=(
            "the customer's own alert rules, which replace the plan's: each one of included_percent, "
            "cap_percent, budget_percent, spend, balance_below, forecast (cap or budget), forecast_spend; "
            "[] for no alerts at all; null goes back to the plan's"
        ),
        examples=[RULES_EXAMPLE],
    )


class AlertWebhookChange(BaseModel):
    """``PUT /usage/alerts/webhook``'s body."""

    model_config = ConfigDict(extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2000)] | None = Field(
        default=None,
        description="the HTTPS endpoint the customer's alerts are posted to, signed (Tollgate-Signature)",
        examples=["https://hooks.example.com/tollgate"],
    )
    rotate: bool = Field(
        default=False, description="true: a new signing secret (the old one stops verifying at once)"
    )

    @model_validator(mode="after")
    def _something_to_do(self) -> AlertWebhookChange:
        if self.url is None and not self.rotate:
            raise ValueError('give "url", or "rotate": true')
        return self


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

    register_alert_routes(app, deps, budget_errors)
    register_page_routes(app, deps, partial(_customer, app))
    register_export_routes(app, deps, partial(_customer, app))


def register_alert_routes(
    app: ApiGatewayResolver,
    deps: Callable[[], Deps],
    gateway_errors: dict[int | HTTPStatus, OpenAPIResponse],
) -> None:
    """``GET``/``PUT /usage/alerts`` (the customer's own alert rules) and ``GET``/``PUT``/``DELETE
    /usage/alerts/webhook`` (their alert webhook), built like ``/usage/budget``."""

    @app.get(
        "/usage/alerts",
        summary="The usage alert rules in force",
        description=(
            "The customer's own alert rules if they set some (source: customer), else the plan's (source: "
            "plan). Each alert fires once per period (a low balance: once per top-up) as an EventBridge "
            "event on the provider's account and, with an alert webhook, a signed POST to it. This route "
            "costs 0 credits."
        ),
        operation_id="getAlertRules",
        tags=["alerts"],
        responses={200: {"description": "The alert rules in force"}, **gateway_errors},
    )
    def get_alert_rules() -> AlertRulesReport:
        wired = deps()
        try:
            return AlertRulesReport.of(alert_rules_status(wired.store, _customer(app), now=wired.clock()))
        except ANSWERED as error:
            raise answer_error(error) from error

    @app.put(
        "/usage/alerts",
        summary="Set the customer's own alert rules, or go back to the plan's",
        description=(
            "The rules replace the plan's for this customer, and are checked as the plan's own are: a rule "
            "that can never fire on the plan (cap_percent without a cap, balance_below on a plan billed in "
            "arrears...), an amount the plan's currency cannot charge, or more rules than a plan may have is "
            "a 400, and nothing changes. rules null goes back to the plan's; [] is no alerts at all. Setting "
            "the same rules again changes nothing. A change is seen by the alert function within 30 s. This "
            "route costs 0 credits."
        ),
        operation_id="putAlertRules",
        tags=["alerts"],
        responses={
            200: {"description": "The alert rules in force now"},
            400: {
                "description": "A rule the plan would refuse, or too many rules",
                "content": {"application/json": {"model": ErrorBody}},
            },
            **gateway_errors,
        },
    )
    def put_alert_rules(change: Annotated[AlertRulesChange, Body()]) -> AlertRulesReport:
        wired = deps()
        try:
            status = set_alert_rules(wired.store, _customer(app), change.rules, now=wired.clock())
        except (*ANSWERED, ConflictError) as error:
            raise answer_error(error) from error
        rules = None if status.own is None else [rule.rule_id for rule in status.own]
        logger.info("alert rules set", customer_id=status.customer_id, rules=rules)
        return AlertRulesReport.of(status)

    @app.get(
        "/usage/alerts/webhook",
        summary="The customer's alert webhook",
        description=(
            "Where the customer's alerts are posted, signed with a secret (Tollgate-Signature). The secret "
            "is never shown here: only by the PUT that made it. This route costs 0 credits."
        ),
        operation_id="getAlertWebhook",
        tags=["alerts"],
        responses={200: {"description": "The alert webhook (null url: none)"}, **gateway_errors},
    )
    def get_alert_webhook() -> AlertWebhookReport:
        wired = deps()
        try:
            return AlertWebhookReport.of(wired.store.get_customer(_customer(app)).alert_webhook)
        except ANSWERED as error:
            raise answer_error(error) from error

    @app.put(
        "/usage/alerts/webhook",
        summary="Set the alert webhook's URL, or rotate its signing secret",
        description=(
            "url: post the customer's alerts to this HTTPS URL; the first URL makes a signing secret "
            "(whsec_...), answered this once and never again; a new URL keeps the secret. rotate true makes "
            "a new secret (answered this once), which signs every delivery from now on. Setting the URL the "
            "webhook has changes nothing. Verify each delivery: HMAC-SHA256 under the secret of "
            '"{t}." + body, against the v1 of Tollgate-Signature (t=...,v1=...), within 5 minutes of t. '
            "This route costs 0 credits."
        ),
        operation_id="putAlertWebhook",
        tags=["alerts"],
        responses={
            200: {"description": "The alert webhook, with its signing secret if this request made one"},
            400: {
                "description": "Not an HTTPS URL, or a rotation without a webhook",
                "content": {"application/json": {"model": ErrorBody}},
            },
            **gateway_errors,
        },
    )
    def put_alert_webhook(change: Annotated[AlertWebhookChange, Body()]) -> AlertWebhookSet:
        wired = deps()
        try:
            changed = change_alert_webhook(
                wired.store, _customer(app), change.url, rotate=change.rotate, https_only=True
            )
        except (*ANSWERED, ConflictError) as error:
            raise answer_error(error) from error
        webhook = changed.webhook
        logger.info(  # the host only: a URL's path may hold a token of the customer's; never the secret
            "alert webhook set",
            customer_id=changed.customer.id,
            host=None if webhook is None else urllib.parse.urlsplit(webhook.url).hostname,
            new_secret=changed.new_secret is not None,
        )
        return AlertWebhookSet.of_change(changed)

    @app.delete(
        "/usage/alerts/webhook",
        summary="Stop posting the customer's alerts to their webhook",
        description=(
            "Removes the URL and its secret; removing none changes nothing. This route costs 0 credits."
        ),
        operation_id="deleteAlertWebhook",
        tags=["alerts"],
        responses={200: {"description": "No alert webhook"}, **gateway_errors},
    )
    def delete_alert_webhook() -> AlertWebhookReport:
        wired = deps()
        try:
            changed = change_alert_webhook(wired.store, _customer(app), None, remove=True)
        except (*ANSWERED, ConflictError) as error:
            raise answer_error(error) from error
        logger.info("alert webhook removed", customer_id=changed.customer.id)
        return AlertWebhookReport.of(changed.webhook)


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
        APIGatewayRestResolver(enable_validation=True, json_body_deserializer=DECIMAL_JSON),
        APIGatewayHttpResolver(enable_validation=True, json_body_deserializer=DECIMAL_JSON),
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
