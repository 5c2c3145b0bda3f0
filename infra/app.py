"""Builds the Tollgate CDK app: ``app.py`` (``cdk synth``) and the tests go through ``build_app``."""

from __future__ import annotations

import aws_cdk as cdk

from tollgate.cdk.constants import ID_STACK
from tollgate.cdk.nag import add_checks
from tollgate.cdk.stack import TollgateSettings, TollgateStack


def build_app(app: cdk.App, *, nag: bool = True) -> TollgateStack:
    """Add the Tollgate stack (settings from context) and the cdk-nag AwsSolutions checks to ``app``."""
    stack = TollgateStack(app, ID_STACK, settings=TollgateSettings.from_context(app))
    if nag:
        add_checks(app)
    return stack
