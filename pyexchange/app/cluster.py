"""``pyexchange cluster up | down | status``: run the cluster's processes, locally or per host.

``up`` starts, each in a session of its own so that it outlives the command:

1. NATS: three ``nats-server`` nodes on free loopback ports (``natsrun``), or
   none when the config names real servers (``"nats": [URL, ...]``);
2. the layout (``log.ensure_layout``) and, on a fresh cluster with ``demo``,
   the demo: markets 1-3 placed on the shards, accounts 1-4 funded on every
   shard, the keys and the REST catalogue written to the state directory;
3. the engine replicas (``python -m pyexchange.cluster.node``), the first of
   each shard waited for before its standbys start, so it is the active one;
4. the gateways (``python -m pyexchange.app.gateway``).

Everything it started is recorded in ``STATE_DIR/cluster.json`` (each
process's pid, command line marker and endpoints); ``down`` stops exactly
those processes (SIGTERM, then SIGKILL after ``--grace`` seconds; a pid is
signalled only while its command line still names the state directory, so a
reused pid is never hit) and checks that none is left. ``status`` prints the
``/health`` of each.

The config file (JSON, ``--config``; every key optional) is the format of
docs/cluster.md ("Running it"):

    {"nats": ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"],
     "shards": 2, "engine": {"max_orders": 65536, "max_markets": 64, "max_accounts": 4096},
     "engines": [{"shard": 0, "node_id": "e0a", "status_port": 9500}],
     "gateways": [{"gateway_id": "g1", "port": 50051, "http_port": 8080, "status_port": 9600}],
     "host": "0.0.0.0", "keys": "/etc/pyexchange/keys.json", "demo": false}

With ``engines`` or ``gateways`` given, this host runs only those; without,
it runs ``replicas`` replicas of every shard and ``gateway_count`` gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import COMMAND_DTYPE, CommandType

STATE_FILE = "cluster.json"


@dataclass
class ClusterConfig:
    nats: list[str] = field(default_factory=list)  # empty: start three local nodes
    shards: int = 2
    engine: dict[str, Any] = field(default_factory=dict)  # EngineSpec fields
    replicas: int = 2  # per shard: one active, the others hot standbys
    gateway_count: int = 2
    engines: list[dict[str, Any]] = field(default_factory=list)  # {"shard", "node_id", ...}
    gateways: list[dict[str, Any]] = field(default_factory=list)  # {"gateway_id", ...}
    host: str = "127.0.0.1"
    keys: str | None = None  # default STATE_DIR/keys.json (created with demo keys)
    demo: bool = True
    snapshot_every: int = 10_000

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClusterConfig:
        names = set(cls.__dataclass_fields__)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown cluster configuration keys: {sorted(unknown)}")
        return cls(**data)

    def engine_plan(self) -> list[dict[str, Any]]:
        if self.engines or self.gateways:
            return list(self.engines)
        letters = "abcdefghijklmnopqrstuvwxyz"
        return [
            {"shard": s, "node_id": f"e{s}{letters[r]}"}
            for s in range(self.shards)
            for r in range(self.replicas)
        ]

    def gateway_plan(self) -> list[dict[str, Any]]:
        if self.engines or self.gateways:
            return list(self.gateways)
        return [{"gateway_id": f"g{i + 1}"} for i in range(self.gateway_count)]


# ---------------------------------------------------------------- processes


def _spawn(argv: list[str], log: Path, cwd: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives `cluster up`; Ctrl-C of a shell is not sent
        )


def wait_status_file(
    path: Path, process: subprocess.Popen[bytes], timeout: float, what: str
) -> Any:
    """The JSON a starting process writes once it serves (its ports), or why it never came."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text())
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not start within {timeout:g} s")
        time.sleep(0.05)


