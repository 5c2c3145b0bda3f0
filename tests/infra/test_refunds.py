"""Bill only what succeeded, as deployed: the ledger bucket notifies the refund queue of each delivered
object, the refund function consumes it in batches with partial failures, a dead-letter queue keeps what
failed, the role may do exactly what a refund does, and the failures are alarmed."""

from __future__ import annotations

import json
from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tests.infra.cfn import (
    allowed,
    as_list,
    function_by_handler,
    get_att,
    only,
    props,
    ref,
    resources,
    role_of,
    role_statements,
)
from tests.infra.conftest import Synthesized, make_app, synthesize
from tests.infra.test_checks import ACKNOWLEDGED_RULES_METADATA, nag_violations
from tests.infra.test_iam import WRITE_ACTIONS
from tests.infra.test_monitoring import alarm, dashboard_widgets
from tollgate.cdk import Tollgate, UsageLedger, constants
from tollgate.cdk.ledger import ATHENA_RESULTS_PREFIX, S3_ERROR_PREFIX, S3_PREFIX, SERVER_ACCESS_LOG_PREFIX
from tollgate.cdk.nag import add_checks
from tollgate.cdk.refunds import LedgerRefunds
from tollgate.dal import tablekeys
from tollgate.dal.refunds import refund_key
from tollgate.refunds import observability

Template = dict[str, Any]
DAY = 24 * 3600
QUEUE_CONSUME_ACTIONS = {
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
}


@pytest.fixture(scope="module")
def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {lid: props(a) for lid, a in resources(template, "AWS::CloudWatch::Alarm").items()}


def refund_function(template: Template) -> tuple[str, dict[str, Any]]:
    return function_by_handler(template, constants.HANDLER_REFUNDS)


def refund_queues(template: Template) -> tuple[str, str]:
    """(the refund queue, its dead-letter queue): the queue the refund function consumes, and where it
    redrives."""
    function_id, _ = refund_function(template)
    _, mapping = only(
        {
            lid: m
            for lid, m in resources(template, "AWS::Lambda::EventSourceMapping").items()
            if props(m)["FunctionName"] == ref(function_id)
        }
    )
    (queue_id, _) = props(mapping)["EventSourceArn"]["Fn::GetAtt"]
    queue = template["Resources"][queue_id]
    (dlq_id, _) = props(queue)["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"]
    return queue_id, dlq_id


def ledger_bucket(template: Template) -> tuple[str, dict[str, Any]]:
    """The bucket Firehose delivers the ledger to."""
    (stream,) = resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    (bucket_id, _) = props(stream)["ExtendedS3DestinationConfiguration"]["BucketARN"]["Fn::GetAtt"]
    return bucket_id, template["Resources"][bucket_id]


def queue_policy(template: Template, queue_id: str) -> tuple[str, list[dict[str, Any]]]:
    policy_id, policy = only(
        {
            lid: p
            for lid, p in resources(template, "AWS::SQS::QueuePolicy").items()
            if props(p)["Queues"] == [ref(queue_id)]
        }
    )
    return policy_id, props(policy)["PolicyDocument"]["Statement"]


# --- the notification ------------------------------------------------------------------------------------


def test_the_ledger_bucket_notifies_the_refund_queue_of_every_delivered_object(template: Template) -> None:
    queue_id, _ = refund_queues(template)
    _, bucket = ledger_bucket(template)
    notifications = props(bucket)["NotificationConfiguration"]
    assert set(notifications) == {"QueueConfigurations"}  # no Lambda, topic or EventBridge configuration
    (config,) = notifications["QueueConfigurations"]
    assert config["Queue"] == get_att(queue_id)
    assert config["Event"] == "s3:ObjectCreated:*"  # a PutObject or a multipart upload alike
    (rule,) = config["Filter"]["S3Key"]["Rules"]
    assert rule["Name"] == "prefix"
    prefix = rule["Value"]
    assert prefix == "ledger/"
    # what Firehose delivers matches; its error output, Athena's results and the access logs never do
    assert S3_PREFIX.startswith(prefix)
    for other in (S3_ERROR_PREFIX, ATHENA_RESULTS_PREFIX, SERVER_ACCESS_LOG_PREFIX):
        assert not other.startswith(prefix), other


