"""Alarms, the dashboard and outputs: the on-call signals and what a provider reads after deploying."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import app
from tests.infra.cfn import function_by_handler, get_att, only, props, ref, referenced_ids, resources
from tollgate.billing.close import observability as close_observability
from tollgate.cdk import constants
from tollgate.metering import observability as metering_observability
from tollgate.metering.decisions import Reason
from tollgate.refunds import observability as refunds_observability

# Alarms on events that are over once seen go back to OK without data; the watchdog's stays as it was.
KEEPS_ITS_STATE = {constants.ALARM_CLOSE_PROBLEMS, constants.ALARM_UNEXPLAINED_CREDITS}
# The app's stack has a ledger (its sample API's): one delivery alarm per stream (a REST stage: one stream).
LEDGER_STREAM_ALARMS = (constants.ledger_delivery_alarm_id("Stream"),)
LEDGER_ALARMS = (*constants.LEDGER_ALARM_IDS, *LEDGER_STREAM_ALARMS)


@pytest.fixture(scope="module")
def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {lid: props(a) for lid, a in resources(template, "AWS::CloudWatch::Alarm").items()}


def alarm(alarms: dict[str, dict[str, Any]], construct_id: str) -> dict[str, Any]:
    prefix = "Tollgate" + constants.ID_MONITORING + construct_id  # the Tollgate construct, then Monitoring
    _, found = only({lid: a for lid, a in alarms.items() if lid.startswith(prefix)})
    return found


def metric_names(alarm_props: dict[str, Any]) -> set[str]:
    if "MetricName" in alarm_props:
        return {alarm_props["MetricName"]}
    return {m["MetricStat"]["Metric"]["MetricName"] for m in alarm_props["Metrics"] if "MetricStat" in m}


def test_every_alarm_notifies_the_topic(template: dict[str, Any], alarms: dict[str, dict[str, Any]]) -> None:
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    assert len(set(constants.ALARM_IDS)) == 24
    assert len(alarms) == len(constants.ALARM_IDS) + len(LEDGER_ALARMS)
    for construct_id in (*constants.ALARM_IDS, *LEDGER_ALARMS):
        alarm_props = alarm(alarms, construct_id)
        assert alarm_props["AlarmActions"] == [ref(topic_id)], construct_id
        assert alarm_props["OKActions"] == [ref(topic_id)], construct_id
        assert alarm_props["Threshold"] == 1, construct_id
        assert alarm_props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", construct_id
        missing = "ignore" if construct_id in KEEPS_ITS_STATE else "notBreaching"
        assert alarm_props["TreatMissingData"] == missing, construct_id
        assert len(alarm_props["AlarmDescription"].split()) >= 8, construct_id


@pytest.mark.parametrize(
    ("construct_id", "handler"),
    [
        (constants.ALARM_AUTHORIZER_ERRORS, constants.HANDLER_AUTHORIZER),
        (constants.ALARM_CLOSE_STARTER_ERRORS, constants.HANDLER_CLOSE_STARTER),
        (constants.ALARM_CLOSE_WORKER_ERRORS, constants.HANDLER_CLOSE_WORKER),
        (constants.ALARM_CLOSE_WATCHDOG_ERRORS, constants.HANDLER_CLOSE_WATCHDOG),
        (constants.ALARM_WEBHOOK_ERRORS, constants.HANDLER_WEBHOOK),
        (constants.ALARM_DUNNING_SWEEPER_ERRORS, constants.HANDLER_DUNNING_SWEEPER),
        (constants.ALARM_USAGE_ERRORS, constants.HANDLER_USAGE_API),
        (constants.ALARM_CREDIT_EXPIRY_ERRORS, constants.HANDLER_CREDIT_EXPIRY),
        (constants.ALARM_LEDGER_RECONCILER_ERRORS, constants.HANDLER_LEDGER_RECONCILER),
        (constants.ALARM_REFUND_ERRORS, constants.HANDLER_REFUNDS),
    ],
)
def test_every_tollgate_function_has_an_errors_alarm(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]], construct_id: str, handler: str
) -> None:
    function_id, _ = function_by_handler(template, handler)
    found = alarm(alarms, construct_id)
    assert (found["Namespace"], found["MetricName"], found["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert found["Dimensions"] == [{"Name": "FunctionName", "Value": ref(function_id)}]


def test_authorizer_errors_and_throttles(template: dict[str, Any], alarms: dict[str, dict[str, Any]]) -> None:
    authorizer_id, _ = function_by_handler(template, constants.HANDLER_AUTHORIZER)
    for construct_id, metric in (
        (constants.ALARM_AUTHORIZER_ERRORS, "Errors"),
        (constants.ALARM_AUTHORIZER_THROTTLES, "Throttles"),
    ):
        found = alarm(alarms, construct_id)
        assert (found["Namespace"], found["MetricName"], found["Statistic"]) == ("AWS/Lambda", metric, "Sum")
        assert found["Dimensions"] == [{"Name": "FunctionName", "Value": ref(authorizer_id)}]


def test_table_throttles_over_the_operations_tollgate_uses(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    found = alarm(alarms, constants.ALARM_TABLE_THROTTLES)
    assert metric_names(found) == {"ThrottledRequests"}
    operations = set()
    for query in found["Metrics"]:
        if "MetricStat" not in query:
            continue
        metric = query["MetricStat"]["Metric"]
        assert metric["Namespace"] == "AWS/DynamoDB"
        dimensions = {d["Name"]: d["Value"] for d in metric["Dimensions"]}
        assert dimensions["TableName"] == ref(table_id)
        operations.add(dimensions["Operation"])
    assert {"GetItem", "BatchGetItem", "UpdateItem", "Query", "PutItem"} <= operations
    (expression,) = [q for q in found["Metrics"] if q.get("ReturnData", True)]
    assert "Expression" in expression  # the alarm watches the sum over operations


def failure_queue_of(template: dict[str, Any], handler: str) -> str:
    function_id, _ = function_by_handler(template, handler)
    (config,) = [
        props(c)
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if props(c)["FunctionName"] == ref(function_id)
    ]
    (queue_id,) = referenced_ids(config["DestinationConfig"])
    return queue_id


def test_every_queue_of_failures_is_alarmed_on_its_depth(
    template: dict[str, Any], alarms: dict[str, dict[str, Any]]
) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    redriven = {lid: q for lid, q in queues.items() if "RedrivePolicy" in props(q)}
    close_queue_id, close_queue = only({lid: q for lid, q in redriven.items() if "CloseQueue" in lid})
    webhook_queue_id, webhook_queue = only({lid: q for lid, q in redriven.items() if "WebhookQueue" in lid})
    refund_queue_id, refund_queue = only({lid: q for lid, q in redriven.items() if "RefundQueue" in lid})
    (close_dlq,) = referenced_ids(props(close_queue)["RedrivePolicy"]["deadLetterTargetArn"])
    (webhook_dlq,) = referenced_ids(props(webhook_queue)["RedrivePolicy"]["deadLetterTargetArn"])
    (refund_dlq,) = referenced_ids(props(refund_queue)["RedrivePolicy"]["deadLetterTargetArn"])
    (stream_failures,) = [lid for lid in queues if "AlertStreamFailureQueue" in lid]
    schedules = resources(template, "AWS::Scheduler::Schedule").values()
    (schedule_dlq,) = {
        ref_id for s in schedules for ref_id in referenced_ids(props(s)["Target"]["DeadLetterConfig"])
    }
    watched = {
        constants.ALARM_CLOSE_DLQ_DEPTH: close_dlq,
        constants.ALARM_SCHEDULE_DLQ_DEPTH: schedule_dlq,
        constants.ALARM_CLOSE_STARTER_FAILURES: failure_queue_of(template, constants.HANDLER_CLOSE_STARTER),
        constants.ALARM_DUNNING_SWEEPER_FAILURES: failure_queue_of(
            template, constants.HANDLER_DUNNING_SWEEPER
        ),
        constants.ALARM_CLOSE_WATCHDOG_FAILURES: failure_queue_of(template, constants.HANDLER_CLOSE_WATCHDOG),
        constants.ALARM_ALERT_WEBHOOK_DLQ_DEPTH: webhook_dlq,
        constants.ALARM_ALERT_STREAM_FAILURES: stream_failures,
        constants.ALARM_LEDGER_RECONCILER_FAILURES: failure_queue_of(
            template, constants.HANDLER_LEDGER_RECONCILER
        ),
        constants.ALARM_REFUND_DLQ_DEPTH: refund_dlq,
    }
    for construct_id, queue_id in watched.items():
        found = alarm(alarms, construct_id)
        assert (found["Namespace"], found["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert found["Statistic"] == "Maximum"
        assert found["Dimensions"] == [{"Name": "QueueName", "Value": get_att(queue_id, "QueueName")}]
    # every queue but the work queues themselves (close, alert webhooks, refunds) holds failures, and each
    # one is watched
    assert set(watched.values()) == set(queues) - {close_queue_id, webhook_queue_id, refund_queue_id}


@pytest.mark.parametrize(
    ("construct_id", "metric", "period"),
    [
        (constants.ALARM_STRIPE_FAILURES, close_observability.STRIPE_FAILURES, 300),
        (constants.ALARM_TOTAL_MISMATCH, close_observability.TOTAL_MISMATCH, 300),
        (constants.ALARM_CLOSE_PROBLEMS, close_observability.CLOSE_PROBLEMS, 300),
        (constants.ALARM_METERING_FAILURES, metering_observability.METERING_FAILURES, 60),
        (constants.ALARM_UNMETERED_REQUESTS, metering_observability.UNMETERED_REQUESTS, 60),
        (constants.ALARM_REFUNDS_SKIPPED, refunds_observability.REFUNDS_SKIPPED, 300),
    ],
)
def test_custom_metrics_are_alarmed_whatever_their_dimensions(
    alarms: dict[str, dict[str, Any]], construct_id: str, metric: str, period: int
) -> None:
    found = alarm(alarms, construct_id)
    (query,) = found["Metrics"]
    # Metrics Insights: sums the metric in the Tollgate namespace whatever the dimensions (service=...).
    assert query["Expression"] == f"SELECT SUM({metric}) FROM Tollgate"  # noqa: S608 - a test's constant
    assert query["Period"] == period
    assert query["ReturnData"] is True


def dashboard_widgets(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The dashboard's widgets, every token (Ref, GetAtt) written as the logical id it refers to."""
    _, dashboard = only(resources(template, "AWS::CloudWatch::Dashboard"))
    body = props(dashboard)["DashboardBody"]
    parts = body["Fn::Join"][1] if isinstance(body, dict) else [body]
    text = "".join(part if isinstance(part, str) else "".join(referenced_ids(part)) for part in parts)
    widgets: list[dict[str, Any]] = json.loads(text)["widgets"]
    return widgets


