"""Market data and drop copy end to end: a real server on a free loopback port, real clients.

Traders place, cancel and replace random orders over gRPC; a viewer's market-data
subscription must rebuild exactly the engine's book (``book()``), also after a gap
forced on the client side (one message dropped, seen by ``market_seq``, then a new
subscription); a trader's drop copy, cut off and resumed from a sequence number (also
across a server restart), must deliver exactly its account's events, each once.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from service_support import Harness, LoopThread, start_harness, wait_until
from test_marketdata import BookModel

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.app.server import ExchangeServer
from pyexchange.feeds.dropcopy import DropCopyPublisher, events_for
from pyexchange.feeds.marketdata import MarketDataPublisher

MARKETS = [1, 2]
INTENTS = ["BUY_YES", "SELL_YES", "BUY_NO", "SELL_NO"]


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def h(loop: LoopThread, tmp_path: Path):
    harness = start_harness(loop, tmp_path / "data")
    yield harness
    harness.close()


def publisher(server: ExchangeServer, kind: type) -> Any:
    return next(p for p in server.publishers if isinstance(p, kind))


async def trade(traders: dict[int, ExchangeClient], rng: random.Random, count: int) -> int:
    """Random limit orders, cancels and replaces; the last seq acknowledged."""
    resting: list[tuple[int, int]] = []  # (account, order id)
    last = 0
    for _ in range(count):
        roll = rng.random()
        if resting and roll < 0.2:
            account, order_id = resting.pop(rng.randrange(len(resting)))
            reply = await traders[account].cancel(account, order_id)
        elif resting and roll < 0.3:
            account, order_id = rng.choice(resting)
            price = f"0.{rng.randint(40, 60)}"
            reply = await traders[account].replace(account, order_id, price=price)
        else:
            account = rng.choice(sorted(traders))
            reply = await traders[account].place(
                account,
                rng.choice(MARKETS),
                rng.choice(INTENTS),
                f"0.{rng.randint(40, 60)}",
                str(rng.randint(1, 20)),
            )
            if reply.status == pb.RESTING:
                resting.append((account, reply.order_id))
        last = max(last, reply.seq)
    return last


async def books_match(h: Harness, model: BookModel) -> bool:
    def read(engine: Any) -> dict[int, Any]:
        out = {}
        for m in MARKETS:
            bids, asks = engine.book(m, 10_000)
            out[m] = ([tuple(x) for x in bids.tolist()], [tuple(x) for x in asks.tolist()])
        return out

    books = await h.server.query(read)
    return all(m in model.markets and model.book(m) == books[m] for m in MARKETS)


def test_market_data_rebuilds_the_engine_book_also_after_a_gap(h: Harness) -> None:
    viewer = h.client("viewer")
    traders = {a: h.client(f"trader-{a}") for a in (1, 2, 3, 4)}
    rng = random.Random(1)

    async def main() -> None:
        pub = publisher(h.server, MarketDataPublisher)
        snapshot = await viewer.book(1)
        assert snapshot.WhichOneof("update") == "snapshot"
        model = BookModel()
        gaps = 0
        drop_at = 40  # the client loses its 40th level update

        async def consume() -> None:
            nonlocal model, gaps
            seen_levels = 0
            while True:
                call = viewer.subscribe_market_data(MARKETS)
                model = BookModel()
                gap = False
                async for msg in call:
                    kind = msg.WhichOneof("update")
                    if kind == "level":
                        seen_levels += 1
                        if seen_levels == drop_at:
                            continue  # lost on the way: the next message shows the gap
                    known = model.markets.get(msg.market)
                    if kind != "snapshot" and known and msg.market_seq != known.seq + 1:
                        gap = True
                        break
                    model.apply(msg)
                call.cancel()
                if not gap:
                    return
                gaps += 1

        task = asyncio.ensure_future(consume())
        await wait_until(lambda: len(model.markets) == len(MARKETS))
        await trade(traders, rng, 150)

        def caught_up() -> bool:  # a trade print or BBO can trail a matching book
            same_seq = all(model.markets[m].seq == pub.markets[m].seq for m in MARKETS)
            return same_seq and books_match(h, model)

        await wait_until(caught_up)
        assert gaps == 1  # detected by market_seq, then a fresh snapshot
        for m in MARKETS:  # and it has every update the publisher made
            assert model.markets[m].seq == pub.markets[m].seq
        await trade(traders, rng, 60)
        await wait_until(lambda: books_match(h, model))
        task.cancel()

    h.run(main(), timeout=120)


def _expected(pub: DropCopyPublisher, accounts: frozenset[int], after: int) -> list[Any]:
    return [
        (m.seq, m.index, m.account, m.kind)
        for item in pub.history(after)
        for m in events_for(item, accounts, after)
    ]


async def _read(client: ExchangeClient, from_seq: int, count: int) -> list[pb.DropCopyEvent]:
    call = client.drop_copy(from_seq)
    got: list[pb.DropCopyEvent] = []
    if count:
        async for event in call:
            got.append(event)
            if len(got) == count:
                break
    call.cancel()
    return got


def test_drop_copy_resumes_from_a_seq_after_reconnect_and_restart(
    loop: LoopThread, tmp_path: Path
) -> None:
    h = start_harness(loop, tmp_path / "data")
    traders = {a: h.client(f"trader-{a}") for a in (1, 2, 3, 4)}
    rng = random.Random(2)
    mine = frozenset({1})

    async def first_part() -> int:
        pub = publisher(h.server, DropCopyPublisher)
        last = await trade(traders, rng, 80)
        await wait_until(lambda: pub.written_seq >= last)
        want = _expected(pub, mine, 0)
        # A first connection from the start, cut off after 15 events...
        got = await _read(traders[1], 1, 15)
        assert [(m.seq, m.index, m.account, m.kind) for m in got] == want[:15]
        resume = got[-1].seq - 1  # the last command seen in full
        kept = [m for m in got if m.seq <= resume]
        # ... more trading while it is away, then it resumes from a seq.
        last = await trade(traders, rng, 40)
        await wait_until(lambda: pub.written_seq >= last)
        want = _expected(pub, mine, 0)
        rest = await _read(traders[1], resume, len(want) - len(kept))
        combined = [(m.seq, m.index, m.account, m.kind) for m in kept + rest]
        assert combined == want
        assert all(m.account == 1 for m in kept + rest)
        return last

    last = h.run(first_part(), timeout=120)
    for client in h.clients:
        h.run(client.close())
    h.clients.clear()
    h.run(h.server.stop())
    for p in h.server.publishers:  # the server does not close its publishers (yet)
        if hasattr(p, "close"):
            p.close()

    h2 = start_harness(loop, tmp_path / "data")
    try:
        traders = {a: h2.client(f"trader-{a}") for a in (1, 2, 3, 4)}
        viewer = h2.client("viewer")

        async def after_restart() -> None:
            pub = publisher(h2.server, DropCopyPublisher)
            new_last = await trade(traders, rng, 40)
            await wait_until(lambda: pub.written_seq >= new_last)
            resume = last - 30  # a client that was away across the restart
            want = _expected(pub, mine, resume)
            got = await _read(traders[1], resume, len(want))
            assert [(m.seq, m.index, m.account, m.kind) for m in got] == want
            assert any(m.seq > last for m in got) and any(m.seq <= last for m in got)
            viewer_want = _expected(pub, frozenset({1, 2, 3, 4}), resume)
            viewer_got = await _read(viewer, resume, len(viewer_want))
            assert [(m.seq, m.index, m.account, m.kind) for m in viewer_got] == viewer_want

        h2.run(after_restart(), timeout=120)
    finally:
        h2.close()
