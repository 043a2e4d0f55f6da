"""An engine replica process: follows its shard's command log; the active one publishes events.

Every replica of a shard runs the same loop (docs/cluster.md):

1. **Start** from the newest snapshot in the object store (its stream sequence
   is inside), or from an empty engine, and follow ``PYX_CMD_<s>`` from the
   next message with an ordered push consumer (re-created by nats-py from the
   last sequence seen when a server goes away or a gap shows).
2. **Apply** every message in order (``ShardState.apply``: ``Engine.process``
   on the batch) and keep what it produced in a ring of recent results.
3. **Publish**, only while it holds the lease (``lease.py``): the events of
   every applied message that the event log does not have yet, each with
   ``Nats-Expected-Last-Sequence = n - 1``. A publish refused for the wrong
   last sequence means another replica published there (a leader that did not
   know it was deposed, or the one it replaced): the replica re-reads the
   event log's end, checks the message it missed is its own result, and goes
   on after it. It never publishes anything else.
4. **Snapshot points** every ``snapshot_every`` messages (stream sequences
   that are multiples of it: the same point on every replica): each replica
   writes its digest to KV ``pyx_digests`` and compares it with the other
   replicas' digests at the same point, logging a mismatch; the active one
   also writes the snapshot to the object store, once the event log holds
   every event up to that point (so a snapshot is never ahead of the events).
5. **Transfers** (``transfers.py``): the active replica of a transfer's
   source stores the credit in the destination's log, reads the destination's
   answer to it, and stores the ``xfer-done`` with that outcome in its own;
   after a takeover it does so again for every outgoing transfer (each publish
   is deduplicated where it lands, each step applied once).
6. **Ticks when something is due**: when the earliest GTD expiry of the shard
   has passed on the wall clock and no command has moved engine time past it,
   the active replica puts an ``ADVANCE_TIME`` in its own log, so the order
   expires on every replica at the same point of the log. An idle shard with
   nothing due writes nothing.

Run: ``python -m pyexchange.cluster.node --shard 0 --node-id e0a --nats URL``
(``--help`` for the rest). SIGTERM or SIGINT: release the lease and stop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import numpy as np
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, NotFoundError
from prometheus_client import CollectorRegistry, Counter, Gauge

from matchcore import COMMAND_DTYPE, CommandType

from . import log as L
from . import snapshots
from .faults import fault
from .lease import Lease
from .shard import BATCH, ShardState, credit_outcome
from .status import StatusServer
from .transfers import XFER_DONE, XFER_IN, Transfer

logger = logging.getLogger("pyexchange.cluster.node")

WRONG_LAST_SEQUENCE = 10071
QUIET_S = 0.25  # no message for this long: the replica computes its digest where it stands


@dataclass
class NodeConfig:
    shard: int
    node_id: str
    servers: list[str]
    snapshot_every: int = 10_000
    lease_ttl: float = 1.0
    http_port: int = -1  # -1: no status server; 0: a free port
    status_file: Path | None = None
    ring_messages: int = 50_000
    publish_window: int = 256
    publish_timeout: float = 2.0


class NodeMetrics:
    def __init__(self, shard: int, node: str) -> None:
        self.registry = CollectorRegistry()
        r, labels = self.registry, {"shard": str(shard), "node": node}

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, list(labels), registry=r).labels(**labels)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, list(labels), registry=r).labels(**labels)

        self.leader = gauge("pyx_cluster_leader", "1 while this replica holds its shard's lease")
        self.applied = gauge("pyx_cluster_applied_seq", "Last command message applied")
        self.published = gauge("pyx_cluster_published_seq", "Last event message in the event log")
        self.stream_last = gauge("pyx_cluster_stream_last_seq", "Last message in the command log")
        self.lag = gauge("pyx_cluster_lag_messages", "Command messages not yet applied here")
        self.commands = counter("pyx_cluster_commands_total", "Commands applied")
        self.takeovers = counter("pyx_cluster_takeovers_total", "Leases taken over from another")
        self.resyncs = counter("pyx_cluster_resyncs_total", "Publishes found already published")
        self.mismatches = counter(
            "pyx_cluster_digest_mismatches_total", "Snapshot points where digests differed"
        )
        self.snapshots = counter("pyx_cluster_snapshots_total", "Snapshots written")


class EngineNode:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.shard = config.shard
        self.metrics = NodeMetrics(config.shard, config.node_id)
        self.state: ShardState | None = None
        self.ring: OrderedDict[int, tuple[bytes, int]] = OrderedDict()  # seq -> (body, first seq)
        self.published = 0  # the event log's last sequence, as far as this replica knows
        self.published_read = False  # the event log's end was read once since the start
        self.stream_last = 0
        self.leader = False
        self.digest_seq = 0
        self.digest = ""
        self.quiet_seq = -1  # the digest of the state once no message came for QUIET_S
        self.quiet_digest = ""
        self._wake = asyncio.Event()
        self._takeover = False
        self._last_apply = time.monotonic()
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._follow_task: asyncio.Task[Any] | None = None
        self._snapshot_tasks: set[asyncio.Task[Any]] = set()

    # ---------------------------------------------------------------- life

    async def run(self) -> None:
        cfg = self.config
        self.nc = await nats.connect(
            servers=cfg.servers,
            name=f"engine-{cfg.node_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
        )
        self.js: JetStreamContext = self.nc.jetstream(timeout=cfg.publish_timeout)
        self.layout = await L.until_answered(lambda: L.read_layout(self.js), "the layout")
        self.lease_kv = await L.until_answered(
            lambda: self.js.key_value(L.LEASE_BUCKET), "the lease bucket"
        )
        self.digest_kv = await L.until_answered(
            lambda: self.js.key_value(L.DIGEST_BUCKET), "the digest bucket"
        )
        await L.until_answered(self._load, "the snapshot")
        self.lease = Lease(
            self.lease_kv,
            L.lease_key(self.shard),
            cfg.node_id,
            ttl=cfg.lease_ttl,
            on_change=self._on_lease,
            eligible=self._caught_up,
        )
        status = None
        if cfg.http_port >= 0:
            status = StatusServer(self.metrics.registry, self.health)
            port = status.start(cfg.http_port)
            if cfg.status_file is not None:
                tmp = cfg.status_file.with_suffix(".tmp")
                tmp.write_text(json.dumps({"http_port": port, "pid": os.getpid()}))
                tmp.replace(cfg.status_file)
        self._follow_task = asyncio.create_task(self._follow())
        self._tasks = [
            asyncio.create_task(self.lease.run()),
            asyncio.create_task(self._publisher()),
            asyncio.create_task(self._watch_stream()),
            asyncio.create_task(self._ticker()),
        ]
        logger.info(
            "engine shard %d node %s at message %d", self.shard, cfg.node_id, self.applied_seq
        )
        # what start-up made lives as long as the process: out of the cyclic GC's reach, so
        # its full collections under load scan only what came after (as `pyexchange serve`)
        gc.collect()
        gc.freeze()
        try:
            await self._stopping.wait()
        finally:
            for task in [*self._tasks, self._follow_task]:
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lease.release(), 2)
            with contextlib.suppress(Exception):
                await self.nc.close()
            if status is not None:
                status.stop()

    def stop(self) -> None:
        self._stopping.set()

    @property
    def applied_seq(self) -> int:
        return self.state.stream_seq if self.state is not None else 0

    def _caught_up(self) -> bool:
        """A replica may take over only once it has applied what the event log has (read at
        least once: a replica just restarted from an old snapshot must not lead from
        ``published = 0`` while it still has the log since its snapshot to apply)."""
        return self.state is not None and self.published_read and self.applied_seq >= self.published

    def health(self) -> tuple[bool, dict[str, Any]]:
        ok = self.state is not None and not self.nc.is_closed and self.nc.is_connected
        return ok, {
            "kind": "engine",
            "shard": self.shard,
            "node": self.config.node_id,
            "pid": os.getpid(),
            "leader": self.leader,
            "applied": self.applied_seq,
            "published": self.published,
            "stream_last": self.stream_last,
            "lag": max(0, self.stream_last - self.applied_seq),
            "digest_seq": self.digest_seq,
            "digest": self.digest,
            "outgoing": len(self.state.outgoing) if self.state is not None else 0,
            "quiet_seq": self.quiet_seq,
            "quiet_digest": self.quiet_digest,
            "connected": self.nc.is_connected,
        }

    # ----------------------------------------------------------- snapshot in

    async def _load(self) -> None:
        """The newest snapshot, or an empty engine; clears the ring."""
        state = await snapshots.load(self.js, self.shard)
        if state is None:
            state = ShardState(self.shard, self.layout.shards, self.layout.engine.build())
        self.state = state
        self.ring.clear()
        logger.info("shard %d: starting from message %d", self.shard, state.stream_seq)

    # --------------------------------------------------------------- follow

    async def _follow(self) -> None:
        """Apply the command log in order, from the message after the state's, for ever.

        nats-py re-creates the ordered consumer by itself after a gap or a lost
        server; anything else (the subscription itself refused while the stream
        elects a leader) subscribes again from where the state is.
        """
        while True:
            assert self.state is not None
            try:
                sub = await self.js.subscribe(
                    L.command_subject(self.shard),
                    ordered_consumer=True,
                    idle_heartbeat=0.5,
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                    config=nats.js.api.ConsumerConfig(opt_start_seq=self.state.stream_seq + 1),
                    pending_msgs_limit=100_000,
                    pending_bytes_limit=512 << 20,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.info("shard %d: subscribing to the command log: %r", self.shard, exc)
                await asyncio.sleep(0.2)
                continue
            try:
                while True:
                    msg = await sub.next_msg(timeout=None)
                    seq = msg.metadata.sequence.stream
                    if seq <= self.state.stream_seq:
                        continue  # a redelivery after the consumer was re-created
                    self._apply(seq, msg.headers or {}, msg.data)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("shard %d: following the command log: %r", self.shard, exc)
                await asyncio.sleep(0.2)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    def _apply(self, seq: int, headers: dict[str, str], body: bytes) -> None:
        state = self.state
        assert state is not None
        applied = state.apply(seq, headers.get(L.KIND, BATCH), body)
        self.ring[seq] = (L.encode_events(applied.counts, applied.events), applied.first_seq)
        while len(self.ring) > self.config.ring_messages:
            self.ring.popitem(last=False)
        self.metrics.applied.set(seq)
        self.metrics.commands.inc(int(applied.counts.size))
        self._last_apply = time.monotonic()
        if applied.drive is not None and self.leader:
            fault("xfer-out-applied")
            self._spawn(self._drive(applied.drive))
        if headers.get(L.KIND) == XFER_IN and applied.events.size:
            fault("xfer-in-applied")
        if seq % self.config.snapshot_every == 0:
            self._snapshot_point(seq)
        self._wake.set()

    # -------------------------------------------------------------- publish

    def _on_lease(self, leader: bool) -> None:
        self.leader = leader
        self.metrics.leader.set(1 if leader else 0)
        if leader:
            self.metrics.takeovers.inc()
            self._takeover = True
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._publish_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no quorum, a timeout: find the log's end and go on
                logger.warning("shard %d: publishing: %r", self.shard, exc)
                self._takeover = True  # re-read the event log's end before the next try
                await asyncio.sleep(0.1)
                self._wake.set()

    async def _publish_pending(self) -> None:
        if self.leader and self._takeover:
            self._takeover = False
            await self._resync()
            assert self.state is not None
            for transfer in list(self.state.outgoing.values()):
                self._spawn(self._drive(transfer))
        while self.leader and self.state is not None and self.published < self.state.stream_seq:
            start = self.published + 1
            if start not in self.ring:  # far behind the old leader: rebuild from a snapshot
                logger.warning("shard %d: events of %d not at hand, reloading", self.shard, start)
                await self._restart_from_snapshot()
                return
            end = min(self.state.stream_seq, start + self.config.publish_window - 1)
            futures = []
            for n in range(start, end + 1):
                body, first_seq = self.ring[n]
                futures.append(
                    await self.js.publish_async(
                        L.event_subject(self.shard),
                        body,
                        headers={
                            L.EXPECTED_LAST_SEQ: str(n - 1),
                            L.MSG_ID: f"evt-{self.shard}-{n}",
                            L.COMMAND_SEQ: str(n),
                            L.FIRST_SEQ: str(first_seq),
                        },
                    )
                )
            for n, future in zip(range(start, end + 1), futures, strict=True):
                try:
                    ack = await asyncio.wait_for(future, self.config.publish_timeout)
                except APIError as exc:
                    if exc.err_code != WRONG_LAST_SEQUENCE:
                        raise
                    self.metrics.resyncs.inc()
                    for rest in futures:
                        rest.cancel()
                    await self._resync()
                    break
                self.published = max(self.published, ack.seq)
                self.metrics.published.set(self.published)
                if ack.seq != n:
                    logger.error("shard %d: event %d stored as %d", self.shard, n, ack.seq)

    async def _resync(self) -> None:
        """Take the event log's end as published; check the last message there is ours."""
        info = await self.js.stream_info(L.event_stream(self.shard))
        last = int(info.state.last_seq)
        if last > self.published and last in self.ring:
            stored = await self.js.get_msg(L.event_stream(self.shard), last)
            if stored.data != self.ring[last][0]:
                self.metrics.mismatches.inc()
                logger.error(
                    "shard %d: event message %d differs from this replica's result",
                    self.shard,
                    last,
                )
        self.published = max(self.published, last)
        self.metrics.published.set(self.published)

    async def _restart_from_snapshot(self) -> None:
        if self._follow_task is not None:
            self._follow_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follow_task
        await self._load()
        self._follow_task = asyncio.create_task(self._follow())

    # ------------------------------------------------------------ transfers

    async def _drive(self, transfer: Transfer) -> None:
        """Steps 2 and 3 of a transfer (``transfers.py``), retried until its xfer-done is here.

        The credit is stored in the destination's log; the destination's answer
        to it (its event message of the same number) decides the outcome, which
        the xfer-done carries into this shard's log. Every publish is
        deduplicated where it lands, so a new leader simply does it all again.
        """
        delay = 0.05
        while self.leader and self.state is not None and transfer.key in self.state.outgoing:
            try:
                ack = await self.js.publish(
                    L.command_subject(transfer.destination),
                    transfer.encode(),
                    headers={L.KIND: XFER_IN, L.MSG_ID: transfer.msg_id(XFER_IN)},
                )
                fault("xfer-in-stored")
                answer = await self._event_message(transfer.destination, int(ack.seq))
                outcome = credit_outcome(L.decode_events(answer)[1], transfer)
                await self.js.publish(
                    L.command_subject(self.shard),
                    transfer.done(outcome).encode(),
                    headers={L.KIND: XFER_DONE, L.MSG_ID: transfer.msg_id(XFER_DONE)},
                )
                fault("xfer-done-stored")
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("shard %d: transfer %s: %r", self.shard, transfer.key, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _event_message(self, shard: int, seq: int) -> bytes:
        """Event message ``seq`` of ``shard``, once its active engine has published it."""
        while True:
            try:
                return (await self.js.get_msg(L.event_stream(shard), seq)).data or b""
            except NotFoundError:
                if not self.leader:
                    raise RuntimeError("no longer the leader") from None
                await asyncio.sleep(0.02)

    # ------------------------------------------------------- snapshot points

    def _snapshot_point(self, seq: int) -> None:
        assert self.state is not None
        self.digest_seq, self.digest = seq, self.state.digest()
        self._spawn(self._compare_digest(seq, self.digest))
        if self.leader:
            self._spawn(self._write_snapshot(seq, self.state.encode()))

    async def _compare_digest(self, seq: int, digest: str) -> None:
        value = json.dumps({"seq": seq, "digest": digest}).encode()
        await self.digest_kv.put(f"shard-{self.shard}.{self.config.node_id}", value)
        try:
            keys = await self.digest_kv.keys()
        except NotFoundError:
            return
        for key in keys:
            if not key.startswith(f"shard-{self.shard}.") or key.endswith(
                f".{self.config.node_id}"
            ):
                continue
            entry = await self.digest_kv.get(key)
            other = json.loads(entry.value or b"{}")
            if other.get("seq") == seq and other.get("digest") != digest:
                self.metrics.mismatches.inc()
                logger.error(
                    "shard %d: digest at message %d is %s here, %s on %s",
                    self.shard,
                    seq,
                    digest,
                    other.get("digest"),
                    key.split(".", 1)[1],
                )

    async def _write_snapshot(self, seq: int, data: bytes) -> None:
        deadline = time.monotonic() + 30
        while self.published < seq:  # never ahead of the event log
            if time.monotonic() > deadline or not self.leader:
                return
            await asyncio.sleep(0.01)
        await snapshots.save(self.js, self.shard, seq, data)
        self.metrics.snapshots.inc()
        logger.info("shard %d: snapshot at message %d (%d bytes)", self.shard, seq, len(data))

    # ----------------------------------------------------------------- misc

    async def _watch_stream(self) -> None:
        """The command log's end, for the lag metric and for catching up before a takeover."""
        while True:
            with contextlib.suppress(Exception):
                info = await self.js.stream_info(L.command_stream(self.shard))
                self.stream_last = int(info.state.last_seq)
                self.metrics.stream_last.set(self.stream_last)
                self.metrics.lag.set(max(0, self.stream_last - self.applied_seq))
                if not self.leader:
                    events = await self.js.stream_info(L.event_stream(self.shard))
                    self.published = max(self.published, int(events.state.last_seq))
                    self.published_read = True
                    self.metrics.published.set(self.published)
            await asyncio.sleep(0.5)

    async def _ticker(self) -> None:
        tick = np.zeros(1, dtype=COMMAND_DTYPE)
        tick["type"] = CommandType.ADVANCE_TIME
        while True:
            await asyncio.sleep(0.1)
            idle = time.monotonic() - self._last_apply
            if self.state is None or idle < QUIET_S:
                continue
            if self.quiet_seq != self.state.stream_seq:  # quiet: the digest where it stands
                self.quiet_seq, self.quiet_digest = self.state.stream_seq, self.state.digest()
            due = self.state.next_expiry
            now = time.time_ns()
            if not self.leader or due is None or due > now or due <= self.state.engine.now:
                continue
            tick["time"] = now
            with contextlib.suppress(Exception):
                await self.js.publish(
                    L.command_subject(self.shard),
                    tick.tobytes(),
                    headers={L.MSG_ID: f"tick-{self.shard}-{self.state.stream_seq}"},
                )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._snapshot_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning("shard %d: %r", self.shard, task.exception())


def parse_args(argv: list[str] | None = None) -> NodeConfig:
    p = argparse.ArgumentParser(prog="python -m pyexchange.cluster.node", description=__doc__)
    p.add_argument("--shard", type=int, required=True)
    p.add_argument("--node-id", required=True, help="unique among the shard's replicas")
    p.add_argument("--nats", required=True, help="comma-separated NATS server URLs")
    p.add_argument("--snapshot-every", type=int, default=10_000, help="command messages")
    p.add_argument("--lease-ttl", type=float, default=1.0, help="seconds")
    p.add_argument("--http-port", type=int, default=-1, help="health and metrics (0: free)")
    p.add_argument("--status-file", type=Path, help="write {http_port, pid} here once serving")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format='{"time": "%(asctime)s", "level": "%(levelname)s", "logger": "%(name)s", '
        '"message": "%(message)s"}',
    )
    return NodeConfig(
        shard=args.shard,
        node_id=args.node_id,
        servers=args.nats.split(","),
        snapshot_every=args.snapshot_every,
        lease_ttl=args.lease_ttl,
        http_port=args.http_port,
        status_file=args.status_file,
    )


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)

    async def run() -> None:
        node = EngineNode(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, node.stop)
        await node.run()

    try:  # uvloop, as the gateways: a cheaper event loop for the NATS client
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


if __name__ == "__main__":
    main()
