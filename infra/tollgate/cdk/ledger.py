"""``UsageLedger``: every request's access-log record, kept in S3 and queryable with Athena.

The ledger is API Gateway's own access logging, off the hot path (the authorizer still makes exactly one
DynamoDB request): a REST stage logs each request straight to an Amazon Data Firehose stream, whose name must
start with ``amazon-apigateway-`` for API Gateway to deliver to it. The record is
:data:`tollgate.domain.ledger.ACCESS_LOG_FORMAT`, one JSON object per request whose values are all strings.

- S3 (encrypted, public access blocked, TLS only, server access logs): ``ledger/period=YYYY-MM/day=YYYY-MM-
  DD/`` gzip JSON Lines; Firehose's failures under ``ledger-errors/``; Athena's results under
  ``athena-results/``. Ledger objects move to cheaper storage classes as they age (``transitions``).
- Firehose: dynamic partitioning by a JQ query over the record (``period``; when ``"-"``, the UTC month of
  ``requestTime``; ``day`` the UTC date of ``requestTime``), a newline after each record (API Gateway sends
  none), GZIP, buffered up to ``buffer_interval`` (default 300 s) or 64 MiB per partition.
- Glue: a database and a table over ``ledger/`` (OpenX JSON SerDe, every column a string as in the record)
  with partition projection on ``period`` and ``day``: no crawler, no ``MSCK REPAIR``.
- Athena: a workgroup whose configuration is enforced (results encrypted in the bucket's results prefix).
- S3 event notifications (:meth:`notify_deliveries`): a queue told of every object delivered under
  ``ledger/`` (the refunds of failed requests, ``tollgate.cdk.refunds``).

HTTP APIs can log only to CloudWatch Logs: :meth:`http_stream` makes a second stream (CloudWatch Logs
subscriptions arrive gzip-compressed in their own envelope, which a stream fed raw by a REST stage cannot
also take) that decompresses, extracts each message and writes into the same layout.
``MeteredApi(..., ledger=ledger)`` wires either kind of API.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import cast

import aws_cdk as cdk
from aws_cdk import aws_athena as athena
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from tollgate.cdk.nag import acknowledge
from tollgate.domain.ledger import RECORD_KEYS
from tollgate.ledger.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP

APIGATEWAY_STREAM_PREFIX = "amazon-apigateway-"  # API Gateway delivers access logs only to such streams
MAX_STREAM_NAME = 64
LEDGER_PREFIX = "ledger/"
ERROR_PREFIX = "ledger-errors/"
ATHENA_RESULTS_PREFIX = "athena-results/"
SERVER_ACCESS_LOG_PREFIX = "ledger-bucket/"
TABLE_NAME = "requests"
PARTITION_KEYS = ("period", "day")
# Dynamic partitioning needs a buffer of at least 64 MiB; the interval bounds how late a record lands.
BUFFER_SIZE_MIB = 64
DEFAULT_BUFFER_INTERVAL = cdk.Duration.seconds(300)
# How long Firehose retries a failed delivery of a partition to S3 before the records go under ERROR_PREFIX.
DELIVERY_RETRY_SECONDS = 300
DEFAULT_FIRST_PERIOD = "2025-01"
DEFAULT_ATHENA_RESULTS_EXPIRY = cdk.Duration.days(30)
# The partition keys, from the record itself: the authorizer's period, or (a refusal has none) the request
# time's UTC month; the request time's UTC date. jq 1.6 is what Firehose runs.
PARTITION_QUERY = (
    '{period: (if ((.period // "-") == "-") '
    'then (.requestTime | tonumber / 1000 | floor | strftime("%Y-%m")) else .period end), '
    'day: (.requestTime | tonumber / 1000 | floor | strftime("%Y-%m-%d"))}'
)
S3_PREFIX = LEDGER_PREFIX + "period=!{partitionKeyFromQuery:period}/day=!{partitionKeyFromQuery:day}/"
S3_ERROR_PREFIX = ERROR_PREFIX + "!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd}/"
# What the S3 destination needs (Firehose's documented set), on the ledger's own prefixes only.
FIREHOSE_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads")
FIREHOSE_OBJECT_ACTIONS = ("s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject")
# What a function asking the ledger through Athena needs (tollgate.ledger.athena; UsageLedger.grant_queries):
# run and read a query in the ledger's workgroup; read the Glue table it names; read the ledger's objects and
# write the query's results.
LEDGER_ATHENA_ACTIONS = (
    "athena:StartQueryExecution",
    "athena:GetQueryExecution",
    "athena:GetQueryResults",
    "athena:StopQueryExecution",
)
LEDGER_GLUE_ACTIONS = ("glue:GetDatabase", "glue:GetTable")
LEDGER_BUCKET_ACTIONS = ("s3:GetBucketLocation", "s3:ListBucket")
LEDGER_READ_ACTIONS = ("s3:GetObject",)
LEDGER_RESULTS_ACTIONS = ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload")
# S3 event notifications of delivered ledger objects (UsageLedger.notify_deliveries): every kind of creation
# (Firehose writes with PutObject, or a multipart upload for a large object).
OBJECT_CREATED_EVENT = "s3:ObjectCreated:*"
NOTIFY_ACTIONS = ("sqs:SendMessage",)
DEFAULT_TRANSITIONS = (
    # Athena reads both classes directly (not Glacier Flexible Retrieval or Deep Archive).
    s3.Transition(storage_class=s3.StorageClass.INFREQUENT_ACCESS, transition_after=cdk.Duration.days(30)),
    s3.Transition(
        storage_class=s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, transition_after=cdk.Duration.days(90)
    ),
)


class UsageLedger(Construct):
    """The per-request usage ledger: S3 bucket, Firehose stream(s), Glue table, Athena workgroup.

    :param transitions: storage classes ledger objects move to as they age (default: Standard-IA after 30
        days, Glacier Instant Retrieval after 90; both stay queryable). ``()`` keeps them in Standard.
    :param expire_after: delete ledger objects this long after delivery (default: never; the ledger backs
        bills that customers may dispute).
    :param buffer_interval: how long Firehose buffers a partition before writing it (60..900 s, default
        300): the delay before a record can be queried.
    :param first_period: the first ``YYYY-MM`` partition projection enumerates (queries without a period or
        day filter list every month from it).
    :param outputs: add ``LedgerBucketName``, ``LedgerDatabaseName``, ``LedgerTableName`` and
        ``LedgerWorkGroupName`` stack outputs (one ledger per stack then).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        transitions: Sequence[s3.Transition] = DEFAULT_TRANSITIONS,
        expire_after: cdk.Duration | None = None,
        buffer_interval: cdk.Duration = DEFAULT_BUFFER_INTERVAL,
        first_period: str = DEFAULT_FIRST_PERIOD,
        athena_results_expire_after: cdk.Duration = DEFAULT_ATHENA_RESULTS_EXPIRY,
        removal_policy: cdk.RemovalPolicy = cdk.RemovalPolicy.RETAIN,
        outputs: bool = True,
    ) -> None:
        super().__init__(scope, id)
        seconds = buffer_interval.to_seconds()
        if not 60 <= seconds <= 900:
            raise ValueError(f"buffer_interval must be 60..900 seconds (Firehose's bounds), got {seconds}")
        self.buffer_interval_seconds = int(seconds)
        self.streams: list[firehose.CfnDeliveryStream] = []  # every stream of the ledger, as it is made
        self._stream_observers: list[Callable[[firehose.CfnDeliveryStream], None]] = []
        stack = cdk.Stack.of(self)
        self.server_access_logs = s3.Bucket(
            self,
            "ServerAccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,  # no ACLs: a bucket policy grants
            lifecycle_rules=[s3.LifecycleRule(id="ExpireAccessLogs", expiration=cdk.Duration.days(365))],
            removal_policy=removal_policy,
        )
        acknowledge(
            self.server_access_logs,
            "AwsSolutions-S1",
            "This bucket is where the ledger bucket's server access logs go; logging it into itself would "
            "log every log delivery, and into another bucket would only move the same finding there.",
        )
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="LedgerStorageClasses",
                    prefix=LEDGER_PREFIX,
                    transitions=list(transitions) or None,
                    expiration=expire_after,
                ),
                s3.LifecycleRule(
                    id="ExpireAthenaResults",
                    prefix=ATHENA_RESULTS_PREFIX,
                    expiration=athena_results_expire_after,
                ),
                s3.LifecycleRule(id="ExpireErrors", prefix=ERROR_PREFIX, expiration=cdk.Duration.days(90)),
                s3.LifecycleRule(
                    id="AbortIncompleteUploads", abort_incomplete_multipart_upload_after=cdk.Duration.days(7)
                ),
            ],
            removal_policy=removal_policy,
        )
        # Server access logs through a bucket policy (S3's recommended way), not the log-delivery ACL.
        cast(
            s3.CfnBucket, self.bucket.node.default_child
        ).logging_configuration = s3.CfnBucket.LoggingConfigurationProperty(
            destination_bucket_name=self.server_access_logs.bucket_name,
            log_file_prefix=SERVER_ACCESS_LOG_PREFIX,
        )
        self.server_access_logs.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3ServerAccessLogsForTheLedger",
                principals=[iam.ServicePrincipal("logging.s3.amazonaws.com")],
                actions=["s3:PutObject"],
                resources=[self.server_access_logs.arn_for_objects(SERVER_ACCESS_LOG_PREFIX + "*")],
                conditions={
                    "ArnLike": {"aws:SourceArn": self.bucket.bucket_arn},
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        self.delivery_logs = logs.LogGroup(
            self,
            "DeliveryLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        self.stream_name = APIGATEWAY_STREAM_PREFIX + cdk.Names.unique_resource_name(
            self, max_length=MAX_STREAM_NAME - len(APIGATEWAY_STREAM_PREFIX), separator="-"
        )
        self.stream = self._delivery_stream("Stream", self.stream_name, cloudwatch_logs_source=False)
        self._http_stream: firehose.CfnDeliveryStream | None = None
        self._http_subscription_role: iam.Role | None = None
        self.delivery_queue: sqs.IQueue | None = None  # told of every ledger object (notify_deliveries)

        self.database_name = (
            "tollgate_ledger_" + cdk.Names.unique_id(self).lower()[-12:]
        )  # Glue names: lower case, digits, _
        self.database = glue.CfnDatabase(
            self,
            "Database",
            catalog_id=stack.account,
            database_input=glue.CfnDatabase.DatabaseInputProperty(
                name=self.database_name,
                description="Tollgate usage ledger: one API Gateway access-log record per request",
            ),
        )
        self.table_name = TABLE_NAME
        location = f"s3://{self.bucket.bucket_name}/{LEDGER_PREFIX}"
        self.table = glue.CfnTable(
            self,
            "Table",
            catalog_id=stack.account,
            database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=TABLE_NAME,
                description="One row per request (JSON Lines, gzip); deduplicate on requestid",
                table_type="EXTERNAL_TABLE",
                parameters=projection_parameters(location, first_period),
                partition_keys=[
                    glue.CfnTable.ColumnProperty(name=key, type="string") for key in PARTITION_KEYS
                ],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    location=location,
                    input_format="org.apache.hadoop.mapred.TextInputFormat",
                    output_format="org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat",
                    compressed=True,
                    serde_info=glue.CfnTable.SerdeInfoProperty(
                        serialization_library="org.openx.data.jsonserde.JsonSerDe",
                        parameters={"case.insensitive": "true"},
                    ),
                    columns=[ledger_column(key) for key in RECORD_KEYS if key not in PARTITION_KEYS],
                ),
            ),
        )
        self.table.node.add_dependency(self.database)
        self.work_group_name = cdk.Names.unique_resource_name(self, max_length=120, separator="-") + "-ledger"
        self.work_group = athena.CfnWorkGroup(
            self,
            "WorkGroup",
            name=self.work_group_name,
            description="Tollgate usage ledger queries (results encrypted, configuration enforced)",
            recursive_delete_option=True,
            work_group_configuration=athena.CfnWorkGroup.WorkGroupConfigurationProperty(
                enforce_work_group_configuration=True,
                publish_cloud_watch_metrics_enabled=True,
                result_configuration=athena.CfnWorkGroup.ResultConfigurationProperty(
                    output_location=f"s3://{self.bucket.bucket_name}/{ATHENA_RESULTS_PREFIX}",
                    encryption_configuration=athena.CfnWorkGroup.EncryptionConfigurationProperty(
                        encryption_option="SSE_S3"
                    ),
                ),
            ),
        )
        if outputs:
            for key, value, description in (
                ("LedgerBucketName", self.bucket.bucket_name, "The usage ledger's bucket (ledger/ prefix)"),
                ("LedgerDatabaseName", self.database_name, "Glue database of the usage ledger"),
                ("LedgerTableName", TABLE_NAME, "Glue table of the usage ledger (partitions projected)"),
                ("LedgerWorkGroupName", self.work_group_name, "Athena workgroup for ledger queries"),
            ):
                cdk.CfnOutput(self, key, value=value, description=description).override_logical_id(key)

    @property
    def stream_arn(self) -> str:
        return self.stream.attr_arn

    @property
    def delivery_limit_seconds(self) -> int:
        """The longest a record should wait in a stream: a partition is written after ``buffer_interval``, and
        a failed write is retried for ``DELIVERY_RETRY_SECONDS`` before the records go under the error prefix.
        """
        return self.buffer_interval_seconds + DELIVERY_RETRY_SECONDS

    def query_environment(self) -> dict[str, str]:
        """The environment a function finds the ledger by (``tollgate.ledger.settings``)."""
        return {
            LEDGER_WORKGROUP: self.work_group_name,
            LEDGER_DATABASE: self.database_name,
            LEDGER_TABLE: self.table_name,
        }

    def grant_queries(self, role: iam.IRole) -> None:
        """Let ``role`` ask the ledger through Athena, and nothing more: queries in the ledger's workgroup,
        the Glue database and table, ``ledger/*`` read and ``athena-results/*`` written in its bucket."""
        stack = cdk.Stack.of(self)
        bucket = self.bucket
        for statement in (
            iam.PolicyStatement(
                sid="QueryLedger",
                actions=list(LEDGER_ATHENA_ACTIONS),
                resources=[
                    stack.format_arn(
                        service="athena", resource="workgroup", resource_name=self.work_group_name
                    )
                ],
            ),
            iam.PolicyStatement(
                sid="ReadLedgerTable",
                actions=list(LEDGER_GLUE_ACTIONS),
                resources=[
                    stack.format_arn(service="glue", resource="catalog"),
                    stack.format_arn(service="glue", resource="database", resource_name=self.database_name),
                    stack.format_arn(
                        service="glue",
                        resource="table",
                        resource_name=f"{self.database_name}/{self.table_name}",
                    ),
                ],
            ),
            iam.PolicyStatement(
                sid="ListLedger", actions=list(LEDGER_BUCKET_ACTIONS), resources=[bucket.bucket_arn]
            ),
            iam.PolicyStatement(
                sid="ReadLedger",
                actions=list(LEDGER_READ_ACTIONS),
                resources=[bucket.arn_for_objects(LEDGER_PREFIX + "*")],
            ),
            iam.PolicyStatement(
                sid="LedgerQueryResults",
                actions=list(LEDGER_RESULTS_ACTIONS),
                resources=[bucket.arn_for_objects(ATHENA_RESULTS_PREFIX + "*")],
            ),
        ):
            role.add_to_principal_policy(statement)
        bucket_logical_id = stack.get_logical_id(cast(cdk.CfnElement, bucket.node.default_child))
        for prefix in (LEDGER_PREFIX, ATHENA_RESULTS_PREFIX):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{prefix}*]",
                "Firehose and Athena name each object themselves (partitions, times, query ids), so object "
                "ARNs can only be granted by prefix; the grant is limited to the ledger's own prefixes.",
            )

    def notify_deliveries(self, queue: sqs.IQueue) -> None:
        """Have S3 tell ``queue`` of every object created under ``ledger/`` (what Firehose delivers; never
        ``ledger-errors/`` nor ``athena-results/``), as S3 event notifications.

        The notification is the bucket's own ``NotificationConfiguration``, not CDK's
        ``add_event_notification``: that one is a custom resource with a Lambda function of its own that may
        ``s3:PutBucketNotification`` on every bucket. S3 checks that it may send to the queue when the
        configuration is set, so the bucket waits for the queue's policy; and since that policy is made
        before the bucket, it names the account (``aws:SourceAccount``), not the bucket's ARN (which would be
        a dependency cycle). A bucket holds one notification configuration: one queue per ledger.
        """
        if self.delivery_queue is not None:
            raise ValueError("the ledger already notifies a queue of its deliveries")
        stack = cdk.Stack.of(self)
        granted = queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="LedgerDeliveries",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=list(NOTIFY_ACTIONS),
                resources=[queue.queue_arn],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )
        if granted.policy_dependable is None:
            raise ValueError("the ledger's deliveries need a queue whose resource policy this app manages")
        bucket = cast(s3.CfnBucket, self.bucket.node.default_child)
        bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            queue_configurations=[
                s3.CfnBucket.QueueConfigurationProperty(
                    event=OBJECT_CREATED_EVENT,
                    queue=queue.queue_arn,
                    filter=s3.CfnBucket.NotificationFilterProperty(
                        s3_key=s3.CfnBucket.S3KeyFilterProperty(
                            rules=[s3.CfnBucket.FilterRuleProperty(name="prefix", value=LEDGER_PREFIX)]
                        )
                    ),
                )
            ]
        )
        bucket.node.add_dependency(granted.policy_dependable)
        self.delivery_queue = queue

    def on_stream(self, observer: Callable[[firehose.CfnDeliveryStream], None]) -> None:
        """Call ``observer`` with every stream of the ledger: those made already, and each one made later (the
        HTTP API stream is made when the first HTTP API subscribes). Monitoring alarms on each this way."""
        self._stream_observers.append(observer)
        for stream in self.streams:
            observer(stream)

    @property
    def http_stream(self) -> firehose.CfnDeliveryStream:
        """The stream for HTTP APIs' access logs through CloudWatch Logs, made on first use."""
        if self._http_stream is None:
            name = "tollgate-ledger-http-" + cdk.Names.unique_resource_name(
                self, max_length=MAX_STREAM_NAME - len("tollgate-ledger-http-"), separator="-"
            )
            self._http_stream = self._delivery_stream("HttpStream", name, cloudwatch_logs_source=True)
        return self._http_stream

    def subscribe(self, log_group: logs.ILogGroup, id: str) -> logs.CfnSubscriptionFilter:
        """Send every line of ``log_group`` (an HTTP API's access logs) into the ledger."""
        stream = self.http_stream
        if self._http_subscription_role is None:
            stack = cdk.Stack.of(self)
            self._http_subscription_role = iam.Role(
                self,
                "SubscriptionRole",
                description="CloudWatch Logs puts HTTP API access logs into the ledger's stream (Tollgate)",
                assumed_by=iam.ServicePrincipal(
                    "logs.amazonaws.com",
                    conditions={
                        "StringLike": {
                            "aws:SourceArn": f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:*"
                        }
                    },
                ),
                inline_policies={
                    "Deliver": iam.PolicyDocument(
                        statements=[
                            iam.PolicyStatement(
                                sid="PutIntoLedgerStream",
                                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                                resources=[stream.attr_arn],
                            )
                        ]
                    )
                },
            )
        subscription = logs.CfnSubscriptionFilter(
            self,
            id,
            log_group_name=log_group.log_group_name,
            destination_arn=stream.attr_arn,
            filter_pattern="",  # every line
            role_arn=self._http_subscription_role.role_arn,
        )
        subscription.node.add_dependency(self._http_subscription_role)
        return subscription

    def _delivery_stream(
        self, id: str, name: str, *, cloudwatch_logs_source: bool
    ) -> firehose.CfnDeliveryStream:
        stack = cdk.Stack.of(self)
        log_stream = logs.LogStream(
            self,
            id + "DeliveryLogStream",
            log_group=self.delivery_logs,
            log_stream_name=f"{name}-S3Delivery",
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        log_stream_arn = (
            f"arn:{stack.partition}:logs:{stack.region}:{stack.account}:log-group:"
            f"{self.delivery_logs.log_group_name}:log-stream:{log_stream.log_stream_name}"
        )
        role = iam.Role(
            self,
            id + "Role",
            description="Firehose writes the usage ledger into its bucket (Tollgate)",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com", conditions={"StringEquals": {"aws:SourceAccount": stack.account}}
            ),
            inline_policies={
                "Deliver": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="LedgerBucket",
                            actions=list(FIREHOSE_BUCKET_ACTIONS),
                            resources=[self.bucket.bucket_arn],
                        ),
                        iam.PolicyStatement(
                            sid="LedgerObjects",
                            actions=list(FIREHOSE_OBJECT_ACTIONS),
                            resources=[
                                self.bucket.arn_for_objects(LEDGER_PREFIX + "*"),
                                self.bucket.arn_for_objects(ERROR_PREFIX + "*"),
                            ],
                        ),
                        iam.PolicyStatement(
                            sid="DeliveryErrorLogs", actions=["logs:PutLogEvents"], resources=[log_stream_arn]
                        ),
                    ]
                )
            },
        )
        bucket_logical_id = stack.get_logical_id(self.bucket.node.default_child)  # type: ignore[arg-type]
        for prefix in (LEDGER_PREFIX, ERROR_PREFIX):
            acknowledge(
                role,
                f"AwsSolutions-IAM5[Resource::<{bucket_logical_id}.Arn>/{prefix}*]",
                "Firehose names each object itself (partition, time and a random suffix), so object ARNs "
                "can only be granted by prefix; the grant is limited to the ledger's own prefix.",
            )
        processors = []
        if cloudwatch_logs_source:
            processors += [
                _processor("Decompression", CompressionFormat="GZIP"),
                _processor("CloudWatchLogProcessing", DataMessageExtraction="true"),
            ]
        processors += [
            _processor(
                "MetadataExtraction", MetadataExtractionQuery=PARTITION_QUERY, JsonParsingEngine="JQ-1.6"
            ),
            _processor("AppendDelimiterToRecord", Delimiter="\\n"),
        ]
        stream = firehose.CfnDeliveryStream(
            self,
            id,
            delivery_stream_name=name,
            delivery_stream_type="DirectPut",
            delivery_stream_encryption_configuration_input=(
                firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                    key_type="AWS_OWNED_CMK"
                )
            ),
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=self.bucket.bucket_arn,
                role_arn=role.role_arn,
                prefix=S3_PREFIX,
                error_output_prefix=S3_ERROR_PREFIX,
                compression_format="GZIP",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=self.buffer_interval_seconds, size_in_m_bs=BUFFER_SIZE_MIB
                ),
                dynamic_partitioning_configuration=firehose.CfnDeliveryStream.DynamicPartitioningConfigurationProperty(
                    enabled=True,
                    retry_options=firehose.CfnDeliveryStream.RetryOptionsProperty(
                        duration_in_seconds=DELIVERY_RETRY_SECONDS
                    ),
                ),
                processing_configuration=firehose.CfnDeliveryStream.ProcessingConfigurationProperty(
                    enabled=True, processors=processors
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=self.delivery_logs.log_group_name,
                    log_stream_name=log_stream.log_stream_name,
                ),
            ),
        )
        stream.node.add_dependency(role)
        self.streams.append(stream)
        for observer in self._stream_observers:
            observer(stream)
        return stream


