"""Batch order entry: ``OrderEntryBatch.OrderBatchStream`` (api/batch.proto).

The same requests as the ``OrderStream`` (``OrderStreamRequest``), several per
message. Each request of a batch is checked exactly as on the stream: a
rate-limit token, the key's account, the conversion of its values; one that
fails is answered with ``error`` (``"STATUS: message"``) and the others go on.
The commands that pass are queued for the engine in the order of the batch,
and the batch is answered with one ``OrderBatchReply`` once all of them are
journaled and applied: one ``OrderStreamReply`` per request, in request order.

Why: in Python most of the cost of a stream message is gRPC's per-message work
(reading it, the asyncio wake-ups, writing the reply), about ten times the
exchange's own conversion and reply code. A batch pays it once for many
orders, and its commands reach the sequencer as a few submissions instead of
one each (fewer futures, fewer wake-ups of the loop).

Submissions. A run of consecutive commands that each produce at least one
event of their own seq (new orders without a client order id, cancels,
cancels by client id, replaces) is one submission, whose events are split back
per command by seq. A command whose events may not be its own (a new order
with a client order id can be answered from the idempotency table with the
first order's events) or may be none (a cancel-all that cancels nothing) is a
submission of its own. Submissions go to the sequencer in batch order, and
the sequencer is FIFO, so the engine runs the commands in the order given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import numpy as np

from matchcore import CommandType

from ...engine.sequencer import SequencerStopped
from ...service.auth import TRADE
from ...service.errors import ServiceError
from . import batch_pb2 as bpb
from . import batch_pb2_grpc as bpb_grpc
from . import exchange_pb2 as pb
from .errors import abort, error_text
from .order_entry import CommandGateway, OrderEntryService, order_reply

__all__ = ["OrderBatchService", "add_to_server", "split_events"]

# commands that always produce at least one event, all stamped with their own seq
_SPLITTABLE = frozenset({CommandType.CANCEL, CommandType.CANCEL_CLIENT, CommandType.REPLACE})


def _splittable(command: np.ndarray) -> bool:
    row = command[0]
    kind = int(row["type"])
    if kind == CommandType.NEW_ORDER:
        return int(row["client_order_id"]) == 0
    return kind in _SPLITTABLE


def split_events(events: np.ndarray, count: int) -> list[np.ndarray] | None:
    """The events of ``count`` consecutive commands, one array per command, split where
    the seq changes; None if they do not make exactly ``count`` runs of seqs."""
    if count == 1:
        return [events]
    if not len(events):
        return None
    seqs = events["seq"]
    starts = np.flatnonzero(seqs[1:] != seqs[:-1]) + 1
    if len(starts) != count - 1:
        return None
    return np.split(events, starts)


class _Batch:
    """One message's replies, filled as its submissions are answered."""

    __slots__ = ("correlation_ids", "left", "replies")

    def __init__(self, correlation_ids: list[int]) -> None:
        self.correlation_ids = correlation_ids
        self.replies: list[pb.OrderStreamReply | None] = [None] * len(correlation_ids)
        self.left = 0

    def error(self, index: int, text: str) -> None:
        self.replies[index] = pb.OrderStreamReply(
            correlation_id=self.correlation_ids[index], error=text
        )

    def answer(self, index: int, command: np.ndarray, events: np.ndarray) -> None:
        self.replies[index] = pb.OrderStreamReply(
            correlation_id=self.correlation_ids[index], reply=order_reply(command, events)
        )

    def message(self) -> bpb.OrderBatchReply:
        return bpb.OrderBatchReply(replies=self.replies)


