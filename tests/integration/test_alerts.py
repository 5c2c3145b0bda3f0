"""Usage alerts from the counters' changes, on Amazon DynamoDB Local: the real authorizer writes the counter
or the wallet, the alert service gets the item's old and new image (what the table's stream carries) and
publishes each crossing once, however often the record is replayed and however many consumers process it."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber

from tests.conftest import CONTEXT, NOW, TABLE, Authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.keys import issue_key
from tollgate.accounts.prepaid import add_credits
from tollgate.alerts.handler import Deps, EventBridgePublisher, make_handler
from tollgate.alerts.service import alerts_for, changes_of, process
from tollgate.dal import tablekeys as tk
from tollgate.dal.alerts import LEASE, claim_alert
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert, CounterChange, crossings
from tollgate.domain.models import AlertRule, Plan
from tollgate.errors import RetryLaterError

pytestmark = pytest.mark.dynamodb_local

NOW_MS = int(NOW.timestamp() * 1000)
PERIOD = "2026-11"
CAPPED = make_plan(
    id="capped",
    name="Capped",
    price_per_credit=Decimal("0.01"),
    credit_limit=100,
    alerts=[{"cap_percent": 50}, {"cap_percent": 90}],
)


class Bus:
    """EventBridge as the service sees it: what was published, in order."""

    def __init__(self) -> None:
        self.published: list[Alert] = []
        self.lock = threading.Lock()

    def publish(self, alert: Alert) -> None:
        with self.lock:
            self.published.append(alert)


def table() -> Any:
    return boto3.resource("dynamodb").Table(TABLE)


def image(key: dict[str, str]) -> dict[str, Any] | None:
    return table().get_item(Key=key, ConsistentRead=True).get("Item")


def customer(store: TollgateStore, plan: Plan = CAPPED, **fields: Any) -> str:
    store.put_plan(plan)
    store.put_customer(make_customer(plan, stripe_customer_id="cus_acme", **fields))
    return issue_key(store, "acme", now=NOW - timedelta(days=1)).key


def request(authorizer: Authorizer, key: str, resource: str = "/v1/search") -> tuple[Any, Any]:
    """One request; the counter item's (old, new) image around it, as a stream record carries them."""
    counter = tk.counter_key("acme", PERIOD, 0)
    old = image(counter)
    authorizer(rest_event("GET", resource, headers={"x-api-key": key}, epoch_ms=NOW_MS))
    return old, image(counter)


