"""How far the close starter has got through the customers of one period: its *close run*.

The starter pages through the customers (``gsi1``, ``CUSTOMERS``) and queues one close message per customer;
after each page is fully sent it records the page's end, DynamoDB's ``LastEvaluatedKey``, as the run's
``cursor``. A starter that stopped (a crash, a time-out, the end of its time budget) is continued by the next
one from that cursor: only the page that was being sent can be sent again.

``generation`` counts restarts by hand (``{"period": ..., "restart": true}``): a restart begins again from the
first customer, and any starter still working on the previous generation loses its next write. ``pages``
counts the pages recorded in this generation; every write names the ``pages`` it read, so the cursor only
ever moves forward. How the run is stored: ``tollgate.dal.close_runs``. Pure: no I/O here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

Cursor = dict[str, Any]  # DynamoDB's LastEvaluatedKey of a page of gsi1 (its key attributes, strings)


class CloseRunStatus(StrEnum):
    RUNNING = "running"  # customers left to queue from ``cursor`` on
    FINISHED = "finished"  # every customer queued; a re-run queues nothing unless restarted


class CloseRun(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: str
    status: CloseRunStatus = CloseRunStatus.RUNNING
    generation: int = 1  # 1, then +1 on each restart by hand
    cursor: Cursor | None = None  # after the last page fully sent; None: from the first customer
    pages: int = 0  # pages fully sent in this generation
    queued: int = 0  # customers queued in this generation (each counted once, whatever was resent)
    restarted_by: str | None = None  # the request id of the invocation that restarted it (retries do not)
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        return self.status is CloseRunStatus.FINISHED

    def after_page(self, next_cursor: Cursor | None, customers: int, now: datetime) -> CloseRun:
        """The run once a page of ``customers`` is sent; ``next_cursor`` None: it was the last page."""
        if self.finished:
            raise ValueError(f"the close run of {self.period} is finished: no page comes after it")
        return self.model_copy(
            update={
                "cursor": next_cursor,
                "pages": self.pages + 1,
                "queued": self.queued + customers,
                "updated_at": now,
                "status": CloseRunStatus.RUNNING if next_cursor is not None else CloseRunStatus.FINISHED,
                "finished_at": None if next_cursor is not None else now,
            }
        )

    def restarted(self, now: datetime, by: str) -> CloseRun:
        """A new generation from the first customer (by hand: queue every customer's close again), made by
        the invocation with request id ``by``."""
        return CloseRun(
            period=self.period,
            generation=self.generation + 1,
            restarted_by=by,
            started_at=now,
            updated_at=now,
        )
