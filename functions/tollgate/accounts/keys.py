"""Issuing, revoking and rotating API keys. The plaintext key exists only in the return value of
:func:`issue_key` / :func:`rotate_key`: show it once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from tollgate.dal.store import TollgateStore
from tollgate.domain.keyformat import display_prefix, generate_key, hash_key
from tollgate.domain.models import ApiKey
from tollgate.errors import InvalidInputError

MAX_ROTATION_OVERLAP = timedelta(days=30)


@dataclass(frozen=True)
class IssuedKey:
    key: str  # the plaintext: shown once, never stored
    record: ApiKey


def new_key_id() -> str:
    return "key_" + secrets.token_hex(6)


def issue_key(
    store: TollgateStore, customer_id: str, *, now: datetime, name: str = "default", mode: str = "live"
) -> IssuedKey:
    store.get_customer(customer_id)  # raises NotFoundError for an unknown customer
    plaintext = generate_key(mode)
    record = ApiKey(
        key_id=new_key_id(),
        key_hash=hash_key(plaintext),
        display_prefix=display_prefix(plaintext),
        customer_id=customer_id,
        name=name,
        created_at=now,
    )
    store.put_api_key(record)
    return IssuedKey(key=plaintext, record=record)


def revoke_key(store: TollgateStore, customer_id: str, key_id: str, *, now: datetime) -> ApiKey:
    key = store.find_api_key(customer_id, key_id)
    if key.revoked_at is not None:
        return key  # already revoked: keep the first revocation time
    return store.end_api_key(key, revoked_at=now)


def rotate_key(
    store: TollgateStore, customer_id: str, key_id: str, *, now: datetime, overlap: timedelta = timedelta(0)
) -> tuple[IssuedKey, ApiKey]:
    """Issue a replacement key; the old one keeps working for ``overlap`` (0 = it stops now)."""
    if overlap < timedelta(0) or overlap > MAX_ROTATION_OVERLAP:
        raise InvalidInputError(f"overlap must be between 0 and {MAX_ROTATION_OVERLAP.days} days")
    old = store.find_api_key(customer_id, key_id)
    if not old.is_usable(now):
        raise InvalidInputError(f"key {key_id!r} is already revoked or expired; issue a new key instead")
    issued = issue_key(store, customer_id, now=now, name=old.name)
    ended = (
        store.end_api_key(old, revoked_at=now)
        if overlap == timedelta(0)
        else store.end_api_key(old, valid_until=now + overlap)
    )
    return issued, ended
