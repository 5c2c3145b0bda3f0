"""The close starter's paging, sending, time budget and continuation, on in-memory fakes.

What the starter promises: one message per customer, sent a page at a time with a bounded number of
SendMessageBatch calls in flight; after every page the close run records where the next one starts, so any
later invocation carries on from there; an invocation that runs out of time stops at a page boundary and
invokes the next one of a bounded chain. On DynamoDB Local: ``tests/integration/test_close_starter_runs.py``;
a million customers: ``test_close_starter_scale.py``.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.close_starter_fakes import (
    CountingSqs,
    Crash,
    FakeClock,
    FakeContext,
    GeneratedCustomers,
    MemoryCloseRuns,
    RecordingLambda,
    customer_id,
)
from tollgate.billing.close import starter
from tollgate.billing.close.messages import CloseRequest
from tollgate.billing.close.settings import StarterSettings
from tollgate.domain.close_runs import CloseRun, CloseRunStatus, Cursor
from tollgate.errors import ConflictError
from tollgate.settings import SettingsError

PERIOD = "2026-10"
CLOSE_AT = datetime(2026, 11, 1, 6, 0, 5, tzinfo=UTC)
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/tollgate-close"
SCHEDULE_EVENT = {"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00Z"}


def wire(
    count: int,
    *,
    page_size: int = 10,
    sqs: CountingSqs | None = None,
    runs: MemoryCloseRuns | None = None,
    lambda_: Any = None,
    clock: FakeClock | None = None,
    threads: int = 4,
) -> tuple[starter.Handler, GeneratedCustomers, CountingSqs, MemoryCloseRuns]:
    customers = GeneratedCustomers(count, clock)
    sqs = sqs if sqs is not None else CountingSqs(count, clock=clock)
    runs = runs if runs is not None else MemoryCloseRuns()
    deps = starter.Deps(
        customers,
        sqs,
        QUEUE_URL,
        clock=lambda: CLOSE_AT,
        runs=runs,
        lambda_client=lambda_,
        page_size=page_size,
        send_threads=threads,
    )
    return starter.make_handler(deps), customers, sqs, runs


# -- messages ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("customer", ["acme", "c0000042", "a-b_c", "9lives"])
def test_each_message_is_the_workers_close_request(customer: str) -> None:
    (entry,) = starter.message_entries([customer], PERIOD, fifo=False)

    assert entry["MessageBody"] == CloseRequest(customer_id=customer, period=PERIOD).model_dump_json()
    assert set(entry) == {"Id", "MessageBody"}


@pytest.mark.parametrize("customer", ['odd"one\\', "caf\u00e9", "tab\there", "\u2028"])
def test_an_id_with_characters_to_escape_is_still_valid_json(customer: str) -> None:
    (entry,) = starter.message_entries([customer], PERIOD, fifo=False)

    assert json.loads(entry["MessageBody"]) == {"customer_id": customer, "period": PERIOD}


def test_a_fifo_message_is_grouped_by_customer_and_deduplicated_per_customer_period() -> None:
    entries = starter.message_entries(["acme", "zeta"], PERIOD, fifo=True)

    assert [(e["Id"], e["MessageGroupId"], e["MessageDeduplicationId"]) for e in entries] == [
        ("0", "acme", "acme:2026-10"),
        ("1", "zeta", "zeta:2026-10"),
    ]


def test_a_malformed_period_is_refused_before_anything_is_sent() -> None:
    sqs = CountingSqs(1)

    with pytest.raises(ValueError, match="YYYY-MM"):
        starter.queue_closes(sqs, QUEUE_URL, [customer_id(0)], "October")
    assert sqs.calls == 0


# -- sending in parallel -----------------------------------------------------------------------------------


def test_a_page_is_sent_ten_to_a_call_on_the_pools_threads() -> None:
    sqs = CountingSqs(95, fail_once=frozenset({customer_id(3), customer_id(77)}))
    ids = [customer_id(index) for index in range(95)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert starter.queue_closes(sqs, QUEUE_URL, ids, PERIOD, pool=pool) == 95

    assert sqs.customers_sent(1) == 95  # the two failed entries were sent again, once
    assert sqs.entries_per_call == {10: 9, 5: 1, 1: 2}


def test_no_more_calls_are_in_flight_than_the_pool_has_threads() -> None:
    class SlowSqs:
        def __init__(self) -> None:
            self.in_flight = self.most = 0
            self.lock = threading.Lock()

        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            with self.lock:
                self.in_flight += 1
                self.most = max(self.most, self.in_flight)
            time.sleep(0.002)
            with self.lock:
                self.in_flight -= 1
            return {}

    sqs = SlowSqs()
    with ThreadPoolExecutor(max_workers=3) as pool:
        starter.queue_closes(sqs, QUEUE_URL, [customer_id(i) for i in range(300)], PERIOD, pool=pool)

    assert 1 < sqs.most <= 3


def test_entries_sqs_keeps_refusing_fail_the_page() -> None:
    class Refusing:
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Failed": [{"Id": e["Id"], "SenderFault": True, "Code": "Nope"} for e in Entries[:1]]}

    with ThreadPoolExecutor(max_workers=2) as pool, pytest.raises(RuntimeError, match="SQS refused 1"):
        starter.queue_closes(Refusing(), QUEUE_URL, [customer_id(i) for i in range(30)], PERIOD, pool=pool)


# -- paging and the close run ------------------------------------------------------------------------------


def test_the_customers_are_read_and_recorded_a_page_at_a_time() -> None:
    handle, customers, sqs, runs = wire(23, page_size=5)

    answer = handle(SCHEDULE_EVENT, FakeContext())

    assert answer == {"period": PERIOD, "status": "finished", "queued": 23, "sent": 23}
    assert sqs.customers_sent(1) == 23
    assert customers.queries == 5  # 5, 5, 5, 5, 3
    run = runs.get(PERIOD)
    assert run is not None
    assert (run.status, run.pages, run.queued, run.cursor) == (CloseRunStatus.FINISHED, 5, 23, None)


def test_a_full_last_page_is_followed_by_an_empty_one_and_still_finishes() -> None:
    handle, customers, sqs, _runs = wire(20, page_size=5)

    assert handle({"period": PERIOD}, FakeContext())["queued"] == 20
    assert customers.queries == 5  # DynamoDB gives a LastEvaluatedKey with a full page
    assert sqs.customers_sent(1) == 20


def test_no_customers_finish_the_run_at_once() -> None:
    handle, _, sqs, _runs = wire(0)

    assert handle({"period": PERIOD}, FakeContext()) == {
        "period": PERIOD,
        "status": "finished",
        "queued": 0,
        "sent": 0,
    }
    assert sqs.calls == 0


def test_a_crash_mid_page_repeats_that_page_only() -> None:
    sqs = CountingSqs(50, crash_at_call=4)  # page 2 (20-39) has sent 20-29 when the invocation dies
    handle, _, sqs, runs = wire(50, page_size=20, sqs=sqs, threads=1)

    with pytest.raises(Crash):
        handle(SCHEDULE_EVENT, FakeContext())
    stopped = runs.get(PERIOD)
    assert stopped is not None
    assert (stopped.queued, stopped.pages) == (20, 1)
    answer = handle(SCHEDULE_EVENT, FakeContext())  # Lambda's retry

    assert answer == {"period": PERIOD, "status": "finished", "queued": 50, "sent": 30}
    assert [index for index in range(50) if sqs.counts[index] == 2] == list(range(20, 30))
    assert sqs.customers_sent(1) == 40


def test_a_finished_run_queues_nothing_again() -> None:
    handle, _, sqs, _runs = wire(12)
    handle(SCHEDULE_EVENT, FakeContext())

    for event in (SCHEDULE_EVENT, {"period": PERIOD}, {"period": PERIOD, "continuation": 2}):
        assert handle(event, FakeContext()) == {
            "period": PERIOD,
            "status": "already_finished",
            "queued": 12,
            "sent": 0,
        }
    assert sqs.customers_sent(1) == 12


def test_a_restart_by_hand_queues_everyone_again_once_per_request() -> None:
    handle, _, sqs, runs = wire(12, page_size=5)
    handle(SCHEDULE_EVENT, FakeContext())

    restart = {"period": PERIOD, "restart": True}
    assert handle(restart, FakeContext(aws_request_id="by-hand"))["sent"] == 12
    assert handle(restart, FakeContext(aws_request_id="by-hand"))["status"] == "already_finished"  # retry
    assert handle(restart, FakeContext(aws_request_id="by-hand-again"))["sent"] == 12

    assert sqs.customers_sent(3) == 12
    run = runs.get(PERIOD)
    assert run is not None
    assert (run.generation, run.queued, run.finished) == (3, 12, True)
    assert handle({"period": PERIOD, "restart": "yes"}, FakeContext())["status"] == "already_finished"


def test_a_retried_restart_carries_on_from_its_cursor() -> None:
    sqs = CountingSqs(30, crash_at_call=2)  # the restart dies in its second page
    handle, _, sqs, runs = wire(30, page_size=10, sqs=sqs, threads=1)
    runs.stored[PERIOD] = CloseRun(
        period=PERIOD, status=CloseRunStatus.FINISHED, queued=30, started_at=CLOSE_AT, updated_at=CLOSE_AT
    )
    restart = {"period": PERIOD, "restart": True}

    with pytest.raises(Crash):
        handle(restart, FakeContext(aws_request_id="by-hand"))
    answer = handle(restart, FakeContext(aws_request_id="by-hand"))  # Lambda retries the same request

    assert answer == {"period": PERIOD, "status": "finished", "queued": 30, "sent": 20}
    assert sqs.customers_sent(1) == 30


class RivalRuns(MemoryCloseRuns):
    """Close runs where another starter records ``rival_pages`` pages just before this one's next write."""

    def __init__(self, rival_pages: int, page_size: int) -> None:
        super().__init__()
        self.rival_pages, self.page_size = rival_pages, page_size

    def advance(self, run: CloseRun, next_cursor: Cursor | None, customers: int, now: datetime) -> CloseRun:
        if self.rival_pages:
            rival = self.get(run.period)
            assert rival is not None
            for _ in range(self.rival_pages):
                index = rival.queued + self.page_size - 1
                rival = super().advance(rival, {"id_key": customer_id(index)}, self.page_size, now)
            self.rival_pages = 0
        return super().advance(run, next_cursor, customers, now)


