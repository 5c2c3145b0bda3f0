"""Least privilege, read from the template: what each function's role may actually do."""

from __future__ import annotations

from typing import Any

import pytest

from infra import sample_api
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
from tollgate.cdk import constants
from tollgate.dal import tablekeys

LOG_ACTIONS = {"logs:CreateLogStream", "logs:PutLogEvents"}
WRITE_ACTIONS = {
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
    "dynamodb:ConditionCheckItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
}


def grants(template: dict[str, Any], handler: str) -> list[tuple[str, Any]]:
    _, function = function_by_handler(template, handler)
    return list(allowed(role_statements(template, role_of(function))))


def table_id(template: dict[str, Any]) -> str:
    logical_id, _ = only(resources(template, "AWS::DynamoDB::Table"))
    return logical_id


def secret_ids(template: dict[str, Any]) -> dict[str, str]:
    """'api' / 'webhook' -> logical id of the Stripe secret; 'portal' -> the usage page's link secret."""
    found = {}
    for logical_id, secret in resources(template, "AWS::SecretsManager::Secret").items():
        description = props(secret)["Description"].lower()
        key = "portal" if "usage page" in description else "webhook" if "webhook" in description else "api"
        found[key] = logical_id
    assert set(found) == {"api", "webhook", "portal"}
    return found


def gsi1_arn(template: dict[str, Any]) -> dict[str, Any]:
    return {"Fn::Join": ["", [get_att(table_id(template)), "/index/gsi1"]]}


def test_authorizer_reads_and_increments_only_on_the_table(template: dict[str, Any]) -> None:
    granted = grants(template, constants.HANDLER_AUTHORIZER)
    dynamodb = {(action, str(resource)) for action, resource in granted if action.startswith("dynamodb:")}
    table = str(get_att(table_id(template)))
    assert dynamodb == {
        ("dynamodb:GetItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:PutItem", table),
    }
    assert {action for action, _ in granted if action in WRITE_ACTIONS} == {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
    }


def test_authorizer_puts_items_only_in_the_route_registry(template: dict[str, Any]) -> None:
    _, function = function_by_handler(template, constants.HANDLER_AUTHORIZER)
    (put,) = [
        statement
        for statement in role_statements(template, role_of(function))
        if "dynamodb:PutItem" in statement["Action"]
    ]
    assert put["Action"] == "dynamodb:PutItem"
    assert put["Condition"] == {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["ROUTES"]}}


def test_authorizer_cannot_read_any_secret(template: dict[str, Any]) -> None:
    granted = grants(template, constants.HANDLER_AUTHORIZER)
    assert not [action for action, _ in granted if action.startswith(("secretsmanager:", "kms:"))]
    assert {action.split(":")[0] for action, _ in granted} == {"dynamodb", "logs"}


def test_no_function_may_act_on_every_resource(template: dict[str, Any]) -> None:
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        for action, resource in allowed(role_statements(template, role_of(function))):
            assert "*" not in action, (function_id, action)
            assert resource != "*", (function_id, action)


def test_functions_write_only_their_own_log_group(template: dict[str, Any]) -> None:
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        log_group = props(function)["LoggingConfig"]["LogGroup"]
        logs = {
            (a, str(r))
            for a, r in allowed(role_statements(template, role_of(function)))
            if a.startswith("logs:")
        }
        assert logs == {(a, str(get_att(log_group["Ref"]))) for a in LOG_ACTIONS}, function_id


def test_no_function_role_uses_managed_policies(template: dict[str, Any]) -> None:
    for function_id, function in resources(template, "AWS::Lambda::Function").items():
        role = template["Resources"][role_of(function)]
        assert not props(role).get("ManagedPolicyArns"), function_id


def test_worker_reads_only_the_stripe_api_key_secret(template: dict[str, Any]) -> None:
    secrets = secret_ids(template)
    granted = grants(template, constants.HANDLER_CLOSE_WORKER)
    secret_grants = {
        (action, str(resource)) for action, resource in granted if action.startswith("secretsmanager:")
    }
    assert secret_grants == {("secretsmanager:GetSecretValue", str(ref(secrets["api"])))}


