"""A customer's own endpoint for their usage alerts (``tollgate customers alert-webhook``, and the customer
themselves: ``PUT``/``GET``/``DELETE /usage/alerts/webhook``).

Setting one makes a new signing secret (``whsec_`` and 32 random bytes, URL-safe base64), shown once, which
the customer checks each delivery's ``Tollgate-Signature`` with (``tollgate.alerts.webhooks.verify``).
Setting the URL again keeps the secret; ``rotate`` makes a new one. :func:`change_alert_webhook` says which
secret the change made (:attr:`WebhookChange.new_secret`), so exactly that answer shows it; nothing here
logs a secret.

The webhook is written alone (``tollgate.dal.customer_settings``), so a concurrent change of the customer's
other fields is kept, and only while the customer still has the secret it was read with: of two concurrent
first settings, one makes the secret and the other keeps it.
"""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass

from pydantic import ValidationError

from tollgate.dal.customer_settings import write_alert_webhook
from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertWebhook, Customer
from tollgate.errors import ConflictError, InvalidInputError

ATTEMPTS = 3


@dataclass(frozen=True, repr=False)
class WebhookChange:
    """A customer's alert webhook after a change, and the secret the change made (None: it made none: the
    secret was kept, or the webhook removed). Its ``repr`` shows no secret."""

    customer: Customer
    new_secret: str | None = None

    @property
    def webhook(self) -> AlertWebhook | None:
        return self.customer.alert_webhook

    def __repr__(self) -> str:
        made = self.new_secret is not None
        return f"WebhookChange(customer={self.customer.id!r}, new_secret={'<made>' if made else None})"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def set_alert_webhook(
    store: TollgateStore, customer_id: str, url: str | None, *, rotate: bool = False
) -> Customer:
    """Point ``customer_id``'s alerts at ``url`` (None: remove it). ``InvalidInputError`` for a URL that is
    not HTTPS (plain HTTP only to 127.0.0.1, for local mode)."""
    if url is None:
        return change_alert_webhook(store, customer_id, None, remove=True).customer
    return change_alert_webhook(store, customer_id, url, rotate=rotate).customer


def change_alert_webhook(
    store: TollgateStore,
    customer_id: str,
    url: str | None,
    *,
    rotate: bool = False,
    remove: bool = False,
    https_only: bool = False,
) -> WebhookChange:
    """Point ``customer_id``'s alerts at ``url``, keeping the secret unless ``rotate``; with no ``url``,
    ``rotate`` makes a new secret for the URL they have; ``remove`` stops posting their alerts.

    ``InvalidInputError`` for a URL that is not a webhook URL (HTTPS; plain HTTP to 127.0.0.1 for local mode,
    unless ``https_only``), or a rotation without a webhook; ``NotFoundError`` for an unknown customer.
    Removing a webhook that is not there, or setting the URL the customer has, changes nothing."""
    if remove and (url is not None or rotate):
        raise InvalidInputError("removing the alert webhook takes no URL and no rotation")
    if not remove and url is None and not rotate:
        raise InvalidInputError("give the webhook's URL, or rotate its secret")
    if url is not None:
        _check_url(url, https_only=https_only)
    for _ in range(ATTEMPTS - 1):  # the customer changed meanwhile (a rotation, a removal): read it again
        with contextlib.suppress(ConflictError):
            return _change(store, customer_id, url, rotate=rotate, remove=remove)
    return _change(store, customer_id, url, rotate=rotate, remove=remove)


def _change(
    store: TollgateStore, customer_id: str, url: str | None, *, rotate: bool, remove: bool
) -> WebhookChange:
    customer = store.get_customer(customer_id)
    kept = customer.alert_webhook
    webhook = None
    made = None
    if not remove:
        if url is None:
            if kept is None:
                raise InvalidInputError(
                    f"customer {customer_id!r} has no alert webhook whose secret to rotate: set its URL first"
                )
            url = kept.url
        if kept is not None and not rotate:
            secret = kept.secret
        else:
            secret = made = new_secret()
        webhook = AlertWebhook(url=url, secret=secret)  # the URL was checked (or is the one they have)
    if webhook == kept:
        return WebhookChange(customer)
    return WebhookChange(write_alert_webhook(store, customer, webhook), made)


def _check_url(url: str, *, https_only: bool) -> None:
    """The model's own rule (https://..., or http://127.0.0.1 locally), and with ``https_only`` HTTPS only."""
    shape = "https://..." if https_only else "https://..., or http://127.0.0.1:PORT/... locally"
    try:
        AlertWebhook(url=url, secret=new_secret())
    except ValidationError as error:
        raise InvalidInputError(f"{url!r} is not a webhook URL: {shape}") from error
    if https_only and not url.startswith("https://"):
        raise InvalidInputError(f"{url!r} is not a webhook URL: {shape}")
