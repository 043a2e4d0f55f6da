"""Latency per command type, inside the core and from Python, as HDR histograms.

Command types (``KINDS``), decided by what the command did in a run of this
project's core on the same stream (every correct engine does the same):

- ``place``: a new order that did not trade (it rests, or an IOC with nothing to take);
- ``cancel``: a cancel;
- ``replace``: a replace (XC's "move") that did not trade;
- ``crossing``: a new order or a replace that traded at least once.

Two ways of timing, each a closed loop (the next command starts when the last one
returned):

- *inside the core*: ``engine.process_timed()`` over the commands in chunks; the
  core reads the CPU's time-stamp counter around each command (a separate loop, so
  ``process()`` pays nothing) and scales it to nanoseconds with the steady clock;
- *from Python*: one call per command (``submit`` / ``cancel`` / ``replace`` for this
  project, the peer's own methods for the others), ``time.perf_counter_ns()`` read
  just before and just after each call. The pair of clock reads costs a few tens of
  nanoseconds; it is measured (``timer_floor_ns``) and included, not subtracted.

Each peer gets warm-up runs, then ``runs`` timed runs on fresh books with the same
setup (garbage collector off); the histograms hold every command of every timed run.
"""

from __future__ import annotations

import gc
import statistics
from array import array
from collections.abc import Callable
from time import perf_counter_ns
from typing import Any

import numpy as np

from matchcore import CommandType, EventType

from . import hdr
from .peers import Peer, Unavailable
from .peers.engine import DRAIN_EVERY, BatchPeer
from .runner import check
from .workloads import ADD, CANCEL, PeerWorkload

KINDS = ("place", "cancel", "replace", "crossing")
PLACE, CANCEL_KIND, REPLACE_KIND, CROSSING = range(4)
ALL = "all"


def command_kinds(workload: Any, engine_cls: type, label: str = "matchcore") -> np.ndarray:
    """The kind (``KINDS`` index) of every measured command, from a run of the core."""
    peer = BatchPeer(engine_cls, label, 8192)
    peer.load(workload)
    peer.reset()
    commands = peer.commands
    traded = []
    for i in range(0, len(commands), 8192):
        events = peer.engine.process(commands[i : i + 8192])
        traded.append(events["seq"][events["type"] == EventType.TRADE])
    seq = commands["seq"].astype(np.int64)
    if len(seq) and not np.array_equal(seq, np.arange(1, len(seq) + 1)):
        raise AssertionError("measured commands are not numbered 1..n")
    kinds = np.full(len(commands), PLACE, dtype=np.uint8)
    kinds[commands["type"] == CommandType.CANCEL] = CANCEL_KIND
    kinds[commands["type"] == CommandType.REPLACE] = REPLACE_KIND
    if traded:
        kinds[np.unique(np.concatenate(traded)).astype(np.int64) - 1] = CROSSING
    peer.release()
    if isinstance(workload, PeerWorkload):  # the stream says what each operation is
        want = np.select(
            [workload.ops["kind"] == ADD, workload.ops["kind"] == CANCEL],
            [PLACE, CANCEL_KIND],
            CROSSING,
        )
        if not np.array_equal(kinds, want):
            raise AssertionError("the core's trades differ from the PEER stream's crossing ops")
    return kinds


def timer_floor_ns(samples: int = 200_000) -> float:
    """Median of two back-to-back ``perf_counter_ns()`` reads: the cost the timing adds."""
    pc = perf_counter_ns
    out = []
    app = out.append
    for _ in range(samples):
        t0 = pc()
        app(pc() - t0)
    return float(statistics.median(out))


class _Recorder:
    """One histogram per command kind (and one of all commands) for one peer."""

    def __init__(self) -> None:
        self.hist = {name: hdr.histogram() for name in (*KINDS, ALL)}
        self.clamped = 0

    def add(self, ns: np.ndarray, kinds: np.ndarray) -> None:
        for k, name in enumerate(KINDS):
            self.clamped += hdr.record(self.hist[name], ns[kinds == k])
        hdr.record(self.hist[ALL], ns)

    def rows(self, peer: Peer, api: str) -> list[dict[str, Any]]:
        out = []
        for name in (*KINDS, ALL):
            h = self.hist[name]
            if not h.get_total_count():
                continue
            row = {"peer": peer.name, "api": api, "kind": name, **hdr.summary(h)}
            row["curve"] = hdr.curve(h)
            out.append(row)
        return out


def _in_core(peer: BatchPeer) -> np.ndarray:
    return peer.replay_timed()


def _from_python(peer: Peer) -> np.ndarray:
    n = len(peer.rows)  # type: ignore[attr-defined]
    out = array("q", bytes(8 * n))  # preallocated: nothing is allocated per command
    for i in range(0, n, DRAIN_EVERY):
        peer.run_timed(i, min(i + DRAIN_EVERY, n), out)
        peer.drain(True)  # outside the per-call timings
    return np.frombuffer(out, dtype=np.int64).copy()


def latency_table(
    workload: Any,
    peers: list[tuple[Peer, str]],
    kinds: np.ndarray,
    runs: int,
    warmup: int,
    tick: Callable[[int], None] = lambda _n: None,
) -> dict[str, Any]:
    """Per-kind latency histograms for each ``(peer, api)``; ``api`` is "in-core" or "python"."""
    if not hdr.available():
        return {"workload": workload.name, "unavailable": "hdrhistogram is not installed"}
    rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    incore_resolution: dict[str, Any] = {}
    for peer, api in peers:
        try:
            peer.load(workload)
        except Unavailable as exc:
            unavailable.append({"peer": peer.name, "reason": str(exc)})
            tick(runs + warmup)
            continue
        measure = _in_core if api == "in-core" else _from_python
        rec = _Recorder()
        for r in range(warmup + runs):
            peer.reset()
            gc.collect()
            gc.disable()
            try:
                ns = measure(peer)  # type: ignore[arg-type]
            finally:
                gc.enable()
            if len(ns) != len(kinds):
                raise RuntimeError(f"{peer.name}: {len(ns)} timings for {len(kinds)} commands")
            if r >= warmup:
                rec.add(ns, kinds)
                if api == "in-core" and not incore_resolution:
                    nonzero = ns[ns > 0]
                    incore_resolution = {
                        "smallest_nonzero_ns": int(nonzero.min()) if len(nonzero) else None,
                        "zero_share": round(float(np.mean(ns == 0)), 6),
                    }
            tick(1)
        c = check(peer.outcome(), workload.expected.as_dict())
        peer.release()
        checks.append({"peer": peer.name, "api": api, "ok": c.ok, "summary": c.summary()})
        rows.extend(rec.rows(peer, api))
    counts = np.bincount(kinds, minlength=len(KINDS))
    return {
        "title": f"{workload.name} latency per command type, {workload.n:,} commands",
        "workload": workload.name,
        "commands": workload.n,
        "runs": runs,
        "warmup": warmup,
        "kinds": {name: int(counts[k]) for k, name in enumerate(KINDS)},
        "clocks": {
            "in-core": "process_timed(): the CPU time-stamp counter read around each command "
            "inside the core, scaled to ns by the steady clock over the chunk; chunks of "
            "8,192 commands",
            "python": "time.perf_counter_ns() (CLOCK_MONOTONIC) read just before and just "
            "after each call; events drained every "
            f"{DRAIN_EVERY:,} calls, outside the timings",
        },
        "timer_floor_ns": timer_floor_ns(),
        "in_core_resolution": incore_resolution,
        "rows": rows,
        "checks": checks,
        "unavailable": unavailable,
        "all_checks_ok": all(c["ok"] for c in checks),
    }
