"""Free credits: grants a provider gives a customer ("1,000 free credits on sign-up", "50,000 a month").

A grant's credits are used before paid usage: at the close they cover the period's credits right after the
included ones, and the invoice shows them on their own line (quantity the credits used, amount 0), so the
customer sees what they got. Two kinds:

* **one-time**: ``credits`` in all, used across periods until spent, revoked or expired;
* **recurring**: ``credits`` every period.

A grant applies to a period when it is in effect at some moment of it: ``starts`` before the period ends,
and ``expires`` and ``revoked_at`` (if set) after it starts. Usage is counted per period, not per request
time, so a grant that starts or ends mid-period covers that whole period's usage. What a one-time grant has
left is its credits less what earlier close records used of it (``Statement.grants_used``); late usage of an
earlier period is billed without free credits (it is billed when the grant may already be spent).

Pure functions over pydantic models; the store keeps grants in the customer's partition.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollgate.domain.periods import period_end, period_start
from tollgate.domain.rating import FreeCredits

GRANT_ID_PATTERN = r"^grt_[a-z0-9]{12}$"


class GrantKind(StrEnum):
    ONE_TIME = "one_time"
    RECURRING = "recurring"


class CreditGrant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    grant_id: Annotated[str, Field(pattern=GRANT_ID_PATTERN)]
    customer_id: str
    credits: Annotated[int, Field(gt=0)]
    schedule: GrantKind = GrantKind.ONE_TIME
    description: Annotated[str, Field(min_length=1, max_length=100)] = "free credits"
    starts: datetime
    expires: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime

    @model_validator(mode="after")
    def _expires_after_it_starts(self) -> CreditGrant:
        if self.expires is not None and self.expires <= self.starts:
            raise ValueError(
                f"expires ({self.expires.isoformat()}) must be after starts ({self.starts.isoformat()})"
            )
        return self

    def applies_to(self, period: str) -> bool:
        start, end = period_start(period), period_end(period)
        ends = min((t for t in (self.expires, self.revoked_at) if t is not None), default=None)
        return self.starts < end and (ends is None or ends > start)


def new_grant_id() -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "grt_" + "".join(secrets.choice(alphabet) for _ in range(12))


def free_credits_for(
    grants: Iterable[CreditGrant], period: str, used_before: Mapping[str, int]
) -> list[FreeCredits]:
    """The free credits each grant offers ``period``, in the order they are used: the grant that ends first,
    then the oldest. ``used_before``: credits of each one-time grant that earlier periods used."""
    offered = []
    for grant in grants:
        if not grant.applies_to(period):
            continue
        left = grant.credits
        if grant.schedule is GrantKind.ONE_TIME:
            left -= used_before.get(grant.grant_id, 0)
        if left > 0:
            offered.append((grant, left))
    offered.sort(
        key=lambda pair: (pair[0].expires is None, pair[0].expires or pair[0].starts, pair[0].created_at)
    )
    return [FreeCredits(grant.grant_id, grant.description, left) for grant, left in offered]
