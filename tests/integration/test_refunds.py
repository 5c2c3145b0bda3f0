"""Bill only what succeeded, on Amazon DynamoDB Local: requests counted by the real authorizer, their ledger
records built from the context it returned (as API Gateway's access log writes them), and the failed ones
refunded from every tally they were counted on, once per request id, on a sharded counter and on the
prepaid wallet, exact under concurrent counting; the refund function end to end, from an S3 notification on
SQS to the counters (S3 in moto, DynamoDB on DynamoDB Local)."""

from __future__ import annotations

import gzip
import itertools
import json
import random
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.config import Config

from tests.conftest import CONTEXT, NOW, TABLE, Authorizer, make_authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits
from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import (
    day_of,
    is_route_code,
    read_route_tally,
    route_code,
    segment_of,
    wallet_attribute,
)
from tollgate.dal.refunds import RefundLedger, RefundNotCountedError, refund_key
from tollgate.dal.store import TollgateStore
from tollgate.domain.ledger import ACCESS_LOG_FORMAT, LedgerRecord, record_line
from tollgate.domain.models import Plan, RouteUsage
from tollgate.domain.prepaid import TopUpSource
from tollgate.domain.refunds import Refund, refund_of
from tollgate.expiry.service import expiring_soon, settle_due_lots
from tollgate.metering import handler as metering
from tollgate.metering.decide import authorize
from tollgate.metering.events import parse_event
from tollgate.metering.settings import MeteringSettings
from tollgate.refunds import handler as refunds_handler
from tollgate.refunds.service import (
    NOT_COUNTED,
    PLAN_UNKNOWN,
    RefundRun,
    StorePlans,
    object_lines,
    parse_records,
    refund_failed,
)

pytestmark = pytest.mark.dynamodb_local

PERIOD = "2026-11"
GENERATE = ("POST", "/v1/generate")  # 25 credits on make_plan's plan
SEARCH = ("GET", "/v1/search")  # 1 credit
COST = {GENERATE: 25, SEARCH: 1}
REFUNDING = make_plan(refund_statuses=["5xx"])
PREPAID = make_plan(
    id="credits",
    name="Credits",
    billing="prepaid",
    price_per_credit=Decimal("0.002"),
    top_up_url="https://api.example.test/billing/credits",
    refund_statuses=["5xx"],
)
AUTHORIZER = "$context.authorizer."
BUCKET = "tollgate-ledger"
_ids = itertools.count()


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def on_day(day: int, minute: int = 0) -> int:
    return ms(datetime(2026, 11, day, 9, minute, tzinfo=UTC))


def customer_key(store: TollgateStore, plan: Plan, customer_id: str = "acme", **overrides: Any) -> str:
    if (plan.id, plan.version) not in {(p.id, p.version) for p in store.list_plans()}:
        store.put_plan(plan)
    store.put_customer(
        make_customer(plan, id=customer_id, stripe_customer_id=f"cus_{customer_id}", **overrides)
    )
    return issue_key(store, customer_id, now=NOW - timedelta(days=20)).key


def ledger_record(
    context: dict[str, Any], *, request_id: str, at: int, route: tuple[str, str], status: int
) -> LedgerRecord:
    """The access log's record of a request whose authorizer returned ``context``: every
    ``$context.authorizer.*`` variable of the format read from it, as API Gateway does."""
    method, resource = route
    values: dict[str, object] = {
        "requestId": request_id,
        "requestTime": at,
        "httpMethod": method,
        "resourcePath": resource,
        "status": status,
        "integrationStatus": status,
    }
    for name, variable in ACCESS_LOG_FORMAT.items():
        if variable.startswith(AUTHORIZER):
            values[name] = context.get(variable.removeprefix(AUTHORIZER))
    return LedgerRecord.parse(record_line(values))


