"""``Billing``: the monthly period close and its watchdog, the Stripe secrets, the webhook endpoint and the
dunning sweeper.

Period close: an EventBridge Scheduler schedule fires at ``grace_hours`` past midnight UTC on the 1st and
invokes the starter, which lists customers (Query on ``gsi1``) and sends one message per customer to the close
queue. The worker consumes the queue (one close per invocation, partial batch failures reported) and invoices
through Stripe. Its concurrency is derived from Stripe's rate limits (``stripe_rate_limits``): enough workers,
each pacing its requests at its share of every limit, that the close runs at 90% of the limit
(``tollgate.billing.close.pacing``; the time budget is in ``tollgate.cdk.constants``). Poison messages land in
the close DLQ after 5 receives. ``close_watchdog_delay_hours`` after the close schedule, the close watchdog
counts the customers without a terminal record of the period.

Nothing fails silently. Scheduler retries delivering an invocation, then sends it to the schedule DLQ. Lambda
runs each scheduled function asynchronously: one that errors or times out is retried twice, then the event
goes to that function's failure queue (an on-failure destination, ``EventInvokeConfig``). Every queue of
failures is alarmed (``tollgate.cdk.monitoring``).

The starter can also be invoked by hand with ``{"period": "2026-10"}``. From the schedule it receives
``{"trigger": "schedule", "scheduledTime": "<ISO-8601>"}`` (the schedule's own time, stable across retries).
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.billing.close.settings import StripeRateLimits
from tollgate.cdk.constants import (
    ASYNC_MAX_EVENT_AGE_HOURS,
    ASYNC_RETRY_ATTEMPTS,
    CLOSE_QUEUE_MAX_RECEIVE_COUNT,
    CLOSE_QUEUE_VISIBILITY_TIMEOUT_SECONDS,
    CLOSE_WORKER_BATCH_SIZE,
    CLOSE_WORKER_TIMEOUT_SECONDS,
    DEAD_LETTER_RETENTION_DAYS,
    DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS,
    DEFAULT_STRIPE_RATE_LIMITS,
    DUNNING_SWEEP_HOUR_UTC,
    ENV_CLOSE_QUEUE_URL,
    ENV_CLOSE_WORKER_FLEET_SIZE,
    ENV_DUNNING_GRACE_DAYS,
    ENV_STRIPE_API_KEY_SECRET_ARN,
    ENV_STRIPE_WEBHOOK_SECRET_ARN,
    ENV_TABLE_NAME,
    HANDLER_CLOSE_STARTER,
    HANDLER_CLOSE_WATCHDOG,
    HANDLER_CLOSE_WORKER,
    HANDLER_DUNNING_SWEEPER,
    HANDLER_WEBHOOK,
    ID_ASYNC_INVOKE_CONFIG,
    ID_CLOSE_DLQ,
    ID_CLOSE_QUEUE,
    ID_CLOSE_SCHEDULE,
    ID_CLOSE_STARTER_FAILURES,
    ID_CLOSE_STARTER_FUNCTION,
    ID_CLOSE_WATCHDOG_FAILURES,
    ID_CLOSE_WATCHDOG_FUNCTION,
    ID_CLOSE_WATCHDOG_SCHEDULE,
    ID_CLOSE_WORKER_FUNCTION,
    ID_DUNNING_SCHEDULE,
    ID_DUNNING_SWEEPER_FAILURES,
    ID_DUNNING_SWEEPER_FUNCTION,
    ID_SCHEDULE_DLQ,
    ID_STRIPE_API_KEY_SECRET,
    ID_STRIPE_WEBHOOK_SECRET,
    ID_WEBHOOK_FUNCTION,
    ID_WEBHOOK_URL,
    SCHEDULE_MAX_EVENT_AGE_HOURS,
    SCHEDULE_RETRY_ATTEMPTS,
    SCHEDULE_TIMEZONE,
    SCHEDULED_RESERVED_CONCURRENCY,
    SERVICE_PERIOD_CLOSE,
    SERVICE_WEBHOOKS,
    WEBHOOK_RESERVED_CONCURRENCY,
    close_worker_concurrency,
)
from tollgate.cdk.data import TollgateData
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.nag import acknowledge
from tollgate.dal.tablekeys import CLOSE_RUN_PK_PREFIX

CLOSE_WORKER_TABLE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:ConditionCheckItem",  # with PutItem/UpdateItem: what a TransactWriteItems call is authorized as
    "dynamodb:Query",
)
WEBHOOK_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
SWEEPER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query")
WATCHDOG_TABLE_ACTIONS = ("dynamodb:BatchGetItem",)  # the close records; customers by Query on gsi1
CLOSE_STARTER_TABLE_ACTIONS = ("dynamodb:GetItem", "dynamodb:PutItem")  # its close runs (conditional puts)
ONE_VCPU_MEMORY_MB = 1769  # where Lambda gives a function one full vCPU
SEND_FAILURE_ACTIONS = ("sqs:SendMessage",)  # what Lambda needs to deliver to an on-failure SQS destination
READ_SECRET_ACTIONS = ("secretsmanager:GetSecretValue",)
SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"  # Scheduler context attribute: the schedule's own time

_ROTATION_ACK_REASON = (
    "This secret holds a credential issued by Stripe ({what}); Secrets Manager cannot rotate it. It is "
    "rolled in the Stripe dashboard and stored with `aws secretsmanager put-secret-value`."
)


def close_schedule_expression(grace_hours: int) -> str:
    """``cron(0 {grace_hours} 1 * ? *)``: on the 1st of each month, ``grace_hours`` after midnight UTC."""
    if not 0 <= grace_hours <= 23:
        raise ValueError(f"the close grace must be 0..23 hours, got {grace_hours}")
    return f"cron(0 {grace_hours} 1 * ? *)"


def dunning_schedule_expression(hour: int = DUNNING_SWEEP_HOUR_UTC) -> str:
    return f"cron(0 {hour} * * ? *)"


def close_watchdog_schedule_expression(grace_hours: int, delay_hours: int) -> str:
    """``delay_hours`` after the close schedule (which may carry into the 2nd or 3rd of the month)."""
    close_schedule_expression(grace_hours)  # validates the grace
    if not 1 <= delay_hours <= 48:
        raise ValueError(f"the close watchdog's delay must be 1..48 hours, got {delay_hours}")
    day, hour = divmod(grace_hours + delay_hours, 24)
    return f"cron(0 {hour} {1 + day} * ? *)"


def _queue(scope: Construct, id: str, **props: object) -> sqs.Queue:
    """An SQS queue encrypted at rest (SSE-SQS) that refuses requests not made over TLS."""
    return sqs.Queue(
        scope,
        id,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        **props,  # type: ignore[arg-type]
    )


def failure_queue(scope: Construct, id: str, what: str) -> sqs.Queue:
    """The queue a function's failed asynchronous invocations go to (its on-failure destination)."""
    queue = _queue(scope, id, retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS))
    acknowledge(
        queue,
        "AwsSolutions-SQS3",
        f"This queue IS a dead-letter queue: Lambda sends the asynchronous invocations of {what} that failed "
        "every retry here, as the function's on-failure destination (cdk-nag only recognises SQS redrive "
        "and Lambda DeadLetterConfig).",
    )
    return queue


