"""The journal, snapshots, recovery, group commit, idempotency and CLI of pyexchange.

Torn writes: a journal cut at every byte of its last record, or with any bit of its
last record flipped, recovers to the record before (the tail reported and cut; the
three padding bytes of a record header are outside the CRC and ignored); a bit
flipped in a record with valid records after it stops recovery with CorruptJournal
and touches nothing. Segment headers, rolling and pruning; snapshot + journal equals
the whole journal; a corrupt snapshot falls back; digests recorded in the journal are
checked; every fsync policy syncs as documented. The sequencer's group commit under
many producer threads, idempotent order entry (in a batch, across batches, across a
restart and a SIGKILL), a journal that cannot be written, and the CLI.

The last tests reproduce bugs and weaknesses once found in pyexchange (short
writes, a failed idle tick, submit racing stop, a failed segment roll, a
journal left behind a snapshot, frames forged in client bytes, two writers on
one directory), so that they stay fixed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest

from matchcore import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandType,
    Engine,
    EventType,
    Intent,
    MarketState,
    Reject,
    TimeInForce,
    make_commands,
)
from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange import (
    CorruptJournal,
    EngineConfig,
    Exchange,
    FsyncPolicy,
    IdempotencyTable,
    JournalWriter,
    OldFormat,
    SequencerStopped,
    read_journal,
    recover,
)
from pyexchange.engine.journal import (
    PREALLOCATE_BYTES,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    ZERO_AHEAD_BELOW,
    ReadReport,
    RecordKind,
    commands_after,
    encode_record,
    read_segment_header,
)
from pyexchange.engine.snapshots import (
    list_snapshots,
    read_snapshot,
    snapshot_path,
    write_snapshot,
)

SHAPE = StreamShape()
CAPACITIES = engine_capacities(SHAPE)
CONFIG = EngineConfig(**CAPACITIES)
BIG = 1 << 40  # snapshot_every / segment_bytes that never trigger
# Bytes 13..15 of a record header are padding: outside the CRC (it is computed over
# zeros there) and ignored by the reader, so a flip there changes nothing.
PAD = range(13, 16)


# ------------------------------------------------------------------ helpers


def counter_clock(start: int = 1) -> Callable[[], int]:
    return itertools.count(start).__next__


def open_exchange(data_dir: Path, config: EngineConfig = CONFIG, **kwargs: Any) -> Exchange:
    kwargs.setdefault("clock", counter_clock())
    kwargs.setdefault("idle_tick_ns", None)
    kwargs.setdefault("snapshot_every", BIG)
    return Exchange.open(data_dir, config, **kwargs)


def run_stream(
    data_dir: Path, stream: np.ndarray, chunks: list[int], **kwargs: Any
) -> tuple[str, int]:
    """Run ``stream`` in chunks, one batch (one record) each; (digest, last seq)."""
    with open_exchange(data_dir, **kwargs) as exchange:
        start = 0
        for size in chunks:
            exchange.execute(stream[start : start + size])
            start += size
        assert start == len(stream)
        return exchange.engine.digest(), exchange.sequencer.next_seq - 1


def even(total: int, size: int) -> list[int]:
    """Chunk sizes of at most ``size`` that add up to ``total``."""
    return [size] * (total // size) + ([total % size] if total % size else [])


def batches(data_dir: Path) -> list[Any]:
    """The journal's BATCH records (their commands copied)."""
    out = []
    for record in read_journal(data_dir / "journal"):
        if record.kind == RecordKind.BATCH:
            record.body = bytes(record.body)
            out.append(record)
    return out


def replay_digest(records: list[Any], config: EngineConfig = CONFIG) -> str:
    """Digest of a fresh engine that ran ``records``' commands (the reference of a prefix)."""
    engine = Engine(**config.engine_kwargs())
    for record in records:
        engine.process(record.commands())
    return engine.digest()


def segments(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "journal").glob("*.journal"))


@pytest.fixture(scope="module")
def stream() -> np.ndarray:
    """600 commands, the setup included."""
    return random_stream(7, 600 - len(random_stream(7, 0, SHAPE)), SHAPE)


@pytest.fixture
def small_journal(tmp_path: Path, stream: np.ndarray) -> tuple[Path, list[Any]]:
    """One segment, records of 1..40 commands, the last one of 3 commands."""
    rng = random.Random(1)
    chunks = []
    left = 200
    while left > 3:
        chunks.append(min(left - 3, rng.randint(1, 40)))
        left -= chunks[-1]
    chunks.append(3)
    run_stream(tmp_path, stream[:200], chunks)
    records = batches(tmp_path)
    assert records[-1].count == 3 and len(segments(tmp_path)) == 1
    return tmp_path, records


# ------------------------------------------------------------------ torn writes


def test_truncated_at_every_byte_of_the_last_record(small_journal: tuple[Path, list[Any]]) -> None:
    data_dir, records = small_journal
    (segment,) = segments(data_dir)
    data = segment.read_bytes()
    last = records[-1]
    assert last.offset + RECORD_HEADER_SIZE + len(last.body) == len(data)
    good = replay_digest(records[:-1])
    good_seq = records[-2].last_seq
    for cut in range(last.offset, len(data)):
        segment.write_bytes(data[:cut])
        recovered = recover(data_dir)
        assert recovered.next_seq - 1 == good_seq, cut
        assert recovered.engine.digest() == good, cut
        recovered.engine.validate()
        if cut == last.offset:  # a clean end: nothing torn
            assert recovered.journal.torn_tail is None
        else:
            assert f"at {last.offset}" in (recovered.journal.torn_tail or ""), cut
        assert segment.stat().st_size == last.offset, f"torn tail at {cut} not cut"
    # Cut once more, then the exchange continues after the cut and ends where it did.
    segment.write_bytes(data[: last.offset + 100])
    full = replay_digest(records)
    with open_exchange(data_dir, clock=counter_clock(len(records))) as exchange:
        exchange.execute(last.commands())
        assert exchange.engine.digest() == full
    assert recover(data_dir).engine.digest() == full
    assert segment.read_bytes() == data


