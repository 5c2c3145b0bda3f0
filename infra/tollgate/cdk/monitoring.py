"""``Monitoring``: one SNS topic, the alarms that mean money is being lost or customers are refused, and a
CloudWatch dashboard.

Alarms (``tollgate.cdk.constants.ALARM_IDS``), each at 1 or more in a period, each notifying the topic:

- the authorizer errors or is throttled: every metered request fails with 503 (or, with FAIL_OPEN, goes
  unmetered); DynamoDB refuses a counter write (``MeteringFailures``); a request is served unmetered
  (``UnmeteredRequests``, FAIL_OPEN only);
- DynamoDB throttles requests on the table: lookups and counter increments fail;
- any other function errors: the close starter, worker and watchdog, the Stripe webhook, the dunning sweeper,
  the ``GET /usage`` function, the alert functions, the credit expiry sweep;
- a customer's close lands in the close DLQ: that customer was not invoiced;
- Stripe calls fail (``StripeFailures``), or Stripe's invoice total differs from the statement's
  (``TotalMismatch``);
- a scheduled invocation lands in the schedule DLQ (Scheduler could not deliver it), or fails every Lambda
  retry and lands in its function's failure queue: a period close, its watchdog or a dunning sweep did not
  run;
- the close watchdog finds customers without a finalized or no_charge record, or with a mismatched total,
  hours after the close started (``CloseProblems``). This alarm keeps its state until the watchdog runs again
  (next month, or by hand with ``{"period": "YYYY-MM"}`` once fixed): it does not clear itself.

With a request ledger (``MonitoredLedger``, ``Tollgate(ledger=True)``):

- Firehose logs a delivery error (``LedgerDeliveryErrors``, a metric filter on the ledger's delivery error
  log: records that could not be partitioned or written, which end under ``ledger-errors/``), or one of the
  ledger's streams holds records longer than it should or throttles API Gateway's puts (one alarm per
  stream);
- the reconciliation of a closed period finds credits no rule explains (``UnexplainedCredits``; it keeps its
  state until the next reconciliation, like ``CloseProblems``), or could not run (``ReconciliationFailures``),
  or its function fails (errors, failure queue);
- the refund function fails (errors), a ledger object's message lands in the refund dead-letter queue (its
  failed requests were not refunded), or a failed request of a refunding plan could not be refunded
  (``RefundsSkipped``: the refund function's log names it and says why).

Custom metrics are alarmed through Metrics Insights (``SELECT SUM(m) FROM Tollgate``), so an alarm does not
depend on the ``service`` dimension Powertools adds. Subscribe to the topic (``AlarmTopicArn`` output).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.cdk.constants import (
    ALARM_ALERT_ERRORS,
    ALARM_ALERT_STREAM_FAILURES,
    ALARM_ALERT_WEBHOOK_DLQ_DEPTH,
    ALARM_ALERT_WEBHOOK_ERRORS,
    ALARM_AUTHORIZER_ERRORS,
    ALARM_AUTHORIZER_THROTTLES,
    ALARM_CLOSE_DLQ_DEPTH,
    ALARM_CLOSE_PROBLEMS,
    ALARM_CLOSE_STARTER_ERRORS,
    ALARM_CLOSE_STARTER_FAILURES,
    ALARM_CLOSE_WATCHDOG_ERRORS,
    ALARM_CLOSE_WATCHDOG_FAILURES,
    ALARM_CLOSE_WORKER_ERRORS,
    ALARM_CREDIT_EXPIRY_ERRORS,
    ALARM_DUNNING_SWEEPER_ERRORS,
    ALARM_DUNNING_SWEEPER_FAILURES,
    ALARM_LEDGER_DELIVERY_ERRORS,
    ALARM_LEDGER_RECONCILER_ERRORS,
    ALARM_LEDGER_RECONCILER_FAILURES,
    ALARM_METERING_FAILURES,
    ALARM_RECONCILIATION_FAILURES,
    ALARM_REFUND_DLQ_DEPTH,
    ALARM_REFUND_ERRORS,
    ALARM_REFUNDS_SKIPPED,
    ALARM_SCHEDULE_DLQ_DEPTH,
    ALARM_STRIPE_FAILURES,
    ALARM_TABLE_THROTTLES,
    ALARM_TOTAL_MISMATCH,
    ALARM_UNEXPLAINED_CREDITS,
    ALARM_UNMETERED_REQUESTS,
    ALARM_USAGE_ERRORS,
    ALARM_WEBHOOK_ERRORS,
    CLOSE_FAILURES_METRIC,
    CLOSE_PROBLEMS_METRIC,
    CLOSES_CHECKED_METRIC,
    CLOSES_MISMATCHED_METRIC,
    CLOSES_NO_CHARGE_METRIC,
    CLOSES_UNFINISHED_METRIC,
    CUSTOMERS_RECONCILED_METRIC,
    DENIED_METRIC_PREFIX,
    DENIED_METRICS,
    DUPLICATE_REFUNDS_METRIC,
    FLAGGED_CUSTOMERS_METRIC,
    ID_ALARM_TOPIC,
    ID_DASHBOARD,
    ID_LEDGER_DELIVERY_ERRORS_FILTER,
    INVOICES_FINALIZED_METRIC,
    LEDGER_DELIVERY_ERRORS_METRIC,
    MALFORMED_LEDGER_RECORDS_METRIC,
    METERING_FAILURES_METRIC,
    METRICS_NAMESPACE,
    RECONCILIATION_FAILURES_METRIC,
    REFUNDED_CREDITS_METRIC,
    REFUNDED_REQUESTS_METRIC,
    REFUNDS_SKIPPED_METRIC,
    SERVICE_AUTHORIZER,
    SERVICE_PERIOD_CLOSE,
    SERVICE_REFUNDS,
    STRIPE_FAILURES_METRIC,
    STRIPE_RATE_LIMITED_METRIC,
    TOTAL_MISMATCH_METRIC,
    UNEXPLAINED_CREDITS_METRIC,
    UNMETERED_REQUESTS_METRIC,
    ledger_delivery_alarm_id,
)
from tollgate.cdk.ledger import UsageLedger
from tollgate.cdk.refunds import REFUND_MAX_RECEIVE_COUNT

ONE_MINUTE = cdk.Duration.minutes(1)
FIVE_MINUTES = cdk.Duration.minutes(5)
ONE_HOUR = cdk.Duration.hours(1)
ONE_DAY = cdk.Duration.days(1)
TABLE_OPERATIONS = (
    dynamodb.Operation.GET_ITEM,
    dynamodb.Operation.BATCH_GET_ITEM,
    dynamodb.Operation.UPDATE_ITEM,
    dynamodb.Operation.PUT_ITEM,
    dynamodb.Operation.QUERY,
    dynamodb.Operation.TRANSACT_WRITE_ITEMS,
)
SERVICE_DIMENSION = "service"  # the dimension Powertools Metrics adds: the emitting function's service name
WIDE, HALF, THIRD, HEIGHT = 24, 12, 8, 6


def insights_metric(
    metric_name: str, period: cdk.Duration = FIVE_MINUTES, function: str = "SUM"
) -> cloudwatch.IMetric:
    """``metric_name`` summed (or ``function``: ``MAX``) over every dimension set (Powertools adds a
    ``service`` dimension).

    A Metrics Insights query, so an alarm does not depend on which service name the emitting code uses.
    """
    return cloudwatch.MathExpression(
        expression=f"SELECT {function}({metric_name}) FROM {METRICS_NAMESPACE}",  # noqa: S608 - constants
        label=metric_name,
        period=period,
    )


def stripe_failures_metric(period: cdk.Duration = FIVE_MINUTES) -> cloudwatch.IMetric:
    """``StripeFailures`` over every dimension set (see :func:`insights_metric`)."""
    return insights_metric(STRIPE_FAILURES_METRIC, period)


@dataclass(frozen=True)
class MonitoredFunctions:
    """The functions besides the authorizer whose errors are alarmed and graphed."""

    close_starter: lambda_.IFunction
    close_worker: lambda_.IFunction
    close_watchdog: lambda_.IFunction
    webhook: lambda_.IFunction
    dunning_sweeper: lambda_.IFunction
    usage: lambda_.IFunction
    alerts: lambda_.IFunction
    alert_webhooks: lambda_.IFunction
    credit_expiry: lambda_.IFunction


@dataclass(frozen=True)
class MonitoredQueues:
    """Every queue of failures: the close DLQ, the schedule DLQ, each scheduled function's failure queue."""

    close_dead_letter_queue: sqs.IQueue
    schedule_dead_letter_queue: sqs.IQueue
    close_starter_failures: sqs.IQueue
    dunning_sweeper_failures: sqs.IQueue
    close_watchdog_failures: sqs.IQueue
    alert_stream_failures: sqs.IQueue
    alert_webhook_dead_letter_queue: sqs.IQueue