def test_s3_may_send_to_the_refund_queue_before_the_bucket_is_configured(template: Template) -> None:
    """S3 checks the destination when the configuration is set: the bucket waits for the queue's policy,
    which lets S3 acting for this account send (and nothing else), over TLS only."""
    queue_id, _ = refund_queues(template)
    _, bucket = ledger_bucket(template)
    policy_id, statements = queue_policy(template, queue_id)
    assert policy_id in as_list(bucket.get("DependsOn", []))
    allows = [s for s in statements if s["Effect"] == "Allow"]
    (send,) = allows
    assert send["Principal"] == {"Service": "s3.amazonaws.com"}
    assert send["Action"] == "sqs:SendMessage"
    assert send["Resource"] == get_att(queue_id)
    assert send["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_ledger_notifies_one_queue_it_manages(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    ledger = UsageLedger(stack, "Ledger", outputs=False)
    with pytest.raises(ValueError, match="resource policy"):
        ledger.notify_deliveries(
            sqs.Queue.from_queue_arn(stack, "Imported", "arn:aws:sqs:eu-west-1:111111111111:elsewhere")
        )
    ledger.notify_deliveries(sqs.Queue(stack, "First"))
    with pytest.raises(ValueError, match="already"):
        ledger.notify_deliveries(sqs.Queue(stack, "Second"))


# --- the queues and the event source ---------------------------------------------------------------------


def test_the_refund_queue_redrives_to_a_dead_letter_queue_after_5_receives(template: Template) -> None:
    queue_id, dlq_id = refund_queues(template)
    _, function = refund_function(template)
    queue = props(template["Resources"][queue_id])
    dlq = props(template["Resources"][dlq_id])
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5
    # a message is not received again while a batch holding it may still run (AWS: 6 x the timeout)
    assert queue["VisibilityTimeout"] >= 6 * props(function)["Timeout"]
    assert dlq["MessageRetentionPeriod"] == 14 * DAY  # SQS's longest: time to look, fix and redrive
    # the DLQ outlives the source's retention (a moved message keeps its first enqueue time)
    assert dlq["MessageRetentionPeriod"] > queue["MessageRetentionPeriod"]
    assert "RedrivePolicy" not in dlq
    for queue_props, logical_id in ((queue, queue_id), (dlq, dlq_id)):
        assert queue_props["SqsManagedSseEnabled"] is True
        _, statements = queue_policy(template, logical_id)
        assert any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in statements
        ), logical_id


def test_the_function_takes_batches_of_10_and_reports_each_failed_message(template: Template) -> None:
    function_id, _ = refund_function(template)
    queue_id, _ = refund_queues(template)
    mappings = [
        props(m)
        for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
        if props(m)["FunctionName"] == ref(function_id)
    ]
    (mapping,) = mappings
    assert mapping["EventSourceArn"] == get_att(queue_id)
    assert mapping["BatchSize"] == 10
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}  # a backlog cannot crowd the table
    assert mapping.get("Enabled", True) is True


def test_the_refund_function_is_a_tollgate_function(template: Template) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    _, function = refund_function(template)
    _, authorizer = function_by_handler(template, constants.HANDLER_AUTHORIZER)
    function_props = props(function)
    for key in ("Runtime", "Architectures"):
        assert function_props[key] == props(authorizer)[key], key
    assert function_props["Environment"]["Variables"] == {
        constants.ENV_TABLE_NAME: ref(table_id),
        constants.ENV_POWERTOOLS_SERVICE_NAME: observability.SERVICE,
        constants.ENV_POWERTOOLS_METRICS_NAMESPACE: observability.METRICS_NAMESPACE,
    }
    # the queue's consumers are capped by the event source; a reservation would throttle messages to the DLQ
    assert "ReservedConcurrentExecutions" not in function_props
    log_group = function_props["LoggingConfig"]["LogGroup"]["Ref"]
    assert props(template["Resources"][log_group])["RetentionInDays"] == 30


# --- least privilege ---------------------------------------------------------------------------------------


def refund_grants(template: Template) -> list[tuple[str, Any]]:
    _, function = refund_function(template)
    return list(allowed(role_statements(template, role_of(function))))


