"""The customer's usage page, as HTML: ``GET /usage/page`` with the customer's own API key (behind the
metering authorizer; 0 credits in the plan, like ``GET /usage``), and ``GET /portal?token=...`` with a signed
link instead (no key: the route is not behind the authorizer; ``tollgate.portal.links``).

The page is rendered by :mod:`tollgate.portal.page` from the same ``UsageReport`` as ``GET /usage``. A link
that does not open the page (missing, malformed, forged, expired, or a customer who is gone) is answered with
a page that says so, 401 or 403, and nothing else; the token and the secret are never logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlencode

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)

from tollgate.errors import InvalidInputError, NotFoundError
from tollgate.portal.links import ExpiredLinkError, LinkError, verify_link
from tollgate.portal.page import HEADERS, PeriodLink, render_error_page, render_usage_page
from tollgate.usage_api.observability import logger
from tollgate.usage_api.report import build_usage_report

if TYPE_CHECKING:
    from tollgate.usage_api.handler import Deps

PERIOD_DESCRIPTION = "Billing period, YYYY-MM (UTC calendar month). Default: the current period."
_HTML: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    "text/html": {"schema": {"type": "string"}}
}


def html(status: int, body: str) -> Response[str]:
    return Response(status, HEADERS["Content-Type"], body, dict(HEADERS))


def error_page(status: int, title: str, message: str) -> Response[str]:
    return html(status, render_error_page(title, message))


def page_answer(deps: Deps, customer_id: str, period: str | None, period_link: PeriodLink) -> Response[str]:
    """The page of ``customer_id``'s ``period``; a bad period is a 400 page that says what a period is."""
    try:
        report = build_usage_report(deps.store, customer_id, now=deps.clock(), period=period)
    except InvalidInputError as error:
        return error_page(400, "Not a billing period", str(error))
    return html(200, render_usage_page(report, period_link=period_link))


def portal_answer(deps: Deps, token: str | None, period: str | None) -> Response[str]:
    """``GET /portal``: the page of the customer ``token`` was signed for, while it is valid."""
    secret = deps.portal_link_secret()
    if not secret:
        logger.error("portal link secret not configured")
        return error_page(503, "Usage page unavailable", "The usage page is not available right now.")
    try:
        link = verify_link(secret, token, now=deps.clock())
    except LinkError as error:
        expired = isinstance(error, ExpiredLinkError)
        logger.info("portal link refused", reason="expired" if expired else "invalid")
        return error_page(
            401 if expired else 403, "Link expired" if expired else "Link not valid", str(error)
        )

    def period_link(other: str) -> str:
        return "?" + urlencode({"token": token, "period": other})

    try:
        return page_answer(deps, link.customer_id, period, period_link)
    except NotFoundError:  # signed for a customer who is gone: as good as no link
        logger.info("portal link refused", reason="unknown customer")
        return error_page(
            403, "Link not valid", "This link is not valid. Ask your API provider for a new one."
        )


def register_page_routes(
    app: ApiGatewayResolver, deps: Callable[[], Deps], customer: Callable[[], str]
) -> None:
    """``GET /usage/page`` (the calling customer, as the authorizer says: ``customer``), ``GET /portal``."""

    @app.get(
        "/usage/page",
        summary="The usage page (HTML)",
        description=(
            "The customer's usage page, self-contained HTML: credits per day, usage by route, the estimated "
            "bill, included credits, balance and budget, and invoices with their hosted invoice links. This "
            "route costs 0 credits."
        ),
        operation_id="getUsagePage",
        tags=["usage"],
        responses={
            200: {"description": "The usage page", "content": _HTML},
            400: {"description": "The period is not YYYY-MM (an HTML page says so)", "content": _HTML},
        },
    )
    def get_usage_page(
        period: Annotated[str | None, Query(description=PERIOD_DESCRIPTION, examples=["2026-11"])] = None,
    ) -> Response[str]:
        return page_answer(deps(), customer(), period, lambda other: "?" + urlencode({"period": other}))

    @app.get("/portal", include_in_schema=False)  # a signed link, not the keyed API (tollgate portal link)
    def get_portal(token: str | None = None, period: str | None = None) -> Response[str]:
        return portal_answer(deps(), token, period)
