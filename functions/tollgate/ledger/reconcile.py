"""Gather what the reconciliation compares, then apply its rules (``tollgate.ledger.report``).

Per customer of the table: the period's counters (``TollgateStore.read_usage``, strongly consistent), the
period's close record and the next few of later periods (one Query from the period's own record on), and,
when the period has no close record yet, its threshold invoices. The ledger is asked once for every customer
(``LedgerQueries.customer_totals``); a customer it names that the table does not know gets a row of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from boto3.dynamodb.conditions import Key

from tollgate.dal import tablekeys as tk
from tollgate.dal.closes import close_from_item, list_threshold_invoices
from tollgate.dal.refunds import RefundLedger
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import PeriodClose
from tollgate.domain.models import Customer, RouteUsage
from tollgate.errors import NotFoundError
from tollgate.ledger.queries import LedgerQueries
from tollgate.ledger.report import (
    DEFAULT_DELIVERY_DELAY,
    LATE_USAGE_LOOKBACK,
    CustomerFacts,
    Reconciliation,
    is_prepaid,
    reconcile,
)

_LAST_CLOSE_SK = f"{tk.CLOSE_SK_PREFIX}9999-99"


def closes_from(table: Any, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
    """The customer's close records of ``period`` and after, oldest first, at most ``limit`` (one strongly
    consistent Query)."""
    answer = table.query(
        KeyConditionExpression=Key(tk.PK).eq(tk.customer_pk(customer_id))
        & Key(tk.SK).between(tk.close_key(customer_id, period)[tk.SK], _LAST_CLOSE_SK),
        ScanIndexForward=True,
        Limit=limit,
        ConsistentRead=True,
    )
    return [close_from_item(item) for item in answer["Items"]]


def customer_facts(store: TollgateStore, customer: Customer, period: str) -> CustomerFacts:
    usage = store.read_usage(customer.id, period, customer.counter_shards)
    # the period's record and enough later ones to tell whether a close can still bill its late usage, and
    # whether a prepaid wallet has dropped its counters (a close LATE_USAGE_LOOKBACK + 1 periods later)
    records = closes_from(store.table, customer.id, period, LATE_USAGE_LOOKBACK + 2)
    close = records[0] if records and records[0].period == period else None
    later = tuple(record for record in records if record.period > period)
    thresholds = () if close is not None else tuple(list_threshold_invoices(store.table, customer.id, period))
    refunded = usage.refunded
    if close is not None and is_prepaid(close) and usage.requests == 0:
        # the wallet may have dropped the period's counters (refunded included): the markers still say
        markers = RefundLedger(store).list(customer.id, period)
        refunded = RouteUsage(credits=sum(marker.credits for marker in markers), requests=len(markers))
    return CustomerFacts(
        customer_id=customer.id,
        counter_credits=usage.credits,
        counter_requests=usage.requests,
        refunded_credits=refunded.credits,
        refunded_requests=refunded.requests,
        close=close,
        later_closes=later,
        threshold_invoices=thresholds,
    )


def _customers(store: TollgateStore, customer_id: str | None) -> Iterator[Customer]:
    if customer_id is None:
        for page in store.customer_pages():
            yield from page
        return
    try:
        yield store.get_customer(customer_id)
    except NotFoundError:
        return


def gather(
    store: TollgateStore, ledger: LedgerQueries, period: str, customer_id: str | None = None
) -> list[CustomerFacts]:
    """Every customer's facts for ``period`` (or only ``customer_id``'s), with the ledger's totals."""
    totals = {found.customer_id: found for found in ledger.customer_totals(period, customer_id)}
    facts: list[CustomerFacts] = []
    for customer in _customers(store, customer_id):
        found = customer_facts(store, customer, period)
        facts.append(replace(found, ledger=totals.pop(customer.id, None)))
    facts += [CustomerFacts(name, known=False, ledger=rest) for name, rest in totals.items()]
    return facts


def reconcile_period(
    store: TollgateStore,
    ledger: LedgerQueries,
    period: str,
    *,
    now: datetime,
    customer_id: str | None = None,
    delivery_delay: timedelta = DEFAULT_DELIVERY_DELAY,
) -> Reconciliation:
    """The period's reconciliation report (``tollgate.ledger.report``)."""
    facts = gather(store, ledger, period, customer_id)
    return reconcile(period, facts, now=now, delivery_delay=delivery_delay, customer=customer_id)
