"""Crash tests that really crash: SIGKILL the sequencer's process, then recover.

A child process (``crash_child.py``) runs ``pyexchange.Exchange`` on a data directory
with fsync per batch, small journal segments and frequent snapshots, under a steady
stream of commands from ``matchcore.testing.random_stream``, and tells this process
over a pipe about every batch it ran and every acknowledgement (completed Future)
as it happens. This process kills it with SIGKILL at a seeded random moment, recovers
the data directory itself (``pyexchange.recover``) and checks:

(a) the recovered state's digest equals that of a reference engine that ran the first
    K commands of the stream, stamped with the times the child's counter clock gives;
(b) K covers every command whose acknowledgement reached this process;
(c) ``validate()`` passes.

The reference does not read the journal's data. Its commands come from the stream,
minus the repeats of an (account, client order id) that idempotent order entry
answers without journaling (``journaled_rows()`` models that rule independently);
its times come from the clock rule: the ``r``-th batch ever run (counted across
restarts) is stamped ``r + 1``. Only the batch boundaries come from the child: from
its ``BATCH`` reports and from the journal's records, which must agree wherever both
exist, and the journal's records must hold exactly the reference's commands, seq
numbers and times (so the journal can neither lose, add, reorder nor restamp a
command without failing a check). Each seed runs a chain of kills on one data
directory: every restart recovers what the previous crash left and continues the
stream from there.

``test_kill_during_snapshot_writes`` stops the snapshot writer at a chosen step
(fsync of the temporary file, rename, fsync of the directory, pruning of snapshots or
journal segments), kills the process there, and checks that recovery uses the newest
complete snapshot and reaches the same state.

CI runs 54 kills (about 25 s); ``CRASH_KILLS=500`` runs about that many (496).
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from matchcore import CommandType, Engine
from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange import EngineConfig, IdempotencyTable, Recovered, read_journal, recover
from pyexchange.engine.journal import ReadReport, RecordKind
from pyexchange.engine.snapshots import list_snapshots, read_snapshot

CHILD = Path(__file__).with_name("crash_child.py")
SHAPE = StreamShape()
CAPACITIES = engine_capacities(SHAPE)
CONFIG = EngineConfig(**CAPACITIES)
MESSAGE_SIZE = 32
READY, BATCH, ACK, POINT, DONE, FAILED = range(6)
STEPS = ("fsync", "replace", "unlink")

KILLS = int(os.environ.get("CRASH_KILLS", "0")) or None
ROUNDS = 5  # kills per seed (one data directory each)
SEEDS = 9 if KILLS is None else max(1, (KILLS * 5 // 6) // ROUNDS)
SNAPSHOT_SEEDS = 3 if KILLS is None else max(1, (KILLS // 6) // 3)
SNAPSHOT_ROUNDS = 3
STEP_PER_ROUND = 1_500  # stream commands acknowledged between two kills, at most
TOTALS: Counter[str] = Counter()


def journaled_rows(stream: np.ndarray) -> np.ndarray:
    """Rows of ``stream`` the sequencer journals: all but repeated (account, client order id).

    A NEW_ORDER with a client order id whose (account, id) an earlier NEW_ORDER carried
    is answered from the idempotency table (whatever happened to the first one).
    """
    keep = np.ones(len(stream), dtype=bool)
    seen: set[tuple[int, int]] = set()
    keyed = (stream["type"] == CommandType.NEW_ORDER) & (stream["client_order_id"] != 0)
    for row in np.nonzero(keyed)[0]:
        key = (int(stream["account"][row]), int(stream["client_order_id"][row]))
        if key in seen:
            keep[row] = False
        seen.add(key)
    return np.nonzero(keep)[0]


@dataclass
class Message:
    kind: int
    a: int
    b: int
    c: int


class Pipe:
    """The read end of the child's message pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = b""
        self.messages: list[Message] = []
        self.eof = False

    def read(self, timeout: float) -> None:
        """Read what arrives within ``timeout`` seconds (returns at the first data)."""
        if self.eof:
            time.sleep(timeout)
            return
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return
        self.buffer += data
        whole = len(self.buffer) // MESSAGE_SIZE * MESSAGE_SIZE
        words = np.frombuffer(self.buffer[:whole], dtype="<u8").reshape(-1, 4)
        self.messages += [Message(*map(int, w)) for w in words]
        self.buffer = self.buffer[whole:]

    def drain(self) -> None:
        while not self.eof:
            self.read(5.0)
        assert not self.buffer, "a message was cut short"
        os.close(self.fd)

    def of(self, kind: int) -> list[Message]:
        return [m for m in self.messages if m.kind == kind]


