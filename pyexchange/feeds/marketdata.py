"""Market data: L2 books, trades, best bid/offer and market status, per-market sequence numbers.

Subscribers get the plain update objects of ``updates.py`` (the core's units, no
transport); each API renders them (docs/publishers.md).

Threads (docs/service.md, "the sequencer thread is sacred"):

- ``on_events(commands, events)`` runs on the sequencer thread after every
  batch. It only appends the batch's event array to an inbox (a deque) and, if
  no drain is pending, posts ``drain`` to the server's ``Handover``
  (``attach(..., handover=)``), which wakes the loop once after the batch for
  every consumer together (``pyexchange/engine/handover.py``); without one it
  calls ``loop.call_soon_threadsafe(drain)`` itself. A constant amount of work
  per batch, whatever the batch size and whatever the subscribers do
  (measured: see ``docs/publishers.md``).
- Everything else happens on the asyncio loop, which owns all market-data
  state: ``drain()`` applies each batch in order — ``LEVEL`` events set the
  level's new total and order count, ``TRADE`` events become trade prints,
  ``MARKET`` events the market's status, and after each batch the best bid and
  offer of every market the batch touched is compared with the last one sent
  — giving each update the market's next sequence number (+1 per update of
  that market), then hands the updates to the market's subscribers. A
  snapshot is read from the same state on the same thread, so a snapshot at
  market seq ``n`` is followed by exactly the updates ``n + 1, n + 2, ...``:
  no lock, no race.

Initial state. The books start from the engine, read where reading it is
safe: ``attach(loop, exchange)`` asks the sequencer to run the read between
two batches (``Exchange.query``), and the read is queued in the same inbox as
the batches, so the loop replaces its state with it and applies only the
batches that ran after it (those before it are already in it). With a bare
engine (``attach(loop, engine)`` or ``load(engine)``) the caller promises that
no batch runs during the read (tests, or before the sequencer starts). Until
the first read arrives, subscribers wait (``ready``).

Slow subscribers. Each subscriber has a bounded queue (``queue_limit``
messages). When an update would overflow it, the subscriber is **conflated**:
its pending updates are dropped, and it skips every update until its
consumer comes back for the next message, which is then a fresh snapshot of
each of its markets (notice ``CONFLATED``), followed by the updates after it.
If, while it waits for that snapshot, more than ``drop_limit`` updates pass
it by (its consumer is not reading at all), it is **dropped**: one message
with notice ``DROPPED`` and the stream ends. The engine is never slowed: the
sequencer never sees a subscriber.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from matchcore import Engine, EventType, MatchType, Side

from ..engine import records
from ..engine.handover import Handover
from .updates import (
    CONFLATED,
    BestBidOffer,
    BookSnapshot,
    Dropped,
    LevelChange,
    MarketDataMessage,
    MarketStatus,
    TradePrint,
)

log = logging.getLogger(__name__)

LEVEL = int(EventType.LEVEL)
TRADE = int(EventType.TRADE)
MARKET = int(EventType.MARKET)
BID = int(Side.BID)

_MATCH_NAMES = {int(m): m.name for m in MatchType}
# the fields market data reads, in the order of its row tuples (records.tuples)
_FIELDS = ("type", "market", "side", "price", "quantity", "count", "seq", "state", "reason",
           "match_type")  # fmt: skip
_TYPE, _MARKET, _SIDE, _PRICE, _QUANTITY, _COUNT, _SEQ, _STATE, _REASON, _MATCH = range(
    len(_FIELDS)
)
_MARKET_DATA = np.zeros(256, dtype=bool)  # event types market data reads
_MARKET_DATA[[LEVEL, TRADE, MARKET]] = True
_KINDS = frozenset((LEVEL, TRADE, MARKET))
_SMALL_BATCH = 64


@dataclass
class MarketView:
    """One market as market data sees it (owned by the asyncio loop)."""

    market: int
    seq: int = 0  # the market seq of the last update
    state: int = 0  # matchcore MarketState
    tick: int = 0
    outcome: int = 0
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)  # price -> (total, count)
    asks: dict[int, tuple[int, int]] = field(default_factory=dict)
    bid_prices: list[int] = field(default_factory=list)  # ascending; the best bid is last
    ask_prices: list[int] = field(default_factory=list)  # ascending; the best ask is first
    bbo: tuple[int, int, int, int] = (0, 0, 0, 0)  # (bid, bid qty, ask, ask qty), 0 = none
    subscribers: list[_Subscriber] = field(default_factory=list)

    def set_level(self, bid: bool, price: int, total: int, count: int) -> None:
        levels, prices = (self.bids, self.bid_prices) if bid else (self.asks, self.ask_prices)
        if total:
            if price not in levels:
                bisect.insort(prices, price)
            levels[price] = (total, count)
        elif levels.pop(price, None) is not None:
            del prices[bisect.bisect_left(prices, price)]

    def best(self) -> tuple[int, int, int, int]:
        bid = self.bid_prices[-1] if self.bid_prices else 0
        ask = self.ask_prices[0] if self.ask_prices else 0
        return (
            bid,
            self.bids[bid][0] if bid else 0,
            ask,
            self.asks[ask][0] if ask else 0,
        )

    def levels(
        self, depth: int = 0
    ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        """(bids, asks) as (price, total, count), best first, ``depth`` per side (0: all)."""
        bid_prices = self.bid_prices[::-1]
        ask_prices = self.ask_prices
        if depth:
            bid_prices, ask_prices = bid_prices[:depth], ask_prices[:depth]
        return (
            [(p, *self.bids[p]) for p in bid_prices],
            [(p, *self.asks[p]) for p in ask_prices],
        )

    def snapshot(self, depth: int = 0, notice: str = "") -> BookSnapshot:
        bids, asks = self.levels(depth)
        return BookSnapshot(
            self.market, self.seq, tuple(bids), tuple(asks), self.state, self.tick, notice
        )


@dataclass
class _Load:
    """The engine's markets and books at one point of the event stream."""

    markets: dict[int, MarketView]


