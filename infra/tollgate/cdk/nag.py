"""cdk-nag (3.x) wiring: the AwsSolutions pack as a CDK validation plugin, and justified acknowledgements.

cdk-nag 3 reports through CDK's policy validation (``validation-report.json`` in the cloud assembly); a
finding is acknowledged with CDK's own ``Validations.of(scope).acknowledge(...)`` on the construct it concerns
or an ancestor. Findings with a qualifier (``AwsSolutions-IAM5[Resource::*]``) are acknowledged one by one.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

NAG_PACK_NAME = "AwsSolutions"


def add_checks(app: cdk.App) -> AwsSolutionsChecks:
    """Run the AwsSolutions rules on every stack of ``app`` at synth time."""
    checks = AwsSolutionsChecks(app, verbose=True)
    cdk.Validations.of(app).add_plugins(checks)
    return checks


def acknowledge(scope: IConstruct, rule_id: str, reason: str) -> None:
    """Acknowledge one cdk-nag finding on ``scope`` (and everything under it), with the reason on record."""
    if len(reason.split()) < 6:
        raise ValueError(f"acknowledging {rule_id} needs a real justification, got {reason!r}")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=rule_id, reason=reason))
