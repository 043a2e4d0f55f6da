"""One shard's deterministic state: what its command log makes of an engine.

Every replica of a shard (the active one and each hot standby) holds a
``ShardState`` and feeds it the shard's command messages in stream order;
``apply`` is a pure function of the state and the message, so every replica
computes the same events and reaches the same digest. It knows nothing of
NATS: the node (``node.py``) reads the log and publishes what ``apply`` returns.

What it adds to the engine, all of it in the snapshot and the digest:

- **Engine sequence numbers.** Each command that runs gets the next ``seq``
  (``next_seq``), the same on every replica; the publisher's ``seq`` field is
  ignored, its ``time`` is kept (stamped before the command entered the log).
- **Idempotent order entry** (``IdempotencyTable.deduplicate``, the embedded
  sequencer's rule): a NEW_ORDER whose (account, client order id) was seen is
  not run again; an identical resend gets the first result, a different order
  under the id a DUPLICATE_CLIENT_ORDER_ID reject. This is what makes
  a client's retry through another gateway (a new message, so no JetStream
  deduplication) harmless.
- **Cross-shard transfers** (``transfers.py``): the three steps, each applied
  once per transfer whatever the number of deliveries.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from matchcore import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandType,
    Engine,
    EventType,
    Reject,
)
from pyexchange import IdempotencyTable

from .log import decode_commands
from .transfers import CREDITED, REFUSED, XFER_DONE, XFER_IN, XFER_OUT, Transfer

BATCH = "batch"
KINDS = (BATCH, XFER_OUT, XFER_IN, XFER_DONE)

_STATE_MAGIC = b"PYXSHRD2"
_STATE_HEADER = struct.Struct("<8sIIQQQQQ")  # magic, shard, shards, stream seq, next seq, 3 lengths
_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)
_NO_COMMANDS = np.zeros(0, dtype=COMMAND_DTYPE)


@dataclass
class Applied:
    """What one command message produced: events per row, the events, what follows."""

    counts: np.ndarray  # u32 per row of the message (a transfer step is one row)
    events: np.ndarray
    first_seq: int  # the engine seq of the first command that ran (next_seq if none did)
    drive: Transfer | None = None  # a transfer withdrawn here: the leader carries it on
    # What ran, as the embedded sequencer hands its batches to the feeds: the commands
    # that got an engine seq (seq-stamped, in order, contiguous from first_seq) and
    # their own events. ``events`` differs for repeats (answered with the first
    # result: events of older seqs) and transfer retries; a drop copy needs these.
    commands: np.ndarray = field(default_factory=lambda: _NO_COMMANDS)
    ran_events: np.ndarray = field(default_factory=lambda: _NO_EVENTS)


@dataclass
class ShardState:
    shard: int
    shards: int
    engine: Engine
    stream_seq: int = 0  # the last command message applied
    next_seq: int = 1  # the engine seq of the next command that runs
    idempotency: IdempotencyTable = field(default_factory=IdempotencyTable)
    # transfers withdrawn here whose xfer-done has not been applied yet
    outgoing: dict[tuple[int, int, int], Transfer] = field(default_factory=dict)
    # (account, transfer id) of each xfer-out seen here -> its events (a retry's answer)
    sent: OrderedDict[tuple[int, int], bytes] = field(default_factory=OrderedDict)
    # key of each transfer that arrived here -> the events of its credit (or refusal)
    credited: dict[tuple[int, int, int], bytes] = field(default_factory=dict)
    sent_capacity: int = 1_000_000
    # (commands, events) of each engine run of the message being applied
    _ran: list[tuple[np.ndarray, np.ndarray]] = field(
        default_factory=list, repr=False, compare=False
    )

    # ------------------------------------------------------------ applying

    def apply(self, stream_seq: int, kind: str, body: bytes) -> Applied:
        """Apply command message ``stream_seq`` (it must be the next one)."""
        if stream_seq != self.stream_seq + 1:
            raise ValueError(
                f"shard {self.shard}: message {stream_seq} after {self.stream_seq} (a gap)"
            )
        first_seq = self.next_seq
        self._ran = []
        try:
            if kind == BATCH:
                commands, transfer = decode_commands(body), None
            elif kind in (XFER_OUT, XFER_IN, XFER_DONE):
                commands, transfer = None, Transfer.decode(body)
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except ValueError:
            # A malformed message (no publisher of this package writes one) is
            # skipped the same way on every replica: no rows, no events.
            self.stream_seq = stream_seq
            return Applied(np.zeros(0, dtype=np.uint32), _NO_EVENTS, first_seq)
        if commands is not None:
            counts, events = self._batch(commands)
            applied = Applied(counts, events, first_seq)
        else:
            assert transfer is not None
            events, drive = self._transfer(kind, transfer)
            applied = Applied(np.array([len(events)], np.uint32), events, first_seq, drive)
        if len(self._ran) == 1:
            applied.commands, applied.ran_events = self._ran[0]
        elif self._ran:
            applied.commands = np.concatenate([c for c, _ in self._ran])
            applied.ran_events = np.concatenate([e for _, e in self._ran])
        self.stream_seq = stream_seq
        return applied

    def _run(self, commands: np.ndarray) -> np.ndarray:
        count = len(commands)
        commands["seq"] = np.arange(self.next_seq, self.next_seq + count, dtype=np.uint64)
        self.next_seq += count
        events = self.engine.process(commands)
        self._ran.append((commands, events))
        return events

    def _batch(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run a batch as the embedded sequencer does: repeats answered from the table."""
        answered, keep = self.idempotency.deduplicate(commands)
        batch = commands[keep] if answered else commands
        events = self._run(batch) if len(batch) else _NO_EVENTS
        self.idempotency.record_batch(batch, events)
        kept_counts = _counts_by_seq(batch["seq"], events)
        if not answered:
            return kept_counts, events
        bounds = np.concatenate(([0], np.cumsum(kept_counts, dtype=np.int64)))
        position = np.cumsum(keep) - 1
        pieces = []
        for row in range(len(commands)):
            known = answered.get(row, row)
            if isinstance(known, np.ndarray):
                pieces.append(known)
            else:
                i = position[known]
                pieces.append(events[bounds[i] : bounds[i + 1]])
        counts = np.array([len(p) for p in pieces], dtype=np.uint32)
        return counts, np.concatenate(pieces) if pieces else _NO_EVENTS

    def _transfer(self, kind: str, t: Transfer) -> tuple[np.ndarray, Transfer | None]:
        if kind == XFER_OUT:
            return self._transfer_out(t)
        if kind == XFER_IN:
            return self._transfer_in(t), None
        return self._transfer_done(t), None

    def _transfer_out(self, t: Transfer) -> tuple[np.ndarray, Transfer | None]:
        if t.source != self.shard:
            return _NO_EVENTS, None  # misrouted: no publisher of this package does it
        seen = self.sent.get((t.account, t.transfer_id))
        if seen is not None:  # a retried request: the first result, nothing withdrawn again
            return np.frombuffer(seen, dtype=EVENT_DTYPE).copy(), None
        if not 0 <= t.destination < self.shards or t.destination == self.shard:
            events = self._reject(t, Reject.INVALID_COMMAND)
        else:
            events = self._run(_cash_command(CommandType.WITHDRAW, t))
        self.sent[(t.account, t.transfer_id)] = events.tobytes()
        while len(self.sent) > self.sent_capacity:
            self.sent.popitem(last=False)
        if withdrew(events, t):
            self.outgoing[t.key] = t
            return events, t
        return events, None

    def _transfer_in(self, t: Transfer) -> np.ndarray:
        if t.destination != self.shard:
            return _NO_EVENTS
        seen = self.credited.get(t.key)
        if seen is not None:  # delivered again: the same answer, nothing deposited again
            return np.frombuffer(seen, dtype=EVENT_DTYPE).copy()
        parts = []
        if self.engine.balance(t.account) is None:  # first cash of this account here
            add = np.zeros(1, dtype=COMMAND_DTYPE)
            add["type"], add["account"], add["time"] = CommandType.ADD_ACCOUNT, t.account, t.time
            parts.append(self._run(add))
        parts.append(self._run(_cash_command(CommandType.DEPOSIT, t)))
        events = np.concatenate(parts)
        self.credited[t.key] = events.tobytes()
        return events

    def _transfer_done(self, t: Transfer) -> np.ndarray:
        if t.source != self.shard or self.outgoing.pop(t.key, None) is None:
            return _NO_EVENTS  # a repeat: the transfer is finished already
        if t.outcome == REFUSED:  # the destination could not take it: back to the account
            return self._run(_cash_command(CommandType.DEPOSIT, t))
        return _NO_EVENTS

    def _reject(self, t: Transfer, reason: Reject) -> np.ndarray:
        """A REJECTED event for a transfer that names no valid destination (the engine's shape)."""
        event = np.zeros(1, dtype=EVENT_DTYPE)
        event["seq"], event["type"], event["reason"] = self.next_seq, EventType.REJECTED, reason
        event["account"], event["command"] = t.account, CommandType.WITHDRAW
        # it takes a seq as a run command would: the withdrawal it stands for ran here
        command = _cash_command(CommandType.WITHDRAW, t)
        command["seq"] = self.next_seq
        self._ran.append((command, event))
        self.next_seq += 1
        return event

    @property
    def next_expiry(self) -> int | None:
        """The earliest expiry of a resting GTD order (the core's heap), None if none."""
        return self.engine.next_expiry or None

    # --------------------------------------------------------- identity

    def digest(self) -> str:
        """The engine's state and everything this layer keeps, in one hash."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.engine.canonical_state())
        h.update(struct.pack("<IIQQ", self.shard, self.shards, self.stream_seq, self.next_seq))
        h.update(self.idempotency.encode())
        h.update(self._tables())
        return h.hexdigest()

    def _tables(self) -> bytes:
        tables = {
            "outgoing": sorted(t.encode().hex() for t in self.outgoing.values()),
            "sent": [[a, i, e.hex()] for (a, i), e in self.sent.items()],
            "credited": sorted([*k, e.hex()] for k, e in self.credited.items()),
        }
        return json.dumps(tables, separators=(",", ":")).encode()

    def encode(self) -> bytes:
        """The snapshot: the engine, this layer's tables, and the stream seq they are at."""
        engine = self.engine.snapshot()
        idempotency = self.idempotency.encode()
        tables = self._tables()
        header = _STATE_HEADER.pack(
            _STATE_MAGIC,
            self.shard,
            self.shards,
            self.stream_seq,
            self.next_seq,
            len(engine),
            len(idempotency),
            len(tables),
        )
        return b"".join((header, engine, idempotency, tables))

    @classmethod
    def decode(cls, data: bytes) -> ShardState:
        if len(data) < _STATE_HEADER.size:
            raise ValueError("not a shard snapshot (too short)")
        magic, shard, shards, stream_seq, next_seq, n_engine, n_idem, n_tables = (
            _STATE_HEADER.unpack_from(data)
        )
        if magic != _STATE_MAGIC:
            raise ValueError("not a shard snapshot")
        offset = _STATE_HEADER.size
        if offset + n_engine + n_idem + n_tables != len(data):
            raise ValueError("shard snapshot: wrong length")
        engine = Engine.restore(data[offset : offset + n_engine])
        offset += n_engine
        idempotency = IdempotencyTable.decode(data[offset : offset + n_idem])
        offset += n_idem
        tables = json.loads(data[offset : offset + n_tables])
        state = cls(shard, shards, engine, stream_seq, next_seq, idempotency)
        for record in tables["outgoing"]:
            t = Transfer.decode(bytes.fromhex(record))
            state.outgoing[t.key] = t
        for account, transfer_id, events in tables["sent"]:
            state.sent[(account, transfer_id)] = bytes.fromhex(events)
        for source, account, transfer_id, events in tables["credited"]:
            state.credited[(source, account, transfer_id)] = bytes.fromhex(events)
        return state


def withdrew(events: np.ndarray, t: Transfer) -> bool:
    """Whether the events of an xfer-out took the amount from the account."""
    return _has_balance_change(events, t.account, -t.amount)


def credit_outcome(events: np.ndarray, t: Transfer) -> int:
    """CREDITED if the events of an xfer-in deposited the amount, else REFUSED."""
    return CREDITED if _has_balance_change(events, t.account, t.amount) else REFUSED


def _has_balance_change(events: np.ndarray, account: int, change: int) -> bool:
    hits = (
        (events["type"] == EventType.BALANCE)
        & (events["account"] == account)
        & (events["quantity"] == change)
    )
    return bool(hits.any())


def _counts_by_seq(seqs: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Events per command (events are in command order, each carries its command's seq)."""
    if not len(seqs):
        return np.zeros(0, dtype=np.uint32)
    bounds = np.searchsorted(events["seq"], seqs, side="left")
    ends = np.append(bounds[1:], len(events))
    return (ends - bounds).astype(np.uint32)


def _cash_command(type_: CommandType, t: Transfer) -> np.ndarray:
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"], command["account"] = type_, t.account
    command["quantity"], command["time"] = t.amount, t.time
    return command
