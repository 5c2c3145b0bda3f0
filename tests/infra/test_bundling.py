"""The Lambda package recipe: requirements pinned from uv.lock, the asset excludes (no pip is run here)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tollgate.cdk import bundling
from tollgate.cdk.constants import ASSET_EXCLUDES, UV_LOCK


@pytest.fixture(scope="module")
def locked_versions() -> dict[str, str]:
    lock = tomllib.loads(UV_LOCK.read_text(encoding="utf-8"))
    return {bundling.normalize(p["name"]): p["version"] for p in lock["package"]}


@pytest.fixture(scope="module")
def requirements() -> dict[str, str]:
    pinned = bundling.locked_requirements()
    assert all(line.count("==") == 1 for line in pinned)
    return dict(line.split("==") for line in pinned)


def test_runtime_dependencies_are_pinned_to_the_lock(
    requirements: dict[str, str], locked_versions: dict[str, str]
) -> None:
    for name in ("aws-lambda-powertools", "pydantic", "pydantic-core", "stripe", "typing-extensions"):
        assert requirements[name] == locked_versions[name], name
    assert all(requirements[name] == locked_versions[name] for name in requirements)


def test_closure_includes_transitive_dependencies(requirements: dict[str, str]) -> None:
    # pydantic -> annotated-types, typing-inspection; stripe -> requests -> urllib3 ...;
    # powertools -> jmespath
    assert {"annotated-types", "typing-inspection", "requests", "urllib3", "certifi", "jmespath"} <= set(
        requirements
    )


def test_runtime_provided_and_cli_only_packages_are_left_out(requirements: dict[str, str]) -> None:
    assert not {"boto3", "botocore", "s3transfer"} & set(requirements)
    assert not {"typer", "rich", "pyyaml", "click"} & set(requirements)  # tollgate/cli is not deployed
    assert not {"aws-cdk-lib", "moto", "pytest", "cfn-lint"} & set(requirements)  # dev groups


def test_locked_requirements_from_a_small_lock(tmp_path: Path) -> None:
    lock = tmp_path / "uv.lock"
    lock.write_text(
        """
version = 1
[[package]]
name = "demo"
version = "1.0"
dependencies = [
  { name = "boto3" },
  { name = "Lib_A" },
  { name = "winonly", marker = "sys_platform == 'win32'" },
]
[[package]]
name = "boto3"
version = "1.0"
dependencies = [{ name = "botocore" }]
[[package]]
name = "botocore"
version = "1.0"
[[package]]
name = "lib-a"
version = "2.1"
dependencies = [{ name = "lib-b" }]
[[package]]
name = "lib-b"
version = "0.3"
[[package]]
name = "winonly"
version = "9"
""",
        encoding="utf-8",
    )
    assert bundling.locked_requirements(lock, project="demo") == ["lib-a==2.1", "lib-b==0.3"]


@pytest.mark.parametrize(
    ("path", "excluded"),
    [
        ("tollgate/metering/handler.py", False),
        ("tollgate/dal/tablekeys.py", False),
        ("tollgate/cli", True),
        ("tollgate/cli/main.py", True),
        ("tollgate/cdk/metering.py", True),
        ("tollgate/cdkish.py", False),
        ("tollgate/metering/__pycache__", True),
        ("tollgate/metering/__pycache__/handler.cpython-312.pyc", True),
    ],
)
def test_asset_excludes(path: str, excluded: bool) -> None:
    assert bundling.is_excluded(path) is excluded


def test_copy_functions_applies_the_excludes(tmp_path: Path) -> None:
    source = tmp_path / "functions"
    for relative in (
        "tollgate/metering/handler.py",
        "tollgate/cli/main.py",
        "tollgate/cdk/x.py",
        "tollgate/accounts/keys.py",
    ):
        (source / relative).parent.mkdir(parents=True, exist_ok=True)
        (source / relative).write_text("# code\n")
    (source / "tollgate" / "accounts" / "__pycache__").mkdir()
    (source / "tollgate" / "accounts" / "__pycache__" / "keys.cpython-312.pyc").write_bytes(b"")
    output = tmp_path / "out"
    bundling.copy_functions(output, source)
    copied = sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file())
    assert copied == ["tollgate/accounts/keys.py", "tollgate/metering/handler.py"]


def test_excludes_match_the_documented_set() -> None:
    assert set(ASSET_EXCLUDES) == {"**/__pycache__", "tollgate/cli/**", "tollgate/cdk/**"}


def test_install_command_targets_lambda_arm64_python312(tmp_path: Path) -> None:
    command = bundling._installer(tmp_path)
    joined = " ".join(command)
    assert str(tmp_path) in command
    assert "--no-deps" in command  # the closure comes from the lock, not from a fresh resolution
    if "pip" in command[:3] and "-m" in command:
        assert "--platform manylinux2014_aarch64" in joined
        assert "--implementation cp" in joined
        assert "--python-version 3.12" in joined
        assert "--only-binary=:all:" in joined
    else:  # uv
        assert "--python-platform aarch64-manylinux2014" in joined
        assert "--python-version 3.12" in joined
