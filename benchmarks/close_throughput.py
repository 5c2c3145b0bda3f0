"""Period close throughput: the deployed close of N invoices, simulated against Stripe's rate limits.

A deterministic discrete-event simulation (a virtual clock and a seeded random generator; nothing is sent
anywhere) of the period close as it is deployed:

- **SQS**: one message per customer, all queued when the close starts (the starter sends thousands a second);
  a received message is invisible for the queue's visibility timeout; a failed one is received again after
  it, and once it has been received ``maxReceiveCount`` times it goes to the dead-letter queue instead.
- **The Lambda SQS event source**: batches of up to the batch size; 5 concurrent invocations at first, 300
  more per minute while messages wait (AWS's documented scaling), never more than the maximum concurrency (the
  reserved concurrency is the same, so nothing is throttled). An execution environment is reused; a new one
  pays a cold start. An invocation that outlives the function's timeout is killed: its whole batch returns to
  the queue after the visibility timeout.
- **One close**: DynamoDB requests (rating and storing the record, recording each step), then Stripe:
  ``POST /v1/invoices``, ``.../add_lines``, ``.../finalize``; a message received again resumes from the
  recorded step (searching Stripe first, or reading the invoice, as ``tollgate.billing.close.steps`` does).
- **Stripe**: a token bucket per endpoint and one for the account (Stripe's engineering blog describes its
  request limiter as a token bucket; the burst it allows is an assumption, ``--stripe-burst``). A request over
  either answers 429 and is not counted (``--stripe-window``: the strictest reading of "N per second", at
  most N in any sliding second, instead). Latency per request is lognormal (the medians are printed).
- **stripe-python**: whether it retries a 429 is asked of the library itself (``HTTPClient._should_retry``:
  only with ``Stripe-Should-Retry: true``, which Stripe sends for lock timeouts, not rate limits; see
  ``--should-retry-header``), its backoff is its own ``INITIAL_DELAY``/``MAX_DELAY`` formula, and its retries
  are unpaced.
- **The worker's pacing and backoff**: ``tollgate.billing.close.pacing``'s own ``Pacer`` (one per execution
  environment, on the virtual clock) and ``Backoff`` (seeded), with its window per close.

The simulation itself is standard library only (``heapq``, ``random``); it imports the project's and
stripe-python's code only to read what it models. 100,000 invoices take about 10 s; ``--search`` simulates
each row of its table three times (as assumed, with Stripe twice as slow, with a strict limiter): a minute.

What is deployed is read from the code, not restated: the batch size, timeout, visibility timeout and
maxReceiveCount from ``tollgate.cdk.constants`` (what the CDK construct uses), the concurrency the construct
derives from the Stripe limits (``tollgate.cdk.constants.close_worker_concurrency``), the Stripe client's
retries and request timeout. The floor is the time Stripe's limits alone allow: N / min(per-endpoint limit,
account limit / 3) (live: 100,000 / 25 per s = 4,000 s).

Run: .venv/bin/python benchmarks/close_throughput.py [--invoices 100000] [--sandbox] [--search]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from collections import Counter, deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from offline import go_offline

go_offline()

import stripe  # noqa: E402 - after go_offline, which puts the project on the path
from stripe._http_client import HTTPClient  # noqa: E402 - the library's own retry rules

from tollgate.billing import stripe_client  # noqa: E402
from tollgate.billing.close import pacing  # noqa: E402
from tollgate.billing.close.settings import StripeRateLimits  # noqa: E402
from tollgate.cdk import constants  # noqa: E402

DEFAULT_INVOICES = 100_000
SEARCH_INVOICES = 10_000
SEED = 20261101
TARGET_RATIO = 1.25
LAMBDA_MAX_TIMEOUT = constants.LAMBDA_MAX_TIMEOUT_SECONDS
LIST = "invoices.list"  # the listing a refused search falls back to (inside the gateway: not paced apart)
STRIPE_SEARCH_RATE = 20.0  # Stripe's search limit, reads/s (documented)

Wait = Generator[float, None, Any]  # a process: yields the seconds it waits, returns its result


# --- what is deployed, read from the code -------------------------------------------------------------------
@dataclass(frozen=True)
class Deployment:
    limits: StripeRateLimits
    concurrency: int  # the event source's maximum concurrency = reserved concurrency = the pacers' fleet
    batch_size: int
    timeout: float
    visibility: float
    max_receive_count: int
    utilization: float
    max_network_retries: int
    request_timeout: float
    backoff: pacing.Backoff

    @classmethod
    def deployed(cls, limits: StripeRateLimits) -> Deployment:
        return cls(
            limits=limits,
            concurrency=constants.close_worker_concurrency(limits),
            batch_size=constants.CLOSE_WORKER_BATCH_SIZE,
            timeout=constants.CLOSE_WORKER_TIMEOUT_SECONDS,
            visibility=constants.CLOSE_QUEUE_VISIBILITY_TIMEOUT_SECONDS,
            max_receive_count=constants.CLOSE_QUEUE_MAX_RECEIVE_COUNT,
            utilization=pacing.TARGET_UTILIZATION,
            max_network_retries=stripe_client.MAX_NETWORK_RETRIES,
            request_timeout=stripe_client.REQUEST_TIMEOUT_SECONDS,
            backoff=pacing.Backoff(),
        )


# --- assumptions (stated, not measured) ---------------------------------------------------------------------
@dataclass(frozen=True)
class Assumptions:
    # Stripe latency per request: lognormal, median (s) per endpoint, shape sigma (p99 = median x 2.5).
    stripe_median: dict[str, float] = field(
        default_factory=lambda: {
            pacing.CREATE: 0.30,
            pacing.ADD_LINES: 0.35,
            pacing.FINALIZE: 0.50,
            pacing.SEARCH: 0.30,
            pacing.RETRIEVE: 0.20,
            LIST: 0.30,
        }
    )
    stripe_sigma: float = 0.4
    rejected_median: float = 0.05  # a 429 is answered before any work
    latency_scale: float = 1.0  # every Stripe latency multiplied by this
    stripe_burst_seconds: float = 1.0  # Stripe's buckets hold this many seconds of their rate
    stripe_window: bool = False  # Stripe's limiter as a sliding one-second window instead
    should_retry_header: bool = False  # Stripe adds Stripe-Should-Retry: true to a 429
    error_rate: float = 0.0  # share of Stripe answers that are 500s (retried by the library)
    dynamo_median: float = 0.006  # one in-region DynamoDB request, lognormal
    dynamo_sigma: float = 0.5
    dynamo_first_run: int = 7  # Query records, customer, plan, 1 + lookback counters, the transaction
    dynamo_after_create: int = 2  # the plan again, the record's invoice id
    dynamo_after_finalize: int = 1
    dynamo_rerun: int = 2  # a run of a stored record: Query, customer
    cold_start: float = 1.5  # median, lognormal: imports (stripe, pydantic, Powertools), the Stripe key
    invocation_overhead: float = 0.01
    receive_latency: float = 0.02
    initial_pollers: int = 5
    pollers_per_minute: int = 300

    def describe(self) -> list[str]:
        medians = ", ".join(f"{op.split('.')[1]} {m * 1000:.0f}" for op, m in self.stripe_median.items())
        return [
            f"Stripe latency: lognormal, median ms {medians}; sigma {self.stripe_sigma} (p99 = 2.5 x median)"
            + (f"; all x {self.latency_scale}" if self.latency_scale != 1 else ""),
            f"a 429 is answered in {self.rejected_median * 1000:.0f} ms (median) and not counted by Stripe",
            (
                "Stripe's limiter: at most the limit in any sliding second"
                if self.stripe_window
                else f"Stripe's limiter: token buckets holding {self.stripe_burst_seconds:g} s of their rate"
            )
            + f" (per endpoint, search {STRIPE_SEARCH_RATE:g}/s, and the account)",
            "Stripe-Should-Retry: true on a 429: "
            + ("yes (as for lock timeouts)" if self.should_retry_header else "no (a rate limit)"),
            f"Stripe 500s: {self.error_rate:.2%} of answers",
            f"DynamoDB: lognormal median {self.dynamo_median * 1000:.0f} ms, sigma {self.dynamo_sigma}; "
            f"{self.dynamo_first_run} + {self.dynamo_after_create} + {self.dynamo_after_finalize} "
            f"requests per first close, {self.dynamo_rerun} to resume one",
            f"Lambda: cold start {self.cold_start:g} s (median), {self.invocation_overhead * 1000:.0f} ms "
            f"per invocation, {self.receive_latency * 1000:.0f} ms per SQS receive; the event source starts "
            f"{self.initial_pollers} invocations, then {self.pollers_per_minute} more per minute",
            "every customer owes something (a no-charge close calls Stripe not at all); "
            "the queue holds every message from the start",
        ]


# --- stripe-python, asked -----------------------------------------------------------------------------------
class Library:
    """stripe-python's decision to retry an answer, and its backoff (seeded)."""

    def __init__(self, max_network_retries: int) -> None:
        self._client = stripe.RequestsClient()  # no request is ever made
        self.max_network_retries = max_network_retries

    def retries(self, status: int, headers: dict[str, str], num_retries: int) -> bool:
        return bool(
            self._client._should_retry((b"", status, headers), None, num_retries, self.max_network_retries)
        )

    @staticmethod
    def sleep(num_retries: int, rng: random.Random) -> float:
        seconds = min(HTTPClient.INITIAL_DELAY * 2 ** (num_retries - 1), HTTPClient.MAX_DELAY)
        seconds *= 0.5 * (1 + rng.uniform(0, 1))
        return max(HTTPClient.INITIAL_DELAY, seconds)


