"""Writing one setting of a customer's (their own alert rules, their alert webhook) onto the customer item,
and nothing else of it.

``TollgateStore.update_customer`` replaces the whole item, so a field it does not guard that changed between
its read and its write (a budget, a trial, another setting) would be put back as it was read. The customer
sets these two themselves (``PUT /usage/alerts``, ``PUT /usage/alerts/webhook``), at any time, next to the
provider's own changes: each is an ``UpdateItem`` that sets its one attribute, on a condition that keeps
what it was decided on:

* alert rules were checked against the plan in force: they are written only while the customer is still on
  the plan version and plan history they were read with (``update_customer``'s own plan guard);
* a webhook's secret is shown once, to whoever made it: it is written only while the item still has the
  webhook secret it was read with (or none), so two concurrent first settings cannot both show a secret and
  keep one.

A lost condition is a ``ConflictError``: the caller reads the customer again and retries. Values are stored
in the models' JSON form, as ``put_customer`` stores them (``None`` as a null).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore, _is_conditional_failure
from tollgate.domain.models import AlertRule, AlertWebhook, Customer
from tollgate.errors import ConflictError

ALERTS = "alerts"
ALERT_WEBHOOK = "alert_webhook"
_NULL = "NULL"


def write_alert_rules(
    store: TollgateStore, customer: Customer, rules: tuple[AlertRule, ...] | None
) -> Customer:
    """Set ``customer``'s own alert rules (None: the plan's), while they are on the plan they were read on."""
    after = customer.model_copy(update={ALERTS: rules})
    condition = (
        "attribute_exists(#pk) AND plan_version = :plan_version "
        "AND (attribute_not_exists(plan_segments) OR size(plan_segments) = :segments)"
    )
    values = {":plan_version": customer.plan_version, ":segments": len(customer.plan_segments)}
    _set(store, after, ALERTS, condition, values)
    return after


def write_alert_webhook(store: TollgateStore, customer: Customer, webhook: AlertWebhook | None) -> Customer:
    """Set ``customer``'s alert webhook (None: remove it), while the item has the webhook secret
    ``customer`` was read with (or none)."""
    after = customer.model_copy(update={ALERT_WEBHOOK: webhook})
    values: dict[str, Any]
    if customer.alert_webhook is None:
        condition = "attribute_exists(#pk) AND (attribute_not_exists(#f) OR attribute_type(#f, :null))"
        values = {":null": _NULL}
    else:
        condition = "attribute_exists(#pk) AND #f.secret = :secret"
        values = {":secret": customer.alert_webhook.secret}
    _set(store, after, ALERT_WEBHOOK, condition, values)
    return after


def _set(store: TollgateStore, after: Customer, field: str, condition: str, values: dict[str, Any]) -> None:
    value = after.model_dump(mode="json", include={field})[field]
    try:
        store.table.update_item(
            Key=tk.customer_key(after.id),
            UpdateExpression="SET #f = :value",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#f": field, "#pk": tk.PK},
            ExpressionAttributeValues={**values, ":value": value},
        )
    except ClientError as error:
        if _is_conditional_failure(error):
            raise ConflictError(f"customer {after.id!r} changed meanwhile; try again") from error
        raise
