"""The DynamoDB repository: the one place that knows item shapes. Domain in, domain out.

Items are the models' JSON form (``Decimal`` as strings, datetimes as ISO-8601 UTC) plus the keys from
``tablekeys``. ``ClientError`` codes become domain errors here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import ClientError

from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import (
    BALANCE,
    BOUGHT,
    EXPIRED,
    PERIOD_TAG_LENGTH,
    REFUNDED,
    REFUNDED_REQUESTS,
    day_of,
    is_route_code,
    period_tag,
    period_view,
    read_route_tally,
    route_name_from_sort_key,
    segment_of,
    wallet_period_tags,
)
from tollgate.domain.credit_grants import CreditGrant
from tollgate.domain.models import ApiKey, Customer, CustomerStatus, Plan, RouteUsage, Usage
from tollgate.domain.prepaid import Balance, TopUp
from tollgate.errors import AlreadyExistsError, ConflictError, NotFoundError, TransactionConflictError

_KEY_FIELDS = (tk.PK, tk.SK, tk.GSI1_PK, tk.GSI1_SK, "kind")
# A top-up's fields stored only when set (its expiry and its settlement), so a lot that never expires keeps
# the shape top-ups had before expiry existed.
_TOP_UP_OPTIONAL = ("pack", "expires_at", "expired_credits", "settled_at")


_RETRYABLE_CANCELLATIONS = frozenset(
    {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
)


class Settlement(StrEnum):
    """What :meth:`TollgateStore.settle_lot` did."""

    SETTLED = "settled"  # the lot is settled, its unused credits left the balance
    ALREADY = "already"  # another sweep settled it first: nothing changed
    MOVED = "moved"  # the wallet is not as it was read (a top-up, another settlement, draws): read again


def _add_tally(sums: list[int], value: Any) -> None:
    """Add a tally attribute's (credits, requests) to ``sums`` (a route's or a day's, over shards)."""
    credits, requests = read_route_tally(value)
    sums[0] += credits
    sums[1] += requests


def top_up_item(top_up: TopUp) -> dict[str, Any]:
    """A top-up as stored: its fields, its expiry under ``lot_expires_at`` (``expires_at`` is the table's TTL
    attribute), and, while it has an expiry and is not settled, its entry in the index of expiring lots."""
    item = top_up.model_dump(mode="json")
    for name in _TOP_UP_OPTIONAL:
        if item[name] is None:
            del item[name]
    if "expires_at" in item:
        item[tk.LOT_EXPIRES_AT] = item.pop("expires_at")
    item.update(tk.top_up_key(top_up.customer_id, top_up.reference))
    if top_up.expires_at is not None and not top_up.settled:
        item[tk.GSI1_PK] = tk.EXPIRING_INDEX_PK
        item[tk.GSI1_SK] = tk.expiring_lot_sort_key(top_up.expires_at, top_up.customer_id, top_up.reference)
    return item


def _top_up_from_item(item: Mapping[str, Any]) -> TopUp:
    fields = item_fields(item)
    if tk.LOT_EXPIRES_AT in fields:
        fields["expires_at"] = fields.pop(tk.LOT_EXPIRES_AT)
    return TopUp.model_validate(fields)


