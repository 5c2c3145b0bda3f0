"""A customer's own endpoint for their usage alerts (``tollgate customers alert-webhook``).

Setting one makes a new signing secret (``whsec_`` and 32 random bytes, URL-safe base64), shown once, which
the customer checks each delivery's ``Tollgate-Signature`` with (``tollgate.alerts.webhooks.verify``).
Setting the URL again keeps the secret; ``rotate`` makes a new one.
"""

from __future__ import annotations

import contextlib
import secrets

from pydantic import ValidationError

from tollgate.dal.store import TollgateStore
from tollgate.domain.models import AlertWebhook, Customer
from tollgate.errors import ConflictError, InvalidInputError

ATTEMPTS = 3


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def set_alert_webhook(
    store: TollgateStore, customer_id: str, url: str | None, *, rotate: bool = False
) -> Customer:
    """Point ``customer_id``'s alerts at ``url`` (None: remove it). ``InvalidInputError`` for a URL that is
    not HTTPS (plain HTTP only to 127.0.0.1, for local mode)."""
    for _ in range(ATTEMPTS - 1):  # the customer changed meanwhile (a plan change, a budget): read it again
        with contextlib.suppress(ConflictError):
            return _set(store, customer_id, url, rotate)
    return _set(store, customer_id, url, rotate)


def _set(store: TollgateStore, customer_id: str, url: str | None, rotate: bool) -> Customer:
    customer = store.get_customer(customer_id)
    webhook = None
    if url is not None:
        kept = customer.alert_webhook
        secret = kept.secret if kept is not None and not rotate else new_secret()
        try:
            webhook = AlertWebhook(url=url, secret=secret)
        except ValidationError as error:
            raise InvalidInputError(
                f"{url!r} is not a webhook URL: https://..., or http://127.0.0.1:PORT/... locally"
            ) from error
    if webhook == customer.alert_webhook:
        return customer
    return store.update_customer(customer, customer.model_copy(update={"alert_webhook": webhook}))
