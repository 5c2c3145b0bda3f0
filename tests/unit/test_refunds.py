"""Bill only what succeeded, without I/O: which statuses a plan refunds, which ledger records are refunded
(tollgate.domain.refunds), how a plan's ``refund_statuses`` is validated, and how the refund ledger retries a
transaction DynamoDB cancelled (tollgate.dal.refunds, on a scripted store)."""

from __future__ import annotations

import gzip
import re
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import route_code
from tollgate.dal.refunds import (
    ATTEMPTS,
    MARKER_DAYS,
    RefundLedger,
    RefundNotCountedError,
    refund_lot_reference,
)
from tollgate.domain.ledger import LedgerRecord, record_line
from tollgate.domain.models import Plan
from tollgate.domain.prepaid import REFERENCE_PATTERN
from tollgate.domain.refunds import Refund, Skip, refund_of, refundable, status_matches
from tollgate.errors import TransactionConflictError
from tollgate.ledger.report import LATE_USAGE_LOOKBACK
from tollgate.metering.dynamo import DynamoUsageCounter
from tollgate.refunds.service import (
    NOT_COUNTED,
    PLAN_UNKNOWN,
    OutOfTimeError,
    RefundRun,
    object_lines,
    parse_records,
    refund_failed,
)

ROUTE = "POST /v1/generate"
AT = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)
REFUNDING = make_plan(refund_statuses=["5xx"])
PREPAID = make_plan(
    id="credits", billing="prepaid", price_per_credit=Decimal("0.002"), refund_statuses=["5xx"]
)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def record(**overrides: object) -> LedgerRecord:
    """A ledger record as the access log writes it (through its JSON line): by default a metered request of
    25 credits on shard 2 that ended in a 503."""
    values: dict[str, object] = {
        "requestId": "req-1",
        "requestTime": ms(AT),
        "httpMethod": "POST",
        "resourcePath": "/v1/generate",
        "status": 503,
        "integrationStatus": 503,
        "customerId": "acme",
        "keyId": "k_1",
        "planId": "payg",
        "planVersion": 1,
        "period": "2026-11",
        "credits": 25,
        "metered": True,
        "denyReason": None,
        "segment": 1,
        "routeCode": route_code(ROUTE),
        "shard": 2,
    }
    values.update(overrides)
    return LedgerRecord.parse(record_line(values))


# -- status_matches ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "statuses", "expected"),
    [
        (500, ["5xx"], True),
        (503, ["5xx"], True),
        (599, ["5xx"], True),
        (499, ["5xx"], False),
        (400, ["5xx"], False),
        (600, ["5xx"], False),
        (200, ["5xx"], False),
        (5, ["5xx"], False),
        (50, ["5xx"], False),
        (5000, ["5xx"], False),
        (5503, ["5xx"], False),
        (503, ["503"], True),
        (502, ["503"], False),
        (504, ["503"], False),
        (5030, ["503"], False),
        (400, ["4xx"], True),
        (404, ["4xx"], True),
        (499, ["4xx"], True),
        (500, ["4xx"], False),
        (399, ["4xx"], False),
        (429, ["5xx", "429"], True),
        (502, ["5xx", "429"], True),
        (428, ["5xx", "429"], False),
        (404, ["5xx", "429"], False),
        (503, [], False),
    ],
)
def test_a_status_matches_its_class_or_its_own_code(status: int, statuses: list[str], expected: bool) -> None:
    assert status_matches(status, statuses) is expected


def reference_matches(status: int, statuses: list[str]) -> bool:
    """What ``status_matches`` means, said another way: a class is its hundred codes, a code is itself."""
    for spec in statuses:
        if spec.endswith("xx"):
            low = int(spec[0]) * 100
            if low <= status <= low + 99:
                return True
        elif status == int(spec):
            return True
    return False


SPECS = st.sampled_from(["4xx", "5xx"]) | st.integers(400, 599).map(str)


