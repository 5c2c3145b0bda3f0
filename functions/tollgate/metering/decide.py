"""The hot path's decision: key -> grant -> route cost -> one atomic counter write -> allow or deny.

Plain logic over two small interfaces (``KeyDirectory``, ``UsageCounter``) so tests can hand in fakes and the
handler stays thin. Order matters: everything that can be refused without I/O is refused first (a malformed
event, then a missing or malformed key), and nothing is counted unless the request is allowed.

The two errors the interfaces raise (``MeteringUnavailableError``, ``CreditLimitReachedError``) live in
:mod:`tollgate.errors` with every other error; that module is standard library only, like this one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Protocol

from tollgate.dal.counter_item import route_code
from tollgate.domain.keyformat import hash_key, is_well_formed
from tollgate.domain.periods import period_and_day_of_epoch_ms
from tollgate.errors import CreditLimitReachedError, InsufficientCreditsError, MeteringUnavailableError
from tollgate.metering.decisions import Decision, Reason
from tollgate.metering.events import AccessRequest
from tollgate.metering.grants import Grant


class KeyDirectory(Protocol):
    def find(self, key_hash: str) -> Grant | None: ...


class UsageCounter(Protocol):
    def add(
        self,
        customer_id: str,
        period: str,
        shard: int,
        route: str,
        credits: int,
        limit: int | None,
        segment: int,
        *,
        day: int,
    ) -> int | None:
        """Add one request of ``credits`` (to the totals, the route's tally, the plan segment's credits and
        the tally of ``day``, the request's day of the month); return the shard's credits after the write when
        DynamoDB says."""
        ...

    def draw(
        self,
        customer_id: str,
        period: str,
        route: str,
        credits: int,
        segment: int,
        limit: int | None,
        *,
        day: int,
    ) -> int | None:
        """Count one request of ``credits`` as ``add`` does, on the customer's wallet, and draw them from its
        prepaid balance in the same write, refused (``InsufficientCreditsError``) unless the balance covers
        them (and ``CreditLimitReachedError`` if the period's credits would pass ``limit``); return the
        balance after the write when DynamoDB says."""
        ...


def authorize(
    request: AccessRequest,
    keys: KeyDirectory,
    counter: UsageCounter,
    *,
    fail_open: bool = False,
    pick_shard: Callable[[int], int] = random.randrange,
) -> Decision:
    """Allow or deny one request; an allowed request has been counted (unless ``fail_open`` let it through
    while the counter could not be written: then ``metered`` is false)."""
    if request.problem is not None:
        return Decision.deny(Reason.MALFORMED_REQUEST)
    if not request.candidates:
        return Decision.deny(Reason.MISSING_KEY)
    if len(request.candidates) > 1 or not is_well_formed(request.candidates[0]):
        return Decision.deny(Reason.MALFORMED_KEY)

    grant = keys.find(hash_key(request.candidates[0]))  # MeteringUnavailableError propagates: deny
    if grant is None:
        return Decision.deny(Reason.INVALID_KEY)
    if not grant.key_usable(request.epoch_ms):
        return Decision.deny(Reason.REVOKED_KEY, grant.customer_id)
    if grant.customer_status != "active":
        if grant.pay_url:
            return Decision.deny(Reason.PAYMENT_REQUIRED, grant.customer_id, grant.pay_url)
        return Decision.deny(Reason.SUSPENDED, grant.customer_id)

    grant = grant.in_force(request.epoch_ms)  # the plan in force when API Gateway received the request
    cost = grant.cost_of(request.route)
    if cost is None:
        return Decision.deny(Reason.UNKNOWN_ROUTE, grant.customer_id)
    limit = grant.limit if grant.shards == 1 else None  # a sharded counter has no exact total to limit
    over = Reason.BUDGET_REACHED if grant.limit_reason == "budget" else Reason.CREDIT_LIMIT
    if limit is not None and cost > limit:
        return Decision.deny(over, grant.customer_id)

    period, day = period_and_day_of_epoch_ms(request.epoch_ms)  # the request's own time, not the clock's
    shard = pick_shard(grant.shards) if grant.shards > 1 else 0
    context: dict[str, str | int | bool] = {
        "customerId": grant.customer_id,
        "planId": grant.plan_id,
        "planVersion": grant.plan_version,
        "keyId": grant.key_id,
        "period": period,
        "credits": cost,
        "metered": True,
        # where the credits were counted, for a refund to take them back from the same tallies
        # (tollgate.refunds): the plan segment, the route's tally code and, on a counter, its shard
        "segment": grant.segment,
        "routeCode": route_code(request.route),
    }
    if not grant.prepaid:
        context["shard"] = shard
    used = left = None
    try:
        if grant.prepaid:
            left = counter.draw(grant.customer_id, period, request.route, cost, grant.segment, limit, day=day)
        else:
            used = counter.add(
                grant.customer_id, period, shard, request.route, cost, limit, grant.segment, day=day
            )
    except CreditLimitReachedError:
        return Decision.deny(over, grant.customer_id)
    except InsufficientCreditsError:
        return Decision.deny(Reason.INSUFFICIENT_CREDITS, grant.customer_id, grant.top_up_url)
    except MeteringUnavailableError as error:
        unknown = error.applied is None  # sent, answer lost: it may have been counted (never retried)
        if not fail_open:
            refused = Decision.deny(Reason.UNAVAILABLE, grant.customer_id)
            # the ledger keeps what this request would have cost: its write may have landed (reconciliation)
            known = {**context, **refused.context, "metered": False}
            return replace(refused, context=known, outcome_unknown=unknown)
        return Decision(
            allowed=True,
            principal=grant.customer_id,
            context={**context, "metered": False},
            outcome_unknown=unknown,
        )
    if left is not None:
        context["creditsLeft"] = left  # the prepaid balance after this request
    if grant.shards == 1 and used is not None:
        context["creditsUsed"] = used  # exact only for an unsharded counter
    return Decision(allowed=True, principal=grant.customer_id, context=context)
