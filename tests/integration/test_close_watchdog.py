"""The close watchdog Lambda, in process: schedule event -> customers and close records (moto) -> metrics.

A close that finished everywhere reports no problem; a customer without a record, one stuck at ``rated`` and
one with a mismatched total are each counted, logged and put into ``CloseProblems``; customers created after
the period are not expected; the close records are read 100 at a time.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.conftest import CONTEXT, make_customer
from tests.integration.test_period_close import (
    CLOSE_AT,
    PAYG,
    PERIOD,
    World,
    make_world,
    running_double,  # noqa: F401 - the module-scoped Stripe double fixture
)
from tests.integration.test_period_close_faults import SkewedGateway
from tests.integration.test_period_close_handlers import emitted_metrics
from tollgate.billing.close import watchdog
from tollgate.billing.close.observability import SERVICE
from tollgate.billing.close.settings import WatchdogSettings
from tollgate.billing.close.trigger import StartError
from tollgate.dal import closes
from tollgate.dal.store import TollgateStore
from tollgate.domain.close_progress import CloseState
from tollgate.domain.models import Customer
from tollgate.errors import PeriodNotEndedError
from tollgate_local.stripe_double import StripeDouble

# the watchdog's schedule: 12 hours after the close's 06:00 UTC on the 1st
WATCHDOG_EVENT = {"trigger": "schedule", "scheduledTime": "2026-11-01T18:00:00Z"}
WATCHDOG_AT = datetime(2026, 11, 1, 18, 0, tzinfo=UTC)
IN_OCTOBER = datetime(2026, 10, 3, 9, 0, tzinfo=UTC)


@pytest.fixture
def world(
    store: TollgateStore,
    running_double: StripeDouble,  # noqa: F811 - the fixture imported above
) -> World:
    world = make_world(store, running_double)
    world.plans.add((PAYG.id, PAYG.version))
    store.put_plan(PAYG)
    return world


@pytest.fixture
def check(world: World) -> watchdog.Handler:
    return watchdog.make_handler(watchdog.Deps(world.store, clock=lambda: WATCHDOG_AT))


def october_customer(world: World, customer_id: str) -> None:
    """A customer who existed during the period (so its close is expected), with no record yet."""
    world.store.put_customer(make_customer(PAYG, id=customer_id, created_at=IN_OCTOBER))


def emf_documents(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_a_close_that_finished_everywhere_has_no_problem(
    world: World,
    check: watchdog.Handler,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.customer("acme", credits=1_234_567)
    world.customer("idle")
    for customer_id in ("acme", "idle"):
        world.close(customer_id, now=CLOSE_AT)

    answer = check(WATCHDOG_EVENT, CONTEXT)

    assert answer == {
        "period": PERIOD,
        "counts": {"missing": 0, "rated": 0, "invoice_created": 0, "finalized": 1, "no_charge": 1},
        "unfinished": [],
        "mismatched": [],
        "waiting": [],
    }
    out = capsys.readouterr().out
    assert emitted_metrics(out) == Counter({"ClosesChecked": 2})  # and 0 for the other three
    (document,) = emf_documents(out)
    assert document["CloseProblems"] == [0]  # emitted as 0: the alarm sees the close is fine
    assert document["service"] == SERVICE  # the dimension the dashboard graphs read
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]]
    assert [r.getMessage() for r in caplog.records if r.name == SERVICE][-1] == "period close complete"


def test_unfinished_and_mismatched_customers_are_counted_logged_and_alarmed(
    world: World,
    check: watchdog.Handler,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world.customer("acme", credits=1_234_567)
    world.close("acme", now=CLOSE_AT)
    world.customer("skewed", credits=1_000)
    world.close("skewed", now=CLOSE_AT, gateway=SkewedGateway(world.gateway))
    world.customer("nolink", credits=5_000, linked=False)  # cannot be invoiced: stays rated
    with pytest.raises(Exception, match="no stripe_customer_id"):
        world.close("nolink", now=CLOSE_AT)
    october_customer(world, "forgotten")  # its message never arrived

    answer = check(WATCHDOG_EVENT, CONTEXT)

    assert answer["counts"] == {
        "missing": 1,
        "rated": 1,
        "invoice_created": 0,
        "finalized": 2,
        "no_charge": 0,
    }
    assert answer["unfinished"] == ["forgotten", "nolink"]
    assert answer["mismatched"] == ["skewed"]
    out = capsys.readouterr().out
    assert emitted_metrics(out) == Counter(
        {"ClosesChecked": 4, "ClosesUnfinished": 2, "ClosesMismatched": 1, "CloseProblems": 3}
    )
    (error,) = [r for r in caplog.records if r.name == SERVICE and r.levelname == "ERROR"]
    assert error.getMessage().startswith("period close incomplete")
    unfinished, mismatched = error.__dict__["unfinished"], error.__dict__["mismatched"]
    assert [(c["customer_id"], c["state"], c["attempts"]) for c in unfinished] == [
        ("forgotten", "missing", 0),
        ("nolink", "rated", 1),
    ]
    assert "no stripe_customer_id" in unfinished[1]["last_error"]
    assert [c["customer_id"] for c in mismatched] == ["skewed"]


def test_a_customer_created_after_the_period_is_not_expected_to_have_closed_it(
    world: World, check: watchdog.Handler, capsys: pytest.CaptureFixture[str]
) -> None:
    world.store.put_customer(
        make_customer(PAYG, id="newcomer", created_at=datetime(2026, 11, 1, 7, tzinfo=UTC))
    )

    answer = check(WATCHDOG_EVENT, CONTEXT)

    assert sum(answer["counts"].values()) == 0
    assert emitted_metrics(capsys.readouterr().out) == Counter()  # all four metrics are 0


def test_close_records_are_read_100_customers_at_a_time(world: World, check: watchdog.Handler) -> None:
    for index in range(205):
        october_customer(world, f"c{index:03d}")
    for customer_id in ("c000", "c099", "c100", "c204"):  # both ends of each batch
        world.close(customer_id, now=CLOSE_AT)

    answer = check({"period": PERIOD}, CONTEXT)

    assert answer["counts"][CloseState.NO_CHARGE] == 4
    assert answer["counts"][CloseState.MISSING] == 201
    assert len(answer["unfinished"]) == watchdog.LISTED  # the answer is cut; the metrics are not
    assert {"c000", "c099", "c100", "c204"}.isdisjoint(answer["unfinished"])


def test_customers_are_read_a_page_at_a_time_and_only_the_first_problems_are_kept(world: World) -> None:
    for index in range(250):
        october_customer(world, f"c{index:03d}")
    for customer_id in ("c000", "c150"):
        world.close(customer_id, now=CLOSE_AT)
    pages: list[int] = []
    customer_pages = world.store.customer_pages

    def counted_pages(**kwargs: Any) -> Iterator[list[Customer]]:
        for page in customer_pages(**kwargs):
            pages.append(len(page))
            yield page

    world.store.customer_pages = counted_pages  # type: ignore[method-assign]

    progress = watchdog.check_period(world.store, PERIOD, page_size=60)

    assert pages == [60, 60, 60, 60, 10]  # never more than a page of customers at once
    assert progress.counts[CloseState.NO_CHARGE] == 2
    assert progress.counts[CloseState.MISSING] == 248
    assert (progress.unfinished_count, progress.problems) == (248, 248)
    assert [s.customer_id for s in progress.unfinished] == [f"c{i:03d}" for i in range(1, 101)]  # first 100


def test_get_closes_asks_again_for_unprocessed_keys(world: World) -> None:
    october_customer(world, "acme")
    october_customer(world, "beta")
    world.close("acme", now=CLOSE_AT)
    world.close("beta", now=CLOSE_AT)

    class Throttled:
        """The table, except that DynamoDB leaves every key but the first unprocessed once."""

        def __init__(self, table: Any) -> None:
            self.name, self._table, self.calls = table.name, table, 0
            self.meta = self

        @property
        def client(self) -> Any:
            return self

        def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:  # boto3's name
            self.calls += 1
            keys = RequestItems[self.name]["Keys"]
            answer: dict[str, Any] = self._table.meta.client.batch_get_item(
                RequestItems={self.name: {**RequestItems[self.name], "Keys": keys[:1]}}
            )
            if keys[1:]:
                answer["UnprocessedKeys"] = {self.name: {**RequestItems[self.name], "Keys": keys[1:]}}
            return answer

    table = Throttled(world.store.table)
    found = closes.get_closes(table, ["acme", "beta", "acme"], PERIOD)

    assert sorted(found) == ["acme", "beta"]
    assert table.calls == 2
    assert closes.get_closes(table, [], PERIOD) == {}
    with pytest.raises(ValueError, match="at most 100"):
        closes.get_closes(table, [f"c{i}" for i in range(101)], PERIOD)


@pytest.mark.parametrize(
    ("event", "error", "match"),
    [
        ({}, StartError, "names no period"),
        ({"period": "2026-11"}, PeriodNotEndedError, "has not ended"),
    ],
)
def test_an_event_without_a_closed_period_is_refused(
    check: watchdog.Handler, event: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        check(event, CONTEXT)


def test_the_watchdog_builds_its_dependencies_from_the_environment(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    october_customer(world, "acme")
    deployed = watchdog.deps_from(WatchdogSettings.from_env())  # TABLE_NAME
    handle = watchdog.make_handler(deployed)

    answer = handle({"period": PERIOD}, CONTEXT)

    assert answer["unfinished"] == ["acme"]
    assert emitted_metrics(capsys.readouterr().out)["CloseProblems"] == 1
