"""Dunning on a controlled clock: payment failed -> grace -> suspended (the authorizer asks for payment at
the invoice's URL) -> paid -> active again. Webhooks arrive signed, the sweep runs as the schedule calls it,
and access is checked through the real authorizer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from tests.conftest import CONTEXT, NOW, TABLE, Authorizer
from tests.events import rest_event
from tests.integration.test_webhooks import World, invoiced_world, stripe_event
from tollgate.accounts.customers import resume_customer, suspend_customer
from tollgate.accounts.keys import issue_key
from tollgate.billing.dunning import sweeper
from tollgate.billing.webhooks.settings import DunningSettings
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import CustomerStatus
from tollgate_local.stripe_double import StripeDouble

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)

FAILED_AT = NOW  # the first failed payment
DAY = timedelta(days=1)


@pytest.fixture
def world(store: TollgateStore, double: StripeDouble, monkeypatch: pytest.MonkeyPatch) -> World:
    return invoiced_world(store, double, monkeypatch)


Api = Callable[[datetime], dict[str, Any]]


@pytest.fixture
def api(world: World, authorizer: Authorizer) -> Api:
    """One API request of acme's at a given time, through the authorizer, its key cache emptied first (as
    after KEY_CACHE_TTL): the authorizer's effect and context."""
    key = issue_key(world.store, "acme", now=NOW - 30 * DAY).key

    def request(at: datetime) -> dict[str, Any]:
        authorizer.cache.clear()
        epoch_ms = int(at.timestamp() * 1000)
        answer = authorizer(rest_event("GET", "/v1/search", headers={"x-api-key": key}, epoch_ms=epoch_ms))
        return {"effect": answer["policyDocument"]["Statement"][0]["Effect"], **answer["context"]}

    return request


def deliver(world: World, event_type: str, invoice: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Stripe sends the event at ``at``; the webhook handler's clock reads ``at`` too."""
    world.now[0] = at
    return world.deliver(stripe_event(event_type, invoice, created=at))


def sweep(at: datetime, store: TollgateStore | None = None) -> dict[str, Any]:
    """The sweeper as deployed (its settings from the environment: the test table, ``DUNNING_GRACE_DAYS``),
    invoked as EventBridge Scheduler invokes it (the schedule's own time is 'now')."""
    deps = sweeper.deps_from(DunningSettings.from_env())
    deps = replace(deps, clock=lambda: pytest.fail("the scheduled time must be used"))
    handler = sweeper.make_handler(deps if store is None else replace(deps, store=store))
    return handler({"trigger": "schedule", "scheduledTime": at.strftime("%Y-%m-%dT%H:%M:%SZ")}, CONTEXT)


def status(world: World) -> tuple[str, str | None, str | None]:
    customer = world.store.get_customer("acme")
    return customer.status.value, customer.status_reason, customer.pay_url


def history(world: World) -> list[tuple[str, str | None, str]]:
    return [(a["status"], a["reason"], a["cause"]) for a in world.store.list_audit("acme")]


def test_the_whole_timeline(world: World, api: Api) -> None:
    pay_url = world.invoice["hosted_invoice_url"]
    assert pay_url

    failed = deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    assert failed["statusCode"] == 200
    assert status(world) == ("active", None, None)
    assert api(FAILED_AT + DAY)["effect"] == "Allow"

    within_grace = sweep(FAILED_AT + 7 * DAY - timedelta(seconds=1))
    assert within_grace["suspended"] == []
    assert status(world) == ("active", None, None)
    assert api(FAILED_AT + 6 * DAY)["effect"] == "Allow"

    after_grace = sweep(FAILED_AT + 7 * DAY)
    assert after_grace["suspended"] == ["acme"]
    assert status(world) == ("suspended", "payment_failed", pay_url)
    denied = api(FAILED_AT + 7 * DAY + timedelta(minutes=1))
    assert denied["effect"] == "Deny"
    assert denied["reason"] == "payment_required"
    assert denied["payUrl"] == pay_url

    assert sweep(FAILED_AT + 8 * DAY)["suspended"] == []  # a later sweep changes nothing more
    paid_at = FAILED_AT + 8 * DAY + timedelta(hours=3)
    paid = deliver(world, "invoice.paid", {**world.invoice, "status": "paid"}, paid_at)
    assert paid["statusCode"] == 200
    assert status(world) == ("active", None, None)
    assert world.invoice_status() == "paid"
    assert api(paid_at + timedelta(minutes=1))["effect"] == "Allow"
    assert sweep(FAILED_AT + 9 * DAY)["suspended"] == []  # the failure is resolved

    assert history(world) == [
        ("suspended", "payment_failed", "dunning_sweep"),
        ("active", None, "invoice.paid"),
    ]
    audit_times = [a["at"] for a in world.store.list_audit("acme")]
    assert audit_times == [(FAILED_AT + 7 * DAY).isoformat(), paid_at.isoformat()]


def test_stripe_retries_do_not_restart_the_grace_period(world: World) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT + 3 * DAY)
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT + 5 * DAY)

    assert [f["attempts"] for f in world.failures()] == [3]
    assert sweep(FAILED_AT + 7 * DAY)["suspended"] == ["acme"]


