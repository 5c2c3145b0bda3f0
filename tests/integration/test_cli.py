"""The `tollgate` CLI end to end: typer's CliRunner -> commands -> moto DynamoDB and the Stripe double."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from tests.conftest import NOW, TABLE, make_customer, make_plan
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal.closes import close_item
from tollgate.dal.store import TollgateStore
from tollgate.domain.closes import CloseStatus, PeriodClose
from tollgate.domain.keyformat import hash_key
from tollgate.domain.models import CustomerStatus, Plan
from tollgate.domain.rating import rate_period
from tollgate_local.stripe_double import StripeDouble

Invoke = Callable[..., Result]
KEY_RE = re.compile(r"tg_(?:live|test)_[A-Za-z0-9_-]{43}")

GOOD_YAML = """\
plans:
  - id: payg
    name: Pay as you go
    price_per_credit: 0.00042
    route_costs:
      "GET /v1/search": 1
      "POST /v1/generate": 25
      "GET /usage": 0
  - id: pro
    name: Pro
    currency: eur
    price_per_credit: 0.0003
    base_fee: 49
    included_credits: 100000
    credit_limit: 5000000
"""

GOOD_TOML = """\
id = "scale"
name = "Scale"
default_cost = 2

[route_costs]
"GET /v1/search" = 1

[[tiers]]
up_to = 1000
price_per_credit = 0.001

