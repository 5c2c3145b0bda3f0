"""Names shared by the constructs, ``app.py`` and the tests: construct ids, output keys, env vars, handlers.

Standard library only. The table's key and index names come from ``tollgate.dal.tablekeys`` (the
module the Lambda code builds its keys from) so the table and the code cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

from tollgate import observability as _observability
from tollgate import outputs as _outputs
from tollgate import settings as _settings
from tollgate.alerts import observability as _alerts_observability
from tollgate.billing import settings as _billing_settings
from tollgate.billing import stripe_client as _stripe_client
from tollgate.billing.close import observability as _close_observability
from tollgate.billing.close import pacing as _pacing
from tollgate.billing.close import settings as _close_settings
from tollgate.billing.webhooks import observability as _webhook_observability
from tollgate.billing.webhooks import settings as _webhook_settings
from tollgate.dal import tablekeys as _tablekeys
from tollgate.expiry import observability as _expiry_observability
from tollgate.metering import decisions as _metering_decisions
from tollgate.metering import observability as _metering_observability
from tollgate.metering import settings as _metering_settings
from tollgate.refunds import observability as _refunds_observability
from tollgate.usage_api import observability as _usage_observability
from tollgate.usage_api import settings as _usage_settings

# A checkout's root. Only dev-time tooling uses it (generating lambda_lock.json from uv.lock, the tests):
# synth finds everything it needs inside the installed package.
PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent.parent
UV_LOCK = PROJECT_ROOT / "uv.lock"

# --- the table (single-table design, see docs/data-model.md) ---------------------------------------------
TABLE_PK: str = _tablekeys.PK
TABLE_SK: str = _tablekeys.SK
GSI1_NAME: str = _tablekeys.GSI1
GSI1_PK: str = _tablekeys.GSI1_PK
GSI1_SK: str = _tablekeys.GSI1_SK
TTL_ATTRIBUTE: str = _tablekeys.TTL_ATTRIBUTE

# --- Lambda ------------------------------------------------------------------------------------------------
# Each function's asset holds the modules its handler imports (tollgate.cdk.imports) and the locked
# distributions those need (tollgate/cdk/lambda_lock.json, generated from uv.lock: `make lambda-lock`).
LAMBDA_LOCK_RESOURCE = "lambda_lock.json"
# Packages of this project that never go into a Lambda asset: importing one from Lambda code fails synth.
ASSET_EXCLUDES: tuple[str, ...] = ("tollgate.cli", "tollgate.cdk")
# Distributions the Lambda python3.12 runtime already ships: never bundled (nor their own dependencies).
RUNTIME_PROVIDED_DISTRIBUTIONS: frozenset[str] = frozenset({"boto3", "botocore", "s3transfer"})
# Distributions only the local CLI may use: a Lambda function whose imports need one fails synth.
CLI_ONLY_DISTRIBUTIONS: frozenset[str] = frozenset({"typer", "rich", "click"})
LAMBDA_PYTHON_VERSION = "3.12"
LAMBDA_PIP_PLATFORM = "manylinux2014_aarch64"
LAMBDA_TASK_ROOT = "/var/task"  # where Lambda unpacks the asset (the file names compiled into the bytecode)
# A python3.12 interpreter to compile the assets' bytecode with; "none" builds without bytecode.
LAMBDA_PYTHON_ENV_VAR = "TOLLGATE_LAMBDA_PYTHON"
# Where installed and compiled distributions are kept between builds (default ~/.cache/tollgate/lambda).
LAMBDA_CACHE_ENV_VAR = "TOLLGATE_LAMBDA_CACHE"

HANDLER_AUTHORIZER = "tollgate.metering.handler.handler"
HANDLER_CLOSE_STARTER = "tollgate.billing.close.starter.handler"
HANDLER_CLOSE_WORKER = "tollgate.billing.close.worker.handler"
HANDLER_WEBHOOK = "tollgate.billing.webhooks.handler.handler"
HANDLER_DUNNING_SWEEPER = "tollgate.billing.dunning.sweeper.handler"
HANDLER_USAGE_API = "tollgate.usage_api.handler.handler"
HANDLER_ALERTS = "tollgate.alerts.handler.handler"
HANDLER_ALERT_WEBHOOKS = "tollgate.alerts.webhooks.handler"
HANDLER_CLOSE_WATCHDOG = "tollgate.billing.close.watchdog.handler"
HANDLER_CREDIT_EXPIRY = "tollgate.expiry.handler.handler"
HANDLER_LEDGER_RECONCILER = "tollgate.billing.close.reconciler.handler"
HANDLER_REFUNDS = "tollgate.refunds.handler.handler"

# --- environment variables read by the handlers (names and defaults: each function's settings module) ----
ENV_TABLE_NAME = _settings.TABLE_NAME
ENV_KEY_CACHE_TTL_SECONDS = _metering_settings.KEY_CACHE_TTL_SECONDS
ENV_NEGATIVE_CACHE_TTL_SECONDS = _metering_settings.NEGATIVE_CACHE_TTL_SECONDS
ENV_FAIL_OPEN = _metering_settings.FAIL_OPEN
ENV_CLOSE_QUEUE_URL = _close_settings.CLOSE_QUEUE_URL
ENV_STRIPE_ENDPOINT_RATE = _close_settings.STRIPE_ENDPOINT_RATE
ENV_STRIPE_ACCOUNT_RATE = _close_settings.STRIPE_ACCOUNT_RATE
ENV_CLOSE_WORKER_FLEET_SIZE = _close_settings.CLOSE_WORKER_FLEET_SIZE
ENV_STRIPE_API_KEY_SECRET_ARN = _billing_settings.STRIPE_API_KEY_SECRET_ARN
ENV_STRIPE_WEBHOOK_SECRET_ARN = _webhook_settings.STRIPE_WEBHOOK_SECRET_ARN
ENV_DUNNING_GRACE_DAYS = _webhook_settings.DUNNING_GRACE_DAYS
ENV_PORTAL_LINK_SECRET_ARN = _usage_settings.PORTAL_LINK_SECRET_ARN
ENV_POWERTOOLS_SERVICE_NAME = _observability.POWERTOOLS_SERVICE_NAME
ENV_POWERTOOLS_METRICS_NAMESPACE = _observability.POWERTOOLS_METRICS_NAMESPACE

AUTHORIZER_KEY_CACHE_TTL_SECONDS = _metering_settings.DEFAULT_KEY_CACHE_TTL_SECONDS
AUTHORIZER_NEGATIVE_CACHE_TTL_SECONDS = _metering_settings.DEFAULT_NEGATIVE_CACHE_TTL_SECONDS

# --- metrics (names live in each function's observability module) ------------------------------------------
METRICS_NAMESPACE = _observability.METRICS_NAMESPACE
STRIPE_FAILURES_METRIC = _close_observability.STRIPE_FAILURES
STRIPE_RATE_LIMITED_METRIC = _close_observability.STRIPE_RATE_LIMITED
TOTAL_MISMATCH_METRIC = _close_observability.TOTAL_MISMATCH
INVOICES_FINALIZED_METRIC = _close_observability.INVOICES_FINALIZED
CLOSES_NO_CHARGE_METRIC = _close_observability.CLOSES_NO_CHARGE
CLOSE_FAILURES_METRIC = _close_observability.CLOSE_FAILURES
CLOSES_CHECKED_METRIC = _close_observability.CLOSES_CHECKED
CLOSES_UNFINISHED_METRIC = _close_observability.CLOSES_UNFINISHED
CLOSES_MISMATCHED_METRIC = _close_observability.CLOSES_MISMATCHED
CLOSE_PROBLEMS_METRIC = _close_observability.CLOSE_PROBLEMS
CUSTOMERS_RECONCILED_METRIC = _close_observability.CUSTOMERS_RECONCILED
UNEXPLAINED_CREDITS_METRIC = _close_observability.UNEXPLAINED_CREDITS
FLAGGED_CUSTOMERS_METRIC = _close_observability.FLAGGED_CUSTOMERS
RECONCILIATION_FAILURES_METRIC = _close_observability.RECONCILIATION_FAILURES
# One per line Firehose writes to the ledger's delivery error log (a metric filter, tollgate.cdk.monitoring).
LEDGER_DELIVERY_ERRORS_METRIC = "LedgerDeliveryErrors"
# The refund function's, once per ledger object (tollgate.refunds.observability).
REFUNDED_REQUESTS_METRIC = _refunds_observability.REFUNDED_REQUESTS
REFUNDED_CREDITS_METRIC = _refunds_observability.REFUNDED_CREDITS
DUPLICATE_REFUNDS_METRIC = _refunds_observability.DUPLICATE_REFUNDS
REFUNDS_SKIPPED_METRIC = _refunds_observability.REFUNDS_SKIPPED
MALFORMED_LEDGER_RECORDS_METRIC = _refunds_observability.MALFORMED_RECORDS
METERING_FAILURES_METRIC = _metering_observability.METERING_FAILURES
UNMETERED_REQUESTS_METRIC = _metering_observability.UNMETERED_REQUESTS
# One metric per refusal reason: Denied_missing_api_key, Denied_credit_limit_reached, ...
DENIED_METRIC_PREFIX = _metering_observability.DENIED_PREFIX
DENIED_METRICS: tuple[str, ...] = tuple(
    f"{DENIED_METRIC_PREFIX}{reason.value}" for reason in _metering_decisions.Reason
)
SERVICE_AUTHORIZER = _metering_observability.SERVICE
SERVICE_PERIOD_CLOSE = _close_observability.SERVICE
SERVICE_WEBHOOKS = _webhook_observability.SERVICE
SERVICE_USAGE_API = _usage_observability.SERVICE
SERVICE_ALERTS = _alerts_observability.SERVICE
SERVICE_CREDIT_EXPIRY = _expiry_observability.SERVICE
SERVICE_REFUNDS = _refunds_observability.SERVICE

# --- deploy-time defaults (Tollgate(...) keyword arguments) ------------------------------------------------
DEFAULT_CLOSE_GRACE_HOURS = 6  # late requests of the month just ended land before the close starts
DEFAULT_DUNNING_GRACE_DAYS = _webhook_settings.DEFAULT_DUNNING_GRACE_DAYS
DUNNING_SWEEP_HOUR_UTC = 3
SCHEDULE_TIMEZONE = "UTC"

# --- construct ids ------------------------------------------------------------------------------------------
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
ID_USAGE_FUNCTION = "UsageFunction"
ID_USAGE_API = "UsageApi"
ID_PORTAL_LINK_SECRET = "PortalLinkSecret"  # noqa: S105 - a name, not a secret
ID_PORTAL_ROUTE = "Portal"
ID_CLOSE_WATCHDOG_FUNCTION = "CloseWatchdogFunction"
ID_CLOSE_WATCHDOG_SCHEDULE = "CloseWatchdogSchedule"
# Each asynchronously invoked function's on-failure destination (Lambda's EventInvokeConfig) and its config.
ID_CLOSE_STARTER_FAILURES = "CloseStarterFailureQueue"
ID_DUNNING_SWEEPER_FAILURES = "DunningSweeperFailureQueue"
ID_CLOSE_WATCHDOG_FAILURES = "CloseWatchdogFailureQueue"
ID_ASYNC_INVOKE_CONFIG = "AsyncInvokeConfig"
ID_DASHBOARD = "Dashboard"
ID_ALERTS = "Alerts"
ID_CREDIT_EXPIRY = "CreditExpiry"
ID_CREDIT_EXPIRY_FUNCTION = "CreditExpiryFunction"
ID_CREDIT_EXPIRY_SCHEDULE = "CreditExpirySchedule"
ID_LEDGER_RECONCILER = "LedgerReconciler"
ID_LEDGER_RECONCILER_FUNCTION = "Function"
ID_LEDGER_RECONCILER_FAILURES = "LedgerReconcilerFailureQueue"
ID_LEDGER_DELIVERY_ERRORS_FILTER = "LedgerDeliveryErrorsFilter"
ID_LEDGER_REFUNDS = "LedgerRefunds"
ID_REFUND_FUNCTION = "RefundFunction"
ID_REFUND_QUEUE = "RefundQueue"
ID_REFUND_DLQ = "RefundDeadLetterQueue"

# Alarm construct ids (also their logical-id prefixes) and what each watches.
ALARM_AUTHORIZER_ERRORS = "AuthorizerErrorsAlarm"
ALARM_AUTHORIZER_THROTTLES = "AuthorizerThrottlesAlarm"
ALARM_TABLE_THROTTLES = "TableThrottlesAlarm"
ALARM_CLOSE_DLQ_DEPTH = "CloseDeadLetterQueueAlarm"
ALARM_STRIPE_FAILURES = "StripeFailuresAlarm"
ALARM_SCHEDULE_DLQ_DEPTH = "ScheduleDeadLetterQueueAlarm"
# function errors (the authorizer's above)
ALARM_CLOSE_STARTER_ERRORS = "CloseStarterErrorsAlarm"
ALARM_CLOSE_WORKER_ERRORS = "CloseWorkerErrorsAlarm"
ALARM_WEBHOOK_ERRORS = "WebhookErrorsAlarm"
ALARM_DUNNING_SWEEPER_ERRORS = "DunningSweeperErrorsAlarm"
ALARM_USAGE_ERRORS = "UsageFunctionErrorsAlarm"
ALARM_CLOSE_WATCHDOG_ERRORS = "CloseWatchdogErrorsAlarm"
# asynchronous invocations that failed every retry (the on-failure queues' depth)
ALARM_CLOSE_STARTER_FAILURES = "CloseStarterFailureQueueAlarm"
ALARM_DUNNING_SWEEPER_FAILURES = "DunningSweeperFailureQueueAlarm"
ALARM_CLOSE_WATCHDOG_FAILURES = "CloseWatchdogFailureQueueAlarm"
# custom metrics (Metrics Insights: summed over every dimension)
ALARM_METERING_FAILURES = "MeteringFailuresAlarm"
ALARM_UNMETERED_REQUESTS = "UnmeteredRequestsAlarm"
ALARM_TOTAL_MISMATCH = "TotalMismatchAlarm"
ALARM_CLOSE_PROBLEMS = "CloseProblemsAlarm"
ALARM_ALERT_ERRORS = "AlertFunctionErrorsAlarm"
ALARM_ALERT_WEBHOOK_ERRORS = "AlertWebhookErrorsAlarm"
ALARM_ALERT_STREAM_FAILURES = "AlertStreamFailureQueueAlarm"
ALARM_ALERT_WEBHOOK_DLQ_DEPTH = "AlertWebhookDeadLetterQueueAlarm"
ALARM_CREDIT_EXPIRY_ERRORS = "CreditExpiryErrorsAlarm"
ALARM_IDS: tuple[str, ...] = (
    ALARM_AUTHORIZER_ERRORS,
    ALARM_AUTHORIZER_THROTTLES,
    ALARM_TABLE_THROTTLES,
    ALARM_CLOSE_DLQ_DEPTH,
    ALARM_STRIPE_FAILURES,
    ALARM_SCHEDULE_DLQ_DEPTH,
    ALARM_CLOSE_STARTER_ERRORS,
    ALARM_CLOSE_WORKER_ERRORS,
    ALARM_WEBHOOK_ERRORS,
    ALARM_DUNNING_SWEEPER_ERRORS,
    ALARM_USAGE_ERRORS,
    ALARM_CLOSE_WATCHDOG_ERRORS,
    ALARM_CLOSE_STARTER_FAILURES,
    ALARM_DUNNING_SWEEPER_FAILURES,
    ALARM_CLOSE_WATCHDOG_FAILURES,
    ALARM_METERING_FAILURES,
    ALARM_UNMETERED_REQUESTS,
    ALARM_TOTAL_MISMATCH,
    ALARM_CLOSE_PROBLEMS,
    ALARM_ALERT_ERRORS,
    ALARM_ALERT_WEBHOOK_ERRORS,
    ALARM_ALERT_STREAM_FAILURES,
    ALARM_ALERT_WEBHOOK_DLQ_DEPTH,
    ALARM_CREDIT_EXPIRY_ERRORS,
)

# Alarms made only with a ledger (Tollgate(ledger=True)): its delivery, the reconciliation of each close, and
# the refunds of failed requests.
ALARM_LEDGER_DELIVERY_ERRORS = "LedgerDeliveryErrorsAlarm"
ALARM_LEDGER_DELIVERY_PREFIX = "LedgerDelivery"  # + the stream's construct id + "Alarm": one per stream
ALARM_UNEXPLAINED_CREDITS = "UnexplainedCreditsAlarm"
ALARM_RECONCILIATION_FAILURES = "ReconciliationFailuresAlarm"
ALARM_LEDGER_RECONCILER_ERRORS = "LedgerReconcilerErrorsAlarm"
ALARM_LEDGER_RECONCILER_FAILURES = "LedgerReconcilerFailureQueueAlarm"
# the refunds of failed requests (LedgerRefunds): its function, its dead-letter queue, what it could not do
ALARM_REFUND_ERRORS = "RefundErrorsAlarm"
ALARM_REFUND_DLQ_DEPTH = "RefundDeadLetterQueueAlarm"
ALARM_REFUNDS_SKIPPED = "RefundsSkippedAlarm"
LEDGER_ALARM_IDS: tuple[str, ...] = (
    ALARM_LEDGER_DELIVERY_ERRORS,
    ALARM_UNEXPLAINED_CREDITS,
    ALARM_RECONCILIATION_FAILURES,
    ALARM_LEDGER_RECONCILER_ERRORS,
    ALARM_LEDGER_RECONCILER_FAILURES,
    ALARM_REFUND_ERRORS,
    ALARM_REFUND_DLQ_DEPTH,
    ALARM_REFUNDS_SKIPPED,
)


def ledger_delivery_alarm_id(stream_id: str) -> str:
    """The alarm on one ledger stream's delivery (``Stream``, ``HttpStream``)."""
    return f"{ALARM_LEDGER_DELIVERY_PREFIX}{stream_id}Alarm"


