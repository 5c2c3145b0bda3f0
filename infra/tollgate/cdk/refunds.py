"""``LedgerRefunds``: bill only what succeeded, by refunding failed requests from the usage ledger.

Made by ``Tollgate(ledger=True)`` (``tollgate.refunds``). S3 tells the **refund queue** of every object
Firehose delivers under the ledger bucket's ``ledger/`` prefix (``UsageLedger.notify_deliveries``: an
``s3:ObjectCreated:*`` event notification); the **refund function** (``tollgate.refunds.handler``) takes the
queue's messages :data:`REFUND_BATCH_SIZE` at a time, reads each object (gzip JSON Lines) and refunds the
failed requests of plans with ``refund_statuses``: one ``TransactWriteItems`` each, a marker put once per
request id and the counter's (or wallet's) deduction. A message that fails is reported back alone (partial
batch responses), is received again after the visibility timeout and, after
:data:`REFUND_MAX_RECEIVE_COUNT` receives, waits in the **refund dead-letter queue** (alarmed, kept
:data:`~tollgate.cdk.constants.DEAD_LETTER_RETENTION_DAYS` days; redrive it once the cause is fixed:
a refund is applied once however often its object is read). The function's errors and ``RefundsSkipped``
(a failed request that could not be refunded, named in the log) are alarmed too (``Monitoring``).

The function runs at most :data:`REFUND_MAX_CONCURRENCY` at a time (the event source's maximum concurrency,
not a reservation: messages beyond it wait in the queue instead of being throttled towards the dead-letter
queue), so a backlog or a redrive cannot crowd the authorizer's counters with transactions.

Its role may: GetItem plan versions (``PLAN#`` partitions); BatchGetItem and PutItem refund markers and a
prepaid customer's refund lot (``CUSTOMER#``); UpdateItem counters and wallets (``USAGE#``, ``WALLET#``):
exactly the actions of its transaction and the reads before, on those partitions only. ``s3:GetObject`` on
the ledger bucket's ``ledger/*`` only (and ``kms:Decrypt`` on the bucket's key, were it encrypted with one: it
is SSE-S3). Lambda's event source mapping consumes the queue with the role too (CDK grants exactly that).
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.cdk.billing import ONE_VCPU_MEMORY_MB, _queue
from tollgate.cdk.constants import (
    DEAD_LETTER_RETENTION_DAYS,
    ENV_TABLE_NAME,
    HANDLER_REFUNDS,
    ID_REFUND_DLQ,
    ID_REFUND_FUNCTION,
    ID_REFUND_QUEUE,
    LAMBDA_MAX_TIMEOUT_SECONDS,
    SERVICE_REFUNDS,
)
from tollgate.cdk.data import TollgateData, only_partitions
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.ledger import LEDGER_PREFIX, LEDGER_READ_ACTIONS, UsageLedger
from tollgate.cdk.nag import acknowledge
from tollgate.dal import tablekeys

# A batch of up to 10 ledger objects; an object holds up to 64 MiB of records (the ledger's Firehose buffer),
# about 100,000 requests, parsed in seconds on one vCPU, and each failed request of a refunding plan is one
# transaction (10-20 ms). Lambda's longest timeout leaves room for tens of thousands of refunds per batch
# (an outage's worth); SQS's visibility timeout is 6 x the function's (AWS's guidance for Lambda event
# sources), so a failed message is received again after 90 minutes, and after 5 receives (7.5 hours) it
# waits in the dead-letter queue.
REFUND_BATCH_SIZE = 10
REFUND_TIMEOUT_SECONDS = LAMBDA_MAX_TIMEOUT_SECONDS
REFUND_QUEUE_VISIBILITY_TIMEOUT_SECONDS = 6 * REFUND_TIMEOUT_SECONDS
REFUND_MAX_RECEIVE_COUNT = 5
REFUND_QUEUE_RETENTION_DAYS = 4  # SQS's default; a message moved to the DLQ keeps its first enqueue time
REFUND_MAX_CONCURRENCY = 2  # the event source's least: the ledger delivers a few objects every 5 minutes
# The partitions each action of the function touches (tollgate.dal.refunds, tollgate.refunds.service).
PLAN_PK_PREFIX = tablekeys.plan_pk("")  # the plan version a record was priced with (GetItem)
REFUND_MARKER_PK_PREFIX = tablekeys.CUSTOMER_PK_PREFIX  # REFUND#{period}#{request id} in the customer's
PLAN_READ_ACTIONS = ("dynamodb:GetItem",)
MARKER_WRITE_ACTIONS = ("dynamodb:PutItem",)  # the transaction's Put (once per request id)
MARKER_READ_ACTIONS = ("dynamodb:BatchGetItem",)  # which requests of an object were refunded already
DEDUCTION_ACTIONS = ("dynamodb:UpdateItem",)  # the transaction's Update (ADD, conditional)
KMS_DECRYPT_ACTIONS = ("kms:Decrypt",)


class LedgerRefunds(Construct):
    """The refund queue (``queue``) and its dead-letter queue (``dead_letter_queue``), the ledger bucket's
    notification into it, and the refund function (``function``) consuming it."""

    def __init__(self, scope: Construct, id: str, *, data: TollgateData, ledger: UsageLedger) -> None:
        super().__init__(scope, id)
        table = data.table
        bucket = ledger.bucket
        self.dead_letter_queue = _queue(
            self, ID_REFUND_DLQ, retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS)
        )
        self.queue = _queue(
            self,
            ID_REFUND_QUEUE,
            visibility_timeout=cdk.Duration.seconds(REFUND_QUEUE_VISIBILITY_TIMEOUT_SECONDS),
            retention_period=cdk.Duration.days(REFUND_QUEUE_RETENTION_DAYS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.dead_letter_queue, max_receive_count=REFUND_MAX_RECEIVE_COUNT
            ),
        )
        ledger.notify_deliveries(self.queue)
        statements = [
            iam.PolicyStatement(
                sid="ReadPlans",
                actions=list(PLAN_READ_ACTIONS),
                resources=[table.table_arn],
                conditions=only_partitions(PLAN_PK_PREFIX),
            ),
            iam.PolicyStatement(
                sid="PutRefundMarkers",
                actions=list(MARKER_WRITE_ACTIONS),
                resources=[table.table_arn],
                conditions=only_partitions(REFUND_MARKER_PK_PREFIX),
            ),
            iam.PolicyStatement(
                sid="FindRefundMarkers",
                actions=list(MARKER_READ_ACTIONS),
                resources=[table.table_arn],
                conditions=only_partitions(REFUND_MARKER_PK_PREFIX),
            ),
            iam.PolicyStatement(
                sid="DeductRefundedCredits",
                actions=list(DEDUCTION_ACTIONS),
                resources=[table.table_arn],
                conditions=only_partitions(tablekeys.COUNTER_PK_PREFIX, tablekeys.WALLET_PK_PREFIX),
            ),
            iam.PolicyStatement(
                sid="ReadLedgerObjects",
                actions=list(LEDGER_READ_ACTIONS),
                resources=[bucket.arn_for_objects(LEDGER_PREFIX + "*")],
            ),
        ]
        if bucket.encryption_key is not None:
            statements.append(
                iam.PolicyStatement(
                    sid="DecryptLedgerObjects",
                    actions=list(KMS_DECRYPT_ACTIONS),
                    resources=[bucket.encryption_key.key_arn],
                )
            )
        self.refunder = TollgateFunction(
            self,
            ID_REFUND_FUNCTION,
            handler=HANDLER_REFUNDS,
            description="Tollgate refunds: failed requests in delivered ledger objects -> credits back",
            service_name=SERVICE_REFUNDS,
            memory_size=ONE_VCPU_MEMORY_MB,  # gzip and pydantic over up to 64 MiB of records: CPU-bound
            timeout=cdk.Duration.seconds(REFUND_TIMEOUT_SECONDS),
            environment={ENV_TABLE_NAME: table.table_name},
            statements=statements,
        )
        bucket_logical_id = cdk.Stack.of(self).get_logical_id(cast(cdk.CfnElement, bucket.node.default_child))
        acknowledge(
            self.refunder.role,
            f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{LEDGER_PREFIX}*]",
            "Firehose names each ledger object itself (partition, time and a random suffix) and S3 tells "
            "the function which one arrived, so it may read objects by prefix: the ledger's prefix only.",
        )
        self.event_source = event_sources.SqsEventSource(
            self.queue,
            batch_size=REFUND_BATCH_SIZE,
            report_batch_item_failures=True,
            max_concurrency=REFUND_MAX_CONCURRENCY,
        )
        self.refunder.function.add_event_source(self.event_source)

    @property
    def function(self) -> lambda_.Function:
        return self.refunder.function
