"""Refund the failed requests of a batch of ledger records (one delivered ledger object, or local mode's).

For each record the authorizer counted that ended in a status its plan refunds (``Plan.refund_statuses``,
read for the record's own plan version), one refund (``tollgate.dal.refunds``): once per request id, however
often the record is delivered. Records of plans without the option cost no write and no read beyond the plan
(cached). A record that cannot be refunded (no plan, logged before records said where credits were counted,
a counter that does not hold it) is skipped and named, never retried: it would fail the same way again.

A large outage puts tens of thousands of failed requests in one object. So the refunds are applied by a few
threads at once (``workers``), requests already refunded are found first with one read per 100 (an object
read again after a timeout costs reads, not transactions), and when ``time_left`` says no, the run stops
and raises ``OutOfTimeError``: the message is delivered again and carries on where this one stopped.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from pydantic import ValidationError

from tollgate.dal.refunds import RefundNotCountedError
from tollgate.dal.store import TollgateStore
from tollgate.domain.ledger import LedgerRecord
from tollgate.domain.models import Plan
from tollgate.domain.refunds import Refund, Skip, failed_and_counted, refund_of
from tollgate.errors import NotFoundError, RetryLaterError

GZIP_MAGIC = b"\x1f\x8b"
PLAN_UNKNOWN = "plan_unknown"
NOT_COUNTED = "not_counted"
APPLIED, DUPLICATE = "applied", "duplicate"  # what applying one refund did (or NOT_COUNTED)


class OutOfTimeError(RetryLaterError):
    """The invocation ran out of time with refunds left: what was done is kept, the rest is done again."""


class Refunds(Protocol):
    def apply(self, refund: Refund, *, at: datetime) -> bool: ...

    def refunded_already(self, refunds: Sequence[Refund]) -> set[str]: ...


class PlanSource(Protocol):
    def plan(self, plan_id: str, version: int) -> Plan | None: ...


class StorePlans:
    """Plan versions from the table, each read once (a version never changes)."""

    def __init__(self, store: TollgateStore) -> None:
        self._store = store
        self._plans: dict[tuple[str, int], Plan | None] = {}

    def plan(self, plan_id: str, version: int) -> Plan | None:
        key = (plan_id, version)
        if key not in self._plans:
            try:
                self._plans[key] = self._store.get_plan(plan_id, version)
            except NotFoundError:
                return None  # not remembered: a plan put later is found
        return self._plans[key]


@dataclass
class RefundRun:
    """What one batch of records did."""

    refunded: list[Refund] = field(default_factory=list)
    duplicates: int = 0  # records of requests refunded before: nothing changed
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (request id, why)
    malformed: int = 0  # lines that are not a ledger record

    @property
    def credits(self) -> int:
        return sum(refund.credits for refund in self.refunded)


def object_lines(body: bytes) -> Iterator[str]:
    """The lines of a ledger object: Firehose's gzip JSON Lines, or local mode's plain ones."""
    data = gzip.decompress(body) if body[:2] == GZIP_MAGIC else body
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            yield line


def parse_records(lines: Iterable[str], run: RefundRun) -> Iterator[LedgerRecord]:
    """The records of ``lines``; a line that is not one is counted in ``run.malformed`` and left out."""
    for line in lines:
        try:
            yield LedgerRecord.parse(line)
        except (ValidationError, ValueError, json.JSONDecodeError):
            run.malformed += 1


def refund_failed(
    records: Iterable[LedgerRecord],
    plans: PlanSource,
    refunds: Refunds,
    *,
    now: datetime,
    run: RefundRun | None = None,
    workers: int = 1,
    time_left: Callable[[], bool] = lambda: True,
) -> RefundRun:
    """Refund what ``records`` hold of failed requests on plans that refund them."""
    run = run if run is not None else RefundRun()
    wanted = _refunds_of(records, plans, run)
    done = refunds.refunded_already(wanted)
    run.duplicates += len(done)
    pending = [refund for refund in wanted if refund.request_id not in done]

    def apply(refund: Refund) -> tuple[Refund, str]:
        try:
            return refund, APPLIED if refunds.apply(refund, at=now) else DUPLICATE
        except RefundNotCountedError:
            return refund, NOT_COUNTED

    chunk = max(1, workers) * 4
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for start in range(0, len(pending), chunk):
            if not time_left():
                raise OutOfTimeError(f"{len(pending) - start} refunds left for the next delivery")
            for refund, outcome in pool.map(apply, pending[start : start + chunk]):
                if outcome == APPLIED:
                    run.refunded.append(refund)
                elif outcome == DUPLICATE:
                    run.duplicates += 1
                else:
                    run.skipped.append((refund.request_id, outcome))
    return run


def _refunds_of(records: Iterable[LedgerRecord], plans: PlanSource, run: RefundRun) -> list[Refund]:
    """The refunds ``records`` call for, each request once (a record read twice is a duplicate); what cannot
    be refunded is named in ``run.skipped``."""
    found: dict[str, Refund] = {}
    for record in records:
        if not failed_and_counted(record):  # no plan read for the rest
            continue
        plan = None
        if record.plan_id is not None and record.plan_version is not None:
            plan = plans.plan(record.plan_id, record.plan_version)
        if plan is None:
            run.skipped.append((record.request_id, PLAN_UNKNOWN))
            continue
        refund = refund_of(record, plan)
        if refund is None:
            continue
        if isinstance(refund, Skip):
            run.skipped.append((record.request_id, str(refund)))
        elif refund.request_id in found:
            run.duplicates += 1
        else:
            found[refund.request_id] = refund
    return list(found.values())
