"""Mutation testing of the money path and the hot path (``make mutate``; not part of ``make test``).

How strong are the tests where a bug costs money or lets unmetered requests through? mutmut (pinned in the
dev group) changes the code one small edit at a time (a ``<`` becomes ``<=``, a ``continue`` a ``pass``, a
constant another, a return value ``None``...) and runs the tests that execute the changed function; a mutant
no test notices *survived*. The score is killed / (mutants - reviewed equivalent mutants), per module and in
total; the survivors are listed with their diff.

mutmut derives a mutant's module name from its file path relative to ``src/`` (or the project root), while
this repository keeps the package under ``functions/``. So the run happens in a scratch project,
``build/mutation/`` (git-ignored): ``functions/tollgate`` copied as ``src/tollgate``, the tests, the
``tollgate-local`` dev package, ``docs/`` (read by some tests) and ``infra/tollgate`` (``tollgate.cdk``: the
close's time budget test reads its constants; ``tollgate/__init__.py`` finds it beside ``src/`` as in a
checkout) copied beside it, and a ``pyproject.toml`` of its own for pytest and mutmut. Nothing in the
repository is changed.

Each run:

1. stages ``build/mutation/`` afresh (``--resume`` keeps the killed mutants of unchanged functions and tests
   the rest: new or changed functions, mutants not checked yet, and survivors; it and ``--rerun-survivors``
   collect the test-to-function map again, so a test added since the last run reaches the mutants of the
   functions it covers);
2. runs the selected tests once on the unmutated code: a test that already fails cannot kill a mutant
   (mutmut would refuse to start), so it is left out, and named in the report;
3. ``mutmut run`` with ``--max-children`` workers (default 2): each mutant runs only the tests that executed
   its function in mutmut's first, instrumented run, fastest first, stopping at the first failure;
   hypothesis is derandomized (a fixed seed) and ``PYTHONHASHSEED`` is 0, so a run is repeatable;
4. reads mutmut's results (``mutants/src/**/*.py.meta``) and prints ``mutation score: N%`` per module and in
   total, the equivalent mutants it subtracted, and every survivor with its diff;
5. records the verdicts in ``tests/mutation/results.json``, committed with the code and tests they were
   measured on: a fresh clone's ``--report`` prints them, and its ``--resume`` tests only the mutants of the
   functions changed since (mutmut keeps a verdict while its function's source is unchanged).

Equivalent mutants (changes no test can see because behaviour does not change) are listed, each with the
changed line and a one-line reason, in ``tests/mutation/equivalent.toml``; an entry whose mutant no longer
makes that change (the code moved on) is reported as stale and not subtracted.

    .venv/bin/python tools/mutate.py                   # the whole run (make mutate)
    .venv/bin/python tools/mutate.py --report          # the report of the last run (or the recorded one)
    .venv/bin/python tools/mutate.py --record          # record an interrupted run's verdicts so far
    .venv/bin/python tools/mutate.py --resume          # test only what is not killed yet
    .venv/bin/python tools/mutate.py --rerun-survivors # retest the last run's survivors (after new tests)
    .venv/bin/python tools/mutate.py --mutants 'tollgate.billing.close.steps.*'    # only these, again
    .venv/bin/python tools/mutate.py --skip-module tollgate.metering.dynamo  # not mutated while it changes

``--skip-module`` takes a target out of a run (mutmut neither mutates nor tests it) and out of the scores,
e.g. while the module is being rewritten; the report names it (``--report`` reads what the last run skipped).
Every run says what it skips: a run without the option puts the module back, mutated afresh, and collects
mutmut's test-to-function map again so that the module's functions get their tests.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

MUTMUT_VERSION = "3.8.1"  # the version this runner reads the results of (mutants/**/*.meta)
ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "build" / "mutation"
EQUIVALENTS = ROOT / "tests" / "mutation" / "equivalent.toml"
RESULTS = (
    ROOT / "tests" / "mutation" / "results.json"
)  # the last run's verdicts, committed (see record_results)

# The money path and the hot path, as paths inside the stage.
TARGETS = [
    "src/tollgate/domain/rating.py",
    "src/tollgate/domain/money.py",
    "src/tollgate/domain/plan_history.py",
    "src/tollgate/domain/progressive.py",
    "src/tollgate/metering/decide.py",
    "src/tollgate/metering/events.py",
    "src/tollgate/metering/grants.py",
    "src/tollgate/metering/dynamo.py",
    "src/tollgate/billing/close/steps.py",
    "src/tollgate/billing/close/service.py",
    "src/tollgate/billing/invoicing.py",
    "src/tollgate/domain/refunds.py",  # bill only what succeeded: which requests, what is taken back
    "src/tollgate/dal/refunds.py",
    "src/tollgate/refunds/service.py",
]
# The tests that may cover them; mutmut maps each function to the tests that actually execute it.
TEST_SELECTION = ["tests/unit", "tests/property", "tests/integration"]
PYTEST_ARGS = [
    "-p",
    "no:cacheprovider",
    # the demo is a story over everything (minutes per mutant); the DynamoDB Local launcher is a dev tool
    "--ignore=tests/integration/test_demo.py",
    "--ignore=tests/integration/test_dynamodb_local.py",
    # the close's rate-limit simulation (it imports benchmarks/, not staged): it runs no target module
    "--ignore=tests/unit/test_close_throughput.py",
    # the Stripe double in a subprocess with a 5 s timeout: flaky under load, and it runs no target module
    "--deselect=tests/unit/test_stripe_double.py::test_main_serves_until_interrupted",
    "-m",
    "not e2e and not infra",
]
STAGE_PYTEST_INI = {
    "testpaths": ["tests"],
    "pythonpath": ["src", "tools/tollgate-local/src", "."],
    "filterwarnings": ["error::pytest.PytestUnraisableExceptionWarning"],
}
# The stage's root conftest.py: a fixed hypothesis seed, the baseline's failures left out, DynamoDB Local
# started once per run instead of once per mutant (see the file).
STAGE_CONFTEST = Path(__file__).resolve().parent / "mutation" / "stage_conftest.py"
LEFT_OUT = "left-out.txt"
SKIPPED = "skipped-modules.txt"  # the targets the last run left out (--skip-module), one module a line

KILLED = {"killed", "timeout", "caught by type check", "segfault"}
NOT_CHECKED = "not checked"


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(json.dumps(value) for value in values) + "]"


def module_of(target: str) -> str:
    return target.removeprefix("src/").removesuffix(".py").replace("/", ".")


def target_of(module: str) -> str:
    return "src/" + module.replace(".", "/") + ".py"


def skipped_modules() -> list[str]:
    """The targets the last staged run left out (``--skip-module``)."""
    record = STAGE / SKIPPED
    return record.read_text().split() if record.exists() else []


def stage_pyproject(skip: list[str]) -> str:
    targets = [target for target in TARGETS if module_of(target) not in skip]
    ini = "\n".join(f"{key} = {toml_list(value)}" for key, value in STAGE_PYTEST_INI.items())
    return f"""# Written by tools/mutate.py for a mutation run; edit tools/mutate.py instead.
