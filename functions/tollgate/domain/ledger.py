"""The per-request usage ledger: one access-log record per request, as API Gateway writes it.

The ledger is API Gateway's own access logging (REST: straight to Amazon Data Firehose; HTTP APIs: through
CloudWatch Logs), so the hot path stays one DynamoDB request. Each record is one JSON object on one line whose
values are all strings, as API Gateway renders ``$context`` variables: ``"-"`` when a variable has no value
(an allowed request has no ``reason``, a refused one no ``credits``), ``"true"``/``"false"`` for booleans.

Storage layout, the same in S3 and in local mode's directory::

    {root}/period=YYYY-MM/day=YYYY-MM-DD/{file}

``period`` is the record's own (the authorizer's period of the request's timestamp) or, for a record without
one (a refusal), the UTC month of ``requestTime``; ``day`` is the UTC date of ``requestTime``. Firehose may
deliver a record twice: readers deduplicate on ``requestId``.

Standard library and pydantic only: the constructs (``tollgate.cdk.ledger``), the local gateway and the
reconciliation read this one module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

MISSING = "-"  # what API Gateway writes for a variable without a value

# REST APIs. The keys are the record's, fixed: the reconciliation reads them by name.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",  # ms since the epoch
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",  # the route template, /v1/items/{id}
    "status": "$context.status",  # what the caller got
    "integrationStatus": "$context.integration.status",  # what the backend answered ("-": never called)
    "integrationLatency": "$context.integration.latency",
    "responseLatency": "$context.responseLatency",
    "customerId": "$context.authorizer.customerId",
    "keyId": "$context.authorizer.keyId",
    "planId": "$context.authorizer.planId",
    "planVersion": "$context.authorizer.planVersion",
    "period": "$context.authorizer.period",  # YYYY-MM of the request's own timestamp
    "credits": "$context.authorizer.credits",  # what the authorizer counted
    "metered": "$context.authorizer.metered",  # "false": served unmetered (FAIL_OPEN)
    "denyReason": "$context.authorizer.reason",  # a refusal's reason ("-" when allowed)
    # where the authorizer counted the credits, so a refund (tollgate.refunds) takes them back from there:
    "segment": "$context.authorizer.segment",  # the customer's plan segment
    "routeCode": "$context.authorizer.routeCode",  # the route tally it added to (counter_item.route_code)
    "shard": "$context.authorizer.shard",  # the counter's shard ("-": a prepaid customer's wallet)
}

# HTTP APIs (payload 2.0) have no $context.resourcePath: the route key ("GET /v1/items/{id}", "$default") is
# logged in its place, and LedgerRecord reads the template out of it. The other variables exist under the
# same names (the Lambda authorizer's simple-response context is $context.authorizer.<key> there too).
HTTP_ACCESS_LOG_FORMAT: dict[str, str] = {**ACCESS_LOG_FORMAT, "resourcePath": "$context.routeKey"}

RECORD_KEYS: tuple[str, ...] = tuple(ACCESS_LOG_FORMAT)
LOCAL_SUFFIX = ".jsonl"  # local mode; Firehose writes gzip objects (``.gz``)


def access_log_value(value: object) -> str:
    """A value as API Gateway renders it in an access log: ``"-"`` for none, ``true``/``false``, digits."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def render_record(values: Mapping[str, object]) -> dict[str, str]:
    """The raw record for ``values`` (keys of :data:`RECORD_KEYS`; any key missing is ``"-"``)."""
    unknown = set(values) - set(RECORD_KEYS)
    if unknown:
        raise ValueError(f"not a ledger record key: {sorted(unknown)}")
    return {key: access_log_value(values.get(key)) for key in RECORD_KEYS}


def record_line(values: Mapping[str, object]) -> str:
    """One JSON Lines line (with its newline) for ``values``."""
    return json.dumps(render_record(values), separators=(",", ":")) + "\n"


_PERIOD = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


def _dash_to_none(value: Any) -> Any:
    return None if value == MISSING or value == "" else value


