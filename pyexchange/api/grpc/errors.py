"""The gRPC status of each refusal category of the service layer (``pyexchange.service.errors``).

One table: what never reached the engine is a gRPC error with this status and
the refusal's message; the reason code travels in the ``x-reason`` trailing
metadata (for programs; the message is for people).
"""

from __future__ import annotations

from typing import NoReturn

import grpc

from ...service.errors import Category, ServiceError

STATUS: dict[Category, grpc.StatusCode] = {
    Category.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.CONFLICT: grpc.StatusCode.ABORTED,
    Category.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.BUSY: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Category.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
}

REASON_KEY = "x-reason"


def status_of(error: ServiceError) -> grpc.StatusCode:
    return STATUS[error.category]


def error_text(error: ServiceError) -> str:
    """How a stream reply's ``error`` field states a refusal: ``"STATUS: message"``."""
    return f"{STATUS[error.category].name}: {error.message}"


async def abort(context: grpc.aio.ServicerContext, error: ServiceError) -> NoReturn:
    """End the call with the refusal's status, message and reason."""
    await context.abort(
        STATUS[error.category], error.message, trailing_metadata=((REASON_KEY, error.reason),)
    )
    raise AssertionError("unreachable")  # abort() raises
