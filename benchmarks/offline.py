"""Shared by the benchmark scripts: import paths and an offline environment (no AWS, no Stripe reached)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LEAKING = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_PROFILE",
    "STRIPE_API_KEY",
    "STRIPE_API_BASE",
)


def go_offline() -> None:
    """Put the project on ``sys.path`` and give boto3 fake credentials; drop anything pointing elsewhere."""
    sys.path[:0] = [str(ROOT), str(ROOT / "functions")]
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        TABLE_NAME="tollgate-bench",
        POWERTOOLS_METRICS_NAMESPACE="Tollgate",
    )
    for name in LEAKING:
        os.environ.pop(name, None)
