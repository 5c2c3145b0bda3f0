"""``UsageApi``: the ``GET /usage`` function (and ``/usage/budget``, ``/usage/alerts``,
``/usage/alerts/webhook``: what a customer sets for themselves) a provider routes on their own API, behind the
authorizer.

The function answers the calling customer's usage this period, the bill so far and recent invoices; the
customer is whoever the authorizer says called (its context), so the route must be metered. Add it with
``MeteredApi.add_usage_route(tollgate.usage_function)`` (give it a cost of 0 credits in your plans).
"""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from tollgate.cdk.constants import ENV_TABLE_NAME, HANDLER_USAGE_API, ID_USAGE_FUNCTION, SERVICE_USAGE_API
from tollgate.cdk.functions import TollgateFunction

USAGE_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query")
# PUT /usage/budget replaces the customer's item (conditionally); PUT /usage/alerts and /usage/alerts/webhook
# set one attribute of it (conditionally): customer items only
CUSTOMER_TABLE_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")
CUSTOMER_PK_PREFIX = "CUSTOMER#"


class UsageApi(Construct):
    """The usage function, allowed to read the table and to write customer items (a budget, alert rules, an
    alert webhook), nothing else."""

    def __init__(self, scope: Construct, id: str, *, table: dynamodb.ITable) -> None:
        super().__init__(scope, id)
        self.usage = TollgateFunction(
            self,
            ID_USAGE_FUNCTION,
            handler=HANDLER_USAGE_API,
            description="Tollgate GET /usage: the calling customer's usage this period",
            service_name=SERVICE_USAGE_API,
            environment={ENV_TABLE_NAME: table.table_name},
            statements=[
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
