"""Market data (pyexchange.feeds.marketdata): books rebuilt from a subscription equal the engine's.

The publisher is driven by a real engine running ``matchcore.testing.random_stream``
in random batches. A client-side model (``BookModel``) rebuilds each market's book
from what a subscription delivers — a snapshot, then level updates — checking that
``market_seq`` goes up by exactly one per message of a market, and after every batch
the rebuilt book must equal ``engine.book()``, level for level (price, orders,
quantity), along with the market status and the best bid/offer. Slow subscribers are
conflated (a fresh snapshot, notice CONFLATED) or dropped (notice DROPPED), and the
sequencer's side (``on_events``) does the same work whatever the subscribers do.
"""

from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from service_support import calls_made

from matchcore import Engine, make_commands
from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange import Exchange
from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.marketdata import MarketDataService, WireCache, to_proto
from pyexchange.feeds.marketdata import MarketDataPublisher
from pyexchange.units import parse_price, parse_quantity

# --------------------------------------------------------------- helpers


def batches(stream: np.ndarray, rng: random.Random, largest: int = 40) -> list[np.ndarray]:
    out, i = [], 0
    while i < len(stream):
        n = rng.randint(1, largest)
        out.append(stream[i : i + n])
        i += n
    return out


@dataclass
class MarketModel:
    seq: int = 0
    bids: dict[int, tuple[int, int]] = field(default_factory=dict)  # price -> (count, qty)
    asks: dict[int, tuple[int, int]] = field(default_factory=dict)
    state: int = 0
    tick: str = ""
    bbo: pb.BestBidOffer | None = None


class BookModel:
    """What a market-data client keeps: books from snapshots and level updates."""

    def __init__(self) -> None:
        self.markets: dict[int, MarketModel] = {}
        self.notices: list[str] = []
        self.messages = 0

    def apply(self, update: Any) -> None:
        """A message from the wire, or a feed update as the gRPC API shows it."""
        msg = update if isinstance(update, pb.MarketDataUpdate) else to_proto(update)
        self.messages += 1
        if msg.notice:
            self.notices.append(msg.notice)
        kind = msg.WhichOneof("update")
        if kind is None:
            return
        if kind == "snapshot":
            snap = msg.snapshot
            model = self.markets[msg.market] = MarketModel(msg.market_seq)
            for side, levels in ((model.bids, snap.bids), (model.asks, snap.asks)):
                for level in levels:
                    side[parse_price(level.price, 1)] = (
                        level.orders,
                        parse_quantity(level.quantity),
                    )
            model.state, model.tick = snap.state, snap.tick
            return
        model = self.markets[msg.market]  # an update never comes before its snapshot
        assert msg.market_seq == model.seq + 1, (msg.market, model.seq, msg.market_seq)
        model.seq = msg.market_seq
        if kind == "level":
            side = model.bids if msg.level.bid else model.asks
            price = parse_price(msg.level.price, 1)
            quantity = parse_quantity(msg.level.quantity, 1) if msg.level.quantity != "0" else 0
            if quantity:
                side[price] = (msg.level.orders, quantity)
            else:
                assert msg.level.orders == 0
                side.pop(price, None)
        elif kind == "status":
            model.state, model.tick = msg.status.state, msg.status.tick
        elif kind == "bbo":
            model.bbo = msg.bbo

    def book(self, market: int) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        model = self.markets[market]
        bids = [(p, *model.bids[p]) for p in sorted(model.bids, reverse=True)]
        asks = [(p, *model.asks[p]) for p in sorted(model.asks)]
        return bids, asks


def engine_book(engine: Any, market: int) -> tuple[list[Any], list[Any]]:
    bids, asks = engine.book(market, depth=10_000)
    return [tuple(x) for x in bids.tolist()], [tuple(x) for x in asks.tolist()]


