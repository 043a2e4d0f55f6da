"""SERVICE and FANOUT for the Polymarket US API: REST order entry at fixed rates, open loop, and
WebSocket fan-out to many subscribers.

    python -m bench.venue_load                         # create and create_many ladders, fan-out
    python -m bench.venue_load --quick                 # one low rate of each, 2 s
    python -m bench.venue_load --rates 1000,2000,4000 --batch-rates 5000,20000 --seconds 5
    python -m bench.venue_load --fanout-only --subscribers 100 --fanout-rate 1000

What runs (shared/BENCHMARKS.md, SERVICE and FANOUT):

- **The server**: ``python -m pyexchange serve`` in its own process, a fresh data
  directory, journal fsync per batch, the default engine capacities, market data and drop
  copy on (as ``serve`` has them), one market at the venue's rules (tick $0.01, whole
  contracts, the venue's fee coefficients on the PQ base), two funded accounts with an
  Ed25519 key each (rate limits far above the offered rates).
- **The load generator** (this module, ``--client``): two processes, one per account, each
  with ``--connections`` keep-alive HTTP/1.1 connections (requests pipelined on a busy
  connection), on uvloop, with request bytes built in advance (the signature does not
  cover the body: one signature per second of the run). Account A buys YES at $0.50,
  account B buys NO at $0.50: every order rests or trades against the other's (MINT), so
  the book stays small and the run exercises matching, fees, the drop copy and the order
  history. **Open loop**: order ``i`` is scheduled at ``start + i / rate``; a client sends
  every request whose time has come, waking at least 1 ms apart (uvloop's timer
  granularity: a shorter sleep would spin), so a request may leave up to ~1 ms after its
  time; **latency = response time - scheduled time**, so that wait and any stall of the
  server show in the latencies of every request scheduled during them.
- ``create``: ``POST /v1/orders``, one order a request. ``create_many``: ``POST
  /v1/orders/batched``, 20 orders a request (rates are in orders/s).
- **CPU**: of the server process and of the generator processes over each rate's
  measured window (``/proc``), per order and per request. The generator must cost less
  per request than the server.
- **Fan-out**: ``--subscribers`` WebSocket connections (one process, raw sockets, frames
  parsed by hand: cheap) subscribe to MARKET_DATA and TRADE of the market while the
  generator runs at ``--fanout-rate``; per trade frame, lag = arrival - the trade's
  ``tradeTime`` (the engine time of the command); frames/s out summed over subscribers.

Writes ``bench/results/venue-<timestamp>.json`` and ``.md`` and the pictures
``venue-<timestamp>-latency.png`` and ``-fanout.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from . import report

RESULTS = Path(__file__).resolve().parent / "results"
RATES = (500, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000)
BATCH_RATES = (2_000, 5_000, 10_000, 20_000, 30_000)
BATCH = 20
SLUG = "bench"
_TICK = os.sysconf("SC_CLK_TCK")
RUNAWAY_ACHIEVED = 0.95
RUNAWAY_P50_MS = 100.0  # p50, not p99: other tenants' stalls move the tail on a shared host


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def thread_cpu_seconds(pid: int, tid: int) -> float:
    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


# ------------------------------------------------------------------ the server


class Server:
    """``pyexchange serve`` in its own process; ``pythonpath``: a directory whose ``pyexchange``
    package the server imports instead of the installed one (a baseline, for before/after
    in one run; the engine, ``matchcore``, stays the installed one)."""

    def __init__(self, root: Path, pythonpath: str | None = None, fsync: str = "batch") -> None:
        self.root = root
        self.pythonpath = pythonpath
        self.fsync = fsync
        self.data_dir = root / "data"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.keys: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        catalogue = {
            "markets": [
                {
                    "market": 100,
                    "slug": SLUG,
                    "title": "Benchmark market",
                    "create": {"tick": "0.01", "min_size": "1", "lot": "1",
                               "taker_fee_bps": 695, "maker_fee_bps": -125, "fee_base": "PQ",
                               "open": True},
                }
            ]
        }  # fmt: skip
        (self.root / "catalogue.json").write_text(json.dumps(catalogue))
        config = {
            "demo_accounts": [1, 2],
            "demo_deposit": "1000000000",
            "demo_split": "",
            "venue_key_rate": 1e7,
            "venue_key_burst": 10_000_000,
            "http_address_rate": 1e7,
            "http_address_burst": 10_000_000,
            "catalogue_file": str(self.root / "catalogue.json"),
        }
        (self.root / "config.json").write_text(json.dumps(config))
        env = dict(os.environ)
        if self.pythonpath:
            env["PYTHONPATH"] = self.pythonpath
        log = open(self.root / "server.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pyexchange", "serve",
             "--config", str(self.root / "config.json"),
             "--data-dir", str(self.data_dir), "--port", "0", "--http-port", "0",
             "--metrics-port", "-1", "--fsync", self.fsync, "--log-level", "WARNING"],
            stdout=subprocess.DEVNULL, stderr=log, cwd=tempfile.gettempdir(), env=env,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        endpoint = self.data_dir / "server.json"
        while True:
            if self.process.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text()[-2000:])
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(endpoint.read_text())
                if info.get("pid") == self.process.pid and info.get("http"):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        self.url = info["http"]
        self.keys = {
            k["name"]: k for k in json.loads((self.data_dir / "keys.json").read_text())["keys"]
        }

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()


# ------------------------------------------------------------ the generator


@dataclass
class Job:
    url: str
    key_id: str
    secret: str
    intent: str
    rate: float  # requests/s of this client
    seconds: float
    offset: float  # this client's shift in the schedule (interleaving)
    connections: int
    batch: int  # orders per request (1: POST /v1/orders)


def _heads(job: Job, path: str, host: str, first_ms: int, count: int) -> list[bytes]:
    """The request heads of ``count`` milliseconds from ``first_ms``, signed in advance:
    what the SDK sends (``X-PM-Timestamp`` is the millisecond of the call, so calls of one
    path in one millisecond carry identical headers, spec §1.4). The body is not signed:
    every create is a new order even with the same bytes (the venue has no idempotency
    key, spec §1.8)."""
    from nacl.signing import SigningKey

    signer = SigningKey(base64.b64decode(job.secret)[:32])
    heads = []
    for stamp in range(first_ms, first_ms + count):
        signature = base64.b64encode(signer.sign(f"{stamp}POST{path}".encode()).signature)
        heads.append(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"X-PM-Access-Key: {job.key_id}\r\nX-PM-Timestamp: {stamp}\r\n"
            f"X-PM-Signature: {signature.decode()}\r\n".encode()
        )
    return heads


def _body(job: Job) -> bytes:
    order = {
        "marketSlug": SLUG,
        "intent": job.intent,
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": "0.50", "currency": "USD"},
        "quantity": 1,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
    }
    if job.batch == 1:
        return json.dumps(order, separators=(",", ":")).encode()
    return json.dumps({"orders": [order] * job.batch}, separators=(",", ":")).encode()


class _Connection(asyncio.Protocol):
    def __init__(self, done: Any) -> None:
        import httptools

        self.transport: Any = None
        self.pending: list[float] = []  # scheduled times of the requests in flight, in order
        self.done = done
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        self.done(self.pending.pop(0), self.parser.get_status_code())


def run_client(job: Job, queue: Any, go: Any) -> None:
    """One generator process (uvloop): sign the heads in advance, say ready, wait for the
    start time, send at the scheduled times, record latencies."""
    import uvloop

    async def main() -> dict[str, Any]:
        host_port = job.url.removeprefix("http://")
        host, port = host_port.split(":")
        path = "/v1/orders" if job.batch == 1 else "/v1/orders/batched"
        body = _body(job)
        tail = f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        latencies = np.zeros(int(job.rate * job.seconds) + 16, dtype=np.int64)
        statuses: dict[int, int] = {}
        count = {"done": 0}
        loop = asyncio.get_running_loop()

        def done(scheduled: float, status: int) -> None:
            i = count["done"]
            if i < len(latencies):
                latencies[i] = int((time.time() - scheduled) * 1e9)
            count["done"] = i + 1
            statuses[status] = statuses.get(status, 0) + 1

        # the schedule starts within seconds of the signing: sign every millisecond it spans
        first_ms = int(time.time() * 1000)
        signing = time.process_time()
        heads = _heads(job, path, host_port, first_ms, 1)  # how long one takes here
        per_head = time.process_time() - signing
        span_ms = int((job.seconds + 10 + 3 * per_head * job.seconds * 1000) * 1000)
        heads = _heads(job, path, host_port, first_ms, span_ms)
        signing = time.process_time() - signing
        connections = []  # after the signing: an idle connection is closed after 10 s
        for _ in range(job.connections):
            _, protocol = await loop.create_connection(lambda: _Connection(done), host, int(port))
            connections.append(protocol)
        queue.put("ready")
        start_at = go.get()
        total = int(job.rate * job.seconds)
        sent = 0
        cpu0 = time.process_time()
        while sent < total:
            now = time.time()
            due = min(total, int((now - start_at - job.offset) * job.rate) + 1)
            while sent < due:
                scheduled = start_at + job.offset + sent / job.rate
                connection = connections[sent % len(connections)]
                connection.pending.append(scheduled)
                head = heads[min(int(scheduled * 1000) - first_ms, span_ms - 1)]
                connection.transport.write(head + tail)
                sent += 1
            # at least 1 ms: uvloop's timers count whole milliseconds and round a shorter
            # sleep to 0, a busy spin (from 2,000 requests/s a client, where the gap between
            # two sends is 0.5 ms, the generators took both cores from the server)
            await asyncio.sleep(max(0.001, start_at + job.offset + sent / job.rate - time.time()))
        deadline = time.time() + 30
        while count["done"] < total and time.time() < deadline:
            await asyncio.sleep(0.005)
        cpu = time.process_time() - cpu0
        for c in connections:
            c.transport.close()
        return {
            "latencies_ns": latencies[: min(count["done"], total)].tolist(),
            "sent": total,
            "answered": count["done"],
            "statuses": statuses,
            "cpu_s": cpu,
            # the heads this run used: one per millisecond of its schedule (at most)
            "signing_cpu_s": signing / span_ms * min(total, job.seconds * 1000),
            "end": time.time(),
        }

    queue.put(uvloop.run(main()))


def measure(
    server: Server,
    rate: float,
    seconds: float,
    batch: int,
    connections: int,
    on_start: Any = None,
) -> dict:
    """One rate (orders/s over both clients), open loop."""
    keys = (server.keys["pm-trader-1"], server.keys["pm-trader-2"])
    intents = ("ORDER_INTENT_BUY_LONG", "ORDER_INTENT_BUY_SHORT")
    requests_per_s = rate / batch / 2  # per client
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    jobs = [
        Job(server.url, k["key_id"], k["secret"], intent, requests_per_s, seconds,
            i / (2 * requests_per_s), connections, batch)
        for i, (k, intent) in enumerate(zip(keys, intents, strict=True))
    ]  # fmt: skip
    gos = [ctx.Queue() for _ in jobs]
    procs = [
        ctx.Process(target=run_client, args=(job, queue, go))
        for job, go in zip(jobs, gos, strict=True)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        assert queue.get(timeout=120) == "ready"
    load_before = os.getloadavg()
    start_at = time.time() + 0.2
    for go in gos:
        go.put(start_at)
    time.sleep(max(0.0, start_at - time.time()))
    if on_start is not None:
        on_start()
    pid = server.process.pid  # type: ignore[union-attr]
    server_cpu0, main_cpu0 = cpu_seconds(pid), thread_cpu_seconds(pid, pid)
    wall0 = time.time()
    results = [queue.get(timeout=seconds + 120) for _ in procs]
    wall = max(r["end"] for r in results) - wall0
    server_cpu = cpu_seconds(pid) - server_cpu0
    main_cpu = thread_cpu_seconds(pid, pid) - main_cpu0
    for p in procs:
        p.join(10)
    latencies = np.concatenate([np.asarray(r["latencies_ns"], dtype=np.int64) for r in results])
    answered = sum(r["answered"] for r in results)
    sent = sum(r["sent"] for r in results)
    statuses: dict[str, int] = {}
    for r in results:
        for code, n in r["statuses"].items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    orders = answered * batch
    pct = np.percentile(latencies, [50, 90, 99, 99.9]) / 1e6 if len(latencies) else [0] * 4
    return {
        "api": "create" if batch == 1 else "create_many",
        "offered": rate,
        "achieved": orders / wall if wall > 0 else 0.0,
        "requests": sent,
        "answered": answered,
        "statuses": statuses,
        "p50_ms": float(pct[0]),
        "p90_ms": float(pct[1]),
        "p99_ms": float(pct[2]),
        "p999_ms": float(pct[3]),
        "max_ms": float(latencies.max() / 1e6) if len(latencies) else 0.0,
        "server_cpu_us_per_order": server_cpu / max(orders, 1) * 1e6,
        # the event loop's thread (HTTP, auth, handlers, feeds' loop side) and the rest
        # (sequencer and journal, drop copy writer, market data wake-ups)
        "server_main_us_per_order": main_cpu / max(orders, 1) * 1e6,
        "server_other_us_per_order": (server_cpu - main_cpu) / max(orders, 1) * 1e6,
        "signing_cpu_us_per_request": sum(r["signing_cpu_s"] for r in results)
        / max(answered, 1)
        * 1e6,
        "server_cores": server_cpu / wall if wall > 0 else 0.0,
        "client_cpu_us_per_request": sum(r["cpu_s"] for r in results) / max(answered, 1) * 1e6,
        "server_cpu_us_per_request": server_cpu / max(answered, 1) * 1e6,
        "load_before": load_before,
        "load_after": os.getloadavg(),
    }


def ladder(
    server: Server, rates: Any, seconds: float, batch: int, connections: int, variant: str = ""
) -> list:
    rows = []
    for rate in rates:
        row = measure(server, rate, seconds, batch, connections)
        row["variant"] = variant
        rows.append(row)
        print(_row(row), flush=True)
        if row["achieved"] < RUNAWAY_ACHIEVED * rate or row["p50_ms"] > RUNAWAY_P50_MS:
            break  # latency ran away: no higher rate
    return rows


# ------------------------------------------------------------------- fan-out


def _ws_connect(url: str, key: dict[str, Any], slug: str) -> socket.socket:
    """A raw WebSocket client: the handshake, one subscription per type, then read only."""
    from nacl.signing import SigningKey

    host, port = url.removeprefix("http://").split(":")
    path = "/v1/ws/markets"
    stamp = str(int(time.time() * 1000))
    seed = base64.b64decode(key["secret"])[:32]
    signature = base64.b64encode(SigningKey(seed).sign(f"{stamp}GET{path}".encode()).signature)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            f"Sec-WebSocket-Version: 13\r\nX-PM-Access-Key: {key['key_id']}\r\n"
            f"X-PM-Timestamp: {stamp}\r\nX-PM-Signature: {signature.decode()}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise RuntimeError(head[:200])
    for rid, kind in (("md", "SUBSCRIPTION_TYPE_MARKET_DATA"), ("tr", "SUBSCRIPTION_TYPE_TRADE")):
        payload = json.dumps(
            {"subscribe": {"requestId": rid, "subscriptionType": kind, "marketSlugs": [slug]}}
        ).encode()
        mask = b"\x00\x00\x00\x00"  # a client must mask; a zero mask leaves the bytes as they are
        sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + payload)
    sock.setblocking(False)
    return sock


class _Frames(asyncio.Protocol):
    """Server frames of one subscriber (unmasked): counts the text frames, times the trade
    frames, answers pings (the server closes a client that does not pong within 40 s)."""

    def __init__(self, stats: dict[str, Any]) -> None:
        self.buffer = bytearray()
        self.stats = stats
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        now = time.time()
        while len(buffer) >= 2:
            length = buffer[1] & 0x7F
            start = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                return
            opcode = buffer[0] & 0x0F
            frame = bytes(buffer[start : start + length])
            del buffer[: start + length]
            if opcode == 0x9:  # ping: a pong with its payload (masked, a zero mask)
                self.transport.write(bytes([0x8A, 0x80 | len(frame)]) + bytes(4) + frame)
                continue
            if opcode != 0x1:
                continue
            self.stats["frames"] += 1
            at = frame.find(b'"tradeTime":"')
            if at >= 0:
                text = frame[at + 13 : at + 43].decode()
                stamp = _parse_time(text)
                self.stats["lags"].append(now - stamp)


def _parse_time(text: str) -> float:
    whole, _, rest = text.partition(".")
    nanos = rest.rstrip("Z")
    base = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC).timestamp()
    return base + int(nanos.ljust(9, "0")[:9]) / 1e9


def run_subscribers(
    url: str, key: dict[str, Any], count: int, seconds: float, queue: Any, go: Any
) -> None:
    import uvloop

    async def main() -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        stats: dict[str, Any] = {"frames": 0, "lags": []}
        sockets = [_ws_connect(url, key, SLUG) for _ in range(count)]
        transports = []
        for sock in sockets:
            transport, _ = await loop.connect_accepted_socket(lambda: _Frames(stats), sock=sock)
            transports.append(transport)
        queue.put("ready")
        await asyncio.sleep(1.0)  # the initial book frames
        await loop.run_in_executor(None, go.get)  # the order flow starts
        frames0, cpu0, t0 = stats["frames"], time.process_time(), time.time()
        stats["lags"].clear()
        await asyncio.sleep(seconds)
        frames, cpu, wall = stats["frames"] - frames0, time.process_time() - cpu0, time.time() - t0
        for transport in transports:
            transport.close()
        lags = np.asarray(stats["lags"]) * 1e3
        return {
            "subscribers": count,
            "frames": frames,
            "frames_per_s": frames / wall,
            "trade_frames": len(lags),
            "lag_p50_ms": float(np.percentile(lags, 50)) if len(lags) else None,
            "lag_p99_ms": float(np.percentile(lags, 99)) if len(lags) else None,
            "lag_max_ms": float(lags.max()) if len(lags) else None,
            "subscriber_cpu_us_per_frame": cpu / max(frames, 1) * 1e6,
            "lags_ms": np.sort(lags)[:: max(1, len(lags) // 20_000)].tolist(),  # for the picture
        }

    queue.put(uvloop.run(main()))


def fanout(server: Server, subscribers: int, rate: float, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue, go = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(
        target=run_subscribers,
        args=(server.url, server.keys["pm-trader-1"], subscribers, seconds, queue, go),
    )
    proc.start()
    assert queue.get(timeout=60) == "ready"
    load = measure(server, rate, seconds + 1.0, 1, 4, on_start=lambda: go.put(True))
    result = queue.get(timeout=seconds + 120)
    proc.join(10)
    result["order_rate"] = rate
    result["orders_p99_ms"] = load["p99_ms"]
    result["server_cores"] = load["server_cores"]
    return result


# ------------------------------------------------------------------- report


def _row(r: dict[str, Any]) -> str:
    return (
        f"| {r.get('variant') or '-'} | {r['api']} | {r['offered']:,.0f} | {r['achieved']:,.0f} | "
        f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | {r['max_ms']:.1f} | "
        f"{r['server_cpu_us_per_order']:.0f} | {r['server_main_us_per_order']:.0f} | "
        f"{r['server_other_us_per_order']:.0f} | {r['server_cores']:.2f} | "
        f"{r['server_cpu_us_per_request']:.0f} | {r['client_cpu_us_per_request']:.0f} | "
        f"{r['signing_cpu_us_per_request']:.0f} |"
    )


HEADER = (
    "| server | API | offered orders/s | achieved | p50 ms | p99 ms | p99.9 ms | max ms | "
    "server CPU µs/order | of which loop thread | other threads | server cores | "
    "server CPU µs/request | generator CPU µs/request | signing µs/request |\n"
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
)


def _plots(stamp: str, rows: list[dict[str, Any]], fan: dict[str, Any] | None) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    if rows:  # none on a fan-out-only run
        fig, ax = plt.subplots(figsize=(7, 4.5))
        variants = list(dict.fromkeys(r.get("variant", "") for r in rows))
        for variant in variants:
            for api, marker in (("create", "o"), ("create_many", "s")):
                mine = [r for r in rows if r["api"] == api and r.get("variant", "") == variant]
                if not mine:
                    continue
                name = f"{variant} {api}".strip()
                line = ax.plot([r["offered"] for r in mine], [r["p99_ms"] for r in mine],
                               marker=marker, label=f"{name} p99")  # fmt: skip
                ax.plot([r["offered"] for r in mine], [r["p50_ms"] for r in mine], marker=marker,
                        linestyle="--", color=line[0].get_color(), label=f"{name} p50")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered orders/s (open loop)")
        ax.set_ylabel("latency from the scheduled time, ms")
        ax.axhline(10, color="grey", linewidth=0.8)
        ax.set_title("Polymarket US API: order entry latency vs offered rate")
        ax.legend()
        path = RESULTS / f"venue-{stamp}-latency.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path.name)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for variant in variants:
            for api, marker in (("create", "o"), ("create_many", "s")):
                mine = [r for r in rows if r["api"] == api and r.get("variant", "") == variant]
                if not mine:
                    continue
                name = f"{variant} {api}".strip()
                x = [r["offered"] for r in mine]
                line = ax.plot(x, [r["server_cpu_us_per_order"] for r in mine], marker=marker,
                               label=f"{name}: server")  # fmt: skip
                ax.plot(x, [r["server_main_us_per_order"] for r in mine], marker=marker,
                        linestyle="--", color=line[0].get_color(),
                        label=f"{name}: its loop thread")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered orders/s (open loop)")
        ax.set_ylabel("server CPU per order, µs")
        ax.set_title("Polymarket US API: server CPU per order")
        ax.legend(fontsize="small")
        path = RESULTS / f"venue-{stamp}-cpu.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path.name)
    if fan is not None and fan.get("lags_ms"):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        lags = np.sort(np.asarray(fan["lags_ms"]))
        ax.plot(lags, np.linspace(0, 1, len(lags)))
        ax.set_xscale("log")
        ax.set_xlabel("trade frame lag, ms (arrival - engine time)")
        ax.set_ylabel("fraction of frames")
        ax.set_title(f"WebSocket fan-out to {fan['subscribers']} subscribers")
        path = RESULTS / f"venue-{stamp}-fanout.png"
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)
        written.append(path.name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rates", default=",".join(map(str, RATES)))
    parser.add_argument("--batch-rates", default=",".join(map(str, BATCH_RATES)))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8, help="per generator process")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--fanout-rate", type=float, default=1_000.0)
    parser.add_argument("--fanout-only", action="store_true")
    parser.add_argument("--no-fanout", action="store_true")
    parser.add_argument("--quick", action="store_true", help="one low rate of each, 2 s")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run a server importing pyexchange from DIR (e.g. a `git archive` of an "
        "older commit): the ladders alternate, baseline then this tree",
    )
    parser.add_argument(
        "--candidate",
        metavar="DIR",
        help="the server imports pyexchange from DIR instead of the installed package",
    )
    parser.add_argument("--repeat", type=int, default=1, help="ladders per server variant")
    parser.add_argument(
        "--fsync",
        default="batch",
        choices=("batch", "interval", "none"),
        help="the server's journal fsync policy (batch: every batch, the default of serve)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rates, args.batch_rates, args.seconds = "300", "1000", 2.0
        args.subscribers, args.fanout_rate = 10, 200.0
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    machine = report.machine(sys.argv)
    rows: list[dict[str, Any]] = []
    fan = None
    variants = [("", args.candidate)]
    if args.baseline:  # before/after in one run: the ladders alternate, baseline first
        variants = [("baseline", args.baseline), ("this", args.candidate)]
    print(f"load {os.getloadavg()}")
    print(HEADER)
    for _ in range(args.repeat):
        for name, pythonpath in variants:
            if args.fanout_only:
                break
            with tempfile.TemporaryDirectory() as tmp:
                server = Server(Path(tmp), pythonpath, args.fsync)
                server.start()
                try:
                    rates = [float(r) for r in args.rates.split(",") if r]
                    batch_rates = [float(r) for r in args.batch_rates.split(",") if r]
                    rows += ladder(server, rates, args.seconds, 1, args.connections, name)
                    rows += ladder(server, batch_rates, args.seconds, BATCH, args.connections, name)
                finally:
                    server.stop()
    if not args.no_fanout:
        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), fsync=args.fsync)
            server.start()
            try:
                fan = fanout(server, args.subscribers, args.fanout_rate, args.seconds)
            finally:
                server.stop()
        print(
            f"\nfan-out: {fan['subscribers']} subscribers, {fan['order_rate']:,.0f} "
            f"orders/s: {fan['frames_per_s']:,.0f} frames/s out, trade-frame lag "
            f"p50 {fan['lag_p50_ms']} ms p99 {fan['lag_p99_ms']} ms, subscriber CPU "
            f"{fan['subscriber_cpu_us_per_frame']:.1f} µs/frame, server "
            f"{fan['server_cores']:.2f} cores"
        )
    doc = {"machine": machine, "rows": rows, "fanout": fan}
    (RESULTS / f"venue-{stamp}.json").write_text(json.dumps(doc, indent=1, default=str))
    pictures = _plots(stamp, rows, fan)
    md = [f"`{machine.get('command')}`, commit {machine.get('git_commit')}", HEADER]
    md += map(_row, rows)
    (RESULTS / f"venue-{stamp}.md").write_text("\n".join(md) + "\n")
    print(f"\nwrote bench/results/venue-{stamp}.json, .md, {', '.join(pictures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
