"""Gateways in their own processes: the embedded server's APIs over the cluster's log.

Real processes: a 3-node JetStream cluster, one engine replica per shard (two
shards: market 1 on shard 0, market 2 on shard 1), two gateway processes
(``python -m pyexchange.app.gateway``) and the gRPC client of the e2e tests.
A gateway SIGKILLs itself once a quorum stored a client's order and before it
answers (``PYX_CLUSTER_FAULT=gateway-stored``): the client's retry through the
other gateway, with the same client order id, gets the first result and the
order exists once.
"""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from cluster_support import (  # noqa: F401 - the fixtures are used by their names
    Gateways,
    connect,
    lay_out,
    nats_cluster_fixture,
    replicas_fixture,
    run,
    wait_for,
)

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.cluster import log as L
from pyexchange.cluster.natsrun import NatsCluster
from pyexchange.cluster.router import split_id
from pyexchange.service.auth import KeyStore

MARKETS = {0: [1], 1: [2]}


@pytest.fixture(name="gateways")
def gateways_fixture(nats_cluster: NatsCluster, tmp_path: Path) -> Any:
    keys = KeyStore.demo([1, 2, 3, 4])
    keys.save(tmp_path / "keys.json")
    group = Gateways(nats_cluster.urls, tmp_path / "gateways", tmp_path / "keys.json")
    group.store = keys  # type: ignore[attr-defined]
    yield group
    group.stop()


def test_a_gateway_killed_mid_request_and_the_retry_through_another_is_deduplicated(
    nats_cluster: NatsCluster, replicas: Any, gateways: Gateways
) -> None:
    urls = nats_cluster.urls
    run(lay_out(urls, 2, MARKETS))
    for shard in (0, 1):
        replicas.add(shard, f"e{shard}a")
    dying = gateways.add("ga", env={"PYX_CLUSTER_FAULT": "gateway-stored"})
    gateways.add("gb")
    a, b = gateways.wait("ga"), gateways.wait("gb")
    trader = gateways.store.by_name("trader-1")  # type: ignore[attr-defined]
    seller = gateways.store.by_name("trader-2")  # type: ignore[attr-defined]

    async def scenario() -> None:
        ca = ExchangeClient(a["grpc"], trader.key_id, trader.secret, timeout=30)
        cb = ExchangeClient(b["grpc"], trader.key_id, trader.secret, timeout=30)
        cs = ExchangeClient(b["grpc"], seller.key_id, seller.secret, timeout=30)
        try:
            order = {"client_order_id": 77}
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await ca.place(1, 2, "BUY_YES", "0.40", "10", **order)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            first = await cb.place(1, 2, "BUY_YES", "0.40", "10", **order)  # the retry
            assert first.status == pb.RESTING and split_id(first.order_id)[0] == 1
            again = await cb.place(1, 2, "BUY_YES", "0.40", "10", **order)
            assert (again.seq, again.order_id) == (first.seq, first.order_id)
            account = await cb.get_account(1)
            assert [o.order_id for o in account.orders if o.client_order_id == 77] == [
                first.order_id
            ]
            # the shard's log holds the order twice (the dead gateway's message, the retry's);
            # the engine ran it once: the retry's answer is the first message's
            nc = await connect(urls)
            js = nc.jetstream(timeout=5)
            last = (await js.stream_info(L.command_stream(1))).state.last_seq
            mine = [
                L.decode_events((await js.get_msg(L.event_stream(1), seq)).data)[1]
                for seq in range(2, last + 1)
            ]
            await nc.close()
            assert len(mine) == 3 and mine[0].tobytes() == mine[1].tobytes() == mine[2].tobytes()

            # another account trades against it through the live gateway; market data shows it
            updates = cb.subscribe_market_data([2])
            snapshot = await asyncio.wait_for(updates.read(), 30)
            assert [(lv.price, lv.orders) for lv in snapshot.snapshot.bids] == [("0.4", 1)]
            minted = await cs.place(2, 2, "BUY_NO", "0.40", "4")  # a MINT with account 1's bid
            assert minted.status == pb.FILLED and len(minted.fills) == 1
            seen_trade = False
            while not seen_trade:
                update = await asyncio.wait_for(updates.read(), 30)
                seen_trade = update.HasField("trade")
            updates.cancel()
            positions = (await cb.get_account(1)).positions
            assert [(p.market, p.yes) for p in positions] == [(2, "4")]
        finally:
            for client in (ca, cb, cs):
                await client.close()

    run(scenario(), 120)
    assert dying.process is not None and dying.process.wait(10) == -signal.SIGKILL
    with urllib.request.urlopen(b["status"] + "/health", timeout=5) as reply:
        health = json.loads(reply.read())
    assert health["kind"] == "gateway" and [s["shard"] for s in health["shards"]] == [0, 1]
    with urllib.request.urlopen(b["status"] + "/metrics", timeout=5) as reply:
        assert b"pyx_gateway_answered_seq" in reply.read()
