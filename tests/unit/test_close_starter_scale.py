"""The close starter at scale: a million customers through its paging and sending, on in-memory fakes.

The real handler (paging, the thread pool of SendMessageBatch calls, the close run, the time budget, the
continuation) runs over generated customer pages, an SQS stand-in that counts each customer's messages and a
clock that each SQS call and each Query page advances by a realistic time (15 ms, 50 ms), so Lambda's
remaining time runs out as it would. Every customer must be queued exactly once across the invocations, a
crash may only repeat the page being sent, and the memory held must not grow with the number of customers.
About 5 seconds a million here.
"""

from __future__ import annotations

import json
import tracemalloc
from datetime import UTC, datetime
from typing import Any

from tests.unit.close_starter_fakes import (
    CountingSqs,
    Crash,
    FakeClock,
    FakeContext,
    GeneratedCustomers,
    MemoryCloseRuns,
    RecordingLambda,
)
from tollgate.billing.close import starter
from tollgate.billing.close.messages import CloseRequest

PERIOD = "2026-10"
CLOSE_AT = datetime(2026, 11, 1, 6, 0, 5, tzinfo=UTC)
MILLION = 1_000_000
PAGE_SIZE = 1_000
QUEUE_URL = "https://sqs.us-east-1.amazonaws.com/123456789012/tollgate-close"


def make_deps(customers: GeneratedCustomers, sqs: CountingSqs, runs: MemoryCloseRuns, lambda_: Any) -> Any:
    return starter.Deps(
        customers,
        sqs,
        QUEUE_URL,
        clock=lambda: CLOSE_AT,
        runs=runs,
        lambda_client=lambda_,
        page_size=PAGE_SIZE,
        send_threads=8,
    )


def run_chain(
    handle: Any, context: FakeContext, lambda_: RecordingLambda, event: dict[str, Any]
) -> list[Any]:
    """Invoke the starter, then each continuation it asks for, as Lambda would; every answer, in order."""
    answers = [handle(event, context)]
    while len(lambda_.invocations) >= len(answers):
        invocation = lambda_.invocations[len(answers) - 1]
        assert invocation["InvocationType"] == "Event"
        assert invocation["FunctionName"] == context.invoked_function_arn
        context = context.next_invocation(f"request-{len(answers) + 1}")
        answers.append(handle(json.loads(invocation["Payload"]), context))
    return answers


def test_a_million_customers_are_queued_exactly_once_across_invocations() -> None:
    """15 ms per SendMessageBatch on one clock (the fakes take turns on a lock) is 1,500 s of sending: more
    than one invocation's 900 s, so the run stops at a page boundary and continues itself from its cursor."""
    clock = FakeClock()
    customers = GeneratedCustomers(MILLION, clock)
    sqs = CountingSqs(MILLION, clock=clock)
    runs, lambda_ = MemoryCloseRuns(), RecordingLambda()
    handle = starter.make_handler(make_deps(customers, sqs, runs, lambda_))
    context = FakeContext(clock)

    answers = run_chain(handle, context, lambda_, {"period": PERIOD})

    assert sqs.customers_sent(1) == MILLION  # every customer exactly once ...
    assert sqs.calls == MILLION // 10  # ... ten to a call, no entry resent
    assert set(sqs.entries_per_call) == {10}
    assert [a["status"] for a in answers] == ["continuing"] * (len(answers) - 1) + ["finished"]
    assert 1 < len(answers) < starter.MAX_INVOCATIONS  # more than one invocation, fewer than the cap
    assert [json.loads(i["Payload"]) for i in lambda_.invocations] == [
        {"period": PERIOD, "continuation": n} for n in range(2, len(answers) + 1)
    ]
    assert sum(a["sent"] for a in answers) == MILLION
    assert answers[-1]["queued"] == MILLION
    run = runs.get(PERIOD)
    assert run is not None
    assert run.finished
    assert run.queued == MILLION
    assert runs.writes == MILLION // PAGE_SIZE + 2  # begin, one write per page, the empty last page
    assert customers.queries == MILLION // PAGE_SIZE + 1  # a full last page is followed by an empty one
    for body in sqs.bodies_seen.values():  # the messages are the worker's CloseRequest
        assert CloseRequest.model_validate_json(body).period == PERIOD


def test_memory_stays_a_page_whatever_the_number_of_customers() -> None:
    """tracemalloc's peak over a whole run: a page of ids and messages at a time, not every customer (a
    list of 100,000 ids alone is ~7 MB). Measured at 10 and 100 pages: tracing every allocation of a million
    customers multiplies the run's time by about seven (measured once: the same peak)."""

    def peak_for(count: int) -> int:
        sqs = CountingSqs(count)
        deps = make_deps(GeneratedCustomers(count), sqs, MemoryCloseRuns(), RecordingLambda())
        handle = starter.make_handler(deps)
        tracemalloc.start()
        try:
            assert handle({"period": PERIOD}, FakeContext())["queued"] == count
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    small, large = peak_for(10 * PAGE_SIZE), peak_for(100 * PAGE_SIZE)  # 10 times the customers

    assert large < 2 * 2**20, f"peak {large / 2**20:.2f} MB"
    assert large < small * 1.5 + 256 * 2**10, (small, large)  # it does not grow with the customers


def test_a_crash_at_a_million_repeats_only_the_page_being_sent() -> None:
    """The invocation dies half way through (between two SendMessageBatch calls of a page, where a Lambda
    time-out could kill it); Lambda's retry carries on from the last page recorded."""
    clock = FakeClock()
    customers = GeneratedCustomers(MILLION)
    crash_at = MILLION // 10 // 2 + 57  # the 57th call of page 501: 560 messages of it already sent
    sqs = CountingSqs(MILLION, clock=clock, call_ms=0, crash_at_call=crash_at)
    runs, lambda_ = MemoryCloseRuns(), RecordingLambda()
    handle = starter.make_handler(make_deps(customers, sqs, runs, lambda_))
    event = {"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00Z"}

    try:
        handle(event, FakeContext(clock))
        raise AssertionError("the invocation should have died")
    except Crash:
        pass
    stopped = runs.get(PERIOD)
    assert stopped is not None
    assert not stopped.finished
    retry = handle(event, FakeContext(clock, aws_request_id="request-1"))  # Lambda's retry: the same event

    assert retry["status"] == "finished"
    assert retry["queued"] == MILLION
    assert retry["sent"] == MILLION - stopped.queued  # from the cursor on, nothing before it
    twice = sqs.customers_sent(2)
    assert 0 < twice <= PAGE_SIZE  # only (part of) the page that was being sent went twice
    assert sqs.customers_sent(1) + twice == MILLION
    assert sqs.customers_sent(0) == 0
    assert handle(event, FakeContext(clock))["status"] == "already_finished"  # a third delivery: nothing
    assert sqs.customers_sent(1) + twice == MILLION
