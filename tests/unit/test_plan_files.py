"""Plan files without any AWS: parsing, exact decimals, and the one-line-per-problem error report."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tollgate.domain.plan_files import PlanFileError, load_plan_file
from tollgate.domain.rating import rate_period


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(PlanFileError) as caught:
        load_plan_file(path)
    return list(caught.value.problems)


def test_yaml_prices_are_exact_decimals_even_past_float_precision(tmp_path: Path) -> None:
    (plan,) = load_plan_file(
        write(tmp_path, "p.yml", "id: fine\nname: Fine\nprice_per_credit: 1234.56789012345678\n")
    )
    assert plan.price_per_credit == Decimal("1234.56789012345678")  # 18 digits: a float keeps about 16


def test_toml_prices_are_exact_and_a_tier_without_up_to_is_the_open_ended_one(tmp_path: Path) -> None:
    text = (
        'id = "t"\nname = "T"\n'
        "[[tiers]]\nup_to = 10\nprice_per_credit = 0.3\n"
        "[[tiers]]\nprice_per_credit = 0.1\n"
    )
    (plan,) = load_plan_file(write(tmp_path, "t.toml", text))
    assert [(tier.up_to, tier.price_per_credit) for tier in plan.tiers] == [
        (10, Decimal("0.3")),
        (None, Decimal("0.1")),
    ]


def test_toml_can_hold_several_plans(tmp_path: Path) -> None:
    text = (
        '[[plans]]\nid = "a"\nname = "A"\nprice_per_credit = 1\n\n'
        '[[plans]]\nid = "b"\nname = "B"\nprice_per_credit = 2\n'
    )
    assert [plan.id for plan in load_plan_file(write(tmp_path, "p.toml", text))] == ["a", "b"]


def test_every_problem_of_every_plan_is_reported(tmp_path: Path) -> None:
    text = (
        "plans:\n"
        "  - {id: Bad Id, name: A, price_per_credit: 1}\n"
        "  - {id: b, name: B, price_per_credit: 1, tiers: [{up_to: 5, price_per_credit: x}]}\n"
        "  - {id: b, name: B2, price_per_credit: 1}\n"
    )
    assert problems(write(tmp_path, "plans.yaml", text)) == [
        "plans.yaml: plans[0].id: String should match pattern '^[a-z0-9][a-z0-9_-]{0,62}$'",
        "plans.yaml: plans[1].tiers[0].price_per_credit: Input should be a valid decimal",
    ]


def test_a_plan_id_twice_in_one_file_is_refused(tmp_path: Path) -> None:
    text = "plans:\n  - {id: b, name: B, price_per_credit: 1}\n  - {id: b, name: B2, price_per_credit: 1}\n"
    assert problems(write(tmp_path, "plans.yaml", text)) == ["plans.yaml: id: plan 'b' appears twice"]


def test_model_rules_across_fields_are_reported_against_the_plan(tmp_path: Path) -> None:
    text = "id: inv\nname: I\nprice_per_credit: 1\ncollection_method: send_invoice\n"
    assert problems(write(tmp_path, "plans.yaml", text)) == [
        "plans.yaml: (plan): days_until_due is required when collection_method is send_invoice"
    ]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("plans.json", "{}", "plans.json: a plan file ends in .yaml, .yml or .toml"),
        ("plans.yaml", "", "plans.yaml: expected a plan (a mapping of fields) or a 'plans' list"),
        ("plans.yaml", "- 1\n- 2\n", "plans.yaml: expected a plan (a mapping of fields) or a 'plans' list"),
        ("plans.yaml", "plans: []\n", "plans.yaml: plans: expected a non-empty list of plans"),
        ("plans.yaml", "plans: [1]\n", "plans.yaml: plans[0]: expected a mapping of plan fields"),
        ("plans.yaml", "plans: [{id: a}]\nextra: 1\n", "plans.yaml: extra: unexpected next to 'plans'"),
        ("plans.toml", "id = \n", "plans.toml: not valid TOML: Invalid value (at line 1, column 6)"),
    ],
)
def test_unusable_files_are_one_line(tmp_path: Path, name: str, text: str, expected: str) -> None:
    assert problems(write(tmp_path, name, text)) == [expected]


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    (line,) = problems(tmp_path / "nowhere.yaml")
    assert line.startswith("nowhere.yaml: cannot read the file")


def test_the_documented_example_plan_file_loads() -> None:
    plans = load_plan_file(Path(__file__).parents[2] / "docs" / "examples" / "plans.yaml")
    assert [(p.id, p.is_hybrid) for p in plans] == [("payg", False), ("pro", True)]
    assert str(plans[0].price_per_credit) == "0.00042"
    # The README's worked examples
    pro = rate_period(plans[1], "acme", "2026-11", 142_000)
    assert [(line.quantity, line.amount) for line in pro.lines] == [(1, 4900), (42_000, 1260)]
    assert pro.total == 6160
    assert rate_period(plans[0], "acme", "2026-11", 1_234_567).total == 51_852
