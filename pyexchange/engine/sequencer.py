"""The sequencer: many producers, one engine, the journal before every batch.

Producers call ``submit(commands)`` from any thread and get a Future of the
events those commands produce. One thread takes whatever is queued (up to
``max_batch`` commands), stamps sequence numbers and the engine time (from an
injectable clock, never going backwards), appends the batch to the journal
(group commit: one write and, by policy, one fsync for the whole batch), and
only then runs it through the engine with the GIL released. Acknowledgement
(the Future's result) therefore means "journaled and applied". This is the
LMAX shape of DESIGN.md §6.

With no traffic the thread wakes every ``idle_tick_ns`` and journals an
``ADVANCE_TIME`` only when a resting GTD order is due (``Engine.next_expiry``),
so an idle exchange writes nothing and a replay of the journal is exact.

A repeated (account, client order id) is answered from the idempotency table
and never journaled twice: the same order with the first result, a different
order under that id with a DUPLICATE_CLIENT_ORDER_ID reject. Snapshots are
taken between batches every ``snapshot_every`` commands, and written and pruned
by a background thread.
If the journal cannot be written the sequencer stops and fails every pending
and later submission: the engine never runs a command that is not on disk.

``submit_to(commands, sink, token)`` is the same without a Future per
submission: after each batch the sequencer calls ``sink.answered(events,
starts, answers)`` once per sink with every submission of that sink the batch
answered (``AnswerSink``): one hand-over per batch instead of one per command,
and each command's own events without searching for them.

``after_batch()`` (optional) is called on the sequencer thread after each batch
(its publishers and answers done) and after each query: the server's
``Handover.flush``, which wakes the asyncio loop once for everything the batch
handed it (``handover.py``).

``query(fn)`` runs ``fn(engine)`` on the sequencer thread between two batches
(after everything queued before it): the only safe way to read the engine
while the sequencer runs, since the engine is single-threaded and runs its
batches with the GIL released.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, CommandType, Engine

from . import records
from .idempotency import IdempotencyTable, keyed_rows
from .journal import JournalWriter, prune_segments
from .snapshots import prune_snapshots, write_snapshot

log = logging.getLogger(__name__)

Clock = Callable[[], int]
EventSink = Callable[[np.ndarray, np.ndarray], None]


class SequencerStopped(RuntimeError):
    """The sequencer is stopped (or failed) and takes no more commands."""


class AnswerSink(Protocol):
    """Who receives the answers of ``submit_to`` (the service layer's engine link).

    ``answered(events, starts, answers)``: ``answers`` lists ``(token, lo, hi,
    pieces)`` for each submission answered; command ``j`` of the batch produced
    ``events[starts[j]:starts[j + 1]]`` and the submission's commands are batch
    rows ``lo`` to ``hi`` (exclusive). ``pieces`` is ``None`` then, or a list with
    the events of each of the submission's commands when they are not one span
    of the batch (some were answered from the idempotency table). Called on the
    sequencer thread (another backend may call it on its own loop): it must hand
    the work over and return. ``failed(tokens, error)``: those submissions will
    never be answered (the sequencer stopped).
    """

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None: ...

    def failed(self, tokens: list[Any], error: BaseException) -> None: ...


@dataclass
class SnapshotPolicy:
    """When to snapshot and what to keep."""

    directory: Path
    journal_directory: Path
    every_commands: int = 1_000_000
    keep: int = 3


@dataclass
class SequencerStats:
    batches: int = 0
    commands: int = 0
    deduplicated: int = 0
    snapshots: int = 0
    last_batch_size: int = 0


@dataclass(slots=True)
class _Submission:
    commands: np.ndarray
    future: Future[np.ndarray] | None
    sink: AnswerSink | None = None
    token: Any = None


@dataclass
class _Query:
    fn: Callable[[Engine], object]
    future: Future[object]


_STOP = object()


class Sequencer:
    def __init__(
        self,
        engine: Engine,
        journal: JournalWriter,
        *,
        next_seq: int,
        clock: Clock = time.time_ns,
        max_batch: int = 8192,
        idempotency: IdempotencyTable | None = None,
        snapshots: SnapshotPolicy | None = None,
        on_events: EventSink | None = None,
        idle_tick_ns: int | None = 100_000_000,
        after_batch: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.journal = journal
        self.next_seq = next_seq
        self.clock = clock
        self.max_batch = max_batch
        self.idempotency = idempotency if idempotency is not None else IdempotencyTable()
        self.snapshot_policy = snapshots
        self.on_events = on_events
        self.idle_tick_ns = idle_tick_ns
        self.after_batch = after_batch
        self.stats = SequencerStats()
        self._queue: queue.SimpleQueue[_Submission | object] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sequencer", daemon=True)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-writer")
        self._last_time = engine.now
        self._since_snapshot = 0
        self._failure: BaseException | None = None
        self._stopping = False
        # Taken to enqueue, to stop and to fail: nothing can slip into the queue
        # after the stop marker or after the failure drained it.
        self._gate = threading.Lock()

    # ----------------------------------------------------------- producers

    def start(self) -> Sequencer:
        self._thread.start()
        return self

    def submit(self, commands: np.ndarray) -> Future[np.ndarray]:
        """Queue commands (COMMAND_DTYPE); the Future gives their events once journaled and run."""
        if commands.dtype != COMMAND_DTYPE or commands.ndim != 1:
            raise TypeError("submit() takes a one-dimensional COMMAND_DTYPE array")
        future: Future[np.ndarray] = Future()
        future.set_running_or_notify_cancel()  # never cancelable: the sequencer will answer it
        self._enqueue(_Submission(records.copy(commands), future))
        return future

    def submit_to(self, commands: np.ndarray, sink: AnswerSink, token: Any) -> None:
        """Queue commands; ``sink`` gets their events with ``token`` after their batch."""
        if commands.dtype != COMMAND_DTYPE or commands.ndim != 1:
            raise TypeError("submit_to() takes a one-dimensional COMMAND_DTYPE array")
        self._enqueue(_Submission(records.copy(commands), None, sink, token))

    def _enqueue(self, item: _Submission | _Query) -> None:
        with self._gate:
            if self._failure is not None or self._stopping:
                raise SequencerStopped("the sequencer is stopped") from self._failure
            self._queue.put(item)

    def query(self, fn: Callable[[Engine], object]) -> Future[object]:
        """Run ``fn(engine)`` on the sequencer thread after what is queued; a Future of its result.

        ``fn`` sees the state after every command submitted before the query and
        none submitted after it. It must be quick (the engine waits) and must not
        change the engine; an exception it raises goes to the Future only.
        """
        future: Future[object] = Future()
        future.set_running_or_notify_cancel()
        self._enqueue(_Query(fn, future))
        return future

    @property
    def queue_depth(self) -> int:
        """Submissions and queries waiting for the sequencer thread (approximate)."""
        return self._queue.qsize()

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, sync the journal and stop."""
        with self._gate:
            if self._stopping:
                return
            self._stopping = True
            self._queue.put(_STOP)
        self._thread.join(timeout)
        # anything that raced in behind the stop is refused, never left hanging
        self._refuse_queued(SequencerStopped("the sequencer is stopped"))
        self._writer.shutdown(wait=True)
        self.journal.close()

    @property
    def failure(self) -> BaseException | None:
        return self._failure

    # ----------------------------------------------------------- the thread

    def _run(self) -> None:
        timeout = None if self.idle_tick_ns is None else self.idle_tick_ns / 1e9
        stop = False
        while not stop and self._failure is None:
            try:
                first = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._idle_tick()
                continue
            if first is _STOP:
                break
            if isinstance(first, _Query):
                self._run_query(first)
                continue
            pending = [first]
            deferred: _Query | None = None
            size = len(first.commands)  # type: ignore[attr-defined]
            # empty() first: the common batch of one would pay for raising queue.Empty
            while size < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()  # this thread is the only consumer
                if item is _STOP:
                    stop = True
                    break
                if isinstance(item, _Query):  # it must see this batch, and nothing later
                    deferred = item
                    break
                pending.append(item)
                size += len(item.commands)  # type: ignore[attr-defined]
            try:
                self._run_batch(pending)  # type: ignore[arg-type]
            except BaseException as exc:  # any failure stops the sequencer
                self._fail(exc, pending)  # type: ignore[arg-type]
                if deferred is not None:
                    deferred.future.set_exception(SequencerStopped(str(exc)))
                self._batch_done()
                return
            if deferred is not None:
                self._run_query(deferred)

    def _run_query(self, query: _Query) -> None:
        self._idle_tick()  # a stream of queries alone must not stop engine time (GTD expiry)
        if self._failure is not None:
            query.future.set_exception(SequencerStopped(str(self._failure)))
            return
        try:
            result = query.fn(self.engine)
        except BaseException as exc:  # the query's failure is the caller's, not the engine's
            query.future.set_exception(exc)
        else:
            query.future.set_result(result)
        self._batch_done()

    def _batch_done(self) -> None:
        if self.after_batch is not None:
            try:
                self.after_batch()
            except Exception:  # the hook's failure is its own, never the engine's
                log.exception("after_batch failed")

    def _idle_tick(self) -> None:
        """With no traffic, advance engine time when a GTD order is due, so it expires on
        time (within ``idle_tick_ns``). Nothing else needs engine time to move (the next
        command brings its own), so an idle server journals nothing."""
        if self.idle_tick_ns is None:
            return
        due = self.engine.next_expiry  # 0: no GTD order rests
        if due and max(self.clock(), self._last_time) >= due:
            tick = np.zeros(1, dtype=COMMAND_DTYPE)
            tick["type"] = CommandType.ADVANCE_TIME
            try:
                self._run_batch([_Submission(tick, None)])
            except BaseException as exc:
                self._fail(exc, [])
                self._batch_done()

    def _run_batch(self, pending: list[_Submission]) -> None:
        commands = (
            pending[0].commands
            if len(pending) == 1
            else records.join([p.commands for p in pending], COMMAND_DTYPE)
        )
        keyed = keyed_rows(commands)  # once for both: the common batch has none
        answered, keep = self._deduplicate(commands, keyed)
        batch = commands[keep] if answered else commands
        count = len(batch)
        if count:
            now = max(self._last_time, self.clock())
            self._last_time = now
            seq = self.next_seq
            batch["seq"] = seq if count == 1 else np.arange(seq, seq + count, dtype=np.uint64)
            batch["time"] = now
            self.journal.append_batch(batch)  # before the engine sees it
            self.next_seq += count
            # A new array per batch, not process_into() with a reused one: the events
            # outlive the batch (the market-data inbox, the answers posted to the loop,
            # the Futures' results), and the next batch would write over them.
            events = self.engine.process(batch)
            self.idempotency.record_batch(batch, events, None if answered else keyed)
        else:
            events = np.zeros(0, dtype=EVENT_DTYPE)
        # Publishers first: once a client holds its reply, market data, drop
        # copy and metrics already have the events behind it.
        if self.on_events is not None and count:
            self.on_events(batch, events)
        self._answer(pending, commands, keep, batch, events, answered)
        self._batch_done()  # before a snapshot: the loop delivers meanwhile
        self.stats.batches += 1
        self.stats.commands += count
        self.stats.last_batch_size = count
        self._since_snapshot += count
        policy = self.snapshot_policy
        if policy is not None and self._since_snapshot >= policy.every_commands:
            self.snapshot_now()

    def _deduplicate(
        self, commands: np.ndarray, keyed: np.ndarray
    ) -> tuple[dict[int, np.ndarray | int], np.ndarray]:
        """Rows answered without running (``IdempotencyTable.deduplicate``)."""
        answered, keep = self.idempotency.deduplicate(commands, keyed)
        self.stats.deduplicated += len(answered)
        return answered, keep

    def _answer(
        self,
        pending: list[_Submission],
        commands: np.ndarray,
        keep: np.ndarray,
        batch: np.ndarray,
        events: np.ndarray,
        answered: dict[int, np.ndarray | int],
    ) -> None:
        # command j: events[starts[j]:starts[j + 1]]; a batch of one owns every event
        if len(batch) == 1:
            starts = np.array((0, len(events)))
        else:
            # the batch's seqs are consecutive and every event carries its command's, so
            # searching for seq .. seq + count gives the ends too: one searchsorted, no
            # np.append (a Python wrapper and a copy: 2.7 -> 1.1 us for 50 commands)
            seq = self.next_seq - len(batch)  # the batch's first (none: all answered)
            bounds = np.arange(seq, self.next_seq + 1, dtype=np.uint64)
            starts = events["seq"].searchsorted(bounds)
        sink = pending[0].sink if len(pending) == 1 and not answered else None
        if sink is not None:
            # the usual batch: one submission of a sink, every command run
            only = pending[0]
            try:
                sink.answered(events, starts, [(only.token, 0, len(batch), None)])
            except Exception:  # a sink's failure is its own, never the engine's
                log.exception("answer sink failed")
            return
        position = np.cumsum(keep) - 1 if answered else None  # row -> index in batch
        sinks: dict[int, tuple[AnswerSink, list[Any]]] = {}
        row = 0
        for submission in pending:
            lo, row = row, row + len(submission.commands)
            pieces: list[np.ndarray] | None = None
            if position is not None:
                pieces = []
                for r in range(lo, row):
                    known = answered.get(r, r)
                    if isinstance(known, np.ndarray):  # answered from the table
                        pieces.append(known)
                    else:  # run now, or a repeat of a row run in this batch
                        i = position[known]
                        pieces.append(events[starts[i] : starts[i + 1]])
            if submission.sink is not None:
                answer: tuple[Any, int, int, list[np.ndarray] | None]
                if pieces is None:
                    answer = (submission.token, lo, row, None)
                else:
                    answer = (submission.token, 0, 0, pieces)
                entry = sinks.get(id(submission.sink))
                if entry is None:
                    sinks[id(submission.sink)] = (submission.sink, [answer])
                else:
                    entry[1].append(answer)
            elif submission.future is not None:
                if pieces is None:
                    result = events[starts[lo] : starts[row]]
                else:
                    result = records.join(pieces, EVENT_DTYPE) if pieces else events[:0]
                submission.future.set_result(result)
        for sink, answers in sinks.values():
            try:
                sink.answered(events, starts, answers)
            except Exception:  # a sink's failure is its own, never the engine's
                log.exception("answer sink failed")

    def _fail(self, exc: BaseException, pending: list[_Submission]) -> None:
        log.error("sequencer stopped: %s", exc)
        with self._gate:
            self._failure = exc
        stopped = SequencerStopped(str(exc))
        _refuse([p for p in pending if p.future is None or not p.future.done()], stopped)
        self._refuse_queued(stopped)

    def _refuse_queued(self, error: SequencerStopped) -> None:
        items = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Submission | _Query):
                items.append(item)
        _refuse(items, error)

    # ------------------------------------------------------------ snapshots

    def snapshot_now(self) -> Future[Path] | None:
        """Snapshot the engine at the current seq (call on the sequencer thread, or when idle)."""
        policy = self.snapshot_policy
        if policy is None:
            return None
        seq = self.next_seq - 1
        state = self.engine.snapshot()  # the canonical state: its hash is the digest
        self.journal.append_digest(seq, hashlib.blake2b(state, digest_size=16).hexdigest())
        idempotency = self.idempotency.copy()  # encoded by the writer, off this thread
        self._since_snapshot = 0
        self.stats.snapshots += 1

        def write() -> Path:
            path = write_snapshot(policy.directory, seq, state, idempotency.encode())
            kept = sorted(policy.directory.glob("*.snapshot"))[-policy.keep :]
            prune_snapshots(policy.directory, policy.keep)
            oldest = int(kept[0].stem) if kept else 0
            prune_segments(policy.journal_directory, oldest)
            return path

        written = self._writer.submit(write)
        written.add_done_callback(_log_failure)
        return written


def _refuse(items: list[Any], error: SequencerStopped) -> None:
    """Fail submissions and queries that will never run (one ``failed`` call per sink)."""
    sinks: dict[int, tuple[AnswerSink, list[Any]]] = {}
    for item in items:
        sink = getattr(item, "sink", None)
        if sink is not None:
            sinks.setdefault(id(sink), (sink, []))[1].append(item.token)
        elif item.future is not None and not item.future.done():
            item.future.set_exception(error)
    for sink, tokens in sinks.values():
        try:
            sink.failed(tokens, error)
        except Exception:
            log.exception("answer sink failed")


def _log_failure(written: Future[Path]) -> None:
    if written.exception() is not None:
        log.error("snapshot not written: %s", written.exception())
