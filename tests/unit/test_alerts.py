"""Which alert rules a change of a customer's counters crosses: thresholds in credits, percent of included
credits, of the cap and of the budget, a spend amount, a prepaid balance running low, and the forecast; each
with the id that makes it fire once per period (or per top-up, for a balance); and the rules a plan may
carry."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import ValidationError

from tests.conftest import make_plan
from tollgate.alerts.service import changes_of
from tollgate.dal.counter_item import period_tag
from tollgate.domain.alerts import (
    FORECAST_AFTER_SECONDS,
    AlertKind,
    CounterChange,
    crossings,
    projected_credits,
)
from tollgate.domain.models import AlertRule, Plan

MID_MONTH = datetime(2026, 11, 16, tzinfo=UTC)  # half of November (30 days) has passed
PRO = make_plan(
    id="pro",
    name="Pro",
    base_fee=Decimal(10),
    included_credits=1_000,
    price_per_credit=Decimal("0.01"),
    credit_limit=10_000,
)


def change(before: int, after: int, at: datetime = MID_MONTH, **balance: int) -> CounterChange:
    return CounterChange("acme", "2026-11", at, before, after, **balance)  # type: ignore[arg-type]


def fired(plan: Plan, rule: AlertRule, before: int, after: int, budget: int | None = None) -> list[str]:
    return [a.threshold for a in crossings(change(before, after), plan, (rule,), budget)]


@pytest.mark.parametrize(
    ("rule", "before", "after", "threshold"),
    [
        (AlertRule(included_percent=80), 799, 800, "800 credits (80% of 1,000 included)"),
        (AlertRule(included_percent=100), 990, 1_015, "1,000 credits (100% of 1,000 included)"),
        (AlertRule(cap_percent=90), 8_999, 9_000, "9,000 credits (90% of the 10,000-credit cap)"),
        (AlertRule(spend=Decimal(20)), 1_999, 2_000, "a charge of 20.00 USD"),  # 10.00 + 1,000 x 1 cent
    ],
)
def test_a_threshold_fires_when_the_old_image_is_below_it_and_the_new_one_at_or_above(
    rule: AlertRule, before: int, after: int, threshold: str
) -> None:
    assert fired(PRO, rule, before, after) == [threshold]
    assert fired(PRO, rule, before - 1, before) == []  # not yet
    assert fired(PRO, rule, after, after + 1) == []  # already past: fired before


def test_a_spend_rule_the_plans_currency_cannot_charge_is_skipped_and_the_others_still_fire() -> None:
    yen = make_plan(id="yen", currency="jpy", price_per_credit=Decimal(1), credit_limit=10_000)
    rules = (AlertRule(spend=Decimal("250.50")), AlertRule(cap_percent=50))  # set when the plan was in USD

    alerts = crossings(change(4_999, 5_000), yen, rules)

    assert [alert.threshold for alert in alerts] == ["5,000 credits (50% of the 10,000-credit cap)"]


def test_a_percentage_of_an_odd_number_is_rounded_up_never_fired_early() -> None:
    plan = make_plan(included_credits=1_001, price_per_credit=Decimal("0.01"))

    assert fired(plan, AlertRule(included_percent=90), 899, 900) == []  # 900 of 1,001 is 89.9%
    assert fired(plan, AlertRule(included_percent=90), 900, 901) == ["901 credits (90% of 1,001 included)"]


def test_a_budget_threshold_counts_the_customers_budget_in_credits() -> None:
    rule = AlertRule(budget_percent=50)

    assert fired(PRO, rule, 1_249, 1_250, budget=2_500) == ["1,250 credits (50% of the budget's 2,500)"]
    assert fired(PRO, rule, 1_249, 1_250, budget=None) == []  # no budget set: nothing to cross


def test_rules_the_plan_cannot_reach_never_fire() -> None:
    payg = make_plan(price_per_credit=Decimal("0.01"))

    assert fired(payg, AlertRule(budget_percent=10), 0, 10**9) == []
    assert fired(payg, AlertRule(balance_below=5), 10, 0) == []  # not prepaid: no balance in the change


def test_a_low_balance_fires_once_per_top_up() -> None:
    prepaid = make_plan(billing="prepaid", price_per_credit=Decimal("0.01"))
    rule = AlertRule(balance_below=100)

    (low,) = crossings(change(0, 901, balance_before=100, balance_after=99, bought=1_000), prepaid, (rule,))
    after_top_up = crossings(
        change(0, 1_901, balance_before=100, balance_after=99, bought=2_000), prepaid, (rule,)
    )

    assert (low.kind, low.threshold, low.detail) == (
        AlertKind.BALANCE_LOW,
        "a balance below 100 credits",
        {"balance": 99},
    )
    assert low.alert_id == "acme:balance1000:balance_below:100"
    assert after_top_up[0].alert_id == "acme:balance2000:balance_below:100"  # a new crossing
    assert crossings(change(0, 1, balance_before=99, balance_after=98, bought=1_000), prepaid, (rule,)) == []
    assert (
        crossings(change(0, 0, balance_before=50, balance_after=5_050, bought=6_000), prepaid, (rule,)) == []
    )


def test_the_alert_id_is_the_customer_the_period_and_the_rule() -> None:
    (alert,) = crossings(change(8_999, 9_000), PRO, (AlertRule(cap_percent=90),))

    assert alert.alert_id == "acme:2026-11:cap_percent:90"
    assert alert.detail_type == "Tollgate Usage Threshold Crossed"
    assert alert.event_detail() == {
        "alertId": "acme:2026-11:cap_percent:90",
        "kind": "usage.threshold",
        "rule": "cap_percent:90",
        "customerId": "acme",
        "period": "2026-11",
        "threshold": "9,000 credits (90% of the 10,000-credit cap)",
        "credits": 9_000,
        "at": "2026-11-16T00:00:00+00:00",
        "limitCredits": 9_000,
    }


def test_the_forecast_projects_the_pace_so_far_to_the_periods_end() -> None:
    assert projected_credits(4_000, "2026-11", MID_MONTH) == 8_000
    assert projected_credits(4_000, "2026-11", datetime(2026, 11, 1, 23, 59, tzinfo=UTC)) is None  # < 1 day
    assert FORECAST_AFTER_SECONDS == 86_400

    (alert,) = crossings(change(4_999, 5_000), PRO, (AlertRule(forecast="cap"),))  # 10,000 by the end

    assert (alert.kind, alert.threshold, alert.detail) == (
        AlertKind.FORECAST,
        "the 10,000-credit cap",
        {"projectedCredits": 10_000},
    )
    assert alert.detail_type == "Tollgate Usage Forecast Exceeded"
    assert crossings(change(4_998, 4_999), PRO, (AlertRule(forecast="cap"),)) == []  # 9,998 projected


def test_a_spend_forecast_rates_the_projected_credits() -> None:
    rule = AlertRule(forecast_spend=Decimal(30))  # 10.00 + 2,000 billable at a cent: 3,000 credits

    assert crossings(change(1_499, 1_500), PRO, (rule,))[0].detail == {"projectedCredits": 3_000}
    assert crossings(change(1_498, 1_499), PRO, (rule,)) == []


def test_several_rules_fire_together_in_their_order() -> None:
    rules = (AlertRule(included_percent=100), AlertRule(spend=Decimal(10)), AlertRule(cap_percent=10))

    assert [a.rule.rule_id for a in crossings(change(0, 1_000), PRO, rules)] == [
        "included_percent:100",
        "cap_percent:10",
    ]  # the base fee was charged from the first credit: 10.00 was never crossed by a request


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({}, "got none"),
        ({"cap_percent": 90, "spend": 5}, "got cap_percent, spend"),
        ({"cap_percent": 0}, "greater than or equal to 1"),
        ({"forecast": "moon"}, "'cap' or 'budget'"),
    ],
)
def test_an_alert_rule_is_exactly_one_threshold(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AlertRule.model_validate(fields)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"alerts": [{"cap_percent": 90}]}, "alerts\\[0\\]: cap_percent:90 can never fire on this plan"),
        ({"alerts": [{"included_percent": 50}]}, "included_percent:50 can never fire"),
        ({"alerts": [{"balance_below": 10}]}, "balance_below:10 can never fire"),
        ({"alerts": [{"spend": "10.005"}]}, "alerts\\[0\\]: 10.005 USD is not an amount the currency has"),
    ],
)
def test_a_plan_refuses_alerts_that_could_never_fire_or_be_charged(
    plan: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        make_plan(**plan)


def test_a_plan_keeps_its_alerts() -> None:
    plan = make_plan(credit_limit=100, alerts=[{"cap_percent": 80}, {"forecast": "budget"}, {"spend": "5"}])

    assert [rule.rule_id for rule in plan.alerts] == ["cap_percent:80", "forecast:budget", "spend:5"]


def test_the_alert_function_reads_a_customer_once_per_ttl_and_a_plan_version_once() -> None:
    from tests.conftest import make_customer
    from tollgate.alerts.service import CUSTOMER_TTL_SECONDS, Accounts

    class Store:
        def __init__(self) -> None:
            self.reads: list[str] = []

        def get_customer(self, customer_id: str) -> object:
            self.reads.append(customer_id)
            return make_customer(PRO, id=customer_id)

        def get_plan(self, plan_id: str, version: int) -> Plan:
            self.reads.append(f"{plan_id}@{version}")
            return PRO

    store, now = Store(), [100.0]
    accounts = Accounts(store, clock=lambda: now[0])  # type: ignore[arg-type]

    for _ in range(3):
        accounts.customer("acme")
        accounts.plan("pro", 1)
    now[0] += CUSTOMER_TTL_SECONDS - 0.001
    accounts.customer("acme")
    assert store.reads == ["acme", "pro@1"]
    now[0] += 0.001  # the customer may have changed: read again; the plan version cannot have
    accounts.customer("acme")
    accounts.plan("pro", 1)
    assert store.reads == ["acme", "pro@1", "acme"]


def test_credits_that_expire_can_bring_a_balance_below_its_alert_but_a_top_up_cannot() -> None:
    prepaid = make_plan(id="credits", billing="prepaid", alerts=[{"balance_below": 100}])
    tag = period_tag("2026-11")
    wallet = {"pk": "WALLET#acme", "sk": "WALLET", "bought": 1_000, "expired": 0, f"{tag}credits": 850}
    before = {**wallet, "balance": 150}
    expired = {**wallet, "balance": 50, "expired": 100}  # the sweep took 100 unused credits: no request

    (change,) = changes_of(before, expired, MID_MONTH)
    alerts = crossings(change, prepaid, prepaid.alerts)

    assert (change.period, change.credits_before, change.credits_after) == ("2026-11", 850, 850)
    assert [(a.kind, a.detail["balance"]) for a in alerts] == [(AlertKind.BALANCE_LOW, 50)]
    assert changes_of(expired, before, MID_MONTH) == []  # a top-up: the balance rose, nothing to say
    assert changes_of(before, before, MID_MONTH) == []
