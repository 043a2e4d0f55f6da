"""SERVICE: the running gRPC exchange under open-loop load, over loopback.

    python -m bench.service_load                       # stream and unary ladders, 4 clients
    python -m bench.service_load --quick               # a few seconds: one low rate
    python -m bench.service_load --rates 1000,2000,5000 --clients 4 --seconds 5
    python -m bench.service_load --api stream --profile py-spy
    python -m bench.service_load --switch-interval 0.0005   # experiment: the server's GIL
    python -m bench.service_load --baseline DIR --repeat 2  # before/after in one run

What runs (shared/BENCHMARKS.md, SERVICE):

- **The server** is the real one: ``python -m pyexchange serve`` as a subprocess on
  a free loopback port, a temporary data directory, journal fsync per batch
  (``--fsync``), Prometheus metrics on a free port (read before and after each
  rate), market data and drop copy publishers on as ``serve`` has them. Its first
  start creates ``--markets`` open markets (tick $0.01, lot 1 share) and one funded
  account per client ($100 M, 1,000,000 YES+NO pairs per market), and loads an API
  key per account (rate limit far above the offered rates).
- **The clients** are ``--clients`` processes (multiprocessing, spawn), each with
  one ``grpc.aio`` channel, its own account and key, kept for the whole run. Each
  first places ``--book`` resting orders, so the book holds about
  ``clients x book`` orders over 4 markets x 40 price levels, and keeps it there.
- **Open loop.** At a total offered rate R, command ``i`` of client ``k`` of ``N``
  is scheduled at ``start + (i*N + k) / R``: the clients interleave. A client sends
  every command whose time has come (at once if it is late) and sleeps until the
  next one (a timer thread wakes the loop: asyncio's own timers round up to 1 ms).
  **Latency = the time its reply arrives - its scheduled time**, so a stall of the
  server, of gRPC or of the client itself delays every command scheduled during it
  and shows in their latencies. The time the client actually sent it is recorded
  too (send lag) to tell the client's lateness from the server's.
- **The mix** (decided when sent, from the client's model of its own resting
  orders): below 90% of the book target a resting place; above 110% a cancel;
  otherwise 30% resting places (GTC limits 1..20 ticks from the $0.50 mid, skewed
  to the touch, 1..20 shares), 10% crossing IOC orders (1..5 shares through 5
  ticks of the other side, trading with any client's orders), 30% cancels, 30%
  replaces (same side, new price). Engine rejects (a cancel or replace of an order
  another client's IOC already filled, self-trade prevention) are counted by
  reason: they are answers like any other.
- **APIs**: ``stream`` (the ``OrderStream`` bidirectional stream, one per client,
  pipelined: one request per message), ``unary`` (one signed
  ``PlaceOrder``/``CancelOrder``/``ReplaceOrder`` call per command, each in its own
  task), ``batch`` (``OrderEntryBatch.OrderBatchStream``, pyexchange/api/grpc/batch.py: at
  each wake-up a client puts every command that is due, at most 256, in one
  message; at low rates that is one command, under load it grows by itself;
  ``--batch-interval-ms`` makes each client send at most one message that often,
  as a client that batches on purpose would).
- **Each rate** runs ``--seconds`` of schedule, then waits for the outstanding
  replies (``--drain`` seconds at most: a command still unanswered then is an
  error, recorded in the histogram at the drain deadline). The ladder of each API
  stops after the first rate whose achieved rate is below 90% of the offered one.

**Sustained** (the criterion of the "highest sustained rate"): achieved rate at
least 98% of offered, p99 latency (from the scheduled time) at most 10 ms, and
errors (refused requests, failed calls, unanswered commands) at most 0.1% of
commands. The issue's aim (p99 under 1 ms at 20,000 orders/s) is checked and
reported separately.

**Where the time goes**: per rate, the CPU time of the server process, of the
client processes, of interrupts (loopback TCP is mostly processed in softirq)
and of everything else on the machine, naming the other busy processes
(``/proc``: the two cores are shared, and the clients compete with the server
for them); the server's batch sizes and its own submit-to-answer latency
(Prometheus); the sequencer's cycle and the engine core's busy time: after the
run the journal is replayed through ``Engine.process`` with the very batches
the sequencer formed, each call timed, and the sum over a rate's batches is
divided by the rate's wall time. With py-spy installed (``--profile``), one
more run at each streaming API's highest sustained rate is sampled by
``py-spy record --threads --idle`` (each Python thread's wall time sorted into
what it was doing) while ``/proc/PID/task`` gives the CPU of every server
thread, gRPC's native ones included. Every rate gives the server's CPU per order by
thread, under the Python names of its threads (learnt once with ``py-spy dump`` when
installed: the OS calls them all ``python``).

**Before/after**: ``--baseline DIR`` runs a server importing pyexchange and matchcore
from ``DIR`` (e.g. a copy of an older build's installed packages) and this build's,
alternately, ``--repeat`` times each, baseline first; rows are labelled before / after.

Writes ``bench/results/service-<timestamp>.json`` and ``.md`` and a
latency-vs-rate picture ``service-<timestamp>-latency.png``, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from . import hdr, report

NS = 1_000_000_000
RESULTS = Path(__file__).resolve().parent / "results"
RATES = (1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 15_000, 20_000)
QUICK_RATES = (300,)
QUICK_APIS = ("stream", "batch")
APIS = ("stream", "unary", "batch")
MAX_BATCH = 256  # requests per OrderBatch message at most

SUSTAINED_ACHIEVED = 0.98
SUSTAINED_P99_NS = 10_000_000
SUSTAINED_ERRORS = 0.001
AIM_RATE = 20_000
AIM_P99_NS = 1_000_000
STOP_BELOW = 0.90  # the ladder stops after a rate achieving less than this share of offered

MID_TICK = 50  # $0.50 on a $0.01 tick
MAX_DEPTH = 20  # resting orders sit 1..20 ticks from the mid
CROSS_TICKS = 5  # a crossing IOC reaches 5 ticks into the other side
LEAD_NS = 300_000_000  # the first command of a rate is scheduled this long after the order to go
KINDS = ("place", "cross", "cancel", "replace")
PLACE, CROSS, CANCEL, REPLACE = range(4)


# ------------------------------------------------------------------ the server


@dataclass
class Setup:
    """What the server is started with and what the clients do."""

    clients: int = 4
    markets: int = 4
    book: int = 250  # resting orders each client keeps
    fsync: str = "batch"
    seconds: float = 5.0
    drain: float = 10.0
    seed: int = 1
    switch_interval: float | None = None  # the server's sys.setswitchinterval (None: Python's)
    batch_interval_ms: float = 0.0  # batch API: at most one message per client this often
    server_path: str | None = None  # PYTHONPATH of the server only (--baseline: another build)


class ServerProcess:
    """``python -m pyexchange serve`` on a free loopback port and a fresh data directory."""

    def __init__(self, data_dir: Path, setup: Setup) -> None:
        self.data_dir = data_dir
        self.setup = setup
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.metrics_port: int | None = None
        self.banner: list[str] = []
        self.stderr_path = data_dir.parent / "server-stderr.log"

    @property
    def accounts(self) -> list[int]:
        return list(range(1, self.setup.clients + 1))

    def key_id(self, account: int) -> str:
        return f"load-{account}"

    def secret(self, account: int) -> str:
        """Each key its own secret: a signature covers timestamp, method and body, not
        the key, so two keys sharing a secret would sign alike and look like replays."""
        if not hasattr(self, "_secrets"):
            import secrets

            self._secrets = {a: secrets.token_hex(16) for a in self.accounts}
        return self._secrets[account]

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keys = [
            {
                "key_id": self.key_id(a),
                "secret": self.secret(a),
                "permissions": ["trade", "read"],
                "accounts": [a],
                "rate": 1e7,  # the token bucket is never what limits a load client
                "burst": 10_000_000,
                "name": f"load-{a}",
            }
            for a in self.accounts
        ]
        keys_path = self.data_dir / "keys.json"
        keys_path.write_text(json.dumps({"keys": keys}))
        keys_path.chmod(0o600)
        config = {
            "data_dir": str(self.data_dir),
            "host": "127.0.0.1",
            "port": 0,
            "metrics_port": 0,
            "http_port": None,
            "fsync": self.setup.fsync,
            "demo_accounts": self.accounts,
            "demo_deposit": "100000000",
            "demo_split": "1000000",
            "demo_markets": [
                {"market": m, "tick": "0.01", "min_size": "1", "lot": "1"}
                for m in range(1, self.setup.markets + 1)
            ],
        }
        path = self.data_dir.parent / "server-config.json"
        path.write_text(json.dumps(config, indent=2))
        return path

    def start(self, timeout: float = 60.0) -> None:
        config = self.write_config()
        serve = ["serve", "--config", str(config), "--log-level", "WARNING"]
        command = [sys.executable, "-m", "pyexchange", *serve]
        if self.setup.switch_interval is not None:  # an experiment: the GIL's switch interval
            code = (
                f"import sys; sys.setswitchinterval({self.setup.switch_interval!r}); "
                f"from pyexchange.app.cli import main; sys.exit(main({serve!r}))"
            )
            command = [sys.executable, "-c", code]
        self.command = command
        stderr = open(self.stderr_path, "w", encoding="utf-8")  # noqa: SIM115 (the child owns it)
        env = None
        if self.setup.server_path:  # a baseline build of pyexchange for the server only
            env = {**os.environ, "PYTHONPATH": self.setup.server_path}
        self.proc = subprocess.Popen(
            _with_parent_death_signal(command),
            env=env,
            cwd=self.data_dir.parent,  # outside the repository: the installed packages
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            bufsize=1,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                try:
                    code: int | None = self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    code = None
                raise RuntimeError(
                    f"the server closed its stdout at start (exit code {code}): "
                    f"{self.stderr_tail()}"
                )
            self.banner.append(line.rstrip())
            if m := re.search(r"listening on [\d.]+:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.search(r"metrics\s+http://[\d.]+:(\d+)/", line):
                self.metrics_port = int(m.group(1))
            if line.lstrip().startswith("client"):  # the banner's last line
                return
        raise RuntimeError("the server did not print its banner in time")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stderr_tail(self, lines: int = 20) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def errors_logged(self) -> list[str]:
        """Log lines at ERROR or above (JSON lines on stderr)."""
        out = []
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("level") in ("ERROR", "CRITICAL"):
                out.append(str(entry.get("message", ""))[:200])
        return out

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """Every sample of ``/metrics``: (name, labels) -> value; empty without metrics."""
        if not self.metrics_port:
            return {}
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
        except OSError:
            return {}
        samples = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (a clean shutdown: snapshot, drain, close the journal); its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return self.proc.returncode


def _with_parent_death_signal(command: list[str]) -> list[str]:
    """The server SIGTERMed if the benchmark dies (PR_SET_PDEATHSIG), set by ``setpriv``
    rather than a ``preexec_fn``: a preexec_fn makes Popen fork() instead of vfork(),
    which runs gRPC's fork handlers in the child; they restart gRPC's poller there,
    subprocess closes its epoll descriptor before exec, and the child aborts with
    ``epoll_wait error: Bad file descriptor`` (grpc/grpc#43055; seen in CI)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "TERM", *command] if setpriv else command


def fdatasync_floor(directory: Path, count: int = 500) -> dict[str, Any]:
    """What one ``fdatasync`` of a small append costs in the data directory's file system."""
    path = directory / "fdatasync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    times = np.zeros(count, dtype=np.int64)
    try:
        block = b"\0" * 1024
        for i in range(count):
            os.write(fd, block)
            t = perf_counter_ns()
            os.fdatasync(fd)
            times[i] = perf_counter_ns() - t
    finally:
        os.close(fd)
        path.unlink()
    out = hdr.summary(hdr.histogram(times))
    out["what"] = f"{count} fdatasync calls after 1 KiB appends, data directory's file system"
    return out


# ------------------------------------------------------------------ the clients


class Ticker:
    """Wakes the asyncio loop at a ``perf_counter_ns`` time from a thread.

    asyncio's timers go through ``epoll_wait``, whose timeout is whole
    milliseconds: a sender sleeping on them would send up to 1 ms late. This
    thread sleeps with ``time.sleep`` (clock_nanosleep, ~0.1 ms slack) and
    resolves a future on the loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._cv = threading.Condition()
        self._target: int | None = None
        self._future: asyncio.Future[None] | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ticker", daemon=True)
        self._thread.start()

    def wait_until(self, t_ns: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = self.loop.create_future()
        with self._cv:
            self._target, self._future = t_ns, future
            self._cv.notify()
        return future

    @staticmethod
    def _wake(future: asyncio.Future[None]) -> None:
        if not future.done():
            future.set_result(None)

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._target is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                target, future = self._target, self._future
                self._target = None
            delay = target - perf_counter_ns()
            if delay > 0:
                time.sleep(delay / NS)
            self.loop.call_soon_threadsafe(self._wake, future)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()


class OwnBook:
    """A client's model of its resting orders: O(1) add, remove and random pick."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.where: dict[int, int] = {}
        self.info: dict[int, tuple[int, bool]] = {}  # order id -> (market, bid)

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, order_id: int, market: int, bid: bool) -> None:
        if order_id in self.where:
            return
        self.where[order_id] = len(self.ids)
        self.ids.append(order_id)
        self.info[order_id] = (market, bid)

    def remove(self, order_id: int) -> None:
        i = self.where.pop(order_id, None)
        if i is None:
            return
        last = self.ids.pop()
        if last != order_id:
            self.ids[i] = last
            self.where[last] = i
        del self.info[order_id]

    def pick(self, rng: random.Random) -> int:
        return self.ids[int(rng.random() * len(self.ids))]


