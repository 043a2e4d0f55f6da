"""Helpers of the cluster tests: a real NATS cluster, real engine processes, an order flow.

Everything is a real process on loopback: three ``nats-server`` nodes
(``NatsCluster``), engine replicas started with ``python -m
pyexchange.cluster.node`` (``Replicas``), and an ``OrderFlow`` that publishes
command batches into a shard's log the way a gateway does (time stamped, a
message id per batch, acknowledged once JetStream's quorum stored it) and
records every acknowledgement. ``replay`` recomputes a shard from its command
log in this process, to check what the replicas published.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import nats
import numpy as np
import pytest
from nats.js.api import DeliverPolicy

from matchcore import COMMAND_DTYPE, CommandType, Intent, MarketState, TimeInForce
from pyexchange.cluster import log as L
from pyexchange.cluster.natsrun import NatsCluster, NatsNotInstalled
from pyexchange.cluster.shard import BATCH, ShardState

T = TypeVar("T")
ENGINE = L.EngineSpec(max_orders=8192, max_markets=16, max_accounts=64)
ACCOUNTS = (1, 2, 3, 4)
CASH = 10**12  # $1,000,000 per account per shard


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(urls: list[str]) -> Any:
    return await nats.connect(
        servers=urls, max_reconnect_attempts=-1, reconnect_time_wait=0.2, connect_timeout=2
    )


def commands(rows: list[dict[str, int]], time_ns: int | None = None) -> np.ndarray:
    out = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for i, row in enumerate(rows):
        for name, value in row.items():
            out[name][i] = value
    out["time"] = time.time_ns() if time_ns is None else time_ns
    return out


def setup_commands(markets: list[int]) -> np.ndarray:
    """Markets open at tick $0.01, accounts 1-4 funded (the same on every shard)."""
    rows: list[dict[str, int]] = []
    for m in markets:
        rows.append(
            {"type": CommandType.CREATE_MARKET, "market": m, "price": 100, "quantity": 1, "aux": 1}
        )
        rows.append({"type": CommandType.SET_MARKET_STATE, "market": m, "arg": MarketState.OPEN})
    for a in ACCOUNTS:
        rows.append({"type": CommandType.ADD_ACCOUNT, "account": a})
        rows.append({"type": CommandType.DEPOSIT, "account": a, "quantity": CASH})
    return commands(rows)


async def lay_out(urls: list[str], shards: int, markets_of: dict[int, list[int]]) -> None:
    """Streams and buckets for ``shards`` shards; each shard's setup batch in its log."""
    nc = await connect(urls)
    js = nc.jetstream(timeout=5)
    # as `pyexchange cluster` does: a cluster a test has just restarted a node of may still
    # be electing its meta leader, and answers with timeouts meanwhile
    await L.until_answered(lambda: L.ensure_layout(js, shards, ENGINE), "the layout", 60)
    for shard, markets in markets_of.items():
        for m in markets:
            await L.place_market(js, m, shard)
        await js.publish(
            L.command_subject(shard),
            setup_commands(markets).tobytes(),
            headers={L.MSG_ID: f"setup-{shard}"},
        )
    await nc.close()


# ------------------------------------------------------------------ fixtures


@pytest.fixture(name="nats_cluster")
def nats_cluster_fixture(tmp_path: Path) -> Any:
    """A 3-node JetStream cluster on loopback for one test (import this name to use it)."""
    try:
        cluster = NatsCluster(tmp_path / "nats")
    except NatsNotInstalled as exc:
        if os.environ.get("PYX_REQUIRE_NATS"):
            raise  # .ci/run installs it: missing there is a failure
        pytest.skip(str(exc))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(name="replicas")
def replicas_fixture(nats_cluster: NatsCluster, tmp_path: Path) -> Any:
    """Engine replica processes on that cluster, stopped after the test."""
    group = Replicas(nats_cluster.urls, tmp_path / "engines")
    yield group
    group.stop()


# ------------------------------------------------------------------ replicas


@dataclass
class Replica:
    shard: int
    node_id: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def status_file(self) -> Path:
        return self.directory / f"{self.node_id}.status.json"

    def health(self) -> dict[str, Any] | None:
        try:
            port = json.loads(self.status_file.read_text())["http_port"]
            # a replica starved of CPU on a loaded host answers late, not never
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
                return json.loads(reply.read())
        except (OSError, ValueError, KeyError):
            return None


