"""Plan files: YAML or TOML text -> validated ``Plan`` models, or one error line per bad field.

A file holds one plan (its fields at the top level) or several (a list under ``plans``)::

    # plans.yaml                                  (TOML: the same fields; [[plans]] for several)
    plans:
      - id: payg
        name: Pay as you go
        price_per_credit: 0.00042
        route_costs: {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0}

Numbers with a fraction are read as ``Decimal`` straight from the text (never through a float), so a price is
exactly what the file says. Every problem is reported as ``<file>: <field>: <what is wrong>`` (with the plan's
position, ``plans[1].price_per_credit``, when the file holds several), and a file with any problem yields no
plan at all.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tollgate.domain.models import Plan
from tollgate.errors import TollgateError

YAML_SUFFIXES = frozenset({".yaml", ".yml"})
TOML_SUFFIXES = frozenset({".toml"})


class PlanFileError(TollgateError):
    """A plan file that cannot be used; ``problems`` holds one line per bad field (or one for the file)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = tuple(problems)


class _DecimalSafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that floats become ``Decimal`` (``0.1`` stays exactly 0.1)."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        value = Decimal(text)
    except InvalidOperation:  # .inf, .nan, sexagesimal: let the model refuse whatever it is
        return loader.construct_yaml_float(node)
    return value if value.is_finite() else loader.construct_yaml_float(node)


_DecimalSafeLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def field_path(loc: Sequence[int | str]) -> str:
    """pydantic's error location as people write it: ``tiers[1].price_per_credit``, ``route_costs.GET /x``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(plan)"


def validation_problems(error: ValidationError, prefix: str = "") -> list[str]:
    """One line per error: ``<prefix><field>: <message>``. pydantic's 'Value error, ' noise is dropped."""
    lines = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        loc = tuple(part for part in item["loc"] if part not in ("function-after", "function-before"))
        lines.append(f"{prefix}{field_path(loc)}: {message}")
    return lines


def parse_text(text: str, fmt: str) -> Any:
    """YAML or TOML text -> plain data; decimals stay ``Decimal``. Raises ``ValueError`` on bad syntax."""
    if fmt == "toml":
        try:
            return _open_ended_tiers(tomllib.loads(text, parse_float=Decimal))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"not valid TOML: {error}") from error
    try:
        return yaml.load(text, Loader=_DecimalSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        raise ValueError(f"{where}not valid YAML: {problem}") from error


def _open_ended_tiers(data: Any) -> Any:
    """TOML has no null: a tier written without ``up_to`` is the open-ended one (``up_to: null`` in YAML)."""
    plans = data.get("plans") if isinstance(data, dict) and "plans" in data else [data]
    for plan in plans if isinstance(plans, list) else []:
        tiers = plan.get("tiers") if isinstance(plan, dict) else None
        for tier in tiers if isinstance(tiers, list) else []:
            if isinstance(tier, dict):
                tier.setdefault("up_to", None)
    return data


def format_of(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in YAML_SUFFIXES:
        return "yaml"
    if suffix in TOML_SUFFIXES:
        return "toml"
    raise PlanFileError([f"{path.name}: a plan file ends in .yaml, .yml or .toml"])


def plans_from_data(data: Any, source: str) -> list[Plan]:
    """Validate parsed file content: a single plan mapping, or ``{"plans": [...]}``."""
    if not isinstance(data, dict) or not data:
        raise PlanFileError([f"{source}: expected a plan (a mapping of fields) or a 'plans' list"])
    if "plans" in data:
        entries = data["plans"]
        extra = sorted(set(data) - {"plans"})
        if extra:
            raise PlanFileError([f"{source}: {name}: unexpected next to 'plans'" for name in extra])
        if not isinstance(entries, list) or not entries:
            raise PlanFileError([f"{source}: plans: expected a non-empty list of plans"])
        labelled = [(f"plans[{index}].", entry) for index, entry in enumerate(entries)]
    else:
        labelled = [("", data)]

    plans: list[Plan] = []
    problems: list[str] = []
    for label, entry in labelled:
        if not isinstance(entry, dict):
            problems.append(f"{source}: {label.rstrip('.')}: expected a mapping of plan fields")
            continue
        try:
            plans.append(Plan.model_validate(entry))
        except ValidationError as error:
            problems.extend(validation_problems(error, prefix=f"{source}: {label}"))
    ids = [plan.id for plan in plans]
    problems.extend(
        f"{source}: id: plan {i!r} appears twice" for i in sorted({i for i in ids if ids.count(i) > 1})
    )
    if problems:
        raise PlanFileError(problems)
    return plans


def load_plan_file(path: Path | str) -> list[Plan]:
    """Read and validate a plan file; raises :class:`PlanFileError` listing every problem."""
    path = Path(path)
    fmt = format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PlanFileError([f"{path.name}: cannot read the file: {error.strerror or error}"]) from error
    except UnicodeDecodeError as error:
        raise PlanFileError([f"{path.name}: not UTF-8 text"]) from error
    try:
        data = parse_text(text, fmt)
    except ValueError as error:
        raise PlanFileError([f"{path.name}: {error}"]) from error
    return plans_from_data(data, path.name)
