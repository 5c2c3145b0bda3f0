"""Close runs in the table: ``CLOSE_RUN#{period}`` / ``RUN``, the close starter's cursor for one period.

One small item per period (``tollgate.domain.close_runs``), every write a conditional ``PutItem`` of the
whole item (well under 1 KB: one write unit):

* :meth:`DynamoCloseRuns.begin` creates the run of a period if there is none, and otherwise returns the one
  stored (a re-run, Lambda's retry or a continuation carries on from its cursor).
* :meth:`DynamoCloseRuns.advance` records a page as sent, conditional on the run still being at the
  ``generation`` and ``pages`` it was read with and still running. Two starters working on the same period
  therefore cannot move the cursor backwards: the one that read an older state loses the write
  (``ConflictError``) and carries on from what is stored.
* :meth:`DynamoCloseRuns.restart` begins a new generation from the first customer (by hand only).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import item_fields
from tollgate.domain.close_runs import CloseRun, CloseRunStatus, Cursor
from tollgate.errors import ConflictError

KIND = "close_run"


def run_item(run: CloseRun) -> dict[str, Any]:
    return {**run.model_dump(mode="json"), **tk.close_run_key(run.period), "kind": KIND}


def run_from_item(item: dict[str, Any]) -> CloseRun:
    return CloseRun.model_validate(item_fields(item))


class DynamoCloseRuns:
    """The close runs of one table (``table`` is a boto3 Table resource)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, period: str) -> CloseRun | None:
        item = self.table.get_item(Key=tk.close_run_key(period), ConsistentRead=True).get("Item")
        return None if item is None else run_from_item(item)

    def begin(self, period: str, now: datetime) -> CloseRun:
        """The stored run of ``period``, or a new one from the first customer when there is none."""
        run = CloseRun(period=period, started_at=now, updated_at=now)
        if self._put(run, Attr(tk.PK).not_exists()):
            return run
        return self._stored(period)

    def restart(self, period: str, now: datetime, request_id: str) -> CloseRun:
        """A new generation of the run from the first customer, made by the invocation ``request_id``.

        The same request restarting again (Lambda retrying the invocation) does not: it gets the run its
        first attempt restarted, and carries on from that run's cursor. When another restart wins the race,
        its run is returned: it begins from the first customer too.
        """
        stored = self.get(period)
        if stored is not None and request_id and stored.restarted_by == request_id:
            return stored
        if stored is None:
            run = CloseRun(period=period, restarted_by=request_id, started_at=now, updated_at=now)
            condition = Attr(tk.PK).not_exists()
        else:
            run = stored.restarted(now, by=request_id)
            condition = Attr("generation").eq(stored.generation)
        if self._put(run, condition):
            return run
        return self._stored(period)

    def advance(self, run: CloseRun, next_cursor: Cursor | None, customers: int, now: datetime) -> CloseRun:
        """Record the page after ``run.cursor`` as sent: ``customers`` queued, the next page starts at
        ``next_cursor`` (None: that was the last page, the run is finished).

        Raises ``ConflictError`` when the stored run is no longer ``run`` (another starter recorded a page,
        finished the run or restarted it): nothing is written, and the caller re-reads with :meth:`get`.
        """
        after = run.after_page(next_cursor, customers, now)
        condition = (
            Attr("generation").eq(run.generation)
            & Attr("pages").eq(run.pages)
            & Attr("status").eq(CloseRunStatus.RUNNING.value)
        )
        if not self._put(after, condition):
            raise ConflictError(
                f"the close run of {run.period} moved on from page {run.pages} "
                f"(generation {run.generation}) meanwhile"
            )
        return after

    def _put(self, run: CloseRun, condition: Any) -> bool:
        try:
            self.table.put_item(Item=run_item(run), ConditionExpression=condition)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _stored(self, period: str) -> CloseRun:
        stored = self.get(period)
        if stored is None:  # it existed a moment ago, and nothing deletes runs
            raise ConflictError(f"the close run of {period} disappeared while it was read")
        return stored
