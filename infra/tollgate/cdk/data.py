"""``TollgateData``: the single DynamoDB table (keys, plans, customers, usage counters, closes, audit)."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from tollgate.cdk.constants import GSI1_NAME, GSI1_PK, GSI1_SK, ID_TABLE, TABLE_PK, TABLE_SK, TTL_ATTRIBUTE


def only_partitions(*prefixes: str) -> dict[str, dict[str, list[str]]]:
    """An IAM condition: the request touches only partitions whose key starts with one of ``prefixes``
    (``dynamodb:LeadingKeys``; a ``TransactWriteItems`` is authorized action by action, each on its own
    key)."""
    return {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{prefix}*" for prefix in prefixes]}}


class TollgateData(Construct):
    """The table. It holds the billing record, so it is retained, protected and continuously backed up.

    - ``pk``/``sk`` strings, on-demand capacity (the metering load follows the provider's traffic);
    - ``gsi1`` on ``gsi1pk``/``gsi1sk`` with every attribute projected (lists customers and keys);
    - TTL on ``expires_at`` (negative-cache entries, webhook idempotency records);
    - point-in-time recovery, deletion protection, ``RemovalPolicy.RETAIN``;
    - encrypted at rest with the AWS managed key (``aws/dynamodb``): no key policy for the hot path to need.
    """

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.table = dynamodb.Table(
            self,
            ID_TABLE,
            partition_key=dynamodb.Attribute(name=TABLE_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=TABLE_SK, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=cdk.RemovalPolicy.RETAIN,
            time_to_live_attribute=TTL_ATTRIBUTE,
            stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES,  # usage alerts (UsageAlerts)
        )
        self.table.add_global_secondary_index(
            index_name=GSI1_NAME,
            partition_key=dynamodb.Attribute(name=GSI1_PK, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=GSI1_SK, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )

    @property
    def table_arn(self) -> str:
        return self.table.table_arn

    @property
    def gsi1_arn(self) -> str:
        """The ARN of ``gsi1`` (a Query on the index is authorized against it, not the table)."""
        return f"{self.table.table_arn}/index/{GSI1_NAME}"
