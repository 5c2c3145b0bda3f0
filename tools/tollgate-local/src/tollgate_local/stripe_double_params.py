"""Request decoding and parameter checking for the Stripe double, driven by stripe-python's own types.

stripe-python form-encodes every v1 request (``lines[0][price_data][currency]=usd``, ``expand[0]=customer``,
``metadata[k]=v``; booleans as ``true``/``false``, decimals as their ``str``). :func:`decode_form` turns those
pairs back into a tree of dicts whose leaves are strings. It does not guess which dicts are lists: a key like
``metadata[0]`` is a metadata key, not an index, so only the expected type can tell.

:func:`check_params` walks that tree against the endpoint's generated ``TypedDict`` from ``stripe.params``
(for example ``InvoiceAddLinesParams``). Each level is resolved with
``typing.get_type_hints(include_extras=True)`` and the checker understands what those files use: nested
TypedDicts, ``__required_keys__`` (Required and NotRequired), ``List[...]``, ``Dict[str, str]`` and
``UntypedStripeObject[...]`` maps, ``Literal[...]``, unions (including the ``Literal['']`` that means
"unset"), ``str``, ``int``, ``bool``, ``float`` and ``Decimal``. The result is the same tree with typed
values (``int``, ``bool``, ``Decimal``, lists); ``float`` fields are decoded as ``Decimal`` too, so no money
ever goes through a float.

Like the real API it answers 400 ``invalid_request_error`` naming the parameter for: an unknown parameter
(``Received unknown parameter: lines[0][price_data][unit_amountt]. Did you mean unit_amount?``), a missing
required one (``Missing required param: lines.``), a value outside an enum, and a malformed integer, boolean
or decimal (decimals are plain digits: ``500``, ``0.042``; exponent forms such as ``5E+2``, which
``str(Decimal)`` can produce, are refused as ``Invalid decimal``). The keys of ``RequestOptions``
(``idempotency_key``, ``api_key``, ...), which stripe-python's TypedDicts inherit but sends as headers, are
not accepted as parameters.

One deliberate reading of the types: the generated files widen enums for forward compatibility
(``Literal['charge_automatically', 'send_invoice']|str``), while the API itself rejects any other value. A
union that holds a non-empty ``Literal`` is therefore checked as that closed enum, even when ``str`` is also
in the union. A union whose only literal is ``''`` (``Literal['']|str``) stays an open string.
"""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeAlias, Union

from stripe import StripeObject
from stripe._request_options import RequestOptions

from tollgate_local.stripe_double_errors import StripeApiError, invalid_request

Tree: TypeAlias = str | dict[str, "Tree"]
"""A decoded request: nested dicts whose leaves are the raw strings that were sent."""

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SEGMENT = re.compile(r"\[([^\[\]]*)\]")
_INTEGER = re.compile(r"^-?\d+$")
_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")
_OPTION_KEYS = frozenset(RequestOptions.__annotations__)
_QUALIFIERS = {typing.Required, typing.NotRequired, typing.Annotated}
_SCALAR_WORDS: dict[Any, str] = {
    str: "string",
    int: "integer",
    bool: "boolean",
    float: "decimal",
    Decimal: "decimal",
}


def param_name(segments: Iterable[str]) -> str:
    """``["lines", "0", "amount"]`` -> ``lines[0][amount]``: how Stripe names a nested parameter."""
    first, *rest = segments
    return first + "".join(f"[{segment}]" for segment in rest)


# ----------------------------------------------------------------------------------------------- decoding


def decode_form(pairs: Iterable[tuple[str, str]]) -> dict[str, Tree]:
    """Rebuild the parameter tree from form pairs; ``a[]`` appends, a repeated plain key keeps the last."""
    root: dict[str, Tree] = {}
    for key, value in pairs:
        _insert(root, _split_key(key), value)
    return root


