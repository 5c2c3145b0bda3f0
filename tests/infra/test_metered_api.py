"""MeteredApi in a provider's own app, on both API kinds: routes behind the authorizer, caching off."""

from __future__ import annotations

import json
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
from tollgate.cdk.metering import DEFAULT_THROTTLE, MeteredApi, Throttle
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
    # /v1/items/{id}; /usage; GET /usage/export and /usage/page; GET, PUT /usage/budget and /usage/alerts;
    # GET, PUT, DELETE /usage/alerts/webhook
    assert sorted(props(m)["HttpMethod"] for m in methods.values()) == [
        "DELETE",
        "GET",
        "GET",
        "GET",
        "GET",
        "GET",
        "GET",
        "GET",
        "PUT",
        "PUT",
        "PUT",
    ]
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
    assert sorted(props(r)["RouteKey"] for r in routes.values()) == [
        "DELETE /usage/alerts/webhook",
        "GET /usage",
        "GET /usage/alerts",
        "GET /usage/alerts/webhook",
        "GET /usage/budget",
        "GET /usage/export",
        "GET /usage/page",
        "POST /v1/generate",
        "PUT /usage/alerts",
        "PUT /usage/alerts/webhook",
        "PUT /usage/budget",
    ]
    for logical_id, route in routes.items():
        assert props(route)["ApiId"] == "h77", logical_id
        assert props(route)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(route)["AuthorizerId"] == ref(authorizer_id), logical_id


