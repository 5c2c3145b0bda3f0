"""GET /usage/export in the synthesized app (Tollgate(ledger=True)): the usage function knows the ledger's
Athena names and may ask it, and nothing more; without a ledger it is given neither."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest

from tests.infra.cfn import allowed, function_by_handler, props, resources, role_of, role_statements
from tests.infra.conftest import SKIP_BUNDLING
from tollgate.cdk import Tollgate, constants
from tollgate.usage_api.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP


def usage_grants(template: dict[str, Any]) -> list[tuple[str, str]]:
    _, function = function_by_handler(template, constants.HANDLER_USAGE_API)
    return [
        (action, str(resource)) for action, resource in allowed(role_statements(template, role_of(function)))
    ]


def ledger_ids(template: dict[str, Any]) -> tuple[str, str, str]:
    """The logical ids of the ledger's bucket, Glue database and Athena workgroup."""
    (bucket,) = [
        lid
        for lid, r in resources(template, "AWS::S3::Bucket").items()
        if "LedgerStorageClasses" in str(props(r).get("LifecycleConfiguration"))
    ]
    (database,) = resources(template, "AWS::Glue::Database")
    (work_group,) = resources(template, "AWS::Athena::WorkGroup")
    return bucket, database, work_group


def test_the_usage_function_is_told_where_the_ledger_is(template: dict[str, Any]) -> None:
    _, function = function_by_handler(template, constants.HANDLER_USAGE_API)
    env = props(function)["Environment"]["Variables"]
    (work_group,) = resources(template, "AWS::Athena::WorkGroup").values()
    (database,) = resources(template, "AWS::Glue::Database").values()
    (table,) = resources(template, "AWS::Glue::Table").values()

    assert env[LEDGER_WORKGROUP] == props(work_group)["Name"]
    assert env[LEDGER_DATABASE] == props(database)["DatabaseInput"]["Name"]
    assert env[LEDGER_TABLE] == props(table)["TableInput"]["Name"]
    assert props(function)["Timeout"] == 28  # an Athena query answers within API Gateway's 29 s


def test_the_usage_function_may_query_the_ledger_and_nothing_else_of_it(template: dict[str, Any]) -> None:
    bucket, _, _ = ledger_ids(template)
    grants = usage_grants(template)
    athena = {(a, r) for a, r in grants if a.startswith("athena:")}
    s3 = {(a, r) for a, r in grants if a.startswith("s3:")}
    glue = {a for a, _ in grants if a.startswith("glue:")}

    assert {a for a, _ in athena} == {
        "athena:StartQueryExecution",
        "athena:GetQueryExecution",
        "athena:GetQueryResults",
        "athena:StopQueryExecution",
    }
    assert all("workgroup/" in r and "-ledger" in r for _, r in athena)  # its own workgroup only
    assert glue == {"glue:GetDatabase", "glue:GetTable"}
    objects = {(a, r) for a, r in s3 if "/" in r}
    assert {a for a, r in objects if "/ledger/*" in r} == {"s3:GetObject"}  # reads the records, never writes
    assert {a for a, r in objects if "/athena-results/*" in r} == {
        "s3:GetObject",
        "s3:PutObject",
        "s3:AbortMultipartUpload",
    }
    assert {r for _, r in objects} <= {r for _, r in objects if "/ledger/*" in r or "/athena-results/*" in r}
    assert all(bucket in r for _, r in s3)  # the ledger's bucket, no other
    assert not [
        a for a, _ in grants if a in {"s3:DeleteObject", "glue:UpdateTable", "athena:DeleteWorkGroup"}
    ]


@pytest.fixture(scope="module")
def without_ledger() -> dict[str, Any]:
    app = cdk.App(context=SKIP_BUNDLING)
    stack = cdk.Stack(app, "NoLedger")
    Tollgate(stack, "Tollgate", outputs=False)
    return app.synth().get_stack_by_name("NoLedger").template  # type: ignore[no-any-return]


def test_without_a_ledger_the_usage_function_gets_no_ledger_names_nor_grants(
    without_ledger: dict[str, Any],
) -> None:
    _, function = function_by_handler(without_ledger, constants.HANDLER_USAGE_API)

    assert not set(props(function)["Environment"]["Variables"]) & {
        LEDGER_WORKGROUP,
        LEDGER_DATABASE,
        LEDGER_TABLE,
    }
    assert not [a for a, _ in usage_grants(without_ledger) if a.split(":")[0] in {"athena", "glue", "s3"}]
