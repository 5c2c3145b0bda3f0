"""Tollgate's AWS CDK app: the constructs a stack assembles, and the ``MeteredApi`` a provider reuses.

Nothing is imported here on purpose: ``python -m tollgate.cdk.bundling`` and a local gateway reading
``infra.gateway_responses`` must not pay for loading aws-cdk-lib.
"""
