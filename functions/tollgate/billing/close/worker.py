"""Period close worker: each SQS message closes one customer-period
(``tollgate.billing.close.service.run_close``).

Records are processed one by one with Powertools' batch utility, which reports the failed ones
(``batchItemFailures``) so only those return to the queue; after the queue's maximum receive count a message
lands in the close DLQ. Closing is idempotent, so a duplicate or retried message bills nothing twice.

Every Stripe request waits for this execution environment's share of Stripe's rate limits, and a 429 is sent
again after a backoff, a bounded number of times per close (``tollgate.billing.close.pacing``): a rate limit
slows the close down, it does not fail the message.

Environment: ``tollgate.billing.close.settings.WorkerSettings``. Metrics (namespace Tollgate,
``tollgate.billing.close.observability``): ``InvoicesFinalized`` and ``ClosesNoCharge`` once per
customer-period (by the run that finalized or stored it), ``CloseFailures`` per failed attempt, of which
``StripeFailures`` those a Stripe call failed, ``StripeRateLimited`` per 429 sent again, and
``TotalMismatch``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from tollgate.billing.close.ledger import DynamoLedger, Ledger
from tollgate.billing.close.messages import CloseRequest
from tollgate.billing.close.observability import (
    CLOSE_FAILURES,
    CLOSES_NO_CHARGE,
    INVOICES_FINALIZED,
    STRIPE_FAILURES,
    STRIPE_RATE_LIMITED,
    TOTAL_MISMATCH,
    logger,
    metrics,
)
from tollgate.billing.close.pacing import Pacer, Pacing
from tollgate.billing.close.service import run_close
from tollgate.billing.close.settings import WorkerSettings
from tollgate.billing.invoicing import StripeClientInvoicing, StripeInvoicing
from tollgate.billing.stripe_client import stripe_client_from
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.errors import StripeCallError

copy_config_to_registered_loggers(source_logger=logger, include={"period_close"})

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
processor = BatchProcessor(event_type=EventType.SQS)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    ledger: Ledger
    invoicing: StripeInvoicing
    clock: Callable[[], datetime] = utc_now
    pacing: Pacing | None = None  # None: Stripe requests are sent unpaced, a 429 fails the close


def deps_from(settings: WorkerSettings) -> Deps:
    """The table's ledger, the Stripe client (its key read from Secrets Manager, cached) and this execution
    environment's pacer: its share of Stripe's rate limits among ``settings.fleet_size`` workers."""
    ledger = DynamoLedger(TollgateStore(settings.table_name))
    pacing = Pacing(Pacer(settings.stripe_limits, settings.fleet_size))
    return Deps(ledger, StripeClientInvoicing(stripe_client_from(settings.stripe)), pacing=pacing)


@cache
def default_deps() -> Deps:
    """Built once per execution environment, from the environment."""
    return deps_from(WorkerSettings.from_env())


def close_record(record: SQSRecord, deps: Deps) -> None:
    try:
        request = CloseRequest.model_validate_json(record.body)
    except ValidationError:
        metrics.add_metric(name=CLOSE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.exception("malformed close message", extra={"message_id": record.message_id})
        raise
    context = {"customer_id": request.customer_id, "period": request.period, "message_id": record.message_id}
    paced = None if deps.pacing is None else deps.pacing.for_close(deps.invoicing)
    try:
        now = deps.clock()
        gateway = deps.invoicing if paced is None else paced
        outcome = run_close(deps.ledger, gateway, request.customer_id, request.period, now=now)
    except StripeCallError as error:
        metrics.add_metric(name=CLOSE_FAILURES, unit=MetricUnit.Count, value=1)
        metrics.add_metric(name=STRIPE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.error("Stripe call failed; the close will be retried", extra={**context, "error": str(error)})
        raise
    except Exception:
        metrics.add_metric(name=CLOSE_FAILURES, unit=MetricUnit.Count, value=1)
        logger.exception("close failed; it will be retried", extra=context)
        raise
    finally:
        if paced is not None and paced.retries:
            metrics.add_metric(name=STRIPE_RATE_LIMITED, unit=MetricUnit.Count, value=paced.retries)
    closed = outcome.record
    if outcome.rated_now and closed.status is CloseStatus.NO_CHARGE:
        metrics.add_metric(name=CLOSES_NO_CHARGE, unit=MetricUnit.Count, value=1)
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
            "rate_limit_retries": 0 if paced is None else paced.retries,
        },
    )


def make_handler(deps: Deps | None = None) -> Handler:
    """The worker over ``deps`` (default: :func:`default_deps`, built on the first invocation)."""

    @logger.inject_lambda_context
    @metrics.log_metrics
    def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        answer = process_partial_response(event, partial(close_record, deps=wired), processor, context)
        return dict(answer)

    return handle


handler = make_handler()
