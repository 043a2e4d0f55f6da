"""Peers: one small adapter per order book, all with the same replay interface.

A runner drives every peer the same way (``bench.runner.measure``)::

    peer.load(workload)     # once, untimed: convert the workload to the peer's own form
    peer.reset()            # per run, untimed: a fresh book loaded with the setup
    ns = peer.replay()      # per run, timed by the peer: the measured commands
    peer.outcome()          # what it ended with, checked against the workload

Peers that take one command per call also implement ``run_timed(i, j, out)`` (the
latency runs: commands ``i..j-1``, ``out[k]`` = nanoseconds of call ``k`` from
``perf_counter_ns()`` read just before and just after it) and ``run_scheduled(i, j,
due, out)`` (the open loop: call ``k`` starts once ``perf_counter_ns()`` reaches
``due[k]``, ``out[k]`` = the clock when it returned). ``out`` is a preallocated
``array('q')``, so no Python object is kept per command while timing (a new int
per command would page-fault fresh memory every hundred or so commands, inside
the timings). This project's batch peer implements ``run_batch(i, j)`` and
``replay_timed()`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Outcome:
    """What a peer ended with after the measured commands; None where it cannot tell."""

    traded_volume: int | None = None
    fills: int | None = None
    resting_orders: int | None = None
    resting_qty: int | None = None
    trading_commands: int | None = None
    rejects: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k != "extra"}
        out.update(self.extra)
        return out


class Peer:
    """Base class of the adapters; subclasses fill in the four methods."""

    name = "peer"
    description = ""
    workloads: tuple[str, ...] = ()  # names of the workloads it can replay

    def supports(self, workload: Any) -> bool:
        return workload.name in self.workloads

    def load(self, workload: Any) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def replay(self) -> int:
        raise NotImplementedError

    def outcome(self) -> Outcome:
        raise NotImplementedError

    def memory(self) -> dict[str, Any] | None:
        """Memory figures of the book, where it reports them."""
        return None

    # One call per command, each timed from Python (latency runs, open loop).
    per_call = False

    def run_timed(self, i: int, j: int, out: Any) -> None:
        """Run measured commands ``i..j-1`` one call each; ``out[k]``: call ``k``'s ns."""
        raise NotImplementedError

    def run_scheduled(self, i: int, j: int, due: list[int], out: Any) -> None:
        """As ``run_timed``, each call once the clock reaches ``due[k]``; ``out[k]``: its end."""
        raise NotImplementedError

    def drain(self, tally: bool = True) -> int:
        """Collect what the book buffered (events); returns rejects seen (0 if it cannot tell)."""
        return 0

    def release(self) -> None:
        """Drop the book (and its memory) once the runs are over; ``reset()`` builds a new one."""
        self.__dict__.pop("book", None)


class Unavailable(Exception):
    """The peer's package is not installed or does not load here."""
