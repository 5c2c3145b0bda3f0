"""The Lambda deployment package without Docker: locked wheels for arm64 + python3.12, then ``functions/``.

One asset serves every function: the whole ``functions/`` directory (minus the local tooling) on top of the
runtime dependencies pinned in ``uv.lock``. The dependency list is computed from the lock: the project's own
dependencies and their closure, without what the Lambda runtime already provides (boto3, botocore, s3transfer)
and without what only the local CLI uses (typer, rich, pyyaml).

``python -m tollgate.cdk.bundling`` (``make bundle``) prints the list and builds the package into
``build/lambda``;
``cdk synth`` does the same through ``LocalBundler`` (CDK local bundling, so no Docker is needed).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from tollgate.cdk.constants import (
    ASSET_EXCLUDES,
    CLI_ONLY_DISTRIBUTIONS,
    FUNCTIONS_DIR,
    LAMBDA_PIP_PLATFORM,
    LAMBDA_PYTHON_VERSION,
    PROJECT_ROOT,
    RUNTIME_PROVIDED_DISTRIBUTIONS,
    UV_LOCK,
)

PROJECT_NAME = "tollgate"
DEFAULT_OUTPUT = PROJECT_ROOT / "build" / "lambda"

# The environment the markers in uv.lock are evaluated for: the Lambda python3.12 runtime on arm64.
LAMBDA_MARKER_ENVIRONMENT: Mapping[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": f"{LAMBDA_PYTHON_VERSION}.0",
    "os_name": "posix",
    "platform_machine": "aarch64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": f"{LAMBDA_PYTHON_VERSION}.0",
    "python_version": LAMBDA_PYTHON_VERSION,
    "sys_platform": "linux",
    "extra": "",
}


def normalize(name: str) -> str:
    """PEP 503 name normalization: ``Typing_Extensions`` -> ``typing-extensions``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _marker_applies(marker: str | None) -> bool:
    if not marker:
        return True
    try:
        from packaging.markers import Marker
    except ImportError:  # pragma: no cover - packaging comes with the dev tools; be conservative without it
        return not re.search(r"win32|Windows|darwin|Darwin|cygwin", marker)
    return Marker(marker).evaluate(dict(LAMBDA_MARKER_ENVIRONMENT))


