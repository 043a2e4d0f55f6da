"""The bounds the sequencer gives an AnswerSink: command j of a batch owns
``events[starts[j]:starts[j + 1]]`` (pyexchange/engine/sequencer.py, ``_answer``).

The bounds come from one search for the batch's consecutive seqs and the one after
them, which relies on every event carrying its command's seq: checked here on
batches of one submission, of several (the sequencer held by a query while they
queue), with repeats of a client order id, and with every row answered from the
idempotency table (no command run, no event).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import CommandType
from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange import EngineConfig, Exchange

SHAPE = StreamShape()
CONFIG = EngineConfig(**engine_capacities(SHAPE))


class Recorder:
    """An AnswerSink keeping every call (sequencer thread)."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, list[Any]]] = []
        self.count = 0  # submissions answered
        self.changed = threading.Condition()

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None:
        with self.changed:
            self.calls.append((events.copy(), np.array(starts), list(answers)))
            self.count += len(answers)
            self.changed.notify_all()

    def failed(self, tokens: list[Any], error: BaseException) -> None:
        raise AssertionError(f"failed: {error}")

    def wait(self, count: int) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: self.count >= count, timeout=30)


def check_bounds(events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> int:
    """The bounds cover the events in order, and each row's span holds exactly the events
    of its command (a command may have none). Tokens are (first stream row, rows); stream
    row r runs as seq r + 1. Returns the rows checked."""
    assert starts.dtype.kind in "iu" and starts[0] == 0 and starts[-1] == len(events)
    assert (np.diff(starts) >= 0).all()
    seqs = events["seq"]
    rows = 0
    for (first, size), lo, hi, pieces in answers:
        assert pieces is None and hi - lo == size
        for k in range(size):
            own = seqs[starts[lo + k] : starts[lo + k + 1]]
            assert (own == first + k + 1).all()
            assert np.count_nonzero(seqs == first + k + 1) == len(own)
        rows += size
    return rows


def test_answer_bounds_are_each_commands_events(tmp_path: Path) -> None:
    stream = random_stream(21, 3_000, SHAPE)
    stream["client_order_id"] = 0
    sink = Recorder()
    with Exchange.open(tmp_path, CONFIG, idle_tick_ns=None) as exchange:
        sequencer = exchange.sequencer
        rows = i = submitted = 0
        rng = np.random.default_rng(21)
        while i < len(stream):
            gate = threading.Event()
            held = sequencer.query(lambda engine, gate=gate: gate.wait(30))  # queue behind it
            for _ in range(int(rng.integers(1, 5))):
                chunk = stream[i : i + int(rng.integers(1, 60))]
                sequencer.submit_to(chunk, sink, (i, len(chunk)))
                submitted += 1
                rows += len(chunk)
                i += len(chunk)
            gate.set()
            held.result(30)
        assert sink.wait(submitted)
        covered = sum(check_bounds(*call) for call in sink.calls)
        assert covered == rows
        assert any(len(answers) > 1 for _, _, answers in sink.calls)  # batches of several


def test_answer_bounds_with_repeats_and_nothing_run(tmp_path: Path) -> None:
    order = random_stream(22, 400, SHAPE)
    order = order[order["type"] == CommandType.NEW_ORDER][:3].copy()
    order["client_order_id"] = [7, 8, 9]
    sink = Recorder()
    with Exchange.open(tmp_path, CONFIG, idle_tick_ns=None) as exchange:
        sequencer = exchange.sequencer
        for n, batch in enumerate((order, order, order[:1])):  # run; then all from the table
            sequencer.submit_to(batch, sink, len(batch))
            assert sink.wait(n + 1)
        first, again, single = sink.calls
        events, starts, ((_, lo, hi, pieces),) = first
        assert pieces is None and (lo, hi) == (0, 3) and len(starts) == 4
        for j in range(3):  # seqs 1, 2, 3: each an ACCEPTED at least
            own = events["seq"][starts[j] : starts[j + 1]]
            assert len(own) and (own == j + 1).all()
        assert starts[-1] == len(events)
        for events, starts, answers in (again, single):
            assert len(events) == 0 and starts.tolist() == [0]  # nothing run
            ((token, lo, hi, pieces),) = answers
            assert pieces is not None and len(pieces) == token