def test_the_role_reads_ledger_objects_only(template: Template) -> None:
    bucket_id, bucket = ledger_bucket(template)
    granted = refund_grants(template)
    s3 = [(a, r) for a, r in granted if a.startswith("s3:")]
    assert s3 == [("s3:GetObject", {"Fn::Join": ["", [get_att(bucket_id), "/ledger/*"]]})]
    # SSE-S3: S3 decrypts; no key to be granted
    (encryption,) = props(bucket)["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
    assert not [a for a, _ in granted if a.startswith("kms:")]


def test_the_role_does_exactly_what_a_refund_does_on_the_table(template: Template) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    granted = refund_grants(template)
    assert all("*" not in action for action, _ in granted)
    dynamodb = {(a, json.dumps(r)) for a, r in granted if a.startswith("dynamodb:")}
    table = json.dumps(get_att(table_id))
    # the plan's version (GetItem); the markers already there (BatchGetItem); the transaction's Put (marker)
    # and Update (deduction): no Query, no Scan, no index, no other write
    expected = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem")
    assert dynamodb == {(action, table) for action in expected}
    assert {a for a, _ in granted if a in WRITE_ACTIONS} == {"dynamodb:PutItem", "dynamodb:UpdateItem"}


def leading_keys(template: Template) -> dict[str, list[str]]:
    """Each DynamoDB action of the role -> the partition key patterns it is limited to."""
    _, function = refund_function(template)
    found = {}
    for statement in role_statements(template, role_of(function)):
        actions = as_list(statement["Action"])
        if not any(a.startswith("dynamodb:") for a in actions):
            continue
        (action,) = actions
        condition = statement["Condition"]["ForAllValues:StringLike"]
        assert set(condition) == {"dynamodb:LeadingKeys"}
        found[action] = condition["dynamodb:LeadingKeys"]
    return found


def test_each_table_action_is_limited_to_the_partitions_a_refund_touches(template: Template) -> None:
    patterns = leading_keys(template)
    assert set(patterns) == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
    }
    # the keys the refund code itself builds (tollgate.dal.refunds, TollgateStore.get_plan)
    touched = {
        "dynamodb:GetItem": [tablekeys.plan_key("pro", 3)[tablekeys.PK]],
        "dynamodb:PutItem": [refund_key("cus_1", "2026-01", "req-1")[tablekeys.PK]],
        "dynamodb:BatchGetItem": [refund_key("cus_1", "2026-01", "req-1")[tablekeys.PK]],
        "dynamodb:UpdateItem": [
            tablekeys.counter_key("cus_1", "2026-01", 7)[tablekeys.PK],
            tablekeys.wallet_key("cus_1")[tablekeys.PK],
        ],
    }
    for action, keys in touched.items():
        for key in keys:
            assert any(fnmatchcase(key, p) for p in patterns[action]), (action, key)
    # and no more: a marker cannot land on a counter, a deduction cannot touch a customer's items or a plan,
    # nothing touches the key registry
    others = {
        "dynamodb:PutItem": [tablekeys.counter_key("cus_1", "2026-01", 7)[tablekeys.PK]],
        "dynamodb:BatchGetItem": [tablekeys.counter_key("cus_1", "2026-01", 7)[tablekeys.PK]],
        "dynamodb:UpdateItem": [tablekeys.customer_pk("cus_1"), tablekeys.plan_pk("pro")],
        "dynamodb:GetItem": [tablekeys.customer_pk("cus_1"), tablekeys.api_key_key("h")[tablekeys.PK]],
    }
    for action, keys in others.items():
        for key in keys:
            assert not any(fnmatchcase(key, p) for p in patterns[action]), (action, key)


def test_the_role_consumes_its_own_queue_and_sends_nowhere(template: Template) -> None:
    queue_id, dlq_id = refund_queues(template)
    sqs_grants = {(a, json.dumps(r)) for a, r in refund_grants(template) if a.startswith("sqs:")}
    assert sqs_grants == {(a, json.dumps(get_att(queue_id))) for a in QUEUE_CONSUME_ACTIONS}
    assert dlq_id not in json.dumps(refund_grants(template))  # SQS itself moves messages there
    others = {a for a, _ in refund_grants(template)} - QUEUE_CONSUME_ACTIONS
    assert {a.split(":")[0] for a in others} == {"logs", "dynamodb", "s3"}


# --- alarms and the dashboard ------------------------------------------------------------------------------


