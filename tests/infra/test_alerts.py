"""Usage alerts as deployed: the table's stream, the alert function's filtered mapping on it and its narrow
permissions, the EventBridge rule to the webhook queue and its dead-letter queue, the webhook function."""

from __future__ import annotations

from typing import Any

from tests.infra.cfn import (
    function_by_handler,
    get_att,
    only,
    props,
    ref,
    resources,
    role_of,
    role_statements,
)
from tollgate.cdk import constants
from tollgate.cdk.alerts import STREAM_READ_ACTIONS, WEBHOOK_MAX_RECEIVE_COUNT


def mapping_of(template: dict[str, Any], handler: str) -> dict[str, Any]:
    function_id, _ = function_by_handler(template, handler)
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    _, mapping = only({lid: m for lid, m in mappings.items() if props(m)["FunctionName"] == ref(function_id)})
    return props(mapping)


def test_the_table_streams_old_and_new_images(template: dict[str, Any]) -> None:
    _, table = only(resources(template, "AWS::DynamoDB::Table"))

    assert props(table)["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_only_counter_and_wallet_changes_invoke_the_alert_function_and_failures_are_kept(
    template: dict[str, Any],
) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    mapping = mapping_of(template, constants.HANDLER_ALERTS)

    assert mapping["EventSourceArn"] == get_att(table_id, "StreamArn")
    assert mapping["FilterCriteria"] == {
        "Filters": [
            {"Pattern": '{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"USAGE#"}]}}}}'},
            {"Pattern": '{"dynamodb":{"Keys":{"pk":{"S":[{"prefix":"WALLET#"}]}}}}'},
        ]
    }
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert (mapping["BisectBatchOnFunctionError"], mapping["MaximumRetryAttempts"]) == (True, 10)
    assert mapping["StartingPosition"] == "LATEST"
    (failures,) = [lid for lid in resources(template, "AWS::SQS::Queue") if "AlertStreamFailureQueue" in lid]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == get_att(failures)


def test_the_alert_function_reads_the_stream_the_stripe_key_and_publishes_to_the_default_bus_only(
    template: dict[str, Any],
) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    _, function = function_by_handler(template, constants.HANDLER_ALERTS)
    statements = role_statements(template, role_of(function))

    (stream,) = [s for s in statements if s.get("Sid") == "ReadTheTablesStream"]
    assert (stream["Action"], stream["Resource"]) == (
        list(STREAM_READ_ACTIONS),
        get_att(table_id, "StreamArn"),
    )
    (publish,) = [s for s in statements if s.get("Sid") == "PublishAlerts"]
    assert publish["Action"] == "events:PutEvents"
    assert "event-bus/default" in str(publish["Resource"])
    (secret,) = [s for s in statements if s.get("Sid") == "ReadStripeApiKey"]  # automatic top-ups
    assert secret["Action"] == "secretsmanager:GetSecretValue"
    (secret_id,) = [lid for lid, r in resources(template, "AWS::SecretsManager::Secret").items()
                    if "stripe secret api key" in props(r)["Description"].lower()]  # fmt: skip
    assert secret["Resource"] == ref(secret_id)
    assert "*" not in [s["Resource"] for s in statements]


def test_alert_events_reach_the_webhook_function_through_a_queue_with_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    (rule_id, rule) = only(resources(template, "AWS::Events::Rule"))
    queues = resources(template, "AWS::SQS::Queue")
    (queue_id,) = [lid for lid in queues if "AlertWebhookQueue" in lid]
    (dlq_id,) = [lid for lid in queues if "AlertWebhookDeadLetterQueue" in lid]

    assert props(rule)["EventPattern"] == {"source": ["tollgate"]}
    assert [t["Arn"] for t in props(rule)["Targets"]] == [get_att(queue_id)]
    assert props(queues[queue_id])["RedrivePolicy"] == {
        "deadLetterTargetArn": get_att(dlq_id),
        "maxReceiveCount": WEBHOOK_MAX_RECEIVE_COUNT,
    }
    mapping = mapping_of(template, constants.HANDLER_ALERT_WEBHOOKS)
    assert mapping["EventSourceArn"] == get_att(queue_id)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    allowed = [  # only EventBridge, and only for this rule, may send to the queue
        s
        for policy in resources(template, "AWS::SQS::QueuePolicy").values()
        if ref(queue_id) in props(policy)["Queues"]
        for s in props(policy)["PolicyDocument"]["Statement"]
        if s["Effect"] == "Allow"
    ]
    assert [(s["Principal"], s["Condition"]) for s in allowed] == [
        ({"Service": "events.amazonaws.com"}, {"ArnEquals": {"aws:SourceArn": get_att(rule_id)}})
    ]
