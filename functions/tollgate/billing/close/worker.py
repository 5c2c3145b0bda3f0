"""Period close worker: each SQS message closes one customer-period
(``tollgate.billing.close.service.run_close``).

Records are processed one by one with Powertools' batch utility, which reports the failed ones
(``batchItemFailures``) so only those return to the queue; after the queue's maximum receive count a message
lands in the close DLQ. Closing is idempotent, so a duplicate or retried message bills nothing twice.

Environment: ``TABLE_NAME``; ``STRIPE_API_KEY_SECRET_ARN`` (or ``STRIPE_API_KEY``; ``STRIPE_API_BASE`` for the
Stripe double). Metrics (namespace Tollgate): ``StripeFailures``, ``InvoicesFinalized``, ``TotalMismatch``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.messages import CloseRequest
from tollgate.billing.close.observability import (
    INVOICES_FINALIZED,
    STRIPE_FAILURES,
    TOTAL_MISMATCH,
    logger,
    metrics,
)
from tollgate.billing.close.service import Ledger, run_close
from tollgate.billing.invoicing import StripeCallError, StripeClientInvoicing, StripeInvoicing
from tollgate.billing.stripe_client import make_stripe_client
from tollgate.dal.store import TollgateStore

copy_config_to_registered_loggers(source_logger=logger, include={"period_close"})

processor = BatchProcessor(event_type=EventType.SQS)
clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # noqa: E731 - replaced in tests


@dataclass(frozen=True)
class Services:
    ledger: Ledger
    invoicing: StripeInvoicing


@functools.cache
def services() -> Services:
    """Built once per execution environment (the Stripe key is read from Secrets Manager, cached)."""
    return Services(DynamoLedger(TollgateStore()), StripeClientInvoicing(make_stripe_client()))


def close_record(record: SQSRecord) -> None:
    try:
        request = CloseRequest.model_validate_json(record.body)
    except ValidationError:
        logger.exception("malformed close message", extra={"message_id": record.message_id})
        raise
    deps = services()
    context = {"customer_id": request.customer_id, "period": request.period, "message_id": record.message_id}
    try:
        outcome = run_close(deps.ledger, deps.invoicing, request.customer_id, request.period, now=clock())
    except StripeCallError as error:
        metrics.add_metric(name=STRIPE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error("Stripe call failed; the close will be retried", extra={**context, "error": str(error)})
        raise
    except Exception:
        logger.exception("close failed; it will be retried", extra=context)
        raise
    closed = outcome.record
    if outcome.finalized_now:
        metrics.add_metric(name=INVOICES_FINALIZED, unit=MetricUnit.Count, value=1)
        if closed.total_mismatch:
            metrics.add_metric(name=TOTAL_MISMATCH, unit=MetricUnit.Count, value=1)
            logger.error(
                "Stripe's invoice total differs from the statement total",
                extra={**context, "invoice_id": closed.stripe_invoice_id, "statement_total": closed.total},
            )
    logger.info(
        "customer period closed",
        extra={
            **context,
            "status": closed.status.value,
            "total": closed.total,
            "currency": closed.statement.currency,
            "invoice_id": closed.stripe_invoice_id,
        },
    )


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    answer = process_partial_response(event, close_record, processor, context)
    return dict(answer)
