"""A customer's discount: which Stripe coupon goes on which periods' invoices (docs/decisions.md, 26).

Stripe computes what a coupon takes off an invoice (``percent_off`` or ``amount_off``) and shows it on the
hosted invoice page; Tollgate decides which invoices get it. The pinned API version can no longer put a coupon
on a customer (Stripe removed ``coupon`` from customer create/update in 2025-03-31.basil), and a coupon
redeemed onto a one-off invoice applies to that invoice only, so the coupon's ``duration`` is turned into a
range of periods when the discount is attached, and each close redeems the coupon onto its invoice while its
period is in range:

* ``once``: the first period only;
* ``repeating`` with ``duration_in_months`` N: N periods, the first one included;
* ``forever``: every period from the first, until the discount is removed.

The first period is the one current when the discount is attached (or one named). A period without an invoice
(nothing to bill) still counts: a discount runs by the calendar, as Stripe's own do.

The range is kept on the Stripe customer, as metadata (``tollgate_coupon``, ``tollgate_coupon_from``,
``tollgate_coupon_until``), next to the address and tax ids Stripe Tax reads there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.domain.periods import next_period, parse_period

METADATA_COUPON = "tollgate_coupon"
METADATA_FROM = "tollgate_coupon_from"
METADATA_UNTIL = "tollgate_coupon_until"
DURATIONS = ("once", "repeating", "forever")
MAX_REPEATING_MONTHS = (
    1200  # Stripe's own bound on duration_in_months is lower; this one only guards the loop
)


@dataclass(frozen=True)
class CustomerDiscount:
    """Coupon ``coupon`` goes on the invoices of ``first_period`` to ``last_period`` (None: no end)."""

    coupon: str
    first_period: str
    last_period: str | None

    def applies_to(self, period: str) -> bool:
        return self.first_period <= period and (self.last_period is None or period <= self.last_period)

    def to_metadata(self) -> dict[str, str]:
        """The Stripe customer's metadata for this discount (``""`` unsets a key)."""
        return {
            METADATA_COUPON: self.coupon,
            METADATA_FROM: self.first_period,
            METADATA_UNTIL: self.last_period or "",
        }

    def describe_periods(self) -> str:
        if self.last_period is None:
            return f"from {self.first_period} on"
        if self.last_period == self.first_period:
            return f"for {self.first_period}"
        return f"for {self.first_period} to {self.last_period}"


NO_DISCOUNT_METADATA = {METADATA_COUPON: "", METADATA_FROM: "", METADATA_UNTIL: ""}


def last_period(first_period: str, duration: str, duration_in_months: int | None) -> str | None:
    """The last period a coupon of this ``duration`` applies to when it starts at ``first_period``."""
    parse_period(first_period)
    if duration == "once":
        return first_period
    if duration == "forever":
        return None
    if duration == "repeating":
        if duration_in_months is None or not 1 <= duration_in_months <= MAX_REPEATING_MONTHS:
            raise ValueError(f"a repeating coupon needs duration_in_months, got {duration_in_months!r}")
        period = first_period
        for _ in range(duration_in_months - 1):
            period = next_period(period)
        return period
    raise ValueError(f"unknown coupon duration {duration!r}: one of {', '.join(DURATIONS)}")


def discount_from_metadata(metadata: Mapping[str, str] | None) -> CustomerDiscount | None:
    """The discount kept on a Stripe customer, or None (none, or metadata Tollgate did not write)."""
    if not metadata:
        return None
    coupon = metadata.get(METADATA_COUPON, "")
    first = metadata.get(METADATA_FROM, "")
    last = metadata.get(METADATA_UNTIL, "") or None
    if not coupon or not first:
        return None
    try:
        parse_period(first)
        if last is not None:
            parse_period(last)
    except ValueError:
        return None
    return CustomerDiscount(coupon, first, last)


def coupon_due(metadata: Mapping[str, str] | None, period: str) -> str | None:
    """The coupon to redeem onto the invoice of ``period``, from the Stripe customer's metadata."""
    discount = discount_from_metadata(metadata)
    return discount.coupon if discount is not None and discount.applies_to(period) else None