def test_preallocated_zeros_end_the_records(tmp_path: Path, stream: np.ndarray) -> None:
    """The writer writes each record over zeros it wrote ahead (so an fdatasync changes no
    file size); a crash leaves them: they end the records without being a torn tail, a
    torn record in them is one, recovery cuts them and the journal goes on after them."""
    exchange = open_exchange(tmp_path)
    exchange.execute(stream[:100])
    (segment,) = segments(tmp_path)
    allocated = segment.stat().st_size
    assert allocated >= SEGMENT_HEADER_SIZE + PREALLOCATE_BYTES // 2
    for start in range(100, 200, 10):  # records written in place: the size never moves
        exchange.execute(stream[start : start + 10])
        assert segment.stat().st_size == allocated
    digest, seq = exchange.engine.digest(), exchange.sequencer.next_seq
    crashed = segment.read_bytes()  # as SIGKILL would leave it: the zeros after the records
    exchange.close()
    end = segment.stat().st_size  # closing cut the zeros
    assert crashed[:end] == segment.read_bytes() and not crashed[end:].strip(b"\0")
    assert commands_after(tmp_path / "journal", 0) >= seq - 1
    segment.write_bytes(crashed)
    assert commands_after(tmp_path / "journal", 0) >= seq - 1
    report = ReadReport()
    assert sum(r.count for r in read_journal(tmp_path / "journal", report=report)) == seq - 1
    assert report.torn_tail is None and segment.stat().st_size == allocated  # no repair
    recovered = recover(tmp_path)
    assert recovered.engine.digest() == digest and recovered.next_seq == seq
    assert recovered.journal.torn_tail is None and segment.stat().st_size == end
    # A record torn in the zeros (its first 30 bytes written) is a torn tail.
    torn = bytearray(crashed)
    torn[end : end + 30] = crashed[SEGMENT_HEADER_SIZE : SEGMENT_HEADER_SIZE + 30]
    segment.write_bytes(torn)
    recovered = recover(tmp_path)
    assert recovered.engine.digest() == digest and f"at {end}" in recovered.journal.torn_tail
    assert segment.stat().st_size == end
    # The exchange continues after the cut zeros, and a restart sees every record.
    segment.write_bytes(crashed)
    with open_exchange(tmp_path, clock=counter_clock(100)) as again:
        again.execute(stream[200:300])
        digest = again.engine.digest()
    assert recover(tmp_path).engine.digest() == digest


