"""Secrets (the Stripe API key, the webhook signing secret): the value itself in local use, else the Secrets
Manager secret named by an ARN, through Powertools Parameters, cached for five minutes in a warm Lambda.

Which value or ARN: the deployable's settings (``tollgate.billing.settings``,
``tollgate.billing.webhooks.settings``).
"""

from __future__ import annotations

SECRET_MAX_AGE_SECONDS = 300


class SecretNotConfiguredError(RuntimeError):
    pass


def read_secret(value: str | None, arn: str | None, *, names: tuple[str, str]) -> str:
    """``value`` if set, else the secret ``arn`` names; ``names`` are the settings to set when neither is."""
    if value:
        return value
    if not arn:
        raise SecretNotConfiguredError(f"set {names[0]} or {names[1]}")
    from aws_lambda_powertools.utilities import parameters

    return str(parameters.get_secret(arn, max_age=SECRET_MAX_AGE_SECONDS)).strip()