def test_the_grace_period_is_configurable(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_GRACE_DAYS", "2")
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)

    assert sweep(FAILED_AT + DAY)["suspended"] == []
    assert sweep(FAILED_AT + 2 * DAY)["suspended"] == ["acme"]


def test_a_bad_grace_setting_fails_loudly(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DUNNING_GRACE_DAYS", "a week")
    with pytest.raises(ValueError, match="DUNNING_GRACE_DAYS"):
        sweep(FAILED_AT)


def test_a_manual_suspension_is_not_lifted_by_a_payment(world: World, api: Api) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    suspend_customer(world.store, "acme", now=FAILED_AT + DAY)

    assert sweep(FAILED_AT + 7 * DAY) == {
        "now": (FAILED_AT + 7 * DAY).isoformat(),
        "suspended": [],
        "skipped": ["acme"],
    }
    deliver(world, "invoice.paid", world.invoice, FAILED_AT + 8 * DAY)

    assert status(world) == ("suspended", "manual", None)
    assert api(FAILED_AT + 8 * DAY)["reason"] == "customer_suspended"
    assert history(world) == [("suspended", "manual", "cli")]


def test_a_payment_does_not_lift_a_manual_suspension_made_after_dunning_suspended(world: World) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    sweep(FAILED_AT + 7 * DAY)
    suspend_customer(world.store, "acme", now=FAILED_AT + 7 * DAY + timedelta(hours=1))

    deliver(world, "invoice.paid", world.invoice, FAILED_AT + 8 * DAY)

    assert status(world)[:2] == ("suspended", "manual")


def test_resuming_by_hand_waives_the_failure(world: World, api: Api) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    sweep(FAILED_AT + 7 * DAY)

    assert resume_customer(world.store, "acme", now=FAILED_AT + 7 * DAY + timedelta(hours=2))
    assert sweep(FAILED_AT + 8 * DAY)["suspended"] == []
    assert status(world) == ("active", None, None)
    assert api(FAILED_AT + 8 * DAY)["effect"] == "Allow"
    assert [f["state"] for f in world.failures()] == ["waived"]


def test_a_voided_invoice_restores_access(world: World) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    sweep(FAILED_AT + 7 * DAY)

    deliver(world, "invoice.voided", world.invoice, FAILED_AT + 8 * DAY)

    assert status(world) == ("active", None, None)
    assert world.invoice_status() == "void"


def test_an_invoice_marked_uncollectible_keeps_the_customer_suspended(world: World) -> None:
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    sweep(FAILED_AT + 7 * DAY)

    deliver(world, "invoice.marked_uncollectible", world.invoice, FAILED_AT + 9 * DAY)

    assert status(world)[:2] == ("suspended", "payment_failed")
    deliver(world, "invoice.paid", world.invoice, FAILED_AT + 10 * DAY)
    assert status(world) == ("active", None, None)


def test_a_failure_delivered_after_the_payment_is_ignored(world: World) -> None:
    deliver(world, "invoice.paid", world.invoice, FAILED_AT + DAY)
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)

    assert world.failures() == []
    assert sweep(FAILED_AT + 30 * DAY)["suspended"] == []


def test_paying_one_of_two_overdue_invoices_keeps_access_blocked_on_the_other(world: World, api: Api) -> None:
    older = {
        **world.invoice,
        "id": "in_september",
        "hosted_invoice_url": "https://pay.test/in_september",
        "metadata": {"tollgate_customer_id": "acme", "tollgate_period": "2026-09"},
    }
    deliver(world, "invoice.payment_failed", older, FAILED_AT - 20 * DAY)
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    sweep(FAILED_AT + 7 * DAY)
    assert status(world) == ("suspended", "payment_failed", "https://pay.test/in_september")

    deliver(world, "invoice.paid", older, FAILED_AT + 8 * DAY)
    assert status(world) == ("suspended", "payment_failed", world.invoice["hosted_invoice_url"])
    assert api(FAILED_AT + 8 * DAY)["payUrl"] == world.invoice["hosted_invoice_url"]

    deliver(world, "invoice.paid", world.invoice, FAILED_AT + 9 * DAY)
    assert status(world) == ("active", None, None)


def test_a_payment_racing_the_sweep_wins(world: World) -> None:
    """The sweep read the failure as open; the payment lands before the sweep writes: no suspension."""
    deliver(world, "invoice.payment_failed", world.invoice, FAILED_AT)
    paid: list[bool] = []

    class PaymentLandsFirst(TollgateStore):
        """The table, except that the payment is applied just before the sweep's status change."""

        def transact(self, actions: Any) -> None:
            if not paid and any("Update" in a and a["Update"]["Key"]["sk"] == "PROFILE" for a in actions):
                paid.append(True)
                deliver(world, "invoice.paid", world.invoice, FAILED_AT + 7 * DAY)
            super().transact(actions)

    result = sweep(FAILED_AT + 7 * DAY, store=PaymentLandsFirst(TABLE))

    assert paid == [True]
    assert result["suspended"] == []
    assert status(world) == ("active", None, None)
    assert world.store.get_customer("acme").status is CustomerStatus.ACTIVE
