"""The gRPC side of authentication: the call's metadata in, the refusal's status out.

``pyexchange.service.auth.Authenticator`` checks keys, signatures, permissions,
accounts and token buckets and raises ``ServiceError``s; this adapter reads the
metadata of a ``grpc.aio`` call, knows which method is being served and the
request's bytes as they arrived (the server sets ``current_method`` and
``current_body`` before each handler: signatures are checked over what the
client sent, never over a re-serialization, which another client's encoder
need not match) and aborts the call with the status of ``errors.STATUS``.
``on_refused`` counts each refusal by status name (the
``pyexchange_refused_total`` metric).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from typing import NoReturn

import grpc

from ...service.auth import ApiKey, Authenticator
from ...service.errors import ServiceError
from .errors import abort, status_of

# The full method ("/pyexchange.v1.OrderEntry/PlaceOrder") of the call being
# served; the server sets it before each handler runs (app/server.py).
current_method: contextvars.ContextVar[str] = contextvars.ContextVar(
    "pyexchange_current_method", default=""
)
# The request message of the call being served, as received (a unary request; b"" for
# a client stream); None outside a call the server's guard wrapped (app/server.py).
current_body: contextvars.ContextVar[bytes | None] = contextvars.ContextVar(
    "pyexchange_current_body", default=None
)


class GrpcAuth:
    """``Authenticator`` for servicers: ``authenticate`` aborts the call when refused."""

    def __init__(
        self, authenticator: Authenticator, on_refused: Callable[[str], None] | None = None
    ) -> None:
        self.authenticator = authenticator
        self.on_refused = on_refused

    async def authenticate(
        self,
        context: grpc.aio.ServicerContext,
        request: object | None,
        permission: str | None,
        *,
        method: str | None = None,
        cost: float = 1.0,
    ) -> ApiKey:
        """The caller's key, or the call is aborted (UNAUTHENTICATED, PERMISSION_DENIED,
        RESOURCE_EXHAUSTED). ``method`` defaults to the one the server is serving;
        ``request`` is the call's message (its bytes as received are verified) or ``None``
        for a client stream."""
        body = b"" if request is None else current_body.get()
        if body is None:  # a programming error, not the client's: INTERNAL
            raise RuntimeError("the request's bytes were not kept: register through the guard")
        try:
            return self.authenticator.verify(
                context.invocation_metadata(),
                method or current_method.get(),
                body,
                permission,
                cost=cost,
            )
        except ServiceError as exc:
            await self.refuse(context, exc)

    def refused(self, exc: ServiceError) -> None:
        """Count a refusal answered without ending the call (a stream's ``error`` reply)."""
        if self.on_refused is not None:
            self.on_refused(status_of(exc).name)

    async def refuse(self, context: grpc.aio.ServicerContext, exc: ServiceError) -> NoReturn:
        self.refused(exc)
        await abort(context, exc)

    async def require_account(
        self, context: grpc.aio.ServicerContext, key: ApiKey, account: int
    ) -> None:
        try:
            self.authenticator.check_account(key, account)
        except ServiceError as exc:
            await self.refuse(context, exc)

    def check_account(self, key: ApiKey, account: int) -> None:
        self.authenticator.check_account(key, account)

    def try_acquire(self, key: ApiKey, cost: float = 1.0) -> None:
        self.authenticator.try_acquire(key, cost)