def assert_same(model: BookModel, engine: Any, markets: list[int] | None = None) -> None:
    created = [m for m in range(engine.capacities["max_markets"]) if engine.market(m)]
    for market in markets if markets is not None else created:
        assert market in model.markets, market
        assert model.book(market) == engine_book(engine, market), market
        info = engine.market(market)
        mm = model.markets[market]
        assert mm.state == info.state
        best = engine.best(market)
        if mm.bbo is not None:  # the last BBO sent is the book's best
            got = (
                parse_price(mm.bbo.bid_price, 1) if mm.bbo.bid_price else 0,
                parse_quantity(mm.bbo.bid_quantity) if mm.bbo.bid_price else 0,
                parse_price(mm.bbo.ask_price, 1) if mm.bbo.ask_price else 0,
                parse_quantity(mm.bbo.ask_quantity) if mm.bbo.ask_price else 0,
            )
            assert got == tuple(best), market


async def take_ready(pub: MarketDataPublisher, sub: Any, gen: Any, model: BookModel) -> int:
    """Consume what the subscriber has ready without waiting; how many messages."""
    n = 0
    while sub.queue or sub.conflated or sub.dropped:
        try:
            msg = await anext(gen)
        except StopAsyncIteration:
            break
        model.apply(msg)
        n += 1
    return n


def new_engine(shape: StreamShape) -> Engine:
    return Engine(**engine_capacities(shape))


# ----------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", range(4))
def test_subscription_rebuilds_the_engine_book_after_every_batch(seed: int) -> None:
    shape = StreamShape(ledger=seed % 2 == 0)
    stream = random_stream(seed, 3_000, shape)
    rng = random.Random(seed)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        everything = pub.subscribe()  # every market, also those created later
        all_model, all_gen = BookModel(), pub.stream(everything)
        late: list[tuple[Any, Any, BookModel, list[int]]] = []
        for i, batch in enumerate(batches(stream, rng)):
            events = engine.process(batch)
            pub.on_events(batch, events)
            pub.drain()
            if i in (5, 40, 200) and pub.markets:  # subscribers joining mid-stream
                markets = sorted(rng.sample(sorted(pub.markets), k=min(2, len(pub.markets))))
                sub = pub.subscribe(markets)
                late.append((sub, pub.stream(sub), BookModel(), markets))
            await take_ready(pub, everything, all_gen, all_model)
            assert_same(all_model, engine)
            for sub, gen, model, markets in late:
                await take_ready(pub, sub, gen, model)
                assert_same(model, engine, markets)
        assert not all_model.notices
        assert pub.updates > 0

    asyncio.run(main())


def test_market_seq_counts_every_update_of_the_market() -> None:
    """Two subscribers of one market see the same numbered messages; the seq is shared."""
    shape = StreamShape()
    stream = random_stream(11, 1_500, shape)
    rng = random.Random(11)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        setup = len(stream) - 1_500
        engine_batches = batches(stream[setup:], rng)
        pub.on_events(stream[:setup], engine.process(stream[:setup]))
        pub.drain()
        a, b = pub.subscribe([0]), pub.subscribe([0, 1])
        got: dict[str, list[tuple[int, str]]] = {"a": [], "b": []}
        gens = {"a": (a, pub.stream(a)), "b": (b, pub.stream(b))}
        for batch in engine_batches:
            pub.on_events(batch, engine.process(batch))
            pub.drain()
            for name, (sub, gen) in gens.items():
                while sub.queue:
                    msg = await anext(gen)
                    if msg.market == 0:
                        got[name].append((msg.market_seq, to_proto(msg).WhichOneof("update")))
        assert got["a"] == got["b"]
        seqs = [s for s, _ in got["a"]]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert {"level", "trade", "bbo"} <= {k for _, k in got["a"]}

    asyncio.run(main())


