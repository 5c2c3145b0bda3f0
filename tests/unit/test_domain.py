"""Domain rules: key format and hashing, plans, customers, periods, money."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.conftest import NOW, make_customer, make_plan
from tollgate.domain import keyformat, periods
from tollgate.domain.models import ApiKey, CollectionMethod, Plan
from tollgate.domain.money import format_amount, line_amount, to_minor_units


def test_generated_keys_are_random_prefixed_and_well_formed() -> None:
    keys = {keyformat.generate_key() for _ in range(200)}

    assert len(keys) == 200
    for key in keys:
        assert key.startswith("tg_live_")
        assert keyformat.is_well_formed(key)
        assert len(key) == keyformat.KEY_LENGTH
    assert keyformat.generate_key("test").startswith("tg_test_")
    with pytest.raises(ValueError, match="live"):
        keyformat.generate_key("prod")


def test_keys_carry_at_least_128_bits_of_entropy() -> None:
    secret = keyformat.generate_key()[len("tg_live_") :]
    assert len(secret) * 6 >= 256  # 43 base64url characters = 258 bits of encoding for 32 random bytes
    assert keyformat.SECRET_BYTES * 8 >= 128


def test_only_a_sha256_and_a_short_prefix_are_derived_for_storage() -> None:
    key = keyformat.generate_key()
    digest = keyformat.hash_key(key)

    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == keyformat.hash_key(key)
    assert digest != keyformat.hash_key(keyformat.generate_key())
    assert keyformat.display_prefix(key) == key[:12]
    assert key[12:] not in keyformat.display_prefix(key)


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "tg_live_",
        "tg_prod_" + "A" * 43,
        "tg_live_" + "A" * 42,
        "tg_live_" + "A" * 44,
        "tg_live_" + "A" * 42 + "=",
        "tg_live_" + "A" * 42 + "é",
        " tg_live_" + "A" * 43,
        "TG_LIVE_" + "A" * 43,
    ],
)
def test_malformed_keys_are_recognised(candidate: str) -> None:
    assert not keyformat.is_well_formed(candidate)


def test_plan_defaults_are_pure_pay_as_you_go() -> None:
    plan = make_plan()
    assert (plan.base_fee, plan.included_credits, plan.is_hybrid) == (Decimal(0), 0, False)
    assert plan.cost_of("POST /v1/generate") == 25
    assert plan.cost_of("GET /usage") == 0
    assert plan.cost_of("GET /v1/unlisted") == 1
    assert make_plan(default_cost=None).cost_of("GET /v1/unlisted") is None


def test_hybrid_plan_and_sub_cent_price_keep_exact_decimals() -> None:
    plan = make_plan(base_fee="49.00", included_credits=100_000, price_per_credit="0.000042")
    assert plan.is_hybrid
    assert plan.price_per_credit == Decimal("0.000042")
    assert to_minor_units(plan.price_per_credit, "usd") == Decimal("0.0042")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("price_per_credit", "-0.1", "greater than or equal to 0"),
        ("price_per_credit", "NaN", "finite"),
        ("currency", "dollars", "pattern"),
        ("currency", "kwd", "not supported"),
        ("route_costs", {"/v1/search": 1}, "must look like"),
        ("route_costs", {"GET /v1/search": -1}, "greater than or equal to 0"),
        ("id", "Has Spaces", "pattern"),
        ("credit_limit", 0, "greater than 0"),
        ("surprise", 1, "Extra inputs"),
    ],
)
def test_bad_plans_are_refused_naming_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        make_plan(**{field: value})
    error = caught.value.errors()[0]
    assert error["loc"][0] == field
    assert message in str(caught.value)


def test_prices_finer_than_stripe_accepts_are_refused_when_the_plan_is_made() -> None:
    assert make_plan(price_per_credit="0.00000000000001").price_per_credit  # 1e-12 cents: the finest allowed
    with pytest.raises(ValidationError, match="finer than Stripe accepts"):
        make_plan(price_per_credit="0.000000000000001")
    with pytest.raises(ValidationError, match="finer than Stripe accepts"):
        make_plan(currency="jpy", price_per_credit="0.0000000000001")


def test_send_invoice_needs_days_until_due() -> None:
    with pytest.raises(ValidationError, match="days_until_due is required"):
        make_plan(collection_method=CollectionMethod.SEND_INVOICE)
    assert make_plan(collection_method="send_invoice", days_until_due=14).days_until_due == 14


def test_tiers_must_ascend_and_end_open() -> None:
    good = make_plan(
        tiers=[{"up_to": 1000, "price_per_credit": "0.01"}, {"up_to": None, "price_per_credit": "0.005"}]
    )
    assert len(good.tiers) == 2
    with pytest.raises(ValidationError, match="open-ended"):
        make_plan(tiers=[{"up_to": 1000, "price_per_credit": "0.01"}])
    with pytest.raises(ValidationError, match="ascend"):
        make_plan(
            tiers=[
                {"up_to": 1000, "price_per_credit": "0.01"},
                {"up_to": 500, "price_per_credit": "0.01"},
                {"up_to": None, "price_per_credit": "0.01"},
            ]
        )


TWO_TIERS = [{"up_to": 1000, "price_per_credit": "0.01"}, {"up_to": None, "price_per_credit": "0.005"}]


def test_a_plan_prices_usage_by_a_flat_price_or_by_tiers_never_both() -> None:
    with pytest.raises(ValidationError, match=r"price_per_credit and tiers: .* one or the other"):
        make_plan(tiers=TWO_TIERS, price_per_credit="0.002")  # the flat price would be silently ignored
    with pytest.raises(ValidationError, match="price_per_credit is required"):
        Plan(id="bare", name="Bare")
    tiered = make_plan(tiers=TWO_TIERS)
    assert tiered.price_per_credit is None
    with pytest.raises(ValueError, match="priced by tiers"):
        _ = tiered.flat_price


@pytest.mark.parametrize(
    ("field", "value"),
    [("price_per_credit", "-0"), ("base_fee", "-0.00"), ("price_per_credit", "-0.001"), ("base_fee", "-5")],
)
def test_negative_prices_and_negative_zero_are_refused_naming_the_field(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        make_plan(**{field: Decimal(value)})


def test_a_negative_zero_tier_price_is_refused_naming_the_tier() -> None:
    tiers = [{"up_to": 10, "price_per_credit": "0.01"}, {"up_to": None, "price_per_credit": Decimal("-0")}]
    with pytest.raises(ValidationError, match=r"tiers\[1\]\.price_per_credit: -0 has a minus sign"):
        make_plan(tiers=tiers)


def test_plans_are_immutable_values() -> None:
    plan = make_plan()
    with pytest.raises(ValidationError):
        plan.price_per_credit = Decimal(1)  # type: ignore[misc]


def test_customer_email_and_shards_are_validated() -> None:
    plan = make_plan()
    with pytest.raises(ValidationError, match="email"):
        make_customer(plan, email="not-an-email")
    with pytest.raises(ValidationError, match="counter_shards"):
        make_customer(plan, counter_shards=0)


def test_key_usability_follows_revocation_and_overlap() -> None:
    key = ApiKey(
        key_id="key_0123456789ab",
        key_hash="0" * 64,
        display_prefix="tg_live_abcd",
        customer_id="acme",
        created_at=NOW,
    )
    assert key.is_usable(NOW)
    assert not key.model_copy(update={"revoked_at": NOW}).is_usable(NOW)
    later = key.model_copy(update={"valid_until": NOW + timedelta(hours=1)})
    assert later.is_usable(NOW + timedelta(minutes=59))
    assert not later.is_usable(NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    ("epoch_ms", "period"),
    [
        (int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000), "2026-11"),
        (int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000) - 1, "2026-10"),
        (int(datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() * 1000), "2026-12"),
    ],
)
def test_a_request_belongs_to_the_utc_month_of_its_timestamp(epoch_ms: int, period: str) -> None:
    assert periods.period_of_epoch_ms(epoch_ms) == period


def test_period_arithmetic_crosses_years() -> None:
    assert periods.next_period("2026-12") == "2027-01"
    assert periods.previous_period("2027-01") == "2026-12"
    assert periods.period_end("2026-11") == datetime(2026, 12, 1, tzinfo=UTC)
    for bad in ("2026-13", "26-11", "2026-1", "2026/11", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            periods.parse_period(bad)


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)))
def test_every_instant_lies_inside_its_period(moment: datetime) -> None:
    period = periods.period_of(moment)
    assert periods.period_start(period) <= moment < periods.period_end(period)


def test_line_amounts_round_half_up_once() -> None:
    assert line_amount(Decimal("0.042"), 1_234_567) == 51_852  # 51851.814 cents
    assert line_amount(Decimal("0.5"), 1) == 1
    assert line_amount(Decimal("0.49"), 1) == 0
    assert format_amount(51_852, "usd") == "518.52 USD"
    assert format_amount(617, "jpy") == "617 JPY"
