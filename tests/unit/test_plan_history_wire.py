"""The authorizer's reading of a customer's plan history from the DynamoDB item (wire format): each field
exactly as stored, and the defaults for what is missing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tollgate.metering.grants import SegmentRef, plan_segments

SINCE = datetime(2026, 11, 15, 12, 30, 0, 250_000, tzinfo=UTC)
SINCE_MS = 1_794_745_800_250  # 2026-11-15T12:30:00.250Z


def test_since_ms_is_the_change_to_the_millisecond() -> None:
    assert int(SINCE.timestamp() * 1000) == SINCE_MS


def test_each_segment_is_read_field_by_field() -> None:
    customer: dict[str, Any] = {
        "plan_id": {"S": "scale"},  # the history, not the customer's plan, says which plans
        "plan_version": {"N": "9"},
        "plan_segments": {
            "L": [
                {"M": {"seq": {"N": "3"}, "plan_id": {"S": "starter"}, "plan_version": {"N": "4"},
                       "since": {"NULL": True}}},
                {"M": {"seq": {"N": "5"}, "plan_id": {"S": "pro"}, "plan_version": {"N": "7"},
                       "since": {"S": SINCE.isoformat()}}},
            ]
        },
    }  # fmt: skip

    assert plan_segments(customer) == [
        SegmentRef(seq=3, plan_id="starter", plan_version=4, since_ms=None),
        SegmentRef(seq=5, plan_id="pro", plan_version=7, since_ms=SINCE_MS),
    ]


def test_a_segment_missing_its_fields_is_segment_1_on_version_1_of_no_plan() -> None:
    customer: dict[str, Any] = {
        "plan_id": {"S": "pro"},
        "plan_version": {"N": "2"},
        "plan_segments": {"L": [{"M": {}}, {"NULL": True}]},  # an empty map; not a map at all
    }

    assert plan_segments(customer) == [SegmentRef(1, "", 1, None), SegmentRef(1, "", 1, None)]


def test_a_customer_without_a_history_is_one_segment_on_its_plan() -> None:
    plan = {"plan_id": {"S": "payg"}, "plan_version": {"N": "4"}}

    assert plan_segments(plan) == [SegmentRef(1, "payg", 4, None)]
    assert plan_segments({**plan, "plan_segments": {"L": []}}) == [SegmentRef(1, "payg", 4, None)]


def test_a_customer_item_without_a_plan_is_one_segment_on_version_1_of_no_plan() -> None:
    assert plan_segments({}) == [SegmentRef(1, "", 1, None)]
    assert plan_segments({"plan_id": {"S": "payg"}}) == [SegmentRef(1, "payg", 1, None)]
