"""The benchmark harness (bench/) in quick mode, in-process, on small sizes.

Checks that a run reports every field a benchmark report must show (throughput,
latency percentiles per command type, open-loop rows, memory, pictures), that every
engine that can see its fills reports the same traded volume on PEER (the one the
workload generator computed), and that the workloads are deterministic. No test
here depends on how fast anything ran.
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
    sys.path.append(str(ROOT))  # after site-packages: the installed matchcore wins

from bench import scale, workloads  # noqa: E402
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
SIZE = 3000
PERCENTILES = ["p50", "p90", "p99", "p99.9", "p99.99", "max"]
LATENCY_ROW_FIELDS = {"peer", "api", "kind", "count", "min", "mean", *PERCENTILES, "curve"}
OPEN_LOOP_ROW_FIELDS = {
    "peer",
    "api",
    "offered_per_s",
    "achieved_per_s",
    "commands",
    "seconds",
    "calls",
    "mean_batch",
    "latency_ns",
    "runaway",
    "retried",
    "check",
}
# Which (engine, API) pairs each workload's latency and open-loop tables must have.
LATENCY_PEERS = {
    "XC": {("matchcore batch", "in-core"), ("matchcore per-call", "python")},
    "SCALE": {("matchcore batch", "in-core"), ("matchcore per-call", "python")},
    "PEER": {
        ("matchcore batch", "in-core"),
        ("matchcore per-call", "python"),
        ("plain Python book", "python"),
        ("liquibook", "python"),
    },
}
OPEN_LOOP_PEERS = {
    "XC": {"matchcore batch", "matchcore per-call"},
    "PEER": {"matchcore batch", "matchcore per-call", "plain Python book", "liquibook"},
}
KINDS = {
    "XC": {"place", "cancel", "replace", "crossing"},
    "PEER": {"place", "cancel", "crossing"},
    "SCALE": {"place", "cancel", "replace", "crossing"},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    argv = ["--quick", "--size", str(SIZE), "--reference-size", "600"]
    argv += ["--runs", str(RUNS), "--no-progress", "--out", str(out)]
    returned = main(argv)
    files = sorted(os.listdir(out))
    loaded = {}
    for name in files:
        if name.endswith(".json"):
            doc = json.loads((out / name).read_text())
            doc["_files"] = files
            loaded[doc["workload"]] = doc
    assert {r["workload"] for r in returned} == set(loaded) == {"XC", "PEER", "SCALE", "MEMORY"}
    assert sum(name.endswith(".md") for name in files) == 4
    return loaded


def _needs(module: str) -> None:
    """The latency and picture parts need the bench extra (hdrhistogram, matplotlib)."""
    pytest.importorskip(module)


def _rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [row for table in doc["tables"] for row in table["rows"]]


@pytest.mark.parametrize("workload", ["XC", "PEER", "SCALE"])
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
    for doc in (results["XC"], results["PEER"]):
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


@pytest.mark.parametrize("make", ["xc", "peer", "scale"])
def test_workload_ids_are_the_engines_at_every_capacity(make: str) -> None:
    """The generators' ids follow the engine's (bench/ids.py): at a capacity so tight that
    the id counter laps the pool many times and skips the slots of resting orders, and at
    a large one, every cancel and replace finds its order and the books end as expected."""
    from bench.peers.engine import BatchPeer
    from matchcore import Engine

    if make == "scale":
        wl = scale.scale(n=20_000, **scale.QUICK)
    else:
        wl = getattr(workloads, make)(n=20_000)
    tight = wl.expected.max_live + 7
    digests = set()
    for max_orders in (tight, wl.max_orders, 1 << 20):
        at = wl.at_capacity(max_orders)
        assert at.max_orders == max_orders and at.expected == wl.expected
        peer = BatchPeer(Engine, "core")
        peer.load(at)
        peer.reset()
        peer.replay()
        outcome = peer.outcome()
        assert outcome.rejects == 0, max_orders
        assert outcome.traded_volume == wl.expected.traded_volume
        assert (outcome.resting_orders, outcome.resting_qty) == (
            wl.expected.resting_orders,
            wl.expected.resting_qty,
        )
        digests.add(outcome.extra["digest"])
    skipped = wl.log.ids(tight)
    assert np.any(skipped[1:] != np.arange(1, len(skipped))), "the tight pool never skipped"
    assert len(digests) == 3  # max_orders is in the state (and the ids differ)


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


# ---------------------------------------------------------------- latency


@pytest.mark.parametrize("workload", ["XC", "PEER", "SCALE"])
def test_latency_has_every_percentile_per_command_type(
    results: dict[str, Any], workload: str
) -> None:
    _needs("hdrh")
    table = results[workload]["latency"]
    assert table["workload"] == workload and table["commands"] == SIZE
    assert table["all_checks_ok"] and all(c["ok"] for c in table["checks"]), table["checks"]
    assert table["timer_floor_ns"] > 0 and set(table["clocks"]) == {"in-core", "python"}
    kinds = {k for k, v in table["kinds"].items() if v}
    assert kinds == KINDS[workload] and sum(table["kinds"].values()) == SIZE
    seen = {(r["peer"], r["api"]) for r in table["rows"]}
    assert seen == LATENCY_PEERS[workload], seen
    for peer, api in seen:
        rows = {r["kind"]: r for r in table["rows"] if (r["peer"], r["api"]) == (peer, api)}
        assert set(rows) == kinds | {"all"}, (peer, api)
        assert rows["all"]["count"] == SIZE * table["runs"]
        assert sum(rows[k]["count"] for k in kinds) == rows["all"]["count"]
        for kind, row in rows.items():
            assert set(row) >= LATENCY_ROW_FIELDS, (peer, kind)
            assert row["count"] == table["kinds"].get(kind, SIZE) * table["runs"]
            values = [row["min"], *(row[p] for p in PERCENTILES)]
            assert all(isinstance(v, int) and v >= 0 for v in values), row
            assert values == sorted(values), (peer, kind, values)
            curve = row["curve"]
            assert len(curve["percentile"]) == len(curve["ns"]) >= 2
            assert curve["percentile"][-1] == 100.0 and curve["ns"][-1] == row["max"]
            assert curve["ns"] == sorted(curve["ns"])


def test_latency_kinds_come_from_what_the_core_did() -> None:
    from bench import latency
    from matchcore import Engine

    wl = workloads.xc(n=SIZE)
    kinds = latency.command_kinds(wl, Engine)
    crossing = int(np.count_nonzero(kinds == latency.CROSSING))
    assert crossing == wl.expected.trading_commands
    new = wl.commands["type"] == 1
    assert np.all(kinds[~new & (wl.commands["type"] == 2)] == latency.CANCEL_KIND)
    peer = workloads.peer(n=SIZE)
    pk = latency.command_kinds(peer, Engine)
    assert np.array_equal(pk == latency.CROSSING, peer.ops["kind"] == workloads.CROSS)


# ---------------------------------------------------------------- open loop


@pytest.mark.parametrize("workload", ["XC", "PEER"])
def test_open_loop_rows(results: dict[str, Any], workload: str) -> None:
    _needs("hdrh")
    table = results[workload]["open_loop"]
    driver = table["driver"]
    assert {"batch", "seconds", "drain_every", "rates", "clock", "schedule", "runaway"} <= set(
        driver
    )
    assert "perf_counter_ns" in table["driven"] and str(driver["batch"]) in table["driven"]
    assert table["all_checks_ok"], [r["check"] for r in table["rows"] if not r["check"]["ok"]]
    assert {r["peer"] for r in table["rows"]} == OPEN_LOOP_PEERS[workload]
    for peer in OPEN_LOOP_PEERS[workload]:
        rows = [r for r in table["rows"] if r["peer"] == peer]
        rates = [r["offered_per_s"] for r in rows]
        assert rates == driver["rates"][: len(rows)], (peer, rates)
        # the table climbs until a rate runs away, and stops there
        assert not any(r["runaway"] for r in rows[:-1])
        assert rows[-1]["runaway"] == (table["runaway_at"][peer] is not None)
        for r in rows:
            assert set(r) >= OPEN_LOOP_ROW_FIELDS, (peer, r)
            assert 1 <= r["commands"] <= SIZE and r["achieved_per_s"] > 0
            assert r["calls"] >= 1 and r["mean_batch"] >= 1
            if r["api"] != "one call per command":
                assert r["mean_batch"] <= driver["batch"]
            lat = r["latency_ns"]
            assert lat["count"] == r["commands"]
            values = [lat["min"], *(lat[p] for p in PERCENTILES)]
            assert values == sorted(values), (peer, values)
            assert r["check"]["ok"], r["check"]


def test_open_loop_schedule_and_driver() -> None:
    _needs("hdrh")
    from bench import openloop
    from bench.peers.engine import BatchPeer, CallsPeer
    from matchcore import Engine

    due = openloop.scheduled(1_000, 5, 3)  # 3 commands/s: every 333,333,334 ns (rounded up)
    assert due.tolist() == [1_000, 333_334_334, 666_667_667, 1_000_001_000, 1_333_334_334]
    wl = workloads.peer(n=2_000)
    driver = openloop.Driver(seconds=0.01, rates=(100_000,))
    for peer in (BatchPeer(Engine, "matchcore"), CallsPeer(Engine, "matchcore")):
        peer.load(wl)
        row = openloop.run_rate(peer, 1_000, 100_000, driver)
        assert row["commands"] == 1_000 and row["latency_ns"]["count"] == 1_000
        # 1,000 commands at 100,000/s take at least 10 ms from the first scheduled send
        assert row["seconds"] >= 0.00999


# ---------------------------------------------------------------- memory, pictures


def test_memory_figures(results: dict[str, Any]) -> None:
    mem = results["MEMORY"]["memory"]
    s = mem["summary"]
    assert set(s) >= {
        "bytes_per_resting_order",
        "bytes_per_empty_market",
        "bytes_per_account",
        "peak_rss_bytes",
    }
    order = s["bytes_per_resting_order"]
    assert order["preallocated"] >= 64 and order["rss"] > 0
    assert set(s["bytes_per_empty_market"]) == {"$0.001", "$0.01"}
    fine, coarse = s["bytes_per_empty_market"]["$0.001"], s["bytes_per_empty_market"]["$0.01"]
    assert fine["preallocated"] > coarse["preallocated"] > 0 and fine["rss"] > 0
    assert s["bytes_per_account"]["preallocated"] > 0 and s["bytes_per_account"]["rss"] > 0
    assert all(v > 0 for v in s["peak_rss_bytes"].values())
    assert mem["probes"]["orders"]["orders"] == mem["sizes"]["orders"]
    assert results["MEMORY"]["peak_rss_bytes"] > 0


def test_pictures_are_written_next_to_the_json(results: dict[str, Any]) -> None:
    _needs("matplotlib")
    for workload in ("XC", "PEER"):
        doc = results[workload]
        names = doc["pictures"]
        assert {n.rsplit("-", 1)[1] for n in names} >= {"throughput.png", "latency.png"}
        assert set(names) <= set(doc["_files"])
        if doc.get("open_loop", {}).get("rows"):
            assert any(n.endswith("-openloop.png") for n in names)


def test_open_loop_and_latency_agree_on_peer_volume(results: dict[str, Any]) -> None:
    """Every peer's timed latency runs end with the workload's traded volume (checked)."""
    _needs("hdrh")
    checks = results["PEER"]["latency"]["checks"]
    assert {c["peer"] for c in checks} == {p for p, _ in LATENCY_PEERS["PEER"]}
    assert all(c["ok"] for c in checks)
    compared = [r["check"]["compared"] for r in results["PEER"]["open_loop"]["rows"]]
    assert all("resting_orders" in c for c in compared)
    assert any("traded_volume" in c for c in compared)  # the peers that count their fills


# ---------------------------------------------------------------- SCALE


def test_scale_runs_with_the_ledger_and_without(results: dict[str, Any]) -> None:
    doc = results["SCALE"]
    (table,) = doc["tables"]
    expected = table["expected"]
    rows = {r["peer"]: r for r in table["rows"]}
    assert set(rows) == {
        "matchcore batch",
        "matchcore batch, process_into",
        "matchcore per-call",
        "matchcore batch, ledger off",
    }
    for name, row in rows.items():
        assert row["check"]["ok"], (name, row["check"])
        assert row["outcome"]["traded_volume"] == expected["traded_volume"] > 0
        assert row["outcome"]["ledger"] == (name != "matchcore batch, ledger off")
    assert table["state_digests_agree"]
    assert set(table["match_volume"]) == {"COMPLEMENTARY", "MINT", "MERGE"}
    assert sum(table["match_volume"].values()) == expected["traded_volume"]
    assert set(table["mix"]) == {"GTC", "GTD", "IOC", "CANCEL", "REPLACE"}


def test_scale_generator_is_deterministic_and_funds_every_account() -> None:
    from bench import scale

    shape = {"markets": 20, "accounts": 200, "resting": 2_000}
    a, b = scale.scale(n=1_000, **shape), scale.scale(n=1_500, **shape)
    assert np.array_equal(a.setup, b.setup)
    assert np.array_equal(a.commands, b.commands[:1_000])
    setup = a.setup
    deposits = setup[setup["type"] == 11]  # DEPOSIT
    assert sorted(deposits["account"].tolist()) == list(range(200))
    splits = setup[setup["type"] == 13]  # SPLIT
    assert len(splits) == 200 * 3
    gtd = a.commands["tif"] == 1
    assert gtd.any() and np.all(a.commands["expiry"][gtd] > a.commands["time"][gtd])
    assert set(np.unique(a.commands["intent"][a.commands["type"] == 1])) == {0, 1, 2, 3}
    ticks = setup[setup["type"] == 7]["price"]  # CREATE_MARKET: tick
    assert set(ticks.tolist()) == {10, 100}
