"""The order ids the engine gives a generated stream, for a given ``max_orders``.

The generators name orders by their own refs (1, 2, 3, ... in entry order) while
they write. The engine's id of an order depends on which slots are taken when it
enters (docs/matchcore.md §1: an order that can rest takes the next id whose
slot, ``id % max_orders``, is free; an IOC/FOK order the next id), so on
``max_orders``. An ``OrderLog`` records, in the engine's order, when each order
enters, rests and leaves the book; ``ids(max_orders)`` replays that through the
engine's rule, and ``remap()`` writes the ids into the CANCEL and REPLACE
commands, whose ``order_id`` holds a ref until then. One log serves every
capacity, so a workload is generated once and run at several.
"""

from __future__ import annotations

from array import array

import numpy as np

from matchcore import CommandType

_NEW_RESTING, _NEW_IMMEDIATE, _REST, _LEAVE = range(4)


def workload_capacity(max_live: int) -> int:
    """``max_orders`` sized to a workload: twice its largest book, a power of two, >= 4096."""
    orders = 4096
    while orders < 2 * max_live:
        orders *= 2
    return orders


class OrderLog:
    """What the ids depend on: each order's entry (GTC/GTD or IOC), rest and leave, in order.

    ``new()`` must come before the leaves its own sweep causes (the engine gives the
    id on acceptance), and the leaves of GTD expiries before the command they precede.
    A replaced order keeps its id and slot: log nothing for the move itself, a
    ``leave`` if it does not rest again.
    """

    def __init__(self) -> None:
        self._ops = array("q")
        self.refs = 0
        self._ids: dict[int, tuple[int, np.ndarray]] = {}  # max_orders -> (ops seen, ids)

    def new(self, ref: int, can_rest: bool) -> None:
        self._ops.append(ref << 2 | (_NEW_RESTING if can_rest else _NEW_IMMEDIATE))
        if ref > self.refs:
            self.refs = ref

    def rest(self, ref: int) -> None:
        self._ops.append(ref << 2 | _REST)

    def leave(self, ref: int) -> None:
        self._ops.append(ref << 2 | _LEAVE)

    def ids(self, max_orders: int) -> np.ndarray:
        """``ids[ref]``: the engine's order id of each ref (``ids[0] = 0``), from a fresh engine."""
        cached = self._ids.get(max_orders)
        if cached is not None and cached[0] == len(self._ops):
            return cached[1]
        ids = [0] * (self.refs + 1)
        taken = bytearray(max_orders)
        cursor = 1
        for code in self._ops:
            op, ref = code & 3, code >> 2
            if op == _NEW_RESTING:
                x = cursor
                while taken[x % max_orders]:
                    x += 1
                ids[ref] = x
                cursor = x + 1
            elif op == _NEW_IMMEDIATE:
                ids[ref] = cursor
                cursor += 1
            elif op == _REST:
                taken[ids[ref] % max_orders] = 1
            else:
                taken[ids[ref] % max_orders] = 0
        out = np.array(ids, dtype=np.uint64)
        self._ids[max_orders] = (len(self._ops), out)
        return out


def remap(commands: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """A copy of ``commands`` whose CANCEL and REPLACE targets are engine ids, not refs."""
    out = commands.copy()
    targets = np.isin(out["type"], [CommandType.CANCEL, CommandType.REPLACE])
    out["order_id"][targets] = ids[out["order_id"][targets].astype(np.int64)]
    return out
