"""The period close's logger and metrics, created once (Powertools: JSON logs, CloudWatch EMF metrics)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

from tollgate.observability import METRICS_NAMESPACE

SERVICE = "tollgate-period-close"

# Metric names (namespace Tollgate): alarms and dashboards refer to these.
STRIPE_FAILURES = "StripeFailures"  # a Stripe call failed during a close (the message is retried)
INVOICES_FINALIZED = "InvoicesFinalized"  # an invoice was finalized and recorded (once per invoice)
TOTAL_MISMATCH = "TotalMismatch"  # Stripe's invoice total differs from our statement total

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