class Mix:
    """The command mix of one client (see the module docstring)."""

    def __init__(self, pb: Any, account: int, markets: int, target: int, seed: int) -> None:
        self.pb = pb
        self.account = account
        self.markets = markets
        self.target = target
        self.rng = random.Random(seed)
        self.book = OwnBook()
        self.pending_places = 0
        self.prices = [f"0.{t:02d}" for t in range(100)]
        self.sizes = [str(q) for q in range(21)]

    def _depth(self) -> int:
        return min(MAX_DEPTH, 1 + int(self.rng.expovariate(1 / 5)))

    def next(self) -> tuple[int, str, Any, Any]:
        """(kind, request field, request message, what to remember until the reply)."""
        pb, rng = self.pb, self.rng
        live = len(self.book) + self.pending_places
        if live < 0.9 * self.target or not len(self.book):
            kind = PLACE
        elif live > 1.1 * self.target:
            kind = CANCEL
        else:
            r = rng.random()
            kind = CROSS if r < 0.10 else PLACE if r < 0.40 else CANCEL if r < 0.70 else REPLACE
        if kind == PLACE:
            market = 1 + int(rng.random() * self.markets)
            bid = rng.random() < 0.5
            tick = MID_TICK - self._depth() if bid else MID_TICK + self._depth()
            request = pb.PlaceOrderRequest(
                account=self.account,
                market=market,
                intent=pb.BUY_YES if bid else pb.SELL_YES,
                price=self.prices[tick],
                quantity=self.sizes[1 + int(rng.random() * 20)],
            )
            self.pending_places += 1
            return kind, "place", request, (market, bid)
        if kind == CROSS:
            market = 1 + int(rng.random() * self.markets)
            buy = rng.random() < 0.5
            tick = MID_TICK + CROSS_TICKS if buy else MID_TICK - CROSS_TICKS
            request = pb.PlaceOrderRequest(
                account=self.account,
                market=market,
                intent=pb.BUY_YES if buy else pb.SELL_YES,
                price=self.prices[tick],
                quantity=self.sizes[1 + int(rng.random() * 5)],
                time_in_force=pb.IOC,
            )
            return kind, "place", request, None
        order_id = self.book.pick(rng)
        if kind == CANCEL:
            self.book.remove(order_id)  # gone for the model as soon as it is asked
            return (
                kind,
                "cancel",
                pb.CancelOrderRequest(account=self.account, order_id=order_id),
                None,
            )
        _market, bid = self.book.info[order_id]
        tick = MID_TICK - self._depth() if bid else MID_TICK + self._depth()
        request = pb.ReplaceOrderRequest(
            account=self.account, order_id=order_id, price=self.prices[tick]
        )
        return kind, "replace", request, order_id

    def answered(self, kind: int, memo: Any, reply: Any | None) -> None:
        """Update the model from a reply (None: the request never reached the engine)."""
        pb = self.pb
        if kind == PLACE:
            self.pending_places -= 1
            if reply is not None and reply.status == pb.RESTING:
                self.book.add(reply.order_id, *memo)
        elif kind == REPLACE and (reply is None or reply.status != pb.RESTING):
            self.book.remove(memo)


@dataclass
class RunSpec:
    run_id: int
    api: str
    rate: float  # total offered rate of all clients
    clients: int
    start_ns: int  # scheduled time of the first command (perf_counter_ns, CLOCK_MONOTONIC)
    seconds: float
    drain: float
    record: bool = True


