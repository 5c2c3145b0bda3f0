"""The record of one (customer, period) close: the state machine the period close drives.

    rated -> invoice_created -> finalized        (a charge)
    rated -> no_charge                           (nothing to bill: no Stripe call at all)

Each transition is a conditional write on ``status`` (and ``version``), so a replayed step finds the record
already moved and does nothing twice. ``invoice_status`` follows Stripe's webhooks (open, paid, void,
uncollectible) after finalization.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from boto3.dynamodb.conditions import Key
from pydantic import BaseModel, ConfigDict

from tollgate import tablekeys as tk
from tollgate.rating import Statement
from tollgate.store import item_fields


class CloseStatus(StrEnum):
    RATED = "rated"
    INVOICE_CREATED = "invoice_created"
    FINALIZED = "finalized"
    NO_CHARGE = "no_charge"


class PeriodClose(BaseModel):
    model_config = ConfigDict(frozen=True)

    customer_id: str
    period: str
    status: CloseStatus
    version: int = 1
    statement: Statement
    billed_credits: int  # this period's credits billed so far (the close, plus later adjustments)
    adjusted_periods: dict[str, int] = {}  # earlier period -> late credits this invoice bills for it
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    amount_due: int | None = None
    invoice_status: str | None = None
    total_mismatch: bool = False
    attempts: int = 0
    last_error: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def total(self) -> int:
        return self.statement.total


def close_from_item(item: dict[str, Any]) -> PeriodClose:
    return PeriodClose.model_validate(item_fields(item))


def get_close(table: Any, customer_id: str, period: str) -> PeriodClose | None:
    """The close record of one customer-period, or None. ``table`` is a boto3 Table resource."""
    item = table.get_item(Key=tk.close_key(customer_id, period), ConsistentRead=True).get("Item")
    return None if item is None else close_from_item(item)


def list_closes(table: Any, customer_id: str, limit: int = 12) -> list[PeriodClose]:
    """A customer's most recent close records, newest period first."""
    items = table.query(
        KeyConditionExpression=Key(tk.PK).eq(f"CUSTOMER#{customer_id}") & Key(tk.SK).begins_with("CLOSE#"),
        ScanIndexForward=False,
        Limit=limit,
    )["Items"]
    return [close_from_item(item) for item in items]
