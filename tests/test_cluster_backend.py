"""A gateway's path into the cluster: routing by shard, answers from the events, reads from mirrors.

Real processes: a 3-node JetStream cluster, one engine replica per shard (two
shards: market 1 on shard 0, market 2 on shard 1). ``ClusterBackend`` runs in
this process and is driven the way the service layer drives it (``submit_to``
with a sink, ``query``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from cluster_support import (  # noqa: F401 - the fixtures are used by their names
    ACCOUNTS,
    CASH,
    commands,
    lay_out,
    nats_cluster_fixture,
    replicas_fixture,
    wait_for,
)

from matchcore import ALL_MARKETS, CancelReason, CommandType, EventType, Intent, Reject
from pyexchange.cluster import log as L
from pyexchange.cluster.backend import BackendConfig, ClusterBackend, ShardUnavailable
from pyexchange.cluster.natsrun import NatsCluster
from pyexchange.cluster.router import EVERY, SHARD_SHIFT, Unroutable, route, split_id

MARKETS = {0: [1], 1: [2]}


class Sink:
    """What the service layer's EngineLink is to the backend: answers per token."""

    def __init__(self) -> None:
        self.futures: dict[Any, asyncio.Future[Any]] = {}

    def expect(self, token: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        self.futures[token] = future
        return future

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None:
        for token, _lo, _hi, pieces in answers:
            rows = pieces if pieces is not None else []
            self.futures[token].set_result(rows)

    def failed(self, tokens: list[Any], error: BaseException) -> None:
        for token in tokens:
            self.futures[token].set_exception(error)


async def submit(backend: ClusterBackend, sink: Sink, rows: list[dict[str, int]]) -> list[Any]:
    token = object()
    future = sink.expect(token)
    backend.submit_to(commands(rows), sink, token)
    return await asyncio.wait_for(future, 30)


def order(account: int, market: int, intent: Intent, price: int, qty: int, coid: int = 0) -> dict:
    return {
        "type": CommandType.NEW_ORDER,
        "account": account,
        "market": market,
        "intent": intent,
        "price": price,
        "quantity": qty,
        "client_order_id": coid,
    }


def test_route_sends_each_row_where_its_kind_says() -> None:
    """Column-wise routing (``route``): by market, by the order id's shard (sent as its local
    id), by the account's home shard, to every shard; a forged id refuses the submission."""
    C, market_shard = CommandType, {1: 0, 2: 1, 3: 2}
    rows = [
        {"type": C.NEW_ORDER, "market": 2, "account": 1},
        {"type": C.CANCEL, "order_id": (2 << SHARD_SHIFT) | 7, "account": 1},
        {"type": C.DEPOSIT, "account": 4},
        {"type": C.ADD_ACCOUNT, "account": 5},
        {"type": C.CANCEL_ALL, "market": 3, "account": 1},
        {"type": C.CANCEL_ALL, "market": ALL_MARKETS, "account": 1},
        {"type": C.NEW_ORDER, "market": 1, "account": 2},
        {"type": 250},  # unknown: to shard 0, which rejects it
    ]
    parts, targets = route(commands(rows), 3, market_shard.__getitem__)
    assert targets.tolist() == [1, 2, 1, EVERY, 2, EVERY, 0, 0]
    by_shard = {p.shard: p for p in parts}
    assert {s: p.rows.tolist() for s, p in by_shard.items()} == {
        0: [3, 5, 6, 7],
        1: [0, 2, 3, 5],
        2: [1, 3, 4, 5],
    }
    assert by_shard[2].commands["order_id"].tolist() == [7, 0, 0, 0]  # the local id
    single, targets = route(commands([rows[0], rows[2], rows[3]]), 1, lambda m: 0)
    assert [(p.shard, p.rows.tolist()) for p in single] == [(0, [0, 1, 2])]
    assert targets.tolist() == [0, 0, 0]  # one shard: "every shard" is shard 0
    with pytest.raises(Unroutable, match=f"order id {(2 << SHARD_SHIFT) | 7} names no shard"):
        route(commands([rows[1]]), 2, market_shard.__getitem__)


def start_shards(nats_cluster: NatsCluster, replicas: Any) -> None:
    asyncio.run(lay_out(nats_cluster.urls, 2, MARKETS))
    for shard in (0, 1):
        replicas.add(shard, f"e{shard}a")
    wait_for(
        lambda: all((h := r.health()) and h["applied"] >= 1 for r in replicas.nodes.values()),
        60,  # Python processes start slowly on a loaded host
        "the engines",
    )


def test_orders_route_by_market_and_answers_carry_cluster_ids(
    nats_cluster: NatsCluster, replicas: Any
) -> None:
    start_shards(nats_cluster, replicas)

    async def scenario() -> None:
        backend = await ClusterBackend(BackendConfig(nats_cluster.urls, "gw-test")).start()
        sink = Sink()
        try:
            rows = await submit(
                backend,
                sink,
                [
                    order(1, 1, Intent.BUY_YES, 5_000, 100, coid=11),
                    order(1, 2, Intent.BUY_YES, 4_000, 100, coid=12),
                    order(2, 2, Intent.BUY_NO, 4_000, 40),  # a MINT with account 1's bid
                ],
            )
            accepted = [r[r["type"] == EventType.ACCEPTED] for r in rows]
            ids = [int(a["order_id"][0]) for a in accepted]
            assert split_id(ids[0])[0] == 0 and split_id(ids[1])[0] == 1
            assert ids[1] >> SHARD_SHIFT == 1  # clients see the shard in the id
            trades = rows[2][rows[2]["type"] == EventType.TRADE]
            assert int(trades["maker_order_id"][0]) == ids[1] and int(trades["quantity"][0]) == 40
            assert all(
                int(r["seq"][0]) >> SHARD_SHIFT == s for r, s in zip(rows, (0, 1, 1), strict=True)
            )

            # a cancel by the cluster id reaches the order's shard
            (cancel,) = await submit(
                backend, sink, [{"type": CommandType.CANCEL, "account": 1, "order_id": ids[1]}]
            )
            assert cancel["type"][0] == EventType.CANCELED and int(cancel["order_id"][0]) == ids[1]
            # a cancel by client id names no market: every shard is asked, one answers
            (by_client,) = await submit(
                backend,
                sink,
                [{"type": CommandType.CANCEL_CLIENT, "account": 1, "client_order_id": 11}],
            )
            assert by_client["type"][0] == EventType.CANCELED
            assert int(by_client["order_id"][0]) == ids[0]
            (unknown,) = await submit(
                backend,
                sink,
                [{"type": CommandType.CANCEL_CLIENT, "account": 1, "client_order_id": 999}],
            )
            assert unknown["type"][0] == EventType.REJECTED
            assert unknown["reason"][0] == Reject.UNKNOWN_ORDER
            # the same client order id again: the first answer, from the shard's table
            (again,) = await submit(backend, sink, [order(1, 1, Intent.BUY_YES, 5_000, 100, 11)])
            assert again.tobytes() == rows[0].tobytes()

            # reads: cash summed over shards, positions from the market's shard, cluster ids
            await submit(backend, sink, [order(3, 2, Intent.BUY_YES, 4_500, 10, coid=13)])
            view = await asyncio.wrap_future(
                backend.query(lambda e: (e.balance(3), e.orders_of(3), e.position(2, 2)))
            )
            balance, open_orders, position = view
            assert balance.free + balance.reserved == 2 * CASH  # funded on both shards
            assert [split_id(o.order_id)[0] for o in open_orders] == [1]
            assert position.no_free == 40  # minted on shard 1
            found = await asyncio.wrap_future(
                backend.query(lambda e: e.order(open_orders[0].order_id))
            )
            assert found is not None

            # cancel-all of every market goes to every shard
            await submit(backend, sink, [order(4, 1, Intent.BUY_NO, 6_000, 5)])
            await submit(backend, sink, [order(4, 2, Intent.BUY_NO, 6_000, 5)])
            (all_cancel,) = await submit(
                backend,
                sink,
                [{"type": CommandType.CANCEL_ALL, "account": 4, "market": ALL_MARKETS}],
            )
            canceled = all_cancel[all_cancel["type"] == EventType.CANCELED]
            assert sorted(split_id(int(i))[0] for i in canceled["order_id"]) == [0, 1]
        finally:
            await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 90))


