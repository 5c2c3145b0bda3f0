"""The authorizer's settings: every environment variable it reads, with its default, read once.

Standard library only (the authorizer must not import pydantic): a frozen dataclass with ``from_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from tollgate.settings import TABLE_NAME, flag, required, seconds

KEY_CACHE_TTL_SECONDS = "KEY_CACHE_TTL_SECONDS"
NEGATIVE_CACHE_TTL_SECONDS = "NEGATIVE_CACHE_TTL_SECONDS"
FAIL_OPEN = "FAIL_OPEN"

# Revoking a key or suspending a customer takes effect within the key cache's TTL (docs/decisions.md, 6).
DEFAULT_KEY_CACHE_TTL_SECONDS = 30
DEFAULT_NEGATIVE_CACHE_TTL_SECONDS = 5
DEFAULT_FAIL_OPEN = False  # fail closed: a request that cannot be counted is refused
# The key cache's bounds (constants: a Lambda environment's memory is fixed). Each is its own LRU map,
# so a flood of random unknown keys evicts only unknown keys (tollgate.metering.dynamo.TtlCache).
DEFAULT_KEY_CACHE_MAX_ENTRIES = 10_000  # found keys, about 1 KB each
DEFAULT_NEGATIVE_CACHE_MAX_ENTRIES = 10_000  # unknown keys, a few hundred bytes each


@dataclass(frozen=True, slots=True)
class MeteringSettings:
    table_name: str
    key_cache_ttl_seconds: float = DEFAULT_KEY_CACHE_TTL_SECONDS  # found keys
    negative_cache_ttl_seconds: float = DEFAULT_NEGATIVE_CACHE_TTL_SECONDS  # unknown keys
    fail_open: bool = DEFAULT_FAIL_OPEN  # serve requests unmetered while DynamoDB is down

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> MeteringSettings:
        return cls(
            table_name=required(env, TABLE_NAME),
            key_cache_ttl_seconds=seconds(env, KEY_CACHE_TTL_SECONDS, DEFAULT_KEY_CACHE_TTL_SECONDS),
            negative_cache_ttl_seconds=seconds(
                env, NEGATIVE_CACHE_TTL_SECONDS, DEFAULT_NEGATIVE_CACHE_TTL_SECONDS
            ),
            fail_open=flag(env, FAIL_OPEN, DEFAULT_FAIL_OPEN),
        )
