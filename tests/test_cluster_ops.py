"""``pyexchange cluster up`` / ``down``: a whole local cluster from the CLI, and nothing left.

``up`` (a real subprocess of the installed CLI) starts 3 NATS nodes, 2 shards
with a standby each and 2 gateways; the test trades through both gateways on
markets of both shards with the gRPC client, reads the REST API and every
process's health, then ``down`` stops everything: no process it recorded, and
none naming its state directory, is left.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.cluster.natsrun import NatsNotInstalled, find_nats_server
from pyexchange.cluster.router import split_id


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pyexchange", "cluster", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
    )


def alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())  # a zombie's is empty
    except OSError:
        return False


def test_cluster_up_trades_through_both_gateways_and_down_leaves_nothing(tmp_path: Path) -> None:
    try:
        find_nats_server()
    except NatsNotInstalled as exc:
        if os.environ.get("PYX_REQUIRE_NATS"):
            raise
        pytest.skip(str(exc))
    state_dir = tmp_path / "cluster-data"
    started = cli("up", "--state-dir", str(state_dir), cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr[-3000:]
        state = json.loads((state_dir / "cluster.json").read_text())
        assert started.stdout.count("gateway ") == 2 and "trader-1" in started.stdout
        assert [len(state[k]) for k in ("nats_nodes", "engines", "gateways")] == [3, 4, 2]
        assert state["layout"]["shards"] == 2
        shard_of = {int(m): s for m, s in state["layout"]["markets"].items()}
        assert sorted(set(shard_of.values())) == [0, 1]
        keys = {k["name"]: k for k in json.loads(Path(state["keys"]).read_text())["keys"]}
        g1, g2 = (g["grpc"] for g in state["gateways"])

        async def trade() -> None:
            buyer = ExchangeClient(g1, keys["trader-1"]["key_id"], keys["trader-1"]["secret"])
            seller = ExchangeClient(g2, keys["trader-2"]["key_id"], keys["trader-2"]["secret"])
            try:
                for market in (1, 2):  # shard 0 and shard 1
                    bid = await buyer.place(1, market, "BUY_YES", "0.55", "3")
                    assert bid.status == pb.RESTING
                    assert split_id(bid.order_id)[0] == shard_of[market]
                    hit = await seller.place(2, market, "SELL_YES", "0.55", "3")  # demo shares
                    assert hit.status == pb.FILLED and len(hit.fills) == 1
                account = await buyer.get_account(1)
                assert {p.market: p.yes for p in account.positions if p.market in (1, 2)} == {
                    1: "1003",
                    2: "1003",
                }
            finally:
                await buyer.close()
                await seller.close()

        asyncio.run(asyncio.wait_for(trade(), 90))
        with urllib.request.urlopen(state["gateways"][1]["http"] + "/v1/markets", timeout=10) as r:
            slugs = {m["slug"] for m in json.loads(r.read())["markets"]}
        assert "rain-in-paris-tomorrow" in slugs
        shown = cli("status", "--state-dir", str(state_dir), cwd=tmp_path)
        assert shown.returncode == 0, shown.stdout
        assert sum('"leader": true' in line for line in shown.stdout.splitlines()) == 2
    finally:
        stopped = cli("down", "--state-dir", str(state_dir), cwd=tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    pids = [p["pid"] for k in ("nats_nodes", "engines", "gateways") for p in state[k]]
    assert [pid for pid in pids if alive(pid)] == []
    left = subprocess.run(["pgrep", "-f", str(state_dir)], capture_output=True, text=True)
    assert left.stdout == ""
    assert not (state_dir / "cluster.json").exists()