def test_without_a_quorum_orders_are_refused_clearly_then_taken_again(
    nats_cluster: NatsCluster, replicas: Any
) -> None:
    start_shards(nats_cluster, replicas)

    async def scenario() -> None:
        config = BackendConfig(nats_cluster.urls, "gw-quorum", store_timeout=2.0)
        backend = await ClusterBackend(config).start()
        sink = Sink()
        try:
            await submit(backend, sink, [order(1, 1, Intent.BUY_YES, 5_000, 10)])
            nats_cluster.kill(1)
            nats_cluster.kill(2)
            started = time.monotonic()
            try:
                await submit(backend, sink, [order(1, 1, Intent.BUY_YES, 5_000, 10)])
                raise AssertionError("stored without a quorum")
            except ShardUnavailable as exc:
                assert "no JetStream quorum" in str(exc)
            assert time.monotonic() - started < 10
            # refused at once now, with the reason
            started = time.monotonic()
            try:
                await submit(backend, sink, [order(1, 1, Intent.BUY_YES, 5_000, 10)])
                raise AssertionError("taken without a quorum")
            except ShardUnavailable as exc:
                assert "cannot store commands" in str(exc)
            assert time.monotonic() - started < 1
            nats_cluster.start(1)

            async def taken() -> bool:
                try:
                    await submit(backend, sink, [order(1, 1, Intent.BUY_YES, 5_000, 10)])
                    return True
                except ShardUnavailable:
                    await asyncio.sleep(0.5)
                    return False

            deadline = time.monotonic() + 60
            while not await taken():
                assert time.monotonic() < deadline, "the shard never took orders again"
        finally:
            nats_cluster.start(2)
            await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 150))


