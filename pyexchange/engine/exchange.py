"""The embedded exchange: one data directory, recovered on open, journaled on every batch.

``Exchange.open(data_dir, config)`` recovers the engine (newest snapshot plus
journal), continues the journal where it ended and starts the sequencer.
``submit()`` queues commands from any thread (a Future of their events),
``submit_to()`` the same answered to a sink once per batch; ``execute()`` waits
for their events; ``after_batch`` is the sequencer's hook after each batch
(the server's ``Handover.flush``). ``close()`` drains the queue and syncs the journal.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import Engine

from .journal import DataDirLock, EngineConfig, FsyncPolicy, JournalWriter
from .recovery import Recovered, journal_dir, recover, snapshot_dir
from .sequencer import AnswerSink, Clock, EventSink, Sequencer, SnapshotPolicy


class Exchange:
    def __init__(
        self, recovered: Recovered, sequencer: Sequencer, data_dir: Path, lock: DataDirLock
    ) -> None:
        self.recovered = recovered
        self.sequencer = sequencer
        self.data_dir = data_dir
        self._lock = lock

    @classmethod
    def open(
        cls,
        data_dir: Path | str,
        config: EngineConfig | None = None,
        *,
        fsync: FsyncPolicy = FsyncPolicy.BATCH,
        fsync_interval_ms: float = 10.0,
        snapshot_every: int = 1_000_000,
        keep_snapshots: int = 3,
        segment_bytes: int = 256 << 20,
        clock: Clock = time.time_ns,
        max_batch: int = 8192,
        on_events: EventSink | None = None,
        idle_tick_ns: int | None = 100_000_000,
        after_batch: Callable[[], None] | None = None,
    ) -> Exchange:
        data_dir = Path(data_dir)
        lock = DataDirLock(data_dir)  # DataDirInUse if another exchange runs on it
        try:
            recovered = recover(data_dir, config)
            journal = JournalWriter(
                journal_dir(data_dir),
                EngineConfig.of(recovered.engine),
                recovered.next_seq,
                fsync=fsync,
                interval_ms=fsync_interval_ms,
                segment_bytes=segment_bytes,
                continue_last=recovered.journal_continues,
            )
        except BaseException:
            lock.release()
            raise
        sequencer = Sequencer(
            recovered.engine,
            journal,
            next_seq=recovered.next_seq,
            clock=clock,
            max_batch=max_batch,
            idempotency=recovered.idempotency,
            snapshots=SnapshotPolicy(
                snapshot_dir(data_dir), journal_dir(data_dir), snapshot_every, keep_snapshots
            ),
            on_events=on_events,
            idle_tick_ns=idle_tick_ns,
            after_batch=after_batch,
        )
        return cls(recovered, sequencer.start(), data_dir, lock)

    @property
    def engine(self) -> Engine:
        """The engine (read it only from the sequencer thread, or when nothing is queued)."""
        return self.sequencer.engine

    def submit(self, commands: np.ndarray) -> Future[np.ndarray]:
        return self.sequencer.submit(commands)

    def submit_to(self, commands: np.ndarray, sink: AnswerSink, token: Any) -> None:
        """Queue commands; ``sink.answered`` gets their events after their batch (sequencer.py)."""
        self.sequencer.submit_to(commands, sink, token)

    def query(self, fn: Callable[[Engine], object]) -> Future[object]:
        """Run ``fn(engine)`` on the sequencer thread between batches (a safe engine read)."""
        return self.sequencer.query(fn)

    def execute(self, commands: np.ndarray, timeout: float | None = 30.0) -> np.ndarray:
        """Submit and wait: the events of ``commands``, once journaled and applied."""
        return self.sequencer.submit(commands).result(timeout)

    def close(self) -> None:
        try:
            self.sequencer.stop()
        finally:
            self._lock.release()

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
