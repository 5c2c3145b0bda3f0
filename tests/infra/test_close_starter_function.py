"""The close starter's function in the template: a full vCPU, Lambda's longest timeout, the time budget's
reserve inside it, and its continuation: it invokes itself asynchronously, with bounded retries and its
failures kept (``tollgate.billing.close.starter``)."""

from __future__ import annotations

from typing import Any

from tests.infra.cfn import function_by_handler, props, ref, resources
from tollgate.billing.close import starter
from tollgate.cdk import constants


def test_the_starter_has_a_full_vcpu_and_the_longest_timeout(template: dict[str, Any]) -> None:
    _, function = function_by_handler(template, constants.HANDLER_CLOSE_STARTER)

    assert props(function)["MemorySize"] >= 1769  # one vCPU: boto3's CPU per SendMessageBatch is the bound
    assert props(function)["Timeout"] == constants.LAMBDA_MAX_TIMEOUT_SECONDS
    assert props(function)["Timeout"] / 10 > starter.RESERVE_SECONDS
    assert props(function)["ReservedConcurrentExecutions"] == constants.SCHEDULED_RESERVED_CONCURRENCY


def test_the_starters_continuations_are_retried_and_kept_like_its_schedule(template: dict[str, Any]) -> None:
    """A continuation is an asynchronous invocation of the same function: the same retries, the same
    failure queue as the schedule's, and recursive loop detection left at its default (Terminate)."""
    function_id, function = function_by_handler(template, constants.HANDLER_CLOSE_STARTER)
    (config,) = [
        props(c)
        for c in resources(template, "AWS::Lambda::EventInvokeConfig").values()
        if props(c)["FunctionName"] == ref(function_id)
    ]

    assert config["Qualifier"] == "$LATEST"  # what the unqualified ARN the starter invokes runs
    assert config["MaximumRetryAttempts"] == constants.ASYNC_RETRY_ATTEMPTS
    assert "OnFailure" in config["DestinationConfig"]
    assert props(function).get("RecursiveLoop", "Terminate") == "Terminate"
    assert starter.MAX_INVOCATIONS < 16  # Lambda stops a chain at about the 16th invocation
