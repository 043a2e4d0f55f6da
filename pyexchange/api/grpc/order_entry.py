"""The order-entry gateway: gRPC requests -> command records -> the sequencer -> replies.

Threading. The servicers run on the asyncio loop of ``grpc.aio``; the engine
runs on the sequencer thread. A request is authenticated and converted on the
loop (exact units, ``units.py``), then ``Exchange.submit`` queues its command
and returns a ``concurrent.futures.Future`` that the sequencer resolves, on its
own thread, once the command is journaled and applied; ``asyncio.wrap_future``
brings the result back to the loop (one ``call_soon_threadsafe``). The
sequencer marks its futures running at once, so a client that goes away
cancels only the asyncio side, never the sequencer's answer.

Reading the engine. The engine is single-threaded and runs its batches with
the GIL released, so the loop never touches it: ``GetAccount`` runs its reads
as a query on the sequencer thread (``Sequencer.query``), between two
batches, which gives a consistent picture that includes every command
acknowledged before. The one thing the gateway needs on every order, each
market's tick and lot, comes from ``Markets``: a copy kept from the engine's
``MARKET`` events by ``on_events`` on the sequencer thread (each update one
dict assignment, atomic under the GIL). If a tick changes while an order is in
flight, the engine (which has the last word) rejects it as ``INVALID_PRICE``.

Backpressure. ``CommandGateway`` counts the commands and queries submitted and
not yet answered; past ``max_in_flight`` a request is refused at once with
``RESOURCE_EXHAUSTED`` instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from typing import Any, NamedTuple

import grpc
import numpy as np

from matchcore import (
    ALL_MARKETS,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_CASH,
    MAX_QUANTITY,
    CancelReason,
    CommandType,
    EventType,
    MatchType,
    OrderFlags,
    Reject,
)

from ...engine.exchange import Exchange
from ...engine.sequencer import SequencerStopped
from ...metrics import Metrics
from ...service.auth import READ, TRADE
from ...service.errors import Busy, Invalid, NotFound, ServiceError, Unavailable
from ...units import UnitError, format_cash, format_price, format_quantity, parse_cash, parse_price
from ...units import parse_quantity as _parse_quantity
from . import exchange_pb2 as pb
from . import exchange_pb2_grpc as pb_grpc
from .auth import GrpcAuth
from .errors import abort, error_text

log = logging.getLogger(__name__)

# ------------------------------------------------------------------ codes

# proto enum value -> engine code (the proto reserves 0 for "unspecified")
INTENT_FROM_PROTO: dict[int, int] = {pb.BUY_YES: 0, pb.SELL_YES: 1, pb.BUY_NO: 2, pb.SELL_NO: 3}
INTENT_TO_PROTO: dict[int, int] = {v: k for k, v in INTENT_FROM_PROTO.items()}
TIF_FROM_PROTO: dict[int, int] = {
    pb.TIME_IN_FORCE_UNSPECIFIED: 0,
    pb.GTC: 0,
    pb.GTD: 1,
    pb.IOC: 2,
    pb.FOK: 3,
}
TIF_TO_PROTO: dict[int, int] = {0: pb.GTC, 1: pb.GTD, 2: pb.IOC, 3: pb.FOK}
STP_FROM_PROTO: dict[int, int] = {
    pb.STP_UNSPECIFIED: 0,
    pb.REJECT_AGGRESSOR: 0,
    pb.CANCEL_RESTING: 1,
    pb.CANCEL_BOTH: 2,
}

REJECT_MESSAGES: dict[Reject, str] = {
    Reject.INVALID_COMMAND: "unknown command type",
    Reject.INVALID_PRICE: "the price is off the market's tick grid or outside tick .. 1 - tick",
    Reject.INVALID_QUANTITY: (
        "the quantity or amount is not positive, above the maximum, "
        "or not a multiple of the market's lot"
    ),
    Reject.BELOW_MIN_SIZE: "the quantity is below the market's minimum size",
    Reject.DUPLICATE_CLIENT_ORDER_ID: (
        "the account already used this client order id for another order (resting or "
        "not); only an identical resend is answered with the first result"
    ),
    Reject.INSUFFICIENT_BALANCE: (
        "not enough free cash or shares for this (price, quantity and the highest fee included)"
    ),
    Reject.INVALID_EXPIRY: (
        "a GTD order needs an expiry after the current engine time; "
        "other time-in-force values take none"
    ),
    Reject.FOK_NOT_FILLED: (
        "the fill-or-kill order could not be filled completely at once: nothing traded"
    ),
    Reject.POST_ONLY_WOULD_CROSS: "the post-only order would have traded on entry",
    Reject.MARKET_NOT_OPEN: "the market is not open for this (new orders need OPEN)",
    Reject.UNKNOWN_MARKET: "no such market",
    Reject.UNKNOWN_ACCOUNT: "no such account",
    Reject.UNKNOWN_ORDER: (
        "no resting order with this id for the account (filled, canceled, expired or unknown)"
    ),
    Reject.NOT_OWNER: "the order belongs to another account",
    Reject.CAPACITY: "the exchange is at capacity (orders, positions, levels, markets or accounts)",
    Reject.INVALID_ORDER: (
        "invalid combination of intent, time in force and flags (post-only with IOC/FOK or a "
        "market order, a market order with GTC/GTD, a buy by cash on a sell)"
    ),
    Reject.INVALID_TICK: "the tick must be 0.1, 0.01, 0.001 or 0.0001",
    Reject.INVALID_STATE_TRANSITION: (
        "market state change not allowed (PRE_OPEN->OPEN|CLOSED, OPEN<->HALTED, "
        "OPEN|HALTED->CLOSED; a market resolves once)"
    ),
    Reject.MARKET_EXISTS: "the market already exists",
    Reject.ACCOUNT_EXISTS: "the account already exists",
    Reject.INVALID_FEE: (
        "fee rates out of range: taker 0..1000 bps, maker -1000..1000 bps and not below -taker"
    ),
    Reject.INVALID_OUTCOME: "the outcome must be YES, NO or HALF",
    Reject.LEDGER_DISABLED: "this exchange runs without a ledger: no cash commands",
}

CANCEL_MESSAGES: dict[CancelReason, str] = {
    CancelReason.USER: "canceled on request",
    CancelReason.UNFILLED: "the unfilled remainder of an IOC/FOK or market order was canceled",
    CancelReason.SELF_TRADE: "self-trade prevention canceled the remainder",
    CancelReason.EXPIRED: "the GTD order expired",
    CancelReason.MARKET_CLOSED: "the market closed",
    CancelReason.TICK_CHANGE: "the order was off the market's new tick grid",
}


def reject_text(code: int) -> tuple[str, str]:
    """(name, readable message) of an engine reject code."""
    try:
        reason = Reject(code)
    except ValueError:
        return f"CODE_{code}", f"rejected by the engine (code {code})"
    return reason.name, REJECT_MESSAGES[reason]


def invalid(message: str) -> Invalid:
    return Invalid(message)


# ---------------------------------------------------------------- markets


class MarketSpec(NamedTuple):
    """What the gateway needs of a market (from its last MARKET event)."""

    market: int
    state: int
    tick: int
    min_size: int
    lot: int


class Markets:
    """Tick, lot and state of every market, kept from MARKET events (see the module docstring)."""

    def __init__(self) -> None:
        self.specs: dict[int, MarketSpec] = {}

    def load(self, engine: Any) -> None:
        """Sequencer thread (or before it runs): read every market of the engine."""
        for market in range(int(engine.capacities["max_markets"])):
            info = engine.market(market)
            if info is not None:
                self.specs[market] = MarketSpec(
                    market, int(info.state), int(info.tick), int(info.min_size), int(info.lot)
                )

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        for row in np.nonzero(events["type"] == EventType.MARKET)[0]:
            e = events[row]
            market = int(e["market"])
            self.specs[market] = MarketSpec(
                market, int(e["state"]), int(e["price"]), int(e["quantity"]), int(e["leaves_qty"])
            )

    def get(self, market: int) -> MarketSpec | None:
        return self.specs.get(market)

    def grid(self, market: int) -> tuple[int, int]:
        """(tick, lot) for converting a request; the finest grid for a market we do not
        know (the engine then rejects it as UNKNOWN_MARKET, a reply like any reject)."""
        spec = self.specs.get(market)
        return (1, 1) if spec is None else (spec.tick, spec.lot)


# ------------------------------------------------------- request -> command


def _price(text: str, tick: int) -> int:
    return parse_price(text, tick)


def _quantity(text: str, lot: int) -> int:
    units = _parse_quantity(text, lot)
    if units > MAX_QUANTITY:
        raise UnitError(f"quantity {text!r} is above the maximum {format_quantity(MAX_QUANTITY)}")
    return units


def _cash(text: str) -> int:
    units = parse_cash(text)
    if units > MAX_CASH:
        raise UnitError(f"cash amount {text!r} is above the maximum {format_cash(MAX_CASH)}")
    return units


def _enum(value: int, table: dict[int, int], what: str) -> int:
    try:
        return table[value]
    except KeyError:
        raise invalid(f"unknown {what} value {value}") from None


def place_command(request: pb.PlaceOrderRequest, markets: Markets) -> np.ndarray:
    """A NEW_ORDER record, or ``Invalid`` with what is wrong."""
    if request.intent == pb.INTENT_UNSPECIFIED:
        raise invalid("intent is required (BUY_YES, SELL_YES, BUY_NO or SELL_NO)")
    intent = _enum(request.intent, INTENT_FROM_PROTO, "intent")
    stp = _enum(request.self_trade_prevention, STP_FROM_PROTO, "self_trade_prevention")
    tif_value = request.time_in_force
    if request.market_order and tif_value == pb.TIME_IN_FORCE_UNSPECIFIED:
        tif_value = pb.IOC  # a market order is IOC unless it says FOK
    tif = _enum(tif_value, TIF_FROM_PROTO, "time_in_force")
    tick, lot = markets.grid(request.market)
    flags = 0
    if request.post_only:
        flags |= OrderFlags.POST_ONLY
    if request.market_order:
        flags |= OrderFlags.MARKET
    try:
        if not request.price:
            raise invalid(
                "price is required (the limit, or a market order's worst-price bound)"
                if not request.market_order
                else "a market order needs a worst-price bound in price"
            )
        price = _price(request.price, tick)
        if request.cash:
            if request.quantity:
                raise invalid("give quantity or cash, not both")
            if not request.market_order:
                raise invalid("cash (spend at most $X) is for market buys only")
            quantity = _cash(request.cash)
            flags |= OrderFlags.BY_CASH
        else:
            if not request.quantity:
                raise invalid("quantity is required (or cash for a market buy)")
            quantity = _quantity(request.quantity, lot)
    except UnitError as exc:
        raise invalid(str(exc)) from None
    if tif_value == pb.GTD and request.expire_time_ns <= 0:
        raise invalid("a GTD order needs expire_time_ns (engine time, Unix ns)")
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    c = command[0]
    c["type"] = CommandType.NEW_ORDER
    c["account"] = request.account
    c["market"] = request.market
    c["intent"] = intent
    c["price"] = price
    c["quantity"] = quantity
    c["tif"] = tif
    c["expiry"] = request.expire_time_ns
    c["stp"] = stp
    c["flags"] = flags
    c["client_order_id"] = request.client_order_id
    return command


def cancel_command(request: pb.CancelOrderRequest) -> np.ndarray:
    if not request.order_id:
        raise invalid("order_id is required")
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = CommandType.CANCEL
    command["account"] = request.account
    command["order_id"] = request.order_id
    return command


def cancel_client_command(request: pb.CancelByClientIdRequest) -> np.ndarray:
    if not request.client_order_id:
        raise invalid("client_order_id is required")
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = CommandType.CANCEL_CLIENT
    command["account"] = request.account
    command["client_order_id"] = request.client_order_id
    return command


def cancel_all_command(request: pb.CancelAllRequest) -> np.ndarray:
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = CommandType.CANCEL_ALL
    command["account"] = request.account
    command["market"] = request.market if request.HasField("market") else ALL_MARKETS
    return command


def replace_command(request: pb.ReplaceOrderRequest) -> np.ndarray:
    """A REPLACE record. The request names no market, so prices and quantities are
    converted on the finest grid (exact to $0.0001 and 0.01 share); the engine
    rejects what is off the order's market grid (INVALID_PRICE / INVALID_QUANTITY)."""
    if not request.order_id:
        raise invalid("order_id is required")
    if not request.price and not request.quantity:
        raise invalid("give a new price, a new quantity, or both")
    try:
        price = _price(request.price, 1) if request.price else 0
        quantity = _quantity(request.quantity, 1) if request.quantity else 0
    except UnitError as exc:
        raise invalid(str(exc)) from None
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = CommandType.REPLACE
    command["account"] = request.account
    command["order_id"] = request.order_id
    command["price"] = price
    command["quantity"] = quantity
    return command