[[tiers]]
price_per_credit = 0.0005
"""


@pytest.fixture
def cli(store: TollgateStore, double: StripeDouble) -> Invoke:
    runner = CliRunner()

    def invoke(*args: str, now: datetime = NOW) -> Result:
        context = AppContext(clock=lambda: now, _stripe=double.client())
        return runner.invoke(app, list(args), obj=context, env={"COLUMNS": "200"})

    return invoke


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


# -- plans -----------------------------------------------------------------------------------------------
def test_plans_create_from_a_yaml_file_stores_every_plan_exactly(
    cli: Invoke, store: TollgateStore, tmp_path: Path
) -> None:
    result = cli("plans", "create", str(write(tmp_path, "plans.yaml", GOOD_YAML)))

    assert result.exit_code == 0, result.output
    assert "created plan payg v1" in result.stdout
    assert "created plan pro v1" in result.stdout
    payg, pro = store.get_plan("payg"), store.get_plan("pro")
    assert str(payg.price_per_credit) == "0.00042"
    assert payg.route_costs == {"GET /v1/search": 1, "POST /v1/generate": 25, "GET /usage": 0}
    assert (pro.currency, str(pro.base_fee), pro.included_credits, pro.credit_limit) == (
        "eur",
        "49",
        100000,
        5000000,
    )


def test_plans_create_from_a_toml_file_with_tiers(cli: Invoke, store: TollgateStore, tmp_path: Path) -> None:
    result = cli("plans", "create", str(write(tmp_path, "scale.toml", GOOD_TOML)))

    assert result.exit_code == 0, result.output
    plan = store.get_plan("scale")
    assert [(t.up_to, str(t.price_per_credit)) for t in plan.tiers] == [(1000, "0.001"), (None, "0.0005")]
    assert plan.default_cost == 2


def test_plans_create_from_flags(cli: Invoke, store: TollgateStore) -> None:
    result = cli(
        "plans",
        "create",
        "--id",
        "strict",
        "--name",
        "Strict",
        "--price-per-credit",
        "0.001",
        "--route-cost",
        "GET /v1/search=2",
        "--route-cost",
        "GET /usage=0",
        "--default-cost",
        "none",
        "--credit-limit",
        "1000",
    )

    assert result.exit_code == 0, result.output
    plan = store.get_plan("strict")
    assert plan.route_costs == {"GET /v1/search": 2, "GET /usage": 0}
    assert plan.default_cost is None
    assert plan.credit_limit == 1000
    assert str(plan.price_per_credit) == "0.001"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ("id: payg\nname: P\nprice_per_credit: 0.1\ncolour: red\n", "colour", "unknown field"),
        ("id: payg\nname: P\nprice_per_credit: -1\n", "price_per_credit", "greater than or equal to 0"),
        (
            "id: payg\nname: P\nprice_per_credit: 0.1\nroute_costs:\n  FETCH /x: 1\n",
            "route_costs",
            "'FETCH /x' must look like",
        ),
        ("id: payg\nname: P\nprice_per_credit: 0.1\nincluded_credits: lots\n", "included_credits", "integer"),
        ("id: payg\nname: P\nprice_per_credit: cheap\n", "price_per_credit", "decimal"),
    ],
)
def test_a_bad_plan_file_is_one_line_naming_the_field_and_stores_nothing(
    cli: Invoke, store: TollgateStore, tmp_path: Path, body: str, field: str, message: str
) -> None:
    result = cli("plans", "create", str(write(tmp_path, "plans.yaml", body)))

    assert_one_line_error(result, f"plans.yaml: {field}: ", message)
    assert store.list_plans() == []


def test_a_plan_file_with_several_problems_reports_each_on_its_own_line(
    cli: Invoke, store: TollgateStore, tmp_path: Path
) -> None:
    body = (
        "plans:\n  - {id: a, name: A, price_per_credit: 0.1}\n"
        "  - {id: b, name: B, price_per_credit: -2, x: 1}\n"
    )
    result = cli("plans", "create", str(write(tmp_path, "plans.yaml", body)))

    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "error: plans.yaml: plans[1].price_per_credit: Input should be greater than or equal to 0",
        "error: plans.yaml: plans[1].x: unknown field (check its spelling)",
    ]
    assert store.list_plans() == []  # plan 'a' was fine, but a file is applied whole or not at all


def test_unparseable_yaml_and_bad_flags_are_one_line(cli: Invoke, tmp_path: Path) -> None:
    broken = cli("plans", "create", str(write(tmp_path, "plans.yaml", "id: [unclosed\n")))
    assert_one_line_error(broken, "plans.yaml: line 2: not valid YAML")

    flags = cli("plans", "create", "--id", "x", "--name", "X", "--price-per-credit", "-3")
    assert_one_line_error(flags, "--price-per-credit: Input should be greater than or equal to 0")

    route = cli(
        "plans", "create", "--id", "x", "--name", "X", "--price-per-credit", "1", "--route-cost", "GET"
    )
    assert_one_line_error(route, "--route-cost: 'GET' is not 'METHOD /path=credits'")


def test_an_existing_plan_is_never_edited_in_place(cli: Invoke, store: TollgateStore, tmp_path: Path) -> None:
    plan_file = write(tmp_path, "plans.yaml", GOOD_YAML)
    assert cli("plans", "create", str(plan_file)).exit_code == 0

    again = cli("plans", "create", str(plan_file))
    assert again.exit_code == 0
    assert "plan payg v1 unchanged" in again.stdout

    cheaper = write(tmp_path, "plans.yaml", GOOD_YAML.replace("0.00042", "0.0004"))
    refused = cli("plans", "create", str(cheaper))
    assert_one_line_error(refused, "plan 'payg' already exists (latest v1)", "--new-version")
    assert str(store.get_plan("payg").price_per_credit) == "0.00042"

    versioned = cli("plans", "create", str(cheaper), "--new-version")
    assert versioned.exit_code == 0, versioned.output
    assert "created plan payg v2" in versioned.stdout
    assert str(store.get_plan("payg", 1).price_per_credit) == "0.00042"
    assert str(store.get_plan("payg", 2).price_per_credit) == "0.0004"
    assert store.get_plan("pro").version == 1  # unchanged terms: no new version


def test_plans_list_and_show(cli: Invoke, tmp_path: Path) -> None:
    cli("plans", "create", str(write(tmp_path, "plans.yaml", GOOD_YAML)))
    cli("plans", "create", str(write(tmp_path, "scale.toml", GOOD_TOML)))

    listed = cli("plans", "list")
    shown = cli("plans", "show", "pro")

    assert listed.exit_code == 0
    for plan_id in ("payg", "pro", "scale"):
        assert plan_id in listed.stdout
    assert "0.00042 USD" in listed.stdout
    assert "49.00 EUR" in listed.stdout
    assert shown.exit_code == 0
    assert "plan pro v1: Pro" in shown.stdout
    assert "100,000" in shown.stdout
    assert "5,000,000" in shown.stdout


def test_unknown_plan_is_one_line(cli: Invoke) -> None:
    assert_one_line_error(cli("plans", "show", "nope"), "plan 'nope' not found")
    assert_one_line_error(cli("plans", "show", "nope", "--version", "3"), "plan 'nope v3' not found")


# -- customers -------------------------------------------------------------------------------------------
@pytest.fixture
def plan(store: TollgateStore) -> Plan:
    return store.put_plan(make_plan())


def create_acme(cli: Invoke) -> Result:
    return cli(
        "customers", "create", "acme", "--name", "Acme Corp", "--email", "billing@acme.test", "--plan", "payg"
    )


def test_customers_create_makes_the_stripe_customer_once(
    cli: Invoke, store: TollgateStore, double: StripeDouble, plan: Plan
) -> None:
    result = create_acme(cli)

    assert result.exit_code == 0, result.output
    customer = store.get_customer("acme")
    assert customer.stripe_customer_id is not None
    assert customer.stripe_customer_id in result.stdout
    stripe_customer = double.customers[customer.stripe_customer_id]
    assert stripe_customer["email"] == "billing@acme.test"
    assert stripe_customer["metadata"] == {"tollgate_customer_id": "acme"}
    (call,) = double.calls_to("customers.create")
    assert call.idempotency_key == "tollgate-customer-acme"

    again = create_acme(cli)
    assert_one_line_error(again, "customer 'acme' already exists")
    assert len(double.customers) == 1


def test_customer_create_finishes_an_interrupted_create_without_a_second_stripe_customer(
    cli: Invoke, store: TollgateStore, double: StripeDouble, plan: Plan
) -> None:
    store.put_customer(make_customer(plan))  # an earlier run stopped before Stripe answered
    double.faults.lose_response_after_write("customers.create")

    lost = create_acme(cli)
    assert_one_line_error(
        lost, "customer 'acme' is stored but its Stripe customer", "run the same command again"
    )
    assert store.get_customer("acme").stripe_customer_id is None

    retried = create_acme(cli)
    assert retried.exit_code == 0, retried.output
    assert "linked existing customer acme" in retried.stdout
    assert len(double.customers) == 1  # Stripe replayed the first answer under the same idempotency key
    assert store.get_customer("acme").stripe_customer_id == next(iter(double.customers))


def test_customer_create_on_an_unknown_plan_stores_nothing(
    cli: Invoke, store: TollgateStore, double: StripeDouble
) -> None:
    assert_one_line_error(create_acme(cli), "plan 'payg' not found")
    assert store.list_customers() == []
    assert double.customers == {}


def test_customer_create_with_a_bad_email_names_the_field(cli: Invoke, plan: Plan) -> None:
    result = cli("customers", "create", "acme", "--name", "A", "--email", "nope", "--plan", "payg")
    assert_one_line_error(result, "email: String should match pattern")


def test_suspend_resume_and_the_status_history(cli: Invoke, store: TollgateStore, plan: Plan) -> None:
    create_acme(cli)

    suspended = cli("customers", "suspend", "acme", now=NOW)
    resumed = cli("customers", "resume", "acme", now=NOW + timedelta(hours=2))
    shown = cli("customers", "show", "acme")
    listed = cli("customers", "list")

    assert "suspended acme" in suspended.stdout
    assert "resumed acme" in resumed.stdout
    assert store.get_customer("acme").status is CustomerStatus.ACTIVE
    history = [(a["status"], a["reason"], a["cause"]) for a in store.list_audit("acme")]
    assert history == [("suspended", "manual", "cli"), ("active", None, "cli")]
    assert shown.exit_code == 0
    assert "2026-11-15 12:00:00 UTC" in shown.stdout
    assert "2026-11-15 14:00:00 UTC" in shown.stdout
    assert "manual" in shown.stdout
    assert "acme" in listed.stdout
    assert "payg v1" in listed.stdout


def test_unknown_customer_is_one_line_for_every_command(cli: Invoke, plan: Plan) -> None:
    for args in (
        ("customers", "show", "ghost"),
        ("customers", "suspend", "ghost"),
        ("customers", "resume", "ghost"),
        ("keys", "issue", "ghost"),
        ("keys", "list", "ghost"),
        ("usage", "ghost"),
        ("invoices", "list", "ghost"),
    ):
        assert_one_line_error(cli(*args), "customer 'ghost' not found")


# -- keys ------------------------------------------------------------------------------------------------
def test_keys_issue_list_revoke_rotate(cli: Invoke, store: TollgateStore, plan: Plan) -> None:
    store.put_customer(make_customer(plan))

    issued = cli("keys", "issue", "acme", "--name", "ci")
    assert issued.exit_code == 0, issued.output
    (key,) = KEY_RE.findall(issued.stdout)
    assert issued.stdout.strip() == key  # stdout is the key alone: KEY=$(tollgate keys issue acme)
    assert "only time the key is shown" in issued.stderr
    assert store.get_api_key(hash_key(key)).customer_id == "acme"

    listed = cli("keys", "list", "acme")
    record = store.get_api_key(hash_key(key))
    assert record.key_id in listed.stdout
    assert key[:12] in listed.stdout
    assert key not in listed.stdout
    assert KEY_RE.search(listed.output) is None

    rotated = cli("keys", "rotate", "acme", record.key_id, "--overlap", "1h")
    assert rotated.exit_code == 0, rotated.output
    (new_key,) = KEY_RE.findall(rotated.stdout)
    assert new_key != key
    assert store.get_api_key(hash_key(key)).valid_until == NOW + timedelta(hours=1)
    assert "2026-11-15 13:00:00 UTC" in rotated.stderr

    new_record = store.get_api_key(hash_key(new_key))
    revoked = cli("keys", "revoke", "acme", new_record.key_id)
    assert revoked.exit_code == 0
    assert store.get_api_key(hash_key(new_key)).revoked_at == NOW

    states = cli("keys", "list", "acme", now=NOW + timedelta(hours=2)).stdout
    assert "expired 2026-11-15 13:00:00 UTC" in states
    assert "revoked 2026-11-15 12:00:00 UTC" in states
    assert KEY_RE.search(states) is None


def test_key_errors_are_one_line(cli: Invoke, store: TollgateStore, plan: Plan) -> None:
    store.put_customer(make_customer(plan))
    missing = cli("keys", "revoke", "acme", "key_000000000000")
    assert_one_line_error(missing, "api key 'key_000000000000' not found")
    cli("keys", "issue", "acme")
    key_id = store.list_api_keys("acme")[0].key_id
    assert_one_line_error(cli("keys", "rotate", "acme", key_id, "--overlap", "soon"), "--overlap: 'soon'")
    assert_one_line_error(
        cli("keys", "rotate", "acme", key_id, "--overlap", "45d"), "overlap must be between"
    )


# -- usage -----------------------------------------------------------------------------------------------
def add_usage(
    store: TollgateStore, customer_id: str, period: str, shard: int, routes: dict[str, tuple[int, int]]
) -> None:
    """Counter items exactly as the authorizer writes them (totals, a tally per route, the route registry)."""
    from tollgate.dal import tablekeys as tk
    from tollgate.dal.counter_item import route_code, route_tally

    item: dict[str, Any] = {**tk.counter_key(customer_id, period, shard), "credits": 0, "requests": 0}
    for route, (credits, requests) in routes.items():
        item["credits"] += credits
        item["requests"] += requests
        item[route_code(route)] = Decimal(route_tally(credits, requests))
        store.table.put_item(Item={**tk.route_name_key(route_code(route), route), "route": route})
    store.table.put_item(Item=item)


def test_usage_shows_counters_included_cap_and_the_estimate(cli: Invoke, store: TollgateStore) -> None:
    plan = store.put_plan(
        make_plan(
            id="hybrid", base_fee="10", included_credits=1000, credit_limit=100_000, price_per_credit="0.002"
        )
    )
    store.put_customer(make_customer(plan, counter_shards=2))
    add_usage(store, "acme", "2026-11", 0, {"GET /v1/search": (700, 700), "POST /v1/generate": (500, 20)})
    add_usage(store, "acme", "2026-11", 1, {"GET /v1/search": (300, 300)})
    expected = rate_period(plan, "acme", "2026-11", 1500).total

    result = cli("usage", "acme")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "acme usage in 2026-11 (plan hybrid v1)" in out
    assert re.search(r"credits\s+1,500\b", out)
    assert re.search(r"requests\s+1,020\b", out)
    assert re.search(r"included left\s+0 of 1,000", out)
    assert re.search(r"cap\s+100,000 \(98,500 left\)", out)
    assert expected == 1000 + 100  # 10.00 base fee + 500 credits above the included ones at 0.2 cents
    assert re.search(r"estimated charge\s+11\.00 USD", out)
    assert re.search(r"GET /v1/search\s+│?\s*1,000\s+│?\s*1,000", out)
    assert re.search(r"POST /v1/generate\s+│?\s*500\s+│?\s*20", out)


def test_usage_json_and_another_period(cli: Invoke, store: TollgateStore, plan: Plan) -> None:
    store.put_customer(make_customer(plan))
    add_usage(store, "acme", "2026-10", 0, {"POST /v1/generate": (2500, 100)})

    result = cli("usage", "acme", "--period", "2026-10", "--json")

    assert result.exit_code == 0, result.output
    import json

    report = json.loads(result.stdout)
    assert report["period"] == "2026-10"
    assert report["creditsUsed"] == 2500
    assert report["estimatedCharge"] == {"amount": 105, "formatted": "1.05 USD", "currency": "usd"}
    assert_one_line_error(
        cli("usage", "acme", "--period", "2026-13"), "--period: a period is written YYYY-MM"
    )


# -- invoices --------------------------------------------------------------------------------------------
def put_close(store: TollgateStore, plan: Plan, period: str, credits: int, **fields: Any) -> PeriodClose:
    record = PeriodClose(
        customer_id="acme",
        period=period,
        status=fields.pop("status", CloseStatus.FINALIZED),
        statement=rate_period(plan, "acme", period, credits),
        billed_credits=credits,
        created_at=NOW,
        updated_at=NOW,
        **fields,
    )
    store.table.put_item(Item=close_item(record))
    return record


def test_invoices_list_and_show_come_from_the_close_records(
    cli: Invoke, store: TollgateStore, plan: Plan
) -> None:
    store.put_customer(make_customer(plan))
    url = "https://invoice.stripe.test/i/acct_1/test_YWNjdF8xLF9QZXJpb2RPY3RvYmVy0100abcdef"
    put_close(
        store,
        plan,
        "2026-10",
        1_000_000,
        stripe_invoice_id="in_oct",
        hosted_invoice_url=url,
        amount_due=42000,
        invoice_status="open",
    )
    put_close(store, plan, "2026-09", 0, status=CloseStatus.NO_CHARGE)

    listed = cli("invoices", "list", "acme")
    shown = cli("invoices", "show", "acme", "2026-10")

    assert listed.exit_code == 0, listed.output
    assert listed.stdout.index("2026-10") < listed.stdout.index("2026-09")  # newest first
    assert "in_oct" in listed.stdout
    assert "420.00 USD" in listed.stdout
    assert "no_charge" in listed.stdout
    assert shown.exit_code == 0, shown.output
    assert url in shown.stdout  # printed whole, never wrapped
    assert re.search(r"invoice status\s+open", shown.stdout)
    assert re.search(r"total\s+420\.00 USD", shown.stdout)
    assert_one_line_error(cli("invoices", "show", "acme", "2026-08"), "invoice 'acme 2026-08' not found")


# -- close ----------------------------------------------------------------------------------------------
def test_close_invoices_the_previous_period_once_and_invoices_show_it(
    cli: Invoke, store: TollgateStore, double: StripeDouble, plan: Plan
) -> None:
    for customer_id in ("acme", "quiet"):
        created = cli(
            "customers", "create", customer_id, "--name", customer_id, "--email", "b@x.test", "--plan", "payg"
        )
        assert created.exit_code == 0, created.output
    add_usage(store, "acme", "2026-10", 0, {"POST /v1/generate": (1_000_000, 40_000)})

    first = cli("close")  # now is 2026-11-15: the previous period is 2026-10
    assert first.exit_code == 0, first.output
    assert "close of 2026-10" in first.stdout
    assert re.search(r"acme\s+│?\s*finalized\s+│?\s*420\.00 USD", first.stdout)
    assert re.search(r"quiet\s+│?\s*no_charge", first.stdout)
    (invoice,) = double.invoices.values()
    assert (invoice["status"], invoice["total"]) == ("open", 42000)
    calls = len(double.calls)

    again = cli("close", "--period", "2026-10")
    assert again.exit_code == 0, again.output
    assert len(double.calls) == calls  # closed already: Stripe is not called again
    assert len(double.invoices) == 1

    shown = cli("invoices", "show", "acme", "2026-10")
    assert invoice["id"] in shown.stdout
    assert invoice["hosted_invoice_url"] in shown.stdout
    assert re.search(r"total\s+420\.00 USD", shown.stdout)


def test_close_of_a_period_that_has_not_ended_is_refused(
    cli: Invoke, double: StripeDouble, plan: Plan
) -> None:
    assert_one_line_error(cli("close", "--period", "2026-11"), "period 2026-11 has not ended")
    assert double.calls == []


def test_close_reports_a_failed_customer_and_exits_non_zero(
    cli: Invoke, store: TollgateStore, double: StripeDouble, plan: Plan
) -> None:
    store.put_customer(make_customer(plan))  # no Stripe customer: it cannot be invoiced
    add_usage(store, "acme", "2026-10", 0, {"GET /v1/search": (10_000, 10_000)})

    result = cli("close", "--period", "2026-10")

    assert result.exit_code == 1
    assert "failed" in result.stdout
    assert "1 of 1 customer(s) failed to close" in result.stderr
    assert "Traceback" not in result.output


def test_close_run_is_the_same_as_close(
    cli: Invoke, store: TollgateStore, double: StripeDouble, plan: Plan
) -> None:
    store.put_customer(make_customer(plan, stripe_customer_id=None))  # nothing to bill: no Stripe call

    ran = cli("close", "run", "--period", "2026-10")

    assert ran.exit_code == 0, ran.output
    assert "close of 2026-10" in ran.stdout
    assert re.search(r"acme\s+│?\s*no_charge", ran.stdout)
    assert double.calls == []


def test_close_options_before_a_subcommand_are_refused(cli: Invoke, plan: Plan) -> None:
    result = cli("close", "--period", "2026-10", "status")
    assert result.exit_code == 2  # a usage error, as click reports it
    assert "put the options after the subcommand" in result.output


# -- close status ----------------------------------------------------------------------------------------
IN_OCTOBER = datetime(2026, 10, 3, 9, 0, tzinfo=NOW.tzinfo)


def test_close_status_counts_customers_by_state_and_check_passes_when_done(
    cli: Invoke, store: TollgateStore, plan: Plan
) -> None:
    store.put_customer(make_customer(plan, created_at=IN_OCTOBER))
    put_close(store, plan, "2026-10", 1_000_000, stripe_invoice_id="in_oct")

    result = cli("close", "status")  # now is 2026-11-15: the previous period is 2026-10
    checked = cli("close", "status", "--period", "2026-10", "--check")

    assert result.exit_code == 0, result.output
    assert "close of 2026-10" in result.stdout
    assert re.search(r"finalized\s+│?\s*1\b", result.stdout)
    assert re.search(r"missing\s+│?\s*0\b", result.stdout)
    assert "1 of 1 customer(s) closed, 0 unfinished, 0 mismatched" in result.stdout
    assert "last error" not in result.stdout  # no table of unfinished customers
    assert checked.exit_code == 0, checked.output
    assert checked.stdout == result.stdout


def test_close_status_lists_unfinished_and_mismatched_customers_and_check_fails(
    cli: Invoke, store: TollgateStore, plan: Plan
) -> None:
    for customer_id in ("acme", "beta", "gone", "zeta"):
        store.put_customer(make_customer(plan, id=customer_id, created_at=IN_OCTOBER))
    store.put_customer(make_customer(plan, id="newbie"))  # created on 2026-11-15: not expected in October
    put_close(
        store,
        plan,
        "2026-10",
        1_000,
        status=CloseStatus.RATED,
        attempts=2,
        last_error="StripeCallError: [down]",
    )
    record = PeriodClose(
        customer_id="beta",
        period="2026-10",
        status=CloseStatus.FINALIZED,
        statement=rate_period(plan, "beta", "2026-10", 1_000_000),
        billed_credits=1_000_000,
        stripe_invoice_id="in_beta",
        total_mismatch=True,
        created_at=NOW,
        updated_at=NOW,
    )
    store.table.put_item(Item=close_item(record))
    zeta = PeriodClose(
        customer_id="zeta",
        period="2026-10",
        status=CloseStatus.NO_CHARGE,
        statement=rate_period(plan, "zeta", "2026-10", 0),
        billed_credits=0,
        created_at=NOW,
        updated_at=NOW,
    )
    store.table.put_item(Item=close_item(zeta))

    result = cli("close", "status", "--period", "2026-10")
    checked = cli("close", "status", "--period", "2026-10", "--check")

    assert result.exit_code == 0, result.output  # a report: the close may still be running
    assert (
        "2 of 4 customer(s) closed, 2 unfinished, 1 mismatched (1 created after the period" in result.stdout
    )
    assert re.search(r"acme\s+│?\s*rated\s+│?\s*2\s+│?\s*StripeCallError: \[down\]", result.stdout)
    assert re.search(r"gone\s+│?\s*missing\s+│?\s*0", result.stdout)
    assert re.search(r"beta\s+│?\s*in_beta\s+│?\s*420\.00 USD", result.stdout)
    assert "newbie" not in result.stdout
    assert checked.exit_code == 1
    assert checked.stdout == result.stdout
    assert checked.stderr.strip() == "error: the close of 2026-10 is not complete: 2 unfinished, 1 mismatched"


def test_close_status_of_a_period_that_has_not_ended_is_refused(cli: Invoke, plan: Plan) -> None:
    assert_one_line_error(cli("close", "status", "--period", "2026-11"), "period 2026-11 has not ended")
    assert_one_line_error(cli("close", "status", "--period", "2026-13"), "--period")


# -- configuration ---------------------------------------------------------------------------------------
def test_missing_configuration_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TABLE_NAME")
    monkeypatch.delenv("TOLLGATE_STACK", raising=False)
    result = CliRunner().invoke(app, ["plans", "list"])
    assert_one_line_error(result, "no table configured", "--stack")


def test_a_missing_table_is_one_line(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TABLE_NAME", "no-such-table")
    result = CliRunner().invoke(app, ["plans", "list"])
    assert_one_line_error(result, "ResourceNotFoundException", "TABLE_NAME")


class FakeCloudFormation:
    """describe_stacks as CloudFormation answers it, for one deployed stack."""

    def __init__(self, stacks: dict[str, dict[str, str]]) -> None:
        self.stacks = stacks

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # boto3's parameter name
        from botocore.exceptions import ClientError

        if StackName not in self.stacks:
            message = f"Stack with id {StackName} does not exist"
            raise ClientError({"Error": {"Code": "ValidationError", "Message": message}}, "DescribeStacks")
        outputs = [{"OutputKey": k, "OutputValue": v} for k, v in self.stacks[StackName].items()]
        return {"Stacks": [{"StackName": StackName, "Outputs": outputs}]}


def test_stack_outputs_name_the_table(store: TollgateStore, monkeypatch: pytest.MonkeyPatch) -> None:
    from tollgate.cli import config

    store.put_plan(make_plan())
    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:stripe"
    fake = FakeCloudFormation(
        {"Tollgate": {"TableName": TABLE, "StripeApiKeySecretArn": secret}, "Other": {"ApiUrl": "x"}}
    )
    real = config.stack_outputs
    monkeypatch.setattr(config, "stack_outputs", lambda stack, _client=None: real(stack, fake))
    monkeypatch.setenv("TABLE_NAME", "not-this-one")

    by_flag = CliRunner().invoke(app, ["--stack", "Tollgate", "plans", "list"])
    by_env = CliRunner().invoke(app, ["plans", "list"], env={"TOLLGATE_STACK": "Tollgate"})

    assert by_flag.exit_code == 0, by_flag.output
    assert "payg" in by_flag.stdout
    assert "payg" in by_env.stdout
    assert config.resolve_settings("Tollgate", {}, fake).stripe_api_key_secret_arn == secret
    assert_one_line_error(
        CliRunner().invoke(app, ["--stack", "Nope", "plans", "list"]), "Stack with id Nope does not exist"
    )
    assert_one_line_error(
        CliRunner().invoke(app, ["--stack", "Other", "plans", "list"]),
        "stack 'Other' has no TableName output",
    )


def test_stripe_from_the_environment(
    store: TollgateStore, double: StripeDouble, plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_double")
    monkeypatch.setenv("STRIPE_API_BASE", double.base_url)
    result = CliRunner().invoke(
        app, ["customers", "create", "acme", "--name", "A", "--email", "a@b.test", "--plan", "payg"]
    )
    assert result.exit_code == 0, result.output
    assert len(double.customers) == 1


def test_without_stripe_configuration_customer_create_is_one_line(
    store: TollgateStore, plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STRIPE_API_KEY", "STRIPE_API_KEY_SECRET_ARN", "TOLLGATE_STACK"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(
        app, ["customers", "create", "acme", "--name", "A", "--email", "a@b.test", "--plan", "payg"]
    )
    assert_one_line_error(result, "Stripe is not configured")
    assert store.list_customers() == []  # Stripe is resolved before anything is written


def test_no_arguments_shows_the_command_tree() -> None:
    result = CliRunner().invoke(app, [])
    for command in ("plans", "customers", "keys", "usage", "invoices", "close"):
        assert command in result.output


@pytest.fixture(autouse=True)
def _no_stripe_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STRIPE_API_KEY", "STRIPE_API_BASE", "STRIPE_API_KEY_SECRET_ARN", "TOLLGATE_STACK"):
        monkeypatch.delenv(name, raising=False)


# -- plan changes ----------------------------------------------------------------------------------------
def test_change_plan_schedules_the_change_and_show_lists_the_history(
    cli: Invoke, store: TollgateStore
) -> None:
    store.put_plan(make_plan(id="starter", name="Starter"))
    store.put_plan(make_plan(id="growth", name="Growth", base_fee=Decimal("20")))
    store.put_customer(make_customer(store.get_plan("starter"), stripe_customer_id="cus_acme"))

    result = cli("customers", "change-plan", "acme", "--plan", "growth")

    assert result.exit_code == 0, result.output
    starts = NOW + timedelta(seconds=60)
    assert f"acme moves to plan growth v1 at {starts:%Y-%m-%d %H:%M:%S} UTC" in result.stdout
    assert cli("customers", "change-plan", "acme", "--plan", "growth").stdout.startswith(
        "acme is already on (or scheduled for) plan growth v1"
    )
    shown = cli("customers", "show", "acme", now=NOW + timedelta(seconds=1))
    assert "plan history" in shown.stdout
    assert "starter v1" in shown.stdout
    assert f"starter v1 (moves to growth v1 at {starts:%Y-%m-%d %H:%M:%S} UTC)" in shown.stdout
    (row,) = [line for line in shown.stdout.splitlines() if "growth v1" in line and "moves" not in line]
    assert f"{starts:%Y-%m-%d %H:%M:%S} UTC" in row
    assert "scheduled" in row


def test_change_plan_to_an_unknown_plan_is_one_line_and_changes_nothing(
    cli: Invoke, store: TollgateStore
) -> None:
    store.put_plan(make_plan(id="starter", name="Starter"))
    store.put_customer(make_customer(store.get_plan("starter")))

    assert_one_line_error(cli("customers", "change-plan", "acme", "--plan", "nope"), "nope")
    assert store.get_customer("acme").segments[-1].plan_id == "starter"


# -- free credits and trials -----------------------------------------------------------------------------
def test_grants_add_list_revoke_and_a_trial(cli: Invoke, store: TollgateStore) -> None:
    store.put_plan(make_plan(id="starter", name="Starter"))
    store.put_customer(make_customer(store.get_plan("starter")))

    added = cli("grants", "add", "acme", "--credits", "1000", "--description", "sign-up bonus")
    assert added.exit_code == 0, added.output
    (grant,) = store.list_credit_grants("acme")
    assert added.stdout.strip() == f"granted 1,000 free credits to acme (sign-up bonus): {grant.grant_id}"
    monthly = cli("grants", "add", "acme", "--credits", "50", "--recurring", "--expires", "2027-01-01")
    assert "50 free credits every period" in monthly.stdout

    listed = cli("grants", "list", "acme").stdout
    assert grant.grant_id in listed
    assert "recurring" in listed
    assert "2027-01-01 00:00:00 UTC" in listed

    assert cli("grants", "revoke", "acme", grant.grant_id).stdout.strip() == f"revoked {grant.grant_id}"
    assert "already revoked" in cli("grants", "revoke", "acme", grant.grant_id).stdout
    assert_one_line_error(cli("grants", "revoke", "acme", "grt_000000000000"), "grt_000000000000")
    assert_one_line_error(cli("grants", "add", "acme", "--credits", "5", "--expires", "soon"), "--expires")

    trial = cli("customers", "trial", "acme", "--days", "14")
    assert trial.stdout.strip() == f"acme: trial until {NOW + timedelta(days=14):%Y-%m-%d %H:%M:%S} UTC"
    assert store.get_customer("acme").trial_ends == NOW + timedelta(days=14)
    assert_one_line_error(cli("customers", "trial", "acme"), "--until")
    assert cli("customers", "trial", "acme", "--end").stdout.strip() == "acme: no trial"
    assert store.get_customer("acme").trial_ends is None
