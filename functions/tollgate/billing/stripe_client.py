"""The one way Tollgate reaches Stripe: the official library's ``StripeClient``.

The key and the base address come from :class:`~tollgate.billing.settings.StripeSettings` (the Lambda reads
the key from Secrets Manager through Powertools Parameters, cached 5 minutes). Only the base address and the
key differ between the offline Stripe double and real Stripe test mode: the code path is one.
"""

from __future__ import annotations

import stripe

from tollgate.billing.secrets import read_secret
from tollgate.billing.settings import STRIPE_API_KEY, STRIPE_API_KEY_SECRET_ARN, StripeSettings
from tollgate.errors import StripeCallError

REQUEST_TIMEOUT_SECONDS = 20
# stripe-python retries a request that failed to connect or timed out, an answer of 409 or 5xx, and one that
# carries ``Stripe-Should-Retry: true`` (lock timeouts), with a backoff of 0.5 s doubling up to 5 s
# (idempotency keys make the retries safe). It does NOT retry a rate-limited 429: it raises
# ``stripe.RateLimitError`` at once, and the close worker backs off itself (tollgate.billing.close.pacing).
MAX_NETWORK_RETRIES = 2


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


def is_rate_limited(error: BaseException) -> bool:
    """Stripe answered 429: too many requests (or a lock timeout), nothing was done; the same request may be
    sent again later. ``error`` is the library's, or a :class:`~tollgate.errors.StripeCallError` around it."""
    if isinstance(error, StripeCallError):
        return is_rate_limited(error.cause)
    return isinstance(error, stripe.RateLimitError)
