"""A customer's own usage alerts and alert webhook, set with their own API key, end to end on Amazon DynamoDB
Local: ``/usage/alerts`` and ``/usage/alerts/webhook`` through the usage API with the customer's authorizer
context (metered at 0 credits by the real authorizer), rules checked as the plan's own (a refusal is a 400 and
changes nothing), the alert function firing the customer's rule instead of the plan's, the signing secret in
one answer and nowhere else (not in a GET, not in the logs), writes that keep concurrent changes of the
customer's other fields, and the provider's ``tollgate customers alerts``."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from tests.conftest import CONTEXT, NOW, TABLE, Authorizer, make_customer, make_plan
from tests.events import rest_event
from tollgate.accounts.alert_rules import alert_rules_status, set_alert_rules
from tollgate.accounts.alert_webhooks import change_alert_webhook, new_secret
from tollgate.accounts.budgets import set_budget
from tollgate.accounts.keys import issue_key
from tollgate.accounts.plan_changes import change_plan
from tollgate.alerts.service import process
from tollgate.cli.config import AppContext
from tollgate.cli.main import app
from tollgate.dal import tablekeys as tk
from tollgate.dal.customer_settings import write_alert_rules, write_alert_webhook
from tollgate.dal.store import TollgateStore
from tollgate.domain.alerts import Alert
from tollgate.domain.models import AlertRule, AlertWebhook, Plan
from tollgate.errors import ConflictError, InvalidInputError, NotFoundError
from tollgate.usage_api.handler import Deps, make_handler

pytestmark = pytest.mark.dynamodb_local

NOW_MS = int(NOW.timestamp() * 1000)
PERIOD = "2026-11"
ROUTES = {
    "GET /v1/search": 1,
    "GET /usage": 0,
    "ANY /usage/budget": 0,
    "ANY /usage/alerts": 0,
    "ANY /usage/alerts/webhook": 0,
}
# a cent a credit, capped at 100 credits, alerted at half and 90% of the cap
CAPPED = make_plan(
    id="capped",
    name="Capped",
    price_per_credit=Decimal("0.01"),
    credit_limit=100,
    route_costs=ROUTES,
    alerts=[{"cap_percent": 50}, {"cap_percent": 90}],
)
UNCAPPED = make_plan(id="open", name="Open", price_per_credit=Decimal("0.01"), route_costs=ROUTES)
HOOK = "https://hooks.acme.example/tollgate?token=customer-token"


def customer(store: TollgateStore, plan: Plan = CAPPED, **fields: Any) -> str:
    store.put_plan(plan)
    store.put_customer(make_customer(plan, stripe_customer_id="cus_acme", **fields))
    return issue_key(store, "acme", now=NOW - timedelta(days=1)).key


def api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    """The REST proxy event the usage function gets behind the authorizer (its context as strings)."""
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": path,
            "httpMethod": method,
            "path": f"/live{path}",
            "stage": "live",
            "requestId": "req-alerts",
            "authorizer": {"principalId": "acme", "customerId": "acme"},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def http_api_event(method: str, path: str, body: Any = None) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7"},
            "requestId": "req-v2",
            "routeKey": f"{method} {path}",
            "stage": "$default",
            "authorizer": {"lambda": {"customerId": "acme"}},
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@pytest.fixture
def usage(store: TollgateStore) -> Any:
    """``usage(method, path, body)`` -> (status, JSON body), through the usage function's handler."""
    handle = make_handler(Deps(store, clock=lambda: NOW))

    def answer(method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        response = handle(api_event(method, path, body), CONTEXT)
        return response["statusCode"], json.loads(response["body"])

    return answer


def call(
    authorizer: Authorizer, key: str, method: str = "GET", resource: str = "/v1/search"
) -> dict[str, Any]:
    answer = authorizer(rest_event(method, resource, headers={"x-api-key": key}, epoch_ms=NOW_MS))
    effect = answer["policyDocument"]["Statement"][0]["Effect"]
    return {"allowed": effect == "Allow", **answer["context"]}


class Bus:
    def __init__(self) -> None:
        self.published: list[Alert] = []

    def publish(self, alert: Alert) -> None:
        self.published.append(alert)


def image(key: dict[str, str]) -> dict[str, Any] | None:
    return boto3.resource("dynamodb").Table(TABLE).get_item(Key=key, ConsistentRead=True).get("Item")


# -- alert rules --------------------------------------------------------------------------------------------
def test_the_routes_are_metered_at_0_credits(store: TollgateStore, authorizer: Authorizer) -> None:
    key = customer(store)

    for method, resource in [
        ("GET", "/usage/alerts"),
        ("PUT", "/usage/alerts"),
        ("GET", "/usage/alerts/webhook"),
        ("PUT", "/usage/alerts/webhook"),
        ("DELETE", "/usage/alerts/webhook"),
    ]:
        answer = call(authorizer, key, method, resource)
        assert (answer["allowed"], answer["credits"]) == (True, 0), (method, resource)
    assert store.read_usage("acme", PERIOD).credits == 0


def test_get_says_whose_rules_are_in_force(store: TollgateStore, usage: Any) -> None:
    customer(store)

    status, body = usage("GET", "/usage/alerts")

    assert status == 200
    assert body == {
        "source": "plan",
        "rules": [{"cap_percent": 50}, {"cap_percent": 90}],
        "planId": "capped",
        "planVersion": 1,
        "planRules": [{"cap_percent": 50}, {"cap_percent": 90}],
        "maxRules": 20,
    }


def test_a_customers_own_rules_replace_the_plans_and_null_brings_them_back(
    store: TollgateStore, usage: Any
) -> None:
    customer(store)

    status, body = usage("PUT", "/usage/alerts", {"rules": [{"cap_percent": 20}, {"spend": "0.30"}]})

    assert status == 200
    assert (body["source"], body["rules"]) == ("customer", [{"cap_percent": 20}, {"spend": "0.30"}])
    assert body["planRules"] == [{"cap_percent": 50}, {"cap_percent": 90}]
    assert store.get_customer("acme").alerts == (AlertRule(cap_percent=20), AlertRule(spend=Decimal("0.30")))
    assert usage("GET", "/usage/alerts")[1] == body

    status, body = usage("PUT", "/usage/alerts", {"rules": None})

    assert (status, body["source"], body["rules"]) == (
        200,
        "plan",
        [{"cap_percent": 50}, {"cap_percent": 90}],
    )
    assert store.get_customer("acme").alerts is None


def test_no_rules_of_their_own_is_no_alerts_at_all(store: TollgateStore, usage: Any) -> None:
    customer(store)

    status, body = usage("PUT", "/usage/alerts", {"rules": []})

    assert (status, body["source"], body["rules"]) == (200, "customer", [])
    assert store.get_customer("acme").alerts == ()


def test_amounts_are_kept_exactly_as_sent_even_as_json_numbers(store: TollgateStore, usage: Any) -> None:
    customer(store, UNCAPPED)
    handle = make_handler(Deps(store, clock=lambda: NOW))
    event = api_event("PUT", "/usage/alerts")
    event["body"] = '{"rules": [{"spend": 12345678901234.10}]}'  # past a float's precision

    answer = handle(event, CONTEXT)

    assert answer["statusCode"] == 200, answer
    assert json.loads(answer["body"])["rules"] == [{"spend": "12345678901234.10"}]
    (rule,) = store.get_customer("acme").alerts or ()
    assert rule.spend == Decimal("12345678901234.10")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        (
            [{"balance_below": 10}],
            "rules[0]: balance_below:10 can never fire on this plan (plan 'capped' v1)",
        ),
        ([{"spend": "1"}, {"included_percent": 80}], "rules[1]: included_percent:80 can never fire"),
        ([{"spend": "0.305"}], "rules[0]: 0.305 USD is not an amount the currency has"),
        (
            [{"spend": str(n)} for n in range(1, 22)],
            "21 alert rules: a customer has at most 20, as a plan does",
        ),
    ],
)
def test_rules_the_plan_would_refuse_are_a_400_and_change_nothing(
    store: TollgateStore, usage: Any, rules: list[Any], message: str
) -> None:
    customer(store)
    usage("PUT", "/usage/alerts", {"rules": [{"cap_percent": 20}]})
    before = store.get_customer("acme")

    status, body = usage("PUT", "/usage/alerts", {"rules": rules})

    assert status == 400
    assert message in body["message"]
    assert body["statusCode"] == 400  # the same error shape as every other 400 of the API
    assert store.get_customer("acme") == before