def _processor(kind: str, **parameters: str) -> firehose.CfnDeliveryStream.ProcessorProperty:
    return firehose.CfnDeliveryStream.ProcessorProperty(
        type=kind,
        parameters=[
            firehose.CfnDeliveryStream.ProcessorParameterProperty(parameter_name=name, parameter_value=value)
            for name, value in parameters.items()
        ],
    )


def ledger_column(key: str) -> glue.CfnTable.ColumnProperty:
    """A record key as a Glue column: lower case (Glue's), string (as API Gateway writes every value)."""
    return glue.CfnTable.ColumnProperty(name=key.lower(), type="string")


def projection_parameters(location: str, first_period: str) -> dict[str, str]:
    """Partition projection on ``period`` (months) and ``day`` (dates): Athena computes the partitions."""
    year, month = (int(part) for part in first_period.split("-"))
    if not 1 <= month <= 12 or year < 2000:
        raise ValueError(f"first_period is YYYY-MM, got {first_period!r}")
    return {
        "classification": "json",
        "compressionType": "gzip",
        "projection.enabled": "true",
        "projection.period.type": "date",
        "projection.period.format": "yyyy-MM",
        "projection.period.range": f"{first_period},NOW+1MONTHS",
        "projection.period.interval": "1",
        "projection.period.interval.unit": "MONTHS",
        "projection.day.type": "date",
        "projection.day.format": "yyyy-MM-dd",
        "projection.day.range": f"{first_period}-01,NOW+1DAYS",
        "projection.day.interval": "1",
        "projection.day.interval.unit": "DAYS",
        "storage.location.template": location + "period=${period}/day=${day}/",
    }


def ledger_access_log_format(http: bool = False) -> str:
    """The stage's access-log format string (JSON of :data:`ACCESS_LOG_FORMAT` or the HTTP API one)."""
    from tollgate.domain.ledger import ACCESS_LOG_FORMAT, HTTP_ACCESS_LOG_FORMAT

    return json.dumps(HTTP_ACCESS_LOG_FORMAT if http else ACCESS_LOG_FORMAT)
