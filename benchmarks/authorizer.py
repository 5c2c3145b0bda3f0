"""Authorizer benchmark: what metering adds on top of the DynamoDB write it cannot avoid.

Two ratios, each against a baseline measured in the same run on the same machine:
  request ratio = warm authorizer call / bare boto3 UpdateItem, same moto DynamoDB    target <= 1.15
  import ratio  = `import tollgate.metering.handler` / `import boto3`, fresh interpreters   target <= 1.3
  prepaid ratio = warm request of a prepaid customer (the draw) / of an arrears one          target <= 1.05
and the DynamoDB requests each warm authorized request makes (target: exactly 1, arrears, prepaid and with a
customer's budget alike).

The bare UpdateItem is the same write (same expression, same client configuration): the ratio is what the
authorizer's own work (event parsing, key hashing, cache lookup, decision, policy) adds to the write.

Run: .venv/bin/python benchmarks/authorizer.py [--requests 2000] [--rounds 7] [--imports 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from offline import ROOT, go_offline

go_offline()


def per_request_seconds(requests: int, rounds: int) -> tuple[float, float, float, dict[str, float]]:
    import boto3
    from moto import mock_aws

    from tests.events import rest_event
    from tollgate.accounts.budgets import set_budget
    from tollgate.accounts.keys import issue_key
    from tollgate.accounts.prepaid import add_credits
    from tollgate.dal import tablekeys as tk
    from tollgate.dal.counter_item import route_code, route_tally
    from tollgate.dal.schema import create_table
    from tollgate.dal.store import TollgateStore
    from tollgate.domain.models import Customer, Plan
    from tollgate.metering import handler as authorizer
    from tollgate.metering.settings import MeteringSettings
    from tollgate_local.lambda_context import LocalLambdaContext

    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, "tollgate-bench")
        store = TollgateStore("tollgate-bench")
        now = datetime.now(UTC)
        plan = store.put_plan(
            Plan(id="bench", name="Bench", price_per_credit="0.001", route_costs={"GET /v1/search": 1})
        )
        store.put_customer(
            Customer(
                id="bench",
                name="Bench",
                email="b@bench.test",
                plan_id=plan.id,
                plan_version=1,
                created_at=now,
            )
        )
        prepaid_plan = store.put_plan(
            Plan(
                id="bench-prepaid",
                name="Bench prepaid",
                billing="prepaid",
                price_per_credit="0.001",
                route_costs={"GET /v1/search": 1},
            )
        )
        store.put_customer(
            Customer(
                id="bench-prepaid",
                name="Bench prepaid",
                email="p@bench.test",
                plan_id=prepaid_plan.id,
                plan_version=1,
                created_at=now,
            )
        )
        add_credits(store, "bench-prepaid", credits=10**12, reference="bench", now=now)
        store.put_customer(  # a customer with a budget of their own: the condition rides on the same write
            Customer(id="bench-budget", name="Bench budget", email="g@bench.test", plan_id=plan.id,
                     plan_version=1, created_at=now)
        )  # fmt: skip
        set_budget(store, "bench-budget", Decimal(10**9), now=now)
        budget_key = issue_key(store, "bench-budget", now=now - timedelta(days=1)).key
        key = issue_key(store, "bench", now=now - timedelta(days=1)).key
        prepaid_key = issue_key(store, "bench-prepaid", now=now - timedelta(days=1)).key
        epoch_ms = int(now.timestamp() * 1000)
        event = rest_event(headers={"x-api-key": key}, epoch_ms=epoch_ms)
        prepaid_event = rest_event(headers={"x-api-key": prepaid_key}, epoch_ms=epoch_ms)
        budget_event = rest_event(headers={"x-api-key": budget_key}, epoch_ms=epoch_ms)
        handler_client = boto3.client("dynamodb", config=authorizer.CLIENT_CONFIG)
        calls = [0]
        handler_client.meta.events.register(
            "before-call.dynamodb", lambda **_: calls.__setitem__(0, calls[0] + 1)
        )
        handler = authorizer.make_handler(
            authorizer.deps_from(MeteringSettings.from_env(), client=handler_client)
        )
        context = LocalLambdaContext(function_name="tollgate-bench")
        for warming in (
            event,
            prepaid_event,
            budget_event,
        ):  # the key lookups and the route registry writes happen here
            assert handler(warming, context)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        per_request: dict[str, float] = {}
        for name, sent in (("arrears", event), ("prepaid", prepaid_event), ("budgeted", budget_event)):
            calls[0] = 0
            for _ in range(100):
                handler(sent, context)
            per_request[name] = calls[0] / 100

        bare_request = {
            "TableName": "tollgate-bench",
            "Key": {name: {"S": value} for name, value in tk.counter_key("baseline", "2026-11", 0).items()},
            "UpdateExpression": "ADD #c :c, #n :one, #r :tally",
            "ExpressionAttributeNames": {
                "#c": "credits",
                "#n": "requests",
                "#r": route_code("GET /v1/search"),
            },
            "ExpressionAttributeValues": {
                ":c": {"N": "1"},
                ":one": {"N": "1"},
                ":tally": {"N": route_tally(1)},
            },
            "ReturnValues": "UPDATED_NEW",
        }
        bare_client = boto3.client("dynamodb", config=authorizer.CLIENT_CONFIG)
        bare_client.update_item(**bare_request)

        def timed(call: Callable[[], object]) -> float:
            start = time.perf_counter()
            for _ in range(requests):
                call()
            return (time.perf_counter() - start) / requests

        def authorize() -> object:
            return handler(event, context)

        def authorize_prepaid() -> object:
            return handler(prepaid_event, context)

        def write() -> object:
            return bare_client.update_item(**bare_request)

        warm, bare, prepaid = [], [], []
        for round_ in range(rounds):  # interleaved, alternating order (ABBA): drift hits every side alike
            if round_ % 2 == 0:
                warm.append(timed(authorize))
                bare.append(timed(write))
                prepaid.append(timed(authorize_prepaid))
            else:
                prepaid.append(timed(authorize_prepaid))
                bare.append(timed(write))
                warm.append(timed(authorize))
        print("per round (us): warm", [round(w * 1e6) for w in warm], "bare", [round(b * 1e6) for b in bare])
        print("                prepaid", [round(p * 1e6) for p in prepaid])
        counted = store.read_usage("bench", event_period(now)).requests
        assert counted == rounds * requests + 101, counted
        drawn = store.read_usage("bench-prepaid", event_period(now)).requests
        assert drawn == rounds * requests + 101, drawn
        assert store.read_balance("bench-prepaid").drawn == drawn
        return statistics.median(warm), statistics.median(bare), statistics.median(prepaid), per_request


def event_period(now: datetime) -> str:
    return f"{now.year:04d}-{now.month:02d}"


def import_seconds(statement: str, runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'functions'}", "PYTHONDONTWRITEBYTECODE": "0"}
    code = f"import time; s = time.perf_counter(); {statement}; print(time.perf_counter() - s)"
    samples = []
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        samples.append(float(done.stdout.strip()))
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--imports", type=int, default=15)
    args = parser.parse_args()

    warm, bare, prepaid, per_request = per_request_seconds(args.requests, args.rounds)
    import_seconds("import tollgate.metering.handler", 2)  # warm the bytecode caches of both sides first
    import_seconds("import boto3", 2)
    imports_authorizer, imports_boto3 = [], []
    for _ in range(3):
        imports_authorizer.append(import_seconds("import tollgate.metering.handler", args.imports // 3 or 1))
        imports_boto3.append(import_seconds("import boto3", args.imports // 3 or 1))
    auth_import, boto3_import = statistics.median(imports_authorizer), statistics.median(imports_boto3)

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores;",
        f"{args.rounds} rounds x {args.requests} requests, interleaved",
    )
    print(f"warm authorizer request      {warm * 1e6:9.1f} us")
    print(f"bare boto3 UpdateItem        {bare * 1e6:9.1f} us")
    print(f"request ratio                {warm / bare:9.3f}   (target <= 1.15)")
    print(f"warm prepaid request         {prepaid * 1e6:9.1f} us")
    print(f"prepaid ratio                {prepaid / warm:9.3f}   (target <= 1.05)")
    for name, count in per_request.items():
        print(f"DynamoDB requests per warm {name} request {count:5.2f}   (target 1)")
    print(f"import tollgate.metering.handler    {auth_import * 1e3:9.1f} ms")
    print(f"import boto3                 {boto3_import * 1e3:9.1f} ms")
    print(f"import ratio                 {auth_import / boto3_import:9.3f}   (target <= 1.3)")


if __name__ == "__main__":
    main()
