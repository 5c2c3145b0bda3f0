"""``SampleApi``: the example provider API, a REST API whose routes are all metered through ``MeteredApi``.

- ``GET /v1/search`` and ``POST /v1/generate``: the sample backend (their prices, 1 and 25 credits in the
  example plan, live in the plan, not here);
- ``GET /usage``: the customer's own usage, Tollgate's usage function behind the same authorizer (0 credits in
  the plan).

This is what a provider writes in their own app (it uses only the public ``tollgate.cdk`` constructs, and
its backend is the provider's own code, packaged from ``functions/sample_api``); this repo's stack includes
it so a fresh deploy has something to call.
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from tollgate.cdk import MeteredApi, UsageLedger
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.nag import acknowledge

SAMPLE_BACKEND_DIR = Path(__file__).resolve().parent.parent / "functions" / "sample_api"
SAMPLE_API_STAGE = "live"
ROUTE_SEARCH = ("GET", "/v1/search")
ROUTE_GENERATE = ("POST", "/v1/generate")
ROUTE_USAGE = ("GET", "/usage")
ID_SAMPLE_REST_API = "RestApi"
ID_METERED_API = "Metered"
ID_SAMPLE_FUNCTION = "SampleBackendFunction"
SAMPLE_HANDLER = "handler.handler"  # functions/sample_api/handler.py
# One JSON line per request to CloudWatch Logs, when the stage does not log to a usage ledger (whose own
# format, tollgate.domain.ledger.ACCESS_LOG_FORMAT, then applies); the authorizer's principal is the customer
# id, its reason the deny reason.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "ip": "$context.identity.sourceIp",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "customerId": "$context.authorizer.principalId",
    "denyReason": "$context.authorizer.reason",
    "authorizerStatus": "$context.authorizer.status",
    "authorizerLatency": "$context.authorizer.latency",
    "authorizerError": "$context.authorizer.error",
    "integrationLatency": "$context.integration.latency",
}


class SampleApi(Construct):
    """The example REST API: stage ``live`` with access logs (to the usage ledger when one is given, else to
    CloudWatch Logs), execution logs (errors) and X-Ray tracing."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        authorizer_function: lambda_.IFunction,
        usage_function: lambda_.IFunction,
        ledger: UsageLedger | None = None,
    ) -> None:
        super().__init__(scope, id)
        access_log: dict[str, object] = {}
        if ledger is None:  # with a ledger, MeteredApi points the stage's one access log at it
            access_logs = logs.LogGroup(
                self,
                "AccessLogs",
                retention=logs.RetentionDays.THREE_MONTHS,
                removal_policy=cdk.RemovalPolicy.DESTROY,
            )
            access_log = {
                "access_log_destination": apigw.LogGroupLogDestination(access_logs),
                "access_log_format": apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FORMAT)),
            }
        self.rest_api = apigw.RestApi(
            self,
            ID_SAMPLE_REST_API,
            rest_api_name=f"{cdk.Stack.of(self).stack_name}-sample-api",
            description="Tollgate sample API: every route is metered by the Tollgate authorizer",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # REST API logging needs the regional API Gateway account's CloudWatch role; kept on stack delete
            # because other APIs in the account rely on the same account setting.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name=SAMPLE_API_STAGE,
                **access_log,  # type: ignore[arg-type]
                logging_level=apigw.MethodLoggingLevel.ERROR,
                data_trace_enabled=False,
                metrics_enabled=True,
                tracing_enabled=True,
            ),
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role uses the AWS managed policy made for exactly this "
            "purpose (log group creation and log delivery for every API in the account and region).",
        )
        acknowledge(
            self.rest_api,
            "AwsSolutions-APIG3",
            "The sample API is a demo; a provider attaches the WAFv2 web ACL of their choice to their own "
            "API. Per-customer abuse is bounded by the metering authorizer (credit limits, suspended keys).",
        )
        validator = self.rest_api.add_request_validator(
            "RequestValidator",
            validate_request_body=True,
            validate_request_parameters=True,
        )
        self.metered = MeteredApi.for_rest_api(
            self,
            ID_METERED_API,
            api=self.rest_api,
            authorizer_function=authorizer_function,
            request_validator=validator,
            ledger=ledger,
        )

        # The provider's own backend code, packaged from its own directory (TollgateFunction gives it a
        # dedicated least-privilege role and log group; any lambda_.Function works the same).
        self.sample_backend = TollgateFunction(
            self,
            ID_SAMPLE_FUNCTION,
            handler=SAMPLE_HANDLER,
            code=lambda_.Code.from_asset(str(SAMPLE_BACKEND_DIR), exclude=["__pycache__"]),
            description="Tollgate sample API backend (search, generate)",
            service_name="tollgate-sample-api",
        ).function
        for method, path in (ROUTE_SEARCH, ROUTE_GENERATE):
            self.metered.add_function_route(method, path, self.sample_backend)
        self.metered.add_usage_route(usage_function, ROUTE_USAGE[1])
        self.metered.add_portal_route(usage_function)  # the usage page by signed link, no key

    @property
    def url(self) -> str:
        return self.rest_api.url
