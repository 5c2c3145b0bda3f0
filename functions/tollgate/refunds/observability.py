"""The refund function's logger and metrics, created once (Powertools: JSON logs, CloudWatch EMF)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

from tollgate.observability import METRICS_NAMESPACE

SERVICE = "tollgate-refunds"

# Metric names (namespace Tollgate), once per ledger object:
REFUNDED_REQUESTS = "RefundedRequests"  # failed requests refunded now
REFUNDED_CREDITS = "RefundedCredits"  # their credits
DUPLICATE_REFUNDS = "DuplicateRefunds"  # records of requests refunded before (a redelivery): nothing changed
REFUNDS_SKIPPED = "RefundsSkipped"  # failed requests that could not be refunded (the log says why)
MALFORMED_RECORDS = "MalformedLedgerRecords"  # lines of a ledger object that are not a ledger record

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
