"""Prepaid credits: what a customer has bought, and what is left of it.

A prepaid plan (``billing: prepaid``) sells credits at its ``price_per_credit``. Each addition to a
customer's balance is a :class:`TopUp` named by a reference (a Stripe payment, a bank transfer's id): the
store adds it in the same transaction that records it, on the condition that the reference is new, so it
lands exactly once however often it is sent. Every request then draws its credits from the balance in the
write that counts it (``tollgate.metering.dynamo.DynamoUsageCounter.draw``): the balance never goes below
zero, and what was drawn in a period is on its statement as a line of amount 0 (paid when bought).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tollgate.domain.models import Identifier

REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$"


class TopUpSource(StrEnum):
    MANUAL = "manual"  # added by the provider (`tollgate credits add`): a bank transfer, a goodwill gesture


class TopUp(BaseModel):
    """Credits added to a customer's prepaid balance, once per ``reference``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customer_id: Identifier
    reference: Annotated[str, Field(pattern=REFERENCE_PATTERN)]
    credits: Annotated[int, Field(gt=0, le=10**15)]
    source: TopUpSource = TopUpSource.MANUAL
    note: Annotated[str, Field(max_length=500)] | None = None
    created_at: datetime


class Balance(BaseModel):
    """A customer's prepaid balance as the wallet holds it."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    credits: int = 0  # what requests can still draw
    bought: int = 0  # every credit ever added

    @property
    def drawn(self) -> int:
        return self.bought - self.credits