def test_a_rule_that_fits_a_capped_plan_is_refused_on_an_uncapped_one(
    store: TollgateStore, usage: Any
) -> None:
    customer(store, UNCAPPED)

    status, body = usage("PUT", "/usage/alerts", {"rules": [{"cap_percent": 90}]})

    assert status == 400
    assert body["message"] == "rules[0]: cap_percent:90 can never fire on this plan (plan 'open' v1)"
    assert store.get_customer("acme").alerts is None


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"rules": [{"cap_percent": 90, "spend": "1"}]},
        {"rules": [{"cap_percent": 0}]},
        {"rules": [{"cap_percnt": 90}]},
        {"rules": "cap_percent: 90"},
        {"alerts": []},
        [{"cap_percent": 90}],
    ],
)
def test_a_malformed_body_is_a_422_before_anything_is_read(
    store: TollgateStore, usage: Any, body: Any
) -> None:
    customer(store)
    before = store.get_customer("acme")

    status, _ = usage("PUT", "/usage/alerts", body)

    assert status == 422
    assert store.get_customer("acme") == before


def test_sending_the_same_rules_again_writes_nothing(
    store: TollgateStore, usage: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer(store)
    body = {"rules": [{"spend": "0.30"}]}
    assert usage("PUT", "/usage/alerts", body)[0] == 200
    writes: list[Any] = []
    real = store.table.update_item

    def counted(**kwargs: Any) -> Any:
        writes.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(store.table, "update_item", counted)
    monkeypatch.setattr(store.table, "put_item", counted)

    again = usage("PUT", "/usage/alerts", body)
    same_amount = usage("PUT", "/usage/alerts", {"rules": [{"spend": 0.3}]})  # 0.3 is 0.30

    assert again[0] == same_amount[0] == 200
    assert again[1] == same_amount[1]
    assert writes == []


def test_rules_set_through_the_api_are_what_the_alert_function_fires(
    store: TollgateStore, authorizer: Authorizer, usage: Any
) -> None:
    key = customer(store)
    assert usage("PUT", "/usage/alerts", {"rules": [{"cap_percent": 20}, {"spend": "0.30"}]})[0] == 200
    bus = Bus()
    counter = tk.counter_key("acme", PERIOD, 0)

    def requests(count: int) -> None:
        for _ in range(count):
            old = image(counter)
            assert call(authorizer, key)["allowed"]
            process(store, bus, old, image(counter), at=NOW, now=NOW)  # the stream record, as it comes

    requests(55)
    assert [(a.rule.rule_id, a.credits) for a in bus.published] == [
        ("cap_percent:20", 20),
        ("spend:0.30", 30),
    ]
    assert bus.published[0].alert_id == "acme:2026-11:cap_percent:20"  # not the plan's 50% at 50 credits

    assert usage("PUT", "/usage/alerts", {"rules": None})[0] == 200  # the plan's again
    requests(40)
    assert [a.rule.rule_id for a in bus.published][2:] == ["cap_percent:90"]  # 50% was crossed before


def test_a_rules_write_keeps_a_concurrent_change_of_the_customers_other_fields(store: TollgateStore) -> None:
    customer(store)
    read = store.get_customer("acme")  # PUT /usage/alerts read the customer ...
    set_budget(store, "acme", Decimal("0.50"), now=NOW)  # ... the budget was set meanwhile ...

    write_alert_rules(store, read, (AlertRule(cap_percent=20),))  # ... then the rules were written

    after = store.get_customer("acme")
    assert after.alerts == (AlertRule(cap_percent=20),)
    assert after.budget is not None
    assert after.budget.amount == Decimal("0.50")


def test_rules_checked_against_a_plan_the_customer_left_meanwhile_are_not_written(
    store: TollgateStore,
) -> None:
    customer(store)
    store.put_plan(UNCAPPED)
    stale = store.get_customer("acme")
    change_plan(store, "acme", "open", now=NOW - timedelta(minutes=5), delay=timedelta(seconds=1))

    with pytest.raises(ConflictError):
        write_alert_rules(store, stale, (AlertRule(cap_percent=20),))
    assert store.get_customer("acme").alerts is None


def test_a_plan_change_between_the_check_and_the_write_has_the_rules_checked_again(
    store: TollgateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer(store)
    store.put_plan(UNCAPPED)
    real = store.get_customer
    raced: list[bool] = []

    def racing(customer_id: str) -> Any:
        read = real(customer_id)
        if not raced:  # the provider moves acme to the uncapped plan right after PUT's first read
            raced.append(True)
            change_plan(store, "acme", "open", now=NOW - timedelta(minutes=5), delay=timedelta(seconds=1))
        return read

    monkeypatch.setattr(store, "get_customer", racing)

    with pytest.raises(
        InvalidInputError, match="cap_percent:20 can never fire on this plan \\(plan 'open' v1\\)"
    ):
        set_alert_rules(store, "acme", [{"cap_percent": 20}], now=NOW)  # fits "capped", read first
    assert real("acme").alerts is None


def test_the_provider_sees_sets_and_clears_the_rules_from_the_cli(
    store: TollgateStore, tmp_path: Path
) -> None:
    customer(store)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(
            app,
            ["customers", "alerts", "acme", *args],
            obj=AppContext(clock=lambda: NOW),
            env={"COLUMNS": "80"},
        )

    shown = cli()
    assert shown.exit_code == 0
    assert shown.output == "acme: plan capped v1's alert rules\n  cap_percent:50\n  cap_percent:90\n"
    rules = tmp_path / "acme-alerts.yaml"
    rules.write_text("- cap_percent: 75\n- forecast_spend: 0.80\n", encoding="utf-8")

    set_now = cli("--set", str(rules))

    assert set_now.exit_code == 0, set_now.output
    assert set_now.output == (
        "acme: their own alert rules (replacing plan capped v1's 2 rules)\n  cap_percent:75\n"
        "  forecast_spend:0.80\n"
    )
    assert alert_rules_status(store, "acme", now=NOW).own == (
        AlertRule(cap_percent=75),
        AlertRule(forecast_spend=Decimal("0.80")),
    )
    bad = tmp_path / "bad.json"
    bad.write_text('[{"balance_below": 5}]', encoding="utf-8")
    refused = cli("--set", str(bad))
    assert refused.exit_code != 0
    assert "rules[0]: balance_below:5 can never fire on this plan" in refused.output
    assert store.get_customer("acme").alerts == (
        AlertRule(cap_percent=75),
        AlertRule(forecast_spend=Decimal("0.80")),
    )
    both = cli("--set", str(rules), "--clear")
    assert both.exit_code != 0
    assert "give --set FILE or --clear, not both" in both.output
    empty = tmp_path / "none.json"
    empty.write_text("[]", encoding="utf-8")
    assert cli("--set", str(empty)).output.startswith("acme: their own alert rules (replacing plan capped")
    assert cli().output.endswith("2 rules): none, no alerts\n")
    cleared = cli("--clear")
    assert cleared.output.startswith("acme: plan capped v1's alert rules\n")
    assert store.get_customer("acme").alerts is None


def test_an_unknown_customer_has_no_rules_to_show(store: TollgateStore) -> None:
    shown = CliRunner().invoke(app, ["customers", "alerts", "nobody"], obj=AppContext(clock=lambda: NOW))
    assert shown.exit_code != 0
    assert "customer 'nobody' not found" in shown.output
    with pytest.raises(NotFoundError):
        set_alert_rules(store, "nobody", [{"spend": "1"}], now=NOW)


# -- the alert webhook --------------------------------------------------------------------------------------
def test_the_secret_is_answered_once_and_a_get_never_shows_it(store: TollgateStore, usage: Any) -> None:
    customer(store)
    assert usage("GET", "/usage/alerts/webhook") == (200, {"url": None, "hasSecret": False})

    status, body = usage("PUT", "/usage/alerts/webhook", {"url": HOOK})

    assert status == 200
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert body == {"url": HOOK, "hasSecret": True, "secret": secret}
    assert store.get_customer("acme").alert_webhook == AlertWebhook(url=HOOK, secret=secret)
    got = usage("GET", "/usage/alerts/webhook")
    assert got == (200, {"url": HOOK, "hasSecret": True})
    again = usage("PUT", "/usage/alerts/webhook", {"url": HOOK})  # the same body: nothing changes
    moved = usage("PUT", "/usage/alerts/webhook", {"url": "https://hooks.acme.example/v2"})
    assert again == (200, {"url": HOOK, "hasSecret": True, "secret": None})
    assert moved == (200, {"url": "https://hooks.acme.example/v2", "hasSecret": True, "secret": None})
    kept = store.get_customer("acme").alert_webhook
    assert kept is not None
    assert kept.secret == secret  # a new URL keeps the secret
    for answer in (got, again, moved, usage("GET", "/usage/alerts/webhook")):
        assert secret not in json.dumps(answer)


def test_rotating_answers_the_new_secret_once(store: TollgateStore, usage: Any) -> None:
    customer(store)
    first = usage("PUT", "/usage/alerts/webhook", {"url": HOOK})[1]["secret"]

    status, body = usage("PUT", "/usage/alerts/webhook", {"rotate": True})

    assert status == 200
    assert body["url"] == HOOK
    assert body["secret"].startswith("whsec_")
    assert body["secret"] != first
    assert store.get_customer("acme").alert_webhook == AlertWebhook(url=HOOK, secret=body["secret"])
    moved = usage("PUT", "/usage/alerts/webhook", {"url": "https://hooks.acme.example/v3", "rotate": True})[1]
    assert moved["secret"] not in (first, body["secret"])
    assert usage("GET", "/usage/alerts/webhook")[1] == {
        "url": "https://hooks.acme.example/v3",
        "hasSecret": True,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"url": "http://hooks.acme.example/plain"}, "is not a webhook URL: https://..."),
        ({"url": "http://127.0.0.1:8080/hook"}, "is not a webhook URL: https://..."),
        ({"url": "https://hooks acme"}, "is not a webhook URL"),
        ({"url": "hooks.acme.example"}, "is not a webhook URL: https://..."),
    ],
)
def test_only_an_https_url_is_taken_and_a_refusal_changes_nothing(
    store: TollgateStore, usage: Any, body: dict[str, Any], message: str
) -> None:
    customer(store)
    secret = usage("PUT", "/usage/alerts/webhook", {"url": HOOK})[1]["secret"]

    status, answer = usage("PUT", "/usage/alerts/webhook", body)

    assert status == 400
    assert message in answer["message"]
    assert secret not in json.dumps(answer)
    assert store.get_customer("acme").alert_webhook == AlertWebhook(url=HOOK, secret=secret)


