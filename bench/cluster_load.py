"""CLUSTER: acknowledgement latency through the replicated log, open loop, real processes.

    python -m bench.cluster_load                         # shards 1,2 x gateways 1,2, then kills
    python -m bench.cluster_load --quick                 # 1x1, one low rate, one kill (~30 s)
    python -m bench.cluster_load --layouts 2x2 --rates 500,1000,2000 --kills 20

What runs (docs/cluster.md):

- **The cluster** of each layout (``SxG``: S shards, G gateways) is started from
  nothing: 3 ``nats-server`` nodes on free loopback ports (R3 file streams), per
  shard an active engine replica and a hot standby (``python -m
  pyexchange.cluster.node``), G gateway processes (``python -m
  pyexchange.app.gateway``). Markets 1..``--markets`` are placed round robin on the
  shards; every client's account is funded on every shard.
- **The clients** are SERVICE's (``bench/service_load.py``: its mix of resting
  places, crossing IOCs, cancels and replaces, its open-loop schedule, its client
  processes), each on the OrderStream of gateway ``k % G``. **Latency** = reply
  time - scheduled time: the reply comes once a JetStream quorum stored the
  command and the shard's active engine answered it (what an acknowledgement
  means, docs/cluster.md).
- **Each rate** runs ``--seconds``; the ladder of a layout stops once it runs away
  (achieved below 90% of offered, or p50 above 100 ms).
- **CPU per order** of each process kind (the 3 NATS nodes together, active
  engines, standbys, gateways, the load clients) = its CPU seconds over the
  rate's window / orders acknowledged, so the figure extrapolates to bigger
  machines; the machine's own busy time and softirq beside it.
- **Failover** (``--kills``, on the last layout): under a steady ``--kill-rate``,
  SIGKILL the active engine of shard 0 once its standby has caught up (one kill
  every ``--kill-every`` seconds at most); failover =
  from the kill until a command message stored after the kill has its events in
  the event log (the new active engine answers); the killed replica restarts as
  the standby. The clients' latencies over that run are reported too.

Writes ``bench/results/cluster-<timestamp>.json`` and ``.md`` with a latency and a
failover picture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import numpy as np

from pyexchange.app.cluster import wait_status_file

from . import report
from .service_load import (
    NS,
    Clients,
    RunSpec,
    Setup,
    _machine_cpu,
    _proc_cpu,
    make_row,
)

RUNAWAY_ACHIEVED = 0.9
RUNAWAY_P50_NS = 100_000_000
DEFAULT_RATES = (250, 500, 1000, 2000, 4000, 8000)
FAILOVER_WAIT_S = 60  # a failover not done by then is a failure of the run, not a figure
KINDS = ("nats", "engine_active", "engine_standby", "gateway", "clients")


# ------------------------------------------------------------------ the cluster


class Cluster:
    """One layout's processes, in a temporary directory; ``stop()`` ends every one."""

    def __init__(self, directory: Path, shards: int, gateways: int, setup: Setup) -> None:
        from pyexchange.cluster.natsrun import NatsCluster

        self.directory = directory
        self.shards = shards
        self.setup = setup
        self.nats = NatsCluster(directory / "nats")
        self.engines: dict[str, tuple[int, subprocess.Popen[bytes]]] = {}
        self.gateway_procs: list[subprocess.Popen[bytes]] = []
        self.targets: list[str] = []
        self.gateway_count = gateways
        self.accounts = list(range(1, setup.clients + 1))
        self.secrets = {a: os.urandom(16).hex() for a in self.accounts}

    def key_id(self, account: int) -> str:
        return f"load-{account}"

    def start(self) -> Cluster:
        self.nats.start()
        asyncio.run(self._lay_out())
        for shard in range(self.shards):
            for node_id in (f"e{shard}a", f"e{shard}b"):
                self.start_engine(shard, node_id)
                self.wait_engine(node_id)  # the first of a shard leads
        keys = self.directory / "keys.json"
        keys.write_text(
            json.dumps(
                {
                    "keys": [
                        {
                            "key_id": self.key_id(a),
                            "secret": self.secrets[a],
                            "permissions": ["trade", "read"],
                            "accounts": [a],
                            "rate": 1e7,
                            "burst": 10_000_000,
                            "name": f"load-{a}",
                        }
                        for a in self.accounts
                    ]
                }
            )
        )
        for g in range(self.gateway_count):
            status = self.directory / f"g{g}.json"
            proc = self._spawn(
                [
                    "pyexchange.app.gateway",
                    "--nats",
                    ",".join(self.nats.urls),
                    "--gateway-id",
                    f"g{g}",
                    "--keys",
                    str(keys),
                    "--http-port",
                    "-1",
                    "--status-file",
                    str(status),
                    "--log-level",
                    "WARNING",
                ],
                f"g{g}",
            )
            self.gateway_procs.append(proc)
            self.targets.append(self._wait_json(status, proc)["grpc"])
        return self

    async def _lay_out(self) -> None:
        import nats

        from matchcore import COMMAND_DTYPE, CommandType, MarketState
        from pyexchange.cluster import log as L

        nc = await nats.connect(servers=self.nats.urls)
        js = nc.jetstream(timeout=10)
        spec = L.EngineSpec(max_orders=1 << 18, max_markets=64, max_accounts=1024)
        await L.ensure_layout(js, self.shards, spec)
        for shard in range(self.shards):
            mine = [m for m in range(1, self.setup.markets + 1) if (m - 1) % self.shards == shard]
            rows: list[tuple[int, dict[str, int]]] = []
            for m in mine:
                await L.place_market(js, m, shard)
                rows.append(
                    (
                        CommandType.CREATE_MARKET,
                        {"market": m, "price": 100, "quantity": 100, "aux": 100},
                    )
                )
                rows.append((CommandType.SET_MARKET_STATE, {"market": m, "arg": MarketState.OPEN}))
            for a in self.accounts:
                rows.append((CommandType.ADD_ACCOUNT, {"account": a}))
                rows.append((CommandType.DEPOSIT, {"account": a, "quantity": 10**14}))
                for m in mine:
                    rows.append((CommandType.SPLIT, {"account": a, "market": m, "quantity": 10**8}))
            batch = np.zeros(len(rows), dtype=COMMAND_DTYPE)
            for i, (kind, fields) in enumerate(rows):
                batch["type"][i] = kind
                for name, value in fields.items():
                    batch[name][i] = value
            batch["time"] = time.time_ns()
            await js.publish(
                L.command_subject(shard), batch.tobytes(), headers={L.MSG_ID: f"setup-{shard}"}
            )
        await nc.close()

    def _spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", *args],
                cwd=self.directory,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def start_engine(self, shard: int, node_id: str) -> None:
        status = self.directory / f"{node_id}.json"
        status.unlink(missing_ok=True)
        proc = self._spawn(
            [
                "pyexchange.cluster.node",
                "--shard",
                str(shard),
                "--node-id",
                node_id,
                "--nats",
                ",".join(self.nats.urls),
                "--http-port",
                "0",
                "--status-file",
                str(status),
                "--log-level",
                "WARNING",
            ],
            node_id,
        )
        self.engines[node_id] = (shard, proc)

    def wait_engine(self, node_id: str) -> dict[str, Any]:
        return self._wait_json(self.directory / f"{node_id}.json", self.engines[node_id][1])

    def _wait_json(self, path: Path, proc: subprocess.Popen[bytes], timeout: float = 120) -> Any:
        return wait_status_file(path, proc, timeout, f"{path.stem} (see {self.directory})")

    def health(self, node_id: str) -> dict[str, Any] | None:
        import urllib.request

        try:
            port = json.loads((self.directory / f"{node_id}.json").read_text())["http_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                return json.loads(r.read())
        except (OSError, ValueError, KeyError):
            return None

    def pids_by_kind(self) -> dict[str, list[int]]:
        leaders, standbys = [], []
        for node_id, (_shard, proc) in self.engines.items():
            if proc.poll() is not None:
                continue
            h = self.health(node_id)
            (leaders if h and h.get("leader") else standbys).append(proc.pid)
        return {
            "nats": [n.process.pid for n in self.nats.nodes if n.process is not None],
            "engine_active": leaders,
            "engine_standby": standbys,
            "gateway": [p.pid for p in self.gateway_procs],
        }

    def stop(self) -> None:
        procs = [*self.gateway_procs, *(p for _, p in self.engines.values())]
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.nats.stop()


# ------------------------------------------------------------------ measuring


def _cpu(pids_by_kind: dict[str, list[int]]) -> dict[str, float]:
    out = {kind: sum(_proc_cpu(p) for p in pids) for kind, pids in pids_by_kind.items()}
    busy, irq = _machine_cpu()
    out["machine_busy"], out["irq_softirq"] = busy, irq
    out["wall"] = time.monotonic()
    return out


def run_rate(
    cluster: Cluster, clients: Clients, setup: Setup, api: str, rate: float, run_id: int
) -> dict[str, Any]:
    kinds = {**cluster.pids_by_kind(), "clients": clients.pids}
    start_ns = perf_counter_ns() + NS // 2
    spec = RunSpec(run_id, api, rate, setup.clients, start_ns, setup.seconds, setup.drain)
    first = asyncio.run(_command_end(cluster.nats.urls)) + 1
    before = _cpu(kinds)
    clients.send(spec)
    results = clients.receive(setup.seconds + setup.drain + 120)
    after = _cpu(kinds)
    wall = after["wall"] - before["wall"]
    cores = {k: round((after[k] - before[k]) / wall, 3) for k in after if k != "wall"}
    cluster_cores = sum(cores[k] for k in KINDS if k != "clients")
    row = make_row(api, rate, results, {"server": cluster_cores}, {}, setup.seconds)
    orders = max(row["acknowledged"], 1)
    row["cores"] = cores
    row["us_per_order"] = {
        k: round((after[k] - before[k]) * 1e6 / orders, 1) for k in (*KINDS, "irq_softirq")
    }
    row["us_per_order"]["cluster"] = round(
        sum(row["us_per_order"][k] for k in KINDS if k != "clients"), 1
    )
    row["processes"] = {k: len(v) for k, v in kinds.items()}
    last = asyncio.run(_command_end(cluster.nats.urls))
    row["stages_shard0"] = asyncio.run(_stages(cluster.nats.urls, first, last))
    return row


async def _command_end(urls: list[str]) -> int:
    import nats

    from pyexchange.cluster import log as L

    nc = await nats.connect(servers=urls)
    try:
        info = await nc.jetstream(timeout=5).stream_info(L.command_stream(0))
        return int(info.state.last_seq)
    finally:
        await nc.close()


def ran_away(row: dict[str, Any]) -> bool:
    p50 = row["latency_ns"]["p50"] or 0
    return row["achieved_per_s"] < RUNAWAY_ACHIEVED * row["offered_per_s"] or p50 > RUNAWAY_P50_NS


async def _stages(urls: list[str], first: int, last: int, samples: int = 400) -> dict[str, Any]:
    """Where a command message's time goes on shard 0, from the logs themselves.

    For sampled messages ``first..last``: the gateway's stamp (taken just before
    its publish) to the command's store time in the stream (the publish and the
    quorum's write), and that to the store time of the event message of the same
    number (delivery to the engine, its apply, the event publish and its quorum
    write). What an order's latency has beyond these is the client's interval, its
    wait in the gateway for the publish in flight, and the event's way back.
    """
    from datetime import datetime

    import nats
    import numpy as np

    from matchcore import COMMAND_DTYPE
    from pyexchange.cluster import log as L

    def ns(stamp: Any) -> int:  # a datetime (microseconds) or an RFC 3339 string, UTC
        if isinstance(stamp, datetime):
            return int(stamp.timestamp() * 1e6) * 1000
        head, _, frac = stamp.rstrip("Z").partition(".")
        whole = datetime.fromisoformat(head + "+00:00").timestamp()
        return int(whole) * NS + int((frac or "0").ljust(9, "0")[:9])

    nc = await nats.connect(servers=urls)
    js = nc.jetstream(timeout=5)
    stored, applied = [], []
    try:
        step = max(1, (last - first + 1) // samples)
        for seq in range(first, last + 1, step):
            cmd = await js.get_msg(L.command_stream(0), seq)
            if (cmd.headers or {}).get(L.KIND, "batch") != "batch" or not cmd.data:
                continue
            evt = await js.get_msg(L.event_stream(0), seq)
            stamp = int(np.frombuffer(cmd.data, COMMAND_DTYPE)["time"][0])
            stored.append(ns(cmd.time) - stamp)
            applied.append(ns(evt.time) - ns(cmd.time))
    finally:
        await nc.close()

    def pct(values: list[int]) -> dict[str, float]:
        if not values:
            return {}
        a = np.asarray(values, dtype=np.float64) / 1e6
        return {q: round(float(np.percentile(a, v)), 2) for q, v in (("p50", 50), ("p99", 99))}

    return {
        "messages": last - first + 1,
        "sampled": len(stored),
        "stamp_to_command_stored_ms": pct(stored),
        "command_stored_to_event_stored_ms": pct(applied),
    }


async def _event_end(js: Any, shard: int) -> tuple[int, int]:
    from pyexchange.cluster import log as L

    cmd = await js.stream_info(L.command_stream(shard))
    evt = await js.stream_info(L.event_stream(shard))
    return int(cmd.state.last_seq), int(evt.state.last_seq)


def failovers(
    cluster: Cluster,
    clients: Clients,
    setup: Setup,
    api: str,
    kills: int,
    rate: float,
    every: float,
) -> dict[str, Any]:
    """SIGKILL shard 0's active engine ``kills`` times under a steady load (module docstring)."""
    import nats

    # the load lasts for every kill and a little more; a kill loop that outlives it
    # (a slow restart) would wait for commands that no longer come: it fails instead
    seconds = kills * every + 4
    start_ns = perf_counter_ns() + NS // 2
    spec = RunSpec(999, api, rate, setup.clients, start_ns, seconds, setup.drain)
    clients.send(spec)
    times: list[float] = []

    async def kill_all() -> None:
        nc = await nats.connect(servers=cluster.nats.urls)
        js = nc.jetstream(timeout=10)
        try:
            await asyncio.sleep(2)
            for _ in range(kills):
                leader = standby = None
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:  # a leader and a caught-up standby
                    cmd, _ = await _event_end(js, 0)
                    states = {
                        n: cluster.health(n) for n, (s, _) in cluster.engines.items() if s == 0
                    }
                    leader = next((n for n, h in states.items() if h and h["leader"]), None)
                    standby = next(
                        (
                            n
                            for n, h in states.items()
                            if h and not h["leader"] and h["applied"] >= cmd - 50
                        ),
                        None,
                    )
                    if leader and standby:
                        break
                    await asyncio.sleep(0.1)
                if not (leader and standby):
                    raise RuntimeError("no leader with a caught-up standby")
                killed = time.monotonic()
                os.kill(cluster.engines[leader][1].pid, signal.SIGKILL)
                cluster.engines[leader][1].wait()
                # read once it is dead: an event past this command message is the new
                # leader's (read before the kill, the dying one could answer it: 20 ms)
                before, _ = await _event_end(js, 0)
                while (await _event_end(js, 0))[1] <= before:
                    if time.monotonic() - killed > FAILOVER_WAIT_S:
                        raise RuntimeError(f"no engine answered {FAILOVER_WAIT_S} s after a kill")
                    await asyncio.sleep(0.005)
                times.append(time.monotonic() - killed)
                cluster.start_engine(0, leader)
                await asyncio.sleep(max(0.0, every - (time.monotonic() - killed)))
        finally:
            await nc.close()

    asyncio.run(kill_all())
    results = clients.receive(seconds + setup.drain + 180)
    row = make_row(api, rate, results, {"server": 0.0}, {}, seconds)
    ordered = sorted(times)
    return {
        "kills": kills,
        "rate": rate,
        "seconds_each": [round(t, 3) for t in times],
        "p50_s": round(statistics.median(ordered), 3),
        "p99_s": round(float(np.percentile(ordered, 99)), 3),
        "max_s": round(ordered[-1], 3),
        "client_latency_ns": row["latency_ns"],
        "acknowledged": row["acknowledged"],
        "errors": row["errors"],
        "errors_by_code": row["errors_by_code"],
    }


# ------------------------------------------------------------------ reporting


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / 1e6:.1f}"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    load = "/".join(f"{x:.1f}" for x in m["load_average"])
    end = "/".join(f"{x:.1f}" for x in result["load_average_end"])
    lines = [
        f"CLUSTER, commit {(m['git_commit'] or 'unknown')[:12]}"
        f"{' (dirty)' if m['git_dirty'] else ''}, {m['cores']} CPUs, API {result['api']}, "
        f"load average (1/5/15 min) {load} at the start, {end} at the end",
        "",
        f"    {result['command']}",
        "",
        "| layout | offered /s | achieved /s | p50 ms | p99 ms | p99.9 ms | errors | "
        "NATS µs/order | active engines | standbys | gateways | cluster | load clients |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for layout in result["layouts"]:
        for row in layout["rows"]:
            lat, us = row["latency_ns"], row["us_per_order"]
            cells = [
                layout["name"],
                f"{row['offered_per_s']:,.0f}",
                f"{row['achieved_per_s']:,.0f}",
                _ms(lat["p50"]),
                _ms(lat["p99"]),
                _ms(lat["p99.9"]),
                str(row["errors"]),
                *(str(us[k]) for k in ("nats", "engine_active", "engine_standby", "gateway")),
                str(us["cluster"]),
                str(us["clients"]),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    f = result.get("failover")
    if f:
        lines += [
            "",
            f"Failover over {f['kills']} SIGKILLs of the active engine at "
            f"{f['rate']:,.0f} orders/s: "
            f"p50 {f['p50_s']} s, p99 {f['p99_s']} s, max {f['max_s']} s; "
            "client latency over "
            f"the run p50 {_ms(f['client_latency_ns']['p50'])} ms, "
            f"p99 {_ms(f['client_latency_ns']['p99'])} ms, "
            f"max {_ms(f['client_latency_ns']['max'])} ms; "
            f"{f['acknowledged']} acknowledged, {f['errors']} errors.",
        ]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], stem: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = []
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for layout in result["layouts"]:
        rows = layout["rows"]
        x = [r["achieved_per_s"] for r in rows]
        for key, style in (("p50", "-o"), ("p99", "--s")):
            y = [(r["latency_ns"][key] or 0) / 1e6 for r in rows]
            ax.plot(x, y, style, label=f"{layout['name']} {key}")
    ax.set_yscale("log")
    ax.set_xlabel("acknowledged orders/s")
    ax.set_ylabel("latency from the scheduled send (ms)")
    ax.set_title("Acknowledgement latency through R3 (shards x gateways)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    path = stem.with_name(stem.name + "-latency.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    out.append(str(path))
    f = result.get("failover")
    if f:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(f["seconds_each"], bins=20)
        ax.set_xlabel("failover (s): SIGKILL to the first event after it")
        ax.set_ylabel("kills")
        ax.set_title(f"{f['kills']} kills of the active engine at {f['rate']:,.0f}/s")
        path = stem.with_name(stem.name + "-failover.png")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(str(path))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cluster_load", description=__doc__)
    p.add_argument("--layouts", default="1x1,1x2,2x1,2x2", help="SHARDSxGATEWAYS, comma-separated")
    p.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)))
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--markets", type=int, default=4)
    p.add_argument("--book", type=int, default=100, help="resting orders per client")
    p.add_argument("--kills", type=int, default=20, help="failovers measured (0: none)")
    p.add_argument("--kill-rate", type=float, default=500.0)
    p.add_argument("--kill-every", type=float, default=6.0, help="seconds from a kill to the next")
    p.add_argument(
        "--api",
        choices=["stream", "batch"],
        default="stream",
        help="OrderStream (one order a message) or OrderBatchStream (what is due, per message)",
    )
    p.add_argument(
        "--batch-interval-ms",
        type=float,
        default=1.0,
        help="batch: one message per client this often",
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = p.parse_args(argv)
    if args.quick:  # every part once, as small as it goes: a smoke test, not a figure
        args.layouts, args.rates, args.seconds = "1x1", "100", 1.0
        args.clients, args.markets, args.book = 2, 2, 10
        args.kills, args.kill_rate, args.kill_every = 1, 100.0, 3.0
    setup = Setup(
        clients=args.clients,
        markets=args.markets,
        book=args.book,
        seconds=args.seconds,
        drain=10.0,
        batch_interval_ms=args.batch_interval_ms if args.api == "batch" else 0.0,
    )
    rates = [float(r) for r in args.rates.split(",")]
    words = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "-m", "bench.cluster_load", *words])
    result: dict[str, Any] = {
        "command": command,
        "machine": {**report.machine(words), "command": command},
        "setup": asdict(setup),
        "api": args.api,
        "layouts": [],
    }
    layouts = [tuple(map(int, text.split("x"))) for text in args.layouts.split(",")]
    for n, (shards, gateways) in enumerate(layouts):
        name = f"{shards} shard{'s' * (shards > 1)}, {gateways} gateway{'s' * (gateways > 1)}"
        with tempfile.TemporaryDirectory(prefix="cluster-load-") as tmp:
            cluster = Cluster(Path(tmp), shards, gateways, setup)
            clients = None
            try:
                cluster.start()
                targets = cluster.targets  # client k on gateway k % G
                logins = [
                    (targets[k % len(targets)], cluster.key_id(a), cluster.secrets[a], a)
                    for k, a in enumerate(cluster.accounts)
                ]
                clients = Clients(logins, setup, name="cluster-client")
                clients.receive(180)  # warmed up: each client's book placed
                rows = []
                for i, rate in enumerate(rates):
                    row = run_rate(cluster, clients, setup, args.api, rate, i)
                    rows.append(row)
                    lat = row["latency_ns"]
                    print(
                        f"{name}: offered {rate:,.0f}/s achieved {row['achieved_per_s']:,.0f}/s "
                        f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} p99.9 {_ms(lat['p99.9'])} ms "
                        f"errors {row['errors']} µs/order {row['us_per_order']} "
                        f"stages {row['stages_shard0']}",
                        flush=True,
                    )
                    if ran_away(row):
                        break
                result["layouts"].append(
                    {"name": name, "shards": shards, "gateways": gateways, "rows": rows}
                )
                if args.kills and n == len(layouts) - 1:
                    result["failover"] = failovers(
                        cluster,
                        clients,
                        setup,
                        args.api,
                        args.kills,
                        args.kill_rate,
                        args.kill_every,
                    )
                    f = result["failover"]
                    print(
                        f"failover: p50 {f['p50_s']} s p99 {f['p99_s']} s max {f['max_s']} s",
                        flush=True,
                    )
            finally:
                if clients is not None:
                    clients.stop()
                cluster.stop()
    result["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / time.strftime("cluster-%Y%m%d-%H%M%S")
    result["pictures"] = plot(result, stem)
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2, default=_plain))
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {stem}.json, .md {' '.join(result['pictures'])}")
    return 0


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer | np.floating):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    sys.exit(main())
