"""Alarms and outputs: the on-call signals and what a provider reads after deploying."""

from __future__ import annotations

from typing import Any

import pytest

from infra import app
from tests.infra.cfn import function_by_handler, get_att, only, props, ref, referenced_ids, resources
from tollgate.cdk import constants


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


def test_six_alarms_all_notify_the_topic(template: dict[str, Any], alarms: dict[str, dict[str, Any]]) -> None:
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    assert len(alarms) == len(constants.ALARM_IDS) == 6
    for logical_id, alarm_props in alarms.items():
        assert alarm_props["AlarmActions"] == [ref(topic_id)], logical_id
        assert alarm_props["OKActions"] == [ref(topic_id)], logical_id
        assert alarm_props["Threshold"] == 1, logical_id
        assert alarm_props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold", logical_id
        assert alarm_props["TreatMissingData"] == "notBreaching", logical_id


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


def test_dead_letter_queue_depth(template: dict[str, Any], alarms: dict[str, dict[str, Any]]) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    close_queue = only({lid: q for lid, q in queues.items() if "RedrivePolicy" in props(q)})[1]
    (close_dlq,) = referenced_ids(props(close_queue)["RedrivePolicy"]["deadLetterTargetArn"])
    schedules = resources(template, "AWS::Scheduler::Schedule").values()
    (schedule_dlq,) = {
        ref_id for s in schedules for ref_id in referenced_ids(props(s)["Target"]["DeadLetterConfig"])
    }
    for construct_id, queue_id in (
        (constants.ALARM_CLOSE_DLQ_DEPTH, close_dlq),
        (constants.ALARM_SCHEDULE_DLQ_DEPTH, schedule_dlq),
    ):
        found = alarm(alarms, construct_id)
        assert (found["Namespace"], found["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert found["Dimensions"] == [{"Name": "QueueName", "Value": get_att(queue_id, "QueueName")}]


def test_stripe_failures_custom_metric(alarms: dict[str, dict[str, Any]]) -> None:
    found = alarm(alarms, constants.ALARM_STRIPE_FAILURES)
    (query,) = found["Metrics"]
    # Metrics Insights: sums StripeFailures in the Tollgate namespace whatever the dimensions (service=...).
    assert query["Expression"] == "SELECT SUM(StripeFailures) FROM Tollgate"
    assert query["Period"] == 300
    assert query["ReturnData"] is True


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
    stage_id, _ = only(resources(template, "AWS::ApiGateway::Stage"))
    assert stage_id in referenced_ids(outputs["ApiUrl"]["Value"])
    secret_outputs = {
        referenced_ids(outputs[key]["Value"]).pop()
        for key in ("StripeApiKeySecretArn", "StripeWebhookSecretArn")
    }
    assert secret_outputs == set(resources(template, "AWS::SecretsManager::Secret"))
