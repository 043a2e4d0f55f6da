"""One hand-over per sequenced batch (pyexchange/engine/handover.py).

The sequencer flushes the server's ``Handover`` after each batch and query: the
engine link's replies and the publishers' work for the loop go over in one
``call_soon_threadsafe``, in the order posted (publishers first), and the loop sees
a batch in the publishers before it sees the batch's replies.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import CommandType, Intent, MarketState, make_commands
from pyexchange.engine.exchange import Exchange
from pyexchange.engine.handover import Handover
from pyexchange.engine.journal import EngineConfig
from pyexchange.feeds.marketdata import MarketDataPublisher
from pyexchange.service import admin as sa
from pyexchange.service import orders as so
from pyexchange.service.auth import ADMIN, READ, TRADE, ApiKey
from pyexchange.service.link import EngineLink
from pyexchange.service.markets import Markets

CONFIG = EngineConfig(
    max_orders=1024,
    max_markets=8,
    max_accounts=16,
    max_levels=4096,
    max_positions=2048,
    ledger=True,
)
TRADER = ApiKey("t1", "s", frozenset({TRADE, READ}), frozenset({1}))
ADMIN_KEY = ApiKey("a", "s", frozenset({ADMIN, READ}))


class CountingLoop:
    """A loop's thread-safe scheduling, counted (the wake-ups of the loop)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.calls = 0

    def call_soon_threadsafe(self, fn: Any, *args: Any) -> Any:
        self.calls += 1
        return self.loop.call_soon_threadsafe(fn, *args)


def test_posted_calls_run_in_order_in_one_wake_up_and_a_failure_stays_its_own() -> None:
    loop = asyncio.new_event_loop()
    counting = CountingLoop(loop)
    handover = Handover(counting)  # type: ignore[arg-type]
    ran: list[int] = []

    def fail() -> None:
        raise RuntimeError("a consumer's bug")

    handover.flush()  # nothing posted: no wake-up
    assert counting.calls == 0
    handover.post(ran.append, 1)
    handover.post(fail)
    handover.post(ran.append, 2)
    handover.flush()
    assert counting.calls == 1 and not ran  # handed over, not run here
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2]
    loop.close()
    handover.post(ran.append, 3)
    handover.flush()  # a closed loop: dropped, never raised into the sequencer


class Served:
    """An exchange wired as the server wires it: one hand-over for the link and market data."""

    def __init__(self, data_dir: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.counting = CountingLoop(self.loop)
        self.handover = Handover(self.counting)  # type: ignore[arg-type]
        self.after_batch = 0
        self.markets = Markets()
        self.marketdata = MarketDataPublisher()

        def fan_out(commands: np.ndarray, events: np.ndarray) -> None:
            self.markets.on_events(commands, events)
            self.marketdata.on_events(commands, events)

        def flush() -> None:
            self.after_batch += 1
            self.handover.flush()

        self.exchange = Exchange.open(
            data_dir, CONFIG, on_events=fan_out, idle_tick_ns=None, after_batch=flush
        )
        self.link = EngineLink(self.exchange, self.markets, handover=self.handover)
        self.entry = so.OrderEntry(self.link)
        self.admin = sa.Admin(self.link)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.run(self._attach())

    async def _attach(self) -> None:
        self.marketdata.attach(self.loop, self.exchange, handover=self.handover)
        assert await self.marketdata.ready(10)

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.exchange.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def test_a_batch_wakes_the_loop_once_and_market_data_has_it_before_the_reply(
    tmp_path: Path,
) -> None:
    s = Served(tmp_path / "data")
    try:
        for request in (
            sa.CreateMarket(market=1, tick="0.01"),
            sa.SetMarketState(market=1, state=MarketState.OPEN),
            sa.AddAccount(account=1),
            sa.Deposit(account=1, amount="1000"),
        ):
            assert s.run(s.admin.call(ADMIN_KEY, request)).ok
        seen: list[Any] = []

        async def place() -> so.OrderReply:
            done = asyncio.get_running_loop().create_future()

            def answered(results: list[Any]) -> None:  # on the loop, with the reply
                view = s.marketdata.markets[1]
                seen.append((dict(view.bids), s.marketdata.batches))
                done.set_result(results[0])

            wakes, batches = s.counting.calls, s.after_batch
            order = so.Place(account=1, market=1, intent=Intent.BUY_YES, price="0.40", quantity="2")
            s.entry.submit(TRADER, [order], answered)
            reply = await done
            seen.append((s.counting.calls - wakes, s.after_batch - batches))
            return reply

        reply = s.run(place())
        assert reply.status == so.OrderStatus.RESTING
        (bids, _), (wakes, batches) = seen
        assert bids == {4_000: (200, 1)}  # the book had the order when the reply came
        assert batches == 1 and wakes == 1  # replies and market data: one wake-up
    finally:
        s.close()


def test_the_sequencer_flushes_after_each_batch_and_query(tmp_path: Path) -> None:
    flushed: list[str] = []
    exchange = Exchange.open(
        tmp_path / "data",
        CONFIG,
        idle_tick_ns=None,
        after_batch=lambda: flushed.append(threading.current_thread().name),
    )
    try:
        exchange.execute(make_commands([{"type": CommandType.ADD_ACCOUNT, "account": 1}]))
        exchange.query(lambda engine: None).result(10)
    finally:
        exchange.close()
    assert flushed == ["sequencer", "sequencer"]
