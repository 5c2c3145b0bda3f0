"""Giving a customer free credits, and a trial: what ``tollgate grants`` and ``tollgate customers trial`` do.

The rules for using them are in ``tollgate.domain.credit_grants`` (and ``rating.rate_parts`` for the trial).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import ValidationError

from tollgate.dal.store import TollgateStore
from tollgate.domain.credit_grants import CreditGrant, GrantKind, new_grant_id
from tollgate.domain.models import Customer
from tollgate.errors import InvalidInputError


def add_grant(
    store: TollgateStore,
    customer_id: str,
    *,
    credits: int,
    now: datetime,
    schedule: GrantKind = GrantKind.ONE_TIME,
    description: str = "free credits",
    starts: datetime | None = None,
    expires: datetime | None = None,
) -> CreditGrant:
    """Give ``customer_id`` free credits from ``starts`` (default: now). ``NotFoundError``: unknown customer;
    ``InvalidInputError``: a grant that could never be used."""
    store.get_customer(customer_id)
    if expires is not None and expires <= now:
        raise InvalidInputError(f"--expires {expires.isoformat()} has passed: the grant could never be used")
    try:
        grant = CreditGrant(
            grant_id=new_grant_id(),
            customer_id=customer_id,
            credits=credits,
            schedule=schedule,
            description=description,
            starts=starts or now,
            expires=expires,
            created_at=now,
        )
    except ValidationError as error:
        problems = "; ".join(problem["msg"].removeprefix("Value error, ") for problem in error.errors())
        raise InvalidInputError(problems) from error
    return store.put_credit_grant(grant)


def revoke_grant(store: TollgateStore, customer_id: str, grant_id: str, *, now: datetime) -> bool:
    """Stop a grant from now on (periods that ended before keep what it gave). False: revoked already."""
    return store.revoke_credit_grant(customer_id, grant_id, now)


def set_trial(store: TollgateStore, customer_id: str, *, ends: datetime | None) -> Customer:
    """No base fee (nor minimum commitment) is billed until ``ends``; None ends the trial's effect."""
    customer = store.get_customer(customer_id)
    if customer.trial_ends == ends:
        return customer
    return store.update_customer(customer, customer.model_copy(update={"trial_ends": ends}))
