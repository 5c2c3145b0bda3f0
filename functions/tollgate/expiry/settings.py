"""The credit expiry function's settings: every environment variable it reads, read once (``from_env``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.settings import TABLE_NAME, required


@dataclass(frozen=True)
class ExpirySettings:
    table_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ExpirySettings:
        return cls(table_name=required(env, TABLE_NAME))