def _pick(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """A lock may hold several versions of one package (forked resolution): take the one for python3.12."""
    if len(entries) == 1:
        return entries[0]
    for entry in entries:
        markers = entry.get("resolution-markers") or []
        if any(_marker_applies(m) for m in markers):
            return entry
    return entries[0]


def locked_requirements(
    lock_path: Path = UV_LOCK,
    *,
    project: str = PROJECT_NAME,
    exclude: Iterable[str] = RUNTIME_PROVIDED_DISTRIBUTIONS | CLI_ONLY_DISTRIBUTIONS,
) -> list[str]:
    """``name==version`` for every distribution the Lambda code needs, from the lock, sorted by name.

    The walk starts at the project's runtime dependencies and never enters an excluded distribution, so
    botocore's own dependencies are only bundled when something else needs them too.
    """
    lock = tomllib.loads(lock_path.read_text(encoding="utf-8"))
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for entry in lock["package"]:
        by_name.setdefault(normalize(entry["name"]), []).append(entry)
    skipped = {normalize(name) for name in exclude}
    root = _pick(by_name[normalize(project)])

    versions: dict[str, str] = {}
    pending = [d for d in root.get("dependencies", []) if _marker_applies(d.get("marker"))]
    while pending:
        dependency = pending.pop()
        name = normalize(dependency["name"])
        if name in skipped or name in versions:
            continue
        entry = _pick(by_name[name])
        versions[name] = str(entry["version"])
        pending.extend(d for d in entry.get("dependencies", []) if _marker_applies(d.get("marker")))
    return [f"{name}=={versions[name]}" for name in sorted(versions)]


def is_excluded(relative_path: str) -> bool:
    """Whether a path under ``functions/`` (POSIX, relative) is left out of the asset (``ASSET_EXCLUDES``)."""
    parts = relative_path.split("/")
    for pattern in ASSET_EXCLUDES:
        if pattern.startswith("**/"):
            if any(fnmatch(part, pattern[3:]) for part in parts):
                return True
        elif pattern.endswith("/**"):
            prefix = pattern[:-3]
            if relative_path == prefix or relative_path.startswith(prefix + "/"):
                return True
        elif fnmatch(relative_path, pattern):
            return True
    return False


def copy_functions(output_dir: Path, source_dir: Path = FUNCTIONS_DIR) -> None:
    """Copy the Lambda code into ``output_dir``, leaving out ``ASSET_EXCLUDES``."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        base = Path(directory).relative_to(source_dir).as_posix()
        prefix = "" if base == "." else base + "/"
        return {name for name in names if is_excluded(prefix + name)}

    shutil.copytree(source_dir, output_dir, ignore=ignore, dirs_exist_ok=True)


def _installer(target: Path) -> list[str]:
    """The install command: pip where it exists, else uv (``make setup`` puts one in .tools/bin)."""
    platform_args = [
        "--platform",
        LAMBDA_PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
    ]
    common = ["--no-deps", "--no-compile", "--target", str(target)]
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
        return [*pip, *platform_args, *common]
    for candidate in (os.environ.get("UV"), str(PROJECT_ROOT / ".tools" / "bin" / "uv"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            policy, _, arch = LAMBDA_PIP_PLATFORM.partition("_")
            uv_platform = f"{arch}-{policy}"  # manylinux2014_aarch64 -> aarch64-manylinux2014
            return [
                candidate,
                "pip",
                "install",
                "--python-platform",
                uv_platform,
                "--python-version",
                LAMBDA_PYTHON_VERSION,
                "--only-binary",
                ":all:",
                "--no-deps",
                "--target",
                str(target),
            ]
    for python in ("python3", "python"):
        found = shutil.which(python)
        if found and subprocess.run([found, "-m", "pip", "--version"], capture_output=True).returncode == 0:  # noqa: S603
            return [found, "-m", "pip", "install", "--disable-pip-version-check", *platform_args, *common]
    raise RuntimeError("bundling needs pip or uv to install the Lambda dependencies; run `make setup`")


def bundle(output_dir: Path, requirements: Sequence[str] | None = None) -> None:
    """Install the locked wheels for the Lambda platform into ``output_dir``, then copy ``functions/`` in."""
    output_dir.mkdir(parents=True, exist_ok=True)
    requirements = list(locked_requirements() if requirements is None else requirements)
    if requirements:
        subprocess.run([*_installer(output_dir), *requirements], check=True)  # noqa: S603
    # Console scripts carry the build machine's interpreter path; nothing on Lambda runs them.
    shutil.rmtree(output_dir / "bin", ignore_errors=True)
    copy_functions(output_dir)


def _load_cdk_interfaces() -> tuple[Any, Any]:
    import aws_cdk as cdk
    import jsii

    return cdk, jsii


def make_local_bundler() -> Any:
    """An ``ILocalBundling`` that runs ``bundle`` on the host (defined lazily: it needs aws-cdk-lib)."""
    cdk, jsii = _load_cdk_interfaces()

    @jsii.implements(cdk.ILocalBundling)
    class LocalBundler:
        """CDK local bundling: always succeeds on the host, so the Docker image is never used."""

        def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
            bundle(Path(output_dir))
            return True

    return LocalBundler()


def docker_command(requirements: Sequence[str]) -> list[str]:
    """The (unused) Docker fallback: the same install inside the python3.12 arm64 build image."""
    excludes = " ".join(f"'{p[:-3]}'" for p in ASSET_EXCLUDES if p.endswith("/**"))
    script = " && ".join(
        [
            "pip install --no-deps --no-compile --only-binary=:all: --target /asset-output "
            + " ".join(requirements),
            "cp -R /asset-input/. /asset-output/",
            f"(cd /asset-output && rm -rf {excludes} bin)",
            "find /asset-output -name __pycache__ -type d -prune -exec rm -rf {} +",
        ]
    )
    return ["bash", "-c", script]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tollgate.cdk.bundling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUTPUT, help="default: build/lambda")
    parser.add_argument("--print-only", action="store_true", help="print the pinned requirements and stop")
    args = parser.parse_args(argv)
    requirements = locked_requirements()
    print("\n".join(requirements))
    if args.print_only:
        return 0
    output: Path = args.output.resolve()
    if output.exists():
        shutil.rmtree(output)
    bundle(output, requirements)
    size = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    print(f"bundled {len(requirements)} distributions + functions/ into {output} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
