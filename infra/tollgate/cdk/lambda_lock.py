"""The Lambda runtime's pinned distributions, shipped in the package as ``tollgate/cdk/lambda_lock.json``.

The file is generated from ``uv.lock`` in a checkout (``python -m tollgate.cdk.bundling lock``, ``make
lambda-lock``): every distribution in the runtime closure of the project's own ``[project]`` dependencies,
with markers evaluated for the Lambda python3.12 runtime on arm64, and for each one its pinned version, its
dependencies, the top-level import names it provides and the sha256 of each of its wheels that fits
``manylinux2014_aarch64`` / cp312. Synth reads it with ``importlib.resources`` only (``load_lambda_lock``): a
provider's CDK app that ``pip install``-ed tollgate has no uv.lock and no checkout.

Generating needs ``packaging`` and the dev environment (the import names come from the installed
distributions' metadata); loading needs the standard library only.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from tollgate.cdk.constants import (
    LAMBDA_LOCK_RESOURCE,
    LAMBDA_PIP_PLATFORM,
    LAMBDA_PYTHON_VERSION,
    RUNTIME_PROVIDED_DISTRIBUTIONS,
)

PROJECT_NAME = "tollgate"
LOCK_FORMAT = 1

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


@dataclass(frozen=True)
class LockedDistribution:
    name: str
    version: str
    dependencies: tuple[str, ...]
    imports: tuple[str, ...]
    wheels: tuple[tuple[str, str], ...]  # (file name, "sha256:...") of the wheels that fit the Lambda runtime

    def requirement(self) -> str:
        """A hash-checked requirement line: ``name==version --hash=sha256:...``."""
        hashes = " ".join(f"--hash={digest}" for _, digest in self.wheels)
        return f"{self.name}=={self.version} {hashes}".strip()


@dataclass(frozen=True, eq=False)  # hashed by identity: the closures are cached per loaded lock
class LambdaLock:
    python_version: str
    platform: str
    distributions: Mapping[str, LockedDistribution]
    runtime_provided: Mapping[str, LockedDistribution]

    @property
    def runtime_imports(self) -> frozenset[str]:
        """Import names the Lambda runtime provides (boto3, botocore, s3transfer)."""
        return frozenset(name for dist in self.runtime_provided.values() for name in dist.imports)

    def distributions_for_import(self, top_level: str) -> tuple[str, ...]:
        """The locked distributions that provide the top-level import name (usually one; none if unknown)."""
        return tuple(sorted(n for n, d in self.distributions.items() if top_level in d.imports))

    def closure(self, names: Iterable[str]) -> tuple[str, ...]:
        """The distributions and their locked dependencies, without what the runtime provides, sorted."""
        found: set[str] = set()
        pending = [normalize(name) for name in names]
        while pending:
            name = pending.pop()
            if name in found or name in self.runtime_provided:
                continue
            if name not in self.distributions:
                raise KeyError(f"{name} is not in {LAMBDA_LOCK_RESOURCE}")
            found.add(name)
            pending.extend(self.distributions[name].dependencies)
        return tuple(sorted(found))


def _distribution(name: str, entry: Mapping[str, Any]) -> LockedDistribution:
    return LockedDistribution(
        name=name,
        version=str(entry["version"]),
        dependencies=tuple(entry.get("dependencies", ())),
        imports=tuple(entry.get("imports", ())),
        wheels=tuple((str(w["file"]), str(w["hash"])) for w in entry.get("wheels", ())),
    )


def parse_lambda_lock(data: Mapping[str, Any]) -> LambdaLock:
    if data.get("format") != LOCK_FORMAT:
        raise ValueError(f"{LAMBDA_LOCK_RESOURCE}: unknown format {data.get('format')!r}")
    return LambdaLock(
        python_version=str(data["python_version"]),
        platform=str(data["platform"]),
        distributions={n: _distribution(n, e) for n, e in data["distributions"].items()},
        runtime_provided={n: _distribution(n, e) for n, e in data["runtime_provided"].items()},
    )


def lambda_lock_text() -> str:
    """The shipped file's text, found through the package (never a path into a checkout)."""
    return resources.files("tollgate.cdk").joinpath(LAMBDA_LOCK_RESOURCE).read_text(encoding="utf-8")


@cache
def load_lambda_lock() -> LambdaLock:
    return parse_lambda_lock(json.loads(lambda_lock_text()))


# --- generating the file from uv.lock (dev time, in a checkout) ---------------------------------------------


def _marker_applies(marker: str | None) -> bool:
    if not marker:
        return True
    from packaging.markers import Marker

    return Marker(marker).evaluate(dict(LAMBDA_MARKER_ENVIRONMENT))


