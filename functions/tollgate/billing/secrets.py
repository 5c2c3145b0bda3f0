"""Secrets (the Stripe API key, the webhook signing secret): from an environment variable in local use, else
from Secrets Manager through Powertools Parameters, cached for five minutes in a warm Lambda."""

from __future__ import annotations

import os

SECRET_MAX_AGE_SECONDS = 300


class SecretNotConfiguredError(RuntimeError):
    pass


def read_secret(value_env: str, arn_env: str) -> str:
    """The secret in ``$value_env`` if set, else the Secrets Manager secret named by ``$arn_env``."""
    value = os.environ.get(value_env)
    if value:
        return value
    arn = os.environ.get(arn_env)
    if not arn:
        raise SecretNotConfiguredError(f"set {value_env} or {arn_env}")
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)).strip()