@given(status=st.integers(-1_000, 10_000), statuses=st.lists(SPECS, max_size=4))
def test_status_matches_agrees_with_the_plain_reading_of_the_option(status: int, statuses: list[str]) -> None:
    assert status_matches(status, statuses) is reference_matches(status, statuses)


@given(status=st.integers(100, 599))
def test_a_class_and_its_hundred_codes_match_the_same_statuses(status: int) -> None:
    for klass in ("4xx", "5xx"):
        codes = [f"{klass[0]}{n:02d}" for n in range(100)]
        assert status_matches(status, [klass]) is status_matches(status, codes)


# -- refund_of: which records are refunded ------------------------------------------------------------------
def test_a_failed_metered_request_is_refunded_from_where_the_authorizer_counted_it() -> None:
    refund = refund_of(record(), REFUNDING)

    assert refund == Refund(
        request_id="req-1",
        customer_id="acme",
        period="2026-11",
        day=15,
        route_code=route_code(ROUTE),
        segment=1,
        shard=2,
        credits=25,
        status=503,
    )
    assert isinstance(refund, Refund)
    assert not refund.prepaid


@pytest.mark.parametrize("statuses", [(), ("4xx",), ("502",), ("429", "504")])
def test_a_plan_that_does_not_refund_the_status_refunds_nothing(statuses: tuple[str, ...]) -> None:
    plan = make_plan(refund_statuses=statuses)

    assert refund_of(record(status=503), plan) is None
    assert not refundable(record(status=503), plan)


def test_a_plan_without_the_option_refunds_nothing() -> None:
    plan = make_plan()

    assert plan.refund_statuses == ()
    for status in (500, 503, 404, 429):
        assert refund_of(record(status=status), plan) is None


@pytest.mark.parametrize("status", [200, 201, 204, 301, 304, 400, 404, 429, 499])
def test_a_success_or_a_status_outside_the_option_is_not_refunded(status: int) -> None:
    assert refund_of(record(status=status), REFUNDING) is None


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"denyReason": "credit_limit"}, id="refused"),
        pytest.param({"denyReason": "unavailable", "metered": False}, id="refused-unavailable"),
        pytest.param({"metered": False}, id="unmetered-fail-open"),
        pytest.param({"metered": None}, id="metered-missing"),
        pytest.param({"credits": 0}, id="free-route"),
        pytest.param({"credits": None}, id="no-credits"),
        pytest.param({"status": None}, id="no-status"),
        pytest.param({"customerId": None}, id="no-customer"),
    ],
)
def test_a_request_the_authorizer_did_not_count_is_not_refunded(overrides: dict[str, object]) -> None:
    failed = record(**overrides)

    assert refund_of(failed, REFUNDING) is None
    assert refund_of(failed, PREPAID) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"segment": None},
        {"routeCode": None},
        {"shard": None},
        {"segment": None, "routeCode": None, "shard": None},
    ],
)
def test_a_record_that_does_not_say_where_it_was_counted_is_skipped(overrides: dict[str, object]) -> None:
    assert refund_of(record(**overrides), REFUNDING) is Skip.WHERE_UNKNOWN


def test_a_prepaid_request_is_refunded_to_the_wallet_with_or_without_a_shard() -> None:
    on_wallet = refund_of(record(shard=None, planId="credits"), PREPAID)
    with_a_shard = refund_of(record(shard=3, planId="credits"), PREPAID)

    assert isinstance(on_wallet, Refund)
    assert isinstance(with_a_shard, Refund)
    assert (on_wallet.shard, with_a_shard.shard) == (None, None)
    assert on_wallet.prepaid
    assert with_a_shard.prepaid
    assert on_wallet.credits == 25
    assert refund_of(record(shard=None, segment=None), PREPAID) is Skip.WHERE_UNKNOWN
    assert refund_of(record(shard=None, routeCode=None), PREPAID) is Skip.WHERE_UNKNOWN


