"""Per-function Lambda assets, built on the host from the installed package: no Docker, no repository paths.

Each function's asset holds what its handler imports and nothing else (``tollgate.cdk.imports``): the
``tollgate`` modules reached from the handler module (never ``tollgate.cli`` or ``tollgate.cdk``) and the
locked distributions their third-party imports need (``lambda_lock.json``, shipped in the package), installed
from ``manylinux2014_aarch64`` / cp312 wheels with hash checking and ``--no-deps``. boto3, botocore and
s3transfer come from the Lambda runtime. Every ``.py`` in the asset is then compiled for python3.12 with
``UNCHECKED_HASH`` invalidation (CDK zips assets with a fixed timestamp and ``/var/task`` is read-only, so
timestamp-checked bytecode would be recompiled on every cold start), the file names in the bytecode being the
ones on Lambda (``/var/task/...``). Compiling needs a python3.12 interpreter (``lambda_python``); without one
the asset ships without bytecode and a one-line warning says so.

Each distribution is installed and compiled once into a cache directory (``~/.cache/tollgate/lambda``, or
``$TOLLGATE_LAMBDA_CACHE``) named by its pinned requirement and the interpreter; within one process,
functions with the same modules and requirements share one asset. ``cdk synth`` builds through
``make_local_bundler`` (CDK local bundling); ``cdk.App(context={"aws:cdk:bundling-stacks": []})`` skips it
(the tests do).

``python -m tollgate.cdk.bundling`` prints every deployed function's asset size (building them); ``build``
builds one into a directory, ``show`` lists what one needs, ``lock`` regenerates ``lambda_lock.json`` from
``uv.lock`` in a checkout (``make lambda-lock``).
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tollgate.cdk.constants import (
    HANDLER_ALERT_WEBHOOKS,
    HANDLER_ALERTS,
    HANDLER_AUTHORIZER,
    HANDLER_CLOSE_STARTER,
    HANDLER_CLOSE_WATCHDOG,
    HANDLER_CLOSE_WORKER,
    HANDLER_CREDIT_EXPIRY,
    HANDLER_DUNNING_SWEEPER,
    HANDLER_LEDGER_RECONCILER,
    HANDLER_REFUNDS,
    HANDLER_USAGE_API,
    HANDLER_WEBHOOK,
    LAMBDA_CACHE_ENV_VAR,
    LAMBDA_LOCK_RESOURCE,
    LAMBDA_PIP_PLATFORM,
    LAMBDA_PYTHON_ENV_VAR,
    LAMBDA_PYTHON_VERSION,
    LAMBDA_TASK_ROOT,
    PROJECT_ROOT,
    UV_LOCK,
)
from tollgate.cdk.imports import BundlingError, FunctionNeeds, find_source, function_needs, handler_module
from tollgate.cdk.lambda_lock import (
    LockedDistribution,
    generate_lambda_lock,
    lambda_lock_text,
    load_lambda_lock,
    render_lambda_lock,
)

__all__ = [
    "DEPLOYED_HANDLERS",
    "BundlingError",
    "Recipe",
    "build_asset",
    "lambda_python",
    "make_local_bundler",
    "recipe_for",
    "unzipped_size",
]

# The functions the Tollgate stack deploys (with a ledger: Tollgate(ledger=True)): short name -> handler.
DEPLOYED_HANDLERS: Mapping[str, str] = {
    "authorizer": HANDLER_AUTHORIZER,
    "close-starter": HANDLER_CLOSE_STARTER,
    "close-worker": HANDLER_CLOSE_WORKER,
    "webhooks": HANDLER_WEBHOOK,
    "dunning-sweeper": HANDLER_DUNNING_SWEEPER,
    "usage-api": HANDLER_USAGE_API,
    "close-watchdog": HANDLER_CLOSE_WATCHDOG,
    "alerts": HANDLER_ALERTS,
    "alert-webhooks": HANDLER_ALERT_WEBHOOKS,
    "credit-expiry": HANDLER_CREDIT_EXPIRY,
    "ledger-reconciler": HANDLER_LEDGER_RECONCILER,
    "refunds": HANDLER_REFUNDS,
}
RECIPE_FORMAT = 1
RECIPE_FILE = "recipe.json"
_INSTALL_WORKERS = 4

# --- the python3.12 that compiles the bytecode --------------------------------------------------------------


def _python_version(executable: str) -> str | None:
    """``"3.12"`` for a working python3.12 (pyenv shims of a version not enabled fail here), else None."""
    try:
        result = subprocess.run(  # noqa: S603 - a python interpreter found on this machine
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.parent.name))


def _pyenv_pythons() -> Iterator[str]:
    root = os.environ.get("PYENV_ROOT")
    pyenv = shutil.which("pyenv")
    if not root and pyenv:
        result = subprocess.run([pyenv, "root"], capture_output=True, text=True, check=False)  # noqa: S603
        root = result.stdout.strip() if result.returncode == 0 else None
    root_dir = Path(root) if root else Path.home() / ".pyenv"
    pattern = f"versions/{LAMBDA_PYTHON_VERSION}*/bin/python{LAMBDA_PYTHON_VERSION}"
    for candidate in sorted(root_dir.glob(pattern), key=_version_key, reverse=True):
        yield str(candidate)


def _uv() -> str | None:
    """uv, for installing wheels and finding pythons: ``$UV``, on PATH, next to this python (``pip install
    uv``), or a checkout's ``.tools/bin/uv``."""
    for candidate in (
        os.environ.get("UV"),
        shutil.which("uv"),
        str(Path(sys.executable).parent / "uv"),
        str(PROJECT_ROOT / ".tools" / "bin" / "uv"),
    ):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _uv_pythons() -> Iterator[str]:
    uv = _uv()
    if uv is None:
        return
    result = subprocess.run(  # noqa: S603
        [uv, "python", "find", "--no-project", LAMBDA_PYTHON_VERSION],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"},
    )
    if result.returncode == 0 and result.stdout.strip():
        yield result.stdout.strip()


