"""The cluster's engine side under real faults: SIGKILLed engines and NATS nodes, lost quorum.

A real 3-node JetStream cluster on loopback (``NatsCluster``), real engine
replica processes, an order flow publishing continuously and recording every
acknowledgement. After the faults, every shard is recomputed from its command
log in this process and compared with what the replicas published, message by
message, and with every replica's digest.

``PYX_CLUSTER_KILLS`` sets the number of engine kills (20 by default, 200 on
demand); ``PYX_CLUSTER_NATS_KILLS`` the NATS node kills (5).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import threading
import time
from typing import Any

import pytest
from cluster_support import (  # noqa: F401 - the fixtures are used by their names
    ACCOUNTS,
    CASH,
    OrderFlow,
    Replicas,
    connect,
    last_seqs,
    lay_out,
    leader_of,
    nats_cluster_fixture,
    read_log,
    replay,
    replicas_fixture,
    run,
    wait_for,
)

from pyexchange.cluster import log as L
from pyexchange.cluster.backend import BackendConfig, ClusterBackend
from pyexchange.cluster.natsrun import NatsCluster
from pyexchange.cluster.shard import BATCH, XFER_OUT, Transfer

KILLS = int(os.environ.get("PYX_CLUSTER_KILLS", "20"))
NATS_KILLS = int(os.environ.get("PYX_CLUSTER_NATS_KILLS", "5"))


def healthy(replicas: Replicas, node_id: str) -> dict[str, Any] | None:
    return replicas.nodes[node_id].health()


def settle(urls: list[str], replicas: Replicas, shards: list[int], timeout: float = 60) -> None:
    """Wait until every command message has its events and every replica is quiet at the end."""

    def done() -> bool:
        ends = {s: run(_ends(urls, s)) for s in shards}
        if any(cmd != evt for cmd, evt in ends.values()):
            return False
        for r in replicas.nodes.values():
            h = r.health()
            if h is None or h["quiet_seq"] != ends[r.shard][0] or h["outgoing"]:
                return False
        return True

    try:
        wait_for(done, timeout, "the cluster to settle", interval=0.25)
    except AssertionError:
        raise AssertionError(replicas.log_tail()) from None


async def _ends(urls: list[str], shard: int) -> tuple[int, int]:
    nc = await connect(urls)
    try:
        return await last_seqs(nc.jetstream(timeout=5), shard)
    finally:
        await nc.close()


def check_shard(
    urls: list[str], replicas: Replicas, shard: int, shards: int, flow: OrderFlow | None
) -> Any:
    """Events in the log = the log recomputed here; acknowledged batches present; retries
    answered from the first result; every replica's digest = the recomputed one."""
    state, computed, events = run(replay(urls, shard, shards), 300)
    assert len(events) == len(computed)
    for seq, (mine, theirs) in enumerate(zip(computed, events, strict=True), 1):
        assert theirs.data == mine, f"shard {shard}: event message {seq} differs"
        assert int(theirs.headers[L.COMMAND_SEQ]) == seq
    if flow is not None:
        first_of = {a.msg_id: a for a in flow.acks}
        for ack in flow.acks + flow.resent:
            if ack.shard == shard:
                assert ack.stream_seq <= len(computed), "an acknowledged batch is missing"
        for retry in flow.resent:
            if retry.shard != shard:
                continue
            first = first_of[retry.msg_id.removesuffix("-retry")]
            # the retry's events are the first result's, byte for byte: nothing ran twice
            assert events[retry.stream_seq - 1].data == events[first.stream_seq - 1].data
    digest = state.digest()
    for r in replicas.nodes.values():
        if r.shard == shard:
            assert r.health()["quiet_digest"] == digest, f"replica {r.node_id} digest differs"
    state.engine.validate()
    return state


