"""The write-ahead journal: every command batch, on disk before the engine runs it.

Layout: ``DATA_DIR/journal/<first seq, 20 digits>.journal`` segment files. Each
segment starts with a fixed header (format version, the engine configuration,
the first seq and a random nonce, CRC32C-protected), then records:

    sync u32 | length u32 | crc32c u32 | kind u8 | pad 3 | first_seq u64 | count u32 | body

``crc32c`` covers the segment's nonce and everything after itself (kind ..
body): commands carry client bytes, and without the nonce a client could
embed a frame that checks out and make an ordinary torn tail look like damage
in the middle. A ``BATCH`` body is ``count`` COMMAND_DTYPE records (seq
``first_seq`` .. ``first_seq + count - 1``); a ``DIGEST`` body is the engine's
state digest after ``first_seq`` (16 bytes).

The writer keeps the active segment allocated ahead of its records: it writes
zeros ``PREALLOCATE_BYTES`` at a time past the last record and then writes each
record (below ``ZERO_AHEAD_BELOW`` bytes) over them, so the fdatasync of a small
batch flushes its data without a change of the file's size (with ext4 that cut
the CPU of an fdatasync from about 60 to about 40 us). A segment closed or rolled
over is cut to its last record; one left by a crash ends in zeros, which a reader
takes as the end of the records (no record starts with a zero sync word), and
recovery cuts them.

Reading checks the sync word, the length, the CRC and that sequence numbers
follow each other. A bad record with nothing valid after it in the last
segment is a torn tail (a write the crash interrupted): it is reported and cut.
A bad record anywhere else is corruption and stops recovery with
``CorruptJournal`` — never a silent skip.

Fsync policies (``FsyncPolicy``): ``batch`` (default) fsyncs every batch before
the engine runs it, so an acknowledged command survives a power cut; ``interval``
fsyncs at most every ``interval_ms``, so a power cut can lose the
acknowledgements of the last interval (a process crash loses nothing: the
data is in the OS page cache); ``none`` leaves it to the OS (seconds of
acknowledged commands at risk on a power cut, nothing on a process crash).
A failed write is rolled back (the file is cut to where the record began); a
failed fsync is fatal and leaves the outcome of that batch unknown (the data
may be on disk): the sequencer stops and clients retry with the same client
order id, which is idempotent.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import itertools
import os
import secrets
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from matchcore import COMMAND_DTYPE

# Format 4: the venue's market rules (orders rest in PRE_OPEN for the opening
# auction). The commands of an older journal were judged by other rules, so
# replayed here they could give other events: it is refused (OldFormat).
SEGMENT_MAGIC = b"MCJRNL\x00\x04"
# magic, max_orders, max_markets, max_accounts, max_levels, max_positions, ledger, first_seq, nonce
_SEGMENT_HEADER = struct.Struct("<8sIIIIIB3xQ8s")
_SEGMENT_CRC = struct.Struct("<I")
SEGMENT_HEADER_SIZE = _SEGMENT_HEADER.size + _SEGMENT_CRC.size
SYNC = 0x4A4C434D  # "MCLJ"
_RECORD = struct.Struct("<IIIB3xQI")
RECORD_HEADER_SIZE = _RECORD.size
_CHECKED = struct.Struct("<B3xQI")  # kind, pad, first_seq, count: the header part the CRC covers
MAX_RECORD_BYTES = 1 << 30
COMMAND_SIZE = COMMAND_DTYPE.itemsize
PREALLOCATE_BYTES = 1 << 20  # zeros written ahead of the records of the active segment
# Larger records extend the file themselves: zeros first would write them twice (fsync per
# batch of 8,192 commands 3.9 -> 3.6 M/s), and their sync's size update is shared by many.
ZERO_AHEAD_BELOW = 64 << 10
_ZEROS = memoryview(bytes(PREALLOCATE_BYTES))


class RecordKind(enum.IntEnum):
    BATCH = 1
    DIGEST = 2


class FsyncPolicy(enum.Enum):
    BATCH = "batch"
    INTERVAL = "interval"
    NONE = "none"


class CorruptJournal(Exception):
    """A damaged record that is not a torn tail: recovery must stop here."""


class OldFormat(CorruptJournal):
    """A data directory of an earlier format that this version cannot replay faithfully."""


OLD_FORMAT_ADVICE = (
    "written before the engine's order ids named their slots (format 2): replayed here, "
    "its orders would get other ids than its clients were given. Keep running it with "
    "the version that wrote it, or start this version on a new data directory."
)
_OLD_SEGMENTS = {
    b"MCJRNL\x00\x02": OLD_FORMAT_ADVICE,
    b"MCJRNL\x00\x03": (
        "written before the venue's market rules (format 3): replayed here, orders it "
        "saw refused in PRE_OPEN markets would rest for the opening auction. Keep running "
        "it with the version that wrote it, or start this version on a new data directory."
    ),
}


class DataDirInUse(RuntimeError):
    """Another process holds the data directory (a running exchange, or a repair)."""


class DataDirLock:
    """An exclusive lock on ``DATA_DIR/LOCK`` for as long as a writer (or a repair) runs.

    Two writers on one journal would interleave their records; the lock makes
    the second one fail at once instead.
    """

    def __init__(self, data_dir: Path) -> None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        self._fd = os.open(Path(data_dir) / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise DataDirInUse(f"{data_dir} is in use by another process") from None

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = -1


@dataclass(frozen=True)
class EngineConfig:
    """The engine capacities a journal is written for (recorded in every segment)."""

    max_orders: int
    max_markets: int
    max_accounts: int
    max_levels: int
    max_positions: int
    ledger: bool

    @classmethod
    def of(cls, engine: object) -> EngineConfig:
        caps = engine.capacities  # type: ignore[attr-defined]
        return cls(**{name: caps[name] for name in cls.__dataclass_fields__})

    def engine_kwargs(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass
class Record:
    """One journal record, as read back."""

    kind: RecordKind
    first_seq: int
    count: int
    body: bytes
    segment: Path
    offset: int

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1 if self.kind == RecordKind.BATCH else self.first_seq

    def commands(self) -> np.ndarray:
        """The batch's commands (a read-only view of the record)."""
        return np.frombuffer(self.body, dtype=COMMAND_DTYPE, count=self.count)


