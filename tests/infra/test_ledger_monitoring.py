"""With a request ledger: the alarms on Firehose's delivery (into the alarm topic, onto the dashboard), and
the ledger reconciler the close watchdog starts (environment, least privilege, alarms); none without one."""

from __future__ import annotations

import json
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigatewayv2 as apigwv2

from tests.infra.cfn import function_by_handler, get_att, only, props, ref, referenced_ids, resources
from tests.infra.conftest import Synthesized, _inline_function, make_app, synthesize
from tests.infra.test_iam import grants
from tests.infra.test_monitoring import alarm, dashboard_widgets
from tollgate.billing.close.settings import LEDGER_RECONCILER_FUNCTION
from tollgate.cdk import MeteredApi, Tollgate, constants
from tollgate.cdk.ledger import DEFAULT_BUFFER_INTERVAL, DELIVERY_RETRY_SECONDS
from tollgate.ledger.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP

Template = dict[str, Any]
# the sample stage's stream: records older than its buffer interval plus the retry time mean S3 is failing
DELIVERY_LIMIT = int(DEFAULT_BUFFER_INTERVAL.to_seconds()) + DELIVERY_RETRY_SECONDS


@pytest.fixture(scope="module")
def alarms(template: Template) -> dict[str, dict[str, Any]]:
    return {lid: props(a) for lid, a in resources(template, "AWS::CloudWatch::Alarm").items()}


