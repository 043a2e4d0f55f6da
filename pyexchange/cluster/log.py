"""The replicated log of the cluster: streams, buckets and the wire formats on them.

Per shard ``s`` (docs/cluster.md has the why):

- ``PYX_CMD_<s>`` (subject ``pyx.cmd.<s>``): the shard's command log. R3, file
  storage, no deletes and no purges (``deny_delete``, ``deny_purge``), no
  limits: an engine may need any message from its snapshot on. A message is a
  batch of ``COMMAND_DTYPE`` records (its ``time`` stamped by the publisher
  before it enters the log) or a transfer step (``Pyx-Kind``); its
  ``Nats-Msg-Id`` deduplicates a publisher's retry within ``DUPLICATE_WINDOW_S``.
- ``PYX_EVT_<s>`` (subject ``pyx.evt.<s>``): what the shard's active engine
  computed, one message per command message, in the same order, so event
  message *n* answers command message *n*. Published with
  ``Nats-Expected-Last-Sequence: n - 1``: only one engine can ever publish
  message *n*, and a deposed leader's publish fails (the fencing).

Cluster-wide: KV ``pyx_cluster`` (``engine``: the engine capacities every
replica builds; ``shards``: the shard count; ``market.<id>``: the shard of a
market, the shard map), KV ``pyx_leases`` (``shard-<s>``: who is active),
KV ``pyx_digests`` (``shard-<s>.<node>``: each replica's digest at its last
snapshot point) and the object store ``pyx_snapshots`` (``shard-<s>``: the
newest snapshot, with its stream sequence inside).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TypeVar

import numpy as np
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, Engine

logger = logging.getLogger(__name__)
T = TypeVar("T")

REPLICAS = 3
DUPLICATE_WINDOW_S = 120.0
CLUSTER_BUCKET = "pyx_cluster"
LEASE_BUCKET = "pyx_leases"
DIGEST_BUCKET = "pyx_digests"
SNAPSHOT_BUCKET = "pyx_snapshots"

# Headers of command messages
KIND = "Pyx-Kind"  # absent or "batch": COMMAND_DTYPE records; else a transfer step
MSG_ID = "Nats-Msg-Id"
# Headers of event messages
COMMAND_SEQ = "Pyx-Command-Seq"  # the command message this answers (= its own stream seq)
FIRST_SEQ = "Pyx-First-Seq"  # the engine seq of the first command that ran
DIGEST = "Pyx-Digest"  # the replica digest, on snapshot points
EXPECTED_LAST_SEQ = "Nats-Expected-Last-Sequence"


async def until_answered(
    step: Callable[[], Awaitable[T]], what: str, timeout: float | None = None
) -> T:
    """``await step()`` until it succeeds: a cluster that is starting, electing stream
    leaders or missing a node answers with timeouts for a while. ``timeout``: give up
    (the last error) after that many seconds; None: never."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            logger.info("waiting for %s: %r", what, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)


def command_stream(shard: int) -> str:
    return f"PYX_CMD_{shard}"


def command_subject(shard: int) -> str:
    return f"pyx.cmd.{shard}"


def event_stream(shard: int) -> str:
    return f"PYX_EVT_{shard}"


def event_subject(shard: int) -> str:
    return f"pyx.evt.{shard}"


def lease_key(shard: int) -> str:
    return f"shard-{shard}"


def snapshot_name(shard: int) -> str:
    return f"shard-{shard}"


@dataclass(frozen=True)
class EngineSpec:
    """The engine every replica of every shard builds (kept in KV ``pyx_cluster/engine``)."""

    max_orders: int = 65_536
    max_markets: int = 64
    max_accounts: int = 4_096
    ledger: bool = True

    def build(self) -> Engine:
        return Engine(
            max_orders=self.max_orders,
            max_markets=self.max_markets,
            max_accounts=self.max_accounts,
            ledger=self.ledger,
        )


@dataclass(frozen=True)
class Layout:
    """What ``ensure_layout`` created and every process reads back: shards and the engine."""

    shards: int
    engine: EngineSpec


