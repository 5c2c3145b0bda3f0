"""What Stripe Tax needs of a customer, kept on its Stripe customer: billing address, tax ids, exemption.

A plan with ``tax`` has Stripe Tax compute the tax of its invoices (``automatic_tax``), from the customer's
location: its billing address here (a country, and a postal code in the US and Canada). The address is sent
with ``tax[validate_location]=immediately``, so Stripe refuses one it cannot locate now rather than at the
close. Tax ids (``eu_vat:DE123456789``) are added when missing and removed by type and value; Stripe checks
their format and prints them on the invoice. ``tax_exempt`` is ``none``, ``exempt`` or ``reverse`` (reverse
charge: the customer accounts for the tax).

Each write carries an Idempotency-Key made for the one command; adding a tax id first lists the customer's
tax ids, so running the same command again adds nothing twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import stripe
from stripe.params import CustomerUpdateParams, CustomerUpdateParamsAddress

from tollgate.accounts.discounts import linked_customer, write_key
from tollgate.dal.store import TollgateStore
from tollgate.errors import InvalidInputError

TaxExempt = Literal["none", "exempt", "reverse"]
ADDRESS_FIELDS = ("line1", "line2", "city", "state", "postal_code", "country")


@dataclass(frozen=True)
class Address:
    """A billing address as given on the command line; ``country`` is a two-letter ISO code."""

    country: str
    line1: str | None = None
    line2: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None

    def params(self) -> CustomerUpdateParamsAddress:
        """The whole address: fields not given are cleared, so nothing of an earlier address lingers."""
        country = self.country.strip().upper()
        if len(country) != 2 or not country.isalpha():
            raise InvalidInputError(
                f"--country: {self.country!r} is not a two-letter country code (DE, US, ...)"
            )
        return {
            "country": country,
            "line1": self.line1 or "",
            "line2": self.line2 or "",
            "city": self.city or "",
            "state": self.state or "",
            "postal_code": self.postal_code or "",
        }


@dataclass(frozen=True)
class TaxId:
    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def parse_tax_id(text: str, option: str = "--tax-id") -> TaxId:
    """``eu_vat:DE123456789`` -> ``TaxId("eu_vat", "DE123456789")`` (Stripe checks the type and format)."""
    kind, _, value = text.partition(":")
    kind, value = kind.strip().lower(), value.strip().replace(" ", "")
    if not kind or not value:
        raise InvalidInputError(f"{option}: {text!r} is not TYPE:VALUE, e.g. eu_vat:DE123456789")
    return TaxId(kind, value)


@dataclass(frozen=True)
class TaxInfo:
    """A customer's tax details as Stripe holds them, and whether Stripe Tax can locate it."""

    customer_id: str
    address: dict[str, str] | None
    tax_exempt: str
    tax_ids: tuple[TaxId, ...]
    automatic_tax: str  # supported, not_collecting, unrecognized_location, failed
    location: str | None  # the country (and state) Stripe Tax locates the customer in

    def address_line(self) -> str:
        if not self.address:
            return "-"
        parts = [self.address.get(name) for name in ADDRESS_FIELDS]
        return ", ".join(part for part in parts if part)


def set_tax_info(
    store: TollgateStore,
    stripe_client: stripe.StripeClient,
    customer_id: str,
    *,
    address: Address | None = None,
    tax_exempt: TaxExempt | None = None,
    add: Sequence[TaxId] = (),
    remove: Sequence[TaxId] = (),
) -> TaxInfo:
    """Set the billing address and exemption, add and remove tax ids; the customer's tax details after."""
    _, stripe_id = linked_customer(store, customer_id)
    params: CustomerUpdateParams = {}
    if address is not None:
        params["address"] = address.params()
        params["tax"] = {"validate_location": "immediately"}
    if tax_exempt is not None:
        params["tax_exempt"] = tax_exempt
    held = _tax_ids(stripe_client, stripe_id) if add or remove else {}
    gone = [tax_id for tax_id in remove if tax_id not in held]
    if gone:
        raise InvalidInputError(
            f"--remove-tax-id: {customer_id} has no tax id {gone[0]}; nothing was changed"
        )
    if params:
        stripe_client.v1.customers.update(
            stripe_id, params=params, options={"idempotency_key": write_key(customer_id, "tax-info")}
        )
    for tax_id in remove:
        stripe_client.v1.customers.tax_ids.delete(stripe_id, held[tax_id])
    for index, tax_id in enumerate(dict.fromkeys(add)):
        if tax_id in held and tax_id not in remove:
            continue
        stripe_client.v1.customers.tax_ids.create(
            stripe_id,
            params={"type": tax_id.type, "value": tax_id.value},
            options={"idempotency_key": write_key(customer_id, f"tax-id-{index}")},
        )
    return tax_info(store, stripe_client, customer_id)


def tax_info(store: TollgateStore, stripe_client: stripe.StripeClient, customer_id: str) -> TaxInfo:
    _, stripe_id = linked_customer(store, customer_id)
    customer = stripe_client.v1.customers.retrieve(stripe_id, params={"expand": ["tax"]})
    tax = getattr(customer, "tax", None)
    location = getattr(tax, "location", None) if tax is not None else None
    where = None
    if location is not None and getattr(location, "country", None):
        state = getattr(location, "state", None)
        where = str(location.country) + (f"-{state}" if state else "")
    address = getattr(customer, "address", None)
    return TaxInfo(
        customer_id=customer_id,
        address=None if address is None else {k: str(v) for k, v in address.to_dict().items() if v},
        tax_exempt=str(getattr(customer, "tax_exempt", None) or "none"),
        tax_ids=tuple(_tax_ids(stripe_client, stripe_id)),
        automatic_tax=str(getattr(tax, "automatic_tax", "unrecognized_location")),
        location=where,
    )


def _tax_ids(stripe_client: stripe.StripeClient, stripe_id: str) -> dict[TaxId, str]:
    """The customer's tax ids, oldest first, each with its Stripe id."""
    listing: Any = stripe_client.v1.customers.tax_ids.list(stripe_id, params={"limit": 100})
    found = {TaxId(str(item.type), str(item.value)): str(item.id) for item in listing.auto_paging_iter()}
    return dict(reversed(list(found.items())))
