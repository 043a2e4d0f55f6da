"""Shard snapshots in JetStream's object store, each under its own name, found by a KV pointer.

The active replica of a shard writes ``ShardState.encode()`` every
``snapshot_every`` messages as the object ``shard-<s>-<stream seq>`` of the
bucket ``pyx_snapshots``, then points ``snapshot.<s>`` in KV ``pyx_cluster``
at it (``{"name", "seq", "previous"}``), then deletes the snapshot before the
previous one. Objects are never overwritten: a replica or a gateway reading a
snapshot while a newer one is written reads a whole object (overwriting one
in place purges its chunks under a reader, which then waits forever). A read
that fails anyway (its object deleted two snapshots later, a timeout) is
retried from the pointer; with no usable snapshot a replica starts from an
empty engine and replays the whole log, which is never trimmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError, ObjectNotFoundError

from . import log as L
from .shard import ShardState

logger = logging.getLogger(__name__)

READ_TIMEOUT_S = 15.0


def pointer_key(shard: int) -> str:
    return f"snapshot.{shard}"


async def _pointer(js: JetStreamContext, shard: int) -> dict[str, Any] | None:
    kv = await js.key_value(L.CLUSTER_BUCKET)
    try:
        entry = await kv.get(pointer_key(shard))
    except (KeyNotFoundError, NotFoundError):
        return None
    return json.loads(entry.value or b"null")


async def load(js: JetStreamContext, shard: int, *, tries: int = 3) -> ShardState | None:
    """The shard's newest snapshot, or None if it has none (or none could be read)."""
    store = await js.object_store(L.SNAPSHOT_BUCKET)
    for attempt in range(tries):
        pointer = await _pointer(js, shard)
        if pointer is None:
            return None
        name = str(pointer["name"])
        try:
            found = await asyncio.wait_for(store.get(name), READ_TIMEOUT_S)
            state = ShardState.decode(found.data or b"")
        except (ObjectNotFoundError, NotFoundError, TimeoutError, ValueError) as exc:
            logger.warning("shard %d: snapshot %s not read (%r), try %d", shard, name, exc, attempt)
            continue
        if state.shard != shard:
            raise ValueError(f"snapshot {name} is of shard {state.shard}")
        return state
    return None


async def save(js: JetStreamContext, shard: int, seq: int, data: bytes) -> str:
    """Store a snapshot at command message ``seq``, point at it, drop the one before last."""
    store = await js.object_store(L.SNAPSHOT_BUCKET)
    name = f"{L.snapshot_name(shard)}-{seq:012d}"
    await store.put(name, data)
    pointer = await _pointer(js, shard)
    previous = str(pointer["name"]) if pointer else ""
    older = str(pointer.get("previous", "")) if pointer else ""
    if pointer is not None and int(pointer["seq"]) >= seq:  # a newer one is there already
        await store.delete(name)
        return previous
    kv = await js.key_value(L.CLUSTER_BUCKET)
    await kv.put(
        pointer_key(shard), json.dumps({"name": name, "seq": seq, "previous": previous}).encode()
    )
    if older and older != name:
        with contextlib.suppress(ObjectNotFoundError, NotFoundError):
            await store.delete(older)
    return name