class Replicas:
    """Engine replica processes of one or more shards (started outside the repository)."""

    def __init__(self, urls: list[str], directory: Path, *, snapshot_every: int = 200) -> None:
        self.urls = urls
        self.directory = directory
        self.snapshot_every = snapshot_every
        self.nodes: dict[str, Replica] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def add(self, shard: int, node_id: str, env: dict[str, str] | None = None) -> Replica:
        replica = Replica(shard, node_id, self.directory, env=env or {})
        self.nodes[node_id] = replica
        self.start(node_id)
        return replica

    def start(self, node_id: str) -> None:
        r = self.nodes[node_id]
        r.status_file.unlink(missing_ok=True)
        log = open(self.directory / f"{node_id}.log", "ab")  # noqa: SIM115 - the child keeps it
        r.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyexchange.cluster.node",
                "--shard",
                str(r.shard),
                "--node-id",
                node_id,
                "--nats",
                ",".join(self.urls),
                "--snapshot-every",
                str(self.snapshot_every),
                "--http-port",
                "0",
                "--status-file",
                str(r.status_file),
            ],
            cwd=self.directory,  # outside the repository: the installed package runs
            env={**os.environ, **r.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def kill(self, node_id: str) -> None:
        p = self.nodes[node_id].process
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def stop(self) -> None:
        for r in self.nodes.values():
            if r.process is not None and r.process.poll() is None:
                r.process.terminate()
        for r in self.nodes.values():
            if r.process is not None:
                try:
                    r.process.wait(10)
                except subprocess.TimeoutExpired:
                    r.process.kill()
                    r.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for node_id in self.nodes:
            path = self.directory / f"{node_id}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {node_id}\n" + "\n".join(text))
        return "\n".join(out)


async def leader_of(js: Any, shard: int) -> str | None:
    kv = await js.key_value(L.LEASE_BUCKET)
    try:
        entry = await kv.get(L.lease_key(shard))
    except Exception:
        return None
    return json.loads(entry.value or b"{}").get("holder")


async def last_seqs(js: Any, shard: int) -> tuple[int, int]:
    """(last command message, last event message) of a shard."""
    cmd = await js.stream_info(L.command_stream(shard))
    evt = await js.stream_info(L.event_stream(shard))
    return int(cmd.state.last_seq), int(evt.state.last_seq)


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it is true; an exception counts as not yet (a NATS node
    being down or a stream electing its leader answers with timeouts for a while)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except Exception as exc:
            value, last_error = None, exc
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what} (last error: {last_error!r})")
        time.sleep(interval)


# ----------------------------------------------------------------- order flow


@dataclass
class Ack:
    shard: int
    stream_seq: int
    msg_id: str
    client_order_ids: list[tuple[int, int]]  # (account, client order id)


