"""The expiry of prepaid credits in the small: packs on a plan, a top-up's expiry, the allocation of what was
drawn across the lots (soonest-expiring first), and the sweep's decision, as plain functions.

The properties run the sweep on an in-memory wallet that applies a settlement exactly as the store's
transaction does (its condition included) and check it against a chronological reference: every draw taken,
when it happens, from the unexpired lot that expires soonest. The allocation Tollgate uses is never worse for
the customer than that.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.dal import tablekeys as tk
from tollgate.domain.models import CreditPack
from tollgate.domain.prepaid import (
    METADATA_EXPIRES_IN_DAYS,
    Balance,
    LotsOutOfStepError,
    TopUp,
    allocation_order,
    expiring,
    next_due,
    purchase_top_up,
    unattributed_draws,
    unused_credits,
)
from tollgate.expiry.settings import ExpirySettings
from tollgate.settings import SettingsError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lot(reference: str, credits: int, expires_in: int | None = None, **fields: Any) -> TopUp:
    """A lot added at T0, expiring ``expires_in`` days later (None: never)."""
    return TopUp(
        customer_id="acme",
        reference=reference,
        credits=credits,
        created_at=fields.pop("created_at", T0),
        expires_at=None if expires_in is None else T0 + timedelta(days=expires_in),
        **fields,
    )


def settled(top_up: TopUp, expired: int, at: datetime | None = None) -> TopUp:
    return top_up.model_copy(update={"expired_credits": expired, "settled_at": at or top_up.expires_at})


def wallet(lots: list[TopUp], drawn: int) -> Balance:
    """The wallet those lots make after ``drawn`` credits were drawn."""
    bought = sum(t.credits for t in lots)
    expired = sum(t.expired_credits or 0 for t in lots)
    return Balance(customer_id="acme", credits=bought - drawn - expired, bought=bought, expired=expired)


# -- the plan's packs ----------------------------------------------------------------------------------------
def prepaid(**overrides: Any) -> Any:
    return make_plan(id="credits", billing="prepaid", price_per_credit=Decimal("0.002"), **overrides)


def test_a_prepaid_plan_sells_packs_that_may_expire() -> None:
    plan = prepaid(
        credit_packs=[
            {"id": "starter", "credits": 50_000, "expires_after_days": 365},
            {"id": "forever", "credits": 10_000},
        ]
    )

    assert plan.credit_packs == (
        CreditPack(id="starter", credits=50_000, expires_after_days=365),
        CreditPack(id="forever", credits=10_000),
    )


@pytest.mark.parametrize(
    ("plan", "problem"),
    [
        (
            lambda: make_plan(credit_packs=[{"id": "p", "credits": 10}]),
            "credit_packs: only a prepaid plan",
        ),
        (
            lambda: prepaid(credit_packs=[{"id": "p", "credits": 1000}, {"id": "p", "credits": 2000}]),
            "each pack id once; p repeated",
        ),
        (lambda: prepaid(credit_packs=[{"id": "p", "credits": 0}]), "credits"),
        (
            lambda: prepaid(credit_packs=[{"id": "p", "credits": 10, "expires_after_days": 0}]),
            "expires_after",
        ),
        (lambda: prepaid(credit_packs=[{"id": "Bad Id", "credits": 10}]), "id"),
        (lambda: prepaid(credit_packs=[{"id": "p", "credits": 2}]), "0.00 USD, not an amount Stripe charges"),
        (lambda: prepaid(credit_packs=[{"id": "p", "credits": 10, "price": 1}]), "price"),
    ],
    ids=["arrears", "same id", "no credits", "zero days", "bad id", "too cheap", "unknown field"],
)
def test_packs_are_refused_where_they_cannot_be_sold(plan: Any, problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        plan()


# -- a top-up's expiry ---------------------------------------------------------------------------------------
def paid_session(**metadata: str) -> dict[str, Any]:
    return {
        "id": "cs_test_1",
        "amount_total": 10_000,
        "currency": "usd",
        "metadata": {
            "tollgate_purchase": "prepaid_credits",
            "tollgate_customer_id": "acme",
            "tollgate_credits": "50000",
            **metadata,
        },
    }


def test_a_packs_credits_expire_counted_from_when_stripe_said_it_was_paid() -> None:
    paid_at = datetime(2026, 11, 15, 12, 30, tzinfo=UTC)
    session = paid_session(tollgate_pack="starter", tollgate_expires_in_days="30")

    top_up = purchase_top_up(session, paid_at)

    assert top_up is not None
    assert (top_up.pack, top_up.created_at) == ("starter", paid_at)
    assert top_up.expires_at == datetime(2026, 12, 15, 12, 30, tzinfo=UTC)
    assert purchase_top_up(session, paid_at) == top_up  # the same event again: the same top-up
    plain = purchase_top_up(paid_session(), paid_at)
    assert plain is not None
    assert (plain.expires_at, plain.pack) == (None, None)


@pytest.mark.parametrize("days", ["0", "-3", "thirty", "1.5", "99999"])
def test_a_session_whose_expiry_is_not_a_number_of_days_is_refused(days: str) -> None:
    with pytest.raises(ValueError, match=METADATA_EXPIRES_IN_DAYS):
        purchase_top_up(paid_session(tollgate_expires_in_days=days), T0)


def test_a_lot_is_settled_once_with_both_fields_and_never_more_than_its_credits() -> None:
    fresh = lot("a", 100, 30)
    assert (fresh.settled, fresh.due(T0 + timedelta(days=29)), fresh.due(T0 + timedelta(days=30))) == (
        False,
        False,
        True,
    )
    assert (settled(fresh, 40).settled, settled(fresh, 40).due(T0 + timedelta(days=31))) == (True, False)
    for broken, problem in (
        ({"expired_credits": 5}, "settled with both"),
        ({"expired_credits": 101, "settled_at": T0}, "more than the lot's credits"),
        ({"expires_at": T0}, "expire after they are added"),
    ):
        with pytest.raises(ValidationError, match=problem):
            TopUp.model_validate({**fresh.model_dump(), **broken})
    with pytest.raises(ValidationError, match="only credits with an expiry"):
        lot("b", 10, None, expired_credits=0, settled_at=T0)


# -- the index of expiring lots, the function's settings -----------------------------------------------------
def test_a_lot_is_due_in_the_index_from_its_expiry_to_the_microsecond() -> None:
    expiry = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    key = tk.expiring_lot_sort_key(expiry, "acme", "cs_1")
    elsewhere = timezone(timedelta(hours=2))

    assert key == "2026-12-01T09:30:00.000000Z#acme#cs_1"
    assert tk.due_lots_bound(expiry - timedelta(microseconds=1)) < key < tk.due_lots_bound(expiry)
    assert key < tk.due_lots_bound(datetime(2026, 12, 1, 11, 30, tzinfo=elsewhere))  # the same moment
    assert tk.expiring_lot_sort_key(expiry + timedelta(microseconds=1), "a", "r") > tk.due_lots_bound(expiry)


def test_the_expiry_function_reads_the_table_name() -> None:
    assert ExpirySettings.from_env({"TABLE_NAME": "tollgate"}) == ExpirySettings("tollgate")
    with pytest.raises(SettingsError, match="TABLE_NAME"):
        ExpirySettings.from_env({})


# -- the allocation ------------------------------------------------------------------------------------------
def test_draws_come_out_of_the_soonest_expiring_lot_first_and_never_expiring_ones_last() -> None:
    forever = lot("forever", 100, None, created_at=T0 - timedelta(days=9))
    later = lot("later", 100, 90)
    sooner = lot("sooner", 100, 30, created_at=T0 + timedelta(days=1))  # bought last, expires first
    tie = lot("a-tie", 100, 90)
    lots = [forever, later, sooner, tie]

    assert [t.reference for t in allocation_order(lots)] == ["sooner", "a-tie", "later", "forever"]
    assert unused_credits(wallet(lots, 0), lots) == {
        "sooner": 100,
        "a-tie": 100,
        "later": 100,
        "forever": 100,
    }
    assert unused_credits(wallet(lots, 150), lots) == {"sooner": 0, "a-tie": 50, "later": 100, "forever": 100}
    assert unused_credits(wallet(lots, 400), lots) == {"sooner": 0, "a-tie": 0, "later": 0, "forever": 0}


def test_a_settled_lot_keeps_what_it_covered_and_the_rest_is_shared_by_the_others() -> None:
    first = settled(lot("first", 100, 30), 40)  # 60 of it were drawn when it expired, 40 expired
    second = lot("second", 100, 60)
    forever = lot("forever", 50)
    lots = [first, second, forever]

    balance = wallet(lots, 60 + 70)  # 70 drawn since

    assert (balance.credits, balance.expired, balance.drawn) == (80, 40, 130)
    assert unattributed_draws(balance, lots) == 70
    assert unused_credits(balance, lots) == {"second": 30, "forever": 50}
    assert sum(unused_credits(balance, lots).values()) == balance.credits


@pytest.mark.parametrize(
    ("balance", "a_expired"),
    [
        (Balance(customer_id="acme", credits=100, bought=300), None),  # a top-up not read yet
        (Balance(customer_id="acme", credits=100, bought=200, expired=10), None),  # a settlement not read yet
        (Balance(customer_id="acme", credits=-1, bought=200), None),
        (Balance(customer_id="acme", credits=190, bought=200, expired=10), 10),  # "a" covered 90, none drawn
    ],
    ids=["bought", "expired", "negative", "covered more than drawn"],
)
def test_a_wallet_and_lots_read_at_different_moments_are_read_again(
    balance: Balance, a_expired: int | None
) -> None:
    lots = [lot("a", 100, 30), lot("b", 100)]
    if a_expired is not None:
        lots[0] = settled(lots[0], a_expired)

    with pytest.raises(LotsOutOfStepError, match="disagree"):
        unused_credits(balance, lots)


def test_the_sweep_settles_the_soonest_expiring_due_lot_first_even_a_used_up_one() -> None:
    lots = [lot("b", 100, 20), lot("a", 100, 10), lot("c", 100, 40)]
    balance = wallet(lots, 130)

    assert next_due(balance, lots, T0 + timedelta(days=5)) is None
    (first, unused) = next_due(balance, lots, T0 + timedelta(days=25)) or (None, None)
    assert (first and first.reference, unused) == ("a", 0)  # used up: settled with 0 expiring
    lots = [settled(first, 0) if first and t.reference == first.reference else t for t in lots]
    (second, unused) = next_due(balance, lots, T0 + timedelta(days=25)) or (None, None)
    assert (second and second.reference, unused) == ("b", 70)


def test_what_expires_soon_is_what_is_left_of_each_expiry() -> None:
    lots = [lot("a", 100, 10), lot("b", 100, 20), lot("b2", 50, 20), lot("c", 100, 40), lot("d", 100)]
    balance = wallet(lots, 130)

    assert expiring(balance, lots) == [
        (T0 + timedelta(days=20), 120),  # b: 70 left (a took 100, b 30), b2: 50
        (T0 + timedelta(days=40), 100),
    ]
    assert expiring(balance, lots, until=T0 + timedelta(days=30)) == [(T0 + timedelta(days=20), 120)]
    used_up = [settled(lots[0], 0), *lots[1:]]  # a settled lot is gone from the list
    assert expiring(wallet(used_up, 130), used_up)[0] == (T0 + timedelta(days=20), 120)
    assert expiring(wallet(lots, 400), lots) == []  # nothing left of the expiring lots: nothing listed
    assert expiring(Balance(customer_id="acme"), []) == []  # no wallet, no lots


# -- properties: an in-memory wallet and the sweep -----------------------------------------------------------
@dataclass
class Wallet:
    """What the table holds for one customer: the wallet's three numbers and its lots (``TopUp`` records)."""

    balance: int = 0
    bought: int = 0
    expired: int = 0
    lots: dict[str, TopUp] = field(default_factory=dict)
    drawn: int = 0  # the test's own count of what was drawn

    def read(self) -> tuple[Balance, list[TopUp]]:
        return (
            Balance(customer_id="acme", credits=self.balance, bought=self.bought, expired=self.expired),
            list(self.lots.values()),
        )

    def top_up(self, reference: str, credits: int, at: datetime, expires_at: datetime | None) -> None:
        self.lots[reference] = TopUp(
            customer_id="acme", reference=reference, credits=credits, created_at=at, expires_at=expires_at
        )
        self.balance += credits
        self.bought += credits

    def draw(self, credits: int) -> bool:
        """The authorizer's conditional ``ADD balance -credits``."""
        if self.balance < credits:
            return False
        self.balance -= credits
        self.drawn += credits
        return True

    def settle(self, reference: str, expired: int, seen: Balance, at: datetime) -> str:
        """``TollgateStore.settle_lot``'s transaction: both conditions, then both updates, or nothing."""
        record = self.lots[reference]
        if record.settled:
            return "already"
        if self.bought != seen.bought or self.expired != seen.expired or self.balance < expired:
            return "moved"
        self.balance -= expired
        self.expired += expired
        self.lots[reference] = record.model_copy(update={"expired_credits": expired, "settled_at": at})
        return "settled"

    def sweep(self, now: datetime, racing: list[int] | None = None) -> int:
        """``settle_due_lots``: the credits expired. ``racing`` draws land between each read and its write."""
        expired = 0
        for _ in range(1000):
            balance, lots = self.read()
            step = next_due(balance, lots, now)
            if step is None:
                return expired
            due, unused = step
            for credits in racing or []:
                self.draw(credits)
            if self.settle(due.reference, unused, balance, now) == "settled":
                expired += unused
        raise AssertionError("the sweep did not finish")

    def state(self) -> tuple[int, int, int, dict[str, TopUp]]:
        return self.balance, self.bought, self.expired, dict(self.lots)