# --------------------------------------------------------- events -> reply

_F = {name: i for i, name in enumerate(EVENT_DTYPE.names or ())}
_TYPE, _REASON, _ORDER, _ACCOUNT = _F["type"], _F["reason"], _F["order_id"], _F["account"]
_MAKER, _PRICE, _QTY, _LEAVES, _FEE = (
    _F["maker_order_id"],
    _F["price"],
    _F["quantity"],
    _F["leaves_qty"],
    _F["fee"],
)
_MATCH, _SEQ, _FLAGS = _F["match_type"], _F["seq"], _F["flags"]
_MATCH_NAMES = {int(m): m.name for m in MatchType}


def _cancel_text(reason: int) -> tuple[str, str]:
    try:
        code = CancelReason(reason)
    except ValueError:
        return f"CODE_{reason}", "canceled"
    return code.name, CANCEL_MESSAGES[code]


def order_reply(command: np.void | np.ndarray, events: np.ndarray) -> pb.OrderReply:
    """The OrderReply of one order-entry command from the events it produced."""
    row = command[0] if isinstance(command, np.ndarray) else command
    kind = int(row["type"])
    account = int(row["account"])
    rows = events.tolist()
    reply = pb.OrderReply()
    if rows:
        reply.seq = rows[0][_SEQ]
    if kind in (CommandType.NEW_ORDER, CommandType.CANCEL_CLIENT):
        reply.client_order_id = int(row["client_order_id"])
    if kind in (CommandType.CANCEL, CommandType.REPLACE):
        reply.order_id = int(row["order_id"])
    for e in rows:
        if e[_TYPE] == EventType.REJECTED:  # at most one per command, and then nothing else
            reply.status = pb.REJECTED
            reply.reject_reason, reply.message = reject_text(e[_REASON])
            return reply

    if kind in (CommandType.CANCEL, CommandType.CANCEL_CLIENT, CommandType.CANCEL_ALL):
        canceled = [
            e
            for e in rows
            if e[_TYPE] == EventType.CANCELED
            and e[_ACCOUNT] == account
            and e[_REASON] == CancelReason.USER
        ]
        reply.status = pb.CANCELED
        reply.canceled_count = len(canceled)
        reply.cancel_reason = CancelReason.USER.name
        reply.leaves_quantity = "0"
        if kind != CommandType.CANCEL_ALL and canceled:
            reply.order_id = canceled[0][_ORDER]
            reply.message = CANCEL_MESSAGES[CancelReason.USER]
        else:
            reply.message = f"{len(canceled)} order(s) canceled"
        return reply

    order_id = reply.order_id
    leaves = 0
    by_cash = False
    for e in rows:
        t = e[_TYPE]
        if kind == CommandType.NEW_ORDER and t == EventType.ACCEPTED and not order_id:
            order_id = e[_ORDER]
            leaves = e[_LEAVES]
            by_cash = bool(e[_FLAGS] & OrderFlags.BY_CASH)
        elif kind == CommandType.REPLACE and t == EventType.REPLACED and e[_ORDER] == order_id:
            leaves = e[_LEAVES]
    reply.order_id = order_id
    filled = 0
    canceled_event = None
    for e in rows:
        if e[_ORDER] != order_id or not order_id:
            continue
        t = e[_TYPE]
        if t == EventType.TRADE:
            fill = reply.fills.add()
            fill.maker_order_id = e[_MAKER]
            fill.taker_order_id = order_id
            fill.price = format_price(e[_PRICE])
            fill.quantity = format_quantity(e[_QTY])
            fill.fee = format_cash(e[_FEE])
            fill.match_type = _MATCH_NAMES.get(e[_MATCH], str(e[_MATCH]))
            fill.caller_is_taker = True
            filled += e[_QTY]
            leaves = e[_LEAVES]
        elif t == EventType.CANCELED:
            canceled_event = e
    reply.filled_quantity = format_quantity(filled)
    if by_cash:
        leaves = 0  # a buy by cash never rests; its leaves are a budget, not shares
    if canceled_event is not None:
        reply.status = pb.CANCELED
        reply.cancel_reason, reply.message = _cancel_text(canceled_event[_REASON])
        if by_cash:
            reply.message = (
                f"unspent budget ${format_cash(canceled_event[_QTY])} released ({reply.message})"
            )
        leaves = 0
    elif leaves == 0:
        reply.status = pb.FILLED
    else:
        reply.status = pb.RESTING
    reply.leaves_quantity = format_quantity(leaves)
    return reply


