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

A draw that leaves a prepaid balance below the customer's automatic top-up threshold also charges their saved
card, once per crossing (:func:`top_up_if_low`, ``tollgate.accounts.auto_top_up``). A counter whose period's
usage may have reached the plan's ``invoice_threshold`` has it invoiced at once (:class:`InvoiceThresholds`,
``tollgate.domain.progressive``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from tollgate.accounts.auto_top_up import TopUpOutcome, suspend_after_failure
from tollgate.dal import tablekeys as tk
from tollgate.dal.alerts import Claim, auto_top_up_key, claim, claim_alert, mark_done, mark_sent
from tollgate.dal.counter_item import BALANCE, BOUGHT, PERIOD_TAG_LENGTH, period_of_tag, period_tag
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert, AlertKind, CounterChange, crossings
from tollgate.domain.budgets import peak_charge
from tollgate.domain.models import AlertRule, Customer, Plan, plan_ref
from tollgate.domain.periods import period_of, period_start
from tollgate.domain.progressive import threshold_minor
from tollgate.errors import RetryLaterError

LOG = logging.getLogger(__name__)

# the items whose changes alert: counters, prepaid wallets
STREAM_KEY_PREFIXES = (tk.COUNTER_PK_PREFIX, tk.WALLET_PK_PREFIX)
CUSTOMER_TTL_SECONDS = 30.0
MAX_CACHED_CUSTOMERS = 10_000


class TopUpCharger(Protocol):
    def __call__(self, customer_id: str, crossing: str, now: datetime) -> TopUpOutcome:
        """Charge the customer's automatic top-up for ``crossing`` (``accounts.auto_top_up.charge``)."""
        ...


class ThresholdBilling(Protocol):
    def __call__(self, customer_id: str, period: str, now: datetime) -> int:
        """Invoice the period's usage if it has reached the plan's threshold
        (``tollgate.billing.close.service.run_threshold``); what its threshold invoices have billed."""
        ...


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
    if pk.startswith(tk.COUNTER_PK_PREFIX):
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
    balance_before, balance_after = _int(before.get(BALANCE)), _int(new.get(BALANCE))
    if not changes and BALANCE in before and balance_after < balance_before:
        # Credits left the balance without a request (an expiry): a balance alert may fire, nothing else.
        month = period_of(at)
        credits = _int(new.get(period_tag(month) + tk.CREDITS))
        changes.append(
            CounterChange(
                customer_id,
                month,
                at,
                credits,
                credits,
                balance_before=balance_before,
                balance_after=balance_after,
                bought=_int(new.get(BOUGHT)),
            )
        )
    return changes


class Accounts:
    """The customers and plans the alert function reads, kept for :data:`CUSTOMER_TTL_SECONDS` (a customer)
    or for good (a plan version never changes): a busy customer's changes cost no read each. A change of a
    customer's rules, budget or plan is seen within the TTL."""

    def __init__(self, store: TollgateStore, clock: Callable[[], float] = time.monotonic) -> None:
        self.store, self._clock = store, clock
        self._customers: dict[str, tuple[float, Customer]] = {}
        self._plans: dict[tuple[str, int], Plan] = {}

    def customer(self, customer_id: str) -> Customer:
        now = self._clock()
        held = self._customers.get(customer_id)
        if held is not None and held[0] > now:
            return held[1]
        if len(self._customers) >= MAX_CACHED_CUSTOMERS:
            self._customers.clear()
        customer = self.store.get_customer(customer_id)
        self._customers[customer_id] = (now + CUSTOMER_TTL_SECONDS, customer)
        return customer

    def plan(self, plan_id: str, version: int) -> Plan:
        key = (plan_id, version)
        if key not in self._plans:
            self._plans[key] = self.store.get_plan(plan_id, version)
        return self._plans[key]


def alerts_for(store: TollgateStore, change: CounterChange, accounts: Accounts | None = None) -> list[Alert]:
    """The alerts ``change`` fires under the plan in force when it happened."""
    accounts = accounts or Accounts(store)
    customer = accounts.customer(change.customer_id)
    segment = customer.segment_at(change.at)
    plan = accounts.plan(segment.plan_id, segment.plan_version)
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
    accounts: Accounts | None = None,
    top_up: TopUpCharger | None = None,
    thresholds: InvoiceThresholds | None = None,
) -> list[Delivered]:
    """One stream record: every alert it fires, delivered once; a low prepaid balance topped up once (with
    ``top_up``); usage that reached the plan's invoice threshold invoiced (with ``thresholds``)."""
    accounts = accounts or Accounts(store)
    delivered = []
    for change in changes_of(old, new, at):
        if top_up is not None:
            delivered += top_up_if_low(store, publisher, top_up, change, accounts, now)
        if thresholds is not None:
            thresholds.check(store, change, accounts, now)
        delivered += [deliver(store, publisher, alert, now) for alert in alerts_for(store, change, accounts)]
    return delivered


