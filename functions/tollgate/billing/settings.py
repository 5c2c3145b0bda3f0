"""How Tollgate reaches Stripe: the API key's environment variables, shared by the close worker and the CLI.

Where the key comes from, in order: ``STRIPE_API_KEY`` (local use and the CLI), else the Secrets Manager
secret named by ``STRIPE_API_KEY_SECRET_ARN`` (Lambda). ``STRIPE_API_BASE`` points the client at another
address (the offline Stripe double); unset, it is Stripe.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.settings import optional

STRIPE_API_KEY = "STRIPE_API_KEY"
STRIPE_API_KEY_SECRET_ARN = "STRIPE_API_KEY_SECRET_ARN"  # noqa: S105 - a name, not a secret
STRIPE_API_BASE = "STRIPE_API_BASE"


@dataclass(frozen=True)
class StripeSettings:
    api_key: str | None = None
    api_key_secret_arn: str | None = None
    api_base: str | None = None  # None: Stripe itself

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StripeSettings:
        return cls(
            api_key=optional(env, STRIPE_API_KEY),
            api_key_secret_arn=optional(env, STRIPE_API_KEY_SECRET_ARN),
            api_base=optional(env, STRIPE_API_BASE),
        )
