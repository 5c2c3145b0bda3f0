"""The rating engine: plan + credits -> statement. Pure functions over ``Decimal``; no I/O.

A statement's lines are exactly the lines of the Stripe invoice: each has a unit amount in the minor unit
(sent as ``unit_amount_decimal``) and an integer quantity, and its amount is rounded once, where Stripe
rounds. The statement total is therefore the invoice total, to the cent (or yen).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal, localcontext
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field

from tollgate.domain.currencies import amount_increment
from tollgate.domain.models import Plan
from tollgate.domain.money import MAX_UNIT_DECIMALS, format_amount, line_amount, to_minor_units
from tollgate.domain.periods import period_end, period_start

# Enough digits that no product or sum of the amounts Stripe accepts is ever rounded by the Decimal context
# (the default 28 digits would silently round a 12-decimal unit price times a very large quantity).
EXACT_DIGITS = 80


class LineKind(StrEnum):
    BASE_FEE = "base_fee"
    USAGE = "usage"
    MINIMUM = "minimum"  # the true-up to a plan's minimum commitment
    FREE_CREDITS = "free_credits"  # credits a grant covered: amount 0, shown so the customer sees them
    ADJUSTMENT = "adjustment"
    CARRIED = "carried"  # usage too small to bill in its own period, billed once it is worth a minor unit
    PREPAID = "prepaid"  # credits drawn from a prepaid balance: paid when bought, amount 0
    THRESHOLD = "threshold"  # a threshold invoice's usage so far, less what earlier ones billed
    INVOICED_EARLIER = "invoiced_earlier"  # the close: what the period's threshold invoices billed, negative


class StatementLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: LineKind
    description: str
    period: str  # the period this line bills for (an adjustment names the earlier period)
    quantity: int
    unit_amount: Decimal  # minor units, exact; Stripe's unit_amount_decimal
    amount: int  # minor units: line_amount(unit_amount, quantity)


class StatementSegment(BaseModel):
    """The part of a period one plan segment covered, and the credits counted under it."""

    model_config = ConfigDict(frozen=True)

    segment: int
    plan_id: str
    plan_version: int
    starts: datetime
    ends: datetime
    credits: int
    included_credits: int  # the plan's included credits, prorated to [starts, ends)


class Statement(BaseModel):
    """What a customer owes for one period. Stored when rated and never changed afterwards.

    ``plan_id``/``plan_version`` is the plan in force at the period's end; ``segments`` every plan the period
    was rated on (one, unless the plan changed during the period; empty in statements stored before plan
    changes existed), ``credits`` and ``included_credits`` their sums.
    """

    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    plan_id: str
    plan_version: int
    currency: str
    credits: int  # the period's credits as rated
    included_credits: int
    lines: tuple[StatementLine, ...]
    segments: tuple[StatementSegment, ...] = ()
    grants_used: dict[str, int] = {}  # credit grant id -> free credits it covered in this period

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


def unit_amount_decimal(price: Decimal, currency: str) -> Decimal:
    """A price in major units -> Stripe's ``unit_amount_decimal``: exact minor units, normalised.

    ``Decimal("5").scaleb(2)`` is ``5E+2`` and ``Decimal("0.000420").scaleb(2)`` keeps a trailing zero; the
    value is normalised to ``500`` and ``0.042`` (the Stripe edge writes every amount as plain digits, see
    ``tollgate.billing.invoicing``). Stripe accepts at most 12 decimal places; a price finer than that
    cannot be
    invoiced exactly, so it is refused here rather than rounded.
    """
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        minor = to_minor_units(price, currency).normalize()
    exponent = minor.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_UNIT_DECIMALS:
        raise ValueError(
            f"price {price} {currency.upper()} is {minor} in the minor unit: Stripe's unit_amount_decimal "
            f"takes at most {MAX_UNIT_DECIMALS} decimal places"
        )
    return Decimal(format(minor, "f"))


def _line(kind: LineKind, description: str, period: str, quantity: int, unit_minor: Decimal) -> StatementLine:
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        amount = line_amount(unit_minor, quantity)
    return StatementLine(
        kind=kind,
        description=description,
        period=period,
        quantity=quantity,
        unit_amount=unit_minor,
        amount=amount,
    )


def usage_lines(
    plan: Plan, credits: int, period: str, included: int | None = None, label: str = "", free: int = 0
) -> list[StatementLine]:
    """The usage part of a statement: credits above the included ones, at the flat price or by tiers.

    ``included`` replaces the plan's included credits (a plan segment's prorated share); ``label`` names the
    segment in each line's description; ``free``: the first of the billable credits a credit grant covers
    (they keep their place in the tier bands: the paid credits are billed as the ones after them).
    """
    if credits < 0 or free < 0:
        raise ValueError("credits cannot be negative")
    if plan.prepaid:  # paid for when bought: shown, never billed again
        if credits == 0:
            return []
        description = f"API usage{label}: {credits:,} credits drawn from the prepaid balance"
        return [_line(LineKind.PREPAID, description, period, credits, Decimal(0))]
    included = plan.included_credits if included is None else included
    billable = max(0, credits - included)
    free = min(free, billable)
    if billable == free:
        return []
    above = [f"{included:,} included"] if included else []
    above += [f"{free:,} free"] if free else []
    suffix = f" above {' and '.join(above)}" if above else ""
    prefix = f"API usage{label}:"
    paid = billable - free
    if not plan.tiers:
        unit = unit_amount_decimal(plan.flat_price, plan.currency)
        return [_line(LineKind.USAGE, f"{prefix} {paid:,} credits{suffix}", period, paid, unit)]
    if plan.tiers_mode == "volume":  # every credit at the price of the band the total ends in
        floor = 0
        for tier in plan.tiers:
            if tier.up_to is None or billable <= tier.up_to:
                band = f"{floor + 1:,}-{tier.up_to:,}" if tier.up_to is not None else f"{floor + 1:,}+"
                unit = unit_amount_decimal(tier.price_per_credit, plan.currency)
                description = f"{prefix} {paid:,} credits (volume band {band}){suffix}"
                return [_line(LineKind.USAGE, description, period, paid, unit)]
            floor = tier.up_to
    lines, floor = [], 0
    for tier in plan.tiers:
        ceiling = tier.up_to if tier.up_to is not None else billable
        in_band = min(billable, ceiling) - max(floor, free)  # the band's paid credits
        if in_band > 0:
            unit = unit_amount_decimal(tier.price_per_credit, plan.currency)
            band = f"{floor + 1:,}-{ceiling:,}" if tier.up_to is not None else f"{floor + 1:,}+"
            lines.append(
                _line(
                    LineKind.USAGE,
                    f"{prefix} {in_band:,} credits (band {band}){suffix}",
                    period,
                    in_band,
                    unit,
                )
            )
        floor = ceiling
        if floor >= billable:
            break
    return lines


def usage_charge(plan: Plan, credits: int, included: int | None = None, minimum: int = 0) -> int:
    """Minor units the usage part costs for ``credits`` in one period (``included``: as in usage_lines),
    at least ``minimum`` (the plan's minimum commitment, in minor units, prorated)."""
    return max(minimum, sum(line.amount for line in usage_lines(plan, credits, "-", included)))


def late_usage_line(
    plan: Plan,
    period: str,
    billed_credits: int,
    late_credits: int,
    included: int | None = None,
    label: str = "",
    minimum: int = 0,
) -> StatementLine | None:
    """Credits of ``period`` counted after it was rated, billed on a later invoice; negative ``late_credits``:
    credits of failed requests refunded after it was rated (``tollgate.domain.refunds``), credited.

    The amount is what those credits add to (or take off) ``period``'s charge (included credits and tiers
    respected), so the two invoices together bill the period exactly as if every credit had been there, or
    every refund made, at the close. ``included``, ``label`` and ``minimum`` (its commitment in minor units,
    already billed as a true-up when usage fell short): the plan segment's, when the period had more than one.
    """
    if billed_credits + late_credits < 0:
        raise ValueError(f"{-late_credits} credits cannot be refunded of {billed_credits} billed")
    if late_credits == 0:
        return None
    extra = usage_charge(plan, billed_credits + late_credits, included, minimum) - usage_charge(
        plan, billed_credits, included, minimum
    )
    if late_credits > 0:
        counted = f"{late_credits:,} credits counted after that period closed"
        description = f"Late usage for {period}{label}: {counted}"
    else:
        description = (
            f"Refund for {period}{label}: {-late_credits:,} credits of failed requests, refunded after that "
            "period closed"
        )
    return _line(LineKind.ADJUSTMENT, description, period, 1, Decimal(extra))


@dataclass(frozen=True)
class FreeCredits:
    """Free credits a credit grant offers a period (``tollgate.domain.credit_grants``)."""

    grant_id: str
    description: str
    credits: int


@dataclass(frozen=True)
class PlanPart:
    """One plan segment's share of a period: the plan, the stretch of the period it was in force
    (``starts`` == ``ends`` for credits counted under a segment outside the period), and its credits."""

    segment: int
    plan: Plan
    starts: datetime
    ends: datetime
    credits: int


def prorated(amount: Decimal, seconds: int, period_seconds: int, increment: int = 1) -> int:
    """``amount`` x ``seconds`` / ``period_seconds``, rounded half-up (once) to a multiple of ``increment``
    (the currency's: whole kronur for ISK, ``tollgate.domain.currencies.amount_increment``)."""
    with localcontext() as context:
        context.prec = EXACT_DIGITS
        share = amount * seconds / period_seconds / increment
        return int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP)) * increment