def test_a_starter_that_loses_the_race_carries_on_from_the_stored_cursor() -> None:
    runs = RivalRuns(rival_pages=3, page_size=10)
    handle, _customers, sqs, _ = wire(60, page_size=10, runs=runs)

    answer = handle({"period": PERIOD}, FakeContext())

    assert answer["status"] == "finished"
    assert answer["queued"] == 60  # the rival's 3 pages and this one's 3: never counted twice
    assert answer["sent"] == 40  # its lost first page, then pages 4 to 6 (the rival "sent" pages 1 to 3)
    assert [sqs.counts[i] for i in range(0, 60, 10)] == [1, 0, 0, 1, 1, 1]


def test_a_stale_write_cannot_move_the_cursor_backwards() -> None:
    runs = MemoryCloseRuns()
    begun = runs.begin(PERIOD, CLOSE_AT)
    ahead = runs.advance(begun, {"id_key": customer_id(9)}, 10, CLOSE_AT)
    ahead = runs.advance(ahead, {"id_key": customer_id(19)}, 10, CLOSE_AT)

    with pytest.raises(ConflictError):
        runs.advance(begun, {"id_key": customer_id(9)}, 10, CLOSE_AT)
    assert runs.get(PERIOD) == ahead


# -- the time budget and the continuation ------------------------------------------------------------------


