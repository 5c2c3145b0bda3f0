"""The close's steps and its driver over an in-memory ledger and Stripe: what is refused, said and logged.

The end-to-end close (moto, the Stripe double) is in ``tests/integration/test_period_close*.py``; here, fast,
the cases that need a ledger or a Stripe answer the real ones rarely give: several live invoices for one
period, a record that vanishes mid-run, a failure that cannot even be recorded, a race lost at every step.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tests.conftest import make_customer, make_plan
from tollgate.billing.close import service, steps
from tollgate.billing.invoicing import InvoiceDraft, InvoiceLine, StripeInvoice
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.credit_grants import CreditGrant
from tollgate.domain.models import Customer, Plan, Usage
from tollgate.errors import AlreadyExistsError, CloseError, ConflictError, InvoiceConflictError

PERIOD = "2026-10"
NOW = datetime(2026, 11, 1, 6, 0, tzinfo=UTC)
PLAN = make_plan()  # 0.042 cents a credit


@dataclass
class Ledger:
    """The :class:`~tollgate.billing.close.ledger.Ledger`, in memory, with the same conditional writes."""

    customers: dict[str, Customer] = field(default_factory=dict)
    plans: dict[tuple[str, int], Plan] = field(default_factory=dict)
    credits: dict[tuple[str, str], int] = field(default_factory=dict)
    records: dict[tuple[str, str], PeriodClose] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)

    def add(self, customer: Customer, plan: Plan = PLAN, credits: int = 0) -> None:
        self.customers[customer.id] = customer
        self.plans[(plan.id, plan.version)] = plan
        self.credits[(customer.id, PERIOD)] = credits

    def list_customers(self) -> list[Customer]:
        return list(self.customers.values())

    def get_customer(self, customer_id: str) -> Customer:
        self.reads.append(customer_id)
        return self.customers[customer_id]

    def get_plan(self, plan_id: str, version: int) -> Plan:
        return self.plans[(plan_id, version)]

    def list_credit_grants(self, customer_id: str) -> list[CreditGrant]:
        return []

    def read_usage(self, customer_id: str, period: str, shards: int) -> Usage:
        credits = self.credits.get((customer_id, period), 0)
        return Usage(customer_id=customer_id, period=period, credits=credits)

    def closes_up_to(self, customer_id: str, period: str, limit: int) -> list[PeriodClose]:
        mine = [r for (c, p), r in self.records.items() if c == customer_id and p <= period]
        return sorted(mine, key=lambda record: record.period, reverse=True)[:limit]

    def get_close(self, customer_id: str, period: str, part: int = 0) -> PeriodClose | None:
        assert part == 0, "no threshold invoices here (tests/integration/test_progressive_billing.py)"
        return self.records.get((customer_id, period))

    def threshold_invoices(self, customer_id: str, period: str) -> list[PeriodClose]:
        return []

    def save_new_close(
        self, record: PeriodClose, raised: dict[str, tuple[int, int]], threshold_invoices: int = 0
    ) -> None:
        if (record.customer_id, record.period) in self.records:
            raise AlreadyExistsError("close", f"{record.customer_id} {record.period}")
        self.records[(record.customer_id, record.period)] = record

    def _move(self, record: PeriodClose, expected: CloseStatus, **changes: object) -> PeriodClose:
        stored = self.records.get((record.customer_id, record.period))
        if stored is None or stored.status is not expected or stored.version != record.version:
            raise ConflictError(f"close {record.customer_id} {record.period} is no longer {expected}")
        moved = stored.model_copy(update={"version": stored.version + 1, **changes})
        self.records[(record.customer_id, record.period)] = moved
        return moved

    def mark_invoice_created(self, record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        return self._move(
            record, CloseStatus.RATED, status=CloseStatus.INVOICE_CREATED, stripe_invoice_id=invoice_id
        )

    def mark_finalized(self, record: PeriodClose, **fields: object) -> PeriodClose:
        fields.pop("now")
        return self._move(record, CloseStatus.INVOICE_CREATED, status=CloseStatus.FINALIZED, **fields)

    def record_failure(self, customer_id: str, period: str, error: str, now: datetime, part: int = 0) -> None:
        record = self.records[(customer_id, period)]
        self.records[(customer_id, period)] = record.model_copy(
            update={"attempts": record.attempts + 1, "last_error": error}
        )


def invoice(invoice_id: str, status: str = "draft", total: int = 0) -> StripeInvoice:
    return StripeInvoice(
        id=invoice_id,
        stripe_customer_id="cus_acme",
        status=status,
        total=total,
        amount_due=total,
        hosted_invoice_url=None if status == "draft" else f"https://invoice.stripe.com/i/{invoice_id}",
        has_lines=total > 0,
        metadata={},
    )


@dataclass
class Stripe:
    """The :class:`~tollgate.billing.invoicing.StripeInvoicing` gateway, in memory."""

    held: list[StripeInvoice] = field(default_factory=list)
    searches: list[tuple[str, str, str]] = field(default_factory=list)
    created: list[InvoiceDraft] = field(default_factory=list)

    def find_invoices(self, *, stripe_customer_id: str, customer_id: str, period: str) -> list[StripeInvoice]:
        self.searches.append((stripe_customer_id, customer_id, period))
        return list(self.held)

    def get_invoice(self, invoice_id: str) -> StripeInvoice:
        return next(held for held in self.held if held.id == invoice_id)

    def create_invoice(self, draft: InvoiceDraft, *, idempotency_key: str) -> StripeInvoice:
        self.created.append(draft)
        self.held.append(invoice(f"in_{len(self.held) + 1}"))
        return self.held[-1]

    def add_lines(
        self, invoice_id: str, lines: Sequence[InvoiceLine], *, idempotency_key: str
    ) -> StripeInvoice:
        total = sum(round(line.unit_amount_decimal * line.quantity) for line in lines)
        return self._replace(invoice(invoice_id, total=int(total)))

    def finalize(self, invoice_id: str, *, idempotency_key: str) -> StripeInvoice:
        return self._replace(
            replace(self.get_invoice(invoice_id), status="open", hosted_invoice_url="https://x")
        )

    def _replace(self, new: StripeInvoice) -> StripeInvoice:
        self.held = [new if held.id == new.id else held for held in self.held]
        return new


ACME = make_customer(PLAN, stripe_customer_id="cus_acme")


def world(credits: int = 1_234_567) -> tuple[Ledger, Stripe, steps.CloseContext]:
    ledger = Ledger()
    ledger.add(ACME, credits=credits)
    gateway = Stripe()
    return ledger, gateway, steps.CloseContext(ledger, gateway, "acme", PERIOD, NOW)


# -- finding the invoice of a customer-period ------------------------------------------------------------
def test_the_search_is_for_this_customer_period_in_its_stripe_customer() -> None:
    _, gateway, ctx = world()
    gateway.held = [invoice("in_void", "void"), invoice("in_live", "open")]

    found = steps.find_invoice(ctx, "cus_acme")

    assert found is not None
    assert found.id == "in_live"  # a voided one beside it is history, not a second invoice
    assert gateway.searches == [("cus_acme", "acme", PERIOD)]


def test_two_live_invoices_for_one_period_stop_the_close_naming_both() -> None:
    _, gateway, ctx = world()
    gateway.held = [invoice("in_1", "open"), invoice("in_void", "void"), invoice("in_2", "draft")]

    with pytest.raises(InvoiceConflictError) as raised:
        steps.find_invoice(ctx, "cus_acme")

    assert str(raised.value) == (
        "Stripe holds 2 invoices for acme 2026-10 (in_1, in_2): void all but one by hand, then close again"
    )


def test_a_period_whose_only_invoice_was_voided_is_not_billed_again() -> None:
    _, gateway, ctx = world()
    gateway.held = [invoice("in_void", "void")]

    with pytest.raises(InvoiceConflictError) as raised:
        steps.find_invoice(ctx, "cus_acme")

    assert str(raised.value) == (
        "the Stripe invoice for acme 2026-10 (in_void) was voided: "
        "the close will not bill that period again on its own"
    )


def test_no_invoice_at_all_is_none() -> None:
    _, _, ctx = world()

    assert steps.find_invoice(ctx, "cus_acme") is None


# -- the driver ------------------------------------------------------------------------------------------
def test_close_period_closes_each_listed_customer_without_reading_it_again() -> None:
    ledger, gateway, _ = world()
    beta = make_customer(PLAN, id="beta", stripe_customer_id="cus_beta")
    ledger.add(beta, credits=0)

    summary = service.close_period(ledger, gateway, PERIOD, now=NOW)

    assert [(c.customer_id, c.status, c.total) for c in summary.customers] == [
        ("acme", CloseStatus.FINALIZED, 51_852),
        ("beta", CloseStatus.NO_CHARGE, 0),
    ]
    assert ledger.reads == []  # the listing already read every customer


def test_a_failed_customer_is_reported_with_its_error_and_logged_with_its_period(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger, gateway, _ = world()
    ledger.add(make_customer(PLAN, id="nolink"), credits=5_000)  # a charge, but no Stripe customer

    summary = service.close_period(ledger, gateway, PERIOD, now=NOW)

    (failed,) = summary.failed
    assert failed.customer_id == "nolink"
    assert failed.error is not None
    assert failed.error.startswith("MissingStripeCustomerError: customer 'nolink' owes 210 (usd) for 2026-10")
    assert "close of nolink 2026-10 failed" in [
        r.getMessage() for r in caplog.records if r.levelname == "ERROR"
    ]
    assert ledger.records[("nolink", PERIOD)].last_error == failed.error
    assert ledger.records[("nolink", PERIOD)].attempts == 1


def test_a_failure_that_cannot_be_recorded_is_logged_and_the_first_error_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ledger, gateway, _ = world()
    ledger.customers["acme"] = ACME.model_copy(update={"stripe_customer_id": None})

    def table_down(*args: object) -> None:
        raise ConnectionError("DynamoDB is down")

    ledger.record_failure = table_down  # type: ignore[method-assign]

    with pytest.raises(CloseError, match="no stripe_customer_id"):
        service.close_customer(ledger, gateway, "acme", PERIOD, now=NOW)

    (logged,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert logged.getMessage() == "could not record the failure of acme 2026-10"
    assert logged.exc_info is not None
    assert isinstance(logged.exc_info[1], ConnectionError)


def test_a_record_that_disappears_mid_run_stops_the_close_clearly() -> None:
    ledger, gateway, _ = world()

    def lost(record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        del ledger.records[("acme", PERIOD)]  # deleted by hand while this run talked to Stripe
        raise ConflictError("gone")

    ledger.mark_invoice_created = lost  # type: ignore[method-assign]

    with pytest.raises(CloseError) as raised:
        service.close_customer(ledger, gateway, "acme", PERIOD, now=NOW)

    assert str(raised.value) == "close record of acme 2026-10 disappeared"


def test_a_run_that_loses_every_race_gives_up_after_six_steps() -> None:
    ledger, gateway, _ = world()
    moves = []

    def always_moved(record: PeriodClose, invoice_id: str, now: datetime) -> PeriodClose:
        moves.append(invoice_id)
        raise ConflictError("another run moved it")

    ledger.mark_invoice_created = always_moved  # type: ignore[method-assign]

    with pytest.raises(CloseError) as raised:
        service.close_customer(ledger, gateway, "acme", PERIOD, now=NOW)

    assert str(raised.value) == "close of acme 2026-10 kept losing races; try again"
    assert len(moves) == service.MAX_STEPS == 6
    assert len(gateway.created) == 1  # every later step found the invoice the first one created
    assert ledger.records[("acme", PERIOD)].attempts == 1


def test_the_outcome_says_which_run_rated_and_which_finalized() -> None:
    ledger, gateway, _ = world()

    first = service.run_close(ledger, gateway, "acme", PERIOD, now=NOW)
    again = service.run_close(ledger, gateway, "acme", PERIOD, now=NOW)

    assert (first.rated_now, first.finalized_now) == (True, True)
    assert (again.rated_now, again.finalized_now) == (False, False)
    assert again.record == first.record
    assert first.record.total == 51_852


def test_a_plan_with_a_base_fee_under_one_unit_is_still_a_charge() -> None:
    ledger, gateway, _ = world(credits=0)
    fifty_cents = make_plan(id="small", name="Small", base_fee=Decimal("0.50"))
    ledger.add(ACME.model_copy(update={"plan_id": "small"}), plan=fifty_cents, credits=0)

    record = service.close_customer(ledger, gateway, "acme", PERIOD, now=NOW)

    assert (record.status, record.total) == (CloseStatus.FINALIZED, 50)


# -- the invoice steps -----------------------------------------------------------------------------------
def rated(ctx: steps.CloseContext) -> PeriodClose:
    return steps.rated_record(ctx).record


def test_the_draft_carries_the_plans_terms_and_the_close_metadata() -> None:
    ledger, gateway, ctx = world()
    invoiced = make_plan(
        id="invoiced", name="Invoiced", collection_method="send_invoice", days_until_due=14, currency="eur"
    )
    ledger.add(ACME.model_copy(update={"plan_id": "invoiced"}), plan=invoiced, credits=1_234_567)

    steps.create_invoice(ctx, rated(ctx), search_first=False)

    (draft,) = gateway.created
    assert draft == InvoiceDraft(
        stripe_customer_id="cus_acme",
        currency="eur",
        collection_method=invoiced.collection_method,
        days_until_due=14,
        description="Invoiced: API usage for 2026-10",
        metadata={"tollgate_customer_id": "acme", "tollgate_period": PERIOD},
    )
    assert gateway.searches == []  # the run that stored the record: no invoice can predate it


def test_a_rerun_adopts_the_invoice_stripe_already_has() -> None:
    _, gateway, ctx = world()
    record = rated(ctx)
    gateway.held = [invoice("in_earlier", "draft")]  # created by a run that died before recording it

    created = steps.create_invoice(ctx, record, search_first=True)

    assert created.record.stripe_invoice_id == "in_earlier"
    assert created.record.status is CloseStatus.INVOICE_CREATED
    assert gateway.created == []
    assert gateway.searches == [("cus_acme", "acme", PERIOD)]


def test_finalizing_a_record_without_an_invoice_id_is_refused() -> None:
    _, _, ctx = world()
    record = rated(ctx).model_copy(update={"status": CloseStatus.INVOICE_CREATED})

    with pytest.raises(CloseError) as raised:
        steps.finalize_invoice(ctx, record, None)

    assert str(raised.value) == "close acme 2026-10 has no invoice id"


def test_a_stripe_total_other_than_the_statements_is_flagged_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, gateway, ctx = world()
    created = steps.create_invoice(ctx, rated(ctx), search_first=False)
    gateway.held = [invoice("in_1", "open", total=51_853)]  # finalized elsewhere, one cent more

    record = steps.finalize_invoice(ctx, created.record, None)

    assert (record.status, record.total_mismatch, record.amount_due) == (CloseStatus.FINALIZED, True, 51_853)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "Stripe invoice in_1 totals 51853 but the statement of acme 2026-10 totals 51852 (usd)"
    ]


def test_a_statement_of_one_cent_is_invoiced() -> None:
    ledger, gateway, _ = world(credits=12)  # 12 x 0.042 cents = 0.504 cents, rounded half-up: 1 cent

    record = service.close_customer(ledger, gateway, "acme", PERIOD, now=NOW)

    assert (record.status, record.total, record.stripe_invoice_id) == (CloseStatus.FINALIZED, 1, "in_1")
    assert len(gateway.created) == 1


def test_a_run_that_loses_the_race_to_rate_adopts_the_record_the_other_run_stored() -> None:
    ledger, _, ctx = world()
    rival = steps.rate(ctx, []).record.model_copy(update={"created_at": datetime(2026, 11, 1, 5, tzinfo=UTC)})
    save = ledger.save_new_close

    def stored_first(record: PeriodClose, raised: dict[str, tuple[int, int]], parts: int = 0) -> None:
        ledger.records[("acme", PERIOD)] = rival  # the other run's write landed between our read and write
        save(record, raised, parts)

    ledger.save_new_close = stored_first  # type: ignore[method-assign]

    rated = steps.rated_record(ctx)

    assert rated == steps.Rated(rival, stored_now=False)
    assert ledger.records[("acme", PERIOD)] is rival


def test_threshold_invoicing_that_loses_every_race_to_store_gives_up_naming_it() -> None:
    """Each attempt to store the next threshold invoice finds one stored first (and reads them again): after
    MAX_RATING_ATTEMPTS the check stops with an error that says so, rather than looping."""
    plan = PLAN.model_copy(update={"invoice_threshold": Decimal("0.01")})
    ledger, _, ctx = world()
    ledger.add(ACME, plan=plan, credits=1_234_567)
    stores, reads = [], []

    def always_taken(record: PeriodClose) -> None:
        stores.append(record.part)
        raise AlreadyExistsError("threshold invoice", f"acme {PERIOD} #{record.part}")

    def threshold_invoices(customer_id: str, period: str) -> list[PeriodClose]:
        reads.append(period)
        return []

    ledger.save_threshold_invoice = always_taken  # type: ignore[attr-defined]
    ledger.threshold_invoices = threshold_invoices  # type: ignore[method-assign]

    with pytest.raises(CloseError) as raised:
        steps.next_threshold_invoice(ctx, [])

    assert str(raised.value) == "threshold invoicing of acme 2026-10 kept losing races; try again"
    assert stores == [1] * steps.MAX_RATING_ATTEMPTS
    assert reads == [PERIOD] * steps.MAX_RATING_ATTEMPTS