def test_large_records_extend_the_segment_without_zeros(tmp_path: Path) -> None:
    """A record of ZERO_AHEAD_BELOW bytes or more is written past the end (zeros first would
    write it twice); a small one after it gets zeros ahead again; both read back."""
    writer = JournalWriter(tmp_path, CONFIG, 1)
    large = np.zeros(ZERO_AHEAD_BELOW // COMMAND_DTYPE.itemsize + 1, dtype=COMMAND_DTYPE)
    large["seq"] = np.arange(1, len(large) + 1)
    writer.append_batch(large)
    (segment,) = tmp_path.glob("*.journal")
    end = SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE + large.nbytes
    assert segment.stat().st_size == end  # no zeros ahead of the large record
    small = large[:3].copy()
    small["seq"] = np.arange(len(large) + 1, len(large) + 4)
    writer.append_batch(small)
    assert segment.stat().st_size > end + RECORD_HEADER_SIZE + small.nbytes
    counts = [r.count for r in read_journal(tmp_path)]
    writer.close()
    assert counts == [len(large), 3] == [r.count for r in read_journal(tmp_path)]
    assert segment.stat().st_size == end + RECORD_HEADER_SIZE + small.nbytes


def test_zeros_ending_an_earlier_segment_stop_recovery(tmp_path: Path, stream: np.ndarray) -> None:
    """A rolled segment is cut to its last record: zeros after it are damage there."""
    run_stream(tmp_path, stream[:300], [10] * 30, segment_bytes=2_000)
    first = segments(tmp_path)[0]
    last = [r for r in batches(tmp_path) if r.segment == first][-1]
    assert len(segments(tmp_path)) > 1
    assert first.stat().st_size == last.offset + RECORD_HEADER_SIZE + len(last.body)
    with open(first, "ab") as f:
        f.write(bytes(4096))
    with pytest.raises(CorruptJournal, match=first.name):
        recover(tmp_path)


def test_flipped_bits_in_the_last_record_are_a_torn_tail(
    small_journal: tuple[Path, list[Any]],
) -> None:
    data_dir, records = small_journal
    (segment,) = segments(data_dir)
    data = segment.read_bytes()
    last = records[-1]
    good = replay_digest(records[:-1])
    # Every bit of the record header, and one bit of every byte of the body.
    flips = [(i, b) for i in range(RECORD_HEADER_SIZE) for b in range(8)]
    flips += [(i, i % 8) for i in range(RECORD_HEADER_SIZE, len(data) - last.offset)]
    for i, bit in flips:
        damaged = bytearray(data)
        damaged[last.offset + i] ^= 1 << bit
        segment.write_bytes(damaged)
        recovered = recover(data_dir)
        if i in PAD:
            assert recovered.engine.digest() == replay_digest(records), (i, bit)
            continue
        assert recovered.journal.torn_tail is not None, (i, bit)
        assert recovered.engine.digest() == good, (i, bit)
        assert recovered.next_seq - 1 == records[-2].last_seq
        assert segment.stat().st_size == last.offset


def test_flipped_bit_in_a_middle_record_stops_recovery(
    small_journal: tuple[Path, list[Any]],
) -> None:
    data_dir, records = small_journal
    (segment,) = segments(data_dir)
    data = segment.read_bytes()
    middle = records[len(records) // 2]
    size = RECORD_HEADER_SIZE + len(middle.body)
    for i in range(size):
        if i in PAD:
            continue
        damaged = bytearray(data)
        damaged[middle.offset + i] ^= 1 << (i % 8)
        segment.write_bytes(damaged)
        with pytest.raises(CorruptJournal) as error:
            recover(data_dir)
        message = str(error.value)
        assert segment.name in message and f"at byte {middle.offset}:" in message, message
        assert "valid records follow" in message
        assert segment.read_bytes() == damaged, "recovery changed a corrupt journal"


def test_corrupt_last_record_of_an_earlier_segment_stops_recovery(
    tmp_path: Path, stream: np.ndarray
) -> None:
    run_stream(tmp_path, stream[:300], [10] * 30, segment_bytes=2_000)
    first = segments(tmp_path)[0]
    in_first = [r for r in batches(tmp_path) if r.segment == first]
    data = bytearray(first.read_bytes())
    data[-1] ^= 0x10  # the last byte of its last record
    first.write_bytes(data)
    with pytest.raises(CorruptJournal, match=f"{first.name} at byte {in_first[-1].offset}"):
        recover(tmp_path)


def test_damaged_segment_headers(tmp_path: Path, stream: np.ndarray) -> None:
    digest, _ = run_stream(tmp_path, stream[:300], [10] * 30, segment_bytes=2_000)
    paths = segments(tmp_path)
    assert len(paths) >= 4
    assert [int(p.stem) for p in paths] == [batches_in(tmp_path, p)[0] for p in paths]
    saved = {p: p.read_bytes() for p in paths}

    def restore() -> None:
        for p, data in saved.items():
            p.write_bytes(data)

    # A rolled segment cut inside its header by a crash: it is removed, nothing is lost
    # (its records were all after the cut).
    last = paths[-1]
    before_last = replay_digest([r for r in batches(tmp_path) if r.segment != last])
    for cut in range(SEGMENT_HEADER_SIZE):
        last.write_bytes(saved[last][:cut])
        recovered = recover(tmp_path)
        assert "segment header cut short" in (recovered.journal.torn_tail or "")
        assert recovered.engine.digest() == before_last
        assert not last.exists()
        restore()
    assert recover(tmp_path).engine.digest() == digest
    # A damaged header of a segment with segments after it: corrupt, and said so.
    middle = paths[1]
    for i, what in [(0, "not a journal segment"), (9, "checksum mismatch")]:
        data = bytearray(saved[middle])
        data[i] ^= 0x01
        middle.write_bytes(data)
        with pytest.raises(CorruptJournal, match=f"{middle.name}: .*{what}"):
            recover(tmp_path)
        restore()
    # A missing segment in the middle: the next one starts later than expected.
    middle.unlink()
    with pytest.raises(CorruptJournal, match=f"{paths[2].name}: starts at seq"):
        recover(tmp_path)
    restore()
    # The last segment's header damaged in place (not cut short): corrupt too.
    data = bytearray(saved[last])
    data[12] ^= 0x01
    last.write_bytes(data)
    with pytest.raises(CorruptJournal, match=f"{last.name}: segment header checksum mismatch"):
        recover(tmp_path)


def batches_in(data_dir: Path, segment: Path) -> list[int]:
    return [r.first_seq for r in batches(data_dir) if r.segment == segment]


# ------------------------------------------------------------------ segments and snapshots


def test_segments_roll_and_are_pruned_after_snapshots(tmp_path: Path, stream: np.ndarray) -> None:
    digest, last_seq = run_stream(
        tmp_path, stream, [20] * 30, segment_bytes=3_000, snapshot_every=100, keep_snapshots=2
    )
    snapshots = [read_snapshot(p).seq for p in list_snapshots(tmp_path / "snapshots")]
    assert len(snapshots) == 2 and not list((tmp_path / "snapshots").glob("*.tmp"))
    oldest = min(snapshots)
    paths = segments(tmp_path)
    firsts = [int(p.stem) for p in paths]
    # Every segment but the last was rolled past its size; none wholly before the oldest
    # kept snapshot is left, and what is left starts right after something kept.
    for p in paths[:-1]:
        assert p.stat().st_size >= 3_000
    assert firsts[0] > 1, "no segment was pruned"
    assert firsts[0] <= oldest + 1 and (len(firsts) == 1 or firsts[1] - 1 > oldest)
    records = batches(tmp_path)
    assert [r.first_seq for r in records] == sorted(r.first_seq for r in records)
    for before, after in itertools.pairwise(records):
        assert after.first_seq == before.last_seq + 1
    assert records[-1].last_seq == last_seq
    recovered = recover(tmp_path)
    assert recovered.snapshot_seq == max(snapshots)
    assert recovered.engine.digest() == digest
    # The older snapshot is enough with what is left of the journal.
    (tmp_path / "snapshots" / f"{max(snapshots):020d}.snapshot").unlink()
    recovered = recover(tmp_path)
    assert recovered.snapshot_seq == oldest and recovered.engine.digest() == digest
    assert recovered.replayed_commands == last_seq - oldest


@pytest.fixture
def snapshotted(tmp_path: Path, stream: np.ndarray) -> tuple[Path, str, int, list[int]]:
    """One segment (nothing pruned), a snapshot every ~100 commands, all kept."""
    digest, last_seq = run_stream(
        tmp_path, stream, [25] * 24, snapshot_every=100, keep_snapshots=100
    )
    seqs = sorted(read_snapshot(p).seq for p in list_snapshots(tmp_path / "snapshots"))
    assert len(seqs) >= 4 and len(segments(tmp_path)) == 1
    return tmp_path, digest, last_seq, seqs


def only_snapshots(data_dir: Path, keep: list[int]) -> None:
    for path in list_snapshots(data_dir / "snapshots"):
        if read_snapshot(path).seq not in keep:
            path.unlink()


def test_snapshot_plus_journal_equals_whole_journal(
    snapshotted: tuple[Path, str, int, list[int]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    data_dir, digest, last_seq, seqs = snapshotted
    whole = tmp_path_factory.mktemp("whole")
    shutil.copytree(data_dir / "journal", whole / "journal")
    from_start = recover(whole)
    assert from_start.snapshot_seq == 0 and from_start.replayed_commands == last_seq
    assert from_start.engine.digest() == digest
    assert from_start.digests_checked == len(seqs)  # one digest record per snapshot
    assert from_start.idempotency.encode() == recover(data_dir).idempotency.encode()
    for seq in seqs:
        copy = tmp_path_factory.mktemp("one")
        shutil.copytree(data_dir, copy, dirs_exist_ok=True)
        only_snapshots(copy, [seq])
        recovered = recover(copy)
        assert recovered.snapshot_seq == seq
        assert recovered.replayed_commands == last_seq - seq
        assert recovered.engine.digest() == digest
        assert recovered.digests_checked == sum(s > seq for s in seqs)
        assert recovered.idempotency.encode() == from_start.idempotency.encode()


def test_corrupt_newest_snapshot_falls_back(
    snapshotted: tuple[Path, str, int, list[int]],
) -> None:
    data_dir, digest, _, seqs = snapshotted
    directory = data_dir / "snapshots"
    newest, older = (directory / f"{seqs[-1]:020d}.snapshot", seqs[-2])
    saved = newest.read_bytes()
    damages: list[tuple[bytes, str]] = [
        (saved[:-1], "promises"),
        (saved[:20], "shorter than its header"),
        (b"NOTASNAP" + saved[8:], "not a snapshot"),
        (saved[:100] + bytes([saved[100] ^ 4]) + saved[101:], "checksum mismatch"),
    ]
    for damaged, why in damages:
        newest.write_bytes(damaged)
        recovered = recover(data_dir)
        assert recovered.snapshot_seq == older, why
        assert recovered.engine.digest() == digest
        assert len(recovered.skipped_snapshots) == 1 and why in recovered.skipped_snapshots[0]
    # A well-formed file whose engine state the engine refuses.
    newest.unlink()
    write_snapshot(directory, seqs[-1], b"MCSTATE\x04" + bytes(40), b"")
    recovered = recover(data_dir)
    assert recovered.snapshot_seq == older and recovered.engine.digest() == digest
    # Every snapshot damaged: the whole journal, from seq 1.
    for path in list_snapshots(directory):
        path.write_bytes(path.read_bytes()[:-3])
    recovered = recover(data_dir)
    assert recovered.snapshot_seq == 0 and recovered.engine.digest() == digest
    assert len(recovered.skipped_snapshots) == len(seqs)


def as_format(segment: Path, version: int) -> None:
    """Rewrite a segment's header as an older format wrote it (a valid CRC)."""
    data = bytearray(segment.read_bytes())
    header_size = SEGMENT_HEADER_SIZE - 4
    data[:8] = b"MCJRNL\x00" + bytes([version])
    data[header_size:SEGMENT_HEADER_SIZE] = struct.pack(
        "<I", google_crc32c.value(bytes(data[:header_size]))
    )
    segment.write_bytes(bytes(data))


def test_a_data_dir_of_the_format_before_slot_ids_is_refused(
    snapshotted: tuple[Path, str, int, list[int]],
) -> None:
    """Format 2 (order ids 1, 2, 3, ... whatever the slots) is refused with a clear reason,
    by recover() and the CLI, whether its snapshot or its journal says so: never
    replayed into other order ids, and an old snapshot is not skipped for the journal."""
    data_dir, _, _, seqs = snapshotted
    newest = snapshot_path(data_dir / "snapshots", seqs[-1])
    snap = read_snapshot(newest)
    assert snap.engine_state.startswith(b"MCSTATE\x04")
    write_snapshot(data_dir / "snapshots", snap.seq, b"MCSTATE\x02" + snap.engine_state[8:], b"")
    with pytest.raises(OldFormat, match=rf"{newest.name}: a snapshot written before"):
        recover(data_dir)
    out = cli("replay", "--quiet", str(data_dir), cwd=data_dir.parent)
    assert out.returncode == 2 and "order ids named their slots (format 2)" in out.stderr
    shutil.rmtree(data_dir / "snapshots")
    (segment,) = segments(data_dir)
    as_format(segment, 2)
    with pytest.raises(OldFormat, match=rf"{segment.name}: a journal segment written before"):
        recover(data_dir)
    out = cli("journal", "inspect", str(data_dir), cwd=data_dir.parent)
    assert out.returncode == 2 and "start this version on a new data directory" in out.stdout
    # Format 3 (before the venue's market rules): its commands were judged by other rules.
    as_format(segment, 3)
    with pytest.raises(OldFormat, match=r"venue's market rules \(format 3\).*PRE_OPEN"):
        recover(data_dir)
    with pytest.raises(ValueError, match="format 2, whose order ids do not name their slots"):
        Engine.restore(b"MCSTATE\x02" + snap.engine_state[8:])


def test_no_usable_snapshot_and_a_pruned_journal_is_an_error(
    tmp_path: Path, stream: np.ndarray
) -> None:
    run_stream(tmp_path, stream, [20] * 30, segment_bytes=3_000, snapshot_every=100)
    for path in list_snapshots(tmp_path / "snapshots"):
        path.write_bytes(b"garbage")
    with pytest.raises(CorruptJournal, match="no usable snapshot, and the journal starts at"):
        recover(tmp_path)


def test_recorded_digests_are_checked(snapshotted: tuple[Path, str, int, list[int]]) -> None:
    data_dir, _, _, seqs = snapshotted
    shutil.rmtree(data_dir / "snapshots")
    digests = [r for r in read_journal(data_dir / "journal") if r.kind == RecordKind.DIGEST]
    assert [r.first_seq for r in digests] == seqs
    target = digests[len(digests) // 2]
    (segment,) = segments(data_dir)
    data = bytearray(segment.read_bytes())
    # Another digest, with a CRC that matches it: only the digest check can tell.
    nonce = read_segment_header(segment)[2]
    frame = encode_record(nonce, RecordKind.DIGEST, target.first_seq, 0, bytes(16))
    assert len(frame) == RECORD_HEADER_SIZE + 16
    data[target.offset : target.offset + len(frame)] = frame
    segment.write_bytes(data)
    report = ReadReport()
    assert sum(1 for _ in read_journal(data_dir / "journal", report=report)) > 0
    assert report.torn_tail is None  # every CRC is fine
    with pytest.raises(CorruptJournal, match=f"digest differs .* after seq {target.first_seq}"):
        recover(data_dir)


def test_fsync_policies(
    tmp_path: Path, stream: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each policy's journal reads back the same; fdatasync runs as the policy says."""
    calls: list[int] = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    cases = [
        (FsyncPolicy.BATCH, 10.0, "every"),
        (FsyncPolicy.INTERVAL, 0.0, "every"),
        (FsyncPolicy.INTERVAL, 1e9, "none"),
        (FsyncPolicy.NONE, 10.0, "none"),
    ]
    digests = set()
    for policy, interval_ms, expect in cases:
        data_dir = tmp_path / f"{policy.value}-{interval_ms}"
        calls.clear()
        digest, _ = run_stream(
            data_dir,
            stream[:300],
            [30] * 10,
            fsync=policy,
            fsync_interval_ms=interval_ms,
            snapshot_every=100,
        )
        records = sum(1 for _ in read_journal(data_dir / "journal"))
        assert len(calls) == (records if expect == "every" else 0), (policy, interval_ms)
        recovered = recover(data_dir)
        assert recovered.engine.digest() == digest and recovered.journal.torn_tail is None
        digests.add(digest)
    assert len(digests) == 1


# ------------------------------------------------------------------ group commit


def book_config() -> EngineConfig:
    return EngineConfig.of(Engine(max_orders=1 << 13, max_markets=1, max_accounts=16, ledger=False))


def book_setup(accounts: int = 8) -> np.ndarray:
    rows: list[dict[str, int]] = [
        {"type": CommandType.CREATE_MARKET, "market": 0, "price": 10, "quantity": 1, "aux": 1},
        {"type": CommandType.SET_MARKET_STATE, "market": 0, "arg": MarketState.OPEN},
    ]
    rows += [{"type": CommandType.ADD_ACCOUNT, "account": a} for a in range(accounts)]
    return make_commands(rows)


def order(account: int, client_order_id: int, rng: random.Random) -> dict[str, int]:
    return {
        "type": CommandType.NEW_ORDER,
        "account": account,
        "market": 0,
        "intent": rng.choice([Intent.BUY_YES, Intent.SELL_YES]),
        "price": rng.randrange(4_900, 5_110, 10),
        "quantity": rng.randint(1, 50),
        "tif": rng.choice([TimeInForce.GTC] * 3 + [TimeInForce.IOC]),
        "client_order_id": client_order_id,
    }


def test_group_commit_many_producers(tmp_path: Path) -> None:
    """Every Future gets exactly its own commands' events; seqs contiguous; nothing lost."""
    threads, per_thread = 8, 60
    gate = threading.Event()
    gate.set()
    ticks = itertools.count(1)

    def clock() -> int:
        gate.wait()
        return next(ticks)

    config = book_config()
    exchange = open_exchange(tmp_path, config, clock=clock, max_batch=64)
    exchange.execute(book_setup(threads))
    submitted: list[list[tuple[np.ndarray, Future[np.ndarray]]]] = [[] for _ in range(threads)]
    half = threading.Barrier(threads + 1)

    def producer(k: int) -> None:
        rng = random.Random(k)
        sent: list[dict[str, int]] = []
        for i in range(per_thread):
            rows = []
            for _ in range(rng.randint(1, 12)):
                if sent and rng.random() < 0.1:  # a retry (identical) of one of its orders
                    rows.append(rng.choice(sent))
                else:
                    sent.append(order(k, len(sent) + 1, rng))
                    rows.append(sent[-1])
            commands = make_commands(rows)
            submitted[k].append((commands, exchange.submit(commands)))
            if i == per_thread // 2:
                half.wait(30)  # the first half is queued behind a held batch
            elif i > per_thread // 2 and rng.random() < 0.2:
                submitted[k][-1][1].result(30)

    gate.clear()  # hold the first batch in clock() until every producer has queued half
    workers = [threading.Thread(target=producer, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    half.wait(30)
    gate.set()
    for w in workers:
        w.join()
    results = [[(c, f.result(30)) for c, f in mine] for mine in submitted]
    stats = exchange.sequencer.stats
    live_digest = exchange.engine.digest()
    exchange.close()

    journaled = np.concatenate([r.commands() for r in batches(tmp_path)])
    total = len(journaled)
    assert np.array_equal(journaled["seq"], np.arange(1, total + 1))
    engine = Engine(**config.engine_kwargs())
    events = engine.process(journaled)
    assert engine.digest() == live_digest == recover(tmp_path).engine.digest()
    bounds = np.searchsorted(events["seq"], np.arange(1, total + 2))
    seq_of = {
        (int(c["account"]), int(c["client_order_id"])): int(c["seq"])
        for c in journaled
        if c["type"] == CommandType.NEW_ORDER
    }
    first_orders = 0
    submissions = 0
    for k, mine in enumerate(results):
        seen: set[int] = set()
        for commands, got in mine:
            submissions += 1
            expected, new_seqs = [], []
            for row in commands:
                key = (k, int(row["client_order_id"]))
                seq = seq_of[key]  # the first order with this id
                if key[1] not in seen:
                    seen.add(key[1])
                    first_orders += 1
                    new_seqs.append(seq)
                    stored = journaled[seq - 1]
                    for name in ("price", "quantity", "intent", "tif"):
                        assert stored[name] == row[name]
                expected.append(events[bounds[seq - 1] : bounds[seq]])
            assert np.array_equal(got, np.concatenate(expected))
            if new_seqs:  # a submission's new orders run one after another
                assert new_seqs == list(range(new_seqs[0], new_seqs[0] + len(new_seqs)))
    assert len(seq_of) == first_orders == total - len(book_setup(threads))
    assert stats.batches < submissions + 1, "no batch grouped two submissions"
    assert stats.deduplicated == sum(len(c) for m in results for c, _ in m) - first_orders


# ------------------------------------------------------------------ idempotent order entry


def events_of(exchange: Exchange, rows: list[dict[str, int]]) -> np.ndarray:
    return exchange.execute(make_commands(rows))


def test_repeated_client_order_id_in_one_batch_and_across_batches(tmp_path: Path) -> None:
    rng = random.Random(3)
    config = book_config()
    with open_exchange(tmp_path, config) as exchange:
        exchange.execute(book_setup())
        a, b = order(1, 7, rng), order(2, 7, rng)  # same id, other account: not a repeat
        a["tif"] = b["tif"] = TimeInForce.GTC
        a["intent"], b["intent"] = Intent.BUY_YES, Intent.BUY_YES
        retry = dict(a)  # an identical resend: answered with the first result
        got = events_of(exchange, [a, b, retry])
        first = got[: int(np.argmax(got["seq"] != got["seq"][0]))]  # a's events
        assert len(first) and np.array_equal(
            got[-len(first) :], first
        )  # the retry: the first's events
        middle = got[len(first) : -len(first)]
        assert len(middle) and (middle["seq"] == first["seq"][0] + 1).all()  # b, not a retry
        assert first["type"][0] == EventType.ACCEPTED and exchange.engine.order_count == 2
        seq, digest = exchange.sequencer.next_seq, exchange.engine.digest()
        assert np.array_equal(events_of(exchange, [retry]), first)  # another batch
        assert exchange.sequencer.next_seq == seq and exchange.engine.digest() == digest
    assert sum(r.count for r in batches(tmp_path)) == seq - 1  # the retries never journaled
    # Across a restart (close and reopen), with and without a snapshot.
    for snapshot_every in (BIG, 1):
        with open_exchange(tmp_path, config, snapshot_every=snapshot_every) as exchange:
            assert np.array_equal(events_of(exchange, [retry]), first)
            assert exchange.engine.digest() == digest
            if snapshot_every == 1:  # take one, so the next open starts from it
                exchange.execute(make_commands([{"type": CommandType.ADVANCE_TIME}]))
                digest = exchange.engine.digest()
    recovered = recover(tmp_path)
    assert recovered.snapshot_seq > 0
    assert np.array_equal(recovered.idempotency.lookup(1, 7), first)
    with open_exchange(tmp_path, config) as exchange:  # from the snapshot
        assert exchange.recovered.snapshot_seq == recovered.snapshot_seq
        assert np.array_equal(events_of(exchange, [retry]), first)
        assert exchange.engine.digest() == digest


def test_a_different_order_under_a_used_client_order_id_is_a_duplicate(tmp_path: Path) -> None:
    """Only an identical resend is answered from the table: another order under the same id
    (other price, quantity, side...) is rejected DUPLICATE_CLIENT_ORDER_ID, in the same batch,
    in a later one, after a restart (journal replay) and from a snapshot; never journaled."""
    rng = random.Random(3)
    config = book_config()

    def is_duplicate(events: np.ndarray) -> bool:
        return (
            len(events) == 1
            and events["type"][0] == EventType.REJECTED
            and events["reason"][0] == Reject.DUPLICATE_CLIENT_ORDER_ID
            and events["seq"][0] == 0
        )

    a = dict(order(1, 7, rng), intent=Intent.BUY_YES, tif=TimeInForce.GTC)
    changes = [{"price": a["price"] + 100}, {"quantity": a["quantity"] + 1},
               {"intent": Intent.SELL_NO}, {"tif": TimeInForce.IOC}]  # fmt: skip
    with open_exchange(tmp_path, config) as exchange:
        exchange.execute(book_setup())
        got = events_of(exchange, [a, dict(a, **changes[0])])  # one batch
        first = got[:-1]
        assert first["type"][0] == EventType.ACCEPTED and is_duplicate(got[-1:])
        seq, digest = exchange.sequencer.next_seq, exchange.engine.digest()
        for change in changes:  # later batches
            assert is_duplicate(events_of(exchange, [dict(a, **change)]))
        assert np.array_equal(events_of(exchange, [a]), first)  # the identical resend
        assert exchange.sequencer.next_seq == seq and exchange.engine.digest() == digest
    for snapshot_every in (BIG, 1):  # restart: from the journal, then from a snapshot
        with open_exchange(tmp_path, config, snapshot_every=snapshot_every) as exchange:
            assert is_duplicate(events_of(exchange, [dict(a, **changes[1])]))
            assert np.array_equal(events_of(exchange, [a]), first)
            if snapshot_every == 1:
                exchange.execute(make_commands([{"type": CommandType.ADVANCE_TIME}]))
    with open_exchange(tmp_path, config) as exchange:
        assert exchange.recovered.snapshot_seq > 0
        assert is_duplicate(events_of(exchange, [dict(a, **changes[2])]))
        assert np.array_equal(events_of(exchange, [a]), first)
    journaled = np.concatenate([r.commands() for r in batches(tmp_path)])
    keyed = journaled[journaled["client_order_id"] == 7]
    assert len(keyed) == 1 and keyed["price"][0] == a["price"]


def test_idempotency_table_of_an_old_snapshot_still_answers() -> None:
    """A table encoded before fingerprints (v1) decodes; its entries answer any resend with
    the first result, as they did when it was written."""
    events = np.zeros(1, dtype=EVENT_DTYPE)
    events["type"], events["seq"], events["order_id"] = EventType.ACCEPTED, 5, 9
    v1 = struct.pack("<Q", 1) + struct.pack("<IQQI", 1, 7, 5, events.nbytes) + events.tobytes()
    table = IdempotencyTable.decode(v1)
    command = make_commands([{"type": CommandType.NEW_ORDER, "account": 1,
                              "client_order_id": 7, "price": 1}])[0]  # fmt: skip
    answer = table.answer(command, b"\x01" * 16)
    assert answer is not None and np.array_equal(answer, events)
    again = IdempotencyTable.decode(table.encode())  # re-encoded as v2, still unknown
    assert np.array_equal(again.answer(command, b"\x02" * 16), events)


def test_repeat_of_a_rejected_order_is_the_same_reject(tmp_path: Path) -> None:
    """Whatever happened to the first one: a retry never becomes a second order."""
    config = EngineConfig.of(Engine(max_orders=64, max_markets=1, max_accounts=4))  # ledger
    rng = random.Random(5)
    with open_exchange(tmp_path, config) as exchange:
        exchange.execute(book_setup(2))
        a = dict(order(1, 3, rng), intent=Intent.BUY_YES, tif=TimeInForce.GTC)
        first = events_of(exchange, [a])
        assert first["type"][0] == EventType.REJECTED
        assert first["reason"][0] == Reject.INSUFFICIENT_BALANCE
        events_of(exchange, [{"type": CommandType.DEPOSIT, "account": 1, "quantity": 10**9}])
        assert np.array_equal(events_of(exchange, [a]), first)
        assert exchange.engine.order_count == 0


SIGKILL_CHILD = textwrap.dedent(
    """
    import itertools, sys, threading
    import numpy as np
    from matchcore import make_commands
    from pyexchange import EngineConfig, Exchange
    config = EngineConfig(*map(int, sys.argv[2].split(",")[:5]), ledger=False)
    setup, rows = np.load(sys.argv[3]), np.load(sys.argv[4])
    exchange = Exchange.open(sys.argv[1], config, clock=itertools.count(1).__next__,
                             idle_tick_ns=None)
    exchange.execute(setup)
    events = exchange.execute(rows)
    sys.stdout.write(events.tobytes().hex() + "\\n")
    sys.stdout.flush()
    threading.Event().wait()
    """
)


def test_repeated_client_order_id_after_sigkill(tmp_path: Path) -> None:
    rng = random.Random(9)
    config = book_config()
    rows = make_commands([dict(order(1, 11, rng), tif=TimeInForce.GTC)])
    np.save(tmp_path / "setup.npy", book_setup())
    np.save(tmp_path / "rows.npy", rows)
    data_dir = tmp_path / "data"
    values = ",".join(str(int(v)) for v in config.engine_kwargs().values())
    npys = [str(tmp_path / "setup.npy"), str(tmp_path / "rows.npy")]
    child = subprocess.Popen(
        [sys.executable, "-c", SIGKILL_CHILD, str(data_dir), values, *npys],
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL and line, "the child did not acknowledge"
    acknowledged = np.frombuffer(bytes.fromhex(line.decode().strip()), dtype=EVENT_DTYPE)
    retry = rows.copy()  # the same order again: the first result
    other = rows.copy()  # another order under the same id: a duplicate
    other["price"], other["quantity"] = 4_100, 5
    with open_exchange(data_dir, config) as exchange:
        seq, orders = exchange.sequencer.next_seq, exchange.engine.order_count
        assert np.array_equal(exchange.execute(retry), acknowledged)
        refused = exchange.execute(other)
        assert refused["reason"].tolist() == [Reject.DUPLICATE_CLIENT_ORDER_ID]
        assert exchange.sequencer.next_seq == seq and exchange.engine.order_count == orders


# ------------------------------------------------------------------ a journal that fails


def poison_journal_fd(exchange: Exchange, tmp_path: Path) -> None:
    """Make the journal's file descriptor read-only (root ignores a read-only directory)."""
    spare = tmp_path / "read-only"
    spare.write_bytes(b"")
    fd = exchange.sequencer.journal._fd
    assert fd is not None
    read_only = os.open(spare, os.O_RDONLY)
    os.dup2(read_only, fd)
    os.close(read_only)


def test_journal_write_failure_stops_the_sequencer(tmp_path: Path, stream: np.ndarray) -> None:
    data_dir = tmp_path / "data"
    exchange = open_exchange(data_dir)
    exchange.execute(stream[:100])
    digest, seq = exchange.engine.digest(), exchange.sequencer.next_seq
    poison_journal_fd(exchange, tmp_path)
    pending = [exchange.submit(stream[100 + 10 * i : 110 + 10 * i]) for i in range(5)]
    for future in pending:
        with pytest.raises(SequencerStopped):
            future.result(10)
    assert isinstance(exchange.sequencer.failure, OSError)
    with pytest.raises(SequencerStopped):
        exchange.submit(stream[150:160])
    assert exchange.engine.digest() == digest and exchange.sequencer.next_seq == seq
    exchange.close()
    recovered = recover(data_dir)
    assert recovered.engine.digest() == digest and recovered.next_seq == seq


def test_failure_to_create_the_next_segment_stops_the_sequencer(
    tmp_path: Path, stream: np.ndarray
) -> None:
    exchange = open_exchange(tmp_path, segment_bytes=1)  # every record rolls
    exchange.execute(stream[:50])
    digest, seq = exchange.engine.digest(), exchange.sequencer.next_seq
    (tmp_path / "journal" / f"{seq:020d}.journal").mkdir()  # in the way of the next segment
    with pytest.raises(SequencerStopped):
        exchange.execute(stream[50:60])
    assert exchange.engine.digest() == digest
    with contextlib.suppress(OSError):  # see test_close_after_a_failed_roll
        exchange.close()
    (tmp_path / "journal" / f"{seq:020d}.journal").rmdir()
    assert recover(tmp_path).engine.digest() == digest


def test_close_after_a_failed_roll(tmp_path: Path, stream: np.ndarray) -> None:
    exchange = open_exchange(tmp_path, segment_bytes=1)
    exchange.execute(stream[:50])
    (tmp_path / "journal" / f"{exchange.sequencer.next_seq:020d}.journal").mkdir()
    with pytest.raises(SequencerStopped):
        exchange.execute(stream[50:60])
    bystander = os.open(tmp_path / "bystander", os.O_WRONLY | os.O_CREAT)  # may reuse the fd
    try:
        exchange.close()  # raises EBADF today, or closes the bystander's descriptor
        os.fstat(bystander)
    finally:
        with contextlib.suppress(OSError):
            os.close(bystander)


def test_fsync_failure_fails_the_batch(
    tmp_path: Path, stream: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine never runs the batch; recovery may or may not (it reached the file)."""
    exchange = open_exchange(tmp_path)
    exchange.execute(stream[:100])
    digest = exchange.engine.digest()

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error (simulated)")

    monkeypatch.setattr(os, "fdatasync", fail)
    with pytest.raises(SequencerStopped, match="Input/output"):
        exchange.execute(stream[100:120])
    assert exchange.engine.digest() == digest
    monkeypatch.undo()
    exchange.close()
    with_batch = Engine(**CAPACITIES)
    for record in batches(tmp_path):
        with_batch.process(record.commands())
    assert recover(tmp_path).engine.digest() in (digest, with_batch.digest())


def test_short_write_is_not_acknowledged(tmp_path: Path, stream: np.ndarray) -> None:
    """A write the kernel only partly does must not be acknowledged (or must be recovered)."""
    np.save(tmp_path / "stream.npy", stream[:120])
    script = textwrap.dedent(
        f"""
        import itertools, resource, signal, sys
        import numpy as np
        from pyexchange import EngineConfig, Exchange
        stream = np.load(sys.argv[2])
        config = EngineConfig(*map(int, sys.argv[3].split(",")[:5]), ledger=True)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        limit = {SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE} + 80 * 40 + 1000
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
        exchange = Exchange.open(sys.argv[1], config, clock=itertools.count(1).__next__,
                                 idle_tick_ns=None)
        acked = 0
        for start in range(0, 120, 40):  # the second batch crosses the size limit
            try:
                exchange.execute(stream[start : start + 40])
                acked = start + 40
            except Exception:
                break
        print(acked)
        """
    )
    values = ",".join(str(int(v)) for v in CONFIG.engine_kwargs().values())
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            str(tmp_path / "data"),
            str(tmp_path / "stream.npy"),
            values,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    acknowledged_rows = int(out.stdout.split()[-1])
    recovered = recover(tmp_path / "data")
    journaled_rows = np.searchsorted(
        np.cumsum(keep_mask(stream[:120])), recovered.next_seq - 1, side="right"
    )
    assert journaled_rows >= acknowledged_rows, (
        f"{acknowledged_rows} rows acknowledged, {journaled_rows} recovered "
        f"(torn tail: {recovered.journal.torn_tail})"
    )


def keep_mask(stream: np.ndarray) -> np.ndarray:
    """Rows the sequencer journals (repeats of an (account, client order id) are not)."""
    keep = np.ones(len(stream), dtype=bool)
    seen: set[tuple[int, int]] = set()
    for row in np.nonzero(
        (stream["type"] == CommandType.NEW_ORDER) & (stream["client_order_id"] != 0)
    )[0]:
        key = (int(stream["account"][row]), int(stream["client_order_id"][row]))
        keep[row] = key not in seen
        seen.add(key)
    return keep


def test_failed_idle_tick_stops_the_sequencer(
    tmp_path: Path, stream: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    times = itertools.count(0, 50_000_000)
    exchange = open_exchange(tmp_path, clock=times.__next__, idle_tick_ns=20_000_000)
    exchange.execute(stream[:50])
    # an idle tick is journaled only when a GTD order is due: one, due ten clock reads on
    now = exchange.query(lambda engine: engine.now).result(10)
    due = {"account": 1, "market": 0, "price": 100, "quantity": 2, "expiry": now + 500_000_000}
    events = exchange.execute(make_commands([{"type": "NEW_ORDER", "tif": TimeInForce.GTD, **due}]))
    assert (events["type"] == EventType.ACCEPTED).any()
    real = os.fdatasync
    failed = threading.Event()

    def fail_once(fd: int) -> None:
        if not failed.is_set():
            failed.set()
            raise OSError(5, "Input/output error (simulated)")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fail_once)
    assert failed.wait(10)
    exchange.sequencer._thread.join(1.0)
    monkeypatch.undo()
    alive = exchange.sequencer._thread.is_alive()
    exchange.close()
    recover(tmp_path)  # raises CorruptJournal: the tick's seq is in the journal twice
    assert not alive, "the sequencer thread kept running after it failed"


def test_submit_racing_with_stop_gets_an_answer(tmp_path: Path, stream: np.ndarray) -> None:
    exchange = open_exchange(tmp_path)
    exchange.execute(stream[:20])
    sequencer = exchange.sequencer
    real_queue = sequencer._queue
    in_put, release = threading.Event(), threading.Event()

    class SlowQueue:
        """Holds one submission between submit()'s check and its put(): the race, widened."""

        def put(self, item: object) -> None:
            if hasattr(item, "future") and not in_put.is_set():
                in_put.set()
                release.wait(10)
            real_queue.put(item)

        def __getattr__(self, name: str) -> Any:
            return getattr(real_queue, name)

    sequencer._queue = SlowQueue()  # type: ignore[assignment]
    box: list[Future[np.ndarray]] = []
    racer = threading.Thread(target=lambda: box.append(exchange.submit(stream[20:30])))
    racer.start()
    assert in_put.wait(10)
    exchange.close()  # stop() while the submission is on its way into the queue
    release.set()
    racer.join(10)
    (future,) = box
    with contextlib.suppress(SequencerStopped):  # an exception is an answer too
        future.result(2)


def test_journal_behind_a_snapshot_stays_recoverable(tmp_path: Path) -> None:
    stream = random_stream(11, 300, SHAPE)
    run_stream(tmp_path, stream, even(len(stream), 30), snapshot_every=100, fsync=FsyncPolicy.NONE)
    snapshot = max(read_snapshot(p).seq for p in list_snapshots(tmp_path / "snapshots"))
    # The unsynced tail of the journal is lost in a power cut: keep records up to
    # before the newest snapshot.
    kept = [r for r in read_journal(tmp_path / "journal") if r.last_seq < snapshot]
    (segment,) = segments(tmp_path)
    cut = kept[-1].offset + RECORD_HEADER_SIZE + len(kept[-1].body)
    os.truncate(segment, cut)
    first = recover(tmp_path)
    assert first.snapshot_seq == snapshot
    with open_exchange(tmp_path, clock=counter_clock(first.engine.now + 1)) as exchange:
        exchange.execute(make_commands([{"type": CommandType.ADVANCE_TIME}]))
        digest = exchange.engine.digest()
    assert recover(tmp_path).engine.digest() == digest


def test_torn_tail_holding_a_record_shaped_command_is_still_a_torn_tail(
    tmp_path: Path, stream: np.ndarray
) -> None:
    forged = encode_record(bytes(8), RecordKind.DIGEST, 12_345, 0, bytes(16))  # nonce unknown
    raw = bytearray(np.zeros(1, dtype=COMMAND_DTYPE).tobytes())
    raw[16:60] = forged  # order_id .. account: fields the client fills
    crafted = np.frombuffer(bytes(raw), dtype=COMMAND_DTYPE).copy()
    with open_exchange(tmp_path) as exchange:
        exchange.execute(stream[:100])
        good = exchange.engine.digest()
        exchange.execute(np.concatenate([stream[100:110], crafted, stream[110:120]]))
    (segment,) = segments(tmp_path)
    os.truncate(segment, segment.stat().st_size - 100)  # the crash tore the last record
    recovered = recover(tmp_path)
    assert recovered.journal.torn_tail is not None and recovered.engine.digest() == good


def test_a_second_writer_on_the_same_data_dir_is_refused(
    tmp_path: Path, stream: np.ndarray
) -> None:
    with open_exchange(tmp_path) as first:
        first.execute(stream[:100])
    with open_exchange(tmp_path) as exchange:
        exchange.execute(stream[100:150])
        try:
            second = open_exchange(tmp_path)
        except Exception:
            return  # refused: what should happen
        second.execute(stream[150:200])  # both append to the same segment
        exchange.execute(stream[200:250])  # with seq numbers the second one used
        second.close()
    recover(tmp_path)  # CorruptJournal: batch starts at seq ..., expected ...
    pytest.fail("a second Exchange opened a data directory that was in use")


# ------------------------------------------------------------------ CLI


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyexchange", *args], capture_output=True, text=True, cwd=cwd
    )


def test_cli_replay_inspect_snapshot(small_journal: tuple[Path, list[Any]]) -> None:
    data_dir, records = small_journal
    cwd = data_dir.parent
    digest = recover(data_dir).engine.digest()
    out = cli("replay", "--quiet", str(data_dir), cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert f"digest        {digest}" in out.stdout
    assert f"last seq      {records[-1].last_seq}" in out.stdout
    assert "torn tail" not in out.stdout
    out = cli("journal", "inspect", "--records", str(data_dir), cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("crc ok") == len(records)
    assert f"records       {len(records)} (checksums verified)" in out.stdout
    assert f"seq 1..{records[-1].last_seq}" in out.stdout and "torn tail     none" in out.stdout
    # A torn tail: inspect reports it, replay --dry-run keeps it, replay cuts it.
    (segment,) = segments(data_dir)
    size = segment.stat().st_size
    os.truncate(segment, size - 7)
    out = cli("journal", "inspect", str(data_dir), cwd=cwd)
    assert f"torn tail     {segment.name}: {size - 7 - records[-1].offset} bytes at" in out.stdout
    before = replay_digest(records[:-1])
    out = cli("replay", "--quiet", "--dry-run", str(data_dir), cwd=cwd)
    assert f"digest        {before}" in out.stdout and "(kept: dry run)" in out.stdout
    assert segment.stat().st_size == size - 7
    out = cli("replay", "--quiet", str(data_dir), cwd=cwd)
    assert "(cut)" in out.stdout and segment.stat().st_size == records[-1].offset
    # snapshot, then replay starts from it.
    out = cli("snapshot", str(data_dir), cwd=cwd)
    assert out.returncode == 0, out.stderr
    assert f"at seq {records[-2].last_seq} (digest {before})" in out.stdout
    out = cli("replay", "--quiet", str(data_dir), cwd=cwd)
    assert f"snapshot seq  {records[-2].last_seq}" in out.stdout
    assert "replayed      0 commands" in out.stdout
    out = cli("journal", "inspect", str(data_dir), cwd=cwd)
    assert f"seq {records[-2].last_seq}" in out.stdout and ", ok" in out.stdout
    # A corrupt record in the middle: inspect says CORRUPT, replay fails; exit status 2.
    data = bytearray(segment.read_bytes())
    data[records[1].offset + RECORD_HEADER_SIZE + 5] ^= 0x40
    segment.write_bytes(data)
    out = cli("journal", "inspect", str(data_dir), cwd=cwd)
    assert out.returncode == 2 and f"CORRUPT: {segment.name} at byte {records[1].offset}" in (
        out.stdout
    )
    shutil.rmtree(data_dir / "snapshots")
    out = cli("replay", "--quiet", str(data_dir), cwd=cwd)
    assert out.returncode == 2 and "valid records follow" in out.stderr


def test_replay_progress_and_inspect_sizes(small_journal: tuple[Path, list[Any]]) -> None:
    """The progress total is the commands after the snapshot (not the journal's size), the
    bar ends at what was replayed, and ``journal inspect`` gives each snapshot's file size."""
    data_dir, records = small_journal
    last = records[-1].last_seq
    calls: list[tuple[int, int]] = []
    recover(data_dir, progress=lambda done, total: calls.append((done, total)))
    assert calls[0][0] == 0 and last <= calls[0][1] <= last * 1.1  # record headers: a bound
    assert calls[-1][0] == last and all(done <= total for done, total in calls)
    cwd = data_dir.parent
    out = cli("replay", str(data_dir), cwd=cwd)  # the bar ends at what it replayed
    assert out.returncode == 0 and f"{last}/{last}" in out.stderr.splitlines()[-1], out.stderr
    assert cli("snapshot", str(data_dir), cwd=cwd).returncode == 0
    calls.clear()
    assert recover(data_dir, progress=lambda d, t: calls.append((d, t))).replayed_commands == 0
    assert calls == [(0, calls[0][1])] and calls[0][1] <= 0.1 * last
    out = cli("replay", str(data_dir), cwd=cwd)  # with its bar (on stderr): no total
    assert out.returncode == 0 and "replayed      0 commands" in out.stdout
    assert not re.search(r"\b0/[1-9]", out.stderr), out.stderr  # nothing left "to replay"
    (snapshot,) = list_snapshots(data_dir / "snapshots")
    out = cli("journal", "inspect", str(data_dir), cwd=cwd)
    assert f"seq {last}, {snapshot.stat().st_size:,} bytes (engine " in out.stdout, out.stdout