def kill_leader(replicas: Replicas, urls: list[str], shard: int) -> tuple[str, float]:
    """SIGKILL the shard's active replica once a standby has caught up; (node, failover s):
    the time from the kill until a command message stored after it has its events (the
    order flow keeps publishing, so that is when the new active engine answers)."""

    async def leader() -> str | None:
        nc = await connect(urls)
        try:
            return await leader_of(nc.jetstream(timeout=5), shard)
        finally:
            await nc.close()

    def ready() -> str | None:
        node = run(leader())
        if node is None or node not in replicas.nodes:
            return None
        cmd, _ = run(_ends(urls, shard))
        for other in replicas.nodes.values():  # one caught-up standby is enough
            if other.shard == shard and other.node_id != node:
                h = other.health()
                if h is not None and h["applied"] >= cmd - 50:
                    return node
        return None

    try:
        node = wait_for(ready, 60, "a leader and a caught-up standby", interval=0.1)
    except AssertionError as exc:
        states = {r.node_id: r.health() for r in replicas.nodes.values()}
        raise AssertionError(f"{exc}; log ends {run(_ends(urls, shard))}; {states}") from None
    cmd_before, _ = wait_for(lambda: run(_ends(urls, shard)), 60, "the command log's end")
    killed_at = time.monotonic()
    replicas.kill(node)
    # taken over once a command stored after the kill has its events
    wait_for(lambda: run(_ends(urls, shard))[1] > cmd_before, 60, "the takeover", interval=0.02)
    return node, time.monotonic() - killed_at


def test_active_engine_sigkilled_repeatedly_under_load(
    nats_cluster: NatsCluster, replicas: Replicas
) -> None:
    urls = nats_cluster.urls
    markets = {0: [1, 2]}
    run(lay_out(urls, 1, markets))
    for node in ("e0a", "e0b", "e0c"):  # two standbys: one is caught up while one restarts
        replicas.add(0, node)
    flow = OrderFlow(urls, markets, rate=50, batch=5).start()
    failovers = []
    try:
        for _ in range(KILLS):
            node, seconds = kill_leader(replicas, urls, 0)
            failovers.append(seconds)
            replicas.start(node)  # comes back as a standby, from the newest snapshot
    except BaseException:
        print(replicas.log_tail())
        raise
    finally:
        flow.stop()
    assert flow.acks and time.monotonic() - flow.last_ack < 10, "trading stopped"
    settle(urls, replicas, [0])
    check_shard(urls, replicas, 0, 1, flow)
    failovers.sort()
    print(
        f"\n{KILLS} kills: failover median {statistics.median(failovers):.2f} s, "
        f"max {failovers[-1]:.2f} s; {len(flow.acks)} batches acknowledged"
    )


def test_nats_node_sigkilled_under_load(nats_cluster: NatsCluster, replicas: Replicas) -> None:
    urls = nats_cluster.urls
    markets = {0: [1]}
    run(lay_out(urls, 1, markets))
    for node in ("e0a", "e0b"):
        replicas.add(0, node)
    flow = OrderFlow(urls, markets, rate=100, batch=10, seed=2).start()
    rng = random.Random(3)
    try:
        for _ in range(NATS_KILLS):
            wait_for(lambda: len(flow.acks) > 20, 30, "orders acknowledged")
            index = rng.randrange(3)
            nats_cluster.kill(index)
            # trading continues on the two others: new acknowledgements, and their events
            acked = len(flow.acks)
            wait_for(lambda a=acked: len(flow.acks) > a + 20, 30, "orders while a node is down")
            target = flow.acks[-1].stream_seq
            wait_for(
                lambda t=target: run(_ends(urls, 0))[1] >= t, 30, "events while a node is down"
            )
            nats_cluster.start(index)
    finally:
        flow.stop()
    settle(urls, replicas, [0])
    check_shard(urls, replicas, 0, 1, flow)