@dataclass
class Chain:
    """One data directory killed again and again, and what is known about it."""

    seed: int
    directory: Path
    stream: np.ndarray
    stream_path: Path
    rows: np.ndarray  # journaled_rows(stream): seq s runs stream row rows[s - 1]
    reference: Engine
    verified: int = 0  # seq up to which the recovered state was checked
    batches: dict[int, int] = field(default_factory=dict)  # first seq -> count
    times: dict[int, int] = field(default_factory=dict)  # first seq -> time (clock rule)
    stats: Counter[str] = field(default_factory=Counter)

    @classmethod
    def create(cls, seed: int, tmp: Path, commands: int) -> Chain:
        stream = random_stream(seed, commands, SHAPE)
        stream_path = tmp / "stream.npy"
        np.save(stream_path, stream)
        directory = tmp / "data"
        return cls(
            seed, directory, stream, stream_path, journaled_rows(stream), Engine(**CAPACITIES)
        )

    def expected(self, first: int, count: int) -> np.ndarray:
        """Commands ``first .. first + count - 1`` as the sequencer must journal them."""
        commands = self.stream[self.rows[first - 1 : first - 1 + count]].copy()
        assert len(commands) == count, f"seq {first + len(commands)} is past the stream"
        commands["seq"] = np.arange(first, first + count, dtype=np.uint64)
        commands["time"] = self.times[first]
        return commands

    def start_row(self) -> int:
        """The stream row to continue from: after the last journaled one."""
        return int(self.rows[self.verified - 1]) + 1 if self.verified else 0


def run_child(chain: Chain, rng: random.Random, mode: str, pause_at: int = 0) -> Pipe:
    """Start the child on ``chain``, kill it as ``mode`` says; the messages it sent."""
    read_fd, write_fd = os.pipe()
    start = chain.start_row()
    command = [
        sys.executable,
        str(CHILD),
        str(chain.directory),
        str(chain.stream_path),
        "--fd",
        str(write_fd),
        "--start",
        str(start),
        "--seed",
        str(rng.randrange(1 << 32)),
        "--config",
        ",".join(str(int(v)) for v in CONFIG.engine_kwargs().values()),
    ]
    if pause_at:
        command += ["--pause-at", str(pause_at)]
    errors = chain.directory.parent / "child.err"
    with open(errors, "wb") as err:
        child = subprocess.Popen(command, pass_fds=(write_fd,), stderr=err)
    os.close(write_fd)
    pipe = Pipe(read_fd)
    deadline = time.monotonic() + 60
    if mode == "early":  # anywhere from start-up through recovery to the first batches
        until = time.monotonic() + rng.uniform(0.0, 0.6)
        while time.monotonic() < until and child.poll() is None:
            pipe.read(until - time.monotonic())
    else:
        target = start + rng.randint(0, STEP_PER_ROUND)
        while child.poll() is None and time.monotonic() < deadline:
            pipe.read(0.05)
            if pipe.of(DONE):
                break
            if mode == "point" and pipe.of(POINT):
                break
            if mode == "acks" and max((m.a for m in pipe.of(ACK)), default=0) >= target:
                spin = time.perf_counter() + rng.uniform(0.0, 0.004)
                while time.perf_counter() < spin:  # a little further, at a random moment
                    pass
                break
    alive = child.poll() is None
    child.send_signal(signal.SIGKILL)
    child.wait()
    pipe.drain()
    if not alive or child.returncode != -signal.SIGKILL:
        pytest.fail(
            f"seed {chain.seed}: the child ended by itself ({child.returncode}), "
            f"or did not get on within 60 s:\n{errors.read_text()}"
        )
    assert not pipe.of(FAILED), f"seed {chain.seed}: a submission failed:\n{errors.read_text()}"
    return pipe