def _python_candidates() -> Iterator[str]:
    if sys.version_info[:2] == tuple(int(p) for p in LAMBDA_PYTHON_VERSION.split(".")):
        yield sys.executable
    on_path = shutil.which(f"python{LAMBDA_PYTHON_VERSION}")
    if on_path:
        yield on_path
    yield from _pyenv_pythons()
    yield from _uv_pythons()


@cache
def lambda_python() -> str | None:
    """A python3.12 to compile with: ``$TOLLGATE_LAMBDA_PYTHON`` (``none`` to build without bytecode), this
    interpreter if it is 3.12, ``python3.12`` on PATH, a pyenv version, ``uv python find 3.12``; else None.
    """
    explicit = os.environ.get(LAMBDA_PYTHON_ENV_VAR, "").strip()
    if explicit:
        if explicit.lower() in {"none", "off", "0", "false"}:
            return None
        resolved = shutil.which(explicit) or explicit
        if _python_version(resolved) != LAMBDA_PYTHON_VERSION:
            raise BundlingError(
                f"{LAMBDA_PYTHON_ENV_VAR}={explicit} is not a working python{LAMBDA_PYTHON_VERSION}"
            )
        return resolved
    for candidate in _python_candidates():
        if _python_version(candidate) == LAMBDA_PYTHON_VERSION:
            return candidate
    return None


_warned_no_bytecode = False


def _warn_no_bytecode() -> None:
    global _warned_no_bytecode
    if not _warned_no_bytecode:
        _warned_no_bytecode = True
        print(
            f"WARNING tollgate: no python{LAMBDA_PYTHON_VERSION} to compile with ({LAMBDA_PYTHON_ENV_VAR}): "
            "the Lambda assets ship without bytecode, so each cold start compiles the code",
            file=sys.stderr,
        )


# --- what one asset is made of ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    """One asset's inputs. Functions whose recipes are equal share one asset."""

    needs: FunctionNeeds
    distributions: tuple[LockedDistribution, ...]
    file_hashes: tuple[tuple[str, str], ...]  # (path in the asset, sha256 of the content) of needs.files
    python: str | None  # the python3.12 that compiles the bytecode; None: no bytecode

    def document(self) -> dict[str, Any]:
        """What the asset's content depends on (and so its CDK asset hash; not the interpreter's path)."""
        return {
            "format": RECIPE_FORMAT,
            "python_version": LAMBDA_PYTHON_VERSION,
            "platform": LAMBDA_PIP_PLATFORM,
            "bytecode": "unchecked-hash" if self.python else None,
            "task_root": LAMBDA_TASK_ROOT,
            "requirements": [d.requirement() for d in self.distributions],
            "files": dict(self.file_hashes),
        }

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.document(), sort_keys=True).encode()).hexdigest()

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(f"{d.name}=={d.version}" for d in self.distributions)