def test_two_of_three_nats_nodes_down_refuses_then_resumes(
    nats_cluster: NatsCluster, replicas: Replicas
) -> None:
    urls = nats_cluster.urls
    markets = {0: [1]}
    run(lay_out(urls, 1, markets))
    for node in ("e0a", "e0b"):
        replicas.add(0, node)
    flow = OrderFlow(urls, markets, rate=50, batch=5, resend_every=0, seed=4).start()
    wait_for(lambda: len(flow.acks) > 20, 30, "orders acknowledged")
    nats_cluster.kill(1)
    nats_cluster.kill(2)
    time.sleep(1.0)
    stalled = len(flow.acks)
    time.sleep(2.0)
    assert len(flow.acks) <= stalled + 1, "acknowledged without a quorum"

    async def refused() -> str:
        nc = await connect([urls[0]])
        try:
            await nc.jetstream(timeout=1).publish(
                L.command_subject(0), b"", headers={L.MSG_ID: "x"}
            )
        except Exception as exc:
            return type(exc).__name__
        finally:
            await nc.close()
        return ""

    assert run(refused()) in (
        "TimeoutError",
        "NoRespondersError",
        "APIError",
        "ServiceUnavailableError",
        "NoStreamResponseError",
    )
    nats_cluster.start(1)
    wait_for(lambda: len(flow.acks) > stalled + 20, 60, "trading to resume")
    flow.stop()
    nats_cluster.start(2)
    settle(urls, replicas, [0])
    check_shard(urls, replicas, 0, 1, flow)


class GatewayFlow:
    """A gateway's backend in a thread of its own, sending batches of orders (through
    ``OrderFlow``'s generator) one after the other, every answer kept by (account, client
    order id); every ``resend_every``-th batch is sent again (a client's retry)."""

    def __init__(self, urls: list[str], markets: dict[int, list[int]]) -> None:
        self.urls = urls
        self.orders = OrderFlow(urls, markets, batch=5, seed=5)
        self.answers: dict[tuple[int, int], bytes] = {}
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> GatewayFlow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    async def _run(self) -> None:
        backend = await ClusterBackend(BackendConfig(self.urls, "gw-flow")).start()
        loop = asyncio.get_running_loop()
        pending: dict[Any, asyncio.Future[Any]] = {}

        class Sink:
            def answered(self, events: Any, starts: Any, answers: list[Any]) -> None:
                for token, _lo, _hi, pieces in answers:
                    pending.pop(token).set_result(pieces)

            def failed(self, tokens: list[Any], error: BaseException) -> None:
                for token in tokens:
                    pending.pop(token).set_exception(error)

        try:
            count = 0
            while not self._stop.is_set():
                batch, ids = self.orders._batch(0)
                for _ in range(2 if count % 10 == 0 else 1):
                    token = object()
                    pending[token] = loop.create_future()
                    backend.submit_to(batch.copy(), Sink(), token)
                    try:
                        rows = await asyncio.wait_for(pending[token], 30)
                    except Exception as exc:
                        self.failures.append(exc)
                        continue
                    for key, events in zip(ids, rows, strict=True):
                        known = self.answers.setdefault(key, events.tobytes())
                        if known != events.tobytes():  # kept: an assert would only end the thread
                            self.failures.append(
                                AssertionError(f"{key} answered twice, differently")
                            )
                count += 1
                await asyncio.sleep(0.01)
        finally:
            await backend.close()


async def _events_by_order(urls: list[str]) -> dict[tuple[int, int], bytes]:
    """(account, client order id) -> its events in shard 0's event log (cluster ids are the
    engine's on shard 0)."""
    nc = await connect(urls)
    js = nc.jetstream(timeout=5)
    last_cmd, last_evt = await last_seqs(js, 0)
    cmds = await read_log(js, L.command_stream(0), last_cmd)
    evts = await read_log(js, L.event_stream(0), last_evt)
    await nc.close()
    out: dict[tuple[int, int], bytes] = {}
    for cmd, evt in zip(cmds, evts, strict=True):
        if (cmd.headers or {}).get(L.KIND) not in (None, BATCH):
            continue
        rows = L.decode_commands(cmd.data or b"")
        counts, events = L.decode_events(evt.data or b"")
        pieces = L.split_events(counts, events)
        for row, piece in zip(rows, pieces, strict=True):
            if row["client_order_id"]:
                key = (int(row["account"]), int(row["client_order_id"]))
                out.setdefault(key, piece.tobytes())
    return out