def read_engine(engine: Engine) -> _Load:
    """Every created market of ``engine`` with its full book (call while no batch runs)."""
    markets: dict[int, MarketView] = {}
    for market in range(engine.capacities["max_markets"]):
        info = engine.market(market)
        if info is None:
            continue
        view = MarketView(market, state=int(info.state), tick=int(info.tick))
        view.outcome = int(info.outcome)
        bids, asks = engine.book(market, depth=10_000)
        for bid, levels in ((True, bids), (False, asks)):
            for price, count, total in levels.tolist():
                view.set_level(bid, price, total, count)
        view.bbo = view.best()
        markets[market] = view
    return _Load(markets)


class _Subscriber:
    """One subscription's bounded queue (used on the asyncio loop only)."""

    def __init__(self, markets: frozenset[int] | None, queue_limit: int, drop_limit: int) -> None:
        self.markets = markets  # None: every market
        self.queue: collections.deque[MarketDataMessage] = collections.deque()
        self.queue_limit = queue_limit
        self.drop_limit = drop_limit
        self.wake = asyncio.Event()
        self.conflated = False  # waiting for fresh snapshots; skipping updates
        self.missed = 0  # updates skipped since it was conflated
        self.dropped = False
        self.conflations = 0
        self.known: set[int] = set()  # markets it has had a snapshot of

    def offer(self, updates: list[MarketDataMessage]) -> None:
        if self.dropped:
            return
        if self.conflated:
            self.missed += len(updates)
            if self.missed > self.drop_limit:
                self.dropped = True
                self.queue.clear()
                self.wake.set()
            return
        if len(self.queue) + len(updates) > self.queue_limit:
            self.queue.clear()
            self.conflated = True
            self.conflations += 1
            self.missed = len(updates)
            self.wake.set()
            return
        self.queue.extend(updates)
        self.wake.set()


class EngineSource(Protocol):
    def query(self, fn: Any) -> Any: ...


