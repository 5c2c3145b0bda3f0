"""Close starter benchmark: the real handler over DynamoDB Local and a local SQS endpoint.

Loads N customers into a table on DynamoDB Local, then runs the starter's handler once (pages of
``--page-size``, ``--threads`` SendMessageBatch calls in flight) with a real boto3 SQS client pointed at a
minimal SQS endpoint in another process (it answers every SendMessageBatch with success and the MD5s boto3
checks). Prints:
  - customers, Query pages, close-run writes and SendMessageBatch calls (counted with botocore's hooks);
  - wall time, and the time spent inside each AWS operation;
  - the starter process's CPU time (``time.process_time``: boto3 serialising, signing and parsing, and the
    starter's own work; DynamoDB Local and the SQS endpoint run in other processes), per 1,000 customers and
    per SendMessageBatch call;
  - what that CPU means for 1,000,000 customers on Lambda's one vCPU (1,769 MB), where it is the bound:
    SendMessageBatch's own latency (10-20 ms in AWS) is hidden by the calls in flight.

No assertions: these are figures for one machine. DynamoDB Local's latency says little about DynamoDB's;
the request counts, and the client's CPU per request, carry over.

Run: .venv/bin/python benchmarks/close_starter.py [--customers 20000] [--page-size 1000] [--threads 8]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from offline import ROOT, go_offline

go_offline()
sys.path.insert(0, str(ROOT / "tools" / "tollgate-local" / "src"))

PERIOD = "2026-10"
DEFAULT_CUSTOMERS = 20_000
MILLION = 1_000_000


class CannedSqs(BaseHTTPRequestHandler):
    """SQS's JSON protocol, SendMessageBatch only: every entry succeeds."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer: dict[str, Any] = {"Successful": [], "Failed": []}
        for entry in request.get("Entries", []):
            answer["Successful"].append(
                {
                    "Id": entry["Id"],
                    "MessageId": str(uuid.uuid4()),
                    "MD5OfMessageBody": hashlib.md5(entry["MessageBody"].encode()).hexdigest(),
                }
            )
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@dataclass
class Calls:
    """botocore hooks: requests and the seconds spent in each operation (summed over threads)."""

    requests: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    _started: dict[Any, float] = field(default_factory=dict)

    def before(self, model: Any, context: Any = None, **_: Any) -> None:
        self.requests[model.name] += 1
        if context is not None:
            context["bench_started"] = time.perf_counter()

    def after(self, model: Any, context: Any = None, **_: Any) -> None:
        if context is not None and "bench_started" in context:
            self.seconds[model.name] += time.perf_counter() - context["bench_started"]

    def watch(self, client: Any) -> None:
        client.meta.events.register("before-call", self.before)
        client.meta.events.register("after-call", self.after)


@dataclass(frozen=True)
class Context:
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:bench-close-starter"
    function_name: str = "bench-close-starter"
    memory_limit_in_mb: int = 1769
    aws_request_id: str = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def load_customers(store: Any, count: int) -> None:
    """``count`` customers from ``c0000000``, 25 a BatchWriteItem, in the items the store writes."""
    from tollgate.domain.models import Customer

    joined = datetime(2026, 9, 1, tzinfo=UTC)
    with store.table.batch_writer() as batch:
        for index in range(count):
            customer = Customer(
                id=f"c{index:07d}",
                name=f"Customer {index}",
                email=f"billing@c{index}.test",
                plan_id="payg",
                plan_version=1,
                created_at=joined,
            )
            batch.put_item(Item=store._customer_item(customer))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=DEFAULT_CUSTOMERS)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--serve-sqs", type=int, help=argparse.SUPPRESS)  # the endpoint's own process
    args = parser.parse_args()
    if args.serve_sqs:
        ThreadingHTTPServer(("127.0.0.1", args.serve_sqs), CannedSqs).serve_forever()
        return

    import boto3
    from botocore.config import Config

    from tollgate.billing.close import starter
    from tollgate.dal.close_runs import DynamoCloseRuns
    from tollgate.dal.schema import create_table
    from tollgate.dal.store import TollgateStore
    from tollgate_local.dynamodb_local import DynamoDBLocal, free_port

    dynamodb_local = DynamoDBLocal().start()
    port = free_port()
    endpoint = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--serve-sqs", str(port)])
    try:
        create_table(dynamodb_local.admin, "tollgate-bench")
        resource = boto3.resource("dynamodb", endpoint_url=dynamodb_local.endpoint_url)
        store = TollgateStore("tollgate-bench", dynamodb=resource)
        started = time.perf_counter()
        load_customers(store, args.customers)
        loaded = time.perf_counter() - started
        print(f"loaded {args.customers:,} customers into DynamoDB Local in {loaded:.1f} s")
        sqs = boto3.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{port}",
            config=Config(max_pool_connections=max(10, args.threads)),
        )
        calls = Calls()
        calls.watch(sqs)
        calls.watch(resource.meta.client)
        handle = starter.make_handler(
            starter.Deps(
                store,
                sqs,
                f"http://127.0.0.1:{port}/123456789012/tollgate-close",
                runs=DynamoCloseRuns(store.table),
                page_size=args.page_size,
                send_threads=args.threads,
            )
        )
        time.sleep(0.5)  # the endpoint is listening

        cpu, wall = time.process_time(), time.perf_counter()
        answer = handle({"period": PERIOD}, Context())
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        endpoint.terminate()
        endpoint.wait()
        dynamodb_local.stop()

    sends = calls.requests["SendMessageBatch"]
    print(f"answer: {answer}")
    print(
        f"requests: {sends:,} SendMessageBatch, {calls.requests['Query']:,} Query, "
        f"{calls.requests['PutItem']:,} PutItem, {calls.requests['GetItem']:,} GetItem"
    )
    print(f"wall: {wall:.2f} s ({wall / args.customers * 1000:.2f} ms per customer)")
    for name in ("SendMessageBatch", "Query", "PutItem"):
        per = calls.seconds[name] / max(1, calls.requests[name]) * 1000
        print(f"  in {name}: {calls.seconds[name]:.2f} s over all threads, {per:.1f} ms per call")
    per_thousand = cpu / args.customers * 1000
    print(
        f"starter CPU: {cpu:.2f} s = {per_thousand * 1000:.0f} ms per 1,000 customers, "
        f"{cpu / max(1, sends) * 1000:.2f} ms per SendMessageBatch call (all of the process's CPU)"
    )
    print(
        f"1,000,000 customers on one vCPU: about {per_thousand * MILLION / 1000:.0f} s of CPU "
        f"({MILLION // 10:,} SendMessageBatch calls, {MILLION // args.page_size:,} pages)"
    )


if __name__ == "__main__":
    main()
