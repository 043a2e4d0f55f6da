"""OrderEntryBatch (pyexchange/api/grpc/batch.py): several order-entry requests per stream message.

A real server on a free loopback port with the demo set-up (see
test_service_e2e.py): markets 1..3, accounts 1..4, keys trader-N. Each batch is
answered by one message with one reply per request, in request order; requests
are checked as on the OrderStream and run in the order given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest
from service_support import Harness, LoopThread, start_harness

from pyexchange.api.grpc import batch_pb2 as bpb
from pyexchange.api.grpc import batch_pb2_grpc as bpb_grpc
from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient

METHOD = "/pyexchange.v1.OrderEntryBatch/OrderBatchStream"


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def h(loop: LoopThread, tmp_path: Path):
    harness = start_harness(loop, tmp_path / "data")
    yield harness
    harness.close()


def place(cid: int, account: int, intent: str, price: str, qty: str, **kw: Any) -> Any:
    request = ExchangeClient.place_request(account, 1, intent, price, qty, **kw)
    return pb.OrderStreamRequest(correlation_id=cid, place=request)


def cancel(cid: int, account: int, order_id: int) -> Any:
    request = pb.CancelOrderRequest(account=account, order_id=order_id)
    return pb.OrderStreamRequest(correlation_id=cid, cancel=request)


async def exchange_batches(client: ExchangeClient, batches: list[list[Any]]) -> list[list[Any]]:
    """Send every batch on one stream (pipelined), then read one reply message each."""
    stub = bpb_grpc.OrderEntryBatchStub(client.channel)
    call = stub.OrderBatchStream(metadata=client.sign(METHOD, None))
    for requests in batches:
        await call.write(bpb.OrderBatch(requests=requests))
    await call.done_writing()
    return [list(message.replies) async for message in call]


def test_batch_answers_each_request_in_order(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        first = [
            place(11, 1, "BUY_YES", "0.40", "10"),
            place(12, 1, "SELL_YES", "0.60", "5"),
            place(13, 1, "BUY_YES", "0.405", "1"),  # off the tick: never reaches the engine
            cancel(14, 1, 999_999),  # engine reject
        ]
        (replies,) = await exchange_batches(t1, [first])
        assert [r.correlation_id for r in replies] == [11, 12, 13, 14]
        bid, ask, bad, unknown = replies
        assert bid.reply.status == pb.RESTING and bid.reply.leaves_quantity == "10"
        assert ask.reply.status == pb.RESTING and ask.reply.order_id == bid.reply.order_id + 1
        assert bad.error.startswith("INVALID_ARGUMENT") and not bad.HasField("reply")
        assert unknown.reply.status == pb.REJECTED
        assert unknown.reply.reject_reason == "UNKNOWN_ORDER"
        assert ask.reply.seq == bid.reply.seq + 1 and unknown.reply.seq == ask.reply.seq + 1

        replace = pb.ReplaceOrderRequest(account=1, order_id=bid.reply.order_id, price="0.41")
        second = [
            pb.OrderStreamRequest(correlation_id=21, replace=replace),
            cancel(22, 1, ask.reply.order_id),
            pb.OrderStreamRequest(correlation_id=23, cancel_all=pb.CancelAllRequest(account=1)),
        ]
        third = [place(31, 1, "BUY_YES", "0.30", "1")]
        moved, canceled, everything = (await exchange_batches(t1, [second]))[0]
        assert moved.reply.status == pb.RESTING and moved.reply.order_id == bid.reply.order_id
        assert canceled.reply.status == pb.CANCELED
        assert canceled.reply.order_id == ask.reply.order_id
        assert everything.reply.status == pb.CANCELED and everything.reply.canceled_count == 1
        state = await t1.get_account(1)
        assert not state.orders
        # pipelined batches come back in order, one message each
        answers = await exchange_batches(t1, [third, [], third])
        assert [len(a) for a in answers] == [1, 0, 1]
        assert answers[0][0].reply.status == pb.RESTING
        assert answers[2][0].reply.order_id == answers[0][0].reply.order_id + 1

    h.run(scenario())


def test_batch_keeps_the_order_of_its_requests(h: Harness) -> None:
    """A place with a client order id, its repeat and a cancel by that id, in one batch."""
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        (resting,) = (await exchange_batches(t2, [[place(1, 2, "SELL_YES", "0.55", "3")]]))[0]
        assert resting.reply.status == pb.RESTING
        by_id = pb.CancelByClientIdRequest(account=1, client_order_id=77)
        batch = [
            place(1, 1, "BUY_YES", "0.50", "4", client_order_id=77),
            place(2, 1, "BUY_YES", "0.50", "4", client_order_id=77),  # a repeat: first result
            pb.OrderStreamRequest(correlation_id=3, cancel_by_client_id=by_id),
            place(4, 1, "BUY_YES", "0.56", "2", time_in_force="IOC"),  # trades with account 2
            place(5, 1, "BUY_YES", "0.56", "5", time_in_force="IOC"),  # 1 left, rest canceled
        ]
        (replies,) = await exchange_batches(t1, [batch])
        first, repeat, canceled, taker, partial = (r.reply for r in replies)
        assert first.status == pb.RESTING
        assert (repeat.order_id, repeat.seq) == (first.order_id, first.seq)
        assert canceled.status == pb.CANCELED and canceled.order_id == first.order_id
        assert taker.status == pb.FILLED and taker.fills[0].quantity == "2"
        assert taker.fills[0].maker_order_id == resting.reply.order_id
        assert partial.status == pb.PARTIALLY_FILLED and partial.filled_quantity == "1"
        assert partial.cancel_reason == "UNFILLED"
        assert taker.seq < partial.seq

    h.run(scenario())


def test_batch_requests_are_checked_one_by_one(h: Harness) -> None:
    t1 = h.client("trader-1")
    before = h.state()

    async def scenario() -> None:
        batch = [
            place(1, 2, "BUY_YES", "0.40", "1"),  # account 2: not this key's
            pb.OrderStreamRequest(correlation_id=2),  # no request at all
            place(3, 1, "BUY_YES", "abc", "1"),
        ]
        (replies,) = await exchange_batches(t1, [batch])
        assert [r.correlation_id for r in replies] == [1, 2, 3]
        assert replies[0].error.startswith("PERMISSION_DENIED")
        assert replies[1].error.startswith("INVALID_ARGUMENT")
        assert replies[2].error.startswith("INVALID_ARGUMENT")

    h.run(scenario())
    assert h.state() == before  # nothing reached the engine


def test_batch_stream_needs_a_signed_trade_key(h: Harness) -> None:
    viewer = h.client("viewer")
    anonymous = h.client("trader-1")

    async def refused(client: ExchangeClient, signed: bool) -> grpc.StatusCode:
        stub = bpb_grpc.OrderEntryBatchStub(client.channel)
        metadata = client.sign(METHOD, None) if signed else None
        call = stub.OrderBatchStream(metadata=metadata)
        try:  # the server may end the call before the write goes out: the write fails then
            await call.write(bpb.OrderBatch(requests=[place(1, 1, "BUY_YES", "0.4", "1")]))
            await call.done_writing()
            async for _ in call:
                pass
        except grpc.aio.AioRpcError:
            pass
        return await call.code()  # the call's own status

    assert h.run(refused(anonymous, signed=False)) == grpc.StatusCode.UNAUTHENTICATED
    assert h.run(refused(viewer, signed=True)) == grpc.StatusCode.PERMISSION_DENIED