class Client:
    """One client process: a channel, a stream, a model of its orders; runs rates on request."""

    def __init__(
        self, index: int, target: str, key_id: str, secret: str, account: int, setup: Setup
    ) -> None:
        import grpc

        from pyexchange.api.grpc import exchange_pb2 as pb
        from pyexchange.api.grpc import exchange_pb2_grpc as pb_grpc
        from pyexchange.api.grpc.client import ExchangeClient

        self.grpc = grpc
        self.pb = pb
        self.index = index
        self.account = account
        self.setup = setup
        self.client = ExchangeClient(target, key_id, secret, timeout=60.0)
        self.stub = pb_grpc.OrderEntryStub(self.client.channel)
        self.mix = Mix(pb, account, setup.markets, setup.book, setup.seed * 1000 + index)
        self.call: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.loop = asyncio.get_running_loop()
        self.ticker = Ticker(self.loop)
        # correlation id -> (index in the run or -1, kind, memo, future of a closed-loop call)
        self.waiting: dict[int, tuple[int, int, Any, asyncio.Future[None] | None]] = {}
        self.run: _RunState | None = None
        self.stream_errors: dict[str, str | None] = {"stream": None, "batch": None, "unary": None}
        self.batch_call: Any = None
        self.batch_reader: asyncio.Task[None] | None = None
        self.next_cid = 1

    # -------------------------------------------------------------- the stream

    async def open_stream(self) -> None:
        metadata = self.client.sign("/pyexchange.v1.OrderEntry/OrderStream", None)
        self.call = self.stub.OrderStream(metadata=metadata)
        self.reader = asyncio.create_task(self._read("stream", self.call, single=True))

    async def open_batch_stream(self) -> None:
        from pyexchange.api.grpc import batch_pb2 as bpb
        from pyexchange.api.grpc import batch_pb2_grpc as bpb_grpc

        self.bpb = bpb
        stub = bpb_grpc.OrderEntryBatchStub(self.client.channel)
        metadata = self.client.sign("/pyexchange.v1.OrderEntryBatch/OrderBatchStream", None)
        self.batch_call = stub.OrderBatchStream(metadata=metadata)
        self.batch_reader = asyncio.create_task(self._read("batch", self.batch_call, single=False))

    def _on_reply(self, reply: Any, now: int) -> None:
        entry = self.waiting.pop(reply.correlation_id, None)
        if entry is None:
            return
        j, kind, memo, future = entry
        if future is not None:
            future.set_result(None)
        run = self.run
        if reply.error:
            self.mix.answered(kind, memo, None)
            if run is not None and j >= 0:
                run.refused(j, now, reply.error.split(":", 1)[0])
        else:
            self.mix.answered(kind, memo, reply.reply)
            if run is not None and j >= 0:
                run.done(j, now, kind, reply.reply)

    async def _read(self, api: str, call: Any, single: bool) -> None:
        try:
            async for message in call:
                now = perf_counter_ns()
                if single:
                    self._on_reply(message, now)
                else:
                    for reply in message.replies:
                        self._on_reply(reply, now)
            self.stream_errors[api] = f"the {api} stream ended"
        except Exception as exc:  # the call failed: what is waiting will never be answered
            self.stream_errors[api] = f"{type(exc).__name__}: {exc}"[:300]
        for _j, _kind, _memo, future in self.waiting.values():
            if future is not None and not future.done():
                future.set_exception(ConnectionError(self.stream_errors[api]))

    async def warm_up(self) -> int:
        """Fill this client's share of the book (closed loop, not measured)."""
        await self.open_stream()
        sent = 0
        while len(self.mix.book) < self.setup.book and sent < 4 * self.setup.book:
            futures = []
            for _ in range(min(50, self.setup.book - len(self.mix.book))):
                kind, field, request, memo = self.mix.next()
                if kind != PLACE:
                    continue
                cid = self.next_cid
                self.next_cid += 1
                done: asyncio.Future[None] = self.loop.create_future()
                self.waiting[cid] = (-1, kind, memo, done)
                message = self.pb.OrderStreamRequest(correlation_id=cid, **{field: request})
                await self.call.write(message)  # one write at a time on a gRPC call
                futures.append(done)
                sent += 1
            await asyncio.gather(*futures)
        await self.open_batch_stream()  # opened now, not inside a timed run
        return len(self.mix.book)

    # ---------------------------------------------------------------- a rate

    async def run_rate(self, spec: RunSpec) -> dict[str, Any]:
        reopened = 0
        if spec.api in ("stream", "batch") and self.stream_errors[spec.api]:
            # a stream that failed in an earlier run: open a new one before this run starts
            self.stream_errors[spec.api] = None
            await (self.open_stream() if spec.api == "stream" else self.open_batch_stream())
            reopened = 1
        result = await self._run_rate(spec)
        result["reopened_streams"] = reopened
        return result

    async def _run_rate(self, spec: RunSpec) -> dict[str, Any]:
        rate_each = spec.rate / spec.clients
        m = max(1, int(spec.rate * spec.seconds / spec.clients))
        k, n = self.index, spec.clients
        # command i of client k: start + (i*n + k) / rate  (nanoseconds, rounded up)
        idx = np.arange(m, dtype=np.int64) * n + k
        sched = spec.start_ns + (idx * NS + int(spec.rate) - 1) // int(spec.rate)
        run = _RunState(m, sched)
        self.run = run
        gc.collect()
        gc.disable()
        try:
            if spec.api == "stream":
                await self._send_stream(run, sched)
            elif spec.api == "batch":
                await self._send_batch(run, sched)
            elif spec.api == "unary":
                await self._send_unary(run, sched)
            else:
                raise ValueError(f"unknown api {spec.api!r}")
            deadline = perf_counter_ns() + int(spec.drain * NS)
            while run.outstanding and perf_counter_ns() < deadline:
                if self.stream_errors[spec.api]:
                    break
                await asyncio.sleep(0.005)
            cutoff = perf_counter_ns()
        finally:
            gc.enable()
            self.run = None
        return run.result(cutoff, rate_each, self.stream_errors[spec.api])

    def _due(self, sched: np.ndarray, i: int, now: int) -> int:
        """Index one past the last command scheduled at or before ``now`` (from ``i``)."""
        return int(np.searchsorted(sched, now, side="right")) if sched[i] <= now else i

    async def _wait(self, t_ns: int) -> None:
        if t_ns - perf_counter_ns() > 30_000:
            await self.ticker.wait_until(t_ns)
        else:
            await asyncio.sleep(0)

    async def _send_stream(self, run: _RunState, sched: np.ndarray) -> None:
        pb, mix, write = self.pb, self.mix, self.call.write
        m, i = len(sched), 0
        sched_list = sched.tolist()
        while i < m:
            if self.stream_errors["stream"]:
                return
            now = perf_counter_ns()
            if sched_list[i] > now:
                await self._wait(sched_list[i])
                continue
            due = min(m, self._due(sched, i, now))
            for j in range(i, due):
                kind, field, request, memo = mix.next()
                cid = self.next_cid
                self.next_cid += 1
                self.waiting[cid] = (j, kind, memo, None)
                message = pb.OrderStreamRequest(correlation_id=cid, **{field: request})
                run.sent(j, perf_counter_ns(), kind)
                run.messages += 1
                await write(message)
            i = due

    async def _send_batch(self, run: _RunState, sched: np.ndarray) -> None:
        """Every command that is due goes into one OrderBatch message (at most MAX_BATCH)."""
        if self.batch_call is None:
            await self.open_batch_stream()
        pb, mix, write, batch = self.pb, self.mix, self.batch_call.write, self.bpb.OrderBatch
        m, i = len(sched), 0
        sched_list = sched.tolist()
        every = int(self.setup.batch_interval_ms * 1e6)  # 0: wake for each command
        last = 0
        while i < m:
            if self.stream_errors["batch"]:
                return
            now = perf_counter_ns()
            wake = max(sched_list[i], last + every)
            if wake > now:
                await self._wait(wake)
                continue
            last = now
            due = min(m, self._due(sched, i, now), i + MAX_BATCH)
            requests = []
            kinds = []
            for j in range(i, due):
                kind, field, request, memo = mix.next()
                cid = self.next_cid
                self.next_cid += 1
                self.waiting[cid] = (j, kind, memo, None)
                requests.append(pb.OrderStreamRequest(correlation_id=cid, **{field: request}))
                kinds.append(kind)
            sent = perf_counter_ns()
            for j, kind in zip(range(i, due), kinds, strict=True):
                run.sent(j, sent, kind)
            run.messages += 1
            await write(batch(requests=requests))
            i = due

    async def _send_unary(self, run: _RunState, sched: np.ndarray) -> None:
        stubs = {
            "place": (self.stub.PlaceOrder, "/pyexchange.v1.OrderEntry/PlaceOrder"),
            "cancel": (self.stub.CancelOrder, "/pyexchange.v1.OrderEntry/CancelOrder"),
            "replace": (self.stub.ReplaceOrder, "/pyexchange.v1.OrderEntry/ReplaceOrder"),
        }
        tasks: set[asyncio.Task[None]] = set()
        m, i = len(sched), 0
        sched_list = sched.tolist()
        while i < m:
            now = perf_counter_ns()
            if sched_list[i] > now:
                await self._wait(sched_list[i])
                continue
            due = min(m, self._due(sched, i, now))
            for j in range(i, due):
                kind, field, request, memo = self.mix.next()
                stub, method = stubs[field]
                run.sent(j, perf_counter_ns(), kind)
                task = asyncio.create_task(
                    self._unary_one(run, j, kind, memo, stub, method, request)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            i = due
        if tasks:
            await asyncio.wait(tasks)

    async def _unary_one(
        self, run: _RunState, j: int, kind: int, memo: Any, stub: Any, method: str, request: Any
    ) -> None:
        try:
            reply = await stub(request, metadata=self.client.sign(method, request), timeout=60.0)
        except self.grpc.aio.AioRpcError as exc:
            self.mix.answered(kind, memo, None)
            run.refused(j, perf_counter_ns(), exc.code().name)
            return
        now = perf_counter_ns()
        self.mix.answered(kind, memo, reply)
        run.done(j, now, kind, reply)

    async def close(self) -> None:
        self.ticker.close()
        for call, reader in ((self.call, self.reader), (self.batch_call, self.batch_reader)):
            if call is None:
                continue
            with contextlib.suppress(Exception):
                await call.done_writing()
            if reader is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(reader, 10)
        await self.client.close()


class _RunState:
    """Per-command stamps of one client at one rate (preallocated arrays)."""

    def __init__(self, m: int, sched: np.ndarray) -> None:
        self.sched = sched
        self.send = np.zeros(m, dtype=np.int64)
        self.done_at = np.zeros(m, dtype=np.int64)
        self.kind = np.full(m, -1, dtype=np.int8)
        self.answered = np.zeros(m, dtype=bool)
        self.outstanding = 0
        self.status: Counter[str] = Counter()
        self.rejects: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.seq_min = 0
        self.seq_max = 0
        self.messages = 0  # stream messages written (unary: calls)

    def sent(self, j: int, now: int, kind: int) -> None:
        self.send[j] = now
        self.kind[j] = kind
        self.outstanding += 1

    def done(self, j: int, now: int, kind: int, reply: Any) -> None:
        if self.answered[j]:
            return
        self.answered[j] = True
        self.done_at[j] = now
        self.outstanding -= 1
        status = reply.status
        self.status[f"{KINDS[kind]}:{status}"] += 1
        if reply.reject_reason:
            self.rejects[f"{KINDS[kind]}:{reply.reject_reason}"] += 1
        seq = reply.seq
        if seq:
            self.seq_min = seq if not self.seq_min else min(self.seq_min, seq)
            self.seq_max = max(self.seq_max, seq)

    def refused(self, j: int, now: int, code: str) -> None:
        if self.answered[j]:
            return
        self.answered[j] = True
        self.done_at[j] = now
        self.outstanding -= 1
        self.errors[code] += 1

    def result(self, cutoff: int, rate_each: float, stream_error: str | None) -> dict[str, Any]:
        sent = self.send > 0
        answered = self.answered
        lost = sent & ~answered
        unsent = ~sent
        latency = np.where(answered, self.done_at - self.sched, cutoff - self.sched)
        latency = latency[sent | unsent]  # every scheduled command
        errors = dict(self.errors)
        if lost.any():
            errors["UNANSWERED"] = int(lost.sum())
        if unsent.any():
            errors["NOT_SENT"] = int(unsent.sum())
        return {
            "scheduled": len(self.sched),
            "sent": int(sent.sum()),
            "answered": int(answered.sum()),
            "errors": errors,
            "latency_ns": latency.astype(np.int64),
            "kind": self.kind,
            "send_lag_ns": (self.send - self.sched)[sent],
            "first_sched": int(self.sched[0]),
            "last_done": int(self.done_at[answered].max()) if answered.any() else cutoff,
            "status": dict(self.status),
            "rejects": dict(self.rejects),
            "messages": self.messages or int(sent.sum()),
            "seq_min": self.seq_min,
            "seq_max": self.seq_max,
            "stream_error": stream_error,
            "pid": os.getpid(),
        }


def _client_main(
    conn: Any, index: int, target: str, key_id: str, secret: str, account: int, setup: Setup
) -> None:
    """Entry of a client process: warm up, then run whatever the parent asks."""

    async def serve() -> None:
        client = Client(index, target, key_id, secret, account, setup)
        loop = asyncio.get_running_loop()
        try:
            booked = await client.warm_up()
            conn.send(("ready", {"book": booked, "pid": os.getpid()}))
            while True:
                message = await loop.run_in_executor(None, conn.recv)
                if message[0] == "stop":
                    break
                spec: RunSpec = message[1]
                result = await client.run_rate(spec)
                result["book"] = len(client.mix.book)
                conn.send(("result", result))
        except Exception as exc:
            conn.send(("failed", f"{type(exc).__name__}: {exc}"))
        finally:
            await client.close()

    asyncio.run(serve())


# ------------------------------------------------------------------ the parent


class Clients:
    """The client processes (spawned: no gRPC state is ever forked), client ``k`` logged
    in as ``logins[k]``: (gRPC target, key id, secret, account)."""

    def __init__(
        self, logins: list[tuple[str, str, str, int]], setup: Setup, name: str = "load-client"
    ) -> None:
        ctx = mp.get_context("spawn")
        self.conns: list[Any] = []
        self.procs: list[Any] = []
        for k, (target, key_id, secret, account) in enumerate(logins):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_client_main,
                args=(child, k, target, key_id, secret, account, setup),
                name=f"{name}-{k}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def receive(self, timeout: float) -> list[Any]:
        out = []
        deadline = time.monotonic() + timeout
        for k, conn in enumerate(self.conns):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"client {k} did not answer in {timeout:.0f} s")
            kind, payload = conn.recv()
            if kind == "failed":
                raise RuntimeError(f"client {k} failed: {payload}")
            out.append(payload)
        return out

    def send(self, spec: RunSpec) -> None:
        for conn in self.conns:
            conn.send(("run", spec))

    def ready(self, timeout: float = 120.0) -> list[dict[str, Any]]:
        return self.receive(timeout)

    def run(self, spec: RunSpec) -> list[dict[str, Any]]:
        self.send(spec)
        wait = (spec.start_ns - perf_counter_ns()) / NS + spec.seconds + spec.drain + 120
        return self.receive(wait)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop", None))
        for proc in self.procs:
            proc.join(20)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