# --- Stripe's limiter ---------------------------------------------------------------------------------------
class Bucket:
    """A token bucket: ``rate`` tokens a second, holding at most ``burst_seconds`` of them."""

    __slots__ = ("capacity", "last", "rate", "tokens")

    def __init__(self, rate: float, burst_seconds: float) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate * burst_seconds)
        self.tokens = self.capacity
        self.last = 0.0

    def allows(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return self.tokens >= 1

    def take(self, now: float) -> None:
        self.tokens -= 1


class Window:
    """The strictest reading of "N per second": at most ``rate`` requests in any sliding second."""

    __slots__ = ("rate", "sent")

    def __init__(self, rate: float, burst_seconds: float) -> None:
        self.rate = rate
        self.sent: deque[float] = deque()

    def allows(self, now: float) -> bool:
        while self.sent and self.sent[0] <= now - 1:
            self.sent.popleft()
        return len(self.sent) < self.rate

    def take(self, now: float) -> None:
        self.sent.append(now)


class StripeModel:
    def __init__(self, limits: StripeRateLimits, burst_seconds: float, window: bool = False) -> None:
        limiter = Window if window else Bucket
        self.account: Bucket | Window = limiter(limits.per_account, burst_seconds)
        rates = {op: limits.per_endpoint for op in (pacing.CREATE, pacing.ADD_LINES, pacing.FINALIZE)}
        rates |= {pacing.RETRIEVE: limits.per_endpoint, LIST: limits.per_endpoint}
        rates[pacing.SEARCH] = min(limits.per_endpoint, STRIPE_SEARCH_RATE)
        self.endpoints: dict[str, Bucket | Window] = {
            op: limiter(r, burst_seconds) for op, r in rates.items()
        }
        self.accepted: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.per_second: Counter[tuple[str, int]] = Counter()  # accepted requests by (endpoint, second)

    def admit(self, endpoint: str, now: float) -> bool:
        limiter, account = self.endpoints[endpoint], self.account
        if not (limiter.allows(now) and account.allows(now)):
            self.rejected[endpoint] += 1
            return False
        limiter.take(now)
        account.take(now)
        self.accepted[endpoint] += 1
        self.per_second[(endpoint, int(now))] += 1
        return True

    def peak(self, endpoint: str | None = None) -> int:
        """The most requests accepted in one second, on ``endpoint`` or on the account."""
        seconds: Counter[int] = Counter()
        for (op, second), count in self.per_second.items():
            if endpoint is None or op == endpoint:
                seconds[second] += count
        return max(seconds.values(), default=0)


# --- the simulation -----------------------------------------------------------------------------------------
class TimedOut(Exception):
    """The invocation reached the function's timeout: Lambda stops it."""


class RateLimited(Exception):
    """A close gave up on a 429 (its retry budget spent): the message fails and is received again later."""


class Failed(Exception):
    """Another Stripe failure (a 500 after the library's retries): the message fails."""


NEW, RATED, CREATED, LINES, DONE = range(5)


@dataclass
class Message:
    customer: int
    receives: int = 0
    received_at: float = 0.0


@dataclass
class Environment:
    pacer: pacing.Pacer
    cold: bool = True


@dataclass
class Counts:
    rejected: int = 0  # 429 answers
    library_retries: int = 0
    backoff_retries: int = 0  # the worker's own, after a 429
    closes_rate_limited: int = 0  # closes that spent their retry budget
    closes_failed: int = 0  # other Stripe failures
    timeouts: int = 0
    receives: int = 0
    invocations: int = 0
    cold_starts: int = 0
    finished: int = 0
    dead_lettered: int = 0
    pacing_wait: float = 0.0
    stripe_seconds: float = 0.0


class Simulation:
    def __init__(
        self, deployment: Deployment, assumptions: Assumptions, invoices: int, seed: int = SEED
    ) -> None:
        self.d = deployment
        self.a = assumptions
        self.invoices = invoices
        self.rng = random.Random(seed)
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.stripe = StripeModel(
            deployment.limits, assumptions.stripe_burst_seconds, assumptions.stripe_window
        )
        self.library = Library(deployment.max_network_retries)
        self.headers = {"stripe-should-retry": "true"} if assumptions.should_retry_header else {}
        self.state = [NEW] * invoices
        self.visible: deque[Message] = deque(Message(i) for i in range(invoices))
        self.returning: list[tuple[float, int, Message]] = []  # (visible again at, seq, message)
        self.idle_environments: list[Environment] = []
        self.parked: list[int] = []  # pollers waiting for a message to become visible
        self.wake_at: float | None = None
        self.pollers = 0
        self.counts = Counts()
        self.end = 0.0

    # -- event loop --
    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._events, (when, self._seq, action, args))

    def spawn(self, process: Wait, done: Callable[[Any], None]) -> None:
        self._step(process, done, None)

    def _step(self, process: Wait, done: Callable[[Any], None], error: BaseException | None) -> None:
        try:
            delay = process.throw(error) if error is not None else next(process)
        except StopIteration as stop:
            done(stop.value)
            return
        except (TimedOut, RateLimited, Failed) as failure:
            done(failure)
            return
        self.at(self.now + delay, self._step, process, done, None)

    def run(self) -> Simulation:
        for _ in range(min(self.a.initial_pollers, self.d.concurrency)):
            self._add_poller()
        self.at(60 / self.a.pollers_per_minute, self._scale_up)
        while self._events:
            self.now, _, action, args = heapq.heappop(self._events)
            action(*args)
        return self

    # -- the event source --
    def _scale_up(self) -> None:
        """One more concurrent invocation every 0.2 s (300 a minute) while messages wait."""
        done = self.counts.finished + self.counts.dead_lettered >= self.invoices
        if self.pollers >= self.d.concurrency or done:
            return
        if self.visible:
            self._add_poller()
        self.at(self.now + 60 / self.a.pollers_per_minute, self._scale_up)

    def _add_poller(self) -> None:
        self.pollers += 1
        self.at(self.now + self.a.receive_latency, self._poll, self.pollers)

    def _poll(self, poller: int) -> None:
        self._return_due()
        batch: list[Message] = []
        while self.visible and len(batch) < self.d.batch_size:
            message = self.visible.popleft()
            if message.receives >= self.d.max_receive_count:
                self.counts.dead_lettered += 1
                self.end = self.now
                continue
            message.receives += 1
            message.received_at = self.now
            self.counts.receives += 1
            batch.append(message)
        if batch:
            self._invoke(poller, batch)
            return
        self.parked.append(poller)  # long polling: until a failed message becomes visible again
        if self.returning and (self.wake_at is None or self.returning[0][0] < self.wake_at):
            self.wake_at = self.returning[0][0]
            self.at(self.wake_at, self._wake)

    def _return_due(self) -> None:
        while self.returning and self.returning[0][0] <= self.now:
            self.visible.append(heapq.heappop(self.returning)[2])

    def _wake(self) -> None:
        self.wake_at = None
        parked, self.parked = self.parked, []
        for poller in parked:
            self._poll(poller)

    def _return_later(self, message: Message) -> None:
        self._seq += 1
        heapq.heappush(self.returning, (message.received_at + self.d.visibility, self._seq, message))
        if self.parked and (self.wake_at is None or self.returning[0][0] < self.wake_at):
            self.wake_at = self.returning[0][0]
            self.at(self.wake_at, self._wake)

    def _invoke(self, poller: int, batch: list[Message]) -> None:
        if self.idle_environments:
            environment = self.idle_environments.pop()
        else:
            pacer = pacing.Pacer(
                self.d.limits, self.d.concurrency, utilization=self.d.utilization, clock=lambda: self.now
            )
            environment = Environment(pacer)
        self.counts.invocations += 1
        deadline = self.now + self.d.timeout
        results: dict[int, bool] = {}

        def done(outcome: Any) -> None:
            if isinstance(outcome, TimedOut):
                self.counts.timeouts += 1
                environment.cold = True  # Lambda replaces a timed-out environment
                for message in batch:
                    self._return_later(message)
            else:
                for message in batch:
                    if results.get(message.customer):
                        self.counts.finished += 1
                        self.end = self.now
                    else:
                        self._return_later(message)
            self.idle_environments.append(environment)
            self.at(self.now + self.a.receive_latency, self._poll, poller)

        self.spawn(self._invocation(environment, batch, deadline, results), done)

    # -- one invocation, one close --
    def _wait(self, seconds: float, deadline: float) -> Wait:
        if self.now + seconds > deadline:
            yield deadline - self.now
            raise TimedOut
        yield seconds

    def _invocation(
        self, environment: Environment, batch: list[Message], deadline: float, results: dict
    ) -> Wait:
        if environment.cold:
            environment.cold = False
            self.counts.cold_starts += 1
            yield from self._wait(self.rng.lognormvariate(math.log(self.a.cold_start), 0.3), deadline)
        yield from self._wait(self.a.invocation_overhead, deadline)
        for message in batch:
            try:
                yield from self._close(environment, message.customer, deadline)
                results[message.customer] = True
            except RateLimited:
                self.counts.closes_rate_limited += 1
            except Failed:
                self.counts.closes_failed += 1

    def _dynamo(self, requests: int, deadline: float) -> Wait:
        a = self.a
        seconds = sum(
            self.rng.lognormvariate(math.log(a.dynamo_median), a.dynamo_sigma) for _ in range(requests)
        )
        yield from self._wait(seconds, deadline)

    def _close(self, environment: Environment, customer: int, deadline: float) -> Wait:
        state, a = self.state, self.a
        budget = [self.now, 0]  # when the close began, its rate-limit retries (pacing.PacedInvoicing)
        if state[customer] == DONE:
            yield from self._dynamo(a.dynamo_rerun, deadline)
            return
        stored_now = state[customer] == NEW
        yield from self._dynamo(a.dynamo_first_run if stored_now else a.dynamo_rerun, deadline)
        if stored_now:
            state[customer] = RATED
        seen = False
        if state[customer] == RATED:
            if not stored_now:
                yield from self._call(environment, pacing.SEARCH, budget, deadline)
            yield from self._call(environment, pacing.CREATE, budget, deadline)
            yield from self._dynamo(a.dynamo_after_create, deadline)
            state[customer], seen = CREATED, True
        if not seen:
            yield from self._call(environment, pacing.RETRIEVE, budget, deadline)
        if state[customer] == CREATED:
            yield from self._call(environment, pacing.ADD_LINES, budget, deadline)
            state[customer] = LINES
        yield from self._call(environment, pacing.FINALIZE, budget, deadline)
        yield from self._dynamo(a.dynamo_after_finalize, deadline)
        state[customer] = DONE

    def _call(self, environment: Environment, endpoint: str, budget: list[float], deadline: float) -> Wait:
        """PacedInvoicing._call: wait for the pacer, send (stripe-python retrying what it retries), and after
        a 429 back off and send again, in the same pacing slot, while the close is inside the backoff's
        window."""
        backoff = self.d.backoff
        wait = environment.pacer.reserve(endpoint)
        self.counts.pacing_wait += wait
        yield from self._wait(wait, deadline)
        while True:
            status = yield from self._send(endpoint, deadline)
            if status == 200:
                return
            if endpoint == pacing.SEARCH:  # the gateway lists the customer's invoices instead
                status = yield from self._send(LIST, deadline)
                if status == 200:
                    return
            if status != 429:
                raise Failed
            delay = backoff.delay(int(budget[1]) + 1, self.now - budget[0], self.rng)
            if delay is None:
                raise RateLimited
            budget[1] += 1
            self.counts.backoff_retries += 1
            yield from self._wait(delay, deadline)

    def _send(self, endpoint: str, deadline: float) -> Wait:
        """One request through stripe-python: its attempts, until an answer it does not retry."""
        a, retries = self.a, 0
        while True:
            if self.stripe.admit(endpoint, self.now):
                failed = a.error_rate > 0 and self.rng.random() < a.error_rate
                status, median = (500 if failed else 200), a.stripe_median[endpoint] * a.latency_scale
            else:
                self.counts.rejected += 1
                status, median = 429, a.rejected_median
            seconds = min(self.rng.lognormvariate(math.log(median), a.stripe_sigma), self.d.request_timeout)
            self.counts.stripe_seconds += seconds
            yield from self._wait(seconds, deadline)
            headers = self.headers if status == 429 else {}
            if status == 200 or not self.library.retries(status, headers, retries):
                return status
            retries += 1
            self.counts.library_retries += 1
            yield from self._wait(self.library.sleep(retries, self.rng), deadline)


