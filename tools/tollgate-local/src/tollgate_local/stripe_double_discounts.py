"""Coupons and discounts in the Stripe double: what a coupon is, and what it takes off an invoice.

A coupon (``POST /v1/coupons``) has either ``percent_off`` (0 < p <= 100) or ``amount_off`` in one
``currency``, a ``duration`` (``once``, ``repeating`` with ``duration_in_months``, ``forever``), and
optionally ``max_redemptions`` and ``redeem_by``. Redeeming it onto an invoice (``discounts[][coupon]`` on
create or update) makes a discount (``di_...``) and counts one redemption; a coupon past ``redeem_by`` or out
of redemptions, or an ``amount_off`` coupon in another currency than the invoice, is refused.

On an invoice a discount applies to that invoice only, whatever the coupon's ``duration``: ``duration`` is how
long a discount on a customer or a subscription lasts, and the pinned API version (2026-10-28.endive) can no
longer put a coupon on a customer (``coupon`` left customer create/update in 2025-03-31.basil). A
discount's ``end`` is shown as Stripe shows it (``start`` plus the months of a ``repeating`` coupon), and
never consulted.

Amounts: invoice discounts apply in order, each to the discountable amount left after the ones before it:
``percent_off`` takes ``left x p / 100`` rounded half-up, ``amount_off`` takes ``min(amount_off, left)``. Each
discount's amount is spread over the discountable lines in proportion to what is left of each (largest
remainder, so the shares add up exactly); a line's tax is computed on what is left of it after them.

Not emulated: ``applies_to`` (product restrictions), ``currency_options``, promotion codes, line-item
discounts, and discounts on customers or subscriptions.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tollgate_local.stripe_double_tax import round_half_up

_HUNDRED = Decimal(100)


@dataclass
class Coupon:
    id: str
    created: int
    duration: str
    duration_in_months: int | None
    percent_off: Decimal | None
    amount_off: int | None
    currency: str | None
    max_redemptions: int | None
    redeem_by: int | None
    name: str | None
    metadata: dict[str, str]
    times_redeemed: int = 0

    def valid(self, now: int) -> bool:
        """Stripe's ``valid``: it can still be redeemed."""
        if self.redeem_by is not None and now >= self.redeem_by:
            return False
        return self.max_redemptions is None or self.times_redeemed < self.max_redemptions

    def describe(self, currency_text: str) -> str:
        """``20% off`` / ``5.00 USD off``: what the hosted invoice page shows next to the coupon's name."""
        if self.percent_off is not None:
            return f"{_percent_text(self.percent_off)}% off"
        return f"{currency_text} off"

    def to_json(self, now: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "coupon",
            "amount_off": self.amount_off,
            "applies_to": None,
            "created": self.created,
            "currency": self.currency,
            "currency_options": None,
            "duration": self.duration,
            "duration_in_months": self.duration_in_months,
            "livemode": False,
            "max_redemptions": self.max_redemptions,
            "metadata": dict(self.metadata),
            "name": self.name,
            "percent_off": None if self.percent_off is None else float(self.percent_off),
            "redeem_by": self.redeem_by,
            "times_redeemed": self.times_redeemed,
            "valid": self.valid(now),
        }


@dataclass
class Discount:
    """A coupon redeemed onto one invoice."""

    id: str
    coupon: Coupon
    customer_id: str
    invoice_id: str
    start: int

    @property
    def end(self) -> int | None:
        months = self.coupon.duration_in_months
        if self.coupon.duration != "repeating" or months is None:
            return None
        return add_months(self.start, months)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "discount",
            "checkout_session": None,
            "customer": self.customer_id,
            "customer_account": None,
            "end": self.end,
            "invoice": self.invoice_id,
            "invoice_item": None,
            "promotion_code": None,
            "source": {"coupon": self.coupon.id, "type": "coupon"},
            "start": self.start,
            "subscription": None,
            "subscription_item": None,
        }


@dataclass
class Allocation:
    """What each discount takes off the invoice, and off each line (by line index)."""

    totals: list[tuple[Discount, int]] = field(default_factory=list)
    per_line: dict[int, list[tuple[Discount, int]]] = field(default_factory=dict)

    def line_discount(self, index: int) -> int:
        return sum(amount for _, amount in self.per_line.get(index, []))

    @property
    def total(self) -> int:
        return sum(amount for _, amount in self.totals)


def allocate(
    discounts: Sequence[Discount], line_amounts: Sequence[int], discountable: Sequence[bool]
) -> Allocation:
    """Apply ``discounts`` in order to the discountable lines (see the module docstring)."""
    left = [amount if ok and amount > 0 else 0 for amount, ok in zip(line_amounts, discountable, strict=True)]
    allocation = Allocation()
    for discount in discounts:
        base = sum(left)
        coupon = discount.coupon
        if coupon.percent_off is not None:
            amount = round_half_up(Decimal(base) * coupon.percent_off / _HUNDRED)
        else:
            amount = min(coupon.amount_off or 0, base)
        amount = min(amount, base)
        allocation.totals.append((discount, amount))
        for index, share in enumerate(_spread(amount, left)):
            if share:
                allocation.per_line.setdefault(index, []).append((discount, share))
                left[index] -= share
    return allocation


def _spread(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights``, by largest remainder (ties to the earlier line)."""
    total = sum(weights)
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    shares = [amount * weight // total for weight in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i))
    for index in remainders[: amount - sum(shares)]:
        shares[index] += 1
    return shares


def add_months(epoch: int, months: int) -> int:
    """``epoch`` plus whole calendar months (the day clamped to the month's end), as a discount ends."""
    moment = datetime.fromtimestamp(epoch, UTC)
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _percent_text(percent: Decimal) -> str:
    text = format(percent, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
