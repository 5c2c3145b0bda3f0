"""The one way Tollgate makes a Lambda function: python3.12 on arm64, its own log group, its own role.

Every role starts empty (no AWS managed policy) and gets exactly the statements its construct passes in,
plus writing to its own log group. Permissions are explicit ``iam.PolicyStatement``s, never ``grant_*``
helpers, so the template says what each function may do.

Every function gets its own asset, made from what its handler imports (``handler_code``, see
``tollgate.cdk.bundling``); ``code=`` overrides it (a provider's own backend, tests).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from tollgate.cdk.constants import (
    ENV_POWERTOOLS_METRICS_NAMESPACE,
    ENV_POWERTOOLS_SERVICE_NAME,
    METRICS_NAMESPACE,
)
from tollgate.cdk.nag import acknowledge

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
LOG_RETENTION = logs.RetentionDays.ONE_MONTH
# The assets are always built on the host (tollgate.cdk.bundling); the image is never pulled.
_NO_DOCKER = ["sh", "-c", "echo 'Tollgate builds its Lambda assets on the host, not in Docker' >&2; exit 1"]


def handler_code(handler: str) -> lambda_.Code:
    """The function's own asset: what ``handler`` imports, locked wheels for arm64, python3.12 bytecode.

    The import closure is computed here (an unknown import fails synth at once); the asset is built when the
    app synthesizes, on the host (CDK local bundling), once per distinct recipe. ``cdk.App(context=
    {"aws:cdk:bundling-stacks": []})`` skips the build (tests do). The asset's source directory holds only
    the recipe, so the asset hash changes exactly when a module, a pin or the bytecode setting does.
    """
    # Imported here: ``python -m tollgate.cdk.bundling`` must not find itself imported by the package.
    from tollgate.cdk import bundling

    recipe = bundling.recipe_for(handler)
    return lambda_.Code.from_asset(
        str(bundling.recipe_directory(recipe)),
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image,
            command=_NO_DOCKER,
            local=bundling.make_local_bundler(recipe),
        ),
    )


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
        reserved_concurrency: int | None = None,
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
            code=code or handler_code(handler),
            handler=handler,
            description=description,
            memory_size=memory_size,
            reserved_concurrent_executions=reserved_concurrency,
            timeout=timeout or cdk.Duration.seconds(10),
            role=self.role,
            log_group=self.log_group,
            # Lambda advanced logging: JSON, and the platform's own START/END/REPORT lines (INFO) dropped, so
            # an allowed request ingests no log bytes at all; the functions' own logs (Powertools) from INFO.
            logging_format=lambda_.LoggingFormat.JSON,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            # No active tracing: no handler uses a Tracer, and X-Ray would cost ~$5 per million requests.
            tracing=lambda_.Tracing.DISABLED,
            environment={
                ENV_POWERTOOLS_SERVICE_NAME: service_name,
                ENV_POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
                **(environment or {}),
            },
        )
        acknowledge(
            self.function,
            "AwsSolutions-L1",
            "Pinned to python3.12 on purpose: each asset is built from cp312 manylinux2014_aarch64 wheels "
            "pinned from uv.lock (pydantic-core is compiled) and compiled to python3.12 bytecode, and a "
            "runtime upgrade moves bundling, the lock and the test matrix together.",
        )
