"""Metering: the authorizer function (``Metering``) and the construct routing requests through it
(``MeteredApi``).

The authorizer meters every request it lets through by incrementing a DynamoDB counter. API Gateway can
cache an authorizer's answer and then serve requests WITHOUT invoking it: those requests would go unmetered.
So every authorizer ``MeteredApi`` creates has result caching off (TTL 0), and no identity source: a request
without an API key still reaches the authorizer, which answers with a documented deny (not a bare 401).

A provider uses ``MeteredApi`` in their own CDK app::

    metered = MeteredApi.for_rest_api(self, "Metered", api=my_rest_api, authorizer_function=authorizer)
    metered.add_route("GET", "/v1/search", apigw.LambdaIntegration(search_fn))

    metered = MeteredApi.for_http_api(self, "Metered", api=my_http_api, authorizer_function=authorizer)
    metered.add_route("GET", "/v1/search", HttpLambdaIntegration("Search", search_fn))

Routes carry no prices: what a route costs is in the customer's plan (``"GET /v1/search": 1``).
"""

from __future__ import annotations

import re
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as apigwv2_authorizers
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from tollgate.cdk.constants import (
    AUTHORIZER_KEY_CACHE_TTL_SECONDS,
    AUTHORIZER_NEGATIVE_CACHE_TTL_SECONDS,
    ENV_FAIL_OPEN,
    ENV_KEY_CACHE_TTL_SECONDS,
    ENV_NEGATIVE_CACHE_TTL_SECONDS,
    ENV_TABLE_NAME,
    HANDLER_AUTHORIZER,
    ID_AUTHORIZER_FUNCTION,
    SERVICE_AUTHORIZER,
)
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.nag import acknowledge
from tollgate.metering import gateway_responses

# The only DynamoDB actions the hot path performs: key/customer/plan lookups and the counter increment.
AUTHORIZER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
NO_CACHE = cdk.Duration.seconds(0)
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})


