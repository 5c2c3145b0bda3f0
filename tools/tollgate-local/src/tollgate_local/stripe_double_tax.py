"""Stripe Tax in the Stripe double: a fixed, documented rate per country, computed offline and exactly.

The real Stripe Tax looks up the customer's location, the account's registrations and the product's tax code.
The double states a small world instead, so tests can assert totals to the minor unit:

* **Registrations.** The double's account (``account_country`` US) is registered in the countries of
  :data:`TAX_RATES` only, at those standard rates, for every product. A customer located anywhere else is
  charged no tax (``taxability_reason`` ``not_collecting``), as Stripe Tax does where an account has no
  registration.
* **Location.** Only the customer's billing ``address`` locates it (no IP address, no shipping address, no
  payment method): a two-letter ``country`` is needed, plus ``postal_code`` in the US and Canada. Without
  one, an invoice with automatic tax has ``automatic_tax.status`` ``requires_location_inputs`` and cannot be
  finalized (``customer_tax_location_invalid``).
* **Exemptions.** ``tax_exempt`` ``exempt`` charges no tax (``customer_exempt``), ``reverse`` charges none
  either (``reverse_charge``: the customer accounts for it). A tax id alone changes nothing: Stripe's
  automatic reverse charge for cross-border business sales is not emulated; set ``tax_exempt`` instead.
* **Amounts.** Tax is computed per line, on the line's amount after its share of the invoice's discounts,
  rounded half-up to the minor unit once per line. ``exclusive``: ``tax = net x rate``, added to the total.
  ``inclusive``: ``tax = net x rate / (1 + rate)``, already inside the amount.

Tax ids are checked for shape only, for the types listed in :data:`TAX_ID_PATTERNS` (others: any non-empty
value); their ``verification.status`` stays ``pending``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import Any

TAX_RATES: Mapping[str, Decimal] = {
    "AU": Decimal("10"),
    "DE": Decimal("19"),
    "FR": Decimal("20"),
    "GB": Decimal("20"),
    "IE": Decimal("23"),
    "JP": Decimal("10"),
    "NL": Decimal("21"),
}
"""Percent, by the customer's country: where the double's account collects tax."""

TAX_NAMES: Mapping[str, str] = {"AU": "GST", "JP": "JCT"}  # elsewhere VAT
POSTAL_CODE_REQUIRED = frozenset({"US", "CA"})
EU_COUNTRIES = frozenset(
    {
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
    }
)
TAX_ID_PATTERNS: Mapping[str, re.Pattern[str]] = {
    "eu_vat": re.compile(r"^(?:[A-Z]{2})[0-9A-Z]{2,13}$"),
    "gb_vat": re.compile(r"^GB(?:\d{9}|\d{12})$"),
    "au_abn": re.compile(r"^\d{11}$"),
    "us_ein": re.compile(r"^\d{2}-\d{7}$"),
}
TAX_ID_COUNTRIES: Mapping[str, str] = {"gb_vat": "GB", "au_abn": "AU", "us_ein": "US", "jp_cn": "JP"}
_ONE = Decimal(1)
_HUNDRED = Decimal(100)


def round_half_up(value: Decimal) -> int:
    with localcontext() as context:
        context.prec = 80
        return int(value.quantize(_ONE, rounding=ROUND_HALF_UP))


def location_country(address: Mapping[str, Any] | None) -> str | None:
    """The country Stripe Tax would locate a customer in from its billing address, or None."""
    if not address:
        return None
    country = str(address.get("country") or "").upper()
    if len(country) != 2 or not country.isalpha():
        return None
    if country in POSTAL_CODE_REQUIRED and not address.get("postal_code"):
        return None
    return country


def automatic_tax_support(address: Mapping[str, Any] | None) -> str:
    """A customer's ``tax.automatic_tax``: ``supported``, ``not_collecting`` or ``unrecognized_location``."""
    country = location_country(address)
    if country is None:
        return "unrecognized_location"
    return "supported" if country in TAX_RATES else "not_collecting"


def tax_id_problem(kind: str, value: str) -> str | None:
    """Why ``value`` is not a tax id of type ``kind`` (None: it looks like one)."""
    pattern = TAX_ID_PATTERNS.get(kind)
    if not value.strip():
        return f"Invalid value for {kind}: it is empty."
    if pattern is not None and pattern.match(value) is None:
        return f"Invalid value for {kind}."
    if kind == "eu_vat" and _eu_vat_country(value) not in EU_COUNTRIES:
        return f"Invalid value for {kind}: {value[:2]} is not an EU country prefix."
    return None


def tax_id_country(kind: str, value: str) -> str | None:
    if kind == "eu_vat":
        return _eu_vat_country(value)
    return TAX_ID_COUNTRIES.get(kind)


def _eu_vat_country(value: str) -> str:
    prefix = value[:2].upper()
    return "GR" if prefix == "EL" else prefix  # Greece's VAT numbers start with EL


@dataclass(frozen=True)
class TaxRule:
    """What applies to one invoice: the rate (percent, 0 when none) and Stripe's reason for it."""

    country: str
    percent: Decimal
    reason: str

    @property
    def rate_id(self) -> str:
        """A stable tax rate id per country and rate, as ``tax_rate_details.tax_rate`` names it."""
        return f"txr_double_{self.country}_{str(self.percent).replace('.', '_')}"

    @property
    def display_name(self) -> str:
        return TAX_NAMES.get(self.country, "VAT") if self.percent else "Tax"

    def tax(self, net: int, behavior: str) -> int:
        """The tax on a line whose amount after discounts is ``net`` (minor units)."""
        if not self.percent or net <= 0:
            return 0
        rate = self.percent / _HUNDRED
        if behavior == "inclusive":
            with localcontext() as context:
                context.prec = 80
                return round_half_up(Decimal(net) * rate / (_ONE + rate))
        return round_half_up(Decimal(net) * rate)


def tax_rule(address: Mapping[str, Any] | None, tax_exempt: str) -> TaxRule | None:
    """The rule for a customer at ``address``; None when Stripe Tax cannot locate it."""
    country = location_country(address)
    if country is None:
        return None
    if tax_exempt == "exempt":
        return TaxRule(country, Decimal(0), "customer_exempt")
    if tax_exempt == "reverse":
        return TaxRule(country, Decimal(0), "reverse_charge")
    percent = TAX_RATES.get(country)
    if percent is None:
        return TaxRule(country, Decimal(0), "not_collecting")
    return TaxRule(country, percent, "standard_rated")
