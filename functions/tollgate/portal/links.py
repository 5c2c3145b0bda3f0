"""Signed links to a customer's usage page: ``GET /portal?token=...`` without an API key.

A token is ``v1.{customer id}.{expiry}.{signature}``: the expiry in seconds since the epoch (UTC), the
signature the unpadded base64url HMAC-SHA256 of ``"tollgate-portal-v1\\n{customer id}\\n{expiry}"`` with the
portal link secret. Whoever holds the link sees that customer's usage page until the expiry (15 minutes by
default, 24 hours at most), and nothing else: no key, no other route. Rotating the secret ends every link made
with the old one.

Standard library only; the secret and the token are never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

VERSION = "v1"
DEFAULT_LIFETIME = timedelta(minutes=15)
MAX_LIFETIME = timedelta(hours=24)
_TOKEN_RE = re.compile(r"v1\.([a-z0-9_-]{1,64})\.(\d{1,12})\.([A-Za-z0-9_-]{43})")
_MAX_TOKEN_LENGTH = 200


class LinkError(Exception):
    """A token that opens nothing. Its message is what the visitor sees: what to do, nothing more."""


class InvalidLinkError(LinkError):
    def __init__(self) -> None:
        super().__init__("This link is not valid. Ask your API provider for a new usage page link.")


class ExpiredLinkError(LinkError):
    def __init__(self) -> None:
        super().__init__("This link has expired. Ask your API provider for a new usage page link.")


@dataclass(frozen=True)
class PortalLink:
    customer_id: str
    expires_at: datetime


def _signature(secret: str, customer_id: str, expires: int) -> str:
    message = f"tollgate-portal-{VERSION}\n{customer_id}\n{expires}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_link(secret: str, customer_id: str, *, now: datetime, lifetime: timedelta = DEFAULT_LIFETIME) -> str:
    """A token for ``customer_id``'s page, valid from ``now`` for ``lifetime`` (more than 0, at most 24 h)."""
    if not secret:
        raise ValueError("the portal link secret is empty")
    if not timedelta(0) < lifetime <= MAX_LIFETIME:
        raise ValueError(f"a link lives more than 0 and at most {MAX_LIFETIME}, not {lifetime}")
    if _TOKEN_RE.fullmatch(f"{VERSION}.{customer_id}.0.{'A' * 43}") is None:
        raise ValueError(f"not a customer id: {customer_id!r}")
    expires = int((now + lifetime).timestamp())
    return f"{VERSION}.{customer_id}.{expires}.{_signature(secret, customer_id, expires)}"


def link_url(portal_url: str, token: str, period: str | None = None) -> str:
    """The URL that opens the page: ``portal_url`` (``https://api.example.com/portal``) with the token and,
    optionally, a period."""
    query = urlencode({"token": token, **({"period": period} if period else {})})
    return f"{portal_url}{'&' if '?' in portal_url else '?'}{query}"


def verify_link(secret: str, token: str | None, *, now: datetime) -> PortalLink:
    """The customer and expiry ``token`` was signed for. ``InvalidLinkError``: a missing, malformed or
    forged token (or one claiming to live longer than a link can); ``ExpiredLinkError``: a genuine, expired
    one."""
    found = _TOKEN_RE.fullmatch(token) if token and len(token) <= _MAX_TOKEN_LENGTH else None
    if found is None or not secret:
        raise InvalidLinkError()
    customer_id, expires, signature = found.group(1), int(found.group(2)), found.group(3)
    if not hmac.compare_digest(signature, _signature(secret, customer_id, expires)):
        raise InvalidLinkError()
    expires_at = datetime.fromtimestamp(expires, UTC)
    if expires_at - now > MAX_LIFETIME:
        raise InvalidLinkError()
    if expires_at <= now:
        raise ExpiredLinkError()
    return PortalLink(customer_id, expires_at)