def test_rotating_without_a_webhook_is_a_400(store: TollgateStore, usage: Any) -> None:
    customer(store)

    status, body = usage("PUT", "/usage/alerts/webhook", {"rotate": True})

    assert status == 400
    assert "has no alert webhook whose secret to rotate: set its URL first" in body["message"]
    assert store.get_customer("acme").alert_webhook is None


@pytest.mark.parametrize(
    "body", [{}, {"rotate": False}, {"url": None}, {"url": HOOK, "secret": "whsec_" + "a" * 40}, [HOOK]]
)
def test_a_malformed_webhook_body_is_a_422(store: TollgateStore, usage: Any, body: Any) -> None:
    customer(store)

    status, _ = usage("PUT", "/usage/alerts/webhook", body)

    assert status == 422
    assert store.get_customer("acme").alert_webhook is None


def test_delete_removes_the_webhook_and_deleting_none_is_fine(store: TollgateStore, usage: Any) -> None:
    customer(store)
    usage("PUT", "/usage/alerts/webhook", {"url": HOOK})

    assert usage("DELETE", "/usage/alerts/webhook") == (200, {"url": None, "hasSecret": False})
    assert store.get_customer("acme").alert_webhook is None
    assert usage("DELETE", "/usage/alerts/webhook") == (200, {"url": None, "hasSecret": False})
    assert usage("GET", "/usage/alerts/webhook") == (200, {"url": None, "hasSecret": False})
    again = usage("PUT", "/usage/alerts/webhook", {"url": HOOK})[1]
    assert again["secret"].startswith("whsec_")  # a new webhook, a new secret