async def ensure_layout(
    js: JetStreamContext, shards: int, engine: EngineSpec | None = None, *, replicas: int = REPLICAS
) -> Layout:
    """Create the streams and buckets of a cluster, or check an existing one matches.

    Idempotent: every process may call it at start. The first caller's shard
    count and engine spec win; a later caller that asks for others gets
    ``ValueError`` (a cluster's shards are fixed once engines have run).
    """
    kv = await js.create_key_value(
        KeyValueConfig(
            bucket=CLUSTER_BUCKET, history=1, replicas=replicas, storage=StorageType.FILE
        )
    )
    wanted = Layout(shards, engine or EngineSpec())
    try:
        await kv.create("layout", json.dumps(_layout_dict(wanted)).encode())
        layout = wanted
    except KeyWrongLastSequenceError:  # the key exists
        layout = await read_layout(js)
        if layout.shards != shards or (engine is not None and layout.engine != engine):
            raise ValueError(f"the cluster is already laid out as {layout}") from None
    for shard in range(layout.shards):
        for name, subject in (
            (command_stream(shard), command_subject(shard)),
            (event_stream(shard), event_subject(shard)),
        ):
            await js.add_stream(
                StreamConfig(
                    name=name,
                    subjects=[subject],
                    num_replicas=replicas,
                    storage=StorageType.FILE,
                    retention=RetentionPolicy.LIMITS,
                    discard=DiscardPolicy.NEW,  # full: refuse new messages, never drop old ones
                    duplicate_window=DUPLICATE_WINDOW_S,
                    deny_delete=True,
                    deny_purge=True,
                    max_msg_size=8 << 20,
                )
            )
    for bucket in (LEASE_BUCKET, DIGEST_BUCKET):
        await js.create_key_value(
            KeyValueConfig(bucket=bucket, history=1, replicas=replicas, storage=StorageType.FILE)
        )
    await js.create_object_store(
        SNAPSHOT_BUCKET, config=ObjectStoreConfig(replicas=replicas, storage=StorageType.FILE)
    )
    return layout


def _layout_dict(layout: Layout) -> dict[str, object]:
    return {"shards": layout.shards, "engine": asdict(layout.engine)}


async def read_layout(js: JetStreamContext) -> Layout:
    kv = await js.key_value(CLUSTER_BUCKET)
    entry = await kv.get("layout")
    data = json.loads(entry.value or b"{}")
    return Layout(int(data["shards"]), EngineSpec(**data["engine"]))


# ------------------------------------------------------------------ shard map


async def shard_of_market(js: JetStreamContext, market: int, shards: int) -> int:
    """The shard of ``market`` from the map (``market.<id>``); unmapped: ``market % shards``.

    The map is written when a market is placed (``place_market``) and never
    changes while the market exists, so every gateway routes it the same way.
    """
    kv = await js.key_value(CLUSTER_BUCKET)
    try:
        entry = await kv.get(f"market.{market}")
    except (KeyNotFoundError, NotFoundError):
        return market % shards
    return int(entry.value or b"0")


async def place_market(js: JetStreamContext, market: int, shard: int) -> int:
    """Map ``market`` to ``shard`` unless it is mapped already; the shard it is on."""
    kv = await js.key_value(CLUSTER_BUCKET)
    try:
        await kv.create(f"market.{market}", str(shard).encode())
        return shard
    except KeyWrongLastSequenceError:
        entry = await kv.get(f"market.{market}")
        return int(entry.value or b"0")


async def market_map(js: JetStreamContext) -> dict[int, int]:
    """Every placed market and its shard."""
    kv = await js.key_value(CLUSTER_BUCKET)
    try:
        keys = await kv.keys()
    except NotFoundError:  # no keys at all
        return {}
    out = {}
    for key in keys:
        if key.startswith("market."):
            entry = await kv.get(key)
            out[int(key.split(".", 1)[1])] = int(entry.value or b"0")
    return out


# ------------------------------------------------------------ event messages

_COUNT = np.dtype("<u4")


def encode_events(counts: np.ndarray, events: np.ndarray) -> bytes:
    """An event message body: ``u32 rows``, the events of each row (``u32`` each), the events."""
    return struct.pack("<I", len(counts)) + counts.astype(_COUNT).tobytes() + events.tobytes()


def decode_events(body: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(events per command row, events) of an event message body."""
    (rows,) = struct.unpack_from("<I", body)
    counts = np.frombuffer(body, dtype=_COUNT, count=rows, offset=4)
    events = np.frombuffer(body, dtype=EVENT_DTYPE, offset=4 + 4 * rows)
    return counts, events


def split_events(counts: np.ndarray, events: np.ndarray) -> list[np.ndarray]:
    """The events of each command row."""
    bounds = np.concatenate(([0], np.cumsum(counts, dtype=np.int64)))
    return [events[bounds[i] : bounds[i + 1]] for i in range(len(counts))]


def decode_commands(body: bytes) -> np.ndarray:
    if len(body) % COMMAND_DTYPE.itemsize:
        raise ValueError(f"a command batch of {len(body)} bytes is not whole records")
    return np.frombuffer(body, dtype=COMMAND_DTYPE).copy()