# --- reporting ----------------------------------------------------------------------------------------------
def floor_seconds(invoices: int, limits: StripeRateLimits) -> float:
    return invoices / pacing.invoice_rate(limits)


@dataclass(frozen=True)
class Result:
    deployment: Deployment
    invoices: int
    seconds: float
    counts: Counts
    stripe: StripeModel

    @property
    def ratio(self) -> float:
        return self.seconds / floor_seconds(self.invoices, self.deployment.limits)

    @property
    def rate(self) -> float:
        return self.counts.finished / self.seconds if self.seconds else 0.0


def simulate(deployment: Deployment, assumptions: Assumptions, invoices: int, seed: int = SEED) -> Result:
    simulation = Simulation(deployment, assumptions, invoices, seed).run()
    return Result(deployment, invoices, simulation.end, simulation.counts, simulation.stripe)


def worst_case_timeout(batch_size: int) -> float:
    """The timeout a batch needs: the batch size times one close's worst case (tollgate.cdk.constants)."""
    return batch_size * constants.CLOSE_WORST_CASE_SECONDS


def report(result: Result, assumptions: Assumptions) -> None:
    d, c, limits = result.deployment, result.counts, result.deployment.limits
    pacer = pacing.Pacer(limits, d.concurrency, utilization=d.utilization)
    print("Deployed (read from the code):")
    print(
        f"  Stripe limits: {limits.per_endpoint:g} requests/s per endpoint, "
        f"{limits.per_account:g} operations/s per account"
    )
    print(
        f"  event source: batch size {d.batch_size}, maximum concurrency {d.concurrency} (= reserved "
        f"concurrency); function timeout {d.timeout:g} s; visibility timeout {d.visibility:g} s; "
        f"maxReceiveCount {d.max_receive_count}"
    )
    print(
        f"  pacing: {d.utilization:.0%} of each limit over {d.concurrency} workers: per worker, one request "
        f"per endpoint every {pacer.endpoint_interval:.2f} s, one per account every "
        f"{pacer.account_interval:.2f} s"
    )
    print(
        f"  429: stripe-python max_network_retries {d.max_network_retries}, request timeout "
        f"{d.request_timeout:g} s; the worker backs off "
        f"{', '.join(f'{d.backoff.ceiling(r):g}' for r in range(1, 6))} ... s (equal jitter) while the close "
        f"has run less than {d.backoff.window:g} s"
    )
    print("Assumptions:")
    for line in assumptions.describe():
        print(f"  {line}")
    floor = floor_seconds(result.invoices, limits)
    print(f"\nClose of {result.invoices:,} invoices:")
    print(
        f"  Stripe requests accepted: {sum(result.stripe.accepted.values()):,} "
        f"({', '.join(f'{op} {n:,}' for op, n in sorted(result.stripe.accepted.items()))})"
    )
    print(
        f"  429 answers: {c.rejected:,}; retried by stripe-python: {c.library_retries:,}; by the worker "
        f"after a backoff: {c.backoff_retries:,}; closes that spent their retry budget: "
        f"{c.closes_rate_limited:,}"
    )
    print(
        f"  other failed closes: {c.closes_failed:,}; timed-out invocations: {c.timeouts:,}; receives: "
        f"{c.receives:,} for {result.invoices:,} messages; invocations {c.invocations:,}, cold starts "
        f"{c.cold_starts:,}"
    )
    print(f"  messages in the DLQ: {c.dead_lettered:,}; closed: {c.finished:,}")
    peak_account = result.stripe.peak()
    peak_endpoint = max(result.stripe.peak(op) for op in (pacing.CREATE, pacing.ADD_LINES, pacing.FINALIZE))
    print(
        f"  Stripe rate: {result.rate:.2f} invoices/s on average (limit {pacing.invoice_rate(limits):.3g}); "
        f"accepted in the busiest second: {peak_endpoint} on one endpoint (limit {limits.per_endpoint:g}/s), "
        f"{peak_account} on the account ({limits.per_account:g}/s)"
        + (
            ""
            if assumptions.stripe_window
            else f", within the buckets' {assumptions.stripe_burst_seconds:g} s burst"
        )
    )
    closes = max(c.receives, 1)
    print(
        f"  per close: {c.stripe_seconds / closes:.2f} s waiting for Stripe, "
        f"{c.pacing_wait / closes:.2f} s for the pacer"
    )
    print(f"  time: {result.seconds:,.0f} s ({result.seconds / 3600:.2f} h); floor {floor:,.0f} s")
    print(f"ratio to floor: {result.ratio:.3f}")


