"""Why a request is refused before it reaches the engine: typed errors that know no transport.

Every refusal of the service layer (auth, validation, backpressure, shutdown,
unknown accounts...) is a ``ServiceError``: a ``category`` (what kind of
failure, hence what the client should do), a ``reason`` (a short stable code,
``UPPER_SNAKE``, for programs) and a ``message`` (one readable sentence for
people, never longer than ``MAX_MESSAGE`` characters: an echoed value is
quoted as a short prefix, never whole). Each API maps the category to its own
status with one table: ``pyexchange.api.grpc.errors.STATUS`` (gRPC codes) and
``pyexchange.api.rest.errors.STATUS`` (HTTP statuses and the venue's codes).

An engine reject is not a ``ServiceError``: the command was journaled and run,
and its reject is an answer like any other (``status REJECTED``).
"""

from __future__ import annotations

import enum
from typing import ClassVar

MAX_MESSAGE = 300  # characters: a refusal must fit any transport's error channel


class Category(enum.Enum):
    INVALID = "invalid"  # the request is wrong as sent: fix it, do not retry it as is
    UNAUTHENTICATED = "unauthenticated"  # no valid credentials: sign (again)
    FORBIDDEN = "forbidden"  # a valid key that may not do this (permission, account)
    NOT_FOUND = "not_found"  # the thing named does not exist (or the caller may not know it)
    CONFLICT = "conflict"  # clashes with the current state (it exists already, ...)
    RATE_LIMITED = "rate_limited"  # the key spent its token bucket: retry after a while
    BUSY = "busy"  # the exchange is at its in-flight limit: retry shortly
    UNAVAILABLE = "unavailable"  # stopping, stopped, or a shard without quorum
    DATA_LOSS = "data_loss"  # stored data is damaged (a drop copy log)
    INTERNAL = "internal"  # a bug: nothing about it is the client's


class ServiceError(Exception):
    """A refusal: ``category``, ``reason`` (code) and ``message`` (sentence)."""

    category: ClassVar[Category] = Category.INTERNAL
    default_reason: ClassVar[str] = "INTERNAL"

    def __init__(
        self, message: str, reason: str | None = None, *, retry_after_s: float | None = None
    ) -> None:
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 3] + "..."
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.retry_after_s = retry_after_s  # when the client may try again, if known

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, {self.reason!r})"


class Invalid(ServiceError):
    category = Category.INVALID
    default_reason = "INVALID_ARGUMENT"


class Unauthenticated(ServiceError):
    category = Category.UNAUTHENTICATED
    default_reason = "UNAUTHENTICATED"


class Forbidden(ServiceError):
    category = Category.FORBIDDEN
    default_reason = "FORBIDDEN"


class NotFound(ServiceError):
    category = Category.NOT_FOUND
    default_reason = "NOT_FOUND"


class Conflict(ServiceError):
    category = Category.CONFLICT
    default_reason = "CONFLICT"


class RateLimited(ServiceError):
    category = Category.RATE_LIMITED
    default_reason = "RATE_LIMITED"


class Busy(ServiceError):
    category = Category.BUSY
    default_reason = "BUSY"


class Unavailable(ServiceError):
    category = Category.UNAVAILABLE
    default_reason = "UNAVAILABLE"


class DataLoss(ServiceError):
    category = Category.DATA_LOSS
    default_reason = "DATA_LOSS"


class Internal(ServiceError):
    category = Category.INTERNAL
    default_reason = "INTERNAL"


BY_CATEGORY: dict[Category, type[ServiceError]] = {
    cls.category: cls
    for cls in (
        Invalid,
        Unauthenticated,
        Forbidden,
        NotFound,
        Conflict,
        RateLimited,
        Busy,
        Unavailable,
        DataLoss,
        Internal,
    )
}