def test_the_dashboard_shows_metering_the_close_stripe_and_every_queue_of_failures(
    template: dict[str, Any],
) -> None:
    widgets = dashboard_widgets(template)
    titles = [w["properties"].get("title", "") for w in widgets]
    graphs = {w["properties"]["title"]: w["properties"] for w in widgets if w["type"] == "metric"}
    assert any(title.startswith("Metered requests") for title in titles)

    def metric_names(title_start: str) -> set[str]:
        (graph,) = [g for title, g in graphs.items() if title.startswith(title_start)]
        return {row[1] for row in graph["metrics"] if isinstance(row[0], str)}

    # metered = authorizer invocations - errors - every refusal - requests served unmetered
    (metered,) = [g for title, g in graphs.items() if title.startswith("Metered requests")]
    (expression,) = [row[0]["expression"] for row in metered["metrics"] if "expression" in row[0]]
    denied = {f"{metering_observability.DENIED_PREFIX}{reason.value}" for reason in Reason}
    assert metric_names("Metered requests") == {"Invocations", "Errors", "UnmeteredRequests"} | denied
    assert expression.startswith("invocations - ")
    assert expression.count("FILL(") == len(denied) + 2
    assert metric_names("Refused requests by reason") == denied
    assert metric_names("Period close") == {
        close_observability.INVOICES_FINALIZED,
        close_observability.CLOSES_NO_CHARGE,
        close_observability.CLOSE_FAILURES,
    }
    assert metric_names("Stripe") == {
        close_observability.STRIPE_FAILURES,
        close_observability.TOTAL_MISMATCH,
        close_observability.STRIPE_RATE_LIMITED,
    }
    assert metric_names("Close watchdog") == {
        close_observability.CLOSES_CHECKED,
        close_observability.CLOSES_UNFINISHED,
        close_observability.CLOSES_MISMATCHED,
    }
    for title_start, service in (
        ("Refused requests", metering_observability.SERVICE),
        ("Period close", close_observability.SERVICE),
        ("Close watchdog", close_observability.SERVICE),
    ):
        (graph,) = [g for title, g in graphs.items() if title.startswith(title_start)]
        assert {tuple(row[2:4]) for row in graph["metrics"]} == {("service", service)}
    queues = resources(template, "AWS::SQS::Queue")
    # close, alert webhooks, refunds (the app's stack has a ledger)
    work_queues = {lid for lid, q in queues.items() if "RedrivePolicy" in props(q)}
    assert len(work_queues) == 3
    (dead_letters,) = [g for title, g in graphs.items() if title.startswith("Dead-letter")]
    assert {row[3] for row in dead_letters["metrics"]} == set(queues) - work_queues
    (errors,) = [g for title, g in graphs.items() if title == "Function errors"]
    functions = resources(template, "AWS::Lambda::Function")
    ours = {lid for lid, f in functions.items() if props(f)["Handler"].startswith("tollgate.")}
    assert len(ours) == 12  # with the ledger reconciler and the refund function (the app has a ledger)
    assert {row[3] for row in errors["metrics"]} == ours
    (alarm_widget,) = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(constants.ALARM_IDS) + len(LEDGER_ALARMS)