def _split_key(key: str) -> list[str]:
    match = _KEY.match(key)
    if match is None:
        return [key]
    return [match.group(1), *_SEGMENT.findall(match.group(2))]


def _insert(root: dict[str, Tree], segments: list[str], value: str) -> None:
    node = root
    for depth, segment in enumerate(segments):
        key = segment if segment != "" else str(len(node))
        here = param_name([*segments[:depth], key])
        if depth == len(segments) - 1:
            if isinstance(node.get(key), dict):
                raise invalid_request(f"Invalid hash: {here} was sent both as a value and as a hash", here)
            node[key] = value
            return
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise invalid_request(f"Invalid hash: {here} was sent both as a value and as a hash", here)
        node = child


def listify(tree: Tree) -> Any:
    """A readable copy of a raw tree for introspection: dicts keyed ``0..n-1`` become lists."""
    if isinstance(tree, str):
        return tree
    keys = list(tree)
    if keys and sorted(keys, key=_index_or_minus_one) == [str(i) for i in range(len(keys))]:
        return [listify(tree[str(i)]) for i in range(len(keys))]
    return {key: listify(child) for key, child in tree.items()}


def _index_or_minus_one(key: str) -> int:
    return int(key) if key.isdigit() else -1


# ----------------------------------------------------------------------------------------------- types


@functools.cache
def typeddict_fields(schema: type) -> dict[str, tuple[Any, bool]]:
    """``{name: (type, required)}`` for one generated TypedDict, without the inherited RequestOptions keys.

    The inherited keys are dropped before evaluation: their annotations name types that stripe only imports
    under ``TYPE_CHECKING``, so ``get_type_hints`` on the whole class would fail.
    """
    annotations = dict(schema.__annotations__)
    if RequestOptions in getattr(schema, "__orig_bases__", ()):
        for key in _OPTION_KEYS:
            annotations.pop(key, None)
    holder = type(
        f"_{schema.__name__}Fields", (), {"__annotations__": annotations, "__module__": schema.__module__}
    )
    hints = typing.get_type_hints(holder, include_extras=True)
    required: frozenset[str] = getattr(schema, "__required_keys__", frozenset())
    return {name: (_unwrap(hint), name in required) for name, hint in hints.items()}


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) in _QUALIFIERS:
        tp = typing.get_args(tp)[0]
    return tp


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, dict) and hasattr(tp, "__required_keys__")


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _is_literal(tp: Any) -> bool:
    return typing.get_origin(tp) is Literal


def _is_list(tp: Any) -> bool:
    return typing.get_origin(tp) is list