def _is_conditional_failure(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    reasons = error.response.get("CancellationReasons") or []
    return code == "TransactionCanceledException" and any(
        r.get("Code") == "ConditionalCheckFailed" for r in reasons
    )


def item_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in item.items() if name not in _KEY_FIELDS}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; the models want ints where they are whole."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def status_change_actions(
    table_name: str,
    customer_id: str,
    status: CustomerStatus,
    *,
    reason: str | None,
    cause: str,
    at: datetime,
    event_id: str,
    pay_url: str | None = None,
    expected: Customer | None = None,
) -> list[dict[str, Any]]:
    """The two ``TransactWriteItems`` actions of a status change: update the customer and add its audit
    item (once per ``event_id``). With ``expected``, the update applies only while the customer still has
    the status and reason it was read with. Callers may add more actions to the same transaction."""
    condition = "attribute_exists(pk)"
    values: dict[str, Any] = {":s": status.value, ":r": reason, ":u": pay_url}
    if expected is not None:
        condition += " AND #s = :was"
        values[":was"] = expected.status.value
        if expected.status_reason is None:
            condition += " AND (attribute_not_exists(status_reason) OR attribute_type(status_reason, :null))"
            values[":null"] = "NULL"
        else:
            condition += " AND status_reason = :was_reason"
            values[":was_reason"] = expected.status_reason
    audit = {
        **tk.audit_key(customer_id, at.isoformat(), event_id),
        "kind": "audit",
        "status": status.value,
        "reason": reason,
        "cause": cause,
        "at": at.isoformat(),
        "event_id": event_id,
        "pay_url": pay_url,
    }
    return [
        {
            "Update": {
                "TableName": table_name,
                "Key": tk.customer_key(customer_id),
                "UpdateExpression": "SET #s = :s, status_reason = :r, pay_url = :u",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#s": "status"},
                "ExpressionAttributeValues": values,
            }
        },
        {"Put": {"TableName": table_name, "Item": audit, "ConditionExpression": "attribute_not_exists(pk)"}},
    ]


