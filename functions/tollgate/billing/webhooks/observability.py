"""The logger of the webhook function and the dunning sweeper, created once (Powertools: JSON logs).

Neither emits metrics: what they change is in the table's audit trail.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

SERVICE = "tollgate-webhooks"

logger = Logger(service=SERVICE)
