"""New orders of one turn of the event loop go to the sequencer as one submission.

Each submission costs the loop a Future, a queue put that wakes the sequencer thread,
an ``asyncio.wrap_future`` and, when the sequencer answers, a ``call_soon_threadsafe``
(a write to the loop's wake-up pipe); the sequencer thread pays an answer per
submission. Under load one read of the sockets starts many requests in the same turn
of the loop: ``CoalescingGateway.run`` joins their NEW_ORDER commands (the first
schedules a flush at the end of the turn with ``loop.call_soon``, the others add to
it), submits them once, and gives each request the events of its own commands. At low
load a turn holds one request and nothing changes; the busier the loop, the larger the
joined batches: the cost per order falls as the rate rises.

Only NEW_ORDER commands are joined: each gets at least one event (ACCEPTED or
REJECTED) carrying its seq, and the commands of a submission get consecutive seqs, so
a request's events are the ones whose seq falls in its range (the venue API sends no
client order ids, so none is answered from the idempotency table). Everything else
(cancels, replaces, cancel-all, reads) goes to the wrapped gateway as it is. A refusal
of the joined submission (busy, stopping) is every request's refusal, as it would have
been alone. The command latency metric counts one joined submission once.
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import numpy as np

from matchcore import COMMAND_DTYPE, CommandType

from ...engine import records
from ...engine.sequencer import SequencerStopped
from ...service.errors import ServiceError, Unavailable


class CoalescingGateway:
    """The service layer's gateway, with NEW_ORDER submissions of one loop turn joined."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._pending: dict[str, list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]] = {}
        self.submissions = 0  # joined submissions made (for tests and benchmarks)
        self.joined = 0  # commands they carried

    def __getattr__(self, name: str) -> Any:  # markets, read, query, closing...
        return getattr(self.gateway, name)

    async def run(self, commands: np.ndarray, label: str) -> np.ndarray:
        if not len(commands) or not bool(np.all(commands["type"] == CommandType.NEW_ORDER)):
            return await self.gateway.run(commands, label)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[np.ndarray] = loop.create_future()
        pending = self._pending.get(label)
        if pending is None:
            pending = self._pending[label] = []
            loop.call_soon(self._flush, label)
        pending.append((commands, waiter))
        return await waiter

    def _flush(self, label: str) -> None:
        entries = self._pending.pop(label)
        commands = (
            entries[0][0]
            if len(entries) == 1
            else records.join([c for c, _ in entries], COMMAND_DTYPE)
        )
        self.submissions += 1
        self.joined += len(commands)
        try:
            future = self.gateway.submit(commands, label)
        except ServiceError as exc:
            for _, waiter in entries:
                if not waiter.done():
                    waiter.set_exception(copy.copy(exc))
            return
        future.add_done_callback(lambda done: _deliver(entries, done))


def _deliver(
    entries: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]], done: asyncio.Future[Any]
) -> None:
    """Each request's slice of the joined events (by seq), or the refusal."""
    if done.cancelled():
        failure: BaseException | None = asyncio.CancelledError()
    else:
        failure = done.exception()
    if failure is not None:
        for _, waiter in entries:
            if not waiter.done():
                waiter.set_exception(_refusal(failure))
        return
    events = done.result()
    if len(entries) == 1:
        if not entries[0][1].done():
            entries[0][1].set_result(events)
        return
    seqs = events["seq"]
    first = int(seqs[0])
    sizes = np.fromiter((len(c) for c, _ in entries), dtype=np.int64, count=len(entries))
    starts = np.concatenate(([0], np.cumsum(sizes)))
    bounds = np.searchsorted(seqs, first + starts, side="left")
    for i, (_, waiter) in enumerate(entries):
        if not waiter.done():
            waiter.set_result(events[bounds[i] : bounds[i + 1]])


def _refusal(failure: BaseException) -> BaseException:
    """What each request raises (one exception object each: tracebacks are per raise)."""
    if isinstance(failure, SequencerStopped):
        return Unavailable(f"the exchange stopped: {failure}", "STOPPED")
    return copy.copy(failure)
