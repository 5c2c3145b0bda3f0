"""The real Lambda assets, built once for the module: arm64 wheels from the package index (cached), the
modules each handler imports, python3.12 bytecode. Prints each asset's unzipped size (visible with ``-s``)."""

from __future__ import annotations

import json
import struct
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
import pytest

from tests.infra.conftest import REPORT_INSTEAD_OF_FAILING
from tollgate.cdk import bundling
from tollgate.cdk.constants import HANDLER_AUTHORIZER, LAMBDA_TASK_ROOT
from tollgate.cdk.functions import TollgateFunction

MB = 1_000_000
# Measured (with bytecode): authorizer 6.3 MB, pydantic functions 15.5 MB, stripe functions 41.3 MB (stripe
# alone is 22 MB: 13 MB of source, 9 MB of bytecode). The ceilings leave about 50% headroom. The one shared
# asset this replaced was 27 MB without bytecode.
AUTHORIZER_CEILING = 9.5 * MB
PYDANTIC_CEILING = 23 * MB
STRIPE_CEILING = 62 * MB
AUTHORIZER_PYC = "tollgate/metering/__pycache__/handler.cpython-312.pyc"


@dataclass(frozen=True)
class Built:
    name: str
    recipe: bundling.Recipe
    path: Path
    size: int
    files: int


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    root = tmp_path_factory.mktemp("lambda-assets")
    built = {}
    for name, handler in bundling.DEPLOYED_HANDLERS.items():
        recipe = bundling.recipe_for(handler)
        path = bundling.build_asset(recipe, root / name, link=True)
        files = sum(1 for p in path.rglob("*") if p.is_file())
        built[name] = Built(name, recipe, path, bundling.unzipped_size(path), files)
        print(
            f"\nLambda asset {name} ({recipe.needs.handler_module}): {built[name].size / MB:.2f} MB unzipped"
        )
    print(f"\n{'function':<18} {'dists':>5} {'files':>6} {'unzipped':>10}")
    for b in built.values():
        print(f"{b.name:<18} {len(b.recipe.distributions):>5} {b.files:>6} {b.size / MB:>7.2f} MB")
    return built


def _ceiling(built: Built) -> float:
    if built.name == "authorizer":
        return AUTHORIZER_CEILING
    return STRIPE_CEILING if "stripe" in built.recipe.needs.distributions else PYDANTIC_CEILING


def test_each_asset_holds_only_what_its_handler_needs(assets: dict[str, Built]) -> None:
    for built in assets.values():
        top = {p.name for p in built.path.iterdir()}
        assert built.size < _ceiling(built), (built.name, built.size)
        assert not {"boto3", "botocore", "s3transfer", "typer", "rich", "click", "bin"} & top, built.name
        assert not (built.path / "tollgate" / "cli").exists(), built.name
        assert not (built.path / "tollgate" / "cdk").exists(), built.name
        handler_file = built.recipe.needs.handler_module.replace(".", "/") + ".py"
        assert (built.path / handler_file).is_file(), built.name
    authorizer = assets["authorizer"].path
    assert not {"stripe", "pydantic", "pydantic_core", "requests", "yaml"} & {
        p.name for p in authorizer.iterdir()
    }
    assert (authorizer / "aws_lambda_powertools").is_dir()
    assert (authorizer / "jmespath").is_dir()
    assert not (authorizer / "tollgate" / "billing").exists()
    assert not (authorizer / "tollgate" / "usage_api").exists()


def test_the_pinned_versions_are_installed(assets: dict[str, Built]) -> None:
    for built in assets.values():
        for distribution in built.recipe.distributions:
            dist_info = f"{distribution.name.replace('-', '_')}-{distribution.version}.dist-info"
            assert (built.path / dist_info).is_dir(), (built.name, dist_info)


def test_the_assets_carry_python312_bytecode(assets: dict[str, Built]) -> None:
    if bundling.lambda_python() is None:
        pytest.skip(
            "no python3.12 on this machine (TOLLGATE_LAMBDA_PYTHON): the assets were built without .pyc"
        )
    authorizer = assets["authorizer"].path
    pyc = (authorizer / AUTHORIZER_PYC).read_bytes()
    assert struct.unpack("<I", pyc[4:8])[0] == 0b01  # hash-based, source not checked (UNCHECKED_HASH)
    assert f"{LAMBDA_TASK_ROOT}/tollgate/metering/handler.py".encode() in pyc  # the name on Lambda
    powertools = authorizer / "aws_lambda_powertools" / "__pycache__" / "__init__.cpython-312.pyc"
    assert f"{LAMBDA_TASK_ROOT}/aws_lambda_powertools/__init__.py".encode() in powertools.read_bytes()
    for built in assets.values():
        sources = list(built.path.rglob("*.py"))
        compiled = list(built.path.rglob("*.cpython-312.pyc"))
        assert len(compiled) == len(sources), built.name


def test_python312_imports_the_authorizer_from_its_bytecode(assets: dict[str, Built]) -> None:
    """The handler module and everything it imports load from the asset's .pyc (boto3/botocore stubbed: the
    runtime provides them)."""
    python = bundling.lambda_python()
    if python is None:
        pytest.skip("no python3.12 on this machine (TOLLGATE_LAMBDA_PYTHON)")
    asset = assets["authorizer"].path
    script = textwrap.dedent(
        f"""
        import sys, types

        class Runtime(types.ModuleType):  # stands for boto3/botocore, which the Lambda runtime provides
            __path__ = []
            def __getattr__(self, name):
                if name.startswith("__"):
                    raise AttributeError(name)
                return type(name, (Exception,), {{"__init__": lambda self, *a, **k: None}})

        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("boto3", "botocore"):
                    import importlib.machinery
                    return importlib.machinery.ModuleSpec(name, Loader())
        class Loader:
            def create_module(self, spec):
                return Runtime(spec.name)
            def exec_module(self, module):
                pass
        sys.meta_path.insert(0, Finder())
        sys.path.insert(0, {str(asset)!r})
        import {assets["authorizer"].recipe.needs.handler_module} as handler
        print(handler.__cached__)
        """
    )
    result = subprocess.run(  # noqa: S603
        [python, "-I", "-B", "-v", "-c", script], capture_output=True, text=True, check=False, cwd=asset
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"code object from '{asset / AUTHORIZER_PYC}'" in result.stderr


def test_cdk_synth_bundles_the_asset_on_the_host(assets: dict[str, Built], tmp_path: Path) -> None:
    """``cdk synth`` with bundling on: the asset directory in cdk.out is the function's own asset."""
    app = cdk.App(outdir=str(tmp_path / "cdk.out"), context=REPORT_INSTEAD_OF_FAILING)
    stack = cdk.Stack(app, "Bundled")
    TollgateFunction(stack, "Authorizer", handler=HANDLER_AUTHORIZER, description="a", service_name="a")
    assembly = app.synth()
    manifest = json.loads((Path(assembly.directory) / "Bundled.assets.json").read_text())
    sources = [
        f["source"]["path"] for f in manifest["files"].values() if f["source"].get("packaging") == "zip"
    ]
    assert len(sources) == 1
    staged = Path(assembly.directory) / sources[0]
    assert (staged / "tollgate" / "metering" / "handler.py").is_file()
    assert not (staged / "stripe").exists()
    assert bundling.unzipped_size(staged) == assets["authorizer"].size
