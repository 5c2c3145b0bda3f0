"""``GET /usage/export?period=YYYY-MM&format=csv``: the calling customer's usage of a period as CSV, one row
per day and route (``date,route,requests,credits``), behind the metering authorizer like ``GET /usage``
(0 credits in the plan: ``"GET /usage/export": 0``).

The rows come from the request ledger when the deployment keeps one (``Deps.ledger``: Athena over the Glue
table in AWS, DuckDB over the local gateway's directory locally), else from the counters' daily series under
the route ``*`` (``tollgate.ledger.export``). A period that is not ``YYYY-MM`` or a format other than csv is a
400 that says so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.exceptions import ServiceError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import (
    OpenAPIResponseContentModel,
    OpenAPIResponseContentSchema,
)

from tollgate.dal.refunds import RefundLedger
from tollgate.domain.periods import period_of
from tollgate.errors import InvalidInputError, NotFoundError, http_status
from tollgate.ledger.export import (
    CSV_FORMAT,
    CSV_MEDIA_TYPE,
    checked_export,
    daily_usage,
    daily_usage_csv,
    export_filename,
)
from tollgate.ledger.queries import LedgerQueryError
from tollgate.usage_api.observability import logger

if TYPE_CHECKING:
    from tollgate.usage_api.handler import Deps

_CSV: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    CSV_MEDIA_TYPE: {"schema": {"type": "string", "example": "date,route,requests,credits,refunded\r\n"}}
}
# the usage API's error body (tollgate.usage_api.handler.ErrorBody, a component of the same document)
_ERROR: dict[str, OpenAPIResponseContentSchema | OpenAPIResponseContentModel] = {
    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
}


def export_answer(deps: Deps, customer_id: str, period: str | None, export_format: str) -> Response[str]:
    """The CSV of ``customer_id``'s ``period`` (default: the current one), as an attachment."""
    period = period or period_of(deps.clock())
    try:
        checked_export(period, export_format)
        customer = deps.store.get_customer(customer_id)
        refunds = RefundLedger(deps.store).list(customer.id, period)
        rows = daily_usage(deps.ledger, deps.store, customer.id, period, customer.counter_shards, refunds)
    except (InvalidInputError, NotFoundError) as error:
        raise ServiceError(http_status(error), str(error)) from error
    except LedgerQueryError as error:  # the ledger is there but could not be read: the provider's to fix
        logger.error("ledger export failed", customer_id=customer_id, period=period, error=str(error))
        raise ServiceError(503, "the usage export is not available right now") from error
    headers = {"Content-Disposition": f'attachment; filename="{export_filename(customer.id, period)}"'}
    return Response(200, f"{CSV_MEDIA_TYPE}; charset=utf-8", daily_usage_csv(rows), headers)


def register_export_routes(
    app: ApiGatewayResolver, deps: Callable[[], Deps], customer: Callable[[], str]
) -> None:
    """``GET /usage/export`` for the calling customer (as the authorizer says: ``customer``)."""

    @app.get(
        "/usage/export",
        summary="Usage of a billing period as CSV, per day and route",
        description=(
            "One row per day (UTC) and route with metered requests: date,route,requests,credits, sorted by "
            "date then route; each request counted once, refused requests left out. Read from the request "
            "ledger (records land within about 5 minutes); a deployment without a ledger answers one row per "
            "day for all routes together (route *), from the counters. This route costs 0 credits."
        ),
        operation_id="exportUsage",
        tags=["usage"],
        responses={
            200: {
                "description": "The CSV, as an attachment (usage-{customer}-{period}.csv)",
                "content": _CSV,
            },
            400: {"description": "The period is not YYYY-MM, or the format is not csv", "content": _ERROR},
            503: {"description": "The ledger could not be read right now", "content": _ERROR},
        },
    )
    def export_usage(
        period: Annotated[
            str | None, Query(description="Billing period, YYYY-MM. Default: the current period.")
        ] = None,
        export_format: Annotated[
            str, Query(alias="format", description="Only csv.", examples=[CSV_FORMAT])
        ] = CSV_FORMAT,
    ) -> Response[str]:
        return export_answer(deps(), customer(), period, export_format)