def test_gateway_answers_under_engine_kills_are_the_event_log_s(
    nats_cluster: NatsCluster, replicas: Replicas
) -> None:
    """A gateway answers from its mirror. Across SIGKILLs of the active engine every answer
    is, byte for byte, what the event log holds for that order afterwards (published by
    whichever engine led); retries get the first result; no answer failed meanwhile."""
    urls = nats_cluster.urls
    markets = {0: [1, 2]}
    run(lay_out(urls, 1, markets))
    for node in ("e0a", "e0b"):
        replicas.add(0, node)
    flow = GatewayFlow(urls, markets).start()
    try:
        wait_for(lambda: len(flow.answers) > 50, 60, "answers")
        for _ in range(3):
            node, _seconds = kill_leader(replicas, urls, 0)
            replicas.start(node)
        answered = len(flow.answers)
        wait_for(lambda: len(flow.answers) > answered + 50, 60, "answers after the kills")
    finally:
        flow.stop()
    assert not flow.failures, flow.failures[:3]
    settle(urls, replicas, [0])
    check_shard(urls, replicas, 0, 1, None)
    logged = run(_events_by_order(urls), 120)
    for key, events in flow.answers.items():
        assert logged[key] == events, f"order {key}: the answer differs from the event log"
    print(f"\n{len(flow.answers)} orders answered")


# ---------------------------------------------------------------- transfers

TRANSFER_FAULTS = [
    ("xfer-out-applied", 0),  # the source's active withdrew, nothing sent yet
    ("xfer-in-stored", 0),  # the credit is in the destination's log, no xfer-done yet
    ("xfer-done-stored", 0),  # both stored
    ("xfer-in-applied", 1),  # the destination's active deposited, then died
]


@pytest.mark.parametrize(("point", "victim_shard"), TRANSFER_FAULTS)
def test_cross_shard_transfer_killed_at_every_step_conserves_money(
    nats_cluster: NatsCluster, replicas: Replicas, point: str, victim_shard: int
) -> None:
    urls = nats_cluster.urls
    markets = {0: [1], 1: [2]}
    run(lay_out(urls, 2, markets))
    victim = f"e{victim_shard}a"
    for shard in (0, 1):
        env = {"PYX_CLUSTER_FAULT": point} if shard == victim_shard else {}
        replicas.add(shard, f"e{shard}a", env)
    # the faulty replica leads its shard; then the standbys join
    wait_for(lambda: (h := healthy(replicas, victim)) is not None and h["leader"], 30, "leader")
    for shard in (0, 1):
        replicas.add(shard, f"e{shard}b")
    settle(urls, replicas, [0, 1])
    amounts = [1_000_000 * (i + 1) for i in range(5)]

    async def send() -> None:
        nc = await connect(urls)
        js = nc.jetstream(timeout=5)
        for i, amount in enumerate(amounts):
            t = Transfer(
                transfer_id=i + 1,
                account=1 + i % 2,
                amount=amount,
                source=0,
                destination=1,
                time=time.time_ns(),
            )
            for _ in range(2):  # a client retrying under the same id: one transfer
                await js.publish(
                    L.command_subject(0), t.encode(), headers={L.KIND: XFER_OUT, L.MSG_ID: f"c-{i}"}
                )
            await asyncio.sleep(0.05)
        await nc.close()

    run(send())
    wait_for(lambda: replicas.nodes[victim].process.poll() is not None, 30, f"the kill at {point}")
    replicas.nodes[victim].env = {}
    replicas.start(victim)
    settle(urls, replicas, [0, 1])
    states = [check_shard(urls, replicas, s, 2, None) for s in (0, 1)]
    total = sum(s.engine.totals().net_deposits for s in states)
    assert total == 2 * len(ACCOUNTS) * CASH  # the setup deposited CASH per account per shard
    moved = {1: sum(amounts[0::2]), 2: sum(amounts[1::2])}
    for account, amount in moved.items():
        assert states[1].engine.balance(account).free == CASH + amount
        assert states[0].engine.balance(account).free == CASH - amount