def test_accounts_are_added_on_every_shard(nats_cluster: NatsCluster, replicas: Any) -> None:
    start_shards(nats_cluster, replicas)

    async def scenario() -> None:
        backend = await ClusterBackend(BackendConfig(nats_cluster.urls, "gw-acct")).start()
        sink = Sink()
        try:
            (added,) = await submit(
                backend, sink, [{"type": CommandType.ADD_ACCOUNT, "account": 9}]
            )
            assert list(added["type"]) == [EventType.ACCOUNT]
            (twice,) = await submit(
                backend, sink, [{"type": CommandType.ADD_ACCOUNT, "account": 9}]
            )
            assert twice["type"][0] == EventType.REJECTED
            assert twice["reason"][0] == Reject.ACCOUNT_EXISTS
            (deposit,) = await submit(
                backend, sink, [{"type": CommandType.DEPOSIT, "account": 9, "quantity": 500}]
            )
            assert deposit["type"][0] == EventType.BALANCE  # on its home shard (9 % 2 = 1)
            balances = await asyncio.wrap_future(backend.query(lambda e: e.balances_by_shard(9)))
            assert [b.free for b in balances] == [0, 500]
            assert len(ACCOUNTS) == 4
        finally:
            await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_an_idle_shard_writes_a_tick_only_when_an_order_is_due(
    nats_cluster: NatsCluster, replicas: Any
) -> None:
    start_shards(nats_cluster, replicas)

    async def scenario() -> None:
        backend = await ClusterBackend(BackendConfig(nats_cluster.urls, "gw-tick")).start()
        sink = Sink()
        js = backend.js
        try:
            expiry = time.time_ns() + 3_000_000_000  # after the publish, even on a loaded host
            gtd = order(1, 1, Intent.BUY_YES, 5_000, 10) | {"tif": 1, "expiry": expiry}
            (placed,) = await submit(backend, sink, [gtd])
            assert placed["type"][0] == EventType.ACCEPTED
            before = (await js.stream_info(L.command_stream(0))).state.last_seq
            idle = (await js.stream_info(L.command_stream(1))).state.last_seq
            deadline = time.monotonic() + 20
            while True:  # the order expires on time with nothing else entering the log
                found = await asyncio.wrap_future(backend.query(lambda e: e.orders_of(1)))
                if not found:
                    break
                assert time.monotonic() < deadline, "the GTD order never expired"
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            after = (await js.stream_info(L.command_stream(0))).state.last_seq
            assert after == before + 1  # one ADVANCE_TIME, once
            assert (await js.stream_info(L.command_stream(1))).state.last_seq == idle
            tick = await js.get_msg(L.command_stream(0), after)
            assert L.decode_commands(tick.data)["type"][0] == CommandType.ADVANCE_TIME
            expired = L.decode_events((await js.get_msg(L.event_stream(0), after)).data)[1]
            assert expired["type"][0] == EventType.CANCELED
            assert expired["reason"][0] == CancelReason.EXPIRED
        finally:
            await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_the_mirror_answers_only_so_far_ahead_of_the_event_log(
    nats_cluster: NatsCluster, replicas: Any
) -> None:
    """A gateway answers from its mirror (a replica: the events are fixed once the command
    is stored), with no engine publishing up to ``answer_ahead`` messages past the event
    log's end; beyond, the answer waits until an engine has published up to there."""
    asyncio.run(lay_out(nats_cluster.urls, 1, {0: [1]}))  # message 1: the setup, no engine

    async def scenario() -> None:
        config = BackendConfig(nats_cluster.urls, "gw-ahead", answer_ahead=3)
        backend = await ClusterBackend(config).start()
        sink = Sink()
        try:
            for coid in (1, 2):  # messages 2 and 3: within 3 of the event log's end (0)
                (placed,) = await submit(
                    backend, sink, [order(1, 1, Intent.BUY_YES, 4_000, 1, coid)]
                )
                assert placed["type"][0] == EventType.ACCEPTED
            token = object()
            waiting = sink.expect(token)
            backend.submit_to(commands([order(1, 1, Intent.BUY_YES, 4_000, 1, 3)]), sink, token)
            await asyncio.sleep(2.0)
            assert backend.mirrors[0].applied == 4 and not waiting.done()  # message 4 waits
            assert list(backend.links[0].held) == [4]
            replicas.add(0, "e0a")  # an engine publishes the events: message 4 may go
            (placed,) = await asyncio.wait_for(waiting, 60)
            assert placed["type"][0] == EventType.ACCEPTED
            events = L.decode_events((await backend.js.get_msg(L.event_stream(0), 4)).data)[1]
            assert events.tobytes() == placed.tobytes()
        finally:
            await backend.close()

    asyncio.run(asyncio.wait_for(scenario(), 120))