class OrderBatchService(bpb_grpc.OrderEntryBatchServicer):
    """OrderEntryBatch: the order stream with many requests per message."""

    def __init__(self, gateway: CommandGateway) -> None:
        self.gateway = gateway
        self.auth = gateway.auth
        self.entry = OrderEntryService(gateway)  # its per-request checks and conversions

    def _settle(
        self,
        batch: _Batch,
        rows: list[int],
        commands: list[np.ndarray],
        future: asyncio.Future[np.ndarray],
    ) -> None:
        if future.cancelled():
            for i in rows:
                batch.error(i, "CANCELLED: the request was cancelled")
            return
        exc = future.exception()
        if exc is not None:
            text = (
                f"UNAVAILABLE: the exchange stopped: {exc}"
                if isinstance(exc, SequencerStopped)
                else "INTERNAL: internal error"
            )
            for i in rows:
                batch.error(i, text)
            return
        parts = split_events(future.result(), len(rows))
        if parts is None:  # not expected: every command here has events of its own seq
            for i in rows:
                batch.error(i, "INTERNAL: the engine's answer could not be split per command")
            return
        for i, command, events in zip(rows, commands, parts, strict=True):
            batch.answer(i, command, events)

    def _submit(
        self,
        batch: _Batch,
        rows: list[int],
        commands: list[np.ndarray],
        done: Any,
    ) -> None:
        """Queue one submission now; ``done()`` when it is answered (or at once if refused)."""
        try:
            future = self.gateway.submit(
                commands[0] if len(commands) == 1 else np.concatenate(commands), "batch"
            )
        except ServiceError as exc:
            self.auth.refused(exc)
            for i in rows:
                batch.error(i, error_text(exc))
            return
        batch.left += 1

        def settled(f: asyncio.Future[np.ndarray]) -> None:
            self._settle(batch, rows, commands, f)
            batch.left -= 1
            done()

        future.add_done_callback(settled)

    def _queue(self, key: Any, message: bpb.OrderBatch, done: Any) -> _Batch:
        """Check and convert every request of a batch and queue its submissions in order."""
        requests = message.requests
        batch = _Batch([r.correlation_id for r in requests])
        rows: list[int] = []
        commands: list[np.ndarray] = []
        for i, request in enumerate(requests):
            try:
                self.auth.try_acquire(key)
                command, _label = self.entry._stream_command(key, request)
            except ServiceError as exc:
                self.auth.refused(exc)
                batch.error(i, error_text(exc))
                continue
            if _splittable(command):
                rows.append(i)
                commands.append(command)
                continue
            if commands:  # the run before it goes first
                self._submit(batch, rows, commands, done)
                rows, commands = [], []
            self._submit(batch, [i], [command], done)
        if commands:
            self._submit(batch, rows, commands, done)
        return batch

    async def OrderBatchStream(
        self,
        request_iterator: AsyncIterator[bpb.OrderBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bpb.OrderBatchReply]:
        """Batches are pipelined: each is queued as it arrives and answered, in order,
        when all its commands have run. A malformed frame ends the stream."""
        key = await self.auth.authenticate(context, None, TRADE)
        ready: asyncio.Queue[Any] = asyncio.Queue()
        order: list[_Batch] = []  # batches not yet sent, in arrival order
        state = {"reading": True}
        end = object()

        def flush() -> None:
            while order and order[0].left == 0:
                ready.put_nowait(order.pop(0).message())
            if not state["reading"] and not order:
                ready.put_nowait(end)

        async def read() -> None:
            try:
                async for message in request_iterator:
                    batch = self._queue(key, message, flush)
                    order.append(batch)
                    flush()
            except ServiceError as exc:  # a malformed message: the stream cannot go on
                ready.put_nowait(exc)
            finally:
                state["reading"] = False
                flush()

        reader = asyncio.create_task(read())
        try:
            while True:
                item = await ready.get()
                if item is end:
                    break
                if isinstance(item, ServiceError):
                    await abort(context, item)
                yield item
        finally:
            reader.cancel()


def add_to_server(gateway: CommandGateway, server: Any) -> None:
    """Register ``OrderEntryBatch`` on a gRPC server (or the server's registrar)."""
    bpb_grpc.add_OrderEntryBatchServicer_to_server(OrderBatchService(gateway), server)