class LedgerRecord(BaseModel):
    """One raw ledger record, parsed: ``"-"`` is None, numbers are ints, ``metered`` a bool.

    ``resource_path`` is the route template; an HTTP API's route key (``"GET /v1/items/{id}"``) is read as
    its template (``/v1/items/{id}``). Unknown keys are ignored (a provider may log more).
    """

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    request_id: str = Field(alias="requestId", min_length=1)
    request_time_ms: int = Field(alias="requestTime", ge=0)
    http_method: str | None = Field(None, alias="httpMethod")
    resource_path: str | None = Field(None, alias="resourcePath")
    status: int | None = Field(None, alias="status")
    integration_status: int | None = Field(None, alias="integrationStatus")
    integration_latency_ms: int | None = Field(None, alias="integrationLatency")
    response_latency_ms: int | None = Field(None, alias="responseLatency")
    customer_id: str | None = Field(None, alias="customerId")
    key_id: str | None = Field(None, alias="keyId")
    plan_id: str | None = Field(None, alias="planId")
    plan_version: int | None = Field(None, alias="planVersion")
    period: str | None = Field(None, alias="period")
    credits: int | None = Field(None, alias="credits", ge=0)
    metered: bool | None = Field(None, alias="metered")
    deny_reason: str | None = Field(None, alias="denyReason")
    segment: int | None = Field(None, alias="segment", ge=1)
    route_code: str | None = Field(None, alias="routeCode", pattern=r"^[A-Z2-7]{6}$")
    shard: int | None = Field(None, alias="shard", ge=0, le=99)

    @field_validator("*", mode="before")
    @classmethod
    def _missing_is_none(cls, value: Any) -> Any:
        return _dash_to_none(value)

    @field_validator("period")
    @classmethod
    def _period_shape(cls, value: str | None) -> str | None:
        if value is not None and _PERIOD.fullmatch(value) is None:
            raise ValueError(f"a period is written YYYY-MM, not {value!r}")
        return value

    @field_validator("metered", mode="before")
    @classmethod
    def _metered_words(cls, value: Any) -> Any:
        value = _dash_to_none(value)
        if isinstance(value, str):
            if value not in ("true", "false"):
                raise ValueError(f"metered is 'true' or 'false', not {value!r}")
            return value == "true"
        return value

    @field_validator("resource_path")
    @classmethod
    def _template_of_route_key(cls, value: str | None) -> str | None:
        if value is not None and " " in value:  # an HTTP API route key: "GET /v1/items/{id}"
            return value.split(" ", 1)[1]
        return value

    @classmethod
    def parse(cls, raw: str | bytes | Mapping[str, Any]) -> LedgerRecord:
        """One record from its JSON line (or the decoded object)."""
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        if not isinstance(data, Mapping):
            raise ValueError("a ledger record is a JSON object")
        return cls.model_validate(data)

    @property
    def request_time(self) -> datetime:
        return datetime.fromtimestamp(self.request_time_ms / 1000, tz=UTC)

    @property
    def allowed(self) -> bool:
        """Let through by the authorizer (counted, or unmetered under FAIL_OPEN)."""
        return self.deny_reason is None and self.metered is not None

    @property
    def counted_credits(self) -> int:
        """The credits the authorizer added to the counter for this request (0 unless metered)."""
        return (self.credits or 0) if self.metered else 0


def partition_of(record: LedgerRecord | Mapping[str, Any]) -> tuple[str, str]:
    """``(period, day)`` of a record: its own period, else the UTC month of its request time; the UTC date."""
    parsed = record if isinstance(record, LedgerRecord) else LedgerRecord.parse(record)
    moment = parsed.request_time
    period = parsed.period or f"{moment.year:04d}-{moment.month:02d}"
    return period, f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def partition_prefix(period: str, day: str) -> str:
    """The object prefix of a partition, relative to the ledger's root: ``period=2026-11/day=2026-11-03/``."""
    if _PERIOD.fullmatch(period) is None:
        raise ValueError(f"a period is written YYYY-MM, not {period!r}")
    datetime.strptime(day + "+0000", "%Y-%m-%d%z")  # a real date, or ValueError
    return f"period={period}/day={day}/"


def object_prefix(record: LedgerRecord | Mapping[str, Any]) -> str:
    """Where ``record`` lands, relative to the ledger's root."""
    return partition_prefix(*partition_of(record))