def test_out_of_time_it_stops_at_a_page_boundary_and_invokes_the_next_invocation() -> None:
    clock, lambda_ = FakeClock(), RecordingLambda()
    handle, _, sqs, _runs = wire(5_000, page_size=100, lambda_=lambda_, clock=clock)
    context = FakeContext(clock, timeout_ms=25_000)  # 20 s of reserve, 0.2 s a page: about 23 pages fit

    first = handle({"period": PERIOD}, context)

    assert first["status"] == "continuing"
    assert 0 < first["queued"] < 5_000
    assert first["queued"] % 100 == 0  # whole pages
    assert first["sent"] == first["queued"]
    assert context.get_remaining_time_in_millis() >= starter.RESERVE_SECONDS * 1000
    (invocation,) = lambda_.invocations
    assert invocation["FunctionName"] == context.invoked_function_arn
    assert invocation["InvocationType"] == "Event"
    assert json.loads(invocation["Payload"]) == {"period": PERIOD, "continuation": 2}

    second = handle(json.loads(invocation["Payload"]), context.next_invocation("request-2"))

    assert second["queued"] - first["queued"] == second["sent"]
    assert sqs.customers_sent(1) == second["queued"]  # nothing sent twice across the boundary


def test_the_continuation_invokes_the_unqualified_function() -> None:
    lambda_ = RecordingLambda()
    clock = FakeClock()
    handle, *_ = wire(300, page_size=10, lambda_=lambda_, clock=clock)
    context = FakeContext(clock, timeout_ms=21_000)
    context.invoked_function_arn += ":live"  # invoked through an alias

    assert handle({"period": PERIOD}, context)["status"] == "continuing"
    assert lambda_.invocations[0]["FunctionName"] == context.invoked_function_arn.removesuffix(":live")