def recipe_for(handler: str) -> Recipe:
    """The recipe of a handler (``tollgate.metering.handler.handler``) or of a handler module."""
    module = handler if find_source(handler) is not None else handler_module(handler)
    lock = load_lambda_lock()
    needs = function_needs(module, lock)
    return Recipe(
        needs=needs,
        distributions=tuple(lock.distributions[name] for name in needs.distributions),
        file_hashes=tuple((f.relative, hashlib.sha256(f.path.read_bytes()).hexdigest()) for f in needs.files),
        python=lambda_python(),
    )


# --- building -----------------------------------------------------------------------------------------------


@cache
def _work_root() -> Path:
    """This process's build directory (removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="tollgate-lambda-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def recipe_directory(recipe: Recipe) -> Path:
    """A directory holding only the recipe: the CDK asset's source, so its hash follows the recipe."""
    directory = _work_root() / "recipes" / recipe.digest[:32]
    if not directory.is_dir():
        directory.mkdir(parents=True)
        text = json.dumps(recipe.document(), indent=1, sort_keys=True) + "\n"
        (directory / RECIPE_FILE).write_text(text, encoding="utf-8")
    return directory


def _installer(target: Path, requirements_file: Path) -> list[str]:
    """The install command: pip where it exists, else uv (``make setup`` puts one in .tools/bin)."""
    if importlib.util.find_spec("pip") is not None:
        pip = [sys.executable, "-m", "pip"]
    elif (uv := _uv()) is not None:
        policy, _, arch = LAMBDA_PIP_PLATFORM.partition("_")  # manylinux2014_aarch64 -> aarch64-manylinux2014
        return [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python-platform",
            f"{arch}-{policy}",
            "--python-version",
            LAMBDA_PYTHON_VERSION,
            "--only-binary",
            ":all:",
            "--no-deps",
            "--require-hashes",
            "--target",
            str(target),
            "-r",
            str(requirements_file),
        ]
    elif (python := _interpreter_behind(shutil.which("python3"))) is not None and _has_pip(python):
        pip = [python, "-m", "pip"]
    else:
        raise BundlingError("bundling needs pip or uv to install the Lambda dependencies; run `make setup`")
    return [
        *pip,
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--platform",
        LAMBDA_PIP_PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        LAMBDA_PYTHON_VERSION,
        "--only-binary=:all:",
        "--no-deps",
        "--no-compile",
        "--require-hashes",
        "--target",
        str(target),
        "-r",
        str(requirements_file),
    ]


