"""Per-function Lambda assets: the shipped lock file, each handler's import closure, the recipe (nothing is
built here; ``test_bundling_assets.py`` builds the real assets)."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import assertions
from aws_cdk import aws_lambda as lambda_

from tests.infra.conftest import SKIP_BUNDLING
from tollgate.cdk import bundling, imports, lambda_lock
from tollgate.cdk.constants import (
    HANDLER_AUTHORIZER,
    HANDLER_CLOSE_WORKER,
    LAMBDA_LOCK_RESOURCE,
    LAMBDA_PYTHON_ENV_VAR,
    UV_LOCK,
)
from tollgate.cdk.functions import TollgateFunction
from tollgate.cdk.imports import BundlingError, function_needs
from tollgate.cdk.lambda_lock import LambdaLock, load_lambda_lock, parse_lambda_lock

LEAN_DISTRIBUTIONS = ("aws-lambda-powertools", "jmespath", "typing-extensions")
URL = "https://files.example"

# --- the lock file shipped in the package -------------------------------------------------------------------


def test_lambda_lock_matches_uv_lock() -> None:
    expected = lambda_lock.render_lambda_lock(lambda_lock.generate_lambda_lock(UV_LOCK))
    assert lambda_lock.lambda_lock_text() == expected, (
        f"tollgate/cdk/{LAMBDA_LOCK_RESOURCE} is out of date with uv.lock: run `make lambda-lock` "
        "(python -m tollgate.cdk.bundling lock)"
    )


def test_lambda_lock_is_read_through_the_package() -> None:
    shipped = resources.files("tollgate.cdk").joinpath(LAMBDA_LOCK_RESOURCE)
    assert shipped.is_file()
    assert json.loads(shipped.read_text(encoding="utf-8"))["format"] == lambda_lock.LOCK_FORMAT


def test_lambda_lock_content() -> None:
    lock = load_lambda_lock()
    assert set(lock.runtime_provided) == {"boto3", "botocore", "s3transfer"}
    assert not set(lock.runtime_provided) & set(lock.distributions)
    assert lock.runtime_imports >= {"boto3", "botocore", "s3transfer"}
    powertools = lock.distributions["aws-lambda-powertools"]
    assert set(powertools.dependencies) == {"jmespath", "typing-extensions"}
    assert lock.distributions_for_import("pydantic_core") == ("pydantic-core",)
    assert lock.distributions_for_import("yaml") == ("pyyaml",)
    assert lock.distributions_for_import("stripe") == ("stripe",)
    for distribution in lock.distributions.values():
        assert distribution.wheels, distribution.name
        for filename, digest in distribution.wheels:  # hash-checked wheels for python3.12 on arm64 only
            assert digest.startswith("sha256:")
            assert filename.endswith("-none-any.whl") or "aarch64" in filename, filename
            assert "-cp" not in filename or "-cp312-" in filename or "-abi3-" in filename, filename


def test_lambda_lock_from_a_small_uv_lock(tmp_path: Path) -> None:
    def wheel(name: str) -> str:
        return f'wheels = [{{ url = "{URL}/{name}", hash = "sha256:{len(name):064x}" }}]'

    uv_lock = tmp_path / "uv.lock"
    uv_lock.write_text(
        textwrap.dedent(
            f"""
            version = 1
            [[package]]
            name = "demo"
            version = "1.0"
            source = {{ editable = "." }}
            dependencies = [
              {{ name = "boto3" }},
              {{ name = "Lib_A", extra = ["fast"] }},
              {{ name = "winonly", marker = "sys_platform == 'win32'" }},
            ]
            [[package]]
            name = "boto3"
            version = "1.0"
            dependencies = [{{ name = "botocore" }}]
            {wheel("boto3-1.0-py3-none-any.whl")}
            [[package]]
            name = "botocore"
            version = "1.0"
            {wheel("botocore-1.0-py3-none-any.whl")}
            [[package]]
            name = "lib-a"
            version = "2.1"
            dependencies = [{{ name = "lib-b" }}]
            {wheel("lib_a-2.1-py3-none-any.whl")}
            [package.optional-dependencies]
            fast = [{{ name = "lib-c" }}]
            [[package]]
            name = "lib-b"
            version = "0.3"
            wheels = [
              {{ url = "{URL}/lib_b-0.3-cp312-cp312-manylinux_2_17_aarch64.whl", hash = "sha256:1" }},
              {{ url = "{URL}/lib_b-0.3-cp312-cp312-manylinux_2_17_x86_64.whl", hash = "sha256:2" }},
              {{ url = "{URL}/lib_b-0.3-cp311-cp311-manylinux_2_17_aarch64.whl", hash = "sha256:3" }},
            ]
            [[package]]
            name = "lib-c"
            version = "5"
            {wheel("lib_c-5-py3-none-any.whl")}
            [[package]]
            name = "winonly"
            version = "9"
            {wheel("winonly-9-py3-none-any.whl")}
            """
        ),
        encoding="utf-8",
    )
    data = lambda_lock.generate_lambda_lock(uv_lock, project="demo")
    assert list(data["distributions"]) == ["lib-a", "lib-b", "lib-c"]  # no winonly, nothing of boto3's
    assert data["distributions"]["lib-a"]["dependencies"] == ["lib-b", "lib-c"]  # the extra's too
    assert data["distributions"]["lib-a"]["imports"] == ["lib_a"]  # not installed here: the PEP 503 guess
    assert data["distributions"]["lib-b"]["wheels"] == [
        {"file": "lib_b-0.3-cp312-cp312-manylinux_2_17_aarch64.whl", "hash": "sha256:1"}
    ]
    assert set(data["runtime_provided"]) == {"boto3", "botocore"}
    lock = parse_lambda_lock(data)
    assert lock.closure(["lib-a"]) == ("lib-a", "lib-b", "lib-c")
    assert lock.distributions["lib-b"].requirement() == "lib-b==0.3 --hash=sha256:1"


# --- what each deployed function needs ----------------------------------------------------------------------


def _excluded_or_billing(module: str) -> bool:
    return module.startswith(("tollgate.cli", "tollgate.cdk", "tollgate.billing", "tollgate.usage_api"))


def test_authorizer_needs_powertools_and_the_metering_modules_only() -> None:
    needs = function_needs(imports.handler_module(HANDLER_AUTHORIZER))
    assert {"tollgate", "tollgate.metering", "tollgate.metering.handler"} <= set(needs.modules)
    assert not [m for m in needs.modules if _excluded_or_billing(m)]
    assert needs.imports == ("aws_lambda_powertools",)  # boto3 and botocore come from the runtime
    assert needs.distributions == LEAN_DISTRIBUTIONS
    files = {f.relative for f in needs.files}
    assert "tollgate/metering/handler.py" in files
    assert "tollgate/metering/__init__.py" in files
    assert "tollgate/__init__.py" in files


@pytest.mark.parametrize(("name", "handler"), list(bundling.DEPLOYED_HANDLERS.items()))
def test_every_function_needs_only_locked_lambda_code(name: str, handler: str) -> None:
    needs = function_needs(imports.handler_module(handler))
    assert imports.handler_module(handler) in needs.modules
    assert not [m for m in needs.modules if m.startswith(("tollgate.cli", "tollgate.cdk"))], name
    assert not {"boto3", "botocore", "s3transfer", "typer", "rich", "click"} & set(needs.distributions), name
    assert set(needs.distributions) <= set(load_lambda_lock().distributions)
    assert "aws-lambda-powertools" in needs.distributions, name


def test_the_deployed_handlers_are_every_function_the_stack_deploys(template: dict[str, Any]) -> None:
    """``DEPLOYED_HANDLERS`` (what ``test_bundling_assets`` builds, ``python -m tollgate.cdk.bundling sizes``
    measures) names exactly the Tollgate functions of the app's stack (which has a ledger)."""
    deployed = {
        function["Properties"]["Handler"]
        for function in template["Resources"].values()
        if function["Type"] == "AWS::Lambda::Function"
        and function["Properties"]["Handler"].startswith("tollgate.")
    }
    assert set(bundling.DEPLOYED_HANDLERS.values()) == deployed
    assert len(bundling.DEPLOYED_HANDLERS) == len(deployed)  # one name per function


