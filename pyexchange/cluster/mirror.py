"""A gateway's read replicas: every shard's state, followed from its command log.

A gateway answers order entry from its mirrors' events (``ShardLink.mirrored``:
the events of a stored message are fixed) and reads (an account's cash,
positions and open orders, a book, a market) from their state. A gateway keeps
a ``ShardMirror`` of each shard: the same ``ShardState`` an engine replica
holds, started from the shard's newest snapshot and fed the command log in
order, never leading and never publishing. The engine is deterministic, so a
mirror at message *n* is exactly the active engine at *n*.

``ClusterView`` answers the engine's read methods across the mirrors (cash
summed over shards, a market's book from its shard, cluster ids), so a service
layer query written for one engine, ``fn(engine)``, runs unchanged on it.
Before it runs, every mirror has applied at least every message the gateway
has answered (read your writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import nats
import numpy as np
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from matchcore import Balance, OrderInfo, Position, Totals

from . import log as L
from . import snapshots
from .router import cluster_id, split_id, to_cluster_events
from .shard import BATCH, Applied, ShardState

logger = logging.getLogger(__name__)

# (the mirror, stream seq, what the message produced, the events of the commands that
# ran, in cluster ids: ``Applied.ran_events``) after each applied message
Listener = Callable[["ShardMirror", int, Applied, np.ndarray], None]


class ShardMirror:
    def __init__(self, js: JetStreamContext, shard: int, layout: L.Layout) -> None:
        self.js = js
        self.shard = shard
        self.layout = layout
        self.state: ShardState | None = None
        self.listeners: list[Listener] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._watchers: list[tuple[Callable[[ShardState], bool], asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None

    @property
    def applied(self) -> int:
        return self.state.stream_seq if self.state is not None else 0

    async def start(self) -> ShardMirror:
        state = await snapshots.load(self.js, self.shard)
        if state is None:
            state = ShardState(self.shard, self.layout.shards, self.layout.engine.build())
        self.state = state
        sub = await self.js.subscribe(
            L.command_subject(self.shard),
            ordered_consumer=True,
            idle_heartbeat=1.0,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=nats.js.api.ConsumerConfig(opt_start_seq=state.stream_seq + 1),
            pending_msgs_limit=100_000,
            pending_bytes_limit=512 << 20,
        )
        self._task = asyncio.create_task(self._follow(sub), name=f"mirror-{self.shard}")
        return self

    async def _follow(self, sub: Any) -> None:
        state = self.state
        assert state is not None
        try:
            while True:
                msg = await sub.next_msg(timeout=None)
                seq = msg.metadata.sequence.stream
                if seq <= state.stream_seq:
                    continue  # delivered again after the consumer was re-created
                applied = state.apply(seq, (msg.headers or {}).get(L.KIND, BATCH), msg.data)
                if self.listeners:
                    events = to_cluster_events(applied.ran_events, self.shard)
                    for listener in self.listeners:
                        try:
                            listener(self, seq, applied, events)
                        except Exception:  # a feed's failure must not stop the mirror's reads
                            logger.exception("shard %d: a mirror listener failed", self.shard)
                self._release(seq)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    def _release(self, seq: int) -> None:
        if self._watchers:
            state = self.state
            self._watchers = [(d, f) for d, f in self._watchers if not _settle(d, f, state)]
        if not self._waiters:
            return
        keep = []
        for target, future in self._waiters:
            if target <= seq:
                if not future.done():
                    future.set_result(None)
            else:
                keep.append((target, future))
        self._waiters = keep

    async def reach(self, seq: int) -> None:
        """Return once this mirror has applied command message ``seq``."""
        if self.applied >= seq:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        await future

    async def until(self, done: Callable[[ShardState], bool]) -> None:
        """Return once ``done(state)`` holds: now, or after a message this mirror applies."""
        assert self.state is not None
        if done(self.state):
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append((done, future))
        await future

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def _settle(done: Callable[[ShardState], bool], future: asyncio.Future[None], state: Any) -> bool:
    """Whether a watcher is finished: it holds now (resolved), or its waiter went away."""
    if future.done():
        return True
    if done(state):
        future.set_result(None)
        return True
    return False


class ClusterView:
    """The engine's read methods over every shard's mirror (see the module docstring)."""

    def __init__(self, mirrors: list[ShardMirror], shard_of_market: Callable[[int], int]) -> None:
        self._mirrors = mirrors
        self._shard_of_market = shard_of_market

    def _engine(self, shard: int) -> Any:
        state = self._mirrors[shard].state
        assert state is not None
        return state.engine

    def _market_engine(self, market: int) -> Any:
        return self._engine(self._shard_of_market(market))

    @property
    def capacities(self) -> dict[str, int]:
        """Every shard builds the same engine (``EngineSpec``): shard 0's capacities."""
        return dict(self._engine(0).capacities)

    @property
    def now(self) -> int:
        return max(self._engine(s).now for s in range(len(self._mirrors)))

    @property
    def order_count(self) -> int:
        return sum(self._engine(s).order_count for s in range(len(self._mirrors)))

    def balance(self, account: int) -> Balance | None:
        found = [
            b
            for s in range(len(self._mirrors))
            if (b := self._engine(s).balance(account)) is not None
        ]
        if not found:
            return None
        return Balance(sum(b.free for b in found), sum(b.reserved for b in found))

    def balances_by_shard(self, account: int) -> list[Balance | None]:
        """The account's cash on each shard (what an order on that shard can use)."""
        return [self._engine(s).balance(account) for s in range(len(self._mirrors))]

    def position(self, account: int, market: int) -> Position:
        return self._market_engine(market).position(account, market)

    def market(self, market: int) -> Any:
        return self._market_engine(market).market(market)

    def book(self, market: int, depth: int = 10) -> Any:
        return self._market_engine(market).book(market, depth)

    def best(self, market: int) -> tuple[int, int, int, int]:
        return self._market_engine(market).best(market)

    def order(self, order_id: int) -> OrderInfo | None:
        shard, local = split_id(order_id)
        if shard >= len(self._mirrors):
            return None
        info = self._engine(shard).order(local)
        return None if info is None else info._replace(order_id=order_id)

    def orders_of(self, account: int) -> list[OrderInfo]:
        """Resting orders of ``account``, shard by shard, oldest first within a shard."""
        out = []
        for shard in range(len(self._mirrors)):
            for info in self._engine(shard).orders_of(account):
                out.append(info._replace(order_id=cluster_id(shard, info.order_id)))
        return out

    def totals(self) -> Totals:
        parts = [self._engine(s).totals() for s in range(len(self._mirrors))]
        return Totals(
            sum(t.net_deposits for t in parts),
            sum(t.fees for t in parts),
            sum(t.collateral for t in parts),
        )