def test_errors_the_dead_letter_queue_and_skipped_refunds_are_alarmed(
    template: Template, alarms: dict[str, dict[str, Any]]
) -> None:
    function_id, _ = refund_function(template)
    _, dlq_id = refund_queues(template)
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    errors = alarm(alarms, constants.ALARM_REFUND_ERRORS)
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": ref(function_id)}]
    depth = alarm(alarms, constants.ALARM_REFUND_DLQ_DEPTH)
    assert (depth["Namespace"], depth["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": get_att(dlq_id, "QueueName")}]
    skipped = alarm(alarms, constants.ALARM_REFUNDS_SKIPPED)
    (query,) = skipped["Metrics"]
    # the name the function emits, whatever its service dimension
    assert query["Expression"] == f"SELECT SUM({observability.REFUNDS_SKIPPED}) FROM Tollgate"  # noqa: S608
    for found in (errors, depth, skipped):
        assert found["AlarmActions"] == found["OKActions"] == [ref(topic_id)]
        assert (found["Threshold"], found["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
        assert found["TreatMissingData"] == "notBreaching"


def test_the_dashboard_shows_the_refunds(template: Template) -> None:
    function_id, _ = refund_function(template)
    _, dlq_id = refund_queues(template)
    widgets = dashboard_widgets(template)
    graphs = {w["properties"]["title"]: w["properties"] for w in widgets if w["type"] == "metric"}
    (refunds,) = [g for title, g in graphs.items() if title.startswith("Refunds of failed requests")]
    rows = [row for row in refunds["metrics"] if isinstance(row[0], str)]
    assert {row[1] for row in rows} == {
        observability.REFUNDED_REQUESTS,
        observability.REFUNDED_CREDITS,
        observability.DUPLICATE_REFUNDS,
        observability.REFUNDS_SKIPPED,
        observability.MALFORMED_RECORDS,
    }
    assert {(row[0], *row[2:4]) for row in rows} == {
        (observability.METRICS_NAMESPACE, "service", observability.SERVICE)
    }
    assert function_id in {row[3] for row in graphs["Function errors"]["metrics"]}
    (dead_letters,) = [g for title, g in graphs.items() if title.startswith("Dead-letter")]
    assert dlq_id in {row[3] for row in dead_letters["metrics"]}


# --- cdk-nag -----------------------------------------------------------------------------------------------


def test_cdk_nag_finds_nothing_and_only_the_ledger_prefix_read_is_acknowledged(
    tollgate: Synthesized,
) -> None:
    violations = nag_violations(tollgate.validation_report())
    assert not [v for v in violations if "LedgerRefunds" in json.dumps(v)]
    acknowledged = {
        rule.split("::", 1)[1]
        for path, entries in tollgate.construct_metadata().items()
        if "/LedgerRefunds/" in path
        for entry in entries
        if entry["type"] == ACKNOWLEDGED_RULES_METADATA
        for rule in entry["data"]
    }
    bucket_id, _ = ledger_bucket(tollgate.template)
    assert acknowledged == {
        f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/ledger/*]",  # the role's GetObject by prefix
        "AwsSolutions-L1",  # every TollgateFunction's: python3.12 pinned with its cp312 wheels
    }


@pytest.fixture(scope="module")
def nested(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Tollgate with a ledger deeper in a provider's own stack (other logical ids), checked by cdk-nag."""
    app = make_app(tmp_path_factory.mktemp("refunds-nested.out"))
    stack = cdk.Stack(app, "Provider")
    Tollgate(Construct(stack, "Billing"), "Tollgate", ledger=True, outputs=False)
    add_checks(app)
    return synthesize(app, stack)


def test_a_nested_tollgate_is_wired_and_nag_clean_too(nested: Synthesized) -> None:
    template = nested.template
    queue_id, _ = refund_queues(template)
    (config,) = props(ledger_bucket(template)[1])["NotificationConfiguration"]["QueueConfigurations"]
    assert config["Queue"] == get_att(queue_id)
    assert nag_violations(nested.validation_report()) == []


def test_only_a_tollgate_with_a_ledger_refunds(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    without = Tollgate(stack, "Without", outputs=False)
    with_ledger = Tollgate(stack, "With", outputs=False, ledger=True)
    assert without.refunds is None
    assert not [c for c in without.node.find_all() if isinstance(c, LedgerRefunds)]
    assert isinstance(with_ledger.refunds, LedgerRefunds)
    assert with_ledger.ledger is not None
    assert with_ledger.ledger.delivery_queue is with_ledger.refunds.queue
