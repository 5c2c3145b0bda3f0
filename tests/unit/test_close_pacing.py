"""The close worker's pacing under Stripe's rate limits and its handling of a 429, on a fake clock.

Nothing sleeps: the fake clock moves when the code under test sleeps. The close itself runs over the
in-memory ledger and Stripe of ``test_close_steps``; a 429 is the library's own ``stripe.RateLimitError``,
wrapped as the real gateway wraps it (``StripeCallError``).
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
import stripe
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from tests.conftest import CONTEXT, make_plan
from tests.integration.test_period_close_handlers import emitted_metrics
from tests.unit.test_close_steps import ACME, NOW, PERIOD, Ledger, Stripe
from tollgate.billing.close import pacing, worker
from tollgate.billing.close.pacing import Backoff, Pacer, Pacing
from tollgate.billing.close.settings import StripeRateLimits, WorkerSettings
from tollgate.billing.invoicing import InvoiceDraft, InvoiceLine, StripeInvoice
from tollgate.billing.stripe_client import is_rate_limited
from tollgate.domain.closes import CloseStatus
from tollgate.errors import StripeCallError
from tollgate.settings import SettingsError

T = TypeVar("T")
LIVE = StripeRateLimits.live()
SANDBOX = StripeRateLimits.sandbox()


@dataclass
class FakeClock:
    now: float = 1_000.0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.now += seconds


def rate_limited(operation: str) -> StripeCallError:
    return StripeCallError(operation, stripe.RateLimitError("Too many requests", http_status=429))


@dataclass
class Flaky:
    """The in-memory Stripe, answering 429 to the first ``refusals`` requests of each listed operation."""

    inner: Stripe = field(default_factory=Stripe)
    refusals: dict[str, int] = field(default_factory=dict)
    sent: Counter[str] = field(default_factory=Counter)
    clock: FakeClock | None = None
    sent_at: list[tuple[str, float]] = field(default_factory=list)

    def _send(self, operation: str, request: Callable[[], T]) -> T:
        self.sent[operation] += 1
        if self.clock is not None:
            self.sent_at.append((operation, self.clock.now))
        if self.refusals.get(operation, 0) > 0:
            self.refusals[operation] -= 1
            raise rate_limited(operation)
        return request()

    def find_invoices(self, *, stripe_customer_id: str, customer_id: str, period: str) -> list[StripeInvoice]:
        return self._send(
            pacing.SEARCH,
            lambda: self.inner.find_invoices(
                stripe_customer_id=stripe_customer_id, customer_id=customer_id, period=period
            ),
        )

    def get_invoice(self, invoice_id: str) -> StripeInvoice:
        return self._send(pacing.RETRIEVE, lambda: self.inner.get_invoice(invoice_id))

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice:
        return self._send(
            pacing.CREATE, lambda: self.inner.create_invoice(draft, idempotency_key=idempotency_key)
        )

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        return self._send(
            pacing.ADD_LINES, lambda: self.inner.add_lines(invoice_id, lines, idempotency_key=idempotency_key)
        )

    def finalize(self, invoice_id: str, *, idempotency_key: str) -> StripeInvoice:
        return self._send(
            pacing.FINALIZE, lambda: self.inner.finalize(invoice_id, idempotency_key=idempotency_key)
        )


def make_pacing(clock: FakeClock, limits: StripeRateLimits = LIVE, fleet: int = 1) -> Pacing:
    return Pacing(Pacer(limits, fleet, clock=clock), sleep=clock.sleep, rng=random.Random(7))


# -- the pacer ---------------------------------------------------------------------------------------------
def test_a_pacer_spaces_requests_to_one_endpoint_by_its_share_of_the_limit() -> None:
    clock = FakeClock()
    pacer = Pacer(LIVE, fleet=10, utilization=0.9, clock=clock)

    assert pacer.endpoint_interval == pytest.approx(10 / (0.9 * LIVE.per_endpoint))
    assert pacer.account_interval == pytest.approx(10 / (0.9 * LIVE.per_account))
    assert pacer.reserve(pacing.CREATE) == 0  # nothing sent yet: at once
    assert pacer.reserve(pacing.CREATE) == pytest.approx(pacer.endpoint_interval)
    # another endpoint waits only for the account's share, counted from the last booked request
    clock.now += pacer.endpoint_interval
    assert pacer.reserve(pacing.ADD_LINES) == pytest.approx(pacer.account_interval)


def test_a_pacer_banks_nothing_while_idle() -> None:
    clock = FakeClock()
    pacer = Pacer(LIVE, fleet=4, clock=clock)
    pacer.reserve(pacing.CREATE)
    clock.now += 3_600  # an hour without a request

    waits = [pacer.reserve(pacing.CREATE) for _ in range(3)]

    assert waits[0] == 0
    assert waits[1:] == pytest.approx([pacer.endpoint_interval, 2 * pacer.endpoint_interval])


@pytest.mark.parametrize("limits", [LIVE, SANDBOX, StripeRateLimits(per_endpoint=100, per_account=500)])
def test_a_fleet_of_pacers_stays_under_its_share_of_every_limit(limits: StripeRateLimits) -> None:
    """However eagerly every worker sends, the fleet's requests over a stretch of time stay within
    TARGET_UTILIZATION of each limit (plus the one request each worker may send at once)."""
    clock = FakeClock(now=0.0)
    fleet = pacing.fleet_size(limits)
    pacers = [Pacer(limits, fleet, clock=clock) for _ in range(fleet)]
    endpoints = (pacing.CREATE, pacing.ADD_LINES, pacing.FINALIZE)
    sent: list[tuple[float, str]] = []
    for worker_index, pacer in enumerate(pacers):  # each worker asks as fast as it can, for 60 s
        clock.now = worker_index * 0.01
        while clock.now < 60:
            endpoint = endpoints[len(sent) % 3]
            clock.now += pacer.reserve(endpoint)
            sent.append((clock.now, endpoint))
    within = [(at, endpoint) for at, endpoint in sent if at < 60]
    per_endpoint = Counter(endpoint for _, endpoint in within)
    for endpoint in endpoints:
        assert per_endpoint[endpoint] <= pacing.TARGET_UTILIZATION * limits.per_endpoint * 60 + fleet
    assert len(within) <= pacing.TARGET_UTILIZATION * limits.per_account * 60 + fleet


# -- sizing the fleet --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "limits",
    [LIVE, SANDBOX, StripeRateLimits(per_endpoint=50, per_account=200), StripeRateLimits(1, 1)],
)
def test_the_fleet_is_large_enough_that_pacing_not_latency_sets_the_pace(limits: StripeRateLimits) -> None:
    fleet = pacing.fleet_size(limits)
    # each worker closes one invoice per SECONDS_PER_INVOICE: together at least the target rate
    assert fleet / pacing.SECONDS_PER_INVOICE >= pacing.TARGET_UTILIZATION * pacing.invoice_rate(limits)
    assert pacing.EVENT_SOURCE_MIN_CONCURRENCY <= fleet <= pacing.EVENT_SOURCE_MAX_CONCURRENCY
    # and the pacing interval is the cycle (or shorter): a close taking less than it is never slowed further
    assert Pacer(limits, fleet).endpoint_interval <= pacing.SECONDS_PER_INVOICE + 1 / (
        pacing.TARGET_UTILIZATION * limits.per_endpoint
    )


def test_raised_limits_bring_more_workers_and_a_sandbox_fewer() -> None:
    raised = StripeRateLimits(per_endpoint=2 * LIVE.per_endpoint, per_account=2 * LIVE.per_account)
    assert pacing.fleet_size(SANDBOX) < pacing.fleet_size(LIVE) < pacing.fleet_size(raised)
    assert pacing.invoice_rate(SANDBOX) == SANDBOX.per_account / pacing.STRIPE_WRITES_PER_INVOICE


# -- the backoff -------------------------------------------------------------------------------------------
def test_the_backoff_doubles_to_its_longest_with_jitter_and_stops_at_the_window() -> None:
    backoff, rng = Backoff(), random.Random(1)
    ceilings = [backoff.ceiling(retry) for retry in range(1, 7)]
    assert ceilings == [1, 2, 4, 8, 8, 8]
    for retry, ceiling in enumerate(ceilings, start=1):
        delay = backoff.delay(retry, 0, rng)
        assert delay is not None
        assert ceiling / 2 <= delay <= ceiling
    assert backoff.delay(1, backoff.window - 0.4, rng) is None  # would end past the window
    assert backoff.delay(1_000, 0, rng) is not None  # the ceiling stays bounded


# -- a 429 in a close ----------------------------------------------------------------------------------------
def test_stripe_python_does_not_retry_a_rate_limited_429_itself() -> None:
    """Why the worker backs off: the library retries a 429 only when Stripe says Stripe-Should-Retry."""
    client = stripe.RequestsClient()
    assert not client._should_retry((b"", 429, {}), None, 0, 2)
    assert client._should_retry((b"", 429, {"stripe-should-retry": "true"}), None, 0, 2)
    assert is_rate_limited(rate_limited(pacing.CREATE))
    assert not is_rate_limited(StripeCallError(pacing.CREATE, stripe.APIError("boom")))


def test_a_429_is_sent_again_after_a_backoff_in_the_same_slot() -> None:
    clock = FakeClock()
    flaky = Flaky(refusals={pacing.CREATE: 1}, clock=clock)
    paced = make_pacing(clock).for_close(flaky)

    paced.create_invoice(draft(), idempotency_key="k")

    assert flaky.sent[pacing.CREATE] == 2
    assert paced.retries == 1
    (_, first_at), (_, retried_at) = flaky.sent_at
    # the retry waited one backoff (half to all of a second), and not for the pacer again
    assert clock.slept == [pytest.approx(retried_at - first_at)]
    assert 0.5 <= retried_at - first_at <= 1.0


def test_another_stripe_error_is_not_retried() -> None:
    clock = FakeClock()

    class Broken(Flaky):
        def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice:
            self.sent[pacing.CREATE] += 1
            raise StripeCallError(pacing.CREATE, stripe.APIError("boom"))

    broken = Broken()
    with pytest.raises(StripeCallError, match="boom"):
        make_pacing(clock).for_close(broken).create_invoice(draft(), idempotency_key="k")
    assert broken.sent[pacing.CREATE] == 1
    assert clock.slept == []


def test_a_persistent_429_fails_only_after_the_window_and_well_inside_the_timeout() -> None:
    from tollgate.cdk import constants

    clock = FakeClock()
    flaky = Flaky(refusals={pacing.CREATE: 10_000})
    started = clock.now
    paced = make_pacing(clock).for_close(flaky)

    with pytest.raises(StripeCallError) as raised:
        paced.create_invoice(draft(), idempotency_key="k")

    assert is_rate_limited(raised.value)
    elapsed = clock.now - started
    window = pacing.Backoff().window
    assert window - Backoff().longest <= elapsed <= window  # it kept trying for the whole window, no longer
    assert paced.retries == flaky.sent[pacing.CREATE] - 1 >= 5
    assert elapsed < constants.CLOSE_WORKER_TIMEOUT_SECONDS


def draft() -> InvoiceDraft:
    return InvoiceDraft(
        stripe_customer_id="cus_acme",
        currency="usd",
        collection_method=make_plan().collection_method,
        days_until_due=None,
        description="d",
        metadata={},
    )


# -- the worker ----------------------------------------------------------------------------------------------
def sqs_event(message_id: str = "m-1") -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": f"handle-{message_id}",
                "body": json.dumps({"customer_id": ACME.id, "period": PERIOD}),
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "1793520000000"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:tollgate-close",
                "awsRegion": "us-east-1",
            }
        ]
    }


def paced_worker(flaky: Flaky, clock: FakeClock) -> tuple[Ledger, Callable[..., dict[str, Any]]]:
    ledger = Ledger()
    ledger.add(ACME, credits=1_234_567)
    deps = worker.Deps(ledger, flaky, clock=lambda: NOW, pacing=make_pacing(clock, fleet=68))
    return ledger, worker.make_handler(deps)


def test_a_429_then_success_closes_the_customer_without_failing_the_message(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = FakeClock()
    flaky = Flaky(refusals={pacing.CREATE: 1, pacing.FINALIZE: 2})
    ledger, handle = paced_worker(flaky, clock)

    answer = handle(sqs_event(), CONTEXT)

    assert emitted_metrics(capsys.readouterr().out) == Counter(
        {"InvoicesFinalized": 1, "StripeRateLimited": 3}
    )
    assert answer["batchItemFailures"] == []
    record = ledger.records[(ACME.id, PERIOD)]
    assert record.status is CloseStatus.FINALIZED
    assert record.attempts == 0  # no failure recorded either
    assert flaky.sent == Counter({pacing.CREATE: 2, pacing.ADD_LINES: 1, pacing.FINALIZE: 3})


def test_a_persistent_429_fails_the_message_within_the_function_timeout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tollgate.cdk import constants

    clock = FakeClock()
    flaky = Flaky(refusals={pacing.ADD_LINES: 10_000})
    ledger, handle = paced_worker(flaky, clock)

    with pytest.raises(BatchProcessingError):  # Powertools: every record of the batch failed
        handle(sqs_event("m-9"), CONTEXT)

    emitted = emitted_metrics(capsys.readouterr().out)
    assert (emitted["CloseFailures"], emitted["StripeFailures"]) == (1, 1)
    assert emitted["StripeRateLimited"] >= 5
    record = ledger.records[(ACME.id, PERIOD)]
    assert record.status is CloseStatus.INVOICE_CREATED  # the next receive resumes from here
    assert record.attempts == 1
    assert "RateLimitError" in (record.last_error or "")
    assert clock.now - 1_000 <= constants.CLOSE_WORKER_TIMEOUT_SECONDS


def test_the_deployed_worker_paces_with_its_settings() -> None:
    env = {
        "TABLE_NAME": "t",
        "STRIPE_API_KEY": "sk_test_x",
        "STRIPE_ENDPOINT_RATE": "50",
        "STRIPE_ACCOUNT_RATE": "200",
        "CLOSE_WORKER_FLEET_SIZE": "40",
    }
    settings = WorkerSettings.from_env(env)
    assert settings.stripe_limits == StripeRateLimits(per_endpoint=50, per_account=200)
    assert settings.fleet_size == 40
    deps = worker.deps_from(settings)
    assert deps.pacing is not None
    assert deps.pacing.pacer.endpoint_interval == pytest.approx(40 / (pacing.TARGET_UTILIZATION * 50))


def test_the_worker_settings_default_to_live_limits_and_refuse_nonsense() -> None:
    settings = WorkerSettings.from_env({"TABLE_NAME": "t"})
    assert (settings.stripe_limits, settings.fleet_size) == (LIVE, 1)
    assert StripeRateLimits.from_env(SANDBOX.as_env()) == SANDBOX
    for env, name in (
        ({"STRIPE_ENDPOINT_RATE": "fast"}, "STRIPE_ENDPOINT_RATE"),
        ({"STRIPE_ACCOUNT_RATE": "0"}, "per_account"),
        ({"CLOSE_WORKER_FLEET_SIZE": "0"}, "CLOSE_WORKER_FLEET_SIZE"),
        ({"CLOSE_WORKER_FLEET_SIZE": "many"}, "CLOSE_WORKER_FLEET_SIZE"),
    ):
        with pytest.raises(SettingsError, match=name):
            WorkerSettings.from_env({"TABLE_NAME": "t", **env})


def test_a_close_request_is_paced_even_when_nothing_is_refused() -> None:
    """Two closes in a row in one environment: the second one's requests wait for the pacer."""
    clock = FakeClock()
    flaky = Flaky(clock=clock)
    ledger, handle = paced_worker(flaky, clock)
    ledger.add(type(ACME).model_validate({**ACME.model_dump(), "id": "beta", "stripe_customer_id": "cus_b"}))
    ledger.credits[("beta", PERIOD)] = 1_000

    handle(sqs_event(), CONTEXT)
    event = sqs_event("m-2")
    event["Records"][0]["body"] = json.dumps({"customer_id": "beta", "period": PERIOD})
    handle(event, CONTEXT)

    creates = [at for operation, at in flaky.sent_at if operation == pacing.CREATE]
    interval = Pacer(LIVE, 68).endpoint_interval
    assert creates[1] - creates[0] == pytest.approx(interval)
    assert ledger.records[("beta", PERIOD)].status is CloseStatus.FINALIZED