def _pick(entries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    """A lock may hold several versions of one package (forked resolution): take the one for python3.12."""
    if len(entries) == 1:
        return entries[0]
    for entry in entries:
        if any(_marker_applies(m) for m in entry.get("resolution-markers") or []):
            return entry
    return entries[0]


def _dependencies(entry: Mapping[str, Any], extra: str | None = None) -> list[Mapping[str, Any]]:
    """An entry's dependencies that apply on Lambda (those of one of its extras when ``extra`` is given)."""
    listed = entry.get("dependencies", []) if extra is None else entry.get("optional-dependencies", {})[extra]
    return [d for d in listed if _marker_applies(d.get("marker"))]


def _lambda_wheel_tags() -> frozenset[Any]:
    from packaging import tags

    major, minor = (int(part) for part in LAMBDA_PYTHON_VERSION.split("."))
    policy, _, arch = LAMBDA_PIP_PLATFORM.partition("_")  # manylinux2014_aarch64 -> manylinux_2_17_aarch64
    platforms = [LAMBDA_PIP_PLATFORM]
    if policy == "manylinux2014":
        platforms.insert(0, f"manylinux_2_17_{arch}")
    return frozenset(
        [
            *tags.cpython_tags((major, minor), platforms=platforms),
            *tags.compatible_tags((major, minor), f"cp{major}{minor}", platforms=platforms),
        ]
    )


def _lambda_wheels(name: str, entry: Mapping[str, Any]) -> list[dict[str, str]]:
    from packaging.utils import parse_wheel_filename

    supported = _lambda_wheel_tags()
    wheels = []
    for wheel in entry.get("wheels", []):
        filename = str(wheel["url"]).rsplit("/", 1)[-1]
        if supported & parse_wheel_filename(filename)[3]:
            wheels.append({"file": filename, "hash": str(wheel["hash"])})
    if not wheels:
        raise ValueError(f"uv.lock has no {LAMBDA_PIP_PLATFORM} cp{LAMBDA_PYTHON_VERSION} wheel for {name}")
    return sorted(wheels, key=lambda w: w["file"])


def _import_names() -> dict[str, list[str]]:
    """Normalized distribution name -> the top-level import names it installs (from this environment)."""
    provided: dict[str, set[str]] = {}
    for top_level, distributions in metadata.packages_distributions().items():
        if not top_level.isidentifier() or top_level == "__pycache__":
            continue
        for distribution in distributions:
            provided.setdefault(normalize(distribution), set()).add(top_level)
    return {name: sorted(names) for name, names in provided.items()}


def generate_lambda_lock(uv_lock: Path, *, project: str = PROJECT_NAME) -> dict[str, Any]:
    """The content of ``lambda_lock.json`` for a ``uv.lock`` (its ``project``'s runtime closure)."""
    lock = tomllib.loads(uv_lock.read_text(encoding="utf-8"))
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for entry in lock["package"]:
        by_name.setdefault(normalize(entry["name"]), []).append(entry)
    runtime = {normalize(name) for name in RUNTIME_PROVIDED_DISTRIBUTIONS}
    import_names = _import_names()

    def imports_of(name: str) -> list[str]:
        # Installed metadata where the dev environment has the distribution, else the PEP 503 guess.
        return import_names.get(name) or [name.replace("-", "_")]

    distributions: dict[str, dict[str, Any]] = {}
    runtime_provided: dict[str, dict[str, Any]] = {}
    entered: set[tuple[str, str | None]] = set()
    pending = _dependencies(_pick(by_name[normalize(project)]))
    while pending:
        dependency = pending.pop()
        name = normalize(dependency["name"])
        entry = _pick(by_name[name])
        if name in runtime:  # bundled by AWS: never installed, and its dependencies are not entered
            runtime_provided[name] = {"version": str(entry["version"]), "imports": imports_of(name)}
            continue
        if name not in distributions:
            distributions[name] = {
                "version": str(entry["version"]),
                "dependencies": [],
                "imports": imports_of(name),
                "wheels": _lambda_wheels(name, entry),
            }
        for extra in (None, *dependency.get("extra", [])):
            if (name, extra) in entered:
                continue
            entered.add((name, extra))
            dependencies = _dependencies(entry, extra)
            names = {normalize(d["name"]) for d in dependencies}
            distributions[name]["dependencies"] = sorted({*distributions[name]["dependencies"], *names})
            pending.extend(dependencies)
    for name in sorted(runtime - set(runtime_provided)):
        if name in by_name:
            entry = _pick(by_name[name])
            runtime_provided[name] = {"version": str(entry["version"]), "imports": imports_of(name)}
    return {
        "comment": "Generated from uv.lock by `python -m tollgate.cdk.bundling lock` (make lambda-lock).",
        "format": LOCK_FORMAT,
        "python_version": LAMBDA_PYTHON_VERSION,
        "platform": LAMBDA_PIP_PLATFORM,
        "runtime_provided": dict(sorted(runtime_provided.items())),
        "distributions": dict(sorted(distributions.items())),
    }


def render_lambda_lock(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=False) + "\n"
