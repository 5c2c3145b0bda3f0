"""Webhook event markers: ``WEBHOOK#{event id}`` / ``EVENT``, written once per Stripe event.

The marker is the first action of the event's transaction, put only if absent, so a redelivered event
changes nothing. It expires (TTL ``expires_at``) after 30 days: longer than Stripe keeps redelivering (3).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tollgate.dal import tablekeys as tk

EVENT_RETENTION = timedelta(days=30)


def seen(table: Any, event_id: str) -> bool:
    """Whether the event has been applied already (strongly consistent)."""
    return "Item" in table.get_item(Key=tk.webhook_event_key(event_id), ConsistentRead=True)


def marker_item(table_name: str, event_id: str, event_type: str, *, now: datetime) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": table_name,
            "Item": {
                **tk.webhook_event_key(event_id),
                "kind": "webhook_event",
                "event_type": event_type,
                "received_at": now.isoformat(),
                tk.TTL_ATTRIBUTE: int((now + EVENT_RETENTION).timestamp()),
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }
