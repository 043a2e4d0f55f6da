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
    gateways.add("gb", extra=("--http-port", "0"))
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
            # answers come from the gateway's mirror: the event log may still be behind
            while (await js.stream_info(L.event_stream(1))).state.last_seq < last:
                await asyncio.sleep(0.05)
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
    _refuses_what_needs_the_drop_copy(b, gateways)


def _refuses_what_needs_the_drop_copy(endpoints: dict[str, Any], gateways: Gateways) -> None:
    """A gateway of two shards has no drop copy: whatever needs it is refused at once, saying
    why (gRPC UNIMPLEMENTED, REST 501, a WebSocket error frame), never left hanging."""
    import websockets
    from polymarket_us import PolymarketUS
    from polymarket_us.auth import create_auth_headers

    trader = gateways.store.by_name("trader-1")  # type: ignore[attr-defined]
    venue = gateways.store.by_name("pm-trader-1")  # type: ignore[attr-defined]
    why = "cluster of 2 shards"

    async def grpc_and_websocket() -> None:
        client = ExchangeClient(endpoints["grpc"], trader.key_id, trader.secret)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await asyncio.wait_for(client.drop_copy(from_seq=1).read(), 30)
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert why in (refused.value.details() or "")
        finally:
            await client.close()
        url = endpoints["http"].replace("http://", "ws://") + "/v1/ws/private"
        headers = create_auth_headers(venue.key_id, venue.secret, "GET", "/v1/ws/private")
        async with websockets.connect(url, additional_headers=headers) as ws:
            for kind in ("SUBSCRIPTION_TYPE_ORDER", "SUBSCRIPTION_TYPE_POSITION"):
                request = {"requestId": kind, "subscriptionType": kind, "marketSlugs": []}
                await ws.send(json.dumps({"subscribe": request}))
                while True:  # heartbeats aside
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if "error" in frame:
                        break
                assert frame["requestId"] == kind and why in frame["error"]

    run(grpc_and_websocket(), 60)
    sdk = PolymarketUS(
        key_id=venue.key_id,
        secret_key=venue.secret,
        gateway_base_url=endpoints["http"],
        api_base_url=endpoints["http"],
    )
    try:
        for call in (lambda: sdk.orders.list(), lambda: sdk.portfolio.positions()):
            with pytest.raises(Exception) as refused:
                call()
            assert getattr(refused.value, "status_code", None) == 501, refused.value
            assert why in str(refused.value)
    finally:
        sdk.close()


def test_a_one_shard_cluster_s_gateway_serves_the_venue_sdk_and_the_drop_copy(
    nats_cluster: NatsCluster, replicas: Any, gateways: Gateways, tmp_path: Path
) -> None:
    from polymarket_us import PolymarketUS

    from pyexchange.service.catalogue import Catalogue, MarketEntry

    urls = nats_cluster.urls
    run(lay_out(urls, 1, {0: [1, 2]}))
    replicas.add(0, "e0a")
    catalogue = Catalogue(tmp_path / "catalogue.json")
    catalogue.add_market(MarketEntry(1, "market-one", title="Market one"))
    catalogue.save()
    gateways.add("g1", extra=("--http-port", "0", "--catalogue", str(catalogue.path)))
    url = gateways.wait("g1")["http"]
    venue = gateways.store.by_name("pm-trader-1")  # type: ignore[attr-defined]
    sdk = PolymarketUS(
        key_id=venue.key_id, secret_key=venue.secret, gateway_base_url=url, api_base_url=url
    )
    try:
        order = sdk.orders.create(
            {
                "marketSlug": "market-one",
                "intent": "ORDER_INTENT_BUY_LONG",
                "type": "ORDER_TYPE_LIMIT",
                "price": {"value": "0.05", "currency": "USD"},
                "quantity": 10,
                "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
            }
        )
        assert sdk.orders.retrieve(order["id"])["order"]["state"] == "ORDER_STATE_NEW"
        assert sdk.portfolio.positions() is not None
        sdk.orders.cancel(order["id"], {"marketSlug": "market-one"})

        def canceled() -> bool:
            state = sdk.orders.retrieve(order["id"])["order"]["state"]
            return state == "ORDER_STATE_CANCELED"

        wait_for(canceled, 30, "the order's cancel in its history")
    finally:
        sdk.close()

    trader = gateways.store.by_name("trader-1")  # type: ignore[attr-defined]

    async def drop_copy() -> list[tuple[str, int]]:
        client = ExchangeClient(gateways.wait("g1")["grpc"], trader.key_id, trader.secret)
        seen: list[tuple[str, int]] = []
        try:
            # an order sent twice with its client order id: it runs once, the repeat is
            # answered with the first result and is no new event in the drop copy
            first = await client.place(1, 1, "BUY_YES", "0.04", "5", client_order_id=9)
            again = await client.place(1, 1, "BUY_YES", "0.04", "5", client_order_id=9)
            assert (again.order_id, again.seq) == (first.order_id, first.seq)
            await client.cancel(1, first.order_id)
            # from after seq 1 (the setup's CREATE_MARKET): the mirror fed the drop copy from
            # the log's first message, so no GAP
            stream = client.drop_copy(from_seq=1)
            while [kind for kind, _ in seen].count("CANCELED") < 2:
                event = await asyncio.wait_for(stream.read(), 30)
                if event.order_id or event.kind == "GAP":
                    seen.append((event.kind, event.order_id))
            stream.cancel()
        finally:
            await client.close()
        return seen

    seen = run(drop_copy(), 60)
    rest, grpc_order = seen[0][1], seen[2][1]
    assert seen == [
        ("ACCEPTED", rest),
        ("CANCELED", rest),
        ("ACCEPTED", grpc_order),
        ("CANCELED", grpc_order),
    ]


