"""``benchmarks/close_throughput.py``: the simulated close of the deployed settings, on 5,000 invoices.

What matters is asserted, not the figures: the deployed close runs within the target of Stripe's floor with no
message in the DLQ, live and in a sandbox, even with Stripe's limiter read strictly; the former concurrency of
5 would be several times slower; the simulation is deterministic and prints its ratio.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import replace
from types import ModuleType
from typing import Any

import pytest

from tollgate.billing.close import pacing
from tollgate.billing.close.settings import StripeRateLimits
from tollgate.cdk import constants

BENCHMARKS = os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks")
INVOICES = 5_000  # ramp-up and tail weigh more than in 100,000: a stricter test of the target


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """The benchmark module, imported without keeping what it does to the environment (go_offline)."""
    saved_env, saved_path = dict(os.environ), list(sys.path)
    sys.path.insert(0, os.path.abspath(BENCHMARKS))
    try:
        yield importlib.import_module("close_throughput")
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        sys.path[:] = saved_path


@pytest.fixture(scope="module")
def live(bench: ModuleType) -> Any:
    return bench.simulate(bench.Deployment.deployed(StripeRateLimits.live()), bench.Assumptions(), INVOICES)


def test_the_simulation_reads_what_is_deployed(bench: ModuleType) -> None:
    deployed = bench.Deployment.deployed(StripeRateLimits.live())
    assert deployed.concurrency == constants.CLOSE_WORKER_MAX_CONCURRENCY
    assert deployed.batch_size == constants.CLOSE_WORKER_BATCH_SIZE
    assert deployed.timeout == constants.CLOSE_WORKER_TIMEOUT_SECONDS
    assert deployed.visibility == constants.CLOSE_QUEUE_VISIBILITY_TIMEOUT_SECONDS
    assert deployed.max_receive_count == constants.CLOSE_QUEUE_MAX_RECEIVE_COUNT
    assert deployed.utilization == pacing.TARGET_UTILIZATION
    assert deployed.max_network_retries == constants.STRIPE_MAX_NETWORK_RETRIES


def test_the_deployed_close_runs_near_stripes_floor_with_nothing_dead_lettered(
    bench: ModuleType, live: Any
) -> None:
    assert live.counts.finished == INVOICES
    assert live.counts.dead_lettered == 0
    assert live.counts.closes_rate_limited == live.counts.closes_failed == live.counts.timeouts == 0
    assert live.counts.rejected == 0  # the pacers kept the fleet under Stripe's limiter
    assert 1 < live.ratio <= bench.TARGET_RATIO
    # on average never above the per-endpoint limit (each invoice is one request to each endpoint)
    assert live.rate <= StripeRateLimits.live().per_endpoint


def test_the_former_concurrency_of_5_is_several_times_slower(bench: ModuleType, live: Any) -> None:
    deployed = bench.Deployment.deployed(StripeRateLimits.live())
    five = bench.simulate(replace(deployed, concurrency=5), bench.Assumptions(), INVOICES)
    assert five.counts.dead_lettered == 0
    assert five.ratio > 3 * live.ratio


def test_a_strict_stripe_limiter_costs_429s_that_the_backoff_absorbs(bench: ModuleType) -> None:
    deployed = bench.Deployment.deployed(StripeRateLimits.live())
    strict = bench.simulate(deployed, bench.Assumptions(stripe_window=True), INVOICES)
    assert strict.counts.rejected > 0
    assert strict.counts.backoff_retries >= strict.counts.rejected  # stripe-python retried none of them
    assert strict.counts.library_retries == 0
    assert strict.counts.closes_rate_limited == strict.counts.dead_lettered == 0
    assert strict.ratio <= bench.TARGET_RATIO


def test_a_sandbox_close_runs_near_its_own_floor(bench: ModuleType) -> None:
    sandbox = StripeRateLimits.sandbox()
    result = bench.simulate(bench.Deployment.deployed(sandbox), bench.Assumptions(), INVOICES)
    assert result.deployment.concurrency == constants.close_worker_concurrency(sandbox)
    assert result.counts.dead_lettered == 0
    assert result.ratio <= bench.TARGET_RATIO
    assert result.rate <= sandbox.per_account / pacing.STRIPE_WRITES_PER_INVOICE


def test_the_simulation_is_deterministic_and_prints_its_ratio(
    bench: ModuleType, live: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    bench.main(["--invoices", str(INVOICES)])
    printed = capsys.readouterr().out
    match = re.search(r"^ratio to floor: (\d+\.\d+)$", printed, re.MULTILINE)
    assert match is not None, printed
    assert float(match.group(1)) == pytest.approx(live.ratio, abs=0.001)
    assert "messages in the DLQ: 0" in printed