def test_alarm_topic_requires_tls(template: dict[str, Any]) -> None:
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    _, policy = only(resources(template, "AWS::SNS::TopicPolicy"))
    assert props(policy)["Topics"] == [ref(topic_id)]
    statements = props(policy)["PolicyDocument"]["Statement"]
    assert any(
        s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        for s in statements
    )


def test_outputs_a_provider_needs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    expected = {
        app.OUTPUT_API_URL,
        constants.OUTPUT_TABLE_NAME,
        constants.OUTPUT_STRIPE_API_KEY_SECRET_ARN,
        constants.OUTPUT_STRIPE_WEBHOOK_SECRET_ARN,
        constants.OUTPUT_WEBHOOK_URL,
        constants.OUTPUT_ALARM_TOPIC_ARN,
        constants.OUTPUT_CLOSE_QUEUE_URL,
        constants.OUTPUT_AUTHORIZER_FUNCTION_ARN,
        constants.OUTPUT_CLOSE_STARTER_FUNCTION_NAME,
        constants.OUTPUT_DASHBOARD_NAME,
    }
    assert expected <= set(outputs)
    assert {"TableName", "ApiUrl", "StripeApiKeySecretArn", "StripeWebhookSecretArn", "WebhookUrl"} <= set(
        outputs
    )
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    url_id, _ = only(resources(template, "AWS::Lambda::Url"))
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    assert outputs["TableName"]["Value"] == ref(table_id)
    assert outputs["WebhookUrl"]["Value"] == get_att(url_id, "FunctionUrl")
    assert outputs["AlarmTopicArn"]["Value"] == ref(topic_id)
    dashboard_id, _ = only(resources(template, "AWS::CloudWatch::Dashboard"))
    assert outputs[constants.OUTPUT_DASHBOARD_NAME]["Value"] == ref(dashboard_id)
    stage_id, _ = only(resources(template, "AWS::ApiGateway::Stage"))
    assert stage_id in referenced_ids(outputs["ApiUrl"]["Value"])
    secret_outputs = {
        referenced_ids(outputs[key]["Value"]).pop()
        for key in ("StripeApiKeySecretArn", "StripeWebhookSecretArn", "PortalLinkSecretArn")
    }
    assert secret_outputs == set(resources(template, "AWS::SecretsManager::Secret"))