def send_failures_statement(queue: sqs.IQueue) -> iam.PolicyStatement:
    """The function's own permission to deliver to its on-failure queue (Lambda sends as the function)."""
    return iam.PolicyStatement(
        sid="SendFailedInvocations", actions=list(SEND_FAILURE_ACTIONS), resources=[queue.queue_arn]
    )


def configure_async_invoke(scope: Construct, function: lambda_.IFunction, failure_queue: sqs.IQueue) -> None:
    """Bounded retries for asynchronous invocations, then the event goes to ``failure_queue``.

    Without this Lambda retries a failing event twice and then drops it: Scheduler's own retries and DLQ
    only cover *delivering* the event, not the function failing. The function's role must already allow
    ``sqs:SendMessage`` on the queue (``send_failures_statement``): Lambda checks it when the config is made.
    """
    lambda_.CfnEventInvokeConfig(
        scope,
        ID_ASYNC_INVOKE_CONFIG,
        function_name=function.function_name,
        qualifier="$LATEST",
        maximum_retry_attempts=ASYNC_RETRY_ATTEMPTS,
        maximum_event_age_in_seconds=ASYNC_MAX_EVENT_AGE_HOURS * 3600,
        destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
            on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(destination=failure_queue.queue_arn)
        ),
    )


class ScheduledInvocation(Construct):
    """An EventBridge Scheduler schedule (UTC) invoking one function, with retries and a dead-letter queue.

    Its role may invoke exactly that function (no version or alias wildcard) and send to exactly that DLQ,
    and only Scheduler acting for this account may assume it.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        description: str,
        expression: str,
        function: lambda_.IFunction,
        dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        account = cdk.Stack.of(self).account
        self.role = iam.Role(
            self,
            "Role",
            description=f"{description} (EventBridge Scheduler)",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": account}}
            ),
            inline_policies={
                "Invoke": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="InvokeTarget",
                            actions=["lambda:InvokeFunction"],
                            resources=[function.function_arn],
                        ),
                        iam.PolicyStatement(
                            sid="DeadLetter",
                            actions=["sqs:SendMessage"],
                            resources=[dead_letter_queue.queue_arn],
                        ),
                    ]
                )
            },
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=description,
            schedule_expression=expression,
            schedule_expression_timezone=SCHEDULE_TIMEZONE,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=self.role.role_arn,
                input=json.dumps({"trigger": "schedule", "scheduledTime": SCHEDULED_TIME}),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_retry_attempts=SCHEDULE_RETRY_ATTEMPTS,
                    maximum_event_age_in_seconds=SCHEDULE_MAX_EVENT_AGE_HOURS * 3600,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(
                    arn=dead_letter_queue.queue_arn
                ),
            ),
        )


class Billing(Construct):
    """The billing side of Tollgate. See the module docstring for the flow."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        data: TollgateData,
        close_grace_hours: int,
        dunning_grace_days: int,
        close_watchdog_delay_hours: int = DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS,
        stripe_rate_limits: StripeRateLimits = DEFAULT_STRIPE_RATE_LIMITS,
    ) -> None:
        super().__init__(scope, id)
        table = data.table
        self.stripe_rate_limits = stripe_rate_limits
        # The event source's maximum concurrency, the worker's reserved concurrency and its pacers' fleet
        # size: one number, so the fleet's requests stay within its share of Stripe's limits.
        self.close_worker_concurrency = close_worker_concurrency(stripe_rate_limits)

        # --- secrets: created with a generated placeholder; the real values are put after deploy ---
        self.stripe_api_key_secret = secretsmanager.Secret(
            self,
            ID_STRIPE_API_KEY_SECRET,
            description="Tollgate: Stripe secret API key (placeholder until put-secret-value)",
        )
        self.stripe_webhook_secret = secretsmanager.Secret(
            self,
            ID_STRIPE_WEBHOOK_SECRET,
            description="Tollgate: Stripe webhook signing secret (placeholder until put-secret-value)",
        )
        acknowledge(
            self.stripe_api_key_secret,
            "AwsSolutions-SMG4",
            _ROTATION_ACK_REASON.format(what="the secret API key"),
        )
        acknowledge(
            self.stripe_webhook_secret,
            "AwsSolutions-SMG4",
            _ROTATION_ACK_REASON.format(what="the webhook endpoint's signing secret"),
        )

        # --- queues ---
        self.close_dead_letter_queue = _queue(
            self, ID_CLOSE_DLQ, retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS)
        )
        self.close_queue = _queue(
            self,
            ID_CLOSE_QUEUE,
            visibility_timeout=cdk.Duration.seconds(CLOSE_QUEUE_VISIBILITY_TIMEOUT_SECONDS),
            retention_period=cdk.Duration.days(4),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=self.close_dead_letter_queue, max_receive_count=CLOSE_QUEUE_MAX_RECEIVE_COUNT
            ),
        )
        self.schedule_dead_letter_queue = _queue(
            self, ID_SCHEDULE_DLQ, retention_period=cdk.Duration.days(DEAD_LETTER_RETENTION_DAYS)
        )
        acknowledge(
            self.schedule_dead_letter_queue,
            "AwsSolutions-SQS3",
            "This queue IS a dead-letter queue: EventBridge Scheduler sends the schedule invocations that "
            "failed every retry here (cdk-nag only recognises SQS redrive and Lambda DLQ configurations).",
        )
        self.close_starter_failure_queue = failure_queue(self, ID_CLOSE_STARTER_FAILURES, "the close starter")
        self.dunning_sweeper_failure_queue = failure_queue(
            self, ID_DUNNING_SWEEPER_FAILURES, "the dunning sweeper"
        )
        self.close_watchdog_failure_queue = failure_queue(
            self, ID_CLOSE_WATCHDOG_FAILURES, "the close watchdog"
        )

        # --- period close ---
        self.close_starter = TollgateFunction(
            self,
            ID_CLOSE_STARTER_FUNCTION,
            handler=HANDLER_CLOSE_STARTER,
            description="Tollgate period close: queues one close per customer",
            service_name=SERVICE_PERIOD_CLOSE,
            # One full vCPU: boto3's own CPU per SendMessageBatch bounds how fast the starter sends (about
            # 5-6 minutes for 1 M customers; tollgate.billing.close.starter). Lambda's longest timeout: the
            # starter stops at a page boundary before it and continues in a new invocation.
            memory_size=ONE_VCPU_MEMORY_MB,
            timeout=cdk.Duration.minutes(15),
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_CLOSE_QUEUE_URL: self.close_queue.queue_url,
            },
            reserved_concurrency=SCHEDULED_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="ListCustomers",
                    actions=["dynamodb:Query"],
                    resources=[data.gsi1_arn],
                ),
                iam.PolicyStatement(
                    sid="RecordCloseRuns",  # its cursor per period, and no other item of the table
                    actions=list(CLOSE_STARTER_TABLE_ACTIONS),
                    resources=[table.table_arn],
                    conditions={
                        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{CLOSE_RUN_PK_PREFIX}*"]}
                    },
                ),
                iam.PolicyStatement(
                    sid="QueueCloses",
                    actions=["sqs:SendMessage"],
                    resources=[self.close_queue.queue_arn],
                ),
                send_failures_statement(self.close_starter_failure_queue),
            ],
        )
        # A long run continues in a new invocation, which the starter invokes itself: a policy of its own,
        # attached once the function exists (in the role's inline policy, the function's ARN would make the
        # role depend on the function, which depends on the role).
        iam.Policy(
            self.close_starter,
            "ContinueCloseRun",
            roles=[self.close_starter.role],
            statements=[
                iam.PolicyStatement(
                    sid="InvokeItself",
                    actions=["lambda:InvokeFunction"],
                    resources=[self.close_starter.function.function_arn],
                )
            ],
        )
        configure_async_invoke(
            self.close_starter, self.close_starter.function, self.close_starter_failure_queue
        )
        self.close_worker = TollgateFunction(
            self,
            ID_CLOSE_WORKER_FUNCTION,
            handler=HANDLER_CLOSE_WORKER,
            description="Tollgate period close: rates one customer's period and invoices it in Stripe",
            service_name=SERVICE_PERIOD_CLOSE,
            memory_size=512,
            timeout=cdk.Duration.seconds(CLOSE_WORKER_TIMEOUT_SECONDS),
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_STRIPE_API_KEY_SECRET_ARN: self.stripe_api_key_secret.secret_arn,
                **stripe_rate_limits.as_env(),
                ENV_CLOSE_WORKER_FLEET_SIZE: str(self.close_worker_concurrency),
            },
            reserved_concurrency=self.close_worker_concurrency,
            statements=[
                iam.PolicyStatement(
                    sid="CloseUsage",
                    actions=list(CLOSE_WORKER_TABLE_ACTIONS),
                    resources=[table.table_arn, data.gsi1_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadStripeApiKey",
                    actions=list(READ_SECRET_ACTIONS),
                    resources=[self.stripe_api_key_secret.secret_arn],
                ),
            ],
        )
        self.close_worker.function.add_event_source(
            event_sources.SqsEventSource(
                self.close_queue,
                batch_size=CLOSE_WORKER_BATCH_SIZE,
                report_batch_item_failures=True,
                max_concurrency=self.close_worker_concurrency,
            )
        )
        self.close_schedule = ScheduledInvocation(
            self,
            ID_CLOSE_SCHEDULE,
            description="Tollgate: close the month that just ended",
            expression=close_schedule_expression(close_grace_hours),
            function=self.close_starter.function,
            dead_letter_queue=self.schedule_dead_letter_queue,
        )
        self.close_watchdog = TollgateFunction(
            self,
            ID_CLOSE_WATCHDOG_FUNCTION,
            handler=HANDLER_CLOSE_WATCHDOG,
            description="Tollgate period close watchdog: counts customers without a finished close",
            service_name=SERVICE_PERIOD_CLOSE,
            # Customers a Query page at a time, their close records 100 per BatchGetItem: at 1,000,000
            # customers 11,000 calls, bound by boto3's CPU (about 3 ms a call, see the starter): one full vCPU
            # and Lambda's longest timeout.
            memory_size=ONE_VCPU_MEMORY_MB,
            timeout=cdk.Duration.minutes(15),
            environment={ENV_TABLE_NAME: table.table_name},
            reserved_concurrency=SCHEDULED_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="ListCustomers",
                    actions=["dynamodb:Query"],
                    resources=[data.gsi1_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadCloseRecords",
                    actions=list(WATCHDOG_TABLE_ACTIONS),
                    resources=[table.table_arn],
                ),
                send_failures_statement(self.close_watchdog_failure_queue),
            ],
        )
        configure_async_invoke(
            self.close_watchdog, self.close_watchdog.function, self.close_watchdog_failure_queue
        )
        self.close_watchdog_schedule = ScheduledInvocation(
            self,
            ID_CLOSE_WATCHDOG_SCHEDULE,
            description="Tollgate: check that the close of the month that just ended finished",
            expression=close_watchdog_schedule_expression(close_grace_hours, close_watchdog_delay_hours),
            function=self.close_watchdog.function,
            dead_letter_queue=self.schedule_dead_letter_queue,
        )

        # --- Stripe webhooks and dunning ---
        self.webhook = TollgateFunction(
            self,
            ID_WEBHOOK_FUNCTION,
            handler=HANDLER_WEBHOOK,
            description="Tollgate Stripe webhook endpoint (verifies Stripe's signature)",
            service_name=SERVICE_WEBHOOKS,
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_STRIPE_WEBHOOK_SECRET_ARN: self.stripe_webhook_secret.secret_arn,
                ENV_DUNNING_GRACE_DAYS: str(dunning_grace_days),
            },
            reserved_concurrency=WEBHOOK_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="RecordPaymentEvents",
                    actions=list(WEBHOOK_TABLE_ACTIONS),
                    resources=[table.table_arn, data.gsi1_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadWebhookSigningSecret",
                    actions=list(READ_SECRET_ACTIONS),
                    resources=[self.stripe_webhook_secret.secret_arn],
                ),
            ],
        )
        # Stripe cannot sign AWS requests: the URL is public and the handler verifies the Stripe-Signature.
        self.webhook_url = lambda_.FunctionUrl(
            self, ID_WEBHOOK_URL, function=self.webhook.function, auth_type=lambda_.FunctionUrlAuthType.NONE
        )
        self.dunning_sweeper = TollgateFunction(
            self,
            ID_DUNNING_SWEEPER_FUNCTION,
            handler=HANDLER_DUNNING_SWEEPER,
            description="Tollgate dunning: suspends customers whose payment grace has passed",
            service_name=SERVICE_WEBHOOKS,
            timeout=cdk.Duration.minutes(5),
            environment={
                ENV_TABLE_NAME: table.table_name,
                ENV_DUNNING_GRACE_DAYS: str(dunning_grace_days),
            },
            reserved_concurrency=SCHEDULED_RESERVED_CONCURRENCY,
            statements=[
                iam.PolicyStatement(
                    sid="SuspendOverdueCustomers",
                    actions=list(SWEEPER_TABLE_ACTIONS),
                    resources=[table.table_arn, data.gsi1_arn],
                ),
                send_failures_statement(self.dunning_sweeper_failure_queue),
            ],
        )
        configure_async_invoke(
            self.dunning_sweeper, self.dunning_sweeper.function, self.dunning_sweeper_failure_queue
        )
        self.dunning_schedule = ScheduledInvocation(
            self,
            ID_DUNNING_SCHEDULE,
            description="Tollgate: daily dunning sweep",
            expression=dunning_schedule_expression(),
            function=self.dunning_sweeper.function,
            dead_letter_queue=self.schedule_dead_letter_queue,
        )
