"""Where a deployed function finds the request ledger: its Athena workgroup, Glue database and table, in the
environment (set by the Tollgate construct with ``ledger=True``: ``tollgate.cdk.usage``,
``tollgate.cdk.reconciler``). None set: the function has no ledger.

Standard library only, but for :func:`athena_ledger` (boto3, imported when called).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.ledger.queries import LEDGER_RELATION, LedgerQueries
from tollgate.settings import optional

LEDGER_WORKGROUP = "LEDGER_WORKGROUP"
LEDGER_DATABASE = "LEDGER_DATABASE"
LEDGER_TABLE = "LEDGER_TABLE"


@dataclass(frozen=True)
class AthenaLedgerNames:
    workgroup: str
    database: str
    table: str = LEDGER_RELATION

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> AthenaLedgerNames | None:
        """The names, when the workgroup and the database are both set (else None: no ledger)."""
        workgroup, database = optional(env, LEDGER_WORKGROUP), optional(env, LEDGER_DATABASE)
        if not (workgroup and database):
            return None
        return cls(workgroup, database, optional(env, LEDGER_TABLE) or LEDGER_RELATION)


def athena_ledger(names: AthenaLedgerNames, *, timeout_seconds: float = 600.0) -> LedgerQueries:
    """The ledger through Athena (``tollgate.ledger.athena``), a boto3 client of the function's region."""
    import boto3

    from tollgate.ledger.athena import AthenaLedger

    return AthenaLedger(
        boto3.client("athena"),
        names.workgroup,
        names.database,
        names.table,
        timeout_seconds=timeout_seconds,
    )
