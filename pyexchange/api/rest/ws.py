"""The venue's two WebSockets: ``/v1/ws/markets`` and ``/v1/ws/private`` (spec §4).

Both need the signed headers on the upgrade (``GET`` and the socket's path:
``auth.py``; a browser, which cannot set headers, sends them as query parameters);
a bad one is refused with 401 before the upgrade, as the venue does (the SDK's
``connect()`` raises). A client sends
``{"subscribe": {"requestId", "subscriptionType", "marketSlugs"}}`` and
``{"unsubscribe": {"requestId"}}`` (camelCase or snake_case, types as strings
or the overview page's numbers); there is no acknowledgement, only data, and
an error frame ``{"requestId", "error", "subscriptionType"}`` for an unknown
type, a type of the other socket, more than 100 markets, an unknown slug or a
frame that is not JSON. A second subscribe with the same ``requestId`` replaces
the first (an SDK that reconnects replays its ids). Every connection gets
``{"heartbeat": {}}`` every ``heartbeat_s`` (10 s). The server answers pings
(uvicorn) and pings every 20 s itself.

**Where frames come from.** Markets: full book frames (``MARKET_DATA``: the
same payload as REST ``/book``, the top ``book_depth`` levels a side, a full
replacement each time) and ``MARKET_DATA_LITE`` (as REST ``/bbo``) from the
market data feed: one internal subscription to every market, a frame per
market after each batch of updates that changed it; ``TRADE`` frames (one per
fill, with both sides' intents) from the order history, which follows the drop
copy. Private: ``ORDER`` (one frame per execution of the key's account, the
same Execution object as REST), ``ORDER_SNAPSHOT`` (the open orders, in frames
under 1 MiB, the last one ``eof: true``), ``POSITION`` (before and after of
each change) from the order history; ``ACCOUNT_BALANCE`` (a snapshot, then an
update whenever the balance changed: read from the engine after each change of
the account). So the WebSocket, gRPC market data and the drop copy show the
same events.

**Slow subscribers.** Each connection has a bounded queue of frames and one
writer task (uvicorn's send waits while the socket's buffer is full). Book and
lite frames are **conflated**: a newer frame of the same subscription and
market replaces one not yet sent. Frames that cannot be conflated (trades,
executions, positions) count against ``max_queue``; a connection that lets
them pile up beyond it gets an error frame ("slow consumer") and is closed
(code 1008). Nothing a subscriber does reaches the engine or another
subscriber: fan-out is a queue append per frame, on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Iterable
from typing import Any

import msgspec

from ...feeds.history import (
    CashChange,
    Execution,
    PositionChange,
    PositionRecord,
    Resolution,
    Trade,
)
from . import objects, venue, wire
from .account import balance_object
from .app import deny
from .auth import VenueAuth, account_of, upgrade_credentials
from .context import VenueContext
from .errors import ApiError
from .public import bbo_payload, book_payload

log = logging.getLogger(__name__)

MAX_MARKETS = 100  # per subscription (spec §4.2)
MAX_FRAME = 1 << 20  # the SDK's websockets client closes on a larger frame
DROP_GRACE_S = 5.0  # a dropped subscriber's time to read its error frame
SNAPSHOT_CHUNK = 128 * 1024  # bytes of orders per snapshot frame (frames stay far under 1 MiB)

MARKET_TYPES = {
    "SUBSCRIPTION_TYPE_MARKET_DATA": "SUBSCRIPTION_TYPE_MARKET_DATA",
    "SUBSCRIPTION_TYPE_MARKET_DATA_LITE": "SUBSCRIPTION_TYPE_MARKET_DATA_LITE",
    "SUBSCRIPTION_TYPE_TRADE": "SUBSCRIPTION_TYPE_TRADE",
    1: "SUBSCRIPTION_TYPE_MARKET_DATA",
    2: "SUBSCRIPTION_TYPE_MARKET_DATA_LITE",
    3: "SUBSCRIPTION_TYPE_TRADE",
}
PRIVATE_TYPES = {
    "SUBSCRIPTION_TYPE_ORDER": "SUBSCRIPTION_TYPE_ORDER",
    "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT": "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT",
    "SUBSCRIPTION_TYPE_POSITION": "SUBSCRIPTION_TYPE_POSITION",
    "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE": "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE",
    "SUBSCRIPTION_TYPE_RFQ": "SUBSCRIPTION_TYPE_RFQ",
    1: "SUBSCRIPTION_TYPE_ORDER",
    3: "SUBSCRIPTION_TYPE_POSITION",
    4: "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE",
}
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder(decimal_format="number").encode


def _frame(request_id: str, kind: str, key: str, payload: str) -> str:
    """``{"requestId", "subscriptionType", key: payload}`` around an encoded payload."""
    return (
        '{"requestId":'
        + _encode(request_id).decode()
        + ',"subscriptionType":"'
        + kind
        + '","'
        + key
        + '":'
        + payload
        + "}"
    )


def error_frame(error: str, request_id: str | None = None, kind: str | None = None) -> str:
    out: dict[str, str] = {"error": error[:300]}
    if request_id is not None:
        out["requestId"] = request_id
    if kind is not None:
        out["subscriptionType"] = kind
    return _encode(out).decode()


class Subscription:
    __slots__ = ("kind", "markets", "request_id")

    def __init__(self, request_id: str, kind: str, markets: frozenset[int] | None) -> None:
        self.request_id = request_id
        self.kind = kind
        self.markets = markets  # None: every market (private subscriptions without slugs)


class Session:
    """One connection: subscriptions, a bounded queue of frames, one writer."""

    def __init__(
        self, send: Any, endpoint: str, account: int, max_queue: int, abort: Any = None
    ) -> None:
        self.send = send
        self.abort = abort  # cuts the TCP connection (uvicorn's transport.abort)
        self.endpoint = endpoint
        self.account = account
        self.max_queue = max_queue
        self.subscriptions: dict[str, Subscription] = {}
        self._queue: collections.deque[Any] = collections.deque()  # str, or a conflation key
        self._latest: dict[tuple[str, int], str] = {}  # conflatable frames not yet sent
        self._wake = asyncio.Event()
        self.closed = False
        self.dropped = False  # no more frames: an error frame or a close is on its way
        self._close_code = 1008
        self.sent = 0
        self.conflated = 0

    def push(self, frame: str) -> None:
        if self.closed or self.dropped:
            return
        if len(self._queue) >= self.max_queue:
            self.drop()
            return
        self._queue.append(frame)
        self._wake.set()

    def push_latest(self, key: tuple[str, int], frame: str) -> None:
        """A full-replacement frame: replaces the one of the same key not sent yet."""
        if self.closed or self.dropped:
            return
        if key in self._latest:
            self.conflated += 1
        else:
            self._queue.append(key)
        self._latest[key] = frame
        self._wake.set()

    def drop(self) -> None:
        """Too far behind: one error frame, then the connection closes; if the client does
        not read even that within ``DROP_GRACE_S``, the connection is cut."""
        if self.dropped:
            return
        self.dropped = True
        self._queue.clear()
        self._latest.clear()
        self._queue.append(
            error_frame("slow consumer: frames were not read in time; the connection closes")
        )
        self._wake.set()
        asyncio.get_running_loop().call_later(DROP_GRACE_S, self._cut)

    def close_after(self, code: int) -> None:
        """Send what is queued, then close with ``code`` (cut after ``DROP_GRACE_S``)."""
        if self.closed or self.dropped:
            return
        self.dropped = True  # nothing more is queued
        self._close_code = code
        self._wake.set()
        asyncio.get_running_loop().call_later(DROP_GRACE_S, self._cut)

    def _cut(self) -> None:
        if not self.closed and self.abort is not None:
            self.abort()
        self.closed = True
        self._wake.set()

    async def writer(self) -> None:
        try:
            while not self.closed:
                if not self._queue:
                    if self.dropped:
                        break
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = self._queue.popleft()
                frame = item if isinstance(item, str) else self._latest.pop(item, None)
                if frame is None:
                    continue
                await self.send({"type": "websocket.send", "text": frame})
                self.sent += 1
            if self.dropped and not self.closed:
                await self.send({"type": "websocket.close", "code": self._close_code})
        except Exception:  # the connection went away while sending
            pass
        finally:
            self.closed = True


class MarketsHub:
    """Book, lite and trade frames of every market to the sessions that want them."""

    def __init__(self, ctx: VenueContext, metrics: Any = None) -> None:
        self.ctx = ctx
        self.metrics = metrics
        self.sessions: set[Session] = set()
        # market -> kind -> session -> request ids
        self._wanted: dict[int, dict[str, dict[Session, set[str]]]] = {}
        self._dirty_book: set[int] = set()
        self._dirty_lite: set[int] = set()

    def start(self) -> None:
        if self.ctx.marketdata is not None:
            self.ctx.marketdata.watch(self._changed)
        if self.ctx.history is not None:
            self.ctx.history.listen_trades(self._trades)

    async def stop(self) -> None:
        if self.ctx.history is not None:
            self.ctx.history.unlisten_trades(self._trades)
        if self.ctx.marketdata is not None:
            self.ctx.marketdata.unwatch(self._changed)

    def _changed(self, book: set[int], top: set[int]) -> None:
        """Market data applied a batch (a trade print is seen in _trades): what changed is
        known without update objects, so a loop with no subscriber pays nearly nothing."""
        self._dirty_book |= book
        self._dirty_lite |= top
        self._flush()

    def _trades(self, trades: list[Trade]) -> None:
        for trade in trades:
            self._dirty_lite.add(trade.market)  # lastTradePx, and the book's stats
            self._dirty_book.add(trade.market)
            listeners = self._wanted.get(trade.market, {}).get("SUBSCRIPTION_TYPE_TRADE")
            if not listeners:
                continue
            payload = _encode(self._trade_payload(trade)).decode()
            for session, request_ids in listeners.items():
                for request_id in request_ids:
                    session.push(_frame(request_id, "SUBSCRIPTION_TYPE_TRADE", "trade", payload))
        self._flush()

    def _trade_payload(self, trade: Trade) -> dict[str, Any]:
        view = self.ctx.marketdata.markets.get(trade.market) if self.ctx.marketdata else None
        tick = view.tick if view is not None and view.tick else 100
        return {
            "marketSlug": self.ctx.catalogue.slug(trade.market),
            "price": objects.price_amount(trade.price, tick),
            "quantity": wire.amount(wire.exact(trade.quantity, venue.QUANTITY_SCALE)),
            "tradeTime": wire.timestamp(trade.time_ns),
            "maker": {
                "side": venue.BOOK_SIDE[trade.maker_intent],
                "intent": venue.INTENT_NAMES[trade.maker_intent],
            },
            "taker": {
                "side": venue.BOOK_SIDE[trade.taker_intent],
                "intent": venue.INTENT_NAMES[trade.taker_intent],
            },
        }

    def _flush(self) -> None:
        book, self._dirty_book = self._dirty_book, set()
        lite, self._dirty_lite = self._dirty_lite, set()
        for market in book:
            self._send_book(market, "SUBSCRIPTION_TYPE_MARKET_DATA")
        for market in lite:
            self._send_book(market, "SUBSCRIPTION_TYPE_MARKET_DATA_LITE")

    def _payload(self, market: int, kind: str) -> str | None:
        view = self.ctx.marketdata.markets.get(market) if self.ctx.marketdata else None
        if view is None:
            return None
        slug = self.ctx.catalogue.slug(market)
        if kind == "SUBSCRIPTION_TYPE_MARKET_DATA":
            return _encode(book_payload(self.ctx, slug, view, None)).decode()
        return _encode(bbo_payload(self.ctx, slug, view, None)).decode()

    def _send_book(self, market: int, kind: str, only: Session | None = None) -> None:
        listeners = self._wanted.get(market, {}).get(kind)
        if not listeners:
            return
        payload = self._payload(market, kind)
        if payload is None:
            return
        key = "marketData" if kind == "SUBSCRIPTION_TYPE_MARKET_DATA" else "marketDataLite"
        for session, request_ids in listeners.items():
            if only is not None and session is not only:
                continue
            for request_id in request_ids:
                session.push_latest((request_id, market), _frame(request_id, kind, key, payload))

    def resend_all(self) -> None:
        """Every subscribed book and lite frame again (a market state change for all)."""
        for market in self._wanted:
            self._dirty_book.add(market)
            self._dirty_lite.add(market)
        self._flush()

    # ---------------------------------------------------------- sessions

    def subscribe(self, session: Session, sub: Subscription) -> None:
        assert sub.markets is not None
        for market in sub.markets:
            by_kind = self._wanted.setdefault(market, {})
            by_kind.setdefault(sub.kind, {}).setdefault(session, set()).add(sub.request_id)
        if sub.kind != "SUBSCRIPTION_TYPE_TRADE":
            for market in sorted(sub.markets):  # the current state first (spec §4.7)
                self._send_book(market, sub.kind, only=session)

    def unsubscribe(self, session: Session, sub: Subscription) -> None:
        for market in sub.markets or ():
            sessions = self._wanted.get(market, {}).get(sub.kind, {})
            request_ids = sessions.get(session)
            if request_ids is not None:
                request_ids.discard(sub.request_id)
                if not request_ids:
                    del sessions[session]

    def forget(self, session: Session) -> None:
        for sub in list(session.subscriptions.values()):
            self.unsubscribe(session, sub)


class PrivateHub:
    """Orders, positions and balances of each session's account."""

    def __init__(self, ctx: VenueContext) -> None:
        self.ctx = ctx
        self._listeners: dict[Session, Any] = {}
        self._balances: dict[Session, tuple[Any, asyncio.Task[None] | None, bool]] = {}

    def attach(self, session: Session) -> None:
        def changed(account: int, changes: list[Any]) -> None:
            self._changes(session, changes)

        self._listeners[session] = changed
        if self.ctx.history is not None:
            self.ctx.history.listen(session.account, changed)

    def detach(self, session: Session) -> None:
        listener = self._listeners.pop(session, None)
        if listener is not None and self.ctx.history is not None:
            self.ctx.history.unlisten(session.account, listener)
        state = self._balances.pop(session, None)
        if state is not None and state[1] is not None:
            state[1].cancel()

    def _changes(self, session: Session, changes: list[Any]) -> None:
        subs = session.subscriptions.values()
        facts_cache: dict[int, objects.MarketFacts] = {}
        for change in changes:
            if isinstance(change, Execution):
                market = change.order.market
                for sub in subs:
                    if sub.kind == "SUBSCRIPTION_TYPE_ORDER" and _covers(sub, market):
                        facts = self._facts(facts_cache, market)
                        unsolicited = self.ctx.unsolicited_cancel(change)
                        shown = objects.execution_object(change, facts, "", unsolicited)
                        payload = {"execution": shown}
                        session.push(
                            _frame(sub.request_id, sub.kind, "orderSubscriptionUpdate",
                                   _encode(payload).decode())
                        )  # fmt: skip
            elif isinstance(change, PositionChange | Resolution):
                market = change.market
                for sub in subs:
                    if sub.kind == "SUBSCRIPTION_TYPE_POSITION" and _covers(sub, market):
                        facts = self._facts(facts_cache, market)
                        payload = _position_update(change, facts)
                        session.push(
                            _frame(sub.request_id, sub.kind, "positionSubscription",
                                   _encode(payload).decode())
                        )  # fmt: skip
        if any(s.kind == "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE" for s in subs):
            entry = _entry_type(changes)
            if entry is not None:
                self.refresh_balance(session, entry)

    def _facts(self, cache: dict[int, objects.MarketFacts], market: int) -> objects.MarketFacts:
        facts = cache.get(market)
        if facts is None:
            spec = self.ctx.gateway.markets.get(market)
            facts = objects.MarketFacts(
                self.ctx.catalogue.market(market), spec.tick if spec else 100, 0, 0
            )
            cache[market] = facts
        return facts

    # ------------------------------------------------------------ balances

    async def _read_balance(self, account: int) -> Any:
        return await self.ctx.gateway.read(lambda engine: engine.balance(account))

    async def balance_snapshot(self, session: Session, request_id: str) -> None:
        balance = await self._read_balance(session.account)
        if balance is None:
            session.push(
                error_frame("no such account", request_id, "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE")
            )
            return
        shown = balance_object(int(balance.free), int(balance.reserved))
        _, task, again = self._balances.get(session, (None, None, False))
        self._balances[session] = (shown, task, again)
        session.push(
            _frame(request_id, "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE", "accountBalancesSnapshot",
                   _encode({"balances": [shown]}).decode())
        )  # fmt: skip

    def refresh_balance(self, session: Session, entry: str) -> None:
        """Read the balance again after a change (one read at a time per session)."""
        last, task, _ = self._balances.get(session, (None, None, False))
        if task is not None and not task.done():
            self._balances[session] = (last, task, True)  # read once more when it is done
            return
        task = asyncio.get_running_loop().create_task(self._balance_update(session, entry))
        self._balances[session] = (last, task, False)

    async def _balance_update(self, session: Session, entry: str) -> None:
        while True:
            try:
                balance = await self._read_balance(session.account)
            except Exception:
                return
            before, task, again = self._balances.get(session, (None, None, False))
            if balance is not None:
                after = balance_object(int(balance.free), int(balance.reserved))
                if after != before:
                    self._balances[session] = (after, task, False)
                    change = {
                        "balanceChange": {
                            "beforeBalance": before,
                            "afterBalance": after,
                            "description": _DESCRIPTIONS.get(entry, ""),
                            "updateTime": after["lastUpdated"],
                            "modifiedSecurityId": "",
                            "entryType": entry,
                            "accountName": "",
                            "id": "",
                        }
                    }
                    for sub in session.subscriptions.values():
                        if sub.kind == "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE":
                            session.push(
                                _frame(sub.request_id, sub.kind, "accountBalancesUpdate",
                                       _encode(change).decode())
                            )  # fmt: skip
            if not again:
                return

    # ------------------------------------------------------------ snapshot

    def order_snapshot(self, session: Session, sub: Subscription) -> None:
        history = self.ctx.history
        orders = (
            [o for o in history.account(session.account).orders.values() if o.open]
            if history is not None
            else []
        )
        facts_cache: dict[int, objects.MarketFacts] = {}
        chunk: list[str] = []
        size = 0
        for order in orders:
            if not _covers(sub, order.market):
                continue
            text = _encode(objects.order_object(order, self._facts(facts_cache, order.market)))
            if chunk and size + len(text) > SNAPSHOT_CHUNK:
                self._snapshot_frame(session, sub, chunk, False)
                chunk, size = [], 0
            chunk.append(text.decode())
            size += len(text)
        self._snapshot_frame(session, sub, chunk, True)

    def _snapshot_frame(self, session: Session, sub: Subscription, orders: list[str], eof: bool):
        payload = '{"orders":[' + ",".join(orders) + '],"eof":' + ("true" if eof else "false") + "}"
        session.push(_frame(sub.request_id, sub.kind, "orderSubscriptionSnapshot", payload))


