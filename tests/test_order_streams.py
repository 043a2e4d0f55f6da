"""What a new user tripped on in the order path (issue 11 §3), through a real server and channel.

- a stream (OrderStream, OrderBatchStream) answers every request it read, a reply
  or an error, and never ends OK with one unanswered;
- a client that sends and never reads its replies is held back (flow control):
  the server reads at most about ``stream_window`` requests ahead, then all are
  answered once the client reads;
- CancelAll with the "all markets" sentinel as a market is UNKNOWN_MARKET; only an
  absent market means all;
- hostile decimal strings are refused at the edge: INVALID_ARGUMENT, quoted short,
  nothing journaled.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
from service_support import Harness, LoopThread, start_harness, status_of, wait_until

from matchcore import ALL_MARKETS
from pyexchange.api.grpc import batch_pb2 as bpb
from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient

STREAM = "/pyexchange.v1.OrderEntry/OrderStream"
BATCH = "/pyexchange.v1.OrderEntryBatch/OrderBatchStream"


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def h(loop: LoopThread, tmp_path: Path):
    harness = start_harness(loop, tmp_path / "data", stream_window=64)
    yield harness
    harness.close()


def place(cid: int, price: str = "0.40", quantity: str = "1", **kw: Any) -> pb.OrderStreamRequest:
    request = ExchangeClient.place_request(1, 1, "BUY_YES", price, quantity, **kw)
    return pb.OrderStreamRequest(correlation_id=cid, place=request)


def raw_stream(client: ExchangeClient, method: str, reply: Any) -> Any:
    """A stream call that writes bytes as given (to send a frame no client would)."""
    call = client.channel.stream_stream(method, response_deserializer=reply.FromString)
    return call(metadata=client.sign(method, None))


async def state(h: Harness) -> tuple[str, int]:
    """(engine digest, next journal seq), read from the loop (``Harness.state`` blocks it)."""
    sequencer = h.server.exchange.sequencer  # type: ignore[union-attr]
    return await h.server.query(lambda engine: (engine.digest(), sequencer.next_seq))


async def replies_of(call: Any) -> tuple[list[Any], grpc.StatusCode, str]:
    replies = []
    try:
        async for reply in call:
            replies.append(reply)
    except grpc.aio.AioRpcError as exc:
        return replies, exc.code(), exc.details() or ""
    return replies, await call.code(), ""


def test_the_stream_answers_a_refused_request_and_the_next(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        call = raw_stream(t1, STREAM, pb.OrderStreamReply)
        await call.write(place(1, quantity="1e999999").SerializeToString())
        await call.write(place(2).SerializeToString())
        await call.done_writing()
        replies, code, _ = await replies_of(call)
        assert code == grpc.StatusCode.OK
        assert [r.correlation_id for r in replies] == [1, 2]
        assert replies[0].error.startswith("INVALID_ARGUMENT: quantity")
        assert replies[1].reply.status == pb.RESTING

        call = raw_stream(t1, BATCH, bpb.OrderBatchReply)
        batch = bpb.OrderBatch(requests=[place(3, quantity="1e999999"), place(4)])
        await call.write(batch.SerializeToString())
        await call.write(bpb.OrderBatch(requests=[place(5, price="0.41")]).SerializeToString())
        await call.done_writing()
        replies, code, _ = await replies_of(call)
        assert code == grpc.StatusCode.OK
        answered = [r for message in replies for r in message.replies]
        assert [r.correlation_id for r in answered] == [3, 4, 5]
        assert answered[0].error.startswith("INVALID_ARGUMENT") and answered[1].reply.order_id

    h.run(scenario())


@pytest.mark.parametrize("method", [STREAM, BATCH])
def test_a_malformed_frame_ends_the_stream_after_answering_what_came_before(
    h: Harness, method: str
) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        if method == STREAM:
            call = raw_stream(t1, STREAM, pb.OrderStreamReply)
            frames = [place(1).SerializeToString(), place(2).SerializeToString()]
        else:
            call = raw_stream(t1, BATCH, bpb.OrderBatchReply)
            frames = [bpb.OrderBatch(requests=[place(1), place(2)]).SerializeToString()]
        for frame in frames:
            await call.write(frame)
        await call.write(b"\x12\x05ab")  # a 5-byte field with 2 bytes
        replies, code, details = await replies_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed message" in details
        if method == BATCH:
            replies = [r for message in replies for r in message.replies]
        assert [(r.correlation_id, r.reply.status) for r in replies] == [
            (1, pb.RESTING),
            (2, pb.RESTING),
        ]

    h.run(scenario())


@pytest.mark.parametrize("method", [STREAM, BATCH])
def test_a_client_that_does_not_read_is_held_back_then_answered(h: Harness, method: str) -> None:
    """Window 64: the server stops reading a client that does not read its replies. The
    client keeps HTTP/2's initial 64 KiB receive window (no BDP probing), so its transport
    takes a bounded number of replies before the server's writes wait."""
    key = h.key("trader-1")
    sent = 10_000
    sequencer = h.server.exchange.sequencer  # type: ignore[union-attr]

    def request(i: int) -> pb.OrderStreamRequest:  # a cheap command: an engine reject
        return pb.OrderStreamRequest(
            correlation_id=i + 1, cancel=pb.CancelOrderRequest(account=1, order_id=10**9 + i)
        )

    async def scenario() -> None:
        options = [("grpc.http2.bdp_probe", 0)]
        t1 = ExchangeClient(h.target, key.key_id, key.secret, options=options)
        h.clients.append(t1)
        if method == STREAM:
            call = raw_stream(t1, STREAM, pb.OrderStreamReply)
            frames = [request(i).SerializeToString() for i in range(sent)]
        else:
            call = raw_stream(t1, BATCH, bpb.OrderBatchReply)
            frames = [
                bpb.OrderBatch(requests=[request(i + j) for j in range(10)]).SerializeToString()
                for i in range(0, sent, 10)
            ]

        async def write() -> None:
            for frame in frames:
                await call.write(frame)
            await call.done_writing()

        writer = asyncio.ensure_future(write())
        start = sequencer.next_seq
        last = -1
        while sequencer.next_seq != last:  # until the server stops taking commands
            last = sequencer.next_seq
            await asyncio.sleep(0.5)
        held = sequencer.next_seq - start
        # the window and the transport's buffers (about 600 here), not what was sent: the
        # server stopped reading, HTTP/2 flow control holds the rest on the client's side
        assert 0 < held < sent // 4, held
        replies, code, _ = await replies_of(call)  # now read: everything is answered
        await writer
        assert code == grpc.StatusCode.OK
        if method == BATCH:
            replies = [r for message in replies for r in message.replies]
        assert [r.correlation_id for r in replies] == list(range(1, sent + 1))
        assert all(r.reply.reject_reason == "UNKNOWN_ORDER" for r in replies)
        await wait_until(lambda: h.server.gateway.in_flight == 0)  # type: ignore[union-attr]

    h.run(scenario(), timeout=120)


