"""A local NATS JetStream cluster: N ``nats-server`` processes on loopback, on free ports.

Used by the tests, the benchmarks and ``pyexchange cluster up``. Each node gets
its own configuration file and file store under one directory; the nodes
route to each other and form one JetStream cluster, so R3 streams are
replicated over real sockets between real processes. ``kill(i)`` SIGKILLs a
node and ``start(i)`` brings it back on the same ports and store (it rejoins
and catches up), which is what the fault tests need.

``nats-server`` comes from the system (Debian's package; ``.ci/run`` installs it
where it is missing). ``find_nats_server()`` says where it is or why not.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "pyexchange"


class NatsNotInstalled(RuntimeError):
    """No ``nats-server`` binary on PATH (or in /usr/sbin)."""


def find_nats_server() -> str:
    path = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/bin")
    if path is None:
        raise NatsNotInstalled(
            "nats-server is not installed (Debian: apt-get install -y nats-server)"
        )
    return path


def free_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports on 127.0.0.1 (bound together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@dataclass
class NatsNode:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    config_path: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class NatsCluster:
    """``size`` JetStream nodes in one cluster under ``directory`` (see the module docstring)."""

    def __init__(self, directory: Path | str, size: int = 3, *, max_file_store: str = "4G") -> None:
        self.directory = Path(directory)
        self.binary = find_nats_server()
        ports = free_ports(3 * size)
        self.nodes = [
            NatsNode(
                name=f"n{i + 1}",
                client_port=ports[3 * i],
                cluster_port=ports[3 * i + 1],
                monitor_port=ports[3 * i + 2],
                store_dir=self.directory / f"n{i + 1}" / "store",
                config_path=self.directory / f"n{i + 1}" / "nats.conf",
                log_path=self.directory / f"n{i + 1}" / "nats.log",
            )
            for i in range(size)
        ]
        self.max_file_store = max_file_store
        for node in self.nodes:
            node.store_dir.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(self._config(node))

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def _config(self, node: NatsNode) -> str:
        routes = ", ".join(
            f"nats-route://127.0.0.1:{other.cluster_port}"
            for other in self.nodes
            if other is not node
        )
        return (
            f"server_name: {node.name}\n"
            f"listen: 127.0.0.1:{node.client_port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            "max_payload: 8MB\n"
            "jetstream {\n"
            f'  store_dir: "{node.store_dir}"\n'
            "  max_memory_store: 256MB\n"
            f"  max_file_store: {self.max_file_store}\n"
            "}\n"
            "cluster {\n"
            f"  name: {CLUSTER_NAME}\n"
            f"  listen: 127.0.0.1:{node.cluster_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

    # ------------------------------------------------------------ lifecycle

    def start(self, index: int | None = None, *, wait: float = 30.0) -> NatsCluster:
        """Start every node (or one), then wait until JetStream answers on each started one."""
        chosen = self.nodes if index is None else [self.nodes[index]]
        for node in chosen:
            if node.running:
                continue
            log = open(node.log_path, "ab")  # noqa: SIM115 - the child keeps it
            node.process = subprocess.Popen(
                [self.binary, "-c", str(node.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C of the parent is not delivered to it
                env=self._environment(),
            )
            log.close()
        deadline = time.monotonic() + wait
        for node in chosen:
            self._wait_healthy(node, deadline)
        return self

    def _environment(self) -> dict[str, str]:
        """The nodes share this machine: each gets its share of the cores as Go threads
        (``GOMAXPROCS``, at least 1), unless the caller set it: three Go runtimes sized for
        every core contend for the same ones (on 2 cores, 1 each cut the servers' CPU per
        order by a sixth: BENCHMARKS.md, the cluster)."""
        env = dict(os.environ)
        env.setdefault("GOMAXPROCS", str(max(1, (os.cpu_count() or 1) // len(self.nodes))))
        return env

    def _wait_healthy(self, node: NatsNode, deadline: float) -> None:
        """``/healthz`` answers 200 once the node serves JetStream with a current meta leader."""
        url = f"http://127.0.0.1:{node.monitor_port}/healthz"
        while True:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(
                    f"nats-server {node.name} exited ({node.process.returncode}); "
                    f"log: {node.log_path}\n{tail(node.log_path)}"
                )
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as reply:
                if reply.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"nats-server {node.name} not healthy; log:\n{tail(node.log_path)}"
                )
            time.sleep(0.05)

    def kill(self, index: int) -> None:
        """SIGKILL one node (its store stays: ``start(index)`` brings it back)."""
        node = self.nodes[index]
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL)
            node.process.wait()

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 5 s)."""
        for node in self.nodes:
            if node.process is not None and node.process.poll() is None:
                node.process.terminate()
        for node in self.nodes:
            if node.process is None:
                continue
            try:
                node.process.wait(5)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