def test_the_usage_route_serves_what_a_customer_sets_under_its_path(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(stack, "Api", deploy=False)
    metered = MeteredApi(stack, "Metered", api=api, authorizer_function=_function(stack, "A"))
    usage = _function(stack, "Usage")
    metered.add_usage_route(usage, "/v2/usage/")
    template = _template(stack)

    def route_of(method: dict[str, Any]) -> tuple[str, str]:
        parts: list[str] = []
        resource_ref = props(method)["ResourceId"]
        while "Ref" in resource_ref:
            resource = template["Resources"][resource_ref["Ref"]]
            parts.append(props(resource)["PathPart"])
            resource_ref = props(resource)["ParentId"]
        return props(method)["HttpMethod"], "/" + "/".join(reversed(parts))

    methods = resources(template, "AWS::ApiGateway::Method").values()
    routes = {route_of(method): referenced_ids(props(method)["Integration"]["Uri"]) for method in methods}
    (usage_id,) = {i for i in resources(template, "AWS::Lambda::Function") if i.startswith("Usage")}
    assert routes == {
        route: {usage_id}
        for route in [
            ("GET", "/v2/usage"),
            ("GET", "/v2/usage/export"),
            ("GET", "/v2/usage/page"),
            ("GET", "/v2/usage/budget"),
            ("PUT", "/v2/usage/budget"),
            ("GET", "/v2/usage/alerts"),
            ("PUT", "/v2/usage/alerts"),
            ("GET", "/v2/usage/alerts/webhook"),
            ("PUT", "/v2/usage/alerts/webhook"),
            ("DELETE", "/v2/usage/alerts/webhook"),
        ]
    }
    for method in methods:
        assert props(method)["AuthorizationType"] == "CUSTOM"


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


# --- floods are bounded: stage throttling and the optional WAF rate limit ---------------------------------


def _throttle_of(setting: dict[str, Any]) -> tuple[Any, Any]:
    return setting.get("ThrottlingRateLimit"), setting.get("ThrottlingBurstLimit")


def _stage_method_settings(template: dict[str, Any]) -> list[dict[str, Any]]:
    _, stage = only(resources(template, "AWS::ApiGateway::Stage"))
    settings: list[dict[str, Any]] = props(stage).get("MethodSettings", [])
    return settings


def test_rest_stage_is_throttled_by_default(rest: dict[str, Any]) -> None:
    (setting,) = _stage_method_settings(rest)
    assert (setting["ResourcePath"], setting["HttpMethod"]) == ("/*", "*")
    assert _throttle_of(setting) == (DEFAULT_THROTTLE.rate_limit, DEFAULT_THROTTLE.burst_limit)


def test_http_default_stage_is_throttled_by_default(http: dict[str, Any]) -> None:
    _, stage = only(resources(http, "AWS::ApiGatewayV2::Stage"))
    assert props(stage)["StageName"] == "$default"
    assert _throttle_of(props(stage)["DefaultRouteSettings"]) == (1000, 2000)


def test_the_default_throttle_is_documented_and_sane() -> None:
    assert Throttle(rate_limit=1000, burst_limit=2000) == DEFAULT_THROTTLE
    assert DEFAULT_THROTTLE.rate_limit < 10_000  # the account's regional API Gateway quota
    with pytest.raises(ValueError, match="positive"):
        Throttle(rate_limit=0, burst_limit=10)
    with pytest.raises(ValueError, match="positive"):
        Throttle(rate_limit=10, burst_limit=0)


def test_rest_throttle_can_be_set_and_merges_with_the_stages_own_settings(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(
        stack,
        "Api",
        deploy_options=apigw.StageOptions(
            stage_name="live",
            logging_level=apigw.MethodLoggingLevel.ERROR,
            data_trace_enabled=False,
            method_options={"/v1/x/GET": apigw.MethodDeploymentOptions(throttling_rate_limit=5)},
        ),
    )
    metered = MeteredApi(
        stack, "Metered", api=api, authorizer_function=_function(stack, "A"), throttle=Throttle(50, 80)
    )
    metered.add_function_route("GET", "/v1/x", _function(stack, "X"))

    settings = _stage_method_settings(_template(stack))
    everything = [s for s in settings if (s["ResourcePath"], s["HttpMethod"]) == ("/*", "*")]
    assert everything == [
        {
            "DataTraceEnabled": False,
            "HttpMethod": "*",
            "LoggingLevel": "ERROR",
            "ResourcePath": "/*",
            "ThrottlingBurstLimit": 80,
            "ThrottlingRateLimit": 50,
        }
    ]
    (own,) = [s for s in settings if s["ResourcePath"] != "/*"]
    assert own["ThrottlingRateLimit"] == 5  # the app's per-method setting is untouched
    assert metered.throttle == Throttle(50, 80)


def test_a_throttle_the_app_set_on_its_stage_is_kept(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(
        stack,
        "Api",
        deploy_options=apigw.StageOptions(throttling_rate_limit=500, throttling_burst_limit=1000),
    )
    http = apigwv2.HttpApi(stack, "TheirHttpApi")
    assert http.default_stage is not None
    default_stage = http.default_stage.node.default_child
    assert isinstance(default_stage, apigwv2.CfnStage)
    default_stage.default_route_settings = apigwv2.CfnStage.RouteSettingsProperty(throttling_rate_limit=7)
    rest_metered = MeteredApi(stack, "Rest", api=api, authorizer_function=_function(stack, "A1"))
    http_metered = MeteredApi(stack, "HttpMetered", api=http, authorizer_function=_function(stack, "A2"))
    rest_metered.add_function_route("GET", "/v1/x", _function(stack, "X"))
    template = _template(stack)

    (setting,) = _stage_method_settings(template)
    assert _throttle_of(setting) == (500, 1000)
    _, http_stage = only(resources(template, "AWS::ApiGatewayV2::Stage"))
    assert _throttle_of(props(http_stage)["DefaultRouteSettings"]) == (7, None)
    assert rest_metered.throttle is None
    assert http_metered.throttle is None


def test_throttle_none_leaves_the_stages_alone(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    rest = MeteredApi(
        stack,
        "Rest",
        api=apigw.RestApi(stack, "Api"),
        authorizer_function=_function(stack, "A1"),
        throttle=None,
    )
    rest.add_function_route("GET", "/v1/x", _function(stack, "X"))
    MeteredApi.for_http_api(
        stack,
        "Http",
        api=apigwv2.HttpApi(stack, "HttpApi"),
        authorizer_function=_function(stack, "A2"),
        throttle=None,
    )
    template = _template(stack)

    assert _stage_method_settings(template) == []
    _, http_stage = only(resources(template, "AWS::ApiGatewayV2::Stage"))
    assert "DefaultRouteSettings" not in props(http_stage)


def test_imported_apis_stages_are_the_providers(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    rest_api = apigw.RestApi.from_rest_api_attributes(
        stack, "Rest", rest_api_id="a1b2c3", root_resource_id="r"
    )
    rest = MeteredApi(
        stack, "M1", api=rest_api, authorizer_function=_function(stack, "A1"), deploy_to_stage="prod"
    )
    rest.add_function_route("GET", "/v1/x", _function(stack, "X"))
    http_api = apigwv2.HttpApi.from_http_api_attributes(stack, "Http", http_api_id="h77")
    http = MeteredApi.for_http_api(stack, "M2", api=http_api, authorizer_function=_function(stack, "A2"))
    undeployed = apigw.RestApi(stack, "Undeployed", deploy=False)
    manual = MeteredApi(stack, "M3", api=undeployed, authorizer_function=_function(stack, "A3"))
    manual.add_function_route("GET", "/v1/y", _function(stack, "Y"))
    template = _template(stack)

    assert resources(template, "AWS::ApiGateway::Stage") == {}
    assert resources(template, "AWS::ApiGatewayV2::Stage") == {}
    assert (rest.throttle, http.throttle, manual.throttle) == (None, None, None)


def test_waf_rate_limit_puts_a_rate_based_web_acl_on_the_rest_stage(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    stack = fresh_stack()
    api = apigw.RestApi(stack, "Api", deploy_options=apigw.StageOptions(stage_name="live"))
    metered = MeteredApi(
        stack, "Metered", api=api, authorizer_function=_function(stack, "A"), waf_rate_limit=600
    )
    metered.add_function_route("GET", "/v1/x", _function(stack, "X"))
    template = _template(stack)

    acl_id, acl = only(resources(template, "AWS::WAFv2::WebACL"))
    config = props(acl)
    assert config["Scope"] == "REGIONAL"
    assert config["DefaultAction"] == {"Allow": {}}
    (rule,) = config["Rules"]
    assert rule["Action"] == {"Block": {}}
    assert rule["Statement"] == {
        "RateBasedStatement": {"Limit": 600, "AggregateKeyType": "IP", "EvaluationWindowSec": 300}
    }
    assert rule["VisibilityConfig"]["CloudWatchMetricsEnabled"] is True
    _, association = only(resources(template, "AWS::WAFv2::WebACLAssociation"))
    assert props(association)["WebACLArn"] == get_att(acl_id)
    stage_id, _ = only(resources(template, "AWS::ApiGateway::Stage"))
    resource_arn = json.dumps(props(association)["ResourceArn"])
    assert "/restapis/" in resource_arn
    assert "/stages/" in resource_arn
    assert stage_id in referenced_ids(props(association)["ResourceArn"])
    assert metered.web_acl is not None


def test_waf_on_an_imported_rest_api_goes_to_the_stage_it_deploys_to(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    stack = fresh_stack()
    api = apigw.RestApi.from_rest_api_attributes(
        stack, "Existing", rest_api_id="a1b2c3", root_resource_id="r"
    )
    metered = MeteredApi(
        stack,
        "Metered",
        api=api,
        authorizer_function=_function(stack, "A"),
        deploy_to_stage="prod",
        waf_rate_limit=100,
    )
    metered.add_function_route("GET", "/v1/x", _function(stack, "X"))
    template = _template(stack)

    deployment_id, _ = only(resources(template, "AWS::ApiGateway::Deployment"))
    _, association = only(resources(template, "AWS::WAFv2::WebACLAssociation"))
    assert "::/restapis/a1b2c3/stages/prod" in json.dumps(props(association)["ResourceArn"])
    assert deployment_id in association["DependsOn"]


def test_waf_rate_limit_is_checked(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    with pytest.raises(ValueError, match="REST APIs only"):
        MeteredApi(
            stack,
            "H",
            api=apigwv2.HttpApi(stack, "Http"),
            authorizer_function=_function(stack, "A1"),
            waf_rate_limit=100,
        )
    with pytest.raises(ValueError, match="between 10 and"):
        MeteredApi(
            stack,
            "R1",
            api=apigw.RestApi(stack, "Api1"),
            authorizer_function=_function(stack, "A2"),
            waf_rate_limit=9,
        )
    with pytest.raises(TypeError, match="whole number"):
        MeteredApi(
            stack,
            "R2",
            api=apigw.RestApi(stack, "Api2"),
            authorizer_function=_function(stack, "A3"),
            waf_rate_limit=True,
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs the REST API's stage"):
        MeteredApi(
            stack,
            "R3",
            api=apigw.RestApi.from_rest_api_attributes(
                stack, "Imported", rest_api_id="x", root_resource_id="r"
            ),
            authorizer_function=_function(stack, "A4"),
            waf_rate_limit=100,
        )


def test_http_throttle_merges_with_the_default_stages_route_settings(
    fresh_stack: Callable[[], cdk.Stack],
) -> None:
    stack = fresh_stack()
    http = apigwv2.HttpApi(stack, "TheirHttpApi")
    assert http.default_stage is not None
    default_stage = http.default_stage.node.default_child
    assert isinstance(default_stage, apigwv2.CfnStage)
    default_stage.default_route_settings = apigwv2.CfnStage.RouteSettingsProperty(
        detailed_metrics_enabled=True
    )
    metered = MeteredApi.for_http_api(
        stack, "Metered", api=http, authorizer_function=_function(stack, "A"), throttle=Throttle(20.5, 40)
    )

    _, stage = only(resources(_template(stack), "AWS::ApiGatewayV2::Stage"))
    assert props(stage)["DefaultRouteSettings"] == {
        "DetailedMetricsEnabled": True,
        "ThrottlingBurstLimit": 40,
        "ThrottlingRateLimit": 20.5,
    }
    assert metered.throttle == Throttle(20.5, 40)
