"""Builds the Tollgate CDK app: ``app.py`` (``cdk synth``) and the tests go through ``build_app``."""

from __future__ import annotations

import aws_cdk as cdk

from infra.constants import ID_STACK
from infra.nag import add_checks
from infra.stack import TollgateSettings, TollgateStack


def build_app(app: cdk.App, *, nag: bool = True) -> TollgateStack:
    """Add the Tollgate stack (settings from context) and the cdk-nag AwsSolutions checks to ``app``."""
    stack = TollgateStack(app, ID_STACK, settings=TollgateSettings.from_context(app))
    if nag:
        add_checks(app)
    return stack