def test_each_threshold_fires_once_as_the_counter_crosses_it(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer(store)
    bus = Bus()

    records = [request(authorizer, key) for _ in range(95)]
    for old, new in records:
        process(store, bus, old, new, at=NOW, now=NOW)

    assert [(a.rule.rule_id, a.credits) for a in bus.published] == [
        ("cap_percent:50", 50),
        ("cap_percent:90", 90),
    ]
    assert bus.published[0].alert_id == "acme:2026-11:cap_percent:50"
    for old, new in records:  # the stream delivers them all again
        process(store, bus, old, new, at=NOW, now=NOW + timedelta(minutes=5))
    assert len(bus.published) == 2


def test_two_consumers_of_the_same_record_publish_it_once(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer(store)
    for _ in range(49):
        request(authorizer, key)
    old, new = request(authorizer, key)  # the 50th credit
    bus = Bus()
    start = threading.Barrier(4)
    busy: list[RetryLaterError] = []

    def consume() -> None:
        start.wait()
        try:
            process(store, bus, old, new, at=NOW, now=NOW)
        except RetryLaterError as error:  # the other consumer holds it: this record is retried later
            busy.append(error)

    threads = [threading.Thread(target=consume) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for _ in busy:  # the retries, once the first consumer is done
        process(store, bus, old, new, at=NOW, now=NOW)

    assert [a.alert_id for a in bus.published] == ["acme:2026-11:cap_percent:50"]


def test_a_consumer_that_died_before_marking_it_sent_is_taken_over_once_its_lease_runs_out(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer(store)
    for _ in range(49):
        request(authorizer, key)
    old, new = request(authorizer, key)
    (change,) = changes_of(old, new, NOW)
    (alert,) = alerts_for(store, change)
    claim_alert(store, alert, NOW)  # claimed, and the consumer died (published or not: unknown)
    bus = Bus()

    with pytest.raises(RetryLaterError):
        process(store, bus, old, new, at=NOW, now=NOW + LEASE - timedelta(seconds=1))
    process(store, bus, old, new, at=NOW, now=NOW + LEASE + timedelta(seconds=1))

    assert [a.alert_id for a in bus.published] == [alert.alert_id]  # again, under the same id
    assert image({tk.PK: "CUSTOMER#acme", tk.SK: "ALERT#2026-11#cap_percent:50"})["state"] == "sent"


def test_a_low_prepaid_balance_fires_once_per_top_up(store: TollgateStore, authorizer: Authorizer) -> None:
    prepaid = make_plan(
        id="credits",
        name="Credits",
        billing="prepaid",
        price_per_credit=Decimal("0.01"),
        top_up_url="https://api.example.test/buy",
        alerts=[{"balance_below": 5}],
    )
    key = customer(store, prepaid)
    add_credits(store, "acme", credits=10, reference="pi_1", now=NOW)
    bus = Bus()
    wallet = tk.wallet_key("acme")

    def draw() -> None:
        old = image(wallet)
        authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": key}, epoch_ms=NOW_MS))
        process(store, bus, old, image(wallet), at=NOW, now=NOW)

    for _ in range(8):
        draw()
    add_credits(store, "acme", credits=10, reference="pi_2", now=NOW)  # 12 left
    for _ in range(8):
        draw()

    assert [(a.alert_id, a.detail["balance"]) for a in bus.published] == [
        ("acme:balance10:balance_below:5", 4),
        ("acme:balance20:balance_below:5", 4),
    ]
    assert {a.period for a in bus.published} == {PERIOD}


def test_a_sharded_customers_alert_counts_every_shard(store: TollgateStore, authorizer: Authorizer) -> None:
    plan = make_plan(id="big", name="Big", price_per_credit=Decimal("0.01"), alerts=[{"spend": "0.30"}])
    key = customer(store, plan, counter_shards=4)
    bus = Bus()

    counters = [tk.counter_key("acme", PERIOD, shard) for shard in range(4)]
    for _ in range(40):
        before = [image(counter) for counter in counters]
        authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": key}, epoch_ms=NOW_MS))
        for old, counter in zip(before, counters, strict=True):
            new = image(counter)
            if new != old:  # the shard the authorizer picked at random
                process(store, bus, old, new, at=NOW, now=NOW)

    assert [a.rule.rule_id for a in bus.published] == ["spend:0.30"]
    assert bus.published[0].credits == 30  # the period's total when it fired, across the shards


def test_other_items_and_rules_the_customer_replaces_fire_nothing_or_their_own(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer(store, alerts=(AlertRule(cap_percent=10),))  # the customer's own rules, not the plan's
    bus = Bus()

    for _ in range(12):
        old, new = request(authorizer, key)
        process(store, bus, old, new, at=NOW, now=NOW)
    process(store, bus, None, image(tk.customer_key("acme")), at=NOW, now=NOW)  # not a counter

    assert [a.rule.rule_id for a in bus.published] == ["cap_percent:10"]


# -- the Lambda function: stream records in, partial batch failures out; EventBridge's request ---------------
def wire(key: dict[str, str]) -> dict[str, Any] | None:
    client = boto3.client("dynamodb")
    return client.get_item(
        TableName=TABLE, Key={k: {"S": v} for k, v in key.items()}, ConsistentRead=True
    ).get("Item")


def stream_record(sequence: int, old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "eventID": f"ev{sequence}",
        "eventName": "MODIFY" if old else "INSERT",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": NOW.timestamp(),
            "Keys": {name: (new or {})[name] for name in (tk.PK, tk.SK)},
            "NewImage": new,
            "SequenceNumber": str(sequence),
            "SizeBytes": 100,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/tollgate/stream/2026-11-01",
    }
    if old:
        record["dynamodb"]["OldImage"] = old
    return record


def test_the_function_publishes_from_stream_records_and_reports_only_the_failed_one(
    store: TollgateStore, authorizer: Authorizer
) -> None:
    key = customer(store)
    counter = tk.counter_key("acme", PERIOD, 0)
    records = []
    for sequence in range(90):
        old = wire(counter)
        authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": key}, epoch_ms=NOW_MS))
        records.append(stream_record(sequence, old, wire(counter)))
    (nine_tenths,) = alerts_for(store, CounterChange("acme", PERIOD, NOW, 89, 90))
    claim_alert(store, nine_tenths, NOW)  # another consumer is publishing it right now
    bus = Bus()
    handle = make_handler(Deps(store, bus, clock=lambda: NOW))

    answer = handle({"Records": records}, CONTEXT)

    assert answer == {"batchItemFailures": [{"itemIdentifier": "89"}]}  # its sequence number: retried
    assert [(a.rule.rule_id, a.at) for a in bus.published] == [("cap_percent:50", NOW)]  # the record's time
    with pytest.raises(BatchProcessingError):  # a batch whose every record failed fails the invocation
        handle({"Records": records[89:]}, CONTEXT)
    store.table.update_item(  # the other consumer is done
        Key={tk.PK: "CUSTOMER#acme", tk.SK: "ALERT#2026-11#cap_percent:90"},
        UpdateExpression="SET #s = :sent",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":sent": "sent"},
    )
    assert handle({"Records": records[89:]}, CONTEXT) == {"batchItemFailures": []}
    assert len(bus.published) == 1


def test_an_alert_is_one_eventbridge_event_and_a_refused_one_is_retried() -> None:
    client = boto3.client("events", region_name="us-east-1")
    (alert,) = crossings(CounterChange("acme", PERIOD, NOW, 89, 90), CAPPED, CAPPED.alerts)
    entry = {
        "Source": "tollgate",
        "DetailType": "Tollgate Usage Threshold Crossed",
        "Detail": json.dumps(alert.event_detail()),
        "EventBusName": "alerts",
        "Resources": [],
    }
    with Stubber(client) as stub:  # checks the request against EventBridge's own API model
        stub.add_response(
            "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "e1"}]}, {"Entries": [entry]}
        )
        stub.add_response(
            "put_events",
            {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}]},
            {"Entries": [entry]},
        )
        publisher = EventBridgePublisher(client, "alerts")
        publisher.publish(alert)
        with pytest.raises(RetryLaterError, match="EventBridge refused alert acme:2026-11:cap_percent:90"):
            publisher.publish(alert)


def test_the_provider_points_a_customers_alerts_at_their_url_with_a_secret_shown_once(
    store: TollgateStore,
) -> None:
    from typer.testing import CliRunner

    from tollgate.cli.config import AppContext
    from tollgate.cli.main import app

    customer(store)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(
            app, ["customers", "alert-webhook", "acme", *args], obj=AppContext(clock=lambda: NOW)
        )

    first = cli("--url", "https://hooks.acme.example/tollgate")
    secret = store.get_customer("acme").alert_webhook.secret  # type: ignore[union-attr]
    assert first.exit_code == 0
    assert f"signing secret (shown once, give it to the customer): {secret}" in first.output
    again = cli("--url", "https://hooks.acme.example/v2")  # a new URL keeps the secret
    assert "signing secret" not in again.output
    assert store.get_customer("acme").alert_webhook.secret == secret  # type: ignore[union-attr]
    rotated = cli("--rotate")
    new = store.get_customer("acme").alert_webhook
    assert new is not None
    assert (new.url, new.secret != secret) == ("https://hooks.acme.example/v2", True)
    assert new.secret in rotated.output
    refused = cli("--url", "http://hooks.acme.example/plain")
    assert refused.exit_code != 0
    assert "is not a webhook URL" in refused.output
    assert store.get_customer("acme").alert_webhook == new  # unchanged
    assert cli("--remove").output == "acme: no alert webhook\n"
    assert store.get_customer("acme").alert_webhook is None
