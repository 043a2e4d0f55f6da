"""The benchmark harness (bench/) in quick mode, in-process, on small sizes.

Checks that a run reports every field a benchmark report must show, that every
engine that can see its fills reports the same traded volume on PEER (the one the
workload generator computed), and that the workloads are deterministic.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import workloads  # noqa: E402
from bench.__main__ import main  # noqa: E402

ROW_FIELDS = {
    "peer",
    "description",
    "workload",
    "commands",
    "runs",
    "runs_ns",
    "warmup_ns",
    "median_ns_per_command",
    "min_ns_per_command",
    "max_ns_per_command",
    "commands_per_s",
    "ratio_to_batch",
    "ratio_to_per_call",
    "outcome",
    "check",
}
MACHINE_FIELDS = {"cpu_model", "cores", "python", "git_commit", "command", "packages"}
TABLE_FIELDS = {"title", "workload", "commands", "seed", "mix", "expected", "rows", "unavailable"}
RUNS = 5


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    argv = ["--quick", "--size", "3000", "--reference-size", "600"]
    argv += ["--runs", str(RUNS), "--no-progress", "--out", str(out)]
    returned = main(argv)
    files = sorted(os.listdir(out))
    loaded = {}
    for name in files:
        if name.endswith(".json"):
            doc = json.loads((out / name).read_text())
            loaded[doc["workload"]] = doc
    assert {r["workload"] for r in returned} == set(loaded) == {"XC", "PEER"}
    assert any(name.endswith(".md") for name in files)
    return loaded


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for table in doc["tables"] for row in table["rows"]]


@pytest.mark.parametrize("workload", ["XC", "PEER"])
def test_report_has_every_field(results: dict[str, Any], workload: str) -> None:
    doc = results[workload]
    assert set(doc["machine"]) >= MACHINE_FIELDS
    assert doc["machine"]["command"].startswith(os.path.basename(sys.executable) + " -m bench")
    assert doc["config"]["runs"] == RUNS and doc["peak_rss_bytes"] > 0
    assert doc["all_checks_ok"], json.dumps(doc["tables"], indent=1)[:4000]
    for table in doc["tables"]:
        assert set(table) >= TABLE_FIELDS
        names = [row["peer"] for row in table["rows"]]
        assert "matchcore batch" in names and "matchcore per-call" in names
        assert table["memory"]["bytes_per_resting_order"] >= table["memory"]["order_slot_bytes"]
        assert table["state_digests_agree"]
    for row in _rows(doc):
        assert set(row) >= ROW_FIELDS, row["peer"]
        assert len(row["runs_ns"]) == RUNS and len(row["warmup_ns"]) == 1
        assert row["min_ns_per_command"] <= row["median_ns_per_command"]
        assert row["median_ns_per_command"] <= row["max_ns_per_command"]
        assert row["commands_per_s"] > 0
        assert row["ratio_to_batch"] > 0 and row["ratio_to_per_call"] > 0
        assert row["check"]["ok"], row["check"]


def test_reference_runs_at_reduced_size(results: dict[str, Any]) -> None:
    pytest.importorskip("matchcore.reference")
    for doc in results.values():
        reduced = [t for t in doc["tables"] if "reference batch" in {r["peer"] for r in t["rows"]}]
        assert reduced and all(t["commands"] == 600 for t in reduced)


def test_every_engine_reports_the_same_traded_volume_on_peer(results: dict[str, Any]) -> None:
    for table in results["PEER"]["tables"]:
        expected = table["expected"]["traded_volume"]
        seen = {
            row["peer"]: row["outcome"]["traded_volume"]
            for row in table["rows"]
            if row["outcome"]["traded_volume"] is not None
        }
        assert {"matchcore batch", "matchcore per-call", "plain Python book"} <= set(seen)
        assert set(seen.values()) == {expected}, seen
        if table["workload"] == "PEER":
            assert expected > 0


def test_workloads_are_deterministic_prefixes() -> None:
    a, b = workloads.xc(n=2_000), workloads.xc(n=3_000)
    assert np.array_equal(a.setup, b.setup)
    assert np.array_equal(a.commands, b.commands[:2_000])
    p, q = workloads.peer(n=2_000), workloads.peer(n=3_000)
    assert np.array_equal(p.ops, q.ops[:2_000])
    assert workloads.peer(n=2_000).expected == p.expected


def test_xc_mix_is_the_exchange_core_mix() -> None:
    wl = workloads.xc(n=60_000)
    mix = wl.mix()
    share = {k: v / wl.n for k, v in mix.items()}
    assert share["GTC"] == pytest.approx(0.09, abs=0.01)
    assert share["IOC"] == pytest.approx(0.03, abs=0.005)
    assert share["CANCEL"] == pytest.approx(0.06, abs=0.01)
    assert share["MOVE"] == pytest.approx(0.82, abs=0.01)
    assert 0.04 < wl.expected.trading_commands / wl.n < 0.07
    assert 700 < wl.expected.resting_orders < 1_300
