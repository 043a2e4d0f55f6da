"""The workload generators' model of one order book (price-time priority, integer ticks).

The generators need to know, while they write commands, which orders are still
resting, with what quantity, and what the best prices are: a cancel or a move must
target a live order of the right account, and a crossing order of PEER must be
sized to fill completely. This model follows the engine's rules for what the
workloads use (limit orders, GTC or IOC, cancel, replace at a new price, and
self-trade prevention REJECT_AGGRESSOR) and counts what must trade, so every engine
can be checked against it. It is written apart from every peer on purpose: the
peers are checked against it, not against each other.

An order is a list ``[ref, account, side, tick, qty]``; ``ref`` numbers orders 1, 2,
3, ... in entry order, IOC orders included. The engine's ids depend on its capacity:
the book logs what they depend on into an ``OrderLog`` (``bench/ids.py``).
"""

from __future__ import annotations

from collections import deque

from .ids import OrderLog

BUY, SELL = 0, 1

REF, ACCOUNT, SIDE, TICK, QTY = range(5)


class SimBook:
    """One market with ticks ``1..max_tick``; counts fills, volume and resting quantity."""

    def __init__(self, max_tick: int = 999, log: OrderLog | None = None) -> None:
        self.max_tick = max_tick
        self.log = log if log is not None else OrderLog()
        # levels[side][tick] is a FIFO of orders; ticks 0 and max_tick + 1 stay empty
        # and stop the scans for the next best price.
        self.levels: tuple[list[deque[list[int]]], list[deque[list[int]]]] = (
            [deque() for _ in range(max_tick + 2)],
            [deque() for _ in range(max_tick + 2)],
        )
        self.best = [0, max_tick + 1]  # best bid (0: none), best ask (max_tick + 1: none)
        self.orders: dict[int, list[int]] = {}
        self.live: list[int] = []  # refs of resting orders, for a uniform random pick
        self._pos: dict[int, int] = {}
        self.side_qty = [0, 0]
        self.volume = 0
        self.fills = 0
        self.max_live = 0

    # ------------------------------------------------------------ queries

    def resting_qty(self) -> int:
        return self.side_qty[BUY] + self.side_qty[SELL]

    def pick(self, index: int) -> list[int]:
        """The live order at position ``index`` of ``live``."""
        return self.orders[self.live[index]]

    def fill_limit(self, side: int, qty: int) -> int:
        """The tick a ``side`` order of ``qty`` needs to fill completely (``qty`` must be there)."""
        opp = 1 - side
        levels, p = self.levels[opp], self.best[opp]
        step = 1 if side == BUY else -1
        left = qty
        while True:
            for o in levels[p]:
                left -= o[QTY]
                if left <= 0:
                    return p
            p += step
            if p <= 0 or p > self.max_tick:
                raise ValueError("not enough quantity on the opposite side")

    # ------------------------------------------------------------ commands

    def enter(self, ref: int, account: int, side: int, tick: int, qty: int, rests: bool) -> int:
        """A limit order: trades first, then its remainder rests if ``rests``; the filled qty.

        The remainder never rests when the sweep stopped on the taker's own resting
        order (self-trade prevention REJECT_AGGRESSOR cancels it).
        """
        self.log.new(ref, rests)
        left, stopped = self._sweep(account, side, tick, qty)
        if left and rests and not stopped:
            self._rest([ref, account, side, tick, left])
        return qty - left

    def cancel(self, ref: int) -> list[int]:
        order = self.orders[ref]
        self._unlink(order)
        return order

    def move(self, ref: int, tick: int) -> int:
        """Replace at a new price: back of the new level, trading first if it crosses."""
        order = self.orders[ref]
        self._unlink(order, leaves=False)  # it keeps its id and slot unless it does not rest
        left, stopped = self._sweep(order[ACCOUNT], order[SIDE], tick, order[QTY])
        if left and not stopped:
            self._rest([ref, order[ACCOUNT], order[SIDE], tick, left], new=False)
        else:
            self.log.leave(ref)
        return order[QTY] - left

    # ------------------------------------------------------------ internals

    def _sweep(self, account: int, side: int, limit: int, qty: int) -> tuple[int, bool]:
        opp = 1 - side
        levels = self.levels[opp]
        step = 1 if side == BUY else -1
        p = self.best[opp]
        stopped = False
        while qty and (p - limit) * step <= 0:
            level = levels[p]
            while level and qty:
                maker = level[0]
                if maker[ACCOUNT] == account:
                    stopped = True
                    break
                f = maker[QTY] if maker[QTY] < qty else qty
                maker[QTY] -= f
                qty -= f
                self.volume += f
                self.fills += 1
                self.side_qty[opp] -= f
                if not maker[QTY]:
                    level.popleft()
                    del self.orders[maker[REF]]
                    self._forget(maker[REF])
                    self.log.leave(maker[REF])
            if level:
                break
            p += step
            while not levels[p] and 0 < p <= self.max_tick:
                p += step
        self.best[opp] = p
        return qty, stopped

    def _rest(self, order: list[int], new: bool = True) -> None:
        if new:
            self.log.rest(order[REF])
        side, tick = order[SIDE], order[TICK]
        self.levels[side][tick].append(order)
        self.orders[order[REF]] = order
        self.side_qty[side] += order[QTY]
        if side == BUY:
            if tick > self.best[BUY]:
                self.best[BUY] = tick
        elif tick < self.best[SELL]:
            self.best[SELL] = tick
        self._pos[order[REF]] = len(self.live)
        self.live.append(order[REF])
        if len(self.live) > self.max_live:
            self.max_live = len(self.live)

    def _unlink(self, order: list[int], leaves: bool = True) -> None:
        if leaves:
            self.log.leave(order[REF])
        side, tick = order[SIDE], order[TICK]
        level = self.levels[side][tick]
        level.remove(order)
        del self.orders[order[REF]]
        self._forget(order[REF])
        self.side_qty[side] -= order[QTY]
        if not level and tick == self.best[side]:
            levels, step, p = self.levels[side], (-1 if side == BUY else 1), tick
            while not levels[p] and 0 < p <= self.max_tick:
                p += step
            self.best[side] = p

    def _forget(self, ref: int) -> None:
        i = self._pos.pop(ref)
        last = self.live.pop()
        if last != ref:
            self.live[i] = last
            self._pos[last] = i
