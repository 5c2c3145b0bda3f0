"""What every deployable's settings share: the table's environment variable, and how values are read.

Each deployable has its own typed settings, read once from the environment (``from_env``):
``tollgate.metering.settings``, ``tollgate.billing.close.settings``, ``tollgate.billing.webhooks.settings``,
``tollgate.usage_api.settings``. Those modules state every variable's name and default; the CDK constructs
import them (``tollgate.cdk.constants``), so a function and its infrastructure cannot disagree.

Standard library only: the authorizer imports this module.
"""

from __future__ import annotations

from collections.abc import Mapping

TABLE_NAME = "TABLE_NAME"  # the Tollgate table, read by every function


class SettingsError(ValueError):
    """An environment variable is missing or does not parse (the message names it)."""


def required(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SettingsError(f"{name} must be set")
    return value


def optional(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name, "").strip() or None


def flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    """``true`` (any case) is true; unset is ``default``; anything else is false."""
    raw = env.get(name, "").strip()
    return default if not raw else raw.lower() == "true"


def seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as error:
        raise SettingsError(f"{name} must be a number of seconds, not {raw!r}") from error
    if value < 0:
        raise SettingsError(f"{name} must not be negative, not {raw!r}")
    return value


def whole_number(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    raw = env.get(name, "").strip() or str(default)
    if not raw.isdigit():
        raise SettingsError(f"{name} must be a whole number of {unit}, not {raw!r}")
    return int(raw)
