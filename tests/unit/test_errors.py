"""Errors become HTTP answers by type, in one place."""

from __future__ import annotations

from tollgate.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    RetryLaterError,
    TransactionConflictError,
    http_status,
)


def test_http_handlers_answer_errors_by_type() -> None:
    assert http_status(InvalidInputError("bad period")) == 400
    assert http_status(NotFoundError("customer", "ghost")) == 404
    assert http_status(ConflictError("moved")) == 409
    assert http_status(TransactionConflictError([1])) == 409  # the nearest class along the hierarchy
    assert http_status(RetryLaterError("later")) == 503
    assert http_status(KeyError("a bug")) == 500
