"""The credit expiry sweep as deployed: an hourly Scheduler schedule, one run at a time, a role that may touch
only wallets, customers' top-ups and the index of expiring lots, and an errors alarm."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.cfn import (
    allowed,
    function_by_handler,
    get_att,
    only,
    props,
    ref,
    referenced_ids,
    resources,
    role_of,
    role_statements,
)
from tollgate.cdk import constants
from tollgate.cdk.expiry import CREDIT_EXPIRY_SCHEDULE
from tollgate.dal import tablekeys
from tollgate.expiry import observability

WRITE_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
}


def table_id(template: dict[str, Any]) -> str:
    logical_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    return logical_id


def expiry_function(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return function_by_handler(template, constants.HANDLER_CREDIT_EXPIRY)


def statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function's statements by Sid (its own log group's too)."""
    _, function = expiry_function(template)
    return {s.get("Sid", ""): s for s in role_statements(template, role_of(function))}


def test_the_sweep_runs_every_hour_at_the_schedules_time_and_never_twice_at_once(
    template: dict[str, Any],
) -> None:
    function_id, function = expiry_function(template)
    _, schedule = only(
        {
            lid: s
            for lid, s in resources(template, "AWS::Scheduler::Schedule").items()
            if props(s)["Target"]["Arn"] == get_att(function_id)
        }
    )
    schedule = props(schedule)

    assert schedule["ScheduleExpression"] == CREDIT_EXPIRY_SCHEDULE == "cron(0 * * * ? *)"
    assert (schedule["ScheduleExpressionTimezone"], schedule["State"]) == ("UTC", "ENABLED")
    assert json.loads(schedule["Target"]["Input"]) == {
        "trigger": "schedule",
        "scheduledTime": "<aws.scheduler.scheduled-time>",  # "now" of the sweep, the same on a retry
    }
    assert schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == constants.SCHEDULE_RETRY_ATTEMPTS
    (dead_letters,) = referenced_ids(schedule["Target"]["DeadLetterConfig"])
    assert constants.ID_SCHEDULE_DLQ in dead_letters  # the stack's schedule DLQ, alarmed
    assert props(function)["ReservedConcurrentExecutions"] == 1
    assert props(function)["Timeout"] == 300
    assert props(function)["Environment"]["Variables"] == {
        "TABLE_NAME": ref(table_id(template)),
        "POWERTOOLS_SERVICE_NAME": observability.SERVICE,
        "POWERTOOLS_METRICS_NAMESPACE": constants.METRICS_NAMESPACE,
    }


def test_the_sweep_may_query_the_index_read_wallets_and_lots_and_update_nothing_else(
    template: dict[str, Any],
) -> None:
    table = get_att(table_id(template))
    gsi1 = {"Fn::Join": ["", [table, "/index/gsi1"]]}
    found = statements(template)
    wallets = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["WALLET#*"]}}
    customers = {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CUSTOMER#*"]}}

    assert set(found) == {"WriteOwnLogs", "FindDueLots", "ReadWallets", "ReadLots", "SettleLots"}
    assert (found["FindDueLots"]["Action"], found["FindDueLots"]["Resource"]) == ("dynamodb:Query", gsi1)
    assert "Condition" not in found["FindDueLots"]
    assert (found["ReadWallets"]["Action"], found["ReadWallets"]["Resource"]) == ("dynamodb:GetItem", table)
    assert found["ReadWallets"]["Condition"] == wallets
    assert (found["ReadLots"]["Action"], found["ReadLots"]["Resource"]) == ("dynamodb:Query", table)
    assert found["ReadLots"]["Condition"] == customers
    assert (found["SettleLots"]["Action"], found["SettleLots"]["Resource"]) == ("dynamodb:UpdateItem", table)
    assert found["SettleLots"]["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["WALLET#*", "CUSTOMER#*"]}
    }
    _, function = expiry_function(template)
    granted = list(allowed(role_statements(template, role_of(function))))
    assert {action for action, _ in granted if action in WRITE_ACTIONS} == {"dynamodb:UpdateItem"}
    assert not [action for action, _ in granted if action.startswith(("secretsmanager:", "sqs:", "kms:"))]
    # the prefixes are the ones the code builds its keys with
    assert tablekeys.wallet_key("acme")[tablekeys.PK].startswith(tablekeys.WALLET_PK_PREFIX)
    assert tablekeys.top_up_key("acme", "r")[tablekeys.PK].startswith(tablekeys.CUSTOMER_PK_PREFIX)
    assert tablekeys.EXPIRING_INDEX_PK == "EXPIRING"


def test_the_sweep_has_an_errors_alarm_on_the_topic_and_a_graph(template: dict[str, Any]) -> None:
    function_id, _ = expiry_function(template)
    topic_id, _ = only(resources(template, "AWS::SNS::Topic"))
    prefix = "Tollgate" + constants.ID_MONITORING + constants.ALARM_CREDIT_EXPIRY_ERRORS
    _, alarm = only(
        {lid: a for lid, a in resources(template, "AWS::CloudWatch::Alarm").items() if lid.startswith(prefix)}
    )
    alarm = props(alarm)

    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Lambda", "Errors", "Sum")
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": ref(function_id)}]
    assert (alarm["AlarmActions"], alarm["OKActions"]) == ([ref(topic_id)], [ref(topic_id)])
    assert "tollgate credits expire" in alarm["AlarmDescription"]
    (dashboard,) = resources(template, "AWS::CloudWatch::Dashboard").values()
    assert function_id in json.dumps(props(dashboard)["DashboardBody"])


def test_the_lots_share_gsi1_so_the_table_has_no_other_index(template: dict[str, Any]) -> None:
    _, table = only(resources(template, "AWS::DynamoDB::Table"))
    (index,) = props(table)["GlobalSecondaryIndexes"]
    assert index["IndexName"] == tablekeys.GSI1


def test_the_sweeps_asset_holds_neither_stripe_nor_the_cli() -> None:
    from tollgate.cdk import bundling

    recipe = bundling.recipe_for(constants.HANDLER_CREDIT_EXPIRY)

    assert "stripe" not in {distribution.name for distribution in recipe.distributions}
    assert not [
        module for module in recipe.needs.modules if module.startswith(("tollgate.cli", "tollgate.cdk"))
    ]
    assert "tollgate.expiry.service" in recipe.needs.modules