# --- period close -------------------------------------------------------------------------------------------
# Throughput. Stripe allows 25 requests/s per endpoint and 100 operations/s per account (live; a sandbox 25/s
# per account: StripeRateLimits, a Tollgate(...) prop). A close makes one request to each of three endpoints,
# so 100,000 invoices take at least 4,000 s live. The worker paces every request at its share of each limit
# (tollgate.billing.close.pacing: 90% of the limit over the fleet) and the fleet is sized so the pacing, not
# Stripe's latency, sets the pace: close_worker_concurrency(limits) = 68 workers live, 23 in a sandbox, each
# closing one invoice every 3 s (a close takes about 1.3 s unpaced). benchmarks/close_throughput.py simulates
# the deployed close and chose these figures (--search).
#
# The worker's time budget: a batch must always finish inside the function's timeout, or the whole batch
# (closes that succeeded included) returns to the queue and, after CLOSE_QUEUE_MAX_RECEIVE_COUNT tries, lands
# in the DLQ. Worst case of one close, every Stripe request answering just before its last attempt times out:
#   one Stripe request: (1 + 2 retries) x 20 s timeout + 2 backoff sleeps of at most 5 s     =  70 s
#   and the wait for the pacer before it (one pacing interval, at most 5 s)                 +   5 s
#   requests in one close, at most 5: the invoice search, which fails and is replaced by a
#   listing of the customer's invoices, then create, add_lines and finalize: 5 x 75 s      = 375 s
#   requests answered 429 and the backoffs after them: a 429 is sent again only while the
#   close has run less than 120 s (the backoff's window), and the last one refused may
#   have begun just before: 120 s + 75 s                                                    + 195 s
#   DynamoDB reads and writes, the Stripe key from Secrets Manager (milliseconds each)      +  30 s
#   one close, worst case                                                                  = 600 s
# A batch of 1 close: timeout 600 s >= 1 x 600 s. (Lambda allows 900 s: a batch of 2 would need 1,200 s.)
# Throughput is set by the concurrency and the pacing, not the batch size (the simulation: the same figure
# with batches of 2 or 10, which no timeout could cover).
# SQS visibility timeout >= 6 x the function timeout (AWS's guidance for Lambda event sources): 3,600 s, so a
# failing close is retried every hour and after 5 receives (about 5 hours) lands in the DLQ.
# (A close that loses a race to a duplicate run of the same customer may make one more request: duplicates are
# rare, and a timed-out one is retried alone.)
STRIPE_REQUEST_TIMEOUT_SECONDS = _stripe_client.REQUEST_TIMEOUT_SECONDS
STRIPE_MAX_NETWORK_RETRIES = _stripe_client.MAX_NETWORK_RETRIES
STRIPE_MAX_RETRY_DELAY_SECONDS = 5  # stripe-python's longest backoff sleep (HTTPClient.MAX_DELAY)
STRIPE_REQUEST_WORST_CASE_SECONDS = (
    1 + STRIPE_MAX_NETWORK_RETRIES
) * STRIPE_REQUEST_TIMEOUT_SECONDS + STRIPE_MAX_NETWORK_RETRIES * STRIPE_MAX_RETRY_DELAY_SECONDS
CLOSE_PACING_WAIT_WORST_CASE_SECONDS = 5  # Pacer.longest_wait for the fleet sized for any limits >= 1/s
CLOSE_STRIPE_REQUESTS_WORST_CASE = 5
CLOSE_RATE_LIMIT_WINDOW_SECONDS = _pacing.RATE_LIMIT_WINDOW_SECONDS
CLOSE_OTHER_WORK_SECONDS = 30
_PACED_REQUEST_WORST_CASE_SECONDS = STRIPE_REQUEST_WORST_CASE_SECONDS + CLOSE_PACING_WAIT_WORST_CASE_SECONDS
CLOSE_WORST_CASE_SECONDS = (
    CLOSE_STRIPE_REQUESTS_WORST_CASE * _PACED_REQUEST_WORST_CASE_SECONDS
    + CLOSE_RATE_LIMIT_WINDOW_SECONDS
    + _PACED_REQUEST_WORST_CASE_SECONDS
    + CLOSE_OTHER_WORK_SECONDS
)
CLOSE_WORKER_BATCH_SIZE = 1
CLOSE_WORKER_TIMEOUT_SECONDS = 600
CLOSE_QUEUE_VISIBILITY_TIMEOUT_SECONDS = 6 * CLOSE_WORKER_TIMEOUT_SECONDS
# Workers running at once for Stripe's limits: the event source's maximum concurrency, the function's reserved
# concurrency and the pacers' fleet size (CLOSE_WORKER_FLEET_SIZE) are all this number.
close_worker_concurrency = _pacing.fleet_size
DEFAULT_STRIPE_RATE_LIMITS = _close_settings.StripeRateLimits.live()
CLOSE_WORKER_MAX_CONCURRENCY = close_worker_concurrency(DEFAULT_STRIPE_RATE_LIMITS)  # live: 68

