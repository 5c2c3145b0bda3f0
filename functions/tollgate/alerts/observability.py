"""The logger of the alert and alert-webhook functions, created once (Powertools: JSON logs)."""

from __future__ import annotations

from aws_lambda_powertools import Logger

SERVICE = "tollgate-alerts"

logger = Logger(service=SERVICE)
