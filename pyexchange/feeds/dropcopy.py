"""Drop copy: every event of an account, in an event log on disk, resumable from any seq.

What it carries (docs/service.md): each event that concerns an account — its
``ACCEPTED``, ``REJECTED`` (of account commands), ``CANCELED``, ``REPLACED``,
``BALANCE``, ``POSITION`` and ``SETTLEMENT`` events, and each ``TRADE`` once
per side (the taker's and the maker's, each with its own fee) — keyed by
``(seq, index)``: the engine seq of the command and the event's position among
that command's events (a trade's two sides share the key and differ by
account).

Threads:

- ``on_events(commands, events)`` (sequencer thread): once the log is caught up
  and the writer thread has nothing queued, it picks the batch's account events
  and appends them to the event log itself (one write to the page cache, no
  fsync) and posts the record to the server's ``Handover``, which goes to the
  loop with the batch's replies: no thread hop per batch. Otherwise it queues the
  batch for the writer thread.
- The writer thread writes whenever the log is not caught up (the first batch, a
  batch after a gap, a rebuild from the journal, ``close()``): it groups the
  queued batches into one record, appends it and hands it to the loop
  (``call_soon_threadsafe``), then gives the writing back to ``on_events``. The
  switch is made under a lock ``on_events`` holds while it writes.
- The loop passes each new record on to live subscribers and listeners.
- Subscribers (asyncio) get ``AccountEvent`` objects (``updates.py``: the core's
  units, no transport; each API renders them): history from the log files, read
  in a reader thread, then live delivery. A live subscriber's queue is bounded; a
  subscriber that falls behind is switched back to reading the log from where
  it was — it loses nothing and never holds up the engine.

The event log: ``DATA_DIR/dropcopy/<first seq, 20 digits>.events`` segment
files, each a header (magic, first seq, CRC32C) then records framed as the
journal's (``sync u32 | length u32 | crc32c u32 | kind u8 | pad 3 | first_seq
u64 | count u32 | body``, CRC32C over kind .. body). A record covers the
commands ``first_seq .. first_seq + count - 1`` (one sequencer batch, even one
with no account event, so the log always knows how far it goes):
``EVENTS`` records hold their account events as ``DROP_DTYPE`` rows (the
engine event, its index, the command's time); ``GAP`` records say the events
of that range are lost. The log is derived data: it is not fsynced per write
(only at close), because everything in it can be rebuilt from the journal.

Restart. On opening, the last segment is checked and cut at the first bad
record (a torn tail, or whatever a crash left). The log may then end before
the journal (the writer had not caught up when the process died). The first
time the writer runs (``attach()``, or the first live batch, whose seq tells
where the journal had got to), it rebuilds the missing events itself: it
restores the newest snapshot at or before the log's end (or a fresh engine
when the journal starts at seq 1), replays the journal's batches after it
through a private engine and logs the events of every command after the log's
end, before any live batch. If no snapshot at or before the log's end is left
(pruned with the journal it needs — possible only when the log lagged by more
than the snapshot retention, or was deleted), the events up to the oldest
snapshot cannot be rebuilt: the log records a ``GAP`` for them and rebuilds
from that snapshot on. A subscriber that reaches a gap receives one
``AccountEvent`` of kind ``GAP`` (``gap_from_seq .. seq``, whatever its
accounts) and should reconcile with ``OrderEntry.GetAccount``; a ``from_seq``
before the start of the log gets the same. The private engine costs the
memory of a second engine for the time of the replay, in the background.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import queue
import struct
import threading
from collections.abc import AsyncGenerator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np

from matchcore import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CancelReason,
    CommandType,
    Engine,
    EventType,
    MatchType,
    OrderFlags,
    Outcome,
    Reject,
)

from ..engine.handover import Handover
from ..engine.journal import (
    _RECORD,
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    CorruptJournal,
    RecordKind,
    _fsync_dir,
    encode_record,
    parse_record,
    read_segment_header,
    record_crc,
)
from ..engine.records import join as join_arrays
from ..engine.recovery import journal_dir, snapshot_dir
from ..engine.snapshots import CorruptSnapshot, list_snapshots, read_snapshot
from .updates import AccountEvent, shown_reject

log = logging.getLogger(__name__)

# One logged account event: the engine event, its index among its command's events,
# and the command's engine time.
DROP_DTYPE = np.dtype([("event", EVENT_DTYPE), ("index", "<u4"), ("_pad", "<u4"), ("time", "<i8")])
_EVENT_SIZE = EVENT_DTYPE.itemsize  # the "event" field is a row's first bytes
assert DROP_DTYPE.fields is not None and DROP_DTYPE.fields["event"][1] == 0

ACCOUNT_EVENT_TYPES = np.array(
    [
        EventType.ACCEPTED,
        EventType.REJECTED,
        EventType.TRADE,
        EventType.CANCELED,
        EventType.REPLACED,
        EventType.BALANCE,
        EventType.POSITION,
        EventType.SETTLEMENT,
    ],
    dtype=np.uint8,
)
# A REJECTED event concerns an account when its command acts for one.
ACCOUNT_COMMANDS = np.array(
    [
        CommandType.NEW_ORDER,
        CommandType.CANCEL,
        CommandType.CANCEL_CLIENT,
        CommandType.CANCEL_ALL,
        CommandType.REPLACE,
        CommandType.DEPOSIT,
        CommandType.WITHDRAW,
        CommandType.SPLIT,
        CommandType.MERGE,
    ],
    dtype=np.uint8,
)

EVENTS, GAP = 1, 2  # record kinds of the event log
LOG_MAGIC = b"PXDROP\x00\x01"
_LOG_HEADER = struct.Struct("<8sQ")  # magic, first seq
_LOG_CRC = struct.Struct("<I")
LOG_HEADER_SIZE = _LOG_HEADER.size + _LOG_CRC.size
LOG_SYNC = 0x43445850  # "PXDC"
_SUFFIX = ".events"


class CorruptEventLog(Exception):
    """A damaged record in a closed segment of the event log."""


_ACCOUNT_EVENT = np.zeros(256, dtype=bool)
_ACCOUNT_EVENT[ACCOUNT_EVENT_TYPES] = True
_ACCOUNT_COMMAND = np.zeros(256, dtype=bool)
_ACCOUNT_COMMAND[ACCOUNT_COMMANDS] = True


_ACCOUNT_EVENT_CODES = frozenset(ACCOUNT_EVENT_TYPES.tolist())
_ACCOUNT_COMMAND_CODES = frozenset(ACCOUNT_COMMANDS.tolist())
_REJECTED = int(EventType.REJECTED)
_SMALL_BATCH = 16  # events: up to this, rows joined in Python beat numpy's fixed cost
_ROW_TAIL = struct.Struct("<IIq").pack  # a row's index, _pad and time after its event's bytes
assert DROP_DTYPE.itemsize == _EVENT_SIZE + 16
# The vectorized path works on bytes where it can: ``bytes.translate`` and ``in`` on a
# column's bytes are single C calls, where a numpy fancy index, mask or reduction costs
# ~1 us of fixed overhead each (several times that on the sequencer thread's cold caches).
_KEEP_TABLE = bytes(int(keep) for keep in _ACCOUNT_EVENT)  # event type -> 1 if it is kept
_ACCOUNT_COMMAND_BYTES = bytes(ACCOUNT_COMMANDS.tolist())
# DROP_DTYPE with its event as one opaque field: assigning it is a plain byte copy, where
# a record field assignment converts field by field
_ROWS_DTYPE = np.dtype(
    [("event", f"V{_EVENT_SIZE}"), ("index", "<u4"), ("_pad", "<u4"), ("time", "<i8")]
)
assert _ROWS_DTYPE.itemsize == DROP_DTYPE.itemsize
assert [DROP_DTYPE.fields[n][1] for n in DROP_DTYPE.names or ()] == [  # type: ignore[index]
    _ROWS_DTYPE.fields[n][1]  # type: ignore[index]
    for n in _ROWS_DTYPE.names or ()
]
_EVENT_VOID = np.dtype(f"V{_EVENT_SIZE}")
assert EVENT_DTYPE["type"].itemsize == EVENT_DTYPE["command"].itemsize == 1


def account_events(commands: np.ndarray, events: np.ndarray) -> np.ndarray:
    """The account events of commands (contiguous seqs) as DROP_DTYPE rows."""
    if len(events) <= _SMALL_BATCH:
        # each kept event's bytes and its row's tail, joined and read by numpy once (15
        # events: 3.5 us; rows of tuples through ``np.array(rows, DROP_DTYPE)``, which
        # converts field by field: 15)
        first = int(commands["seq"][0])
        times = commands["time"].tolist()
        seqs = events["seq"].tolist()
        raw = events.tobytes()
        parts = []
        seq, start = -1, 0
        for i, kind in enumerate(events["type"].tolist()):
            if seqs[i] != seq:
                seq, start = seqs[i], i
            if kind in _ACCOUNT_EVENT_CODES and (
                kind != _REJECTED or int(events["command"][i]) in _ACCOUNT_COMMAND_CODES
            ):
                at = i * _EVENT_SIZE
                parts.append(raw[at : at + _EVENT_SIZE])
                parts.append(_ROW_TAIL(i - start, 0, times[seq - first]))
        return np.frombuffer(bytearray(b"".join(parts)), DROP_DTYPE)
    # (a batch of 50 orders, ~100 events: 19 -> 10 us)
    types = events["type"].tobytes()
    keep = np.frombuffer(types.translate(_KEEP_TABLE), dtype=np.bool_)
    # A REJECTED event is dropped only when its command acts for no account: look at
    # the events' commands only when some event comes from such a command (rare).
    if _REJECTED in types and events["command"].tobytes().translate(None, _ACCOUNT_COMMAND_BYTES):
        keep = keep & ((events["type"] != _REJECTED) | _ACCOUNT_COMMAND[events["command"]])
    rows = keep.nonzero()[0]  # methods: np.flatnonzero, np.searchsorted are Python wrappers
    out = np.zeros(len(rows), dtype=_ROWS_DTYPE)  # (of DROP_DTYPE: 3x the time)
    event_seqs = events["seq"]
    picked = event_seqs[rows]
    out["event"] = events.view(_EVENT_VOID)[rows]  # the same itemsize: any strides
    out["index"] = rows - event_seqs.searchsorted(picked)  # events come in seq order
    times = commands["time"]
    raw = times.tobytes()
    if raw == raw[: times.itemsize] * len(times):  # one time for every command: a batch
        out["time"] = times[0]
    else:
        out["time"] = times[(picked - commands["seq"][0]).astype(np.intp)]
    return np.frombuffer(out, DROP_DTYPE)  # out.view(DROP_DTYPE) checks the fields: 1.1 us


@dataclass
class LogItem:
    """One record of the log: the commands ``first .. last`` and their account events."""

    kind: int
    first: int
    last: int
    records: np.ndarray  # DROP_DTYPE (empty for a GAP)


# ------------------------------------------------------------------- the log


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{_SUFFIX}"


def _segments(directory: Path) -> list[tuple[int, Path]]:
    return sorted((int(p.name[: -len(_SUFFIX)]), p) for p in directory.glob(f"*{_SUFFIX}"))


def _encode(item: LogItem) -> bytes:
    body = item.records.tobytes() if item.kind == EVENTS else b""
    count = item.last - item.first + 1
    return encode_record(b"", item.kind, item.first, count, body, sync=LOG_SYNC)


def _read_header(fd: int, offset: int) -> tuple[int, int, int, int, int] | None:
    raw = os.pread(fd, RECORD_HEADER_SIZE, offset)
    if len(raw) < RECORD_HEADER_SIZE:
        return None
    sync, length, crc, kind, first, count = _RECORD.unpack(raw)
    if sync != LOG_SYNC or kind not in (EVENTS, GAP) or count < 1:
        return None
    if (kind == GAP and length) or length % DROP_DTYPE.itemsize or length > 1 << 30:
        return None
    return length, crc, kind, first, count


def _read_body(fd: int, offset: int, header: tuple[int, int, int, int, int]) -> bytes | None:
    length, crc, kind, first, count = header
    body = os.pread(fd, length, offset + RECORD_HEADER_SIZE) if length else b""
    if len(body) != length or record_crc(b"", kind, first, count, body) != crc:
        return None
    return body


def _item(header: tuple[int, int, int, int, int], body: bytes) -> LogItem:
    _, _, kind, first, count = header
    return LogItem(kind, first, first + count - 1, np.frombuffer(body, dtype=DROP_DTYPE).copy())


class EventLog:
    """The drop copy's append-only, framed event log (one writer; readers read files)."""

    def __init__(self, directory: Path, *, segment_bytes: int = 64 << 20) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.last_seq = 0
        self.repaired: str | None = None  # what opening cut, if anything
        self._fd: int | None = None
        self._size = 0
        segments = _segments(self.directory)
        while segments:  # a last segment whose header did not make it is dropped
            first, path = segments[-1]
            if self._header_ok(path, first):
                break
            self.repaired = f"{path.name}: segment header damaged, removed"
            path.unlink()
            segments.pop()
        if segments:
            first, path = segments[-1]
            self.last_seq = self._check_tail(path, first)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            self._size = os.fstat(self._fd).st_size

    @property
    def first_seq(self) -> int | None:
        segments = _segments(self.directory)
        return segments[0][0] if segments else None

    @staticmethod
    def _header_ok(path: Path, first: int) -> bool:
        raw = path.read_bytes()[:LOG_HEADER_SIZE]
        if len(raw) < LOG_HEADER_SIZE:
            return False
        magic, seq = _LOG_HEADER.unpack_from(raw)
        (crc,) = _LOG_CRC.unpack_from(raw, _LOG_HEADER.size)
        return magic == LOG_MAGIC and seq == first and google_crc32c.value(raw[:16]) == crc

    def _check_tail(self, path: Path, first: int) -> int:
        """Validate the last segment, cut it at the first bad record; its last seq."""
        expected = first
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            offset = LOG_HEADER_SIZE
            while offset < size:
                header = _read_header(fd, offset)
                body = None if header is None else _read_body(fd, offset, header)
                if header is None or body is None or header[3] != expected:
                    self.repaired = f"{path.name}: {size - offset} bytes cut at {offset}"
                    log.warning("drop copy log: %s", self.repaired)
                    os.ftruncate(fd, offset)
                    break
                expected = header[3] + header[4]
                offset += RECORD_HEADER_SIZE + header[0]
        finally:
            os.close(fd)
        return expected - 1

    def append(self, items: list[LogItem]) -> None:
        """Write records (in seq order, continuing the log) with one write per segment."""
        frames: list[bytes] = []
        for item in items:
            if item.first != self.last_seq + 1:
                raise ValueError(f"log record starts at {item.first}, expected {self.last_seq + 1}")
            if self._fd is None or self._size >= self.segment_bytes:
                self._write(frames)
                frames = []
                self._roll(item.first)
            frames.append(_encode(item))
            self._size += len(frames[-1])
            self.last_seq = item.last
        self._write(frames)

    def _write(self, frames: list[bytes]) -> None:
        if frames:
            assert self._fd is not None
            os.write(self._fd, b"".join(frames))

    def _roll(self, first_seq: int) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
        path = self.directory / _segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o644)
        header = _LOG_HEADER.pack(LOG_MAGIC, first_seq)
        os.write(self._fd, header + _LOG_CRC.pack(google_crc32c.value(header)))
        _fsync_dir(self.directory)
        self._size = LOG_HEADER_SIZE

    def close(self) -> None:
        if self._fd is not None:
            os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None


