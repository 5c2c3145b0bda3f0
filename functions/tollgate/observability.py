"""What every deployable's observability shares: the metrics namespace and the variables Powertools reads.

Each deployable creates its own Powertools ``Logger`` and ``Metrics`` once, with its service name and its
metric names, in its own module: ``tollgate.metering.observability``,
``tollgate.billing.close.observability``, ``tollgate.billing.webhooks.observability``,
``tollgate.usage_api.observability``. The CDK constructs import
those names (``tollgate.cdk.constants``) for the functions' environment, alarms and dashboards.

Standard library only: the authorizer imports this module. Tracing is off (no function uses a ``Tracer``).
"""

from __future__ import annotations

METRICS_NAMESPACE = "Tollgate"

# Read by Powertools itself; the CDK sets them on every function.
POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"
