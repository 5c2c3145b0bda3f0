"""The one way Tollgate makes a Lambda function: python3.12 on arm64, its own log group, its own role.

Every role starts empty (no AWS managed policy) and gets exactly the statements its construct passes in,
plus writing to its own log group. Permissions are explicit ``iam.PolicyStatement``s, never ``grant_*``
helpers, so the template says what each function may do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct, IConstruct

from tollgate.cdk import bundling
from tollgate.cdk.constants import (
    ASSET_EXCLUDES,
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    FUNCTIONS_DIR,
    METRICS_NAMESPACE,
)
from tollgate.cdk.nag import acknowledge

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH

# One asset per stack. The value keeps the app alive so its id() cannot be reused by another app.
_CODE_BY_STACK: dict[tuple[int, str], tuple[IConstruct, lambda_.Code]] = {}


def function_code(scope: Construct) -> lambda_.Code:
    """The shared asset (``functions/`` + locked dependencies), one per stack, bundled without Docker.

    ``cdk.App(context={"aws:cdk:bundling-stacks": []})`` skips the bundling (tests do).
    """
    stack = cdk.Stack.of(scope)
    root = stack.node.root
    key = (id(root), stack.node.path)
    if key not in _CODE_BY_STACK:
        requirements = bundling.locked_requirements()
        code = lambda_.Code.from_asset(
            str(FUNCTIONS_DIR),
            exclude=list(ASSET_EXCLUDES),
            bundling=cdk.BundlingOptions(
                image=RUNTIME.bundling_image,
                platform="linux/arm64",
                command=bundling.docker_command(requirements),
                local=bundling.make_local_bundler(),
            ),
        )
        _CODE_BY_STACK[key] = (root, code)
    return _CODE_BY_STACK[key][1]


class TollgateFunction(Construct):
    """A Lambda function with a dedicated role and log group. ``function`` and ``role`` are the parts."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        handler: str,
        description: str,
        service_name: str,
        environment: Mapping[str, str] | None = None,
        statements: Sequence[iam.PolicyStatement] = (),
        memory_size: int = 256,
        timeout: cdk.Duration | None = None,
        code: lambda_.Code | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            retention=LOG_RETENTION,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{description} (Tollgate)",
            inline_policies={
                "Access": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="WriteOwnLogs",
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[self.log_group.log_group_arn],
                        ),
                        *statements,
                    ]
                )
            },
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            code=code or function_code(self),
            handler=handler,
            description=description,
            memory_size=memory_size,
            timeout=timeout or cdk.Duration.seconds(10),
            role=self.role,
            log_group=self.log_group,
            tracing=lambda_.Tracing.ACTIVE,
            environment={
                ENV_POWERTOOLS_SERVICE_NAME: service_name,
                ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
                **(environment or {}),
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: the bundle is built from cp312 manylinux2014_aarch64 wheels "
            "pinned in uv.lock (pydantic-core is compiled), and a runtime upgrade moves bundling, the lock "
            "and the test matrix together.",
        )
        # Active tracing makes CDK add xray:PutTraceSegments/PutTelemetryRecords to the role's default policy.
        tracing_policy = self.role.node.try_find_child("DefaultPolicy")
        if tracing_policy is not None:
            acknowledge(
                tracing_policy,
                "AwsSolutions-IAM5[Resource::*]",
                "X-Ray PutTraceSegments and PutTelemetryRecords do not support resource-level permissions; "
                "the wildcard resource is the only form IAM accepts for them "
                "(https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsx-ray.html).",
            )
