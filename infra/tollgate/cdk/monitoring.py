"""``Monitoring``: one SNS topic and the alarms that mean money is being lost or customers are refused.

- the authorizer errors or is throttled: every metered request fails with 503 (or, with FAIL_OPEN, goes
  unmetered);
- DynamoDB throttles requests on the table: lookups and counter increments fail;
- a customer's close lands in the close DLQ: that customer was not invoiced;
- Stripe calls fail (``StripeFailures`` in the ``Tollgate`` namespace, emitted by the Lambda code);
- a scheduled invocation lands in the schedule DLQ: a period close or a dunning sweep did not start.

Subscribe to the topic (``AlarmTopicArn`` output) to be paged.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.cdk.constants import (
    ALARM_AUTHORIZER_ERRORS,
    ALARM_AUTHORIZER_THROTTLES,
    ALARM_CLOSE_DLQ_DEPTH,
    ALARM_SCHEDULE_DLQ_DEPTH,
    ALARM_STRIPE_FAILURES,
    ALARM_TABLE_THROTTLES,
    ID_ALARM_TOPIC,
    METRICS_NAMESPACE,
    STRIPE_FAILURES_METRIC,
)

ONE_MINUTE = cdk.Duration.minutes(1)
FIVE_MINUTES = cdk.Duration.minutes(5)
TABLE_OPERATIONS = (
    dynamodb.Operation.GET_ITEM,
    dynamodb.Operation.BATCH_GET_ITEM,
    dynamodb.Operation.UPDATE_ITEM,
    dynamodb.Operation.PUT_ITEM,
    dynamodb.Operation.QUERY,
    dynamodb.Operation.TRANSACT_WRITE_ITEMS,
)


def stripe_failures_metric(period: cdk.Duration = FIVE_MINUTES) -> cloudwatch.IMetric:
    """``StripeFailures`` summed over every dimension set (Powertools adds a ``service`` dimension).

    A Metrics Insights query, so the alarm does not depend on which service name the emitting code uses.
    """
    return cloudwatch.MathExpression(
        expression=f"SELECT SUM({STRIPE_FAILURES_METRIC}) FROM {METRICS_NAMESPACE}",  # noqa: S608 - constants
        label=STRIPE_FAILURES_METRIC,
        period=period,
    )


class Monitoring(Construct):
    """The alarm topic and the alarms. ``alarms`` maps each alarm id (``tollgate.cdk.constants.ALARM_*``) to
    it."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        authorizer_function: lambda_.IFunction,
        table: dynamodb.ITable,
        close_dead_letter_queue: sqs.IQueue,
        schedule_dead_letter_queue: sqs.IQueue,
    ) -> None:
        super().__init__(scope, id)
        self.topic = sns.Topic(self, ID_ALARM_TOPIC, display_name="Tollgate alarms", enforce_ssl=True)
        self.alarms: dict[str, cloudwatch.Alarm] = {}

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
            ALARM_CLOSE_DLQ_DEPTH,
            close_dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            "A customer's period close failed 5 times and sits in the close DLQ: it was not invoiced.",
        )
        self._alarm(
            ALARM_STRIPE_FAILURES,
            stripe_failures_metric(),
            "Stripe API calls are failing (StripeFailures): invoices or usage reports are not going out.",
        )
        self._alarm(
            ALARM_SCHEDULE_DLQ_DEPTH,
            schedule_dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            ),
            "A scheduled period close or dunning sweep could not be started: see the schedule DLQ.",
        )

    def _alarm(self, id: str, metric: cloudwatch.IMetric, description: str) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            id,
            metric=metric,
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        action = cloudwatch_actions.SnsAction(self.topic)
        alarm.add_alarm_action(action)
        alarm.add_ok_action(action)
        self.alarms[id] = alarm
        return alarm