def search(limits: StripeRateLimits, assumptions: Assumptions, invoices: int) -> None:
    """The table behind the deployed values: each row simulated under the assumptions above, with Stripe twice
    as slow, and with Stripe's limiter read strictly (no more than the limit in any sliding second)."""
    deployed = Deployment.deployed(limits)
    slower = replace(assumptions, latency_scale=2 * assumptions.latency_scale)
    strict = replace(assumptions, stripe_window=True)

    def row(deployment: Deployment) -> tuple[str, float]:
        """The row's figures, and its worst ratio (infinite if any message reached the DLQ)."""
        base, slow, window = (simulate(deployment, a, invoices) for a in (assumptions, slower, strict))
        dlq = base.counts.dead_lettered + slow.counts.dead_lettered + window.counts.dead_lettered
        line = (
            f"{base.ratio:>6.3f} {base.counts.rejected:>6,} {slow.ratio:>11.3f} {window.ratio:>9.3f} "
            f"{window.counts.rejected:>6,} {dlq:>4}"
        )
        return line, math.inf if dlq else max(base.ratio, slow.ratio, window.ratio)

    header = f"{'ratio':>6} {'429s':>6} {'Stripe x 2':>11} {'window':>9} {'429s':>6} {'DLQ':>4}"
    print(
        f"\nWhy these values ({invoices:,} invoices a row; * = deployed; ratio to floor as assumed, with "
        "Stripe"
    )
    print("twice as slow, and with a limiter counting any sliding second; DLQ over the three):")
    print(f"{'concurrency':>11} {'batch':>5} {header} {'timeout needed':>15}")
    concurrencies = sorted({5, 20, 40, 57, deployed.concurrency, 80, 120})
    rows: list[tuple[int, int]] = [(c, deployed.batch_size) for c in concurrencies]
    rows += [(deployed.concurrency, batch) for batch in (2, 10) if batch != deployed.batch_size]
    meets: dict[int, bool] = {}
    for concurrency, batch in rows:
        needed = worst_case_timeout(batch)
        trial = replace(
            deployed, concurrency=concurrency, batch_size=batch, timeout=min(needed, LAMBDA_MAX_TIMEOUT)
        )
        mark = "*" if (concurrency, batch) == (deployed.concurrency, deployed.batch_size) else " "
        fits = "" if needed <= LAMBDA_MAX_TIMEOUT else f" > {LAMBDA_MAX_TIMEOUT} s"
        line, worst = row(trial)
        if batch == deployed.batch_size:
            meets[concurrency] = worst <= TARGET_RATIO
        print(f"{concurrency:>10}{mark} {batch:>5} {line} {needed:>13,.0f} s{fits}")
    print(f"\n{'utilization':>11} {header}   (share of each limit the pacers aim at; deployed concurrency)")
    fits_target: dict[float, bool] = {}
    for utilization in sorted({0.8, 0.85, deployed.utilization, 0.95, 1.0}):
        mark = "*" if utilization == deployed.utilization else " "
        line, worst = row(replace(deployed, utilization=utilization))
        fits_target[utilization] = worst <= TARGET_RATIO
        print(f"{utilization:>10.0%}{mark} {line}")
    smallest = min((c for c, ok in meets.items() if ok), default=None)
    lowest = min((u for u, ok in fits_target.items() if ok), default=None)
    print(
        "\nRule: the smallest concurrency and the lowest utilization (the most headroom for the account's "
        f"other traffic) whose three ratios are all <= {TARGET_RATIO}, with no DLQ; a batch of 1 (a larger "
        f"one needs a longer timeout than Lambda allows). Here: concurrency {smallest}, utilization "
        + (f"{lowest:.0%}" if lowest is not None else "none")
        + f"; deployed: {deployed.concurrency}, {deployed.utilization:.0%}."
    )


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--invoices", type=int, default=DEFAULT_INVOICES, help="customers to close (default 100,000)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--live", action="store_true", help="Stripe's live-mode limits (the default)")
    mode.add_argument(
        "--sandbox", action="store_true", help="a sandbox's limits: 25 operations/s per account"
    )
    parser.add_argument("--endpoint-rate", type=float, help="Stripe's limit per endpoint, requests/s")
    parser.add_argument("--account-rate", type=float, help="Stripe's limit per account, operations/s")
    parser.add_argument(
        "--stripe-burst", type=float, default=1.0, help="seconds of its rate a Stripe bucket holds"
    )
    parser.add_argument("--stripe-window", action="store_true", help="Stripe limits any sliding second")
    parser.add_argument("--latency-scale", type=float, default=1.0, help="multiply every Stripe latency")
    parser.add_argument(
        "--should-retry-header", action="store_true", help="Stripe says Stripe-Should-Retry: true"
    )
    parser.add_argument("--error-rate", type=float, default=0.0, help="share of Stripe answers that are 500s")
    parser.add_argument(
        "--search", action="store_true", help="also print the table behind the deployed values"
    )
    parser.add_argument("--search-invoices", type=int, default=SEARCH_INVOICES, help="invoices per table row")
    args = parser.parse_args(None if argv is None else list(argv))

    limits = StripeRateLimits.sandbox() if args.sandbox else StripeRateLimits.live()
    limits = StripeRateLimits(
        per_endpoint=args.endpoint_rate or limits.per_endpoint,
        per_account=args.account_rate or limits.per_account,
    )
    assumptions = Assumptions(
        stripe_burst_seconds=args.stripe_burst,
        stripe_window=args.stripe_window,
        latency_scale=args.latency_scale,
        should_retry_header=args.should_retry_header,
        error_rate=args.error_rate,
    )
    result = simulate(Deployment.deployed(limits), assumptions, args.invoices)
    report(result, assumptions)
    if args.search:
        search(limits, assumptions, min(args.search_invoices, args.invoices))


if __name__ == "__main__":
    main()
