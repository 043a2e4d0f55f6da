"""Open-loop latency at offered rates: every command has a scheduled send time.

At an offered rate ``R`` command ``i`` is scheduled at ``start + i / R`` seconds,
whether or not the engine has finished the ones before it, and its latency is its
completion time minus its *scheduled* time. A stall of the engine (or of the
driver, or of the machine) therefore delays every command scheduled during it and
shows in their latencies, instead of silently lowering the offered rate (the
"coordinated omission" of a closed loop).

The driver is one Python loop on the benchmark's own thread (the process is
pinned to one core by ``python -m bench`` where the OS allows), reading
``time.perf_counter_ns()`` (CLOCK_MONOTONIC through the vDSO) and busy-waiting,
never sleeping:

- batch API: at each wake-up it takes every command whose scheduled time has come,
  at most ``batch`` of them, passes them to one ``process()`` call and stamps all of
  them complete when the call returns;
- per-call API: it waits for each command's scheduled time (at once if it is
  already late), calls the method, and stamps the command complete when the call
  returns; this project's per-call engine has its events drained every
  ``drain_every`` commands inside the loop (a user of that API collects them too).

Completion stamps go into a preallocated array, so the driver allocates nothing
per command. Each rate runs on a fresh book with the same setup, over the first
``min(n, R * seconds)`` commands of the workload (garbage collector off). A rate
*runs away* when the engine cannot keep up: the achieved rate is below
``RUNAWAY_SHORTFALL`` of the offered one (the backlog, and so the latency, grows
for as long as the run lasts), or the median latency is above ``RUNAWAY_P50_NS``.
A rate that runs away is run once more (one stall of a shared machine is not a
runaway); the table goes up the ladder of rates and stops after the first rate
that runs away twice.

The book each run ends with is checked against this project's core run in a
closed loop over the same commands (state digest for this project's engines;
resting orders, and traded volume where the peer counts it, for the others).
"""

from __future__ import annotations

import gc
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter_ns
from typing import Any

import numpy as np

from . import hdr
from .peers import Outcome, Peer, Unavailable
from .peers.engine import BatchPeer

NS = 1_000_000_000
RATES = (
    125_000,
    1_000_000,
    2_000_000,
    3_000_000,
    5_000_000,
    8_000_000,
    10_000_000,
    15_000_000,
    20_000_000,
    25_000_000,
    30_000_000,
    40_000_000,
    50_000_000,
)
RUNAWAY_SHORTFALL = 0.95
RUNAWAY_P50_NS = 1_000_000
LEAD_NS = 2_000_000  # the first command is scheduled this long after the driver starts
WARMUP_COMMANDS = 100_000


@dataclass(frozen=True)
class Driver:
    batch: int = 64  # most commands taken per wake-up (one process() call for the batch API)
    seconds: float = 1.0  # target length of a rate's run (capped by the workload's size)
    drain_every: int = 1_000  # per-call engines: drain_events() this often, inside the loop
    rates: tuple[int, ...] = RATES

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "seconds": self.seconds,
            "drain_every": self.drain_every,
            "rates": list(self.rates),
            "clock": "time.perf_counter_ns() (CLOCK_MONOTONIC, vDSO), busy-wait, no sleep",
            "schedule": "command i at start + i / rate; latency = completion - scheduled time",
            "runaway": f"achieved rate < {RUNAWAY_SHORTFALL:.0%} of offered, or p50 > "
            f"{RUNAWAY_P50_NS / 1e6:g} ms, twice in a row (a rate that runs away is run again "
            "once, so one stall of the machine does not end the table)",
            "thread": "one Python loop on the benchmark's thread, no other thread",
        }

    def describe(self) -> str:
        return (
            "one Python loop on one thread, busy-waiting on time.perf_counter_ns() "
            "(CLOCK_MONOTONIC); command i is scheduled at start + i/rate and its latency is "
            "its completion minus that time. Batch API: at each wake-up every command whose "
            f"time has come, at most {self.batch}, goes to one process() call, all stamped "
            "complete when it returns. Per-call API: each call is made at its command's time "
            "(at once when late) and stamped when it returns; this project's engine drains its "
            f"events every {self.drain_every:,} commands inside the loop. Each rate runs about "
            f"{self.seconds:g} s (at most the whole workload) on a fresh book; a rate runs away "
            f"when the achieved rate is below {RUNAWAY_SHORTFALL:.0%} of the offered one or "
            f"p50 exceeds {RUNAWAY_P50_NS / 1e6:g} ms, twice in a row."
        )


def _drive_batch(
    peer: BatchPeer, m: int, rate: int, batch: int, start: int
) -> tuple[np.ndarray, int]:
    """Completion time of each of the first ``m`` commands, batch API; and the calls made."""
    pc, run = perf_counter_ns, peer.run_batch
    ends: list[int] = []
    stamps: list[int] = []
    i = 0
    while i < m:
        due = ((pc() - start) * rate) // NS + 1
        if due <= i:
            continue
        j = min(due, i + batch, m)
        run(i, j)
        stamps.append(pc())
        ends.append(j)
        i = j
    sizes = np.diff(np.array([0, *ends], dtype=np.int64))
    return np.repeat(np.array(stamps, dtype=np.int64), sizes), len(stamps)


def _drive_calls(peer: Peer, m: int, due: list[int], drain_every: int) -> tuple[np.ndarray, int]:
    """Completion time of each of the first ``m`` commands, one call each; and the drains."""
    out = array("q", bytes(8 * m))  # preallocated: nothing is allocated per command
    drains = 0
    for i in range(0, m, drain_every):
        peer.run_scheduled(i, min(i + drain_every, m), due, out)
        peer.drain(False)
        drains += 1
    return np.frombuffer(out, dtype=np.int64).copy(), drains


