"""``ExchangeClient``: a ``grpc.aio`` client whose every call is signed (docs/service.md).

    async with ExchangeClient("127.0.0.1:50051", key_id, secret) as client:
        reply = await client.place(1, 1, "BUY_YES", "0.55", "10")
        state = await client.get_account(1)

Prices, quantities and cash are decimal strings (``"0.55"``, ``"10"``,
``"100.25"``); ``Decimal`` and ``int`` are accepted and turned into strings.
Enum arguments take a name (``"BUY_YES"``, ``"IOC"``) or the proto value.
Each unary call is signed with a fresh timestamp; two identical requests in
the same millisecond get distinct timestamps, so the server never mistakes
the second for a replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import grpc

from ...service.auth import (
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    body_hash,
    body_of,
    signature_of_hash,
)
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc

Number = str | int | Decimal

ORDER_ENTRY = "/pyexchange.v1.OrderEntry/"
ADMIN = "/pyexchange.v1.Admin/"
MARKET_DATA = "/pyexchange.v1.MarketData/"
DROP_COPY = "/pyexchange.v1.DropCopy/"


def _text(value: Number | None) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        raise TypeError("pass prices, quantities and cash as strings or Decimal, not float")
    return str(value)


def _enum(enum: Any, value: str | int | None) -> Any:  # the enum's value (an int)
    if value is None:
        return 0
    return enum.Value(value) if isinstance(value, str) else int(value)


class ExchangeClient:
    def __init__(
        self,
        target: str,
        key_id: str,
        secret: str,
        *,
        timeout: float | None = 30.0,
        options: list[tuple[str, Any]] | None = None,
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.target = target
        self.key_id = key_id
        self.secret = secret
        self.timeout = timeout
        self.channel = (
            channel if channel is not None else grpc.aio.insecure_channel(target, options)
        )
        self.order_entry = pb_grpc.OrderEntryStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)
        self.market_data = pb_grpc.MarketDataStub(self.channel)
        self.drop_copy_stub = pb_grpc.DropCopyStub(self.channel)
        self._last_stamp: dict[str, int] = {}

    # ------------------------------------------------------------ signing

    def sign(self, method: str, request: Any | None) -> tuple[tuple[str, str], ...]:
        """Signed metadata for ``method`` (``/pyexchange.v1.OrderEntry/PlaceOrder``): over
        the bytes the stub sends (``SerializeToString()``), empty for a client stream."""
        digest = body_hash(body_of(request))
        now = time.time_ns() // 1_000_000
        identity = f"{method}\n{digest}"
        last = self._last_stamp.get(identity)
        stamp = now if last is None or last < now else last + 1
        self._last_stamp[identity] = stamp
        if len(self._last_stamp) > 10_000:
            self._last_stamp = {k: v for k, v in self._last_stamp.items() if v >= now - 1_000}
        return (
            (KEY_HEADER, self.key_id),
            (TIMESTAMP_HEADER, str(stamp)),
            (SIGNATURE_HEADER, signature_of_hash(self.key_id, self.secret, stamp, method, digest)),
        )

    async def _unary(self, stub: Any, method: str, request: Any, timeout: float | None) -> Any:
        return await stub(
            request,
            metadata=self.sign(method, request),
            timeout=self.timeout if timeout is None else timeout,
        )

    # ------------------------------------------------------- order entry

    async def get_account(self, account: int, *, timeout: float | None = None) -> pb.AccountState:
        request = pb.AccountRequest(account=account)
        return await self._unary(
            self.order_entry.GetAccount, ORDER_ENTRY + "GetAccount", request, timeout
        )

    @staticmethod
    def place_request(
        account: int,
        market: int,
        intent: str | int,
        price: Number | None = None,
        quantity: Number | None = None,
        *,
        cash: Number | None = None,
        time_in_force: str | int | None = None,
        expire_time_ns: int = 0,
        post_only: bool = False,
        market_order: bool = False,
        self_trade_prevention: str | int | None = None,
        client_order_id: int = 0,
    ) -> pb.PlaceOrderRequest:
        return pb.PlaceOrderRequest(
            account=account,
            market=market,
            intent=_enum(pb.Intent, intent),
            price=_text(price),
            quantity=_text(quantity),
            cash=_text(cash),
            time_in_force=_enum(pb.TimeInForce, time_in_force),
            expire_time_ns=expire_time_ns,
            post_only=post_only,
            market_order=market_order,
            self_trade_prevention=_enum(pb.SelfTradePrevention, self_trade_prevention),
            client_order_id=client_order_id,
        )

    async def place(
        self,
        account: int,
        market: int,
        intent: str | int,
        price: Number | None = None,
        quantity: Number | None = None,
        *,
        timeout: float | None = None,
        **options: Any,
    ) -> pb.OrderReply:
        """Place an order: limit by default; ``market_order=True`` with ``price`` as the
        worst-price bound and ``quantity`` or (buys) ``cash``; ``time_in_force``,
        ``expire_time_ns`` (GTD), ``post_only``, ``self_trade_prevention``, ``client_order_id``."""
        request = self.place_request(account, market, intent, price, quantity, **options)
        return await self.place_raw(request, timeout=timeout)

    async def place_raw(
        self, request: pb.PlaceOrderRequest, *, timeout: float | None = None
    ) -> pb.OrderReply:
        return await self._unary(
            self.order_entry.PlaceOrder, ORDER_ENTRY + "PlaceOrder", request, timeout
        )

    async def cancel(
        self, account: int, order_id: int, *, timeout: float | None = None
    ) -> pb.OrderReply:
        request = pb.CancelOrderRequest(account=account, order_id=order_id)
        return await self._unary(
            self.order_entry.CancelOrder, ORDER_ENTRY + "CancelOrder", request, timeout
        )

    async def cancel_by_client_id(
        self, account: int, client_order_id: int, *, timeout: float | None = None
    ) -> pb.OrderReply:
        request = pb.CancelByClientIdRequest(account=account, client_order_id=client_order_id)
        return await self._unary(
            self.order_entry.CancelByClientId, ORDER_ENTRY + "CancelByClientId", request, timeout
        )

    async def cancel_all(
        self, account: int, market: int | None = None, *, timeout: float | None = None
    ) -> pb.OrderReply:
        request = pb.CancelAllRequest(account=account)
        if market is not None:
            request.market = market
        return await self._unary(
            self.order_entry.CancelAll, ORDER_ENTRY + "CancelAll", request, timeout
        )

    async def replace(
        self,
        account: int,
        order_id: int,
        price: Number | None = None,
        quantity: Number | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.OrderReply:
        request = pb.ReplaceOrderRequest(
            account=account, order_id=order_id, price=_text(price), quantity=_text(quantity)
        )
        return await self._unary(
            self.order_entry.ReplaceOrder, ORDER_ENTRY + "ReplaceOrder", request, timeout
        )

    def order_stream(self) -> OrderStream:
        """A bidirectional order stream (``async with client.order_stream() as stream``)."""
        return OrderStream(self)

    # ------------------------------------------------------ market data

    async def book(
        self, market: int, depth: int = 0, *, timeout: float | None = None
    ) -> pb.MarketDataUpdate:
        request = pb.SubscribeMarketDataRequest(markets=[market], depth=depth)
        return await self._unary(
            self.market_data.GetBook, MARKET_DATA + "GetBook", request, timeout
        )

    def subscribe_market_data(
        self, markets: list[int], depth: int = 0
    ) -> AsyncIterator[pb.MarketDataUpdate]:
        """A subscription: iterate it (``async for update in ...``); ``.cancel()`` ends it."""
        request = pb.SubscribeMarketDataRequest(markets=markets, depth=depth)
        return self.market_data.Subscribe(
            request, metadata=self.sign(MARKET_DATA + "Subscribe", request)
        )

    def drop_copy(self, from_seq: int = 0) -> AsyncIterator[pb.DropCopyEvent]:
        request = pb.DropCopyRequest(from_seq=from_seq)
        return self.drop_copy_stub.Subscribe(
            request, metadata=self.sign(DROP_COPY + "Subscribe", request)
        )

    # ------------------------------------------------------------ admin

    async def _admin(self, name: str, request: Any, timeout: float | None) -> pb.AdminReply:
        return await self._unary(getattr(self.admin, name), ADMIN + name, request, timeout)

    async def create_market(
        self,
        market: int,
        tick: Number = "0.01",
        *,
        min_size: Number | None = None,
        lot: Number | None = None,
        taker_fee_bps: int = 0,
        maker_fee_bps: int = 0,
        fee_base: str | int = "NOTIONAL",
        min_price: Number | None = None,
        max_price: Number | None = None,
        timeout: float | None = None,
    ) -> pb.AdminReply:
        request = pb.CreateMarketRequest(
            market=market,
            tick=_text(tick),
            min_size=_text(min_size),
            lot=_text(lot),
            taker_fee_bps=taker_fee_bps,
            maker_fee_bps=maker_fee_bps,
            fee_base=_enum(pb.FeeBase, fee_base),
            min_price=_text(min_price),
            max_price=_text(max_price),
        )
        return await self._admin("CreateMarket", request, timeout)

    async def set_market_state(
        self, market: int, state: str | int, *, timeout: float | None = None
    ) -> pb.AdminReply:
        request = pb.SetMarketStateRequest(market=market, state=_enum(pb.MarketState, state))
        return await self._admin("SetMarketState", request, timeout)

    async def set_tick(
        self, market: int, tick: Number, *, timeout: float | None = None
    ) -> pb.AdminReply:
        request = pb.SetTickRequest(market=market, tick=_text(tick))
        return await self._admin("SetTick", request, timeout)

    async def resolve(
        self, market: int, outcome: str | int, *, timeout: float | None = None
    ) -> pb.AdminReply:
        request = pb.ResolveRequest(market=market, outcome=_enum(pb.Outcome, outcome))
        return await self._admin("Resolve", request, timeout)

    async def add_account(self, account: int, *, timeout: float | None = None) -> pb.AdminReply:
        return await self._admin("AddAccount", pb.AccountRequest(account=account), timeout)

    async def deposit(
        self, account: int, amount: Number, *, timeout: float | None = None
    ) -> pb.AdminReply:
        request = pb.CashRequest(account=account, amount=_text(amount))
        return await self._admin("Deposit", request, timeout)

    async def withdraw(
        self, account: int, amount: Number, *, timeout: float | None = None
    ) -> pb.AdminReply:
        request = pb.CashRequest(account=account, amount=_text(amount))
        return await self._admin("Withdraw", request, timeout)

    async def transfer(
        self,
        account: int,
        amount: Number,
        source: int,
        destination: int,
        transfer_id: int,
        *,
        timeout: float | None = None,
    ) -> pb.AdminReply:
        request = pb.TransferRequest(
            account=account,
            amount=_text(amount),
            source=source,
            destination=destination,
            transfer_id=transfer_id,
        )
        return await self._admin("Transfer", request, timeout)

    # ---------------------------------------------------------- lifecycle

    async def wait_ready(self, timeout: float = 10.0) -> None:
        await asyncio.wait_for(self.channel.channel_ready(), timeout)

    async def close(self) -> None:
        await self.channel.close()

    async def __aenter__(self) -> ExchangeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class OrderStream:
    """Requests and replies on one ``OrderStream`` call, matched by correlation id.

    ``await stream.place(...)`` sends and waits for its reply; many may be in
    flight at once (``asyncio.gather``): the server pipelines them.
    """

    def __init__(self, client: ExchangeClient) -> None:
        self.client = client
        self._call: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[int, asyncio.Future[pb.OrderStreamReply]] = {}
        self._next_id = 1
        self._error: BaseException | None = None
        self._write_lock = asyncio.Lock()  # one write at a time on a gRPC call

    async def open(self) -> OrderStream:
        metadata = self.client.sign(ORDER_ENTRY + "OrderStream", None)
        self._call = self.client.order_entry.OrderStream(metadata=metadata)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        try:
            async for reply in self._call:
                future = self._waiting.pop(reply.correlation_id, None)
                if future is not None and not future.done():
                    future.set_result(reply)
            self._error = ConnectionError("the order stream ended")
        except BaseException as exc:  # the call failed: every waiter gets it
            self._error = exc
        for future in self._waiting.values():
            if not future.done():
                future.set_exception(self._error)
        self._waiting.clear()

    async def send(self, request: pb.OrderStreamRequest) -> pb.OrderStreamReply:
        """Send one request (a correlation id is assigned if it has none) and await its reply."""
        if self._call is None:
            await self.open()
        if self._error is not None:
            raise self._error
        if not request.correlation_id:
            request.correlation_id = self._next_id
            self._next_id += 1
        future: asyncio.Future[pb.OrderStreamReply] = asyncio.get_running_loop().create_future()
        self._waiting[request.correlation_id] = future
        async with self._write_lock:
            await self._call.write(request)
        return await future

    async def place(self, *args: Any, **kwargs: Any) -> pb.OrderStreamReply:
        return await self.send(
            pb.OrderStreamRequest(place=ExchangeClient.place_request(*args, **kwargs))
        )

    async def cancel(self, account: int, order_id: int) -> pb.OrderStreamReply:
        request = pb.CancelOrderRequest(account=account, order_id=order_id)
        return await self.send(pb.OrderStreamRequest(cancel=request))

    async def cancel_by_client_id(self, account: int, client_order_id: int) -> pb.OrderStreamReply:
        request = pb.CancelByClientIdRequest(account=account, client_order_id=client_order_id)
        return await self.send(pb.OrderStreamRequest(cancel_by_client_id=request))

    async def cancel_all(self, account: int, market: int | None = None) -> pb.OrderStreamReply:
        request = pb.CancelAllRequest(account=account)
        if market is not None:
            request.market = market
        return await self.send(pb.OrderStreamRequest(cancel_all=request))

    async def replace(
        self,
        account: int,
        order_id: int,
        price: Number | None = None,
        quantity: Number | None = None,
    ) -> pb.OrderStreamReply:
        request = pb.ReplaceOrderRequest(
            account=account, order_id=order_id, price=_text(price), quantity=_text(quantity)
        )
        return await self.send(pb.OrderStreamRequest(replace=request))

    async def close(self) -> None:
        """Half-close, wait for the outstanding replies and the end of the call."""
        if self._call is None:
            return
        with contextlib.suppress(Exception):  # the call may be over already
            await self._call.done_writing()
        if self._reader is not None:
            await self._reader

    async def __aenter__(self) -> OrderStream:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