def test_the_close_worker_gets_stripe_and_pydantic() -> None:
    needs = function_needs(imports.handler_module(HANDLER_CLOSE_WORKER))
    assert {"stripe", "pydantic", "pydantic-core", "requests", "urllib3"} <= set(needs.distributions)
    assert set(LEAN_DISTRIBUTIONS) <= set(needs.distributions)


# --- the import walk on a package written for the test ------------------------------------------------------


@pytest.fixture
def write_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[dict[str, str]], None]]:
    """Writes files (relative path -> source) under a directory put on sys.path."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(files: dict[str, str]) -> None:
        for relative, source in files.items():
            path = tmp_path / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source), encoding="utf-8")
        importlib.invalidate_caches()

    imports._package_roots.cache_clear()
    yield write
    imports._package_roots.cache_clear()


def _small_lock() -> LambdaLock:
    def dist(version: str, imports_: list[str], dependencies: Sequence[str] = ()) -> dict[str, Any]:
        return {"version": version, "imports": imports_, "dependencies": list(dependencies), "wheels": []}

    return parse_lambda_lock(
        {
            "format": lambda_lock.LOCK_FORMAT,
            "python_version": "3.12",
            "platform": "manylinux2014_aarch64",
            "runtime_provided": {"boto3": dist("1", ["boto3"]), "botocore": dist("1", ["botocore"])},
            "distributions": {
                "lib-a": dist("2", ["liba"], ["lib-b", "botocore"]),
                "lib-b": dist("3", ["libb"]),
                "heavy": dist("4", ["heavy"]),
                "typer": dist("0.1", ["typer"]),
            },
        }
    )


def test_the_walk_follows_first_party_imports_and_maps_the_rest(write_package: Any) -> None:
    write_package(
        {
            "demoapp/__init__.py": "",
            "demoapp/plans.json": "{}",
            "demoapp/fn/__init__.py": "from . import shared\n",
            "demoapp/fn/handler.py": """
                from __future__ import annotations
                import json, os.path
                from typing import TYPE_CHECKING
                import boto3
                from botocore.config import Config
                from liba import thing
                from .. import util
                from demoapp.fn import helpers

                if TYPE_CHECKING:
                    import heavy
                    from demoapp import unused_types

                try:
                    import ujson
                except ImportError:
                    ujson = None

                def handler(event, context):
                    from demoapp.lazy import later
                    return later(event)
                """,
            "demoapp/fn/shared.py": "X = 1\n",
            "demoapp/fn/helpers.py": "import re\n",
            "demoapp/fn/unreached.py": "import heavy\n",
            "demoapp/util.py": "import json\n",
            "demoapp/lazy.py": "def later(event):\n    return event\n",
            "demoapp/unused_types.py": "import heavy\n",
        }
    )
    needs = function_needs("demoapp.fn.handler", _small_lock())
    assert needs.modules == (
        "demoapp",
        "demoapp.fn",
        "demoapp.fn.handler",
        "demoapp.fn.helpers",
        "demoapp.fn.shared",
        "demoapp.lazy",
        "demoapp.util",
    )
    assert needs.imports == ("liba",)
    assert needs.distributions == ("lib-a", "lib-b")  # botocore is the runtime's; heavy is type-only
    assert "demoapp/plans.json" in {f.relative for f in needs.files}  # package data rides along


def test_an_unknown_import_fails_with_the_chain(write_package: Any) -> None:
    write_package(
        {
            "unknownapp/__init__.py": "",
            "unknownapp/handler.py": "from unknownapp import mid\n",
            "unknownapp/mid.py": "import notlocked.sub\n",
        }
    )
    with pytest.raises(BundlingError) as error:
        function_needs("unknownapp.handler", _small_lock())
    message = str(error.value)
    assert "unknownapp.handler -> unknownapp.mid imports 'notlocked.sub'" in message
    assert LAMBDA_LOCK_RESOURCE in message


def test_the_cli_never_goes_into_an_asset(write_package: Any) -> None:
    write_package({"cliapp/__init__.py": "", "cliapp/handler.py": "from tollgate.cli import main\n"})
    with pytest.raises(
        BundlingError, match=r"cliapp\.handler imports tollgate\.cli: tollgate\.cli never goes"
    ):
        function_needs("cliapp.handler", _small_lock())


def test_cli_only_distributions_fail(write_package: Any) -> None:
    write_package({"typerapp/__init__.py": "", "typerapp/handler.py": "import typer\n"})
    with pytest.raises(BundlingError, match="only the CLI may use"):
        function_needs("typerapp.handler", _small_lock())


def test_a_missing_first_party_module_fails(write_package: Any) -> None:
    write_package({"missingapp/__init__.py": "", "missingapp/handler.py": "import missingapp.gone\n"})
    with pytest.raises(BundlingError, match=r"imports missingapp\.gone, which does not exist"):
        function_needs("missingapp.handler", _small_lock())


def test_module_imports_resolves_relative_imports() -> None:
    source = "from . import a\nfrom ..b import c\nfrom .d import *\nimport e.f as g\n"
    found = imports.module_imports(source, "pkg.sub.mod", is_package=False)
    assert [(i.module, i.names) for i in found] == [
        ("pkg.sub", ("a",)),
        ("pkg.b", ("c",)),
        ("pkg.sub.d", ("*",)),
        ("e.f", ()),
    ]
    with pytest.raises(BundlingError, match="beyond the top-level package"):
        imports.module_imports("from ... import x\n", "pkg.mod", is_package=False)


# --- recipes, the installer, the interpreter ----------------------------------------------------------------


def test_functions_with_the_same_needs_share_a_recipe() -> None:
    authorizer = bundling.recipe_for(HANDLER_AUTHORIZER)
    assert bundling.recipe_for("tollgate.metering.handler") == authorizer
    assert authorizer.requirements == tuple(
        f"{name}=={load_lambda_lock().distributions[name].version}" for name in LEAN_DISTRIBUTIONS
    )
    worker = bundling.recipe_for(HANDLER_CLOSE_WORKER)
    assert worker.digest != authorizer.digest
    document = json.loads((bundling.recipe_directory(authorizer) / bundling.RECIPE_FILE).read_text())
    assert "tollgate/metering/handler.py" in document["files"]
    assert all("--hash=sha256:" in line for line in document["requirements"])


def test_install_command_targets_lambda_arm64_python312(tmp_path: Path) -> None:
    command = bundling._installer(tmp_path / "out", tmp_path / "requirements.txt")
    joined = " ".join(command)
    assert str(tmp_path / "out") in command
    assert "--no-deps" in command  # the closure comes from the lock, not from a fresh resolution
    assert "--require-hashes" in command
    if command[1:3] == ["-m", "pip"]:
        assert "--platform manylinux2014_aarch64" in joined
        assert "--implementation cp" in joined
        assert "--python-version 3.12" in joined
        assert "--only-binary=:all:" in joined
    else:  # uv
        assert "--python-platform aarch64-manylinux2014" in joined
        assert "--python-version 3.12" in joined
        assert "--only-binary :all:" in joined


def test_pip_runs_under_the_interpreter_not_a_shim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without pip or uv beside this python, ``python3`` on PATH installs; a version manager's shim there
    (pyenv's rehashes after ``pip install`` and fails under parallel installs) is bypassed."""
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3"
    shim.write_text(f'#!/bin/sh\n[ "$1" = "-m" ] && exit 3\nexec "{sys.executable}" "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", str(shims))
    monkeypatch.setattr(bundling, "_uv", lambda: None)
    find_spec = bundling.importlib.util.find_spec
    monkeypatch.setattr(
        bundling.importlib.util, "find_spec", lambda name, *a: None if name == "pip" else find_spec(name, *a)
    )
    monkeypatch.setattr(bundling, "_has_pip", lambda python: python != str(shim))
    command = bundling._installer(tmp_path / "out", tmp_path / "requirements.txt")
    assert command[:3] == [sys.executable, "-m", "pip"]

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BundlingError, match="needs pip or uv"):
        bundling._installer(tmp_path / "out", tmp_path / "requirements.txt")


