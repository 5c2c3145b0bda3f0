"""What one Lambda function needs: the modules its handler imports, found by reading the source (``ast``).

The walk starts at the handler module and follows every import statement of every first-party module it
reaches (``tollgate`` and the handler's own top-level package), including each package's ``__init__.py`` on
the way and imports inside functions (lazy imports run on Lambda too). Imports under ``if TYPE_CHECKING:`` are
skipped. Imports made with ``importlib.import_module``/``__import__`` are not seen: import statically.

Third-party top-level names map to locked distributions through the import names in ``lambda_lock.json``;
standard-library names and what the Lambda runtime provides (boto3, botocore, s3transfer) are skipped. An
import that maps to nothing fails synth with the chain of modules that led to it, as does any import of
``tollgate.cli`` or ``tollgate.cdk`` (``ASSET_EXCLUDES``). An import guarded by ``try: ... except
ImportError:`` may be missing.

The sources are located with ``importlib.util.find_spec`` on the top-level package (the installed package, or
a checkout's editable install), never by a path into a repository. Nothing is imported.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tollgate.cdk.constants import ASSET_EXCLUDES, CLI_ONLY_DISTRIBUTIONS, LAMBDA_LOCK_RESOURCE
from tollgate.cdk.lambda_lock import LambdaLock, load_lambda_lock

FIRST_PARTY = "tollgate"
# Standard-library modules that python3.12 no longer has (the walk runs on whatever python runs synth).
REMOVED_IN_LAMBDA_PYTHON = frozenset({"asynchat", "asyncore", "distutils", "imp", "smtpd"})
_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


class BundlingError(Exception):
    """A function's code cannot be packaged (an unknown import, an excluded package, a missing module)."""


@dataclass(frozen=True)
class SourceFile:
    module: str  # dotted name ("tollgate.metering" for tollgate/metering/__init__.py)
    path: Path  # where the source is on this machine
    relative: str  # where it goes in the asset, POSIX ("tollgate/metering/__init__.py")


@dataclass(frozen=True)
class Import:
    """One import statement's target, as seen from ``importer``."""

    module: str  # absolute dotted name, as written (``from a.b import c`` gives "a.b")
    names: tuple[str, ...]  # the names of a ``from`` import ("*" included), empty for ``import a.b``
    optional: bool  # inside ``try:`` with an ``except ImportError`` (or broader)


@dataclass(frozen=True)
class FunctionNeeds:
    """Everything one handler module needs on Lambda besides the runtime."""

    handler_module: str
    files: tuple[SourceFile, ...]  # first-party modules and the data files of their packages, by path
    imports: tuple[str, ...]  # third-party top-level import names, sorted
    distributions: tuple[str, ...]  # the locked distribution closure, sorted

    @property
    def modules(self) -> tuple[str, ...]:
        return tuple(sorted({f.module for f in self.files if f.relative.endswith(".py")}))


# --- reading one module -------------------------------------------------------------------------------------


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(k, ast.Name) and k.id in _IMPORT_ERRORS for k in kinds)


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    parts = module.split(".") if is_package else module.split(".")[:-1]
    if level - 1 > len(parts) - 1:
        raise BundlingError(f"{module}: relative import beyond the top-level package")
    base = parts[: len(parts) - (level - 1)]
    return ".".join([*base, target] if target else base)


