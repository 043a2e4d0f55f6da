"""A plain pure-Python order book on an array of price levels: the floor any binding must beat.

It is written the way a competent Python programmer would write a fast book, not
as a straw man: one list of price levels per side indexed by tick, each level a
``deque`` of ``[order_id, qty, is_buy, tick]`` lists in time priority, a dict from
order id to order, and the best price of each side kept as an index that moves
only when its level empties. Price-time priority, limit orders that trade first
and rest their remainder, cancel by order id. No accounts, no events: it counts
the traded volume and the fills, which is all PEER checks.
"""

from __future__ import annotations

from collections import deque
from time import perf_counter_ns
from typing import Any

from ..workloads import CANCEL, MAX_TICK, SELL
from . import Outcome, Peer

ID, QTY, IS_BUY, TICK = range(4)


class PlainBook:
    """One market with integer ticks ``1..max_tick``."""

    __slots__ = ("asks", "best_ask", "best_bid", "bids", "fills", "max_tick", "orders", "volume")

    def __init__(self, max_tick: int = MAX_TICK) -> None:
        self.max_tick = max_tick
        # Ticks 0 and max_tick + 1 are never used: they stop the best-price scans.
        self.bids: list[deque[list[Any]]] = [deque() for _ in range(max_tick + 2)]
        self.asks: list[deque[list[Any]]] = [deque() for _ in range(max_tick + 2)]
        self.orders: dict[int, list[Any]] = {}
        self.best_bid = 0  # 0: no bid
        self.best_ask = max_tick + 1  # max_tick + 1: no ask
        self.volume = 0
        self.fills = 0

    def buy(self, oid: int, tick: int, qty: int) -> None:
        if tick >= self.best_ask:
            qty = self._take_asks(tick, qty)
            if not qty:
                return
        order = [oid, qty, True, tick]
        self.bids[tick].append(order)
        self.orders[oid] = order
        if tick > self.best_bid:
            self.best_bid = tick

    def sell(self, oid: int, tick: int, qty: int) -> None:
        if tick <= self.best_bid:
            qty = self._take_bids(tick, qty)
            if not qty:
                return
        order = [oid, qty, False, tick]
        self.asks[tick].append(order)
        self.orders[oid] = order
        if tick < self.best_ask:
            self.best_ask = tick

    def cancel(self, oid: int) -> None:
        order = self.orders.pop(oid)
        tick = order[TICK]
        if order[IS_BUY]:
            level = self.bids[tick]
            level.remove(order)
            if not level and tick == self.best_bid:
                bids = self.bids
                tick -= 1
                while tick and not bids[tick]:
                    tick -= 1
                self.best_bid = tick
        else:
            level = self.asks[tick]
            level.remove(order)
            if not level and tick == self.best_ask:
                asks, top = self.asks, self.max_tick
                tick += 1
                while tick <= top and not asks[tick]:
                    tick += 1
                self.best_ask = tick

    def _take_asks(self, limit: int, qty: int) -> int:
        asks, orders, top = self.asks, self.orders, self.max_tick
        p = self.best_ask
        volume = fills = 0
        while p <= limit:
            level = asks[p]
            while level:
                maker = level[0]
                fills += 1
                if maker[QTY] > qty:
                    maker[QTY] -= qty
                    volume += qty
                    qty = 0
                    break
                level.popleft()
                del orders[maker[ID]]
                volume += maker[QTY]
                qty -= maker[QTY]
                if not qty:
                    break
            if level:
                break
            p += 1
            while p <= top and not asks[p]:
                p += 1
            if not qty:
                break
        self.best_ask = p
        self.volume += volume
        self.fills += fills
        return qty

    def _take_bids(self, limit: int, qty: int) -> int:
        bids, orders = self.bids, self.orders
        p = self.best_bid
        volume = fills = 0
        while p >= limit:
            level = bids[p]
            while level:
                maker = level[0]
                fills += 1
                if maker[QTY] > qty:
                    maker[QTY] -= qty
                    volume += qty
                    qty = 0
                    break
                level.popleft()
                del orders[maker[ID]]
                volume += maker[QTY]
                qty -= maker[QTY]
                if not qty:
                    break
            if level:
                break
            p -= 1
            while p and not bids[p]:
                p -= 1
            if not qty:
                break
        self.best_bid = p
        self.volume += volume
        self.fills += fills
        return qty


class PlainPeer(Peer):
    name = "plain Python book"
    description = "pure-Python array of price levels (deques), dict id -> order, best-price index"
    workloads = ("PEER", "PEER-AC")

    def load(self, workload: Any) -> None:
        self.setup_rows = workload.setup_ops.tolist()
        self.rows = workload.ops.tolist()

    def reset(self) -> None:
        self.book = PlainBook()
        self._run(self.setup_rows)
        self.book.volume = self.book.fills = 0

    def replay(self) -> int:
        t0 = perf_counter_ns()
        self._run(self.rows)
        return perf_counter_ns() - t0

    def _run(self, rows: list[tuple[int, int, int, int, int]]) -> None:
        book = self.book
        buy, sell, cancel = book.buy, book.sell, book.cancel
        for kind, side, tick, qty, ref in rows:
            if kind == CANCEL:
                cancel(ref)
            elif side == SELL:
                sell(ref, tick, qty)
            else:
                buy(ref, tick, qty)

    per_call = True

    def run_timed(self, i: int, j: int, out: Any) -> None:
        book, pc = self.book, perf_counter_ns
        buy, sell, cancel = book.buy, book.sell, book.cancel
        for k, (kind, side, tick, qty, ref) in zip(range(i, j), self.rows[i:j], strict=True):
            if kind == CANCEL:
                t0 = pc()
                cancel(ref)
            elif side == SELL:
                t0 = pc()
                sell(ref, tick, qty)
            else:
                t0 = pc()
                buy(ref, tick, qty)
            out[k] = pc() - t0

    def run_scheduled(self, i: int, j: int, due: list[int], out: Any) -> None:
        book, pc = self.book, perf_counter_ns
        buy, sell, cancel = book.buy, book.sell, book.cancel
        for k, (kind, side, tick, qty, ref) in zip(range(i, j), self.rows[i:j], strict=True):
            t = due[k]
            while pc() < t:
                pass
            if kind == CANCEL:
                cancel(ref)
            elif side == SELL:
                sell(ref, tick, qty)
            else:
                buy(ref, tick, qty)
            out[k] = pc()

    def outcome(self) -> Outcome:
        book = self.book
        return Outcome(
            traded_volume=book.volume,
            fills=book.fills,
            resting_orders=len(book.orders),
            resting_qty=sum(o[QTY] for o in book.orders.values()),
        )
