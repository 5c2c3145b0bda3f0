"""The expiry of prepaid credits: the sweep, and what is about to expire.

A top-up with an expiry is a **lot** (``tollgate.domain.prepaid``). The wallet's drawn credits (``bought -
balance - expired``) are allocated across the lots soonest-expiring first; once a lot's expiry has passed, the
sweep **settles** it: its unused credits under that allocation leave the balance, once.

Settling one lot (:func:`settle_due_lots`, one lot at a time, in allocation order):

1. read the wallet and the customer's top-ups, both strongly consistent (they must agree: every credit bought
   a top-up's, every credit expired a settled lot's; if a top-up or a settlement landed between the two reads,
   read again);
2. compute the lot's unused credits ``x`` (:func:`tollgate.domain.prepaid.next_due`);
3. ONE ``TransactWriteItems`` (``TollgateStore.settle_lot``): the wallet ``ADD balance -x, expired x`` on the
   condition that ``bought`` and ``expired`` are as read and ``balance >= x``, and the lot's record marked
   settled (``expired_credits = x``) on the condition that it is not settled yet.

So ``x`` is applied to exactly the lots and settlements it was computed from: a top-up or another settlement
in between fails the condition and the lot is computed again (:data:`ATTEMPTS` times, then it is left to the
next sweep). Draws in between are not in the condition: they come out of later lots (they happened after the
lot expired), and ``balance >= x`` keeps the balance from going below zero. A second sweep, or two at once,
find the lot settled and change nothing. ``x = 0`` settles the lot too (what it covered is then fixed).

The sweep finds the customers with a lot due in the index of expiring lots (``gsi1``, ``EXPIRING``): no scan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from tollgate.dal.store import Settlement, TollgateStore
from tollgate.domain.prepaid import (
    Balance,
    LotsOutOfStepError,
    TopUp,
    expiring,
    next_due,
    unattributed_draws,
)

ATTEMPTS = 5  # reads and writes of one lot before it is left to the next sweep
READ_ATTEMPTS = 3  # reads of the wallet and its lots that agree, for a reader


@dataclass(frozen=True)
class SettledLot:
    customer_id: str
    reference: str
    expires_at: datetime
    expired: int  # the lot's unused credits that left the balance (0: it was used up)


@dataclass
class SweepResult:
    now: datetime
    settled: list[SettledLot] = field(default_factory=list)
    left: list[str] = field(default_factory=list)  # customers with a due lot left for the next sweep
    failed: dict[str, str] = field(default_factory=dict)  # customer -> the error that stopped their lots
    out_of_time: bool = False  # stopped before every customer with a due lot was seen

    @property
    def credits_expired(self) -> int:
        return sum(lot.expired for lot in self.settled)


def read_lots(
    store: TollgateStore, customer_id: str, attempts: int = READ_ATTEMPTS
) -> tuple[Balance, list[TopUp]]:
    """The customer's wallet and top-ups as of one moment (strongly consistent, read again while a top-up or a
    settlement lands between the two reads). ``LotsOutOfStepError`` when they still disagree."""
    for attempt in range(attempts):
        balance, top_ups = store.read_balance(customer_id), store.list_top_ups(customer_id)
        try:
            unattributed_draws(balance, top_ups)  # they agree
        except LotsOutOfStepError:
            if attempt == attempts - 1:
                raise
            continue
        return balance, top_ups
    raise AssertionError("unreachable")  # pragma: no cover


def settle_due_lots(
    store: TollgateStore, customer_id: str, *, now: datetime, attempts: int = ATTEMPTS
) -> tuple[list[SettledLot], bool]:
    """Settle every lot of ``customer_id`` due by ``now``, soonest-expiring first, one transaction each: the
    lots settled by this call, and whether one is left for the next sweep (it kept failing its condition,
    ``attempts`` times in a row). Safe to run twice, or at once: a lot is settled once."""
    settled: list[SettledLot] = []
    misses = 0
    while misses < attempts:
        balance, top_ups = store.read_balance(customer_id), store.list_top_ups(customer_id)
        try:
            step = next_due(balance, top_ups, now)
        except LotsOutOfStepError:  # a top-up or a settlement landed between the two reads
            misses += 1
            continue
        if step is None:
            return settled, False
        lot, unused = step
        outcome = store.settle_lot(lot, unused, seen=balance, at=now)
        if outcome is Settlement.SETTLED:
            assert lot.expires_at is not None  # a due lot has an expiry
            settled.append(SettledLot(customer_id, lot.reference, lot.expires_at, unused))
            misses = 0
        else:  # another sweep settled it (read again, go on), or the wallet moved (compute it again)
            misses += 1
    return settled, True


def sweep(
    store: TollgateStore,
    *,
    now: datetime,
    attempts: int = ATTEMPTS,
    time_left: Callable[[], bool] = lambda: True,
) -> SweepResult:
    """Settle every lot due by ``now``, customer by customer (those with a lot due, from the index of expiring
    lots). Stops early, between customers, once ``time_left()`` is false; the next sweep carries on. A
    customer whose lots fail to settle (an error, not a lost race) is recorded in ``failed`` and the sweep
    goes on with the others: one bad item never holds every other customer's expiry back."""
    result = SweepResult(now)
    for customer_id in store.due_lot_customers(now):
        if not time_left():
            result.out_of_time = True
            break
        try:
            settled, left = settle_due_lots(store, customer_id, now=now, attempts=attempts)
        except Exception as error:  # reported (the handler fails the run); the other customers are swept
            result.failed[customer_id] = f"{type(error).__name__}: {error}"
            continue
        result.settled.extend(settled)
        if left:
            result.left.append(customer_id)
    return result


def expiring_soon(
    store: TollgateStore, customer_id: str, now: datetime, *, within: timedelta | None = None
) -> list[tuple[datetime, int]]:
    """The customer's credits that expire if nothing more is drawn: ``(expires_at, credits)`` per expiry,
    soonest first, with ``within`` of ``now`` at most (None: every upcoming one). Credits are drawn
    soonest-expiring first, so these are what is left of each lot after the draws so far. A lot already past
    its expiry that the sweep has not settled yet is listed too, at its (past) expiry: its credits leave the
    balance at the next sweep. Empty for a customer without expiring credits (or without a wallet).

    ``LotsOutOfStepError`` (a ``ConflictError``) only if the wallet and its lots keep changing while read."""
    balance, top_ups = read_lots(store, customer_id)
    return expiring(balance, top_ups, until=None if within is None else now + within)