class OrderFlow:
    """Batches of orders into shards' logs from a thread of its own, every acknowledgement kept.

    Each batch has ``batch`` NEW_ORDERs of accounts 1-4 around $0.50 (resting
    and crossing, with a client order id each) and a message id; a publish
    that fails is retried with the same message id until it is acknowledged.
    Every ``resend_every``-th batch is sent once more under a new message id
    after its acknowledgement: a client's retry through another gateway, which
    the replicas must answer from the first result.
    """

    def __init__(
        self,
        urls: list[str],
        markets_of: dict[int, list[int]],
        *,
        rate: float = 100.0,
        batch: int = 10,
        resend_every: int = 10,
        seed: int = 1,
    ) -> None:
        self.urls = urls
        self.markets_of = markets_of
        self.rate = rate
        self.batch = batch
        self.resend_every = resend_every
        self.random = random.Random(seed)
        self.acks: list[Ack] = []
        self.resent: list[Ack] = []
        self.failures = 0
        self.last_ack = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="order-flow", daemon=True)
        self._next_id = 1

    def start(self) -> OrderFlow:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def _main(self) -> None:
        asyncio.run(self._run())

    def _batch(self, shard: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
        rows, ids = [], []
        for _ in range(self.batch):
            account = self.random.choice(ACCOUNTS)
            coid = self._next_id
            self._next_id += 1
            rows.append(
                {
                    "type": CommandType.NEW_ORDER,
                    "account": account,
                    "market": self.random.choice(self.markets_of[shard]),
                    "intent": self.random.choice(list(Intent)),
                    "price": 100 * self.random.randint(45, 55),
                    "quantity": self.random.randint(1, 20),
                    "tif": self.random.choice((TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC)),
                    "client_order_id": coid,
                }
            )
            ids.append((account, coid))
        return commands(rows), ids

    async def _publish(self, js: Any, shard: int, body: bytes, msg_id: str) -> int:
        while True:
            try:
                ack = await js.publish(L.command_subject(shard), body, headers={L.MSG_ID: msg_id})
                return int(ack.seq)
            except Exception:
                self.failures += 1
                if self._stop.is_set():
                    raise
                await asyncio.sleep(0.05)

    async def _run(self) -> None:
        nc = await connect(self.urls)
        js = nc.jetstream(timeout=1.0)
        shards = sorted(self.markets_of)
        count = 0
        start = time.monotonic()
        try:
            while not self._stop.is_set():
                shard = shards[count % len(shards)]
                body, ids = self._batch(shard)
                msg_id = f"flow-{os.getpid()}-{count}"
                try:
                    seq = await self._publish(js, shard, body.tobytes(), msg_id)
                except Exception:
                    break
                ack = Ack(shard, seq, msg_id, ids)
                self.acks.append(ack)
                self.last_ack = time.monotonic()
                if self.resend_every and count % self.resend_every == 0:
                    again = f"{msg_id}-retry"
                    try:
                        seq2 = await self._publish(js, shard, body.tobytes(), again)
                    except Exception:
                        break
                    self.resent.append(Ack(shard, seq2, again, ids))
                count += 1
                delay = start + count / self.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        finally:
            await nc.close()


# -------------------------------------------------------------------- replay


async def read_log(js: Any, stream: str, last: int) -> list[Any]:
    """Messages 1..last of a stream, in order, through one ordered consumer (a direct get
    per message is a round trip each: minutes for a long log on a loaded host)."""
    if not last:
        return []
    sub = await js.subscribe(
        stream_subject(stream),
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.ALL,
        pending_msgs_limit=1_000_000,
        pending_bytes_limit=1 << 30,
    )
    out: list[Any] = []
    try:
        while len(out) < last:
            msg = await sub.next_msg(timeout=30)
            if msg.metadata.sequence.stream == len(out) + 1:
                out.append(_Stored(len(out) + 1, msg.data, msg.headers))
    finally:
        await sub.unsubscribe()
    return out


@dataclass
class _Stored:
    """A stream message as ``js.get_msg`` gives it: seq, data, headers."""

    seq: int
    data: bytes
    headers: dict[str, str] | None


def stream_subject(stream: str) -> str:
    shard = int(stream.rsplit("_", 1)[1])
    return L.command_subject(shard) if stream.startswith("PYX_CMD") else L.event_subject(shard)


async def replay(
    urls: list[str], shard: int, shards: int
) -> tuple[ShardState, list[bytes], list[Any]]:
    """The shard recomputed from its whole command log; the events it computes per message,
    and the event log's messages."""
    nc = await connect(urls)
    js = nc.jetstream(timeout=5)
    last_cmd, last_evt = await last_seqs(js, shard)
    cmds = await read_log(js, L.command_stream(shard), last_cmd)
    evts = await read_log(js, L.event_stream(shard), last_evt)
    await nc.close()
    state = ShardState(shard, shards, ENGINE.build())
    computed = []
    for msg in cmds:
        applied = state.apply(msg.seq, (msg.headers or {}).get(L.KIND, BATCH), msg.data or b"")
        computed.append(L.encode_events(applied.counts, applied.events))
    return state, computed, evts


# ------------------------------------------------------------------ gateways


@dataclass
class Gateway:
    gateway_id: str
    directory: Path
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def status_file(self) -> Path:
        return self.directory / f"{self.gateway_id}.status.json"

    def endpoints(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return None


class Gateways:
    """Gateway processes (``python -m pyexchange.app.gateway``) on a cluster."""

    def __init__(self, urls: list[str], directory: Path, keys: Path) -> None:
        self.urls = urls
        self.directory = directory
        self.keys = keys
        self.nodes: dict[str, Gateway] = {}
        directory.mkdir(parents=True, exist_ok=True)

    def add(
        self, gateway_id: str, env: dict[str, str] | None = None, extra: tuple[str, ...] = ()
    ) -> Gateway:
        """Start a gateway (gRPC on a free port, no REST unless ``extra`` names
        ``--http-port``); ``extra``: more of its command-line options."""
        gateway = Gateway(gateway_id, self.directory, env=env or {})
        self.nodes[gateway_id] = gateway
        gateway.status_file.unlink(missing_ok=True)
        log = open(self.directory / f"{gateway_id}.log", "ab")  # noqa: SIM115 - the child keeps it
        gateway.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyexchange.app.gateway",
                "--nats",
                ",".join(self.urls),
                "--gateway-id",
                gateway_id,
                "--keys",
                str(self.keys),
                *(() if "--http-port" in extra else ("--http-port", "-1")),
                "--status-file",
                str(gateway.status_file),
                *extra,
            ],
            cwd=self.directory,
            env={**os.environ, **gateway.env},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        return gateway

    def wait(self, gateway_id: str, timeout: float = 60) -> dict[str, Any]:
        gateway = self.nodes[gateway_id]

        def up() -> dict[str, Any] | None:
            assert gateway.process is not None
            if gateway.process.poll() is not None:
                raise AssertionError(f"gateway {gateway_id} exited:\n{self.log_tail()}")
            return gateway.endpoints()

        return wait_for(up, timeout, f"gateway {gateway_id}")

    def stop(self) -> None:
        for g in self.nodes.values():
            if g.process is not None and g.process.poll() is None:
                g.process.terminate()
        for g in self.nodes.values():
            if g.process is not None:
                try:
                    g.process.wait(10)
                except subprocess.TimeoutExpired:
                    g.process.kill()
                    g.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        out = []
        for gateway_id in self.nodes:
            path = self.directory / f"{gateway_id}.log"
            text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else []
            out.append(f"--- {gateway_id}\n" + "\n".join(text))
        return "\n".join(out)