def top_up_if_low(
    store: TollgateStore,
    publisher: AlertPublisher,
    top_up: TopUpCharger,
    change: CounterChange,
    accounts: Accounts,
    now: datetime,
) -> list[Delivered]:
    """The customer's automatic top-up, if a draw left their balance below its threshold: once per crossing
    (the credits bought so far name it; only a top-up changes them). A failed charge is published as an
    alert and, with ``suspend_on_failure``, suspends the customer."""
    if change.balance_after is None or change.credits_after <= change.credits_before:
        return []  # not a draw
    customer = accounts.customer(change.customer_id)
    settings = customer.auto_top_up
    if settings is None or change.balance_after >= settings.below:
        return []
    crossing = str(change.bought)
    key = auto_top_up_key(customer.id, crossing)
    claimed = claim(store, key, f"{customer.id}:auto-top-up:{crossing}", now)
    if claimed is Claim.SENT:
        return []
    if claimed is Claim.BUSY:
        raise RetryLaterError(f"the automatic top-up of {customer.id} ({crossing}) is being charged")
    outcome = top_up(customer.id, crossing, now)
    delivered = []
    if outcome.status == "failed":
        if settings.suspend_on_failure:
            suspend_after_failure(store, outcome, now=now)
        failed = Alert(
            customer.id,
            change.period,
            AlertKind.TOP_UP_FAILED,
            AlertRule(balance_below=settings.below),
            f"a balance below {settings.below:,} credits; {settings.credits:,} credits not charged",
            change.credits_after,
            change.at,
            f"topup{crossing}",
            {
                "balance": change.balance_after,
                "failure": outcome.failure,
                "paymentIntent": outcome.payment_intent,
                "suspended": settings.suspend_on_failure,
            },
        )
        delivered.append(deliver(store, publisher, failed, now))
    mark_done(store, key, now)
    return delivered


CHECK_SECONDS = 30.0  # a customer-period found below its threshold is not checked again sooner


class InvoiceThresholds:
    """Which counter changes may have brought a period's usage to the plan's ``invoice_threshold``.

    A change is let through to the threshold billing (which rates the period exactly: included credits,
    tiers, plan segments, free credits) when the period's whole charge so far on the plan (at most what its
    usage bills) reaches the threshold above what its threshold invoices billed, or its plan changed within
    the period; and then, while it has not, at most
    once every :data:`CHECK_SECONDS` per customer-period, so a busy customer costs one exact check per 30 s.
    The billing's failures are logged, not raised: the next check, or the period's close, finishes what a
    failed one started."""

    def __init__(self, billing: ThresholdBilling, clock: Callable[[], float] = time.monotonic) -> None:
        self._billing, self._clock = billing, clock
        self._invoiced: dict[tuple[str, str], int] = {}  # what the threshold invoices billed, as last seen
        self._checked: dict[tuple[str, str], float] = {}  # when each was last found below its threshold

    def check(self, store: TollgateStore, change: CounterChange, accounts: Accounts, now: datetime) -> None:
        if change.balance_after is not None or change.credits_after <= change.credits_before:
            return  # a prepaid draw (nothing billed after the fact), or not more usage
        customer = accounts.customer(change.customer_id)
        segment = customer.segment_at(change.at)
        plan = accounts.plan(segment.plan_id, segment.plan_version)
        threshold = threshold_minor(plan)
        if threshold is None:
            return
        key = (customer.id, change.period)
        credits = change.credits_after
        if customer.counter_shards > 1:
            credits = store.read_usage(customer.id, change.period, customer.counter_shards).credits
        changed_plan = any(
            segment.since is not None and period_start(change.period) <= segment.since
            for segment in customer.segments
        )
        if not changed_plan and peak_charge(plan, credits) < self._invoiced.get(key, 0) + threshold:
            return  # even the period's whole charge so far does not reach it
        moment = self._clock()
        if moment < self._checked.get(key, float("-inf")) + CHECK_SECONDS:
            return
        if len(self._checked) >= MAX_CACHED_CUSTOMERS:
            self._checked.clear()
            self._invoiced.clear()
        self._checked[key] = moment
        try:
            self._invoiced[key] = self._billing(customer.id, change.period, now)
        except Exception:
            LOG.exception("threshold invoicing of %s %s failed; the next check retries", *key)


def _int(value: Any) -> int:
    if value is None:
        return 0
    return int(Decimal(str(value)))
