"""How far the close of one period has got, customer by customer: what the close watchdog and
``tollgate close status`` report. Pure: plain models in, counts out (no I/O).

Every customer who existed before the period ended is expected to end with a *terminal* record of the period,
``finalized`` or ``no_charge``. A customer without one is *unfinished*: no record yet (``missing``), or a
record stuck at ``rated`` or ``invoice_created`` (its ``attempts`` and ``last_error`` say why). A finalized
record whose Stripe total differs from the statement's is *mismatched*. Unfinished and mismatched customers
are the problems; after the close window there should be none.

A customer created after the period ended cannot have used it: without a record it is left out (counted in
``joined_after``); the starter may still have closed it, and then its record counts like any other.

A record may also carry late usage in another currency than its invoice's, which no invoice in its currency
has billed yet (``PeriodClose.waiting``): such customers are listed as *waiting*. It is not a problem of the
close (running it again changes nothing), but money not billed yet: it is shown until a close in that currency
bills it (``tollgate.domain.carry_over``).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from tollgate.domain.closes import DONE, CloseStatus, PeriodClose
from tollgate.domain.models import Customer
from tollgate.domain.periods import period_end


class CloseState(StrEnum):
    """A customer's state in the close of a period: its record's status, or ``missing``."""

    MISSING = "missing"
    RATED = CloseStatus.RATED.value
    INVOICE_CREATED = CloseStatus.INVOICE_CREATED.value
    FINALIZED = CloseStatus.FINALIZED.value
    NO_CHARGE = CloseStatus.NO_CHARGE.value


TERMINAL_STATES = frozenset(CloseState(status.value) for status in DONE)


class CustomerCloseState(BaseModel):
    """One customer whose close needs attention."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    state: CloseState
    attempts: int = 0
    last_error: str | None = None
    stripe_invoice_id: str | None = None
    total: int | None = None  # the statement total, minor units of ``currency``
    currency: str | None = None
    waiting: dict[str, int] = {}  # currency -> minor units carried, waiting for an invoice in that currency

    @classmethod
    def of(cls, customer_id: str, record: PeriodClose | None) -> CustomerCloseState:
        if record is None:
            return cls(customer_id=customer_id, state=CloseState.MISSING)
        return cls(
            customer_id=customer_id,
            state=CloseState(record.status.value),
            attempts=record.attempts,
            last_error=record.last_error,
            stripe_invoice_id=record.stripe_invoice_id,
            total=record.total,
            currency=record.statement.currency,
            waiting={carry.currency: carry.billable for carry in record.waiting},
        )


class CloseProgress(BaseModel):
    """The close of ``period``: customers by state, and which of them are problems."""

    model_config = ConfigDict(frozen=True)

    period: str
    counts: dict[CloseState, int]  # every state, 0 included
    unfinished: tuple[CustomerCloseState, ...] = ()  # no terminal record, by customer id
    mismatched: tuple[CustomerCloseState, ...] = ()  # finalized, Stripe's total differs, by customer id
    waiting: tuple[CustomerCloseState, ...] = ()  # carrying usage in another currency, by customer id
    joined_after: int = 0  # customers created after the period ended, without a record: not expected

    @property
    def customers(self) -> int:
        """Customers expected to have a terminal record of the period."""
        return sum(self.counts.values())

    @property
    def terminal(self) -> int:
        return sum(count for state, count in self.counts.items() if state in TERMINAL_STATES)

    @property
    def problems(self) -> int:
        """Unfinished plus mismatched customers: 0 when the close is done and right."""
        return len(self.unfinished) + len(self.mismatched)

    @property
    def complete(self) -> bool:
        return self.problems == 0


def close_progress(period: str, customers: Iterable[tuple[Customer, PeriodClose | None]]) -> CloseProgress:
    """Count ``customers`` (each with its record of ``period``, or None) by close state."""
    end = period_end(period)
    counts = dict.fromkeys(CloseState, 0)
    unfinished: list[CustomerCloseState] = []
    mismatched: list[CustomerCloseState] = []
    waiting: list[CustomerCloseState] = []
    joined_after = 0
    for customer, record in customers:
        if record is not None and (record.customer_id != customer.id or record.period != period):
            raise ValueError(
                f"the record of {record.customer_id} {record.period} is not {customer.id}'s for {period}"
            )
        if record is None and customer.created_at >= end:
            joined_after += 1
            continue
        state = CustomerCloseState.of(customer.id, record)
        counts[state.state] += 1
        if state.state not in TERMINAL_STATES:
            unfinished.append(state)
        elif record is not None and record.total_mismatch:
            mismatched.append(state)
        if state.waiting:
            waiting.append(state)
    return CloseProgress(
        period=period,
        counts=counts,
        unfinished=tuple(sorted(unfinished, key=lambda s: s.customer_id)),
        mismatched=tuple(sorted(mismatched, key=lambda s: s.customer_id)),
        waiting=tuple(sorted(waiting, key=lambda s: s.customer_id)),
        joined_after=joined_after,
    )
