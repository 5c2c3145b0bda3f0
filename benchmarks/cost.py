"""What metering costs per million requests, from the synthesized template and a measured warm call.

Reads the authorizer's settings from the synthesized Tollgate app (memory, architecture, tracing,
logging), measures the CPU time of a warm authorizer call in this process (the handler with in-memory fakes
for the key directory and the counter: everything but the DynamoDB round trip), measures the
counter write's units on Amazon DynamoDB Local (a heavy customer's item after requests on N routes and, at
the month's end, D days: ``--days``), and
prices one million metered requests on a REST API and on an HTTP API. Every assumption is printed with the
result. With ``--ledger`` (the default) it adds the usage ledger (``tollgate.cdk.ledger``): its record size is
measured from records the local gateway writes for real authorizer decisions, and priced through Firehose
(billed per record rounded up to 5 KB), dynamic partitioning, S3 and, for HTTP APIs, CloudWatch Logs.

Run: .venv/bin/python benchmarks/cost.py [--routes 50] [--days 31] [--calls 20000] [--no-ledger]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from offline import go_offline

go_offline()

# --- published prices, us-east-1, read 2026-11 (facts.md); no free tier -------------------------------------
PRICES = {
    "apigw_rest_per_million": Decimal("3.50"),
    "apigw_http_per_million": Decimal("1.00"),
    "lambda_requests_per_million": Decimal("0.20"),
    "lambda_gb_second_arm64": Decimal("0.0000133334"),
    "lambda_gb_second_x86_64": Decimal("0.0000166667"),
    "dynamodb_write_unit_per_million": Decimal("0.625"),
    "dynamodb_read_unit_per_million": Decimal("0.125"),
    "logs_ingested_per_gb": Decimal("0.50"),
    "xray_traces_per_million": Decimal("5.00"),
}
# The usage ledger's prices, us-east-1, read 2026-11 (Firehose, S3 and CloudWatch Logs pricing pages).
LEDGER_PRICES = {
    "firehose_ingested_per_gb": Decimal("0.029"),  # Direct PUT, first 500 TB/month, 5 KB per record minimum
    "firehose_partitioned_per_gb": Decimal("0.020"),  # dynamic partitioning, per GB delivered
    "firehose_partition_objects_per_1000": Decimal("0.005"),  # dynamic partitioning, per S3 object delivered
    "firehose_jq_per_hour": Decimal("0.07"),  # dynamic partitioning's JQ processing time
    "s3_standard_per_gb_month": Decimal("0.023"),
    "s3_put_per_1000": Decimal("0.005"),
    "logs_ingested_per_gb": Decimal("0.50"),  # HTTP APIs: the access log goes through CloudWatch Logs first
}
FIREHOSE_RECORD_UNIT = 5 * 1024  # Firehose bills each record rounded up to 5 KB
LEDGER_BUFFER_BYTES = 64 * 1024 * 1024  # the stream's buffer: a busy stream writes an object per 64 MiB
JQ_SECONDS_PER_RECORD = Decimal("0.0001")  # assumed: 0.1 ms of JQ per record
# --- assumptions (stated, not measured here) --------------------------------------------------------------
DYNAMODB_UPDATE_MS = 6  # one in-region UpdateItem round trip, p50 (single-digit ms)
ONE_VCPU_MB = 1769  # Lambda gives a function one vCPU at 1,769 MB, proportionally less below
PLATFORM_LOG_BYTES = 330  # START + END + REPORT lines of one invocation, when the platform writes them
KEY_READS_PER_REQUEST = Decimal(
    "0.001"
)  # eventually consistent, 0.5 unit: 3 reads per key per instance per 30 s
XRAY_SAMPLED = Decimal("0.05")  # the default sampling rule: 1 request/s, then 5%


@dataclass(frozen=True)
class AuthorizerSettings:
    memory_mb: int
    architecture: str
    tracing: str
    system_log_level: str | None


def authorizer_settings() -> AuthorizerSettings:
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from infra.app import build_app
    from tollgate.cdk.constants import HANDLER_AUTHORIZER

    with tempfile.TemporaryDirectory() as out:
        app = cdk.App(outdir=out, context={"aws:cdk:bundling-stacks": []})
        stack = build_app(app, nag=False)
        template: dict[str, Any] = json.loads(
            json.dumps(app.synth().get_stack_artifact(stack.artifact_id).template)
        )
    (function,) = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Function" and r["Properties"].get("Handler") == HANDLER_AUTHORIZER
    ]
    logging = function.get("LoggingConfig", {})
    return AuthorizerSettings(
        memory_mb=int(function.get("MemorySize", 128)),
        architecture=(function.get("Architectures") or ["x86_64"])[0],
        tracing=function.get("TracingConfig", {}).get("Mode", "PassThrough"),
        system_log_level=logging.get("SystemLogLevel") if logging.get("LogFormat") == "JSON" else None,
    )


def stub_authorizer(grant_fields: dict[str, Any]) -> tuple[str, Any]:
    """A fresh API key and the real authorizer handler on in-memory stubs: the key finds a grant of
    ``grant_fields`` (an active, unsharded customer), and every counter write succeeds."""
    from tollgate.domain.keyformat import generate_key, hash_key
    from tollgate.metering.grants import Grant
    from tollgate.metering.handler import Deps, make_handler

    key = generate_key()
    grant = Grant(customer_status="active", status_reason=None, pay_url=None, shards=1, **grant_fields)

    class Keys:
        def find(self, key_hash: str) -> Grant | None:
            return grant if key_hash == hash_key(key) else None

    class Counter:
        def add(self, *args: Any, **kwargs: Any) -> int:
            return 1

    return key, make_handler(Deps(keys=Keys(), counter=Counter()))


def warm_call_cpu_seconds(calls: int) -> float:
    """CPU seconds of a warm allowed call: parsing, key hashing, cache, decision, policy, Powertools."""
    from tollgate_local.apigw import rest_event
    from tollgate_local.lambda_context import LocalLambdaContext

    key, handle = stub_authorizer(
        {
            "key_id": "k1",
            "customer_id": "acme",
            "plan_id": "payg",
            "plan_version": 1,
            "route_costs": {"GET /v1/search": 1},
        }
    )
    context = LocalLambdaContext("tollgate-authorizer")
    event = rest_event(headers={"x-api-key": key}, epoch_ms=int(time.time() * 1000))
    assert handle(event, context)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    start = time.process_time()
    for _ in range(calls):
        handle(event, context)
    return (time.process_time() - start) / calls


@dataclass(frozen=True)
class CounterWrites:
    routes: int
    days: int  # days of the period already tallied on the item (31: the month's last day)
    write_units: float  # of one request's counter write, a heavy customer using ``routes`` routes
    one_unit_up_to: int  # routes a heavy customer's counter item can hold before a write costs 2 units


HEAVY_CREDITS, HEAVY_REQUESTS = 12_345_678, 1_234_567  # a big customer's month on each route


def counter_write_units(routes: int, days: int = 31, probe_up_to: int = 200) -> CounterWrites:
    """Measured on Amazon DynamoDB Local, which reports write units by item size as DynamoDB bills them.

    The authorizer's own counter (``DynamoUsageCounter``) writes a request for a customer who already used
    each route heavily this period (the largest tallies: the worst case for the item's size), spread evenly
    over ``days`` days (each day's tally holds its share: 31 is the item on the month's last day).
    """
    from tollgate.dal import tablekeys as tk
    from tollgate.dal.counter_item import day_attribute, route_code, route_tally
    from tollgate.dal.schema import create_table
    from tollgate.metering.dynamo import DynamoUsageCounter
    from tollgate_local.dynamodb_local import DynamoDBLocal

    customer, period = "cus_0f8fad5b-d9cb-469f-a165-70867728950e", "2026-11"
    units: list[float] = []
    with DynamoDBLocal() as ddb:
        client = ddb.client()
        create_table(client, "tollgate-bench")
        client.meta.events.register(
            "provide-client-params.dynamodb.UpdateItem",
            lambda params, **_: params.update(ReturnConsumedCapacity="TOTAL"),
        )
        client.meta.events.register(
            "after-call.dynamodb.UpdateItem",
            lambda parsed, **_: units.append(parsed["ConsumedCapacity"]["CapacityUnits"]),
        )
        counter = DynamoUsageCounter(client, "tollgate-bench")
        measured: dict[int, float] = {}
        for n in range(1, max(routes, probe_up_to) + 1):
            route = f"GET /v1/resource-{n:03d}/{{id}}"
            day_names = {f"#d{day}": day_attribute(day) for day in range(1, days + 1)}
            client.update_item(
                TableName="tollgate-bench",
                Key={name: {"S": value} for name, value in tk.counter_key(customer, period, 0).items()},
                UpdateExpression="ADD #c :c, #n :n, #r :tally"
                + "".join(f", {name} :day" for name in day_names),
                ExpressionAttributeNames={
                    "#c": tk.CREDITS,
                    "#n": tk.REQUESTS,
                    "#r": route_code(route),
                    **day_names,
                },
                ExpressionAttributeValues={
                    ":c": {"N": str(HEAVY_CREDITS)},
                    ":n": {"N": str(HEAVY_REQUESTS)},
                    ":tally": {"N": route_tally(HEAVY_CREDITS, HEAVY_REQUESTS)},
                    **(
                        {":day": {"N": route_tally(HEAVY_CREDITS // days, HEAVY_REQUESTS // days)}}
                        if days
                        else {}
                    ),
                },
            )
            units.clear()
            counter.add(customer, period, 0, route, credits=9_999, limit=None, day=max(days, 1))
            measured[n] = units[-1]
    two_units = [n for n, used in measured.items() if used > 1.0]
    one_unit = (min(two_units) if two_units else max(measured) + 1) - 1
    return CounterWrites(routes=routes, days=days, write_units=measured[routes], one_unit_up_to=one_unit)


@dataclass(frozen=True)
class LedgerRecordSize:
    raw_bytes: int  # one record as API Gateway sends it to Firehose (no newline)
    stored_bytes: float  # per record in S3: JSON Lines, gzip, averaged over a day's file


def ledger_record_size(records: int = 10_000) -> LedgerRecordSize:
    """Measured: the local gateway writes the ledger records of ``records`` requests (the real authorizer on
    in-memory fakes: an allowed 25-credit request each, ids as long as real ones) and they are gzipped as
    Firehose does."""
    import statistics

    from tollgate.accounts.keys import new_key_id
    from tollgate_local.gateway import LocalGateway, LocalLedger, Route

    key, authorizer = stub_authorizer(
        {
            "key_id": new_key_id(),
            "customer_id": "cus_0f8fad5b-d9cb-469f-a165-70867728950e",
            "plan_id": "enterprise-2026",
            "plan_version": 12,
            "route_costs": {"POST /v1/projects/{project}/generate": 25},
        }
    )

    def backend(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"statusCode": 200, "body": "{}"}

    with tempfile.TemporaryDirectory() as folder:
        gateway = LocalGateway(
            [Route("POST", "/v1/projects/{project}/generate", backend)],
            authorizer,
            ledger=LocalLedger(folder),
        )
        for _ in range(records):
            gateway.handle("POST", "/v1/projects/p-123/generate", {"x-api-key": key}, "{}")
        assert gateway.ledger is not None
        gateway.ledger.close()
        files = [path.read_bytes() for path in Path(folder).rglob("*.jsonl")]
    lines = [line for content in files for line in content.splitlines()]
    assert len(lines) == records, len(lines)
    raw = statistics.median(len(line) for line in lines)
    stored = sum(len(gzip.compress(content)) for content in files) / records
    return LedgerRecordSize(raw_bytes=int(raw), stored_bytes=stored)


def ledger_costs(size: LedgerRecordSize, http: bool) -> dict[str, Decimal]:
    """The ledger's cost per million requests (a busy API: each partition's 64 MiB buffer fills first)."""
    million = Decimal(1_000_000)
    billed_record = math.ceil(size.raw_bytes / FIREHOSE_RECORD_UNIT) * FIREHOSE_RECORD_UNIT
    delivered_gb = Decimal(size.raw_bytes + 1) * million / 1024**3  # + the newline Firehose appends
    objects = Decimal(math.ceil((size.raw_bytes + 1) * 1_000_000 / LEDGER_BUFFER_BYTES))
    stored_gb = Decimal(str(size.stored_bytes)) * million / 1024**3
    costs: dict[str, Decimal] = {}
    if http:
        # CloudWatch Logs batches log events into one Firehose record: no 5 KB rounding per request
        costs[f"CloudWatch Logs ingestion: {size.raw_bytes} B per request"] = (
            LEDGER_PRICES["logs_ingested_per_gb"] * Decimal(size.raw_bytes) * million / 1024**3
        )
        costs["Firehose ingestion: CloudWatch Logs batches, ~raw bytes"] = (
            LEDGER_PRICES["firehose_ingested_per_gb"] * Decimal(size.raw_bytes) * million / 1024**3
        )
    else:
        costs[f"Firehose ingestion: {size.raw_bytes} B record billed as {billed_record // 1024} KB"] = (
            LEDGER_PRICES["firehose_ingested_per_gb"] * Decimal(billed_record) * million / 1024**3
        )
    costs["Firehose dynamic partitioning: GB delivered, objects, JQ time (assumed 0.1 ms/record)"] = (
        LEDGER_PRICES["firehose_partitioned_per_gb"] * delivered_gb
        + LEDGER_PRICES["firehose_partition_objects_per_1000"] * objects / 1000
        + LEDGER_PRICES["firehose_jq_per_hour"] * JQ_SECONDS_PER_RECORD * million / 3600
    )
    costs[f"S3: {objects} PUT(s), {size.stored_bytes:.0f} B gzip per record, one month in Standard"] = (
        LEDGER_PRICES["s3_put_per_1000"] * objects / 1000
        + LEDGER_PRICES["s3_standard_per_gb_month"] * stored_gb
    )
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=50, help="distinct routes a customer calls in a period")
    parser.add_argument(
        "--days", type=int, default=31, help="days of the period tallied on the item (31: the month's end)"
    )
    parser.add_argument("--calls", type=int, default=20000, help="warm calls measured")
    parser.add_argument(
        "--ledger", action=argparse.BooleanOptionalAction, default=True, help="price the usage ledger too"
    )
    args = parser.parse_args()

    settings = authorizer_settings()
    cpu = warm_call_cpu_seconds(args.calls)
    counter = counter_write_units(args.routes, args.days)
    write_units = Decimal(str(counter.write_units))
    cpu_share = min(1.0, settings.memory_mb / ONE_VCPU_MB)
    billed_ms = math.ceil(cpu * 1000 / cpu_share + DYNAMODB_UPDATE_MS)
    gb_seconds = Decimal(settings.memory_mb) / 1024 * Decimal(billed_ms) / 1000 * 1_000_000
    arch_price = PRICES[f"lambda_gb_second_{settings.architecture}"]
    log_bytes = 0 if settings.system_log_level in {"WARN", "ERROR", "FATAL"} else PLATFORM_LOG_BYTES
    metering = {
        "authorizer Lambda requests": PRICES["lambda_requests_per_million"],
        f"authorizer duration: {settings.memory_mb} MB {settings.architecture} x {billed_ms} ms billed": (
            gb_seconds * arch_price
        ),
        f"DynamoDB counter write: {write_units} write unit(s) at {args.routes} routes, {args.days} days "
        "(measured)": (PRICES["dynamodb_write_unit_per_million"] * write_units),
        "DynamoDB key reads (cached 30 s per instance)": (
            PRICES["dynamodb_read_unit_per_million"] * KEY_READS_PER_REQUEST * Decimal("0.5")
        ),
        f"CloudWatch Logs: {log_bytes} B per allowed request": (
            PRICES["logs_ingested_per_gb"] * Decimal(log_bytes) * 1_000_000 / 1024**3
        ),
        f"X-Ray: tracing {settings.tracing}": (
            PRICES["xray_traces_per_million"] * XRAY_SAMPLED if settings.tracing == "Active" else Decimal(0)
        ),
    }
    print(
        f"warm authorizer call: {cpu * 1e6:,.0f} us CPU here ({args.calls:,} calls); at {settings.memory_mb} "
        f"MB Lambda gives {cpu_share:.2f} vCPU; plus {DYNAMODB_UPDATE_MS} ms for the UpdateItem (assumed)"
    )
    print(
        f"counter write, measured on DynamoDB Local: {counter.write_units} write unit(s) at {args.routes} "
        f"routes and {counter.days} days tallied; a heavy customer's item then holds "
        f"{counter.one_unit_up_to} routes at one write unit ({HEAVY_CREDITS:,} credits over "
        f"{HEAVY_REQUESTS:,} requests on each)"
    )
    size = ledger_record_size() if args.ledger else None
    if size is not None:
        print(
            f"usage ledger record, measured from the local gateway's records: {size.raw_bytes} B as sent to "
            f"Firehose, {size.stored_bytes:.1f} B per record gzipped in S3"
        )
    for api, gateway in (
        ("REST", PRICES["apigw_rest_per_million"]),
        ("HTTP", PRICES["apigw_http_per_million"]),
    ):
        lines = {f"API Gateway {api} API requests": gateway, **metering}
        total = sum(lines.values(), Decimal(0))
        print(f"\n{api} API, per 1,000,000 metered requests:")
        for label, amount in lines.items():
            print(f"  {label:<78} ${amount:.4f}")
        print(f"{api}: ${total:.2f} per million")
        if size is not None:
            ledger = ledger_costs(size, http=api == "HTTP")
            ledger_total = sum(ledger.values(), Decimal(0))
            print(f"  usage ledger ({api}):")
            for label, amount in ledger.items():
                print(f"    {label:<76} ${amount:.4f}")
            print(
                f"{api} usage ledger: ${ledger_total:.2f} per million; with metering: "
                f"${total + ledger_total:.2f} per million"
            )
    print(
        "\nAssumptions: us-east-1 on-demand prices read 2026-11, no free tier, API Gateway's first price "
        f"tier; key reads {KEY_READS_PER_REQUEST} per request; X-Ray samples {XRAY_SAMPLED:.0%} when active; "
        f"platform log lines {PLATFORM_LOG_BYTES} B per invocation unless the system log level is WARN+."
    )
    if size is not None:
        print(
            "Ledger: us-east-1 prices read 2026-11; a busy API (a partition's 64 MiB buffer fills before its "
            "interval; a quiet one writes up to 288 objects a day per partition instead, about $0.003 a day "
            "in PUTs and object charges whatever its volume); storage priced for the first month in S3 "
            "Standard (Standard-IA after 30 days, Glacier Instant Retrieval after 90); Athena queries extra "
            "($5 per TB scanned)."
        )


if __name__ == "__main__":
    main()