def test_every_invocation_makes_progress_even_with_no_time_to_spare() -> None:
    clock, lambda_ = FakeClock(), RecordingLambda()
    handle, _, _sqs, _runs = wire(100, page_size=10, lambda_=lambda_, clock=clock)

    answer = handle({"period": PERIOD}, FakeContext(clock, timeout_ms=1_000))

    assert (answer["status"], answer["queued"]) == ("continuing", 10)  # one page, then the next invocation
    assert len(lambda_.invocations) == 1


def test_the_last_invocation_of_a_chain_fails_loudly_with_the_cursor_saved() -> None:
    clock, lambda_ = FakeClock(), RecordingLambda()
    handle, _, sqs, runs = wire(100, page_size=10, lambda_=lambda_, clock=clock)
    last = {"period": PERIOD, "continuation": starter.MAX_INVOCATIONS}

    with pytest.raises(starter.RunNotFinishedError, match=r'invoke the starter with \{"period": "2026-10"\}'):
        handle(last, FakeContext(clock, timeout_ms=1_000))

    assert lambda_.invocations == []  # no 11th invocation: Lambda's retries, then the failure queue
    run = runs.get(PERIOD)
    assert run is not None
    assert run.queued == 10  # recorded: by hand, {"period": ...} carries on from here
    assert handle({"period": PERIOD}, FakeContext(clock))["queued"] == 100
    assert sqs.customers_sent(1) == 100


def test_without_a_lambda_client_it_only_says_it_is_not_finished() -> None:
    clock = FakeClock()
    handle, _, _sqs, _runs = wire(100, page_size=10, clock=clock)

    answer = handle({"period": PERIOD}, FakeContext(clock, timeout_ms=1_000))

    assert answer["status"] == "continuing"
    assert handle({"period": PERIOD}, FakeContext(clock))["queued"] == 100


@pytest.mark.parametrize("value", [0, -1, "2", 1.5, True, None])
def test_a_malformed_continuation_is_refused(value: Any) -> None:
    handle, *_ = wire(1)

    with pytest.raises(starter.StartError, match="continuation"):
        handle({"period": PERIOD, "continuation": value}, FakeContext())


def test_the_budget_keeps_room_for_twice_the_slowest_page() -> None:
    clock = FakeClock()
    budget = starter.TimeBudget(FakeContext(clock, timeout_ms=40_000), reserve=20)

    assert budget.room_for_a_page()
    budget.page_started()
    clock.advance(4_000)
    budget.page_done()  # a 4 s page: 36 s left >= 20 + 2 x 4
    assert budget.room_for_a_page()
    clock.advance(9_000)  # 27 s left < 28
    assert not budget.room_for_a_page()
    assert starter.TimeBudget(object()).room_for_a_page()  # no remaining time known: never out of time


# -- settings ----------------------------------------------------------------------------------------------


def test_the_starter_settings_and_their_defaults() -> None:
    env = {"TABLE_NAME": "t", "CLOSE_QUEUE_URL": QUEUE_URL}

    assert StarterSettings.from_env(env) == StarterSettings("t", QUEUE_URL, page_size=1000, send_threads=8)
    tuned = StarterSettings.from_env(
        {**env, "CLOSE_STARTER_PAGE_SIZE": "250", "CLOSE_STARTER_SEND_THREADS": "16"}
    )
    assert (tuned.page_size, tuned.send_threads) == (250, 16)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CLOSE_STARTER_PAGE_SIZE", "0"),
        ("CLOSE_STARTER_PAGE_SIZE", "many"),
        ("CLOSE_STARTER_SEND_THREADS", "0"),
        ("CLOSE_STARTER_SEND_THREADS", "33"),
    ],
)
def test_bad_starter_settings_are_refused_by_name(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        StarterSettings.from_env({"TABLE_NAME": "t", "CLOSE_QUEUE_URL": QUEUE_URL, name: value})
