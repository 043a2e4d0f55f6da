"""Errors of the REST API: an HTTP status and the venue's body ``{"code", "message", "details"}``.

The venue's HTTP layer is grpc-gateway-like: the body carries the gRPC code as an
integer beside the message (spec §1.7; its 429 body is ``{"code": 8, "message":
"rate limit exceeded", "details": []}``). The SDK reads ``message`` and raises
by status: 400 ``BadRequestError``, 401 ``AuthenticationError``, 403
``PermissionDeniedError``, 404 ``NotFoundError``, 429 ``RateLimitError``, 5xx
``InternalServerError``, anything else ``APIStatusError``.
"""

from __future__ import annotations

import math

import msgspec

from ...service.errors import Category, ServiceError

# gRPC code -> HTTP status, as grpc-gateway maps them
HTTP_STATUS = {
    3: 400,  # INVALID_ARGUMENT
    16: 401,  # UNAUTHENTICATED
    7: 403,  # PERMISSION_DENIED
    5: 404,  # NOT_FOUND
    10: 409,  # ABORTED
    8: 429,  # RESOURCE_EXHAUSTED
    12: 501,  # UNIMPLEMENTED
    13: 500,  # INTERNAL
    14: 503,  # UNAVAILABLE
    4: 504,  # DEADLINE_EXCEEDED
}
# the service layer's refusal category -> (the body's gRPC code, HTTP status): one table
STATUS: dict[Category, tuple[int, int]] = {
    Category.INVALID: (3, 400),
    Category.UNAUTHENTICATED: (16, 401),
    Category.FORBIDDEN: (7, 403),
    Category.NOT_FOUND: (5, 404),
    Category.CONFLICT: (10, 409),
    Category.RATE_LIMITED: (8, 429),
    Category.BUSY: (8, 429),  # a retryable "too many requests", as the venue answers overload
    Category.UNAVAILABLE: (14, 503),
    Category.DATA_LOSS: (15, 500),
    Category.INTERNAL: (13, 500),
}
MAX_MESSAGE = 300  # characters of a message: an echoed value is quoted short, never whole

_encode = msgspec.json.Encoder().encode


class ApiError(Exception):
    """A request answered with an error status (nothing reached the engine)."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.code = code
        self.status = HTTP_STATUS.get(code, 500) if status is None else status
        self.message = message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "..."
        self.headers = headers

    def body(self) -> bytes:
        return _encode({"code": self.code, "message": self.message, "details": []})


def bad_request(message: str) -> ApiError:
    return ApiError(3, message)


def not_found(message: str) -> ApiError:
    return ApiError(5, message)


def unauthenticated(message: str) -> ApiError:
    return ApiError(16, message)


def forbidden(message: str) -> ApiError:
    return ApiError(7, message)


def rate_limited(message: str = "rate limit exceeded") -> ApiError:
    # Retry-After: the SDK honours it (capped at 8 s); harmless where a client ignores it
    return ApiError(8, message, headers=((b"retry-after", b"1"),))


def unavailable(message: str) -> ApiError:
    return ApiError(14, message)


def unimplemented(message: str) -> ApiError:
    """501: what this server does not serve at all (a retry will not help), and why."""
    return ApiError(12, message)


def from_service_error(error: ServiceError) -> ApiError:
    """A refusal of the service layer as the venue's error (``STATUS``); a busy or
    rate-limited answer says when to retry (``Retry-After``, whole seconds)."""
    code, status = STATUS[error.category]
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if error.category in (Category.RATE_LIMITED, Category.BUSY):
        wait = error.retry_after_s if error.retry_after_s is not None else 1.0
        headers = ((b"retry-after", str(max(1, math.ceil(wait))).encode()),)
    return ApiError(code, error.message, status=status, headers=headers)
