"""The table's shape for boto3 ``create_table``: used by tests and local mode. The deployed table is the CDK
one in ``infra/``; tests check the two agree."""

from __future__ import annotations

from typing import Any

from tollgate.dal import tablekeys as tk


def table_definition(name: str) -> dict[str, Any]:
    string_keys = (tk.PK, tk.SK, tk.GSI1_PK, tk.GSI1_SK)
    return {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        # usage alerts read every counter's change (tollgate.alerts); local mode reads it from DynamoDB Local
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
        "AttributeDefinitions": [{"AttributeName": key, "AttributeType": "S"} for key in string_keys],
        "KeySchema": [
            {"AttributeName": tk.PK, "KeyType": "HASH"},
            {"AttributeName": tk.SK, "KeyType": "RANGE"},
        ],
        "GlobalSecondaryIndexes": [
            {
                "IndexName": tk.GSI1,
                "KeySchema": [
                    {"AttributeName": tk.GSI1_PK, "KeyType": "HASH"},
                    {"AttributeName": tk.GSI1_SK, "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    }


def create_table(client: Any, name: str) -> None:
    """Create the table if it does not exist yet (safe to call twice)."""
    try:
        client.create_table(**table_definition(name))
    except client.exceptions.ResourceInUseException:
        return
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 50})
