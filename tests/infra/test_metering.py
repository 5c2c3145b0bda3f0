"""The metering authorizer and the sample API: every route metered, no cached authorizer answer anywhere."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import sample_api
from tests.infra.cfn import function_by_handler, get_att, only, props, referenced_ids, resources
from tollgate.cdk import constants
from tollgate.metering import gateway_responses


@pytest.fixture(scope="module")
def authorizer_function_id(template: dict[str, Any]) -> str:
    logical_id, _ = function_by_handler(template, constants.HANDLER_AUTHORIZER)
    return logical_id


def _route_of(template: dict[str, Any], method: dict[str, Any]) -> tuple[str, str]:
    """(HTTP method, path) of an AWS::ApiGateway::Method, rebuilt from the resource tree."""
    parts: list[str] = []
    resource_ref = props(method)["ResourceId"]
    while "Ref" in resource_ref:
        resource = template["Resources"][resource_ref["Ref"]]
        parts.append(props(resource)["PathPart"])
        resource_ref = props(resource)["ParentId"]
    return props(method)["HttpMethod"], "/" + "/".join(reversed(parts))


def test_every_authorizer_has_result_caching_off(template: dict[str, Any]) -> None:
    authorizers = resources(template, "AWS::ApiGateway::Authorizer")
    assert authorizers, "the sample API must have the metering authorizer"
    for logical_id, authorizer in authorizers.items():
        assert props(authorizer)["AuthorizerResultTtlInSeconds"] == 0, logical_id
        assert props(authorizer)["Type"] == "REQUEST", logical_id
        # No identity source: a request without a key still reaches the authorizer (documented deny).
        assert "IdentitySource" not in props(authorizer), logical_id


def test_authorizer_invokes_the_metering_function(
    template: dict[str, Any], authorizer_function_id: str
) -> None:
    _, authorizer = only(resources(template, "AWS::ApiGateway::Authorizer"))
    assert referenced_ids(props(authorizer)["AuthorizerUri"]) == {authorizer_function_id}


def test_every_method_except_options_and_the_portal_uses_the_metering_authorizer(
    template: dict[str, Any],
) -> None:
    authorizer_id, _ = only(resources(template, "AWS::ApiGateway::Authorizer"))
    methods = resources(template, "AWS::ApiGateway::Method")
    checked = 0
    for logical_id, method in methods.items():
        if props(method)["HttpMethod"] == "OPTIONS":
            continue
        if _route_of(template, method) == ("GET", "/portal"):  # a signed link is its credential
            assert props(method)["AuthorizationType"] == "NONE", logical_id
            checked += 1
            continue
        assert props(method)["AuthorizationType"] == "CUSTOM", logical_id
        assert props(method)["AuthorizerId"] == {"Ref": authorizer_id}, logical_id
        checked += 1
    assert checked == len(methods) == 13


def test_sample_api_routes(template: dict[str, Any]) -> None:
    methods = resources(template, "AWS::ApiGateway::Method").values()
    routes = {_route_of(template, method) for method in methods}
    budget = {("GET", "/usage/budget"), ("PUT", "/usage/budget")}  # add_usage_route's too
    export = {("GET", "/usage/export")}
    alerts = {("GET", "/usage/alerts"), ("PUT", "/usage/alerts")}
    webhook = {
        ("GET", "/usage/alerts/webhook"),
        ("PUT", "/usage/alerts/webhook"),
        ("DELETE", "/usage/alerts/webhook"),
    }
    pages = {("GET", "/usage/page"), ("GET", "/portal")}  # the usage page, by key and by signed link
    settings = export | budget | alerts | webhook | pages
    assert routes == {sample_api.ROUTE_SEARCH, sample_api.ROUTE_GENERATE, sample_api.ROUTE_USAGE} | settings
    assert routes == {("GET", "/v1/search"), ("POST", "/v1/generate"), ("GET", "/usage")} | settings


def test_usage_route_is_served_by_the_usage_handler(template: dict[str, Any]) -> None:
    usage_fn, _ = function_by_handler(template, constants.HANDLER_USAGE_API)
    sample_fn, _ = function_by_handler(template, sample_api.SAMPLE_HANDLER)
    backends = {
        _route_of(template, method): referenced_ids(props(method)["Integration"]["Uri"])
        for method in resources(template, "AWS::ApiGateway::Method").values()
    }
    assert backends[("GET", "/usage")] == {usage_fn}
    assert backends[("PUT", "/usage/budget")] == backends[("GET", "/usage/budget")] == {usage_fn}
    for method, path in [
        ("GET", "/usage/export"),
        ("GET", "/usage/page"),
        ("GET", "/portal"),
        ("GET", "/usage/alerts"),
        ("PUT", "/usage/alerts"),
        ("GET", "/usage/alerts/webhook"),
        ("PUT", "/usage/alerts/webhook"),
        ("DELETE", "/usage/alerts/webhook"),
    ]:
        assert backends[(method, path)] == {usage_fn}, (method, path)
    assert backends[("GET", "/v1/search")] == {sample_fn}
    assert backends[("POST", "/v1/generate")] == {sample_fn}


def test_api_gateway_may_invoke_the_authorizer(template: dict[str, Any], authorizer_function_id: str) -> None:
    authorizer_id, _ = only(resources(template, "AWS::ApiGateway::Authorizer"))
    permissions = [
        props(p)
        for p in resources(template, "AWS::Lambda::Permission").values()
        if props(p)["FunctionName"] == get_att(authorizer_function_id)
    ]
    assert len(permissions) == 1
    (permission,) = permissions
    assert permission["Action"] == "lambda:InvokeFunction"
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert authorizer_id in referenced_ids(permission["SourceArn"])  # scoped to this authorizer


def test_gateway_responses_come_from_the_shared_module(template: dict[str, Any]) -> None:
    deployed = {
        props(r)["ResponseType"]: props(r)
        for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }
    assert set(deployed) == {
        "ACCESS_DENIED",
        "UNAUTHORIZED",
        "AUTHORIZER_FAILURE",
        "AUTHORIZER_CONFIGURATION_ERROR",
    }
    for response in gateway_responses.GATEWAY_RESPONSES:
        deployed_response = deployed[response.response_type]
        assert deployed_response["StatusCode"] == str(response.status_code)
        body = json.loads(deployed_response["ResponseTemplates"]["application/json"])
        assert body == dict(response.body)


def test_gateway_response_status_codes_and_bodies(template: dict[str, Any]) -> None:
    deployed = {
        props(r)["ResponseType"]: props(r)
        for r in resources(template, "AWS::ApiGateway::GatewayResponse").values()
    }

    def body(response_type: str) -> dict[str, str]:
        parsed: dict[str, str] = json.loads(deployed[response_type]["ResponseTemplates"]["application/json"])
        return parsed

    assert deployed["ACCESS_DENIED"]["StatusCode"] == "403"
    assert body("ACCESS_DENIED") == {
        "error": "$context.authorizer.reason",
        "message": "$context.authorizer.message",
        "payUrl": "$context.authorizer.payUrl",
        "requestId": "$context.requestId",
    }
    assert deployed["UNAUTHORIZED"]["StatusCode"] == "401"
    assert body("UNAUTHORIZED")["error"] == "invalid_api_key"
    for failure in ("AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR"):
        assert deployed[failure]["StatusCode"] == "503"
        assert body(failure)["error"] == "metering_unavailable"
        assert body(failure)["requestId"] == "$context.requestId"


def test_authorizer_function_configuration(template: dict[str, Any]) -> None:
    _, function = function_by_handler(template, constants.HANDLER_AUTHORIZER)
    config = props(function)
    assert config["Runtime"] == "python3.12"
    assert config["Architectures"] == ["arm64"]
    assert config["MemorySize"] == 512
    assert config["Timeout"] == 3
    assert "ReservedConcurrentExecutions" not in config
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    assert config["Environment"]["Variables"] == {
        "TABLE_NAME": {"Ref": table_id},
        "KEY_CACHE_TTL_SECONDS": "30",
        "NEGATIVE_CACHE_TTL_SECONDS": "5",
        "FAIL_OPEN": "false",
        "POWERTOOLS_SERVICE_NAME": "tollgate-authorizer",
        "POWERTOOLS_METRICS_NAMESPACE": "Tollgate",
    }


def test_sample_stage_logs_and_traces(template: dict[str, Any]) -> None:
    _, stage = only(resources(template, "AWS::ApiGateway::Stage"))
    assert props(stage)["StageName"] == sample_api.SAMPLE_API_STAGE
    assert props(stage)["TracingEnabled"] is True
    access_log_format = json.loads(props(stage)["AccessLogSetting"]["Format"])
    assert access_log_format["requestId"] == "$context.requestId"
    assert access_log_format["denyReason"] == "$context.authorizer.reason"
    (settings,) = props(stage)["MethodSettings"]
    assert (settings["HttpMethod"], settings["ResourcePath"], settings["LoggingLevel"]) == (
        "*",
        "/*",
        "ERROR",
    )
    assert settings["DataTraceEnabled"] is False  # request/response bodies (API keys) never reach the logs
