"""One shard's deterministic state: what its command log makes of an engine.

Every replica of a shard (the active one and each hot standby) holds a
``ShardState`` and feeds it the shard's command messages in stream order;
``apply`` is a pure function of the state and the message, so every replica
computes the same events and reaches the same digest. It knows nothing of
NATS: the node (``node.py``) reads the log and publishes what ``apply`` returns.

What it adds to the engine, all of it in the snapshot:

- **Engine sequence numbers.** Each command that runs gets the next ``seq``
  (``next_seq``), the same on every replica; the publisher's ``seq`` field is
  ignored, its ``time`` is kept (stamped before the command entered the log).
- **Idempotent order entry** (``pyexchange.IdempotencyTable``): a NEW_ORDER
  whose (account, client order id) was seen before is answered with the first
  result and not run again. This is what makes a client's retry through another
  gateway (a new message, so no JetStream deduplication) harmless.
- **Cross-shard transfers** (docs/cluster.md, "Money across shards"): a
  ``xfer-out`` withdraws cash from an account here and remembers the transfer
  as outgoing until its ``xfer-done``; a ``xfer-in`` deposits it on the
  destination once per transfer, whatever the number of deliveries.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, CommandType, Engine, EventType, Reject
from pyexchange import IdempotencyTable

from .log import decode_commands

BATCH = "batch"
XFER_OUT = "xfer-out"
XFER_IN = "xfer-in"
XFER_DONE = "xfer-done"
KINDS = (BATCH, XFER_OUT, XFER_IN, XFER_DONE)

# transfer id, account, amount, source shard, destination shard, time
TRANSFER = struct.Struct("<QIqIIq")
_STATE_MAGIC = b"PYXSHRD1"
_STATE_HEADER = struct.Struct("<8sIQQQQQ")  # magic, shard, stream seq, next seq, 3 lengths


@dataclass(frozen=True)
class Transfer:
    """A move of cash of one account from one shard to another (docs/cluster.md)."""

    transfer_id: int
    account: int
    amount: int
    source: int
    destination: int
    time: int = 0

    def encode(self) -> bytes:
        return TRANSFER.pack(
            self.transfer_id, self.account, self.amount, self.source, self.destination, self.time
        )

    @classmethod
    def decode(cls, body: bytes) -> Transfer:
        if len(body) != TRANSFER.size:
            raise ValueError(f"a transfer record is {TRANSFER.size} bytes, not {len(body)}")
        return cls(*TRANSFER.unpack(body))

    @property
    def key(self) -> tuple[int, int, int]:
        """Unique per transfer in the cluster: (source shard, account, transfer id)."""
        return (self.source, self.account, self.transfer_id)

    def msg_id(self, step: str) -> str:
        return f"{step}-{self.source}-{self.account}-{self.transfer_id}"


@dataclass
class Applied:
    """What one command message produced: events per row, the events, follow-ups."""

    counts: np.ndarray
    events: np.ndarray
    first_seq: int
    credit: Transfer | None = None  # an xfer-out that withdrew: the leader must credit it


@dataclass
class ShardState:
    shard: int
    shards: int
    engine: Engine
    stream_seq: int = 0  # the last command message applied
    next_seq: int = 1  # the engine seq of the next command that runs
    idempotency: IdempotencyTable = field(default_factory=IdempotencyTable)
    # transfers withdrawn here and not yet known to be stored at their destination
    outgoing: dict[tuple[int, int, int], Transfer] = field(default_factory=dict)
    # (account, transfer id) of every xfer-out seen here -> its engine events (bounded)
    sent: OrderedDict[tuple[int, int], bytes] = field(default_factory=OrderedDict)
    # key of every transfer credited here (never forgotten: a redelivery may come any time)
    credited: set[tuple[int, int, int]] = field(default_factory=set)
    sent_capacity: int = 1_000_000

    # ------------------------------------------------------------ applying

    def apply(self, stream_seq: int, kind: str, body: bytes) -> Applied:
        """Apply command message ``stream_seq`` (it must be the next one)."""
        if stream_seq != self.stream_seq + 1:
            raise ValueError(
                f"shard {self.shard}: message {stream_seq} after {self.stream_seq} (a gap)"
            )
        first_seq = self.next_seq
        try:
            if kind == BATCH:
                counts, events = self._batch(decode_commands(body))
            elif kind in (XFER_OUT, XFER_IN, XFER_DONE):
                transfer = Transfer.decode(body)
                counts, events, credit = self._transfer(kind, transfer)
                self.stream_seq = stream_seq
                return Applied(counts, events, first_seq, credit)
            else:
                raise ValueError(f"unknown message kind {kind!r}")
        except ValueError:
            # A malformed message (no publisher of this package writes one) is
            # skipped the same way on every replica: no rows, no events.
            counts, events = np.zeros(0, dtype=np.uint32), np.zeros(0, dtype=EVENT_DTYPE)
        self.stream_seq = stream_seq
        return Applied(counts, events, first_seq)

    def _run(self, commands: np.ndarray) -> np.ndarray:
        count = len(commands)
        commands["seq"] = np.arange(self.next_seq, self.next_seq + count, dtype=np.uint64)
        self.next_seq += count
        return self.engine.process(commands)

    def _batch(self, commands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = len(commands)
        keyed = np.nonzero(
            (commands["type"] == CommandType.NEW_ORDER) & (commands["client_order_id"] != 0)
        )[0]
        answered: dict[int, np.ndarray | int] = {}
        first_row: dict[tuple[int, int], int] = {}
        for row in keyed:
            key = (int(commands["account"][row]), int(commands["client_order_id"][row]))
            known = self.idempotency.lookup(*key)
            if known is not None:
                answered[int(row)] = known
            elif key in first_row:
                answered[int(row)] = first_row[key]  # a repeat inside this batch
            else:
                first_row[key] = int(row)
        keep = np.ones(rows, dtype=bool)
        keep[list(answered)] = False
        batch = commands[keep]
        events = self._run(batch) if len(batch) else np.zeros(0, dtype=EVENT_DTYPE)
        self.idempotency.record_batch(batch, events)
        if not answered:
            counts = _counts_by_seq(batch["seq"], events)
            return counts, events
        kept_counts = _counts_by_seq(batch["seq"], events)
        bounds = np.concatenate(([0], np.cumsum(kept_counts, dtype=np.int64)))
        position = np.cumsum(keep) - 1
        pieces = []
        for row in range(rows):
            known = answered.get(row, row)
            if isinstance(known, np.ndarray):
                pieces.append(known)
            else:
                i = position[known]
                pieces.append(events[bounds[i] : bounds[i + 1]])
        counts = np.array([len(p) for p in pieces], dtype=np.uint32)
        return counts, np.concatenate(pieces) if pieces else events[:0]

    def _transfer(self, kind: str, t: Transfer) -> tuple[np.ndarray, np.ndarray, Transfer | None]:
        one = np.ones(1, dtype=np.uint32)
        if kind == XFER_OUT:
            if t.source != self.shard:
                return np.zeros(1, np.uint32), np.zeros(0, EVENT_DTYPE), None
            seen = self.sent.get((t.account, t.transfer_id))
            if seen is not None:  # a retry: the first result, nothing withdrawn again
                events = np.frombuffer(seen, dtype=EVENT_DTYPE).copy()
                return np.array([len(events)], np.uint32), events, None
            if not 0 <= t.destination < self.shards or t.destination == self.shard:
                events = self._reject(t, Reject.INVALID_COMMAND)
            else:
                events = self._run(_cash_command(CommandType.WITHDRAW, t))
            self.sent[(t.account, t.transfer_id)] = events.tobytes()
            while len(self.sent) > self.sent_capacity:
                self.sent.popitem(last=False)
            if len(events) and events["type"][0] == EventType.BALANCE:
                self.outgoing[t.key] = t
                return one * len(events), events, t
            return one * len(events), events, None
        if kind == XFER_IN:
            if t.destination != self.shard or t.key in self.credited:
                return np.zeros(1, np.uint32), np.zeros(0, EVENT_DTYPE), None
            self.credited.add(t.key)
            parts = []
            if self.engine.balance(t.account) is None:  # first cash of this account here
                add = np.zeros(1, dtype=COMMAND_DTYPE)
                add["type"] = CommandType.ADD_ACCOUNT
                add["account"], add["time"] = t.account, t.time
                parts.append(self._run(add))
            parts.append(self._run(_cash_command(CommandType.DEPOSIT, t)))
            events = np.concatenate(parts)
            return np.array([len(events)], np.uint32), events, None
        # XFER_DONE: the credit is stored at the destination; nothing is outgoing any more
        self.outgoing.pop(t.key, None)
        return np.zeros(1, np.uint32), np.zeros(0, EVENT_DTYPE), None

    def _reject(self, t: Transfer, reason: Reject) -> np.ndarray:
        """A REJECTED event for a transfer that names no valid destination (the engine's shape)."""
        event = np.zeros(1, dtype=EVENT_DTYPE)
        event["seq"], event["type"], event["reason"] = self.next_seq, EventType.REJECTED, reason
        event["account"], event["command"] = t.account, CommandType.WITHDRAW
        self.next_seq += 1
        return event

    # --------------------------------------------------------- identity

    def digest(self) -> str:
        """The engine's digest and everything this layer keeps, in one hash."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.engine.canonical_state())
        h.update(struct.pack("<QQ", self.stream_seq, self.next_seq))
        h.update(self._tables())
        return h.hexdigest()

    def _tables(self) -> bytes:
        outgoing = sorted((list(k), t.encode().hex()) for k, t in self.outgoing.items())
        sent = [[a, i, e.hex()] for (a, i), e in self.sent.items()]
        credited = sorted(list(k) for k in self.credited)
        return json.dumps(
            {"outgoing": outgoing, "sent": sent, "credited": credited}, separators=(",", ":")
        ).encode()

    def encode(self) -> bytes:
        """The snapshot: the engine, this layer's tables, and the stream seq they are at."""
        engine = self.engine.snapshot()
        idempotency = self.idempotency.encode()
        tables = self._tables()
        header = _STATE_HEADER.pack(
            _STATE_MAGIC,
            self.shard,
            self.stream_seq,
            self.next_seq,
            len(engine),
            len(idempotency),
            len(tables),
        )
        return b"".join((header, engine, idempotency, tables))

    @classmethod
    def decode(cls, data: bytes, shards: int) -> ShardState:
        magic, shard, stream_seq, next_seq, n_engine, n_idem, n_tables = _STATE_HEADER.unpack_from(
            data
        )
        if magic != _STATE_MAGIC:
            raise ValueError("not a shard snapshot")
        offset = _STATE_HEADER.size
        engine = Engine.restore(data[offset : offset + n_engine])
        offset += n_engine
        idempotency = IdempotencyTable.decode(data[offset : offset + n_idem])
        offset += n_idem
        tables = json.loads(data[offset : offset + n_tables])
        if offset + n_tables != len(data):
            raise ValueError("shard snapshot: trailing bytes")
        state = cls(shard, shards, engine, stream_seq, next_seq, idempotency)
        for key, record in tables["outgoing"]:
            state.outgoing[tuple(key)] = Transfer.decode(bytes.fromhex(record))
        for account, transfer_id, events in tables["sent"]:
            state.sent[(account, transfer_id)] = bytes.fromhex(events)
        state.credited = {tuple(k) for k in tables["credited"]}
        return state


def _counts_by_seq(seqs: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Events per command (events are in command order, each carries its command's seq)."""
    if not len(seqs):
        return np.zeros(0, dtype=np.uint32)
    bounds = np.searchsorted(events["seq"], seqs, side="left")
    ends = np.append(bounds[1:], len(events))
    return (ends - bounds).astype(np.uint32)


def _cash_command(type_: CommandType, t: Transfer) -> np.ndarray:
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"], command["account"], command["quantity"], command["time"] = (
        type_,
        t.account,
        t.amount,
        t.time,
    )
    return command
