"""A customer's discount: a Stripe coupon on its invoices for a range of periods.

The schedule itself (which periods, kept where): ``tollgate.domain.discounts``.

The coupon is Stripe's own (made in the Dashboard or with the API): percent or amount off, and a duration.
Attaching it checks it with Stripe first (it exists, can still be redeemed, is not limited to some products,
and an amount off is in the plan's currency) and then writes the range of periods onto the Stripe customer's
metadata; a coupon Stripe does not know, or one that could never apply, changes nothing. The close redeems
the coupon onto each invoice in range and Stripe computes the amount, which the hosted invoice page shows.

Every write carries an Idempotency-Key made for the one command (a customer update is idempotent in itself:
setting the same metadata twice leaves the same metadata; a key derived from the content would replay an
earlier answer without applying it when a discount is attached, changed and attached again within 24 hours).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import stripe

from tollgate.dal.store import TollgateStore
from tollgate.domain.discounts import (
    NO_DISCOUNT_METADATA,
    CustomerDiscount,
    discount_from_metadata,
    last_period,
)
from tollgate.domain.models import Customer
from tollgate.domain.money import format_amount
from tollgate.domain.periods import parse_period, period_of
from tollgate.errors import InvalidInputError


def write_key(customer_id: str, what: str) -> str:
    """The Idempotency-Key of one command's write to a customer's Stripe data."""
    return f"tollgate-customer-{customer_id}-{what}-{uuid.uuid4().hex}"


def linked_customer(store: TollgateStore, customer_id: str) -> tuple[Customer, str]:
    """The customer and its Stripe customer id; a customer without one cannot have Stripe data yet."""
    customer = store.get_customer(customer_id)  # NotFoundError for an unknown customer
    if not customer.stripe_customer_id:
        raise InvalidInputError(
            f"customer {customer_id!r} has no Stripe customer yet: run `tollgate customers create "
            f"{customer_id} ...` again to finish linking it, then try again"
        )
    return customer, customer.stripe_customer_id


@dataclass(frozen=True)
class CouponTerms:
    """What Tollgate needs to know of a Stripe coupon."""

    id: str
    name: str | None
    percent_off: Decimal | None
    amount_off: int | None
    currency: str | None
    currencies: frozenset[str]  # every currency an amount off is defined in (``currency_options`` too)
    duration: str
    duration_in_months: int | None
    valid: bool
    limited_to_products: bool

    def describe(self) -> str:
        """``20% off, for 3 months``; ``5.00 USD off, once``; ``10% off, forever``."""
        if self.percent_off is not None:
            amount = f"{format(self.percent_off.normalize(), 'f')}% off"
        else:
            amount = f"{format_amount(self.amount_off or 0, self.currency or 'usd')} off"
        if self.duration == "repeating":
            months = self.duration_in_months or 0
            return f"{amount}, for {months} month{'s' if months != 1 else ''}"
        return f"{amount}, {self.duration}"


def read_coupon(stripe_client: stripe.StripeClient, coupon_id: str) -> CouponTerms:
    """The coupon from Stripe; one Stripe does not know is an ``InvalidInputError`` naming ``--coupon``."""
    try:
        coupon = stripe_client.v1.coupons.retrieve(
            coupon_id, params={"expand": ["applies_to", "currency_options"]}
        )
    except stripe.InvalidRequestError as error:
        if error.code != "resource_missing" and error.http_status != 404:
            raise
        raise InvalidInputError(
            f"--coupon: Stripe has no coupon {coupon_id!r}: create it in the Stripe Dashboard (or with "
            "the API) first; nothing was changed"
        ) from error
    return _terms(coupon)


def _terms(coupon: Any) -> CouponTerms:
    applies_to = getattr(coupon, "applies_to", None)
    products = getattr(applies_to, "products", None) if applies_to is not None else None
    options = getattr(coupon, "currency_options", None)
    currency = getattr(coupon, "currency", None)
    currencies = {str(code) for code in (options.to_dict() if options is not None else {})}
    if currency:
        currencies.add(str(currency))
    percent = getattr(coupon, "percent_off", None)
    return CouponTerms(
        id=str(coupon.id),
        name=getattr(coupon, "name", None),
        percent_off=None if percent is None else Decimal(str(percent)),
        amount_off=getattr(coupon, "amount_off", None),
        currency=currency,
        currencies=frozenset(currencies),
        duration=str(coupon.duration),
        duration_in_months=getattr(coupon, "duration_in_months", None),
        valid=bool(coupon.valid),
        limited_to_products=bool(products),
    )


@dataclass(frozen=True)
class Discount:
    """A customer's discount as Tollgate keeps it, with the coupon's terms when Stripe still has it."""

    customer_id: str
    discount: CustomerDiscount
    terms: CouponTerms | None

    def describe(self) -> str:
        terms = f" ({self.terms.describe()})" if self.terms is not None else " (no longer in Stripe)"
        return f"coupon {self.discount.coupon}{terms} on the invoices {self.discount.describe_periods()}"


def attach_discount(
    store: TollgateStore,
    stripe_client: stripe.StripeClient,
    customer_id: str,
    coupon_id: str,
    *,
    first_period: str | None = None,
    now: datetime,
) -> Discount:
    """Put ``coupon_id`` on the customer's invoices from ``first_period`` (default: the current period) for
    the coupon's duration, replacing any discount the customer had."""
    customer, stripe_id = linked_customer(store, customer_id)
    if first_period is not None:
        try:
            parse_period(first_period)
        except ValueError as error:
            raise InvalidInputError(f"--from: {error}") from error
    terms = read_coupon(stripe_client, coupon_id)
    plan = store.get_plan(customer.plan_id, customer.plan_version)
    _check_applicable(terms, plan.currency)
    first = first_period or period_of(now)
    discount = CustomerDiscount(terms.id, first, last_period(first, terms.duration, terms.duration_in_months))
    stripe_client.v1.customers.update(
        stripe_id,
        params={"metadata": discount.to_metadata()},
        options={"idempotency_key": write_key(customer_id, "discount")},
    )
    return Discount(customer_id, discount, terms)


