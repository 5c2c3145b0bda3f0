"""The credit expiry function's logger and metrics, created once (Powertools: JSON logs, CloudWatch EMF)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics

from tollgate.observability import METRICS_NAMESPACE

SERVICE = "tollgate-credit-expiry"

# Metric names (namespace Tollgate), once per sweep:
LOTS_SETTLED = "CreditLotsSettled"  # lots whose expiry was accounted for (0 credits expired included)
CREDITS_EXPIRED = "CreditsExpired"  # the unused credits those lots took out of balances
CUSTOMERS_LEFT = "CreditExpiryCustomersLeft"  # customers with a due lot left for the next sweep

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE)
