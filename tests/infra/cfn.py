"""Small readers for synthesized CloudFormation templates (plain dicts, no jsii round trips)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

Template = dict[str, Any]
REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_JSON = REPO_ROOT / "cdk.json"


def cdk_json_context() -> dict[str, Any]:
    """The context ``cdk synth`` passes to the app (cdk.json)."""
    context: dict[str, Any] = json.loads(CDK_JSON.read_text(encoding="utf-8"))["context"]
    return context


def resources(template: Template, type_: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource, for every resource of ``type_``."""
    return {lid: r for lid, r in template["Resources"].items() if r["Type"] == type_}


def props(resource: dict[str, Any]) -> dict[str, Any]:
    return resource.get("Properties", {})


def only(found: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """The single (logical id, resource) of ``found``; fails when there are none or several."""
    assert len(found) == 1, f"expected exactly one resource, found {sorted(found)}"
    return next(iter(found.items()))


def ref(logical_id: str) -> dict[str, str]:
    return {"Ref": logical_id}


def get_att(logical_id: str, attribute: str = "Arn") -> dict[str, list[str]]:
    return {"Fn::GetAtt": [logical_id, attribute]}


def referenced_ids(value: Any) -> set[str]:
    """Every logical id a value refers to through Ref or Fn::GetAtt (at any depth; not AWS::Region & co)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if "Ref" in value and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
            found.add(value["Ref"])
        if "Fn::GetAtt" in value:
            found.add(value["Fn::GetAtt"][0])
        for item in value.values():
            found |= referenced_ids(item)
    elif isinstance(value, list):
        for item in value:
            found |= referenced_ids(item)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def function_by_handler(template: Template, handler: str) -> tuple[str, dict[str, Any]]:
    return only(
        {
            lid: r
            for lid, r in resources(template, "AWS::Lambda::Function").items()
            if props(r).get("Handler") == handler
        }
    )


def role_of(function: dict[str, Any]) -> str:
    """The logical id of a function's execution role."""
    role = props(function)["Role"]
    assert "Fn::GetAtt" in role, role
    return role["Fn::GetAtt"][0]


def role_statements(template: Template, role_id: str) -> list[dict[str, Any]]:
    """Every statement granted to a role: its inline policies and every AWS::IAM::Policy attached to it."""
    role = template["Resources"][role_id]
    statements = [s for p in props(role).get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
    for policy in resources(template, "AWS::IAM::Policy").values():
        if ref(role_id) in props(policy).get("Roles", []):
            statements.extend(props(policy)["PolicyDocument"]["Statement"])
    return statements


def allowed(statements: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """(action, resource) for every Allow statement, expanded."""
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                yield action, resource


# W3005 (a DependsOn next to a GetAtt) comes from CDK's Lambda/role wiring; nothing else is tolerated.
TOLERATED_CFN_LINT_RULES = frozenset({"W3005"})


def cfn_lint_findings(template_path: Path) -> list[str]:
    """cfn-lint's errors and warnings on a template, less the tolerated rules."""
    from cfnlint.api import lint_file

    return [
        f"{m.rule.id} {m.message} ({m.path})"
        for m in lint_file(template_path)
        if m.rule.id not in TOLERATED_CFN_LINT_RULES and m.rule.id[:1] in {"E", "W"}
    ]