def _check_applicable(terms: CouponTerms, currency: str) -> None:
    if not terms.valid:
        raise InvalidInputError(
            f"--coupon: coupon {terms.id!r} can no longer be redeemed (its redeem_by date has passed or it "
            "has reached max_redemptions); nothing was changed"
        )
    if terms.limited_to_products:
        raise InvalidInputError(
            f"--coupon: coupon {terms.id!r} applies only to some products, and Tollgate's invoice lines are "
            "priced inline: it would take nothing off; use a coupon without applies_to"
        )
    if terms.amount_off is not None and currency not in terms.currencies:
        raise InvalidInputError(
            f"--coupon: coupon {terms.id!r} takes an amount off in {', '.join(sorted(terms.currencies))}, "
            f"but the customer's plan bills in {currency}; nothing was changed"
        )


def current_discount(
    store: TollgateStore, stripe_client: stripe.StripeClient, customer_id: str
) -> Discount | None:
    """The customer's discount, from its Stripe customer, or None."""
    _, stripe_id = linked_customer(store, customer_id)
    found = discount_from_metadata(_metadata(stripe_client.v1.customers.retrieve(stripe_id)))
    if found is None:
        return None
    try:
        terms: CouponTerms | None = read_coupon(stripe_client, found.coupon)
    except InvalidInputError:
        terms = None  # deleted in Stripe since: the close will fail on it until the discount is removed
    return Discount(customer_id, found, terms)


def remove_discount(
    store: TollgateStore, stripe_client: stripe.StripeClient, customer_id: str
) -> CustomerDiscount | None:
    """Take the customer's discount off (invoices finalized already keep theirs); the one removed, or None."""
    _, stripe_id = linked_customer(store, customer_id)
    found = discount_from_metadata(_metadata(stripe_client.v1.customers.retrieve(stripe_id)))
    if found is None:
        return None
    stripe_client.v1.customers.update(
        stripe_id,
        params={"metadata": dict(NO_DISCOUNT_METADATA)},
        options={"idempotency_key": write_key(customer_id, "discount")},
    )
    return found


def _metadata(stripe_customer: Any) -> dict[str, str]:
    metadata = getattr(stripe_customer, "metadata", None)
    return {str(k): str(v) for k, v in (metadata.to_dict() if metadata is not None else {}).items()}
