"""Billing: the monthly close schedule, the close queue and worker, the watchdog, the secrets, webhooks and
dunning, and what happens to a scheduled invocation that fails."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra import sample_api
from tests.infra.cfn import (
    cdk_json_context,
    function_by_handler,
    get_att,
    only,
    props,
    ref,
    referenced_ids,
    resources,
)
from tollgate.billing.stripe_client import make_stripe_client
from tollgate.cdk import constants
from tollgate.cdk.billing import (
    close_schedule_expression,
    close_watchdog_schedule_expression,
    dunning_schedule_expression,
)

# Every function EventBridge Scheduler invokes, i.e. asynchronously.
SCHEDULED_HANDLERS = (
    constants.HANDLER_CLOSE_STARTER,
    constants.HANDLER_DUNNING_SWEEPER,
    constants.HANDLER_CLOSE_WATCHDOG,
)
# invoked asynchronously too, by the watchdog (the app's stack has a ledger): the same retries, its own queue
ASYNC_HANDLERS = (*SCHEDULED_HANDLERS, constants.HANDLER_LEDGER_RECONCILER)


def schedule_targeting(template: dict[str, Any], handler: str) -> dict[str, Any]:
    function_id, _ = function_by_handler(template, handler)
    _, schedule = only(
        {
            lid: s
            for lid, s in resources(template, "AWS::Scheduler::Schedule").items()
            if props(s)["Target"]["Arn"] == get_att(function_id)
        }
    )
    return props(schedule)


def queues(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::SQS::Queue")


def mapping_of(template: dict[str, Any], function_id: str) -> tuple[str, dict[str, Any]]:
    """The function's one event source mapping."""
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    return only({lid: m for lid, m in mappings.items() if props(m)["FunctionName"] == ref(function_id)})