# ------------------------------------------------------------- CPU accounting

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_cpu(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _machine_cpu() -> tuple[float, float]:
    """(busy, irq + softirq) CPU seconds of the whole machine since boot (/proc/stat).

    Loopback TCP is processed mostly in softirq context, which is not charged to
    the processes whose traffic it is: that share is reported on its own.
    """
    try:
        with open("/proc/stat", encoding="ascii") as f:
            values = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return busy / _TICK, (irq + softirq) / _TICK


def _all_processes() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds) of every process (to name what else ran)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()[:120]
    except OSError:
        return ""


@dataclass
class CpuMark:
    wall: float
    server: float
    clients: float
    busy: float
    irq: float
    processes: dict[int, tuple[str, float]]
    ours: tuple[int, ...]
    threads: dict[int, tuple[str, float]]  # the server's: tid -> (name, CPU seconds)

    @classmethod
    def now(cls, server_pid: int, client_pids: list[int]) -> CpuMark:
        busy, irq = _machine_cpu()
        return cls(
            time.monotonic(),
            _proc_cpu(server_pid),
            sum(_proc_cpu(p) for p in client_pids),
            busy,
            irq,
            _all_processes(),
            (server_pid, *client_pids, os.getpid()),
            _threads_cpu(server_pid),
        )

    def threads_since(self, before: CpuMark) -> dict[str, float]:
        """Cores of the server's threads by name (gRPC's pollers and executors summed)."""
        wall = max(self.wall - before.wall, 1e-9)
        out: dict[str, float] = defaultdict(float)
        for tid, (name, cpu) in self.threads.items():
            out[name] += (cpu - before.threads.get(tid, (name, 0.0))[1]) / wall
        return {n: round(c, 3) for n, c in sorted(out.items(), key=lambda x: -x[1]) if c >= 0.005}

    def cores_since(self, before: CpuMark) -> dict[str, Any]:
        wall = max(self.wall - before.wall, 1e-9)
        server = (self.server - before.server) / wall
        clients = (self.clients - before.clients) / wall
        busy = (self.busy - before.busy) / wall
        irq = (self.irq - before.irq) / wall
        busiest = []
        for pid, (name, cpu) in self.processes.items():
            if pid in self.ours or pid not in before.processes:
                continue
            cores = (cpu - before.processes[pid][1]) / wall
            if cores >= 0.05:
                busiest.append((cores, pid, name))
        busiest.sort(reverse=True)
        return {
            "server": round(server, 3),
            "server_threads": self.threads_since(before),
            "clients": round(clients, 3),
            "irq_softirq": round(irq, 3),
            "others": round(max(0.0, busy - server - clients - irq), 3),
            "machine_busy": round(busy, 3),
            "wall_s": round(wall, 3),
            "busiest_others": [
                {"pid": pid, "name": name, "cores": round(c, 3), "cmdline": _cmdline(pid)}
                for c, pid, name in busiest[:5]
            ],
        }


# ------------------------------------------------------------------ metrics


def _metric_sum(samples: dict[Any, float], name: str, **labels: str) -> float:
    total = 0.0
    for (n, lab), v in samples.items():
        if n == name and all(dict(lab).get(k) == want for k, want in labels.items()):
            total += v
    return total


