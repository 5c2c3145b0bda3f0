"""The DynamoDB table: the billing record, so retained, protected, backed up, encrypted, and shaped like the
table the code (and its local/test schema) expects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.cfn import only, props, resources
from tollgate.dal import tablekeys
from tollgate.dal.schema import table_definition


@pytest.fixture(scope="module")
def table(template: dict[str, Any]) -> dict[str, Any]:
    _, resource = only(resources(template, "AWS::DynamoDB::Table"))
    return resource


def test_table_survives_stack_deletion_and_replacement(table: dict[str, Any]) -> None:
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    assert props(table)["DeletionProtectionEnabled"] is True


def test_point_in_time_recovery_is_on(table: dict[str, Any]) -> None:
    assert props(table)["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_encrypted_at_rest_with_kms(table: dict[str, Any]) -> None:
    sse = props(table)["SSESpecification"]
    assert sse["SSEEnabled"] is True
    # No key id: the AWS managed aws/dynamodb key, so the authorizer needs no kms:Decrypt on the hot path.
    assert "KMSMasterKeyId" not in sse


def test_ttl_on_expires_at(table: dict[str, Any]) -> None:
    assert props(table)["TimeToLiveSpecification"] == {
        "AttributeName": tablekeys.TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert tablekeys.TTL_ATTRIBUTE == "expires_at"


def test_on_demand_capacity(table: dict[str, Any]) -> None:
    assert props(table)["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in props(table)


def _sorted_definitions(definitions: list[dict[str, str]]) -> list[dict[str, str]]:
    return sorted(definitions, key=lambda d: d["AttributeName"])


def test_keys_and_gsi1_match_the_schema_the_code_uses(table: dict[str, Any]) -> None:
    """The deployed table and ``tollgate.dal.schema`` (moto tests, local mode) must be the same table."""
    expected = table_definition("ignored")
    deployed = props(table)
    assert deployed["KeySchema"] == expected["KeySchema"]
    assert _sorted_definitions(deployed["AttributeDefinitions"]) == _sorted_definitions(
        expected["AttributeDefinitions"]
    )
    assert deployed["GlobalSecondaryIndexes"] == expected["GlobalSecondaryIndexes"]
    assert deployed["BillingMode"] == expected["BillingMode"]


def test_gsi1_projects_every_attribute(table: dict[str, Any]) -> None:
    (index,) = props(table)["GlobalSecondaryIndexes"]
    assert index["IndexName"] == tablekeys.GSI1 == "gsi1"
    assert index["KeySchema"] == [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]
    assert index["Projection"] == {"ProjectionType": "ALL"}