@pytest.mark.parametrize(
    ("moment", "period", "day"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, 999_000, tzinfo=UTC), "2026-11", 30),
        (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), "2026-12", 1),
        (datetime(2026, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC), "2026-12", 31),
        (datetime(2027, 1, 1, 0, 0, tzinfo=UTC), "2027-01", 1),
        (datetime(2027, 2, 28, 23, 59, 59, 999_000, tzinfo=UTC), "2027-02", 28),
        (datetime(2028, 2, 29, 12, 0, tzinfo=UTC), "2028-02", 29),
    ],
)
def test_the_refunds_period_and_day_are_those_of_the_requests_own_time(
    moment: datetime, period: str, day: int
) -> None:
    refund = refund_of(record(requestTime=ms(moment), period=period), REFUNDING)

    assert isinstance(refund, Refund)
    assert (refund.period, refund.day) == (period, day)


@pytest.mark.parametrize(
    ("moment", "period"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, 999_000, tzinfo=UTC), "2026-12"),
        (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), "2026-11"),
        (datetime(2026, 11, 15, 12, 0, tzinfo=UTC), "2025-11"),
    ],
)
def test_a_record_whose_period_is_not_its_request_times_is_skipped(moment: datetime, period: str) -> None:
    assert refund_of(record(requestTime=ms(moment), period=period), REFUNDING) is Skip.OTHER_PERIOD
    assert refund_of(record(requestTime=ms(moment), period=period, shard=None), PREPAID) is Skip.OTHER_PERIOD


def test_a_record_without_a_period_is_not_refunded() -> None:
    assert not isinstance(refund_of(record(period=None), REFUNDING), Refund)


@given(
    status=st.integers(100, 599),
    statuses=st.lists(SPECS, max_size=3),
    credits=st.integers(0, 10_000),
    metered=st.sampled_from([True, False, None]),
    deny=st.sampled_from([None, "credit_limit", "unavailable"]),
    prepaid=st.booleans(),
)
def test_refund_of_refunds_exactly_the_counted_requests_that_failed_with_a_refunded_status(
    status: int, statuses: list[str], credits: int, metered: bool | None, deny: str | None, prepaid: bool
) -> None:
    plan = (PREPAID if prepaid else REFUNDING).model_copy(update={"refund_statuses": tuple(statuses)})
    failed = record(status=status, credits=credits, metered=metered, denyReason=deny)

    refund = refund_of(failed, plan)

    expected = bool(statuses) and reference_matches(status, statuses) and credits > 0
    expected = expected and metered is True and deny is None
    assert isinstance(refund, Refund) is expected
    if isinstance(refund, Refund):
        assert (refund.credits, refund.status, refund.prepaid) == (credits, status, prepaid)
        assert refund.shard == (None if prepaid else 2)
    else:
        assert refund is None


# -- the plan option ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statuses", [["5xx"], ["4xx"], ["503"], ["429"], ["5xx", "429"], ["4xx", "5xx", "400", "599"]]
)
def test_a_plan_accepts_classes_and_codes_of_errors(statuses: list[str]) -> None:
    plan = make_plan(refund_statuses=statuses)

    assert plan.refund_statuses == tuple(statuses)
    assert Plan.model_validate(plan.model_dump(mode="json")) == plan  # as stored and read back


@pytest.mark.parametrize(
    "bad",
    ["2xx", "3xx", "1xx", "600", "200", "399", "5x", "5", "50", "5xxx", "5000", "500 ", " 500", "5XX", ""],
)
def test_a_plan_refuses_a_status_that_is_not_an_error_class_or_code(bad: str) -> None:
    with pytest.raises(ValidationError, match="refund_statuses") as refused:
        make_plan(refund_statuses=["5xx", bad])

    assert repr(bad) in str(refused.value)  # the message shows the value refused


def test_a_plan_refuses_a_status_written_in_other_digits_than_ascii() -> None:
    """``\\d`` would take any Unicode digit: ``"5\\u0660\\u0663"`` (Arabic-Indic digits) would be accepted and
    then never match a status, a silent no-op."""
    for bad in ("5\u0660\u0663", "4\uff10\uff14", "5\u0663x"):
        with pytest.raises(ValidationError, match="refund_statuses"):
            make_plan(refund_statuses=[bad])