def _interpreter_behind(command: str | None) -> str | None:
    """The interpreter a ``python3`` command runs, not the command: a version manager's shim (pyenv) runs
    hooks after ``pip install`` (a rehash of its shims) that fail when several installs run at once or the
    shims directory is read-only, failing an install that worked."""
    if command is None:
        return None
    try:
        result = subprocess.run(  # noqa: S603 - a python interpreter found on PATH
            [command, "-c", "import sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    executable = result.stdout.strip()
    return executable if result.returncode == 0 and executable and Path(executable).is_file() else None


def _has_pip(python: str) -> bool:
    result = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)  # noqa: S603
    return result.returncode == 0


def _run(command: Sequence[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip().splitlines()[-20:]
        raise BundlingError(f"{what} failed ({' '.join(command[:3])} ...):\n" + "\n".join(output))


def _compile(python: str, paths: Sequence[Path], *, strip: Path | None = None) -> None:
    """Compile for python3.12, UNCHECKED_HASH; file names in the bytecode under /var/task.

    With ``strip``: each path is under ``strip``, which stands for /var/task. Without: each path (a
    directory) stands for /var/task itself (an installed distribution).
    """
    if not paths:
        return
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash"]
    if strip is not None:
        command += ["-s", str(strip), "-p", LAMBDA_TASK_ROOT]
    else:
        command += ["-d", LAMBDA_TASK_ROOT]
    _run([*command, *map(str, paths)], "compiling the Lambda code")


def _cache_root() -> Path:
    """Installed (and compiled) distributions kept between builds: ``$TOLLGATE_LAMBDA_CACHE`` or the user's
    cache directory. Entries are named by what they were made from and written by an atomic rename."""
    configured = os.environ.get(LAMBDA_CACHE_ENV_VAR, "").strip()
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "tollgate" / "lambda"


def _cache_entry(distribution: LockedDistribution, python: str | None) -> Path:
    made_from = json.dumps(
        [
            RECIPE_FORMAT,
            distribution.requirement(),
            LAMBDA_PIP_PLATFORM,
            LAMBDA_PYTHON_VERSION,
            LAMBDA_TASK_ROOT,
            python,
        ]
    )
    key = hashlib.sha256(made_from.encode()).hexdigest()[:16]
    return _cache_root() / f"{distribution.name}-{distribution.version}-{key}"


def _install(distribution: LockedDistribution, target: Path) -> None:
    target.mkdir(parents=True)
    requirements = target.parent / f"{target.name}.requirements.txt"
    requirements.write_text(distribution.requirement() + "\n", encoding="utf-8")
    try:
        _run(_installer(target, requirements), f"installing {distribution.name}=={distribution.version}")
    finally:
        requirements.unlink()
    # Console scripts carry the build machine's interpreter path; nothing on Lambda runs them.
    shutil.rmtree(target / "bin", ignore_errors=True)


def _distribution_dirs(distributions: Sequence[LockedDistribution], python: str | None) -> list[Path]:
    """Each distribution installed and compiled in a directory of its own, once (cached between builds)."""
    entries = [_cache_entry(d, python) for d in distributions]
    missing = [(d, e) for d, e in zip(distributions, entries, strict=True) if not e.is_dir()]
    if missing:
        _cache_root().mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=_cache_root()))
        try:
            targets = [staging / entry.name for _, entry in missing]
            with ThreadPoolExecutor(max_workers=_INSTALL_WORKERS) as pool:
                list(pool.map(_install, [d for d, _ in missing], targets))
            if python:
                _compile(python, targets)
            for target, (_, entry) in zip(targets, missing, strict=True):
                try:
                    target.rename(entry)
                except OSError:  # another build got there first: same inputs, same content
                    if not entry.is_dir():
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return entries


_ASSETS: dict[str, Path] = {}


def _built(recipe: Recipe) -> Path:
    """The recipe's asset, built once per process."""
    if recipe.digest in _ASSETS:
        return _ASSETS[recipe.digest]
    if recipe.python is None:
        _warn_no_bytecode()
    asset = _work_root() / "assets" / recipe.digest[:32]
    if asset.exists():
        shutil.rmtree(asset)
    asset.mkdir(parents=True)
    for directory in _distribution_dirs(recipe.distributions, recipe.python):
        shutil.copytree(directory, asset, dirs_exist_ok=True, copy_function=_link_or_copy)
    first_party: set[Path] = set()
    for source in recipe.needs.files:
        destination = asset / source.relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source.path, destination)
        first_party.add(asset / source.relative.split("/")[0])
    if recipe.python:
        _compile(recipe.python, sorted(first_party), strip=asset)
    _ASSETS[recipe.digest] = asset
    return asset