def scheduled(start: int, m: int, rate: int) -> np.ndarray:
    """Scheduled time of commands 0..m-1: ``start + ceil(i * 1e9 / rate)`` ns."""
    i = np.arange(m, dtype=np.int64)
    return start + (i * NS + rate - 1) // rate


def run_rate(peer: Peer, m: int, rate: int, driver: Driver) -> dict[str, Any]:
    """One open-loop run of the first ``m`` commands at ``rate``; latencies and figures."""
    peer.reset()
    batch = isinstance(peer, BatchPeer)
    gc.collect()
    gc.disable()
    try:
        if batch:
            start = perf_counter_ns() + LEAD_NS
            done, calls = _drive_batch(peer, m, rate, driver.batch, start)
        else:
            offsets = scheduled(0, m, rate)
            lead = LEAD_NS + 40 * m  # time to write the schedule as a list of ints
            while True:
                start = perf_counter_ns() + lead
                due = (offsets + start).tolist()
                if perf_counter_ns() < start:
                    break
                lead *= 2
            done, calls = _drive_calls(peer, m, due, driver.drain_every)
            calls = m
    finally:
        gc.enable()
    if len(done) != m:
        raise RuntimeError(f"{peer.name}: {len(done)} completions for {m} commands")
    latency = done - scheduled(start, m, rate)
    elapsed = int(done[-1] - start) if m else 0
    achieved = m * NS / elapsed if elapsed > 0 else float("inf")
    summary = hdr.summary(hdr.histogram(latency))
    runaway = achieved < RUNAWAY_SHORTFALL * rate or (summary["p50"] or 0) > RUNAWAY_P50_NS
    return {
        "offered_per_s": rate,
        "achieved_per_s": round(achieved),
        "commands": m,
        "seconds": round(elapsed / NS, 4),
        "calls": calls,
        "mean_batch": round(m / calls, 2) if calls else None,
        "latency_ns": summary,
        "runaway": bool(runaway),
    }


def _compare(got: Outcome, want: Outcome) -> dict[str, Any]:
    """Compare a prefix run with the core's closed-loop run of the same commands."""
    fields = ["resting_orders", "resting_qty"]
    if "digest" in got.extra:  # this project's engines: the whole state, rejects 0
        fields.append("digest")
    else:  # the others count their own fills
        fields += [f for f in ("traded_volume", "fills") if getattr(got, f) is not None]
    g, w = got.as_dict(), want.as_dict()
    mismatches = {f: {"got": g[f], "expected": w[f]} for f in fields if g[f] != w[f]}
    if got.rejects:
        mismatches["rejects"] = {"got": got.rejects, "expected": 0}
    return {"ok": not mismatches, "compared": fields, "mismatches": mismatches}


class _Expected:
    """This project's core, closed loop, over the first ``m`` commands: what a run must end with."""

    def __init__(self, workload: Any, engine_cls: type) -> None:
        self.peer = BatchPeer(engine_cls, "matchcore", 8192)
        self.peer.load(workload)
        self.cache: dict[int, Outcome] = {}

    def __call__(self, m: int) -> Outcome:
        if m not in self.cache:
            self.peer.reset()
            self.peer.replay_prefix(m)
            self.cache[m] = self.peer.outcome()
        return self.cache[m]


def sizes(n: int, driver: Driver) -> list[tuple[int, int]]:
    """(rate, commands) for each rate of the ladder."""
    return [(rate, max(1, min(n, math.ceil(rate * driver.seconds)))) for rate in driver.rates]


def open_loop_table(
    workload: Any,
    peers: list[tuple[Peer, str]],
    driver: Driver,
    engine_cls: type,
    tick: Callable[[int], None] = lambda _n: None,
) -> dict[str, Any]:
    """The open-loop rows of every ``(peer, api label)`` on ``workload``."""
    if not hdr.available():
        return {"workload": workload.name, "unavailable": "hdrhistogram is not installed"}
    expected = _Expected(workload, engine_cls)
    ladder = sizes(workload.n, driver)
    rows: list[dict[str, Any]] = []
    unavailable: list[dict[str, str]] = []
    stopped: dict[str, int | None] = {}
    for peer, api in peers:
        try:
            peer.load(workload)
        except Unavailable as exc:
            unavailable.append({"peer": peer.name, "reason": str(exc)})
            tick(len(ladder))
            continue
        warm = min(workload.n, WARMUP_COMMANDS)
        run_rate(peer, warm, 1 << 62, driver)  # warm-up: every command due at once
        stopped[peer.name] = None
        for k, (rate, m) in enumerate(ladder):
            row = run_rate(peer, m, rate, driver)
            retried = False
            if row["runaway"]:  # once more: a stall of the machine is not a runaway
                row, retried = run_rate(peer, m, rate, driver), True
            row = {"peer": peer.name, "api": api, **row, "retried": retried}
            row["check"] = _compare(peer.outcome(), expected(m))
            rows.append(row)
            tick(1)
            if row["runaway"]:
                stopped[peer.name] = rate
                tick(len(ladder) - k - 1)
                break
        peer.release()
    expected.peer.release()
    return {
        "title": f"{workload.name} open loop, offered rates up to where latency runs away",
        "workload": workload.name,
        "commands": workload.n,
        "driver": driver.as_dict(),
        "driven": driver.describe(),
        "rows": rows,
        "runaway_at": stopped,
        "unavailable": unavailable,
        "all_checks_ok": all(r["check"]["ok"] for r in rows),
    }
