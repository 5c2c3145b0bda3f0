"""The reconciliation of one period: per customer, counters = request ledger = invoiced credits, and every
difference explained by a rule or flagged. Pure: the facts come in (``tollgate.ledger.reconcile`` reads them),
the report goes out.

Three numbers per customer:

* **counters**: the credits (and requests) the authorizer counted for the period
  (``TollgateStore.read_usage``).
* **ledger**: the credits (and requests) of the distinct requests API Gateway's access log records as counted:
  ``metered = 'true'`` and not refused (``tollgate.ledger.queries``).
* **invoiced**: what the close records say was billed for the period: the period's close record's
  ``billed_credits`` (threshold invoices are part of it: the close bills the period whole and takes them off;
  late usage billed by a later close raises it). For a prepaid customer, the credits drawn shown on the
  statement's prepaid lines, plus the late credits later closes took over (``adjusted_periods``).

The rules, in order (``Reason``; each difference is explained by one of them, or flagged):

1. counters vs ledger. A shortfall of the ledger (counters above it) is explained

   * up to the credits and requests of the ledger's ``metering_unavailable`` refusals: a counter write whose
     outcome was unknown is never retried and the request is refused, so it may be counted and not served
     (decision 3) — ``outcome_unknown``;
   * entirely while ledger records may still be on their way: before ``delivery_delay`` past the period's end
     (Firehose buffers; for a period still open, any shortfall) — ``ledger_in_flight``.

   Anything else is flagged: counters above the ledger afterwards (``counters_without_ledger``: a ledger
   record lost, or a request counted that API Gateway never logged), and the ledger above the counters at any
   time (``ledger_without_counters``: a counter write lost; the counter is written before the request is
   served, so the ledger can never be ahead legitimately). Refunds of failed requests
   (``tollgate.domain.refunds``) take credits off the counters, not requests: the counters plus what was
   refunded are compared with the ledger, and the refunds are shown as ``refunded``, explained up to the
   credits of the ledger's failed requests (status 400 or more) and flagged beyond
   (``refunded_without_failure``).
2. counters vs invoiced. No close record: explained as ``period_open`` before the period's end and
   ``not_closed`` after it (the close watchdog alarms on a close that does not finish); credits invoiced early
   by threshold invoices are shown. With a record: counters above invoiced are late usage, explained
   (``late_usage_pending``) while a close that will bill it is still to come (fewer than
   ``LATE_USAGE_LOOKBACK`` later close records: each close re-reads that many earlier ones), flagged
   (``late_usage_unbilled``) once no close can reach the period any more; invoiced above counters is
   explained by refunds made after the close, up to the credits refunded, while a close that will credit them
   is still to come (``refund_pending``), and flagged otherwise (``invoiced_more_than_counted``).
3. A prepaid customer's wallet drops a period's counters once a close ``LATE_USAGE_LOOKBACK + 1`` periods
   later ran (a note; counters shown as unavailable): then the ledger is compared with invoiced directly, and
   any difference is flagged (``ledger_not_invoiced``).
4. Always flagged: metered requests of a customer the table does not know (``unknown_customer``, including
   ``customerId`` ``-``), and ledger records of one request that disagree (``conflicting_records``).

Requests served unmetered (``metered = 'false'``, ``FAIL_OPEN`` while DynamoDB was down) and refused requests
are shown, never billed, and are not differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tollgate.domain.closes import PeriodClose
from tollgate.domain.periods import next_period, parse_period, period_end
from tollgate.domain.rating import LineKind
from tollgate.ledger.queries import ANONYMOUS, CustomerLedger

LATE_USAGE_LOOKBACK = 3  # earlier close records each close re-reads for late usage (billing.close.steps)
DEFAULT_DELIVERY_DELAY = timedelta(minutes=30)  # the longest a ledger record takes to land after its request


class Reason(StrEnum):
    # explained
    OUTCOME_UNKNOWN = "outcome_unknown"
    LEDGER_IN_FLIGHT = "ledger_in_flight"
    PERIOD_OPEN = "period_open"
    NOT_CLOSED = "not_closed"
    LATE_USAGE_PENDING = "late_usage_pending"
    REFUNDED = "refunded"
    REFUND_PENDING = "refund_pending"
    # flagged
    COUNTERS_WITHOUT_LEDGER = "counters_without_ledger"
    LEDGER_WITHOUT_COUNTERS = "ledger_without_counters"
    LATE_USAGE_UNBILLED = "late_usage_unbilled"
    INVOICED_MORE_THAN_COUNTED = "invoiced_more_than_counted"
    LEDGER_NOT_INVOICED = "ledger_not_invoiced"
    UNKNOWN_CUSTOMER = "unknown_customer"
    CONFLICTING_RECORDS = "conflicting_records"
    REFUNDED_WITHOUT_FAILURE = "refunded_without_failure"


EXPLAINED = frozenset(
    {
        Reason.OUTCOME_UNKNOWN,
        Reason.LEDGER_IN_FLIGHT,
        Reason.PERIOD_OPEN,
        Reason.NOT_CLOSED,
        Reason.LATE_USAGE_PENDING,
        Reason.REFUNDED,
        Reason.REFUND_PENDING,
    }
)


class Between(StrEnum):
    COUNTERS_LEDGER = "counters-ledger"
    COUNTERS_INVOICED = "counters-invoiced"
    LEDGER_INVOICED = "ledger-invoiced"
    LEDGER = "ledger"


@dataclass(frozen=True)
class Difference:
    """One difference, ``credits`` (and ``requests``) being the first number less the second of ``between``,
    with the rule that explains it, or a flag."""

    between: Between
    reason: Reason
    credits: int
    requests: int = 0
    detail: str = ""

    @property
    def explained(self) -> bool:
        return self.reason in EXPLAINED

    def as_dict(self) -> dict[str, Any]:
        return {
            "between": str(self.between),
            "reason": str(self.reason),
            "explained": self.explained,
            "credits": self.credits,
            "requests": self.requests,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class CustomerFacts:
    """What is known of one customer for the period, as read (``tollgate.ledger.reconcile``)."""

    customer_id: str
    known: bool = True  # a customer in the table (False: only the ledger names it)
    counter_credits: int = 0
    counter_requests: int = 0
    refunded_credits: int = 0  # failed requests' credits refunded (tollgate.domain.refunds): off the counters
    refunded_requests: int = 0
    ledger: CustomerLedger | None = None  # None: no record in the ledger
    close: PeriodClose | None = None  # the period's close record
    later_closes: tuple[PeriodClose, ...] = ()  # close records of later periods, oldest first
    threshold_invoices: tuple[PeriodClose, ...] = ()  # the period's threshold invoices, when not closed


@dataclass(frozen=True)
class Row:
    customer_id: str
    counters: int | None  # None: not available (a prepaid wallet dropped the period)
    counter_requests: int | None
    ledger: int
    ledger_requests: int
    unmetered_requests: int
    refused_requests: int
    invoiced: int | None  # None: the period has no close record
    refunded: int  # credits of failed requests refunded (off the counters; the ledger keeps the requests)
    invoiced_early: int | None  # credits the period's threshold invoices billed, when not closed yet
    late_billed: Mapping[str, int]  # later period -> late credits of this period its close billed
    prepaid: bool
    differences: tuple[Difference, ...]
    notes: tuple[str, ...] = ()

    @property
    def unexplained(self) -> int:
        """Credits of the differences no rule explains."""
        return sum(abs(d.credits) for d in self.differences if not d.explained)

    @property
    def unexplained_requests(self) -> int:
        return sum(abs(d.requests) for d in self.differences if not d.explained)

    @property
    def flagged(self) -> bool:
        return any(not d.explained for d in self.differences)

    @property
    def status(self) -> str:
        if self.flagged:
            return "flagged"
        return "explained" if self.differences else "ok"

    def as_dict(self) -> dict[str, Any]:
        return {
            "customer": self.customer_id,
            "status": self.status,
            "counters": self.counters,
            "counterRequests": self.counter_requests,
            "ledger": self.ledger,
            "ledgerRequests": self.ledger_requests,
            "invoiced": self.invoiced,
            "refunded": self.refunded,
            "invoicedEarly": self.invoiced_early,
            "lateBilled": dict(self.late_billed),
            "prepaid": self.prepaid,
            "unmeteredRequests": self.unmetered_requests,
            "refusedRequests": self.refused_requests,
            "unexplained": self.unexplained,
            "unexplainedRequests": self.unexplained_requests,
            "differences": [d.as_dict() for d in self.differences],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class Reconciliation:
    period: str
    at: datetime
    delivery_delay: timedelta
    rows: tuple[Row, ...]
    anonymous_refused: int = 0  # refused before a key named a customer (customerId '-')
    anonymous_unmetered: int = 0
    customer: str | None = None  # only this customer was reconciled

    @property
    def unexplained(self) -> int:
        return sum(row.unexplained for row in self.rows)

    @property
    def flagged(self) -> tuple[Row, ...]:
        return tuple(row for row in self.rows if row.flagged)

    @property
    def ok(self) -> bool:
        return not self.flagged

    def totals(self) -> dict[str, int]:
        return {
            "counters": sum(row.counters or 0 for row in self.rows),
            "ledger": sum(row.ledger for row in self.rows),
            "invoiced": sum(row.invoiced or 0 for row in self.rows),
            "refunded": sum(row.refunded for row in self.rows),
            "unexplained": self.unexplained,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "customer": self.customer,
            "at": self.at.isoformat(),
            "deliveryDelayMinutes": self.delivery_delay.total_seconds() / 60,
            "ok": self.ok,
            "totals": self.totals(),
            "flaggedCustomers": [row.customer_id for row in self.flagged],
            "anonymousRefusedRequests": self.anonymous_refused,
            "anonymousUnmeteredRequests": self.anonymous_unmetered,
            "rows": [row.as_dict() for row in self.rows],
        }


def periods_after(period: str, count: int) -> str:
    for _ in range(count):
        period = next_period(period)
    return period


def is_prepaid(record: PeriodClose) -> bool:
    return any(line.kind is LineKind.PREPAID for line in record.statement.lines)


def invoiced_credits(period: str, record: PeriodClose, later: Iterable[PeriodClose]) -> int:
    """What the close records say was billed for ``period``: ``billed_credits`` (the close's credits, raised
    by each later close that billed late usage); for a prepaid customer, the credits drawn on the statement's
    prepaid lines plus the late credits later closes took over."""
    if not is_prepaid(record):
        return record.billed_credits
    drawn = sum(
        line.quantity
        for line in record.statement.lines
        if line.kind is LineKind.PREPAID and line.period == period
    )
    return drawn + sum(found.adjusted_periods.get(period, 0) for found in later)


def _refunds(facts: CustomerFacts, ledger: CustomerLedger) -> list[Difference]:
    """The counters hold less than the ledger by what refunds took off them: explained up to the credits of
    the ledger's failed requests, flagged beyond (a refund with no failed request behind it)."""
    if not facts.refunded_credits:
        return []
    between = Between.COUNTERS_LEDGER
    backed = min(facts.refunded_credits, ledger.failed_credits)
    found: list[Difference] = []
    if backed:
        detail = f"{facts.refunded_requests:,} failed request(s) refunded (the plan bills what succeeded)"
        found.append(Difference(between, Reason.REFUNDED, -backed, 0, detail))
    if facts.refunded_credits > backed:
        detail = "refunded credits the ledger's failed requests do not account for"
        found.append(
            Difference(between, Reason.REFUNDED_WITHOUT_FAILURE, backed - facts.refunded_credits, 0, detail)
        )
    return found