@pytest.fixture(scope="module")
def http_provider(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Tollgate with a ledger, and an HTTP API metered into it afterwards: its stream is made after the
    monitoring."""
    app = make_app(tmp_path_factory.mktemp("ledger-http.out"))
    stack = cdk.Stack(app, "HttpTollgate")
    tollgate = Tollgate(stack, "Tollgate", ledger=True)
    metered = MeteredApi(
        stack,
        "Metered",
        api=apigwv2.HttpApi(stack, "Api"),
        authorizer_function=tollgate.authorizer_function,
        ledger=tollgate.ledger,
    )
    metered.add_function_route("GET", "/v1/search", _inline_function(stack, "Search"))
    return synthesize(app, stack)


def topic(template: Template) -> dict[str, str]:
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    return ref(topic_id)


def delivery_log_group(template: Template) -> str:
    """The log group every ledger stream logs its delivery errors to."""
    groups = {
        props(s)["ExtendedS3DestinationConfiguration"]["CloudWatchLoggingOptions"]["LogGroupName"]["Ref"]
        for s in resources(template, "AWS::KinesisFirehose::DeliveryStream").values()
    }
    (group,) = groups
    return str(group)


def stream_alarm_metrics(found: dict[str, Any]) -> tuple[str, dict[str, dict[str, Any]]]:
    """The alarm's expression, and its metrics by id."""
    (expression,) = [m["Expression"] for m in found["Metrics"] if m.get("ReturnData", True)]
    by_id = {m["Id"]: m["MetricStat"] for m in found["Metrics"] if "MetricStat" in m}
    return expression, by_id


def test_every_delivery_error_firehose_logs_is_counted_and_alarmed(
    template: Template, alarms: dict[str, dict[str, Any]]
) -> None:
    _, metric_filter = only(resources(template, "AWS::Logs::MetricFilter"))
    assert props(metric_filter)["LogGroupName"] == ref(delivery_log_group(template))
    assert props(metric_filter)["FilterPattern"] == ""  # Firehose writes only errors there: every line
    (transformation,) = props(metric_filter)["MetricTransformations"]
    assert transformation["MetricNamespace"] == constants.METRICS_NAMESPACE
    assert transformation["MetricName"] == constants.LEDGER_DELIVERY_ERRORS_METRIC
    assert transformation["MetricValue"] == "1"
    found = alarm(alarms, constants.ALARM_LEDGER_DELIVERY_ERRORS)
    assert (found["Namespace"], found["MetricName"], found["Statistic"], found["Period"]) == (
        constants.METRICS_NAMESPACE,
        constants.LEDGER_DELIVERY_ERRORS_METRIC,
        "Sum",
        300,
    )
    assert "Dimensions" not in found  # the filter publishes none
    assert found["AlarmActions"] == [topic(template)]
    assert (found["Threshold"], found["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_the_stream_alarms_when_records_wait_too_long_or_puts_are_throttled(
    template: Template, alarms: dict[str, dict[str, Any]]
) -> None:
    (stream_id,) = resources(template, "AWS::KinesisFirehose::DeliveryStream")
    found = alarm(alarms, constants.ledger_delivery_alarm_id("Stream"))
    expression, metrics = stream_alarm_metrics(found)
    assert expression == f"IF(FILL(freshness, 0) > {DELIVERY_LIMIT} OR FILL(throttled, 0) > 0, 1, 0)"
    assert DELIVERY_LIMIT == 600
    assert {name: (m["Metric"]["MetricName"], m["Stat"]) for name, m in metrics.items()} == {
        "freshness": ("DeliveryToS3.DataFreshness", "Maximum"),
        "throttled": ("ThrottledRecords", "Sum"),
    }
    for metric in metrics.values():
        assert metric["Metric"]["Namespace"] == "AWS/Firehose"
        assert metric["Metric"]["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": ref(stream_id)}]
    assert found["AlarmActions"] == found["OKActions"] == [topic(template)]
    assert found["TreatMissingData"] == "notBreaching"  # an idle stream publishes nothing


def test_the_dashboard_shows_the_ledgers_delivery(template: Template) -> None:
    (stream_id,) = resources(template, "AWS::KinesisFirehose::DeliveryStream")
    graphs = {
        w["properties"]["title"]: w["properties"]
        for w in dashboard_widgets(template)
        if "title" in w["properties"]
    }
    (delivery,) = [g for title, g in graphs.items() if title.startswith("Request ledger delivery")]
    rows = [row for row in delivery["metrics"] if isinstance(row[0], str)]
    assert {(row[0], row[1]) for row in rows} == {
        ("AWS/Firehose", "DeliveryToS3.DataFreshness"),
        (constants.METRICS_NAMESPACE, constants.LEDGER_DELIVERY_ERRORS_METRIC),
    }
    assert stream_id in {row[3] for row in rows if row[0] == "AWS/Firehose"}


def test_a_stream_made_after_the_monitoring_gets_its_alarm_too(http_provider: Synthesized) -> None:
    template = http_provider.template
    (stream_id,) = [
        lid
        for lid, stream in resources(template, "AWS::KinesisFirehose::DeliveryStream").items()
        if props(stream)["DeliveryStreamName"].startswith("tollgate-ledger-http-")
    ]
    alarms = {lid: props(a) for lid, a in resources(template, "AWS::CloudWatch::Alarm").items()}
    found = alarm(alarms, constants.ledger_delivery_alarm_id("HttpStream"))
    _, metrics = stream_alarm_metrics(found)
    assert {referenced_ids(m["Metric"]["Dimensions"]).pop() for m in metrics.values()} == {stream_id}
    assert found["AlarmActions"] == [topic(template)]
    widgets = dashboard_widgets(template)
    (delivery,) = [
        w for w in widgets if w["properties"].get("title", "").startswith("Request ledger delivery")
    ]
    assert stream_id in {row[3] for row in delivery["properties"]["metrics"] if row[0] == "AWS/Firehose"}
    alarm_graphs = [w for w in widgets if w["type"] == "metric" and "annotations" in w["properties"]]
    assert any("alarms" in w["properties"]["annotations"] for w in alarm_graphs)


@pytest.fixture(scope="module")
def no_ledger(tmp_path_factory: pytest.TempPathFactory) -> Template:
    app = make_app(tmp_path_factory.mktemp("no-ledger.out"))
    stack = cdk.Stack(app, "NoLedger")
    Tollgate(stack, "Tollgate")
    return synthesize(app, stack).template


def test_no_ledger_no_ledger_alarms(no_ledger: Template) -> None:
    alarms = {lid: props(a) for lid, a in resources(no_ledger, "AWS::CloudWatch::Alarm").items()}
    assert len(alarms) == len(constants.ALARM_IDS)
    assert not resources(no_ledger, "AWS::Logs::MetricFilter")


# --- the ledger reconciler -----------------------------------------------------------------------------


def test_the_reconciler_is_told_where_the_ledger_and_the_table_are(template: Template) -> None:
    _, reconciler = function_by_handler(template, constants.HANDLER_LEDGER_RECONCILER)
    _, usage = function_by_handler(template, constants.HANDLER_USAGE_API)
    env = props(reconciler)["Environment"]["Variables"]
    ledger_env = {name: env[name] for name in (LEDGER_WORKGROUP, LEDGER_DATABASE, LEDGER_TABLE)}
    assert ledger_env == {
        name: props(usage)["Environment"]["Variables"][name] for name in ledger_env
    }  # the same names GET /usage/export reads
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    assert env[constants.ENV_TABLE_NAME] == ref(table_id)
    assert props(reconciler)["Timeout"] == 900
    assert props(reconciler)["ReservedConcurrentExecutions"] == 1


def test_the_reconciler_only_reads_the_table_and_queries_the_ledger(template: Template) -> None:
    table_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    granted = grants(template, constants.HANDLER_LEDGER_RECONCILER)
    on_table = {action for action, resource in granted if resource == get_att(table_id)}
    assert on_table == {"dynamodb:BatchGetItem", "dynamodb:Query"}  # counters; close records
    dynamodb = {action for action, _ in granted if action.startswith("dynamodb:")}
    assert dynamodb == {"dynamodb:BatchGetItem", "dynamodb:Query"}  # nothing written
    # the ledger exactly as the usage function may ask it
    ledger = {
        (a, json.dumps(r, sort_keys=True)) for a, r in granted if a.split(":")[0] in {"athena", "glue", "s3"}
    }
    usage = {
        (a, json.dumps(r, sort_keys=True))
        for a, r in grants(template, constants.HANDLER_USAGE_API)
        if a.split(":")[0] in {"athena", "glue", "s3"}
    }
    assert ledger == usage
    assert "s3:PutObject" in {a for a, _ in ledger}  # Athena's results only:
    assert all("athena-results/*" in r for a, r in ledger if a == "s3:PutObject")
    others = {a for a, _ in granted} - dynamodb - {a for a, _ in ledger}
    assert others == {"logs:CreateLogStream", "logs:PutLogEvents", "sqs:SendMessage"}


def test_the_watchdog_may_start_the_reconciler_and_is_told_its_name(template: Template) -> None:
    reconciler_id, _ = function_by_handler(template, constants.HANDLER_LEDGER_RECONCILER)
    _, watchdog = function_by_handler(template, constants.HANDLER_CLOSE_WATCHDOG)
    env = props(watchdog)["Environment"]["Variables"]
    assert env[LEDGER_RECONCILER_FUNCTION] == ref(reconciler_id)
    invoke = [
        (a, r) for a, r in grants(template, constants.HANDLER_CLOSE_WATCHDOG) if a.startswith("lambda:")
    ]
    assert invoke == [("lambda:InvokeFunction", get_att(reconciler_id))]
    _, config = only(
        {
            lid: c
            for lid, c in resources(template, "AWS::Lambda::EventInvokeConfig").items()
            if props(c)["FunctionName"] == ref(reconciler_id)
        }
    )
    assert props(config)["MaximumRetryAttempts"] == 2


@pytest.mark.parametrize(
    ("construct_id", "metric"),
    [
        (constants.ALARM_UNEXPLAINED_CREDITS, constants.UNEXPLAINED_CREDITS_METRIC),
        (constants.ALARM_RECONCILIATION_FAILURES, constants.RECONCILIATION_FAILURES_METRIC),
    ],
)
def test_unexplained_credits_and_failed_reconciliations_are_alarmed_on_their_maximum(
    template: Template, alarms: dict[str, dict[str, Any]], construct_id: str, metric: str
) -> None:
    found = alarm(alarms, construct_id)
    (query,) = found["Metrics"]
    # the maximum: a second run of the same period publishes the same value, it is not added up
    assert query["Expression"] == f"SELECT MAX({metric}) FROM Tollgate"  # noqa: S608 - a test's constant
    assert (found["Threshold"], found["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert found["AlarmActions"] == [topic(template)]


def test_without_a_ledger_the_watchdog_starts_nothing(no_ledger: Template) -> None:
    template = no_ledger
    _, watchdog = function_by_handler(template, constants.HANDLER_CLOSE_WATCHDOG)
    assert LEDGER_RECONCILER_FUNCTION not in props(watchdog)["Environment"]["Variables"]
    assert not [a for a, _ in grants(template, constants.HANDLER_CLOSE_WATCHDOG) if a.startswith("lambda:")]
    handlers = {props(f)["Handler"] for f in resources(template, "AWS::Lambda::Function").values()}
    assert constants.HANDLER_LEDGER_RECONCILER not in handlers