[tool.pytest.ini_options]
{ini}

[tool.mutmut]
source_paths = ["src/"]
only_mutate = {toml_list(targets)}
also_copy = ["tools/", "docs/", "infra/", "conftest.py", "README.md", "{LEFT_OUT}"]
pytest_add_cli_args_test_selection = {toml_list(TEST_SELECTION)}
pytest_add_cli_args = {toml_list(PYTEST_ARGS)}
use_git_change_detection = false
use_setproctitle = false
"""


def _copy_tree(source: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))


def forget_modules(modules: set[str], *, remap: bool) -> None:
    """Drop mutmut's files of these targets, so that a module put back into the run is mutated afresh (a
    skipped target is copied unmutated over its mutants, with a newer mtime than its source: mutmut would
    take it as already mutated). With ``remap``, also the test-to-function map: mutmut keeps it across runs,
    and a module that was out of the last run has no tests in it (every mutant would be "no tests")."""
    for module in modules:
        for suffix in ("", ".meta", ".spans"):
            (STAGE / "mutants" / (target_of(module) + suffix)).unlink(missing_ok=True)
    if remap:
        (STAGE / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)


def stage(*, keep_results: bool, without: list[str], skip: list[str]) -> None:
    """Copy the code and the tests into the stage (copy2 keeps mtimes: mutmut re-mutates changed files)."""
    if not keep_results and STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True, exist_ok=True)
    before = set(skipped_modules())
    forget_modules(set(skip) | before, remap=bool(before - set(skip)))
    (STAGE / SKIPPED).write_text("".join(f"{module}\n" for module in skip))
    _copy_tree(ROOT / "functions" / "tollgate", STAGE / "src" / "tollgate")
    _copy_tree(ROOT / "tests", STAGE / "tests")
    for path in without:  # e.g. the score before some new tests: --without tests/unit/test_money.py
        (STAGE / path).unlink()
    _copy_tree(ROOT / "tools" / "tollgate-local" / "src", STAGE / "tools" / "tollgate-local" / "src")
    _copy_tree(ROOT / "docs", STAGE / "docs")
    shutil.copy2(ROOT / "README.md", STAGE / "README.md")  # a test runs the README's verification snippet
    _copy_tree(ROOT / "infra" / "tollgate", STAGE / "infra" / "tollgate")
    shutil.copy(STAGE_CONFTEST, STAGE / "conftest.py")
    (STAGE / "pyproject.toml").write_text(stage_pyproject(skip))
    if keep_results:
        seed_from_record(skip)
    # mutmut copies these into mutants/ but never deletes there
    for copied in ("tests", "tools", "docs", "infra"):
        if (STAGE / "mutants" / copied).exists():
            shutil.rmtree(STAGE / "mutants" / copied)


def _mutant_order(name: str) -> tuple[str, int]:
    function, _, number = name.rpartition("__mutmut_")
    return function, int(number)


def record_results() -> None:
    """Write the stage's verdicts to ``tests/mutation/results.json``, to commit with the code and tests they
    were measured on (as Stryker's incremental report is): a fresh clone's ``--report`` shows them, and its
    ``--resume`` tests only the mutants of functions changed since (mutmut keeps a verdict while its
    function's source hash is unchanged). A full run (no ``--resume``) tests everything again."""
    modules: dict[str, dict[str, object]] = {}
    for target in TARGETS:
        meta = STAGE / "mutants" / (target + ".meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        module = module_of(target)
        verdicts = {
            name.removeprefix(module + "."): code
            for name, code in sorted(
                data["exit_code_by_key"].items(), key=lambda item: _mutant_order(item[0])
            )
            if code is not None
        }
        modules[module] = {
            "functions": dict(sorted(data["hash_by_function_name"].items())),
            "verdicts": verdicts,
        }
    left_out = (STAGE / LEFT_OUT).read_text().splitlines() if (STAGE / LEFT_OUT).exists() else []
    record = {
        "mutmut": MUTMUT_VERSION,
        "left_out": left_out,
        "skipped": skipped_modules(),
        "modules": modules,
    }
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(f"verdicts recorded in {RESULTS.relative_to(ROOT)}")


def seed_from_record(skip: list[str]) -> list[str]:
    """Give each target without results in the stage (a fresh clone) the recorded verdicts; mutmut re-mutates
    the file and keeps each verdict whose function is unchanged. Returns the modules seeded."""
    if not RESULTS.exists():
        return []
    record = json.loads(RESULTS.read_text())
    if record.get("mutmut") != MUTMUT_VERSION:
        print(f"{RESULTS.relative_to(ROOT)} is from mutmut {record.get('mutmut')}: not used")
        return []
    seeded = []
    for target in TARGETS:
        module = module_of(target)
        entry = record["modules"].get(module)
        meta = STAGE / "mutants" / (target + ".meta")
        if entry is None or module in skip or meta.exists():
            continue
        meta.parent.mkdir(parents=True, exist_ok=True)
        (STAGE / "mutants" / target).unlink(missing_ok=True)  # mutmut mutates it again, merging by hash
        verdicts = {f"{module}.{name}": code for name, code in entry["verdicts"].items()}
        data = {
            "exit_code_by_key": verdicts,
            "hash_by_function_name": entry["functions"],
            "type_check_error_by_key": {},
            "durations_by_key": {},
            "estimated_durations_by_key": {},
        }
        meta.write_text(json.dumps(data))
        seeded.append(module)
    if seeded and not (STAGE / LEFT_OUT).exists():
        (STAGE / LEFT_OUT).write_text("".join(f"{name}\n" for name in record.get("left_out", [])))
    return seeded


def equivalent_entries() -> list[dict[str, str]]:
    """The reviewed equivalent mutants of ``tests/mutation/equivalent.toml`` (none without the file)."""
    return tomllib.loads(EQUIVALENTS.read_text()).get("equivalent", []) if EQUIVALENTS.exists() else []


def retest_survivors() -> int:
    """Mark the stage's survivors (not the reviewed equivalents) as not checked, so that ``--resume`` tests
    them again with today's tests; returns how many. A killed mutant stays killed while its function is
    unchanged: tests are added, not taken away."""
    from mutmut.stats import status_by_exit_code

    entries = equivalent_entries()
    equivalent = {entry.get("mutant") for entry in entries}
    again = 0
    for target in TARGETS:
        meta = STAGE / "mutants" / (target + ".meta")
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        codes = data["exit_code_by_key"]
        for name, code in codes.items():
            if code is not None and status_by_exit_code[code] not in KILLED and name not in equivalent:
                codes[name] = None
                again += 1
        meta.write_text(json.dumps(data))
    return again


def mutate_stage() -> None:
    """Write the stage's mutated files (what the report's diffs read) without running anything, merging the
    seeded verdicts as ``mutmut run`` would."""
    previous = os.getcwd()
    os.chdir(STAGE)  # mutmut reads its configuration from the working directory, on import too
    try:
        from mutmut.__main__ import create_mutants_for_file
        from mutmut.configuration import reset_config

        reset_config()
        for target in TARGETS:
            output = Path("mutants") / target
            if module_of(target) not in skipped_modules() and not output.exists():
                output.parent.mkdir(parents=True, exist_ok=True)
                create_mutants_for_file(Path(target), output)
    finally:
        os.chdir(previous)


def environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    env.pop("MUTANT_UNDER_TEST", None)
    return env


def leave_out_baseline_failures() -> list[str]:
    """Run the selected tests on the unmutated code and leave out what fails: a failing test cannot tell a
    mutant from the original (and mutmut refuses to start), a test file that cannot be imported stops every
    run. Returns what is left out (``deselect NODEID`` or ``ignore PATH``)."""
    record = STAGE / "baseline.txt"
    record.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "-q", "--no-header", "--continue-on-collection-errors"]
    command += TEST_SELECTION + PYTEST_ARGS
    print("baseline: the selected tests on the unmutated code ...", flush=True)
    started = time.monotonic()
    env = dict(environment(), MUTATE_BASELINE_REPORT=str(record))
    subprocess.run(command, cwd=STAGE, env=env, stdout=subprocess.DEVNULL, check=False)  # noqa: S603
    if not record.exists():
        raise SystemExit(f"the baseline test run in {STAGE} did not finish: run it by hand to see why")
    left_out = record.read_text().splitlines()
    (STAGE / LEFT_OUT).write_text(record.read_text())
    print(
        f"baseline: {len(left_out)} failing test(s) left out, {time.monotonic() - started:.0f} s", flush=True
    )
    return left_out


def mutmut(*args: str, workers: int) -> int:
    executable = Path(sys.executable).with_name("mutmut")
    command = [str(executable), *args]
    env = dict(environment(), MUTATE_DYNAMODB_SERVERS=str(workers))  # one per concurrent mutant
    return subprocess.run(command, cwd=STAGE, env=env, check=False).returncode  # noqa: S603


# -- the report ------------------------------------------------------------------------------------------
@dataclass
class ModuleScore:
    module: str
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> mutmut's status
    equivalent: set[str] = field(default_factory=set)

    @property
    def counted(self) -> dict[str, str]:
        """Every mutant tested and not reviewed as equivalent (``not checked``: the run was interrupted)."""
        return {
            name: status
            for name, status in self.statuses.items()
            if name not in self.equivalent and status != NOT_CHECKED
        }

    @property
    def unchecked(self) -> int:
        return sum(status == NOT_CHECKED for status in self.statuses.values())

    @property
    def killed(self) -> int:
        return sum(status in KILLED for status in self.counted.values())

    @property
    def survivors(self) -> list[str]:
        """Survived, and also "no tests" (no test runs the function) and "suspicious"."""
        return sorted(name for name, status in self.counted.items() if status not in KILLED)

    @property
    def score(self) -> float | None:
        """Killed / checked non-equivalent mutants, in percent; None while none has been checked."""
        total = len(self.counted)
        return 100.0 * self.killed / total if total else None


def _percent(score: float | None) -> str:
    return "n/a (nothing checked yet)" if score is None else f"{score:.1f}%"


def read_results() -> dict[str, ModuleScore]:
    """mutmut's verdicts, from the meta files it keeps beside each mutated file."""
    from mutmut.stats import status_by_exit_code

    scores: dict[str, ModuleScore] = {}
    skipped = skipped_modules()
    for target in TARGETS:
        module = module_of(target)
        if module in skipped:
            continue
        meta = STAGE / "mutants" / (target + ".meta")
        score = scores.setdefault(module, ModuleScore(module))
        if not meta.exists():
            continue
        for name, exit_code in json.loads(meta.read_text())["exit_code_by_key"].items():
            score.statuses[name] = status_by_exit_code[exit_code]
    return scores


def diff_of(name: str) -> str:
    from mutmut.configuration import reset_config
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    previous = os.getcwd()
    os.chdir(STAGE)
    try:
        reset_config()
        return get_diff_for_mutant(name)
    except Exception as error:  # a mutant whose function is gone: say so rather than stop the report
        return f"(no diff: {error})"
    finally:
        os.chdir(previous)


def added_lines(diff: str) -> list[str]:
    lines = diff.splitlines()
    return [line[1:].strip() for line in lines if line.startswith("+") and not line.startswith("+++")]


def apply_equivalents(scores: dict[str, ModuleScore]) -> list[str]:
    """Subtract the reviewed equivalent mutants whose change is still the one reviewed; return problems."""
    problems = []
    entries = equivalent_entries()
    for entry in entries:
        name, change, reason = entry.get("mutant", ""), entry.get("change", ""), entry.get("reason", "")
        module = name.split(".x", 1)[0]
        if module in skipped_modules():  # not in this run: neither checked nor subtracted
            continue
        score = scores.get(module)
        if score is None or name not in score.statuses:
            problems.append(f"stale: {name} is not a mutant any more")
            continue
        if not reason.strip():
            problems.append(f"no reason given for {name}: not subtracted")
            continue
        if change.strip() not in added_lines(diff_of(name)):
            problems.append(f"stale: {name} no longer changes a line to `{change}`: not subtracted")
            continue
        if score.statuses[name] in KILLED:
            problems.append(f"{name} is listed as equivalent but a test kills it: not subtracted")
            continue
        score.equivalent.add(name)
    return problems


def report(*, fail_under: float, show_diffs: bool) -> int:
    scores = read_results()
    if not any(score.statuses for score in scores.values()):
        print(f"no results under {STAGE / 'mutants'}: run `make mutate` first")
        return 2
    problems = apply_equivalents(scores)
    left_out = STAGE / LEFT_OUT
    width = max(len(module) for module in scores)
    print()
    print(f"{'module':<{width}}  mutants  equivalent  killed  survived")
    for score in scores.values():
        counts = f"{len(score.statuses):7}  {len(score.equivalent):10}  {score.killed:6}"
        counts += f"  {len(score.survivors):8}"
        print(f"{score.module:<{width}}  {counts}  mutation score: {_percent(score.score)}")
    mutants = sum(len(score.statuses) for score in scores.values())
    equivalent = sum(len(score.equivalent) for score in scores.values())
    killed = sum(score.killed for score in scores.values())
    survivors = [name for score in scores.values() for name in score.survivors]
    tested = sum(len(score.counted) for score in scores.values())
    total = 100.0 * killed / tested if tested else None
    print(
        f"{'total':<{width}}  {mutants:7}  {equivalent:10}  {killed:6}  {len(survivors):8}  "
        f"mutation score: {_percent(total)}"
    )
    if survivors:
        print(f"\nsurvivors ({len(survivors)}):")
        for score in scores.values():
            for name in score.survivors:
                print(f"  {name}: {score.statuses[name]}")
                if show_diffs:
                    for line in diff_of(name).splitlines()[2:]:
                        if line.startswith(("+", "-")):
                            print(f"      {line}")
    for problem in problems:
        print(f"equivalents: {problem}")
    unchecked = sum(score.unchecked for score in scores.values())
    if unchecked:
        print(f"\nthe run is incomplete: {unchecked} mutants not checked yet (left out of the scores)")
    if left_out.exists() and left_out.read_text().strip():
        names = left_out.read_text().splitlines()
        print(f"\n{len(names)} test(s) failed on the unmutated code and were left out of the run:")
        for name in names:
            print(f"  {name}")
    skipped = skipped_modules()
    if skipped:
        print(f"\nleft out of this run (--skip-module), not in the scores: {', '.join(skipped)}")
    if total is None or total < fail_under:
        print(f"\nmutation score {_percent(total)} is below {fail_under}%")
        return 1
    return 0


def survivors_of_last_run() -> list[str]:
    return [name for score in read_results().values() for name in score.survivors]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant workers (default 2)")
    parser.add_argument("--fail-under", type=float, default=0.0, help="exit 1 below this total score (%%)")
    parser.add_argument(
        "--report", action="store_true", help="only print the report of the last run (else the recorded one)"
    )
    parser.add_argument(
        "--record", action="store_true", help="record the stage's verdicts (e.g. of an interrupted run)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="test what is not killed yet: new, changed, unchecked, survivors",
    )
    parser.add_argument("--rerun-survivors", action="store_true", help="retest the last run's survivors")
    parser.add_argument("--no-diffs", action="store_true", help="list survivors without their diffs")
    parser.add_argument("--mutants", nargs="+", default=[], help="(re)test only these mutants (globs)")
    parser.add_argument("--without", action="append", default=[], help="a test file left out of the run")
    parser.add_argument(
        "--skip-module",
        action="append",
        default=[],
        choices=[module_of(target) for target in TARGETS],
        help="a target module left out of the run and the scores (kept by --resume and --rerun-survivors)",
    )
    args = parser.parse_args()

    started = time.monotonic()
    if args.record:
        record_results()
    elif args.report and not any((STAGE / "mutants" / (target + ".meta")).exists() for target in TARGETS):
        stage(keep_results=True, without=[], skip=[])  # a fresh clone: the recorded verdicts
        mutate_stage()
    if not (args.report or args.record):
        try:
            installed = importlib.metadata.version("mutmut")
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != MUTMUT_VERSION:
            print(
                f"mutmut {MUTMUT_VERSION} is needed (found {installed}): it is in the dev group, `make setup`"
            )
            return 2
        names = survivors_of_last_run() if args.rerun_survivors else list(args.mutants)
        if args.rerun_survivors and not names:
            print("no survivors from a previous run to retest")
            return report(fail_under=args.fail_under, show_diffs=not args.no_diffs)
        keep = args.resume or bool(names) or args.rerun_survivors
        skip = sorted(set(args.skip_module))
        stage(keep_results=keep, without=args.without, skip=skip)
        if keep:  # the tests may have changed since the map was made: a new test must reach old mutants
            (STAGE / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        if args.resume and not names:
            print(f"resume: {retest_survivors()} survivors of the last run are tested again")
        leave_out_baseline_failures()
        code = mutmut("run", "--max-children", str(args.max_children), *names, workers=args.max_children)
        record_results()
        if code != 0:
            print(f"mutmut run exited with {code}")
            return code
        print(f"\nmutation run: {time.monotonic() - started:.0f} s")
    return report(fail_under=args.fail_under, show_diffs=not args.no_diffs)


if __name__ == "__main__":
    sys.exit(main())
