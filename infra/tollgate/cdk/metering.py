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
from dataclasses import dataclass
from typing import Any, cast

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_authorizers as apigwv2_authorizers
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
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
    OUTPUT_PORTAL_URL,
    SERVICE_AUTHORIZER,
)
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.ledger import UsageLedger, ledger_access_log_format
from tollgate.cdk.nag import acknowledge
from tollgate.dal import tablekeys
from tollgate.metering import gateway_responses

# The only DynamoDB actions the hot path performs: key/customer/plan lookups and the counter increment; and
# the names of the routes it counts, which it may write in the route registry's partition and nowhere else.
AUTHORIZER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
AUTHORIZER_ROUTE_NAME_ACTIONS = ("dynamodb:PutItem",)
NO_CACHE = cdk.Duration.seconds(0)
_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "ANY"})
# what add_usage_route adds under /usage besides GET /usage itself (tollgate.usage_api.handler)
USAGE_SUBROUTES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("export", ("GET",)),
    ("page", ("GET",)),
    ("budget", ("GET", "PUT")),
    ("alerts", ("GET", "PUT")),
    ("alerts/webhook", ("GET", "PUT", "DELETE")),
)


@dataclass(frozen=True)
class Throttle:
    """Stage throttling, API Gateway's token bucket: ``rate_limit`` requests per second on average, bursts of
    up to ``burst_limit`` requests. API Gateway answers requests over it with 429 before the authorizer runs,
    so a flood costs no authorizer invocation and no DynamoDB call beyond it."""

    rate_limit: float
    burst_limit: int

    def __post_init__(self) -> None:
        if not self.rate_limit > 0 or self.burst_limit < 1:
            raise ValueError(f"a throttle needs a positive rate and burst, got {self}")


# The default for every stage MeteredApi controls: well under an account's regional API Gateway quota (10,000
# requests/s, burst 5,000, shared by all its APIs), far above what one customer's key needs. Raise it (or pass
# throttle=None to leave the stage as it is) for an API that serves more.
DEFAULT_THROTTLE = Throttle(rate_limit=1000, burst_limit=2000)
# AWS WAF rate-based rules: requests per client IP over a trailing 5-minute window, at least 10.
WAF_EVALUATION_WINDOW_SECONDS = 300
WAF_MIN_RATE_LIMIT = 10
WAF_MAX_RATE_LIMIT = 2_000_000_000