# -- the refund ledger's retries, on a scripted store ------------------------------------------------------
def cancelled(*codes: str) -> ClientError:
    """DynamoDB's TransactionCanceledException with one reason per action."""
    return ClientError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
            "CancellationReasons": [{"Code": code} for code in codes],
        },
        "TransactWriteItems",
    )


class ScriptedStore:
    """``transact`` answers from a script: an exception is raised, None applies the actions."""

    table_name = "tollgate-test"

    def __init__(self, *answers: Exception | None) -> None:
        self.answers = list(answers)
        self.calls: list[list[dict[str, Any]]] = []

    def transact(self, actions: list[dict[str, Any]]) -> None:
        self.calls.append(actions)
        if not self.answers:
            pytest.fail(f"transaction attempted {len(self.calls)} times")
        answer = self.answers.pop(0)
        if answer is not None:
            raise answer


def apply(store: ScriptedStore, refund: Refund) -> tuple[bool, list[float]]:
    sleeps: list[float] = []
    ledger = RefundLedger(store, sleep=sleeps.append)  # type: ignore[arg-type]
    return ledger.apply(refund, at=AT), sleeps


def a_refund(**overrides: object) -> Refund:
    refund = refund_of(record(**overrides), PREPAID if overrides.get("shard", 2) is None else REFUNDING)
    assert isinstance(refund, Refund)
    return refund


