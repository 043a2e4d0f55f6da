"""``python -m bench --capacity``: every XC/PEER/SCALE table at each given ``max_orders``.

Small sizes, in-process, as tests/test_bench_quick.py runs the harness. Checks that
each table, latency and open-loop table is there once per capacity, names it and
carries it in the JSON, that ratios to the first capacity are given, that a capacity
too small for a workload's largest book is left out with a note, and that every
check holds at every capacity. No test here depends on how fast anything ran.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed matchcore wins

from bench.__main__ import main, parse  # noqa: E402
from pyexchange.app.server import ServerConfig  # noqa: E402

SIZE = 2000
DEFAULT = ServerConfig().max_orders
SMALL = 65_536


def _run(tmp_path: Path, suite: str, capacity: str, *extra: str) -> dict[str, Any]:
    argv = [suite, "--quick", "--size", str(SIZE), "--reference-size", "300", "--runs", "1"]
    argv += ["--no-progress", "--no-pictures", "--out", str(tmp_path), "--capacity", capacity]
    argv += ["--latency-runs", "1", "--open-loop-seconds", "0.005", "--rates", "125e3", *extra]
    (result,) = main(argv)
    (name,) = [n for n in os.listdir(tmp_path) if n.endswith(".json")]
    saved = json.loads((tmp_path / name).read_text())
    assert saved["all_checks_ok"] == result["all_checks_ok"]
    saved["_md"] = (tmp_path / name).with_suffix(".md").read_text()
    return saved


def _check_tables(doc: dict[str, Any], capacities: list[int]) -> None:
    assert doc["all_checks_ok"], json.dumps(doc["tables"], indent=1)[:3000]
    parts: dict[str, list[dict[str, Any]]] = {}
    for table in doc["tables"]:
        parts.setdefault(table["part"], []).append(table)
    for part, tables in parts.items():
        got = [t["max_orders"] for t in tables]
        if "reduced size" not in part and "PEER-AC" not in part:
            assert got == capacities, (part, got)
        for table in tables:
            assert f"max_orders {table['max_orders']:,}" in table["title"]
            assert table["first_max_orders"] == tables[0]["max_orders"]
            assert table["memory"]["capacities"]["max_orders"] == table["max_orders"]
            assert table["state_digests_agree"]
            for row in table["rows"]:
                assert row["max_orders"] == table["max_orders"]
                assert row["check"]["ok"], (table["title"], row["peer"], row["check"])
                assert row["ratio_to_first_capacity"] > 0
            if table is tables[0]:
                assert {r["ratio_to_first_capacity"] for r in table["rows"]} == {1.0}


def test_xc_at_the_workload_the_server_default_and_a_given_capacity(tmp_path: Path) -> None:
    doc = _run(tmp_path, "xc", "workload,default,65536")
    workload_sized = doc["tables"][0]["max_orders"]
    capacities = [workload_sized, DEFAULT, SMALL]
    _check_tables(doc, capacities)
    assert doc["config"]["capacities"] == ["workload", "default", "65536"]
    assert doc["config"]["server_default_max_orders"] == DEFAULT
    assert "(workload-sized)" in doc["tables"][0]["title"]
    assert f"max_orders {DEFAULT:,} (the server's default)" in doc["_md"]
    assert f"| vs max_orders {workload_sized:,} |" in doc["_md"]
    # latency and open loop: the first capacity's as before, the others beside them
    others = doc["other_capacities"]
    seen = [doc["latency"]["max_orders"], *(o["max_orders"] for o in others)]
    assert seen == capacities
    assert [doc["open_loop"]["max_orders"], *(o["open_loop"]["max_orders"] for o in others)] == (
        capacities
    )
    for at in (doc, *others):
        assert at["latency"]["all_checks_ok"] and at["open_loop"]["all_checks_ok"]
        assert f"max_orders {at['latency']['max_orders']:,}" in at["latency"]["title"]
        assert at["latency"]["title"] in doc["_md"] and at["open_loop"]["title"] in doc["_md"]


def test_peer_and_scale_at_two_capacities(tmp_path: Path) -> None:
    peer = _run(tmp_path / "peer", "peer", "default,4194304", "--no-latency", "--no-open-loop")
    _check_tables(peer, [DEFAULT, 1 << 22])
    # the peers without a capacity run again at each: their rows are there at both
    names = {r["peer"] for t in peer["tables"] for r in t["rows"]}
    assert "plain Python book" in names
    # SCALE's quick book (10,000 resting orders) does not fit 4,096 slots: left out, said so
    scale = _run(tmp_path / "scale", "scale", "4096,workload", "--no-latency")
    _check_tables(scale, [scale["tables"][0]["max_orders"]])
    assert scale["tables"][0]["capacity"] == "workload"
    assert any("max_orders 4,096 left out" in n for n in scale["notes"]), scale["notes"]


@pytest.mark.parametrize("bad", ["", "lots", "0", "workload,-5"])
def test_capacity_must_be_workload_default_or_a_positive_number(bad: str) -> None:
    with pytest.raises(SystemExit):
        parse(["xc", "--capacity", bad])


def test_capacity_items_are_kept_in_order() -> None:
    args = parse(["xc", "--capacity", "default, 4_194_304,workload"])
    assert args.capacity == ("default", "4194304", "workload")


def test_runs_at_several_capacities_are_taken_in_turn() -> None:
    from bench.peers import Outcome, Peer
    from bench.runner import measure_in_turn
    from bench.workloads import Expected

    log: list[str] = []

    class Fake(Peer):
        def __init__(self, name: str) -> None:
            self.name = name

        def load(self, workload: Any) -> None:
            log.append(f"load {self.name}")

        def reset(self) -> None:
            pass

        def replay(self) -> int:
            log.append(self.name)
            return 1

        def outcome(self) -> Outcome:
            return Outcome(traded_volume=0)

        def release(self) -> None:
            log.append(f"release {self.name}")

    class Workload:
        name, n = "W", 1
        expected = Expected(0, 0, 0, 0, 0, 0)

    got = measure_in_turn([(Fake("a"), Workload()), (Fake("b"), Workload())], runs=2, warmup=1)
    assert log == ["load a", "load b", "a", "b", "a", "b", "a", "b", "release a", "release b"]
    assert [m.peer for m in got] == ["a", "b"] and all(len(m.runs_ns) == 2 for m in got)