def read_log(
    directory: Path, after: int, upto: int, limit: int = 1 << 16
) -> tuple[list[LogItem], int]:
    """Records covering seqs ``after + 1 .. upto`` (about ``limit`` events at most) and the
    seq they reach. Seqs before the log's start come as one GAP item. Any thread."""
    segments = _segments(Path(directory))
    items: list[LogItem] = []
    reached = after
    if not segments or after >= upto:
        return items, reached
    firsts = [first for first, _ in segments]
    if after + 1 < firsts[0]:
        gap_last = min(firsts[0] - 1, upto)
        items.append(LogItem(GAP, after + 1, gap_last, np.zeros(0, dtype=DROP_DTYPE)))
        reached = gap_last
    start = max(0, bisect.bisect_right(firsts, reached + 1) - 1)
    events = 0
    for _, path in segments[start:]:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            offset = LOG_HEADER_SIZE
            while offset < size and reached < upto and events < limit:
                header = _read_header(fd, offset)
                if header is None:
                    raise CorruptEventLog(f"{path.name} at byte {offset}: no valid record")
                first, last = header[3], header[3] + header[4] - 1
                if last > reached:
                    if first > upto:
                        break
                    body = _read_body(fd, offset, header)
                    if body is None:
                        raise CorruptEventLog(f"{path.name} at byte {offset}: checksum mismatch")
                    item = _item(header, body)
                    items.append(item)
                    events += len(item.records)
                    reached = last
                offset += RECORD_HEADER_SIZE + header[0]
        finally:
            os.close(fd)
        if reached >= upto or events >= limit:
            break
    return items, reached


