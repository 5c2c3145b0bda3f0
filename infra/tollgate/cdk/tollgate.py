"""``Tollgate``: everything Tollgate runs in a provider's AWS account, as one construct for their own CDK app.

    from tollgate.cdk import MeteredApi, Tollgate

    tollgate = Tollgate(self, "Tollgate")                       # table, authorizer, billing, monitoring
    metered = MeteredApi(self, "Metered", api=my_api, authorizer_function=tollgate.authorizer_function)
    metered.add_function_route("GET", "/v1/search", search_fn)  # every route added here is metered
    metered.add_usage_route(tollgate.usage_function)            # GET /usage for your customers

Parts (each a construct of its own, reachable as an attribute):

- ``data``: the DynamoDB table (``table``);
- ``metering``: the metering authorizer (``authorizer_function``);
- ``billing``: the monthly close (schedule, starter, queue, worker) and its watchdog, the Stripe secrets, the
  Stripe webhook endpoint and the dunning sweeper;
- ``usage_api``: the ``GET /usage`` function (``usage_function``);
- ``alerts``: usage alerts from the table's stream to EventBridge and the customers' webhooks;
- ``credit_expiry``: the hourly sweep that expires the unused credits of prepaid lots past their expiry;
- ``monitoring``: the alarms and their SNS topic (``alarm_topic``), and a CloudWatch dashboard;
- ``ledger`` (with ``ledger=True``): the per-request usage ledger (S3, Firehose, Glue, Athena), for
  ``MeteredApi(..., ledger=tollgate.ledger)``; ``reconciler``, which reconciles each closed period
  against it (started by the close watchdog); and ``refunds``, which refunds the failed requests of plans
  with ``refund_statuses`` from each object the ledger delivers (queue, dead-letter queue, function).

Its CloudFormation outputs (``TableName``, ``StripeApiKeySecretArn``, ...: ``tollgate.outputs``) are what the
``tollgate --stack NAME`` CLI reads, so a stack holds at most one ``Tollgate`` (or pass ``outputs=False``).
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from constructs import Construct

from tollgate.billing.close.settings import StripeRateLimits
from tollgate.cdk.alerts import UsageAlerts
from tollgate.cdk.billing import Billing
from tollgate.cdk.constants import (
    DEFAULT_CLOSE_GRACE_HOURS,
    DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS,
    DEFAULT_DUNNING_GRACE_DAYS,
    DEFAULT_STRIPE_RATE_LIMITS,
    ID_ALERTS,
    ID_BILLING,
    ID_CREDIT_EXPIRY,
    ID_DATA,
    ID_LEDGER_RECONCILER,
    ID_LEDGER_REFUNDS,
    ID_METERING,
    ID_MONITORING,
    ID_USAGE_API,
    OUTPUT_ALARM_TOPIC_ARN,
    OUTPUT_AUTHORIZER_FUNCTION_ARN,
    OUTPUT_CLOSE_QUEUE_URL,
    OUTPUT_CLOSE_STARTER_FUNCTION_NAME,
    OUTPUT_DASHBOARD_NAME,
    OUTPUT_PORTAL_LINK_SECRET_ARN,
    OUTPUT_STRIPE_API_KEY_SECRET_ARN,
    OUTPUT_STRIPE_WEBHOOK_SECRET_ARN,
    OUTPUT_TABLE_NAME,
    OUTPUT_USAGE_FUNCTION_ARN,
    OUTPUT_WEBHOOK_URL,
)
from tollgate.cdk.data import TollgateData
from tollgate.cdk.expiry import CreditExpiry
from tollgate.cdk.ledger import UsageLedger
from tollgate.cdk.metering import Metering
from tollgate.cdk.monitoring import MonitoredFunctions, MonitoredLedger, MonitoredQueues, Monitoring
from tollgate.cdk.reconciler import LedgerReconciler
from tollgate.cdk.refunds import LedgerRefunds
from tollgate.cdk.usage import UsageApi


class Tollgate(Construct):
    """Tollgate's table, metering authorizer, billing, usage function and monitoring.

    :param close_grace_hours: hours after midnight UTC on the 1st at which the month just ended is closed
        (0..23, default 6): requests of the last seconds of the month land before the close reads them.
    :param dunning_grace_days: days an unpaid invoice is tolerated before the customer is suspended (>= 0).
    :param close_watchdog_delay_hours: hours after the close schedule at which the close watchdog checks that
        every customer's close finished, and alarms if not (1..48, default 12). Raise it if closing all your
        customers takes longer: with Stripe's live limits the close invoices about 22 customers a second
        (100,000 in about 75 minutes; a sandbox about 7.5 a second), and a failing close reaches the close DLQ
        about 5 hours after its first attempt.
    :param stripe_rate_limits: the rate limits of the Stripe account the close invoices through (default:
        Stripe's live-mode limits, ``StripeRateLimits.live()``: 25 requests/s per endpoint, 100 operations/s
        per account). ``StripeRateLimits.sandbox()`` for a sandbox (25 operations/s per account); pass raised
        limits (``StripeRateLimits(per_endpoint=50, per_account=200)``) if Stripe raised your account's. The
        close worker's concurrency follows from them (live: 68 workers, a sandbox: 23), and each worker paces
        its requests so the close uses 90% of every limit.
    :param fail_open: let requests through unmetered when the counter cannot be written (default False:
        refuse them with 503). A key that cannot be checked is refused either way.
    :param outputs: add the stack outputs the ``tollgate`` CLI reads (default True;
        one ``Tollgate`` per stack).
    :param ledger: add the per-request usage ledger (``self.ledger``, a :class:`UsageLedger` with default
        settings; default False), its reconciler (``self.reconciler``) and the refunds of failed requests
        (``self.refunds``). Hand it to ``MeteredApi(..., ledger=tollgate.ledger)``; for other settings make
        a ``UsageLedger`` of your own instead.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        close_grace_hours: int = DEFAULT_CLOSE_GRACE_HOURS,
        dunning_grace_days: int = DEFAULT_DUNNING_GRACE_DAYS,
        close_watchdog_delay_hours: int = DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS,
        fail_open: bool = False,
        outputs: bool = True,
        stripe_rate_limits: StripeRateLimits = DEFAULT_STRIPE_RATE_LIMITS,
        ledger: bool = False,
    ) -> None:
        if not 0 <= close_grace_hours <= 23:
            raise ValueError(f"close_grace_hours must be 0..23, got {close_grace_hours}")
        if dunning_grace_days < 0:
            raise ValueError(f"dunning_grace_days must be >= 0, got {dunning_grace_days}")
        if not 1 <= close_watchdog_delay_hours <= 48:
            raise ValueError(f"close_watchdog_delay_hours must be 1..48, got {close_watchdog_delay_hours}")
        super().__init__(scope, id)
        self.data = TollgateData(self, ID_DATA)
        self.metering = Metering(self, ID_METERING, table=self.data.table, fail_open=fail_open)
        self.billing = Billing(
            self,
            ID_BILLING,
            data=self.data,
            close_grace_hours=close_grace_hours,
            dunning_grace_days=dunning_grace_days,
            close_watchdog_delay_hours=close_watchdog_delay_hours,
            stripe_rate_limits=stripe_rate_limits,
        )
        self.usage_api = UsageApi(self, ID_USAGE_API, table=self.data.table)
        self.alerts = UsageAlerts(
            self,
            ID_ALERTS,
            table=self.data.table,
            stripe_api_key_secret=self.billing.stripe_api_key_secret,
        )
        billing = self.billing
        # made before the monitoring, which alarms on its delivery
        self.ledger = UsageLedger(self, "Ledger", outputs=outputs) if ledger else None
        self.reconciler: LedgerReconciler | None = None
        self.refunds: LedgerRefunds | None = None
        if self.ledger is not None:
            self.usage_api.read_ledger(self.ledger)  # GET /usage/export reads it (else: the counters' days)
            # the watchdog starts it once a period's close is complete
            self.reconciler = LedgerReconciler(
                self,
                ID_LEDGER_RECONCILER,
                data=self.data,
                ledger=self.ledger,
                watchdog=billing.close_watchdog,
            )
            # bill only what succeeded: S3 notifies it of each object the ledger delivers
            self.refunds = LedgerRefunds(self, ID_LEDGER_REFUNDS, data=self.data, ledger=self.ledger)
        self.credit_expiry = CreditExpiry(
            self,
            ID_CREDIT_EXPIRY,
            data=self.data,
            schedule_dead_letter_queue=billing.schedule_dead_letter_queue,
        )
        self.monitoring = Monitoring(
            self,
            ID_MONITORING,
            authorizer_function=self.metering.authorizer_function,
            table=self.data.table,
            functions=MonitoredFunctions(
                close_starter=billing.close_starter.function,
                close_worker=billing.close_worker.function,
                close_watchdog=billing.close_watchdog.function,
                webhook=billing.webhook.function,
                dunning_sweeper=billing.dunning_sweeper.function,
                usage=self.usage_api.function,
                alerts=self.alerts.alert_function,
                alert_webhooks=self.alerts.webhook_function,
                credit_expiry=self.credit_expiry.function,
            ),
            queues=MonitoredQueues(
                close_dead_letter_queue=billing.close_dead_letter_queue,
                schedule_dead_letter_queue=billing.schedule_dead_letter_queue,
                close_starter_failures=billing.close_starter_failure_queue,
                dunning_sweeper_failures=billing.dunning_sweeper_failure_queue,
                close_watchdog_failures=billing.close_watchdog_failure_queue,
                alert_stream_failures=self.alerts.stream_failure_queue,
                alert_webhook_dead_letter_queue=self.alerts.webhook_dead_letter_queue,
            ),
            ledger=self._monitored_ledger(),
        )
        if outputs:
            self._add_outputs()

    def _monitored_ledger(self) -> MonitoredLedger | None:
        if self.ledger is None or self.reconciler is None or self.refunds is None:
            return None
        return MonitoredLedger(
            self.ledger,
            reconciler=self.reconciler.function,
            reconciler_failures=self.reconciler.failure_queue,
            refunds=self.refunds.function,
            refund_dead_letter_queue=self.refunds.dead_letter_queue,
        )

    @property
    def table(self) -> dynamodb.Table:
        return self.data.table

    @property
    def authorizer_function(self) -> lambda_.Function:
        """The metering authorizer: hand it to ``MeteredApi``."""
        return self.metering.authorizer_function

    @property
    def usage_function(self) -> lambda_.Function:
        """The ``GET /usage`` function: ``MeteredApi.add_usage_route(tollgate.usage_function)``."""
        return self.usage_api.function

    @property
    def alarm_topic(self) -> sns.Topic:
        return self.monitoring.topic

    def _add_outputs(self) -> None:
        billing = self.billing
        for key, value, description in (
            (OUTPUT_TABLE_NAME, self.table.table_name, "The Tollgate DynamoDB table"),
            (
                OUTPUT_STRIPE_API_KEY_SECRET_ARN,
                billing.stripe_api_key_secret.secret_arn,
                "Put the Stripe secret API key here (aws secretsmanager put-secret-value)",
            ),
            (
                OUTPUT_STRIPE_WEBHOOK_SECRET_ARN,
                billing.stripe_webhook_secret.secret_arn,
                "Put the Stripe webhook signing secret (whsec_...) here",
            ),
            (OUTPUT_WEBHOOK_URL, billing.webhook_url.url, "Register this URL as a Stripe webhook endpoint"),
            (OUTPUT_ALARM_TOPIC_ARN, self.alarm_topic.topic_arn, "Subscribe to be alerted"),
            (OUTPUT_CLOSE_QUEUE_URL, billing.close_queue.queue_url, "Per-customer close queue"),
            (
                OUTPUT_AUTHORIZER_FUNCTION_ARN,
                self.authorizer_function.function_arn,
                "The metering authorizer, for MeteredApi in another stack of this account and region",
            ),
            (
                OUTPUT_USAGE_FUNCTION_ARN,
                self.usage_function.function_arn,
                "The GET /usage function, for MeteredApi.add_usage_route in another stack",
            ),
            (
                OUTPUT_PORTAL_LINK_SECRET_ARN,
                self.usage_api.portal_link_secret.secret_arn,
                "Signs the customers' usage page links (tollgate portal link); a new random value rotates it",
            ),
            (
                OUTPUT_CLOSE_STARTER_FUNCTION_NAME,
                billing.close_starter.function.function_name,
                'Invoke with {"period": "YYYY-MM"} to close a period by hand',
            ),
            (
                OUTPUT_DASHBOARD_NAME,
                self.monitoring.dashboard.dashboard_name,
                "The CloudWatch dashboard: metered requests, denials, the close, Stripe, dead letters",
            ),
        ):
            output = cdk.CfnOutput(self, key, value=value, description=description)
            output.override_logical_id(key)  # the exact key the CLI looks for, wherever this construct sits
