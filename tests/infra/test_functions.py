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