def module_imports(
    source: str, module: str, *, is_package: bool, filename: str = "<unknown>"
) -> list[Import]:
    """The import statements of one module's source, resolved to absolute names."""
    found: list[Import] = []

    def visit(nodes: Sequence[ast.AST], optional: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse, optional)
            elif isinstance(node, ast.Try | ast.TryStar):
                guarded = optional or any(_catches_import_error(h) for h in node.handlers)
                visit(node.body, guarded)
                visit([*node.handlers, *node.orelse, *node.finalbody], optional)
            elif isinstance(node, ast.Import):
                found.extend(Import(alias.name, (), optional) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                names = tuple(alias.name for alias in node.names)
                if node.level:
                    target = _resolve_relative(module, is_package, node.level, node.module)
                else:
                    target = node.module or ""
                found.append(Import(target, names, optional))
            else:
                visit(list(ast.iter_child_nodes(node)), optional)

    visit(ast.parse(source, filename=filename).body, False)
    return found


# --- locating first-party sources ---------------------------------------------------------------------------


@cache
def _package_roots(top_level: str) -> tuple[Path, ...]:
    """The directories a top-level package's modules live in (several for ``tollgate`` in a checkout)."""
    spec = importlib.util.find_spec(top_level)
    if spec is None:
        raise BundlingError(f"cannot find the package {top_level!r} (is it installed?)")
    if spec.submodule_search_locations is not None:
        return tuple(Path(location) for location in spec.submodule_search_locations)
    if spec.origin is None:
        raise BundlingError(f"{top_level!r} has no source file")
    return (Path(spec.origin),)  # a single-file top-level module


def _excluded(module: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ASSET_EXCLUDES)


def find_source(module: str) -> SourceFile | None:
    """The source file of a first-party module or package, or None when there is none."""
    top, *rest = module.split(".")
    for root in _package_roots(top):
        if root.is_file():  # a single-file top-level module
            return SourceFile(module, root, root.name) if not rest else None
        base = root.joinpath(*rest)
        relative = "/".join([top, *rest])
        if (base / "__init__.py").is_file():
            return SourceFile(module, base / "__init__.py", relative + "/__init__.py")
        if rest and base.with_suffix(".py").is_file():
            return SourceFile(module, base.with_suffix(".py"), relative + ".py")
    return None


def _package_data(package: SourceFile) -> Iterator[SourceFile]:
    """Files of a package directory that are not Python (resources read with importlib.resources)."""
    directory = package.path.parent
    relative_dir = package.relative.rsplit("/", 1)[0]

    def walk(path: Path, relative: str, top: bool) -> Iterator[SourceFile]:
        for child in sorted(path.iterdir()):
            if child.name == "__pycache__" or child.name.startswith("."):
                continue
            if child.is_dir():
                if not (child / "__init__.py").exists():  # a data directory, not a subpackage
                    yield from walk(child, f"{relative}/{child.name}", False)
            elif child.suffix != ".pyc" and not (top and child.suffix in {".py", ".pyi"}):
                yield SourceFile(package.module, child, f"{relative}/{child.name}")

    yield from walk(directory, relative_dir, True)


# --- the closure --------------------------------------------------------------------------------------------


def _chain(parents: dict[str, str | None], module: str) -> str:
    chain = [module]
    while (parent := parents.get(chain[-1])) is not None:
        chain.append(parent)
    return " -> ".join(reversed(chain))


def function_needs(handler_module: str, lock: LambdaLock | None = None) -> FunctionNeeds:
    """The modules, data files and locked distributions the handler module needs (see the module doc)."""
    return _function_needs(handler_module, lock or load_lambda_lock())


@cache
def _function_needs(handler_module: str, lock: LambdaLock) -> FunctionNeeds:
    first_party = {FIRST_PARTY, handler_module.split(".")[0]}
    stdlib = (frozenset(sys.stdlib_module_names) - REMOVED_IN_LAMBDA_PYTHON) | {"__future__"}
    runtime = lock.runtime_imports
    files: dict[str, SourceFile] = {}
    parents: dict[str, str | None] = {handler_module: None}
    third_party: set[str] = set()
    distributions: set[str] = set()
    pending: list[str] = []

    def add(module: str, importer: str | None, *, optional: bool) -> bool:
        """Queue a first-party module (and its parent packages); False when it does not exist."""
        parts = module.split(".")
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            if name in files:
                continue
            if _excluded(name):
                where = _chain(parents, importer) if importer else name
                raise BundlingError(f"{where} imports {module}: {name} never goes into a Lambda asset")
            source = find_source(name)
            if source is None:
                if optional:
                    return False
                where = f"{_chain(parents, importer)} imports {module}" if importer else module
                raise BundlingError(f"{where}, which does not exist")
            files[name] = source
            parents.setdefault(name, importer)
            pending.append(name)
        return True

    add(handler_module, None, optional=False)
    while pending:
        module = pending.pop()
        source = files[module]
        is_package = source.path.name == "__init__.py"
        text = source.path.read_text(encoding="utf-8")
        for imported in module_imports(text, module, is_package=is_package, filename=str(source.path)):
            top = imported.module.split(".")[0]
            if top in first_party:
                if not add(imported.module, module, optional=imported.optional):
                    continue
                for name in imported.names:  # ``from pkg import submodule``
                    if name != "*" and find_source(f"{imported.module}.{name}") is not None:
                        add(f"{imported.module}.{name}", module, optional=imported.optional)
            elif top in stdlib or top in runtime:
                continue
            else:
                provided = lock.distributions_for_import(top)
                if not provided:
                    if imported.optional:
                        continue
                    raise BundlingError(
                        f"{_chain(parents, module)} imports {imported.module!r}: {top!r} is not in the "
                        f"standard library, not provided by the Lambda runtime and not provided by any "
                        f"distribution in tollgate/cdk/{LAMBDA_LOCK_RESOURCE}. Add its distribution to the "
                        f"project's dependencies, then `uv lock` and `make lambda-lock`."
                    )
                cli_only = {d for d in provided if d in CLI_ONLY_DISTRIBUTIONS}
                if cli_only:
                    raise BundlingError(
                        f"{_chain(parents, module)} imports {top!r} ({', '.join(sorted(cli_only))}), which "
                        f"only the CLI may use (CLI_ONLY_DISTRIBUTIONS)"
                    )
                third_party.add(top)
                distributions.update(provided)

    for package in [f for f in files.values() if f.path.name == "__init__.py"]:
        for data in _package_data(package):
            files.setdefault(data.relative, data)
    closure = lock.closure(distributions)
    bundled_cli = sorted(set(closure) & CLI_ONLY_DISTRIBUTIONS)
    if bundled_cli:
        raise BundlingError(
            f"{handler_module} would bundle {', '.join(bundled_cli)}, which only the CLI may use"
        )
    return FunctionNeeds(
        handler_module=handler_module,
        files=tuple(sorted(files.values(), key=lambda f: f.relative)),
        imports=tuple(sorted(third_party)),
        distributions=closure,
    )


def handler_module(handler: str) -> str:
    """``tollgate.metering.handler.handler`` -> ``tollgate.metering.handler``."""
    module, dot, function = handler.rpartition(".")
    if not dot or not module or not function:
        raise BundlingError(f"handler {handler!r} is not of the form package.module.function")
    return module
