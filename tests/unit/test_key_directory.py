"""The authorizer's key lookup reads DynamoDB once more after a failed read, then fails clearly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from tollgate.errors import MeteringUnavailableError
from tollgate.metering.dynamo import SWITCH_MEMORY_MS, DynamoKeyDirectory, TtlCache


class FlakyClient:
    """get_item fails ``failures`` times, then finds nothing."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    def get_item(self, **request: Any) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {}


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "GetItem")


def directory(client: FlakyClient) -> DynamoKeyDirectory:
    return DynamoKeyDirectory(client, "table", ttl=30, negative_ttl=5, cache=TtlCache())


def test_one_failed_read_is_read_again() -> None:
    client = FlakyClient([throttled()])
    assert directory(client).find("hash") is None  # the second read answered: no such key
    assert client.calls == 2


@pytest.mark.parametrize(
    ("first", "second", "named"),
    [
        (throttled(), throttled(), "ClientError"),
        (throttled(), EndpointConnectionError(endpoint_url="http://dynamodb"), "EndpointConnectionError"),
    ],
)
def test_two_failed_reads_make_metering_unavailable_naming_the_error(
    first: Exception, second: Exception, named: str
) -> None:
    client = FlakyClient([first, second])
    with pytest.raises(MeteringUnavailableError, match=f"^key lookup failed: {named}$") as raised:
        directory(client).find("hash")
    assert raised.value.__cause__ is second
    assert client.calls == 2  # no third read: the request is answered (denied) without more waiting


class Items:
    """get_item over a dict of items by (pk, sk), remembering what was read."""

    def __init__(self, items: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.items = items
        self.read: list[str] = []

    def get_item(self, **request: Any) -> dict[str, Any]:
        pk, sk = request["Key"]["pk"]["S"], request["Key"]["sk"]["S"]
        self.read.append(pk)
        item = self.items.get((pk, sk))
        return {} if item is None else {"Item": item}


CHANGE_MS = 1_790_000_000_000


def plan_change_items() -> dict[tuple[str, str], dict[str, Any]]:
    def segment(seq: int, plan: str, since: str | None) -> dict[str, Any]:
        at = {"NULL": True} if since is None else {"S": since}
        return {
            "M": {"seq": {"N": str(seq)}, "plan_id": {"S": plan}, "plan_version": {"N": "1"}, "since": at}
        }

    since = datetime.fromtimestamp(CHANGE_MS / 1000, tz=UTC).isoformat()
    return {
        ("KEY#hash", "KEY"): {"customer_id": {"S": "acme"}, "key_id": {"S": "key_1"}},
        ("CUSTOMER#acme", "PROFILE"): {
            "id": {"S": "acme"},
            "status": {"S": "active"},
            "plan_id": {"S": "pro"},
            "plan_version": {"N": "1"},
            "plan_segments": {"L": [segment(1, "starter", None), segment(2, "pro", since)]},
        },
        ("PLAN#starter", "VERSION#000001"): {"id": {"S": "starter"}, "version": {"N": "1"}},
        ("PLAN#pro", "VERSION#000001"): {"id": {"S": "pro"}, "version": {"N": "1"}},
    }


@pytest.mark.parametrize(
    ("clock_ms", "reads_old_plan"),
    [
        (CHANGE_MS - 3_600_000, True),  # the change is ahead: requests before it keep the old plan
        (CHANGE_MS + SWITCH_MEMORY_MS, True),  # just behind: a request may still carry an earlier timestamp
        (CHANGE_MS + SWITCH_MEMORY_MS + 1, False),  # long past: no request can be from before it
    ],
)
def test_the_plan_before_a_change_is_read_only_while_requests_can_predate_it(
    clock_ms: int, reads_old_plan: bool
) -> None:
    client = Items(plan_change_items())
    keys = DynamoKeyDirectory(client, "table", 30, 5, TtlCache(), clock_ms=lambda: clock_ms)

    grant = keys.find("hash")

    assert grant is not None
    assert ("PLAN#starter" in client.read) is reads_old_plan
    assert grant.in_force(CHANGE_MS).plan_id == "pro"
    assert grant.in_force(CHANGE_MS - 1).plan_id == ("starter" if reads_old_plan else "pro")
    assert grant.in_force(CHANGE_MS).segment == 2
