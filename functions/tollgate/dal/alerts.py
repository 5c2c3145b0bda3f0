"""Alert markers: one item per alert id, which makes each alert fire once (``tollgate.alerts.service``).

``CUSTOMER#{id}`` / ``ALERT#{occurrence}#{rule}`` holds ``state`` (``sending`` until the event is published,
then ``sent``) and, while sending, ``lease_until``: a consumer that finds another one's live lease leaves the
alert to it (and its record is retried later); one that finds a lease run out (the sender crashed) takes the
alert over and publishes it again, under the same alert id. Markers expire after :data:`MARKER_DAYS`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum

from boto3.dynamodb.conditions import Attr
from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.store import TollgateStore, _is_conditional_failure
from tollgate.domain.alerts import Alert

MARKER_DAYS = 400  # longer than any period an alert can be about
LEASE = timedelta(seconds=60)  # a sender gets this long to publish before another consumer takes over


class Claim(StrEnum):
    OURS = "ours"  # publish it, then mark it sent
    SENT = "sent"  # published already: nothing to do
    BUSY = "busy"  # another consumer is publishing it now: try again later


def marker_key(alert: Alert) -> dict[str, str]:
    return {tk.PK: tk.customer_pk(alert.customer_id), tk.SK: f"ALERT#{alert.occurrence}#{alert.rule.rule_id}"}


def claim_alert(store: TollgateStore, alert: Alert, now: datetime) -> Claim:
    """Take the right to publish ``alert``: a new marker, or one whose sender's lease ran out."""
    return claim(store, marker_key(alert), alert.alert_id, now)


def mark_sent(store: TollgateStore, alert: Alert, now: datetime) -> None:
    mark_done(store, marker_key(alert), now)


def auto_top_up_key(customer_id: str, crossing: str) -> dict[str, str]:
    """The marker of one automatic top-up: the customer's balance crossing its threshold (``crossing``)."""
    return {tk.PK: tk.customer_pk(customer_id), tk.SK: f"AUTOTOPUP#{crossing}"}


def claim(store: TollgateStore, key: dict[str, str], name: str, now: datetime) -> Claim:
    """Take the right to do the one-time action the marker ``key`` stands for (``name``, for people)."""
    item = {
        **key,
        "kind": "marker",
        "name": name,
        "state": "sending",
        "lease_until": (now + LEASE).isoformat(),
        "fired_at": now.isoformat(),
        tk.TTL_ATTRIBUTE: int((now + timedelta(days=MARKER_DAYS)).timestamp()),
    }
    try:
        store.table.put_item(
            Item=item,
            ConditionExpression=Attr(tk.PK).not_exists()
            | (Attr("state").eq("sending") & Attr("lease_until").lt(now.isoformat())),
        )
    except ClientError as error:
        if not _is_conditional_failure(error):
            raise
        found = store.table.get_item(Key=key, ConsistentRead=True).get("Item", {})
        return Claim.SENT if found.get("state") == "sent" else Claim.BUSY
    return Claim.OURS


def mark_done(store: TollgateStore, key: dict[str, str], now: datetime) -> None:
    store.table.update_item(
        Key=key,
        UpdateExpression="SET #s = :sent, sent_at = :now REMOVE lease_until",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":sent": "sent", ":now": now.isoformat()},
    )
