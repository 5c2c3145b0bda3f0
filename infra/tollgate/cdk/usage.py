"""``UsageApi``: the ``GET /usage`` function (and ``/usage/budget``, ``/usage/alerts``,
``/usage/alerts/webhook``: what a customer sets for themselves) a provider routes on their own API, behind the
authorizer.

The function answers the calling customer's usage this period, the bill so far and recent invoices; the
customer is whoever the authorizer says called (its context), so the route must be metered. Add it with
``MeteredApi.add_usage_route(tollgate.usage_function)`` (give it a cost of 0 credits in your plans).
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from tollgate.cdk.billing import READ_SECRET_ACTIONS
from tollgate.cdk.constants import (
    ENV_PORTAL_LINK_SECRET_ARN,
    ENV_TABLE_NAME,
    HANDLER_USAGE_API,
    ID_PORTAL_LINK_SECRET,
    ID_USAGE_FUNCTION,
    SERVICE_USAGE_API,
)
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.ledger import UsageLedger
from tollgate.cdk.nag import acknowledge

USAGE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
# PUT /usage/budget replaces the customer's item (conditionally); PUT /usage/alerts and /usage/alerts/webhook
# set one attribute of it (conditionally): customer items only
CUSTOMER_TABLE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
CUSTOMER_PK_PREFIX = "CUSTOMER#"
# an export's query must answer within API Gateway's 29 s integration timeout
LEDGER_EXPORT_TIMEOUT = cdk.Duration.seconds(28)
PORTAL_LINK_SECRET_LENGTH = 64
PORTAL_LINK_ROTATION_ACK = (
    "A random HMAC key, not a credential of another system: rotated by putting a new random value "
    "(aws secretsmanager put-secret-value), which ends every outstanding link (each lives 24 hours at most) "
    "within the function's 5-minute secret cache; no rotation function is needed."
)


class UsageApi(Construct):
    """The usage function, allowed to read the table and to write customer items (a budget, alert rules, an
    alert webhook), nothing else."""

    def __init__(self, scope: Construct, id: str, *, table: dynamodb.ITable) -> None:
        super().__init__(scope, id)
        # What the usage page's signed links (GET /portal?token=...) are signed with: random, made by Secrets
        # Manager at deploy, read by the function through Powertools Parameters (cached 5 minutes) and by
        # `tollgate portal link` (stack output PortalLinkSecretArn).
        self.portal_link_secret = secretsmanager.Secret(
            self,
            ID_PORTAL_LINK_SECRET,
            description="Tollgate: signs the customers' usage page links (GET /portal)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=PORTAL_LINK_SECRET_LENGTH, exclude_punctuation=True
            ),
        )
        acknowledge(self.portal_link_secret, "AwsSolutions-SMG4", PORTAL_LINK_ROTATION_ACK)
        self.usage = TollgateFunction(
            self,
            ID_USAGE_FUNCTION,
            handler=HANDLER_USAGE_API,
            description="Tollgate GET /usage: the calling customer's usage this period",
            service_name=SERVICE_USAGE_API,
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_PORTAL_LINK_SECRET_ARN: self.portal_link_secret.secret_arn,
            },
            statements=[
                iam.PolicyStatement(
                    sid="ReadPortalLinkSecret",
                    actions=list(READ_SECRET_ACTIONS),
                    resources=[self.portal_link_secret.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadUsage",
                    actions=list(USAGE_TABLE_ACTIONS),
                    resources=[table.table_arn],
                ),
                iam.PolicyStatement(
                    sid="SetCustomerSettings",
                    actions=list(CUSTOMER_TABLE_ACTIONS),
                    resources=[table.table_arn],
                    conditions={
                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{CUSTOMER_PK_PREFIX}*"]}
                    },
                ),
            ],
        )

    @property
    def function(self) -> lambda_.Function:
        return self.usage.function

    def read_ledger(self, ledger: UsageLedger) -> None:
        """Let ``GET /usage/export`` read ``ledger`` (``Tollgate(ledger=True)`` calls this): its Athena
        workgroup, Glue database and table in the function's environment, the least the queries need, and a
        timeout long enough for one (the Lambda's 28 s, under API Gateway's 29)."""
        function = self.usage.function
        for name, value in ledger.query_environment().items():
            function.add_environment(name, value)
        cast(lambda_.CfnFunction, function.node.default_child).timeout = int(
            LEDGER_EXPORT_TIMEOUT.to_seconds()
        )
        ledger.grant_queries(self.usage.role)