@dataclass
class Chronological:
    """The reference: each draw, when it happens, from the unexpired lot expiring soonest; a lot's remainder
    expires at its expiry, exactly."""

    lots: list[list[Any]] = field(default_factory=list)  # [expires_at or None, credits left]

    def add(self, credits: int, expires_at: datetime | None) -> None:
        self.lots.append([expires_at, credits])

    def live(self, at: datetime) -> list[list[Any]]:
        alive = [entry for entry in self.lots if entry[0] is None or entry[0] > at]
        return sorted(alive, key=lambda entry: (entry[0] is None, entry[0] or at))

    def balance(self, at: datetime) -> int:
        return sum(entry[1] for entry in self.live(at))

    def draw(self, credits: int, at: datetime) -> None:
        for entry in self.live(at):
            taken = min(entry[1], credits)
            entry[1] -= taken
            credits -= taken
        assert credits == 0

    def expired(self, at: datetime) -> int:
        return sum(entry[1] for entry in self.lots if entry[0] is not None and entry[0] <= at)


events = st.lists(
    st.one_of(
        st.tuples(
            st.just("top_up"),
            st.integers(min_value=1, max_value=500),
            st.one_of(st.none(), st.integers(min_value=1, max_value=12)),  # valid for hours
        ),
        st.tuples(st.just("draw"), st.integers(min_value=1, max_value=120)),
        st.tuples(st.just("sweep")),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=6)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events)
