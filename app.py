#!/usr/bin/env python3
"""The Tollgate CDK app (``make synth`` / ``npx cdk deploy``).

One stack, ``TollgateStack``: the table, the metering authorizer, billing (period close, Stripe webhooks,
dunning), monitoring, and an example provider API (``GET /v1/search``, ``POST /v1/generate``, ``GET /usage``)
metered through ``MeteredApi``. Context (``-c key=value``): ``stackName`` (default ``Tollgate``),
``closeGraceHours`` (hours after midnight UTC on the 1st, default 6), ``dunningGraceDays`` (default 7),
``sampleApi`` (default true).
"""

from __future__ import annotations

import aws_cdk as cdk

from infra.app import build_app


def main() -> None:
    app = cdk.App()
    build_app(app)
    app.synth()


if __name__ == "__main__":
    main()
