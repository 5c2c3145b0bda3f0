"""The ledger's SQL on DuckDB over ledger files written here in the access log's format: distinct requests
counted once, refused and unmetered requests apart, only the period's partition read, every file kind."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tollgate.domain.ledger import RECORD_KEYS
from tollgate.ledger.duckdb_ledger import DuckDbLedger, ledger_files
from tollgate.ledger.queries import (
    CUSTOMER_TOTALS_SQL,
    RECORD_FIELDS,
    CustomerLedger,
    LedgerQueryError,
    customer_totals_parameters,
)

PERIOD = "2026-10"


def record(
    request_id: str,
    customer: str = "acme",
    credits: int | None = 1,
    *,
    at: datetime = datetime(2026, 10, 5, 12, 0, tzinfo=UTC),
    metered: str = "true",
    deny: str = "-",
    route: str = "/v1/search",
) -> dict[str, str]:
    """One access-log record: every value a string, "-" when API Gateway has none."""
    refused = deny != "-"
    return {
        "requestId": request_id,
        "requestTime": str(int(at.timestamp() * 1000)),
        "httpMethod": "GET",
        "resourcePath": route,
        "status": "403" if refused else "200",
        "integrationStatus": "-" if refused else "200",
        "integrationLatency": "-" if refused else "12",
        "responseLatency": "20",
        "customerId": customer,
        "keyId": "-" if customer == "-" else "key_abcdefabcdef",
        "planId": "-" if customer == "-" else "payg",
        "planVersion": "-" if customer == "-" else "1",
        "period": f"{at.year:04d}-{at.month:02d}",
        "credits": "-" if credits is None else str(credits),
        "metered": metered if not refused else "-",
        "denyReason": deny,
        "segment": "-" if refused else "1",
        "routeCode": "-" if refused else "ABCDEF",
        "shard": "-" if refused else "0",
    }


def write(root: Path, records: Iterable[dict[str, str]], name: str = "part-0.jsonl") -> list[Path]:
    """The records into {root}/period=P/day=D/{name}, by their own time (gzip for a .gz name)."""
    by_day: dict[tuple[str, str], list[dict[str, str]]] = {}
    for item in records:
        at = datetime.fromtimestamp(int(item["requestTime"]) / 1000, tz=UTC)
        by_day.setdefault((item["period"], f"{at:%Y-%m-%d}"), []).append(item)
    written = []
    for (period, day), items in by_day.items():
        path = root / f"period={period}" / f"day={day}" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        text = "".join(json.dumps(item) + "\n" for item in items)
        if name.endswith(".gz"):
            path.write_bytes(gzip.compress(text.encode()))
        else:
            path.write_text(text)
        written.append(path)
    return written


def totals(root: Path, period: str = PERIOD, customer: str | None = None) -> dict[str, CustomerLedger]:
    ledger = DuckDbLedger(root)
    try:
        return {found.customer_id: found for found in ledger.customer_totals(period, customer)}
    finally:
        ledger.close()


def test_a_record_has_every_field_as_a_string() -> None:
    assert tuple(record("r1")) == RECORD_FIELDS == RECORD_KEYS  # the ledger writers' own record
    assert all(isinstance(value, str) for value in record("r1").values())


def test_duplicates_are_counted_once_refused_and_unmetered_apart(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", credits=1), record("r2", credits=25), record("r3", credits=1)])
    write(
        tmp_path,
        [
            record("r2", credits=25),  # delivered twice, in another file
            record("r4", credits=25, metered="false"),  # served unmetered (FAIL_OPEN)
            record("r5", credits=None, deny="credit_limit_reached"),
            record("r5", credits=None, deny="credit_limit_reached"),
            record("r6", credits=None, deny="metering_unavailable"),
            record("r7", credits=25, deny="metering_unavailable"),
            record("r8", customer="-", credits=None, deny="missing_api_key"),
        ],
        name="part-1.jsonl",
    )

    found = totals(tmp_path)

    assert found["acme"] == CustomerLedger(
        customer_id="acme",
        requests=7,
        metered_requests=3,
        metered_credits=27,
        unmetered_requests=1,
        refused_requests=3,
        uncertain_requests=2,
        uncertain_credits=25,
        conflicting_requests=0,
    )
    assert found["-"] == CustomerLedger(customer_id="-", requests=1, refused_requests=1)


def test_only_the_period_asked_is_read_and_every_file_kind(tmp_path: Path) -> None:
    october = [record(f"o{i}", credits=i, at=datetime(2026, 10, 1 + i, tzinfo=UTC)) for i in range(1, 4)]
    write(tmp_path, october[:1], name="a.jsonl")
    write(tmp_path, october[1:2], name="b.jsonl.gz")
    write(tmp_path, october[2:], name="tollgate-ledger-1-2026-10-04-00-00-00-abc.gz")  # as Firehose names it
    write(tmp_path, [record("n1", credits=100, at=datetime(2026, 11, 1, tzinfo=UTC))], name="d.jsonl")
    (tmp_path / "period=2026-10" / "day=2026-10-02" / "notes.txt").write_text("not a ledger file\n")

    assert len(ledger_files(tmp_path)) == 4
    assert totals(tmp_path)["acme"].metered_credits == 1 + 2 + 3
    assert totals(tmp_path, "2026-11")["acme"].metered_credits == 100
    assert totals(tmp_path, "2026-12") == {}


def test_one_customer(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", "acme", 5), record("r2", "beta", 7), record("r3", "beta", 1)])

    assert list(totals(tmp_path, customer="beta").values()) == [
        CustomerLedger("beta", requests=2, metered_requests=2, metered_credits=8)
    ]


def test_copies_that_disagree_are_counted_once_and_reported(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", credits=1), record("r1", credits=25), record("r2", credits=3)])

    found = totals(tmp_path)["acme"]

    assert (found.metered_requests, found.conflicting_requests) == (2, 1)


def test_an_empty_or_missing_ledger(tmp_path: Path) -> None:
    assert totals(tmp_path) == {}
    with pytest.raises(LedgerQueryError, match="does not exist"):
        DuckDbLedger(tmp_path / "nowhere")


def test_a_bad_credits_value_is_an_error_not_a_zero(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", credits=None)])  # metered, allowed, but no credits: a broken record

    with pytest.raises(LedgerQueryError, match="could not be read"):
        totals(tmp_path)


def test_the_sql_is_the_one_text_and_its_parameters(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", credits=4)])
    ledger = DuckDbLedger(tmp_path)
    seen: list[tuple[str, list[str]]] = []
    execute = ledger.execute

    def spy(sql: str, parameters: list[str]) -> Any:
        seen.append((sql, parameters))
        return execute(sql, parameters)

    ledger.execute = spy  # type: ignore[method-assign]
    ledger.customer_totals(PERIOD, "acme")

    days = [f"{PERIOD}-01", f"{PERIOD}-31"]  # partition projection lists only the period's days
    assert seen == [(CUSTOMER_TOTALS_SQL, [PERIOD, *days, "acme", "acme"])]
    assert customer_totals_parameters(PERIOD) == [PERIOD, *days, "", ""]
    with pytest.raises(ValueError, match="YYYY-MM"):
        customer_totals_parameters("2026-13")


def test_files_landing_later_are_read(tmp_path: Path) -> None:
    write(tmp_path, [record("r1", credits=4)])
    ledger = DuckDbLedger(tmp_path)
    assert ledger.customer_totals(PERIOD)[0].metered_credits == 4

    write(tmp_path, [record("r2", credits=6)], name="later.jsonl")

    assert ledger.customer_totals(PERIOD)[0].metered_credits == 10
