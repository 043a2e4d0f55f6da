"""Idempotent order entry: an identical resend of a client order id gets the first result.

The engine itself only refuses a client order id that is *resting*
(DUPLICATE_CLIENT_ORDER_ID); a client that retries after a timeout needs more:
the retried NEW_ORDER must not become a second order, whatever happened to the
first one. The sequencer keeps, per (account, client order id), the events the
first command produced and a fingerprint of that command (a hash of every field
the client chose: all but ``seq`` and ``time``), for the most recent
``capacity`` ids. A repeat is never journaled or run again: an identical one is
answered with the first events, a different order under the same id with a
``REJECTED`` event (``DUPLICATE_CLIENT_ORDER_ID``, seq 0: it never reached the
journal), so a reused id can never silently return another order's result.
The table travels in every snapshot and is rebuilt from the journal on replay,
so the answer is the same after a crash.
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict

import numpy as np

from matchcore import EVENT_DTYPE, CommandType, EventType, Reject

_ENTRY = struct.Struct("<IQQI16s")  # account, client order id, seq, event bytes, fingerprint
_ENTRY_V1 = struct.Struct("<IQQI")  # snapshots written before fingerprints
_MAGIC = b"PXIDEM2\0"  # a v1 table starts with its entry count, never this
_UNKNOWN = bytes(16)  # the fingerprint of an entry read from a v1 snapshot
_NEW_ORDER = int(CommandType.NEW_ORDER)  # an int: an IntEnum in a numpy comparison costs µs


def fingerprints(commands: np.ndarray) -> list[bytes]:
    """The fingerprint of each command: its record without ``seq`` and ``time``, hashed."""
    rows = commands.copy()
    for name in ("seq", "time", "_pad"):
        if name in (rows.dtype.names or ()):
            rows[name] = 0
    raw = rows.tobytes()
    size = rows.dtype.itemsize
    return [
        hashlib.blake2b(raw[i * size : (i + 1) * size], digest_size=16).digest()
        for i in range(len(rows))
    ]


def duplicate_reject(command: np.void) -> np.ndarray:
    """The answer to a different order under a client order id already used: one REJECTED
    event, as the engine gives for a resting duplicate, with seq 0 (never journaled)."""
    event = np.zeros(1, dtype=EVENT_DTYPE)
    event["type"] = EventType.REJECTED
    event["reason"] = Reject.DUPLICATE_CLIENT_ORDER_ID
    event["command"] = CommandType.NEW_ORDER
    event["account"] = command["account"]
    event["market"] = command["market"]
    return event


_NO_ROWS = np.zeros(0, dtype=np.intp)
_SMALL_BATCH = 16  # commands: up to this, keyed_rows reads lists


def keyed_rows(commands: np.ndarray) -> np.ndarray:
    """The rows of the NEW_ORDERs that carry a client order id (``deduplicate`` and
    ``record_batch`` take them when the caller has them already)."""
    clients = commands["client_order_id"]
    if len(commands) <= _SMALL_BATCH:  # from lists: numpy's fixed costs would dominate
        found = [
            row
            for row, (kind, client) in enumerate(
                zip(commands["type"].tolist(), clients.tolist(), strict=True)
            )
            if client and kind == _NEW_ORDER
        ]
        return np.array(found, dtype=np.intp) if found else _NO_ROWS
    if not np.count_nonzero(clients):  # the common batch has none (any() is a Python wrapper)
        return _NO_ROWS
    return np.flatnonzero((commands["type"] == _NEW_ORDER) & (clients != 0))


class IdempotencyTable:
    """(account, client order id) -> the first NEW_ORDER's fingerprint and events."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int], tuple[int, bytes, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, account: int, client_order_id: int) -> np.ndarray | None:
        """The first result for this id, or None if it was not seen (or is too old)."""
        entry = self._entries.get((account, client_order_id))
        return None if entry is None else np.frombuffer(entry[1], dtype=EVENT_DTYPE).copy()

    def answer(self, command: np.void, fingerprint: bytes) -> np.ndarray | None:
        """The answer to a NEW_ORDER whose id was seen: the first result if ``command`` is
        the same order (same fingerprint), else a DUPLICATE_CLIENT_ORDER_ID reject; None if
        the id was not seen (the command runs)."""
        entry = self._entries.get((int(command["account"]), int(command["client_order_id"])))
        if entry is None:
            return None
        if entry[2] != fingerprint and entry[2] != _UNKNOWN:
            return duplicate_reject(command)
        return np.frombuffer(entry[1], dtype=EVENT_DTYPE).copy()

    def remember(
        self,
        account: int,
        client_order_id: int,
        seq: int,
        events: np.ndarray,
        fingerprint: bytes = _UNKNOWN,
    ) -> None:
        self._entries[(account, client_order_id)] = (seq, events.tobytes(), fingerprint)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def record_batch(
        self, commands: np.ndarray, events: np.ndarray, keyed: np.ndarray | None = None
    ) -> None:
        """Remember every NEW_ORDER with a client order id in a processed batch."""
        if keyed is None:
            keyed = keyed_rows(commands)
        if not len(keyed):
            return
        seqs = events["seq"]
        for row, fingerprint in zip(keyed, fingerprints(commands[keyed]), strict=True):
            command = commands[row]
            seq = int(command["seq"])
            start, stop = np.searchsorted(seqs, [seq, seq + 1])
            key = (int(command["account"]), int(command["client_order_id"]))
            if key not in self._entries:
                self.remember(*key, seq, events[start:stop], fingerprint)

    def deduplicate(
        self, commands: np.ndarray, keyed: np.ndarray | None = None
    ) -> tuple[dict[int, np.ndarray | int], np.ndarray]:
        """The rows of a batch answered without running, and the mask of those to run.

        ``answered[row]`` is the events to answer it with (from the table, or the
        DUPLICATE_CLIENT_ORDER_ID reject) or, for a repeat inside this batch of a
        row that runs, that row's index. A NEW_ORDER whose (account, client order
        id) was seen is never run: the same order gets the first one's events, a
        different one the reject. Every caller that runs batches (the embedded
        sequencer, a cluster shard's replicas) answers repeats this one way.
        """
        answered: dict[int, np.ndarray | int] = {}
        if keyed is None:
            keyed = keyed_rows(commands)
        if not len(keyed):
            keep = np.empty(len(commands), dtype=bool)  # np.ones is a Python wrapper
            keep.fill(True)
            return answered, keep
        first_row: dict[tuple[int, int], tuple[int, bytes]] = {}
        for row, fingerprint in zip(keyed, fingerprints(commands[keyed]), strict=True):
            command = commands[row]
            key = (int(command["account"]), int(command["client_order_id"]))
            known = self.answer(command, fingerprint)
            if known is not None:
                answered[int(row)] = known
            elif key in first_row:  # a repeat inside this batch
                first, first_fingerprint = first_row[key]
                same = first_fingerprint == fingerprint
                answered[int(row)] = first if same else duplicate_reject(command)
            else:
                first_row[key] = (int(row), fingerprint)
        keep = np.ones(len(commands), dtype=bool)
        keep[list(answered)] = False
        return answered, keep

    def copy(self) -> IdempotencyTable:
        """A copy to encode elsewhere while this one keeps changing."""
        twin = IdempotencyTable(self.capacity)
        twin._entries = self._entries.copy()
        return twin

    def encode(self) -> bytes:
        parts = [_MAGIC, struct.pack("<Q", len(self._entries))]
        for (account, client_order_id), (seq, events, fingerprint) in self._entries.items():
            parts.append(_ENTRY.pack(account, client_order_id, seq, len(events), fingerprint))
            parts.append(events)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, capacity: int = 1_000_000) -> IdempotencyTable:
        """A table from ``encode()``'s bytes, or from a snapshot written before fingerprints
        (its entries answer any resend with the first result, as they did then)."""
        table = cls(capacity)
        if not data:
            return table
        data = bytes(data)
        versioned = data.startswith(_MAGIC)
        entry = _ENTRY if versioned else _ENTRY_V1
        offset = len(_MAGIC) if versioned else 0
        (count,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        for _ in range(count):
            fields = entry.unpack_from(data, offset)
            account, client_order_id, seq, size = fields[:4]
            fingerprint = fields[4] if versioned else _UNKNOWN
            offset += entry.size
            events = data[offset : offset + size]
            table._entries[(account, client_order_id)] = (seq, events, fingerprint)
            offset += size
        if offset != len(data):
            raise ValueError("idempotency table: trailing bytes")
        return table
