"""The period close Lambdas: schedule event -> starter -> SQS (moto) -> worker -> Stripe double.

Duplicate schedule events and duplicate SQS deliveries bill once; one bad record in a batch is reported
alone (``batchItemFailures``); the metrics come out as CloudWatch EMF on stdout.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from tests.conftest import CONTEXT
from tests.integration.test_period_close import (
    CLOSE_AT,
    PERIOD,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tollgate.billing.close import starter, worker
from tollgate.billing.close.settings import WorkerSettings
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.errors import PeriodNotEndedError
from tollgate_local.stripe_double import StripeDouble

SCHEDULE_EVENT = {"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00Z"}
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


@pytest.fixture
def world(
    store: TollgateStore,
    running_double: StripeDouble,  # noqa: F811 - the fixture imported above
) -> World:
    return make_world(store, running_double)


@pytest.fixture
def queue_url(world: World) -> str:
    return str(boto3.client("sqs").create_queue(QueueName="tollgate-close")["QueueUrl"])


@pytest.fixture
def start(world: World, queue_url: str) -> Handler:
    """The starter on the test's table, queue and clock."""
    return starter.make_handler(
        starter.Deps(world.store, boto3.client("sqs"), queue_url, clock=lambda: CLOSE_AT)
    )


@pytest.fixture
def work(world: World) -> Handler:
    """The worker on the test's ledger, Stripe double and clock."""
    return worker.make_handler(worker.Deps(world.ledger, world.gateway, clock=lambda: CLOSE_AT))


def sqs_record(body: str, message_id: str) -> dict[str, Any]:
    """One record of the event Lambda's SQS poller hands the worker."""
    return {
        "messageId": message_id,
        "receiptHandle": f"handle-{message_id}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1793520000000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tollgate-close",
        "awsRegion": "us-east-1",
    }


def body(customer_id: str, period: str = PERIOD) -> str:
    return json.dumps({"customer_id": customer_id, "period": period})


def run_worker(work: Handler, records: list[dict[str, Any]]) -> list[str]:
    """Invoke the worker with one batch; the message ids it reports as failed."""
    answer = work({"Records": records}, CONTEXT)
    return [failure["itemIdentifier"] for failure in answer["batchItemFailures"]]


def drain(work: Handler, queue_url: str) -> int:
    """What Lambda's poller does: receive batches of 10, invoke the worker, delete what succeeded."""
    sqs, handled = boto3.client("sqs"), 0
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        failed = set(run_worker(work, [sqs_record(m["Body"], m["MessageId"]) for m in messages]))
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
        handled += len(messages)
    return handled


def emitted_metrics(stdout: str) -> Counter[str]:
    """Sum of every EMF metric value printed (Powertools flushes one JSON document per invocation)."""
    totals: Counter[str] = Counter()
    for line in stdout.splitlines():
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "Tollgate"
            for metric in directive["Metrics"]:
                values = document[metric["Name"]]
                totals[metric["Name"]] += int(sum(values) if isinstance(values, list) else values)
    return totals


# -- starter ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "period"),
    [
        ({"period": "2026-10"}, "2026-10"),
        ({"period": "2026-09"}, "2026-09"),
        (SCHEDULE_EVENT, "2026-10"),
        ({"trigger": "schedule", "scheduledTime": "2026-11-01T06:00:00+00:00"}, "2026-10"),
        ({"time": "2026-11-01T06:00:00Z", "detail-type": "Scheduled Event"}, "2026-10"),
        ({"scheduledTime": "2026-11-30T23:59:59Z"}, "2026-10"),  # a retry late in the month: same period
    ],
)
def test_the_event_decides_the_period(event: dict[str, Any], period: str) -> None:
    assert starter.period_to_close(event, datetime(2026, 12, 1, tzinfo=UTC)) == period


