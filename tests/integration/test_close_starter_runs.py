"""The close starter's close runs on DynamoDB Local: paging through gsi1, the cursor recorded after each page,
resuming after a crash, duplicate and concurrent starts, a finished run, a restart by hand, and an invocation
running out of time (SQS and Lambda are in-memory stand-ins: ``tests/unit/close_starter_fakes.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import make_customer, make_plan
from tests.unit.close_starter_fakes import (
    CountingSqs,
    Crash,
    FakeClock,
    FakeContext,
    RecordingLambda,
    customer_id,
)
from tollgate.billing.close import starter
from tollgate.billing.close.settings import StarterSettings
from tollgate.dal import tablekeys as tk
from tollgate.dal.close_runs import DynamoCloseRuns
from tollgate.dal.store import TollgateStore
from tollgate.domain.close_runs import CloseRun, CloseRunStatus, Cursor
from tollgate.errors import ConflictError

pytestmark = pytest.mark.dynamodb_local  # conditional writes and Query paging as DynamoDB does them

PERIOD = "2026-10"
CLOSE_AT = datetime(2026, 11, 1, 6, 0, 5, tzinfo=UTC)
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/tollgate-close"
SCHEDULE_EVENT = {"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00Z"}
PLAN = make_plan()


def add_customers(store: TollgateStore, count: int) -> None:
    for index in range(count):
        store.put_customer(make_customer(PLAN, id=customer_id(index)))


class Pages:
    """The store's customer pages, with a hook before each page is read (to interleave another starter)."""

    def __init__(self, store: TollgateStore, before_page: Callable[[int], None] | None = None) -> None:
        self.store, self.before_page, self.read = store, before_page, 0

    def customer_id_page(
        self, *, limit: int, start_key: Cursor | None = None
    ) -> tuple[list[str], Cursor | None]:
        self.read += 1
        if self.before_page is not None:
            self.before_page(self.read)
        return self.store.customer_id_page(limit=limit, start_key=start_key)


def make_starter(
    store: TollgateStore,
    sqs: CountingSqs,
    *,
    page_size: int = 5,
    customers: Any = None,
    lambda_: Any = None,
    threads: int = 2,
) -> starter.Handler:
    return starter.make_handler(
        starter.Deps(
            customers if customers is not None else store,
            sqs,
            QUEUE_URL,
            clock=lambda: CLOSE_AT,
            runs=DynamoCloseRuns(store.table),
            lambda_client=lambda_,
            page_size=page_size,
            send_threads=threads,
        )
    )


def stored_item(store: TollgateStore) -> dict[str, Any]:
    item: dict[str, Any] = store.table.get_item(Key=tk.close_run_key(PERIOD), ConsistentRead=True)["Item"]
    return item


def stored_run(store: TollgateStore) -> CloseRun:
    run = DynamoCloseRuns(store.table).get(PERIOD)
    assert run is not None
    return run


def test_a_page_of_customer_ids_is_one_query_projecting_only_the_id(store: TollgateStore) -> None:
    add_customers(store, 7)
    answers: list[dict[str, Any]] = []
    query = store.table.query

    def recording_query(**kwargs: Any) -> Any:
        answers.append(query(**kwargs))
        return answers[-1]

    store.table.query = recording_query

    ids, after = store.customer_id_page(limit=3)
    more, end = store.customer_id_page(limit=3, start_key=after)
    rest, none = store.customer_id_page(limit=3, start_key=end)

    assert (ids, more, rest) == (
        [customer_id(i) for i in range(3)],
        [customer_id(i) for i in range(3, 6)],
        ["c0000006"],
    )
    assert after == {
        tk.GSI1_PK: tk.CUSTOMERS_INDEX_PK,
        tk.GSI1_SK: "CUSTOMER#c0000002",
        tk.PK: "CUSTOMER#c0000002",
        tk.SK: "PROFILE",
    }
    assert none is None
    assert len(answers) == 3
    assert all(set(item) == {"id"} for answer in answers for item in answer["Items"])


def test_the_store_streams_whole_customers_a_page_at_a_time(store: TollgateStore) -> None:
    add_customers(store, 7)

    pages = list(store.customer_pages(page_size=3))

    assert [[c.id for c in page] for page in pages] == [
        [customer_id(i) for i in range(3)],
        [customer_id(i) for i in range(3, 6)],
        [customer_id(6)],
    ]
    assert [c.id for page in store.customer_pages() for c in page] == [customer_id(i) for i in range(7)]