def metrics_delta(before: dict[Any, float], after: dict[Any, float]) -> dict[str, Any]:
    """What the server's own Prometheus metrics say about a rate's window."""
    if not before or not after:
        return {"available": False}

    def delta(name: str, **labels: str) -> float:
        return _metric_sum(after, name, **labels) - _metric_sum(before, name, **labels)

    batches = delta("pyexchange_batch_size_count")
    batched = delta("pyexchange_batch_size_sum")
    bounds: dict[float, float] = defaultdict(float)
    for (n, lab), v in after.items():
        if n == "pyexchange_command_latency_seconds_bucket":
            le = float(dict(lab)["le"])
            bounds[le] += v - before.get((n, lab), 0.0)
    total = bounds.get(math.inf, 0.0)
    quantiles = {}
    for q in (0.5, 0.99, 0.999):
        le = next((b for b in sorted(bounds) if total and bounds[b] >= q * total), None)
        quantiles[f"p{q * 100:g}_at_most_s"] = le
    refused: dict[str, float] = defaultdict(float)
    for (n, lab), v in after.items():
        if n == "pyexchange_refused_total":
            d = v - before.get((n, lab), 0.0)
            if d:
                refused[dict(lab).get("status", "?")] += d
    return {
        "available": True,
        "batches": int(batches),
        "commands_batched": int(batched),
        "mean_batch": round(batched / batches, 2) if batches else None,
        "submit_to_answer": {"commands": int(total), **quantiles},
        "refused": {k: int(v) for k, v in refused.items()},
    }


# ------------------------------------------------------------------ a row


def _pct(values: np.ndarray) -> dict[str, Any]:
    if not len(values):
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": int(p50), "p99": int(p99), "max": int(values.max())}


def make_row(
    api: str,
    rate: float,
    results: list[dict[str, Any]],
    cores: dict[str, float],
    metrics: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    latency = np.concatenate([r["latency_ns"] for r in results])
    kinds = np.concatenate([r["kind"] for r in results])
    lag = np.concatenate([r["send_lag_ns"] for r in results])
    scheduled = sum(r["scheduled"] for r in results)
    errors: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    status: Counter[str] = Counter()
    for r in results:
        errors.update(r["errors"])
        rejects.update(r["rejects"])
        status.update(r["status"])
    acknowledged = sum(status.values())  # replies from the engine (rejects included)
    start = min(r["first_sched"] for r in results)
    end = max(r["last_done"] for r in results)
    window = max(end - start, 1)
    achieved = acknowledged * NS / window
    summary = hdr.describe(latency)
    per_kind = {}
    for code, name in enumerate(KINDS):
        chosen = latency[kinds == code]
        if len(chosen):
            s = hdr.summary(hdr.histogram(chosen))
            per_kind[name] = {k: s[k] for k in ("count", "p50", "p90", "p99", "p99.9", "max")}
    error_count = sum(errors.values())
    p99 = summary["p99"] or 0
    sustained = (
        achieved >= SUSTAINED_ACHIEVED * rate
        and p99 <= SUSTAINED_P99_NS
        and error_count <= SUSTAINED_ERRORS * scheduled
    )
    seqs = [(r["seq_min"], r["seq_max"]) for r in results if r["seq_min"]]
    return {
        "api": api,
        "offered_per_s": rate,
        "achieved_per_s": round(achieved, 1),
        "seconds": seconds,
        "window_s": round(window / NS, 3),
        "scheduled": scheduled,
        "acknowledged": acknowledged,
        "errors": error_count,
        "errors_by_code": dict(errors),
        "rejects": sum(rejects.values()),
        "rejects_by_reason": dict(rejects.most_common()),
        "status": dict(sorted(status.items())),
        "commands_by_kind": {KINDS[c]: int(np.count_nonzero(kinds == c)) for c in range(4)},
        "client_messages": sum(r["messages"] for r in results),
        "commands_per_message": round(
            sum(r["sent"] for r in results) / max(1, sum(r["messages"] for r in results)), 2
        ),
        "latency_ns": summary,
        "latency_by_kind_ns": per_kind,
        "send_lag_ns": _pct(lag),
        "cores": cores,
        # server CPU per order answered (µs): the whole process, and by thread
        "server_us_per_order": round(cores["server"] * 1e6 / max(achieved, 1e-9), 1),
        "server_threads_us_per_order": {
            name: round(c * 1e6 / max(achieved, 1e-9), 1)
            for name, c in cores.get("server_threads", {}).items()
        },
        "server_metrics": metrics,
        "seq_range": [min(s[0] for s in seqs), max(s[1] for s in seqs)] if seqs else None,
        "book_after": sum(r.get("book", 0) for r in results),
        "stream_errors": sorted({r["stream_error"] for r in results if r.get("stream_error")}),
        "sustained": bool(sustained),
        "meets_aim": bool(rate >= AIM_RATE and sustained and p99 < AIM_P99_NS),
    }


# ------------------------------------------------------------ the engine core


def _pct_us(values: np.ndarray) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p90": None, "p99": None, "max": None}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {
        "p50": round(p50 / 1e3, 1),
        "p90": round(p90 / 1e3, 1),
        "p99": round(p99 / 1e3, 1),
        "max": round(values.max() / 1e3, 1),
    }