def close_queue(template: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    redriven = {lid: q for lid, q in queues(template).items() if "RedrivePolicy" in props(q)}
    return only({lid: q for lid, q in redriven.items() if constants.ID_CLOSE_QUEUE in lid})


def test_close_runs_on_the_first_of_the_month_after_the_grace_hours(template: dict[str, Any]) -> None:
    schedule = schedule_targeting(template, constants.HANDLER_CLOSE_STARTER)
    grace_hours = cdk_json_context()["closeGraceHours"]
    assert schedule["ScheduleExpression"] == f"cron(0 {grace_hours} 1 * ? *)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["State"] == "ENABLED"


def test_close_schedule_retries_then_dead_letters(template: dict[str, Any]) -> None:
    target = schedule_targeting(template, constants.HANDLER_CLOSE_STARTER)["Target"]
    assert target["RetryPolicy"] == {
        "MaximumRetryAttempts": constants.SCHEDULE_RETRY_ATTEMPTS,
        "MaximumEventAgeInSeconds": constants.SCHEDULE_MAX_EVENT_AGE_HOURS * 3600,
    }
    assert target["RetryPolicy"]["MaximumRetryAttempts"] > 0
    (dlq_id,) = referenced_ids(target["DeadLetterConfig"]["Arn"])
    assert dlq_id in queues(template)
    assert dlq_id != close_queue(template)[0]


def test_schedule_passes_its_own_time_to_the_starter(template: dict[str, Any]) -> None:
    target = schedule_targeting(template, constants.HANDLER_CLOSE_STARTER)["Target"]
    assert json.loads(target["Input"]) == {
        "trigger": "schedule",
        "scheduledTime": "<aws.scheduler.scheduled-time>",
    }


def test_dunning_sweep_runs_daily_with_the_same_dead_letter_queue(template: dict[str, Any]) -> None:
    close = schedule_targeting(template, constants.HANDLER_CLOSE_STARTER)
    sweep = schedule_targeting(template, constants.HANDLER_DUNNING_SWEEPER)
    assert sweep["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert sweep["ScheduleExpressionTimezone"] == "UTC"
    assert sweep["Target"]["DeadLetterConfig"] == close["Target"]["DeadLetterConfig"]
    assert sweep["Target"]["RetryPolicy"]["MaximumRetryAttempts"] > 0


def test_the_close_watchdog_runs_hours_after_the_close_with_the_same_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    close = schedule_targeting(template, constants.HANDLER_CLOSE_STARTER)
    watchdog = schedule_targeting(template, constants.HANDLER_CLOSE_WATCHDOG)
    grace_hours = cdk_json_context()["closeGraceHours"]
    hour = grace_hours + constants.DEFAULT_CLOSE_WATCHDOG_DELAY_HOURS
    assert hour < 24  # on the 1st with cdk.json's grace
    assert watchdog["ScheduleExpression"] == f"cron(0 {hour} 1 * ? *)"
    assert watchdog["ScheduleExpressionTimezone"] == "UTC"
    assert watchdog["Target"]["DeadLetterConfig"] == close["Target"]["DeadLetterConfig"]
    assert watchdog["Target"]["RetryPolicy"] == close["Target"]["RetryPolicy"]
    assert json.loads(watchdog["Target"]["Input"]) == json.loads(close["Target"]["Input"])


@pytest.mark.parametrize(
    ("grace", "delay", "expected"),
    [(6, 12, "cron(0 18 1 * ? *)"), (6, 18, "cron(0 0 2 * ? *)"), (23, 48, "cron(0 23 3 * ? *)")],
)
def test_close_watchdog_schedule_expression(grace: int, delay: int, expected: str) -> None:
    assert close_watchdog_schedule_expression(grace, delay) == expected


@pytest.mark.parametrize(("grace", "delay", "match"), [(6, 0, "1..48"), (6, 49, "1..48"), (24, 12, "0..23")])
def test_close_watchdog_schedule_expression_refuses_a_bad_delay(grace: int, delay: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        close_watchdog_schedule_expression(grace, delay)


def async_invoke_config(template: dict[str, Any], handler: str) -> dict[str, Any]:
    function_id, _ = function_by_handler(template, handler)
    _, config = only(
        {
            lid: c
            for lid, c in resources(template, "AWS::Lambda::EventInvokeConfig").items()
            if props(c)["FunctionName"] == ref(function_id)
        }
    )
    return props(config)


@pytest.mark.parametrize("handler", SCHEDULED_HANDLERS)
def test_a_scheduled_function_that_fails_is_retried_then_kept_in_its_own_failure_queue(
    template: dict[str, Any], handler: str
) -> None:
    """Scheduler's retry policy and DLQ only cover delivering the event; Lambda's EventInvokeConfig covers the
    function failing: bounded retries, then the event (with the error) goes to an on-failure SQS queue."""
    config = async_invoke_config(template, handler)
    assert config["Qualifier"] == "$LATEST"
    assert config["MaximumRetryAttempts"] == constants.ASYNC_RETRY_ATTEMPTS == 2
    assert config["MaximumEventAgeInSeconds"] == constants.ASYNC_MAX_EVENT_AGE_HOURS * 3600 <= 21600
    (queue_id,) = referenced_ids(config["DestinationConfig"]["OnFailure"]["Destination"])
    assert queue_id in queues(template)
    assert props(queues(template)[queue_id])["MessageRetentionPeriod"] == 14 * 24 * 3600
    schedule_dlq = referenced_ids(schedule_targeting(template, handler)["Target"]["DeadLetterConfig"])
    assert queue_id not in schedule_dlq | {close_queue(template)[0]}


def test_each_scheduled_function_has_a_failure_queue_of_its_own(template: dict[str, Any]) -> None:
    destinations = [
        referenced_ids(async_invoke_config(template, handler)["DestinationConfig"])
        for handler in ASYNC_HANDLERS
    ]
    assert len(set().union(*destinations)) == len(ASYNC_HANDLERS)
    assert len(resources(template, "AWS::Lambda::EventInvokeConfig")) == len(ASYNC_HANDLERS)


@pytest.mark.parametrize(("hours", "expected"), [(0, "cron(0 0 1 * ? *)"), (23, "cron(0 23 1 * ? *)")])
def test_close_schedule_expression(hours: int, expected: str) -> None:
    assert close_schedule_expression(hours) == expected


@pytest.mark.parametrize("hours", [-1, 24])
def test_close_schedule_expression_rejects_a_grace_outside_the_day(hours: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.23"):
        close_schedule_expression(hours)


def test_dunning_schedule_expression_default_hour() -> None:
    assert dunning_schedule_expression() == f"cron(0 {constants.DUNNING_SWEEP_HOUR_UTC} * * ? *)"


def test_worker_consumes_the_close_queue_with_partial_failures_and_bounded_concurrency(
    template: dict[str, Any],
) -> None:
    worker_id, worker = function_by_handler(template, constants.HANDLER_CLOSE_WORKER)
    queue_id, _ = close_queue(template)
    _, mapping = mapping_of(template, worker_id)
    assert props(mapping)["FunctionName"] == ref(worker_id)
    assert props(mapping)["EventSourceArn"] == get_att(queue_id)
    assert props(mapping)["BatchSize"] == constants.CLOSE_WORKER_BATCH_SIZE
    assert props(mapping)["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # One number: the workers the event source runs, the function's reservation and the pacers' fleet size,
    # so the fleet's requests stay within its share of Stripe's limits.
    concurrency = props(mapping)["ScalingConfig"]["MaximumConcurrency"]
    assert concurrency == constants.close_worker_concurrency(constants.DEFAULT_STRIPE_RATE_LIMITS)
    assert props(worker)["ReservedConcurrentExecutions"] == concurrency
    assert props(worker)["Environment"]["Variables"]["CLOSE_WORKER_FLEET_SIZE"] == str(concurrency)


def test_close_queue_dead_letters_after_five_receives(template: dict[str, Any]) -> None:
    _, queue = close_queue(template)
    redrive = props(queue)["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == 5
    (dlq_id,) = referenced_ids(redrive["deadLetterTargetArn"])
    assert props(queues(template)[dlq_id])["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_close_queue_visibility_covers_six_worker_timeouts(template: dict[str, Any]) -> None:
    _, worker = function_by_handler(template, constants.HANDLER_CLOSE_WORKER)
    _, queue = close_queue(template)
    assert props(queue)["VisibilityTimeout"] >= 6 * props(worker)["Timeout"]


def test_a_batch_of_closes_always_fits_in_the_worker_timeout(template: dict[str, Any]) -> None:
    """A timed-out batch returns whole to the queue (and after 5 receives to the DLQ): the worker's timeout
    must cover the batch size times the worst case of one close (constants.py states the arithmetic)."""
    worker_id, worker = function_by_handler(template, constants.HANDLER_CLOSE_WORKER)
    _, mapping = mapping_of(template, worker_id)
    timeout, batch = props(worker)["Timeout"], props(mapping)["BatchSize"]
    per_request = (1 + constants.STRIPE_MAX_NETWORK_RETRIES) * constants.STRIPE_REQUEST_TIMEOUT_SECONDS + (
        constants.STRIPE_MAX_NETWORK_RETRIES * constants.STRIPE_MAX_RETRY_DELAY_SECONDS
    )
    paced = per_request + constants.CLOSE_PACING_WAIT_WORST_CASE_SECONDS
    # the requests of the close's longest path, then the 429s: retried only inside the backoff's window, the
    # last refused one may begin at its very end
    per_close = (
        constants.CLOSE_STRIPE_REQUESTS_WORST_CASE * paced
        + constants.CLOSE_RATE_LIMIT_WINDOW_SECONDS
        + paced
        + constants.CLOSE_OTHER_WORK_SECONDS
    )
    assert (per_request, per_close) == (70, 600) == (per_request, constants.CLOSE_WORST_CASE_SECONDS)
    assert timeout >= batch * per_close
    assert timeout <= constants.LAMBDA_MAX_TIMEOUT_SECONDS
    _, queue = close_queue(template)
    assert props(queue)["VisibilityTimeout"] >= 6 * timeout


def test_the_time_budget_uses_the_stripe_client_as_configured() -> None:
    """The budget's Stripe numbers are the client's own: request timeout, retries, longest backoff."""
    import stripe

    client = make_stripe_client("sk_test_budget")
    requestor = client._requestor  # private: where the client keeps them
    assert requestor._options.max_network_retries == constants.STRIPE_MAX_NETWORK_RETRIES
    assert requestor._client._timeout == constants.STRIPE_REQUEST_TIMEOUT_SECONDS
    assert stripe._http_client.HTTPClient.MAX_DELAY <= constants.STRIPE_MAX_RETRY_DELAY_SECONDS


def test_every_queue_is_encrypted_and_refuses_plain_http(template: dict[str, Any]) -> None:
    # the close queue, its DLQ, the schedule DLQ and the three scheduled functions' failure queues; the
    # alert stream's failure queue, the alert webhook queue and its DLQ; with the app's ledger, the ledger
    # reconciler's failure queue, the refund queue and its DLQ
    assert len(queues(template)) == 12
    policies = resources(template, "AWS::SQS::QueuePolicy").values()
    for queue_id, queue in queues(template).items():
        assert props(queue)["SqsManagedSseEnabled"] is True, queue_id
        denies_insecure = [
            s
            for policy in policies
            if ref(queue_id) in props(policy)["Queues"]
            for s in props(policy)["PolicyDocument"]["Statement"]
            if s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        ]
        assert denies_insecure, queue_id


def stripe_secrets(template: dict[str, Any]) -> dict[str, Any]:
    """The two secrets the provider puts Stripe's values in (the portal link secret is generated)."""
    return {
        lid: s
        for lid, s in resources(template, "AWS::SecretsManager::Secret").items()
        if props(s)["Description"].startswith("Tollgate: Stripe")
    }


def test_secrets_are_created_without_a_value_in_the_template(template: dict[str, Any]) -> None:
    secrets = stripe_secrets(template)
    assert len(secrets) == 2
    for logical_id, secret in secrets.items():
        assert "SecretString" not in props(secret), logical_id
        assert props(secret)["GenerateSecretString"] == {}, logical_id  # a random placeholder


def test_function_environments(template: dict[str, Any]) -> None:
    table = {"Ref": only(resources(template, "AWS::DynamoDB::Table"))[0]}
    secrets = {
        "webhook" if "webhook" in props(s)["Description"].lower() else "api": ref(lid)
        for lid, s in stripe_secrets(template).items()
    }
    dunning_days = str(cdk_json_context()["dunningGraceDays"])

    def env(handler: str) -> dict[str, Any]:
        _, function = function_by_handler(template, handler)
        variables: dict[str, Any] = props(function)["Environment"]["Variables"]
        return {k: v for k, v in variables.items() if not k.startswith("POWERTOOLS_")}

    assert env(constants.HANDLER_CLOSE_STARTER) == {
        "TABLE_NAME": table,
        "CLOSE_QUEUE_URL": ref(close_queue(template)[0]),
    }
    assert env(constants.HANDLER_CLOSE_WORKER) == {
        "TABLE_NAME": table,
        "STRIPE_API_KEY_SECRET_ARN": secrets["api"],
        "STRIPE_ENDPOINT_RATE": "25",
        "STRIPE_ACCOUNT_RATE": "100",
        "CLOSE_WORKER_FLEET_SIZE": str(constants.CLOSE_WORKER_MAX_CONCURRENCY),
    }
    assert env(constants.HANDLER_WEBHOOK) == {
        "TABLE_NAME": table,
        "STRIPE_WEBHOOK_SECRET_ARN": secrets["webhook"],
        "DUNNING_GRACE_DAYS": dunning_days,
    }
    assert env(constants.HANDLER_DUNNING_SWEEPER) == {"TABLE_NAME": table, "DUNNING_GRACE_DAYS": dunning_days}
    (reconciler,) = [  # the app's stack has a ledger: the watchdog starts its reconciler
        lid
        for lid, f in resources(template, "AWS::Lambda::Function").items()
        if props(f)["Handler"] == constants.HANDLER_LEDGER_RECONCILER
    ]
    assert env(constants.HANDLER_CLOSE_WATCHDOG) == {
        "TABLE_NAME": table,
        "LEDGER_RECONCILER_FUNCTION": ref(reconciler),
    }
    usage = env(constants.HANDLER_USAGE_API)  # the ledger's names: tests/infra/test_usage_export.py
    assert {k: v for k, v in usage.items() if not k.startswith("LEDGER_")} == {
        "TABLE_NAME": table,
        "PORTAL_LINK_SECRET_ARN": ref(
            only(
                {
                    lid: r
                    for lid, r in resources(template, "AWS::SecretsManager::Secret").items()
                    if "Portal" in lid
                }
            )[0]
        ),
    }


def test_every_function_is_python312_on_arm64_without_tracing(template: dict[str, Any]) -> None:
    functions = resources(template, "AWS::Lambda::Function")
    handlers = {props(f)["Handler"] for f in functions.values()}
    assert handlers == {
        constants.HANDLER_AUTHORIZER,
        constants.HANDLER_CLOSE_STARTER,
        constants.HANDLER_CLOSE_WORKER,
        constants.HANDLER_WEBHOOK,
        constants.HANDLER_DUNNING_SWEEPER,
        constants.HANDLER_USAGE_API,
        constants.HANDLER_CLOSE_WATCHDOG,
        constants.HANDLER_ALERTS,
        constants.HANDLER_ALERT_WEBHOOKS,
        constants.HANDLER_CREDIT_EXPIRY,
        constants.HANDLER_LEDGER_RECONCILER,  # the app's stack has a ledger
        constants.HANDLER_REFUNDS,  # and so refunds failed requests from it
        sample_api.SAMPLE_HANDLER,
    }
    for logical_id, function in functions.items():
        assert props(function)["Runtime"] == "python3.12", logical_id
        assert props(function)["Architectures"] == ["arm64"], logical_id
        assert props(function).get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}, (
            logical_id
        )


def test_every_log_group_has_a_retention(template: dict[str, Any]) -> None:
    for logical_id, log_group in resources(template, "AWS::Logs::LogGroup").items():
        assert props(log_group)["RetentionInDays"] > 0, logical_id


def test_webhook_is_a_public_function_url(template: dict[str, Any]) -> None:
    webhook_id, _ = function_by_handler(template, constants.HANDLER_WEBHOOK)
    _, url = only(resources(template, "AWS::Lambda::Url"))
    assert props(url)["TargetFunctionArn"] == get_att(webhook_id)
    # Stripe cannot sign AWS requests; the handler verifies the Stripe-Signature header instead.
    assert props(url)["AuthType"] == "NONE"


@pytest.mark.parametrize("delay", [0, 49])
def test_tollgate_refuses_a_watchdog_delay_outside_two_days(fresh_stack: Any, delay: int) -> None:
    from tollgate.cdk import Tollgate

    with pytest.raises(ValueError, match=r"close_watchdog_delay_hours must be 1\.\.48"):
        Tollgate(fresh_stack(), "Tollgate", close_watchdog_delay_hours=delay)
