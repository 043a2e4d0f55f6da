"""Peers: one small adapter per order book, all with the same replay interface.

A runner drives every peer the same way (``bench.runner.measure``)::

    peer.load(workload)     # once, untimed: convert the workload to the peer's own form
    peer.reset()            # per run, untimed: a fresh book loaded with the setup
    ns = peer.replay()      # per run, timed by the peer: the measured commands
    peer.outcome()          # what it ended with, checked against the workload

``replay()`` returns the nanoseconds of its timed part, so a peer can leave out
work that is the harness's, not the book's (tallying events for the checks).
A peer that cannot be imported here is reported as unavailable, not failed.
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


class Unavailable(Exception):
    """The peer's package is not installed or does not load here."""
