"""``UsageAlerts``: usage alerts off the hot path, from the table's stream to EventBridge and customers' URLs.

- The table's stream (``NEW_AND_OLD_IMAGES``, on ``TollgateData``) feeds the **alert function** (which also
  charges prepaid customers' automatic top-ups, so it reads the Stripe API key)
  (``tollgate.alerts.handler``) through an event source mapping that passes only counter and wallet items
  (``USAGE#``, ``WALLET#``: a filter, so other writes never invoke it), in batches of up to
  :data:`STREAM_BATCH_SIZE` records or :data:`STREAM_BATCHING_WINDOW_SECONDS`. A record that fails is
  retried (the batch bisected to find it) and, after :data:`STREAM_RETRY_ATTEMPTS`, described in the
  stream's failure queue (the record itself stays in the stream for 24 hours).
- Each alert is an EventBridge event on the account's default bus: ``source: tollgate`` and the alert's
  ``detail-type`` (the README lists them), for the provider's own rules (email, Slack, ...).
- A rule sends the same events to the **webhook queue**; the **webhook function**
  (``tollgate.alerts.webhooks``) posts each to the customer's own URL when they have one, signed; a failed
  delivery is retried with backoff and, after :data:`WEBHOOK_MAX_RECEIVE_COUNT` attempts, kept in the
  webhook dead-letter queue (alarmed by ``Monitoring``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.alerts.service import STREAM_KEY_PREFIXES
from tollgate.cdk.billing import DEAD_LETTER_RETENTION_DAYS, READ_SECRET_ACTIONS, _queue
from tollgate.cdk.constants import (
    ENV_STRIPE_API_KEY_SECRET_ARN,
    ENV_TABLE_NAME,
    HANDLER_ALERT_WEBHOOKS,
    HANDLER_ALERTS,
    SERVICE_ALERTS,
    TABLE_PK,
)
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.nag import acknowledge

STREAM_BATCH_SIZE = 100
STREAM_BATCHING_WINDOW_SECONDS = 1
STREAM_RETRY_ATTEMPTS = 10
WEBHOOK_MAX_RECEIVE_COUNT = 6  # about 16 minutes of backoff (30 s doubling) before the dead-letter queue
WEBHOOK_BATCH_SIZE = 3
WEBHOOK_VISIBILITY_SECONDS = 60  # longer than one delivery attempt (5 s timeout) and the function's timeout
EVENT_SOURCE = "tollgate"
STREAM_READ_ACTIONS = (
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
)
ALERT_TABLE_ACTIONS = (
    "dynamodb:GetItem",  # the customer, the plan, an alert's marker
    "dynamodb:BatchGetItem",  # a sharded customer's counters
    "dynamodb:Query",  # a plan's latest version; a period's threshold invoices, credit grants and closes
    "dynamodb:PutItem",  # claim an alert's marker; store a threshold invoice
    "dynamodb:UpdateItem",  # mark it sent; move a threshold invoice on
    "dynamodb:ConditionCheckItem",  # a threshold invoice is stored only while its period's close is not
)


class UsageAlerts(Construct):
    """The alert function on the table's stream, and the webhook queue and function behind an EventBridge
    rule: ``alert_function``, ``webhook_function``, ``webhook_dead_letter_queue``,
    ``stream_failure_queue``."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        table: dynamodb.ITable,
        stripe_api_key_secret: secretsmanager.ISecret,
    ) -> None:
        super().__init__(scope, id)
        if table.table_stream_arn is None:
            raise ValueError("usage alerts read the table's stream: create the table with one")
        stack = cdk.Stack.of(self)
        bus_arn = stack.format_arn(service="events", resource="event-bus", resource_name="default")
        self.alerts = TollgateFunction(
            self,
            "AlertFunction",
            handler=HANDLER_ALERTS,
            description="Tollgate usage alerts: counter changes on the table's stream -> EventBridge",
            service_name=SERVICE_ALERTS,
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_STRIPE_API_KEY_SECRET_ARN: stripe_api_key_secret.secret_arn,
            },
            timeout=cdk.Duration.seconds(60),
            statements=[
                iam.PolicyStatement(
                    sid="ReadUsageWriteAlertMarkers",
                    actions=list(ALERT_TABLE_ACTIONS),
                    resources=[table.table_arn],
                ),
                iam.PolicyStatement(sid="PublishAlerts", actions=["events:PutEvents"], resources=[bus_arn]),
                iam.PolicyStatement(
                    sid="ReadStripeApiKey",  # automatic top-ups and threshold invoices
                    actions=list(READ_SECRET_ACTIONS),
                    resources=[stripe_api_key_secret.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadTheTablesStream",  # what Lambda's event source mapping reads it with
                    actions=list(STREAM_READ_ACTIONS),
                    resources=[table.table_stream_arn],
                ),
            ],
        )
        self.stream_failure_queue = _queue(
            self, "AlertStreamFailureQueue", retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS)
        )
        acknowledge(
            self.stream_failure_queue,
            "AwsSolutions-SQS3",
            "This queue IS a dead-letter destination: Lambda describes here the stream records the alert "
            "function failed on every retry (cdk-nag only recognises SQS redrive).",
        )
        lambda_.EventSourceMapping(
            self,
            "AlertStream",
            target=self.alerts.function,
            event_source_arn=table.table_stream_arn,
            starting_position=lambda_.StartingPosition.LATEST,
            batch_size=STREAM_BATCH_SIZE,
            max_batching_window=cdk.Duration.seconds(STREAM_BATCHING_WINDOW_SECONDS),
            bisect_batch_on_error=True,
            retry_attempts=STREAM_RETRY_ATTEMPTS,
            report_batch_item_failures=True,
            on_failure=event_sources.SqsDlq(self.stream_failure_queue),
            filters=[  # counters and wallets only: no other write invokes the function
                lambda_.FilterCriteria.filter(
                    {"dynamodb": {"Keys": {TABLE_PK: {"S": lambda_.FilterRule.begins_with(prefix)}}}}
                )
                for prefix in STREAM_KEY_PREFIXES
            ],
        )

        self.webhook_dead_letter_queue = _queue(
            self,
            "AlertWebhookDeadLetterQueue",
            retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS),
        )
        self.webhook_queue = _queue(
            self,
            "AlertWebhookQueue",
            visibility_timeout=cdk.Duration.seconds(WEBHOOK_VISIBILITY_SECONDS),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.webhook_dead_letter_queue, max_receive_count=WEBHOOK_MAX_RECEIVE_COUNT
            ),
        )
        self.rule = events.Rule(
            self,
            "AlertRule",
            description="Tollgate usage alerts -> the customers' webhooks",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE]),
            targets=[targets.SqsQueue(self.webhook_queue)],
        )
        self.webhooks = TollgateFunction(
            self,
            "WebhookFunction",
            handler=HANDLER_ALERT_WEBHOOKS,
            description="Tollgate alert webhooks: signed POSTs to the customers' own URLs",
            service_name=SERVICE_ALERTS,
            environment={ENV_TABLE_NAME: table.table_name},
            timeout=cdk.Duration.seconds(30),
            statements=[
                iam.PolicyStatement(
                    sid="ReadCustomers", actions=["dynamodb:GetItem"], resources=[table.table_arn]
                ),
                iam.PolicyStatement(
                    sid="BackOff",  # a failed delivery's next attempt is later each time
                    actions=["sqs:ChangeMessageVisibility"],
                    resources=[self.webhook_queue.queue_arn],
                ),
            ],
        )
        self.webhooks.function.add_event_source(
            # 3 deliveries of at most 5 s each, well within the 30 s timeout (the function leaves 12 s spare)
            event_sources.SqsEventSource(
                self.webhook_queue, batch_size=WEBHOOK_BATCH_SIZE, report_batch_item_failures=True
            )
        )

    @property
    def alert_function(self) -> lambda_.Function:
        return self.alerts.function

    @property
    def webhook_function(self) -> lambda_.Function:
        return self.webhooks.function