def test_cancel_all_sentinel_market_is_unknown(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        for market in (1, 2):
            await t1.place(1, market, "BUY_YES", "0.2", "1")
        before = await state(h)
        sentinel = await t1.cancel_all(1, market=ALL_MARKETS)
        assert sentinel.status == pb.REJECTED and sentinel.reject_reason == "UNKNOWN_MARKET"
        assert sentinel.canceled_count == 0 and sentinel.seq == 0
        assert await state(h) == before  # nothing journaled, nothing canceled
        async with t1.order_stream() as stream:
            on_stream = await stream.cancel_all(1, market=ALL_MARKETS)
        assert on_stream.reply.reject_reason == "UNKNOWN_MARKET"
        unknown = await t1.cancel_all(1, market=31)
        assert unknown.reject_reason == "UNKNOWN_MARKET"
        assert len((await t1.get_account(1)).orders) == 2
        everything = await t1.cancel_all(1)  # no market: all of them
        assert everything.status == pb.CANCELED and everything.canceled_count == 2

    h.run(scenario())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("price", "+0.5"),
        ("price", "\t0.5\n"),
        ("price", " 0.5"),
        ("quantity", "1e-999999999"),
        ("quantity", "+1"),
        ("quantity", "1e400000"),
        ("price", "0.500000000000000000000000000001"),
        ("price", "\u0660.\u0665"),
        ("price", "0.5_0"),
        ("price", "9" * 16_000),
    ],
)
def test_hostile_values_are_refused_at_the_edge(h: Harness, field: str, value: str) -> None:
    t1 = h.client("trader-1")
    before = h.state()
    values = {"price": "0.5", "quantity": "1", field: value}
    request = ExchangeClient.place_request(1, 1, "BUY_YES", values["price"], values["quantity"])

    async def scenario() -> None:
        code, details = await status_of(t1.place_raw(request))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert len(details) < 300 and value[:40] not in details[60:]
        async with t1.order_stream() as stream:
            reply = await stream.send(pb.OrderStreamRequest(place=request))
        assert reply.error.startswith("INVALID_ARGUMENT") and not reply.HasField("reply")

    h.run(scenario())
    assert h.state() == before  # refused before the journal