def test_a_watcher_is_told_what_a_subscriber_of_everything_sees_change() -> None:
    """``watch``: after each batch, the markets whose levels, state or BBO changed (book)
    and whose state or BBO changed (top): what the updates of a subscriber of every market
    say, trade prints aside; after a reload every market."""
    shape = StreamShape()
    stream = random_stream(5, 2_000, shape)
    rng = random.Random(5)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        told: list[tuple[set[int], set[int]]] = []
        pub.watch(lambda book, top: told.append((set(book), set(top))))
        everything = pub.subscribe()
        gen = pub.stream(everything)
        while everything.queue:
            await anext(gen)
        for batch in batches(stream, rng):
            pub.on_events(batch, engine.process(batch))
            pub.drain()
            book: set[int] = set()
            top: set[int] = set()
            while everything.queue:
                kind = to_proto(msg := await anext(gen)).WhichOneof("update")
                if kind != "trade":
                    book.add(msg.market)
                if kind not in ("trade", "level"):
                    top.add(msg.market)
            if book:
                assert told.pop() == (book, top)
            assert not told
        pub.unwatch(told.append)  # not one of them: nothing happens
        pub.load(engine)
        pub.drain()
        assert told == [(set(pub.markets), set(pub.markets))]

    asyncio.run(main())


def test_slow_subscriber_is_conflated_then_catches_up_exactly() -> None:
    shape = StreamShape()
    stream = random_stream(3, 4_000, shape)
    rng = random.Random(3)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher(queue_limit=50, drop_limit=10**9)
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        setup = len(stream) - 4_000
        pub.on_events(stream[:setup], engine.process(stream[:setup]))
        pub.drain()
        all_batches = [stream[:0], *batches(stream[setup:], rng, 10)]
        sub = pub.subscribe()
        model, gen = BookModel(), pub.stream(sub)
        for round_ in range(6):
            # The consumer sleeps through many batches: its queue never passes the limit.
            for batch in all_batches[1 + round_ * 40 : 1 + (round_ + 1) * 40]:
                pub.on_events(batch, engine.process(batch))
                pub.drain()
                assert len(sub.queue) <= 50
            assert sub.conflated and not sub.dropped
            await take_ready(pub, sub, gen, model)
            assert_same(model, engine)
        assert sub.conflations >= 6
        assert model.notices.count("CONFLATED") >= 6
        # After the last conflation it keeps up: every update, in order.
        for batch in all_batches[241:]:
            pub.on_events(batch, engine.process(batch))
            pub.drain()
            await take_ready(pub, sub, gen, model)
            assert_same(model, engine)

    asyncio.run(main())


def test_stalled_subscriber_is_dropped_with_a_notice() -> None:
    shape = StreamShape()
    stream = random_stream(4, 2_000, shape)
    rng = random.Random(4)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher(queue_limit=100, drop_limit=200)
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        all_batches = batches(stream, rng)
        pub.on_events(all_batches[0], engine.process(all_batches[0]))
        pub.drain()
        stalled, keeping_up = pub.subscribe(), pub.subscribe()
        model, gen = BookModel(), pub.stream(keeping_up)
        for batch in all_batches[1:]:
            pub.on_events(batch, engine.process(batch))
            pub.drain()
            await take_ready(pub, keeping_up, gen, model)
        assert stalled.dropped and not stalled.queue
        messages = [m async for m in pub.stream(stalled)]
        assert [m.notice for m in messages] == ["DROPPED"]
        assert stalled not in pub._everything  # unsubscribed when the stream ended
        assert not keeping_up.dropped and not model.notices
        assert_same(model, engine)

    asyncio.run(main())


def test_on_events_work_does_not_depend_on_subscribers_or_batch_size() -> None:
    """The sequencer's side makes the same calls whatever the subscribers and the batch."""
    shape = StreamShape()
    stream = random_stream(5, 3_000, shape)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher(queue_limit=10, drop_limit=10**9)
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        setup = len(stream) - 3_000
        pub.on_events(stream[:setup], engine.process(stream[:setup]))
        pub.drain()
        counts = []
        for size, subscribers in ((1, 0), (1, 300), (2_000, 300), (500, 0)):
            for _ in range(subscribers):
                pub.subscribe()  # never read: stalled
            batch = stream[setup : setup + size]
            setup += size
            events = engine.process(batch)
            pub.drain()  # nothing pending: on_events will schedule a drain
            counts.append(calls_made(pub.on_events, batch, events))
            pub.drain()
        # A few calls (a deque append, waking the loop), never one per subscriber (300
        # here) or per event (thousands).
        assert max(counts) < 40, counts

    asyncio.run(main())


