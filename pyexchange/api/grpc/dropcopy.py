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
    """The ``DropCopyEvent`` of one drop-copy event (only the fields that apply are set)."""
    fields: dict[str, Any] = {}
    if e.intent is not None:
        fields["intent"] = e.intent + 1  # the proto's 0 is "unspecified"
    if e.price is not None:
        fields["price"] = format_price(e.price)
    if e.quantity is not None:
        fields["quantity"] = format_quantity(e.quantity)
    if e.leaves_quantity is not None:
        fields["leaves_quantity"] = format_quantity(e.leaves_quantity)
    if e.fee is not None:
        fields["fee"] = format_cash(e.fee)
    if e.cash is not None:
        fields["cash"] = format_cash(e.cash)
    if e.reason:
        fields["reason"] = e.reason
    if e.counterparty_order_id:
        fields["counterparty_order_id"] = e.counterparty_order_id
    if e.taker:
        fields["taker"] = True
    if e.gap_from_seq:
        fields["gap_from_seq"] = e.gap_from_seq
    return pb.DropCopyEvent(
        seq=e.seq,
        index=e.index,
        account=e.account,
        kind=e.kind,
        order_id=e.order_id,
        market=e.market,
        time_ns=e.time_ns,
        **fields,
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


class UnservedDropCopy(pb_grpc.DropCopyServicer):
    """A server without a drop copy: Subscribe answers UNIMPLEMENTED, saying why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def Subscribe(
        self, request: pb.DropCopyRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.DropCopyEvent]:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, self.reason)
        yield pb.DropCopyEvent()  # never reached: abort raises (this makes it a stream)
