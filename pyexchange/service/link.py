"""The service layer's way into the engine: submissions with backpressure, answers per batch, reads.

``EngineLink(backend, markets)`` runs on one asyncio loop. ``backend`` is
anything with ``submit_to(commands, sink, token)`` and ``query(fn)``: the
embedded ``pyexchange.engine.Exchange`` (its sequencer thread), or a cluster
gateway's ``pyexchange.cluster.backend.ClusterBackend``. The link is the sink:
the backend calls ``answered(events, starts, answers)`` once per batch with
every submission of this link that the batch answered
(``pyexchange.engine.sequencer.AnswerSink``), and the link hands that over to
its loop: posted to the server's ``Handover`` (``handover=``: the loop is woken
once per batch for the replies and the publishers together), or else with one
``call_soon_threadsafe``: one wake-up per batch, not per command, and no Future
per command.

- ``submit_each(commands, label, done)`` queues a submission now (or raises a
  ``ServiceError``: ``Unavailable`` while closing or stopped, ``Busy`` past
  ``max_in_flight`` commands submitted and not answered); ``done(answer,
  error)`` is called once, on the loop, with an ``Answer`` (each command's
  events) or the ``ServiceError`` that ended it.
- ``submit`` / ``run`` give the submission's events as one array (an asyncio
  Future; the caller going away never loses the in-flight count, which is
  settled by the answer); ``run_each`` one array per command.
- ``query(fn)`` / ``read(fn)`` run ``fn(engine)`` between two batches (a
  consistent view that includes every command answered before).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from itertools import pairwise
from typing import Any, Protocol

import numpy as np

from matchcore import EVENT_DTYPE

from ..engine import records
from ..engine.handover import Handover
from ..engine.sequencer import SequencerStopped
from .errors import Busy, Internal, ServiceError, Unavailable
from .markets import Markets

log = logging.getLogger(__name__)

_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)


class Backend(Protocol):
    def submit_to(self, commands: np.ndarray, sink: Any, token: Any) -> None: ...
    def query(self, fn: Callable[[Any], object]) -> Any: ...  # a concurrent.futures.Future


class _Rows:
    """What the answers of one batch read of its event array, read once for all of them
    (a batch answers several submissions; each reading its own span cost a multi-field
    view and a ``tolist`` of its own, ~4 us a submission)."""

    __slots__ = ("bounds", "events", "read", "starts")

    def __init__(self, events: np.ndarray, starts: np.ndarray) -> None:
        self.events = events
        self.starts = starts
        self.bounds: list[int] | None = None
        self.read: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}

    def of(self, names: tuple[str, ...]) -> list[tuple[Any, ...]]:
        rows = self.read.get(names)
        if rows is None:
            rows = self.read[names] = records.tuples(self.events, names)
        return rows

    def starts_list(self) -> list[int]:
        if self.bounds is None:
            self.bounds = self.starts.tolist()
        return self.bounds


class Answer:
    """The events of one submission, per command (a view on the batch's event array)."""

    __slots__ = ("batch", "events", "hi", "lo", "pieces", "starts")

    def __init__(
        self,
        events: np.ndarray,
        starts: np.ndarray,
        lo: int,
        hi: int,
        pieces: list[np.ndarray] | None,
        batch: _Rows | None = None,
    ) -> None:
        self.events = events
        self.starts = starts
        self.lo = lo
        self.hi = hi
        self.pieces = pieces
        self.batch = batch

    def __len__(self) -> int:
        return self.hi - self.lo if self.pieces is None else len(self.pieces)

    def all(self) -> np.ndarray:
        """Every event of the submission, in order."""
        if self.pieces is None:
            return self.events[self.starts[self.lo] : self.starts[self.hi]]
        return records.join(self.pieces, EVENT_DTYPE) if self.pieces else _NO_EVENTS

    def arrays(self) -> list[np.ndarray]:
        """The events of each command."""
        if self.pieces is not None:
            return self.pieces
        s = self.starts
        return [self.events[s[j] : s[j + 1]] for j in range(self.lo, self.hi)]

    def rows(self, names: Sequence[str]) -> list[list[tuple[Any, ...]]]:
        """The events of each command as tuples of the fields ``names``, read once for the
        whole span (``records.tuples``)."""
        if self.pieces is not None:
            return [records.tuples(p, names) for p in self.pieces]
        if self.batch is not None:
            rows = self.batch.of(tuple(names))
            bounds = self.batch.starts_list()[self.lo : self.hi + 1]
            return [rows[a:b] for a, b in pairwise(bounds)]
        bounds = self.starts[self.lo : self.hi + 1].tolist()
        first = bounds[0]
        span = records.tuples(self.events[first : bounds[-1]], names)
        return [span[a - first : b - first] for a, b in pairwise(bounds)]


Done = Callable[[Answer | None, ServiceError | None], None]


class _Ticket:
    __slots__ = ("count", "done", "label", "started")

    def __init__(self, count: int, label: str, done: Done) -> None:
        self.count = count
        self.label = label
        self.started = time.perf_counter()
        self.done = done


def stopped(error: BaseException) -> ServiceError:
    """A backend's failure as the client sees it."""
    if isinstance(error, ServiceError):
        return error
    if isinstance(error, SequencerStopped):
        return Unavailable(f"the exchange stopped: {error}", "STOPPED")
    return Internal("internal error")


class EngineLink:
    """Submissions, answers and reads between one asyncio loop and the engine."""

    def __init__(
        self,
        backend: Backend,
        markets: Markets,
        metrics: Any = None,
        max_in_flight: int = 10_000,
        handover: Handover | None = None,
    ) -> None:
        self.backend = backend
        self.handover = handover  # the backend's thread flushes it after each batch
        self.markets = markets
        self.metrics = metrics
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._latency: dict[str, Any] = {}

    # ------------------------------------------------------------ submitting

    def _reserve(self, count: int) -> None:
        if self.closing:
            raise Unavailable("the exchange is shutting down", "SHUTTING_DOWN")
        if self.in_flight + count > self.max_in_flight:
            raise Busy(
                f"the exchange is busy: {self.in_flight} commands in flight "
                f"(limit {self.max_in_flight}); retry shortly",
                retry_after_s=0.1,
            )
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()

    def submit_each(self, commands: np.ndarray, label: str, done: Done) -> None:
        """Queue ``commands`` now, or a ``ServiceError``; ``done`` on the loop when answered."""
        count = len(commands)
        self._reserve(count)
        ticket = _Ticket(count, label, done)
        self.in_flight += count
        try:
            self.backend.submit_to(commands, self, ticket)
        except SequencerStopped as exc:
            self.in_flight -= count
            raise Unavailable(f"the exchange is stopped: {exc}", "STOPPED") from None

    def submit(self, commands: np.ndarray, label: str) -> asyncio.Future[np.ndarray]:
        """Queue now (or a ``ServiceError``); a Future of every event of the commands."""
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()

        def done(answer: Answer | None, error: ServiceError | None) -> None:
            if future.done():  # the caller went away
                return
            if answer is None:
                future.set_exception(error or Internal("internal error"))
            else:
                future.set_result(answer.all())

        self.submit_each(commands, label, done)
        return future

    async def run(self, commands: np.ndarray, label: str) -> np.ndarray:
        return await self.submit(commands, label)

    async def run_each(self, commands: np.ndarray, label: str) -> list[np.ndarray]:
        """Submit and wait: the events of each command."""
        future: asyncio.Future[list[np.ndarray]] = asyncio.get_running_loop().create_future()

        def done(answer: Answer | None, error: ServiceError | None) -> None:
            if future.done():
                return
            if answer is None:
                future.set_exception(error or Internal("internal error"))
            else:
                future.set_result(answer.arrays())

        self.submit_each(commands, label, done)
        return await future

    # ---------------------------------------------- the backend's answer sink

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None:
        """The backend's thread: hand the batch's answers to the loop (once per batch)."""
        if threading.get_ident() == self._loop_thread:
            self._deliver(events, starts, answers)
        elif self.handover is not None:
            self.handover.post(self._deliver, events, starts, answers)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._deliver, events, starts, answers)

    def failed(self, tokens: list[Any], error: BaseException) -> None:
        if threading.get_ident() == self._loop_thread:
            self._fail(tokens, error)
        else:
            assert self._loop is not None
            self._loop.call_soon_threadsafe(self._fail, tokens, error)

    def _deliver(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None:
        now = time.perf_counter()
        batch = _Rows(events, starts) if len(answers) > 1 else None
        for ticket, lo, hi, pieces in answers:
            self._settle(ticket, now)
            try:
                ticket.done(Answer(events, starts, lo, hi, pieces, batch), None)
            except Exception:
                log.exception("answering a submission failed")

    def _fail(self, tokens: list[Any], error: BaseException) -> None:
        refusal = stopped(error)
        now = time.perf_counter()
        for ticket in tokens:
            self._settle(ticket, now)
            try:
                ticket.done(None, refusal)
            except Exception:
                log.exception("answering a submission failed")

    def _settle(self, ticket: _Ticket, now: float) -> None:
        self.in_flight -= ticket.count
        if ticket.label and self.metrics is not None:
            histogram = self._latency.get(ticket.label)
            if histogram is None:
                histogram = self._latency[ticket.label] = self.metrics.latency.labels(ticket.label)
            histogram.observe(now - ticket.started)

    # ---------------------------------------------------------------- reads

    def query(self, fn: Callable[[Any], Any]) -> asyncio.Future[Any]:
        """Run ``fn(engine)`` between two batches (counts as one command in flight)."""
        self._reserve(1)
        try:
            future = self.backend.query(fn)
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange is stopped: {exc}", "STOPPED") from None
        self.in_flight += 1
        wrapped = asyncio.wrap_future(future)

        def settle(_: asyncio.Future[Any]) -> None:  # on the loop
            self.in_flight -= 1

        wrapped.add_done_callback(settle)
        return wrapped

    async def read(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(engine)``'s result; shielded, so a caller that goes away settles nothing early."""
        try:
            return await asyncio.shield(self.query(fn))
        except SequencerStopped as exc:
            raise Unavailable(f"the exchange stopped: {exc}", "STOPPED") from None