def test_cash_moves_between_shards_through_the_admin_api(
    nats_cluster: NatsCluster, replicas: Any, gateways: Gateways
) -> None:
    """Admin.Transfer: an account's cash follows the markets it trades (each shard's ledger).

    Every account starts with $1,000,000 on each shard (market 1 on shard 0, market
    2 on shard 1); an order spends the cash of its market's shard only.
    """
    run(lay_out(nats_cluster.urls, 2, MARKETS))
    for shard in (0, 1):
        replicas.add(shard, f"e{shard}a")
    gateways.add("ga")
    endpoint = gateways.wait("ga")["grpc"]
    store = gateways.store  # type: ignore[attr-defined]
    admin_key, trader_key = store.by_name("admin"), store.by_name("trader-1")

    async def scenario() -> None:
        admin = ExchangeClient(endpoint, admin_key.key_id, admin_key.secret, timeout=30)
        trader = ExchangeClient(endpoint, trader_key.key_id, trader_key.secret, timeout=30)
        try:
            moved = await admin.transfer(1, "1000000", source=1, destination=0, transfer_id=1)
            assert moved.ok and moved.seq, moved
            assert moved.message == "moved $1000000 of account 1 from shard 1 to 0"
            # the same transfer again (the caller's retry): its first result, nothing moved twice
            again = await admin.transfer(1, "1000000", source=1, destination=0, transfer_id=1)
            assert (again.ok, again.seq) == (True, moved.seq)
            assert (await trader.get_account(1)).cash == "2000000"  # summed over the shards
            # shard 1 holds nothing of account 1 now; shard 0 holds both millions
            empty = await trader.place(1, 2, "BUY_YES", "0.40", "10")
            assert empty.reject_reason == "INSUFFICIENT_BALANCE", empty
            big = await trader.place(1, 1, "BUY_YES", "0.50", "3000000")  # $1.5M on shard 0
            assert big.status == pb.RESTING, big
            assert (await trader.get_account(1)).cash_reserved == "1500000"

            short = await admin.transfer(1, "5", source=1, destination=0, transfer_id=2)
            assert not short.ok and short.reject_reason == "INSUFFICIENT_BALANCE"
            other = await admin.transfer(1, "7", source=1, destination=0, transfer_id=1)
            assert not other.ok and other.reject_reason == "DUPLICATE_TRANSFER_ID"
            back = await admin.transfer(1, "100.25", source=0, destination=1, transfer_id=1)
            assert back.ok, back  # ids are per account and source shard
            assert (await trader.place(1, 2, "BUY_YES", "0.40", "10")).status == pb.RESTING
            fresh = await admin.transfer(9, "1", source=0, destination=1, transfer_id=1)
            assert fresh.reject_reason == "UNKNOWN_ACCOUNT"
            account = await trader.get_account(1)
            assert (account.cash, account.cash_reserved) == ("499996", "1500004")

            for source, destination in ((0, 0), (0, 2)):
                with pytest.raises(grpc.aio.AioRpcError) as bad:
                    await admin.transfer(1, "1", source, destination, transfer_id=3)
                assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.aio.AioRpcError) as denied:
                await trader.transfer(1, "1", 0, 1, transfer_id=3)
            assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        finally:
            await admin.close()
            await trader.close()

    run(scenario(), 120)


def test_the_refusing_gauge_reads_a_link_down_with_its_reason_as_one() -> None:
    """``ShardLink.down`` holds the reason (a string); the gauge scraped from it is 0 or 1
    (a reason read as the value made every /metrics scrape fail while a shard refused)."""
    from types import SimpleNamespace

    from pyexchange.app.gateway import _refusing

    assert _refusing(SimpleNamespace(down="shard 1: the command log refuses")) == 1  # type: ignore[arg-type]
    assert _refusing(SimpleNamespace(down="")) == 0  # type: ignore[arg-type]