class MarketDataPublisher:
    """L2 books, trades, BBO and status per market, fanned out to bounded subscriber queues."""

    def __init__(self, *, queue_limit: int = 10_000, drop_limit: int = 100_000) -> None:
        self.queue_limit = queue_limit
        self.drop_limit = drop_limit
        self.markets: dict[int, MarketView] = {}  # loop-owned state
        self.loaded = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._inbox: collections.deque[np.ndarray | _Load] = collections.deque()
        self._scheduled = False
        self._handover: Handover | None = None
        self._everything: list[_Subscriber] = []  # subscribers of every market
        self._watchers: list[Callable[[set[int], set[int]], None]] = []
        self.batches = 0  # batches applied (loop)
        self.updates = 0  # updates produced (loop)

    # ----------------------------------------------------- sequencer thread

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Hand a batch's events to the loop (sequencer thread; O(1), never blocks)."""
        if self._loop is None or not len(events):
            return  # nothing attached yet: the load at attach time covers this batch
        self._inbox.append(events)
        if not self._scheduled:
            self._scheduled = True
            if self._handover is not None:
                self._handover.post(self.drain)  # the loop wakes once, after the batch
            else:
                self._wake(self._loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody to deliver to
            loop.call_soon_threadsafe(self.drain)

    def _post_load(self, engine: Engine) -> None:
        """Read the engine into the inbox (sequencer thread between batches, or an idle engine)."""
        self._inbox.append(read_engine(engine))
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._wake(self._loop)  # a query or an idle engine: no batch flushes a hand-over

    # ----------------------------------------------------------- set-up

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        source: EngineSource | Engine | None = None,
        handover: Handover | None = None,
    ) -> None:
        """Deliver on ``loop``; start from ``source``: an Exchange (read between batches by
        ``query``) or an idle engine (read now). ``handover``: the sequencer's, for the loop
        (flushed after each batch). Call on the loop's thread or before it runs."""
        self._handover = handover
        self._loop = loop
        self._ready = asyncio.Event()
        if self.loaded:
            self._ready.set()
        if source is None:
            return
        query = getattr(source, "query", None)
        if query is not None:
            query(self._post_load)
        else:
            self._post_load(source)  # type: ignore[arg-type]

    def load(self, engine: Engine) -> None:
        """Start from ``engine`` now (no batch may run during the read); after ``attach``."""
        self._post_load(engine)

    async def ready(self, timeout: float | None = None) -> bool:
        """Wait until the initial state is in (False on timeout)."""
        if self.loaded:
            return True
        assert self._ready is not None, "attach() first"
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # ------------------------------------------------------------ the loop

    def drain(self) -> None:
        """Apply every queued batch in order and fan the updates out (loop thread)."""
        self._scheduled = False  # before taking: a batch appended after this gets a new drain
        inbox = self._inbox
        while inbox:
            item = inbox.popleft()
            if isinstance(item, _Load):
                self._apply_load(item)
            elif self.loaded:
                self._apply(item)

    def _apply_load(self, load: _Load) -> None:
        old = self.markets
        self.markets = load.markets
        for market, view in load.markets.items():
            before = old.get(market)
            if before is not None:  # a reload: keep the numbering going, resync subscribers
                view.seq = before.seq + 1
                view.subscribers = before.subscribers
                for sub in view.subscribers:
                    sub.offer([view.snapshot(notice=CONFLATED)])
        self.loaded = True
        if self._ready is not None:
            self._ready.set()
        if self._watchers:
            every = set(load.markets)
            self._tell(every, every)

    def _apply(self, events: np.ndarray) -> None:
        # the rows as tuples of _FIELDS: a small batch is filtered in Python (numpy's fancy
        # indexing of a record array costs more than converting the rows it drops)
        if len(events) <= _SMALL_BATCH:
            picked = [e for e in records.tuples(events, _FIELDS) if e[_TYPE] in _KINDS]
        else:
            rows = np.flatnonzero(_MARKET_DATA[events["type"]])
            picked = records.tuples(records.take(events, rows), _FIELDS)
        if not picked:
            return
        self.batches += 1
        out: dict[int, list[MarketDataMessage]] = {}
        touched: dict[int, MarketView] = {}
        views = self.markets
        watched = bool(self._watchers)
        book: set[int] = set()  # markets whose levels or state changed (for the watchers)
        top: set[int] = set()  # whose state or best bid and offer changed
        for e in picked:
            kind, market, side, price = e[_TYPE], e[_MARKET], e[_SIDE], e[_PRICE]
            view = views.get(market)
            if view is None:  # only a MARKET event (a new market) can bring one
                view = views[market] = MarketView(market)
            touched[market] = view
            view.seq += 1
            listening = view.subscribers or self._everything
            msg: MarketDataMessage
            if watched and kind != TRADE:
                book.add(market)
                if kind != LEVEL:
                    top.add(market)
            if kind == LEVEL:
                bid = side == BID
                view.set_level(bid, price, e[_QUANTITY], e[_COUNT])
                if not listening:
                    continue
                msg = LevelChange(market, view.seq, e[_SEQ], bid, price, e[_QUANTITY], e[_COUNT])
            elif kind == TRADE:
                if not listening:
                    continue
                msg = TradePrint(
                    market,
                    view.seq,
                    e[_SEQ],
                    price,
                    e[_QUANTITY],
                    _MATCH_NAMES[e[_MATCH]],
                    side == BID,
                )
            else:  # MARKET: state, tick (price) and outcome (reason) after the command
                view.state, view.tick, view.outcome = e[_STATE], price, e[_REASON]
                if not listening:
                    continue
                msg = MarketStatus(market, view.seq, e[_SEQ], view.state, view.tick, view.outcome)
            out.setdefault(market, []).append(msg)
        last_seq = picked[-1][_SEQ]
        for market, view in touched.items():
            bbo = view.best()
            if bbo != view.bbo:
                view.bbo = bbo
                view.seq += 1
                if watched:
                    book.add(market)
                    top.add(market)
                if view.subscribers or self._everything:
                    out.setdefault(market, []).append(
                        BestBidOffer(view.market, view.seq, last_seq, *bbo)
                    )
        self.updates += len(picked)
        if book:
            self._tell(book, top)
        for market, updates in out.items():
            view = views[market]
            for sub in view.subscribers:
                sub.offer(updates)
            for sub in self._everything:
                if market in sub.known:
                    sub.offer(updates)
                else:  # a market created since it subscribed: its snapshot first
                    sub.known.add(market)
                    sub.offer([view.snapshot()])

    def _tell(self, book: set[int], top: set[int]) -> None:
        for watcher in list(self._watchers):
            try:
                watcher(book, top)
            except Exception:
                log.exception("market data watcher failed")

    # ------------------------------------------------------- subscriptions

    def watch(self, watcher: Callable[[set[int], set[int]], None]) -> None:
        """``watcher(book, top)`` on the loop after each batch that changed markets: those
        whose levels or state changed and those whose state or best bid and offer did (every
        market after a reload). For one that only wants to know what changed: no update
        objects are built for it and it is never conflated, as a subscriber of every
        market would be (loop thread)."""
        self._watchers.append(watcher)

    def unwatch(self, watcher: Callable[[set[int], set[int]], None]) -> None:
        if watcher in self._watchers:
            self._watchers.remove(watcher)

    def book(self, market: int, depth: int = 0) -> BookSnapshot:
        """The current snapshot of ``market`` (loop thread); KeyError if unknown."""
        return self.markets[market].snapshot(depth)

    def subscribe(self, markets: Iterable[int] = ()) -> _Subscriber:
        """Register a subscriber; its queue starts with a snapshot of each market (loop thread).

        An empty ``markets`` means every market, present and future. KeyError for an
        unknown market.
        """
        wanted = sorted(set(markets))
        for market in wanted:
            if market not in self.markets:
                raise KeyError(market)
        sub = _Subscriber(frozenset(wanted) if wanted else None, self.queue_limit, self.drop_limit)
        chosen = wanted or sorted(self.markets)
        sub.queue.extend(self.markets[m].snapshot() for m in chosen)
        sub.known.update(chosen)
        if wanted:
            for market in wanted:
                self.markets[market].subscribers.append(sub)
        else:
            self._everything.append(sub)
        return sub

    def subscriber_count(self) -> int:
        """Subscribers now (one to several markets counts once; loop thread, for metrics)."""
        some = {id(sub) for view in self.markets.values() for sub in view.subscribers}
        return len(self._everything) + len(some)

    def unsubscribe(self, sub: _Subscriber) -> None:
        if sub.markets is None:
            with contextlib.suppress(ValueError):
                self._everything.remove(sub)
            return
        for market in sub.markets:
            view = self.markets.get(market)
            if view is not None:
                with contextlib.suppress(ValueError):
                    view.subscribers.remove(sub)

    async def stream(self, sub: _Subscriber) -> AsyncGenerator[MarketDataMessage, None]:
        """The subscriber's messages: snapshots, updates, CONFLATED snapshots, DROPPED."""
        try:
            while True:
                if sub.dropped:
                    yield Dropped()
                    return
                if sub.conflated:
                    # Taken now, on the loop, with the flag cleared in the same step:
                    # every update queued from here on follows these snapshots.
                    sub.conflated = False
                    sub.missed = 0
                    chosen = sorted(sub.markets if sub.markets is not None else self.markets)
                    sub.known.update(chosen)
                    fresh = [self.markets[m].snapshot(notice=CONFLATED) for m in chosen]
                    sub.queue.extendleft(reversed(fresh))
                if sub.queue:
                    yield sub.queue.popleft()
                    continue
                sub.wake.clear()
                await sub.wake.wait()
        finally:
            self.unsubscribe(sub)
