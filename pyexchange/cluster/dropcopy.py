"""The drop copy of a one-shard cluster's gateway: the embedded drop copy, fed by a mirror.

A gateway's mirror of the shard computes exactly the events of the shard's
engines, each command with its engine seq; handed to ``DropCopyPublisher``
(``pyexchange/feeds/dropcopy.py``) as the embedded sequencer hands it batches,
they make the same event log, resumable by seq. The one difference: a gateway
has no journal to rebuild from. What its log misses when the mirror starts
later than the log ends (a new gateway, a mirror started from a newer
snapshot) is logged as a ``GAP``, which a subscriber receives as such and
reconciles with ``GetAccount``.

With more than one shard, engine seqs are per shard (the shard in their top
bits): a single seq to resume from does not exist, and gateways of such a
cluster serve no drop copy (docs/cluster.md).
"""

from __future__ import annotations

from ..feeds.dropcopy import DropCopyPublisher


class ClusterDropCopy(DropCopyPublisher):
    def _rebuild(self, until: int | None) -> None:
        if until is not None and until > self.log.last_seq:
            self._gap(self.log.last_seq + 1, until, "before this gateway followed the shard")