def test_on_events_never_waits_for_the_loop() -> None:
    """With the loop busy (not draining), on_events still returns at once: the inbox grows."""
    shape = StreamShape()
    stream = random_stream(6, 2_000, shape)

    async def main() -> None:
        engine = new_engine(shape)
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        done = threading.Event()

        def sequencer() -> None:  # another thread, as the sequencer is
            for batch in batches(stream, random.Random(6)):
                pub.on_events(batch, engine.process(batch))
            done.set()

        thread = threading.Thread(target=sequencer)
        thread.start()
        thread.join()  # the loop is blocked here the whole time: nothing drained
        assert done.is_set() and len(pub._inbox) > 0
        sub_model = BookModel()
        await asyncio.sleep(0)  # now the loop runs the scheduled drain
        assert not pub._inbox
        sub = pub.subscribe()
        gen = pub.stream(sub)
        await take_ready(pub, sub, gen, sub_model)
        assert_same(sub_model, engine)

    asyncio.run(main())


def test_with_the_exchange_loaded_between_batches(tmp_path: Any) -> None:
    """attach(loop, exchange): the initial read runs on the sequencer thread (query)."""
    shape = StreamShape()
    stream = random_stream(8, 2_000, shape)
    caps = engine_capacities(shape)
    from pyexchange import EngineConfig

    async def main() -> None:
        loop = asyncio.get_running_loop()
        pub = MarketDataPublisher()
        exchange = Exchange.open(
            tmp_path, EngineConfig(**caps), on_events=pub.on_events, idle_tick_ns=None
        )
        try:
            rng = random.Random(8)
            parts = batches(stream, rng, 60)
            head = len(parts) // 3
            for batch in parts[:head]:  # before market data is attached: covered by the load
                exchange.execute(batch)
            pub.attach(loop, exchange)
            assert await pub.ready(10)
            sub = pub.subscribe()
            model = BookModel()
            consumed = asyncio.Event()

            async def consume() -> None:
                async for msg in pub.stream(sub):
                    model.apply(msg)
                    if consumed.is_set():
                        return

            task = asyncio.ensure_future(consume())
            futures = [exchange.submit(b) for b in parts[head:]]  # from this thread
            for f in futures:
                await asyncio.wrap_future(f)
            last = await asyncio.wrap_future(exchange.query(lambda e: e.book(0, 10_000)))
            # Everything published has been drained once the loop has run the drain.
            while pub._inbox or pub._scheduled:
                await asyncio.sleep(0.01)
            while sub.queue:
                await asyncio.sleep(0.01)
            consumed.set()
            task.cancel()
            engine = exchange.engine
            assert [tuple(x) for x in last[0].tolist()] == model.book(0)[0]
            assert_same(model, engine)
        finally:
            exchange.close()

    asyncio.run(main())


# ----------------------------------------------------------------- service


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, details)
        self.code = code


class FakeContext:
    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)

    def invocation_metadata(self) -> tuple[()]:
        return ()


class StandInAuthenticator:
    """Records the permission asked for; refuses when told to."""

    def __init__(self, refuse: bool = False) -> None:
        self.asked: list[str | None] = []
        self.refuse = refuse

    async def authenticate(self, context: Any, request: Any, permission: str | None) -> Any:
        self.asked.append(permission)
        if self.refuse:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "no")
        return object()


