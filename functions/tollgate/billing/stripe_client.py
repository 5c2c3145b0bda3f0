"""The one way Tollgate reaches Stripe: the official library's ``StripeClient``.

Where the key comes from, in order: ``STRIPE_API_KEY`` (local use and the CLI), else the Secrets Manager
secret named by ``STRIPE_API_KEY_SECRET_ARN`` (Lambda: Powertools Parameters, cached 5 minutes).
``STRIPE_API_BASE`` points the client at another address (the offline Stripe double); unset, it is Stripe.
Only the base address and the key differ between the double and real Stripe test mode: the code path is one.
"""

from __future__ import annotations

import os

import stripe

from tollgate.billing.secrets import read_secret

REQUEST_TIMEOUT_SECONDS = 20


def stripe_api_key() -> str:
    return read_secret("STRIPE_API_KEY", "STRIPE_API_KEY_SECRET_ARN")


def make_stripe_client(api_key: str | None = None, base_url: str | None = None) -> stripe.StripeClient:
    key = api_key or stripe_api_key()
    base = base_url or os.environ.get("STRIPE_API_BASE")
    options: dict[str, object] = {
        "max_network_retries": 2,
        # Below the close worker's 60 s Lambda timeout (stripe-python's default is 80 s), so a hung call
        # fails inside the function and the message is retried, instead of the function being killed.
        "http_client": stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
    }
    if base:
        options["base_addresses"] = {"api": base}
    return stripe.StripeClient(key, **options)  # type: ignore[arg-type]
