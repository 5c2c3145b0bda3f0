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
        code: lambda_.Code | None = None,
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
            code=code,
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


class MeteredApi(Construct):
    """Routes of a REST API or an HTTP API behind the Tollgate metering authorizer (result caching off).

    REST API: a ``RequestAuthorizer`` (TTL 0, no identity source) and the Gateway Responses of
    ``infra.gateway_responses`` (403 with the deny reason, 401, 503 when metering is unavailable). One
    ``MeteredApi`` per REST API (the Gateway Responses belong to the API).

    HTTP API: an ``HttpLambdaAuthorizer`` with simple responses, payload 2.0, TTL 0 and no identity source.

    API Gateway is allowed to invoke the authorizer function (a resource-based permission scoped to this
    authorizer), so the function may live in another stack of the same account and region.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        api: apigw.RestApiBase | apigwv2.HttpApi,
        authorizer_function: lambda_.IFunction,
        request_validator: apigw.IRequestValidator | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.api = api
        self.authorizer_function = authorizer_function
        self.routes: list[tuple[str, str]] = []
        self._request_validator = request_validator
        self._rest_authorizer: apigw.RequestAuthorizer | None = None
        self._http_authorizer: apigwv2_authorizers.HttpLambdaAuthorizer | None = None
        if isinstance(api, apigwv2.HttpApi):
            if request_validator is not None:
                raise ValueError("request_validator applies to REST APIs only")
            self._http_authorizer = apigwv2_authorizers.HttpLambdaAuthorizer(
                "TollgateAuthorizer",
                authorizer_function,
                response_types=[apigwv2_authorizers.HttpLambdaResponseType.SIMPLE],
                results_cache_ttl=NO_CACHE,
                identity_source=[],
            )
        elif isinstance(api, apigw.RestApiBase):
            self._rest_authorizer = self._make_rest_authorizer(api, authorizer_function)
        else:
            raise TypeError(f"MeteredApi needs an apigateway.RestApi or an apigatewayv2.HttpApi, got {api!r}")

    @classmethod
    def for_rest_api(
        cls,
        scope: Construct,
        id: str,
        *,
        api: apigw.RestApiBase,
        authorizer_function: lambda_.IFunction,
        request_validator: apigw.IRequestValidator | None = None,
    ) -> MeteredApi:
        return cls(
            scope, id, api=api, authorizer_function=authorizer_function, request_validator=request_validator
        )

    @classmethod
    def for_http_api(
        cls,
        scope: Construct,
        id: str,
        *,
        api: apigwv2.HttpApi,
        authorizer_function: lambda_.IFunction,
    ) -> MeteredApi:
        return cls(scope, id, api=api, authorizer_function=authorizer_function)

    @staticmethod
    def authorizer_from_arn(scope: Construct, id: str, function_arn: str) -> lambda_.IFunction:
        """The Tollgate authorizer of a deployed Tollgate stack (its ``AuthorizerFunctionArn`` output), for a
        provider's own app in the same account and region. ``same_environment`` lets CDK add the invoke
        permission for API Gateway to the imported function.
        """
        return lambda_.Function.from_function_attributes(
            scope, id, function_arn=function_arn, same_environment=True
        )

    @property
    def is_http_api(self) -> bool:
        return self._http_authorizer is not None

    @property
    def rest_authorizer(self) -> apigw.RequestAuthorizer:
        if self._rest_authorizer is None:
            raise AttributeError("this MeteredApi wraps an HTTP API")
        return self._rest_authorizer

    def add_route(self, method: str, path: str, integration: Any) -> Any:
        """Put ``method path`` behind the authorizer and return the ``Method`` (REST) / ``HttpRoute``s (HTTP).

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
            http_api = cast(apigwv2.HttpApi, self.api)
            self.routes.append((method, path))
            return http_api.add_routes(
                path=path,
                methods=[apigwv2.HttpMethod[method]],
                integration=integration,
                authorizer=self._http_authorizer,
            )
        if not isinstance(integration, apigw.Integration):
            raise TypeError("a REST API route needs an apigateway.Integration")
        rest_api = cast(apigw.RestApiBase, self.api)
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

    def _make_rest_authorizer(
        self, api: apigw.RestApiBase, authorizer_function: lambda_.IFunction
    ) -> apigw.RequestAuthorizer:
        for response in gateway_responses.GATEWAY_RESPONSES:
            response_id = "Tollgate" + response.response_type.title().replace("_", "")
            if api.node.try_find_child(response_id) is not None:
                raise ValueError(f"{api.node.path} already has a MeteredApi: use one per REST API")
            api.add_gateway_response(
                response_id,
                type=apigw.ResponseType.of(response.response_type),
                status_code=str(response.status_code),
                templates={gateway_responses.CONTENT_TYPE: response.template()},
                response_headers={name: f"'{value}'" for name, value in response.headers.items()} or None,
            )
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
