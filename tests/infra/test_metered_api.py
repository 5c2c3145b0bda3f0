"""MeteredApi in a provider's own app, on both API kinds: routes behind the authorizer, caching off."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_lambda as lambda_

from tests.infra.cfn import get_att, only, props, ref, referenced_ids, resources
from tests.infra.conftest import IMPORTED_AUTHORIZER_ARN, ProviderApps
from tollgate.cdk.metering import MeteredApi
from tollgate.metering import gateway_responses


@pytest.fixture(scope="module")
def rest(provider_apps: ProviderApps) -> dict[str, Any]:
    return provider_apps.rest.template


@pytest.fixture(scope="module")
def http(provider_apps: ProviderApps) -> dict[str, Any]:
    return provider_apps.http.template


# --- REST API ------------------------------------------------------------------------------------------


def test_rest_authorizer_is_an_uncached_request_authorizer_without_identity_source(
    rest: dict[str, Any],
) -> None:
    _, authorizer = only(resources(rest, "AWS::ApiGateway::Authorizer"))
    assert props(authorizer)["Type"] == "REQUEST"
    assert props(authorizer)["AuthorizerResultTtlInSeconds"] == 0
    assert "IdentitySource" not in props(authorizer)
    assert IMPORTED_AUTHORIZER_ARN in str(props(authorizer)["AuthorizerUri"])


def test_rest_routes_all_use_the_authorizer(rest: dict[str, Any]) -> None:
    authorizer_id, _ = only(resources(rest, "AWS::ApiGateway::Authorizer"))
    methods = resources(rest, "AWS::ApiGateway::Method")
    assert sorted(props(m)["HttpMethod"] for m in methods.values()) == ["GET", "POST"]
    for logical_id, method in methods.items():
        assert props(method)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(method)["AuthorizerId"] == ref(authorizer_id), logical_id
    path_parts = {props(r)["PathPart"] for r in resources(rest, "AWS::ApiGateway::Resource").values()}
    assert path_parts == {"v1", "items", "{id}"}


def test_rest_imported_authorizer_gets_an_invoke_permission(rest: dict[str, Any]) -> None:
    authorizer_id, _ = only(resources(rest, "AWS::ApiGateway::Authorizer"))
    permissions = [
        props(p)
        for p in resources(rest, "AWS::Lambda::Permission").values()
        if props(p)["FunctionName"] == IMPORTED_AUTHORIZER_ARN
    ]
    assert len(permissions) == 1
    assert permissions[0]["Principal"] == "apigateway.amazonaws.com"
    assert authorizer_id in referenced_ids(permissions[0]["SourceArn"])


def test_rest_gateway_responses(rest: dict[str, Any]) -> None:
    deployed = {
        props(r)["ResponseType"]: props(r)
        for r in resources(rest, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(deployed) == set(gateway_responses.BY_TYPE)
    for response_type, response in gateway_responses.BY_TYPE.items():
        assert deployed[response_type]["StatusCode"] == str(response.status_code)
        assert deployed[response_type]["ResponseTemplates"] == {"application/json": response.template()}


# --- HTTP API --------------------------------------------------------------------------------------------


def test_http_authorizer_is_simple_uncached_payload_2(http: dict[str, Any]) -> None:
    _, authorizer = only(resources(http, "AWS::ApiGatewayV2::Authorizer"))
    config = props(authorizer)
    assert config["AuthorizerType"] == "REQUEST"
    assert config["AuthorizerResultTtlInSeconds"] == 0
    assert config["EnableSimpleResponses"] is True
    assert config["AuthorizerPayloadFormatVersion"] == "2.0"
    assert config.get("IdentitySource", []) == []


def test_http_routes_all_use_the_authorizer(http: dict[str, Any]) -> None:
    authorizer_id, authorizer = only(resources(http, "AWS::ApiGatewayV2::Authorizer"))
    routes = resources(http, "AWS::ApiGatewayV2::Route")
    assert sorted(props(r)["RouteKey"] for r in routes.values()) == ["GET /v1/search", "POST /v1/generate"]
    for logical_id, route in routes.items():
        assert props(route)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(route)["AuthorizerId"] == ref(authorizer_id), logical_id
    (function_id,) = referenced_ids(props(authorizer)["AuthorizerUri"])
    _, function = only(
        {lid: f for lid, f in resources(http, "AWS::Lambda::Function").items() if lid == function_id}
    )
    assert props(function)["Handler"] == "index.handler"


def test_http_authorizer_function_gets_an_invoke_permission(http: dict[str, Any]) -> None:
    authorizer_id, authorizer = only(resources(http, "AWS::ApiGatewayV2::Authorizer"))
    (function_id,) = referenced_ids(props(authorizer)["AuthorizerUri"])
    permissions = [
        props(p)
        for p in resources(http, "AWS::Lambda::Permission").values()
        if props(p)["FunctionName"] == get_att(function_id)
    ]
    assert len(permissions) == 1
    assert permissions[0]["Principal"] == "apigateway.amazonaws.com"
    assert authorizer_id in referenced_ids(permissions[0]["SourceArn"])


# --- construct-time checks (nothing synthesized) -------------------------------------------------------


def _function(stack: cdk.Stack, id: str) -> lambda_.Function:
    return lambda_.Function(
        stack,
        id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler="index.handler",
        code=lambda_.Code.from_inline("def handler(event, context):\n    return None\n"),
    )


def test_one_metered_api_per_rest_api(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(stack, "Api")
    authorizer = _function(stack, "Authorizer")
    MeteredApi.for_rest_api(stack, "First", api=api, authorizer_function=authorizer)
    with pytest.raises(ValueError, match="one per REST API"):
        MeteredApi.for_rest_api(stack, "Second", api=api, authorizer_function=authorizer)


def test_integration_kind_must_match_the_api(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    backend = _function(stack, "Backend")
    rest = MeteredApi.for_rest_api(
        stack, "Rest", api=apigw.RestApi(stack, "RestApi"), authorizer_function=_function(stack, "A1")
    )
    http = MeteredApi.for_http_api(
        stack, "Http", api=apigwv2.HttpApi(stack, "HttpApi"), authorizer_function=_function(stack, "A2")
    )
    with pytest.raises(TypeError, match=r"apigateway\.Integration"):
        rest.add_route("GET", "/x", apigwv2_integrations.HttpLambdaIntegration("I", backend))
    with pytest.raises(TypeError, match="HttpRouteIntegration"):
        http.add_route("GET", "/x", apigw.LambdaIntegration(backend))
    with pytest.raises(ValueError, match="starts with '/'"):
        http.add_function_route("GET", "x", backend)
    with pytest.raises(ValueError, match="unknown HTTP method"):
        rest.add_function_route("FETCH", "/x", backend)
    assert rest.routes == []
    assert http.routes == []


def test_rejects_something_that_is_not_an_api(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    with pytest.raises(TypeError, match=r"REST API or an apigatewayv2 HTTP API"):
        MeteredApi(stack, "Nope", api=stack, authorizer_function=_function(stack, "A"))  # type: ignore[arg-type]


# --- APIs the provider imports, responses they already have, the usage route ------------------------------


def _template(stack: cdk.Stack) -> dict[str, Any]:
    from aws_cdk.assertions import Template

    template: dict[str, Any] = Template.from_stack(stack).to_json()
    return template


def test_imported_rest_api_is_metered_and_deployed_to_its_stage(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi.from_rest_api_attributes(
        stack, "Existing", rest_api_id="a1b2c3", root_resource_id="r00t"
    )
    metered = MeteredApi(
        stack, "Metered", api=api, authorizer_function=_function(stack, "A"), deploy_to_stage="prod"
    )
    metered.add_function_route("GET", "/v1/items/{id}", _function(stack, "Items"))
    metered.add_usage_route(_function(stack, "Usage"))
    template = _template(stack)

    authorizer_id, authorizer = only(resources(template, "AWS::ApiGateway::Authorizer"))
    assert props(authorizer)["RestApiId"] == "a1b2c3"
    assert props(authorizer)["AuthorizerResultTtlInSeconds"] == 0
    methods = resources(template, "AWS::ApiGateway::Method")
    assert sorted(props(m)["HttpMethod"] for m in methods.values()) == ["GET", "GET"]
    for logical_id, method in methods.items():
        assert props(method)["RestApiId"] == "a1b2c3", logical_id
        assert props(method)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(method)["AuthorizerId"] == ref(authorizer_id), logical_id
    types = {
        props(r)["ResponseType"] for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert types == {r.response_type for r in gateway_responses.GATEWAY_RESPONSES}
    _, deployment = only(resources(template, "AWS::ApiGateway::Deployment"))
    assert props(deployment)["StageName"] == "prod"
    assert set(deployment["DependsOn"]) >= set(methods)  # published after every metered method exists


def test_a_new_route_on_an_imported_rest_api_makes_a_new_deployment(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    def deployment_id(paths: list[str]) -> str:
        stack = fresh_stack()
        api = apigw.RestApi.from_rest_api_attributes(
            stack, "Existing", rest_api_id="a1", root_resource_id="r"
        )
        metered = MeteredApi(
            stack, "Metered", api=api, authorizer_function=_function(stack, "A"), deploy_to_stage="prod"
        )
        for path in paths:
            metered.add_function_route("GET", path, _function(stack, "F" + str(len(path))))
        logical_id, _ = only(resources(_template(stack), "AWS::ApiGateway::Deployment"))
        return logical_id

    assert deployment_id(["/a"]) == deployment_id(["/a"])
    assert deployment_id(["/a"]) != deployment_id(["/a", "/bb"])


def test_imported_http_api_is_metered(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigwv2.HttpApi.from_http_api_attributes(stack, "Existing", http_api_id="h77")
    metered = MeteredApi.for_http_api(stack, "Metered", api=api, authorizer_function=_function(stack, "A"))
    metered.add_function_route("POST", "/v1/generate", _function(stack, "Generate"))
    metered.add_usage_route(_function(stack, "Usage"))
    template = _template(stack)

    authorizer_id, authorizer = only(resources(template, "AWS::ApiGatewayV2::Authorizer"))
    assert props(authorizer)["ApiId"] == "h77"
    assert props(authorizer)["AuthorizerResultTtlInSeconds"] == 0
    routes = resources(template, "AWS::ApiGatewayV2::Route")
    assert sorted(props(r)["RouteKey"] for r in routes.values()) == ["GET /usage", "POST /v1/generate"]
    for logical_id, route in routes.items():
        assert props(route)["ApiId"] == "h77", logical_id
        assert props(route)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(route)["AuthorizerId"] == ref(authorizer_id), logical_id


def test_gateway_responses_the_provider_defined_are_kept(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(stack, "Api")
    api.add_gateway_response(
        "TheirDenied",
        type=apigw.ResponseType.ACCESS_DENIED,
        status_code="403",
        templates={"application/json": '{"message": "theirs"}'},
    )
    metered = MeteredApi(stack, "Metered", api=api, authorizer_function=_function(stack, "A"))
    metered.add_function_route("GET", "/v1/x", _function(stack, "X"))

    responses = [props(r) for r in resources(_template(stack), "AWS::ApiGateway::GatewayResponse").values()]
    denied = [r for r in responses if r["ResponseType"] == "ACCESS_DENIED"]
    assert denied == [
        {
            "ResponseType": "ACCESS_DENIED",
            "RestApiId": ref(only(resources(_template(stack), "AWS::ApiGateway::RestApi"))[0]),
            "StatusCode": "403",
            "ResponseTemplates": {"application/json": '{"message": "theirs"}'},
        }
    ]
    assert metered.skipped_gateway_responses == ["ACCESS_DENIED"]
    others = {r["ResponseType"] for r in responses} - {"ACCESS_DENIED"}
    assert others == {r.response_type for r in gateway_responses.GATEWAY_RESPONSES} - {"ACCESS_DENIED"}


def test_gateway_responses_can_be_left_out(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(stack, "Api")
    metered = MeteredApi(
        stack, "Metered", api=api, authorizer_function=_function(stack, "A"), gateway_responses=False
    )
    metered.add_function_route("GET", "/v1/x", _function(stack, "X"))
    assert resources(_template(stack), "AWS::ApiGateway::GatewayResponse") == {}


def test_deploy_to_stage_is_for_rest_apis(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    with pytest.raises(ValueError, match="REST APIs only"):
        MeteredApi(
            stack,
            "M",
            api=apigwv2.HttpApi(stack, "Api"),
            authorizer_function=_function(stack, "A"),
            deploy_to_stage="prod",
        )
