"""The usage ledger's record (tollgate.domain.ledger) and the local gateway's ledger writer, without I/O
beyond a temporary directory."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tollgate.domain.ledger import (
    ACCESS_LOG_FORMAT,
    HTTP_ACCESS_LOG_FORMAT,
    MISSING,
    RECORD_KEYS,
    LedgerRecord,
    access_log_value,
    object_prefix,
    partition_of,
    partition_prefix,
    record_line,
    render_record,
)
from tollgate_local.gateway import LocalGateway, LocalLedger, Route

ALLOWED = {
    "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
    "requestTime": "1764547199999",  # 2025-11-30T23:59:59.999Z
    "httpMethod": "GET",
    "resourcePath": "/v1/items/{id}",
    "status": "200",
    "integrationStatus": "200",
    "integrationLatency": "12",
    "responseLatency": "40",
    "customerId": "acme",
    "keyId": "k_1",
    "planId": "payg",
    "planVersion": "2",
    "period": "2025-11",
    "credits": "25",
    "metered": "true",
    "denyReason": "-",
}


def test_the_formats_log_the_records_keys_from_api_gateways_variables() -> None:
    assert tuple(ACCESS_LOG_FORMAT) == tuple(HTTP_ACCESS_LOG_FORMAT) == RECORD_KEYS
    assert all(variable.startswith("$context.") for variable in ACCESS_LOG_FORMAT.values())
    assert ACCESS_LOG_FORMAT["denyReason"] == "$context.authorizer.reason"  # Decision.deny's context key
    assert HTTP_ACCESS_LOG_FORMAT["resourcePath"] == "$context.routeKey"  # HTTP APIs have no resourcePath


def test_an_allowed_record_parses_into_numbers_and_a_boolean() -> None:
    record = LedgerRecord.parse(json.dumps(ALLOWED))
    assert (record.request_time_ms, record.status, record.credits, record.plan_version) == (
        1764547199999,
        200,
        25,
        2,
    )
    assert record.metered is True
    assert record.deny_reason is None
    assert record.allowed
    assert record.counted_credits == 25
    assert record.request_time == datetime(2025, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)


def test_a_refusal_has_none_where_api_gateway_wrote_a_dash() -> None:
    raw = {key: MISSING for key in RECORD_KEYS} | {
        "requestId": "r1",
        "requestTime": "1764547200000",
        "status": "403",
        "denyReason": "invalid_api_key",
    }
    record = LedgerRecord.parse(raw)
    assert (record.customer_id, record.credits, record.metered, record.period) == (None, None, None, None)
    assert not record.allowed
    assert record.counted_credits == 0
    assert partition_of(record) == ("2025-12", "2025-12-01")  # no period of its own: the request's month


def test_unmetered_requests_count_no_credits() -> None:
    record = LedgerRecord.parse({**ALLOWED, "metered": "false"})
    assert record.allowed
    assert (record.credits, record.counted_credits) == (25, 0)


def test_an_http_api_route_key_is_read_as_its_template() -> None:
    assert (
        LedgerRecord.parse({**ALLOWED, "resourcePath": "ANY /v1/items/{id}"}).resource_path
        == "/v1/items/{id}"
    )
    assert LedgerRecord.parse({**ALLOWED, "resourcePath": "$default"}).resource_path == "$default"


@pytest.mark.parametrize(
    ("field", "value"),
    [("requestId", "-"), ("requestTime", "-"), ("period", "2025-13"), ("metered", "True"), ("credits", "x")],
)
def test_a_record_that_is_not_api_gateways_is_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError):
        LedgerRecord.parse({**ALLOWED, field: value})


def test_values_render_as_api_gateway_writes_them() -> None:
    assert [access_log_value(v) for v in (None, True, False, 25, "acme")] == [
        "-",
        "true",
        "false",
        "25",
        "acme",
    ]
    assert render_record({"requestId": "r"})["credits"] == "-"
    with pytest.raises(ValueError, match="not a ledger record key"):
        render_record({"customer": "acme"})


@given(
    epoch_ms=st.integers(min_value=0, max_value=4_102_444_799_999),
    own_period=st.booleans(),
    credits=st.none() | st.integers(min_value=0, max_value=10**9),
    metered=st.none() | st.booleans(),
)
def test_a_rendered_record_parses_back_and_partitions_by_its_time(
    epoch_ms: int, own_period: bool, credits: int | None, metered: bool | None
) -> None:
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    month = moment.strftime("%Y-%m")
    values: dict[str, object] = {"requestId": "r", "requestTime": epoch_ms, "credits": credits}
    values.update(period=month if own_period else None, metered=metered)
    line = record_line(values)
    assert line.endswith("\n")
    assert "\n" not in line[:-1]
    record = LedgerRecord.parse(line)
    assert (record.request_time_ms, record.credits, record.metered) == (epoch_ms, credits, metered)
    assert partition_of(record) == (month, moment.strftime("%Y-%m-%d"))
    assert object_prefix(record) == f"period={month}/day={moment.strftime('%Y-%m-%d')}/"


def test_partition_prefix_checks_its_parts() -> None:
    assert partition_prefix("2026-02", "2026-02-28") == "period=2026-02/day=2026-02-28/"
    for period, day in (("2026-2", "2026-02-01"), ("2026-02", "2026-02-30")):
        with pytest.raises(ValueError):
            partition_prefix(period, day)


# --- the local gateway's ledger ----------------------------------------------------------------------


def allow_all(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "principalId": "acme",
        "policyDocument": {"Statement": [{"Effect": "Allow", "Resource": event["methodArn"]}]},
        "context": {"customerId": "acme", "period": "2024-02", "credits": 1, "metered": True},
    }


def test_the_gateway_stamps_records_with_its_own_clock(tmp_path: Path) -> None:
    shifted = datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC).timestamp()  # the demo's clock is shifted too
    backend = Route("GET", "/v1/items/{id}", lambda event, context: {"statusCode": 201, "body": "{}"})
    gateway = LocalGateway([backend], allow_all, clock=lambda: shifted, ledger=LocalLedger(tmp_path))
    assert gateway.handle("GET", "/v1/items/7", {}, None).status == 201
    (file,) = tmp_path.rglob("*.jsonl")
    assert file.parent == tmp_path / "period=2024-02" / "day=2024-02-29"
    record = LedgerRecord.parse(file.read_text())
    assert record.request_time_ms == int(shifted * 1000)
    assert (record.status, record.integration_status, record.resource_path) == (201, 201, "/v1/items/{id}")


def test_a_failing_backend_is_a_502_with_no_integration_status(tmp_path: Path) -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("backend bug")

    gateway = LocalGateway([Route("GET", "/x", broken)], allow_all, ledger=LocalLedger(tmp_path))
    assert gateway.handle("GET", "/x", {}, None).status == 502
    (file,) = tmp_path.rglob("*.jsonl")
    record = LedgerRecord.parse(file.read_text())
    assert (record.status, record.integration_status) == (502, None)


def test_the_ledger_takes_concurrent_writes_whole_lines(tmp_path: Path) -> None:
    ledger = LocalLedger(tmp_path)

    def write(worker: int) -> None:
        for n in range(200):
            ledger.write({"requestId": f"{worker}-{n}", "requestTime": 1764547199999 + n, "credits": n})

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ledger.close()
    lines = [line for file in tmp_path.rglob("*.jsonl") for line in file.read_text().splitlines()]
    assert len(lines) == 1600
    assert len({LedgerRecord.parse(line).request_id for line in lines}) == 1600
    assert {file.parent.name for file in tmp_path.rglob("*.jsonl")} == {"day=2025-11-30", "day=2025-12-01"}


def test_the_gateway_runs_each_function_one_invocation_at_a_time() -> None:
    """Lambda runs one invocation per execution environment; the threaded gateway must not overlap a function
    with itself (Powertools' metric set is per process), though different functions may run at once."""
    inside: dict[str, int] = {"authorizer": 0, "search": 0}
    most: dict[str, int] = {"authorizer": 0, "search": 0}
    lock = threading.Lock()
    both = threading.Event()

    def enter(name: str) -> None:
        with lock:
            inside[name] += 1
            most[name] = max(most[name], inside[name])
            if all(inside.values()):
                both.set()

    def leave(name: str) -> None:
        both.wait(0.005)  # linger, so overlapping calls would be seen
        with lock:
            inside[name] -= 1

    def authorizer(event: dict[str, Any], context: Any) -> dict[str, Any]:
        enter("authorizer")
        leave("authorizer")
        return allow_all(event, context)

    def search(event: dict[str, Any], context: Any) -> dict[str, Any]:
        enter("search")
        leave("search")
        return {"statusCode": 200, "body": "{}"}

    routes = [Route("GET", "/search", search), Route("GET", "/find", search)]  # one function, two routes
    gateway = LocalGateway(routes, authorizer)
    with gateway.serve() as running:

        def client(path: str) -> None:
            for _ in range(15):
                with urlopen(running.url + path, timeout=10) as answer:  # noqa: S310 - the local gateway
                    assert answer.status == 200

        threads = [threading.Thread(target=client, args=(path,)) for path in ["/search", "/find"] * 3]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert most == {"authorizer": 1, "search": 1}
    assert both.is_set()  # the authorizer and the backend did run at the same time
