"""The usage counter item's attributes: how a request is added to it and how it is read back.

Standard library only: the authorizer writes the item (``tollgate.metering.dynamo``), the store and the usage
report read it (``tollgate.dal.store``). One item per (customer, period, shard) holds

* ``credits`` and ``requests``: the totals, what the close bills;
* ``seg1``, ``seg2``...: the credits counted under each of the customer's plan segments
  (:func:`segment_attribute`), so a mid-period plan change is rated exactly (decisions.md, 25);
* ``d01``... ``d31``: one **day tally** per day of the month with requests (:func:`day_attribute`), packed
  as a route tally is, so the period's daily series costs no extra write (the same ``ADD``);
* one **route tally** per route called: a number named by the route's 6-character code (:func:`route_code`)
  that holds the route's credits before the point and its requests in the ten digits after it. One request of
  5 credits adds ``5.0000000001``; 3 of them make ``15.0000000003``. DynamoDB numbers are exact decimals
  (38 significant digits), so ``ADD`` keeps both counts exact in one attribute.

Why: DynamoDB bills a write by the item's size, one write unit per started KB. Two attributes per route named
by the route itself (``route_credits#GET /v1/search``) passed 1 KB at 12 routes and doubled the cost of every
request after that. A tally is about 16 bytes (6 for the name, about 10 for the number), so the item stays
under 1 KB beyond 50 routes.

Why ten digits are enough: one item sits on one partition, which takes at most 1,000 writes a second, so a
31-day period adds fewer than 2.7 billion requests to one item: the requests never reach the credits' digits.

The route names are kept apart, in the route registry (``ROUTES`` partition, one item per code and route,
``tablekeys.route_name_key``, written once per route by each authorizer instance): the report shows
route names, and a code two routes share (2^30 codes, about one chance in a million for 50 routes) is shown
under both names rather than under a wrong one.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from decimal import Decimal
from functools import lru_cache
from typing import TypeVar

V = TypeVar("V")

ROUTE_REQUEST_DIGITS = 10  # the requests' digits after the point of a route tally
ROUTE_CODE_LENGTH = 6  # base32 characters: 30 bits of the route's SHA-256
_ROUTE_CODE_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
_REQUEST_SCALE = Decimal(10) ** ROUTE_REQUEST_DIGITS


@lru_cache(maxsize=4096)  # the authorizer codes every request's route: an API has a few dozen
def route_code(route: str) -> str:
    """The route's attribute name on the counter: 6 upper-case base32 characters of its SHA-256.

    Upper case, so a code is never one of the item's own (lower-case) attribute names.
    """
    digest = hashlib.sha256(route.encode()).digest()
    return base64.b32encode(digest[:5]).decode()[:ROUTE_CODE_LENGTH]


def is_route_code(name: str) -> bool:
    return len(name) == ROUTE_CODE_LENGTH and _ROUTE_CODE_ALPHABET.issuperset(name)


def route_tally(credits: int, requests: int = 1) -> str:
    """The number (DynamoDB's wire text) that adds ``requests`` requests of ``credits`` credits in all."""
    if credits < 0 or not 0 <= requests < _REQUEST_SCALE:
        raise ValueError(
            f"a route tally holds credits >= 0 and 0 <= requests < 10^10, not {credits}/{requests}"
        )
    return f"{credits}.{requests:0{ROUTE_REQUEST_DIGITS}d}"


def read_route_tally(value: Decimal | int | str) -> tuple[int, int]:
    """``(credits, requests)`` of a route tally as DynamoDB returns it."""
    number = Decimal(value)
    credits = int(number)  # the digits before the point (a tally is never negative)
    requests = (number - credits) * _REQUEST_SCALE
    if number < 0 or requests != requests.to_integral_value():
        raise ValueError(f"not a route tally: {value}")
    return credits, int(requests)


# Refunds of failed requests (tollgate.dal.refunds) take credits off the attributes above and add them here.
REFUNDED = "refunded"  # credits refunded
REFUNDED_REQUESTS = "refunded_requests"  # requests refunded (their tallies keep counting them as requests)

SEGMENT_PREFIX = "seg"


def segment_attribute(seq: int) -> str:
    """The counter attribute holding the credits counted under the customer's plan segment ``seq``
    (``tollgate.domain.models.PlanSegment``): ``seg1``, ``seg2``... The authorizer adds a request's credits to
    it in the same ``ADD`` that counts the request, so a plan change splits the period's credits exactly."""
    return f"{SEGMENT_PREFIX}{seq}"


def segment_of(name: str) -> int | None:
    """The segment number of a counter attribute name, or None for any other attribute."""
    digits = name[len(SEGMENT_PREFIX) :]
    if not name.startswith(SEGMENT_PREFIX) or not (digits.isascii() and digits.isdigit()) or digits[0] == "0":
        return None
    return int(digits)


DAY_PREFIX = "d"


def day_attribute(day: int) -> str:
    """The counter attribute tallying the requests of day ``day`` of the month (UTC, from the request's own
    timestamp, as its period is): ``d01`` to ``d31``, valued as a route tally (credits, then requests after
    the point). The authorizer adds to it in the same ``ADD`` that counts the request: the daily series costs
    no extra write, only about 13 bytes of item per day (a heavy customer's item at the month's end holds 32
    routes at one write unit instead of 57: benchmarks/cost.py --days 31)."""
    if not 1 <= day <= 31:
        raise ValueError(f"a day of the month is 1 to 31, not {day}")
    return f"{DAY_PREFIX}{day:02d}"


def day_of(name: str) -> int | None:
    """The day of the month of a counter attribute name (``d05`` -> 5), or None for any other attribute."""
    digits = name[len(DAY_PREFIX) :]
    if len(name) != 3 or not name.startswith(DAY_PREFIX) or not (digits.isascii() and digits.isdigit()):
        return None
    day = int(digits)
    return day if 1 <= day <= 31 else None


# -- the prepaid wallet -----------------------------------------------------------------------------------
# A prepaid customer's requests are counted on one item per customer, the wallet (``tablekeys.wallet_key``),
# which also holds the ``balance``: the write that counts a request draws its credits in the same ``ADD``,
# on the condition that the balance covers them (decisions.md, 30). The period's counter attributes are
# those above, each named after the period's tag (``2611credits``, ``2611seg1``, ``2611d05``, ``2611ABCDEF``
# for 2026-11): a request near a period's end and one just after it land in their own periods.

BALANCE = "balance"  # credits the customer can still draw
BOUGHT = "bought"  # credits ever added to the balance
EXPIRED = "expired"  # credits that expired unused (the expiry sweep): drawn = bought - balance - expired
PERIOD_TAG_LENGTH = 4


def period_tag(period: str) -> str:
    """The 4 digits that name a period's attributes on the wallet: ``2611`` for ``2026-11``."""
    year, dash, month = period.partition("-")
    if dash != "-" or len(year) != 4 or not year.startswith("20") or len(month) != 2:
        raise ValueError(f"a wallet counts periods 2000-01 to 2099-12, not {period!r}")
    return year[2:] + month


def wallet_attribute(period: str, name: str) -> str:
    """The wallet attribute counting ``name`` (``credits``, ``seg2``, a route code) in ``period``."""
    return period_tag(period) + name


def period_view(wallet: Mapping[str, V], period: str) -> dict[str, V]:
    """The wallet's attributes of ``period``, named as on a counter item (read as a counter is)."""
    tag = period_tag(period)
    return {name[PERIOD_TAG_LENGTH:]: value for name, value in wallet.items() if name.startswith(tag)}


def wallet_period_tags(wallet: Mapping[str, object]) -> set[str]:
    """The tags of the periods the wallet holds attributes of."""
    return {
        name[:PERIOD_TAG_LENGTH]
        for name in wallet
        if len(name) > PERIOD_TAG_LENGTH and name[:PERIOD_TAG_LENGTH].isdigit()
    }


def route_name_from_sort_key(sort_key: str) -> tuple[str, str]:
    """``(code, route)`` of a route registry item's sort key (``CODE#route``)."""
    code, _, route = sort_key.partition("#")
    return code, route


def period_of_tag(tag: str) -> str | None:
    """The period a wallet attribute's 4-digit tag names (``2611`` -> ``2026-11``); None if not a tag."""
    if len(tag) != PERIOD_TAG_LENGTH or not (tag.isascii() and tag.isdigit()) or not 1 <= int(tag[2:]) <= 12:
        return None
    return f"20{tag[:2]}-{tag[2:]}"
