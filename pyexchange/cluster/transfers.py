"""Cash moved between shards: the transfer record and the steps it goes through.

An account's cash is held per shard (each shard's engine keeps its own ledger,
docs/cluster.md "Money across shards"). A transfer moves free cash of one
account from a source shard to a destination shard in three messages, each one
entered in a replicated command log, so a crash of any process at any point
leaves the transfer where the logs say it is, and whoever leads the source
shard next carries it on:

1. ``xfer-out`` (source log, from the requester): the source withdraws the
   amount from the account's free cash, or rejects it (not enough cash, a bad
   destination). Withdrawn, the transfer is *outgoing* at the source.
2. ``xfer-in`` (destination log, from the source's active engine): the
   destination deposits the amount (adding the account first if it has never
   held cash there), once per transfer whatever the number of deliveries, or
   refuses it (no room for the account). Its result is recorded per transfer.
3. ``xfer-done`` (source log, from the source's active engine, carrying the
   destination's result): the transfer is no longer outgoing; a refused one is
   deposited back to the account at the source.

Between 1 and 3 the amount is *in flight*: withdrawn at the source and not (or
not yet known to be) deposited at the destination. The cluster's money
invariant counts it: sum over shards of net deposits + in flight = what was
deposited into the cluster minus what was withdrawn from it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

XFER_OUT = "xfer-out"
XFER_IN = "xfer-in"
XFER_DONE = "xfer-done"

# Outcome carried by xfer-done: what the destination did with xfer-in.
CREDITED = 0
REFUSED = 1

# transfer id, account, amount, source shard, destination shard, time, outcome
_RECORD = struct.Struct("<QIqIIqB")


@dataclass(frozen=True)
class Transfer:
    """A move of ``amount`` micro-dollars of ``account`` from ``source`` to ``destination``."""

    transfer_id: int
    account: int
    amount: int
    source: int
    destination: int
    time: int = 0  # engine time of the request (stamped before it enters the log)
    outcome: int = CREDITED  # xfer-done only

    def encode(self) -> bytes:
        return _RECORD.pack(
            self.transfer_id,
            self.account,
            self.amount,
            self.source,
            self.destination,
            self.time,
            self.outcome,
        )

    @classmethod
    def decode(cls, body: bytes) -> Transfer:
        if len(body) != _RECORD.size:
            raise ValueError(f"a transfer record is {_RECORD.size} bytes, not {len(body)}")
        return cls(*_RECORD.unpack(body))

    @property
    def key(self) -> tuple[int, int, int]:
        """Unique in the cluster: (source shard, account, transfer id)."""
        return (self.source, self.account, self.transfer_id)

    def msg_id(self, step: str) -> str:
        """The JetStream message id of a step: a retried publish is stored once."""
        return f"{step}-{self.source}-{self.account}-{self.transfer_id}"

    def done(self, outcome: int) -> Transfer:
        return Transfer(
            self.transfer_id,
            self.account,
            self.amount,
            self.source,
            self.destination,
            self.time,
            outcome,
        )
