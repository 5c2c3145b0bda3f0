"""The alert function: the table's DynamoDB Streams records (``NEW_AND_OLD_IMAGES``) -> EventBridge alerts.

Off the hot path: the authorizer's write is done when its record reaches this function. Records are processed
with Powertools' batch utility, so a record that fails (EventBridge refused, another consumer holds the alert)
is reported back as a partial batch failure and delivered again, while the others are done
(``ReportBatchItemFailures`` on the event source mapping). What each record fires, and why it fires once, is
in :mod:`tollgate.alerts.service`.

Environment: ``TABLE_NAME``; ``ALERT_EVENT_BUS`` (default ``default``); ``STRIPE_API_KEY_SECRET_ARN`` (or
``STRIPE_API_KEY``), read on the first automatic top-up (``tollgate.accounts.auto_top_up``) or threshold
invoice (``tollgate.domain.progressive``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, partial
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from tollgate.accounts.auto_top_up import TopUpOutcome, charge
from tollgate.alerts.observability import logger
from tollgate.alerts.service import (
    Accounts,
    AlertPublisher,
    InvoiceThresholds,
    TopUpCharger,
    process,
)
from tollgate.billing.close.ledger import DynamoLedger
from tollgate.billing.close.service import run_threshold
from tollgate.billing.invoicing import StripeClientInvoicing, StripeInvoicing
from tollgate.billing.settings import StripeSettings
from tollgate.billing.stripe_client import stripe_client_from
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert
from tollgate.domain.progressive import invoiced
from tollgate.errors import RetryLaterError
from tollgate.settings import TABLE_NAME, required

EVENT_SOURCE = "tollgate"
ALERT_EVENT_BUS = "ALERT_EVENT_BUS"

processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


class EventBridgePublisher:
    """Each alert as one EventBridge event: source ``tollgate``, the alert's detail type, its detail."""

    def __init__(self, client: Any, bus: str = "default") -> None:
        self._client, self._bus = client, bus

    def publish(self, alert: Alert) -> None:
        answer = self._client.put_events(
            Entries=[
                {
                    "Source": EVENT_SOURCE,
                    "DetailType": alert.detail_type,
                    "Detail": json.dumps(alert.event_detail()),
                    "EventBusName": self._bus,
                    "Resources": [],
                }
            ]
        )
        if answer.get("FailedEntryCount"):
            code = answer["Entries"][0].get("ErrorCode", "unknown")
            raise RetryLaterError(f"EventBridge refused alert {alert.alert_id}: {code}")


class StripeTopUps:
    """Automatic top-ups charged through Stripe; the client (and its secret read) is made on the first one."""

    def __init__(self, store: TollgateStore, settings: StripeSettings) -> None:
        self._store, self._settings = store, settings
        self._client: Any = None

    def __call__(self, customer_id: str, crossing: str, now: datetime) -> TopUpOutcome:
        if self._client is None:
            self._client = stripe_client_from(self._settings)
        return charge(self._store, self._client, customer_id, crossing, now=now)


class StripeThresholdBilling:
    """Threshold invoices through Stripe (``tollgate.billing.close.service.run_threshold``); the client (and
    its secret read) is made on the first one."""

    def __init__(self, store: TollgateStore, settings: StripeSettings | None = None) -> None:
        self._ledger, self._settings = DynamoLedger(store), settings
        self._gateway: StripeInvoicing | None = None

    @classmethod
    def over(cls, store: TollgateStore, gateway: StripeInvoicing) -> StripeThresholdBilling:
        billing = cls(store)
        billing._gateway = gateway
        return billing

    def __call__(self, customer_id: str, period: str, now: datetime) -> int:
        if self._gateway is None:
            if self._settings is None:
                raise ValueError("no Stripe settings to invoice with")
            self._gateway = StripeClientInvoicing(stripe_client_from(self._settings))
        for outcome in run_threshold(self._ledger, self._gateway, customer_id, period, now=now):
            record = outcome.record
            logger.info(
                "threshold invoice",
                customer_id=record.customer_id,
                period=record.period,
                part=record.part,
                status=record.status.value,
                amount=record.total,
                invoice_id=record.stripe_invoice_id,
            )
        return invoiced(self._ledger.threshold_invoices(customer_id, period))


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Deps:
    store: TollgateStore
    publisher: AlertPublisher
    clock: Callable[[], datetime] = utc_now
    accounts: Accounts | None = None  # the customers and plans read, kept between invocations
    top_up: TopUpCharger | None = None  # automatic top-ups (None: not charged here)
    thresholds: InvoiceThresholds | None = None  # progressive billing (None: not invoiced here)

    def __post_init__(self) -> None:
        if self.accounts is None:
            object.__setattr__(self, "accounts", Accounts(self.store))


@cache
def default_deps() -> Deps:
    bus = os.environ.get(ALERT_EVENT_BUS) or "default"
    store = TollgateStore(required(os.environ, TABLE_NAME))
    publisher = EventBridgePublisher(boto3.client("events"), bus)
    settings = StripeSettings.from_env()
    thresholds = InvoiceThresholds(StripeThresholdBilling(store, settings))
    return Deps(store, publisher, top_up=StripeTopUps(store, settings), thresholds=thresholds)


def record_time(record: DynamoDBRecord) -> datetime:
    """When the write happened: the record's approximate creation time (seconds), else now."""
    created = record.dynamodb.approximate_creation_date_time if record.dynamodb else None
    return datetime.fromtimestamp(int(created), UTC) if created else utc_now()


def handle_record(record: DynamoDBRecord, deps: Deps) -> None:
    stream = record.dynamodb
    if stream is None:
        return
    for delivered in process(
        deps.store,
        deps.publisher,
        stream.old_image,
        stream.new_image,
        record_time(record),
        deps.clock(),
        deps.accounts,
        deps.top_up,
        deps.thresholds,
    ):
        logger.info(
            "alert",
            alert_id=delivered.alert.alert_id,
            published=delivered.published,
            detail_type=delivered.alert.detail_type,
        )


def make_handler(deps: Deps | None = None) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @logger.inject_lambda_context
    def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
        wired = deps if deps is not None else default_deps()
        answer = process_partial_response(event, partial(handle_record, deps=wired), processor, context)
        return dict(answer)

    return handle


handler = make_handler()