def test_expiry_is_exact_never_negative_idempotent_and_favours_the_customer(
    steps: list[tuple[Any, ...]],
) -> None:
    ours, reference = Wallet(), Chronological()
    now = T0
    for number, step in enumerate(steps):
        now += timedelta(minutes=1)  # every event at a moment of its own
        if step[0] == "top_up":
            expires = None if step[2] is None else now + timedelta(hours=step[2])
            ours.top_up(f"lot{number}", step[1], now, expires)
            reference.add(step[1], expires)
        elif step[0] == "draw":
            if reference.balance(now) >= step[1]:  # the reference can: so can we (we expire no more)
                assert ours.draw(step[1])
                reference.draw(step[1], now)
        elif step[0] == "sweep":
            expired_now = ours.sweep(now)
            before = ours.state()
            assert ours.sweep(now) == 0  # a second sweep changes nothing
            assert ours.state() == before
            assert expired_now >= 0
            assert ours.expired <= reference.expired(now)  # never more than the reference expires
        else:
            now += timedelta(hours=step[1])
        assert ours.balance >= 0
        assert ours.expired + ours.drawn + ours.balance == ours.bought
        assert ours.read()[0].drawn == ours.drawn
        for record in ours.lots.values():
            assert 0 <= (record.expired_credits or 0) <= record.credits
    ours.sweep(now + timedelta(days=1))  # every lot is due: what is left of them goes, and no more
    balance, lots = ours.read()
    assert all(t.settled for t in lots if t.expires_at is not None)
    assert balance.credits == sum(t.credits for t in lots if t.expires_at is None) - (
        ours.drawn - sum(t.credits - (t.expired_credits or 0) for t in lots if t.settled)
    )
    assert ours.expired <= reference.expired(now + timedelta(days=1))


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 300), st.one_of(st.none(), st.integers(1, 5))), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=900),
    st.lists(st.integers(min_value=1, max_value=40), max_size=4),
)
def test_draws_racing_the_sweep_come_out_of_later_lots_and_never_overdraw(
    lots: list[tuple[int, int | None]], drawn: int, racing: list[int]
) -> None:
    """Draws that land between the sweep's read and its write: the settlement still applies (draws are not in
    its condition), they are allocated to later lots, and the balance never goes below zero."""
    ours = Wallet()
    for number, (credits, hours) in enumerate(lots):
        ours.top_up(f"lot{number}", credits, T0, None if hours is None else T0 + timedelta(hours=hours))
    ours.draw(min(drawn, ours.balance))
    calm = Wallet(ours.balance, ours.bought, ours.expired, dict(ours.lots), ours.drawn)

    ours.sweep(T0 + timedelta(hours=6), racing=racing)
    calm.sweep(T0 + timedelta(hours=6))

    assert ours.balance >= 0
    assert ours.expired + ours.drawn + ours.balance == ours.bought
    assert ours.expired <= calm.expired  # racing draws can only leave less to expire, never more
    balance, records = ours.read()
    unattributed_draws(balance, records)  # the wallet and its lots still agree