class TollgateStore:
    """Plans, customers, keys and usage counters in the Tollgate table."""

    def __init__(self, table_name: str, *, dynamodb: Any = None) -> None:
        resource = dynamodb or boto3.resource("dynamodb")
        self.table = resource.Table(table_name)
        self.table_name = table_name

    def transact(self, actions: Sequence[dict[str, Any]]) -> None:
        """``TransactWriteItems`` of ``actions`` (in the resource client's plain-value form), all or nothing.

        Raises ``TransactionConflictError`` naming the actions whose condition failed.
        """
        if not actions:
            return
        try:
            self.table.meta.client.transact_write_items(TransactItems=list(actions))
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            failed = [i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"]
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException" and failed:
                raise TransactionConflictError(failed) from error
            raise

    # -- plans ---------------------------------------------------------------------------------------
    def put_plan(self, plan: Plan) -> Plan:
        """Store a new plan version; an existing (id, version) is never overwritten."""
        item = {
            **plan.model_dump(mode="json"),
            **tk.plan_key(plan.id, plan.version),
            tk.GSI1_PK: tk.PLANS_INDEX_PK,
            tk.GSI1_SK: f"{plan.id}#{plan.version:06d}",
            "kind": "plan",
        }
        self._create(item, "plan", f"{plan.id} v{plan.version}")
        return plan

    def get_plan(self, plan_id: str, version: int | None = None) -> Plan:
        if version is not None:
            item = self.table.get_item(Key=tk.plan_key(plan_id, version), ConsistentRead=True).get("Item")
            if item is None:
                raise NotFoundError("plan", f"{plan_id} v{version}")
            return Plan.model_validate(item_fields(item))
        versions = self.table.query(
            KeyConditionExpression=Key(tk.PK).eq(tk.plan_pk(plan_id))
            & Key(tk.SK).begins_with(tk.PLAN_VERSION_SK_PREFIX),
            ScanIndexForward=False,
            Limit=1,
            ConsistentRead=True,
        )["Items"]
        if not versions:
            raise NotFoundError("plan", plan_id)
        return Plan.model_validate(item_fields(versions[0]))

    def list_plans(self) -> list[Plan]:
        items = self._query_index(tk.PLANS_INDEX_PK)
        return [Plan.model_validate(item_fields(item)) for item in items]

    # -- customers -----------------------------------------------------------------------------------
    def _customer_item(self, customer: Customer) -> dict[str, Any]:
        return {
            **customer.model_dump(mode="json"),
            **tk.customer_key(customer.id),
            tk.GSI1_PK: tk.CUSTOMERS_INDEX_PK,
            tk.GSI1_SK: tk.customer_pk(customer.id),
            "kind": "customer",
        }

    def put_customer(self, customer: Customer) -> Customer:
        self._create(self._customer_item(customer), "customer", customer.id)
        return customer

    def get_customer(self, customer_id: str) -> Customer:
        item = self.table.get_item(Key=tk.customer_key(customer_id), ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError("customer", customer_id)
        return Customer.model_validate(item_fields(item))

    def list_customers(self) -> list[Customer]:
        return [
            Customer.model_validate(item_fields(item)) for item in self._query_index(tk.CUSTOMERS_INDEX_PK)
        ]

    def customer_id_page(
        self, *, limit: int, start_key: Mapping[str, Any] | None = None
    ) -> tuple[list[str], dict[str, Any] | None]:
        """One page of customer ids in ``gsi1`` order (one Query, only ``id`` projected): at most ``limit``
        ids from ``start_key`` (the ``next_key`` of the page before; None: from the first customer).

        Returns ``(ids, next_key)``: ``next_key`` is DynamoDB's ``LastEvaluatedKey``, None after the last
        page.
        """
        kwargs: dict[str, Any] = {
            "IndexName": tk.GSI1,
            "KeyConditionExpression": Key(tk.GSI1_PK).eq(tk.CUSTOMERS_INDEX_PK),
            "ProjectionExpression": "#id",
            "ExpressionAttributeNames": {"#id": "id"},
            "Limit": limit,
        }
        if start_key is not None:
            kwargs["ExclusiveStartKey"] = dict(start_key)
        page = self.table.query(**kwargs)
        return [str(item["id"]) for item in page["Items"]], page.get("LastEvaluatedKey")

    def customer_pages(self, *, page_size: int | None = None) -> Iterator[list[Customer]]:
        """Every customer in ``gsi1`` order, one Query page at a time (at most ``page_size`` customers, and
        DynamoDB's 1 MB): only the page being read is held, whatever the number of customers."""
        kwargs: dict[str, Any] = {
            "IndexName": tk.GSI1,
            "KeyConditionExpression": Key(tk.GSI1_PK).eq(tk.CUSTOMERS_INDEX_PK),
        }
        if page_size is not None:
            kwargs["Limit"] = page_size
        while True:
            page = self.table.query(**kwargs)
            customers = [Customer.model_validate(item_fields(item)) for item in page["Items"]]
            if customers:
                yield customers
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def update_customer(self, before: Customer, after: Customer) -> Customer:
        """Replace a customer only if it is still exactly ``before`` (optimistic concurrency)."""
        if before.id != after.id:
            raise ValueError("a customer's id never changes")
        if after.segments[-1] != before.segments[-1] and after.plan_segments == before.plan_segments:
            raise ValueError(
                "a customer's plan changes with tollgate.accounts.plan_changes.change_plan, which keeps the "
                "history the close rates each period by"
            )
        try:
            self.table.put_item(
                Item=self._customer_item(after),
                ConditionExpression=Attr(tk.PK).exists()
                & Attr("status").eq(before.status.value)
                & Attr("stripe_customer_id").eq(before.stripe_customer_id)
                & Attr("plan_version").eq(before.plan_version)
                & (
                    Attr("plan_segments").not_exists()
                    | Attr("plan_segments").size().eq(len(before.plan_segments))
                ),
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise ConflictError(f"customer {before.id!r} changed meanwhile; try again") from error
            raise
        return after

    def set_customer_status(
        self,
        customer_id: str,
        status: CustomerStatus,
        *,
        reason: str | None,
        cause: str,
        at: datetime,
        event_id: str,
        pay_url: str | None = None,
    ) -> bool:
        """Move a customer to ``status`` and record why in the audit trail, in one transaction.

        Idempotent per ``event_id``: the audit item is written only once, so a replayed event changes nothing.
        Returns False when this event was already applied.
        """
        actions = status_change_actions(
            self.table_name,
            customer_id,
            status,
            reason=reason,
            cause=cause,
            at=at,
            event_id=event_id,
            pay_url=pay_url,
        )
        try:
            self.table.meta.client.transact_write_items(TransactItems=actions)
        except ClientError as error:
            reasons = error.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                raise NotFoundError("customer", customer_id) from error
            if _is_conditional_failure(error):
                return False
            raise
        return True

    def list_audit(self, customer_id: str) -> list[dict[str, Any]]:
        items = self.table.query(
            KeyConditionExpression=Key(tk.PK).eq(tk.customer_pk(customer_id))
            & Key(tk.SK).begins_with(tk.AUDIT_SK_PREFIX),
            ConsistentRead=True,
        )["Items"]
        return [item_fields(item) for item in items]

    # -- credit grants -------------------------------------------------------------------------------
    def put_credit_grant(self, grant: CreditGrant) -> CreditGrant:
        self._create(
            {**grant.model_dump(mode="json"), **tk.credit_grant_key(grant.customer_id, grant.grant_id)},
            "credit grant",
            grant.grant_id,
        )
        return grant

    def list_credit_grants(self, customer_id: str) -> list[CreditGrant]:
        """The customer's credit grants, revoked ones included, oldest first."""
        items = self._query_customer(customer_id, tk.GRANT_SK_PREFIX)
        grants = [CreditGrant.model_validate(item_fields(item)) for item in items]
        return sorted(grants, key=lambda grant: grant.created_at)

    def revoke_credit_grant(self, customer_id: str, grant_id: str, at: datetime) -> bool:
        """Revoke a grant from ``at`` on; False when it was revoked already. ``NotFoundError`` if unknown."""
        try:
            self.table.update_item(
                Key=tk.credit_grant_key(customer_id, grant_id),
                UpdateExpression="SET revoked_at = :at",
                ConditionExpression=Attr(tk.PK).exists()
                & (Attr("revoked_at").not_exists() | Attr("revoked_at").attribute_type("NULL")),
                ExpressionAttributeValues={":at": at.isoformat()},
            )
        except ClientError as error:
            if not _is_conditional_failure(error):
                raise
            found = self.table.get_item(Key=tk.credit_grant_key(customer_id, grant_id), ConsistentRead=True)
            if "Item" not in found:
                raise NotFoundError("credit grant", grant_id) from error
            return False
        return True

    # -- API keys ------------------------------------------------------------------------------------
    def put_api_key(self, key: ApiKey) -> ApiKey:
        item = {
            **key.model_dump(mode="json"),
            **tk.api_key_key(key.key_hash),
            tk.GSI1_PK: tk.customer_pk(key.customer_id),
            tk.GSI1_SK: f"{tk.KEY_GSI1_SK_PREFIX}{key.created_at.isoformat()}#{key.key_id}",
            "kind": "api_key",
        }
        self._create(item, "api key", key.key_id)
        return key

    def get_api_key(self, key_hash: str) -> ApiKey:
        item = self.table.get_item(Key=tk.api_key_key(key_hash), ConsistentRead=True).get("Item")
        if item is None:
            raise NotFoundError("api key", key_hash[:8])
        return ApiKey.model_validate(item_fields(item))

    def list_api_keys(self, customer_id: str) -> list[ApiKey]:
        items = self._query_index(tk.customer_pk(customer_id), sk_prefix=tk.KEY_GSI1_SK_PREFIX)
        return [ApiKey.model_validate(item_fields(item)) for item in items]

    def find_api_key(self, customer_id: str, key_id: str) -> ApiKey:
        for key in self.list_api_keys(customer_id):
            if key.key_id == key_id:
                return key
        raise NotFoundError("api key", key_id)

    def end_api_key(
        self, key: ApiKey, *, revoked_at: datetime | None = None, valid_until: datetime | None = None
    ) -> ApiKey:
        """Revoke a key now, or let it stop working later (rotation overlap). Repeating it is safe."""
        updated = key.model_copy(
            update={
                "revoked_at": revoked_at or key.revoked_at,
                "valid_until": valid_until or key.valid_until,
            }
        )
        try:
            self.table.update_item(
                Key=tk.api_key_key(key.key_hash),
                UpdateExpression="SET revoked_at = :r, valid_until = :v",
                ConditionExpression=Attr(tk.PK).exists(),
                ExpressionAttributeValues={
                    ":r": updated.revoked_at.isoformat() if updated.revoked_at else None,
                    ":v": updated.valid_until.isoformat() if updated.valid_until else None,
                },
            )
        except ClientError as error:
            if _is_conditional_failure(error):
                raise NotFoundError("api key", key.key_id) from error
            raise
        return updated

    # -- usage ---------------------------------------------------------------------------------------
    def read_usage(self, customer_id: str, period: str, shards: int = 1) -> Usage:
        """Sum all counter shards of a customer-period, or its wallet's counters for a prepaid customer
        (strongly consistent), routes by name, days by their day of the month.

        A route's tally (``tollgate.dal.counter_item``) is found by its code; the route registry names it.
        A code no registry item names yet is shown as ``route CODE``; one that two routes share, under both
        names (``GET /a | GET /b``).
        """
        keys = [tk.counter_key(customer_id, period, shard) for shard in range(shards)]
        wallet = tk.wallet_key(customer_id)
        credits = requests = refunded = refunded_requests = 0
        tallies: dict[str, list[int]] = {}
        segments: dict[int, int] = {}
        days: dict[int, list[int]] = {}
        for found in self.batch_get([*keys, wallet]):
            # a prepaid customer's requests are counted on the wallet (a plan's billing changes only at a
            # period's start, so a period is on one or the other)
            item = period_view(found, period) if found[tk.PK] == wallet[tk.PK] else found
            credits += int(item.get(tk.CREDITS, 0))
            requests += int(item.get(tk.REQUESTS, 0))
            refunded += int(item.get(REFUNDED, 0))
            refunded_requests += int(item.get(REFUNDED_REQUESTS, 0))
            for name, value in item.items():
                seq = segment_of(name)
                if seq is not None:
                    segments[seq] = segments.get(seq, 0) + int(value)
                elif is_route_code(name):
                    _add_tally(tallies.setdefault(name, [0, 0]), value)
                elif (day := day_of(name)) is not None:
                    _add_tally(days.setdefault(day, [0, 0]), value)
        names = self.route_names() if tallies else {}
        routes = {
            " | ".join(names.get(code, [f"route {code}"])): RouteUsage(credits=c, requests=n)
            for code, (c, n) in tallies.items()
        }
        return Usage(
            customer_id=customer_id,
            period=period,
            credits=credits,
            requests=requests,
            routes=dict(sorted(routes.items())),
            segments=dict(sorted(segments.items())),
            days={day: RouteUsage(credits=c, requests=n) for day, (c, n) in sorted(days.items())},
            refunded=RouteUsage(credits=refunded, requests=refunded_requests),
        )

    # -- prepaid credits -----------------------------------------------------------------------------
    def top_up_actions(self, top_up: TopUp) -> list[dict[str, Any]]:
        """The transaction actions that record ``top_up`` (only if its reference is new: the first action's
        condition) and add its credits to the customer's balance."""
        record = {
            "Put": {
                "TableName": self.table_name,
                "Item": top_up_item(top_up),
                "ConditionExpression": "attribute_not_exists(#pk)",
                "ExpressionAttributeNames": {"#pk": tk.PK},
            }
        }
        wallet_update = {
            "Update": {
                "TableName": self.table_name,
                "Key": tk.wallet_key(top_up.customer_id),
                "UpdateExpression": "ADD #b :n, #t :n",
                "ExpressionAttributeNames": {"#b": BALANCE, "#t": BOUGHT},
                "ExpressionAttributeValues": {":n": top_up.credits},
            }
        }
        return [record, wallet_update]

    def add_prepaid_credits(self, top_up: TopUp) -> bool:
        """Record ``top_up`` and add its credits to the customer's balance, in one transaction; False (and
        nothing changed) when its reference was added before."""
        try:
            self.transact(self.top_up_actions(top_up))
        except TransactionConflictError:
            return False
        return True

    def forget_wallet_periods(self, customer_id: str, before: str) -> int:
        """Remove the wallet's counters of the periods before ``before`` (their close records hold what was
        drawn), so the item the authorizer writes on every request stays small; the number removed. Safe to
        repeat: removing what is gone changes nothing."""
        wallet = self.table.get_item(Key=tk.wallet_key(customer_id), ConsistentRead=True).get("Item", {})
        oldest_kept = period_tag(before)
        gone = {tag for tag in wallet_period_tags(wallet) if tag < oldest_kept}
        old = sorted(name for name in wallet if name[:PERIOD_TAG_LENGTH] in gone)
        for start in range(0, len(old), 100):  # well within an update expression's limits
            chunk = old[start : start + 100]
            self.table.update_item(
                Key=tk.wallet_key(customer_id),
                UpdateExpression="REMOVE " + ", ".join(f"#a{i}" for i in range(len(chunk))),
                ExpressionAttributeNames={f"#a{i}": name for i, name in enumerate(chunk)},
            )
        return len(old)

    def get_top_up(self, customer_id: str, reference: str) -> TopUp:
        found = self.table.get_item(Key=tk.top_up_key(customer_id, reference), ConsistentRead=True)
        if "Item" not in found:
            raise NotFoundError("top-up", reference)
        return _top_up_from_item(found["Item"])

    def list_top_ups(self, customer_id: str) -> list[TopUp]:
        """The customer's top-ups, oldest first (strongly consistent): its lots, settled or not."""
        top_ups = [_top_up_from_item(item) for item in self._query_customer(customer_id, tk.TOP_UP_SK_PREFIX)]
        return sorted(top_ups, key=lambda top_up: (top_up.created_at, top_up.reference))

    def read_balance(self, customer_id: str) -> Balance:
        """The customer's prepaid balance (0 for a customer without a wallet), strongly consistent."""
        found = self.table.get_item(
            Key=tk.wallet_key(customer_id),
            ConsistentRead=True,
            ProjectionExpression="#b, #t, #e",
            ExpressionAttributeNames={"#b": BALANCE, "#t": BOUGHT, "#e": EXPIRED},
        ).get("Item", {})
        return Balance(
            customer_id=customer_id,
            credits=int(found.get(BALANCE, 0)),
            bought=int(found.get(BOUGHT, 0)),
            expired=int(found.get(EXPIRED, 0)),
        )

    def due_lot_customers(self, now: datetime, *, page_size: int = 500) -> Iterator[str]:
        """The customers with a lot due by ``now`` (expired, not settled), from the index of expiring lots,
        soonest first, each once: no scan. The index is eventually consistent: a lot settled a moment ago may
        still be listed (the sweep reads the customer's lots again, strongly), and one added a moment ago may
        not be yet (it is not due for days)."""
        kwargs: dict[str, Any] = {
            "IndexName": tk.GSI1,
            "KeyConditionExpression": Key(tk.GSI1_PK).eq(tk.EXPIRING_INDEX_PK)
            & Key(tk.GSI1_SK).lt(tk.due_lots_bound(now)),
            "ProjectionExpression": "customer_id",
            "Limit": page_size,
        }
        seen: set[str] = set()
        while True:
            page = self.table.query(**kwargs)
            for item in page["Items"]:
                customer_id = str(item["customer_id"])
                if customer_id not in seen:
                    seen.add(customer_id)
                    yield customer_id
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def settle_lot(self, lot: TopUp, expired: int, *, seen: Balance, at: datetime) -> Settlement:
        """Settle ``lot``: ``expired`` of its credits leave the balance, in ONE transaction with the record
        marked settled (``expired_credits``, ``settled_at``) and taken out of the index of expiring lots.

        The wallet's part applies only while the wallet is as ``seen`` (``bought``: no top-up since;
        ``expired``: no other settlement since) and its balance still covers ``expired``; the record's only
        while the lot is not settled. Draws since ``seen`` are allowed: they come out of later lots. Safe to
        repeat, and to run concurrently: the lot is settled once."""
        if not 0 <= expired <= lot.credits or lot.expires_at is None:
            raise ValueError(f"lot {lot.reference}: {expired} of {lot.credits} credits cannot expire")
        wallet = {
            "Update": {
                "TableName": self.table_name,
                "Key": tk.wallet_key(lot.customer_id),
                "UpdateExpression": "ADD #b :taken, #e :expired",
                "ConditionExpression": "#t = :bought AND #b >= :expired AND "
                + ("(attribute_not_exists(#e) OR #e = :seen)" if seen.expired == 0 else "#e = :seen"),
                "ExpressionAttributeNames": {"#b": BALANCE, "#t": BOUGHT, "#e": EXPIRED},
                "ExpressionAttributeValues": {
                    ":taken": -expired,
                    ":expired": expired,
                    ":bought": seen.bought,
                    ":seen": seen.expired,
                },
            }
        }
        record = {
            "Update": {
                "TableName": self.table_name,
                "Key": tk.top_up_key(lot.customer_id, lot.reference),
                "UpdateExpression": "SET expired_credits = :expired, settled_at = :at REMOVE #ipk, #isk",
                "ConditionExpression": "attribute_exists(#pk) AND attribute_not_exists(expired_credits)",
                "ExpressionAttributeNames": {"#pk": tk.PK, "#ipk": tk.GSI1_PK, "#isk": tk.GSI1_SK},
                "ExpressionAttributeValues": {":expired": expired, ":at": at.isoformat()},
            }
        }
        try:
            self.transact([wallet, record])
        except TransactionConflictError as conflict:
            return Settlement.ALREADY if 1 in conflict.indexes else Settlement.MOVED
        except ClientError as error:  # cancelled by a concurrent write or a throttle: nothing applied
            reasons = {reason.get("Code") for reason in error.response.get("CancellationReasons") or []}
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException" or not (
                reasons & _RETRYABLE_CANCELLATIONS
            ):
                raise
            return Settlement.MOVED
        return Settlement.SETTLED

    def route_names(self) -> dict[str, list[str]]:
        """The route registry: each counter attribute code and the route(s) it stands for, sorted."""
        names: dict[str, list[str]] = {}
        kwargs: dict[str, Any] = {"KeyConditionExpression": Key(tk.PK).eq(tk.ROUTES_PK)}
        while True:
            page = self.table.query(**kwargs)
            for item in page["Items"]:
                code, route = route_name_from_sort_key(str(item[tk.SK]))
                names.setdefault(code, []).append(route)
            if "LastEvaluatedKey" not in page:
                return {code: sorted(routes) for code, routes in names.items()}
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- helpers -------------------------------------------------------------------------------------
    def _create(self, item: dict[str, Any], kind: str, ident: str) -> None:
        """Put a new item; one that exists already is never overwritten (AlreadyExistsError)."""
        try:
            self.table.put_item(Item=item, ConditionExpression=Attr(tk.PK).not_exists())
        except ClientError as error:
            if _is_conditional_failure(error):
                raise AlreadyExistsError(kind, ident) from error
            raise

    def _query_customer(self, customer_id: str, sk_prefix: str) -> Iterator[dict[str, Any]]:
        """The items of the customer's partition whose sort key starts with ``sk_prefix``, every page."""
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": Key(tk.PK).eq(tk.customer_pk(customer_id))
            & Key(tk.SK).begins_with(sk_prefix),
            "ConsistentRead": True,
        }
        while True:
            page = self.table.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _query_index(self, pk: str, sk_prefix: str | None = None) -> Iterator[dict[str, Any]]:
        condition = Key(tk.GSI1_PK).eq(pk)
        if sk_prefix:
            condition = condition & Key(tk.GSI1_SK).begins_with(sk_prefix)
        kwargs: dict[str, Any] = {"IndexName": tk.GSI1, "KeyConditionExpression": condition}
        while True:
            page = self.table.query(**kwargs)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def batch_get(self, keys: list[dict[str, str]]) -> Iterator[dict[str, Any]]:
        """The items of ``keys`` that exist (strongly consistent; 100 keys per request), in no order."""
        resource = self.table.meta.client
        pending: list[dict[str, str]] = list(keys)
        while pending:
            chunk, pending = pending[:100], pending[100:]
            request = {
                self.table_name: {
                    "Keys": chunk,
                    "ConsistentRead": True,
                }
            }
            while request:
                answer = resource.batch_get_item(RequestItems=request)
                yield from answer["Responses"].get(self.table_name, [])
                request = answer.get("UnprocessedKeys") or {}