def test_service_get_book_and_subscribe() -> None:
    async def main() -> None:
        engine = Engine(max_orders=64, max_markets=4, max_accounts=8, ledger=False)
        engine.create_market(1, 100)
        engine.set_market_state(1, 2)
        engine.add_account(1)
        for price in (4000, 4100, 4200, 4300):
            engine.submit(1, 1, 0, price, 500)  # BUY_YES: bids
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        auth = StandInAuthenticator()
        service = MarketDataService(pub, auth)
        ctx = FakeContext()
        reply = await service.GetBook(pb.SubscribeMarketDataRequest(markets=[1], depth=2), ctx)
        assert [lv.price for lv in reply.snapshot.bids] == ["0.43", "0.42"]
        assert reply.snapshot.state == pb.OPEN and reply.snapshot.tick == "0.01"
        with pytest.raises(Aborted) as err:
            await service.GetBook(pb.SubscribeMarketDataRequest(markets=[3]), ctx)
        assert err.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(Aborted) as err:
            await service.GetBook(pb.SubscribeMarketDataRequest(markets=[1, 1]), ctx)
        assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        stream = service.Subscribe(pb.SubscribeMarketDataRequest(markets=[1]), ctx)
        first = pb.MarketDataUpdate.FromString(await anext(stream))  # serialized: no serializer
        assert first.WhichOneof("update") == "snapshot" and len(first.snapshot.bids) == 4
        cmd = make_commands([{"type": 2, "account": 1, "order_id": 1, "seq": 9}])
        pub.on_events(cmd, engine.process(cmd))
        pub.drain()
        level = pb.MarketDataUpdate.FromString(await anext(stream))
        assert level.level.price == "0.4" and level.level.quantity == "0"
        assert level.market_seq == first.market_seq + 1 and level.engine_seq == 9
        await stream.aclose()
        assert not pub.markets[1].subscribers
        assert auth.asked == ["read"] * 4
        with pytest.raises(Aborted):
            await anext(
                MarketDataService(pub, StandInAuthenticator(True)).Subscribe(
                    pb.SubscribeMarketDataRequest(), ctx
                )
            )

    asyncio.run(main())


def test_service_converts_an_update_once_for_every_stream() -> None:
    """The feed's update objects are shared by the subscribers: gRPC serializes each once."""

    async def main() -> None:
        engine = Engine(max_orders=64, max_markets=4, max_accounts=8, ledger=False)
        engine.create_market(1, 100)
        engine.set_market_state(1, 2)
        engine.add_account(1)
        pub = MarketDataPublisher()
        pub.attach(asyncio.get_running_loop(), engine)
        pub.drain()
        service = MarketDataService(pub, StandInAuthenticator())
        ctx = FakeContext()
        streams = [service.Subscribe(pb.SubscribeMarketDataRequest(), ctx) for _ in range(3)]
        snapshots = [await anext(s) for s in streams]
        assert len({id(s) for s in snapshots}) == 3  # one snapshot each
        cmd = make_commands(
            [{"type": 1, "account": 1, "market": 1, "price": 4000, "quantity": 500, "seq": 2}]
        )
        pub.on_events(cmd, engine.process(cmd))
        pub.drain()
        levels = [await anext(s) for s in streams]
        assert levels[0] is levels[1] is levels[2]
        level = pb.MarketDataUpdate.FromString(levels[0])
        assert level.WhichOneof("update") == "level" and level.level.price == "0.4"
        for s in streams:
            await s.aclose()

    asyncio.run(main())


def test_wire_cache_serializes_again_what_it_no_longer_holds() -> None:
    from pyexchange.feeds.updates import LevelChange

    cache = WireCache(size=2)
    updates = [LevelChange(1, seq, seq, True, 5000, 100, 1) for seq in range(1, 7)]
    first = [cache.get(u) for u in updates]
    assert [pb.MarketDataUpdate.FromString(m).market_seq for m in first] == [1, 2, 3, 4, 5, 6]
    assert cache.get(updates[-1]) is first[-1] and cache.get(updates[-3]) is first[-3]
    again = cache.get(updates[0])  # two generations of two: long gone
    assert again is not first[0] and again == first[0]