def test_each_page_is_recorded_in_the_close_run_as_it_is_sent(store: TollgateStore) -> None:
    add_customers(store, 23)
    sqs = CountingSqs(23)
    seen: list[tuple[int, int, str | None]] = []

    def look(page: int) -> None:  # before each page is read, the run holds the pages sent so far
        run = stored_run(store)
        seen.append((run.pages, run.queued, None if run.cursor is None else run.cursor[tk.GSI1_SK]))

    handle = make_starter(store, sqs, page_size=5, customers=Pages(store, before_page=look))

    answer = handle(SCHEDULE_EVENT, FakeContext())

    assert answer == {"period": PERIOD, "status": "finished", "queued": 23, "sent": 23}
    assert seen == [
        (0, 0, None),
        (1, 5, "CUSTOMER#c0000004"),
        (2, 10, "CUSTOMER#c0000009"),
        (3, 15, "CUSTOMER#c0000014"),
        (4, 20, "CUSTOMER#c0000019"),
    ]
    assert sqs.customers_sent(1) == 23
    item = stored_item(store)
    assert (item[tk.PK], item[tk.SK], item["kind"]) == ("CLOSE_RUN#2026-10", "RUN", "close_run")
    assert (item["status"], item["pages"], item["queued"], item["cursor"]) == ("finished", 5, 23, None)
    assert stored_run(store).finished_at == CLOSE_AT


def test_after_a_crash_only_the_page_being_sent_is_sent_again(store: TollgateStore) -> None:
    add_customers(store, 50)
    sqs = CountingSqs(50, crash_at_call=4)  # pages of 20: the invocation dies after sending 20-29
    handle = make_starter(store, sqs, page_size=20, threads=1)

    with pytest.raises(Crash):
        handle(SCHEDULE_EVENT, FakeContext())
    crashed = stored_run(store)
    assert (crashed.status, crashed.pages, crashed.queued) == (CloseRunStatus.RUNNING, 1, 20)
    assert crashed.cursor is not None
    assert crashed.cursor[tk.GSI1_SK] == "CUSTOMER#c0000019"

    answer = handle(SCHEDULE_EVENT, FakeContext())  # Lambda's retry of the same event

    assert answer == {"period": PERIOD, "status": "finished", "queued": 50, "sent": 30}
    assert [i for i in range(50) if sqs.counts[i] == 2] == list(range(20, 30))
    assert sqs.customers_sent(1) == 40


def test_a_duplicate_start_while_one_runs_sends_at_most_a_page_twice(store: TollgateStore) -> None:
    add_customers(store, 30)
    sqs = CountingSqs(30)
    first = make_starter(store, sqs, page_size=5)
    answers: list[dict[str, Any]] = []

    def first_runs_meanwhile(page: int) -> None:
        if page == 1:  # the duplicate read the run; now the first starter sends every page
            answers.append(first(SCHEDULE_EVENT, FakeContext()))

    duplicate = make_starter(store, sqs, page_size=5, customers=Pages(store, first_runs_meanwhile))

    late = duplicate(SCHEDULE_EVENT, FakeContext())

    assert answers == [{"period": PERIOD, "status": "finished", "queued": 30, "sent": 30}]
    assert late == {"period": PERIOD, "status": "finished", "queued": 30, "sent": 5}  # its page 1 lost
    assert sqs.customers_sent(2) == 5
    assert sqs.customers_sent(1) == 25
    run = stored_run(store)
    assert (run.pages, run.queued) == (7, 30)  # 6 full pages and an empty one: each recorded once


def test_two_starters_at_once_queue_everyone_and_count_each_page_once(store: TollgateStore) -> None:
    add_customers(store, 60)
    sqs = CountingSqs(60)
    handlers = [make_starter(store, sqs, page_size=5) for _ in range(2)]
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def run(handle: starter.Handler) -> None:
        barrier.wait()
        answers.append(handle({"period": PERIOD}, FakeContext()))

    threads = [threading.Thread(target=run, args=(handle,)) for handle in handlers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a["status"] for a in answers] in (["finished"] * 2, ["finished", "already_finished"])
    assert sqs.customers_sent(0) == 0
    assert set(sqs.counts) <= {1, 2}  # a page at most twice, by the two starters
    run = stored_run(store)
    assert (run.status, run.pages, run.queued) == (CloseRunStatus.FINISHED, 13, 60)