def test_the_secret_is_never_logged(
    store: TollgateStore,
    usage: Any,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger="tollgate-usage-api")
    caplog.set_level(logging.DEBUG, logger="aws_lambda_powertools")
    customer(store)

    secrets = [
        usage("PUT", "/usage/alerts/webhook", {"url": HOOK})[1]["secret"],
        usage("PUT", "/usage/alerts/webhook", {"rotate": True})[1]["secret"],
        usage("PUT", "/usage/alerts/webhook", {"url": "https://hooks.acme.example/v2", "rotate": True})[1][
            "secret"
        ],
    ]
    usage("GET", "/usage/alerts/webhook")
    usage("PUT", "/usage/alerts/webhook", {"url": "http://hooks.acme.example/refused"})
    usage("DELETE", "/usage/alerts/webhook")

    captured = capfd.readouterr()
    ours = [f"{r.getMessage()} {vars(r)}" for r in caplog.records if r.name == "tollgate-usage-api"]
    everything = (
        "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records) + captured.out + captured.err
    )
    assert "alert webhook set" in everything  # the logs were captured, Powertools' own debug logs too ...
    assert "'host': 'hooks.acme.example'" in "\n".join(ours)  # ... the function's with the host ...
    for secret in secrets:  # ... and no secret anywhere
        assert secret not in everything
    assert "customer-token" not in "\n".join(ours)  # nor the URL's path in the function's