@pytest.mark.parametrize("code", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"])
def test_a_transaction_cancelled_by_a_concurrent_write_or_a_throttle_is_tried_again(code: str) -> None:
    store = ScriptedStore(cancelled("None", code), cancelled(code, "None"), None)

    applied, sleeps = apply(store, a_refund())

    assert applied is True
    assert sleeps == [0.05, 0.1]
    assert len(store.calls) == 3
    assert store.calls[0] == store.calls[2]  # the very same actions


def test_a_transaction_cancelled_every_time_fails_after_its_attempts() -> None:
    store = ScriptedStore(*[cancelled("TransactionConflict", "None")] * ATTEMPTS)

    with pytest.raises(ClientError):
        apply(store, a_refund())
    assert len(store.calls) == ATTEMPTS


def test_any_other_cancellation_is_not_tried_again() -> None:
    store = ScriptedStore(cancelled("ValidationError", "None"))

    with pytest.raises(ClientError):
        apply(store, a_refund())
    assert len(store.calls) == 1


def test_the_transaction_is_the_marker_then_the_counters_deduction() -> None:
    marker_failed = ScriptedStore(TransactionConflictError([0]))
    both_failed = ScriptedStore(TransactionConflictError([0, 1]))
    deduction_failed = ScriptedStore(TransactionConflictError([1]))

    assert apply(marker_failed, a_refund())[0] is False
    assert apply(both_failed, a_refund())[0] is False
    with pytest.raises(RefundNotCountedError, match="req-1"):
        apply(deduction_failed, a_refund())
    marker, deduction = marker_failed.calls[0]
    assert marker["Put"]["Item"][tk.SK] == "REFUND#2026-11#req-1"
    assert marker["Put"]["Item"][tk.PK] == tk.customer_pk("acme")
    assert marker["Put"]["Item"]["kind"] == "refund"  # what an operator filters on (data-model.md)
    # the marker is what makes a redelivered record a duplicate: DynamoDB's TTL deletes it only long after
    # the last close that could bill its period (the late-usage lookback) and SQS's 14 days of redelivery
    kept = marker["Put"]["Item"][tk.TTL_ATTRIBUTE] - AT.timestamp()
    assert kept == MARKER_DAYS * 86_400
    assert kept > (LATE_USAGE_LOOKBACK + 1) * 31 * 86_400
    assert deduction["Update"]["Key"] == tk.counter_key("acme", "2026-11", 2)
    wallet = ScriptedStore(None)
    apply(wallet, a_refund(shard=None))
    assert wallet.calls[0][1]["Update"]["Key"] == tk.wallet_key("acme")


# -- refund_failed over records, with fakes ----------------------------------------------------------------
class Plans:
    def __init__(self, *plans: Plan) -> None:
        self.plans = {(plan.id, plan.version): plan for plan in plans}
        self.reads: list[tuple[str, int]] = []

    def plan(self, plan_id: str, version: int) -> Plan | None:
        self.reads.append((plan_id, version))
        return self.plans.get((plan_id, version))


class Refunds:
    """Applies each request id once; raises for the ids in ``not_counted``."""

    def __init__(self, not_counted: frozenset[str] = frozenset()) -> None:
        self.applied: list[Refund] = []
        self.not_counted = not_counted
        self.calls = 0

    def refunded_already(self, refunds: Sequence[Refund]) -> set[str]:
        return {done.request_id for done in self.applied} & {refund.request_id for refund in refunds}

    def apply(self, refund: Refund, *, at: datetime) -> bool:
        self.calls += 1
        if refund.request_id in self.not_counted:
            raise RefundNotCountedError(refund.request_id)
        if any(done.request_id == refund.request_id for done in self.applied):
            return False
        self.applied.append(refund)
        return True


def test_refund_failed_refunds_once_per_request_and_names_what_it_skips() -> None:
    other = make_plan(id="other")  # refunds nothing
    records = [
        record(requestId="ok", status=200),
        record(requestId="a", status=503),
        record(requestId="a", status=503),  # delivered twice
        record(requestId="b", status=500, credits=1),
        record(requestId="not-found", status=404),
        record(requestId="other-plan", status=503, planId="other"),
        record(requestId="unknown-plan", status=503, planId="gone"),
        record(requestId="no-plan", status=503, planId=None),
        record(requestId="old-record", status=503, shard=None),
        record(requestId="tampered", status=502),
        record(requestId="free", status=503, credits=0),
    ]
    plans = Plans(REFUNDING, other)
    refunds = Refunds(not_counted=frozenset({"tampered"}))

    run = refund_failed(records, plans, refunds, now=AT)

    assert [r.request_id for r in run.refunded] == ["a", "b"]
    assert run.credits == 26
    assert run.duplicates == 1
    assert sorted(run.skipped) == sorted(
        [
            ("unknown-plan", PLAN_UNKNOWN),
            ("no-plan", PLAN_UNKNOWN),
            ("old-record", str(Skip.WHERE_UNKNOWN)),
            ("tampered", NOT_COUNTED),
        ]
    )
    assert ("payg", 1) in plans.reads
    assert len(plans.reads) == len(records) - 3  # the success and the free request cost no plan read


def test_a_ledger_object_is_read_gzip_or_plain_and_its_bad_lines_counted() -> None:
    lines = [
        record_line({"requestId": "r1", "requestTime": ms(AT)}),
        "not json\n",
        "\n",
        "[1]\n",
        '{"x": 1}\n',
    ]
    body = "".join(lines).encode()
    for data in (body, gzip.compress(body)):
        run = RefundRun()
        parsed = list(parse_records(object_lines(data), run))
        assert [r.request_id for r in parsed] == ["r1"]
        assert run.malformed == 3


# -- the authorizer's write against a refund's transaction ------------------------------------------------
class ConflictingClient:
    """A DynamoDB client whose first UpdateItem meets a transaction in flight on the item (DynamoDB rejects
    it with TransactionConflictException: nothing was written), then succeeds."""

    def __init__(self) -> None:
        self.updates = 0

    def update_item(self, **_: Any) -> dict[str, Any]:
        self.updates += 1
        if self.updates == 1:
            raise ClientError(
                {"Error": {"Code": "TransactionConflictException", "Message": "in a transaction"}},
                "UpdateItem",
            )
        return {"Attributes": {"credits": {"N": "25"}}}

    def put_item(self, **_: Any) -> dict[str, Any]:
        return {}


def test_a_counter_write_rejected_by_a_refunds_transaction_is_tried_again() -> None:
    """Refunds are transactions on counter shard items (the authorizer's hot item). On DynamoDB an UpdateItem
    on an item a transaction is writing is rejected with TransactionConflictException and not applied: the
    counter tries it once more, rather than refusing the request as if its answer were lost."""
    client = ConflictingClient()

    used = DynamoUsageCounter(client, "tollgate-test").add("acme", "2026-11", 0, ROUTE, 25, None, day=15)

    assert used == 25
    assert client.updates == 2


def test_out_of_time_keeps_what_was_refunded_and_the_next_delivery_does_the_rest_without_repeating() -> None:
    """An object with more refunds than an invocation has time for: the run stops between chunks and says so;
    the message delivered again finds the refunds made (one read, no transaction each) and does the rest."""
    records = [record(requestId=f"r{n:03d}", status=503) for n in range(20)]
    refunds = Refunds()
    chunks = iter([True, False])  # time for the first chunk only (workers=2: chunks of 8)

    with pytest.raises(OutOfTimeError, match=r"^12 refunds left for the next delivery$"):
        refund_failed(records, Plans(REFUNDING), refunds, now=AT, workers=2, time_left=lambda: next(chunks))
    assert sorted(r.request_id for r in refunds.applied) == [f"r{n:03d}" for n in range(8)]

    again = refund_failed(records, Plans(REFUNDING), refunds, now=AT, workers=2)

    assert [r.request_id for r in again.refunded] == [f"r{n:03d}" for n in range(8, 20)]
    assert again.duplicates == 8  # found already refunded before any transaction
    assert sorted(r.request_id for r in refunds.applied) == [f"r{n:03d}" for n in range(20)]
    assert refunds.calls == 20  # each request's transaction ran once over both deliveries


class InFlight(Refunds):
    """Counts the transactions in flight at once. Each waits for ``together`` of them to have started (so that
    as many as may overlap do) and then holds on for a moment (so that more would be seen)."""

    def __init__(self, together: int) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.started = threading.Barrier(together, timeout=5)
        self.now = self.most = 0

    def apply(self, refund: Refund, *, at: datetime) -> bool:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        self.started.wait()
        time.sleep(0.02)
        with self.lock:
            self.now -= 1
        return super().apply(refund, at=at)


@pytest.mark.parametrize("workers", [1, 3])
def test_no_more_refunds_are_in_flight_at_once_than_workers(workers: int) -> None:
    """The table takes the function's writes ``workers`` at a time: one worker, one transaction at a time."""
    records = [record(requestId=f"r{n:03d}", status=503) for n in range(12)]
    refunds = InFlight(together=workers)

    run = refund_failed(records, Plans(REFUNDING), refunds, now=AT, workers=workers)

    assert len(run.refunded) == 12
    assert refunds.most == workers


def test_a_prepaid_refunds_lot_is_named_by_its_request_id_or_a_digest_of_an_id_a_reference_cannot_hold() -> (
    None
):
    """REST request ids are UUIDs; HTTP API ids end in '=' (base64), which a lot's reference cannot hold."""
    assert refund_lot_reference("0f8fad5b-d9cb-469f-a165-70867728950e") == (
        "refund:0f8fad5b-d9cb-469f-a165-70867728950e"
    )
    http = [refund_lot_reference(request_id) for request_id in ("JgTmmiV0IAMEMrw=", "JgTmmiV0IAMEMrA=")]
    assert all(re.fullmatch(REFERENCE_PATTERN, reference) for reference in http)
    assert http[0] != http[1]  # two requests, two lots
    assert http[0] == refund_lot_reference("JgTmmiV0IAMEMrw=")  # the same request, the same lot: once
    # the first 40 hex digits of the id's SHA-256, as data-model.md says: a provider finds the lot from the id
    assert http[0] == "refund:1b5d4657d55139d196feb283f27e4090550b3c5b"


def test_copies_of_a_record_in_one_object_are_one_refund_and_counted_as_duplicates() -> None:
    records = [record(requestId="a")] * 3 + [record(requestId="b")]
    refunds = Refunds()

    run = refund_failed(records, Plans(REFUNDING), refunds, now=AT)

    assert [r.request_id for r in run.refunded] == ["a", "b"]
    assert run.duplicates == 2
    assert refunds.calls == 2  # one transaction per request


class RacedRefunds(Refunds):
    """Another consumer refunds each request between this one's check and its transaction: every apply
    finds the marker there (returns False)."""

    def apply(self, refund: Refund, *, at: datetime) -> bool:
        self.calls += 1
        return False


def test_a_request_another_consumer_refunded_meanwhile_is_a_duplicate_not_a_refund() -> None:
    records = [record(requestId=f"r{n}") for n in range(3)]

    run = refund_failed(records, Plans(REFUNDING), RacedRefunds(), now=AT)

    assert (run.refunded, run.duplicates, run.skipped) == ([], 3, [])


def test_a_plan_that_refunds_4xx_refunds_a_400_too() -> None:
    plan = make_plan(refund_statuses=["4xx"])
    records = [record(requestId="bad", status=400), record(requestId="fine", status=399)]

    run = refund_failed(records, Plans(plan), Refunds(), now=AT)

    assert [r.request_id for r in run.refunded] == ["bad"]


def test_one_worker_applies_four_refunds_between_two_looks_at_the_time() -> None:
    records = [record(requestId=f"r{n}") for n in range(10)]
    refunds = Refunds()
    looks = iter([True, False])

    with pytest.raises(OutOfTimeError, match=r"^6 refunds left for the next delivery$"):
        refund_failed(records, Plans(REFUNDING), refunds, now=AT, time_left=lambda: next(looks))
    assert refunds.calls == 4


class QueriedTable:
    """A table that answers each Query with the next of ``pages`` (no items when none is left) and remembers
    what it was asked."""

    def __init__(self, *pages: dict[str, Any]) -> None:
        self.queries: list[dict[str, Any]] = []
        self.pages = list(pages)

    def query(self, **kwargs: Any) -> dict[str, Any]:
        self.queries.append(dict(kwargs))
        return self.pages.pop(0) if self.pages else {"Items": []}


def marker_item(request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "period": "2026-11",
        "day": 3,
        "credits": 25,
        "status": 503,
        "route_code": "ABCDEF",
        "refunded_at": AT.isoformat(),
    }


def test_a_periods_refunds_are_read_page_by_page() -> None:
    """A 1 MB page holds about 3,000 markers; an outage can refund more of one customer's requests."""
    store = ScriptedStore()
    store.table = QueriedTable(  # type: ignore[attr-defined]
        {"Items": [marker_item("r1"), marker_item("r2")], "LastEvaluatedKey": {"pk": "p", "sk": "s2"}},
        {"Items": [marker_item("r3")]},
    )

    listed = RefundLedger(store).list("acme", "2026-11")  # type: ignore[arg-type]

    assert [r.request_id for r in listed] == ["r1", "r2", "r3"]
    first, second = store.table.queries  # type: ignore[attr-defined]
    assert "ExclusiveStartKey" not in first
    assert second["ExclusiveStartKey"] == {"pk": "p", "sk": "s2"}


def test_a_periods_refunds_are_read_strongly_consistent() -> None:
    """The exports and the reconciliation read the markers right after a delivery may have written them: an
    eventually consistent read could miss one (DynamoDB Local is always consistent, so only the request can
    show it)."""
    store = ScriptedStore()
    store.table = QueriedTable()  # type: ignore[attr-defined]

    assert RefundLedger(store).list("acme", "2026-11") == []  # type: ignore[arg-type]

    (query,) = store.table.queries  # type: ignore[attr-defined]
    assert query["ConsistentRead"] is True
    assert query["ExpressionAttributeValues"] == {":pk": "CUSTOMER#acme", ":prefix": "REFUND#2026-11#"}
