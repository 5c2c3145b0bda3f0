"""The authorizer's logger and metrics, created once (Powertools: JSON logs, CloudWatch EMF metrics).

The happy path writes no log line and no metric (the counter is the record): metrics are added only for a
refused, unmetered or possibly miscounted request, and ``@metrics.log_metrics`` flushes nothing when none
were added. Powertools warns about such an empty flush on every call; that warning is silenced here, for this
hot path's sake.
"""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics

from tollgate.observability import METRICS_NAMESPACE

SERVICE = "tollgate-authorizer"

# Metric names (namespace Tollgate): alarms and dashboards refer to these.
METERING_FAILURES = "MeteringFailures"  # refused because DynamoDB failed (fail closed)
# A counter write sent whose answer was lost (timeout after sending): the request may have been counted though
# it was refused (also a MeteringFailure) or served unmetered (FAIL_OPEN). Never retried; logged to reconcile.
METERING_OUTCOME_UNKNOWN = "MeteringOutcomeUnknown"
UNMETERED_REQUESTS = "UnmeteredRequests"  # allowed without being counted (FAIL_OPEN=true)
DENIED_PREFIX = "Denied_"  # one metric per reason: Denied_invalid_api_key, Denied_credit_limit_reached, ...

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)

warnings.filterwarnings("ignore", message="No application metrics to publish")