@pytest.fixture
def fresh_interpreter_lookup() -> Iterator[None]:
    bundling.lambda_python.cache_clear()
    yield
    bundling.lambda_python.cache_clear()


@pytest.mark.usefixtures("fresh_interpreter_lookup")
def test_the_interpreter_can_be_chosen_or_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(LAMBDA_PYTHON_ENV_VAR, "none")
    assert bundling.lambda_python() is None
    bundling.lambda_python.cache_clear()
    monkeypatch.setenv(LAMBDA_PYTHON_ENV_VAR, "/nonexistent/python3.12")
    with pytest.raises(BundlingError, match=LAMBDA_PYTHON_ENV_VAR):
        bundling.lambda_python()


def test_without_python312_the_asset_has_no_bytecode_and_a_warning(
    write_package: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    write_package({"plainapp/__init__.py": "", "plainapp/handler.py": "import json\n"})
    needs = function_needs("plainapp.handler", _small_lock())
    recipe = bundling.Recipe(needs=needs, distributions=(), file_hashes=(), python=None)
    monkeypatch.setattr(bundling, "_warned_no_bytecode", False)
    output = bundling.build_asset(recipe, tmp_path / "asset")
    assert sorted(p.relative_to(output).as_posix() for p in output.rglob("*") if p.is_file()) == [
        "plainapp/__init__.py",
        "plainapp/handler.py",
    ]
    bundling.build_asset(recipe, tmp_path / "again")
    warnings = [line for line in capsys.readouterr().err.splitlines() if "without bytecode" in line]
    assert len(warnings) == 1  # one line, once per process
    assert LAMBDA_PYTHON_ENV_VAR in warnings[0]


def test_the_command_line_shows_what_a_function_needs(capsys: pytest.CaptureFixture[str]) -> None:
    assert bundling.main(["show", "authorizer"]) == 0
    out = capsys.readouterr().out
    assert "tollgate.metering.handler" in out
    assert "aws-lambda-powertools==" in out
    assert "stripe" not in out


def test_handler_names() -> None:
    assert imports.handler_module(HANDLER_AUTHORIZER) == "tollgate.metering.handler"
    with pytest.raises(BundlingError):
        imports.handler_module("handler")


# --- the construct ------------------------------------------------------------------------------------------


def _asset_keys(stack: cdk.Stack) -> dict[str, str]:
    template = assertions.Template.from_stack(stack).to_json()
    return {
        logical_id: resource["Properties"]["Code"].get("S3Key")
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def test_each_function_gets_its_own_asset_and_equal_needs_share_one() -> None:
    stack = cdk.Stack(cdk.App(context=SKIP_BUNDLING), "Assets")
    for id, handler in (("A", HANDLER_AUTHORIZER), ("B", HANDLER_AUTHORIZER), ("C", HANDLER_CLOSE_WORKER)):
        TollgateFunction(stack, id, handler=handler, description=id, service_name=id)
    inline = lambda_.Code.from_inline("def handler(event, context):\n    return None\n")
    TollgateFunction(stack, "D", handler="index.handler", description="D", service_name="D", code=inline)
    keys = _asset_keys(stack)
    by_id = {logical_id[0]: key for logical_id, key in keys.items()}
    assert by_id["A"] == by_id["B"] != by_id["C"]
    assert by_id["A"] is not None
    assert by_id["D"] is None  # the inline code given as ``code=`` has no asset


def test_an_unknown_import_fails_synth_when_the_function_is_defined(write_package: Any) -> None:
    write_package({"brokenapp/__init__.py": "", "brokenapp/handler.py": "import notlocked\n"})
    stack = cdk.Stack(cdk.App(context=SKIP_BUNDLING), "Broken")
    with pytest.raises(BundlingError, match="notlocked"):
        TollgateFunction(stack, "Fn", handler="brokenapp.handler.handler", description="x", service_name="x")