# --- reserved concurrency: a cap on each background function, so none can starve the authorizer -------------
# The authorizer itself is left unreserved on purpose: a reservation would also be a hard cap on paid traffic,
# and with every other Tollgate function capped (81 in all with Stripe's live limits) the rest of the
# account's pool is the authorizer's and the provider's own functions'. A provider who wants a guaranteed
# floor for it reserves it in their app.
CLOSE_WORKER_RESERVED_CONCURRENCY = CLOSE_WORKER_MAX_CONCURRENCY  # the event source never asks for more
WEBHOOK_RESERVED_CONCURRENCY = 10  # a throttled webhook gets 429 and Stripe retries it for up to 3 days
SCHEDULED_RESERVED_CONCURRENCY = 1  # the close starter and watchdog, the dunning and credit expiry sweeps
CLOSE_QUEUE_MAX_RECEIVE_COUNT = 5
LAMBDA_MAX_TIMEOUT_SECONDS = 900
SCHEDULE_RETRY_ATTEMPTS = 10
SCHEDULE_MAX_EVENT_AGE_HOURS = 12
# The close watchdog runs this long after the close schedule: time for the close to finish, failing
# customers included (5 receives x 1 hour), before it counts what is not finished.
DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS = 12
# Asynchronous invocations (Scheduler -> Lambda): a function that errors or times out is retried this many
# times, an event waits at most this long in Lambda's queue, then it goes to the function's failure queue.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE_HOURS = 6  # Lambda's maximum
DEAD_LETTER_RETENTION_DAYS = 14  # SQS's maximum: time to look at what failed

