"""The usage API's logger, created once (Powertools: JSON logs). It emits no metrics of its own: every
request to it is counted by the authorizer like any other."""

from __future__ import annotations

from aws_lambda_powertools import Logger

SERVICE = "tollgate-usage-api"

logger = Logger(service=SERVICE)