def test_a_stale_write_is_refused_and_the_cursor_stays(store: TollgateStore) -> None:
    runs = DynamoCloseRuns(store.table)
    begun = runs.begin(PERIOD, CLOSE_AT)
    assert runs.begin(PERIOD, CLOSE_AT) == begun  # a second begin returns the stored run
    ahead = runs.advance(begun, {"gsi1sk": "CUSTOMER#b"}, 5, CLOSE_AT)
    ahead = runs.advance(ahead, {"gsi1sk": "CUSTOMER#d"}, 5, CLOSE_AT)

    with pytest.raises(ConflictError, match="moved on"):
        runs.advance(begun, {"gsi1sk": "CUSTOMER#b"}, 5, CLOSE_AT)  # a starter that read page 0
    finished = runs.advance(ahead, None, 2, CLOSE_AT)
    with pytest.raises(ConflictError):
        runs.advance(ahead, {"gsi1sk": "CUSTOMER#f"}, 5, CLOSE_AT)  # nothing after the end

    assert runs.get(PERIOD) == finished
    assert (finished.pages, finished.queued, finished.status) == (3, 12, CloseRunStatus.FINISHED)


def test_a_finished_run_queues_nothing_until_restarted_by_hand(store: TollgateStore) -> None:
    add_customers(store, 12)
    sqs = CountingSqs(12)
    handle = make_starter(store, sqs)
    handle(SCHEDULE_EVENT, FakeContext())

    again = handle(SCHEDULE_EVENT, FakeContext())  # Scheduler's duplicate, or a re-run by hand
    by_hand = handle({"period": PERIOD, "restart": True}, FakeContext(aws_request_id="by-hand"))
    retried = handle({"period": PERIOD, "restart": True}, FakeContext(aws_request_id="by-hand"))

    assert again == {"period": PERIOD, "status": "already_finished", "queued": 12, "sent": 0}
    assert by_hand == {"period": PERIOD, "status": "finished", "queued": 12, "sent": 12}
    assert retried["status"] == "already_finished"  # Lambda's retry of the restart does not restart again
    assert sqs.customers_sent(2) == 12
    run = stored_run(store)
    assert (run.generation, run.restarted_by) == (2, "by-hand")


def test_a_restart_overtakes_a_running_starter(store: TollgateStore) -> None:
    add_customers(store, 30)
    sqs = CountingSqs(30)
    restarter = make_starter(store, sqs, page_size=5)

    def restart_meanwhile(page: int) -> None:
        if page == 3:  # the old run has recorded 2 pages; a restart by hand sends everything again
            restarter({"period": PERIOD, "restart": True}, FakeContext(aws_request_id="by-hand"))

    old = make_starter(store, sqs, page_size=5, customers=Pages(store, restart_meanwhile))

    answer = old(SCHEDULE_EVENT, FakeContext())

    assert answer["status"] == "finished"  # its third write lost to the new generation, which is done
    assert answer["sent"] == 15  # its pages 1 to 3
    run = stored_run(store)
    assert (run.generation, run.queued) == (2, 30)
    assert sqs.customers_sent(2) == 15
    assert sqs.customers_sent(1) == 15


def test_out_of_time_it_continues_in_a_new_invocation_from_the_cursor(store: TollgateStore) -> None:
    add_customers(store, 40)
    clock, lambda_ = FakeClock(), RecordingLambda()
    sqs = CountingSqs(40, clock=clock, call_ms=1_000)  # a second a call: few pages fit in the budget
    handle = make_starter(store, sqs, page_size=10, lambda_=lambda_)
    context = FakeContext(clock, timeout_ms=24_500)  # 20 s reserve + twice a 1 s page... then no room

    first = handle(SCHEDULE_EVENT, context)

    assert first["status"] == "continuing"
    assert 0 < first["queued"] < 40
    (invocation,) = lambda_.invocations
    payload = json.loads(invocation["Payload"])
    assert payload == {"period": PERIOD, "continuation": 2}
    assert stored_run(store).queued == first["queued"]

    second = handle(payload, context.next_invocation("request-2"))

    assert second["status"] in ("finished", "continuing")
    while second["status"] == "continuing":
        payload = json.loads(lambda_.invocations[-1]["Payload"])
        second = handle(payload, context.next_invocation(f"request-{payload['continuation']}"))
    assert second["queued"] == 40
    assert sqs.customers_sent(1) == 40  # across the invocations, nobody twice


def test_the_starter_builds_its_dependencies_from_the_environment(
    store: TollgateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_customers(store, 12)
    queue_url = boto3.client("sqs").create_queue(QueueName="tollgate-close")["QueueUrl"]
    monkeypatch.setenv("CLOSE_QUEUE_URL", queue_url)
    monkeypatch.setenv("CLOSE_STARTER_PAGE_SIZE", "5")
    deployed = starter.deps_from(StarterSettings.from_env())  # TABLE_NAME, the queue, the page size

    answer = starter.make_handler(deployed)({"period": PERIOD}, FakeContext())

    assert answer == {"period": PERIOD, "status": "finished", "queued": 12, "sent": 12}
    assert stored_run(store).pages == 3
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "12"
