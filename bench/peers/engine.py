"""This project's engines as peers: the batch API and the per-call API.

Both adapters take the engine class, so the same code measures the C++ core
(``matchcore.Engine``) and the pure-Python reference (``matchcore.reference.Engine``),
which share the API. The setup is loaded with one ``process()`` call, untimed.

- ``BatchPeer``: ``process()`` over the measured commands in chunks of ``chunk``
  commands (0: one call over the whole array); timed: the ``process()`` calls.
- ``CallsPeer``: one ``submit`` / ``cancel`` / ``replace`` call per command, as a
  Python user writes it, ``drain_events()`` every ``DRAIN_EVERY`` calls; timed: the
  calls and the drains. On PEER the order reference is the engine's order id (the
  engine numbers orders 1, 2, 3, ... as the workload does), so no map is needed.

The events are tallied (traded volume, fills, rejects, trading commands) outside
the timed part.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

import numpy as np

from matchcore import CommandType, EventType

from ..workloads import CANCEL, PeerWorkload, XcWorkload
from . import Outcome, Peer

DRAIN_EVERY = 10_000

_TRADE, _REJECTED = int(EventType.TRADE), int(EventType.REJECTED)
_NEW, _CANCEL, _REPLACE = (
    int(CommandType.NEW_ORDER),
    int(CommandType.CANCEL),
    int(CommandType.REPLACE),
)


def capacity(workload: Any) -> dict[str, int]:
    """Engine capacities for a workload: twice its largest book, at least 4096 slots."""
    orders = 4096
    while orders < 2 * workload.expected.max_live:
        orders *= 2
    accounts = workload.accounts if isinstance(workload, XcWorkload) else workload.ACCOUNTS
    return {"max_orders": orders, "max_markets": 1, "max_accounts": accounts}


class _Tally:
    def __init__(self) -> None:
        self.volume = self.fills = self.rejects = self.trading = 0

    def add(self, events: np.ndarray, with_seq: bool) -> None:
        types = events["type"]
        trades = types == _TRADE
        self.volume += int(events["quantity"][trades].sum())
        self.fills += int(np.count_nonzero(trades))
        self.rejects += int(np.count_nonzero(types == _REJECTED))
        if with_seq:
            self.trading += len(np.unique(events["seq"][trades]))


class _EnginePeer(Peer):
    workloads = ("XC", "PEER", "PEER-AC")
    with_seq = False  # whether events carry the command's seq (trading commands countable)

    def __init__(self, engine_cls: type, label: str) -> None:
        self.engine_cls = engine_cls
        self.label = label
        self.engine: Any = None
        self._tally = _Tally()

    def load(self, workload: Any) -> None:
        self.workload = workload
        self.capacity = capacity(workload)
        if isinstance(workload, PeerWorkload):
            self.setup = workload.setup_commands()
            self.commands = workload.commands()
        else:
            self.setup, self.commands = workload.setup, workload.commands

    def reset(self) -> None:
        self.engine = None  # free the last one first
        self.engine = self.engine_cls(**self.capacity)
        events = self.engine.process(self.setup)
        if np.count_nonzero(events["type"] == _REJECTED):
            raise RuntimeError(f"{self.name}: the setup commands were rejected")
        self._tally = _Tally()

    def outcome(self) -> Outcome:
        eng = self.engine
        bids, asks = eng.book(0, depth=10_000)
        t = self._tally
        return Outcome(
            traded_volume=t.volume,
            fills=t.fills,
            resting_orders=eng.order_count,
            resting_qty=int(bids["quantity"].sum() + asks["quantity"].sum()),
            trading_commands=t.trading if self.with_seq else None,
            rejects=t.rejects,
            extra={"digest": eng.digest()},
        )

    def memory(self) -> dict[str, Any] | None:
        mem = getattr(self.engine, "memory", None)
        if mem is None:
            return None
        return {"capacities": dict(self.capacity), "bytes": mem()}


class BatchPeer(_EnginePeer):
    """``engine.process()`` over the command array, in chunks."""

    with_seq = True

    def __init__(self, engine_cls: type, label: str, chunk: int = 8192, suffix: str = "") -> None:
        super().__init__(engine_cls, label)
        self.chunk = chunk
        self.name = f"{label} batch{suffix}"
        size = "one call" if not chunk else f"chunks of {chunk:,} commands"
        self.description = f"{label}: process() over the command array ({size})"

    def load(self, workload: Any) -> None:
        super().load(workload)
        step = self.chunk or len(self.commands) or 1
        self.chunks = [self.commands[i : i + step] for i in range(0, len(self.commands), step)]

    def replay(self) -> int:
        process, tally = self.engine.process, self._tally
        total = 0
        for chunk in self.chunks:
            t0 = perf_counter_ns()
            events = process(chunk)
            total += perf_counter_ns() - t0
            tally.add(events, True)
        return total


class CallsPeer(_EnginePeer):
    """One engine method call per command."""

    def __init__(self, engine_cls: type, label: str) -> None:
        super().__init__(engine_cls, label)
        self.name = f"{label} per-call"
        self.description = (
            f"{label}: one submit/cancel/replace call per command, "
            f"drain_events() every {DRAIN_EVERY:,} calls"
        )

    def load(self, workload: Any) -> None:
        super().load(workload)
        if isinstance(workload, PeerWorkload):
            c = self.commands
            kinds = workload.ops["kind"]
            rows = list(
                zip(
                    kinds.tolist(),
                    c["account"].tolist(),
                    c["intent"].tolist(),
                    c["price"].tolist(),
                    c["quantity"].tolist(),
                    workload.ops["ref"].tolist(),
                    strict=True,
                )
            )
            self._replay_chunk = self._peer_chunk
        else:
            c = self.commands
            cols = ("type", "account", "order_id", "intent", "price", "quantity", "tif", "time")
            rows = list(zip(*(c[name].tolist() for name in cols), strict=True))
            self._replay_chunk = self._xc_chunk
        self.chunks = [rows[i : i + DRAIN_EVERY] for i in range(0, len(rows), DRAIN_EVERY)]

    def replay(self) -> int:
        run, drain, tally = self._replay_chunk, self.engine.drain_events, self._tally
        total = 0
        for chunk in self.chunks:
            t0 = perf_counter_ns()
            run(chunk)
            events = drain()
            total += perf_counter_ns() - t0
            tally.add(events, False)
        return total

    def _peer_chunk(self, rows: list[tuple[int, ...]]) -> None:
        submit, cancel = self.engine.submit, self.engine.cancel
        for kind, account, intent, price, qty, ref in rows:
            if kind == CANCEL:
                cancel(0, ref)
            else:
                submit(account, 0, intent, price, qty)

    def _xc_chunk(self, rows: list[tuple[int, ...]]) -> None:
        eng = self.engine
        submit, cancel, replace = eng.submit, eng.cancel, eng.replace
        for typ, account, order_id, intent, price, qty, tif, time in rows:
            if typ == _REPLACE:
                replace(account, order_id, price, time=time)
            elif typ == _NEW:
                submit(account, 0, intent, price, qty, tif, time=time)
            else:
                cancel(account, order_id, time=time)


__all__ = ["DRAIN_EVERY", "BatchPeer", "CallsPeer", "capacity"]
