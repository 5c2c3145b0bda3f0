"""Tollgate's CDK constructs for a provider's own app (``pip install "tollgate[cdk]"``).

- :class:`Tollgate`: the table, the metering authorizer, billing (period close, Stripe webhooks, dunning), the
  ``GET /usage`` function and monitoring;
- :class:`MeteredApi`: puts the authorizer (caching off) in front of routes of the provider's REST or HTTP
  API;
- :class:`UsageLedger`: every request's access-log record in S3, queryable with Athena
  (``MeteredApi(..., ledger=...)``, ``Tollgate(ledger=True)``);
- :class:`StripeRateLimits`: the Stripe account's rate limits the period close paces itself under
  (``Tollgate(stripe_rate_limits=StripeRateLimits.sandbox())``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tollgate.billing.close.settings import StripeRateLimits
    from tollgate.cdk.ledger import UsageLedger
    from tollgate.cdk.metering import MeteredApi
    from tollgate.cdk.tollgate import Tollgate

__all__ = ["MeteredApi", "StripeRateLimits", "Tollgate", "UsageLedger"]


def __getattr__(name: str) -> Any:
    """The constructs, imported on first use: ``python -m tollgate.cdk.bundling`` need not load aws-cdk."""
    if name == "MeteredApi":
        from tollgate.cdk.metering import MeteredApi

        return MeteredApi
    if name == "StripeRateLimits":
        from tollgate.billing.close.settings import StripeRateLimits

        return StripeRateLimits
    if name == "Tollgate":
        from tollgate.cdk.tollgate import Tollgate

        return Tollgate
    if name == "UsageLedger":
        from tollgate.cdk.ledger import UsageLedger

        return UsageLedger
    raise AttributeError(f"module 'tollgate.cdk' has no attribute {name!r}")
