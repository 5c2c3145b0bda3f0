"""The DynamoDB repository on DynamoDB Local: domain in, domain out, ClientError codes as domain errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import NOW, make_customer, make_plan
from tollgate.accounts.keys import issue_key, revoke_key, rotate_key
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import CustomerStatus
from tollgate.errors import AlreadyExistsError, InvalidInputError, NotFoundError

pytestmark = pytest.mark.dynamodb_local  # the table on DynamoDB Local (tests/conftest.py)


def test_plans_are_versioned_never_overwritten(store: TollgateStore) -> None:
    store.put_plan(make_plan())
    with pytest.raises(AlreadyExistsError, match="payg v1"):
        store.put_plan(make_plan(price_per_credit="9"))
    store.put_plan(make_plan(version=2, price_per_credit="0.0005"))

    assert str(store.get_plan("payg").price_per_credit) == "0.0005"
    assert str(store.get_plan("payg", 1).price_per_credit) == "0.00042"
    assert [(p.id, p.version) for p in store.list_plans()] == [("payg", 1), ("payg", 2)]
    with pytest.raises(NotFoundError, match="plan 'nope' not found"):
        store.get_plan("nope")


def test_customers_round_trip_and_list(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    acme = store.put_customer(make_customer(plan))
    store.put_customer(make_customer(plan, id="globex", name="Globex"))

    assert store.get_customer("acme") == acme
    assert [c.id for c in store.list_customers()] == ["acme", "globex"]
    with pytest.raises(AlreadyExistsError):
        store.put_customer(make_customer(plan))
    with pytest.raises(NotFoundError):
        store.get_customer("initech")


def test_status_changes_are_audited_once_per_event(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))

    first = store.set_customer_status(
        "acme", CustomerStatus.SUSPENDED, reason="manual", cause="cli", at=NOW, event_id="evt-1"
    )
    replay = store.set_customer_status(
        "acme", CustomerStatus.SUSPENDED, reason="manual", cause="cli", at=NOW, event_id="evt-1"
    )

    assert (first, replay) == (True, False)
    assert store.get_customer("acme").status is CustomerStatus.SUSPENDED
    assert [(a["status"], a["cause"]) for a in store.list_audit("acme")] == [("suspended", "cli")]
    with pytest.raises(NotFoundError):
        store.set_customer_status(
            "ghost", CustomerStatus.ACTIVE, reason=None, cause="cli", at=NOW, event_id="e"
        )


def test_keys_are_listed_by_prefix_revoked_and_rotated(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))
    issued = issue_key(store, "acme", now=NOW, name="ci")

    listed = store.list_api_keys("acme")
    assert [(k.key_id, k.display_prefix, k.name) for k in listed] == [
        (issued.record.key_id, issued.key[:12], "ci")
    ]
    assert issued.key not in repr(listed)  # the plaintext is never stored

    revoked = revoke_key(store, "acme", issued.record.key_id, now=NOW)
    again = revoke_key(store, "acme", issued.record.key_id, now=NOW + timedelta(hours=1))
    assert revoked.revoked_at == again.revoked_at == NOW
    with pytest.raises(InvalidInputError, match="already revoked"):
        rotate_key(store, "acme", issued.record.key_id, now=NOW)
    with pytest.raises(NotFoundError):
        issue_key(store, "ghost", now=NOW)


def test_rotation_overlap_is_bounded(store: TollgateStore) -> None:
    plan = store.put_plan(make_plan())
    store.put_customer(make_customer(plan))
    issued = issue_key(store, "acme", now=NOW)
    with pytest.raises(InvalidInputError, match="overlap"):
        rotate_key(store, "acme", issued.record.key_id, now=NOW, overlap=timedelta(days=31))


def test_usage_of_a_customer_with_no_requests_is_zero(store: TollgateStore) -> None:
    usage = store.read_usage("acme", "2026-11", shards=8)
    assert (usage.credits, usage.requests, usage.routes) == (0, 0, {})


def test_a_capped_plan_cannot_go_to_a_sharded_customer(store: TollgateStore) -> None:
    from tollgate.accounts.customers import create_customer
    from tollgate_local.stripe_double import StripeDouble

    store.put_plan(make_plan(credit_limit=1000))
    with StripeDouble() as double, pytest.raises(InvalidInputError, match="only an unsharded counter"):
        create_customer(
            store,
            double.client(),
            customer_id="hot",
            name="Hot",
            email="ops@hot.test",
            plan_id="payg",
            counter_shards=4,
            now=NOW,
        )
    with pytest.raises(NotFoundError):
        store.get_customer("hot")  # nothing was stored
