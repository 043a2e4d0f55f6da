"""This project's engines as peers: the batch API and the per-call API.

Both adapters take the engine class, so the same code measures the C++ core
(``matchcore.Engine``) and the pure-Python reference (``matchcore.reference.Engine``),
which share the API. The setup is loaded with one ``process()`` call, untimed.

- ``BatchPeer``: ``process()`` over the measured commands in chunks of ``chunk``
  commands (0: one call over the whole array); timed: the ``process()`` calls. With
  ``into``, ``process_into()`` writes each chunk's events into one array reused for
  every chunk (``INTO_EVENTS_PER_COMMAND`` per command), as a sequencer that is done
  with a batch's events before the next would.
- ``CallsPeer``: one ``submit`` / ``cancel`` / ``replace`` call per command, as a
  Python user writes it, ``drain_events()`` every ``DRAIN_EVERY`` calls; timed: the
  calls and the drains. On PEER a cancel names the engine's order id of its order
  (the workload's ids at the engine's ``max_orders``, ``bench/ids.py``).

The events are tallied (traded volume, fills, rejects, trading commands) outside
the timed part.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

import numpy as np

from matchcore import EVENT_DTYPE, CommandType, EventType

from ..workloads import CANCEL, PeerWorkload, XcWorkload
from . import Outcome, Peer

DRAIN_EVERY = 10_000
# The room process_into()'s array has per command: XC makes 2.9 events per command,
# PEER 2.4; a chunk that makes more spills (a new array, the same events).
INTO_EVENTS_PER_COMMAND = 4

_TRADE, _REJECTED = int(EventType.TRADE), int(EventType.REJECTED)
_NEW, _CANCEL, _REPLACE = (
    int(CommandType.NEW_ORDER),
    int(CommandType.CANCEL),
    int(CommandType.REPLACE),
)


def capacity(workload: Any) -> dict[str, int]:
    """Engine capacities for a workload: the ``max_orders`` its order ids are for (by
    default twice its largest book, at least 4096 slots: ``workload.at_capacity()``).

    A workload with a ``ledger`` attribute (SCALE) also says whether the engine keeps
    the ledger; XC and PEER run matching only.
    """
    orders = workload.max_orders
    markets = getattr(workload, "markets", 1)
    accounts = workload.ACCOUNTS if isinstance(workload, PeerWorkload) else workload.accounts
    out = {"max_orders": orders, "max_markets": markets, "max_accounts": accounts}
    if getattr(workload, "ledger", False):
        out["ledger"] = True
    return out


def make_engine(engine_cls: type, **capacity: Any) -> Any:
    """An engine for XC and PEER: matching only, ``ledger=False`` (no funding, no risk checks).

    XC and PEER measure the order book and matching, as they did before the core had
    a ledger, and as the peers they are compared with do; SCALE runs with the ledger.
    An engine without the ``ledger`` switch (before the ledger) is built without it.
    """
    kwargs = {"ledger": False, **capacity}
    try:
        return engine_cls(**kwargs)
    except TypeError as exc:
        if "ledger" not in str(exc) or kwargs["ledger"]:
            raise
        return engine_cls(**capacity)


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

    def __init__(self, engine_cls: type, label: str, ledger: bool | None = None) -> None:
        self.engine_cls = engine_cls
        self.label = label
        self.ledger = ledger  # None: as the workload says (SCALE on, XC and PEER off)
        self.engine: Any = None
        self._tally = _Tally()

    def load(self, workload: Any) -> None:
        self.workload = workload
        self.capacity = capacity(workload)
        if self.ledger is not None:
            self.capacity["ledger"] = self.ledger
        if isinstance(workload, PeerWorkload):
            self.setup = workload.setup_commands()
            self.commands = workload.commands()
        elif getattr(workload, "ledger", False) and not self.capacity.get("ledger"):
            self.setup, self.commands = workload.unfunded_setup(), workload.commands
        elif self.capacity.get("ledger") and hasattr(workload, "funded_setup"):
            self.setup, self.commands = workload.funded_setup(), workload.commands  # XC, risk on
        else:
            self.setup, self.commands = workload.setup, workload.commands

    def reset(self) -> None:
        self.engine = None  # free the last one first
        self.engine = make_engine(self.engine_cls, **self.capacity)
        events = self.engine.process(self.setup)
        if np.count_nonzero(events["type"] == _REJECTED):
            raise RuntimeError(f"{self.name}: the setup commands were rejected")
        self._tally = _Tally()

    def outcome(self) -> Outcome:
        eng = self.engine
        qty = 0
        for market in range(self.capacity["max_markets"]):
            bids, asks = eng.book(market, depth=10_000)
            qty += int(bids["quantity"].sum() + asks["quantity"].sum())
        t = self._tally
        return Outcome(
            traded_volume=t.volume,
            fills=t.fills,
            resting_orders=eng.order_count,
            resting_qty=qty,
            trading_commands=t.trading if self.with_seq else None,
            rejects=t.rejects,
            extra={"digest": eng.digest(), "ledger": bool(self.capacity.get("ledger"))},
        )

    def release(self) -> None:
        self.engine = None

    def memory(self) -> dict[str, Any] | None:
        mem = getattr(self.engine, "memory", None)
        if mem is None:
            return None
        return {"capacities": dict(self.capacity), "bytes": mem()}


class BatchPeer(_EnginePeer):
    """``engine.process()`` over the command array, in chunks."""

    with_seq = True

    def __init__(
        self,
        engine_cls: type,
        label: str,
        chunk: int = 8192,
        suffix: str = "",
        ledger: bool | None = None,
        into: bool = False,
    ) -> None:
        super().__init__(engine_cls, label, ledger)
        if into and not chunk:
            raise ValueError("process_into() needs chunks (its array is sized by the chunk)")
        self.chunk = chunk
        self.into = into
        self.name = f"{label} batch{suffix}"
        size = "one call" if not chunk else f"chunks of {chunk:,} commands"
        api = "process_into() into one reused array" if into else "process()"
        self.description = f"{label}: {api} over the command array ({size})"

    def load(self, workload: Any) -> None:
        super().load(workload)
        step = self.chunk or len(self.commands) or 1
        self.chunks = [self.commands[i : i + step] for i in range(0, len(self.commands), step)]
        if self.into:
            self.out = np.zeros(INTO_EVENTS_PER_COMMAND * step, dtype=EVENT_DTYPE)

    def replay(self) -> int:
        tally = self._tally
        total = 0
        if self.into:
            process_into, out = self.engine.process_into, self.out
            for chunk in self.chunks:
                t0 = perf_counter_ns()
                events = process_into(chunk, out)
                total += perf_counter_ns() - t0
                tally.add(events, True)
            return total
        process = self.engine.process
        for chunk in self.chunks:
            t0 = perf_counter_ns()
            events = process(chunk)
            total += perf_counter_ns() - t0
            tally.add(events, True)
        return total

    def replay_timed(self, stop: int | None = None) -> np.ndarray:
        """The measured commands (the first ``stop``) through ``process_timed()``, in chunks.

        Returns the nanoseconds each command took inside the core (time-stamp
        counter read around it); the events are tallied for the checks.
        """
        process_timed, tally = self.engine.process_timed, self._tally
        commands = self.commands if stop is None else self.commands[:stop]
        step = self.chunk or len(commands) or 1
        out = []
        for i in range(0, len(commands), step):
            events, ns = process_timed(commands[i : i + step])
            tally.add(events, True)
            out.append(ns)
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def replay_prefix(self, stop: int) -> None:
        """The first ``stop`` measured commands through ``process()`` (untimed), tallied."""
        step = self.chunk or stop or 1
        for i in range(0, stop, step):
            self._tally.add(self.engine.process(self.commands[i : min(i + step, stop)]), True)

    def run_batch(self, i: int, j: int) -> int:
        """Measured commands ``i..j-1`` in one ``process()`` call; returns the events written."""
        return len(self.engine.process(self.commands[i:j]))


class CallsPeer(_EnginePeer):
    """One engine method call per command."""

    def __init__(
        self, engine_cls: type, label: str, suffix: str = "", ledger: bool | None = None
    ) -> None:
        super().__init__(engine_cls, label, ledger)
        self.name = f"{label} per-call{suffix}"
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
                    c["order_id"].tolist(),
                    strict=True,
                )
            )
            self._replay_chunk = self._peer_chunk
            self._timed, self._scheduled = self._peer_timed, self._peer_scheduled
        elif isinstance(workload, XcWorkload):
            c = self.commands
            cols = ("type", "account", "order_id", "intent", "price", "quantity", "tif", "time")
            rows = list(zip(*(c[name].tolist() for name in cols), strict=True))
            self._replay_chunk = self._xc_chunk
            self._timed, self._scheduled = self._xc_timed, self._xc_scheduled
        else:  # SCALE: many markets, GTD expiries
            c = self.commands
            cols = ("type", "account", "market", "order_id", "intent", "price", "quantity")
            cols += ("tif", "expiry", "time")
            rows = list(zip(*(c[name].tolist() for name in cols), strict=True))
            self._replay_chunk = self._scale_chunk
            self._timed, self._scheduled = self._scale_timed, None
        self.rows = rows
        self.chunks = [rows[i : i + DRAIN_EVERY] for i in range(0, len(rows), DRAIN_EVERY)]

    def replay(self) -> int:
        run, drain, tally = self._replay_chunk, self.engine.drain_events, self._tally
        total = 0
        for chunk in self.chunks:
            t0 = perf_counter_ns()
            run(chunk)
            self._check_kept()  # one read per 10,000 calls: before the drain clears it
            events = drain()
            total += perf_counter_ns() - t0
            tally.add(events, False)
        return total

    per_call = True

    def drain(self, tally: bool = True) -> int:
        """Drain the per-call event buffer: tally it all, or only count the rejects."""
        self._check_kept()
        events = self.engine.drain_events()
        if tally:
            before = self._tally.rejects
            self._tally.add(events, False)
            return self._tally.rejects - before
        rejects = int(np.count_nonzero(events["type"] == _REJECTED))
        self._tally.rejects += rejects
        return rejects

    def _check_kept(self) -> None:
        """The tally needs every event: none may have gone past ``max_pending_events``."""
        if self.engine.dropped_events:
            raise RuntimeError(f"{self.engine.dropped_events:,} per-call events dropped undrained")

    def run_timed(self, i: int, j: int, out: Any) -> None:
        self._timed(range(i, j), self.rows[i:j], out)

    def run_scheduled(self, i: int, j: int, due: list[int], out: Any) -> None:
        self._scheduled(range(i, j), self.rows[i:j], due, out)

    # One loop per workload and mode, so the timed part holds only the call.

    def _peer_timed(self, ks: range, rows: list[tuple[int, ...]], out: Any) -> None:
        submit, cancel, pc = self.engine.submit, self.engine.cancel, perf_counter_ns
        for k, (kind, account, intent, price, qty, ref) in zip(ks, rows, strict=True):
            if kind == CANCEL:
                t0 = pc()
                cancel(0, ref)
            else:
                t0 = pc()
                submit(account, 0, intent, price, qty)
            out[k] = pc() - t0

    def _peer_scheduled(self, ks: range, rows: list[tuple[int, ...]], due: list[int], out: Any):
        submit, cancel, pc = self.engine.submit, self.engine.cancel, perf_counter_ns
        for k, (kind, account, intent, price, qty, ref) in zip(ks, rows, strict=True):
            t = due[k]
            while pc() < t:
                pass
            if kind == CANCEL:
                cancel(0, ref)
            else:
                submit(account, 0, intent, price, qty)
            out[k] = pc()

    def _xc_timed(self, ks: range, rows: list[tuple[int, ...]], out: Any) -> None:
        eng, pc = self.engine, perf_counter_ns
        submit, cancel, replace = eng.submit, eng.cancel, eng.replace
        for k, (typ, account, order_id, intent, price, qty, tif, time) in zip(
            ks, rows, strict=True
        ):
            if typ == _REPLACE:
                t0 = pc()
                replace(account, order_id, price, time=time)
            elif typ == _NEW:
                t0 = pc()
                submit(account, 0, intent, price, qty, tif, time=time)
            else:
                t0 = pc()
                cancel(account, order_id, time=time)
            out[k] = pc() - t0

    def _xc_scheduled(self, ks: range, rows: list[tuple[int, ...]], due: list[int], out: Any):
        eng, pc = self.engine, perf_counter_ns
        submit, cancel, replace = eng.submit, eng.cancel, eng.replace
        for k, (typ, account, order_id, intent, price, qty, tif, time) in zip(
            ks, rows, strict=True
        ):
            t = due[k]
            while pc() < t:
                pass
            if typ == _REPLACE:
                replace(account, order_id, price, time=time)
            elif typ == _NEW:
                submit(account, 0, intent, price, qty, tif, time=time)
            else:
                cancel(account, order_id, time=time)
            out[k] = pc()

    def _scale_timed(self, ks: range, rows: list[tuple[int, ...]], out: Any) -> None:
        eng, pc = self.engine, perf_counter_ns
        submit, cancel, replace = eng.submit, eng.cancel, eng.replace
        for k, (typ, account, market, order_id, intent, price, qty, tif, expiry, time) in zip(
            ks, rows, strict=True
        ):
            if typ == _REPLACE:
                t0 = pc()
                replace(account, order_id, price, time=time)
            elif typ == _NEW:
                t0 = pc()
                submit(account, market, intent, price, qty, tif, expiry=expiry, time=time)
            else:
                t0 = pc()
                cancel(account, order_id, time=time)
            out[k] = pc() - t0

    def _scale_chunk(self, rows: list[tuple[int, ...]]) -> None:
        eng = self.engine
        submit, cancel, replace = eng.submit, eng.cancel, eng.replace
        for typ, account, market, order_id, intent, price, qty, tif, expiry, time in rows:
            if typ == _REPLACE:
                replace(account, order_id, price, time=time)
            elif typ == _NEW:
                submit(account, market, intent, price, qty, tif, expiry=expiry, time=time)
            else:
                cancel(account, order_id, time=time)

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


__all__ = ["DRAIN_EVERY", "BatchPeer", "CallsPeer", "capacity", "make_engine"]
