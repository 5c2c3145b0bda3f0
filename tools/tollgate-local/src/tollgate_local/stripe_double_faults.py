"""Fault injection for the Stripe double: make chosen operations fail the ways a real network and API can.

Each fault is armed for one operation name (``"invoices.add_lines"``, see ``stripe_double.OPERATIONS``) and
fires on the next ``times`` requests routed to that operation, in the order the faults were armed:

* ``fail_before_write``: answer ``500 api_error`` without touching any state. Nothing is stored under the
  request's idempotency key either (the failure is modelled as happening before Stripe's idempotency layer),
  so a retry with the same key executes normally.
* ``lose_response_after_write``: process the request completely (apply the write, store the answer for
  idempotent replay), then close the connection without answering: the client sees a network error although
  the write happened. A retry with the same ``Idempotency-Key`` gets the stored answer.
* ``timeout``: hold the request for ``delay`` seconds (make it longer than the client's timeout), apply
  nothing, then close the connection. The client sees a timeout and nothing was written.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["fail_before_write", "lose_response_after_write", "timeout"]


@dataclass
class Fault:
    kind: FaultKind
    operation: str
    remaining: int
    delay: float = 0.0
    status: int = 500


class Faults:
    """The faults armed on one Stripe double (``double.faults``)."""

    def __init__(self, operations: Iterable[str], lock: threading.RLock) -> None:
        self._operations = frozenset(operations)
        self._lock = lock
        self._armed: list[Fault] = []

    def fail_before_write(self, operation: str, times: int = 1, *, status: int = 500) -> None:
        """Answer ``status`` (5xx) ``api_error`` to the next ``times`` calls; apply nothing."""
        if not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx code, got {status}")
        self._arm(Fault("fail_before_write", operation, times, status=status))

    def lose_response_after_write(self, operation: str, times: int = 1) -> None:
        """Apply the next ``times`` calls (stored for idempotent replay), then drop the connection."""
        self._arm(Fault("lose_response_after_write", operation, times))

    def timeout(self, operation: str, times: int = 1, *, delay: float = 1.0) -> None:
        """Hold the next ``times`` calls for ``delay`` seconds, apply nothing, then drop the connection."""
        if delay <= 0:
            raise ValueError(f"delay must be positive, got {delay}")
        self._arm(Fault("timeout", operation, times, delay=delay))

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    @property
    def pending(self) -> list[tuple[FaultKind, str, int]]:
        """``(kind, operation, times left)`` for every fault that has not fired all its times yet."""
        with self._lock:
            return [(fault.kind, fault.operation, fault.remaining) for fault in self._armed]

    def take(self, operation: str) -> Fault | None:
        """The fault to apply to one request for ``operation``, if any (used by the double's server)."""
        with self._lock:
            for fault in self._armed:
                if fault.operation == operation:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._armed.remove(fault)
                    return fault
        return None

    def _arm(self, fault: Fault) -> None:
        if fault.operation not in self._operations:
            known = ", ".join(sorted(self._operations))
            raise ValueError(f"unknown operation {fault.operation!r}; the Stripe double knows: {known}")
        if fault.remaining < 1:
            raise ValueError(f"times must be at least 1, got {fault.remaining}")
        with self._lock:
            self._armed.append(fault)
