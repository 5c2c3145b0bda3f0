"""What every Tollgate function costs to run, as the template says: logging and tracing settings."""

from __future__ import annotations

from typing import Any

from tests.infra.cfn import props, resources


def test_every_function_logs_json_without_the_platform_lines(template: dict[str, Any]) -> None:
    # With SystemLogLevel WARN the platform's START/END/REPORT lines are not written: an allowed request
    # then ingests no log bytes (the authorizer writes nothing on the happy path).
    functions = resources(template, "AWS::Lambda::Function")
    assert functions
    for logical_id, function in functions.items():
        logging = props(function)["LoggingConfig"]
        assert logging["LogFormat"] == "JSON", logical_id
        assert logging["SystemLogLevel"] == "WARN", logical_id
        assert logging["ApplicationLogLevel"] == "INFO", logical_id


def test_background_functions_are_capped_so_they_cannot_starve_the_authorizer(
    template: dict[str, Any],
) -> None:
    from tests.infra.cfn import function_by_handler
    from tollgate.cdk import constants

    def reserved(handler: str) -> int | None:
        _, function = function_by_handler(template, handler)
        value = props(function).get("ReservedConcurrentExecutions")
        return None if value is None else int(value)

    assert reserved(constants.HANDLER_CLOSE_WORKER) == constants.CLOSE_WORKER_MAX_CONCURRENCY
    assert reserved(constants.HANDLER_WEBHOOK) == 10
    for handler in (
        constants.HANDLER_CLOSE_STARTER,
        constants.HANDLER_DUNNING_SWEEPER,
        constants.HANDLER_CLOSE_WATCHDOG,
        constants.HANDLER_CREDIT_EXPIRY,
    ):
        assert reserved(handler) == 1, handler
    # The authorizer is left unreserved: a reservation would also cap paid traffic.
    assert reserved(constants.HANDLER_AUTHORIZER) is None
    # The refund function (an SQS consumer, like the alert webhooks) is capped by its event source instead:
    # a reservation would throttle its messages towards the dead-letter queue.
    assert reserved(constants.HANDLER_REFUNDS) is None
    mappings = resources(template, "AWS::Lambda::EventSourceMapping").values()
    capped = {
        props(m)["FunctionName"]["Ref"]: props(m)["ScalingConfig"]["MaximumConcurrency"]
        for m in mappings
        if "ScalingConfig" in props(m)
    }
    worker_id, _ = function_by_handler(template, constants.HANDLER_CLOSE_WORKER)
    refunds_id, _ = function_by_handler(template, constants.HANDLER_REFUNDS)
    assert capped == {worker_id: constants.CLOSE_WORKER_MAX_CONCURRENCY, refunds_id: 2}
