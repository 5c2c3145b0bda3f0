"""The per-request usage ledger: the S3 bucket, the Firehose stream(s), the Glue table, the Athena workgroup,
and the stages MeteredApi points at it; read from the synthesized templates."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_logs as logs
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.infra.cfn import allowed, get_att, only, props, ref, resources, role_statements
from tests.infra.conftest import SKIP_BUNDLING, Synthesized, _inline_function, synthesize
from tollgate.cdk import MeteredApi, UsageLedger
from tollgate.cdk.ledger import (
    APIGATEWAY_STREAM_PREFIX,
    FIREHOSE_BUCKET_ACTIONS,
    FIREHOSE_OBJECT_ACTIONS,
    PARTITION_QUERY,
)
from tollgate.domain.ledger import (
    ACCESS_LOG_FORMAT,
    HTTP_ACCESS_LOG_FORMAT,
    RECORD_KEYS,
    partition_of,
    render_record,
)

Template = dict[str, Any]


@pytest.fixture(scope="session")
def ledger_apps(tmp_path_factory: pytest.TempPathFactory) -> tuple[Synthesized, Synthesized]:
    """A provider's REST API and HTTP API, each metered with a ledger of its own (one synth for both)."""
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("ledger.out")), context=SKIP_BUNDLING)
    rest_stack = cdk.Stack(app, "RestLedger")
    rest_api = apigw.RestApi(rest_stack, "Api")
    metered = MeteredApi(
        rest_stack,
        "Metered",
        api=rest_api,
        authorizer_function=_inline_function(rest_stack, "Authorizer"),
        ledger=UsageLedger(rest_stack, "Ledger", buffer_interval=cdk.Duration.seconds(60)),
    )
    metered.add_function_route("GET", "/v1/items/{id}", _inline_function(rest_stack, "Items"))

    http_stack = cdk.Stack(app, "HttpLedger")
    http_api = apigwv2.HttpApi(http_stack, "Api")
    metered_http = MeteredApi(
        http_stack,
        "Metered",
        api=http_api,
        authorizer_function=_inline_function(http_stack, "Authorizer"),
        ledger=UsageLedger(http_stack, "Ledger"),
    )
    metered_http.add_function_route("GET", "/v1/search", _inline_function(http_stack, "Search"))
    return synthesize(app, rest_stack), synthesize(app, http_stack)


def streams(template: Template) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::KinesisFirehose::DeliveryStream")


def apigateway_stream(template: Template) -> tuple[str, dict[str, Any]]:
    return only(
        {
            lid: s
            for lid, s in streams(template).items()
            if props(s)["DeliveryStreamName"].startswith(APIGATEWAY_STREAM_PREFIX)
        }
    )


def processors(stream: dict[str, Any]) -> dict[str, dict[str, str]]:
    config = props(stream)["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"]
    assert config["Enabled"] is True
    return {
        p["Type"]: {q["ParameterName"]: q["ParameterValue"] for q in p["Parameters"]}
        for p in config["Processors"]
    }


def ledger_bucket(template: Template) -> tuple[str, dict[str, Any]]:
    _, stream = apigateway_stream(template)
    (bucket_id, _) = props(stream)["ExtendedS3DestinationConfiguration"]["BucketARN"]["Fn::GetAtt"]
    return bucket_id, template["Resources"][bucket_id]


# --- S3 ------------------------------------------------------------------------------------------------


