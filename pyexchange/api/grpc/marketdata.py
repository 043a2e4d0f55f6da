"""The MarketData gRPC service: ``Subscribe`` (snapshots, then updates) and ``GetBook``.

A thin adapter over ``pyexchange.feeds.marketdata.MarketDataPublisher``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc

from ...feeds.marketdata import MarketDataPublisher
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc


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

    async def _ready(self, context: grpc.aio.ServicerContext) -> None:
        if not await self.publisher.ready(self.ready_timeout):
            await context.abort(grpc.StatusCode.UNAVAILABLE, "market data is not loaded yet")

    async def Subscribe(
        self, request: pb.SubscribeMarketDataRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.MarketDataUpdate]:
        await self.authenticator.authenticate(context, request, "read")
        await self._ready(context)
        try:
            sub = self.publisher.subscribe(request.markets)
        except KeyError as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown market {exc.args[0]}")
        updates = self.publisher.stream(sub)
        try:
            async for update in updates:
                yield update
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
            return self.publisher.book(market, request.depth)
        except KeyError:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown market {market}")
            raise