class Metering(Construct):
    """The metering authorizer function and its least-privilege role.

    Its role may call GetItem and UpdateItem on the table, PutItem in the route registry's partition only
    (``dynamodb:LeadingKeys``), and write its own logs; nothing else (in particular no secret). Memory 512 MB
    buys a faster CPU for the hot path; timeout 3 s.
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
                ),
                iam.PolicyStatement(
                    sid="NameRoutes",
                    actions=list(AUTHORIZER_ROUTE_NAME_ACTIONS),
                    resources=[table.table_arn],
                    conditions={"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [tablekeys.ROUTES_PK]}},
                ),
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

    Floods are bounded before they reach the authorizer:

    - ``throttle`` (default :data:`DEFAULT_THROTTLE`, 1,000 requests/s, bursts of 2,000) is applied to the
      stage this construct controls: a REST API's ``deployment_stage`` (as the ``/*/*`` method setting) and an
      HTTP API's default stage (its default route settings). A throttle the app already set on that stage
      (``StageOptions(throttling_rate_limit=...)``, ``HttpStage(throttle=...)``) is kept; ``throttle=None``
      leaves the stage untouched. ``self.throttle`` is the throttle this construct applied (None if none). An
      imported API's stages, a REST API built with ``deploy=False`` and HTTP API stages other than the default
      one are the provider's: set throttling on them where they are defined.
    - ``waf_rate_limit=N`` (REST APIs only: AWS WAF cannot be associated with an HTTP API; put CloudFront with
      a web ACL in front of one instead) creates a regional WAFv2 web ACL, default allow, whose rate-based
      rule blocks a client IP after ``N`` requests in 5 minutes, and associates it with the REST stage (the
      ``deployment_stage``, or ``deploy_to_stage`` of an imported API). ``self.web_acl`` is the ACL.

    ``ledger=UsageLedger(...)`` (:mod:`tollgate.cdk.ledger`) keeps every request's access-log record in the
    ledger: a REST API's ``deployment_stage`` logs straight to the ledger's Firehose stream in the ledger's
    format (a REST stage has one access-log destination: one the app set is replaced, with a warning); an
    HTTP API's default stage logs to a new CloudWatch log group (kept a week) subscribed to the ledger's
    HTTP stream. Stages this construct does not control (an imported API's) are refused: set their access
    log yourself (destination ``ledger.stream_arn``, format ``ledger_access_log_format()``).
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
        throttle: Throttle | None = DEFAULT_THROTTLE,
        waf_rate_limit: int | None = None,
        ledger: UsageLedger | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.api = api
        self.authorizer_function = authorizer_function
        self.routes: list[tuple[str, str]] = []
        self.skipped_gateway_responses: list[str] = []
        self.throttle: Throttle | None = None  # what this construct applied to a stage
        self.web_acl: wafv2.CfnWebACL | None = None
        self.ledger = ledger
        self.ledger_log_group: logs.LogGroup | None = None  # HTTP APIs: the access logs' relay to the ledger
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
            stage = _deployment_stage(rest_api)
            if throttle is not None and stage is not None:
                self.throttle = _throttle_rest_stage(stage, throttle)
            if waf_rate_limit is not None:
                self.web_acl = self._add_web_acl(rest_api, stage, deploy_to_stage, waf_rate_limit)
            if ledger is not None:
                self._log_rest_stage_to_ledger(stage, ledger)
        elif _is_http_api(api):
            if request_validator is not None:
                raise ValueError("request_validator applies to REST APIs only")
            if deploy_to_stage is not None:
                raise ValueError("deploy_to_stage applies to REST APIs only (HTTP API stages auto-deploy)")
            if waf_rate_limit is not None:
                raise ValueError(
                    "waf_rate_limit applies to REST APIs only: AWS WAF cannot be associated with an HTTP API "
                    "(put CloudFront with a web ACL in front of it instead)"
                )
            default_stage = _default_http_stage(api)
            if throttle is not None and default_stage is not None:
                self.throttle = _throttle_http_stage(default_stage, throttle)
            if ledger is not None:
                self._log_http_stage_to_ledger(default_stage, ledger)
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
        throttle: Throttle | None = DEFAULT_THROTTLE,
        waf_rate_limit: int | None = None,
        ledger: UsageLedger | None = None,
    ) -> MeteredApi:
        return cls(
            scope,
            id,
            api=api,
            authorizer_function=authorizer_function,
            request_validator=request_validator,
            gateway_responses=gateway_responses,
            deploy_to_stage=deploy_to_stage,
            throttle=throttle,
            waf_rate_limit=waf_rate_limit,
            ledger=ledger,
        )

    @classmethod
    def for_http_api(
        cls,
        scope: Construct,
        id: str,
        *,
        api: apigwv2.IHttpApi,
        authorizer_function: lambda_.IFunction,
        throttle: Throttle | None = DEFAULT_THROTTLE,
        ledger: UsageLedger | None = None,
    ) -> MeteredApi:
        return cls(
            scope, id, api=api, authorizer_function=authorizer_function, throttle=throttle, ledger=ledger
        )

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
        """``GET /usage`` (or ``path``), ``GET {path}/export`` (the period's usage as CSV), ``GET``/``PUT
        {path}/budget`` (the customer's spend limit), ``GET``/``PUT {path}/alerts`` (their own usage alert
        rules) and ``GET``/``PUT``/``DELETE {path}/alerts/webhook`` (their alert webhook), answered by
        Tollgate's usage function (``Tollgate.usage_function``); returns ``GET /usage``'s route.

        Metered like any route: give them a cost of 0 credits in your plans (``"GET /usage": 0``,
        ``"GET /usage/export": 0``, ``"GET /usage/page": 0``, ``"ANY /usage/budget": 0``, ``"ANY
        /usage/alerts": 0``, ``"ANY /usage/alerts/webhook": 0``), so a customer at their cap or budget can
        still see and raise it, export it, open their usage page, and set up their alerts.
        """
        usage = self.add_function_route("GET", path, usage_function)
        base = path.rstrip("/")
        for route, methods in USAGE_SUBROUTES:
            for method in methods:
                self.add_function_route(method, f"{base}/{route}", usage_function)
        return usage

    def add_portal_route(
        self, usage_function: lambda_.IFunction, path: str = "/portal", *, output: bool = True
    ) -> Any:
        """``GET /portal`` (or ``path``): the customer's usage page opened with a signed link (``tollgate
        portal link``), answered by Tollgate's usage function; returns the ``Method`` (REST) / ``HttpRoute``.

        Not behind the authorizer, so not metered: the link's token is the only credential (HMAC-SHA256 of the
        customer and an expiry at most 24 hours away, checked by the function), and it opens that one page.
        ``self.portal_url`` is the route's URL where this construct knows the stage (a REST API's
        ``deployment_stage``, an HTTP API's default stage), else None; with ``output`` it is also the stack
        output ``PortalUrl``, which ``tollgate --stack NAME portal link`` reads.
        """
        if not path.startswith("/"):
            raise ValueError(f"a route path starts with '/', got {path!r}")
        name = _construct_id("GET", path)
        self.portal_url: str | None = None
        if self._http_authorizer is not None:
            http_api = cast(apigwv2.IHttpApi, self.api)
            route: Any = apigwv2.HttpRoute(
                self,
                name + "Route",
                http_api=http_api,
                route_key=apigwv2.HttpRouteKey.with_(path, apigwv2.HttpMethod.GET),
                integration=apigwv2_integrations.HttpLambdaIntegration(name + "Integration", usage_function),
                authorizer=apigwv2.HttpNoneAuthorizer(),
            )
            if _default_http_stage(http_api) is not None:
                self.portal_url = http_api.api_endpoint + path
        else:
            rest_api = cast(apigw.IRestApi, self.api)
            route = rest_api.root.resource_for_path(path).add_method(
                "GET",
                apigw.LambdaIntegration(usage_function),
                authorization_type=apigw.AuthorizationType.NONE,
            )
            for rule in ("AwsSolutions-APIG4", "AwsSolutions-COG4"):
                acknowledge(
                    route,
                    rule,
                    "The usage page's signed link is its credential: the usage function checks the token's "
                    "HMAC-SHA256 signature and expiry (24 hours at most) and shows that one customer's page.",
                )
            if self._deployment is not None:
                self._deployment.node.add_dependency(route)
                self._deployment.add_to_logical_id({"route": ["GET", path]})
            stage = _deployment_stage(rest_api)
            if stage is not None:
                self.portal_url = stage.url_for_path(path)
        if output and self.portal_url is not None:
            cdk.CfnOutput(
                self,
                OUTPUT_PORTAL_URL,
                value=self.portal_url,
                description="The customers' usage page: tollgate portal link CUSTOMER signs a link to it",
            ).override_logical_id(OUTPUT_PORTAL_URL)
        return route

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

    def _add_web_acl(
        self, api: apigw.IRestApi, stage: apigw.Stage | None, deploy_to_stage: str | None, limit: int
    ) -> wafv2.CfnWebACL:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"waf_rate_limit is a whole number of requests, got {limit!r}")
        if not WAF_MIN_RATE_LIMIT <= limit <= WAF_MAX_RATE_LIMIT:
            raise ValueError(
                f"waf_rate_limit must be between {WAF_MIN_RATE_LIMIT} and {WAF_MAX_RATE_LIMIT} requests per "
                f"5 minutes (AWS WAF's bounds), got {limit}"
            )
        if stage is not None:
            stage_arn = stage.stage_arn
        elif deploy_to_stage is not None:
            stack = cdk.Stack.of(self)
            stage_arn = (
                f"arn:{stack.partition}:apigateway:{stack.region}::/restapis/{api.rest_api_id}"
                f"/stages/{deploy_to_stage}"
            )
        else:
            raise ValueError(
                "waf_rate_limit needs the REST API's stage: the API's deployment_stage, or deploy_to_stage "
                "for an imported API"
            )
        metric = "Tollgate" + cdk.Names.unique_id(self)[-200:]

        def visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
            return wafv2.CfnWebACL.VisibilityConfigProperty(
                cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
            )

        acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            scope="REGIONAL",
            description="Tollgate: blocks a client IP sending more than the rate limit",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow=wafv2.CfnWebACL.AllowActionProperty()),
            visibility_config=visibility(metric),
            rules=[
                wafv2.CfnWebACL.RuleProperty(
                    name="RateLimitPerIp",
                    priority=0,
                    action=wafv2.CfnWebACL.RuleActionProperty(block=wafv2.CfnWebACL.BlockActionProperty()),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                            limit=limit,
                            aggregate_key_type="IP",
                            evaluation_window_sec=WAF_EVALUATION_WINDOW_SECONDS,
                        )
                    ),
                    visibility_config=visibility(metric + "RateLimitPerIp"),
                )
            ],
        )
        association = wafv2.CfnWebACLAssociation(
            self, "WebAclAssociation", resource_arn=stage_arn, web_acl_arn=acl.attr_arn
        )
        if stage is None and self._deployment is not None:
            association.node.add_dependency(self._deployment)  # the stage exists once deployed to
        return acl

    def _log_rest_stage_to_ledger(self, stage: apigw.Stage | None, ledger: UsageLedger) -> None:
        if stage is None:
            raise ValueError(
                "ledger needs a REST stage this construct controls (the API's deployment_stage); for an "
                "imported API set the stage's access log to ledger.stream_arn with ledger_access_log_format()"
            )
        cfn = cast(apigw.CfnStage, stage.node.default_child)
        if cfn.access_log_setting is not None:
            cdk.Annotations.of(self).add_warning_v2(
                "tollgate:accessLogReplaced",
                f"{stage.node.path}: its access log now goes to the usage ledger (a REST stage has one "
                "access-log destination)",
            )
        cfn.access_log_setting = apigw.CfnStage.AccessLogSettingProperty(
            destination_arn=ledger.stream_arn, format=ledger_access_log_format()
        )
        stage.node.add_dependency(ledger.stream)

    def _log_http_stage_to_ledger(self, stage: apigwv2.HttpStage | None, ledger: UsageLedger) -> None:
        if stage is None:
            raise ValueError(
                "ledger needs the HTTP API's default stage (built in this app); for another stage log it to "
                "a log group with ledger_access_log_format(http=True) and call ledger.subscribe(log_group)"
            )
        cfn = cast(apigwv2.CfnStage, stage.node.default_child)
        if cfn.access_log_settings is not None:
            cdk.Annotations.of(self).add_warning_v2(
                "tollgate:accessLogReplaced",
                f"{stage.node.path}: its access log now goes to the usage ledger (through CloudWatch Logs)",
            )
        self.ledger_log_group = logs.LogGroup(
            self,
            "LedgerAccessLogs",
            retention=logs.RetentionDays.ONE_WEEK,  # a relay: the ledger in S3 is the record
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        cfn.access_log_settings = apigwv2.CfnStage.AccessLogSettingsProperty(
            destination_arn=self.ledger_log_group.log_group_arn, format=ledger_access_log_format(http=True)
        )
        ledger.subscribe(self.ledger_log_group, "Subscription" + cdk.Names.unique_id(self)[-40:])

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


def _deployment_stage(api: apigw.IRestApi) -> apigw.Stage | None:
    """The stage a REST API built in the app deploys to, if any (not with ``deploy=False``, not imported)."""
    if not isinstance(api, apigw.RestApiBase):
        return None
    try:
        stage = api.deployment_stage
    except Exception:  # jsii raises when the API has no deployment stage
        return None
    return stage if isinstance(stage, apigw.Stage) else None


def _default_http_stage(api: Any) -> apigwv2.HttpStage | None:
    if not isinstance(api, apigwv2.HttpApi):
        return None  # an imported HTTP API's stages are the provider's
    stage = api.default_stage
    return stage if isinstance(stage, apigwv2.HttpStage) else None


_METHOD_SETTING_FIELDS = (
    "cache_data_encrypted",
    "cache_ttl_in_seconds",
    "caching_enabled",
    "data_trace_enabled",
    "http_method",
    "logging_level",
    "metrics_enabled",
    "resource_path",
    "throttling_burst_limit",
    "throttling_rate_limit",
)


def _throttle_rest_stage(stage: apigw.Stage, throttle: Throttle) -> Throttle | None:
    """Put ``throttle`` on every method of ``stage`` (the ``/*/*`` method setting), keeping the stage's other
    method settings; a throttle the stage already has wins. Returns the throttle applied, if any."""
    cfn = cast(apigw.CfnStage, stage.node.default_child)
    current = cfn.method_settings
    if current is not None and not isinstance(current, list):
        return None  # a token: nothing to merge with
    settings = list(current or [])
    for index, entry in enumerate(settings):
        if not isinstance(entry, apigw.CfnStage.MethodSettingProperty):
            return None
        if (entry.resource_path, entry.http_method) != ("/*", "*"):
            continue
        if entry.throttling_rate_limit is not None or entry.throttling_burst_limit is not None:
            return None  # the app's own stage throttle
        values = {name: getattr(entry, name) for name in _METHOD_SETTING_FIELDS}
        values.update(throttling_rate_limit=throttle.rate_limit, throttling_burst_limit=throttle.burst_limit)
        settings[index] = apigw.CfnStage.MethodSettingProperty(
            **{name: value for name, value in values.items() if value is not None}
        )
        break
    else:
        settings.append(
            apigw.CfnStage.MethodSettingProperty(
                resource_path="/*",
                http_method="*",
                throttling_rate_limit=throttle.rate_limit,
                throttling_burst_limit=throttle.burst_limit,
            )
        )
    cfn.method_settings = settings
    return throttle


def _throttle_http_stage(stage: apigwv2.HttpStage, throttle: Throttle) -> Throttle | None:
    """Put ``throttle`` on the default route settings of ``stage``, unless it has a throttle already."""
    cfn = cast(apigwv2.CfnStage, stage.node.default_child)
    current = cfn.default_route_settings
    values: dict[str, Any] = {}
    if current is not None:
        if not isinstance(current, apigwv2.CfnStage.RouteSettingsProperty):
            return None
        if current.throttling_rate_limit is not None or current.throttling_burst_limit is not None:
            return None
        values = {
            name: getattr(current, name)
            for name in ("data_trace_enabled", "detailed_metrics_enabled", "logging_level")
            if getattr(current, name) is not None
        }
    cfn.default_route_settings = apigwv2.CfnStage.RouteSettingsProperty(
        **values, throttling_rate_limit=throttle.rate_limit, throttling_burst_limit=throttle.burst_limit
    )
    return throttle