def test_only_the_worker_the_webhook_the_alerts_and_the_usage_page_read_secrets_each_its_own(
    template: dict[str, Any],
) -> None:
    secrets = secret_ids(template)
    expected = {
        constants.HANDLER_CLOSE_WORKER: {str(ref(secrets["api"]))},
        constants.HANDLER_WEBHOOK: {str(ref(secrets["webhook"]))},
        constants.HANDLER_ALERTS: {str(ref(secrets["api"]))},  # automatic top-ups charge a saved card
        constants.HANDLER_USAGE_API: {str(ref(secrets["portal"]))},  # checks the usage page's signed links
    }
    for function in resources(template, "AWS::Lambda::Function").values():
        handler = props(function)["Handler"]
        readable = {
            str(resource)
            for action, resource in allowed(role_statements(template, role_of(function)))
            if action.startswith("secretsmanager:")
        }
        assert readable == expected.get(handler, set()), handler


def test_worker_table_access(template: dict[str, Any]) -> None:
    granted = grants(template, constants.HANDLER_CLOSE_WORKER)
    table = str(get_att(table_id(template)))
    on_table = {action for action, resource in granted if str(resource) == table}
    assert on_table == {
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:ConditionCheckItem",
        "dynamodb:Query",
    }
    assert "dynamodb:DeleteItem" not in {action for action, _ in granted}


def failure_queue_of(template: dict[str, Any], handler: str) -> str:
    """The logical id of a scheduled function's on-failure destination (its EventInvokeConfig)."""
    function_id, _ = function_by_handler(template, handler)
    (config,) = [
        props(c)
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if props(c)["FunctionName"] == ref(function_id)
    ]
    destination: str = config["DestinationConfig"]["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    return destination


def test_starter_lists_customers_and_queues_closes_only(template: dict[str, Any]) -> None:
    granted = {
        (action, str(resource)) for action, resource in grants(template, constants.HANDLER_CLOSE_STARTER)
    }
    close_queue, _ = only(
        {
            lid: q
            for lid, q in resources(template, "AWS::SQS::Queue").items()
            if "RedrivePolicy" in props(q) and constants.ID_CLOSE_QUEUE in lid
        }
    )
    business = {(a, r) for a, r in granted if not a.startswith("logs:")}
    starter_id, _ = function_by_handler(template, constants.HANDLER_CLOSE_STARTER)
    assert business == {
        ("dynamodb:Query", str(gsi1_arn(template))),
        ("dynamodb:GetItem", str(get_att(table_id(template)))),  # its close runs only: see below
        ("dynamodb:PutItem", str(get_att(table_id(template)))),
        ("sqs:SendMessage", str(get_att(close_queue))),
        ("sqs:SendMessage", str(get_att(failure_queue_of(template, constants.HANDLER_CLOSE_STARTER)))),
        ("lambda:InvokeFunction", str(get_att(starter_id))),  # itself, to continue a long run
    }


def test_the_starter_writes_only_close_run_items(template: dict[str, Any]) -> None:
    _, function = function_by_handler(template, constants.HANDLER_CLOSE_STARTER)
    on_table = [
        s
        for s in role_statements(template, role_of(function))
        if any(str(action).startswith("dynamodb:") for action in as_list(s["Action"]))
        and s["Resource"] == get_att(table_id(template))
    ]
    (statement,) = on_table
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{tablekeys.CLOSE_RUN_PK_PREFIX}*"]}
    }
    assert tablekeys.close_run_key("2026-10")[tablekeys.PK].startswith(tablekeys.CLOSE_RUN_PK_PREFIX)