def _is_mapping(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    return origin is dict or (isinstance(origin, type) and issubclass(origin, StripeObject))


def _is_container(tp: Any) -> bool:
    return _is_typeddict(tp) or _is_list(tp) or _is_mapping(tp)


def _word(tp: Any) -> str:
    if _is_list(tp):
        return "array"
    if _is_container(tp):
        return "hash"
    return _SCALAR_WORDS.get(tp, "value")


# ----------------------------------------------------------------------------------------------- checking


def check_params(tree: dict[str, Tree], schema: type) -> dict[str, Any]:
    """Check a decoded request against a ``stripe.params`` TypedDict; return it with typed values."""
    return _check_typeddict(tree, schema, "")


def _child(param: str, key: str) -> str:
    return key if not param else f"{param}[{key}]"


def _check(value: Tree, tp: Any, param: str) -> Any:
    tp = _unwrap(tp)
    if _is_typeddict(tp):
        return _check_typeddict(value, tp, param)
    if _is_union(tp):
        return _check_union(value, typing.get_args(tp), param)
    if _is_literal(tp):
        return _check_union(value, (tp,), param)
    if _is_list(tp):
        return _check_list(value, typing.get_args(tp)[0], param)
    if _is_mapping(tp):
        return _check_mapping(value, typing.get_args(tp)[-1], param)
    if tp in _SCALAR_WORDS:
        return _check_scalar(value, tp, param)
    if tp is Any:
        return value
    raise TypeError(f"the Stripe double cannot check {param} of type {tp!r}")


def _check_typeddict(value: Tree, schema: type, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid hash: {param} must be a hash", param)
    fields = typeddict_fields(schema)
    for key in value:
        if key not in fields:
            raise invalid_request(_unknown_message(_child(param, key), key, fields), _child(param, key))
    for key, (_, required) in fields.items():
        if required and key not in value:
            raise invalid_request(f"Missing required param: {_child(param, key)}.", _child(param, key))
    return {key: _check(child, fields[key][0], _child(param, key)) for key, child in value.items()}


def _unknown_message(param: str, key: str, fields: dict[str, Any]) -> str:
    message = f"Received unknown parameter: {param}"
    close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.75)
    return f"{message}. Did you mean {close[0]}?" if close else message


def _check_union(value: Tree, members: tuple[Any, ...], param: str) -> Any:
    literals = [v for member in members if _is_literal(member) for v in typing.get_args(member)]
    others = [_unwrap(member) for member in members if not _is_literal(member)]
    if isinstance(value, dict):
        return _check_container_member(value, others, param)
    if value in literals:
        return value
    scalars = [member for member in others if member in _SCALAR_WORDS and member is not str]
    for member in scalars:
        try:
            return _check_scalar(value, member, param)
        except StripeApiError:
            continue
    enum = [v for v in literals if v != ""]
    if enum:
        raise invalid_request(f"Invalid {param}: must be one of {_one_of(enum)}", param)
    if str in others:
        return value
    if scalars:
        return _check_scalar(value, scalars[0], param)
    containers = [member for member in others if _is_container(member)]
    word = _word(containers[0]) if containers else "value"
    raise invalid_request(f"Invalid {word}: {param} must be {'an' if word == 'array' else 'a'} {word}", param)


def _check_container_member(value: dict[str, Tree], others: list[Any], param: str) -> Any:
    containers = [member for member in others if _is_container(member)]
    if not containers:
        word = _word(others[0]) if others else "value"
        raise invalid_request(f"Invalid {word}: {param} must be a {word}, not a hash", param)
    lists = [member for member in containers if _is_list(member)]
    if lists and all(key.isdigit() for key in value):
        return _check(value, lists[0], param)
    hashes = [member for member in containers if not _is_list(member)]
    return _check(value, (hashes or lists)[0], param)


def _one_of(values: list[Any]) -> str:
    words = [str(v) for v in values]
    if len(words) == 1:
        return words[0]
    if len(words) == 2:
        return f"{words[0]} or {words[1]}"
    return ", ".join(words[:-1]) + f", or {words[-1]}"


def _check_list(value: Tree, item: Any, param: str) -> list[Any]:
    if not isinstance(value, dict) or not all(key.isdigit() for key in value):
        raise invalid_request(f"Invalid array: {param} must be an array", param)
    indexes = sorted(int(key) for key in value)
    if indexes != list(range(len(indexes))):
        raise invalid_request(f"Invalid array: {param} has gaps in its indexes {indexes}", param)
    return [_check(value[str(i)], item, f"{param}[{i}]") for i in indexes]


def _check_mapping(value: Tree, item: Any, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid_request(f"Invalid hash: {param} must be a hash", param)
    return {key: _check(child, item, _child(param, key)) for key, child in value.items()}


def _check_scalar(value: Tree, tp: Any, param: str) -> Any:
    word = _SCALAR_WORDS[tp]
    if not isinstance(value, str):
        raise invalid_request(f"Invalid {word}: {param} must be a {word}, not a hash", param)
    if tp is str:
        return value
    if tp is int and _INTEGER.match(value):
        return int(value)
    if tp is bool and value in ("true", "false"):
        return value == "true"
    if tp in (Decimal, float) and _DECIMAL.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern already rules these out
            pass
    raise invalid_request(f"Invalid {word}: {value}", param)
