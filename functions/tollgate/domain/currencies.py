"""The currencies a plan can bill in, and the rule each one follows, as data.

Source: Stripe's "Supported currencies" page, https://docs.stripe.com/currencies (the presentment currencies
of a US account, the zero-decimal list and the "Special cases" table), and for the three-decimal currencies
the same page as it was in 2022, https://web.archive.org/web/20221231002856/https://stripe.com/docs/currencies
(the current page no longer describes them). A plan's currency is checked here when the plan is created
(``Plan._supported_currency``), so a currency Tollgate cannot bill exactly is refused then, never first by
Stripe at the close.

=================================  =======================================  ================================
currency                           Stripe's rule                            Tollgate
=================================  =======================================  ================================
two-decimal (usd, eur, gbp, ...)   amounts in cents                         supported
zero-decimal (jpy, krw, clp, ...)  amounts in whole units                   supported
isk                                two decimals in the API, but whole       supported when every price is
                                   kronur only (amounts divisible by        whole kronur (then every line
                                   100): "You can't charge fractions"       is, with no rounding); a price
                                                                            with a fraction is refused
huf, twd                           two decimals for charges; whole units    supported as two-decimal:
                                   (divisible by 100) only for manual       Tollgate makes no payouts
                                   payouts
ugx                                in the zero-decimal list, and in the     refused: the page contradicts
                                   special cases as two-decimal with        itself, and a wrong guess bills
                                   amounts divisible by 100                 100 times too much or too little
bhd, jod, kwd, omr, tnd            three decimals, last digit 0; only for   refused
                                   accounts in some countries
any other code                     not a presentment currency               refused
=================================  =======================================  ================================

Which of these an account may charge in also depends on the account's country (Stripe's Country Specs); that
cannot be known here, and Stripe refuses the invoice if the account may not use the currency. The largest
amount per currency is in ``tollgate.domain.stripe_limits``.
"""

from __future__ import annotations

from decimal import Decimal

from tollgate.domain.money import THREE_DECIMAL, minor_unit_exponent, to_minor_units

# Stripe's supported presentment currencies for a US account (https://docs.stripe.com/currencies#presentment-
# currencies). Some accounts may charge in a few more (the three-decimal ones, for one): not billable here.
# fmt: off
PRESENTMENT_CURRENCIES = frozenset([
    "usd", "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt", "bgn",
    "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf", "chf", "clp", "cny", "cop",
    "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb", "eur", "fjd", "fkp", "gbp", "gel", "gip",
    "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "isk", "jmd", "jpy", "kes",
    "kgs", "khr", "kmf", "krw", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd",
    "mmk", "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd",
    "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd", "scr",
    "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb", "tjs", "top", "try", "ttd", "twd", "tzs",
    "uah", "ugx", "uyu", "uzs", "vnd", "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
])
# fmt: on

# Two decimals in Stripe's API, but only whole units may be charged: every amount a multiple of 100.
WHOLE_UNITS_ONLY = frozenset(["isk"])

# Currencies Tollgate refuses although Stripe knows them, and why (the message a plan's author reads).
REFUSED: dict[str, str] = {
    "ugx": (
        "Stripe's currency page lists UGX both as zero-decimal and as a two-decimal currency charged in "
        "multiples of 100; until Stripe settles which, Tollgate cannot know whether 5,000 UGX is sent as "
        "5000 or 500000, and refuses it rather than bill 100 times too little or too much"
    ),
    **{
        code: (
            "Stripe takes three-decimal currencies only from accounts in some countries and only in "
            "amounts whose last digit is 0, and no longer documents them"
        )
        for code in THREE_DECIMAL
    },
}


def check_currency(currency: str) -> str:
    """``currency`` in lowercase if a plan can bill in it; else a ``ValueError`` that says why."""
    code = currency.lower()
    if code in THREE_DECIMAL:
        raise ValueError(f"currency {code!r} (three decimals) is not supported: {REFUSED[code]}")
    if code in REFUSED:
        raise ValueError(f"currency {code!r} is not supported: {REFUSED[code]}")
    if code not in PRESENTMENT_CURRENCIES:
        raise ValueError(
            f"currency {code!r} is not one of Stripe's presentment currencies "
            "(https://docs.stripe.com/currencies#presentment-currencies)"
        )
    return code


def supported_currencies() -> frozenset[str]:
    """Every currency a plan can bill in."""
    return PRESENTMENT_CURRENCIES.difference(REFUSED)


def amount_increment(currency: str) -> int:
    """What every amount in ``currency`` must be a multiple of, in the minor unit: 100 for ISK (whole kronur
    only), else 1. A line amount that is not (a prorated base fee, say) must be rounded to it."""
    return 100 if currency.lower() in WHOLE_UNITS_ONLY else 1


def check_price(name: str, price: Decimal, currency: str) -> None:
    """A price of a plan (``name`` is its field) must be a whole multiple of the currency's increment, so
    that every line priced by it is too: ``ValueError`` otherwise."""
    increment = amount_increment(currency)
    if increment == 1:
        return
    minor = to_minor_units(price, currency)
    if minor % increment != 0:
        whole = Decimal(increment).scaleb(-minor_unit_exponent(currency))
        raise ValueError(
            f"{name}: {price} {currency.upper()} is not a multiple of {whole.normalize()} "
            f"{currency.upper()}: Stripe charges {currency.upper()} in whole units only (amounts divisible "
            f"by {increment} in the minor unit)"
        )
