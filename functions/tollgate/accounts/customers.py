"""A customer's lifecycle: create (with its Stripe customer), suspend, resume, status history.

Creating a customer touches two systems that share no transaction, so it goes in an order that can be
re-run: the Tollgate profile is written first (without a Stripe id), then the Stripe customer is created with
an idempotency key derived from the Tollgate id, then the profile is linked to it. If anything fails half
way, running ``create`` again for the same id finishes the job from the stored profile, and Stripe replays
the first answer rather than making a second customer.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from tollgate.billing.dunning.service import waive_failures
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import Customer, CustomerStatus, sharding_problem
from tollgate.errors import AlreadyExistsError, InvalidInputError, StripeLinkError

MANUAL = "manual"  # status_reason of a suspension by the provider: only the provider lifts it
CLI_CAUSE = "cli"


def stripe_idempotency_key(customer_id: str) -> str:
    return f"tollgate-customer-{customer_id}"


@dataclass(frozen=True)
class CreatedCustomer:
    customer: Customer
    resumed: bool  # True: the profile already existed without a Stripe customer and was linked now


def create_customer(
    store: TollgateStore,
    stripe_client: stripe.StripeClient,
    *,
    customer_id: str,
    name: str,
    email: str,
    plan_id: str,
    plan_version: int | None = None,
    counter_shards: int = 1,
    now: datetime,
) -> CreatedCustomer:
    """Create a customer on a plan (its latest version unless ``plan_version``) and its Stripe customer."""
    plan = store.get_plan(plan_id, plan_version)  # NotFoundError for an unknown plan or version
    problem = sharding_problem(plan, counter_shards)
    if problem is not None:
        raise InvalidInputError(problem)
    profile = Customer(
        id=customer_id,
        name=name,
        email=email,
        plan_id=plan.id,
        plan_version=plan.version,
        counter_shards=counter_shards,
        created_at=now,
    )
    resumed = False
    try:
        store.put_customer(profile)
    except AlreadyExistsError:
        existing = store.get_customer(customer_id)
        if existing.stripe_customer_id is not None:
            raise
        profile, resumed = existing, True  # an earlier attempt stopped before Stripe: finish it
    try:
        stripe_customer = stripe_client.v1.customers.create(
            params={
                "name": profile.name,
                "email": profile.email,
                "metadata": {"tollgate_customer_id": profile.id},
            },
            options={"idempotency_key": stripe_idempotency_key(profile.id)},
        )
    except stripe.StripeError as error:
        detail = " ".join((error.user_message or str(error) or type(error).__name__).split())
        raise StripeLinkError(
            f"customer {profile.id!r} is stored but its Stripe customer could not be created ({detail}); "
            "run the same command again to finish"
        ) from error
    linked = store.update_customer(
        profile, profile.model_copy(update={"stripe_customer_id": stripe_customer.id})
    )
    return CreatedCustomer(customer=linked, resumed=resumed)


def suspend_customer(
    store: TollgateStore,
    customer_id: str,
    *,
    now: datetime,
    cause: str = CLI_CAUSE,
    event_id: str | None = None,
) -> bool:
    """Suspend by hand (reason ``manual``). A payment does not lift it. False: it already was."""
    customer = store.get_customer(customer_id)
    if customer.status is CustomerStatus.SUSPENDED and customer.status_reason == MANUAL:
        return False
    return store.set_customer_status(
        customer_id,
        CustomerStatus.SUSPENDED,
        reason=MANUAL,
        cause=cause,
        at=now,
        event_id=event_id or f"{cause}-{uuid.uuid4().hex}",
    )


def resume_customer(
    store: TollgateStore,
    customer_id: str,
    *,
    now: datetime,
    cause: str = CLI_CAUSE,
    event_id: str | None = None,
) -> bool:
    """Restore access whatever the suspension's reason. Open payment failures are waived, so the dunning
    sweep does not suspend the customer again for them. False: the customer was already active."""
    customer = store.get_customer(customer_id)
    if customer.status is CustomerStatus.ACTIVE:
        return False
    waive_failures(store, customer_id, now=now)
    return store.set_customer_status(
        customer_id,
        CustomerStatus.ACTIVE,
        reason=None,
        cause=cause,
        at=now,
        event_id=event_id or f"{cause}-{uuid.uuid4().hex}",
    )


@dataclass(frozen=True)
class StatusChange:
    at: datetime
    status: str
    reason: str | None
    cause: str
    event_id: str
    pay_url: str | None = None


def status_history(store: TollgateStore, customer_id: str) -> list[StatusChange]:
    """The customer's status changes from the audit trail, oldest first."""
    store.get_customer(customer_id)  # NotFoundError for an unknown customer
    changes = [_change(item) for item in store.list_audit(customer_id)]
    return sorted(changes, key=lambda change: change.at)


def _change(item: dict[str, Any]) -> StatusChange:
    return StatusChange(
        at=datetime.fromisoformat(str(item["at"])),
        status=str(item["status"]),
        reason=item.get("reason"),
        cause=str(item.get("cause", "")),
        event_id=str(item.get("event_id", "")),
        pay_url=item.get("pay_url"),
    )
