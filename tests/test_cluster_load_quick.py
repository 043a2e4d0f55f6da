"""The CLUSTER benchmark (bench/cluster_load.py) in quick mode, end to end.

Real processes, as the benchmark runs them: a 3-node JetStream cluster, one
shard's active engine and standby, one gateway, two load clients, one low rate
for a second, then one SIGKILL of the active engine. The test checks that the
report has every part BENCHMARKS.md shows (latency, CPU per order of each
process kind, the failover) and that its counts add up; nothing here depends on
how fast anything ran.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed matchcore wins

pytest.importorskip("hdrh")

from bench import cluster_load  # noqa: E402
from pyexchange.cluster.natsrun import NatsNotInstalled, find_nats_server  # noqa: E402


def test_quick_run_reports_latency_cpu_per_kind_and_failover(tmp_path: Path) -> None:
    try:
        find_nats_server()
    except NatsNotInstalled as exc:
        if os.environ.get("PYX_REQUIRE_NATS"):
            raise  # .ci/run installs it: missing there is a failure
        pytest.skip(str(exc))
    out = tmp_path / "results"
    assert cluster_load.main(["--quick", "--out", str(out)]) == 0
    [path] = sorted(out.glob("cluster-*.json"))
    result = json.loads(path.read_text())
    assert "--quick" in result["command"] and result["api"] == "stream"
    assert result["machine"]["git_commit"] and len(result["load_average_end"]) == 3

    [layout] = result["layouts"]
    assert (layout["shards"], layout["gateways"]) == (1, 1)
    [row] = layout["rows"]
    assert row["acknowledged"] > 0
    assert row["acknowledged"] + row["errors"] == row["scheduled"]
    assert row["latency_ns"]["count"] == row["scheduled"]
    assert row["processes"] == {
        "nats": 3,
        "engine_active": 1,
        "engine_standby": 1,
        "gateway": 1,
        "clients": 2,
    }
    stages = row["stages_shard0"]  # read back from shard 0's command and event logs
    assert stages["sampled"] > 0
    assert stages["stamp_to_command_stored_ms"]["p50"] >= 0
    assert stages["command_stored_to_event_stored_ms"]["p50"] >= 0
    us = row["us_per_order"]
    assert set(us) == {*cluster_load.KINDS, "irq_softirq", "cluster"}
    assert us["cluster"] == pytest.approx(
        sum(us[k] for k in cluster_load.KINDS if k != "clients"), abs=0.5
    )

    failover = result["failover"]
    assert failover["kills"] == 1 and len(failover["seconds_each"]) == 1
    assert failover["seconds_each"][0] > 0 and failover["acknowledged"] > 0

    text = path.with_suffix(".md").read_text()
    assert "| layout | offered /s | achieved /s | p50 ms | p99 ms | p99.9 ms |" in text
    assert "Failover over 1 SIGKILLs" in text and "load average" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result["pictures"] == []
    else:
        assert len(result["pictures"]) == 2
        assert all(Path(p).exists() for p in result["pictures"])
