"""The MarketData gRPC service: ``Subscribe`` (snapshots, then updates) and ``GetBook``.

A thin adapter over ``pyexchange.feeds.marketdata.MarketDataPublisher``: the feed's
update objects (``pyexchange.feeds.updates``, the core's units) become
``MarketDataUpdate`` messages with decimal strings. One update is shared by every
subscriber it is sent to, so it is serialized once (``WireCache``), not once per stream:
``Subscribe`` yields bytes, and ``add_to_server`` registers it without a serializer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from ...feeds.marketdata import MarketDataPublisher
from ...feeds.updates import (
    BestBidOffer,
    BookSnapshot,
    Dropped,
    LevelChange,
    MarketDataMessage,
    MarketStatus,
    TradePrint,
)
from ...units import format_price, format_quantity
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc


def _levels(levels: tuple[tuple[int, int, int], ...]) -> list[pb.PriceLevel]:
    return [
        pb.PriceLevel(price=format_price(p), quantity=format_quantity(q), orders=c)
        for p, q, c in levels
    ]


def _snapshot(u: BookSnapshot) -> pb.MarketDataUpdate:
    return pb.MarketDataUpdate(
        market=u.market,
        market_seq=u.market_seq,
        notice=u.notice,
        snapshot=pb.BookSnapshot(
            bids=_levels(u.bids),
            asks=_levels(u.asks),
            state=u.state,  # type: ignore[arg-type]  # MarketState: the core's numbers
            tick=format_price(u.tick) if u.tick else "",
        ),
    )


def _level(u: LevelChange) -> pb.MarketDataUpdate:
    return pb.MarketDataUpdate(
        market=u.market,
        market_seq=u.market_seq,
        engine_seq=u.engine_seq,
        level=pb.LevelUpdate(
            bid=u.bid,
            price=format_price(u.price),
            quantity=format_quantity(u.quantity),
            orders=u.orders,
        ),
    )


def _trade(u: TradePrint) -> pb.MarketDataUpdate:
    return pb.MarketDataUpdate(
        market=u.market,
        market_seq=u.market_seq,
        engine_seq=u.engine_seq,
        trade=pb.TradePrint(
            price=format_price(u.price),
            quantity=format_quantity(u.quantity),
            match_type=u.match_type,
            taker_bid=u.taker_bid,
        ),
    )


def _bbo(u: BestBidOffer) -> pb.MarketDataUpdate:
    bid, ask = u.bid_price, u.ask_price
    return pb.MarketDataUpdate(
        market=u.market,
        market_seq=u.market_seq,
        engine_seq=u.engine_seq,
        bbo=pb.BestBidOffer(
            bid_price=format_price(bid) if bid else "",
            bid_quantity=format_quantity(u.bid_quantity) if bid else "",
            ask_price=format_price(ask) if ask else "",
            ask_quantity=format_quantity(u.ask_quantity) if ask else "",
        ),
    )


def _status(u: MarketStatus) -> pb.MarketDataUpdate:
    return pb.MarketDataUpdate(
        market=u.market,
        market_seq=u.market_seq,
        engine_seq=u.engine_seq,
        status=pb.MarketStatus(
            state=u.state,  # type: ignore[arg-type]  # MarketState, Outcome: the core's numbers
            tick=format_price(u.tick),
            outcome=u.outcome,  # type: ignore[arg-type]
        ),
    )


def _dropped(u: Dropped) -> pb.MarketDataUpdate:
    return pb.MarketDataUpdate(notice=u.notice)


_CONVERT: dict[type, Any] = {
    BookSnapshot: _snapshot,
    LevelChange: _level,
    TradePrint: _trade,
    BestBidOffer: _bbo,
    MarketStatus: _status,
    Dropped: _dropped,
}


def to_proto(update: MarketDataMessage) -> pb.MarketDataUpdate:
    """The ``MarketDataUpdate`` of one feed update."""
    return _CONVERT[type(update)](update)


SERVICE = "pyexchange.v1.MarketData"


class Authenticating(Protocol):
    async def authenticate(self, context: Any, request: Any, permission: str | None) -> Any: ...


class MarketDataService(pb_grpc.MarketDataServicer):
    """The MarketData gRPC service: Subscribe (snapshot, then updates) and GetBook."""

    def __init__(
        self,
        publisher: MarketDataPublisher,
        authenticator: Authenticating,
        *,
        ready_timeout: float = 10.0,
    ) -> None:
        self.publisher = publisher
        self.authenticator = authenticator
        self.ready_timeout = ready_timeout
        self.wire = WireCache()

    async def _ready(self, context: grpc.aio.ServicerContext) -> None:
        if not await self.publisher.ready(self.ready_timeout):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "market data is not loaded yet")

    async def Subscribe(
        self, request: pb.SubscribeMarketDataRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[bytes]:
        """Serialized ``MarketDataUpdate`` messages (registered without a serializer)."""
        await self.authenticator.authenticate(context, request, "read")
        await self._ready(context)
        try:
            sub = self.publisher.subscribe(request.markets)
        except KeyError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown market {exc.args[0]}")
        updates = self.publisher.stream(sub)
        encode = self.wire.get
        try:
            async for update in updates:
                yield encode(update)
        finally:  # the call ended (client gone, cancelled): unsubscribe now, not at GC
            await updates.aclose()

    async def GetBook(
        self, request: pb.SubscribeMarketDataRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarketDataUpdate:
        await self.authenticator.authenticate(context, request, "read")
        await self._ready(context)
        if len(request.markets) != 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "GetBook takes one market")
        market = request.markets[0]
        try:
            return to_proto(self.publisher.book(market, request.depth))
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown market {market}")
            raise


class WireCache:
    """Each update serialized once for all the streams it goes to (loop thread only).

    Keyed by the update's identity; the update is kept with its bytes, so an id is never
    reused while it is in the cache. Two generations of at most ``size`` entries: a
    subscriber further behind than that serializes its update again (same bytes).
    """

    def __init__(self, size: int = 16_384) -> None:
        self.size = size
        self._new: dict[int, tuple[MarketDataMessage, bytes]] = {}
        self._old: dict[int, tuple[MarketDataMessage, bytes]] = {}

    def get(self, update: MarketDataMessage) -> bytes:
        key = id(update)
        hit = self._new.get(key) or self._old.get(key)
        if hit is not None:
            return hit[1]
        data = to_proto(update).SerializeToString()
        if len(self._new) >= self.size:
            self._old, self._new = self._new, {}
        self._new[key] = (update, data)
        return data


def add_to_server(servicer: MarketDataService, server: Any) -> None:
    """Register the service: ``Subscribe`` yields serialized messages (no serializer)."""
    request = pb.SubscribeMarketDataRequest.FromString
    handlers = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe, request_deserializer=request
        ),
        "GetBook": grpc.unary_unary_rpc_method_handler(
            servicer.GetBook,
            request_deserializer=request,
            response_serializer=pb.MarketDataUpdate.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
