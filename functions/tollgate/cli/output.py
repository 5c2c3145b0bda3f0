"""Printing for the CLI: rich consoles, small formatters, and the one place errors become one line each."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import stripe
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from tollgate.billing.secrets import SecretNotConfiguredError
from tollgate.domain.periods import parse_period
from tollgate.domain.plan_files import PlanFileError, validation_problems
from tollgate.errors import InvalidInputError, TollgateError

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")


def out() -> Console:
    """stdout, looked up at print time (so CliRunner's capture and pipes see it)."""
    return Console(highlight=False)


def err() -> Console:
    return Console(stderr=True, highlight=False)


def table(*columns: str, title: str | None = None) -> Table:
    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    return grid


def when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``2d``, ``1h30m`` or ``0``."""
    cleaned = text.strip().lower()
    if cleaned == "0":
        return timedelta(0)
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None:
        raise InvalidInputError(f"--overlap: {text!r} is not a duration like 30m, 1h, 2d or 1h30m")
    days, hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


def checked_period(period: str, option: str = "--period") -> str:
    try:
        parse_period(period)
    except ValueError as error:
        raise InvalidInputError(f"{option}: {error}") from error
    return period


def error_lines(error: BaseException) -> list[str] | None:
    """The lines to print for an error a user can act on; None for anything else (a bug: let it raise)."""
    if isinstance(error, PlanFileError):
        return list(error.problems)
    if isinstance(error, InvalidInputError):  # one line per bad field
        return str(error).splitlines() or [type(error).__name__]
    if isinstance(error, TollgateError):
        return [_one_line(str(error)) or type(error).__name__]
    if isinstance(error, ValidationError):
        return validation_problems(error)
    if isinstance(error, SecretNotConfiguredError):
        return [f"Stripe is not configured: {error}"]
    if isinstance(error, stripe.StripeError):
        return [f"Stripe: {_one_line(error.user_message or str(error)) or type(error).__name__}"]
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "Error")
        message = error.response.get("Error", {}).get("Message", "")
        hint = " (check --stack or TABLE_NAME)" if code == "ResourceNotFoundException" else ""
        return [f"AWS {error.operation_name}: {code}: {message}{hint}"]
    if isinstance(error, BotoCoreError):
        return [f"AWS: {_one_line(str(error))}"]
    return None


def _one_line(text: str) -> str:
    return " ".join(text.split())