def _counters_vs_ledger(facts: CustomerFacts, ledger: CustomerLedger, in_flight: bool) -> list[Difference]:
    found = _refunds(facts, ledger)
    # what the counters held before the refunds (a refund takes credits off; the requests stay counted)
    credits = facts.counter_credits + facts.refunded_credits - ledger.metered_credits
    requests = facts.counter_requests - ledger.metered_requests
    if credits == 0 and requests == 0:
        return found
    between = Between.COUNTERS_LEDGER
    if credits < 0 or requests < 0:
        detail = "the ledger records counted requests the counters do not have (a counter write lost?)"
        return [*found, Difference(between, Reason.LEDGER_WITHOUT_COUNTERS, credits, requests, detail)]
    unknown_credits = min(credits, ledger.uncertain_credits)
    unknown_requests = min(requests, ledger.uncertain_requests)
    if unknown_credits or unknown_requests:
        detail = (
            f"{ledger.uncertain_requests:,} request(s) refused as metering_unavailable: the counter write's "
            "outcome was unknown, so it may have been counted without being served"
        )
        found.append(Difference(between, Reason.OUTCOME_UNKNOWN, unknown_credits, unknown_requests, detail))
    credits, requests = credits - unknown_credits, requests - unknown_requests
    if credits or requests:
        if in_flight:
            detail = "ledger records not delivered yet (within the delivery delay of the period's end)"
            found.append(Difference(between, Reason.LEDGER_IN_FLIGHT, credits, requests, detail))
        else:
            detail = "counted requests the ledger does not have (a ledger record lost?)"
            found.append(Difference(between, Reason.COUNTERS_WITHOUT_LEDGER, credits, requests, detail))
    return found