_DESCRIPTIONS = {
    "LEDGER_ENTRY_TYPE_ORDER_EXECUTION": "Order execution",
    "LEDGER_ENTRY_TYPE_DEPOSIT": "Deposit",
    "LEDGER_ENTRY_TYPE_WITHDRAWAL": "Withdrawal",
    "LEDGER_ENTRY_TYPE_RESOLUTION": "Resolution",
}


def _entry_type(changes: Iterable[Any]) -> str | None:
    """The ledger entry type of a set of changes (None: the balance cannot have changed)."""
    entry = None
    for change in changes:
        if isinstance(change, Resolution):
            return "LEDGER_ENTRY_TYPE_RESOLUTION"
        if isinstance(change, CashChange):
            entry = (
                "LEDGER_ENTRY_TYPE_DEPOSIT" if change.amount > 0 else "LEDGER_ENTRY_TYPE_WITHDRAWAL"
            )
        elif isinstance(change, Execution | PositionChange) and entry is None:
            entry = "LEDGER_ENTRY_TYPE_ORDER_EXECUTION"  # fills, and reservations of orders
    return entry


def _covers(sub: Subscription, market: int) -> bool:
    return sub.markets is None or market in sub.markets


def _user_position(record: PositionRecord, facts: objects.MarketFacts) -> dict[str, Any]:
    return objects.position_object(
        record.yes, record.no, record.yes, record.no, record, facts, None, False
    )