def test_a_webhook_write_keeps_the_customers_other_fields_and_one_secret_wins(store: TollgateStore) -> None:
    customer(store)
    read = store.get_customer("acme")
    set_budget(store, "acme", Decimal("0.50"), now=NOW)  # a concurrent change of another field: kept
    write_alert_webhook(store, read, AlertWebhook(url=HOOK, secret=new_secret()))
    assert store.get_customer("acme").budget is not None

    stale = store.get_customer("acme").model_copy(update={"alert_webhook": None})
    with pytest.raises(ConflictError):  # it has a secret now: a write made on "none" loses
        write_alert_webhook(store, stale, AlertWebhook(url=HOOK, secret=new_secret()))


def test_of_two_concurrent_first_settings_one_makes_the_secret_and_the_other_keeps_it(
    store: TollgateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    customer(store)
    real = store.get_customer
    other: list[Any] = []

    def racing(customer_id: str) -> Any:
        read = real(customer_id)
        if not other:  # the other request sets its URL between this one's read and its write
            monkeypatch.setattr(store, "get_customer", real)
            other.append(
                change_alert_webhook(store, "acme", "https://hooks.acme.example/other", https_only=True)
            )
        return read

    monkeypatch.setattr(store, "get_customer", racing)
    mine = change_alert_webhook(store, "acme", HOOK, https_only=True)

    (theirs,) = other
    assert theirs.new_secret is not None
    assert mine.new_secret is None  # read again: the secret was made, and kept
    assert store.get_customer("acme").alert_webhook == AlertWebhook(url=HOOK, secret=theirs.new_secret)


def test_an_http_api_event_is_answered_the_same(store: TollgateStore) -> None:
    customer(store)
    handle = make_handler(Deps(store, clock=lambda: NOW))

    put = handle(http_api_event("PUT", "/usage/alerts", {"rules": [{"cap_percent": 20}]}), CONTEXT)
    got = handle(http_api_event("GET", "/usage/alerts"), CONTEXT)
    hook = handle(http_api_event("PUT", "/usage/alerts/webhook", {"url": HOOK}), CONTEXT)
    shown = handle(http_api_event("GET", "/usage/alerts/webhook"), CONTEXT)

    assert (put["statusCode"], got["statusCode"], hook["statusCode"], shown["statusCode"]) == (200,) * 4
    assert json.loads(got["body"])["rules"] == [{"cap_percent": 20}]
    assert json.loads(hook["body"])["secret"].startswith("whsec_")
    assert json.loads(shown["body"]) == {"url": HOOK, "hasSecret": True}