def _counters_vs_invoiced(
    period: str, facts: CustomerFacts, invoiced: int | None, ended: bool
) -> list[Difference]:
    between = Between.COUNTERS_INVOICED
    if invoiced is None:
        if not facts.counter_credits:
            return []
        early = _invoiced_early(facts)
        detail = f"; {early:,} credits invoiced early by threshold invoices" if early else ""
        if ended:
            return [
                Difference(between, Reason.NOT_CLOSED, facts.counter_credits, 0, f"not closed yet{detail}")
            ]
        return [
            Difference(between, Reason.PERIOD_OPEN, facts.counter_credits, 0, f"the period is open{detail}")
        ]
    credits = facts.counter_credits - invoiced
    if credits == 0:
        return []
    later = len(facts.later_closes)
    if credits < 0:
        if -credits <= facts.refunded_credits and later < LATE_USAGE_LOOKBACK:
            detail = (
                f"failed requests refunded after the close: the close of {periods_after(period, later + 1)} "
                "credits them"
            )
            return [Difference(between, Reason.REFUND_PENDING, credits, 0, detail)]
        detail = "the close records billed more credits than were counted"
        return [Difference(between, Reason.INVOICED_MORE_THAN_COUNTED, credits, 0, detail)]
    if later < LATE_USAGE_LOOKBACK:
        detail = (
            f"late usage counted after the close: the close of {periods_after(period, later + 1)} bills it"
            if later == 0
            else f"late usage counted after the closes so far: a close after {facts.later_closes[-1].period} "
            "bills it"
        )
        return [Difference(between, Reason.LATE_USAGE_PENDING, credits, 0, detail)]
    detail = f"late usage no close can bill any more ({later} later closes ran)"
    return [Difference(between, Reason.LATE_USAGE_UNBILLED, credits, 0, detail)]


