"""Stripe's rate limits are a ``Tollgate(...)`` prop: the close worker's concurrency, reservation and pacing
follow from them, and its time budget holds for any of them."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from tests.infra.cfn import function_by_handler, only, props, resources
from tollgate.billing.close import pacing
from tollgate.billing.close.settings import StripeRateLimits, WorkerSettings
from tollgate.cdk import constants
from tollgate.cdk.tollgate import Tollgate


def worker_of(stack: cdk.Stack) -> tuple[dict[str, Any], dict[str, Any]]:
    template: dict[str, Any] = Template.from_stack(stack).to_json()
    worker_id, worker = function_by_handler(template, constants.HANDLER_CLOSE_WORKER)
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    _, mapping = only(
        {lid: m for lid, m in mappings.items() if props(m)["FunctionName"] == {"Ref": worker_id}}
    )
    return props(worker), props(mapping)


@pytest.mark.parametrize(
    "limits",
    [StripeRateLimits.sandbox(), StripeRateLimits(per_endpoint=50, per_account=200)],
    ids=["sandbox", "raised"],
)
def test_the_worker_follows_the_stripe_limits_it_is_given(
    fresh_stack: Callable[[], cdk.Stack], limits: StripeRateLimits
) -> None:
    stack = fresh_stack()
    tollgate = Tollgate(stack, "Tollgate", stripe_rate_limits=limits)
    worker, mapping = worker_of(stack)

    concurrency = constants.close_worker_concurrency(limits)
    assert tollgate.billing.close_worker_concurrency == concurrency
    assert mapping["ScalingConfig"]["MaximumConcurrency"] == concurrency
    assert worker["ReservedConcurrentExecutions"] == concurrency
    # the function reads back exactly the limits and the fleet it was deployed with
    variables = {k: v for k, v in worker["Environment"]["Variables"].items() if isinstance(v, str)}
    settings = WorkerSettings.from_env({**variables, "TABLE_NAME": "t"})
    assert (settings.stripe_limits, settings.fleet_size) == (limits, concurrency)
    assert worker["Timeout"] == constants.CLOSE_WORKER_TIMEOUT_SECONDS


def test_a_sandbox_runs_fewer_workers_than_live_and_raised_limits_more() -> None:
    live = constants.close_worker_concurrency(StripeRateLimits.live())
    assert constants.close_worker_concurrency(StripeRateLimits.sandbox()) < live
    assert constants.close_worker_concurrency(StripeRateLimits(per_endpoint=50, per_account=200)) > live


def test_limits_below_one_request_a_second_are_refused() -> None:
    with pytest.raises(ValueError, match="per_endpoint"):
        StripeRateLimits(per_endpoint=0.5)


def test_the_pacing_wait_in_the_time_budget_covers_any_limits() -> None:
    """The worker's timeout budgets one pacing interval per request: for the fleet sized for any limits of at
    least 1 request/s, no request waits longer than that on its pacer."""
    rates = [1, 1.01, 1.5, 2, 3, 7, 8.4, 10, 24.9, 25, 26, 40, 100, 333, 500, 1_000, 5_000]
    for per_endpoint, per_account in itertools.product(rates, rates):
        limits = StripeRateLimits(per_endpoint=per_endpoint, per_account=per_account)
        pacer = pacing.Pacer(limits, constants.close_worker_concurrency(limits))
        assert pacer.longest_wait <= constants.CLOSE_PACING_WAIT_WORST_CASE_SECONDS, limits