def serve(
    authorizer: Authorizer, key: str, route: tuple[str, str], *, status: int, at: int | None = None
) -> LedgerRecord:
    """One request through the authorizer, answered ``status`` by the backend when allowed (403 when not):
    its ledger record."""
    at = on_day(15) if at is None else at
    request_id = f"req-{next(_ids):05d}"
    method, resource = route
    event = rest_event(method, resource, headers={"x-api-key": key}, epoch_ms=at, request_id=request_id)
    answer = authorizer(event)
    allowed = answer["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    return ledger_record(
        answer["context"], request_id=request_id, at=at, route=route, status=status if allowed else 403
    )


def counted(records: list[LedgerRecord]) -> list[LedgerRecord]:
    return [r for r in records if r.allowed and r.counted_credits]


def route_of(record: LedgerRecord) -> str:
    return f"{record.http_method} {record.resource_path}"


def tallies(records: list[LedgerRecord]) -> tuple[dict[str, RouteUsage], dict[int, RouteUsage]]:
    """What ``records`` add up to per route and per day of the month: (credits, requests)."""
    routes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    days: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        for sums in (routes[route_of(r)], days[r.request_time.day]):
            sums[0] += r.counted_credits
            sums[1] += 1
    return (
        {name: RouteUsage(credits=c, requests=n) for name, (c, n) in routes.items()},
        {day: RouteUsage(credits=c, requests=n) for day, (c, n) in days.items()},
    )


def less(tally: dict[Any, RouteUsage], refunded: list[LedgerRecord], by: Any) -> dict[Any, RouteUsage]:
    """``tally`` with the credits (not the requests) of ``refunded`` taken off."""
    out = dict(tally)
    for r in refunded:
        line = out[by(r)]
        out[by(r)] = RouteUsage(credits=line.credits - r.counted_credits, requests=line.requests)
    return out


def a_refund(record: LedgerRecord, plan: Plan) -> Refund:
    refund = refund_of(record, plan)
    assert isinstance(refund, Refund), refund
    return refund


def raw_item(key: dict[str, str]) -> dict[str, Any]:
    return boto3.resource("dynamodb").Table(TABLE).get_item(Key=key, ConsistentRead=True).get("Item", {})


def assert_no_tally_negative(item: dict[str, Any]) -> None:
    for name, value in item.items():
        if name in (tk.PK, tk.SK):
            continue
        if is_route_code(name) or day_of(name) is not None:
            credits, requests = read_route_tally(value)  # raises for a negative tally
            assert credits >= 0, name
            assert requests >= 0, name
        elif segment_of(name) is not None or name in (
            tk.CREDITS,
            tk.REQUESTS,
            "refunded",
            "refunded_requests",
        ):
            assert value >= 0, name


# -- refunds on the counter -------------------------------------------------------------------------------
def test_a_refund_takes_the_credits_back_from_every_tally_and_leaves_the_requests(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, REFUNDING)
    calls = [
        (GENERATE, 14, 200),
        (GENERATE, 14, 502),
        (GENERATE, 15, 503),
        (SEARCH, 14, 500),
        (SEARCH, 15, 200),
        (SEARCH, 15, 404),
        (SEARCH, 15, 504),
        (GENERATE, 16, 201),
    ]
    records = [serve(authorizer, key, route, status=status, at=on_day(day)) for route, day, status in calls]
    assert counted(records) == records
    routes, days = tallies(records)
    before = store.read_usage("acme", PERIOD)
    assert (before.credits, before.requests) == (sum(r.counted_credits for r in records), len(records))
    assert (before.routes, before.days) == (routes, days)
    failed = [r for r in records if r.status is not None and r.status >= 500]

    run = refund_failed(records, StorePlans(store), RefundLedger(store), now=NOW)

    assert sorted(refund.request_id for refund in run.refunded) == sorted(r.request_id for r in failed)
    assert (run.duplicates, run.skipped, run.malformed) == (0, [], 0)
    refunded_credits = sum(r.counted_credits for r in failed)
    assert run.credits == refunded_credits
    after = store.read_usage("acme", PERIOD)
    assert after.credits == before.credits - refunded_credits
    assert after.requests == before.requests
    assert after.routes == less(routes, failed, route_of)
    assert after.days == less(days, failed, lambda r: r.request_time.day)
    assert after.segments == {1: before.segments[1] - refunded_credits}
    assert after.refunded == RouteUsage(credits=refunded_credits, requests=len(failed))
    markers = RefundLedger(store).list("acme", PERIOD)
    assert sorted((m.request_id, m.credits, m.status, m.route_code) for m in markers) == sorted(
        (r.request_id, r.counted_credits, r.status, route_code(route_of(r))) for r in failed
    )
    assert all(m.refunded_at == NOW for m in markers)
    assert_no_tally_negative(raw_item(tk.counter_key("acme", PERIOD, 0)))