@dataclass
class ReadReport:
    """What a scan of the journal found."""

    segments: list[Path] = field(default_factory=list)
    records: int = 0
    commands: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    torn_tail: str | None = None  # what was cut, if anything


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}.journal"


def commands_after(directory: Path, seq: int) -> int:
    """About how many commands the journal holds after ``seq``, without reading it (the
    total of a replay's progress): exact for every segment but the last (segment names
    are their first seq), whose size (without the zeros a crash may leave past its
    records) bounds it from above (record headers, digests)."""
    segments = sorted(Path(directory).glob("*.journal"))
    total = 0
    for i, path in enumerate(segments):
        try:
            first = int(path.stem)
            if i + 1 < len(segments):
                end = int(segments[i + 1].stem)  # one past the last seq of this segment
            else:
                body = max(_used_bytes(path) - SEGMENT_HEADER_SIZE, 0)
                end = first + -(-body // COMMAND_SIZE)  # up: a command may end in zeros
        except (ValueError, OSError):
            continue  # not a segment name, or gone: the replay reports it
        total += max(end - max(first, seq + 1), 0)
    return total


def _used_bytes(path: Path) -> int:
    """The size of a segment without the zeros a crash left past its records."""
    with open(path, "rb") as f:
        end = f.seek(0, os.SEEK_END)
        while end > 0:
            start = max(end - PREALLOCATE_BYTES, 0)
            f.seek(start)
            block = f.read(end - start)
            kept = len(block.rstrip(b"\0"))
            if kept:
                return start + kept
            end = start
    return 0


def _zero_tail(data: bytes, offset: int) -> bool:
    """Only zeros from ``offset`` on: the preallocated end of a segment, no record."""
    return data.count(0, offset) == len(data) - offset


def record_crc(nonce: bytes, kind: int, first_seq: int, count: int, body: bytes) -> int:
    """The CRC32C of a record: the segment's nonce, then kind .. body."""
    head = nonce + _CHECKED.pack(kind, first_seq, count)
    return google_crc32c.extend(google_crc32c.value(head), body)


def encode_record(
    nonce: bytes, kind: int, first_seq: int, count: int, body: bytes, *, sync: int = SYNC
) -> bytes:
    # record_crc inlined: a call fewer per record on the sequencer's path
    crc = google_crc32c.extend(
        google_crc32c.value(nonce + _CHECKED.pack(kind, first_seq, count)), body
    )
    return _RECORD.pack(sync, len(body), crc, kind, first_seq, count) + body


def _pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    """os.pwrite until every byte is out at ``offset`` (a short write is not an error)."""
    written = os.pwrite(fd, data, offset)  # the usual case: all of it at once
    if written == len(data):
        return
    view = memoryview(data)[written:]
    offset += written
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class JournalWriter:
    """Appends records to the active segment, rolling to a new one past ``segment_bytes``."""

    def __init__(
        self,
        directory: Path,
        config: EngineConfig,
        next_seq: int,
        *,
        fsync: FsyncPolicy = FsyncPolicy.BATCH,
        interval_ms: float = 10.0,
        segment_bytes: int = 256 << 20,
        continue_last: bool = True,
    ) -> None:
        """Append after ``next_seq - 1``.

        ``continue_last``: the last segment ends exactly before ``next_seq`` and
        may take more records; otherwise (the journal ends before a snapshot
        that a power cut left ahead of it) a new segment starts at ``next_seq``.
        """
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.fsync = fsync
        self.interval_s = interval_ms / 1000.0
        self.segment_bytes = segment_bytes
        self.next_seq = next_seq
        self._fd: int | None = None
        self._nonce = b""
        self._size = 0  # where the next record goes
        self._allocated = 0  # the file's size: zeros from _size on
        self._last_sync = time.monotonic()
        self.bytes_written = 0
        self.on_sync: Callable[[float], None] | None = None  # seconds of each batch's fdatasync
        existing = sorted(self.directory.glob("*.journal"))
        if existing and continue_last:  # recovery has cut any torn tail
            self._open(existing[-1], create=False)

    def _open(self, path: Path, *, create: bool) -> None:
        if self._fd is not None:
            self._cut()  # a rolled segment ends at its last record
            os.close(self._fd)
            self._fd = None  # nothing points at a closed descriptor if the open fails
        flags = os.O_WRONLY | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(path, flags, 0o644)
        try:
            if create:
                self._nonce = secrets.token_bytes(8)
                header = _SEGMENT_HEADER.pack(
                    SEGMENT_MAGIC,
                    self.config.max_orders,
                    self.config.max_markets,
                    self.config.max_accounts,
                    self.config.max_levels,
                    self.config.max_positions,
                    int(self.config.ledger),
                    self.next_seq,
                    self._nonce,
                )
                _pwrite_all(fd, header + _SEGMENT_CRC.pack(google_crc32c.value(header)), 0)
                os.fsync(fd)
                _fsync_dir(self.directory)
            else:
                self._nonce = read_segment_header(path)[2]
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = self._allocated = os.fstat(fd).st_size

    def _cut(self) -> None:
        """Drop the zeros past the last record and sync (closing or rolling the segment)."""
        assert self._fd is not None
        if self._allocated > self._size:
            os.ftruncate(self._fd, self._size)
            self._allocated = self._size
        os.fsync(self._fd)

    def _allocate(self, end: int) -> None:
        """Zeros up to at least ``end`` (a chunk at a time, within the segment's size)."""
        assert self._fd is not None
        target = max(end, min(self._size + PREALLOCATE_BYTES, self.segment_bytes))
        offset = self._allocated
        while offset < target:
            chunk = min(target - offset, PREALLOCATE_BYTES)
            _pwrite_all(self._fd, _ZEROS[:chunk], offset)
            offset += chunk
        self._allocated = offset

    def append_batch(self, commands: np.ndarray) -> None:
        """Write a batch whose commands carry seq ``next_seq`` onward, then sync per policy."""
        count = len(commands)
        first = int(commands["seq"][0])
        if first != self.next_seq:
            raise ValueError(f"batch starts at seq {first}, the journal expects {self.next_seq}")
        self._write(RecordKind.BATCH, first, count, commands.tobytes())
        self.next_seq = first + count

    def append_digest(self, seq: int, digest: str) -> None:
        """Record the engine's state digest after ``seq`` (checked on replay)."""
        self._write(RecordKind.DIGEST, seq, 0, bytes.fromhex(digest))

    def _write(self, kind: RecordKind, first_seq: int, count: int, body: bytes) -> None:
        if self._fd is None or self._size >= self.segment_bytes:
            self._open(self.directory / segment_name(self.next_seq), create=True)
        assert self._fd is not None
        frame = encode_record(self._nonce, kind, first_seq, count, body)
        end = self._size + len(frame)
        try:
            if end > self._allocated and len(frame) < ZERO_AHEAD_BELOW:
                self._allocate(end)
            _pwrite_all(self._fd, frame, self._size)
        except BaseException:
            # no half record may stay behind a later one
            os.ftruncate(self._fd, self._size)
            self._allocated = self._size
            raise
        self._allocated = max(self._allocated, end)
        self._size = end
        self.bytes_written += len(frame)
        fsync = self.fsync
        if fsync is FsyncPolicy.BATCH:
            self._fdatasync()
        elif fsync is FsyncPolicy.INTERVAL:
            now = time.monotonic()
            if now - self._last_sync >= self.interval_s:
                self._fdatasync()
                self._last_sync = now

    def _fdatasync(self) -> None:
        assert self._fd is not None
        if self.on_sync is None:
            os.fdatasync(self._fd)
            return
        started = time.perf_counter()
        os.fdatasync(self._fd)
        self.on_sync(time.perf_counter() - started)

    def sync(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fd is not None:
            try:
                if self._allocated > self._size:
                    # zeros left in the last segment are read as its end: a failed cut
                    # (the writer failed first) loses nothing
                    with contextlib.suppress(OSError):
                        os.ftruncate(self._fd, self._size)
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
                self._fd = None


def read_segment_header(path: Path) -> tuple[EngineConfig, int, bytes]:
    """(engine config, first seq, nonce) of a segment; CorruptJournal if the header is damaged."""
    with open(path, "rb") as f:
        raw = f.read(SEGMENT_HEADER_SIZE)
    if len(raw) < SEGMENT_HEADER_SIZE:
        raise CorruptJournal(f"{path.name}: segment header truncated ({len(raw)} bytes)")
    header, (crc,) = raw[: _SEGMENT_HEADER.size], _SEGMENT_CRC.unpack(raw[_SEGMENT_HEADER.size :])
    fields = _SEGMENT_HEADER.unpack(header)
    if fields[0] in _OLD_SEGMENTS:
        raise OldFormat(f"{path.name}: a journal segment {_OLD_SEGMENTS[fields[0]]}")
    if fields[0] != SEGMENT_MAGIC:
        raise CorruptJournal(f"{path.name}: not a journal segment of this format")
    if google_crc32c.value(header) != crc:
        raise CorruptJournal(f"{path.name}: segment header checksum mismatch")
    orders, markets, accounts, levels, positions = fields[1:6]
    config = EngineConfig(orders, markets, accounts, levels, positions, ledger=bool(fields[6]))
    return config, fields[7], fields[8]


def parse_record(
    data: bytes, offset: int, nonce: bytes
) -> tuple[RecordKind, int, int, bytes, int] | str:
    """The record at ``offset`` and the offset after it, or why it is not valid."""
    if len(data) - offset < RECORD_HEADER_SIZE:
        return "truncated record header"
    sync, length, crc, kind, first_seq, count = _RECORD.unpack_from(data, offset)
    if sync != SYNC:
        return "no record starts here (bad sync word)"
    if length > MAX_RECORD_BYTES or kind not in (RecordKind.BATCH, RecordKind.DIGEST):
        return f"impossible record (kind {kind}, length {length})"
    start = offset + RECORD_HEADER_SIZE
    if len(data) - start < length:
        return f"record body truncated ({len(data) - start} of {length} bytes)"
    body = data[start : start + length]
    if kind == RecordKind.BATCH and length != count * COMMAND_SIZE:
        return f"batch of {count} commands with a {length}-byte body"
    if record_crc(nonce, kind, first_seq, count, body) != crc:
        return "checksum mismatch"
    return RecordKind(kind), first_seq, count, body, start + length


def _valid_record_after(data: bytes, offset: int, nonce: bytes) -> int | None:
    """Offset of the next valid record after ``offset``, if any (a resync scan)."""
    sync = struct.pack("<I", SYNC)
    position = offset + 1
    while True:
        position = data.find(sync, position)
        if position < 0:
            return None
        if not isinstance(parse_record(data, position, nonce), str):
            return position
        position += 1


def read_journal(
    directory: Path,
    *,
    repair: bool = False,
    report: ReadReport | None = None,
    covered_through: int = 0,
) -> Iterator[Record]:
    """Every record in order; raises CorruptJournal on damage that is not a torn tail.

    With ``repair``, a torn tail is cut from the last segment (``report.torn_tail``
    says what was cut); without it, a torn tail ends the iteration, reported.
    ``covered_through``: a snapshot holds every command up to this seq, so a
    gap in the sequence that ends at or before it is not damage (a power cut
    can leave a journal written without fsync behind a snapshot).
    """
    report = report if report is not None else ReadReport()
    segments = sorted(Path(directory).glob("*.journal"))
    report.segments = segments
    expected: int | None = None
    for index, path in enumerate(segments):
        last_segment = index == len(segments) - 1
        try:
            _, first_seq, nonce = read_segment_header(path)
        except CorruptJournal:
            if last_segment and path.stat().st_size < SEGMENT_HEADER_SIZE:
                report.torn_tail = f"{path.name}: segment header cut short by the crash"
                if repair:
                    path.unlink()
                return
            raise
        if expected is not None and first_seq != expected and first_seq > covered_through + 1:
            raise CorruptJournal(f"{path.name}: starts at seq {first_seq}, expected {expected}")
        data = path.read_bytes()
        offset = SEGMENT_HEADER_SIZE
        while offset < len(data):
            parsed = parse_record(data, offset, nonce)
            if isinstance(parsed, str) and last_segment and _zero_tail(data, offset):
                if repair:  # the writer's preallocated zeros, left by a crash: not torn
                    os.truncate(path, offset)
                return
            if isinstance(parsed, str):
                later = _valid_record_after(data, offset, nonce)
                if not last_segment or later is not None:
                    raise CorruptJournal(
                        f"{path.name} at byte {offset}: {parsed}, and valid records follow: "
                        "the journal is damaged, not just cut short"
                    )
                report.torn_tail = f"{path.name}: {len(data) - offset} bytes at {offset} ({parsed})"
                if repair:
                    os.truncate(path, offset)
                return
            kind, first, count, body, offset_after = parsed
            if kind == RecordKind.BATCH:
                if expected is not None and first != expected and first > covered_through + 1:
                    raise CorruptJournal(
                        f"{path.name} at byte {offset}: batch starts at seq {first}, "
                        f"expected {expected}"
                    )
                expected = first + count
                report.commands += count
                report.first_seq = first if report.first_seq is None else report.first_seq
                report.last_seq = first + count - 1
            report.records += 1
            yield Record(kind, first, count, body, path, offset)
            offset = offset_after


def prune_segments(directory: Path, keep_after_seq: int) -> list[Path]:
    """Delete segments whose every batch is at or below ``keep_after_seq``; the removed paths."""
    segments = sorted(Path(directory).glob("*.journal"))
    removed = []
    for path, following in itertools.pairwise(segments):
        try:
            next_first = read_segment_header(following)[1]
        except (CorruptJournal, OSError):
            break  # the newest segment may be being created right now
        if next_first - 1 <= keep_after_seq:
            path.unlink()
            removed.append(path)
        else:
            break
    return removed
