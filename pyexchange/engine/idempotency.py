"""Idempotent order entry: a client order id seen again returns the first result.

The engine itself only refuses a client order id that is *resting*
(DUPLICATE_CLIENT_ORDER_ID); a client that retries after a timeout needs more:
the retried NEW_ORDER must not become a second order, whatever happened to the
first one. The sequencer keeps, per (account, client order id), the events the
first command produced, for the most recent ``capacity`` ids, and answers a
repeat with them without journaling or running it again. The table travels in
every snapshot and is rebuilt from the journal on replay, so the answer is the
same after a crash.
"""

from __future__ import annotations

import struct
from collections import OrderedDict

import numpy as np

from matchcore import EVENT_DTYPE, CommandType

_ENTRY = struct.Struct("<IQQI")  # account, client order id, seq, events


class IdempotencyTable:
    """(account, client order id) -> the events of the first NEW_ORDER that carried it."""

    def __init__(self, capacity: int = 1_000_000) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[tuple[int, int], tuple[int, bytes]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, account: int, client_order_id: int) -> np.ndarray | None:
        """The first result for this id, or None if it was not seen (or is too old)."""
        entry = self._entries.get((account, client_order_id))
        return None if entry is None else np.frombuffer(entry[1], dtype=EVENT_DTYPE).copy()

    def remember(self, account: int, client_order_id: int, seq: int, events: np.ndarray) -> None:
        self._entries[(account, client_order_id)] = (seq, events.tobytes())
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def record_batch(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Remember every NEW_ORDER with a client order id in a processed batch."""
        keyed = np.nonzero(
            (commands["type"] == CommandType.NEW_ORDER) & (commands["client_order_id"] != 0)
        )[0]
        if not len(keyed):
            return
        seqs = events["seq"]
        for row in keyed:
            command = commands[row]
            seq = int(command["seq"])
            start, stop = np.searchsorted(seqs, [seq, seq + 1])
            key = (int(command["account"]), int(command["client_order_id"]))
            if key not in self._entries:
                self.remember(*key, seq, events[start:stop])

    def copy(self) -> IdempotencyTable:
        """A copy to encode elsewhere while this one keeps changing."""
        twin = IdempotencyTable(self.capacity)
        twin._entries = self._entries.copy()
        return twin

    def encode(self) -> bytes:
        parts = [struct.pack("<Q", len(self._entries))]
        for (account, client_order_id), (seq, events) in self._entries.items():
            parts.append(_ENTRY.pack(account, client_order_id, seq, len(events)))
            parts.append(events)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes, capacity: int = 1_000_000) -> IdempotencyTable:
        table = cls(capacity)
        if not data:
            return table
        (count,) = struct.unpack_from("<Q", data)
        offset = 8
        for _ in range(count):
            account, client_order_id, seq, size = _ENTRY.unpack_from(data, offset)
            offset += _ENTRY.size
            table._entries[(account, client_order_id)] = (seq, bytes(data[offset : offset + size]))
            offset += size
        if offset != len(data):
            raise ValueError("idempotency table: trailing bytes")
        return table