# --- stack outputs (the names live in tollgate.outputs, shared with the CLI) -------------------------------
OUTPUT_TABLE_NAME = _outputs.TABLE_NAME
OUTPUT_STRIPE_API_KEY_SECRET_ARN = _outputs.STRIPE_API_KEY_SECRET_ARN
OUTPUT_STRIPE_WEBHOOK_SECRET_ARN = _outputs.STRIPE_WEBHOOK_SECRET_ARN
OUTPUT_WEBHOOK_URL = _outputs.WEBHOOK_URL
OUTPUT_ALARM_TOPIC_ARN = _outputs.ALARM_TOPIC_ARN
OUTPUT_CLOSE_QUEUE_URL = _outputs.CLOSE_QUEUE_URL
OUTPUT_AUTHORIZER_FUNCTION_ARN = _outputs.AUTHORIZER_FUNCTION_ARN
OUTPUT_USAGE_FUNCTION_ARN = _outputs.USAGE_FUNCTION_ARN
OUTPUT_CLOSE_STARTER_FUNCTION_NAME = _outputs.CLOSE_STARTER_FUNCTION_NAME
OUTPUT_PORTAL_LINK_SECRET_ARN = _outputs.PORTAL_LINK_SECRET_ARN
OUTPUT_PORTAL_URL = _outputs.PORTAL_URL
OUTPUT_DASHBOARD_NAME = "DashboardName"  # for people, not the CLI (so not in tollgate.outputs)