def test_the_same_refund_applied_twice_refunds_once(store: TollgateStore, authorizer: Authorizer) -> None:
    key = customer_key(store, REFUNDING)
    records = [serve(authorizer, key, GENERATE, status=503) for _ in range(2)] + [
        serve(authorizer, key, SEARCH, status=200)
    ]
    refund = a_refund(records[0], REFUNDING)
    ledger = RefundLedger(store)

    assert ledger.apply(refund, at=NOW) is True
    assert ledger.apply(refund, at=NOW + timedelta(minutes=5)) is False
    again = refund_failed(records, StorePlans(store), ledger, now=NOW)  # the object delivered again

    assert [r.request_id for r in again.refunded] == [records[1].request_id]
    assert again.duplicates == 1
    usage = store.read_usage("acme", PERIOD)
    assert (usage.credits, usage.requests) == (1, 3)
    assert usage.refunded == RouteUsage(credits=50, requests=2)
    assert [m.refunded_at for m in ledger.list("acme", PERIOD) if m.request_id == refund.request_id] == [NOW]
    assert refund_failed(records, StorePlans(store), ledger, now=NOW).duplicates == 2  # and again: nothing


def test_four_consumers_applying_the_same_refund_at_once_refund_it_once(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, REFUNDING)
    records = [serve(authorizer, key, GENERATE, status=502) for _ in range(3)]
    refunds = [a_refund(r, REFUNDING) for r in records]
    start = threading.Barrier(4)
    outcomes: list[list[bool]] = [[] for _ in range(4)]

    def consumer(index: int) -> None:
        ledger = RefundLedger(TollgateStore(TABLE))  # each its own connection, as each Lambda's
        start.wait()
        for refund in refunds:
            outcomes[index].append(ledger.apply(refund, at=NOW))

    threads = [threading.Thread(target=consumer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    for n in range(len(refunds)):
        assert sorted(outcome[n] for outcome in outcomes) == [False, False, False, True]
    usage = store.read_usage("acme", PERIOD)
    assert (usage.credits, usage.requests) == (0, 3)
    assert usage.refunded == RouteUsage(credits=75, requests=3)
    assert len(RefundLedger(store).list("acme", PERIOD)) == 3
    assert_no_tally_negative(raw_item(tk.counter_key("acme", PERIOD, 0)))


def test_on_a_sharded_counter_each_refund_comes_off_the_shard_its_record_names(
    store: TollgateStore, aws: None
) -> None:
    key = customer_key(store, REFUNDING, counter_shards=3)
    client = boto3.client("dynamodb", config=metering.CLIENT_CONFIG)
    deps = metering.deps_from(MeteringSettings(TABLE), client=client, clock=lambda: on_day(15) / 1000)
    shards = itertools.cycle([0, 1, 2])
    # shard 0: every request fails (its tallies go to 0 credits); shard 1: some; shard 2: none
    plan = [(GENERATE, 503), (GENERATE, 200), (SEARCH, 201)] * 2 + [
        (SEARCH, 500),
        (GENERATE, 502),
        (SEARCH, 200),
    ]
    records = []
    for route, status in plan:
        at = on_day(15)
        request_id = f"req-{next(_ids):05d}"
        event = rest_event(*route, headers={"x-api-key": key}, epoch_ms=at, request_id=request_id)
        decision = authorize(
            parse_event(event, at), deps.keys, deps.counter, pick_shard=lambda _: next(shards)
        )
        assert decision.allowed
        records.append(
            ledger_record(decision.context, request_id=request_id, at=at, route=route, status=status)
        )
    assert [r.shard for r in records] == [0, 1, 2] * 3
    failed = [r for r in records if r.status is not None and r.status >= 500]
    assert {r.shard for r in failed} == {0, 1}

    run = refund_failed(records, StorePlans(store), RefundLedger(store), now=NOW)

    assert len(run.refunded) == len(failed)
    for shard in range(3):
        item = raw_item(tk.counter_key("acme", PERIOD, shard))
        on_shard = [r for r in records if r.shard == shard]
        refunded = [r for r in failed if r.shard == shard]
        assert item[tk.CREDITS] == sum(r.counted_credits for r in on_shard) - sum(
            r.counted_credits for r in refunded
        )
        assert item[tk.REQUESTS] == len(on_shard)
        assert item.get("refunded", 0) == sum(r.counted_credits for r in refunded)
        assert item.get("refunded_requests", 0) == len(refunded)
        assert_no_tally_negative(item)
    usage = store.read_usage("acme", PERIOD, shards=3)
    routes, _ = tallies(records)
    assert usage.credits == sum(r.counted_credits for r in records) - run.credits
    assert usage.requests == len(records)
    assert usage.routes == less(routes, failed, route_of)
    assert usage.refunded == RouteUsage(credits=run.credits, requests=len(failed))


# -- the prepaid wallet -----------------------------------------------------------------------------------
def test_a_prepaid_refund_gives_the_balance_its_credits_back_to_draw_again(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, PREPAID)
    add_credits(store, "acme", credits=100, reference="pi_1", now=NOW)
    records = [serve(authorizer, key, GENERATE, status=status) for status in (503, 200, 502, 200, 503)]
    assert [r.allowed for r in records] == [True] * 4 + [False]  # the fifth: the balance is spent
    assert all(r.shard is None for r in records)  # counted on the wallet, no shard
    assert store.read_balance("acme").credits == 0

    run = refund_failed(records, StorePlans(store), RefundLedger(store), now=NOW)

    assert [r.request_id for r in run.refunded] == [records[0].request_id, records[2].request_id]
    assert all(refund.prepaid for refund in run.refunded)
    balance = store.read_balance("acme")
    # the refunded credits come back as lots of their own (bought with the balance): drawn stays what was
    # drawn, so the lots' allocation (expiry) is untouched
    assert (balance.credits, balance.bought, balance.drawn) == (50, 150, 100)
    assert (
        sorted(
            (lot.source, lot.credits, lot.expires_at)
            for lot in store.list_top_ups("acme")
            if lot.reference != "pi_1"
        )
        == [(TopUpSource.REFUND, 25, None)] * 2
    )
    notes = sorted(lot.note or "" for lot in store.list_top_ups("acme") if lot.source is TopUpSource.REFUND)
    assert notes == sorted(
        f"refund of request {records[i].request_id} ({s})" for i, s in ((0, 503), (2, 502))
    )
    usage = store.read_usage("acme", PERIOD)
    assert (usage.credits, usage.requests) == (50, 4)
    assert usage.routes == {"POST /v1/generate": RouteUsage(credits=50, requests=4)}
    assert usage.days == {15: RouteUsage(credits=50, requests=4)}
    assert usage.segments == {1: 50}
    assert usage.refunded == RouteUsage(credits=50, requests=2)
    wallet = raw_item(tk.wallet_key("acme"))
    assert wallet[wallet_attribute(PERIOD, "refunded")] == 50
    assert wallet[wallet_attribute(PERIOD, "refunded_requests")] == 2
    assert not [name for name in wallet if name.startswith("refund")]  # every counter attribute period-tagged
    assert not raw_item(tk.counter_key("acme", PERIOD, 0))  # nothing on a counter item

    after = [serve(authorizer, key, GENERATE, status=200) for _ in range(3)]

    assert [r.allowed for r in after] == [True, True, False]  # the 50 refunded credits, drawn again
    assert store.read_balance("acme").credits == 0
    assert store.read_usage("acme", PERIOD).credits == 100


def test_a_prepaid_refund_after_its_lot_expired_comes_back_as_a_lot_of_its_own(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, PREPAID)
    add_credits(store, "acme", credits=50, reference="soon", now=NOW - timedelta(days=1), expires_in_days=1)
    add_credits(
        store, "acme", credits=100, reference="later", now=NOW - timedelta(days=1), expires_in_days=10
    )
    drawn = [serve(authorizer, key, GENERATE, status=503, at=ms(NOW - timedelta(minutes=m))) for m in (3, 2)]
    assert all(r.allowed for r in drawn)  # the 50 credits of the lot expiring first
    settled, left = settle_due_lots(store, "acme", now=NOW + timedelta(minutes=1))
    assert ([(s.reference, s.expired) for s in settled], left) == ([("soon", 0)], False)

    # the ledger object lands minutes later (Firehose's buffer): both requests refunded
    run = refund_failed(drawn, StorePlans(store), RefundLedger(store), now=NOW + timedelta(minutes=5))
    assert run.credits == 50
    assert store.read_balance("acme").credits == 150

    lots = {lot.reference: lot for lot in store.list_top_ups("acme")}
    refunded = [lot for lot in lots.values() if lot.source is TopUpSource.REFUND]
    assert sorted(lot.credits for lot in refunded) == [25, 25]  # never expiring
    assert all(lot.expires_at is None for lot in refunded)
    assert lots["soon"].expired_credits == 0  # the settled lot stays as it was settled
    # the "later" lot's 100 credits are all unused and still expire; the refunded ones do not
    assert expiring_soon(store, "acme", NOW + timedelta(minutes=6)) == [(lots["later"].expires_at, 100)]
    settled, left = settle_due_lots(store, "acme", now=NOW + timedelta(days=10))
    assert ([(s.reference, s.expired) for s in settled], left) == ([("later", 100)], False)
    assert store.read_balance("acme").credits == 50  # the refunded credits are kept


# -- a record the counter does not hold -------------------------------------------------------------------
@pytest.mark.parametrize(
    "tampered",
    [
        pytest.param({"credits": 26}, id="more-credits"),
        pytest.param({"credits": 1_000}, id="far-more-credits"),
        pytest.param({"routeCode": route_code("GET /v1/other")}, id="other-route"),
        pytest.param({"requestTime": on_day(16)}, id="other-day"),
        pytest.param({"segment": 2}, id="other-segment"),
        pytest.param({"shard": 1}, id="other-shard"),
        pytest.param({"customerId": "globex"}, id="other-customer"),
    ],
)
def test_a_record_claiming_credits_its_counter_does_not_hold_changes_nothing(
    store: TollgateStore, authorizer: Authorizer, tampered: dict[str, object]
) -> None:
    key = customer_key(store, REFUNDING)
    genuine = serve(authorizer, key, GENERATE, status=503)
    serve(authorizer, key, SEARCH, status=200)
    forged = LedgerRecord.parse(record_line({**genuine.model_dump(by_alias=True), **tampered}))
    refund = a_refund(forged, REFUNDING)
    counter_before = raw_item(tk.counter_key("acme", PERIOD, 0))

    with pytest.raises(RefundNotCountedError):
        RefundLedger(store).apply(refund, at=NOW)

    assert raw_item(tk.counter_key("acme", PERIOD, 0)) == counter_before
    assert not raw_item(refund_key(refund.customer_id, refund.period, refund.request_id))  # no marker
    assert refund.shard is not None
    if (refund.customer_id, refund.shard) != ("acme", 0):  # no counter item made where none was
        assert not raw_item(tk.counter_key(refund.customer_id, PERIOD, refund.shard))
    run = refund_failed([forged], StorePlans(store), RefundLedger(store), now=NOW)
    assert (run.refunded, run.skipped) == ([], [(forged.request_id, NOT_COUNTED)])
    assert RefundLedger(store).apply(a_refund(genuine, REFUNDING), at=NOW) is True
    assert store.read_usage("acme", PERIOD).refunded == RouteUsage(credits=25, requests=1)


def test_a_prepaid_record_claiming_more_than_was_drawn_changes_nothing(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, PREPAID)
    add_credits(store, "acme", credits=100, reference="pi_1", now=NOW)
    genuine = serve(authorizer, key, GENERATE, status=503)
    forged = LedgerRecord.parse(record_line({**genuine.model_dump(by_alias=True), "credits": 60}))
    refund = a_refund(forged, PREPAID)
    wallet_before = raw_item(tk.wallet_key("acme"))

    with pytest.raises(RefundNotCountedError):
        RefundLedger(store).apply(refund, at=NOW)

    assert raw_item(tk.wallet_key("acme")) == wallet_before
    assert store.read_balance("acme").credits == 75
    assert RefundLedger(store).list("acme", PERIOD) == []


# -- concurrency ------------------------------------------------------------------------------------------
def test_refunds_applied_while_eight_authorizers_count_leave_exactly_counted_less_refunded(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer_key(store, REFUNDING)
    failed = [serve(authorizer, key, route, status=502) for route in [GENERATE, SEARCH] * 10]
    refunds = [a_refund(r, REFUNDING) for r in failed]
    served: list[LedgerRecord] = []
    applied: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(10)

    def client(seed: int) -> None:
        mine = make_authorizer()  # each an execution environment of its own
        chooser = random.Random(seed)
        start.wait()
        for _ in range(20):
            record = serve(mine, key, chooser.choice([GENERATE, SEARCH]), status=200)
            with lock:
                served.append(record)

    def consumer(part: list[Refund]) -> None:
        ledger = RefundLedger(TollgateStore(TABLE))
        start.wait()
        for refund in part:
            outcome = ledger.apply(refund, at=NOW)
            with lock:
                applied.append(outcome)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    threads += [threading.Thread(target=consumer, args=(refunds[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(served) == 160
    assert applied == [True] * len(refunds)
    assert all(r.allowed for r in served)  # no request refused while refunds were applied
    everything = failed + served
    routes, _ = tallies(everything)
    refunded_credits = sum(r.counted_credits for r in failed)
    usage = store.read_usage("acme", PERIOD)
    assert usage.credits == sum(r.counted_credits for r in everything) - refunded_credits
    assert usage.requests == len(everything)
    assert usage.routes == less(routes, failed, route_of)
    assert usage.days == {15: RouteUsage(credits=usage.credits, requests=len(everything))}
    assert usage.refunded == RouteUsage(credits=refunded_credits, requests=len(failed))


# -- a batch of records --------------------------------------------------------------------------------------
def test_a_mixed_batch_refunds_exactly_the_failed_requests_of_plans_that_refund_them(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    acme = customer_key(store, REFUNDING)
    globex = customer_key(store, make_plan(id="basic"), "globex")  # its plan refunds nothing
    records = [
        serve(authorizer, acme, GENERATE, status=200),
        serve(authorizer, acme, GENERATE, status=503),
        serve(authorizer, acme, SEARCH, status=500),
        serve(authorizer, acme, SEARCH, status=404),
        serve(authorizer, acme, GENERATE, status=429),
        serve(authorizer, globex, GENERATE, status=503),
        serve(authorizer, globex, SEARCH, status=200),
    ]
    lost_plan = records[1].model_dump(by_alias=True) | {"requestId": "req-lost", "planVersion": 7}
    lines = [record_line(r.model_dump(by_alias=True)) for r in records]
    lines[3:3] = [
        "not a record\n",
        json.dumps({"requestId": "", "requestTime": "1"}) + "\n",
        json.dumps({**records[2].model_dump(by_alias=True), "shard": "x"}, default=str) + "\n",
        "[]\n",
        record_line(lost_plan),
    ]
    before = {c: store.read_usage(c, PERIOD) for c in ("acme", "globex")}
    run = RefundRun()
    body = gzip.compress("".join(lines).encode())
    refund_failed(
        parse_records(object_lines(body), run), StorePlans(store), RefundLedger(store), now=NOW, run=run
    )

    assert [r.request_id for r in run.refunded] == [records[1].request_id, records[2].request_id]
    assert run.credits == 26
    assert run.malformed == 4
    assert run.skipped == [("req-lost", PLAN_UNKNOWN)]
    assert run.duplicates == 0
    acme_after, globex_after = (store.read_usage(c, PERIOD) for c in ("acme", "globex"))
    assert acme_after.credits == before["acme"].credits - 26
    assert acme_after.refunded == RouteUsage(credits=26, requests=2)
    assert globex_after == before["globex"]


# -- the refund function end to end -----------------------------------------------------------------------
def sqs_record(body: str, message_id: str) -> dict[str, Any]:
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1793520000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tollgate-refunds",
        "awsRegion": "us-east-1",
    }


def s3_notification(key: str, size: int = 100) -> str:
    """What S3 sends the queue when ``key`` is created: the key URL-encoded (as S3 does: ``=`` is ``%3D``)."""
    return json.dumps(
        {
            "Records": [
                {
                    "eventVersion": "2.1",
                    "eventSource": "aws:s3",
                    "awsRegion": "us-east-1",
                    "eventTime": "2026-11-15T12:05:00.000Z",
                    "eventName": "ObjectCreated:Put",
                    "userIdentity": {"principalId": "AWS:FIREHOSE"},
                    "requestParameters": {"sourceIPAddress": "10.0.0.1"},
                    "responseElements": {"x-amz-request-id": "R1", "x-amz-id-2": "I2"},
                    "s3": {
                        "s3SchemaVersion": "1.0",
                        "configurationId": "ledger-objects",
                        "bucket": {
                            "name": BUCKET,
                            "ownerIdentity": {"principalId": "A1"},
                            "arn": f"arn:aws:s3:::{BUCKET}",
                        },
                        "object": {
                            "key": quote_plus(key, safe="/"),
                            "size": size,
                            "eTag": "e",
                            "sequencer": "0A",
                        },
                    },
                }
            ]
        }
    )


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-11-15T12:00:00.000Z",
        "Bucket": BUCKET,
        "RequestId": "R0",
        "HostId": "H0",
    }
)


@pytest.fixture
def refund_function(store: TollgateStore) -> tuple[Any, Any]:
    """The refund function over the test table (DynamoDB Local) and moto's S3, with its bucket."""
    s3 = boto3.client("s3", config=Config(region_name="us-east-1"))
    s3.create_bucket(Bucket=BUCKET)
    deps = refunds_handler.Deps(store, s3, StorePlans(store), clock=lambda: NOW)
    return refunds_handler.make_handler(deps), s3


def put_ledger_object(s3: Any, key: str, records: list[LedgerRecord]) -> int:
    body = gzip.compress("".join(record_line(r.model_dump(by_alias=True)) for r in records).encode())
    s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    return len(body)


def failures(answer: dict[str, Any]) -> list[str]:
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def test_the_refund_function_refunds_a_delivered_object_once_however_often_notified(
    store: TollgateStore, authorizer: Authorizer, refund_function: tuple[Any, Any]
) -> None:
    handle, s3 = refund_function
    key = customer_key(store, REFUNDING)
    records = [
        serve(authorizer, key, route, status=s)
        for route, s in [(GENERATE, 503), (SEARCH, 200), (SEARCH, 502)]
    ]
    object_key = "ledger/2026/11/15/12/tollgate-ledger-1-2026-11-15-12-00-00-0f8fad5b.gz"
    size = put_ledger_object(s3, object_key, records)
    message = s3_notification(object_key, size)

    first = handle({"Records": [sqs_record(TEST_EVENT, "m0"), sqs_record(message, "m1")]}, CONTEXT)
    again = handle({"Records": [sqs_record(message, "m2")]}, CONTEXT)  # delivered twice

    assert failures(first) == failures(again) == []
    usage = store.read_usage("acme", PERIOD)
    assert usage.refunded == RouteUsage(credits=26, requests=2)
    assert (usage.credits, usage.requests) == (1, 3)
    assert len(RefundLedger(store).list("acme", PERIOD)) == 2


def test_a_message_naming_a_missing_object_fails_alone(
    store: TollgateStore, authorizer: Authorizer, refund_function: tuple[Any, Any]
) -> None:
    handle, s3 = refund_function
    key = customer_key(store, REFUNDING)
    records = [serve(authorizer, key, GENERATE, status=504)]
    object_key = "ledger/2026/11/15/12/tollgate-ledger-1-2026-11-15-12-05-00-3c1e.gz"
    put_ledger_object(s3, object_key, records)
    missing = s3_notification("ledger/2026/11/15/12/never-written.gz")

    answer = handle(
        {"Records": [sqs_record(missing, "m-missing"), sqs_record(s3_notification(object_key), "m-ok")]},
        CONTEXT,
    )

    assert failures(answer) == ["m-missing"]
    assert store.read_usage("acme", PERIOD).refunded == RouteUsage(credits=25, requests=1)


def test_a_test_event_alone_changes_nothing(store: TollgateStore, refund_function: tuple[Any, Any]) -> None:
    handle, _ = refund_function

    assert failures(handle({"Records": [sqs_record(TEST_EVENT, "m-test")]}, CONTEXT)) == []
    assert boto3.resource("dynamodb").Table(TABLE).scan()["Items"] == []


def test_the_refund_function_reads_a_firehose_object_named_by_its_url_encoded_key(
    store: TollgateStore, authorizer: Authorizer, refund_function: tuple[Any, Any]
) -> None:
    handle, s3 = refund_function
    key = customer_key(store, REFUNDING)
    records = [serve(authorizer, key, GENERATE, status=503)]
    object_key = "ledger/period=2026-11/day=2026-11-15/tollgate-ledger-1-2026-11-15-12-00-00-0f8fad5b.gz"
    put_ledger_object(s3, object_key, records)
    message = s3_notification(object_key)
    assert "period%3D2026-11/day%3D2026-11-15/" in message  # what S3 sends

    answer = handle({"Records": [sqs_record(message, "m1")]}, CONTEXT)

    assert failures(answer) == []
    assert store.read_usage("acme", PERIOD).refunded == RouteUsage(credits=25, requests=1)


def test_the_refunds_of_a_period_are_listed_and_found_by_request(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    """What the exports and the reconciliation read (``list``: the period's markers, with their day and route
    code) and what a delivery checks before any transaction (``refunded_already``: those of its requests that
    were refunded)."""
    key = customer_key(store, REFUNDING)
    failed = serve(authorizer, key, GENERATE, status=503, at=on_day(9))
    other = serve(authorizer, key, SEARCH, status=502, at=on_day(12))
    refunds = RefundLedger(store)
    run = refund_failed([failed], StorePlans(store), refunds, now=NOW)
    (refund,) = run.refunded
    pending = refund_of(other, REFUNDING)
    assert isinstance(pending, Refund)

    listed = refunds.list("acme", PERIOD)

    assert [(r.request_id, r.period, r.day, r.credits, r.status, r.route_code) for r in listed] == [
        (failed.request_id, PERIOD, 9, 25, 503, route_code("POST /v1/generate"))
    ]
    assert listed[0].refunded_at == NOW
    assert refunds.list("acme", "2026-10") == []  # another period's are not this one's
    assert refunds.refunded_already([refund, pending]) == {failed.request_id}
    assert refunds.refunded_already([]) == set()
