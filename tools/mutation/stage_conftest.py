"""The root ``conftest.py`` of a mutation run's scratch project (copied there by ``tools/mutate.py``).

pytest loads it before ``tests/conftest.py``. It changes nothing a test asserts; it makes a run repeatable and
affordable:

* hypothesis is derandomized (a fixed seed), with no deadline (mutmut's trampolines slow every call down) and
  no example database carried from one mutant to the next;
* the tests that failed on the unmutated code are left out (``left-out.txt``, written after the baseline run:
  ``deselect NODEID`` or ``ignore PATH``); in the baseline run (``MUTATE_BASELINE_REPORT`` set) it records
  them instead;
* DynamoDB Local: ``tests/conftest.py`` starts one per pytest session, and mutmut runs one session per mutant
  (a JVM start each, seconds under load). With ``MUTATE_DYNAMODB_SERVERS=N`` this process starts N servers
  once and lends one to each session, taking a lock file so that concurrent mutants (at most N) never share
  one (tests create and delete the same table name); a lent server is emptied first, in case the previous
  mutant was killed before its teardown.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Any

from hypothesis import settings

from tollgate_local import dynamodb_local

settings.register_profile("mutation", derandomize=True, deadline=None, database=None, print_blob=False)
settings.load_profile("mutation")

HERE = Path(__file__).parent
RECORD = os.environ.get("MUTATE_BASELINE_REPORT")
LEFT_OUT = HERE / "left-out.txt"
_left_out = set(LEFT_OUT.read_text().splitlines()) if LEFT_OUT.exists() and not RECORD else set()
_failed: set[str] = set()


def pytest_ignore_collect(collection_path: Path, config: Any) -> bool | None:
    if not _left_out or not collection_path.is_relative_to(config.rootpath):
        return None
    return True if f"ignore {collection_path.relative_to(config.rootpath).as_posix()}" in _left_out else None


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    left_out = [item for item in items if f"deselect {item.nodeid}" in _left_out]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if f"deselect {item.nodeid}" not in _left_out]


def pytest_runtest_logreport(report: Any) -> None:
    if RECORD and report.failed:
        _failed.add(f"deselect {report.nodeid}")


def pytest_collectreport(report: Any) -> None:
    if RECORD and report.failed and report.nodeid:
        _failed.add(f"ignore {report.nodeid.split('::')[0]}")


def pytest_sessionfinish(session: Any) -> None:
    if RECORD:
        Path(RECORD).write_text("".join(f"{line}\n" for line in sorted(_failed)))


# -- DynamoDB Local, started once and lent to each session ------------------------------------------------
# pytest imports this file again for every session: the pool and the real methods live on the class.
_Server: Any = dynamodb_local.DynamoDBLocal
if not hasattr(_Server, "mutation_pool"):
    _Server.mutation_pool, _Server.real_start, _Server.real_stop = [], _Server.start, _Server.stop


def _lend(self: Any) -> Any:
    for number, server in enumerate(_Server.mutation_pool):
        lock = (HERE / f".dynamodb-local-{number}.lock").open("w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        self._port, self._process, self._lent = server.port, server._process, lock
        client = server.client()  # a client of this process (a forked one would share its sockets)
        for table in client.list_tables()["TableNames"]:
            client.delete_table(TableName=table)
        return self
    raise RuntimeError(f"more concurrent sessions than DynamoDB Local servers ({len(_Server.mutation_pool)})")


def _give_back(self: Any) -> None:
    lock = self.__dict__.pop("_lent", None)
    if lock is None:
        _Server.real_stop(self)
        return
    self._process = self._admin = None
    lock.close()  # releases the lock


# Started in mutmut's own process (it collects the stats there), before it forks a process per mutant.
if os.environ.get("MUTATE_DYNAMODB_SERVERS") and not _Server.mutation_pool:
    for _ in range(int(os.environ["MUTATE_DYNAMODB_SERVERS"])):
        _Server.mutation_pool.append(_Server.real_start(_Server()))
    _Server.start, _Server.stop = _lend, _give_back