@dataclass(frozen=True)
class MonitoredLedger:
    """The request ledger, the function that reconciles each closed period against it, and the function that
    refunds failed requests from it."""

    ledger: UsageLedger
    reconciler: lambda_.IFunction | None = None
    reconciler_failures: sqs.IQueue | None = None
    refunds: lambda_.IFunction | None = None
    refund_dead_letter_queue: sqs.IQueue | None = None
    stream_alarms: dict[str, cloudwatch.Alarm] = field(default_factory=dict)  # stream id -> its alarm


# Firehose's own signals for an S3 destination (its "best practices with CloudWatch alarms" page): alarm when
# DeliveryToS3.DataFreshness (the age of the oldest record not yet in S3) passes the buffering limit, and on
# ThrottledRecords (a DirectPut stream over its quota refuses API Gateway's puts: those records are lost).
# DeliveryToS3.Success is not used: it is a ratio of S3 puts that a retry brings back to 1, and with dynamic
# partitioning a record that cannot be partitioned is put under the error prefix successfully. What reaches
# the error prefix is what the delivery error log reports (Firehose logs every such failure there, with its
# error code: DynamicPartitioning.*, S3.*, Processor.*), so a metric filter on that log counts it; the log is
# shared by every stream of the ledger, including the HTTP API stream made later.
FIREHOSE_NAMESPACE = "AWS/Firehose"
DATA_FRESHNESS_METRIC = "DeliveryToS3.DataFreshness"
THROTTLED_RECORDS_METRIC = "ThrottledRecords"


