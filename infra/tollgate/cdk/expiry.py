"""``CreditExpiry``: the hourly sweep that expires the unused credits of prepaid lots past their expiry.

An EventBridge Scheduler schedule invokes the **credit expiry function** (``tollgate.expiry.handler``) every
hour, on the hour (UTC), with the schedule's own time as "now"; Scheduler retries delivering it and, failing
that, sends it to the stack's schedule dead-letter queue (``Billing``'s, alarmed). A run that fails is retried
by Lambda (twice) and, at the latest, by the next hour's run: every lot is settled once, whichever run does
it, so nothing piles up and nothing is settled twice. One run at a time (reserved concurrency 1); the
function's errors are alarmed (``Monitoring``).

The function finds the lots due in the table's index of expiring lots (``gsi1``, ``EXPIRING``: a Query on
the index, no scan), then, for each customer, reads the wallet (``WALLET#``) and the customer's top-ups
(``CUSTOMER#``, ``TOPUP#`` items) and settles each lot in one transaction of two ``UpdateItem``\\ s. Its role
may do exactly that: Query the index; GetItem wallets; Query customer partitions; UpdateItem wallets and
customer items. Nothing else, no other partition (``dynamodb:LeadingKeys``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.cdk.billing import ScheduledInvocation
from tollgate.cdk.constants import (
    ENV_TABLE_NAME,
    HANDLER_CREDIT_EXPIRY,
    ID_CREDIT_EXPIRY_FUNCTION,
    ID_CREDIT_EXPIRY_SCHEDULE,
    SCHEDULED_RESERVED_CONCURRENCY,
    SERVICE_CREDIT_EXPIRY,
)
from tollgate.cdk.data import TollgateData, only_partitions
from tollgate.cdk.functions import TollgateFunction
from tollgate.dal import tablekeys

CREDIT_EXPIRY_SCHEDULE = "cron(0 * * * ? *)"  # every hour, on the hour (UTC)
CREDIT_EXPIRY_TIMEOUT_MINUTES = 5  # the sweep stops taking customers 10 s before it, the next run goes on
WALLET_PK_PREFIX = tablekeys.WALLET_PK_PREFIX
CUSTOMER_PK_PREFIX = tablekeys.CUSTOMER_PK_PREFIX  # the customers' top-ups


class CreditExpiry(Construct):
    """The credit expiry function (``function``) and its hourly schedule (``schedule``)."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data: TollgateData,
        schedule_dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        table = data.table
        self.sweeper = TollgateFunction(
            self,
            ID_CREDIT_EXPIRY_FUNCTION,
            handler=HANDLER_CREDIT_EXPIRY,
            description="Tollgate prepaid credits: expires what is left of lots past their expiry",
            service_name=SERVICE_CREDIT_EXPIRY,
            timeout=cdk.Duration.minutes(CREDIT_EXPIRY_TIMEOUT_MINUTES),
            environment={ENV_TABLE_NAME: table.table_name},
            reserved_concurrency=SCHEDULED_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="FindDueLots",  # the index of expiring lots
                    actions=["dynamodb:Query"],
                    resources=[data.gsi1_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadWallets",
                    actions=["dynamodb:GetItem"],
                    resources=[table.table_arn],
                    conditions=only_partitions(WALLET_PK_PREFIX),
                ),
                iam.PolicyStatement(
                    sid="ReadLots",  # a customer's top-ups (sk begins_with TOPUP#)
                    actions=["dynamodb:Query"],
                    resources=[table.table_arn],
                    conditions=only_partitions(CUSTOMER_PK_PREFIX),
                ),
                iam.PolicyStatement(
                    sid="SettleLots",  # one TransactWriteItems: the wallet and the lot's record
                    actions=["dynamodb:UpdateItem"],
                    resources=[table.table_arn],
                    conditions=only_partitions(WALLET_PK_PREFIX, CUSTOMER_PK_PREFIX),
                ),
            ],
        )
        self.schedule = ScheduledInvocation(
            self,
            ID_CREDIT_EXPIRY_SCHEDULE,
            description="Tollgate: hourly expiry of prepaid credits",
            expression=CREDIT_EXPIRY_SCHEDULE,
            function=self.sweeper.function,
            dead_letter_queue=schedule_dead_letter_queue,
        )

    @property
    def function(self) -> lambda_.Function:
        return self.sweeper.function
