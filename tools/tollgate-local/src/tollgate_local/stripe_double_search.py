"""The part of Stripe's search query language the Stripe double understands (``GET /v1/invoices/search``).

A query is one or more clauses, ``field:value``, joined by spaces (implicit ``AND``), by ``AND``, or by ``OR``
(keywords case-insensitive; ``AND`` and ``OR`` cannot be mixed; at most 10 clauses). A clause may be negated
with a leading ``-``. Fields:

* strings: ``customer``, ``currency``, ``number``, ``status``, ``subscription``, ``receipt_number``,
  ``last_finalization_error_code``, ``last_finalization_error_type``;
* ``metadata['key']`` (or ``metadata["key"]``);
* numbers: ``total``, ``created``.

Operators: ``:`` exact match (case-insensitive for strings, like Stripe), ``~`` substring (strings, at least
three characters), ``>``, ``<``, ``>=``, ``<=`` (numbers only). Values are quoted with ``'`` or ``"`` (a
backslash escapes the quote) or bare; the bare word ``null`` matches a missing value or metadata key.

Not emulated: any other field, and Stripe's indexing delay (see ``StripeDouble.search_lag``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from tollgate_local.stripe_double_errors import StripeApiError, invalid_request

MAX_CLAUSES = 10
STRING_FIELDS = frozenset(
    {
        "customer",
        "currency",
        "number",
        "status",
        "subscription",
        "receipt_number",
        "last_finalization_error_code",
        "last_finalization_error_type",
    }
)
NUMERIC_FIELDS = frozenset({"total", "created"})

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    | (?P<clause>
        (?P<negate>-)?
        (?P<field>metadata\[(?P<mquote>['"])(?P<mkey>(?:\\.|(?!(?P=mquote)).)*)(?P=mquote)\]|[a-z_][a-z0-9_.]*)
        (?P<op>>=|<=|:|~|>|<)
        (?:(?P<vquote>['"])(?P<quoted>(?:\\.|(?!(?P=vquote)).)*)(?P=vquote)|(?P<bare>[^\s'"]+))
      )
    | (?P<word>[A-Za-z]+)
    """,
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Clause:
    """One ``[-]field op value`` term; ``value`` is ``None`` for the bare word ``null``."""

    field: str
    metadata_key: str | None
    op: str
    value: str | None
    negate: bool


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    any_of: bool  # True for OR, False for AND

    def matches(self, invoice: dict[str, Any]) -> bool:
        results = (_clause_matches(clause, invoice) for clause in self.clauses)
        return any(results) if self.any_of else all(results)


def _error(detail: str) -> StripeApiError:
    return invalid_request(f"Invalid search query: {detail}", "query")


def parse_query(text: str) -> Query:
    """Parse an invoice search query, or raise a 400 naming ``query``."""
    clauses: list[Clause] = []
    joiners: set[str] = set()
    expect_clause = True
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise _error(f"unexpected text at character {position}: {text[position : position + 20]!r}")
        position = match.end()
        if match.group("space"):
            continue
        if match.group("word"):
            _join(match.group("word"), not expect_clause, joiners)
            expect_clause = True
            continue
        if not expect_clause:
            _join("AND", True, joiners)  # whitespace between two clauses is an implicit AND
        clauses.append(_clause(match))
        expect_clause = False
    if not clauses or expect_clause:
        raise _error("a query needs at least one clause and cannot end with AND or OR")
    if len(clauses) > MAX_CLAUSES:
        raise _error(f"at most {MAX_CLAUSES} clauses are allowed, got {len(clauses)}")
    return Query(tuple(clauses), any_of=joiners == {"OR"})


def _join(word: str, after_clause: bool, joiners: set[str]) -> None:
    keyword = word.upper()
    if keyword not in ("AND", "OR") or not after_clause:
        raise _error(f"unexpected word {word!r}; clauses look like field:'value'")
    joiners.add(keyword)
    if len(joiners) > 1:
        raise _error("AND and OR cannot be combined in one query")


def _clause(match: re.Match[str]) -> Clause:
    field = match.group("field")
    metadata_key = None
    if match.group("mquote"):
        field, metadata_key = "metadata", _ESCAPE.sub(r"\1", match.group("mkey"))
    op = match.group("op")
    quoted = match.group("vquote") is not None
    value: str | None = _ESCAPE.sub(r"\1", match.group("quoted")) if quoted else match.group("bare")
    if not quoted and value == "null":
        value = None
    clause = Clause(field, metadata_key, op, value, negate=bool(match.group("negate")))
    _validate(clause)
    return clause


def _validate(clause: Clause) -> None:
    if clause.field not in STRING_FIELDS | NUMERIC_FIELDS and clause.metadata_key is None:
        raise _error(f"field '{clause.field}' is an unsupported search field for resource `invoices`")
    numeric = clause.field in NUMERIC_FIELDS
    if clause.op in (">", "<", ">=", "<=") and not numeric:
        raise _error(f"the {clause.op} operator only applies to numeric fields, not '{clause.field}'")
    if clause.op == "~" and numeric:
        raise _error(f"the ~ operator only applies to string fields, not '{clause.field}'")
    if clause.op == "~" and (clause.value is None or len(clause.value) < 3):
        raise _error("substring (~) matches need at least 3 characters")
    if numeric and clause.value is not None and _number(clause.value) is None:
        raise _error(f"'{clause.field}' is numeric; {clause.value!r} is not a number")


def _number(text: str) -> Decimal | None:
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def _field_value(clause: Clause, invoice: dict[str, Any]) -> Any:
    if clause.metadata_key is not None:
        return (invoice.get("metadata") or {}).get(clause.metadata_key)
    value = invoice.get(clause.field)
    if isinstance(value, dict):  # an expanded object, e.g. customer
        return value.get("id")
    return value


_COMPARE: dict[str, Callable[[Decimal, Decimal], bool]] = {
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ":": lambda a, b: a == b,
}


def _clause_matches(clause: Clause, invoice: dict[str, Any]) -> bool:
    actual = _field_value(clause, invoice)
    if clause.value is None or actual is None:
        hit = clause.value is None and actual is None and clause.op == ":"
    elif clause.field in NUMERIC_FIELDS:
        hit = _COMPARE[clause.op](Decimal(actual), Decimal(clause.value))
    elif clause.op == "~":
        hit = clause.value.lower() in str(actual).lower()
    else:
        hit = clause.value.lower() == str(actual).lower()
    return hit != clause.negate