def engine_busy(journal_directory: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Replay the journal through ``Engine.process`` with the sequencer's own batches.

    Each record of the journal is one batch the sequencer formed; timing each
    ``process()`` call and summing over a rate's seq range gives the engine
    core's busy time during that rate, to compare with the rate's wall time.
    """
    from matchcore import Engine
    from pyexchange.engine.journal import RecordKind, read_journal, read_segment_header

    segments = sorted(Path(journal_directory).glob("*.journal"))
    if not segments:
        return {"available": False, "reason": "no journal segment"}
    config = read_segment_header(segments[0])[0]
    engine = Engine(**config.engine_kwargs())
    ranges = [(i, r["seq_range"]) for i, r in enumerate(rows) if r.get("seq_range")]
    busy = defaultdict(int)
    batches = defaultdict(int)
    commands = defaultdict(int)
    stamps: dict[int, list[int]] = defaultdict(list)  # engine time of each batch (its start)
    total_ns = 0
    total_commands = 0
    for record in read_journal(Path(journal_directory)):
        if record.kind != RecordKind.BATCH:
            continue
        batch = record.commands()
        t = perf_counter_ns()
        engine.process(batch)
        dt = perf_counter_ns() - t
        total_ns += dt
        total_commands += record.count
        for i, (lo, hi) in ranges:
            if lo <= record.first_seq <= hi:
                busy[i] += dt
                batches[i] += 1
                commands[i] += record.count
                stamps[i].append(int(batch["time"][0]))
                break
    for i, _ in ranges:
        row = rows[i]
        window = row["window_s"]
        row["engine"] = {
            "process_s": round(busy[i] / NS, 6),
            "busy_share_of_wall": round(busy[i] / NS / window, 5) if window else None,
            "batches": batches[i],
            "mean_batch": round(commands[i] / batches[i], 2) if batches[i] else None,
            "ns_per_command": round(busy[i] / commands[i], 1) if commands[i] else None,
            # the sequencer's cycle: from one batch's start to the next (its engine time
            # stamps); when commands are waiting, the time one batch takes end to end
            "batch_interval_us": _pct_us(np.diff(np.array(stamps[i], dtype=np.int64))),
        }
    return {
        "available": True,
        "how": "journal replayed through Engine.process one record (= one sequencer batch) "
        "at a time after the run, each call timed; a rate's batches are those in the seq "
        "range its replies carried",
        "records_commands": total_commands,
        "process_s_total": round(total_ns / NS, 4),
    }


# ------------------------------------------------------------------ profile


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    if found:
        return found
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else None


def _engine_line() -> int | None:
    """The line of ``Sequencer._run_batch`` that calls ``engine.process`` (its own samples)."""
    import inspect

    from pyexchange.engine import sequencer

    try:
        lines, first = inspect.getsourcelines(sequencer.Sequencer._run_batch)
    except (OSError, TypeError):
        return None
    for offset, text in enumerate(lines):
        if "self.engine.process(" in text:
            return first + offset
    return None


_LOOP_CATEGORIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    (
        "request -> command (gateway conversion)",
        lambda f: any(
            f.startswith(n)
            for n in (
                "place_record ",
                "cancel_record ",
                "replace_record ",
                "cancel_client_record ",
                "cancel_all_record ",
                "command_record ",
                "stream_request_of ",
                "place_of ",
                "_price ",
                "_quantity ",
                "parse_",
            )
        ),
    ),
    (
        "events -> OrderReply (gateway replies)",
        lambda f: f.startswith(("order_reply ", "format_", "reply_pb ", "stream_reply ")),
    ),
    ("auth and rate limit", lambda f: "pyexchange/service/auth.py" in f),
    ("Prometheus metrics", lambda f: "prometheus_client" in f or "pyexchange/metrics.py" in f),
    ("market data publisher (loop side)", lambda f: "pyexchange/feeds/marketdata.py" in f),
    ("drop copy (loop side)", lambda f: "pyexchange/feeds/dropcopy.py" in f),
    (
        "submit to the sequencer, futures",
        lambda f: (
            "pyexchange/engine/sequencer.py" in f
            or "pyexchange/engine/exchange.py" in f
            or f.startswith(("EngineLink.", "OrderEntry.submit ", "Answer."))
        ),
    ),
)


def classify(
    samples: dict[str, Counter[str]], engine_line: int | None, denominator: int | None = None
) -> dict[str, Any]:
    """Each thread's samples sorted into what it was doing.

    Shares are of ``denominator`` samples (the samples taken, for the cpu view)
    or of the thread's own samples (the wall view).
    """
    out: dict[str, Any] = {}
    for thread, stacks in samples.items():
        total = sum(stacks.values())
        base = denominator or total
        cats: Counter[str] = Counter()
        leaves: Counter[str] = Counter()
        name = thread.split(":", 1)[-1].strip()
        for stack, n in stacks.items():
            frames = stack.split(";")
            leaf = frames[-1] if frames else ""
            leaves[leaf] += n
            cats[_category(name, frames, leaf, engine_line)] += n
        out[name] = {
            "samples": total,
            "share": round(total / base, 4),
            "shares": {k: round(v / base, 4) for k, v in cats.most_common()},
            "top_leaves": [[k, round(v / base, 4)] for k, v in leaves.most_common(6)],
        }
    return out


def _idle(leaf: str) -> bool:
    return any(
        s in leaf
        for s in (
            "select (selectors.py",
            "wait (threading.py",
            "_worker (concurrent/futures/thread.py",
            "Thread.run (threading.py",
            "get (queue.py",
            "serve_forever",
        )
    )


def _category(thread: str, frames: list[str], leaf: str, engine_line: int | None) -> str:
    if thread == "sequencer":
        if leaf.startswith("Sequencer._run (") or "(queue.py" in leaf:
            return "idle: waiting for commands"
        if (
            engine_line is not None
            and leaf == f"Sequencer._run_batch (pyexchange/engine/sequencer.py:{engine_line})"
        ):
            return "engine.process (the core, GIL released)"
        if any("fdatasync" in f or "JournalWriter._write" in f for f in frames[-2:]) and (
            "journal.py" in leaf
        ):
            return "journal: write + fdatasync"
        if any("pyexchange/engine/journal.py" in f for f in frames):
            return "journal: encode"
        if any("ExchangeServer._on_events" in f for f in frames):
            return "publishers (on_events)"
        if any("Sequencer._answer" in f or "_write_to_self" in f for f in frames):
            return "answer futures, wake the loop"
        return "sequencer: stamp, dedupe, idempotency, other"
    if thread == "MainThread":
        if _idle(leaf):
            return "idle: waiting for I/O (epoll)"
        for frame in reversed(frames):
            for name, match in _LOOP_CATEGORIES:
                if match(frame):
                    return name
        return "gRPC + asyncio machinery (Python and Cython)"
    return "idle (waiting)" if _idle(leaf) else "busy"


def read_raw_profile(path: Path) -> tuple[dict[str, Counter[str]], dict[int, str]]:
    """py-spy's raw (collapsed) output with --threads: thread -> stack -> samples, and
    the thread names by OS thread id."""
    samples: dict[str, Counter[str]] = defaultdict(Counter)
    names: dict[int, str] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        if m := re.match(r"^thread \((\d+)\): (.*)$", thread):  # "thread (1234): MainThread"
            names[int(m.group(1))] = m.group(2).strip()
        key = re.sub(r"^thread \(\d+\)", "thread", thread)
        samples[key][";".join(frames[1:])] += int(count)
    return samples, names


# pid -> tid -> Python thread name (py-spy dump once the server runs): Python does not name
# its threads in the OS, where the sequencer, the drop-copy writer and the loop are all "python"
_PY_NAMES: dict[int, dict[int, str]] = {}


def name_python_threads(pid: int) -> None:
    """Learn the Python names of a process's threads (nothing without py-spy)."""
    exe = _py_spy()
    if exe is None:
        return
    try:
        out = subprocess.run(
            [exe, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return
    found = re.findall(r'^Thread (?:0x[0-9a-fA-F]+|(\d+)) \([^)]*\): "([^"]*)"', out, re.M)
    _PY_NAMES[pid] = {int(tid): name for tid, name in found if tid}


def _threads_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """tid -> (thread name: Python's when known, else the OS's; CPU seconds) of a process."""
    out = {}
    try:
        tasks = list(os.scandir(f"/proc/{pid}/task"))
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"{task.path}/stat", encoding="ascii", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        name = _PY_NAMES.get(pid, {}).get(int(task.name), name)
        fields = text.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / _TICK)
    return out


SAMPLE_HZ = 200


def profile_rate(
    server: ServerProcess,
    clients: Clients,
    api: str,
    rate: float,
    setup: Setup,
    run_id: int,
    work: Path,
) -> dict[str, Any]:
    """One more run at ``rate``: py-spy samples the server, /proc counts its threads' CPU.

    py-spy (``record --threads --idle --nonblocking``, 200 Hz) gives each Python
    thread's wall time, waits included, sorted into what it was doing; the CPU
    time of every thread of the server (gRPC's native ones too) comes from
    ``/proc/PID/task/TID/stat`` over the same run (py-spy's own notion of an
    idle thread is not reliable enough to count CPU with).
    """
    exe = _py_spy()
    if exe is None:
        return {"available": False, "reason": "py-spy is not installed (pip install py-spy)"}
    duration = max(1, math.ceil(setup.seconds))
    out = work / f"py-spy-{api}.txt"
    command = [exe, "record", "-p", str(server.pid), "-d", str(duration), "-r", str(SAMPLE_HZ)]
    command += ["-f", "raw", "-o", str(out), "--threads", "--idle", "--nonblocking"]
    spy = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.5)  # attach; the run starts right after
    spec = RunSpec(
        run_id,
        api,
        rate,
        setup.clients,
        perf_counter_ns() + LEAD_NS // 3,
        setup.seconds,
        setup.drain,
    )
    threads_before = _threads_cpu(server.pid)
    before = CpuMark.now(server.pid, clients.pids)
    results = clients.run(spec)
    after = CpuMark.now(server.pid, clients.pids)
    threads_after = _threads_cpu(server.pid)
    try:
        log, _ = spy.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        log, _ = spy.communicate()
    if spy.returncode != 0 or not out.exists():
        return {"available": False, "reason": f"py-spy failed: {(log or '').strip()[-300:]}"}
    samples, names = read_raw_profile(out)
    wall = max(after.wall - before.wall, 1e-9)
    threads_cpu = []
    for tid, (comm, cpu) in threads_after.items():
        used = (cpu - threads_before.get(tid, (comm, 0.0))[1]) / wall
        threads_cpu.append(
            {"tid": tid, "name": names.get(tid, f"{comm} (native)"), "cores": round(used, 3)}
        )
    threads_cpu.sort(key=lambda t: -t["cores"])
    return {
        "available": True,
        "api": api,
        "offered_per_s": rate,
        "acknowledged": sum(sum(r["status"].values()) for r in results),
        "cores": after.cores_since(before),
        "how": f"py-spy record --threads --idle --nonblocking -r {SAMPLE_HZ} -d {duration} on "
        "the server during one more run at this rate: every sample of a Python thread (wall "
        "time, waits included), sorted by the innermost frame that names a part of the "
        "service (without --native, time in gRPC's Cython core and in C calls shows on the "
        "Python line that made the call; a thread waiting for the GIL shows on the line it "
        "is about to run). CPU per thread from /proc/PID/task over the same run.",
        "wall": classify(samples, _engine_line()),
        "threads_cpu": threads_cpu,
    }


def _profile_markdown(prof: dict[str, Any]) -> list[str]:
    if not prof.get("available"):
        return [f"Profile: {prof.get('reason')}", ""]
    lines = [
        f"### Where the server's time goes ({prof['api']}, {prof['offered_per_s']:,.0f}/s "
        f"offered, {prof.get('at', '')})",
        "",
        prof["how"],
        "",
        f"CPU over the run: server {prof['cores']['server']:.2f} cores, clients "
        f"{prof['cores']['clients']:.2f}, irq/softirq {prof['cores']['irq_softirq']:.2f}, "
        f"other processes {prof['cores']['others']:.2f}.",
        "",
        "| server thread | CPU (cores, /proc) |",
        "|---|---:|",
    ]
    for t in prof["threads_cpu"]:
        if t["cores"] >= 0.005:
            lines.append(f"| {t['name']} | {t['cores']:.3f} |")
    lines.append("")
    for thread in ("MainThread", "sequencer"):
        w = prof["wall"].get(thread)
        if not w:
            continue
        lines += [f"| {thread}: what it does | share of wall time |", "|---|---:|"]
        lines += [f"| {k} | {v:.1%} |" for k, v in w["shares"].items()]
        lines.append("")
    return lines


# ------------------------------------------------------------------ Markdown


def _ms(ns: float | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1e6:,.2f}" if ns < 100e6 else f"{ns / 1e6:,.0f}"


def _rate(v: float) -> str:
    return f"{v:,.0f}"


def highest_sustained(rows: list[dict[str, Any]], api: str) -> float | None:
    rates = [r["offered_per_s"] for r in rows if r["api"] == api and r["sustained"]]
    return max(rates) if rates else None


def _api(row: dict[str, Any]) -> str:
    return f"{row['api']} ({row['build']})" if row.get("build") else row["api"]


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    s = result["setup"]
    lines = [
        f"## SERVICE — the gRPC exchange under open-loop load ({result['timestamp']})",
        "",
        f"Machine: {m['cpu_model']}, {m['cores']} cores (server and clients share them), "
        f"Python {m['python']}; commit {m['git_commit'] and m['git_commit'][:7]}"
        f"{' (dirty)' if m.get('git_dirty') else ''}; `{result['command']}`; "
        f"load average before {result['load_before']}, after {m['load_average']}.",
        "",
        f"Server: `python -m pyexchange serve` (subprocess), journal fsync {s['fsync']}, "
        f"{s['markets']} markets (tick $0.01, lot 1), market data and drop copy on. "
        f"Clients: {s['clients']} processes, one account and one gRPC channel each, "
        f"{s['book']} resting orders each (book ≈ {s['clients'] * s['book']:,} orders). "
        f"Each rate: {s['seconds']:g} s of schedule, open loop, latency = reply received - "
        "scheduled send time.",
        "",
        f"Sustained = achieved ≥ {SUSTAINED_ACHIEVED:.0%} of offered, p99 ≤ "
        f"{SUSTAINED_P99_NS / 1e6:g} ms, errors ≤ {SUSTAINED_ERRORS:.1%}. "
        f"Aim of the issue: p99 < {AIM_P99_NS / 1e6:g} ms at {AIM_RATE:,}/s.",
        "",
        "| api | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| errors | rejects | send lag p99 ms | server cores | server µs/order | client cores "
        "| irq cores | other cores | sustained |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in result["rows"]:
        lat = r["latency_ns"]
        lines.append(
            f"| {_api(r)} | {_rate(r['offered_per_s'])} | {_rate(r['achieved_per_s'])} "
            f"| {_ms(lat['p50'])} | {_ms(lat['p90'])} | {_ms(lat['p99'])} | {_ms(lat['p99.9'])} "
            f"| {_ms(lat['max'])} | {r['errors']:,} | {r['rejects']:,} "
            f"| {_ms(r['send_lag_ns']['p99'])} "
            f"| {r['cores']['server']:.2f} | {r.get('server_us_per_order', '-')} "
            f"| {r['cores']['clients']:.2f} "
            f"| {r['cores']['irq_softirq']:.2f} "
            f"| {r['cores']['others']:.2f} | {'yes' if r['sustained'] else 'no'} |"
        )
    threads = [r for r in result["rows"] if r.get("server_threads_us_per_order")]
    if threads:
        lines += [
            "",
            "Server CPU per order answered, by thread (µs; /proc/PID/task over the rate; "
            "gRPC's pollers and executors under their own names):",
            "",
        ]
        lines += [
            f"- {_api(r)} {_rate(r['offered_per_s'])}/s: "
            + ", ".join(f"{n} {us:g}" for n, us in r["server_threads_us_per_order"].items())
            for r in threads
        ]
    busy_others = [
        f"{r['api']} {_rate(r['offered_per_s'])}/s: "
        + ", ".join(
            f"{o['cmdline'] or o['name']} ({o['cores']:.2f})" for o in r["cores"]["busiest_others"]
        )
        for r in result["rows"]
        if r["cores"].get("busiest_others")
    ]
    if busy_others:
        lines += ["", "Other processes that used the machine during a rate (cores):", ""]
        lines += [f"- {text}" for text in busy_others]
    lines += [
        "",
        "Inside the server, per rate: the sequencer's batches (from the journal), the time "
        "from one batch's start to the next (when commands wait, what a batch costs end to "
        "end), the gateway's submit-to-answer latency (Prometheus histogram: the bucket bound "
        "the percentile falls under), and the engine core's busy time (the journal's batches "
        "replayed through Engine.process, timed) against the rate's wall time.",
        "",
        "| api | offered/s | commands per client message | batches | mean batch "
        "| batch interval p50 / p99 µs | submit→answer p50 / p99 ≤ ms | engine ns/command "
        "| engine busy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        eng = r.get("engine") or {}
        sm = r["server_metrics"].get("submit_to_answer") or {}
        gap = eng.get("batch_interval_us") or {}
        busy = eng.get("busy_share_of_wall")

        def bound(v: float | None) -> str:
            return "-" if v is None else f"{v * 1e3:g}"

        lines.append(
            f"| {r['api']} | {_rate(r['offered_per_s'])} | {r['commands_per_message']} "
            f"| {eng.get('batches', '-')} "
            f"| {eng.get('mean_batch') or '-'} | {gap.get('p50', '-')} / {gap.get('p99', '-')} "
            f"| {bound(sm.get('p50_at_most_s'))} / {bound(sm.get('p99_at_most_s'))} "
            f"| {eng.get('ns_per_command') or '-'} "
            f"| {'-' if busy is None else f'{busy:.3%}'} |"
        )
    lines.append("")
    for api in result["apis"]:
        best = result["highest_sustained"].get(api)
        lines.append(
            f"- **Highest sustained rate, {api}:** "
            + (f"{best:,.0f} commands/s" if best else "none of the rates run")
        )
    lines.append(f"- **Aim met** (p99 < 1 ms at 20,000/s): {'yes' if result['aim_met'] else 'no'}")
    floor = result.get("fdatasync_floor")
    if floor:
        lines.append(
            f"- fdatasync alone in the data directory: p50 {_ms(floor['p50'])} ms, "
            f"p99 {_ms(floor['p99'])} ms, max {_ms(floor['max'])} ms "
            f"({floor['count']} calls): the floor of any acknowledgement with fsync per batch."
        )
    lines.append("")
    for prof in (result.get("profile") or {}).values():
        lines += _profile_markdown(prof)
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    if result.get("pictures"):
        lines.append("")
        lines.append("Pictures: " + ", ".join(result["pictures"]))
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path | None:
    """Latency percentiles (log) and achieved rate against the offered rate, per API."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"stream": "#1f77b4", "unary": "#d62728", "batch": "#2ca02c"}
    styles = {"p50": "-", "p99": "--", "p99.9": "-.", "max": ":"}
    top = 1.0
    for api in result["apis"]:
        rows = [r for r in result["rows"] if r["api"] == api]
        if not rows:
            continue
        x = [r["offered_per_s"] for r in rows]
        for key, style in styles.items():
            y = [r["latency_ns"][key] / 1e6 for r in rows]
            top = max(top, *y)
            ax.plot(x, y, style, marker="o", ms=3, color=colors.get(api), label=f"{api} {key}")
        ax2.plot(
            x, [r["achieved_per_s"] for r in rows], "-o", ms=3, color=colors.get(api), label=api
        )
    ax.axhline(AIM_P99_NS / 1e6, color="grey", lw=0.8, ls="--")
    ax.text(ax.get_xlim()[0], AIM_P99_NS / 1e6 * 1.08, "aim: p99 1 ms", fontsize=8, color="grey")
    ax.axhline(SUSTAINED_P99_NS / 1e6, color="grey", lw=0.8, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (commands/s)")
    ax.set_ylabel("latency from scheduled send time (ms)")
    ax.set_title("SERVICE open loop: acknowledgement latency")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    hi = max(r["offered_per_s"] for r in result["rows"]) if result["rows"] else 1
    ax2.plot([0, hi], [0, hi], color="grey", lw=0.8, ls="--", label="achieved = offered")
    ax2.set_xlabel("offered rate (commands/s)")
    ax2.set_ylabel("achieved rate (commands/s)")
    ax2.set_title("achieved against offered")
    ax2.grid(True, alpha=0.3)
    ax2.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(
        f"{m['cpu_model']}, {m['cores']} cores shared by server and {result['setup']['clients']} "
        f"client processes; fsync {result['setup']['fsync']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ main


def _spec(run_id: int, api: str, rate: float, setup: Setup, record: bool = True) -> RunSpec:
    return RunSpec(
        run_id,
        api,
        rate,
        setup.clients,
        perf_counter_ns() + LEAD_NS,
        setup.seconds,
        setup.drain,
        record,
    )


def run(
    args: argparse.Namespace, argv: list[str], build: str = "", server_path: str | None = None
) -> dict[str, Any]:
    setup = Setup(
        server_path=server_path,
        clients=args.clients,
        markets=args.markets,
        book=args.book,
        fsync=args.fsync,
        seconds=args.seconds,
        drain=args.drain,
        seed=args.seed,
        switch_interval=args.switch_interval,
        batch_interval_ms=args.batch_interval_ms,
    )
    rates = [float(r) for r in args.rates]
    apis = list(args.api)
    load_before = [round(x, 2) for x in os.getloadavg()]
    work = Path(tempfile.mkdtemp(prefix="service-load-"))
    server = ServerProcess(work / "data", setup)
    notes: list[str] = [
        f"The machine has {os.cpu_count()} cores: the server (its asyncio/gRPC thread, the "
        "sequencer thread, gRPC's own threads, the publishers) and the client processes "
        "compete for them, so every figure includes the clients' own cost; the 'client cores' "
        "and 'other cores' columns show what they and the rest of the machine used.",
        "Client processes run with the garbage collector off during a rate (collected "
        "between rates); the server runs as `pyexchange serve` runs it.",
    ]
    rows: list[dict[str, Any]] = []
    profile: dict[str, Any] = {}
    engine: dict[str, Any] = {}
    clients: Clients | None = None
    failed = False
    try:
        server.data_dir.mkdir(parents=True)
        floor = fdatasync_floor(server.data_dir)
        server.start()
        name_python_threads(server.pid)
        logins = [(server.target, server.key_id(a), server.secret(a), a) for a in server.accounts]
        clients = Clients(logins, setup)
        ready = clients.ready()
        print(
            f"server pid {server.pid} on {server.target}; {setup.clients} clients ready "
            f"(book {sum(r['book'] for r in ready):,} orders)",
            flush=True,
        )
        run_id = 0
        for api in apis:
            run_id += 1  # warm-up of this API: one short run, not recorded
            warm = Setup(**{**asdict(setup), "seconds": min(1.0, setup.seconds)})
            clients.run(_spec(run_id, api, min(rates[0], 1000.0), warm, record=False))
            for rate in rates:
                run_id += 1
                before_m = server.scrape()
                before = CpuMark.now(server.pid, clients.pids)
                results = clients.run(_spec(run_id, api, rate, setup))
                after = CpuMark.now(server.pid, clients.pids)
                after_m = server.scrape()
                row = make_row(
                    api,
                    rate,
                    results,
                    after.cores_since(before),
                    metrics_delta(before_m, after_m),
                    setup.seconds,
                )
                if build:
                    row["build"] = build
                rows.append(row)
                lat = row["latency_ns"]
                print(
                    f"{build + ' ' if build else ''}{api:>6} {rate:>9,.0f}/s: "
                    f"achieved {row['achieved_per_s']:>9,.0f}/s  "
                    f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} p99.9 {_ms(lat['p99.9'])} "
                    f"max {_ms(lat['max'])} ms  errors {row['errors']}  rejects {row['rejects']}  "
                    f"cores server {row['cores']['server']:.2f} clients "
                    f"{row['cores']['clients']:.2f} irq {row['cores']['irq_softirq']:.2f} "
                    f"others {row['cores']['others']:.2f}  "
                    f"server {row['server_us_per_order']} us/order"
                    f"{'  sustained' if row['sustained'] else ''}",
                    flush=True,
                )
                if row["errors"]:
                    print(f"        errors {row['errors_by_code']} {row['stream_errors']}")
                time.sleep(0.5)
                if row["achieved_per_s"] < STOP_BELOW * rate:
                    break
        if args.profile != "none":
            for api in apis:
                if api == "unary":
                    continue
                best = highest_sustained(rows, api)
                target = best or min(rates)
                run_id += 1
                print(f"profiling the server at {target:,.0f}/s ({api}) ...", flush=True)
                profile[api] = profile_rate(server, clients, api, target, setup, run_id, work)
                profile[api]["at"] = "highest sustained rate" if best else "lowest rate"
    except BaseException:
        print(f"server log (last lines):\n{server.stderr_tail(10)}", file=sys.stderr)
        failed = True
        raise
    finally:
        if clients is not None:
            clients.stop()
        exit_code = server.stop()
        if failed and not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    logged = server.errors_logged()
    if exit_code != 0:
        notes.append(f"the server exited with status {exit_code}: {server.stderr_tail(5)}")
    if logged:
        notes.append(f"the server logged {len(logged)} error(s); first: {logged[0]}")
    try:
        engine = engine_busy(work / "data" / "journal", rows)
    except Exception as exc:  # an unreadable journal must not lose the figures
        engine = {"available": False, "reason": f"{type(exc).__name__}: {exc}"}
    if not args.keep_data:
        shutil.rmtree(work, ignore_errors=True)
    else:
        notes.append(f"data directory kept: {work}")
    result: dict[str, Any] = {
        "workload": "SERVICE",
        "title": "the gRPC exchange under open-loop load",
        "apis": apis,
        "rates": rates,
        "setup": asdict(setup),
        "mix": "below 90% of the book target: resting place; above 110%: cancel; otherwise "
        "30% resting place (GTC, 1..20 ticks from $0.50, 1..20 shares), 10% crossing IOC "
        "(1..5 shares, 5 ticks through the other side), 30% cancel, 30% replace (same side, "
        "new price)",
        "criterion": {
            "achieved_at_least": SUSTAINED_ACHIEVED,
            "p99_at_most_ns": SUSTAINED_P99_NS,
            "errors_at_most": SUSTAINED_ERRORS,
            "aim": {"rate": AIM_RATE, "p99_below_ns": AIM_P99_NS},
        },
        "server": {"command": getattr(server, "command", None), "banner": server.banner[:4]},
        "fdatasync_floor": floor,
        "rows": rows,
        "highest_sustained": {api: highest_sustained(rows, api) for api in apis},
        "aim_met": any(r["meets_aim"] for r in rows),
        "engine": engine,
        "profile": profile,
        "notes": notes,
        "load_before": load_before,
    }
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["machine"] = report.machine(argv)
    result["machine"]["command"] = shlex_command(argv)
    result["command"] = result["machine"]["command"]
    return result


def shlex_command(argv: list[str]) -> str:
    import shlex

    return shlex.join([Path(sys.executable).name, "-m", "bench.service_load", *argv])


def write(result: dict[str, Any], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"service-{time.strftime('%Y%m%d-%H%M%S')}"
    picture = plot(result, out_dir / f"{name}-latency.png")
    result["pictures"] = [picture.name] if picture else []
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2, default=_json_default) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def _rates(text: str) -> list[float]:
    return [float(x.replace("_", "")) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.service_load",
        description="SERVICE: the gRPC exchange under open-loop load at fixed offered rates.",
    )
    p.add_argument(
        "--quick", action="store_true", help="a few seconds: one low rate, stream and batch"
    )
    p.add_argument("--rates", type=_rates, help="offered rates, commands/s (comma separated)")
    p.add_argument(
        "--api", type=lambda s: s.split(","), help="stream,unary,batch (default all three)"
    )
    p.add_argument("--clients", type=int, help="client processes (default 4)")
    p.add_argument("--seconds", type=float, help="schedule length of each rate (default 5)")
    p.add_argument("--drain", type=float, default=10.0, help="seconds to wait for late replies")
    p.add_argument("--book", type=int, default=250, help="resting orders per client")
    p.add_argument("--markets", type=int, default=4)
    p.add_argument("--fsync", choices=["batch", "interval", "none"], default="batch")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--batch-interval-ms",
        type=float,
        default=0.0,
        help="batch API: each client sends at most one message this often, with every "
        "command due by then (0: one wake-up per command, batching only when late)",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        help="experiment: start the server with sys.setswitchinterval(SECONDS) "
        "(Python's default is 0.005)",
    )
    p.add_argument(
        "--profile",
        choices=["auto", "py-spy", "none"],
        default="auto",
        help="py-spy the server at the highest sustained rate (auto: when installed, not --quick)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        help="also run every rate against the server found on this PYTHONPATH (a baseline "
        "build: its pyexchange and matchcore), first; rows are labelled before / after",
    )
    p.add_argument("--baseline-note", default="", help="what the baseline is (commit)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="with --baseline: alternate baseline and this build this many times",
    )
    p.add_argument("--out", type=Path, default=RESULTS, help="where the results go")
    p.add_argument("--no-save", action="store_true")
    p.add_argument("--keep-data", action="store_true", help="keep the server's data directory")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    if not hdr.available():
        print("hdrhistogram is not installed: pip install '.[bench]'", file=sys.stderr)
        return 2
    if args.rates is None:
        args.rates = list(QUICK_RATES if args.quick else RATES)
    if args.api is None:
        args.api = list(QUICK_APIS) if args.quick else list(APIS)
    if args.clients is None:
        args.clients = 2 if args.quick else 4
    if args.seconds is None:
        args.seconds = 2.0 if args.quick else 5.0
    if args.quick:
        args.book = min(args.book, 50)
    if args.profile == "auto":
        args.profile = "py-spy" if _py_spy() and not args.quick else "none"
    unknown = set(args.api) - set(APIS)
    if unknown:
        print(f"unknown api {sorted(unknown)}; choose from {', '.join(APIS)}", file=sys.stderr)
        return 2
    if args.baseline:  # before/after in one run: the ladders alternate, baseline first
        rows: list[dict[str, Any]] = []
        for _ in range(args.repeat):
            before = run(args, argv, "before", str(args.baseline))
            result = run(args, argv, "after")
            rows += before["rows"] + result["rows"]
        result["rows"] = rows
        result["baseline"] = {"server_path": str(args.baseline), "note": args.baseline_note}
    else:
        result = run(args, argv)
    print()
    print(markdown(result))
    if not args.no_save:
        path = write(result, args.out)
        print(f"wrote {path} (and .md, pictures {', '.join(result['pictures']) or 'none'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
