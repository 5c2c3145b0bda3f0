"""A customer's own usage alert rules (``GET``/``PUT /usage/alerts``, ``tollgate customers alerts``).

``Customer.alerts`` replaces the plan's rules for that customer (``tollgate.alerts.service``); None means the
plan's. Rules are checked exactly as a plan's own ``alerts`` are (``Plan``'s validators, run on the plan in
force with these rules in place of its own): a rule that can never fire on the plan, an amount its currency
cannot charge, more than :data:`MAX_ALERT_RULES` rules: ``InvalidInputError``, nothing changed. An empty list
is rules of their own too: no alerts at all.

The rules are written alone (``tollgate.dal.customer_settings``), so a concurrent change of the customer's
other fields is kept, and only while the customer is on the plan they were checked against: a plan change
meanwhile makes them be read and checked again. Setting the rules the customer has changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from tollgate.dal.customer_settings import write_alert_rules
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import MAX_ALERT_RULES, AlertRule, Customer, Plan
from tollgate.domain.plan_files import field_path
from tollgate.errors import ConflictError, InvalidInputError

ATTEMPTS = 3  # a customer changed meanwhile (a plan change) is read and checked again this often
_PLAN_ALERTS = re.compile(r"^alerts(?=\[|$)")


@dataclass(frozen=True)
class AlertRulesStatus:
    """The alert rules in force for a customer, on the plan in force now."""

    customer_id: str
    plan: Plan
    own: tuple[AlertRule, ...] | None  # the customer's own rules; None: the plan's apply

    @property
    def rules(self) -> tuple[AlertRule, ...]:
        return self.own if self.own is not None else self.plan.alerts

    @property
    def source(self) -> Literal["customer", "plan"]:
        return "plan" if self.own is None else "customer"


def alert_rules_status(store: TollgateStore, customer_id: str, *, now: datetime) -> AlertRulesStatus:
    customer = store.get_customer(customer_id)
    return AlertRulesStatus(customer.id, _plan_at(store, customer, now), customer.alerts)


def set_alert_rules(
    store: TollgateStore, customer_id: str, rules: Sequence[AlertRule | Any] | None, *, now: datetime
) -> AlertRulesStatus:
    """Give ``customer_id`` their own alert ``rules`` (``AlertRule``s, or mappings in the plan-file syntax:
    ``{"cap_percent": 90}``), or give them the plan's again (None).

    ``InvalidInputError`` for rules the plan in force would refuse as its own; ``NotFoundError`` for an
    unknown customer."""
    for attempt in range(ATTEMPTS):
        customer = store.get_customer(customer_id)
        own = None if rules is None else check_rules(_plan_at(store, customer, now), rules)
        if own == customer.alerts:
            break
        try:
            write_alert_rules(store, customer, own)
        except ConflictError:
            if attempt == ATTEMPTS - 1:
                raise
            continue
        break
    return alert_rules_status(store, customer_id, now=now)


def check_rules(plan: Plan, rules: Sequence[AlertRule | Any]) -> tuple[AlertRule, ...]:
    """``rules`` as ``plan``'s own alerts would be: validated by the plan's validators, or
    ``InvalidInputError`` naming each problem (``rules[0]: cap_percent:90 can never fire on this plan``)."""
    if isinstance(rules, str | bytes) or not isinstance(rules, Sequence):
        raise InvalidInputError("alert rules are a list, e.g. [{cap_percent: 90}, {spend: 250.00}]")
    if len(rules) > MAX_ALERT_RULES:
        raise InvalidInputError(
            f"{len(rules)} alert rules: a customer has at most {MAX_ALERT_RULES}, as a plan does"
        )
    try:
        checked = Plan.model_validate({**plan.model_dump(), "alerts": list(rules)})
    except ValidationError as error:
        problems = "; ".join(_problems(error))
        raise InvalidInputError(f"{problems} (plan {plan.id!r} v{plan.version})") from error
    return checked.alerts


def _problems(error: ValidationError) -> list[str]:
    """pydantic's errors as people write them, about ``rules`` (the plan calls them ``alerts``)."""
    lines = []
    for item in error.errors(include_url=False):
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (check its spelling)"
        loc = tuple(part for part in item["loc"] if part not in ("function-after", "function-before"))
        where = _PLAN_ALERTS.sub("rules", field_path(loc)) if loc else ""
        message = _PLAN_ALERTS.sub("rules", message)
        lines.append(f"{where}: {message}" if where else message)
    return lines


def _plan_at(store: TollgateStore, customer: Customer, now: datetime) -> Plan:
    segment = customer.segment_at(now)
    return store.get_plan(segment.plan_id, segment.plan_version)
