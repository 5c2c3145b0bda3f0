"""Moving a customer to another plan, now or at the end of the period.

A change appends a segment to the customer's plan history (``Customer.plan_segments``) with the moment it
takes effect; the authorizer counts every request under the segment in force at the request's own
timestamp (``tollgate.metering.grants``) and the close rates each segment on its own plan, prorating base fees
and included credits by the second (``tollgate.domain.rating.rate_parts``). So usage before the change is
billed on the old plan and usage after it on the new one, exactly, whatever the traffic.

*Immediate* changes take effect :data:`PLAN_CHANGE_DELAY` after the call, not at once: an authorizer keeps a
customer's grant for up to its key cache TTL (30 s by default), and every grant it holds must know the change
before it starts. Pass a longer ``delay`` if the deployment's key cache TTL is longer.

*At period end* changes (the usual downgrade) take effect at the first instant of the next period: nothing
is prorated. A change in another currency can only be made at period end (one invoice, one currency).

A change replaces a change still scheduled; asking again for the change already scheduled (or for the plan
the customer is on) changes nothing, so the call is safe to repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from tollgate.accounts.budgets import with_plan
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Customer, Plan, PlanSegment, sharding_problem
from tollgate.domain.periods import period_end, period_of
from tollgate.errors import InvalidInputError
from tollgate.metering.settings import DEFAULT_KEY_CACHE_TTL_SECONDS

PLAN_CHANGE_DELAY = timedelta(seconds=2 * DEFAULT_KEY_CACHE_TTL_SECONDS)


@dataclass(frozen=True)
class PlanChange:
    customer: Customer
    segment: PlanSegment  # the segment the change made (or the one already scheduled or in force)
    changed: bool  # False: the customer was already on, or already scheduled for, this plan
    cancelled: tuple[PlanSegment, ...] = ()  # scheduled changes this one replaced


def change_plan(
    store: TollgateStore,
    customer_id: str,
    plan_id: str,
    *,
    version: int | None = None,
    at_period_end: bool = False,
    now: datetime,
    delay: timedelta = PLAN_CHANGE_DELAY,
) -> PlanChange:
    """Move ``customer_id`` to ``plan_id`` (its latest version unless ``version``), ``delay`` from ``now`` or
    at the start of the next period. Raises ``NotFoundError`` for an unknown customer or plan, and
    ``InvalidInputError`` for a change the customer's counter or invoice cannot take."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    if delay < timedelta(0):
        raise InvalidInputError(f"a plan change cannot take effect in the past (delay {delay})")
    customer = store.get_customer(customer_id)
    plan = store.get_plan(plan_id, version)
    starts = period_end(period_of(now)) if at_period_end else now + delay
    kept = tuple(segment for segment in customer.segments if segment.since is None or segment.since <= now)
    scheduled = customer.segments[len(kept) :]
    target = (plan.id, plan.version)
    if len(scheduled) == 1 and (scheduled[0].plan_id, scheduled[0].plan_version) == target:
        since = scheduled[0].since
        if since is not None and (since == starts if at_period_end else since <= starts):
            return PlanChange(customer, scheduled[0], changed=False)  # asked again: already scheduled
    if not scheduled and (kept[-1].plan_id, kept[-1].plan_version) == target:
        return PlanChange(customer, kept[-1], changed=False)
    imminent = [s for s in scheduled if s.since is not None and s.since < now + max(delay, PLAN_CHANGE_DELAY)]
    if imminent:  # authorizers may already hold it: cancelling it now could count requests under it
        raise InvalidInputError(
            f"customer {customer_id!r} moves to {imminent[0].plan_id} v{imminent[0].plan_version} at "
            f"{imminent[0].since:%Y-%m-%d %H:%M:%S} UTC, too soon to cancel: change again after that"
        )
    _check(store, customer, kept[-1], plan, at_period_end)
    segment = PlanSegment(
        seq=max(s.seq for s in customer.segments) + 1,
        plan_id=plan.id,
        plan_version=plan.version,
        since=starts,
    )
    changed = customer.model_copy(
        update={"plan_id": plan.id, "plan_version": plan.version, "plan_segments": (*kept, segment)}
    )
    changed = with_plan(changed, plan)  # the customer's budget, in credits on the new plan too
    Customer.model_validate(changed.model_dump())  # the history stays ordered and bounded
    store.update_customer(customer, changed)  # ConflictError if the customer changed meanwhile
    return PlanChange(changed, segment, changed=True, cancelled=scheduled)


def _check(store: TollgateStore, customer: Customer, current: PlanSegment, plan: Plan, at_end: bool) -> None:
    problem = sharding_problem(plan, customer.counter_shards)
    if problem is not None:
        raise InvalidInputError(f"customer {customer.id!r}: {problem}")
    old = store.get_plan(current.plan_id, current.plan_version)
    if old.billing != plan.billing and not at_end:
        raise InvalidInputError(
            f"plan {plan.id!r} is billed {plan.billing} and the customer's current plan {old.billing}: a "
            "period is counted one way or the other, so change at the period's end (--at-period-end)"
        )
    if old.currency != plan.currency and not at_end:
        raise InvalidInputError(
            f"plan {plan.id!r} bills in {plan.currency.upper()} and the customer's current plan in "
            f"{old.currency.upper()}: one invoice has one currency, so change at the period's end "
            "(--at-period-end)"
        )