def _health(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
    except (OSError, ValueError) as exc:
        return 0, {"error": str(exc)}


def _alive(pid: int, marker: str) -> bool:
    """Whether ``pid`` runs and is still ours (its command line names ``marker``)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True  # no /proc (not Linux): trust the pid
    if not cmdline:  # a zombie
        return False
    return marker in cmdline


# ----------------------------------------------------------------- setup


async def _lay_out(urls: list[str], config: ClusterConfig, state_dir: Path) -> dict[str, Any]:
    """Streams and buckets; on a fresh cluster with ``demo``, the demo's markets and cash."""
    import nats

    from ..cluster import log as L

    nc = await nats.connect(servers=urls, connect_timeout=2, max_reconnect_attempts=-1)
    try:
        js = nc.jetstream(timeout=5)
        spec = L.EngineSpec(**config.engine) if config.engine else None
        layout = await L.until_answered(
            lambda: L.ensure_layout(js, config.shards, spec), "the layout", 60
        )
        placed: dict[int, int] = {}
        if config.demo:
            placed = await _demo_setup(js, layout.shards)
        return {"shards": layout.shards, "markets": placed or await L.market_map(js)}
    finally:
        await nc.close()


async def _demo_setup(js: Any, shards: int) -> dict[int, int]:
    """Demo markets round robin on the shards, each shard's first message: its markets
    (created, opened), accounts 1-4 with $100,000 each (on every shard: each shard's cash
    is its own, docs/cluster.md) and 1,000 YES+NO pairs per account in each of its markets.
    Only on a fresh cluster (no message in any command log)."""
    from ..cluster import log as L
    from .server import ServerConfig, demo_commands

    for shard in range(shards):
        if (await js.stream_info(L.command_stream(shard))).state.last_seq:
            return {}
    config = ServerConfig()
    placed = {}
    for i, market in enumerate(config.demo_markets):
        placed[market.market] = await L.place_market(js, market.market, i % shards)
    rows = demo_commands(config)
    for shard in range(shards):
        mine = [m for m, s in placed.items() if s == shard]
        kinds = rows["type"]
        names_market = np.isin(
            kinds, [CommandType.CREATE_MARKET, CommandType.SET_MARKET_STATE, CommandType.SPLIT]
        )
        keep = ~names_market | np.isin(rows["market"], mine)
        batch = np.ascontiguousarray(rows[keep], dtype=COMMAND_DTYPE)
        batch["time"] = time.time_ns()
        await js.publish(
            L.command_subject(shard), batch.tobytes(), headers={L.MSG_ID: f"demo-setup-{shard}"}
        )
    return placed


def _write_demo_files(state_dir: Path, keys_path: Path) -> None:
    from ..service.auth import KeyStore
    from ..service.catalogue import Catalogue
    from .server import ServerConfig, demo_catalogue

    if not keys_path.exists():
        KeyStore.demo().save(keys_path)
    catalogue_path = state_dir / "catalogue.json"
    if not catalogue_path.exists():
        catalogue = Catalogue(catalogue_path)
        catalogue.merge(demo_catalogue(ServerConfig()))
        catalogue.save()


# -------------------------------------------------------------------- up


def up(state_dir: Path, config: ClusterConfig, *, timeout: float = 60.0) -> dict[str, Any]:
    """Start this host's processes (module docstring); returns what ``cluster.json`` says."""
    from ..cluster.natsrun import NatsCluster

    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / STATE_FILE).exists():
        running = [p for p in _recorded(state_dir) if _alive(p["pid"], p["marker"])]
        if running:
            raise ValueError(f"{state_dir}: a cluster is up (`pyexchange cluster down` first)")
    marker = str(state_dir)
    logs = state_dir / "logs"
    state: dict[str, Any] = {"state_dir": marker, "nats_nodes": [], "engines": [], "gateways": []}
    keys_path = Path(config.keys) if config.keys else state_dir / "keys.json"
    try:
        if config.nats:
            urls = list(config.nats)
        else:
            nats_cluster = NatsCluster(state_dir / "nats").start(wait=timeout)
            urls = nats_cluster.urls
            for node in nats_cluster.nodes:
                assert node.process is not None
                state["nats_nodes"].append(
                    {
                        "name": node.name,
                        "pid": node.process.pid,
                        "url": node.url,
                        "monitor": f"http://127.0.0.1:{node.monitor_port}",
                        "marker": str(node.config_path),
                    }
                )
        state["nats"] = urls
        _save(state_dir, state)
        if config.demo:
            _write_demo_files(state_dir, keys_path)
        state["layout"] = asyncio.run(_lay_out(urls, config, state_dir))
        state["keys"] = str(keys_path)
        started_shards: set[int] = set()
        for plan in config.engine_plan():
            shard, node_id = int(plan["shard"]), str(plan["node_id"])
            status = state_dir / "run" / f"{node_id}.json"
            status.unlink(missing_ok=True)
            status.parent.mkdir(parents=True, exist_ok=True)
            argv = [
                sys.executable,
                "-m",
                "pyexchange.cluster.node",
                "--shard",
                str(shard),
                "--node-id",
                node_id,
                "--nats",
                ",".join(urls),
                "--snapshot-every",
                str(plan.get("snapshot_every", config.snapshot_every)),
                "--http-port",
                str(plan.get("status_port", 0)),
                "--status-file",
                str(status),
            ]
            process = _spawn(argv, logs / f"{node_id}.log", state_dir)
            record = {"shard": shard, "node_id": node_id, "pid": process.pid, "marker": marker}
            state["engines"].append(record)
            _save(state_dir, state)
            if shard not in started_shards:  # the first of a shard leads: wait for it
                started_shards.add(shard)
                ports = wait_status_file(status, process, timeout, f"engine {node_id}")
                record["status"] = f"http://127.0.0.1:{ports['http_port']}"
            else:
                record["status_file"] = str(status)
        for record in state["engines"]:
            path = record.pop("status_file", None)
            if path is not None:
                process_ports = _wait_pid_file(Path(path), record["pid"], timeout, record)
                record["status"] = f"http://127.0.0.1:{process_ports['http_port']}"
        catalogue = state_dir / "catalogue.json"
        for plan in config.gateway_plan():
            gateway_id = str(plan["gateway_id"])
            status = state_dir / "run" / f"{gateway_id}.json"
            status.unlink(missing_ok=True)
            argv = [
                sys.executable,
                "-m",
                "pyexchange.app.gateway",
                "--nats",
                ",".join(urls),
                "--gateway-id",
                gateway_id,
                "--keys",
                str(keys_path),
                "--data-dir",
                str(state_dir / "gateways" / gateway_id),
                "--host",
                str(plan.get("host", config.host)),
                "--port",
                str(plan.get("port", 0)),
                "--http-port",
                str(plan.get("http_port", 0)),
                "--status-port",
                str(plan.get("status_port", 0)),
                "--status-file",
                str(status),
            ]
            if catalogue.exists():
                argv += ["--catalogue", str(catalogue)]
            process = _spawn(argv, logs / f"{gateway_id}.log", state_dir)
            record = {"gateway_id": gateway_id, "pid": process.pid, "marker": marker}
            state["gateways"].append(record)
            _save(state_dir, state)
            record.update(wait_status_file(status, process, timeout, f"gateway {gateway_id}"))
            record["pid"] = process.pid
        _save(state_dir, state)
    except BaseException:
        down(state_dir)
        raise
    return state