def _position_update(
    change: PositionChange | Resolution, facts: objects.MarketFacts
) -> dict[str, Any]:
    from . import ids

    resolution = isinstance(change, Resolution)
    return {
        "beforePosition": _user_position(change.before, facts),
        "afterPosition": _user_position(change.after, facts),
        "updateTime": wire.timestamp(change.time_ns),
        "entryType": (
            "LEDGER_ENTRY_TYPE_RESOLUTION" if resolution else "LEDGER_ENTRY_TYPE_ORDER_EXECUTION"
        ),
        "tradeId": ids.trade_id(change.seq, change.index),
        "referenceId": "",
        "description": "Resolution" if resolution else "Order execution",
        "allocationGroupId": "",
        "transferReferenceTradeIds": [],
        "shortTransfer": False,
        "updateTradeDate": None,
    }


# ------------------------------------------------------------- the endpoints


class WebSocketApi:
    """The ASGI handlers of the two sockets."""

    def __init__(
        self,
        ctx: VenueContext,
        auth: VenueAuth,
        *,
        heartbeat_s: float = 10.0,
        max_queue: int = 4096,
        metrics: Any = None,
    ) -> None:
        self.ctx = ctx
        self.auth = auth
        self.heartbeat_s = heartbeat_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.markets = MarketsHub(ctx, metrics)
        self.private = PrivateHub(ctx)
        self.sessions: set[Session] = set()

    def register(self, app: Any) -> None:
        app.add_websocket("/v1/ws/markets", self.markets_socket)
        app.add_websocket("/v1/ws/private", self.private_socket)

    async def start(self) -> None:
        self.markets.start()

    async def stop(self) -> None:
        await self.markets.stop()
        for session in list(self.sessions):
            session.closed = True

    async def close_all(self, code: int = 1012, timeout: float = 2.0) -> None:
        """Close every connection once its queued frames are sent (maintenance, shutdown)."""
        sessions = list(self.sessions)
        for session in sessions:
            session.close_after(code)
        deadline = asyncio.get_running_loop().time() + timeout
        while any(not s.closed for s in sessions) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for session in sessions:
            if not session.closed:
                session._cut()

    async def markets_socket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._serve(scope, receive, send, "markets", MARKET_TYPES, PRIVATE_TYPES)

    async def private_socket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._serve(scope, receive, send, "private", PRIVATE_TYPES, MARKET_TYPES)

    async def _serve(
        self,
        scope: dict[str, Any],
        receive: Any,
        send: Any,
        endpoint: str,
        types: dict[Any, str],
        other: dict[Any, str],
    ) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        headers = upgrade_credentials(headers, scope.get("query_string", b""))
        try:
            key = await self.auth.authenticate(headers, "GET", scope["path"], "read")
        except ApiError as exc:
            await deny(send, exc.status, exc.body())
            return
        await send({"type": "websocket.accept"})
        abort = scope.get("extensions", {}).get("pyexchange.abort")
        session = Session(send, endpoint, account_of(key), self.max_queue, abort)
        self.sessions.add(session)
        if endpoint == "private":
            self.private.attach(session)
        if self.metrics is not None:
            self.metrics.websockets.labels(endpoint).inc()
        writer = asyncio.get_running_loop().create_task(session.writer())
        beat = asyncio.get_running_loop().create_task(self._heartbeat(session))
        try:
            while not session.closed:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message["type"] != "websocket.receive":
                    continue
                text = message.get("text")
                data = text if text is not None else message.get("bytes") or b""
                self._request(session, data, types, other)
        finally:
            session.closed = True
            self.sessions.discard(session)
            self.markets.forget(session)
            if endpoint == "private":
                self.private.detach(session)
            for task in (writer, beat):
                task.cancel()
            await asyncio.gather(writer, beat, return_exceptions=True)
            if self.metrics is not None:
                self.metrics.websockets.labels(endpoint).dec()
                self.metrics.websocket_frames.labels(endpoint).inc(session.sent)

    async def _heartbeat(self, session: Session) -> None:
        while not session.closed:
            await asyncio.sleep(self.heartbeat_s)
            session.push('{"heartbeat":{}}')

    def _request(
        self, session: Session, data: str | bytes, types: dict[Any, str], other: dict[Any, str]
    ) -> None:
        try:
            message = _decode(data)
        except (msgspec.DecodeError, RecursionError):
            session.push(error_frame("the message is not JSON"))
            return
        if not isinstance(message, dict):
            session.push(error_frame('a message is {"subscribe": ...} or {"unsubscribe": ...}'))
            return
        if "unsubscribe" in message:
            body = message["unsubscribe"]
            request_id = _field(body, "requestId", "request_id")
            sub = (
                session.subscriptions.pop(request_id, None) if isinstance(request_id, str) else None
            )
            if sub is not None and session.endpoint == "markets":
                self.markets.unsubscribe(session, sub)
            return
        body = message.get("subscribe")
        if not isinstance(body, dict):
            session.push(error_frame('a message is {"subscribe": ...} or {"unsubscribe": ...}'))
            return
        request_id = _field(body, "requestId", "request_id")
        if not isinstance(request_id, str) or not request_id or len(request_id) > 128:
            session.push(error_frame("requestId is required"))
            return
        raw_type = _field(body, "subscriptionType", "subscription_type")
        kind = types.get(raw_type) if isinstance(raw_type, str | int) else None
        if kind is None:
            where = (
                "the other socket's"
                if isinstance(raw_type, str | int) and raw_type in other
                else "an unknown"
            )
            shown = str(raw_type)[:64]
            session.push(error_frame(f"{shown} is {where} subscription type", request_id, shown))
            return
        slugs = _field(body, "marketSlugs", "market_slugs") or []
        if not isinstance(slugs, list) or not all(isinstance(s, str) for s in slugs):
            session.push(error_frame("marketSlugs must be a list of slugs", request_id, kind))
            return
        if len(slugs) > MAX_MARKETS:
            session.push(
                error_frame(f"at most {MAX_MARKETS} markets per subscription", request_id, kind)
            )
            return
        markets = set()
        for slug in slugs:
            market = self.ctx.catalogue.by_slug(slug)
            if market is None or self.ctx.gateway.markets.get(market) is None:
                session.push(error_frame(f"unknown market {slug[:64]!r}", request_id, kind))
                return
            markets.add(market)
        old = session.subscriptions.pop(request_id, None)  # the same id again: replaced
        if old is not None and session.endpoint == "markets":
            self.markets.unsubscribe(session, old)
        if session.endpoint == "markets":
            if kind == "SUBSCRIPTION_TYPE_TRADE" and self.ctx.history is None:
                session.push(error_frame(self.ctx.unserved, request_id, kind))  # no trades
                return
            if not markets:
                session.push(error_frame("marketSlugs is required", request_id, kind))
                return
            sub = Subscription(request_id, kind, frozenset(markets))
            session.subscriptions[request_id] = sub
            self.markets.subscribe(session, sub)
            return
        if self.ctx.history is None:  # no order history: nothing would ever come
            session.push(error_frame(self.ctx.unserved, request_id, kind))
            return
        sub = Subscription(request_id, kind, frozenset(markets) if markets else None)
        if kind == "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT":  # one-shot: nothing follows
            self.private.order_snapshot(session, sub)
            return
        session.subscriptions[request_id] = sub
        if kind == "SUBSCRIPTION_TYPE_ACCOUNT_BALANCE":
            asyncio.get_running_loop().create_task(
                self.private.balance_snapshot(session, request_id)
            )


def _field(body: Any, camel: str, snake: str) -> Any:
    if not isinstance(body, dict):
        return None
    return body.get(camel, body.get(snake))
