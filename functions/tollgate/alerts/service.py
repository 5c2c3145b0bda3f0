"""From a counter's or a wallet's change on the table's stream to the alerts it fires, each published once.

The stream gives each write's old and new image (``NEW_AND_OLD_IMAGES``); :func:`changes_of` turns one into
the customer's period counters before and after (a wallet write: per period it changed, with the balance);
:func:`alerts_for` asks the plan's (or the customer's own) rules which were crossed
(``tollgate.domain.alerts``) and :func:`deliver` publishes each alert once: a marker claimed before
publishing (``tollgate.dal.alerts``) makes a replayed record, or the same record in two consumers, publish
nothing more. A consumer that crashes after publishing and before marking the alert sent leaves a lease that
runs out; the retry publishes it again under the same ``alertId``, so delivery is at least once, and a
subscriber that must act once deduplicates on that id.

A sharded customer's change is one shard's: the period's total is read across the shards and an alert fires
once the total is at or above its threshold (a level, not an edge: two shards' writes processed in parallel
cannot hide a crossing from each other).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from tollgate.dal import tablekeys as tk
from tollgate.dal.alerts import Claim, claim_alert, mark_sent
from tollgate.dal.counter_item import BALANCE, BOUGHT, PERIOD_TAG_LENGTH, period_of_tag
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert, CounterChange, crossings
from tollgate.domain.models import plan_ref
from tollgate.errors import RetryLaterError


class AlertPublisher(Protocol):
    def publish(self, alert: Alert) -> None:
        """Send ``alert`` on (EventBridge); raise if it was not accepted."""
        ...


def changes_of(
    old: Mapping[str, Any] | None, new: Mapping[str, Any] | None, at: datetime
) -> list[CounterChange]:
    """The counter changes one stream record holds (none for any other item, or a removal)."""
    if not new:
        return []
    before = old or {}
    pk = str(new.get(tk.PK, ""))
    if pk.startswith("USAGE#"):
        _, customer_id, period, _shard = pk.split("#", 3)
        return [
            CounterChange(customer_id, period, at, _int(before.get(tk.CREDITS)), _int(new.get(tk.CREDITS)))
        ]
    if not pk.startswith("WALLET#"):
        return []
    customer_id = pk.removeprefix("WALLET#")
    changes = []
    for name in sorted(new):
        tag = name[:PERIOD_TAG_LENGTH]
        month = period_of_tag(tag)
        if month is None or name != tag + tk.CREDITS:
            continue  # a route's tally, a segment's credits, the balance...
        credits_before, credits_after = _int(before.get(name)), _int(new.get(name))
        if credits_before == credits_after:
            continue
        changes.append(
            CounterChange(
                customer_id,
                month,
                at,
                credits_before,
                credits_after,
                balance_before=_int(before.get(BALANCE)) if BALANCE in before else None,
                balance_after=_int(new.get(BALANCE)),
                bought=_int(new.get(BOUGHT)),
            )
        )
    return changes


def alerts_for(store: TollgateStore, change: CounterChange) -> list[Alert]:
    """The alerts ``change`` fires under the plan in force when it happened."""
    customer = store.get_customer(change.customer_id)
    segment = customer.segment_at(change.at)
    plan = store.get_plan(segment.plan_id, segment.plan_version)
    rules = customer.alerts if customer.alerts is not None else plan.alerts
    if not rules:
        return []
    if customer.counter_shards > 1:
        total = store.read_usage(customer.id, change.period, customer.counter_shards).credits
        change = replace(change, credits_before=0, credits_after=total)
    budget = None
    if customer.budget is not None:
        budget = customer.budget.credits.get(plan_ref(plan.id, plan.version), 0)
    return crossings(change, plan, rules, budget)


@dataclass(frozen=True)
class Delivered:
    alert: Alert
    published: bool  # False: it had been published before


def deliver(store: TollgateStore, publisher: AlertPublisher, alert: Alert, now: datetime) -> Delivered:
    """Publish ``alert`` unless it was; ``RetryLaterError`` while another consumer is publishing it."""
    claim = claim_alert(store, alert, now)
    if claim is Claim.SENT:
        return Delivered(alert, published=False)
    if claim is Claim.BUSY:
        raise RetryLaterError(f"alert {alert.alert_id} is being published by another consumer")
    publisher.publish(alert)
    mark_sent(store, alert, now)
    return Delivered(alert, published=True)


def process(
    store: TollgateStore,
    publisher: AlertPublisher,
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    at: datetime,
    now: datetime,
) -> list[Delivered]:
    """One stream record: every alert it fires, delivered once."""
    return [
        deliver(store, publisher, alert, now)
        for change in changes_of(old, new, at)
        for alert in alerts_for(store, change)
    ]


def _int(value: Any) -> int:
    if value is None:
        return 0
    return int(Decimal(str(value)))