def _invoiced_early(facts: CustomerFacts) -> int | None:
    if not facts.threshold_invoices:
        return None
    return max(part.billed_credits for part in facts.threshold_invoices)


def reconcile_customer(
    period: str, facts: CustomerFacts, *, now: datetime, delivery_delay: timedelta = DEFAULT_DELIVERY_DELAY
) -> Row:
    """One customer's row: the three numbers and every difference, explained or flagged."""
    ledger = facts.ledger or CustomerLedger(facts.customer_id)
    end = period_end(period)
    record = facts.close
    later = tuple(found for found in facts.later_closes if found.period > period)
    prepaid = record is not None and is_prepaid(record)
    invoiced = None if record is None else invoiced_credits(period, record, later)
    late_billed = {
        found.period: found.adjusted_periods[period]
        for found in later
        if found.adjusted_periods.get(period, 0) != 0  # negative: refunds credited on that invoice
    }
    differences: list[Difference] = []
    notes: list[str] = []
    counters: int | None = facts.counter_credits
    counter_requests: int | None = facts.counter_requests
    forgotten = (
        prepaid
        and facts.counter_credits == 0
        and facts.counter_requests == 0
        and any(found.period > periods_after(period, LATE_USAGE_LOOKBACK) for found in later)
    )
    if not facts.known:
        counters = counter_requests = None  # no counters to read: not a customer of the table
        if ledger.metered_credits or ledger.metered_requests:
            who = (
                "requests with no customer"
                if facts.customer_id == ANONYMOUS
                else "not a customer in the table"
            )
            differences.append(
                Difference(
                    Between.LEDGER,
                    Reason.UNKNOWN_CUSTOMER,
                    ledger.metered_credits,
                    ledger.metered_requests,
                    f"metered {who}",
                )
            )
    elif forgotten:
        counters = counter_requests = None
        notes.append("counters dropped from the prepaid wallet (older than the late-usage lookback)")
        assert invoiced is not None  # forgotten implies a close record
        differences += _refunds(facts, ledger)  # refunds as their markers say (the wallet's counters went)
        if ledger.metered_credits - facts.refunded_credits != invoiced:
            differences.append(
                Difference(
                    Between.LEDGER_INVOICED,
                    Reason.LEDGER_NOT_INVOICED,
                    ledger.metered_credits - facts.refunded_credits - invoiced,
                    0,
                    "the ledger (less refunds) and the close records disagree",
                )
            )
    else:
        in_flight = now < end + delivery_delay
        differences += _counters_vs_ledger(facts, ledger, in_flight)
        differences += _counters_vs_invoiced(period, facts, invoiced, ended=now >= end)
    if ledger.conflicting_requests:
        differences.append(
            Difference(
                Between.LEDGER,
                Reason.CONFLICTING_RECORDS,
                0,
                ledger.conflicting_requests,
                "copies of one requestId disagree (customer, metered, deny reason or credits)",
            )
        )
    if late_billed:
        notes.append(
            "late usage billed (or refunds credited) later: "
            + ", ".join(f"{credits:+,} on {found}'s invoice" for found, credits in late_billed.items())
        )
    if record is not None and record.status not in ("finalized", "no_charge"):
        notes.append(f"the close is not finished ({record.status})")
    if ledger.unmetered_requests:
        notes.append(f"{ledger.unmetered_requests:,} request(s) served unmetered (never billed)")
    return Row(
        customer_id=facts.customer_id,
        counters=counters,
        counter_requests=counter_requests,
        ledger=ledger.metered_credits,
        ledger_requests=ledger.metered_requests,
        unmetered_requests=ledger.unmetered_requests,
        refused_requests=ledger.refused_requests,
        invoiced=invoiced,
        refunded=facts.refunded_credits,
        invoiced_early=_invoiced_early(facts) if record is None else None,
        late_billed=late_billed,
        prepaid=prepaid,
        differences=tuple(differences),
        notes=tuple(notes),
    )


def reconcile(
    period: str,
    facts: Sequence[CustomerFacts],
    *,
    now: datetime,
    delivery_delay: timedelta = DEFAULT_DELIVERY_DELAY,
    customer: str | None = None,
) -> Reconciliation:
    """The period's report: a row per customer of the table, and per customer only the ledger names that has
    metered requests; refusals and unmetered requests of ``customerId`` ``-`` are summed apart."""
    parse_period(period)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    rows: list[Row] = []
    anonymous_refused = anonymous_unmetered = 0
    for found in sorted(facts, key=lambda item: item.customer_id):
        if not found.known and found.ledger is not None:
            if found.customer_id == ANONYMOUS:
                anonymous_refused += found.ledger.refused_requests
                anonymous_unmetered += found.ledger.unmetered_requests
            if not (
                found.ledger.metered_requests
                or found.ledger.metered_credits
                or found.ledger.conflicting_requests
            ):
                continue
        rows.append(reconcile_customer(period, found, now=now, delivery_delay=delivery_delay))
    return Reconciliation(
        period=period,
        at=now,
        delivery_delay=delivery_delay,
        rows=tuple(rows),
        anonymous_refused=anonymous_refused,
        anonymous_unmetered=anonymous_unmetered,
        customer=customer,
    )
