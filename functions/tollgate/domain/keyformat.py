"""API key format: generation, the cheap format check, hashing. Standard library only (hot path).

A key looks like ``tg_live_<43 url-safe base64 characters>``: 32 random bytes (256 bits) from ``secrets``.
Only the SHA-256 of the whole key is stored, with a short display prefix for humans.
"""

from __future__ import annotations

import hashlib
import re
import secrets

PREFIXES = ("tg_live_", "tg_test_")
SECRET_BYTES = 32
SECRET_CHARS = 43  # len(base64url(32 bytes)) without padding
KEY_LENGTH = len(PREFIXES[0]) + SECRET_CHARS
DISPLAY_CHARS = 12  # "tg_live_AbCd": enough to tell keys apart in a list, useless to an attacker

_KEY_RE = re.compile(r"tg_(?:live|test)_[A-Za-z0-9_-]{43}")


def generate_key(mode: str = "live") -> str:
    """A new random API key. Show it once; store only :func:`hash_key` of it."""
    if mode not in ("live", "test"):
        raise ValueError(f"key mode must be 'live' or 'test', not {mode!r}")
    return f"tg_{mode}_{secrets.token_urlsafe(SECRET_BYTES)}"


def is_well_formed(candidate: str) -> bool:
    """True when ``candidate`` has the shape of a Tollgate key. Length is checked before the pattern."""
    return len(candidate) == KEY_LENGTH and _KEY_RE.fullmatch(candidate) is not None


def hash_key(key: str) -> str:
    """The stored form of a key: lowercase hex SHA-256. Keys carry 256 bits, so no salt or KDF is needed."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()


def display_prefix(key: str) -> str:
    """What lists show of a key, e.g. ``tg_live_AbCd…``."""
    return key[:DISPLAY_CHARS]
