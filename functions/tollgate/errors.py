"""Domain errors. The store turns DynamoDB ``ClientError`` codes into these; handlers and the CLI turn them
into answers by type, never by matching message text."""

from __future__ import annotations


class TollgateError(Exception):
    """Base class for errors a user can act on (the CLI prints them as one line)."""


class NotFoundError(TollgateError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} not found")
        self.kind = kind
        self.ident = ident


class AlreadyExistsError(TollgateError):
    def __init__(self, kind: str, ident: str) -> None:
        super().__init__(f"{kind} {ident!r} already exists")
        self.kind = kind
        self.ident = ident


class ConflictError(TollgateError):
    """A conditional write lost: the item is not in the state the caller expected."""


class InvalidInputError(TollgateError):
    """Input that breaks a domain rule (the message names the field)."""
