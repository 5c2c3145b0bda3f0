"""What ``/usage/alerts`` and ``/usage/alerts/webhook`` answer: the alert rules in force for the customer, and
their alert webhook without its secret (the secret is in the one answer that made it, and only there).

Rules are shown as ``PUT /usage/alerts`` takes them, in the plan files' syntax (``{"cap_percent": 90}``,
``{"spend": "250.00"}``: amounts as strings, exact), so a customer can read, edit and send them back.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tollgate.accounts.alert_rules import AlertRulesStatus
from tollgate.accounts.alert_webhooks import WebhookChange
from tollgate.domain.models import MAX_ALERT_RULES, AlertRule, AlertWebhook
from tollgate.usage_api.report import _Model

ShownRule = dict[str, int | str]  # {"cap_percent": 90}, {"spend": "250.00"}, {"forecast": "budget"}
RULES_EXAMPLE = [{"cap_percent": 90}, {"spend": "250.00"}, {"forecast": "budget"}]


class AlertRulesReport(_Model):
    """The usage alert rules in force for the customer (``GET``/``PUT /usage/alerts``)."""

    source: Literal["customer", "plan"] = Field(
        description="customer: the customer's own rules (PUT /usage/alerts), which replace the plan's; "
        "plan: the plan's"
    )
    rules: list[ShownRule] = Field(
        description="the rules in force, each one threshold: an object of one field, as PUT takes it",
        examples=[RULES_EXAMPLE],
    )
    plan_id: str
    plan_version: int
    plan_rules: list[ShownRule] = Field(description='the plan\'s rules: what {"rules": null} goes back to')
    max_rules: int = Field(
        description="the most rules a customer (or a plan) has", examples=[MAX_ALERT_RULES]
    )

    @classmethod
    def of(cls, status: AlertRulesStatus) -> AlertRulesReport:
        return cls(
            source=status.source,
            rules=shown(status.rules),
            plan_id=status.plan.id,
            plan_version=status.plan.version,
            plan_rules=shown(status.plan.alerts),
            max_rules=MAX_ALERT_RULES,
        )


def shown(rules: tuple[AlertRule, ...]) -> list[ShownRule]:
    """Each rule as its one given field, amounts as exact strings: ``{"spend": "250.00"}``."""
    return [rule.model_dump(mode="json", exclude_none=True) for rule in rules]


class AlertWebhookReport(_Model):
    """The customer's alert webhook (``GET``/``DELETE /usage/alerts/webhook``). Never its secret."""

    url: str | None = Field(description="where the customer's alerts are posted, signed; null: nowhere")
    has_secret: bool = Field(
        description="a signing secret is set (always, with a URL); it is shown once, by the PUT that made it"
    )

    @classmethod
    def of(cls, webhook: AlertWebhook | None) -> AlertWebhookReport:
        return cls(url=None if webhook is None else webhook.url, has_secret=webhook is not None)


class AlertWebhookSet(AlertWebhookReport):
    """The alert webhook after ``PUT /usage/alerts/webhook``, and the signing secret if this PUT made one."""

    secret: str | None = Field(
        description=(
            "the signing secret (whsec_...) when this request made one (the first URL, or rotate: true): "
            "shown in this answer only, never again; null: the secret was kept (rotate to get a new one)"
        ),
        examples=[None],
    )

    @classmethod
    def of_change(cls, change: WebhookChange) -> AlertWebhookSet:
        shown = AlertWebhookReport.of(change.webhook)
        return cls(url=shown.url, has_secret=shown.has_secret, secret=change.new_secret)
