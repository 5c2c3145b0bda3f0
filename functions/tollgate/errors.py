"""Every error Tollgate's code handles by type, and the one place an error becomes an HTTP status.

The data-access layer turns DynamoDB ``ClientError`` codes into these; handlers and the CLI turn them into
answers by type (:func:`http_status`, ``tollgate.cli.output.error_lines``), never by matching message text.

Standard library only, and nothing imported: the authorizer imports this module (its two errors are at the
end), and must not pay for pydantic or stripe at cold start.
"""

from __future__ import annotations

from typing import Any


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


class TransactionConflictError(ConflictError):
    """A condition in a DynamoDB transaction failed; ``indexes`` are the positions of the items whose did."""

    def __init__(self, indexes: tuple[int, ...] | list[int]) -> None:
        super().__init__(f"conditional check failed for transaction items {list(indexes)}")
        self.indexes = tuple(indexes)


class InvalidInputError(TollgateError):
    """Input that breaks a domain rule (the message names the field)."""


class RetryLaterError(TollgateError):
    """The request cannot be applied yet; a non-2xx answer makes the sender (Stripe) deliver it again."""


# -- Stripe ----------------------------------------------------------------------------------------------
class StripeCallError(TollgateError):
    """A Stripe request failed: refused, errored, or its answer was lost (then it may have been applied)."""

    def __init__(self, operation: str, cause: Exception) -> None:
        super().__init__(f"Stripe {operation} failed: {type(cause).__name__}: {cause}")
        self.operation = operation
        self.cause = cause


class StripeLinkError(TollgateError):
    """A customer's profile exists, its Stripe customer does not yet: creating it again finishes the job."""


# -- the period close ------------------------------------------------------------------------------------
class CloseError(TollgateError):
    """A customer-period that cannot be closed as things are (the message says what to do)."""


class PeriodNotEndedError(CloseError):
    pass


class PeriodClosedError(CloseError):
    """The period's close has been rated: no threshold invoice can be added to it any more."""


class MissingStripeCustomerError(CloseError):
    pass


class InvoiceConflictError(CloseError):
    """Stripe holds something for this customer-period that the close will not guess about."""


# -- the authorizer --------------------------------------------------------------------------------------
# Not TollgateErrors: no user ever sees them. The authorizer turns both into a deny (``tollgate.metering``).
class MeteringUnavailableError(Exception):
    """DynamoDB could not be reached or answered with an error; ``applied`` says whether the write may have
    happened (``None``: unknown)."""

    def __init__(self, message: str, applied: bool | None = False) -> None:
        super().__init__(message)
        self.applied = applied


class CreditLimitReachedError(Exception):
    """The conditional counter write was refused: this request would pass the plan's credit limit (or the
    customer's budget). ``item``: the counter as it was, when DynamoDB said (wire format)."""

    def __init__(self, item: dict[str, Any] | None = None) -> None:
        super().__init__("the credit limit is reached")
        self.item = item


class InsufficientCreditsError(Exception):
    """The conditional wallet write was refused: the prepaid balance does not cover this request."""


# -- HTTP ------------------------------------------------------------------------------------------------
HTTP_STATUS: dict[type[Exception], int] = {
    InvalidInputError: 400,
    NotFoundError: 404,
    AlreadyExistsError: 409,
    ConflictError: 409,
    RetryLaterError: 503,
}


def http_status(error: BaseException) -> int:
    """The status an HTTP handler answers ``error`` with: the nearest class in :data:`HTTP_STATUS` along
    its hierarchy, else 500."""
    for kind in type(error).__mro__:
        status = HTTP_STATUS.get(kind)
        if status is not None:
            return status
    return 500
