"""Session fixtures: the Tollgate app synthesized ONCE (bundling skipped), plus two small provider apps.

Synthesis runs the cdk-nag AwsSolutions checks (a CDK validation plugin). Failing synth on findings is turned
off here so the findings are read from the assembly's ``validation-report.json`` by ``test_checks.py``
instead of erroring every test at once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import cloud_assembly_schema as _  # noqa: F401  registers MetadataEntry: jsii's lazy lookup misses it in some test orders

from infra.app import TollgateStack, build_app
from tests.infra.cfn import cdk_json_context
from tollgate.cdk.metering import MeteredApi

INFRA_TESTS = Path(__file__).resolve().parent
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}
REPORT_INSTEAD_OF_FAILING = {"@aws-cdk/core:failSynthOnValidationErrors": False}
PROVIDER_ENV = cdk.Environment(account="111111111111", region="eu-west-1")
IMPORTED_AUTHORIZER_ARN = "arn:aws:lambda:eu-west-1:111111111111:function:Tollgate-AuthorizerFunction"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if INFRA_TESTS in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.infra)


def make_app(outdir: Path, **context: Any) -> cdk.App:
    """An app as ``cdk synth`` would make it from cdk.json, without bundling and without failing on nag."""
    return cdk.App(
        outdir=str(outdir),
        context={**cdk_json_context(), **SKIP_BUNDLING, **REPORT_INSTEAD_OF_FAILING, **context},
    )


@dataclass(frozen=True)
class Synthesized:
    stack: Any  # the Python stack object
    assembly_dir: Path
    template_path: Path
    template: dict[str, Any]
    artifact: Any  # aws_cdk.cx_api.CloudFormationStackArtifact

    def construct_metadata(self) -> dict[str, list[dict[str, Any]]]:
        """Construct path -> metadata entries of this stack (the assembly's ``<stack>.metadata.json``)."""
        manifest = json.loads((self.assembly_dir / "manifest.json").read_text())
        artifact = manifest["artifacts"][self.artifact.id]
        metadata_file = artifact.get("additionalMetadataFile")
        if metadata_file is None:
            return dict(artifact.get("metadata", {}))
        entries: dict[str, list[dict[str, Any]]] = json.loads((self.assembly_dir / metadata_file).read_text())
        return entries

    def validation_report(self) -> dict[str, Any]:
        report: dict[str, Any] = json.loads((self.assembly_dir / "validation-report.json").read_text())
        return report


def synthesize(app: cdk.App, stack: cdk.Stack) -> Synthesized:
    assembly = app.synth()
    artifact = assembly.get_stack_artifact(stack.artifact_id)
    template_path = Path(artifact.template_full_path)
    return Synthesized(
        stack=stack,
        assembly_dir=Path(assembly.directory),
        template_path=template_path,
        template=json.loads(template_path.read_text()),
        artifact=artifact,
    )


@pytest.fixture(scope="session")
def tollgate(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app of ``app.py`` (context from cdk.json), synthesized once for the whole session."""
    app = make_app(tmp_path_factory.mktemp("tollgate.out"))
    stack: TollgateStack = build_app(app)
    return synthesize(app, stack)


@pytest.fixture(scope="session")
def template(tollgate: Synthesized) -> dict[str, Any]:
    return tollgate.template


@dataclass(frozen=True)
class ProviderApps:
    rest: Synthesized
    http: Synthesized


def _inline_function(scope: cdk.Stack, id: str) -> lambda_.Function:
    return lambda_.Function(
        scope,
        id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {'statusCode': 200}\n"),
    )


@pytest.fixture(scope="session")
def provider_apps(tmp_path_factory: pytest.TempPathFactory) -> ProviderApps:
    """What a provider writes in their own CDK app: MeteredApi on a RestApi (authorizer imported by ARN, as
    from the Tollgate stack's ``AuthorizerFunctionArn`` output) and on an HttpApi (authorizer in the stack).
    """
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("providers.out")), context=SKIP_BUNDLING)

    rest_stack = cdk.Stack(app, "RestProvider", env=PROVIDER_ENV)
    rest_api = apigw.RestApi(rest_stack, "Api")
    rest_metered = MeteredApi.for_rest_api(
        rest_stack,
        "Metered",
        api=rest_api,
        authorizer_function=MeteredApi.authorizer_from_arn(rest_stack, "Authorizer", IMPORTED_AUTHORIZER_ARN),
    )
    rest_metered.add_function_route("GET", "/v1/items/{id}", _inline_function(rest_stack, "Items"))
    rest_metered.add_route(
        "POST",
        "/v1/items",
        apigw.MockIntegration(
            integration_responses=[apigw.IntegrationResponse(status_code="201")],
            request_templates={"application/json": '{"statusCode": 201}'},
        ),
    )

    http_stack = cdk.Stack(app, "HttpProvider", env=PROVIDER_ENV)
    http_api = apigwv2.HttpApi(http_stack, "Api")
    http_metered = MeteredApi.for_http_api(
        http_stack, "Metered", api=http_api, authorizer_function=_inline_function(http_stack, "Authorizer")
    )
    http_metered.add_function_route("GET", "/v1/search", _inline_function(http_stack, "Search"))
    http_metered.add_route(
        "POST",
        "/v1/generate",
        apigwv2_integrations.HttpLambdaIntegration("Generate", _inline_function(http_stack, "GenerateFn")),
    )

    return ProviderApps(rest=synthesize(app, rest_stack), http=synthesize(app, http_stack))


@pytest.fixture
def fresh_stack() -> Callable[[], cdk.Stack]:
    """A throwaway stack for construct-time checks (nothing is synthesized)."""

    def make() -> cdk.Stack:
        return cdk.Stack(cdk.App(context=SKIP_BUNDLING), "Scratch")

    return make
