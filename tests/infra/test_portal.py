"""The usage page's infrastructure: the link signing secret (made by Secrets Manager, read by the usage
function only), its stack output, and the /portal route that a signed link opens without the authorizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_lambda as lambda_

from tests.infra.cfn import (
    allowed,
    function_by_handler,
    only,
    props,
    ref,
    resources,
    role_of,
    role_statements,
)
from tollgate import outputs
from tollgate.cdk import MeteredApi, constants


def _portal_secret(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return only(
        {
            lid: r
            for lid, r in resources(template, "AWS::SecretsManager::Secret").items()
            if lid.startswith("TollgateUsageApiPortalLinkSecret")
        }
    )


def test_the_link_secret_is_random_and_only_the_usage_function_reads_it(template: dict[str, Any]) -> None:
    secret_id, secret = _portal_secret(template)
    generated = props(secret)["GenerateSecretString"]
    assert generated["PasswordLength"] == 64
    assert generated["ExcludePunctuation"] is True

    usage_id, usage = function_by_handler(template, constants.HANDLER_USAGE_API)
    assert props(usage)["Environment"]["Variables"][constants.ENV_PORTAL_LINK_SECRET_ARN] == ref(secret_id)
    assert ("secretsmanager:GetSecretValue", ref(secret_id)) in list(
        allowed(role_statements(template, role_of(usage)))
    )
    readers = {
        lid
        for lid, function in resources(template, "AWS::Lambda::Function").items()
        if ref(secret_id) in [r for _, r in allowed(role_statements(template, role_of(function)))]
    }
    assert readers == {usage_id}


def test_the_stack_says_where_the_secret_and_the_page_are(template: dict[str, Any]) -> None:
    secret_id, _ = _portal_secret(template)
    found = template["Outputs"]

    assert found[outputs.PORTAL_LINK_SECRET_ARN]["Value"] == ref(secret_id)
    assert "/portal" in str(found[outputs.PORTAL_URL]["Value"])  # the sample API's stage URL for /portal


def test_an_http_api_portal_route_needs_no_authorizer(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigwv2.HttpApi(stack, "Api")
    usage = lambda_.Function(
        stack,
        "Usage",
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
    )
    metered = MeteredApi.for_http_api(stack, "Metered", api=api, authorizer_function=usage)
    metered.add_portal_route(usage)
    template = cdk.assertions.Template.from_stack(stack).to_json()

    _, route = only(resources(template, "AWS::ApiGatewayV2::Route"))
    assert props(route)["RouteKey"] == "GET /portal"
    assert props(route)["AuthorizationType"] == "NONE"
    assert "/portal" in str(template["Outputs"][outputs.PORTAL_URL]["Value"])
    assert metered.portal_url is not None
