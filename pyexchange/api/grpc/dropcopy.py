"""The DropCopy gRPC service: ``Subscribe(from_seq)`` streams history, then live events.

A thin adapter over ``pyexchange.feeds.dropcopy.DropCopyPublisher``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from ...feeds.dropcopy import CorruptEventLog, DropCopyPublisher
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc


class Authenticating(Protocol):
    async def authenticate(self, context: Any, request: Any, permission: str | None) -> Any: ...


def visible_accounts(key: Any) -> frozenset[int] | None:
    """The accounts a key may see (None: every account, for an admin key bound to none)."""
    sees_all = getattr(key, "sees_all_accounts", None)
    if callable(sees_all) and sees_all():
        return None
    return frozenset(getattr(key, "accounts", ()))


class DropCopyService(pb_grpc.DropCopyServicer):
    """The DropCopy gRPC service: Subscribe(from_seq) streams history, then live events."""

    def __init__(self, publisher: DropCopyPublisher, authenticator: Authenticating) -> None:
        self.publisher = publisher
        self.authenticator = authenticator

    async def Subscribe(
        self, request: pb.DropCopyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DropCopyEvent]:
        key = await self.authenticator.authenticate(context, request, "read")
        accounts = visible_accounts(key)
        if accounts is not None and not accounts:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "the key sees no account")
        events = self.publisher.stream(accounts, request.from_seq)
        try:
            async for event in events:
                yield event
        except CorruptEventLog as exc:
            await context.abort(grpc.StatusCode.DATA_LOSS, f"drop copy log damaged: {exc}")
        finally:  # the call ended (client gone, cancelled): leave the live set now
            await events.aclose()