# ------------------------------------------------------------- the gateway


class CommandGateway:
    """What the servicers share: submission with backpressure, queries, auth, metrics."""

    def __init__(
        self,
        exchange: Exchange,
        authenticator: GrpcAuth,
        markets: Markets,
        metrics: Metrics | None = None,
        max_in_flight: int = 10_000,
    ) -> None:
        self.exchange = exchange
        self.auth = authenticator
        self.markets = markets
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.closing = False

    def _reserve(self, count: int) -> None:
        if self.closing:
            raise Unavailable("the exchange is shutting down", "SHUTTING_DOWN")
        if self.in_flight + count > self.max_in_flight:
            raise Busy(
                f"the exchange is busy: {self.in_flight} commands in flight "
                f"(limit {self.max_in_flight}); retry shortly"
            )

    def submit(self, commands: np.ndarray, label: str) -> asyncio.Future[np.ndarray]:
        """Queue commands now (or a ``ServiceError``); an asyncio future of their events."""
        count = len(commands)
        self._reserve(count)
        try:
            future = self.exchange.submit(commands)
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange is stopped: {exc}", "STOPPED") from None
        return self._bridge(future, count, label)

    def query(self, fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """Run ``fn(engine)`` on the sequencer thread (counts as one command in flight)."""
        self._reserve(1)
        try:
            future = self.exchange.query(fn)
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange is stopped: {exc}", "STOPPED") from None
        return self._bridge(future, 1, "")

    def _bridge(self, future: Future[Any], count: int, label: str) -> asyncio.Future[Any]:
        self.in_flight += count
        started = time.perf_counter()
        wrapped = asyncio.wrap_future(future)

        def settle(_: asyncio.Future[Any]) -> None:  # on the loop
            self.in_flight -= count
            if label and self.metrics is not None:
                self.metrics.latency.labels(label).observe(time.perf_counter() - started)

        wrapped.add_done_callback(settle)
        return wrapped

    async def run(self, commands: np.ndarray, label: str) -> np.ndarray:
        # shield: a caller that goes away must not settle the command's slot before
        # the sequencer has answered it (the in-flight count stays exact)
        try:
            return await asyncio.shield(self.submit(commands, label))
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange stopped: {exc}", "STOPPED") from None

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        try:
            return await asyncio.shield(self.query(fn))
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange stopped: {exc}", "STOPPED") from None


def _account_view(engine: Any, account: int, markets: Markets) -> Any:
    """Sequencer thread: balance, positions and resting orders of one account."""
    balance = engine.balance(account)
    if balance is None:
        return None
    positions = []
    for market in sorted(markets.specs):  # this thread is the one that updates them
        position = engine.position(account, market)
        if any(position):
            positions.append((market, position))
    return balance, positions, engine.orders_of(account)


class OrderEntryService(pb_grpc.OrderEntryServicer):
    """OrderEntry: place, cancel, cancel by client id, cancel all, replace, the stream, accounts."""

    def __init__(self, gateway: CommandGateway) -> None:
        self.gateway = gateway
        self.auth = gateway.auth
        self.markets = gateway.markets

    # ----------------------------------------------------------- unary calls

    async def GetAccount(
        self, request: pb.AccountRequest, context: grpc.aio.ServicerContext
    ) -> pb.AccountState:
        key = await self.auth.authenticate(context, request, READ)
        self.auth.check_account(key, request.account)
        markets = self.markets
        account = request.account
        view = await self.gateway.read(lambda engine: _account_view(engine, account, markets))
        if view is None:
            raise NotFound(f"account {account} does not exist", "UNKNOWN_ACCOUNT")
        balance, positions, orders = view
        state = pb.AccountState(
            account=account,
            cash=format_cash(balance.free),
            cash_reserved=format_cash(balance.reserved),
        )
        for market, p in positions:
            state.positions.add(
                market=market,
                yes=format_quantity(p.yes_free),
                yes_reserved=format_quantity(p.yes_reserved),
                no=format_quantity(p.no_free),
                no_reserved=format_quantity(p.no_reserved),
            )
        for o in orders:
            state.orders.add(
                order_id=o.order_id,
                market=o.market,
                intent=INTENT_TO_PROTO.get(o.intent, pb.INTENT_UNSPECIFIED),
                price=format_price(o.price),
                leaves_quantity=format_quantity(o.leaves_qty),
                time_in_force=TIF_TO_PROTO.get(o.tif, pb.TIME_IN_FORCE_UNSPECIFIED),
                client_order_id=o.client_order_id,
                expire_time_ns=o.expiry,
            )
        return state

    async def _order_call(
        self,
        request: Any,
        context: grpc.aio.ServicerContext,
        build: Callable[[Any], np.ndarray],
        label: str,
    ) -> pb.OrderReply:
        key = await self.auth.authenticate(context, request, TRADE)
        self.auth.check_account(key, request.account)
        command = build(request)
        events = await self.gateway.run(command, label)
        return order_reply(command, events)

    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrderReply:
        return await self._order_call(
            request, context, lambda r: place_command(r, self.markets), "place"
        )

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrderReply:
        return await self._order_call(request, context, cancel_command, "cancel")

    async def CancelByClientId(
        self, request: pb.CancelByClientIdRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrderReply:
        return await self._order_call(request, context, cancel_client_command, "cancel")

    async def CancelAll(
        self, request: pb.CancelAllRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrderReply:
        return await self._order_call(request, context, cancel_all_command, "cancel_all")

    async def ReplaceOrder(
        self, request: pb.ReplaceOrderRequest, context: grpc.aio.ServicerContext
    ) -> pb.OrderReply:
        return await self._order_call(request, context, replace_command, "replace")

    # ------------------------------------------------------------ the stream

    def _stream_command(self, key: Any, message: pb.OrderStreamRequest) -> tuple[np.ndarray, str]:
        which = message.WhichOneof("request")
        if which is None:
            raise invalid("empty request: set one of place, cancel, cancel_by_client_id, ...")
        request = getattr(message, which)
        self.auth.check_account(key, request.account)
        if which == "place":
            return place_command(request, self.markets), "place"
        if which == "cancel":
            return cancel_command(request), "cancel"
        if which == "cancel_by_client_id":
            return cancel_client_command(request), "cancel"
        if which == "cancel_all":
            return cancel_all_command(request), "cancel_all"
        return replace_command(request), "replace"

    async def OrderStream(
        self,
        request_iterator: AsyncIterator[pb.OrderStreamRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.OrderStreamReply]:
        """Requests are pipelined: each is queued as it arrives and answered when the
        engine has run it (in order, since the sequencer is FIFO). A request that
        never reaches the engine is answered with ``error`` and the stream goes on."""
        key = await self.auth.authenticate(context, None, TRADE)
        replies: asyncio.Queue[Any] = asyncio.Queue()
        state = {"pending": 0, "reading": True}
        end = object()

        def finish_if_done() -> None:
            if not state["reading"] and not state["pending"]:
                replies.put_nowait(end)

        def answered(correlation_id: int, command: np.ndarray, fut: asyncio.Future[Any]) -> None:
            state["pending"] -= 1
            if fut.cancelled():
                return
            exc = fut.exception()
            if exc is None:
                reply = pb.OrderStreamReply(
                    correlation_id=correlation_id, reply=order_reply(command, fut.result())
                )
            else:
                reply = pb.OrderStreamReply(
                    correlation_id=correlation_id, error=f"UNAVAILABLE: the exchange stopped: {exc}"
                )
            replies.put_nowait(reply)
            finish_if_done()

        async def read() -> None:
            try:
                async for message in request_iterator:
                    correlation_id = message.correlation_id
                    try:
                        self.auth.try_acquire(key)
                        command, label = self._stream_command(key, message)
                        fut = self.gateway.submit(command, label)
                    except ServiceError as exc:
                        self.auth.refused(exc)
                        replies.put_nowait(
                            pb.OrderStreamReply(
                                correlation_id=correlation_id, error=error_text(exc)
                            )
                        )
                        continue
                    state["pending"] += 1
                    fut.add_done_callback(
                        lambda f, c=correlation_id, cmd=command: answered(c, cmd, f)
                    )
            except ServiceError as exc:  # a malformed message: the stream cannot go on
                replies.put_nowait(exc)
            finally:
                state["reading"] = False
                finish_if_done()

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await replies.get()
                if item is end:
                    break
                if isinstance(item, ServiceError):
                    await abort(context, item)
                yield item
        finally:
            reader.cancel()
