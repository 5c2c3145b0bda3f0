"""The single-table key design. Standard library only: the authorizer builds its keys from here.

See docs/data-model.md for the access patterns. Every item has ``pk`` and ``sk``; customer profiles and API
keys are also in ``gsi1`` (``gsi1pk``/``gsi1sk``) so they can be listed; so are open payment failures and
prepaid lots with an expiry the sweep has not settled yet, while they are (sparse entries).
"""

from __future__ import annotations

from datetime import UTC, datetime

PK = "pk"
SK = "sk"
GSI1 = "gsi1"
GSI1_PK = "gsi1pk"
GSI1_SK = "gsi1sk"
TTL_ATTRIBUTE = "expires_at"

COUNTER_SK = "COUNTER"
CREDITS = "credits"
REQUESTS = "requests"
ROUTES_PK = "ROUTES"  # the route registry: which route each counter attribute code stands for
CUSTOMERS_INDEX_PK = "CUSTOMERS"
PLANS_INDEX_PK = "PLANS"
DUNNING_INDEX_PK = "DUNNING"  # open payment failures, oldest first
CLOSE_SK_PREFIX = "CLOSE#"
AUDIT_SK_PREFIX = "AUDIT#"
REFUND_SK_PREFIX = "REFUND#"  # a refunded request's marker: REFUND#{period}#{request id} (dal.refunds)
DUNNING_SK_PREFIX = "DUNNING#"
KEY_GSI1_SK_PREFIX = "KEY#"


PLAN_VERSION_SK_PREFIX = "VERSION#"


def plan_pk(plan_id: str) -> str:
    return f"PLAN#{plan_id}"


def plan_key(plan_id: str, version: int) -> dict[str, str]:
    return {PK: plan_pk(plan_id), SK: f"{PLAN_VERSION_SK_PREFIX}{version:06d}"}


CUSTOMER_PK_PREFIX = "CUSTOMER#"
WALLET_PK_PREFIX = "WALLET#"


def customer_pk(customer_id: str) -> str:
    """The partition of a customer's profile, close records, audit trail, payment failures and top-ups."""
    return f"{CUSTOMER_PK_PREFIX}{customer_id}"


def customer_key(customer_id: str) -> dict[str, str]:
    return {PK: customer_pk(customer_id), SK: "PROFILE"}


def api_key_key(key_hash: str) -> dict[str, str]:
    return {PK: f"KEY#{key_hash}", SK: "KEY"}


COUNTER_PK_PREFIX = "USAGE#"


def counter_key(customer_id: str, period: str, shard: int) -> dict[str, str]:
    """One usage counter item: its own partition per (customer, period, shard), so shards spread the load."""
    return {PK: f"{COUNTER_PK_PREFIX}{customer_id}#{period}#{shard}", SK: COUNTER_SK}


def wallet_key(customer_id: str) -> dict[str, str]:
    """A prepaid customer's balance and usage counters (``tollgate.dal.counter_item``): one item, in its own
    partition like a counter, so the draw and the count are one conditional write."""
    return {PK: f"{WALLET_PK_PREFIX}{customer_id}", SK: "WALLET"}


TOP_UP_SK_PREFIX = "TOPUP#"


def top_up_key(customer_id: str, reference: str) -> dict[str, str]:
    """One addition to a customer's prepaid balance, by its reference (a payment, a grant): it lands once."""
    return {PK: customer_pk(customer_id), SK: f"{TOP_UP_SK_PREFIX}{reference}"}


# Prepaid lots with an expiry that the sweep has not settled yet are in gsi1 under one key, soonest expiry
# first (sparse: the entry is added with the top-up and removed when the lot is settled), so the sweep finds
# the lots due without scanning the table.
EXPIRING_INDEX_PK = "EXPIRING"
LOT_EXPIRES_AT = "lot_expires_at"  # a top-up's expiry (ISO 8601): not `expires_at`, the table's TTL attribute


def _index_time(moment: datetime) -> str:
    """A fixed-width UTC time (``2026-12-15T12:00:00.000000Z``): such strings sort as the times do."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def expiring_lot_sort_key(expires_at: datetime, customer_id: str, reference: str) -> str:
    """A lot's ``gsi1sk`` under :data:`EXPIRING_INDEX_PK`, its expiry first (ids and references hold no #)."""
    return f"{_index_time(expires_at)}#{customer_id}#{reference}"


def due_lots_bound(now: datetime) -> str:
    """Every lot expiring at or before ``now`` has a ``gsi1sk`` below this (``$`` sorts right after ``#``)."""
    return f"{_index_time(now)}$"


def close_key(customer_id: str, period: str, part: int = 0) -> dict[str, str]:
    """The record of a period's close (``part`` 0), or of its ``part``-th threshold invoice."""
    if part:
        return {PK: customer_pk(customer_id), SK: f"{threshold_prefix(period)}{part:03d}"}
    return {PK: customer_pk(customer_id), SK: f"{CLOSE_SK_PREFIX}{period}"}


THRESHOLD_SK_PREFIX = "THRESHOLD#"


def threshold_prefix(period: str) -> str:
    """The sort key prefix of a period's threshold invoices (numbered 001, 002...: they sort in order)."""
    return f"{THRESHOLD_SK_PREFIX}{period}#"


def audit_key(customer_id: str, at_iso: str, event_id: str) -> dict[str, str]:
    return {PK: customer_pk(customer_id), SK: f"{AUDIT_SK_PREFIX}{at_iso}#{event_id}"}


def failure_key(customer_id: str, invoice_id: str) -> dict[str, str]:
    """One failing invoice of a customer (dunning)."""
    return {PK: customer_pk(customer_id), SK: f"{DUNNING_SK_PREFIX}{invoice_id}"}


def webhook_event_key(event_id: str) -> dict[str, str]:
    return {PK: f"WEBHOOK#{event_id}", SK: "EVENT"}


CLOSE_RUN_PK_PREFIX = "CLOSE_RUN#"


def close_run_key(period: str) -> dict[str, str]:
    """The close starter's progress through the customers for one period (``tollgate.dal.close_runs``)."""
    return {PK: f"{CLOSE_RUN_PK_PREFIX}{period}", SK: "RUN"}


def route_name_key(code: str, route: str) -> dict[str, str]:
    """One route registry item: ``code`` (``tollgate.dal.counter_item.route_code``) stands for ``route``."""
    return {PK: ROUTES_PK, SK: f"{code}#{route}"}


GRANT_SK_PREFIX = "GRANT#"


def credit_grant_key(customer_id: str, grant_id: str) -> dict[str, str]:
    """One credit grant of a customer (``tollgate.domain.credit_grants``), in the customer's partition."""
    return {PK: customer_pk(customer_id), SK: f"{GRANT_SK_PREFIX}{grant_id}"}