class Metering(Construct):
    """The metering authorizer function and its least-privilege role.

    Its role may call GetItem and UpdateItem on the table and write its own logs and traces;
    nothing else (in particular no secret). Memory 512 MB buys a faster CPU for the hot path; timeout 3 s.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        table: dynamodb.ITable,
        fail_open: bool = False,
    ) -> None:
        super().__init__(scope, id)
        self.authorizer = TollgateFunction(
            self,
            ID_AUTHORIZER_FUNCTION,
            handler=HANDLER_AUTHORIZER,
            description="Tollgate metering authorizer: checks the API key and meters the request",
            service_name=SERVICE_AUTHORIZER,
            memory_size=512,
            timeout=cdk.Duration.seconds(3),
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_KEY_CACHE_TTL_SECONDS: str(AUTHORIZER_KEY_CACHE_TTL_SECONDS),
                ENV_NEGATIVE_CACHE_TTL_SECONDS: str(AUTHORIZER_NEGATIVE_CACHE_TTL_SECONDS),
                ENV_FAIL_OPEN: "true" if fail_open else "false",
            },
            statements=[
                iam.PolicyStatement(
                    sid="MeterRequests",
                    actions=list(AUTHORIZER_TABLE_ACTIONS),
                    resources=[table.table_arn],
                )
            ],
        )

    @property
    def authorizer_function(self) -> lambda_.Function:
        return self.authorizer.function


def _construct_id(method: str, path: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", path) or ["Root"]
    return method.capitalize() + "".join(word[:1].upper() + word[1:] for word in words)


def _is_rest_api(api: Any) -> bool:
    """A REST API, built here or imported (``RestApi.from_rest_api_attributes``), has a ``rest_api_id``; an
    HTTP API (built or imported with ``HttpApi.from_http_api_attributes``, a bare jsii interface proxy) an
    ``api_id``. Checked by attribute because an imported API is no instance of the CDK classes."""
    if isinstance(api, apigw.RestApiBase):
        return True
    return _has(api, "rest_api_id") and _has(api, "root")


def _is_http_api(api: Any) -> bool:
    return isinstance(api, apigwv2.HttpApi) or (_has(api, "api_id") and not _has(api, "rest_api_id"))


def _has(api: Any, attribute: str) -> bool:
    try:
        return getattr(api, attribute, None) is not None
    except Exception:  # a jsii proxy raises when the interface lacks the member
        return False


class MeteredApi(Construct):
    """Routes of a provider's REST API or HTTP API behind the Tollgate metering authorizer (caching off).

    ``api`` may be built in the same app or imported (``RestApi.from_rest_api_attributes``,
    ``HttpApi.from_http_api_attributes``). Every route added through ``add_route`` / ``add_function_route``
    / ``add_usage_route`` is metered; methods the provider adds to the API directly are not touched.

    REST API: a ``RequestAuthorizer`` (TTL 0, no identity source) and the Gateway Responses of
    ``tollgate.metering.gateway_responses`` (403 with the deny reason, 401, 503 when metering is
    unavailable). A response type the app already defines for that API is left as the provider made it (the
    body then lacks Tollgate's reason); pass ``gateway_responses=False`` to install none. One ``MeteredApi``
    per REST API. An imported REST API is not redeployed by CDK: pass ``deploy_to_stage="prod"`` to have
    this construct deploy the new methods to that existing stage.

    HTTP API: an ``HttpLambdaAuthorizer`` with simple responses, payload 2.0, TTL 0 and no identity source.

    API Gateway is allowed to invoke the authorizer function (a resource-based permission scoped to this
    authorizer), so the function may live in another stack of the same account and region
    (``MeteredApi.function_from_arn``).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api: apigw.IRestApi | apigwv2.IHttpApi,
        authorizer_function: lambda_.IFunction,
        request_validator: apigw.IRequestValidator | None = None,
        gateway_responses: bool = True,
        deploy_to_stage: str | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.api = api
        self.authorizer_function = authorizer_function
        self.routes: list[tuple[str, str]] = []
        self.skipped_gateway_responses: list[str] = []
        self._request_validator = request_validator
        self._rest_authorizer: apigw.RequestAuthorizer | None = None
        self._http_authorizer: apigwv2_authorizers.HttpLambdaAuthorizer | None = None
        self._deployment: apigw.Deployment | None = None
        if _is_rest_api(api):
            rest_api = cast(apigw.IRestApi, api)
            if gateway_responses:
                self._add_gateway_responses(rest_api)
            self._rest_authorizer = self._make_rest_authorizer(authorizer_function)
            if deploy_to_stage is not None:
                self._deployment = apigw.Deployment(
                    self,
                    "Deployment",
                    api=rest_api,
                    stage_name=deploy_to_stage,
                    description="Tollgate: publishes the metered methods",
                )
        elif _is_http_api(api):
            if request_validator is not None:
                raise ValueError("request_validator applies to REST APIs only")
            if deploy_to_stage is not None:
                raise ValueError("deploy_to_stage applies to REST APIs only (HTTP API stages auto-deploy)")
            self._http_authorizer = apigwv2_authorizers.HttpLambdaAuthorizer(
                "TollgateAuthorizer",
                authorizer_function,
                response_types=[apigwv2_authorizers.HttpLambdaResponseType.SIMPLE],
                results_cache_ttl=NO_CACHE,
                identity_source=[],
            )
        else:
            raise TypeError(
                f"MeteredApi needs an apigateway REST API or an apigatewayv2 HTTP API (built or imported), "
                f"got {api!r}"
            )

    @classmethod
    def for_rest_api(
        cls,
        scope: Construct,
        id: str,
        *,
        api: apigw.IRestApi,
        authorizer_function: lambda_.IFunction,
        request_validator: apigw.IRequestValidator | None = None,
        gateway_responses: bool = True,
        deploy_to_stage: str | None = None,
    ) -> MeteredApi:
        return cls(
            scope,
            id,
            api=api,
            authorizer_function=authorizer_function,
            request_validator=request_validator,
            gateway_responses=gateway_responses,
            deploy_to_stage=deploy_to_stage,
        )

    @classmethod
    def for_http_api(
        cls,
        scope: Construct,
        id: str,
        *,
        api: apigwv2.IHttpApi,
        authorizer_function: lambda_.IFunction,
    ) -> MeteredApi:
        return cls(scope, id, api=api, authorizer_function=authorizer_function)

    @staticmethod
    def function_from_arn(scope: Construct, id: str, function_arn: str) -> lambda_.IFunction:
        """A function of a deployed Tollgate stack (its ``AuthorizerFunctionArn`` or ``UsageFunctionArn``
        output), for a provider's app in the same account and region. ``same_environment`` lets CDK add the
        invoke permission for API Gateway to the imported function.
        """
        return lambda_.Function.from_function_attributes(
            scope, id, function_arn=function_arn, same_environment=True
        )

    authorizer_from_arn = function_from_arn

    @property
    def is_http_api(self) -> bool:
        return self._http_authorizer is not None

    @property
    def rest_authorizer(self) -> apigw.RequestAuthorizer:
        if self._rest_authorizer is None:
            raise AttributeError("this MeteredApi wraps an HTTP API")
        return self._rest_authorizer

    def add_route(self, method: str, path: str, integration: Any) -> Any:
        """Put ``method path`` behind the authorizer; return the ``Method`` (REST) / ``[HttpRoute]`` (HTTP).

        ``integration``: an ``apigateway.Integration`` for a REST API, an
        ``apigatewayv2.HttpRouteIntegration`` for an HTTP API.
        """
        method = method.upper()
        if method not in _HTTP_METHODS:
            raise ValueError(f"unknown HTTP method {method!r}")
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/', got {path!r}")
        if self._http_authorizer is not None:
            if not isinstance(integration, apigwv2.HttpRouteIntegration):
                raise TypeError("an HTTP API route needs an apigatewayv2.HttpRouteIntegration")
            self.routes.append((method, path))
            route = apigwv2.HttpRoute(
                self,
                _construct_id(method, path) + "Route",
                http_api=cast(apigwv2.IHttpApi, self.api),
                route_key=apigwv2.HttpRouteKey.with_(path, apigwv2.HttpMethod[method]),
                integration=integration,
                authorizer=self._http_authorizer,
            )
            return [route]
        if not isinstance(integration, apigw.Integration):
            raise TypeError("a REST API route needs an apigateway.Integration")
        rest_api = cast(apigw.IRestApi, self.api)
        self.routes.append((method, path))
        resource = rest_api.root if path == "/" else rest_api.root.resource_for_path(path)
        rest_method = resource.add_method(
            method,
            integration,
            authorizer=self.rest_authorizer,
            authorization_type=apigw.AuthorizationType.CUSTOM,
            request_validator=self._request_validator,
        )
        acknowledge(
            rest_method,
            "AwsSolutions-COG4",
            "Metered routes are authorized by the Tollgate Lambda REQUEST authorizer, which validates the "
            "customer's API key and meters the request; Cognito user pools do not apply to machine API keys.",
        )
        if self._deployment is not None:
            self._deployment.node.add_dependency(rest_method)
            self._deployment.add_to_logical_id({"route": [method, path]})  # a new route, a new deployment
        return rest_method

    def add_function_route(self, method: str, path: str, handler: lambda_.IFunction) -> Any:
        """``add_route`` with a Lambda proxy integration of the right kind for the API."""
        if self._http_authorizer is not None:
            integration: Any = apigwv2_integrations.HttpLambdaIntegration(
                _construct_id(method, path) + "Integration", handler
            )
        else:
            integration = apigw.LambdaIntegration(handler)
        return self.add_route(method, path, integration)

    def add_usage_route(self, usage_function: lambda_.IFunction, path: str = "/usage") -> Any:
        """``GET /usage`` (or ``path``) answered by Tollgate's usage function (``Tollgate.usage_function``).

        Metered like any route: give it a cost of 0 credits in your plans (``"GET /usage": 0``).
        """
        return self.add_function_route("GET", path, usage_function)

    def _add_gateway_responses(self, api: apigw.IRestApi) -> None:
        stack_nodes = cdk.Stack.of(api).node.find_all()
        if any(
            isinstance(n, MeteredApi) and n is not self and _same_rest_api(n.api, api) for n in stack_nodes
        ):
            raise ValueError(f"{api.node.path} already has a MeteredApi: use one per REST API")
        defined = {
            str(n.response_type)
            for n in stack_nodes
            if isinstance(n, apigw.CfnGatewayResponse) and n.rest_api_id == api.rest_api_id
        }
        for response in gateway_responses.GATEWAY_RESPONSES:
            if response.response_type in defined:
                self.skipped_gateway_responses.append(response.response_type)
                cdk.Annotations.of(self).add_warning_v2(
                    "tollgate:gatewayResponseKept",
                    f"{response.response_type}: the API already defines this gateway response; it is kept, "
                    "so the body lacks Tollgate's reason for that refusal",
                )
                continue
            apigw.GatewayResponse(
                self,
                "Tollgate" + response.response_type.title().replace("_", ""),
                rest_api=api,
                type=apigw.ResponseType.of(response.response_type),
                status_code=str(response.status_code),
                templates={gateway_responses.CONTENT_TYPE: response.template()},
                response_headers={name: f"'{value}'" for name, value in response.headers.items()} or None,
            )

    def _make_rest_authorizer(self, authorizer_function: lambda_.IFunction) -> apigw.RequestAuthorizer:
        authorizer = apigw.RequestAuthorizer(
            self,
            "Authorizer",
            handler=authorizer_function,
            identity_sources=[],
            results_cache_ttl=NO_CACHE,
        )
        # CDK would render an empty IdentitySource string; with caching off the property is optional and
        # leaving it out is what makes API Gateway invoke the authorizer for requests without a key.
        cast(apigw.CfnAuthorizer, authorizer.node.default_child).add_property_deletion_override(
            "IdentitySource"
        )
        return authorizer


def _same_rest_api(one: Any, other: apigw.IRestApi) -> bool:
    return _is_rest_api(one) and bool(one.rest_api_id == other.rest_api_id)