def minimum_commitment(plan: Plan, seconds: int, period_seconds: int) -> int:
    """The plan's minimum commitment in minor units for ``seconds`` of a period (prorated like the base
    fee)."""
    if plan.minimum_commitment == 0 or seconds == 0:
        return 0
    unit = unit_amount_decimal(plan.minimum_commitment, plan.currency)
    if seconds == period_seconds:
        return line_amount(unit, 1)
    return prorated(unit, seconds, period_seconds, amount_increment(plan.currency))


def _span(starts: datetime, ends: datetime) -> str:
    return f"{starts:%b} {starts.day} {starts:%H:%M} to {ends:%b} {ends.day} {ends:%H:%M} UTC"


def rate_period(
    plan: Plan,
    customer_id: str,
    period: str,
    credits: int,
    adjustments: tuple[StatementLine, ...] = (),
) -> Statement:
    """The statement of a period spent on one plan."""
    whole = PlanPart(1, plan, period_start(period), period_end(period), credits)
    return rate_parts([whole], customer_id, period, adjustments)


def rate_parts(
    parts: list[PlanPart],
    customer_id: str,
    period: str,
    adjustments: tuple[StatementLine, ...] = (),
    free_credits: Sequence[FreeCredits] = (),
    trial_ends: datetime | None = None,
) -> Statement:
    """The statement of a period, each plan segment rated on its own plan (``parts`` in time order).

    ``free_credits`` cover the billable credits first, in order, each on a line of its own (amount 0); until
    ``trial_ends`` no base fee or minimum commitment is billed (prorated by the second when it ends within
    the period).

    Proration, by the second: a segment that covered ``s`` of the period's ``S`` seconds bills
    ``base_fee x s / S`` (rounded half-up to the minor unit, one line) and includes
    ``included_credits x s / S`` credits (rounded down: never more than the plan gives). Its credits are rated
    on its plan's price or tiers (the bands start again for each segment). A period on one plan is rated as
    before: the whole base fee, every included credit, no dates on the lines.
    """
    if not parts:
        raise ValueError("a statement needs at least one plan part")
    currencies = {part.plan.currency for part in parts}
    if len(currencies) > 1:
        raise ValueError(
            f"one period cannot be billed in several currencies: {', '.join(sorted(currencies))}"
        )
    start, end = period_start(period), period_end(period)
    period_seconds = int((end - start).total_seconds())
    split = len(parts) > 1
    lines: list[StatementLine] = []
    segments: list[StatementSegment] = []
    left = {grant.grant_id: grant.credits for grant in free_credits}  # what each grant has left to give
    grants_used: dict[str, int] = {}
    for part in parts:
        plan = part.plan
        seconds = int((part.ends - part.starts).total_seconds())
        if not 0 <= seconds <= period_seconds or part.starts < start or part.ends > end:
            raise ValueError(f"plan segment {part.segment} does not lie within {period}")
        label = f" on {plan.name} from {_span(part.starts, part.ends)}" if split else ""
        included = plan.included_credits * seconds // period_seconds
        fee_starts = part.starts if trial_ends is None else min(max(part.starts, trial_ends), part.ends)
        fee_seconds = int((part.ends - fee_starts).total_seconds())
        if plan.base_fee > 0 and fee_seconds > 0:
            unit = unit_amount_decimal(plan.base_fee, plan.currency)
            if fee_seconds == period_seconds:
                description = f"{plan.name}: base fee"
            else:
                unit = Decimal(prorated(unit, fee_seconds, period_seconds, amount_increment(plan.currency)))
                share = Decimal(fee_seconds) / 86400
                after_trial = ", after the trial" if fee_starts > part.starts else ""
                description = (
                    f"{plan.name}: base fee for {_span(fee_starts, part.ends)} "
                    f"({share:.2f} of {period_seconds // 86400} days{after_trial}, prorated by the second)"
                )
            lines.append(_line(LineKind.BASE_FEE, description, period, 1, unit))
        free = 0
        billable = 0 if plan.prepaid else max(0, part.credits - included)  # grants do not cover drawn credits
        for grant in free_credits:
            take = min(left[grant.grant_id], billable - free)
            if take > 0:
                left[grant.grant_id] -= take
                free += take
                grants_used[grant.grant_id] = grants_used.get(grant.grant_id, 0) + take
                description = f"Free credits ({grant.description}){label}: {take:,} credits"
                lines.append(_line(LineKind.FREE_CREDITS, description, period, take, Decimal(0)))
        usage = usage_lines(plan, part.credits, period, included, label, free)
        lines.extend(usage)
        minimum = minimum_commitment(plan, fee_seconds, period_seconds)
        short = minimum - sum(line.amount for line in usage)
        if short > 0:
            lines.append(
                _line(
                    LineKind.MINIMUM,
                    f"{plan.name}: minimum commitment{label} {format_amount(minimum, plan.currency)}, "
                    f"usage {format_amount(minimum - short, plan.currency)}",
                    period,
                    1,
                    Decimal(short),
                )
            )
        segments.append(
            StatementSegment(
                segment=part.segment,
                plan_id=plan.id,
                plan_version=plan.version,
                starts=part.starts,
                ends=part.ends,
                credits=part.credits,
                included_credits=included,
            )
        )
    lines.extend(adjustments)
    last = parts[-1].plan
    return Statement(
        customer_id=customer_id,
        period=period,
        plan_id=last.id,
        plan_version=last.version,
        currency=last.currency,
        credits=sum(part.credits for part in parts),
        included_credits=sum(segment.included_credits for segment in segments),
        lines=tuple(lines),
        segments=tuple(segments),
        grants_used=grants_used,
    )
