"""The ledger on this machine: DuckDB over a directory of ledger files, the same SQL as Athena runs.

Layout, as the deployed ledger's S3 prefix: ``{root}/period=YYYY-MM/day=YYYY-MM-DD/{file}``, each file JSON
Lines (``.jsonl``, or gzip: any name ending ``.gz``, as Firehose names its objects). The view ``ledger``
reads every record field as VARCHAR and adds the partitions ``period`` and ``day`` from the path (as VARCHAR
too, as the Glue table's projection does): the period is the partition's, exactly as in the Glue table.

``duckdb`` is imported when a ``DuckDbLedger`` is made, never at import time: it is the CLI's optional
dependency (``tollgate[local]``), and no Lambda function imports this module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tollgate.ledger.queries import (
    LEDGER_RELATION,
    PARTITIONS,
    RECORD_FIELDS,
    LedgerQueryError,
    SqlLedger,
)

FILE_PATTERNS = ("*.jsonl", "*.gz")  # local files; gzip objects as Firehose writes them (.gz, .json.gz)


def ledger_files(root: Path) -> list[Path]:
    """Every ledger file under ``root``'s partition directories, sorted."""
    found: set[Path] = set()
    for pattern in FILE_PATTERNS:
        found.update(root.glob(f"period=*/day=*/{pattern}"))
    return sorted(found)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def view_sql(files: list[Path]) -> str:
    """``CREATE VIEW ledger``: over ``files`` with hive partitions, or an empty relation of the same
    columns when there are none (DuckDB refuses to read an empty list of files)."""
    data_columns = [name for name in RECORD_FIELDS if name not in PARTITIONS]
    if not files:
        columns = ", ".join(f"CAST(NULL AS VARCHAR) AS {name}" for name in (*data_columns, *PARTITIONS))
        return f"CREATE OR REPLACE VIEW {LEDGER_RELATION} AS SELECT {columns} WHERE false"
    paths = ", ".join(_literal(str(path)) for path in files)
    columns = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in data_columns)
    hive_types = ", ".join(f"{_literal(name)}: 'VARCHAR'" for name in PARTITIONS)
    # every name and path is quoted by _literal: nothing reaches the text unquoted
    source = (
        f"read_json([{paths}], format = 'newline_delimited', columns = {{{columns}}}, "
        f"hive_partitioning = true, hive_types = {{{hive_types}}})"
    )
    return f"CREATE OR REPLACE VIEW {LEDGER_RELATION} AS SELECT * FROM {source}"  # noqa: S608


class DuckDbLedger(SqlLedger):
    """``LedgerQueries`` over a local ledger directory (an in-memory DuckDB, one per instance)."""

    def __init__(self, root_dir: str | Path) -> None:
        root = Path(root_dir)
        if not root.is_dir():
            raise LedgerQueryError(f"ledger directory {root} does not exist")
        try:
            import duckdb  # the CLI's optional dependency: tollgate[local]
        except ImportError as error:  # pragma: no cover - depends on the installation
            raise LedgerQueryError(
                "reading a local ledger needs DuckDB: install tollgate[local] (pip install 'tollgate[local]')"
            ) from error
        self.root = root
        self._duckdb: Any = duckdb
        self._connection: Any = duckdb.connect(":memory:")
        self._view_files: list[Path] | None = None

    def _refresh_view(self) -> None:
        files = ledger_files(self.root)  # files may have landed since the last question
        if files != self._view_files:
            self._connection.execute(view_sql(files))
            self._view_files = files

    def execute(self, sql: str, parameters: list[str]) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run one of ``tollgate.ledger.queries``' texts as it is; the column names and the rows."""
        self._refresh_view()
        try:
            cursor = self._connection.execute(sql, parameters)
        except self._duckdb.Error as error:
            raise LedgerQueryError(f"the ledger in {self.root} could not be read: {error}") from error
        columns = [column[0] for column in cursor.description]
        return columns, cursor.fetchall()

    def close(self) -> None:
        self._connection.close()
