"""Tollgate: usage-based billing for APIs on AWS.

- ``tollgate.domain``: plans, money, periods, rating, closes, dunning (plain models and pure functions);
- ``tollgate.dal``: the DynamoDB table (every key, item shape and ``ClientError`` mapping);
- ``tollgate.errors``: every error handled by type; ``tollgate.settings`` and ``tollgate.observability``: what
  each deployable's own ``settings.py`` and ``observability.py`` share;
- ``tollgate.metering``: the authorizer, the hot path;
- ``tollgate.billing``: period close, Stripe invoicing, webhooks, dunning: the money path;
- ``tollgate.usage_api``, ``tollgate.accounts``, ``tollgate.cli``;
- ``tollgate.cdk``: the CDK constructs (``pip install tollgate[cdk]``).

Nothing is imported here: the authorizer imports a few standard-library-only modules of this package and
must not pay for pydantic or stripe at cold start.
"""

import os as _os

# In a source checkout the CDK constructs live apart from the Lambda code, in infra/tollgate/cdk (the wheel
# installs them here, as tollgate/cdk). One stat call where that directory does not exist.
_checkout_constructs = _os.path.join(
    _os.path.dirname(_os.path.dirname(_os.path.dirname(__file__))), "infra", "tollgate"
)
if _os.path.isdir(_os.path.join(_checkout_constructs, "cdk")):
    __path__.append(_checkout_constructs)