def test_the_ledger_bucket_is_encrypted_private_logged_and_kept(template: Template) -> None:
    bucket_id, bucket = ledger_bucket(template)
    config = props(bucket)
    (rule,) = config["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert set(config["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(config["PublicAccessBlockConfiguration"]) == 4
    assert config["LoggingConfiguration"]["DestinationBucketName"] != ref(bucket_id)
    assert bucket["DeletionPolicy"] == "Retain"  # the ledger backs bills


def test_the_ledger_bucket_refuses_plain_http(template: Template) -> None:
    bucket_id, _ = ledger_bucket(template)
    (policy,) = [
        p
        for p in resources(template, "AWS::S3::BucketPolicy").values()
        if props(p)["Bucket"] == ref(bucket_id)
    ]
    (deny,) = [s for s in props(policy)["PolicyDocument"]["Statement"] if s["Effect"] == "Deny"]
    assert deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == {"AWS": "*"}


def test_ledger_objects_move_to_cheaper_storage_and_athena_results_expire(template: Template) -> None:
    _, bucket = ledger_bucket(template)
    rules = {r["Id"]: r for r in props(bucket)["LifecycleConfiguration"]["Rules"]}
    ledger = rules["LedgerStorageClasses"]
    assert ledger["Prefix"] == "ledger/"
    assert [(t["StorageClass"], t["TransitionInDays"]) for t in ledger["Transitions"]] == [
        ("STANDARD_IA", 30),
        ("GLACIER_IR", 90),  # both still queryable by Athena
    ]
    assert "ExpirationInDays" not in ledger
    assert rules["ExpireAthenaResults"]["Prefix"] == "athena-results/"
    assert rules["ExpireAthenaResults"]["ExpirationInDays"] == 30


def test_transitions_are_configurable(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    UsageLedger(stack, "Ledger", transitions=(), expire_after=cdk.Duration.days(3650), outputs=False)
    template = cdk.assertions.Template.from_stack(stack).to_json()
    (bucket,) = [
        b
        for b in resources(template, "AWS::S3::Bucket").values()
        if "LifecycleConfiguration" in props(b)
        and any(r["Id"] == "LedgerStorageClasses" for r in props(b)["LifecycleConfiguration"]["Rules"])
    ]
    (rule,) = [
        r for r in props(bucket)["LifecycleConfiguration"]["Rules"] if r["Id"] == "LedgerStorageClasses"
    ]
    assert "Transitions" not in rule
    assert rule["ExpirationInDays"] == 3650


# --- Firehose ------------------------------------------------------------------------------------------


def test_the_stream_is_named_for_api_gateway_and_encrypted(template: Template) -> None:
    _, stream = apigateway_stream(template)
    name = props(stream)["DeliveryStreamName"]
    assert name.startswith("amazon-apigateway-")  # API Gateway delivers access logs to no other stream
    assert len(name) <= 64
    assert props(stream)["DeliveryStreamType"] == "DirectPut"
    assert props(stream)["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "AWS_OWNED_CMK"}


def test_the_stream_partitions_by_period_and_day_with_jq_and_gzips(template: Template) -> None:
    _, stream = apigateway_stream(template)
    destination = props(stream)["ExtendedS3DestinationConfiguration"]
    assert destination["Prefix"] == (
        "ledger/period=!{partitionKeyFromQuery:period}/day=!{partitionKeyFromQuery:day}/"
    )
    assert destination["ErrorOutputPrefix"].startswith("ledger-errors/!{firehose:error-output-type}/")
    assert destination["DynamicPartitioningConfiguration"]["Enabled"] is True
    assert destination["CompressionFormat"] == "GZIP"
    assert destination["BufferingHints"] == {"IntervalInSeconds": 300, "SizeInMBs": 64}
    assert destination["CloudWatchLoggingOptions"]["Enabled"] is True
    found = processors(stream)
    assert list(found) == ["MetadataExtraction", "AppendDelimiterToRecord"]  # API Gateway sends no newline
    assert found["MetadataExtraction"] == {
        "MetadataExtractionQuery": PARTITION_QUERY,
        "JsonParsingEngine": "JQ-1.6",
    }
    assert found["AppendDelimiterToRecord"] == {"Delimiter": "\\n"}


def test_the_buffer_interval_is_a_setting_within_firehoses_bounds(
    ledger_apps: tuple[Synthesized, Synthesized], fresh_stack: Callable[[], cdk.Stack]
) -> None:
    _, stream = apigateway_stream(ledger_apps[0].template)
    assert props(stream)["ExtendedS3DestinationConfiguration"]["BufferingHints"]["IntervalInSeconds"] == 60
    with pytest.raises(ValueError, match=r"60\.\.900"):
        UsageLedger(fresh_stack(), "Ledger", buffer_interval=cdk.Duration.seconds(30))


_RECORD_TIMES = st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999)  # 2000..2099


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq (1.6, Firehose's engine) is not installed")
@settings(max_examples=15, deadline=None)
@given(
    st.lists(
        st.tuples(_RECORD_TIMES, st.booleans(), st.sampled_from(["2025-12", "2026-01", "1999-07"])),
        min_size=1,
        max_size=20,
    )
)
def test_the_jq_query_partitions_records_as_partition_of_does(
    cases: list[tuple[int, bool, str]],
) -> None:
    records = [
        render_record({"requestId": f"r{n}", "requestTime": ms, "period": period if own else None})
        for n, (ms, own, period) in enumerate(cases)
    ]
    jq = shutil.which("jq") or "jq"
    answer = subprocess.run(  # noqa: S603 - jq with the query under test
        [jq, "-c", PARTITION_QUERY],
        input="".join(json.dumps(r) for r in records),  # no newline between records, as API Gateway sends
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    keys = [json.loads(line) for line in answer.stdout.splitlines()]
    assert [(k["period"], k["day"]) for k in keys] == [partition_of(r) for r in records]


def test_firehose_may_write_only_the_ledgers_prefixes_and_its_error_log(template: Template) -> None:
    _, stream = apigateway_stream(template)
    role_id = props(stream)["ExtendedS3DestinationConfiguration"]["RoleARN"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]
    (trust,) = props(role)["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert trust["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    bucket_id, _ = ledger_bucket(template)
    granted = list(allowed(role_statements(template, role_id)))
    on_bucket = {action for action, resource in granted if resource == get_att(bucket_id)}
    assert on_bucket == set(FIREHOSE_BUCKET_ACTIONS)
    on_objects = {
        (action, json.dumps(resource)) for action, resource in granted if action in FIREHOSE_OBJECT_ACTIONS
    }
    prefixes = {json.loads(resource)["Fn::Join"][1][1] for _, resource in on_objects}
    assert prefixes == {"/ledger/*", "/ledger-errors/*"}  # never the whole bucket
    others = {action for action, _ in granted} - set(FIREHOSE_BUCKET_ACTIONS) - set(FIREHOSE_OBJECT_ACTIONS)
    assert others == {"logs:PutLogEvents"}
    (log_resource,) = [resource for action, resource in granted if action == "logs:PutLogEvents"]
    assert "*" not in json.dumps(log_resource)  # its own log stream, named
    assert "s3:DeleteObject" not in {action for action, _ in granted}


# --- Glue and Athena -----------------------------------------------------------------------------------


def test_the_glue_table_reads_the_record_as_strings_with_projected_partitions(template: Template) -> None:
    _, table = only(resources(template, "AWS::Glue::Table"))
    _, database = only(resources(template, "AWS::Glue::Database"))
    table_input = props(table)["TableInput"]
    assert props(table)["DatabaseName"] == props(database)["DatabaseInput"]["Name"]
    assert table_input["TableType"] == "EXTERNAL_TABLE"
    descriptor = table_input["StorageDescriptor"]
    assert descriptor["SerdeInfo"]["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    columns = [(c["Name"], c["Type"]) for c in descriptor["Columns"]]
    partitions = [(c["Name"], c["Type"]) for c in table_input["PartitionKeys"]]
    assert partitions == [("period", "string"), ("day", "string")]
    assert columns == [(key.lower(), "string") for key in RECORD_KEYS if key != "period"]
    # where the authorizer counted each request's credits (what a refund takes them back from), queryable
    assert {("segment", "string"), ("routecode", "string"), ("shard", "string")} <= set(columns)
    parameters = table_input["Parameters"]
    assert parameters["projection.enabled"] == "true"
    assert parameters["projection.period.type"] == "date"
    assert parameters["projection.period.format"] == "yyyy-MM"
    assert parameters["projection.period.interval.unit"] == "MONTHS"
    assert parameters["projection.day.type"] == "date"
    assert parameters["projection.day.format"] == "yyyy-MM-dd"
    assert parameters["projection.day.interval.unit"] == "DAYS"
    assert parameters["projection.period.range"].endswith(",NOW+1MONTHS")
    template_location = parameters["storage.location.template"]
    assert template_location["Fn::Join"][1][-1] == "/ledger/period=${period}/day=${day}/"
    assert descriptor["Location"]["Fn::Join"][1][-1] == "/ledger/"
    assert not resources(template, "AWS::Glue::Crawler")  # projection: nothing to crawl or repair


def test_the_athena_workgroup_enforces_encrypted_results_in_the_bucket(template: Template) -> None:
    _, work_group = only(resources(template, "AWS::Athena::WorkGroup"))
    config = props(work_group)["WorkGroupConfiguration"]
    assert config["EnforceWorkGroupConfiguration"] is True
    results = config["ResultConfiguration"]
    assert results["EncryptionConfiguration"] == {"EncryptionOption": "SSE_S3"}
    bucket_id, _ = ledger_bucket(template)
    assert results["OutputLocation"]["Fn::Join"][1] == ["s3://", ref(bucket_id), "/athena-results/"]


def test_the_stack_outputs_name_the_ledger(template: Template) -> None:
    assert {"LedgerBucketName", "LedgerDatabaseName", "LedgerTableName", "LedgerWorkGroupName"} <= set(
        template["Outputs"]
    )


# --- the stages ----------------------------------------------------------------------------------------


def test_the_sample_stage_logs_every_request_to_the_ledger_stream(template: Template) -> None:
    stream_id, _ = apigateway_stream(template)
    _, stage = only(resources(template, "AWS::ApiGateway::Stage"))
    setting = props(stage)["AccessLogSetting"]
    assert setting["DestinationArn"] == get_att(stream_id)
    assert json.loads(setting["Format"]) == ACCESS_LOG_FORMAT
    assert stream_id in stage.get("DependsOn", [])


def test_a_providers_rest_stage_logs_to_its_ledger(ledger_apps: tuple[Synthesized, Synthesized]) -> None:
    template = ledger_apps[0].template
    stream_id, _ = apigateway_stream(template)
    _, stage = only(resources(template, "AWS::ApiGateway::Stage"))
    assert props(stage)["AccessLogSetting"]["DestinationArn"] == get_att(stream_id)
    assert len(streams(template)) == 1  # no HTTP stream unless an HTTP API needs one


def test_an_http_api_logs_through_cloudwatch_logs_into_its_own_stream(
    ledger_apps: tuple[Synthesized, Synthesized],
) -> None:
    template = ledger_apps[1].template
    (http_id, http_stream) = only(
        {
            lid: s
            for lid, s in streams(template).items()
            if not props(s)["DeliveryStreamName"].startswith("amazon-")
        }
    )
    assert list(processors(http_stream)) == [
        "Decompression",
        "CloudWatchLogProcessing",
        "MetadataExtraction",
        "AppendDelimiterToRecord",
    ]
    assert processors(http_stream)["CloudWatchLogProcessing"] == {"DataMessageExtraction": "true"}
    _, rest_stream = apigateway_stream(template)
    same = ("Prefix", "BucketARN", "CompressionFormat")
    http_destination = props(http_stream)["ExtendedS3DestinationConfiguration"]
    rest_destination = props(rest_stream)["ExtendedS3DestinationConfiguration"]
    assert {k: http_destination[k] for k in same} == {k: rest_destination[k] for k in same}

    _, stage = only(resources(template, "AWS::ApiGatewayV2::Stage"))
    settings_ = props(stage)["AccessLogSettings"]
    assert json.loads(settings_["Format"]) == HTTP_ACCESS_LOG_FORMAT
    log_group_id = settings_["DestinationArn"]["Fn::GetAtt"][0]
    assert template["Resources"][log_group_id]["Type"] == "AWS::Logs::LogGroup"
    _, subscription = only(resources(template, "AWS::Logs::SubscriptionFilter"))
    assert props(subscription)["LogGroupName"] == ref(log_group_id)
    assert props(subscription)["DestinationArn"] == get_att(http_id)
    assert props(subscription)["FilterPattern"] == ""
    role_id = props(subscription)["RoleArn"]["Fn::GetAtt"][0]
    granted = {
        (action, json.dumps(resource)) for action, resource in allowed(role_statements(template, role_id))
    }
    assert granted == {
        ("firehose:PutRecord", json.dumps(get_att(http_id))),
        ("firehose:PutRecordBatch", json.dumps(get_att(http_id))),
    }


def test_an_imported_rest_api_cannot_be_wired_without_its_stage(fresh_stack: Callable[[], cdk.Stack]) -> None:
    stack = fresh_stack()
    api = apigw.RestApi.from_rest_api_attributes(stack, "Api", rest_api_id="abc123", root_resource_id="root")
    with pytest.raises(ValueError, match="stream_arn"):
        MeteredApi(
            stack,
            "Metered",
            api=api,
            authorizer_function=_inline_function(stack, "Authorizer"),
            deploy_to_stage="prod",
            ledger=UsageLedger(stack, "Ledger", outputs=False),
        )


def test_an_access_log_the_app_set_is_replaced_with_a_warning(
    fresh_stack: Callable[[], cdk.Stack], tmp_path: Path
) -> None:
    stack = fresh_stack()
    group = logs.LogGroup(stack, "Logs")
    api = apigw.RestApi(
        stack,
        "Api",
        deploy_options=apigw.StageOptions(
            access_log_destination=apigw.LogGroupLogDestination(group),
            access_log_format=apigw.AccessLogFormat.clf(),
        ),
    )
    metered = MeteredApi(
        stack,
        "Metered",
        api=api,
        authorizer_function=_inline_function(stack, "Authorizer"),
        ledger=UsageLedger(stack, "Ledger", outputs=False),
    )
    metered.add_function_route("GET", "/x", _inline_function(stack, "X"))
    template = cdk.assertions.Template.from_stack(stack)
    (stage,) = resources(template.to_json(), "AWS::ApiGateway::Stage").values()
    assert json.loads(props(stage)["AccessLogSetting"]["Format"]) == ACCESS_LOG_FORMAT
    # has_warning raises unless one matches (reading the messages back needs jsii's MetadataEntry proxy,
    # which some test orders fail to load)
    cdk.assertions.Annotations.from_stack(stack).has_warning(
        "*", cdk.assertions.Match.string_like_regexp("usage ledger")
    )
