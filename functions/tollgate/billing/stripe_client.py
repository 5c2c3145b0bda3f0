"""The one way Tollgate reaches Stripe: the official library's ``StripeClient``.

The key and the base address come from :class:`~tollgate.billing.settings.StripeSettings` (the Lambda reads
the key from Secrets Manager through Powertools Parameters, cached 5 minutes). Only the base address and the
key differ between the offline Stripe double and real Stripe test mode: the code path is one.
"""

from __future__ import annotations

import stripe

from tollgate.billing.secrets import read_secret
from tollgate.billing.settings import STRIPE_API_KEY, STRIPE_API_KEY_SECRET_ARN, StripeSettings

REQUEST_TIMEOUT_SECONDS = 20
MAX_NETWORK_RETRIES = 2  # stripe-python retries with backoff (idempotency keys make the retries safe)


def stripe_client_from(settings: StripeSettings) -> stripe.StripeClient:
    names = (STRIPE_API_KEY, STRIPE_API_KEY_SECRET_ARN)
    key = read_secret(settings.api_key, settings.api_key_secret_arn, names=names)
    return make_stripe_client(key, settings.api_base)


def make_stripe_client(api_key: str, base_url: str | None = None) -> stripe.StripeClient:
    options: dict[str, object] = {
        "max_network_retries": MAX_NETWORK_RETRIES,
        # Bounds one request (stripe-python's default is 80 s); the close worker's timeout is budgeted from
        # it (tollgate.cdk.constants), so a hung call fails inside the function and the close is retried.
        "http_client": stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    }
    if base_url:
        options["base_addresses"] = {"api": base_url}
    return stripe.StripeClient(api_key, **options)  # type: ignore[arg-type]
