"""A customer's own alert rules and alert webhook, where DynamoDB's semantics do not matter: rules are checked
exactly as a plan's own alerts are (the same rules refused, with the customer's words), the request and answer
models, rule files for the CLI, the OpenAPI description, the plan files' 0-credit routes, and the handler
on in-process moto."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.conftest import CONTEXT, NOW, make_customer, make_plan
from tollgate.accounts.alert_rules import AlertRulesStatus, check_rules
from tollgate.accounts.alert_webhooks import WebhookChange, change_alert_webhook, new_secret
from tollgate.cli.customers import read_rules_file
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import MAX_ALERT_RULES, AlertRule, AlertWebhook, Plan
from tollgate.domain.plan_files import load_plan_file
from tollgate.errors import InvalidInputError
from tollgate.usage_api.alert_reports import AlertRulesReport, AlertWebhookReport, AlertWebhookSet
from tollgate.usage_api.handler import (
    DECIMAL_JSON,
    AlertRulesChange,
    AlertWebhookChange,
    Deps,
    make_handler,
)

REPO = Path(__file__).resolve().parents[2]
PAYG = make_plan()  # no cap, no included credits, arrears, USD
CAPPED = make_plan(id="capped", credit_limit=1_000, included_credits=100, alerts=[{"cap_percent": 90}])
PREPAID = make_plan(id="credits", billing="prepaid", price_per_credit=Decimal("0.01"))
YEN = make_plan(id="yen", currency="jpy", price_per_credit=Decimal("0.5"))


# -- rules are checked as a plan's own ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("plan", "rules", "message"),
    [
        (
            PAYG,
            [{"cap_percent": 90}],
            "rules[0]: cap_percent:90 can never fire on this plan (plan 'payg' v1)",
        ),
        (PAYG, [{"forecast": "cap"}], "rules[0]: forecast:cap can never fire on this plan"),
        (PAYG, [{"spend": "1"}, {"included_percent": 80}], "rules[1]: included_percent:80 can never fire"),
        (CAPPED, [{"balance_below": 10}], "rules[0]: balance_below:10 can never fire on this plan"),
        (PAYG, [{"spend": "10.005"}], "rules[0]: 10.005 USD is not an amount the currency has"),
        (YEN, [{"forecast_spend": "100.5"}], "rules[0]: 100.5 JPY is not an amount the currency has"),
        (PAYG, [{"cap_percent": 101}], "rules[0].cap_percent: Input should be less than or equal to 100"),
        (PAYG, [{"spend": "1", "forecast": "budget"}], "rules[0]: an alert is one of included_percent"),
        (PAYG, [{"cap_percnt": 90}], "rules[0].cap_percnt: unknown field (check its spelling)"),
        (PAYG, [90], "rules[0]: Input should be a valid dictionary or instance of AlertRule"),
    ],
)
def test_a_rule_the_plan_would_refuse_is_refused_with_a_clear_message(
    plan: Plan, rules: list[Any], message: str
) -> None:
    with pytest.raises(InvalidInputError) as refused:
        check_rules(plan, rules)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("plan", "rules"),
    [
        (PAYG, [{"cap_percent": 90}]),
        (PAYG, [{"spend": "10.005"}]),
        (
            PAYG,
            [{"spend": "10.00"}, {"forecast_spend": "25"}, {"budget_percent": 80}, {"forecast": "budget"}],
        ),
        (CAPPED, [{"cap_percent": 50}, {"included_percent": 100}, {"forecast": "cap"}]),
        (CAPPED, [{"balance_below": 1}]),
        (PREPAID, [{"balance_below": 500}, {"spend": "3.00"}]),
        (PREPAID, [{"cap_percent": 10}]),
        (YEN, [{"spend": "100"}]),
        (YEN, [{"spend": "100.5"}]),
        (PAYG, []),
    ],
)
def test_exactly_what_a_plan_accepts_as_its_alerts_a_customer_can_set(plan: Plan, rules: list[Any]) -> None:
    try:
        as_plan = Plan.model_validate({**plan.model_dump(), "alerts": rules}).alerts
    except ValidationError:
        as_plan = None
    try:
        as_customer: tuple[AlertRule, ...] | None = check_rules(plan, rules)
    except InvalidInputError:
        as_customer = None
    assert as_customer == as_plan


def test_too_many_rules_are_refused_as_a_plan_would_refuse_them() -> None:
    rules = [{"spend": str(n)} for n in range(1, MAX_ALERT_RULES + 2)]

    with pytest.raises(InvalidInputError, match=f"21 alert rules: a customer has at most {MAX_ALERT_RULES}"):
        check_rules(PAYG, rules)
    assert len(check_rules(PAYG, rules[:MAX_ALERT_RULES])) == MAX_ALERT_RULES


@pytest.mark.parametrize("rules", ["cap_percent: 90", {"cap_percent": 90}, b"[]"])
def test_rules_are_a_list(rules: Any) -> None:
    with pytest.raises(InvalidInputError, match="alert rules are a list"):
        check_rules(PAYG, rules)


def test_checked_rules_are_the_models_with_exact_amounts() -> None:
    rules = check_rules(CAPPED, [AlertRule(cap_percent=80), {"spend": Decimal("12.10")}])

    assert rules == (AlertRule(cap_percent=80), AlertRule(spend=Decimal("12.10")))
    assert str(rules[1].spend) == "12.10"


# -- what the API takes and answers ------------------------------------------------------------------------
def test_request_bodies_are_checked_before_anything_is_read() -> None:
    assert AlertRulesChange.model_validate({"rules": None}).rules is None
    assert AlertRulesChange.model_validate({"rules": [{"cap_percent": 90}]}).rules == [
        AlertRule(cap_percent=90)
    ]
    bad_rules: list[dict[str, Any]] = [
        {},
        {"rules": [{"cap_percent": 90, "spend": "1"}]},
        {"rules": "all"},
        {"alerts": []},
    ]
    for bad in bad_rules:
        with pytest.raises(ValidationError):
            AlertRulesChange.model_validate(bad)
    assert AlertWebhookChange.model_validate({"rotate": True}).url is None
    bad_hooks: list[dict[str, Any]] = [
        {},
        {"rotate": False},
        {"url": None},
        {"url": ""},
        {"url": "https://x", "secret": "whsec_x"},
    ]
    for bad in bad_hooks:
        with pytest.raises(ValidationError):
            AlertWebhookChange.model_validate(bad)


def test_a_bodys_numbers_are_decimals_read_from_the_text() -> None:
    body = DECIMAL_JSON('{"rules": [{"spend": 1234567890.123456789}, {"cap_percent": 90}]}')

    assert body["rules"][0]["spend"] == Decimal("1234567890.123456789")
    assert body["rules"][1]["cap_percent"] == 90
    assert AlertRulesChange.model_validate(body).rules == [
        AlertRule(spend=Decimal("1234567890.123456789")),
        AlertRule(cap_percent=90),
    ]


def test_the_rules_report_shows_each_rule_as_put_takes_it() -> None:
    own = (AlertRule(spend=Decimal("250.00")), AlertRule(forecast="budget"))
    report = AlertRulesReport.of(AlertRulesStatus("acme", CAPPED, own))

    shown = json.loads(report.model_dump_json(by_alias=True))

    assert shown == {
        "source": "customer",
        "rules": [{"spend": "250.00"}, {"forecast": "budget"}],
        "planId": "capped",
        "planVersion": 1,
        "planRules": [{"cap_percent": 90}],
        "maxRules": MAX_ALERT_RULES,
    }
    assert AlertRulesChange.model_validate({"rules": shown["rules"]}).rules == list(own)  # round trip
    plan_only = AlertRulesReport.of(AlertRulesStatus("acme", CAPPED, None))
    assert (plan_only.source, plan_only.rules) == ("plan", [{"cap_percent": 90}])


def test_the_webhook_report_has_no_place_for_a_secret() -> None:
    webhook = AlertWebhook(url="https://hooks.acme.test/t", secret=new_secret())
    report = AlertWebhookReport.of(webhook)

    assert report.model_dump(by_alias=True) == {"url": "https://hooks.acme.test/t", "hasSecret": True}
    assert "secret" not in AlertWebhookReport.model_fields
    assert AlertWebhookReport.of(None).model_dump(by_alias=True) == {"url": None, "hasSecret": False}


def test_a_webhook_change_shows_its_secret_only_where_asked() -> None:
    secret = new_secret()
    customer = make_customer(PAYG, alert_webhook=AlertWebhook(url="https://hooks.acme.test/t", secret=secret))
    change = WebhookChange(customer, secret)

    assert secret not in repr(change)
    assert AlertWebhookSet.of_change(change).secret == secret
    assert AlertWebhookSet.of_change(WebhookChange(customer)).secret is None


@pytest.mark.parametrize(
    ("url", "https_only", "message"),
    [
        ("http://hooks.acme.test/t", False, "is not a webhook URL: https://..., or http://127.0.0.1"),
        ("http://127.0.0.1:8080/t", True, "'http://127.0.0.1:8080/t' is not a webhook URL: https://..."),
        ("ftp://hooks.acme.test", True, "is not a webhook URL: https://..."),
        ("https://hooks acme", True, "is not a webhook URL"),
    ],
)
def test_a_url_that_is_not_a_webhook_url_is_refused_before_anything_is_read(
    url: str, https_only: bool, message: str
) -> None:
    nowhere: Any = None  # no store: refused before it is used

    with pytest.raises(InvalidInputError, match=message.replace(".", r"\.").replace("?", r"\?")):
        change_alert_webhook(nowhere, "acme", url, https_only=https_only)


@pytest.mark.parametrize(
    ("url", "rotate", "remove"),
    [(None, False, False), ("https://hooks.acme.test", False, True), (None, True, True)],
)
def test_a_webhook_change_says_what_it_does(url: str | None, rotate: bool, remove: bool) -> None:
    nowhere: Any = None
    with pytest.raises(InvalidInputError):
        change_alert_webhook(nowhere, "acme", url, rotate=rotate, remove=remove)


# -- rule files for tollgate customers alerts ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("rules.yaml", "- cap_percent: 90\n- spend: 250.10\n"),
        ("rules.yml", "alerts:\n  - cap_percent: 90\n  - spend: 250.10\n"),
        ("rules.json", '[{"cap_percent": 90}, {"spend": 250.10}]'),
    ],
)
def test_a_rules_file_is_a_list_in_the_plan_files_syntax_with_exact_amounts(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    rules = read_rules_file(path)

    assert rules == [{"cap_percent": 90}, {"spend": Decimal("250.10")}]
    assert str(rules[1]["spend"]) == "250.10"  # never through a float


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("rules.toml", "cap_percent = 90", "a rules file ends in .yaml, .yml or .json"),
        ("rules.yaml", "cap_percent: 90\n", "expected a list of alert rules"),
        ("rules.yaml", "alerts: [\n", "not valid YAML"),
        ("rules.json", '{"rules": []}', "expected a list of alert rules"),
    ],
)
def test_a_rules_file_that_is_not_one_is_refused(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    with pytest.raises(InvalidInputError, match=message):
        read_rules_file(path)


def test_a_missing_rules_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="cannot read the file"):
        read_rules_file(tmp_path / "nowhere.yaml")


# -- the plan files and the OpenAPI description -----------------------------------------------------------
@pytest.mark.parametrize(
    "route",
    [
        "GET /usage/alerts",
        "PUT /usage/alerts",
        "GET /usage/alerts/webhook",
        "PUT /usage/alerts/webhook",
        "DELETE /usage/alerts/webhook",
        "PUT /usage/budget",
    ],
)
def test_the_example_plans_price_the_alert_routes_at_0_credits(route: str) -> None:
    plans = load_plan_file(REPO / "docs" / "examples" / "plans.yaml")

    assert [plan.cost_of(route) for plan in plans] == [0] * len(plans)


def test_the_openapi_description_documents_the_alert_routes_and_never_a_secret_but_in_put() -> None:
    from tollgate.usage_api.openapi import openapi_document

    document = openapi_document()
    paths = document["paths"]
    assert set(paths["/usage/alerts"]) == {"get", "put"}
    assert set(paths["/usage/alerts/webhook"]) == {"get", "put", "delete"}
    assert set(paths["/usage/alerts"]["put"]["responses"]) == {"200", "400", "401", "403", "503"}
    assert set(paths["/usage/alerts/webhook"]["get"]["responses"]) == {"200", "401", "403", "503"}
    schemas = document["components"]["schemas"]
    assert set(schemas["AlertWebhookReport"]["properties"]) == {"url", "hasSecret"}
    assert "secret" in schemas["AlertWebhookSet"]["properties"]
    get_schema = paths["/usage/alerts/webhook"]["get"]["responses"]["200"]["content"]["application/json"]
    assert get_schema["schema"] == {"$ref": "#/components/schemas/AlertWebhookReport"}
    assert set(schemas["AlertRulesReport"]["properties"]) == {
        "source",
        "rules",
        "planId",
        "planVersion",
        "planRules",
        "maxRules",
    }


# -- the handler, on moto ------------------------------------------------------------------------------------
def rest(method: str, path: str, body: Any = None, customer_id: str | None = "acme") -> dict[str, Any]:
    authorizer = {} if customer_id is None else {"principalId": customer_id, "customerId": customer_id}
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
            "authorizer": authorizer,
        },
        "body": None if body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/usage/alerts", None),
        ("PUT", "/usage/alerts", {"rules": None}),
        ("GET", "/usage/alerts/webhook", None),
        ("PUT", "/usage/alerts/webhook", {"url": "https://hooks.acme.test"}),
        ("DELETE", "/usage/alerts/webhook", None),
    ],
)
def test_without_the_authorizer_context_nobody_is_answered(
    store: TollgateStore, method: str, path: str, body: Any
) -> None:
    store.put_plan(CAPPED)
    store.put_customer(make_customer(CAPPED))
    before = store.get_customer("acme")

    answer = make_handler(Deps(store, clock=lambda: NOW))(rest(method, path, body, customer_id=None), CONTEXT)

    assert answer["statusCode"] == 401
    assert store.get_customer("acme") == before


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/usage/alerts", None),
        ("PUT", "/usage/alerts", {"rules": [{"cap_percent": 90}]}),
        ("GET", "/usage/alerts/webhook", None),
        ("PUT", "/usage/alerts/webhook", {"url": "https://hooks.acme.test"}),
        ("DELETE", "/usage/alerts/webhook", None),
    ],
)
def test_an_unknown_customer_is_404(store: TollgateStore, method: str, path: str, body: Any) -> None:
    answer = make_handler(Deps(store, clock=lambda: NOW))(rest(method, path, body, "nobody"), CONTEXT)

    assert answer["statusCode"] == 404
    assert json.loads(answer["body"])["message"] == "customer 'nobody' not found"
