"""Adding credits to a prepaid customer's balance: what ``tollgate credits add`` does.

The balance rules are in ``tollgate.domain.prepaid``; the draw is the authorizer's
(``tollgate.metering.dynamo.DynamoUsageCounter.draw``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import ValidationError

from tollgate.dal.store import TollgateStore
from tollgate.domain.prepaid import Balance, TopUp, TopUpSource
from tollgate.errors import InvalidInputError


@dataclass(frozen=True)
class CreditsAdded:
    top_up: TopUp  # as recorded: the first time its reference was added
    added: bool  # False: the reference was added before, and nothing changed now
    balance: Balance


def add_credits(
    store: TollgateStore,
    customer_id: str,
    *,
    credits: int,
    reference: str,
    now: datetime,
    note: str | None = None,
    source: TopUpSource = TopUpSource.MANUAL,
) -> CreditsAdded:
    """Add ``credits`` to a prepaid customer's balance, once per ``reference`` (a payment's id): sending the
    same reference again changes nothing, and one with other credits is refused.

    ``NotFoundError``: unknown customer; ``InvalidInputError``: the customer's plan is not prepaid, or the
    top-up is malformed."""
    customer = store.get_customer(customer_id)
    plan = store.get_plan(customer.plan_id, customer.plan_version)
    if not plan.prepaid:
        raise InvalidInputError(
            f"customer {customer_id!r} is on plan {plan.id!r}, billed in arrears: only a prepaid plan "
            "(billing: prepaid) has a balance to add credits to"
        )
    try:
        top_up = TopUp(
            customer_id=customer_id,
            reference=reference,
            credits=credits,
            source=source,
            note=note,
            created_at=now,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, problem['loc']))}: {problem['msg']}" for problem in error.errors()
        )
        raise InvalidInputError(problems) from error
    added = store.add_prepaid_credits(top_up)
    if not added:
        top_up = store.get_top_up(customer_id, reference)
        if top_up.credits != credits:
            raise InvalidInputError(
                f"reference {reference!r} already added {top_up.credits:,} credits to {customer_id}, not "
                f"{credits:,}: a reference names one top-up"
            )
    return CreditsAdded(top_up, added, store.read_balance(customer_id))
