"""DynamoDB behind the metering interfaces, on the low-level client (no resource layer: cheaper import).

Retries are ours, not botocore's: the client makes one attempt per call. Reads are retried once. The counter
write is retried once only when DynamoDB certainly did not apply it (throttled, or no connection was made);
after a lost response the outcome is unknown, and ``ADD`` is not idempotent, so it is never retried blindly.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from tollgate.dal import tablekeys as tk
from tollgate.dal.counter_item import (
    BALANCE,
    day_attribute,
    route_code,
    route_tally,
    segment_attribute,
    wallet_attribute,
)
from tollgate.errors import CreditLimitReachedError, InsufficientCreditsError, MeteringUnavailableError
from tollgate.metering.grants import Grant, grant_from_items, plan_segments
from tollgate.metering.observability import logger
from tollgate.metering.settings import DEFAULT_KEY_CACHE_MAX_ENTRIES, DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES

# A plan change older than this is past every request the authorizer accepts (request timestamps are within
# 5 minutes of its clock: tollgate.metering.events), so the segment before it is no longer read.
SWITCH_MEMORY_MS = 15 * 60 * 1000
MAX_NAMED_ROUTES = 10_000  # routes an instance remembers having registered (an API has far fewer)
# Errors that mean the write was not applied: throttles, and a transaction in progress on the item (a top-up,
# a refund, an expiry on the wallet or the counter): tried once more.
NOT_APPLIED_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
    }
)


def _wire_key(key: dict[str, str]) -> dict[str, dict[str, str]]:
    return {name: {"S": value} for name, value in key.items()}


class _Lru:
    """Key -> (expiry, value), least recently used first; never more than ``max_entries``."""

    __slots__ = ("entries", "max_entries")

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError(f"a cache holds at least one entry, not {max_entries}")
        self.entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self.max_entries = max_entries

    def put(self, key: str, expires: float, value: Any, now: float) -> None:
        entries = self.entries
        entries[key] = (expires, value)
        entries.move_to_end(key)
        while len(entries) > self.max_entries:
            entries.popitem(last=False)  # the least recently used
        while entries:  # expired entries at the cold end go too (the bound is the worst case, not the norm)
            oldest = next(iter(entries))
            if entries[oldest][0] > now:
                break
            del entries[oldest]


class TtlCache:
    """The key cache: two bounded LRU maps whose entries expire, one for found keys, one for unknown ones.

    A found key's entry holds its grant, an unknown key's holds ``None`` (``put(key, None, ttl)``). Each map
    keeps at most its own number of entries, evicting the least recently used, so a flood of random unknown
    keys can push out only other unknown keys, never the grant of a paying customer; memory stays bounded
    whatever the traffic (an entry is a few hundred bytes, a grant about a kilobyte). A hit costs a lock, one
    dict lookup and a clock read. Thread-safe (the local gateway and the tests share one cache between
    threads).
    """

    def __init__(
        self,
        max_entries: int = DEFAULT_KEY_CACHE_MAX_ENTRIES,
        clock: Any = time.monotonic,
        *,
        max_negative_entries: int = DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES,
    ) -> None:
        self._found = _Lru(max_entries)
        self._unknown = _Lru(max_negative_entries)
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, Any]:
        """``(True, value)`` for a live entry (``value`` None: an unknown key), else ``(False, None)``."""
        with self._lock:
            for lru in (self._found, self._unknown):
                entry = lru.entries.get(key)
                if entry is None:
                    continue
                if entry[0] <= self._clock():
                    del lru.entries[key]
                    return False, None
                lru.entries.move_to_end(key)
                return True, entry[1]
            return False, None

    def put(self, key: str, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            now = self._clock()
            target, other = (self._unknown, self._found) if value is None else (self._found, self._unknown)
            other.entries.pop(key, None)
            target.put(key, now + ttl, value, now)

    def clear(self) -> None:
        with self._lock:
            self._found.entries.clear()
            self._unknown.entries.clear()

    def sizes(self) -> tuple[int, int]:
        """(found keys, unknown keys) held now, expired ones included until they are evicted."""
        with self._lock:
            return len(self._found.entries), len(self._unknown.entries)

    def __len__(self) -> int:
        found, unknown = self.sizes()
        return found + unknown


class DynamoKeyDirectory:
    """Key hash -> Grant, through a cache: ``ttl`` seconds for found keys, ``negative_ttl`` for unknown ones.

    Revoking a key or suspending a customer therefore takes effect within ``ttl`` seconds.
    """

    def __init__(
        self,
        client: Any,
        table: str,
        ttl: float,
        negative_ttl: float,
        cache: TtlCache,
        clock_ms: Any = lambda: int(time.time() * 1000),
    ) -> None:
        self._client, self._table = client, table
        self._ttl, self._negative_ttl = ttl, negative_ttl
        self._cache = cache
        self._clock_ms = clock_ms

    def find(self, key_hash: str) -> Grant | None:
        hit, grant = self._cache.get(key_hash)
        if hit:
            return grant
        grant = self._load(key_hash)
        self._cache.put(key_hash, grant, self._ttl if grant is not None else self._negative_ttl)
        return grant

    def _load(self, key_hash: str) -> Grant | None:
        key_item = self._get(tk.api_key_key(key_hash))
        if key_item is None:
            return None
        customer = self._get(tk.customer_key(key_item["customer_id"]["S"]))
        if customer is None:
            return None
        segments = plan_segments(customer)
        last = segments[-1]
        plan = self._get(tk.plan_key(last.plan_id, last.plan_version))
        if plan is None:
            return None
        if len(segments) == 1 or last.since_ms is None or last.since_ms < self._clock_ms() - SWITCH_MEMORY_MS:
            return grant_from_items(key_item, customer, plan, segment=last.seq)
        before = segments[-2]  # the change is recent or still ahead: requests before it use the old plan
        before_plan = self._get(tk.plan_key(before.plan_id, before.plan_version))
        if before_plan is None:
            return None
        return grant_from_items(
            key_item, customer, plan, (before, before_plan), segment=last.seq, since_ms=last.since_ms
        )

    def _get(self, key: dict[str, str]) -> dict[str, Any] | None:
        answer = self._read(lambda: self._client.get_item(TableName=self._table, Key=_wire_key(key)))
        return answer.get("Item")

    @staticmethod
    def _read(call: Any) -> dict[str, Any]:
        """One read, and once more if it fails (a throttle or a dropped connection is usually momentary)."""
        try:
            return call()
        except (ClientError, BotoCoreError):
            pass
        try:
            return call()
        except (ClientError, BotoCoreError) as error:
            raise MeteringUnavailableError(f"key lookup failed: {type(error).__name__}") from error


class DynamoUsageCounter:
    """One ``UpdateItem ... ADD`` per request; with a credit limit the same write carries the condition.

    The write adds the request to the totals, to its route's tally and to its day's tally (the day of the
    month of the request's own timestamp, like its period: ``tollgate.dal.counter_item``). The
    first time an instance counts a route it also names the route's code in the route registry (one
    ``PutItem``, the same item every time: idempotent); a registry write that fails is tried again with the
    route's next request and never changes the request's answer.
    """

    def __init__(self, client: Any, table: str, max_named_routes: int = MAX_NAMED_ROUTES) -> None:
        self._client, self._table = client, table
        self._named: set[str] = set()  # the routes this instance has named in the registry
        self._max_named = max_named_routes

    def add(
        self,
        customer_id: str,
        period: str,
        shard: int,
        route: str,
        credits: int,
        limit: int | None,
        segment: int = 1,
        *,
        day: int,
    ) -> int | None:
        code = route_code(route)
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": _wire_key(tk.counter_key(customer_id, period, shard)),
            "UpdateExpression": "ADD #c :c, #n :one, #r :tally, #s :c, #d :tally",
            "ExpressionAttributeNames": {
                "#c": tk.CREDITS,
                "#n": tk.REQUESTS,
                "#r": code,
                "#s": segment_attribute(segment),
                "#d": day_attribute(day),
            },
            "ExpressionAttributeValues": {
                ":c": {"N": str(credits)},
                ":one": {"N": "1"},
                ":tally": {"N": route_tally(credits)},
            },
            "ReturnValues": "UPDATED_NEW",
        }
        if limit is not None:
            request["ConditionExpression"] = "attribute_not_exists(#c) OR #c <= :headroom"
            request["ExpressionAttributeValues"][":headroom"] = {"N": str(limit - credits)}
        answer = self._write(request)
        self._name(code, route)
        credits_after = answer.get(tk.CREDITS)
        return int(credits_after["N"]) if credits_after else None

    def draw(
        self,
        customer_id: str,
        period: str,
        route: str,
        credits: int,
        segment: int = 1,
        limit: int | None = None,
        *,
        day: int,
    ) -> int | None:
        """One ``UpdateItem`` on the customer's wallet: the request counted under the period's attributes and
        its credits drawn from the balance, on the condition that the balance covers them (no wallet: no
        balance) and, with a ``limit`` (the customer's budget), that the period's credits stay within it. The
        request's ``day`` is tallied under the period's tag too (``2611d05``).

        With a limit, a refusal returns the wallet as it was (``ReturnValuesOnConditionCheckFailure``, at no
        extra cost), which tells the two refusals apart."""
        code = route_code(route)
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": _wire_key(tk.wallet_key(customer_id)),
            "UpdateExpression": "ADD #b :draw, #c :c, #n :one, #r :tally, #s :c, #d :tally",
            # a free route (0 credits) is served without a wallet; any other needs a balance that covers it
            "ConditionExpression": "#b >= :c" if credits else "attribute_not_exists(#b) OR #b >= :c",
            "ExpressionAttributeNames": {
                "#b": BALANCE,
                "#c": wallet_attribute(period, tk.CREDITS),
                "#n": wallet_attribute(period, tk.REQUESTS),
                "#r": wallet_attribute(period, code),
                "#s": wallet_attribute(period, segment_attribute(segment)),
                "#d": wallet_attribute(period, day_attribute(day)),
            },
            "ExpressionAttributeValues": {
                ":draw": {"N": str(-credits)},
                ":c": {"N": str(credits)},
                ":one": {"N": "1"},
                ":tally": {"N": route_tally(credits)},
            },
            "ReturnValues": "UPDATED_NEW",
        }
        if limit is not None:
            request["ConditionExpression"] += " AND (attribute_not_exists(#c) OR #c <= :headroom)"
            request["ExpressionAttributeValues"][":headroom"] = {"N": str(limit - credits)}
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            answer = self._write(request)
        except CreditLimitReachedError as error:  # the balance does not cover the request, or the budget
            balance = (error.item or {}).get(BALANCE, {}).get("N")
            if limit is not None and balance is not None and int(balance) >= credits:
                raise
            raise InsufficientCreditsError() from error
        self._name(code, route)
        balance = answer.get(BALANCE)
        return int(balance["N"]) if balance else None

    def _name(self, code: str, route: str) -> None:
        if route in self._named:
            return
        try:
            self._client.put_item(
                TableName=self._table,
                Item={**_wire_key(tk.route_name_key(code, route)), "route": {"S": route}},
            )
        except (ClientError, BotoCoreError) as error:
            logger.warning(
                "route registry write failed; tried again next time", route=route, error=str(error)
            )
            return
        if len(self._named) >= self._max_named:
            self._named.clear()  # bounded memory; a route named again costs one idempotent write
        self._named.add(route)

    def _write(self, request: dict[str, Any]) -> dict[str, Any]:
        """One write, and once more only if DynamoDB certainly did not apply it (``applied`` False)."""
        try:
            return self._write_once(request)
        except MeteringUnavailableError as error:
            if error.applied is not False:  # the outcome is unknown: ADD is not idempotent, never repeat it
                raise
        return self._write_once(request)

    def _write_once(self, request: dict[str, Any]) -> dict[str, Any]:
        """One ``UpdateItem``: the updated attributes it answers with (empty if it holds none)."""
        try:
            answer = self._client.update_item(**request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                raise CreditLimitReachedError(error.response.get("Item")) from error
            applied = False if code in NOT_APPLIED_CODES else None
            raise MeteringUnavailableError(f"counter write failed: {code}", applied=applied) from error
        except (ConnectTimeoutError, EndpointConnectionError) as error:
            raise MeteringUnavailableError("counter write: no connection", applied=False) from error
        except BotoCoreError as error:  # read timeout, connection reset: the write may have happened
            raise MeteringUnavailableError(
                f"counter write outcome unknown: {type(error).__name__}", applied=None
            ) from error
        attributes: dict[str, Any] = answer.get("Attributes", {})
        return attributes
