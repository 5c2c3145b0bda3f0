"""The usage API's settings: every environment variable it reads, read once (``from_env``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.ledger.settings import LEDGER_DATABASE, LEDGER_TABLE, LEDGER_WORKGROUP
from tollgate.settings import TABLE_NAME, optional, required

# The secret the usage page's signed links (GET /portal?token=...) are signed with: its value locally, else
# the Secrets Manager secret's ARN (the Tollgate construct makes one: stack output PortalLinkSecretArn).
PORTAL_LINK_SECRET = "PORTAL_LINK_SECRET"  # noqa: S105 - a variable's name, not a secret
PORTAL_LINK_SECRET_ARN = "PORTAL_LINK_SECRET_ARN"  # noqa: S105 - a variable's name, not a secret
# The request ledger GET /usage/export reads (tollgate.ledger): in AWS its Athena workgroup, Glue database and
# table (set by the Tollgate construct with ledger=True); locally the directory the local gateway writes.
# None set: the export answers from the counters' daily series. (The Athena names: tollgate.ledger.settings.)
LEDGER_DIR = "LEDGER_DIR"
__all__ = ["LEDGER_DATABASE", "LEDGER_DIR", "LEDGER_TABLE", "LEDGER_WORKGROUP", "UsageApiSettings"]


@dataclass(frozen=True)
class UsageApiSettings:
    table_name: str
    portal_link_secret: str | None = None
    portal_link_secret_arn: str | None = None
    ledger_workgroup: str | None = None
    ledger_database: str | None = None
    ledger_table: str | None = None
    ledger_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> UsageApiSettings:
        return cls(
            table_name=required(env, TABLE_NAME),
            portal_link_secret=optional(env, PORTAL_LINK_SECRET),
            portal_link_secret_arn=optional(env, PORTAL_LINK_SECRET_ARN),
            ledger_workgroup=optional(env, LEDGER_WORKGROUP),
            ledger_database=optional(env, LEDGER_DATABASE),
            ledger_table=optional(env, LEDGER_TABLE),
            ledger_dir=optional(env, LEDGER_DIR),
        )
