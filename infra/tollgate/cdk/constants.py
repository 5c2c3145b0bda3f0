"""Names shared by the constructs, ``app.py`` and the tests: construct ids, output keys, env vars, handlers.

Standard library only. The table's key and index names come from ``functions/tollgate/tablekeys.py`` (the
module the Lambda code builds its keys from) so the table and the code cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from tollgate.dal import tablekeys as _tablekeys

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent.parent
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
UV_LOCK = PROJECT_ROOT / "uv.lock"

# --- the table (single-table design, see docs/data-model.md) ---------------------------------------------
TABLE_PK: str = _tablekeys.PK
TABLE_SK: str = _tablekeys.SK
GSI1_NAME: str = _tablekeys.GSI1
GSI1_PK: str = _tablekeys.GSI1_PK
GSI1_SK: str = _tablekeys.GSI1_SK
TTL_ATTRIBUTE: str = _tablekeys.TTL_ATTRIBUTE

# --- Lambda ------------------------------------------------------------------------------------------------
# The asset root is functions/; these excludes keep the local tooling out of the deployment package.
ASSET_EXCLUDES: tuple[str, ...] = ("**/__pycache__", "tollgate/cli/**", "tollgate/cdk/**")
# Distributions the Lambda python3.12 runtime already ships: never bundled (nor their own dependencies).
RUNTIME_PROVIDED_DISTRIBUTIONS: frozenset[str] = frozenset({"boto3", "botocore", "s3transfer"})
# Runtime dependencies of the project that only the local CLI uses (tollgate/cli is excluded from the asset).
CLI_ONLY_DISTRIBUTIONS: frozenset[str] = frozenset({"typer", "rich", "pyyaml"})
LAMBDA_PYTHON_VERSION = "3.12"
LAMBDA_PIP_PLATFORM = "manylinux2014_aarch64"

HANDLER_AUTHORIZER = "tollgate.metering.handler.handler"
HANDLER_CLOSE_STARTER = "tollgate.billing.close.starter.handler"
HANDLER_CLOSE_WORKER = "tollgate.billing.close.worker.handler"
HANDLER_WEBHOOK = "tollgate.billing.webhooks.handler.handler"
HANDLER_DUNNING_SWEEPER = "tollgate.billing.dunning.sweeper.handler"
HANDLER_USAGE_API = "tollgate.usage_api.handler.handler"
HANDLER_SAMPLE_API = "sample_api.handler.handler"

# --- environment variables read by the handlers ------------------------------------------------------------
ENV_TABLE_NAME = "TABLE_NAME"
ENV_KEY_CACHE_TTL_SECONDS = "KEY_CACHE_TTL_SECONDS"
ENV_NEGATIVE_CACHE_TTL_SECONDS = "NEGATIVE_CACHE_TTL_SECONDS"
ENV_FAIL_OPEN = "FAIL_OPEN"
ENV_CLOSE_QUEUE_URL = "CLOSE_QUEUE_URL"
ENV_STRIPE_API_KEY_SECRET_ARN = "STRIPE_API_KEY_SECRET_ARN"  # noqa: S105 - a name, not a secret
ENV_STRIPE_WEBHOOK_SECRET_ARN = "STRIPE_WEBHOOK_SECRET_ARN"  # noqa: S105 - a name, not a secret
ENV_DUNNING_GRACE_DAYS = "DUNNING_GRACE_DAYS"
ENV_POWERTOOLS_SERVICE_NAME = "POWERTOOLS_SERVICE_NAME"
ENV_POWERTOOLS_METRICS_NAMESPACE = "POWERTOOLS_METRICS_NAMESPACE"

AUTHORIZER_KEY_CACHE_TTL_SECONDS = 30
AUTHORIZER_NEGATIVE_CACHE_TTL_SECONDS = 5

# --- metrics ------------------------------------------------------------------------------------------------
METRICS_NAMESPACE = "Tollgate"
STRIPE_FAILURES_METRIC = "StripeFailures"
SERVICE_AUTHORIZER = "tollgate-authorizer"
SERVICE_PERIOD_CLOSE = "tollgate-period-close"
SERVICE_WEBHOOKS = "tollgate-webhooks"
SERVICE_USAGE_API = "tollgate-usage-api"
SERVICE_SAMPLE_API = "tollgate-sample-api"

# --- context (cdk.json / `cdk synth -c key=value`) ----------------------------------------------------------
CONTEXT_STACK_NAME = "stackName"
CONTEXT_CLOSE_GRACE_HOURS = "closeGraceHours"
CONTEXT_DUNNING_GRACE_DAYS = "dunningGraceDays"
CONTEXT_SAMPLE_API = "sampleApi"
DEFAULT_STACK_NAME = "Tollgate"
DEFAULT_CLOSE_GRACE_HOURS = 6  # late requests of the month just ended land before the close starts
DEFAULT_DUNNING_GRACE_DAYS = 7
DUNNING_SWEEP_HOUR_UTC = 3
SCHEDULE_TIMEZONE = "UTC"

# --- construct ids ------------------------------------------------------------------------------------------
ID_STACK = "Tollgate"
ID_DATA = "Data"
ID_TABLE = "Table"
ID_METERING = "Metering"
ID_AUTHORIZER_FUNCTION = "AuthorizerFunction"
ID_BILLING = "Billing"
ID_STRIPE_API_KEY_SECRET = "StripeApiKeySecret"  # noqa: S105 - a name, not a secret
ID_STRIPE_WEBHOOK_SECRET = "StripeWebhookSecret"  # noqa: S105 - a name, not a secret
ID_CLOSE_QUEUE = "CloseQueue"
ID_CLOSE_DLQ = "CloseDeadLetterQueue"
ID_SCHEDULE_DLQ = "ScheduleDeadLetterQueue"
ID_CLOSE_STARTER_FUNCTION = "CloseStarterFunction"
ID_CLOSE_WORKER_FUNCTION = "CloseWorkerFunction"
ID_CLOSE_SCHEDULE = "CloseSchedule"
ID_WEBHOOK_FUNCTION = "WebhookFunction"
ID_WEBHOOK_URL = "WebhookUrl"
ID_DUNNING_SWEEPER_FUNCTION = "DunningSweeperFunction"
ID_DUNNING_SCHEDULE = "DunningSchedule"
ID_MONITORING = "Monitoring"
ID_ALARM_TOPIC = "AlarmTopic"
ID_SAMPLE_API = "SampleApi"
ID_SAMPLE_REST_API = "RestApi"
ID_SAMPLE_FUNCTION = "SampleBackendFunction"
ID_USAGE_FUNCTION = "UsageFunction"
ID_METERED_API = "Metered"

# Alarm construct ids (also their logical-id prefixes) and what each watches.
ALARM_AUTHORIZER_ERRORS = "AuthorizerErrorsAlarm"
ALARM_AUTHORIZER_THROTTLES = "AuthorizerThrottlesAlarm"
ALARM_TABLE_THROTTLES = "TableThrottlesAlarm"
ALARM_CLOSE_DLQ_DEPTH = "CloseDeadLetterQueueAlarm"
ALARM_STRIPE_FAILURES = "StripeFailuresAlarm"
ALARM_SCHEDULE_DLQ_DEPTH = "ScheduleDeadLetterQueueAlarm"
ALARM_IDS: tuple[str, ...] = (
    ALARM_AUTHORIZER_ERRORS,
    ALARM_AUTHORIZER_THROTTLES,
    ALARM_TABLE_THROTTLES,
    ALARM_CLOSE_DLQ_DEPTH,
    ALARM_STRIPE_FAILURES,
    ALARM_SCHEDULE_DLQ_DEPTH,
)

# --- period close -------------------------------------------------------------------------------------------
CLOSE_WORKER_TIMEOUT_SECONDS = 60
CLOSE_WORKER_BATCH_SIZE = 10
CLOSE_WORKER_MAX_CONCURRENCY = 5  # bounds the Stripe request rate; the event source minimum is 2
CLOSE_QUEUE_MAX_RECEIVE_COUNT = 5
SCHEDULE_RETRY_ATTEMPTS = 10
SCHEDULE_MAX_EVENT_AGE_HOURS = 12

# --- sample API routes (credit costs live in the plan, not here) --------------------------------------------
SAMPLE_API_STAGE = "live"
ROUTE_SEARCH = ("GET", "/v1/search")
ROUTE_GENERATE = ("POST", "/v1/generate")
ROUTE_USAGE = ("GET", "/usage")

# --- stack outputs ------------------------------------------------------------------------------------------
OUTPUT_TABLE_NAME = "TableName"
OUTPUT_API_URL = "ApiUrl"
OUTPUT_STRIPE_API_KEY_SECRET_ARN = "StripeApiKeySecretArn"  # noqa: S105 - a name, not a secret
OUTPUT_STRIPE_WEBHOOK_SECRET_ARN = "StripeWebhookSecretArn"  # noqa: S105 - a name, not a secret
OUTPUT_WEBHOOK_URL = "WebhookUrl"
OUTPUT_ALARM_TOPIC_ARN = "AlarmTopicArn"
OUTPUT_CLOSE_QUEUE_URL = "CloseQueueUrl"
OUTPUT_AUTHORIZER_FUNCTION_ARN = "AuthorizerFunctionArn"
OUTPUT_CLOSE_STARTER_FUNCTION_NAME = "CloseStarterFunctionName"
