"""Throughput runs: warm-up, repeated timed runs on fresh books, and the checks.

``measure()`` runs one peer on one workload: a warm-up run, then ``runs`` timed
runs, each on a fresh book loaded with the same setup, with the garbage collector
collected before and disabled during the timed part. It reports the median, min
and max of the per-run times, and checks what the peer ended with against what
the workload says every correct engine ends with. A peer that disagrees is
reported (``check.ok`` false, with the fields that differ), never hidden.
``measure_in_turn()`` does the same for several (peer, workload) pairs, their runs
taken in turn (one peer at several capacities, ``--capacity``).
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .peers import Outcome, Peer

CHECKED = ("traded_volume", "fills", "trading_commands", "resting_orders", "resting_qty", "rejects")


@dataclass
class Check:
    ok: bool
    compared: list[str]
    unobserved: list[str]
    mismatches: dict[str, dict[str, int]] = field(default_factory=dict)

    def summary(self) -> str:
        if self.mismatches:
            return "MISMATCH " + ", ".join(
                f"{k} {v['got']:,} != {v['expected']:,}" for k, v in self.mismatches.items()
            )
        if "traded_volume" in self.unobserved:
            return "ok (book only: no fills seen)"
        return "ok"


@dataclass
class Measurement:
    peer: str
    description: str
    workload: str
    n: int
    runs_ns: list[int]
    warmup_ns: list[int]
    outcome: Outcome
    check: Check
    memory: dict[str, Any] | None = None

    @property
    def median_ns(self) -> float:
        return statistics.median(self.runs_ns) / self.n

    @property
    def min_ns(self) -> float:
        return min(self.runs_ns) / self.n

    @property
    def max_ns(self) -> float:
        return max(self.runs_ns) / self.n

    @property
    def ops_per_s(self) -> float:
        return 1e9 / self.median_ns

    def as_dict(self) -> dict[str, Any]:
        return {
            "peer": self.peer,
            "description": self.description,
            "workload": self.workload,
            "commands": self.n,
            "runs": len(self.runs_ns),
            "runs_ns": self.runs_ns,
            "warmup_ns": self.warmup_ns,
            "median_ns_per_command": round(self.median_ns, 2),
            "min_ns_per_command": round(self.min_ns, 2),
            "max_ns_per_command": round(self.max_ns, 2),
            "commands_per_s": round(self.ops_per_s),
            "outcome": self.outcome.as_dict(),
            "check": {
                "ok": self.check.ok,
                "summary": self.check.summary(),
                "compared": self.check.compared,
                "unobserved": self.check.unobserved,
                "mismatches": self.check.mismatches,
            },
        }


def check(outcome: Outcome, expected: dict[str, int]) -> Check:
    """Compare every field the peer observed with the expected value (rejects: 0)."""
    want = dict(expected)
    want["rejects"] = 0
    compared, unobserved, mismatches = [], [], {}
    for name in CHECKED:
        got = getattr(outcome, name)
        if got is None:
            unobserved.append(name)
            continue
        compared.append(name)
        if got != want[name]:
            mismatches[name] = {"got": got, "expected": want[name]}
    return Check(ok=not mismatches, compared=compared, unobserved=unobserved, mismatches=mismatches)


def measure(
    peer: Peer,
    workload: Any,
    runs: int = 5,
    warmup: int = 1,
    tick: Callable[[], None] | None = None,
) -> Measurement:
    """Time ``peer`` on ``workload``; ``tick`` is called after each run (progress bars)."""
    return measure_in_turn([(peer, workload)], runs, warmup, tick)[0]


def measure_in_turn(
    pairs: list[tuple[Peer, Any]],
    runs: int = 5,
    warmup: int = 1,
    tick: Callable[[], None] | None = None,
) -> list[Measurement]:
    """Time each ``(peer, workload)`` pair, taking their runs in turn (run 1 of each, run 2
    of each, ...), so that a change in a shared machine's load falls on all of them alike
    (one peer at several capacities: the ratios between them are from the same minutes).

    Each pair has its own peer object; all are loaded first and released at the end.
    """
    for peer, workload in pairs:
        peer.load(workload)
    times: list[list[int]] = [[] for _ in pairs]
    warm: list[list[int]] = [[] for _ in pairs]
    first: list[dict[str, Any] | None] = [None] * len(pairs)
    outcomes = [Outcome() for _ in pairs]
    for i in range(warmup + runs):
        for k, (peer, _) in enumerate(pairs):
            peer.reset()
            gc.collect()
            gc.disable()
            try:
                ns = peer.replay()
            finally:
                gc.enable()
            (warm[k] if i < warmup else times[k]).append(ns)
            outcomes[k] = peer.outcome()
            if first[k] is None:
                first[k] = outcomes[k].as_dict()
            elif outcomes[k].as_dict() != first[k]:
                raise RuntimeError(f"{peer.name}: two runs of the same commands ended differently")
            if tick is not None:
                tick()
    out = []
    for k, (peer, workload) in enumerate(pairs):
        memory = peer.memory()
        peer.release()  # a SCALE engine is a gigabyte: none kept past its measurement
        out.append(
            Measurement(
                peer=peer.name,
                description=peer.description,
                workload=workload.name,
                n=workload.n,
                runs_ns=times[k],
                warmup_ns=warm[k],
                outcome=outcomes[k],
                check=check(outcomes[k], workload.expected.as_dict()),
                memory=memory,
            )
        )
    return out
