#!/usr/bin/env python3
"""A provider's own CDK app: their REST API and HTTP API, their backend functions, metered by Tollgate.

Everything Tollgate-specific is four calls: ``Tollgate(..., ledger=True)`` (table, authorizer, billing,
monitoring, and the request ledger with the refunds of failed requests), ``MeteredApi(...,
ledger=tollgate.ledger)`` on each API (which also points the stage's access log at the ledger),
``add_usage_route`` so customers can see their own usage, and ``add_portal_route`` on the REST API for the
usage page a signed link opens (the ``PortalUrl`` output). Which failed requests are refunded is up to each
plan (``refund_statuses`` in plans.yaml). The rest is the provider's ordinary CDK code. ``npx cdk synth``
runs this file with ``.venv/bin/python`` (cdk.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from tollgate.cdk import MeteredApi, Tollgate
from tollgate.cdk.nag import acknowledge, add_checks

BACKEND = Path(__file__).resolve().parent / "backend"


class WeatherApiStack(cdk.Stack):
    """The provider's product: a weather API sold per request, on a REST API and an HTTP API."""

    def __init__(self, scope: Construct, id: str, **kwargs: object) -> None:
        super().__init__(scope, id, **kwargs)  # type: ignore[arg-type]

        # 1. Tollgate: the table, the metering authorizer, the monthly close to Stripe, alarms; and the
        #    request ledger (every request's record in S3, queryable with Athena), which backs the bills and
        #    refunds the failed requests of plans with refund_statuses.
        tollgate = Tollgate(self, "Tollgate", close_grace_hours=6, dunning_grace_days=7, ledger=True)

        # 2. The provider's own backend functions.
        forecast = self.backend_function("Forecast", "forecast.handler")
        history = self.backend_function("History", "history.handler")

        # 3. Their REST API, every route metered (costs per route live in the plans, not here). No access log
        #    here: MeteredApi(ledger=...) sends the stage's access log (a stage has one) to the ledger.
        rest_api = apigw.RestApi(
            self,
            "WeatherRestApi",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,  # the execution logs below need the account's API Gateway CloudWatch role
            cloud_watch_role_removal_policy=cdk.RemovalPolicy.RETAIN,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                logging_level=apigw.MethodLoggingLevel.ERROR,
                metrics_enabled=True,
                throttling_rate_limit=500,
                throttling_burst_limit=1000,
            ),
        )
        validator = rest_api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        metered_rest = MeteredApi(
            self,
            "MeteredRest",
            api=rest_api,
            authorizer_function=tollgate.authorizer_function,
            request_validator=validator,
            ledger=tollgate.ledger,
        )
        metered_rest.add_function_route("GET", "/forecast/{city}", forecast)
        metered_rest.add_function_route("GET", "/history/{city}", history)
        metered_rest.add_usage_route(tollgate.usage_function)
        # GET /portal: the usage page a signed link opens (`tollgate portal link CUSTOMER`), no API key.
        metered_rest.add_portal_route(tollgate.usage_function)

        # 4. Their HTTP API (cheaper per request), metered the same way; its default stage logs to a log group
        #    that MeteredApi subscribes to the ledger (HTTP APIs log only to CloudWatch Logs).
        http_api = apigwv2.HttpApi(self, "WeatherHttpApi", description="Weather API (HTTP API)")
        metered_http = MeteredApi(
            self,
            "MeteredHttp",
            api=http_api,
            authorizer_function=tollgate.authorizer_function,
            ledger=tollgate.ledger,
        )
        metered_http.add_function_route("GET", "/forecast/{city}", forecast)
        metered_http.add_usage_route(tollgate.usage_function)

        cdk.CfnOutput(self, "RestApiUrl", value=rest_api.url)
        cdk.CfnOutput(self, "HttpApiUrl", value=http_api.api_endpoint)

        acknowledge(
            rest_api,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role uses the AWS managed policy made for exactly this.",
        )
        acknowledge(
            rest_api,
            "AwsSolutions-APIG3",
            "This example leaves the WAF web ACL to the provider; per-customer abuse is bounded by "
            "Tollgate (credit limits, suspended keys) and the stage throttling above.",
        )

    def backend_function(self, id: str, handler: str) -> lambda_.Function:
        """A backend function with its own log group and a role that may write only there."""
        log_group = logs.LogGroup(
            self,
            f"{id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            inline_policies={
                "Logs": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                            resources=[log_group.log_group_arn],
                        )
                    ]
                )
            },
        )
        return lambda_.Function(
            self,
            id,
            runtime=lambda_.Runtime.PYTHON_3_14,
            architecture=lambda_.Architecture.ARM_64,
            handler=handler,
            code=lambda_.Code.from_asset(str(BACKEND), exclude=["__pycache__"]),
            role=role,
            log_group=log_group,
            environment={"UNITS": json.dumps("metric")},
        )


app = cdk.App()
WeatherApiStack(app, "WeatherApi")
add_checks(app)
app.synth()
