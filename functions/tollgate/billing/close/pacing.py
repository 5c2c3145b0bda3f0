"""Pacing the close worker's Stripe requests under Stripe's rate limits, and riding out a 429.

Stripe allows an account ``per_account`` operations per second and each endpoint ``per_endpoint`` requests per
second (:class:`~tollgate.billing.close.settings.StripeRateLimits`); over either it answers HTTP 429. A close
makes one request to each of three endpoints (``POST /v1/invoices``, ``.../add_lines``, ``.../finalize``), so
the close can go no faster than ``per_endpoint`` invoices per second (live: 25/s, 100,000 invoices in
4,000 s), nor than ``per_account / 3`` (a sandbox: 25 / 3 = 8.3/s). A customer whose discount is due adds a
fourth, ``POST /v1/invoices/{id}`` (paced like the others; the fleet is sized for the usual three).

stripe-python does not retry a rate-limited 429: it retries a 429 only when Stripe adds ``Stripe-Should-Retry:
true`` (lock timeouts), and otherwise raises ``stripe.RateLimitError`` at once. So the worker keeps under the
limits itself, without the workers talking to each other:

* **Pacing** (:class:`Pacer`). At most :func:`fleet_size` workers run at once (the event source's maximum
  concurrency, which is also the function's reserved concurrency). Each execution environment spaces its own
  requests to one endpoint by ``fleet / (TARGET_UTILIZATION x per_endpoint)`` seconds, and all its requests by
  ``fleet / (TARGET_UTILIZATION x per_account)``: however the workers' requests fall, the fleet sends at most
  ``TARGET_UTILIZATION`` of every limit on average. The fleet is sized so that this spacing is
  ``SECONDS_PER_INVOICE`` per worker, longer than a close takes unpaced: every worker waits on its pacer, and
  the fleet invoices at ``TARGET_UTILIZATION`` of Stripe's limit.
* **Backoff** (:class:`Backoff`). A 429 anyway (another integration on the account, Stripe counting a burst
  differently, independent workers' requests bunching up): the request is sent again after 1, 2, 4, 8, 8, ...
  s (each between half and all of it, at random), in the same pacing slot, for as long as the close has been
  running less than ``RATE_LIMIT_WINDOW_SECONDS``; after that the close fails like any Stripe failure and its
  message is retried later. A 429 means Stripe did not process the request, and every write carries its
  Idempotency-Key: sending it again is safe. The window bounds the time a close can spend on 429s, so the
  worker's timeout covers it (``tollgate.cdk.constants``).

Stripe's search endpoint has a lower limit (20 reads/s) that is not paced apart: a close searches only when it
is run again, and a refused search falls back to listing the customer's invoices.

``benchmarks/close_throughput.py`` chose the figures below: it simulates the deployed close with these
classes (``--search`` prints why).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tollgate.billing.close.settings import StripeRateLimits
from tollgate.billing.invoicing import InvoiceDraft, InvoiceLine, StripeInvoice, StripeInvoicing
from tollgate.billing.stripe_client import is_rate_limited

T = TypeVar("T")

TARGET_UTILIZATION = 0.9  # share of each Stripe limit the fleet may use on average
SECONDS_PER_INVOICE = 3.0  # one worker's paced cycle; a close takes about 1.3 s unpaced
STRIPE_WRITES_PER_INVOICE = 3  # create, add_lines, finalize: one request to each endpoint
EVENT_SOURCE_MIN_CONCURRENCY = 2  # the SQS event source's MaximumConcurrency is 2..1000
EVENT_SOURCE_MAX_CONCURRENCY = 1000
RATE_LIMIT_WINDOW_SECONDS = 120.0  # a close sends a rate-limited request again only this long after it began
FIRST_BACKOFF_SECONDS = 1.0
LONGEST_BACKOFF_SECONDS = 8.0

# The operations a close sends, each its own Stripe endpoint (the names of tollgate.billing.invoicing).
CREATE = "invoices.create"
ADD_LINES = "invoices.add_lines"
FINALIZE = "invoices.finalize"
SEARCH = "invoices.search"
RETRIEVE = "invoices.retrieve"
UPDATE = "invoices.update"  # a coupon redeemed onto a draft: only for a customer whose discount is due


def invoice_rate(limits: StripeRateLimits) -> float:
    """The fastest a close can invoice under ``limits`` (invoices/s): the endpoint or the account limit."""
    return min(limits.per_endpoint, limits.per_account / STRIPE_WRITES_PER_INVOICE)


def fleet_size(limits: StripeRateLimits) -> int:
    """How many workers run at once: enough that each, paced at one invoice per ``SECONDS_PER_INVOICE``,
    brings the fleet to ``TARGET_UTILIZATION`` of ``limits`` (live: 68; a sandbox: 23)."""
    wanted = math.ceil(TARGET_UTILIZATION * invoice_rate(limits) * SECONDS_PER_INVOICE - 1e-9)
    return max(EVENT_SOURCE_MIN_CONCURRENCY, min(EVENT_SOURCE_MAX_CONCURRENCY, wanted))


class Pacer:
    """One execution environment's share of Stripe's limits: the earliest time each request may be sent.

    A request to an endpoint waits until ``endpoint_interval`` after this environment's previous request to
    the same endpoint, and ``account_interval`` after its previous request to any endpoint. Nothing is banked
    while idle beyond one request: over any stretch of time the fleet sends at most its share of each limit,
    plus one request per worker.
    """

    def __init__(
        self,
        limits: StripeRateLimits,
        fleet: int,
        *,
        utilization: float = TARGET_UTILIZATION,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if fleet < 1 or not 0 < utilization <= 1:
            raise ValueError(
                f"a pacer needs a fleet >= 1 and a utilization in (0, 1], got {fleet}, {utilization}"
            )
        self.endpoint_interval = fleet / (utilization * limits.per_endpoint)
        self.account_interval = fleet / (utilization * limits.per_account)
        self.clock = clock
        self._next_account = -math.inf
        self._next: dict[str, float] = {}

    @property
    def longest_wait(self) -> float:
        """The longest a request can wait on this pacer (its previous requests have been answered)."""
        return max(self.endpoint_interval, self.account_interval)

    def reserve(self, endpoint: str) -> float:
        """Book the next slot for a request to ``endpoint``: the seconds to wait before sending it."""
        now = self.clock()
        start = max(now, self._next.get(endpoint, -math.inf), self._next_account)
        self._next[endpoint] = start + self.endpoint_interval
        self._next_account = start + self.account_interval
        return start - now


@dataclass(frozen=True)
class Backoff:
    """How long to wait before sending a rate-limited request again, and until when in one close."""

    first: float = FIRST_BACKOFF_SECONDS
    longest: float = LONGEST_BACKOFF_SECONDS
    window: float = RATE_LIMIT_WINDOW_SECONDS

    def ceiling(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1, 2, ...): 1, 2, 4, 8, 8, ... s."""
        return float(min(self.longest, self.first * 2 ** min(retry - 1, 30)))

    def delay(self, retry: int, elapsed: float, rng: random.Random) -> float | None:
        """The wait before retry number ``retry`` of a close that began ``elapsed`` seconds ago: between half
        and all of :meth:`ceiling` ("equal jitter", so retrying workers spread out), or ``None`` (give up)
        when the close would then have been running for longer than ``window``."""
        ceiling = self.ceiling(retry)
        wait = ceiling / 2 + rng.uniform(0, ceiling / 2)
        return wait if elapsed + wait <= self.window else None