def test_the_close_watchdog_only_reads(template: dict[str, Any]) -> None:
    granted = {
        (action, str(resource)) for action, resource in grants(template, constants.HANDLER_CLOSE_WATCHDOG)
    }
    business = {(a, r) for a, r in granted if not a.startswith("logs:")}
    assert business == {
        ("dynamodb:Query", str(gsi1_arn(template))),  # the customers
        ("dynamodb:BatchGetItem", str(get_att(table_id(template)))),  # their close records
        ("sqs:SendMessage", str(get_att(failure_queue_of(template, constants.HANDLER_CLOSE_WATCHDOG)))),
        # with a ledger (the app's stack has one): start the ledger reconciler, that function only
        (
            "lambda:InvokeFunction",
            str(get_att(function_by_handler(template, constants.HANDLER_LEDGER_RECONCILER)[0])),
        ),
    }
    assert not {a for a, _ in granted} & WRITE_ACTIONS


@pytest.mark.parametrize(
    "handler",
    [constants.HANDLER_CLOSE_STARTER, constants.HANDLER_DUNNING_SWEEPER, constants.HANDLER_CLOSE_WATCHDOG],
)
def test_a_scheduled_function_may_send_to_its_own_failure_queue_only(
    template: dict[str, Any], handler: str
) -> None:
    """Lambda delivers a failed asynchronous invocation with the function's own role, and checks the
    permission when the EventInvokeConfig is made: one explicit inline statement, for that queue only."""
    failure_queue = failure_queue_of(template, handler)
    sends = {str(r) for a, r in grants(template, handler) if a.startswith("sqs:") and failure_queue in str(r)}
    assert sends == {str(get_att(failure_queue))}
    assert {a for a, r in grants(template, handler) if failure_queue in str(r)} == {"sqs:SendMessage"}
    _, function = function_by_handler(template, handler)
    inline = props(template["Resources"][role_of(function)])["Policies"]
    assert any(
        s["Action"] == "sqs:SendMessage" and s["Resource"] == get_att(failure_queue)
        for policy in inline
        for s in policy["PolicyDocument"]["Statement"]
    )
    for other in resources(template, "AWS::Lambda::Function").values():
        if props(other)["Handler"] != handler:
            assert failure_queue not in str(role_statements(template, role_of(other)))


def test_the_usage_function_writes_only_customer_items_and_the_sample_backend_nothing(
    template: dict[str, Any],
) -> None:
    _, function = function_by_handler(template, constants.HANDLER_USAGE_API)
    statements = role_statements(template, role_of(function))
    writes = [s for s in statements if set(as_list(s["Action"])) & WRITE_ACTIONS]
    # PUT /usage/budget replaces the customer; PUT /usage/alerts and /usage/alerts/webhook set one attribute
    assert [s["Action"] for s in writes] == [["dynamodb:PutItem", "dynamodb:UpdateItem"]]
    assert writes[0]["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["CUSTOMER#*"]}}
    sample = {action for action, _ in grants(template, sample_api.SAMPLE_HANDLER)}
    assert not [action for action in sample if action.startswith("dynamodb:")]
    sample = {action for action, _ in grants(template, sample_api.SAMPLE_HANDLER)}
    assert not [action for action in sample if action.startswith("dynamodb:")]


@pytest.mark.parametrize("schedule_index", [0, 1, 2, 3])
def test_scheduler_roles_invoke_exactly_their_target(template: dict[str, Any], schedule_index: int) -> None:
    schedules = sorted(resources(template, "AWS::Scheduler::Schedule").items())
    assert len(schedules) == 4  # the close, its watchdog, the dunning sweep, the credit expiry sweep
    _, schedule = schedules[schedule_index]
    target = props(schedule)["Target"]
    role_id = target["RoleArn"]["Fn::GetAtt"][0]
    role = template["Resources"][role_id]
    trust = props(role)["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert trust[0]["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    granted = {(action, str(resource)) for action, resource in allowed(role_statements(template, role_id))}
    assert granted == {
        ("lambda:InvokeFunction", str(target["Arn"])),
        ("sqs:SendMessage", str(target["DeadLetterConfig"]["Arn"])),
    }
