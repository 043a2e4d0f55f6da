"""The REST API's join of one loop turn's new orders (``pyexchange/api/rest/batching.py``), on a
real server's gateway: one submission, each request gets exactly its own commands' events,
rejects stay with their request, a refusal reaches every request, other commands pass."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from service_support import LoopThread, start_harness

from matchcore import COMMAND_DTYPE, CommandType, EventType, Intent, TimeInForce
from pyexchange.api.rest.batching import CoalescingGateway
from pyexchange.service.errors import Unavailable


def _orders(account: int, prices: list[int]) -> np.ndarray:
    rows = np.zeros(len(prices), dtype=COMMAND_DTYPE)
    rows["type"] = CommandType.NEW_ORDER
    rows["account"] = account
    rows["market"] = 1
    rows["intent"] = Intent.BUY_YES
    rows["price"] = prices
    rows["quantity"] = 100  # one share
    rows["tif"] = TimeInForce.GTC
    return rows


def test_one_turns_new_orders_are_one_submission(tmp_path: Path) -> None:
    loop = LoopThread()
    harness = start_harness(loop, tmp_path / "data")
    try:
        gateway = CoalescingGateway(harness.server.gateway)
        # price 0 is out of bounds: that request's order is rejected, the others are not
        requests = [_orders(1 + i % 4, [1_000 + 100 * i]) for i in range(30)]
        requests[7] = _orders(2, [0])
        requests[11] = _orders(3, [2_000, 2_100, 2_200])  # a create_many

        async def together() -> list[np.ndarray]:
            return await asyncio.gather(*(gateway.run(r, "place") for r in requests))

        replies = harness.run(together())
        assert (gateway.submissions, gateway.joined) == (1, 32)
        seqs = []
        for request, events in zip(requests, replies, strict=True):
            kinds = events["type"]
            assert len(np.unique(events["seq"])) == len(request)
            assert set(events["account"][kinds != EventType.LEVEL]) <= {request["account"][0]}
            seqs += list(np.unique(events["seq"]))
            if request["price"][0] == 0:
                assert list(kinds) == [EventType.REJECTED]
            else:
                accepted = events[kinds == EventType.ACCEPTED]
                assert list(accepted["price"]) == list(request["price"])
        assert sorted(seqs) == list(range(seqs[0], seqs[0] + 32))  # every command once

        # turns apart: a submission each; a cancel is not joined (passed through)
        async def apart() -> None:
            await gateway.run(_orders(1, [500]), "place")
            await gateway.run(_orders(1, [600]), "place")
            cancel = np.zeros(1, dtype=COMMAND_DTYPE)
            cancel["type"] = CommandType.CANCEL_ALL
            cancel["account"] = 1
            cancel["market"] = 1
            await gateway.run(cancel, "cancel_all")

        harness.run(apart())
        assert gateway.submissions == 3

        before = harness.state()
        harness.server.gateway.closing = True  # a refusal of the joined submission

        async def refused() -> list[BaseException]:
            runs = [gateway.run(_orders(1, [700]), "place") for _ in range(5)]
            return await asyncio.gather(*runs, return_exceptions=True)

        failures = harness.run(refused())
        assert all(isinstance(f, Unavailable) for f in failures)
        assert {f.reason for f in failures} == {"SHUTTING_DOWN"}
        assert len({id(f) for f in failures}) == 5  # one exception object per request
        harness.server.gateway.closing = False
        assert harness.state() == before
    finally:
        harness.close()
        loop.close()


@pytest.mark.parametrize("count", [1, 2])
def test_a_cancelled_request_leaves_the_others_answered(tmp_path: Path, count: int) -> None:
    loop = LoopThread()
    harness = start_harness(loop, tmp_path / "data")
    try:
        gateway = CoalescingGateway(harness.server.gateway)

        async def one_gives_up() -> list[np.ndarray]:
            tasks = [
                asyncio.ensure_future(gateway.run(_orders(1, [900 + 100 * i]), "place"))
                for i in range(count + 1)
            ]
            await asyncio.sleep(0)
            tasks[0].cancel()
            done = await asyncio.gather(*tasks[1:])
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
            return done

        for events in harness.run(one_gives_up()):
            assert EventType.ACCEPTED in events["type"]
        # the given-up order was still sent (a request that left after sending is sent)
        orders = harness.query(lambda engine: engine.orders_of(1))
        assert len(orders) == count + 1
    finally:
        harness.close()
        loop.close()