def _wait_pid_file(path: Path, pid: int, timeout: float, record: dict[str, Any]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text())
        if not _alive(pid, record["marker"]) or time.monotonic() > deadline:
            raise RuntimeError(f"engine {record['node_id']} did not start")
        time.sleep(0.05)


def _save(state_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(state_dir / STATE_FILE)


def _recorded(state_dir: Path) -> list[dict[str, Any]]:
    """Every process of the state file: gateways first, then engines, then NATS (stop order)."""
    try:
        state = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [*state.get("gateways", []), *state.get("engines", []), *state.get("nats_nodes", [])]


# ------------------------------------------------------------------ down


def down(state_dir: Path, *, grace: float = 10.0) -> list[int]:
    """Stop every process recorded in the state dir; the pids still alive after (none)."""
    state_dir = state_dir.resolve()
    groups = [
        [p for p in _recorded(state_dir) if "gateway_id" in p],
        [p for p in _recorded(state_dir) if "node_id" in p],
        [p for p in _recorded(state_dir) if "name" in p],
    ]
    for group in groups:  # gateways stop taking orders first, NATS goes last
        for p in group:
            if _alive(p["pid"], p["marker"]):
                with contextlib.suppress(OSError):
                    os.kill(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(p["pid"], p["marker"]) for p in group) and time.monotonic() < deadline:
            _reap()
            time.sleep(0.05)
        for p in group:
            if _alive(p["pid"], p["marker"]):
                with contextlib.suppress(OSError):
                    os.kill(p["pid"], signal.SIGKILL)
    time.sleep(0.1)
    _reap()
    left = [p["pid"] for group in groups for p in group if _alive(p["pid"], p["marker"])]
    if not left:
        (state_dir / STATE_FILE).unlink(missing_ok=True)
    return left


def _reap() -> None:
    """Collect children of this process that exited (``up`` and ``down`` in one process)."""
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass


# ---------------------------------------------------------------- status


def status(state_dir: Path) -> list[tuple[str, int, Any]]:
    """(name, HTTP status, /health body) of every recorded process (NATS: /healthz)."""
    out = []
    for p in _recorded(state_dir.resolve()):
        name = p.get("gateway_id") or p.get("node_id") or p.get("name", "?")
        if "monitor" in p:
            code, body = _health_nats(p["monitor"])
        elif "status" in p:
            code, body = _health(str(p["status"]))
        else:
            code, body = 0, {"error": "no status endpoint"}
        out.append((str(name), code, body))
    return out


def _health_nats(url: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError) as exc:
        return 0, {"error": str(exc)}


def banner(state: dict[str, Any]) -> str:
    """What ``cluster up`` prints: endpoints, health URLs and the keys."""
    lines = [f"pyexchange cluster: up, state in {state['state_dir']}/{STATE_FILE}"]
    lines.append(f"  nats      {','.join(state['nats'])}")
    for node in state["nats_nodes"]:
        lines.append(f"            {node['name']} pid {node['pid']}  monitor {node['monitor']}")
    layout = state.get("layout", {})
    markets = ", ".join(f"{m} on shard {s}" for m, s in sorted(layout.get("markets", {}).items()))
    lines.append(f"  shards    {layout.get('shards')}  (markets: {markets or 'none placed'})")
    for e in state["engines"]:
        lines.append(
            f"  engine    shard {e['shard']} {e['node_id']:<5} pid {e['pid']:<7} "
            f"{e.get('status', '')}/health /metrics"
        )
    for g in state["gateways"]:
        lines.append(
            f"  gateway   {g['gateway_id']:<5} grpc {g['grpc']}  http {g['http']}  "
            f"status {g['status']}/health /metrics"
        )
    lines.append(f"  keys      {state['keys']}")
    with contextlib.suppress(OSError, ValueError, KeyError):
        for key in json.loads(Path(state["keys"]).read_text())["keys"]:
            accounts = ",".join(map(str, key.get("accounts", []))) or "all"
            lines.append(
                f"    {key.get('name', '-'):<12} accounts {accounts:<8} {key['key_id']}  "
                f"{key.get('secret') or '(not kept)'}"
            )
    lines.append("  stop      pyexchange cluster down" + _state_dir_option(state))
    return "\n".join(lines)


def _state_dir_option(state: dict[str, Any]) -> str:
    default = Path("cluster-data").resolve()
    return "" if Path(state["state_dir"]) == default else f" --state-dir {state['state_dir']}"