@dataclass
class Pacing:
    """What one execution environment keeps between closes: its pacer, and how it sleeps and backs off."""

    pacer: Pacer
    backoff: Backoff = field(default_factory=Backoff)
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random = field(default_factory=random.Random)

    def for_close(self, gateway: StripeInvoicing) -> PacedInvoicing:
        """``gateway`` paced, for one close starting now (the backoff's window starts with it)."""
        return PacedInvoicing(gateway, self)


class PacedInvoicing:
    """A :class:`~tollgate.billing.invoicing.StripeInvoicing` that waits for its pacer before each request and
    sends a rate-limited one again after a backoff, while the close is inside the backoff's window."""

    def __init__(self, inner: StripeInvoicing, pacing: Pacing) -> None:
        self._inner = inner
        self._pacing = pacing
        self._started = pacing.pacer.clock()
        self.retries = 0  # rate-limited requests sent again in this close

    def find_invoices(self, *, stripe_customer_id: str, customer_id: str, period: str) -> list[StripeInvoice]:
        return self._call(
            SEARCH,
            lambda: self._inner.find_invoices(
                stripe_customer_id=stripe_customer_id, customer_id=customer_id, period=period
            ),
        )

    def get_invoice(self, invoice_id: str) -> StripeInvoice:
        return self._call(RETRIEVE, lambda: self._inner.get_invoice(invoice_id))

    def apply_discount(self, invoice_id: str, coupon: str, *, idempotency_key: str) -> StripeInvoice:
        return self._call(
            UPDATE, lambda: self._inner.apply_discount(invoice_id, coupon, idempotency_key=idempotency_key)
        )

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice:
        return self._call(CREATE, lambda: self._inner.create_invoice(draft, idempotency_key=idempotency_key))

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        return self._call(
            ADD_LINES, lambda: self._inner.add_lines(invoice_id, lines, idempotency_key=idempotency_key)
        )

    def finalize(self, invoice_id: str, *, idempotency_key: str) -> StripeInvoice:
        return self._call(FINALIZE, lambda: self._inner.finalize(invoice_id, idempotency_key=idempotency_key))

    def _call(self, endpoint: str, request: Callable[[], T]) -> T:
        """Send ``request`` in its pacing slot; after a 429 (which Stripe did not count), in the same slot
        again once the backoff has passed."""
        pacing = self._pacing
        wait = pacing.pacer.reserve(endpoint)
        if wait > 0:
            pacing.sleep(wait)
        while True:
            try:
                return request()
            except Exception as error:
                if not is_rate_limited(error):
                    raise
                delay = pacing.backoff.delay(
                    self.retries + 1, pacing.pacer.clock() - self._started, pacing.rng
                )
                if delay is None:
                    raise
                self.retries += 1
                pacing.sleep(delay)
