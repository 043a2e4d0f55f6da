"""Leadership of a shard: a lease in JetStream KV, renewed by compare-and-set.

The key ``pyx_leases/shard-<s>`` holds ``{"holder": node id or null, "term": n}``.
Every change is a compare-and-set on the key's revision (``kv.update(last=)``),
so two nodes can never both believe they renewed the same lease:

- the holder renews it every ``ttl / 4`` (writing the same holder, a new
  revision); a renewal that fails (someone else wrote, or no quorum for longer
  than the ttl) ends its leadership at once;
- a standby watches the revision; when it has not changed for ``ttl`` seconds
  on the standby's own monotonic clock (no clock is compared across hosts), the
  holder is presumed dead and the standby writes itself in with ``term + 1``.

A lease is only who does the work. Safety does not rest on it: the event log
takes message *n* only as the successor of *n - 1* (expected last sequence),
so a deposed leader that has not noticed yet cannot publish anything.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)


@dataclass
class LeaseState:
    holder: str | None = None
    term: int = 0
    revision: int = 0
    seen_at: float = 0.0  # monotonic time the revision last changed


class Lease:
    """Compete for ``key`` in ``kv`` as ``node``; ``on_change(leader: bool)`` on every change."""

    def __init__(
        self,
        kv: KeyValue,
        key: str,
        node: str,
        *,
        ttl: float = 1.0,
        on_change: Callable[[bool], None] | None = None,
        eligible: Callable[[], bool] = lambda: True,
    ) -> None:
        self.kv = kv
        self.key = key
        self.node = node
        self.ttl = ttl
        self.on_change = on_change
        self.eligible = eligible  # a replica still catching up waits before it takes over
        self.state = LeaseState()
        self.leader = False
        self.takeovers = 0

    def _set_leader(self, leader: bool) -> None:
        if leader != self.leader:
            self.leader = leader
            log.info(
                "lease %s: %s (term %d)",
                self.key,
                "acquired" if leader else "lost",
                self.state.term,
            )
            if self.on_change is not None:
                self.on_change(leader)

    async def _read(self) -> None:
        try:
            entry = await self.kv.get(self.key)
        except (KeyNotFoundError, NotFoundError):
            if self.state.revision != 0:
                self.state = LeaseState(seen_at=time.monotonic())
            return
        if entry.revision != self.state.revision:
            value = json.loads(entry.value or b"{}")
            self.state = LeaseState(
                value.get("holder"),
                int(value.get("term", 0)),
                entry.revision or 0,
                time.monotonic(),
            )

    async def _write(self, term: int, holder: str | None = "") -> bool:
        holder = self.node if holder == "" else holder
        value = json.dumps({"holder": holder, "term": term}).encode()
        try:
            if self.state.revision == 0:
                revision = await self.kv.create(self.key, value)
            else:
                revision = await self.kv.update(self.key, value, last=self.state.revision)
        except KeyWrongLastSequenceError:
            return False
        self.state = LeaseState(holder, term, revision, time.monotonic())
        return True

    async def run(self) -> None:
        """Renew while leader, watch while not; returns only when cancelled."""
        if self.state.seen_at == 0.0:
            self.state.seen_at = time.monotonic()
        while True:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no quorum, a reconnect: leadership cannot be proven
                if self.leader and time.monotonic() - self.state.seen_at > self.ttl:
                    self._set_leader(False)
                log.debug("lease %s: %s", self.key, exc)
            await asyncio.sleep(self.ttl / 4)

    async def _step(self) -> None:
        if self.leader:
            if not await self._write(self.state.term):
                self._set_leader(False)
                await self._read()
            return
        await self._read()
        state = self.state
        free = state.holder is None or state.holder == self.node
        expired = time.monotonic() - state.seen_at > self.ttl
        if (free or expired) and self.eligible() and await self._write(state.term + 1):
            if state.holder not in (None, self.node):
                self.takeovers += 1
            self._set_leader(True)

    async def release(self) -> None:
        """Give the lease up at a clean stop (holder null), so a standby need not wait the ttl."""
        if self.leader:
            self._set_leader(False)
            try:
                await self._write(self.state.term, holder=None)
            except Exception as exc:
                log.debug("lease %s: release failed: %s", self.key, exc)
