"""The close queue's message: one (customer, period) to close. The starter writes it, the worker reads it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator

from tollgate.domain.models import Identifier
from tollgate.domain.periods import parse_period


class CloseRequest(BaseModel):
    """Message body: ``{"customer_id": "acme", "period": "2026-10"}``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: Identifier
    period: str

    @field_validator("period")
    @classmethod
    def _period(cls, period: str) -> str:
        parse_period(period)
        return period