def _link_or_copy(source: str, destination: str) -> None:
    """A hard link where the file system allows it (the files are only read and zipped), else a copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def build_asset(recipe: Recipe, output_dir: Path, *, link: bool = False) -> Path:
    """Put the recipe's asset into ``output_dir`` (created if needed; existing files are overwritten).

    ``link``: hard-link the files instead of copying them (CDK's bundling directory, which is only zipped).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    copy = _link_or_copy if link else shutil.copy2
    shutil.copytree(_built(recipe), output_dir, dirs_exist_ok=True, copy_function=copy)
    return output_dir


def unzipped_size(directory: Path) -> int:
    """The asset's unzipped size in bytes (Lambda's limit: 250 MB for the function and its layers)."""
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


# --- CDK ----------------------------------------------------------------------------------------------------

_BUNDLERS: dict[str, Any] = {}


def make_local_bundler(recipe: Recipe) -> Any:
    """A CDK ``ILocalBundling`` that builds the recipe's asset on the host (one object per recipe)."""
    if recipe.digest not in _BUNDLERS:
        import aws_cdk as cdk
        import jsii

        @jsii.implements(cdk.ILocalBundling)
        class LocalBundler:
            """CDK local bundling: builds on the host, so the Docker image is never used."""

            def try_bundle(self, output_dir: str, *_args: Any, **_options: Any) -> bool:
                build_asset(recipe, Path(output_dir), link=True)
                return True

        _BUNDLERS[recipe.digest] = LocalBundler()
    return _BUNDLERS[recipe.digest]


# --- command line -------------------------------------------------------------------------------------------


def _resolve(function: str) -> str:
    return DEPLOYED_HANDLERS.get(function, function)


def _print_sizes(rows: Sequence[tuple[str, str, int, int, int]]) -> None:
    print(f"{'function':<18} {'handler module':<36} {'dists':>5} {'files':>6} {'unzipped':>10}")
    for name, module, dists, files, size in rows:
        print(f"{name:<18} {module:<36} {dists:>5} {files:>6} {size / 1e6:>7.2f} MB")


def _sizes(functions: Sequence[str]) -> int:
    rows = []
    for function in functions:
        recipe = recipe_for(_resolve(function))
        asset = _built(recipe)
        files = sum(1 for p in asset.rglob("*") if p.is_file())
        rows.append(
            (function, recipe.needs.handler_module, len(recipe.distributions), files, unzipped_size(asset))
        )
    _print_sizes(rows)
    return 0


def _show(function: str) -> int:
    recipe = recipe_for(_resolve(function))
    print("modules:", *recipe.needs.modules, sep="\n  ")
    print("third-party imports:", *recipe.needs.imports, sep="\n  ")
    print("distributions:", *recipe.requirements, sep="\n  ")
    bytecode = f"python{LAMBDA_PYTHON_VERSION} at {recipe.python}" if recipe.python else "none"
    print(f"bytecode: {bytecode}")
    return 0


def _build(function: str, output: Path | None) -> int:
    recipe = recipe_for(_resolve(function))
    output = (output or Path("build") / "lambda" / function.replace(".", "-")).resolve()
    if output.exists():
        shutil.rmtree(output)
    build_asset(recipe, output)
    print(
        f"{recipe.needs.handler_module}: {len(recipe.distributions)} distributions, "
        f"{len(recipe.needs.modules)} modules -> {output} ({unzipped_size(output) / 1e6:.2f} MB unzipped)"
    )
    return 0


def _lock(uv_lock: Path, output: Path | None, check: bool) -> int:
    text = render_lambda_lock(generate_lambda_lock(uv_lock))
    if check:
        if text != lambda_lock_text():
            print(
                f"{LAMBDA_LOCK_RESOURCE} is out of date with {uv_lock}: run `make lambda-lock`",
                file=sys.stderr,
            )
            return 1
        print(f"{LAMBDA_LOCK_RESOURCE} matches {uv_lock}")
        return 0
    target = output or Path(__file__).with_name(LAMBDA_LOCK_RESOURCE)
    target.write_text(text, encoding="utf-8")
    print(f"wrote {target} ({len(json.loads(text)['distributions'])} distributions)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tollgate.cdk.bundling", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command")
    sizes = commands.add_parser(
        "sizes", help="build every deployed function's asset and print its size (default)"
    )
    sizes.add_argument("functions", nargs="*", default=list(DEPLOYED_HANDLERS), help="names or handlers")
    build = commands.add_parser("build", help="build one function's asset into a directory")
    build.add_argument("function", help=f"one of {', '.join(DEPLOYED_HANDLERS)}, or a handler")
    build.add_argument("output", nargs="?", type=Path, help="default: build/lambda/<function>")
    show = commands.add_parser("show", help="what one function's asset holds (nothing is built)")
    show.add_argument("function")
    lock = commands.add_parser("lock", help=f"regenerate {LAMBDA_LOCK_RESOURCE} from uv.lock (a checkout)")
    lock.add_argument("--uv-lock", type=Path, default=UV_LOCK)
    lock.add_argument("--output", type=Path, help=f"default: the package's {LAMBDA_LOCK_RESOURCE}")
    lock.add_argument("--check", action="store_true", help="fail if the shipped file is out of date")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            return _build(args.function, args.output)
        if args.command == "show":
            return _show(args.function)
        if args.command == "lock":
            return _lock(args.uv_lock, args.output, args.check)
        return _sizes(args.functions if args.command == "sizes" else list(DEPLOYED_HANDLERS))
    except BundlingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