def sweeper(ours: Wallet, now: datetime) -> Any:
    """``settle_due_lots`` as a generator: it yields between its read and its write, so a test can put
    another sweeper's steps, or draws, in between."""
    while True:
        balance, lots = ours.read()
        step = next_due(balance, lots, now)
        if step is None:
            return
        yield
        ours.settle(step[0].reference, step[1], balance, now)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(1, 300), st.one_of(st.none(), st.integers(1, 5))), min_size=1, max_size=8),
    st.integers(min_value=0, max_value=900),
    st.lists(st.tuples(st.integers(0, 2), st.integers(0, 40)), max_size=60),
)
def test_two_sweeps_at_once_settle_each_lot_once_and_expire_no_more_than_one(
    lots: list[tuple[int, int | None]], drawn: int, schedule: list[tuple[int, int]]
) -> None:
    """Two sweepers interleaved step by step, with draws in between: each lot is settled once, the balance
    never goes below zero, and what expires is between what one sweeper alone expires with every draw before
    it and with every draw after it."""
    ours = Wallet()
    for number, (credits, hours) in enumerate(lots):
        ours.top_up(f"lot{number}", credits, T0, None if hours is None else T0 + timedelta(hours=hours))
    ours.draw(min(drawn, ours.balance))
    alone = Wallet(ours.balance, ours.bought, ours.expired, dict(ours.lots), ours.drawn)
    now = T0 + timedelta(hours=4)
    running = {0: sweeper(ours, now), 1: sweeper(ours, now)}
    draws = []
    for who, credits in [*schedule, *[(0, 0)] * 100, *[(1, 0)] * 100]:
        if who == 2:
            if ours.draw(credits):
                draws.append(credits)
        elif who in running and next(running[who], "done") == "done":
            del running[who]
        assert ours.balance >= 0
    assert not running

    eager = Wallet(alone.balance, alone.bought, alone.expired, dict(alone.lots), alone.drawn)
    for credits in draws:
        assert eager.draw(credits)
    eager.sweep(now)  # every draw before the sweep: they all come out of the soonest-expiring lots
    alone.sweep(now)  # every draw after it: they come out of what is left
    assert eager.expired <= ours.expired <= alone.expired
    assert ours.expired + ours.drawn + ours.balance == ours.bought
    balance, records = ours.read()
    assert next_due(balance, records, now) is None  # every due lot settled
