"""Period close benchmark: N customers closed in-process against moto DynamoDB and the Stripe double.

Prints, for one whole-period close (``tollgate.billing.close.service.close_period``) and then for a re-run
of it:
  - Stripe calls per invoice (writes: create, add_lines, finalize; at most 3), and reads (searches apart);
  - DynamoDB requests per customer, by operation (counted with botocore's before-call event hook);
  - wall time per customer, and how it splits between DynamoDB (moto), Stripe (the double, over local
    HTTP) and everything else (rating, models, logging: the close's own work).

No assertions about timing: these are figures for one machine. moto and the double are both in-process
emulators, so absolute times say little about AWS or Stripe; the request counts carry over exactly.

Where the time goes (2-core machine): about 60 ms per customer, of which about 37 ms is moto (an UpdateItem
that returns the nested close record costs moto ~13 ms; a Query ~8 ms and growing with the table, because
moto's Query sorts every item of the table on each call), about 16 ms the double (3 local HTTP requests and
stripe-python's parsing of the invoice), and about 5 ms the close itself. 10,000 customers therefore take
about 14 minutes here, so the default is 2,000 (about 2.5 minutes); ``--customers 10000`` runs it all.
Customers are spread over tables of ``--table-size`` (default 100) so moto's per-Query sort stays constant;
with one table the run grows quadratically.

Run: .venv/bin/python benchmarks/period_close.py [--customers 2000] [--table-size 100]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from offline import go_offline

go_offline()

PERIOD = "2026-10"
CLOSE_AT = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
WRITES = ("invoices.create", "invoices.add_lines", "invoices.finalize")
DEFAULT_CUSTOMERS = 2_000
DEFAULT_TABLE_SIZE = 100


@dataclass
class DynamoCounter:
    """botocore hooks: every DynamoDB request, by operation, and the time spent in each operation."""

    requests: Counter[str] = field(default_factory=Counter)
    seconds: Counter[str] = field(default_factory=Counter)
    _started: dict[int, float] = field(default_factory=dict)

    def before(self, model: Any, **_: Any) -> None:
        self.requests[model.name] += 1
        self._started[id(model)] = time.perf_counter()

    def after(self, model: Any, **_: Any) -> None:
        started = self._started.pop(id(model), None)
        if started is not None:
            self.seconds[model.name] += time.perf_counter() - started


class TimedGateway:
    """The real Stripe gateway, timing every call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._inner, name)

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return target(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        return timed


def plans() -> list[Any]:
    from tollgate.domain.models import Plan, Tier

    return [
        Plan(id="payg", name="Pay as you go", price_per_credit=Decimal("0.00042")),
        Plan(
            id="team",
            name="Team",
            base_fee=Decimal("49"),
            included_credits=100_000,
            price_per_credit=Decimal("0.0005"),
        ),
        Plan(
            id="tiered",
            name="Tiered",
            price_per_credit=Decimal("0.001"),
            tiers=(
                Tier(up_to=1_000, price_per_credit=Decimal("0.001")),
                Tier(up_to=10_000, price_per_credit=Decimal("0.0005")),
                Tier(up_to=None, price_per_credit=Decimal("0.0001")),
            ),
        ),
        Plan(
            id="yen", name="Yen", currency="jpy", base_fee=Decimal("1000"), price_per_credit=Decimal("0.05")
        ),
    ]


@dataclass
class Tally:
    """One phase (the close, or its re-run) summed over every table."""

    label: str
    customers: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    invoices: int = 0
    calls: list[Any] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    dynamo_seconds: Counter[str] = field(default_factory=Counter)
    stripe_seconds: float = 0.0
    wall: float = 0.0


def run(customers: int, table_size: int) -> None:
    import boto3
    from moto import mock_aws

    from tollgate.billing.close.ledger import DynamoLedger
    from tollgate.billing.close.service import close_period
    from tollgate.billing.invoicing import StripeClientInvoicing
    from tollgate.dal import tablekeys as tk
    from tollgate.dal.schema import create_table
    from tollgate.dal.store import TollgateStore
    from tollgate.domain.models import Customer
    from tollgate_local.stripe_double import StripeDouble

    counter = DynamoCounter()
    tallies = [Tally("close"), Tally("re-run (every customer already closed)")]
    with mock_aws(), StripeDouble() as double:
        boto3.setup_default_session()  # after mock_aws, so that its clients carry the hooks below
        events = boto3.DEFAULT_SESSION.events  # type: ignore[union-attr]
        events.register("before-call.dynamodb", counter.before)
        events.register("after-call.dynamodb", counter.after)
        client = boto3.client("dynamodb")
        stripe = double.client()
        gateway = TimedGateway(StripeClientInvoicing(stripe))
        catalogue = plans()
        setup = 0.0
        for first in range(0, customers, table_size):
            started = time.perf_counter()
            table = f"tollgate-bench-{first // table_size}"
            create_table(client, table)
            store = TollgateStore(table)
            for plan in catalogue:
                store.put_plan(plan)
            with store.table.batch_writer() as usage:
                for index in range(first, min(first + table_size, customers)):
                    customer_id = f"c{index:06d}"
                    plan = catalogue[index % len(catalogue)]
                    store.put_customer(
                        Customer(
                            id=customer_id,
                            name=customer_id,
                            email=f"{customer_id}@bench.test",
                            plan_id=plan.id,
                            plan_version=plan.version,
                            stripe_customer_id=stripe.v1.customers.create(
                                # explicit prefix: the double's random one can be all digits, which it refuses
                                params={"name": customer_id, "invoice_prefix": f"TG{index:06d}"}
                            ).id,
                            created_at=datetime(2026, 1, 1, tzinfo=UTC),
                        )
                    )
                    credits = 0 if index % 10 == 0 else 1_000 + (index * 7_919) % 2_000_000
                    if credits:  # one customer in ten used nothing: no_charge, no Stripe call
                        counter_item = {**tk.counter_key(customer_id, PERIOD, 0), tk.CREDITS: credits}
                        usage.put_item(Item={**counter_item, tk.REQUESTS: 1})
            setup += time.perf_counter() - started

            ledger = DynamoLedger(store)
            for tally in tallies:
                calls_before = len(double.calls)
                requests_before, seconds_before = Counter(counter.requests), Counter(counter.seconds)
                stripe_before = gateway.seconds
                started = time.perf_counter()
                summary = close_period(ledger, gateway, PERIOD, now=CLOSE_AT)
                tally.wall += time.perf_counter() - started
                tally.customers += len(summary.customers)
                tally.statuses.update(str(c.status) for c in summary.customers)
                tally.invoices += sum(1 for c in summary.customers if c.stripe_invoice_id)
                tally.calls += double.calls[calls_before:]
                tally.requests += counter.requests - requests_before
                tally.dynamo_seconds += counter.seconds - seconds_before
                tally.stripe_seconds += gateway.seconds - stripe_before
            client.delete_table(TableName=table)
            print(f"  {min(first + table_size, customers):,} of {customers:,} customers closed", flush=True)
    print(f"setup (tables, plans, customers in Stripe and DynamoDB, usage): {setup:.1f} s")
    for tally in tallies:
        report(tally)


def report(tally: Tally) -> None:
    n = tally.customers
    statuses = ", ".join(f"{count:,} {status}" for status, count in sorted(tally.statuses.items()))
    print(f"\n== {tally.label}: {n:,} customers ({statuses})")

    writes_per_invoice: dict[str, Counter[str]] = defaultdict(Counter)
    operations: Counter[str] = Counter()
    for call in tally.calls:
        operations[call.operation] += 1
        if call.operation in WRITES and call.idempotency_key:
            writes_per_invoice[call.idempotency_key.split(":")[1]][call.operation] += 1
    most = max((sum(w.values()) for w in writes_per_invoice.values()), default=0)
    invoices = max(tally.invoices, 1)
    print(f"Stripe: {sum(operations.values()):,} calls for {tally.invoices:,} invoices")
    for operation in sorted(operations):
        count = operations[operation]
        print(f"  {operation:<20} {count:>8,}   {count / invoices:.2f} per invoice")
    print(
        f"  writes per invoice: at most {most}; invoices made by more than 3 writes: "
        f"{sum(1 for w in writes_per_invoice.values() if sum(w.values()) > 3)}"
    )
    print(f"  searches: {operations['invoices.search']:,} (separately: reads, rate-limited apart by Stripe)")

    total = sum(tally.requests.values())
    print(f"DynamoDB: {total:,} requests, {total / n:.2f} per customer")
    for operation, count in tally.requests.most_common():
        per_request = tally.dynamo_seconds[operation] / count * 1000
        print(f"  {operation:<20} {count:>8,}   {count / n:.2f} per customer   {per_request:6.2f} ms each")

    dynamo = sum(tally.dynamo_seconds.values())
    rest = tally.wall - dynamo - tally.stripe_seconds
    print(f"Wall time: {tally.wall:.1f} s, {tally.wall / n * 1000:.2f} ms per customer, of which")
    for part, seconds in (
        ("DynamoDB (moto)", dynamo),
        ("Stripe (double)", tally.stripe_seconds),
        ("rest", rest),
    ):
        print(f"  {part:<20} {seconds / n * 1000:8.2f} ms per customer  {seconds / tally.wall:>5.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--customers",
        type=int,
        default=DEFAULT_CUSTOMERS,
        help=f"customers to close (default {DEFAULT_CUSTOMERS:,}; 10,000 take about 14 minutes here)",
    )
    parser.add_argument(
        "--table-size",
        type=int,
        default=DEFAULT_TABLE_SIZE,
        help=f"customers per moto table (default {DEFAULT_TABLE_SIZE}): moto's Query sorts the whole table",
    )
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)  # one warning per customer would be the benchmark's own cost
    run(args.customers, max(1, args.table_size))


if __name__ == "__main__":
    main()
