"""What the period close reads and writes besides Stripe: the :class:`Ledger`, and its DynamoDB version.

Plans, customers and usage come from ``TollgateStore``; close records are read and written through
``tollgate.dal.closes`` (the one module that knows their item shape).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tollgate.dal import closes
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import BilledRaise, PeriodClose
from tollgate.domain.credit_grants import CreditGrant
from tollgate.domain.models import Customer, Plan, Usage


class Ledger(Protocol):
    def list_customers(self) -> list[Customer]: ...

    def get_customer(self, customer_id: str) -> Customer: ...

    def get_plan(self, plan_id: str, version: int) -> Plan: ...

    def read_usage(self, customer_id: str, period: str, shards: int) -> Usage:
        """The period's counters: total credits, and credits per plan segment."""
        ...

    def list_credit_grants(self, customer_id: str) -> list[CreditGrant]: ...

    def closes_up_to(self, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
        """The records of ``period`` and earlier, newest first (``period``'s own first when it exists)."""
        ...

    def get_close(self, customer_id: str, period: str, part: int = 0) -> PeriodClose | None: ...

    def threshold_invoices(self, customer_id: str, period: str) -> list[PeriodClose]:
        """The records of the period's threshold invoices, in order."""
        ...

    def save_new_close(
        self,
        record: PeriodClose,
        raised_billed_credits: dict[str, BilledRaise],
        threshold_invoices: int = 0,
    ) -> None:
        """Raises ``AlreadyExistsError`` (record exists) or ``ConflictError`` (late usage billed since, or a
        threshold invoice beyond the ``threshold_invoices`` it takes off stored since)."""
        ...

    def save_threshold_invoice(self, record: PeriodClose) -> None:
        """Raises ``AlreadyExistsError`` (this part exists) or ``PeriodClosedError`` (the close is rated)."""
        ...

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose: ...

    def mark_finalized(
        self,
        record: PeriodClose,
        *,
        invoice_status: str,
        hosted_invoice_url: str | None,
        amount_due: int | None,
        total_mismatch: bool,
        now: datetime,
    ) -> PeriodClose: ...

    def record_failure(
        self, customer_id: str, period: str, error: str, now: datetime, part: int = 0
    ) -> None: ...

    def forget_wallet_periods(self, customer_id: str, before: str) -> int:
        """Drop a prepaid customer's wallet counters of the periods before ``before``."""
        ...


class DynamoLedger:
    """The :class:`Ledger` over the Tollgate table."""

    def __init__(self, store: TollgateStore) -> None:
        self.store = store
        self.table = store.table
        self._plans: dict[tuple[str, int], Plan] = {}  # a plan version never changes: cached for good

    def list_customers(self) -> list[Customer]:
        return self.store.list_customers()

    def get_customer(self, customer_id: str) -> Customer:
        return self.store.get_customer(customer_id)

    def get_plan(self, plan_id: str, version: int) -> Plan:
        key = (plan_id, version)
        if key not in self._plans:
            self._plans[key] = self.store.get_plan(plan_id, version)
        return self._plans[key]

    def read_usage(self, customer_id: str, period: str, shards: int) -> Usage:
        return self.store.read_usage(customer_id, period, shards=shards)

    def list_credit_grants(self, customer_id: str) -> list[CreditGrant]:
        return self.store.list_credit_grants(customer_id)

    def closes_up_to(self, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
        return closes.list_closes_up_to(self.table, customer_id, period, limit)

    def get_close(self, customer_id: str, period: str, part: int = 0) -> PeriodClose | None:
        return closes.get_close(self.table, customer_id, period, part)

    def threshold_invoices(self, customer_id: str, period: str) -> list[PeriodClose]:
        return closes.list_threshold_invoices(self.table, customer_id, period)

    def save_new_close(
        self,
        record: PeriodClose,
        raised_billed_credits: dict[str, BilledRaise],
        threshold_invoices: int = 0,
    ) -> None:
        closes.put_close(self.table, record, raised_billed_credits, threshold_invoices)

    def save_threshold_invoice(self, record: PeriodClose) -> None:
        closes.put_threshold_invoice(self.table, record)

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        return closes.mark_invoice_created(self.table, record, invoice_id, now)

    def mark_finalized(
        self,
        record: PeriodClose,
        *,
        invoice_status: str,
        hosted_invoice_url: str | None,
        amount_due: int | None,
        total_mismatch: bool,
        now: datetime,
    ) -> PeriodClose:
        return closes.mark_finalized(
            self.table,
            record,
            invoice_status=invoice_status,
            hosted_invoice_url=hosted_invoice_url,
            amount_due=amount_due,
            total_mismatch=total_mismatch,
            now=now,
        )

    def record_failure(self, customer_id: str, period: str, error: str, now: datetime, part: int = 0) -> None:
        closes.record_failure(self.table, customer_id, period, error, now, part)

    def forget_wallet_periods(self, customer_id: str, before: str) -> int:
        return self.store.forget_wallet_periods(customer_id, before)
