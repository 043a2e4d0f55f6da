"""Batch order entry: ``OrderEntryBatch.OrderBatchStream`` (api/batch.proto), a thin adapter.

The same requests as the ``OrderStream`` (``OrderStreamRequest``), several per
message. Each request of a batch is checked exactly as on the stream (a
rate-limit token, the key's account, the conversion of its values); one that
fails is answered with ``error`` (``"STATUS: message"``) and the others go on.
The requests that pass are queued for the engine as one submission, in the
order of the batch (``OrderEntry.submit``), and the batch is answered with one
``OrderBatchReply`` once all of them are journaled and applied: one
``OrderStreamReply`` per request, in request order, built from the batch's
event array in one pass.

Why: in Python most of the cost of a stream message is gRPC's per-message work
(reading it, the asyncio wake-ups, writing the reply), about ten times the
exchange's own conversion and reply code. A batch pays it once for many
orders, and its commands reach the sequencer as one submission.

Batches are pipelined like the stream's requests (``service.pipeline``,
counted by request): at most ``window`` requests read and not yet answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from ...service.auth import TRADE
from ...service.orders import OrderEntry, OrderReply
from ...service.pipeline import pipeline
from . import batch_pb2 as bpb
from . import batch_pb2_grpc as bpb_grpc
from .auth import GrpcAuth
from .order_entry import DEFAULT_WINDOW, fill_reply, fill_stream_reply, stream_request_of

__all__ = ["OrderBatchService", "add_to_server"]


class OrderBatchService(bpb_grpc.OrderEntryBatchServicer):
    """OrderEntryBatch: the order stream with many requests per message."""

    def __init__(self, entry: OrderEntry, auth: GrpcAuth, *, window: int = DEFAULT_WINDOW) -> None:
        self.entry = entry
        self.auth = auth
        self.window = window

    async def OrderBatchStream(
        self,
        request_iterator: AsyncIterator[bpb.OrderBatch],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[bpb.OrderBatchReply]:
        """Batches are pipelined: each is queued as it arrives and answered, in order,
        when all its commands have run. A malformed frame ends the stream."""
        key = await self.auth.authenticate(context, None, TRADE)
        entry, auth = self.entry, self.auth

        def submit(message: bpb.OrderBatch, done: Callable[[Any], None]) -> int:
            ids: list[int] = []
            converted: list[Any] = []
            keep, convert = ids.append, converted.append
            for r in message.requests:  # one pass: each element wrapped once
                keep(r.correlation_id)
                convert(stream_request_of(r))

            def answered(results: list[Any]) -> None:
                reply = bpb.OrderBatchReply()
                add = reply.replies.add  # built in place: no copy per reply
                for c, result in zip(ids, results, strict=True):
                    if type(result) is OrderReply:  # the usual case, without the refusal's check
                        fill_reply(add(correlation_id=c).reply, result)
                    else:
                        fill_stream_reply(add(), c, result, auth)
                done(reply)

            entry.submit(key, converted, answered)
            return len(ids)

        async for reply in pipeline(request_iterator, submit, self.window):
            yield reply


def add_to_server(entry: OrderEntry, auth: GrpcAuth, server: Any, **options: Any) -> None:
    """Register ``OrderEntryBatch`` on a gRPC server (or the server's registrar)."""
    bpb_grpc.add_OrderEntryBatchServicer_to_server(
        OrderBatchService(entry, auth, **options), server
    )
