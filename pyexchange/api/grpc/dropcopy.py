"""The DropCopy gRPC service: ``Subscribe(from_seq)`` streams history, then live events.

A thin adapter over ``pyexchange.feeds.dropcopy.DropCopyPublisher``: each
``AccountEvent`` (``pyexchange.feeds.updates``, the core's units) becomes a
``DropCopyEvent`` with decimal strings; a field that does not apply stays empty.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from ...feeds.dropcopy import CorruptEventLog, DropCopyPublisher
from ...feeds.updates import AccountEvent
from ...units import format_cash, format_price, format_quantity
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc


def to_proto(e: AccountEvent) -> pb.DropCopyEvent:
    """The ``DropCopyEvent`` of one drop-copy event."""
    return pb.DropCopyEvent(
        seq=e.seq,
        index=e.index,
        account=e.account,
        kind=e.kind,
        order_id=e.order_id,
        market=e.market,
        intent=0 if e.intent is None else e.intent + 1,  # the proto's 0 is "unspecified"
        price="" if e.price is None else format_price(e.price),
        quantity="" if e.quantity is None else format_quantity(e.quantity),
        leaves_quantity="" if e.leaves_quantity is None else format_quantity(e.leaves_quantity),
        fee="" if e.fee is None else format_cash(e.fee),
        cash="" if e.cash is None else format_cash(e.cash),
        reason=e.reason,
        counterparty_order_id=e.counterparty_order_id,
        time_ns=e.time_ns,
        gap_from_seq=e.gap_from_seq,
        taker=e.taker,
    )


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
                yield to_proto(event)
        except CorruptEventLog as exc:
            await context.abort(grpc.StatusCode.DATA_LOSS, f"drop copy log damaged: {exc}")
        finally:  # the call ended (client gone, cancelled): leave the live set now
            await events.aclose()