def check_recovery(chain: Chain, pipe: Pipe) -> Recovered:
    """(a), (b), (c) after a kill, and that the journal holds exactly the reference's commands."""
    seed = chain.seed
    start = chain.start_row()
    for ready in pipe.of(READY):  # the child recovered what the last check verified
        assert ready.a == chain.verified + 1, f"seed {seed}: the child recovered to {ready.a - 1}"
        assert ready.b == chain.reference.now, f"seed {seed}: the child recovered time {ready.b}"
    # The journal as the crash left it, before recovery cuts anything.
    report = ReadReport()
    journal = chain.directory / "journal"
    records = [
        (r.first_seq, r.count, r.commands().copy())
        for r in read_journal(journal, report=report)
        if r.kind == RecordKind.BATCH
    ]
    recovered = recover(chain.directory, CONFIG)
    last = recovered.next_seq - 1

    # Batch boundaries: reported by the child, or in the journal; they must agree.
    for first, count in [(m.a, m.b) for m in pipe.of(BATCH)] + [(f, c) for f, c, _ in records]:
        known = chain.batches.setdefault(first, count)
        assert known == count, f"seed {seed}: batch at seq {first} holds {known} and {count}"
    for m in pipe.of(BATCH):
        assert m.a + m.b - 1 <= last, (
            f"seed {seed}: the batch {m.a}..{m.a + m.b - 1} ran (its events were published) "
            f"but recovery stops at seq {last}"
        )
    # Walk the new batches: each gets the next time of the counter clock.
    seq, new = chain.verified + 1, []
    while seq <= last:
        assert seq in chain.batches, f"seed {seed}: no batch is known to start at seq {seq}"
        chain.times[seq] = len(chain.times) + 1
        new.append(chain.expected(seq, chain.batches[seq]))
        seq += chain.batches[seq]
    assert seq == last + 1, f"seed {seed}: recovery stops at seq {last}, inside a batch"
    for m in pipe.of(BATCH):
        assert m.c == chain.times[m.a], f"seed {seed}: batch {m.a} ran at time {m.c}"

    # Every record on disk holds exactly the reference's commands, seq numbers and times.
    for first, count, commands in records:
        if first > last:  # past what recovery kept: only a torn tail may be
            pytest.fail(f"seed {seed}: recovery dropped the whole batch at seq {first}")
        assert commands.tobytes() == chain.expected(first, count).tobytes(), (
            f"seed {seed}: the journal's batch at seq {first} is not the stream's"
        )
    if new:
        chain.reference.process(np.concatenate(new))
    # (a) and (c)
    assert recovered.engine.digest() == chain.reference.digest(), (
        f"seed {seed}: recovered state (seq {last}) differs from the reference"
    )
    recovered.engine.validate()
    assert recovered.idempotency.encode() == recovered_idempotency(chain, last)
    # (b): every acknowledged command is in the recovered prefix.
    acked = max((m.a for m in pipe.of(ACK)), default=start)
    acked_seqs = int(np.searchsorted(chain.rows, acked))  # journaled rows before `acked`
    assert acked_seqs <= last, (
        f"seed {seed}: stream rows up to {acked} were acknowledged (seq {acked_seqs}) "
        f"but recovery stops at seq {last}"
    )
    assert not recovered.skipped_snapshots, f"seed {seed}: {recovered.skipped_snapshots}"
    chain.verified = last
    chain.stats["kills"] += 1
    chain.stats["acknowledged"] += acked - start
    chain.stats["torn tails"] += report.torn_tail is not None
    chain.stats["from a snapshot"] += recovered.snapshot_seq > 0
    chain.stats["unacknowledged but journaled"] += last - acked_seqs > 0
    return recovered


def recovered_idempotency(chain: Chain, last: int) -> bytes:
    """The idempotency table a clean run of seqs 1..last ends with (rebuilt from scratch)."""
    table = IdempotencyTable()
    engine = Engine(**CAPACITIES)
    seq = 1
    while seq <= last:
        commands = chain.expected(seq, chain.batches[seq])
        table.record_batch(commands, engine.process(commands))
        seq += len(commands)
    return table.encode()


@pytest.mark.parametrize("seed", range(SEEDS))
def test_kill_anywhere(seed: int, tmp_path: Path) -> None:
    rng = random.Random(f"crash-{seed}")
    chain = Chain.create(seed, tmp_path, STEP_PER_ROUND * ROUNDS * 4 // 5)
    for _ in range(ROUNDS):
        mode = "early" if rng.random() < 0.15 else "acks"
        pipe = run_child(chain, rng, mode)
        check_recovery(chain, pipe)
        chain.stats[f"mode {mode}"] += 1
    assert chain.stats["kills"] == ROUNDS
    assert chain.verified > 0, "no command was ever journaled: the kills came too early"
    TOTALS.update(chain.stats)
    print(f"seed {seed}: {dict(chain.stats)}")


@pytest.mark.parametrize("seed", range(SNAPSHOT_SEEDS))
def test_kill_during_snapshot_writes(seed: int, tmp_path: Path) -> None:
    """Kill while the background writer is between two steps of a snapshot or a prune."""
    rng = random.Random(f"snapshot-{seed}")
    chain = Chain.create(1000 + seed, tmp_path, 3_000 * SNAPSHOT_ROUNDS)
    paused = 0
    for _ in range(SNAPSHOT_ROUNDS):
        pause_at = rng.randint(1, 10)
        pipe = run_child(chain, rng, "point", pause_at)
        snapshots = chain.directory / "snapshots"
        complete = [read_snapshot(p).seq for p in list_snapshots(snapshots)]  # never corrupt
        recovered = check_recovery(chain, pipe)
        assert recovered.snapshot_seq == max(complete, default=0), (
            f"seed {seed}: recovery used snapshot {recovered.snapshot_seq}, "
            f"the newest complete one is {max(complete, default=0)}"
        )
        for point in pipe.of(POINT):
            paused += 1
            chain.stats[f"killed at {STEPS[point.b]}"] += 1
    assert paused, "the snapshot writer never reached a step to be killed at"
    TOTALS.update(chain.stats)
    print(f"snapshot seed {seed}: {dict(chain.stats)}")
