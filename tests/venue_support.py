"""Helpers of the venue API tests: a real ``pyexchange serve`` process driven by the official SDK.

``VenueServer`` starts the server as a child process on free loopback ports (gRPC
and HTTP), in a temporary data directory, and reads where it listens from
``DATA_DIR/server.json`` and the demo's keys from ``keys.json``. Tests talk to it
only over sockets, with ``polymarket_us.PolymarketUS`` / ``AsyncPolymarketUS``
exactly as a bot would (base URLs pointed at the server). One server per test
module (a module-scoped fixture) keeps CI time down; tests that kill or restart
the server start their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from polymarket_us import AsyncPolymarketUS, PolymarketUS

OUTSIDE = tempfile.gettempdir()  # child processes import the installed package, not the tree
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

# rate limits far above what a test sends, unless a test asks for the venue's
FAST = {
    "http_address_rate": 100_000.0,
    "http_address_burst": 100_000,
    "venue_key_rate": 100_000.0,
    "venue_key_burst": 100_000,
    "max_orders": 8192,
    "max_markets": 32,
    "max_accounts": 256,
}


class VenueServer:
    def __init__(
        self,
        data_dir: Path,
        *,
        fsync: str = "none",
        metrics: bool = False,
        log_level: str = "WARNING",
        **config: Any,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.fsync = fsync
        self.metrics = metrics  # a Prometheus endpoint on a free port (``metrics_port``)
        self.log_level = log_level
        self.metrics_port: int | None = None
        self.config = {**FAST, **config}
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self.grpc_target = ""
        self.keys: dict[str, dict[str, Any]] = {}
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-server.log"
        self._clients: list[Any] = []

    def start(self, timeout: float = 30.0) -> VenueServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config_path = self.data_dir.parent / f"{self.data_dir.name}-config.json"
        config_path.write_text(json.dumps(self.config))
        endpoint = self.data_dir / "server.json"
        endpoint.unlink(missing_ok=True)
        log = open(self.log_path, "a")  # noqa: SIM115 (the child writes to it)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pyexchange",
                "serve",
                "--config",
                str(config_path),
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                "--http-port",
                "0",
                "--metrics-port",
                "0" if self.metrics else "-1",
                "--fsync",
                self.fsync,
                "--log-level",
                self.log_level,
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
            env=ENV,
            cwd=OUTSIDE,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")
            try:
                info = json.loads(endpoint.read_text())
                if info.get("pid") == self.process.pid and info.get("http"):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        self.url = info["http"]
        self.grpc_target = info["target"]
        self.metrics_port = info.get("metrics_port")
        self.keys = {
            k["name"]: k for k in json.loads((self.data_dir / "keys.json").read_text())["keys"]
        }
        return self

    # ------------------------------------------------------------- clients

    def client(self, name: str | None = "pm-trader-1", **options: Any) -> PolymarketUS:
        """A sync SDK client signed with the demo key ``name`` (None: no credentials)."""
        key = self.keys[name] if name else {}
        client = PolymarketUS(
            key_id=key.get("key_id"),
            secret_key=key.get("secret"),
            gateway_base_url=self.url,
            api_base_url=self.url,
            **options,
        )
        self._clients.append(client)
        return client

    def async_client(self, name: str | None = "pm-trader-1", **options: Any) -> AsyncPolymarketUS:
        key = self.keys[name] if name else {}
        return AsyncPolymarketUS(
            key_id=key.get("key_id"),
            secret_key=key.get("secret"),
            gateway_base_url=self.url,
            api_base_url=self.url,
            **options,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pyexchange", *args],
            capture_output=True,
            text=True,
            env=ENV,
            cwd=OUTSIDE,
            timeout=60,
        )

    def digest(self) -> tuple[str, str]:
        """(engine digest, last seq) of what the journal holds now, read beside the running
        server (``pyexchange replay --dry-run`` takes no lock and repairs nothing)."""
        done = self.cli("replay", "--dry-run", "--quiet", str(self.data_dir))
        assert done.returncode == 0, done.stderr
        fields = {line[:14].strip(): line[14:].strip() for line in done.stdout.splitlines()}
        return fields["digest"], fields["last seq"]

    # ------------------------------------------------------------- lifecycle

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """SIGKILL: no snapshot, no flush (the journal in the page cache is all that is left)."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    def __enter__(self) -> VenueServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run(coro: Any) -> Any:
    return asyncio.run(coro)