# ------------------------------------------------ rebuilding from the journal


def _journal_batches(directory: Path, after: int) -> Iterator[tuple[int, np.ndarray]]:
    """(first seq, commands) of each journal batch with commands after ``after``, in order.

    Stops quietly at the first record that is not valid (the write in progress,
    or a tail recovery cuts). FileNotFoundError if a segment is pruned meanwhile.
    """
    segments = sorted(Path(directory).glob("*.journal"))
    firsts = []
    for path in segments:
        firsts.append(read_segment_header(path)[1])
    start = max(0, bisect.bisect_right(firsts, after + 1) - 1)
    for path in segments[start:]:
        nonce = read_segment_header(path)[2]
        data = path.read_bytes()
        offset = SEGMENT_HEADER_SIZE
        while offset < len(data):
            parsed = parse_record(data, offset, nonce)
            if isinstance(parsed, str):
                return
            kind, first, count, body, offset = parsed
            if kind == RecordKind.BATCH and first + count - 1 > after:
                yield first, np.frombuffer(body, dtype=COMMAND_DTYPE, count=count)


def _journal_start(directory: Path) -> tuple[Any, int, bytes] | None:
    """(engine config, first seq, nonce) of the oldest journal segment, if any."""
    segments = sorted(Path(directory).glob("*.journal"))
    return read_segment_header(segments[0]) if segments else None


