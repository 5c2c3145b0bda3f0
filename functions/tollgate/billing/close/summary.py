"""What a whole-period close reports, customer by customer (``tollgate close`` prints it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from tollgate.domain.closes import CloseStatus, PeriodClose


class CustomerClose(BaseModel):
    """One customer's line in a :class:`CloseSummary`."""

    model_config = ConfigDict(frozen=True)

    customer_id: str
    status: CloseStatus | Literal["failed"]
    total: int | None = None  # minor units of ``currency``: the statement total
    currency: str | None = None
    stripe_invoice_id: str | None = None
    hosted_invoice_url: str | None = None
    total_mismatch: bool = False
    error: str | None = None

    @classmethod
    def of(cls, record: PeriodClose) -> CustomerClose:
        return cls(
            customer_id=record.customer_id,
            status=record.status,
            total=record.total,
            currency=record.statement.currency,
            stripe_invoice_id=record.stripe_invoice_id,
            hosted_invoice_url=record.hosted_invoice_url,
            total_mismatch=record.total_mismatch,
        )


class CloseSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    period: str
    customers: tuple[CustomerClose, ...]

    @property
    def failed(self) -> tuple[CustomerClose, ...]:
        return tuple(c for c in self.customers if c.status == "failed")

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for customer in self.customers:
            counts[str(customer.status)] = counts.get(str(customer.status), 0) + 1
        return counts