def test_a_schedule_at_new_year_closes_december() -> None:
    event = {"scheduledTime": "2027-01-01T06:00:00Z"}
    assert starter.period_to_close(event, datetime(2027, 1, 1, 6, 0, 5, tzinfo=UTC)) == "2026-12"


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        ({}, starter.StartError, "names no period"),
        ({"period": "October"}, starter.StartError, "YYYY-MM"),
        ({"scheduledTime": "yesterday"}, starter.StartError, "ISO-8601"),
        ({"period": "2026-11"}, PeriodNotEndedError, "has not ended"),
    ],
)
def test_an_event_that_names_no_closable_period_is_refused(
    event: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        starter.period_to_close(event, CLOSE_AT)


def test_the_starter_queues_one_message_per_customer(world: World, queue_url: str, start: Handler) -> None:
    for index in range(23):
        world.customer(f"c{index:02d}")

    answer = start(SCHEDULE_EVENT, CONTEXT)

    assert answer == {"period": "2026-10", "status": "finished", "queued": 23, "sent": 23}
    sqs = boto3.client("sqs")
    bodies = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        bodies += [json.loads(m["Body"]) for m in messages]
        for message in messages:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    assert sorted(b["customer_id"] for b in bodies) == [f"c{index:02d}" for index in range(23)]
    assert {b["period"] for b in bodies} == {"2026-10"}


class RecordingSqs:
    """A stand-in SQS client: records each SendMessageBatch and fails the entries it is told to, once."""

    def __init__(self, fail_once: frozenset[str] = frozenset()) -> None:
        self.batches: list[list[dict[str, Any]]] = []
        self._fail_once = set(fail_once)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(Entries)
        failed = [e for e in Entries if json.loads(e["MessageBody"])["customer_id"] in self._fail_once]
        self._fail_once -= {json.loads(e["MessageBody"])["customer_id"] for e in failed}
        return {"Failed": [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in failed]}


def test_messages_go_ten_per_batch_and_failed_entries_are_sent_again() -> None:
    sqs = RecordingSqs(fail_once=frozenset({"c03", "c12"}))
    customers = [f"c{index:02d}" for index in range(25)]

    assert starter.queue_closes(sqs, "https://sqs/closes", customers, PERIOD) == 25

    assert [len(batch) for batch in sqs.batches] == [10, 1, 10, 1, 5]
    assert [json.loads(e["MessageBody"])["customer_id"] for e in sqs.batches[1]] == ["c03"]
    assert all("MessageDeduplicationId" not in entry for batch in sqs.batches for entry in batch)


def test_a_fifo_queue_gets_a_deduplication_id_per_customer_period() -> None:
    sqs = RecordingSqs()

    starter.queue_closes(sqs, "https://sqs/closes.fifo", ["acme", "zeta"], PERIOD)

    entries = sqs.batches[0]
    assert [e["MessageDeduplicationId"] for e in entries] == ["acme:2026-10", "zeta:2026-10"]
    assert [e["MessageGroupId"] for e in entries] == ["acme", "zeta"]


def test_sqs_refusing_entries_for_good_fails_the_start(world: World) -> None:
    class Refusing(RecordingSqs):
        def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {"Failed": [{"Id": e["Id"], "SenderFault": True, "Code": "Nope"} for e in Entries]}

    with pytest.raises(RuntimeError, match="SQS refused 1 close messages"):
        starter.queue_closes(Refusing(), "https://sqs/closes", ["acme"], PERIOD)


# -- worker ----------------------------------------------------------------------------------------------


def test_the_same_schedule_event_twice_bills_each_customer_once(
    world: World, queue_url: str, start: Handler, work: Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    world.customer("acme", credits=1_234_567)
    world.customer("beta", credits=2_000)
    world.customer("idle")

    start(SCHEDULE_EVENT, CONTEXT)
    # Scheduler delivers at least once: the close run says the period is queued, and nothing is sent again
    assert start(SCHEDULE_EVENT, CONTEXT)["status"] == "already_finished"
    start({"period": PERIOD, "restart": True}, CONTEXT)  # by hand: every customer's message once more
    handled = drain(work, queue_url)

    assert handled == 6
    world.assert_billed_once(world.record("acme"), 51_852, "acme")
    world.assert_billed_once(world.record("beta"), 84, "beta")
    assert world.record("idle").status is CloseStatus.NO_CHARGE
    assert len(world.double.invoices) == 2
    # each customer counted once, although every message came twice
    assert emitted_metrics(capsys.readouterr().out) == Counter({"InvoicesFinalized": 2, "ClosesNoCharge": 1})


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the duplicate adds none
def test_the_same_message_delivered_twice_bills_once(
    world: World, work: Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    world.customer(credits=1_234_567)
    record = sqs_record(body("acme"), "m-1")

    assert run_worker(work, [record, record]) == []
    assert run_worker(work, [record]) == []

    world.assert_billed_once(world.record(), 51_852)
    assert world.stripe_operations()["invoices.create"] == 1
    assert emitted_metrics(capsys.readouterr().out)["InvoicesFinalized"] == 1


def test_one_bad_record_fails_alone(world: World, work: Handler, capsys: pytest.CaptureFixture[str]) -> None:
    world.customer("acme", credits=1_234_567)
    world.customer("nolink", credits=5_000, linked=False)
    world.customer("zeta", credits=10_000)
    records = [
        sqs_record(body("acme"), "m-acme"),
        sqs_record(body("nolink"), "m-nolink"),
        sqs_record("not json", "m-garbage"),
        sqs_record(body("zeta"), "m-zeta"),
    ]

    assert run_worker(work, records) == ["m-nolink", "m-garbage"]

    assert world.record("acme").status is CloseStatus.FINALIZED
    assert world.record("zeta").status is CloseStatus.FINALIZED
    failed = world.record("nolink")
    assert (failed.status, failed.attempts) == (CloseStatus.RATED, 1)
    # every failed attempt is counted (the dashboard's close progress), a malformed message included
    assert emitted_metrics(capsys.readouterr().out) == Counter({"InvoicesFinalized": 2, "CloseFailures": 2})


def test_a_stripe_failure_is_counted_and_the_retry_bills_once(
    world: World, work: Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    world.customer(credits=1_234_567)
    world.customer("idle")
    world.double.faults.lose_response_after_write("invoices.add_lines")
    record = sqs_record(body("acme"), "m-1")

    assert run_worker(work, [record, sqs_record(body("idle"), "m-2")]) == ["m-1"]
    assert emitted_metrics(capsys.readouterr().out) == Counter(
        {"StripeFailures": 1, "CloseFailures": 1, "ClosesNoCharge": 1}
    )
    assert run_worker(work, [record]) == []

    world.assert_billed_once(world.record(), 51_852)
    assert emitted_metrics(capsys.readouterr().out) == Counter({"InvoicesFinalized": 1})


def test_a_total_mismatch_is_flagged_logged_and_counted(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    from tests.integration.test_period_close_faults import SkewedGateway

    world.customer(credits=1_234_567)
    skewed = worker.Deps(world.ledger, SkewedGateway(world.gateway), clock=lambda: CLOSE_AT)
    work = worker.make_handler(skewed)

    assert run_worker(work, [sqs_record(body("acme"), "m-1")]) == []

    assert world.record().total_mismatch is True
    out = capsys.readouterr().out
    assert emitted_metrics(out) == Counter({"InvoicesFinalized": 1, "TotalMismatch": 1})
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "Stripe's invoice total differs from the statement total" in errors


def test_the_worker_builds_its_stripe_client_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_from_env")
    monkeypatch.setenv("STRIPE_API_BASE", world.double.base_url)
    deployed = worker.deps_from(WorkerSettings.from_env())  # TABLE_NAME, STRIPE_API_KEY, STRIPE_API_BASE
    work = worker.make_handler(replace(deployed, clock=lambda: CLOSE_AT))
    world.customer(credits=1_234_567)

    assert run_worker(work, [sqs_record(body("acme"), "m-1")]) == []

    world.assert_billed_once(world.record(), 51_852)
