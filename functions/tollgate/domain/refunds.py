"""Bill only what succeeded: which ledger records are refunded, and what a refund takes back.

A plan with ``refund_statuses`` (``["5xx"]``, ``["5xx", "429"]``...) refunds every metered request whose
response status is in one of them: the credits the authorizer counted are taken back from the very tallies it
added them to (the counter shard or the prepaid wallet, the plan segment, the route's and the day's tallies),
once per request id (``tollgate.dal.refunds``). The status is what the caller got (``$context.status``):
after the authorizer let a request through, a 5xx comes from the provider's backend or from API Gateway
failing to reach it (502, 504), both the provider's doing. An HTTP API's ``$context.integration.status``
is Lambda's own status, not the function's, so it cannot tell.

Pure functions over ``tollgate.domain.ledger.LedgerRecord``; the consumer (``tollgate.refunds``) reads the
records and the plans, the store writes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from tollgate.domain.ledger import LedgerRecord
from tollgate.domain.models import Plan
from tollgate.domain.periods import period_and_day_of_epoch_ms


def status_matches(status: int, statuses: Iterable[str]) -> bool:
    """Whether ``status`` is in one of ``statuses``: a class (``"5xx"``) or a code (``"503"``)."""
    code = str(status)
    return any(code == s or (s.endswith("xx") and code[0] == s[0] and len(code) == 3) for s in statuses)


class Skip(StrEnum):
    """Why a record that would be refunded cannot be (the consumer counts and logs these)."""

    WHERE_UNKNOWN = "where_unknown"  # logged before records said where the credits were counted
    OTHER_PERIOD = "other_period"  # its period is not its request time's (a record that was tampered with)


@dataclass(frozen=True)
class Refund:
    """Take ``credits`` of request ``request_id`` back from where the authorizer counted them."""

    request_id: str
    customer_id: str
    period: str
    day: int  # of the month (UTC, from the request's own timestamp, as the authorizer's day tally)
    route_code: str
    segment: int
    shard: int | None  # None: the prepaid wallet
    credits: int
    status: int

    @property
    def prepaid(self) -> bool:
        return self.shard is None


def failed_and_counted(record: LedgerRecord) -> bool:
    """A request the authorizer counted (allowed, metered, credits > 0) that ended in an error status: one a
    plan may refund. No plan needed: the consumer reads plans only for these."""
    return (
        record.allowed
        and record.counted_credits > 0
        and record.customer_id is not None
        and record.status is not None
        and record.status >= 400
    )


def refundable(record: LedgerRecord, plan: Plan) -> bool:
    """A request the authorizer counted that ended in one of the plan's refund statuses."""
    return (
        failed_and_counted(record)
        and record.status is not None
        and status_matches(record.status, plan.refund_statuses)
    )


def refund_of(record: LedgerRecord, plan: Plan) -> Refund | Skip | None:
    """The refund of ``record`` under ``plan`` (the plan that priced it: the record's ``planId`` and
    ``planVersion``), None when it is not refunded, or why it cannot be."""
    if not refundable(record, plan):
        return None
    if record.segment is None or record.route_code is None or (record.shard is None and not plan.prepaid):
        return Skip.WHERE_UNKNOWN
    period, day = period_and_day_of_epoch_ms(record.request_time_ms)
    if period != record.period:
        return Skip.OTHER_PERIOD
    assert record.customer_id is not None  # refundable() checked it
    assert record.status is not None
    return Refund(
        request_id=record.request_id,
        customer_id=record.customer_id,
        period=period,
        day=day,
        route_code=record.route_code,
        segment=record.segment,
        shard=None if plan.prepaid else record.shard,
        credits=record.counted_credits,
        status=record.status,
    )
