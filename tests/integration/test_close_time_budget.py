"""The close worker's time budget (``tollgate.cdk.constants``) counts the Stripe requests a close can make.

The budget assumes at most ``CLOSE_STRIPE_REQUESTS_WORST_CASE`` requests in one run of one customer's close
(each then waiting out every retry). These tests drive the real close against the Stripe double along the
longest path and count them, so a new Stripe call in the close cannot slip past the worker's timeout.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.test_period_close import (
    PERIOD,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tollgate.cdk import constants
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus
from tollgate.errors import StripeCallError
from tollgate_local.stripe_double import StripeDouble


@pytest.fixture
def world(
    store: TollgateStore,
    running_double: StripeDouble,  # noqa: F811 - the fixture imported above
) -> World:
    return make_world(store, running_double)


def requests_of_the_next_run(world: World) -> Counter[str]:
    """The Stripe operations one more run of the close makes (each counted once per request sent)."""
    before = len(world.double.calls)
    world.close()
    return Counter(call.operation for call in world.double.calls[before:])


def test_a_first_close_makes_three_requests(world: World) -> None:
    world.customer(credits=1_234_567)
    made = requests_of_the_next_run(world)
    assert made == Counter({"invoices.create": 1, "invoices.add_lines": 1, "invoices.finalize": 1})


def test_the_longest_close_makes_the_budgeted_number_of_requests(world: World) -> None:
    """A rated record without an invoice id (an earlier run failed to create it): the run searches Stripe,
    the search fails and the customer's invoices are listed instead, then create, add_lines, finalize."""
    world.customer(credits=1_234_567)
    world.double.faults.fail_before_write("invoices.create")
    with pytest.raises(StripeCallError):
        world.close()
    assert world.record().status is CloseStatus.RATED
    world.double.faults.fail_before_write("invoices.search")

    made = requests_of_the_next_run(world)

    assert made == Counter(
        {
            "invoices.search": 1,
            "invoices.list": 1,
            "invoices.create": 1,
            "invoices.add_lines": 1,
            "invoices.finalize": 1,
        }
    )
    assert sum(made.values()) == constants.CLOSE_STRIPE_REQUESTS_WORST_CASE
    assert world.record(period=PERIOD).status is CloseStatus.FINALIZED


def test_a_close_resumed_after_its_invoice_was_created_makes_fewer(world: World) -> None:
    world.customer(credits=1_234_567)
    world.double.faults.fail_before_write("invoices.add_lines")
    with pytest.raises(StripeCallError):
        world.close()
    assert world.record().status is CloseStatus.INVOICE_CREATED

    made = requests_of_the_next_run(world)

    assert made == Counter({"invoices.retrieve": 1, "invoices.add_lines": 1, "invoices.finalize": 1})
    assert sum(made.values()) <= constants.CLOSE_STRIPE_REQUESTS_WORST_CASE