def _journal_has_after(directory: Path, after: int) -> bool:
    return any(True for _ in _journal_batches(directory, after))


# ----------------------------------------------------------- the publisher


class _Live:
    """A live subscriber's bounded queue (asyncio loop only)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.items: collections.deque[LogItem] = collections.deque()
        self.size = 0
        self.overflowed = False
        self.wake = asyncio.Event()

    def reread(self) -> None:
        self.overflowed = True
        self.items.clear()
        self.wake.set()

    def offer(self, item: LogItem) -> None:
        if self.overflowed:
            return
        self.size += len(item.records) + 1
        if self.size > self.limit:
            self.overflowed = True  # back to the log from where it is
            self.items.clear()
        else:
            self.items.append(item)
        self.wake.set()


@dataclass
class _Rebuild:
    until: int | None  # the last seq to rebuild (None: the journal's end)
    done: threading.Event


_STOP = object()


class DropCopyPublisher:
    """Account events to an event log and to subscribers; history and live, resumable."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        segment_bytes: int = 64 << 20,
        live_limit: int = 50_000,
        read_chunk: int = 1 << 16,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.directory = self.data_dir / "dropcopy"
        self.log = EventLog(self.directory, segment_bytes=segment_bytes)
        self.live_limit = live_limit
        self.read_chunk = read_chunk
        self.written_seq = self.log.last_seq  # writer thread: how far the log goes
        self.latest_seq = self.log.last_seq  # sequencer thread: the newest batch seen
        self.rebuilt = 0  # commands whose events were rebuilt from the journal
        self.gaps: list[tuple[int, int]] = []  # ranges logged as GAP by this process
        self.failure: BaseException | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        # Who writes live batches: the writer thread (False), or on_events itself (True)
        # once the log is caught up and the writer has nothing queued. Switched under
        # the lock, which on_events holds while it writes.
        self._direct = False
        self._lock = threading.Lock()
        self._handover: Handover | None = None
        self._group: list[tuple[np.ndarray, np.ndarray]] = []  # writer: batches to write
        self._group_events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._frontier = self.log.last_seq  # loop: how far subscribers may read the log
        self._live: set[_Live] = set()
        self._listeners: list[Any] = []  # loop: called with each new LogItem (order history)
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dropcopy-reader")
        self._thread = threading.Thread(target=self._run, name="dropcopy-writer", daemon=True)
        self._thread.start()

    # ----------------------------------------------------- sequencer thread

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Log a batch (sequencer thread): written here when the log is caught up, one
        page-cache write of its account events, else queued for the writer thread."""
        seqs = commands["seq"]
        first = int(seqs[0])  # two scalars: 0.3 us, a fancy index and tolist() 0.7
        self.latest_seq = int(seqs[-1])
        with self._lock:
            if self._direct and first == self.log.last_seq + 1:
                self._append(
                    [LogItem(EVENTS, first, self.latest_seq, account_events(commands, events))],
                    self._handover,
                )
                return
            self._direct = False  # a gap before it (rebuilt first), or the writer is busy
            self._queue.put((commands, events))

    def _to_writer(self, item: Any) -> None:
        """Queue work for the writer thread, which writes everything from now on."""
        with self._lock:
            self._direct = False
            self._queue.put(item)

    # ----------------------------------------------------------- set-up

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        exchange: Any = None,
        handover: Handover | None = None,
    ) -> None:
        """Deliver to subscribers on ``loop``. With the opened ``exchange``, rebuild now
        what the log misses of the recovered journal (else the first live batch, whose seq
        tells where the journal ended, triggers it). ``handover``: the sequencer's, for
        the loop (flushed after each batch): new records go over with the batch's replies."""
        self._handover = handover
        self._loop = loop
        loop.call_soon_threadsafe(self._sync)
        if exchange is not None:
            until = exchange.recovered.next_seq - 1
            self._to_writer(_Rebuild(until, threading.Event()))

    def catch_up(self, until: int | None = None, timeout: float | None = None) -> bool:
        """Rebuild what the log misses up to ``until`` (None: the journal's current end),
        and wait for it. Journal batches rebuilt here are skipped when they come live."""
        request = _Rebuild(until, threading.Event())
        self._to_writer(request)
        return request.done.wait(timeout)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything queued so far is in the log."""
        done = threading.Event()
        self._queue.put(done)
        done.wait(timeout)

    def close(self) -> None:
        """Write what is queued, fsync and close the log (after the Exchange is closed)."""
        if self._thread.is_alive():
            self._to_writer(_STOP)
            self._thread.join()
        self._readers.shutdown(wait=False)

    # ------------------------------------------------------- writer thread

    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                while True:
                    if item is _STOP:
                        self._flush()
                        self.log.close()
                        return
                    if isinstance(item, _Rebuild):
                        self._flush()
                        self._rebuild(item.until)
                        item.done.set()
                    elif isinstance(item, threading.Event):
                        self._flush()
                        item.set()
                    else:
                        self._take(*item)
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                self._flush()
                with self._lock:  # caught up, nothing queued: on_events writes from now on
                    self._direct = self._queue.empty()
        except BaseException as exc:
            self.failure = exc
            log.exception("drop copy writer stopped")

    def _take(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Add a live batch to the group being written (after rebuilding any gap before it)."""
        first, last = int(commands["seq"][0]), int(commands["seq"][-1])
        if first > self._end() + 1:  # the log lags the journal: rebuild the commands between
            self._flush()
            self._rebuild(first - 1)
        end = self._end()
        if last <= end:
            return  # rebuilt from the journal already
        if first <= end:
            commands = commands[commands["seq"] > end]
            events = events[events["seq"] > end]
        self._group.append((commands, events))
        self._group_events += len(events)
        if self._group_events >= 1 << 16:
            self._flush()

    def _end(self) -> int:
        return int(self._group[-1][0]["seq"][-1]) if self._group else self.log.last_seq

    def _flush(self) -> None:
        """Write the grouped batches as one record (one filter pass, one write)."""
        group, self._group, self._group_events = self._group, [], 0
        if not group:
            return
        if len(group) == 1:
            commands, events = group[0]
        else:
            commands = join_arrays([c for c, _ in group], COMMAND_DTYPE)
            events = join_arrays([e for _, e in group], EVENT_DTYPE)
        first, last = int(commands["seq"][0]), int(commands["seq"][-1])
        self._write([LogItem(EVENTS, first, last, account_events(commands, events))])

    def _write(self, items: list[LogItem]) -> None:
        if items:
            self._append(items, None)

    def _append(self, items: list[LogItem], handover: Handover | None) -> None:
        """Write records and hand them to the loop: by the sequencer's ``handover`` (with
        the batch's replies) when on_events writes, else with a wake-up of its own."""
        self.log.append(items)
        self.written_seq = self.log.last_seq  # before looking at the loop: see attach()
        loop = self._loop
        if loop is None:
            return
        if handover is not None:
            handover.post(self._advance, items)
        elif not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                loop.call_soon_threadsafe(self._advance, items)

    def _rebuild(self, until: int | None) -> None:
        """Log the events of the journal's commands after the log's end (up to ``until``)."""
        for _attempt in range(5):
            try:
                self._replay(until)
                return
            except FileNotFoundError:  # a segment or snapshot pruned under us: again
                continue
        log.error("drop copy: could not rebuild from the journal (files pruned meanwhile)")

    def _replay(self, until: int | None) -> None:
        after = self.log.last_seq
        if until is not None and until <= after:
            return
        jdir = journal_dir(self.data_dir)
        if not _journal_has_after(jdir, after):
            return
        engine, base = self._base(after, jdir)
        pending: list[LogItem] = []
        for first, commands in _journal_batches(jdir, base):
            if until is not None and first > until:
                break
            if first <= base:
                commands = commands[base + 1 - first :]
                first = base + 1
            events = engine.process(commands)
            last = first + len(commands) - 1
            if last > after:
                records = account_events(commands, events)
                if first <= after:
                    records = records[records["event"]["seq"] > after]
                    first = after + 1
                pending.append(LogItem(EVENTS, first, last, records))
                self.rebuilt += last - first + 1
                after = last
                if len(pending) >= 256:
                    self._write(pending)
                    pending = []
        self._write(pending)
        if until is not None and self.log.last_seq < until:
            # The journal ended before ``until``: it cannot, since those commands ran.
            self._gap(self.log.last_seq + 1, until, "missing from the journal")

    def _base(self, after: int, jdir: Path) -> tuple[Engine, int]:
        """An engine at seq ``base <= after`` to replay from, or a GAP up to a later base."""
        snapshots = []
        for path in list_snapshots(snapshot_dir(self.data_dir)):
            seq = int(path.stem)
            snapshots.append((seq, path))
            if seq <= after:
                try:
                    snap = read_snapshot(path)
                    return Engine.restore(snap.engine_state), snap.seq
                except (CorruptSnapshot, ValueError):
                    continue
        start = _journal_start(jdir)
        if start is not None and start[1] == 1:
            return Engine(**start[0].engine_kwargs()), 0
        for seq, path in reversed(snapshots):  # the oldest usable one
            try:
                snap = read_snapshot(path)
                engine = Engine.restore(snap.engine_state)
            except (CorruptSnapshot, ValueError):
                continue
            if seq > after:
                self._gap(after + 1, seq, "before the oldest snapshot kept")
            return engine, seq
        raise CorruptJournal("drop copy: no snapshot and no journal start to rebuild from")

    def _gap(self, first: int, last: int, why: str) -> None:
        log.warning("drop copy: events of seqs %d..%d cannot be rebuilt (%s)", first, last, why)
        self.gaps.append((first, last))
        self._write([LogItem(GAP, first, last, np.zeros(0, dtype=DROP_DTYPE))])

    # ------------------------------------------------------------ the loop

    def _advance(self, items: list[LogItem]) -> None:
        """New records are in the log: hand them to live subscribers (loop thread)."""
        for item in items:
            if item.last > self._frontier:
                for sub in list(self._live):
                    sub.offer(item)
                self._frontier = item.last
                for listener in list(self._listeners):
                    try:
                        listener(item)
                    except Exception:
                        log.exception("drop copy listener failed")

    @property
    def frontier(self) -> int:
        """The last seq in the log that the loop has seen (loop thread)."""
        return self._frontier

    def add_listener(self, listener: Any) -> None:
        """Call ``listener(item)`` on the loop with every record written after now
        (``history(0, frontier)`` has the ones before): no seam between the two."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Any) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _sync(self) -> None:
        """Take in what was written before the loop was known (loop thread, at attach)."""
        if self.written_seq > self._frontier:
            self._frontier = self.written_seq
            for sub in list(self._live):  # they never got those records: back to the log
                sub.reread()

    def subscriber_count(self) -> int:
        """Streams delivering live now (one still reading the log is not counted)."""
        return len(self._live)

    def history(self, after: int, upto: int | None = None) -> list[LogItem]:
        """Every record after seq ``after`` (up to ``upto``) as in the log (any thread)."""
        upto = self.log.last_seq if upto is None else upto
        items: list[LogItem] = []
        while after < upto:
            chunk, reached = read_log(self.directory, after, upto, self.read_chunk)
            if reached <= after:
                break
            items.extend(chunk)
            after = reached
        return items

    async def stream(
        self, accounts: frozenset[int] | None, from_seq: int = 0
    ) -> AsyncGenerator[AccountEvent, None]:
        """Events of ``accounts`` (None: all) after ``from_seq`` (0: now): history, then live."""
        loop = asyncio.get_running_loop()
        last = from_seq if from_seq else max(self._frontier, self.latest_seq)
        while True:
            if last < self._frontier:  # history, from the log, off the loop
                chunk, reached = await loop.run_in_executor(
                    self._readers, read_log, self.directory, last, self._frontier, self.read_chunk
                )
                if reached <= last:
                    raise CorruptEventLog(f"the log does not reach seq {self._frontier}")
                for item in chunk:
                    for event in events_for(item, accounts, last):
                        yield event
                    last = item.last
                last = reached
                continue
            sub = _Live(self.live_limit)
            self._live.add(sub)
            try:
                while not sub.overflowed:
                    if sub.items:
                        item = sub.items.popleft()
                        sub.size -= len(item.records) + 1
                        if item.last <= last:
                            continue
                        for event in events_for(item, accounts, last):
                            yield event
                        last = item.last
                        continue
                    sub.wake.clear()
                    await sub.wake.wait()
            finally:
                self._live.discard(sub)


# --------------------------------------------------- to update objects

_KINDS = {int(t): t.name for t in EventType}
_REJECTS = {int(r): r.name for r in Reject}
_CANCELS = {int(r): r.name for r in CancelReason}
_MATCHES = {int(m): m.name for m in MatchType}
_OUTCOMES = {int(o): o.name for o in Outcome}
_BY_CASH = int(OrderFlags.BY_CASH)
_T = EventType
_GAP_REASON = "events lost beyond what the journal can rebuild: reconcile with GetAccount"


def events_for(
    item: LogItem, accounts: frozenset[int] | None, after: int = 0
) -> list[AccountEvent]:
    """The AccountEvents of a log record for ``accounts`` (None: all), seqs after ``after``."""
    if item.kind == GAP:
        if item.last <= after:
            return []
        first = max(item.first, after + 1)
        return [AccountEvent(item.last, 0, "GAP", 0, reason=_GAP_REASON, gap_from_seq=first)]
    records = item.records
    if not len(records):
        return []
    ev = records["event"]
    if after >= item.first:
        keep = ev["seq"] > after
        records, ev = records[keep], ev[keep]
    if accounts is not None:
        allowed = np.fromiter(accounts, dtype=np.uint32, count=len(accounts))
        keep = np.isin(ev["account"], allowed) | (
            (ev["type"] == _T.TRADE) & np.isin(ev["maker_account"], allowed)
        )
        records, ev = records[keep], ev[keep]
    out: list[AccountEvent] = []
    indexes = records["index"].tolist()
    times = records["time"].tolist()
    for i, e in enumerate(ev.tolist()):
        _events(out, e, indexes[i], times[i], accounts)
    return out


_F = {name: i for i, name in enumerate(EVENT_DTYPE.names or ())}
(
    _SEQ,
    _ORDER,
    _MAKER_ORDER,
    _QTY,
    _LEAVES,
    _MAKER_LEAVES,
    _FEE,
    _MAKER_FEE,
    _ACCOUNT,
    _MAKER_ACCOUNT,
    _MARKET,
    _PRICE,
) = (
    _F[n]
    for n in (
        "seq",
        "order_id",
        "maker_order_id",
        "quantity",
        "leaves_qty",
        "maker_leaves_qty",
        "fee",
        "maker_fee",
        "account",
        "maker_account",
        "market",
        "price",
    )
)
_TYPE, _REASON, _INTENT, _MAKER_INTENT, _MATCH, _FLAGS, _COMMAND = (
    _F[n] for n in ("type", "reason", "intent", "maker_intent", "match_type", "flags", "command")
)


def _events(
    out: list[AccountEvent],
    e: tuple[Any, ...],
    index: int,
    time_ns: int,
    accounts: frozenset[int] | None,
) -> None:
    kind = e[_TYPE]
    seq, name, market = e[_SEQ], _KINDS[kind], e[_MARKET]
    by_cash = bool(e[_FLAGS] & _BY_CASH)
    if kind == _T.TRADE:
        price, qty, match = e[_PRICE], e[_QTY], _MATCHES[e[_MATCH]]
        if accounts is None or e[_ACCOUNT] in accounts:
            leaves = e[_LEAVES]  # a buy by cash: the budget left, not a quantity
            out.append(
                AccountEvent(
                    seq,
                    index,
                    name,
                    time_ns,
                    account=e[_ACCOUNT],
                    order_id=e[_ORDER],
                    market=market,
                    intent=e[_INTENT],
                    price=price,
                    quantity=qty,
                    leaves_quantity=None if by_cash else leaves,
                    cash=leaves if by_cash else None,
                    fee=e[_FEE],
                    reason=match,
                    counterparty_order_id=e[_MAKER_ORDER],
                    taker=True,
                )
            )
        if accounts is None or e[_MAKER_ACCOUNT] in accounts:
            out.append(
                AccountEvent(
                    seq,
                    index,
                    name,
                    time_ns,
                    account=e[_MAKER_ACCOUNT],
                    order_id=e[_MAKER_ORDER],
                    market=market,
                    intent=e[_MAKER_INTENT],
                    price=price,
                    quantity=qty,
                    leaves_quantity=e[_MAKER_LEAVES],
                    fee=e[_MAKER_FEE],
                    reason=match,
                    counterparty_order_id=e[_ORDER],
                    taker=False,
                )
            )
        return
    account = e[_ACCOUNT]
    if kind in (_T.ACCEPTED, _T.CANCELED, _T.REPLACED):
        qty = e[_QTY]  # a buy by cash: its budget, not a quantity
        event = AccountEvent(
            seq,
            index,
            name,
            time_ns,
            account=account,
            order_id=e[_ORDER],
            market=market,
            intent=e[_INTENT],
            price=e[_PRICE],
            quantity=None if by_cash else qty,
            leaves_quantity=None if by_cash else e[_LEAVES],
            cash=qty if by_cash else None,
            reason=_CANCELS.get(e[_REASON], str(e[_REASON])) if kind == _T.CANCELED else "",
        )
    elif kind == _T.REJECTED:
        code = shown_reject(e[_COMMAND], e[_REASON])
        reason = _REJECTS.get(code, str(code))
        event = AccountEvent(
            seq,
            index,
            name,
            time_ns,
            account=account,
            order_id=e[_ORDER],
            market=market,
            reason=reason,
        )
    elif kind == _T.BALANCE:
        event = AccountEvent(
            seq, index, name, time_ns, account=account, market=market, cash=e[_QTY]
        )
    elif kind == _T.POSITION:
        reason = "SPLIT" if e[_COMMAND] == CommandType.SPLIT else "MERGE"
        event = AccountEvent(
            seq,
            index,
            name,
            time_ns,
            account=account,
            market=market,
            quantity=e[_QTY],
            reason=reason,
        )
    else:  # SETTLEMENT: cash paid; YES and NO shares settled
        event = AccountEvent(
            seq,
            index,
            name,
            time_ns,
            account=account,
            market=market,
            cash=e[_QTY],
            quantity=e[_LEAVES],
            leaves_quantity=e[_MAKER_LEAVES],
            reason=_OUTCOMES.get(e[_REASON], str(e[_REASON])),
        )
    out.append(event)
