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
from tollgate.cdk.ledger import ATHENA_RESULTS_PREFIX, LEDGER_PREFIX, UsageLedger
from tollgate.cdk.nag import acknowledge
from tollgate.usage_api.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP

USAGE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
# PUT /usage/budget replaces the customer's item (conditionally); PUT /usage/alerts and /usage/alerts/webhook
# set one attribute of it (conditionally): customer items only
CUSTOMER_TABLE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
CUSTOMER_PK_PREFIX = "CUSTOMER#"
# GET /usage/export asks the ledger through Athena (tollgate.ledger.athena): run and read a query in the
# ledger's workgroup; read the Glue table it names; read the ledger's objects and write the query's results.
LEDGER_ATHENA_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
)
LEDGER_GLUE_ACTIONS = ("glue:GetDatabase", "glue:GetTable")
LEDGER_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket")
LEDGER_READ_ACTIONS = ("s3:GetObject",)
LEDGER_RESULTS_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
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
        for name, value in (
            (LEDGER_WORKGROUP, ledger.work_group_name),
            (LEDGER_DATABASE, ledger.database_name),
            (LEDGER_TABLE, ledger.table_name),
        ):
            function.add_environment(name, value)
        cast(lambda_.CfnFunction, function.node.default_child).timeout = int(
            LEDGER_EXPORT_TIMEOUT.to_seconds()
        )
        stack = cdk.Stack.of(self)
        bucket = ledger.bucket
        for statement in (
            iam.PolicyStatement(
                sid="QueryLedger",
                actions=list(LEDGER_ATHENA_ACTIONS),
                resources=[
                    stack.format_arn(
                        service="athena", resource="workgroup", resource_name=ledger.work_group_name
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ReadLedgerTable",
                actions=list(LEDGER_GLUE_ACTIONS),
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=ledger.database_name),
                    stack.format_arn(
                        service="glue",
                        resource="table",
                        resource_name=f"{ledger.database_name}/{ledger.table_name}",
                    ),
                ],
            ),
            iam.PolicyStatement(
                sid="ListLedger", actions=list(LEDGER_BUCKET_ACTIONS), resources=[bucket.bucket_arn]
            ),
            iam.PolicyStatement(
                sid="ReadLedger",
                actions=list(LEDGER_READ_ACTIONS),
                resources=[bucket.arn_for_objects(LEDGER_PREFIX + "*")],
            ),
            iam.PolicyStatement(
                sid="LedgerQueryResults",
                actions=list(LEDGER_RESULTS_ACTIONS),
                resources=[bucket.arn_for_objects(ATHENA_RESULTS_PREFIX + "*")],
            ),
        ):
            self.usage.role.add_to_principal_policy(statement)
        bucket_logical_id = stack.get_logical_id(cast(cdk.CfnElement, bucket.node.default_child))
        for prefix in (LEDGER_PREFIX, ATHENA_RESULTS_PREFIX):
            acknowledge(
                self.usage.role,
                f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{prefix}*]",
                "Firehose and Athena name each object themselves (partitions, times, query ids), so object "
                "ARNs can only be granted by prefix; the grant is limited to the ledger's own prefixes.",
            )
