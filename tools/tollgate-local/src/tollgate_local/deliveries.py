"""The usage ledger delivered locally: Firehose, S3's notification and the refund function, on a thread.

In AWS the stage's access log goes to Firehose, which buffers it (``UsageLedger(buffer_interval=...)``, 300 s
by default) into one object; S3 notifies a queue, and the refund function refunds the object's failed
requests (``tollgate.refunds.handler``). Locally the gateway appends each record to
``{root}/period=YYYY-MM/day=YYYY-MM-DD/*.jsonl`` at once (``tollgate_local.gateway.LocalLedger``);
:class:`LedgerDelivery` reads the new complete lines of every file each ``interval`` seconds (1 s: the buffer,
shortened) and hands each file's batch, as the function does one object, to
``tollgate.refunds.service.refund_failed`` with the table's plans and refund ledger.

``flush()`` delivers what was written so far at once (the tests, the demo: "wait for delivery" without
sleeping). A delivery that fails (DynamoDB unreachable) is tried again on the next tick, as the queue would
deliver the message again; ``redeliver()`` delivers everything again, as Firehose or the queue may: a request
is refunded once, however often its record is delivered (``tollgate.dal.refunds``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tollgate.dal.refunds import RefundLedger
from tollgate.dal.store import TollgateStore
from tollgate.domain.ledger import LOCAL_SUFFIX
from tollgate.domain.refunds import Refund
from tollgate.refunds.observability import logger
from tollgate.refunds.service import RefundRun, StorePlans, object_lines, parse_records, refund_failed

INTERVAL_SECONDS = 1.0  # locally; Firehose's buffer in AWS: 300 s (UsageLedger's buffer_interval)


def _now() -> datetime:
    return datetime.now(UTC)


class LedgerDelivery:
    """Delivers the ledger under ``root`` to the refunds every ``interval`` seconds, on a thread (``start``,
    ``stop``), or at once (``flush``).

    Only what is written after it is made is delivered (the files' sizes are read then), as a new stack's
    Firehose delivers nothing of an earlier stack's ledger. ``clock``: the refunds' time (the gateway's).
    ``on_refund``: called with each refund made. ``delivered`` sums every delivery; ``failures`` counts the
    deliveries that failed (tried again on the next tick)."""

    def __init__(
        self,
        root: Path | str,
        store: TollgateStore,
        *,
        interval: float = INTERVAL_SECONDS,
        clock: Callable[[], datetime] = _now,
        on_refund: Callable[[Refund], None] | None = None,
    ) -> None:
        self.root = Path(root)
        self.interval = interval
        self._plans = StorePlans(store)
        self._refunds = RefundLedger(store)
        self._clock = clock
        self._on_refund = on_refund
        self._start: dict[Path, int] = {path: path.stat().st_size for path in self._files()}
        self._offsets = dict(self._start)
        self._lock = threading.Lock()  # one delivery at a time: the thread's or a flush's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tollgate-ledger-delivery", daemon=True)
        self.delivered = RefundRun()
        self.records = 0  # lines delivered (a redelivered line counts again)
        self.failures = 0

    def start(self) -> LedgerDelivery:
        self._thread.start()
        return self

    def stop(self) -> None:
        """No delivery after this returns (one under way is finished)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def flush(self) -> RefundRun:
        """Deliver every complete line written so far, now; what this delivery did (the thread may have
        delivered some of it before: ``delivered`` has everything). Raises what a failed delivery raised."""
        return self._deliver()

    def redeliver(self) -> RefundRun:
        """Deliver everything again, now, as an at-least-once delivery may (Firehose, the queue): what this
        delivery did."""
        with self._lock:
            self._offsets = dict(self._start)
            return self._deliver_locked()

    def _files(self) -> list[Path]:
        return sorted(self.root.rglob("*" + LOCAL_SUFFIX)) if self.root.is_dir() else []

    def _deliver(self) -> RefundRun:
        with self._lock:
            return self._deliver_locked()

    def _deliver_locked(self) -> RefundRun:
        run = RefundRun()
        for path in self._files():
            self._deliver_file(path, run)
        return run

    def _deliver_file(self, path: Path, run: RefundRun) -> None:
        """One file's new complete lines, as one delivered object; its offset moves on only once they are
        refunded."""
        offset = self._offsets.get(path, 0)
        if path.stat().st_size < offset:  # not the file it was (only appended to): from its start
            offset = 0
        with path.open("rb") as file:
            file.seek(offset)
            data = file.read()
        end = data.rfind(b"\n") + 1  # a line being written is delivered once complete
        if end == 0:
            return
        batch = RefundRun()
        lines = list(object_lines(data[:end]))
        try:
            refund_failed(
                parse_records(lines, batch), self._plans, self._refunds, now=self._clock(), run=batch
            )
        finally:
            self._record(batch, path, run)
        self._offsets[path] = offset + end
        self.records += len(lines)

    def _record(self, batch: RefundRun, path: Path, run: RefundRun) -> None:
        for total in (run, self.delivered):
            total.refunded += batch.refunded
            total.duplicates += batch.duplicates
            total.skipped += batch.skipped
            total.malformed += batch.malformed
        summary: dict[str, Any] = {
            "object": str(path.relative_to(self.root)),
            "refunded": [
                f"{r.customer_id} {r.request_id} {r.credits} credits (HTTP {r.status})"
                for r in batch.refunded
            ],
            "credits": batch.credits,
            "duplicates": batch.duplicates,
            "malformed": batch.malformed,
        }
        if batch.skipped:
            logger.error(
                "failed requests that could not be refunded", extra={**summary, "skipped": batch.skipped}
            )
        elif batch.refunded or batch.duplicates or batch.malformed:
            logger.info("refunds", extra=summary)
        if self._on_refund is not None:
            for refund in batch.refunded:
                self._on_refund(refund)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._deliver()
            except Exception as error:  # tried again on the next tick, as the queue delivers again
                self.failures += 1
                logger.warning("local ledger delivery failed", extra={"error": str(error)})