def stream_metric(stream: firehose.CfnDeliveryStream, name: str, statistic: str) -> cloudwatch.Metric:
    """A Firehose metric of one stream, per 5 minutes."""
    return cloudwatch.Metric(
        namespace=FIREHOSE_NAMESPACE,
        metric_name=name,
        dimensions_map={"DeliveryStreamName": stream.ref},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


def freshness_of(stream: firehose.CfnDeliveryStream) -> cloudwatch.Metric:
    return stream_metric(stream, DATA_FRESHNESS_METRIC, "Maximum").with_(
        label=f"{stream.node.id}: oldest record (s)"
    )


class Monitoring(Construct):
    """The alarm topic, the alarms and the dashboard. ``alarms`` maps each alarm id
    (``tollgate.cdk.constants.ALARM_*``) to it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        authorizer_function: lambda_.IFunction,
        table: dynamodb.ITable,
        functions: MonitoredFunctions,
        queues: MonitoredQueues,
        ledger: MonitoredLedger | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, ID_ALARM_TOPIC, display_name="Tollgate alarms", enforce_ssl=True)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        self._ledger = ledger
        self._ledger_graph: cloudwatch.GraphWidget | None = None  # made with the dashboard

        # --- metering: the hot path ---
        self._alarm(
            ALARM_AUTHORIZER_ERRORS,
            authorizer_function.metric_errors(period=ONE_MINUTE, statistic="Sum"),
            "The metering authorizer is failing: metered requests get 503 metering_unavailable.",
        )
        self._alarm(
            ALARM_AUTHORIZER_THROTTLES,
            authorizer_function.metric_throttles(period=ONE_MINUTE, statistic="Sum"),
            "The metering authorizer is throttled (account concurrency): requests get 503.",
        )
        self._alarm(
            ALARM_TABLE_THROTTLES,
            table.metric_throttled_requests_for_operations(
                operations=list(TABLE_OPERATIONS), period=ONE_MINUTE
            ),
            "DynamoDB throttles requests on the Tollgate table: key lookups or counter increments fail.",
        )
        self._alarm(
            ALARM_METERING_FAILURES,
            insights_metric(METERING_FAILURES_METRIC, ONE_MINUTE),
            "Counter writes are failing (MeteringFailures): requests are refused as metering_unavailable.",
        )
        self._alarm(
            ALARM_UNMETERED_REQUESTS,
            insights_metric(UNMETERED_REQUESTS_METRIC, ONE_MINUTE),
            "Requests are served without being counted (UnmeteredRequests, FAIL_OPEN): they are not billed.",
        )

        # --- every other function's errors ---
        retried_async = "Lambda retries it twice, then keeps the event in the function's failure queue."
        for alarm_id, function, description in (
            (
                ALARM_CLOSE_STARTER_ERRORS,
                functions.close_starter,
                f"The period close starter failed: the close may not have been queued. {retried_async}",
            ),
            (
                ALARM_CLOSE_WORKER_ERRORS,
                functions.close_worker,
                "The period close worker crashed or timed out (a failing customer alone does not count): its "
                "messages return to the close queue and, after 5 receives, go to the close DLQ.",
            ),
            (
                ALARM_CLOSE_WATCHDOG_ERRORS,
                functions.close_watchdog,
                f"The period close watchdog failed: the close was not checked. {retried_async}",
            ),
            (
                ALARM_WEBHOOK_ERRORS,
                functions.webhook,
                "The Stripe webhook function failed: payments and dunning are not recorded until Stripe "
                "redelivers the events (it retries for up to 3 days).",
            ),
            (
                ALARM_DUNNING_SWEEPER_ERRORS,
                functions.dunning_sweeper,
                f"The dunning sweeper failed: overdue customers are not suspended. {retried_async}",
            ),
            (
                ALARM_USAGE_ERRORS,
                functions.usage,
                "The GET /usage function failed: customers cannot see their usage.",
            ),
            (
                ALARM_ALERT_ERRORS,
                functions.alerts,
                "The usage alert function failed: its stream records are retried (10 times, then described "
                "in the alert stream failure queue); alerts are late meanwhile.",
            ),
            (
                ALARM_ALERT_WEBHOOK_ERRORS,
                functions.alert_webhooks,
                "The alert webhook function crashed: deliveries to customers' URLs are retried from the "
                "queue.",
            ),
            (
                ALARM_CREDIT_EXPIRY_ERRORS,
                functions.credit_expiry,
                "The credit expiry sweep failed: prepaid credits past their expiry stay in the balances "
                "until a run succeeds (Lambda retries it twice, and it runs every hour; each lot is settled "
                "once). "
                "`tollgate credits expire` runs it by hand.",
            ),
        ):
            self._alarm(alarm_id, function.metric_errors(period=FIVE_MINUTES, statistic="Sum"), description)

        # --- the money path ---
        self._alarm(
            ALARM_CLOSE_DLQ_DEPTH,
            self._depth(queues.close_dead_letter_queue),
            "A customer's period close failed 5 times and sits in the close DLQ: it was not invoiced.",
        )
        self._alarm(
            ALARM_STRIPE_FAILURES,
            stripe_failures_metric(),
            "Stripe API calls are failing (StripeFailures): invoices or usage reports are not going out.",
        )
        self._alarm(
            ALARM_TOTAL_MISMATCH,
            insights_metric(TOTAL_MISMATCH_METRIC),
            "A finalized Stripe invoice's total differs from the statement's (TotalMismatch): check it in "
            "Stripe before the customer pays (tollgate close status lists the mismatched customers).",
        )
        self._alarm(
            ALARM_CLOSE_PROBLEMS,
            insights_metric(CLOSE_PROBLEMS_METRIC),
            "The close watchdog found customers without a finalized or no_charge record, or with a "
            "mismatched total (CloseProblems): run `tollgate close status --period P`. Stays in alarm until "
            'the watchdog runs again (invoke it with {"period": "YYYY-MM"} once fixed).',
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )

        # --- scheduled invocations that did not run ---
        self._alarm(
            ALARM_SCHEDULE_DLQ_DEPTH,
            self._depth(queues.schedule_dead_letter_queue),
            "Scheduler could not invoke a period close, its watchdog, a dunning sweep or a credit expiry "
            "sweep: see the schedule DLQ.",
        )
        for alarm_id, queue, what in (
            (ALARM_CLOSE_STARTER_FAILURES, queues.close_starter_failures, "The period close did not start"),
            (
                ALARM_DUNNING_SWEEPER_FAILURES,
                queues.dunning_sweeper_failures,
                "A dunning sweep did not run",
            ),
            (
                ALARM_CLOSE_WATCHDOG_FAILURES,
                queues.close_watchdog_failures,
                "The period close watchdog did not run",
            ),
        ):
            self._alarm(
                alarm_id,
                self._depth(queue),
                f"{what}: the function failed every retry and the event sits in its failure queue (the "
                "error is in the message). Fix the cause, then invoke the function again with that event.",
            )

        # --- usage alerts ---
        self._alarm(
            ALARM_ALERT_STREAM_FAILURES,
            self._depth(queues.alert_stream_failures),
            "The alert function failed a batch of counter changes on every retry: those changes were not "
            "checked for alerts. The message says which stream records (they stay in the stream 24 hours).",
        )
        self._alarm(
            ALARM_ALERT_WEBHOOK_DLQ_DEPTH,
            self._depth(queues.alert_webhook_dead_letter_queue),
            "An alert could not be delivered to a customer's webhook after 6 attempts: it sits in the alert "
            "webhook DLQ (the event is the message).",
        )

        if ledger is not None:
            self._monitor_ledger(ledger)

        self.dashboard = self._dashboard(authorizer_function, functions, queues)

    # --- the request ledger ---------------------------------------------------------------------------------
    def _monitor_ledger(self, monitored: MonitoredLedger) -> None:
        ledger = monitored.ledger
        logs.MetricFilter(
            self,
            ID_LEDGER_DELIVERY_ERRORS_FILTER,
            log_group=ledger.delivery_logs,
            filter_pattern=logs.FilterPattern.all_events(),  # Firehose writes only errors there
            metric_namespace=METRICS_NAMESPACE,
            metric_name=LEDGER_DELIVERY_ERRORS_METRIC,
            metric_value="1",
        )
        self._alarm(
            ALARM_LEDGER_DELIVERY_ERRORS,
            cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=LEDGER_DELIVERY_ERRORS_METRIC,
                statistic="Sum",
                period=FIVE_MINUTES,
            ),
            "Firehose could not deliver request ledger records (LedgerDeliveryErrors): they are under "
            "ledger-errors/ in the ledger bucket, not in the ledger; the delivery error log group says why.",
        )
        ledger.on_stream(lambda stream: self._monitor_stream(monitored, stream))
        if monitored.reconciler is not None and monitored.reconciler_failures is not None:
            self._monitor_reconciler(monitored.reconciler, monitored.reconciler_failures)
        if monitored.refunds is not None and monitored.refund_dead_letter_queue is not None:
            self._monitor_refunds(monitored.refunds, monitored.refund_dead_letter_queue)

    def _monitor_refunds(self, refunds: lambda_.IFunction, dead_letter_queue: sqs.IQueue) -> None:
        self._alarm(
            ALARM_REFUND_ERRORS,
            refunds.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            "The refund function failed (crashed or timed out): the ledger objects of its batch are received "
            f"again after the queue's visibility timeout, and after {REFUND_MAX_RECEIVE_COUNT} receives wait "
            "in the refund DLQ. Their failed requests stay billed meanwhile.",
        )
        self._alarm(
            ALARM_REFUND_DLQ_DEPTH,
            self._depth(dead_letter_queue),
            f"A delivered ledger object failed {REFUND_MAX_RECEIVE_COUNT} times and sits in the refund DLQ: "
            "its failed requests were not refunded and stay billed. Fix the cause (the function's log), then "
            "redrive the DLQ into the refund queue: a request is refunded once however often it is read.",
        )
        self._alarm(
            ALARM_REFUNDS_SKIPPED,
            insights_metric(REFUNDS_SKIPPED_METRIC),
            "A failed request of a plan that refunds it could not be refunded (RefundsSkipped: no such plan "
            "version, a record that does not say where its credits were counted, or a counter that does not "
            "hold them). It is not retried: the refund function's log names each request and why.",
        )

    def _monitor_reconciler(self, reconciler: lambda_.IFunction, failures: sqs.IQueue) -> None:
        self._alarm(
            ALARM_UNEXPLAINED_CREDITS,
            insights_metric(UNEXPLAINED_CREDITS_METRIC, function="MAX"),
            "The reconciliation of a closed period found credits no rule explains (UnexplainedCredits): the "
            "logs name each flagged customer; `tollgate reconcile --period P --athena` shows the report. "
            "Stays in alarm until the next reconciliation (invoke the reconciler with "
            '{"period": "YYYY-MM"}).',
            treat_missing_data=cloudwatch.TreatMissingData.IGNORE,
        )
        self._alarm(
            ALARM_RECONCILIATION_FAILURES,
            insights_metric(RECONCILIATION_FAILURES_METRIC, function="MAX"),
            "The reconciliation of a closed period could not run (ReconciliationFailures: Athena failed or "
            'was unavailable): the close is not affected; invoke the reconciler with {"period": "YYYY-MM"}.',
        )
        self._alarm(
            ALARM_LEDGER_RECONCILER_ERRORS,
            reconciler.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            "The ledger reconciler failed (not Athena: that is ReconciliationFailures): the period was not "
            "reconciled. Lambda retries it twice, then keeps the event in the function's failure queue.",
        )
        self._alarm(
            ALARM_LEDGER_RECONCILER_FAILURES,
            self._depth(failures),
            "The ledger reconciler failed every retry and the event sits in its failure queue (the error is "
            "in the message). Fix the cause, then invoke the function again with that event.",
        )

    def _monitor_stream(self, monitored: MonitoredLedger, stream: firehose.CfnDeliveryStream) -> None:
        """One alarm per stream: records older than the ledger's delivery limit, or puts refused."""
        stream_id = stream.node.id
        limit = monitored.ledger.delivery_limit_seconds
        metrics = {
            "freshness": stream_metric(stream, DATA_FRESHNESS_METRIC, "Maximum"),
            "throttled": stream_metric(stream, THROTTLED_RECORDS_METRIC, "Sum"),
        }
        failing = cloudwatch.MathExpression(
            expression=f"IF(FILL(freshness, 0) > {limit} OR FILL(throttled, 0) > 0, 1, 0)",
            using_metrics=metrics,
            label=f"{stream_id}: records older than {limit} s, or puts throttled",
            period=FIVE_MINUTES,
        )
        alarm = self._alarm(
            ledger_delivery_alarm_id(stream_id),
            failing,
            f"The request ledger's stream {stream_id} is not delivering: its oldest record is older than "
            f"{limit} s (DeliveryToS3.DataFreshness: S3 writes failing) or it throttles API Gateway's puts "
            "(ThrottledRecords: those records are lost). See the delivery error log group.",
        )
        monitored.stream_alarms[stream_id] = alarm
        if self._ledger_graph is not None:  # a stream made after the dashboard (an HTTP API's)
            self._ledger_graph.add_left_metric(freshness_of(stream))
            self.dashboard.add_widgets(cloudwatch.AlarmWidget(alarm=alarm, width=HALF, height=HEIGHT))

    def _ledger_row(
        self,
        monitored: MonitoredLedger,
        emitted_daily: Sequence[cloudwatch.IMetric],
        refunds: Sequence[cloudwatch.IMetric],
    ) -> list[cloudwatch.IWidget]:
        self._ledger_graph = cloudwatch.GraphWidget(
            title="Request ledger delivery: oldest record not in S3 (s), delivery errors",
            left=[freshness_of(stream) for stream in monitored.ledger.streams],
            right=[
                cloudwatch.Metric(
                    namespace=METRICS_NAMESPACE,
                    metric_name=LEDGER_DELIVERY_ERRORS_METRIC,
                    statistic="Sum",
                    period=FIVE_MINUTES,
                    label="delivery errors",
                )
            ],
            width=THIRD if monitored.refunds is not None else HALF,
            height=HEIGHT,
        )
        reconciliation = cloudwatch.GraphWidget(
            title="Ledger reconciliation (once a month, per day): customers, flagged, unexplained credits",
            left=list(emitted_daily),
            width=THIRD if monitored.refunds is not None else HALF,
            height=HEIGHT,
        )
        if monitored.refunds is None:
            return [self._ledger_graph, reconciliation]
        refunded = cloudwatch.GraphWidget(
            title="Refunds of failed requests (per hour): refunded, credits, duplicates, skipped, malformed",
            left=list(refunds),
            width=THIRD,
            height=HEIGHT,
        )
        return [self._ledger_graph, reconciliation, refunded]

    # --- the dashboard -----------------------------------------------------------------------------------
    def _dashboard(
        self,
        authorizer: lambda_.IFunction,
        functions: MonitoredFunctions,
        queues: MonitoredQueues,
    ) -> cloudwatch.Dashboard:
        """Metering (metered requests, refusals by reason, failures), the close, Stripe and every DLQ.

        The authorizer emits no metric on its happy path (the counter item is the record), so metered
        requests are derived: invocations - errors - refusals (every ``Denied_<reason>``) - requests served
        unmetered (FAIL_OPEN). The graphs read the custom metrics with the ``service`` dimension of the
        function that emits them (its Powertools service name, from its observability module): plain metrics
        keep 15 months of history and can be combined in math, where Metrics Insights (the alarms) graphs only
        two weeks, too little for a close that happens once a month.
        """

        def emitted(
            name: str, service: str, period: cdk.Duration = FIVE_MINUTES, label: str | None = None
        ) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=METRICS_NAMESPACE,
                metric_name=name,
                dimensions_map={SERVICE_DIMENSION: service},
                statistic="Sum",
                period=period,
                label=label or name,
            )

        def authorizer_metric(name: str, label: str | None = None) -> cloudwatch.Metric:
            return emitted(name, SERVICE_AUTHORIZER, label=label)

        denied = {f"denied{index}": name for index, name in enumerate(DENIED_METRICS)}
        subtracted = {
            "errors": authorizer.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            "unmetered": authorizer_metric(UNMETERED_REQUESTS_METRIC, "served unmetered"),
            **{key: authorizer_metric(name, name) for key, name in denied.items()},
        }
        metered = cloudwatch.MathExpression(
            expression="invocations - " + " - ".join(f"FILL({key}, 0)" for key in subtracted),
            using_metrics={
                "invocations": authorizer.metric_invocations(period=FIVE_MINUTES, statistic="Sum"),
                **subtracted,
            },
            label="metered requests",
            period=FIVE_MINUTES,
        )
        refusals = [
            authorizer_metric(name, name.removeprefix(DENIED_METRIC_PREFIX)) for name in DENIED_METRICS
        ]
        every_function = {
            "authorizer": authorizer,
            "close starter": functions.close_starter,
            "close worker": functions.close_worker,
            "close watchdog": functions.close_watchdog,
            "webhook": functions.webhook,
            "dunning sweeper": functions.dunning_sweeper,
            "GET /usage": functions.usage,
            "alerts": functions.alerts,
            "alert webhooks": functions.alert_webhooks,
            "credit expiry": functions.credit_expiry,
        }
        monitored = self._ledger
        if monitored is not None and monitored.reconciler is not None:
            every_function["ledger reconciler"] = monitored.reconciler
        if monitored is not None and monitored.refunds is not None:
            every_function["refunds"] = monitored.refunds
        every_queue = {
            "close DLQ": queues.close_dead_letter_queue,
            "schedule DLQ": queues.schedule_dead_letter_queue,
            "close starter failures": queues.close_starter_failures,
            "dunning sweeper failures": queues.dunning_sweeper_failures,
            "close watchdog failures": queues.close_watchdog_failures,
            "alert stream failures": queues.alert_stream_failures,
            "alert webhook DLQ": queues.alert_webhook_dead_letter_queue,
        }
        if monitored is not None and monitored.reconciler_failures is not None:
            every_queue["ledger reconciler failures"] = monitored.reconciler_failures
        if monitored is not None and monitored.refund_dead_letter_queue is not None:
            every_queue["refund DLQ"] = monitored.refund_dead_letter_queue
        rows: Sequence[Sequence[cloudwatch.IWidget]] = [
            [
                cloudwatch.TextWidget(
                    markdown="# Tollgate\nMetering (the authorizer), the monthly period close, Stripe and "
                    "everything that failed. Alarms notify the `AlarmTopicArn` topic; "
                    "`tollgate close status --period YYYY-MM` lists the customers of an unfinished close.",
                    width=WIDE,
                    height=2,
                )
            ],
            [
                cloudwatch.GraphWidget(
                    title="Metered requests (per 5 minutes)",
                    left=[metered, authorizer.metric_invocations(period=FIVE_MINUTES, statistic="Sum")],
                    width=HALF,
                    height=HEIGHT,
                ),
                cloudwatch.GraphWidget(
                    title="Refused requests by reason (403)",
                    left=refusals,
                    stacked=True,
                    width=HALF,
                    height=HEIGHT,
                ),
            ],
            [
                cloudwatch.GraphWidget(
                    title="Metering failures",
                    left=[
                        authorizer_metric(METERING_FAILURES_METRIC),
                        authorizer_metric(UNMETERED_REQUESTS_METRIC),
                        authorizer.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
                cloudwatch.GraphWidget(
                    title="Period close (per hour): finalized, no charge, failed attempts",
                    left=[
                        emitted(INVOICES_FINALIZED_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                        emitted(CLOSES_NO_CHARGE_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                        emitted(CLOSE_FAILURES_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
                cloudwatch.GraphWidget(
                    title="Stripe (per hour): failed calls, total mismatches, 429s retried",
                    left=[
                        emitted(STRIPE_FAILURES_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                        emitted(TOTAL_MISMATCH_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                        emitted(STRIPE_RATE_LIMITED_METRIC, SERVICE_PERIOD_CLOSE, ONE_HOUR),
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
            ],
            [
                cloudwatch.GraphWidget(
                    title="Close watchdog (once a month, per day): checked, unfinished, mismatched",
                    left=[
                        emitted(CLOSES_CHECKED_METRIC, SERVICE_PERIOD_CLOSE, ONE_DAY),
                        emitted(CLOSES_UNFINISHED_METRIC, SERVICE_PERIOD_CLOSE, ONE_DAY),
                        emitted(CLOSES_MISMATCHED_METRIC, SERVICE_PERIOD_CLOSE, ONE_DAY),
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
                cloudwatch.GraphWidget(
                    title="Dead-letter and failure queues (messages)",
                    left=[
                        queue.metric_approximate_number_of_messages_visible(
                            period=FIVE_MINUTES, statistic="Maximum", label=label
                        )
                        for label, queue in every_queue.items()
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
                cloudwatch.GraphWidget(
                    title="Function errors",
                    left=[
                        function.metric_errors(period=FIVE_MINUTES, statistic="Sum", label=label)
                        for label, function in every_function.items()
                    ],
                    width=THIRD,
                    height=HEIGHT,
                ),
            ],
            *(
                []
                if monitored is None
                else [
                    self._ledger_row(
                        monitored,
                        [
                            # a second run of a period publishes the same values: its maximum, not a sum
                            emitted(name, SERVICE_PERIOD_CLOSE, ONE_DAY).with_(statistic="Maximum")
                            for name in (
                                CUSTOMERS_RECONCILED_METRIC,
                                FLAGGED_CUSTOMERS_METRIC,
                                UNEXPLAINED_CREDITS_METRIC,
                            )
                        ],
                        [
                            emitted(name, SERVICE_REFUNDS, ONE_HOUR)
                            for name in (
                                REFUNDED_REQUESTS_METRIC,
                                REFUNDED_CREDITS_METRIC,
                                DUPLICATE_REFUNDS_METRIC,
                                REFUNDS_SKIPPED_METRIC,
                                MALFORMED_LEDGER_RECORDS_METRIC,
                            )
                        ],
                    )
                ]
            ),
            [
                cloudwatch.AlarmStatusWidget(
                    title="Alarms",
                    alarms=list(self.alarms.values()),
                    width=WIDE,
                    height=4,
                )
            ],
        ]
        return cloudwatch.Dashboard(self, ID_DASHBOARD, widgets=[list(row) for row in rows])

    # --- helpers -------------------------------------------------------------------------------------------
    @staticmethod
    def _depth(queue: sqs.IQueue) -> cloudwatch.IMetric:
        return queue.metric_approximate_number_of_messages_visible(period=FIVE_MINUTES, statistic="Maximum")

    def _alarm(
        self,
        id: str,
        metric: cloudwatch.IMetric,
        description: str,
        *,
        treat_missing_data: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            id,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=treat_missing_data,
            alarm_description=description,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[id] = alarm
        return alarm
