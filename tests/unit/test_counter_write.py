"""The authorizer's counter write: what DynamoDB receives, what comes back, and the answer to each failure.

The write is tried once more only when DynamoDB certainly did not apply it (throttled, or no connection was
made): ``applied=False``. After a lost answer the write may have happened and ``ADD`` is not idempotent, so it
is never repeated: ``applied=None``, which the authorizer counts apart (MeteringOutcomeUnknown). The route
registry write that follows never changes the answer; its failure is logged with the route.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from tollgate.errors import CreditLimitReachedError, MeteringUnavailableError
from tollgate.metering.dynamo import NOT_APPLIED_CODES, DynamoUsageCounter
from tollgate.metering.observability import SERVICE

ENDPOINT = "https://dynamodb.us-east-1.amazonaws.com"
ROUTE = "GET /v1/search"


def counted(credits: int) -> dict[str, Any]:
    """UpdateItem's answer with ``ReturnValues=UPDATED_NEW``: the new totals."""
    return {"Attributes": {"credits": {"N": str(credits)}, "requests": {"N": "3"}}}


def refused(code: str, operation: str = "UpdateItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "refused"}}, operation)


class ScriptedClient:
    """update_item answers from a script (an exception is raised, a dict returned) and fails the test if
    called once more than scripted; put_item (the route registry) raises ``registry_failures`` first."""

    def __init__(self, *answers: dict[str, Any] | Exception, registry_failures: tuple[Exception, ...] = ()):
        self.answers = list(answers)
        self.updates: list[dict[str, Any]] = []
        self.registry_failures = list(registry_failures)
        self.puts: list[str] = []

    def update_item(self, **request: Any) -> dict[str, Any]:
        self.updates.append(request)
        if not self.answers:
            pytest.fail(f"counter write attempted {len(self.updates)} times")
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.puts.append(request["Item"]["route"]["S"])
        if self.registry_failures:
            raise self.registry_failures.pop(0)
        return {}


def add(client: ScriptedClient, credits: int = 5, limit: int | None = 100) -> int | None:
    return DynamoUsageCounter(client, "table").add("acme", "2026-11", 0, ROUTE, credits, limit, day=30)


def with_keywords_in_capitals(expression: str) -> str:
    return re.sub(r"\b(?:and|or|not)\b", lambda word: word.group().upper(), expression, flags=re.IGNORECASE)


def test_a_capped_write_passes_only_while_the_credits_before_it_leave_room_for_it() -> None:
    client = ScriptedClient(counted(100))

    assert add(client, credits=25, limit=100) == 100

    (request,) = client.updates
    # DynamoDB reads its keywords (OR, AND, NOT) in any case; everything else is exact.
    assert with_keywords_in_capitals(request["ConditionExpression"]) == (
        "attribute_not_exists(#c) OR #c <= :headroom"
    )
    assert request["ExpressionAttributeNames"]["#c"] == "credits"
    assert request["ExpressionAttributeValues"][":headroom"] == {"N": "75"}  # 75 + 25 reaches the limit
    assert request["ReturnValues"] == "UPDATED_NEW"


def test_the_answer_is_the_credits_used_after_the_write() -> None:
    assert add(ScriptedClient(counted(1234))) == 1234


@pytest.mark.parametrize(
    "answer", [{}, {"Attributes": {"requests": {"N": "3"}}}], ids=["no attributes", "no credits"]
)
def test_an_answer_without_the_credits_total_still_counts_the_request_without_a_total(
    answer: dict[str, Any],
) -> None:
    client = ScriptedClient(answer)

    assert add(client) is None  # counted; the authorizer then leaves creditsUsed out of its context

    assert len(client.updates) == 1
    assert client.puts == [ROUTE]


def test_a_write_past_the_credit_limit_is_the_limit_reached_and_is_not_retried() -> None:
    error = refused("ConditionalCheckFailedException")
    client = ScriptedClient(error)

    with pytest.raises(CreditLimitReachedError) as raised:
        add(client)

    assert raised.value.__cause__ is error
    assert len(client.updates) == 1


@pytest.mark.parametrize("code", sorted(NOT_APPLIED_CODES))
def test_a_throttled_write_was_not_applied_and_is_tried_once_more(code: str) -> None:
    client = ScriptedClient(refused(code), counted(9))

    assert add(client) == 9

    first, second = client.updates
    assert second == first
    assert client.puts == [ROUTE]


@pytest.mark.parametrize("code", sorted(NOT_APPLIED_CODES))
def test_a_write_throttled_twice_fails_as_certainly_not_applied(code: str) -> None:
    second = refused(code)
    client = ScriptedClient(refused(code), second)

    with pytest.raises(MeteringUnavailableError) as raised:
        add(client)

    assert str(raised.value) == f"counter write failed: {code}"
    assert raised.value.applied is False
    assert raised.value.__cause__ is second
    assert len(client.updates) == 2
    assert client.puts == []


@pytest.mark.parametrize("code", ["InternalServerError", "ServiceUnavailable"])
def test_a_write_refused_otherwise_may_have_been_applied_and_is_never_repeated(code: str) -> None:
    client = ScriptedClient(refused(code))

    with pytest.raises(MeteringUnavailableError) as raised:
        add(client)

    assert str(raised.value) == f"counter write failed: {code}"
    assert raised.value.applied is None
    assert len(client.updates) == 1


def test_an_error_answer_without_a_code_is_an_unknown_outcome_not_a_crash() -> None:
    client = ScriptedClient(ClientError({}, "UpdateItem"))

    with pytest.raises(MeteringUnavailableError) as raised:
        add(client)

    assert str(raised.value) == "counter write failed: "
    assert raised.value.applied is None
    assert len(client.updates) == 1


def no_connection() -> list[Exception]:
    return [ConnectTimeoutError(endpoint_url=ENDPOINT), EndpointConnectionError(endpoint_url=ENDPOINT)]


@pytest.mark.parametrize("error", no_connection(), ids=lambda error: type(error).__name__)
def test_a_write_that_found_no_connection_was_not_applied_and_is_tried_once_more(error: Exception) -> None:
    client = ScriptedClient(error, counted(9))

    assert add(client) == 9

    assert len(client.updates) == 2


@pytest.mark.parametrize("error", no_connection(), ids=lambda error: type(error).__name__)
def test_a_write_that_found_no_connection_twice_fails_as_certainly_not_applied(error: Exception) -> None:
    second = EndpointConnectionError(endpoint_url=ENDPOINT)
    client = ScriptedClient(error, second)

    with pytest.raises(MeteringUnavailableError) as raised:
        add(client)

    assert str(raised.value) == "counter write: no connection"
    assert raised.value.applied is False
    assert raised.value.__cause__ is second
    assert len(client.updates) == 2


@pytest.mark.parametrize(
    ("error", "named"),
    [
        pytest.param(ReadTimeoutError(endpoint_url=ENDPOINT), "ReadTimeoutError", id="read timeout"),
        pytest.param(ConnectionClosedError(endpoint_url=ENDPOINT), "ConnectionClosedError", id="reset"),
    ],
)
def test_a_write_whose_answer_was_lost_has_an_unknown_outcome_and_is_never_repeated(
    error: Exception, named: str
) -> None:
    client = ScriptedClient(error)

    with pytest.raises(MeteringUnavailableError) as raised:
        add(client)

    assert str(raised.value) == f"counter write outcome unknown: {named}"
    assert raised.value.applied is None
    assert raised.value.__cause__ is error
    assert len(client.updates) == 1


@pytest.mark.parametrize(
    "failure",
    [refused("InternalServerError", "PutItem"), EndpointConnectionError(endpoint_url=ENDPOINT)],
    ids=["refused", "no connection"],
)
def test_a_failed_route_registry_write_is_logged_with_its_route_and_changes_no_answer(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    client = ScriptedClient(counted(5), counted(10), counted(15), registry_failures=(failure,))
    counter = DynamoUsageCounter(client, "table")

    with caplog.at_level(logging.WARNING, logger=SERVICE):
        assert counter.add("acme", "2026-11", 0, ROUTE, 5, 100, day=30) == 5  # counted all the same

    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == "route registry write failed; tried again next time"
    assert (vars(warning)["route"], vars(warning)["error"]) == (ROUTE, str(failure))

    assert counter.add("acme", "2026-11", 0, ROUTE, 5, 100, day=30) == 10  # named with the route's next one
    assert counter.add("acme", "2026-11", 0, ROUTE, 5, 100, day=30) == 15
    assert client.puts == [ROUTE, ROUTE]  # and not again once it succeeded


def test_a_request_counted_without_a_segment_is_counted_under_the_first_one() -> None:
    client = ScriptedClient(counted(5), {"Attributes": {"balance": {"N": "95"}}})
    counter = DynamoUsageCounter(client, "tollgate")

    counter.add("acme", "2026-11", 0, ROUTE, 5, None, day=30)  # a customer who never changed plan
    counter.draw("acme", "2026-11", ROUTE, 5, day=30)

    assert [update["ExpressionAttributeNames"]["#s"] for update in client.updates] == ["seg1", "2611seg1"]
