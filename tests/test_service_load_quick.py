"""The SERVICE load benchmark (bench/service_load.py) in quick mode, end to end.

It starts the real server (`pyexchange serve`) in a subprocess, drives it from
client processes at one low offered rate for a couple of seconds, and writes its
report. These tests check that the report has every field a SERVICE report must
show and that its counts add up; none of them depends on how fast anything ran.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed matchcore wins

pytest.importorskip("hdrh")
pytest.importorskip("grpc")

from bench import service_load  # noqa: E402

TOP_FIELDS = {
    "workload",
    "apis",
    "rates",
    "setup",
    "mix",
    "criterion",
    "server",
    "fdatasync_floor",
    "rows",
    "highest_sustained",
    "aim_met",
    "engine",
    "profile",
    "notes",
    "timestamp",
    "machine",
    "command",
    "pictures",
}
ROW_FIELDS = {
    "api",
    "offered_per_s",
    "achieved_per_s",
    "seconds",
    "window_s",
    "scheduled",
    "acknowledged",
    "errors",
    "errors_by_code",
    "rejects",
    "rejects_by_reason",
    "status",
    "commands_by_kind",
    "client_messages",
    "commands_per_message",
    "latency_ns",
    "latency_by_kind_ns",
    "send_lag_ns",
    "cores",
    "server_metrics",
    "seq_range",
    "sustained",
    "meets_aim",
    "engine",
}
LATENCY_FIELDS = {"count", "min", "mean", "p50", "p90", "p99", "p99.9", "p99.99", "max", "curve"}
MACHINE_FIELDS = {"cpu_model", "cores", "python", "git_commit", "command", "packages"}
ENGINE_FIELDS = {
    "process_s",
    "busy_share_of_wall",
    "batches",
    "mean_batch",
    "ns_per_command",
    "batch_interval_us",
}
CORES_FIELDS = {
    "server",
    "clients",
    "irq_softirq",
    "others",
    "machine_busy",
    "wall_s",
    "busiest_others",
}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("service-load")
    assert service_load.main(["--quick", "--out", str(out), "--profile", "none"]) == 0
    written = sorted(out.glob("service-*.json"))
    assert len(written) == 1
    return json.loads(written[0].read_text()), written[0]


def test_quick_report_has_every_field(quick: tuple[dict, Path]) -> None:
    result, _path = quick
    assert set(result) >= TOP_FIELDS
    assert result["workload"] == "SERVICE"
    assert result["apis"] == list(service_load.QUICK_APIS)
    assert set(result["machine"]) >= MACHINE_FIELDS
    assert "bench.service_load" in result["command"] and "--quick" in result["command"]
    assert result["setup"]["fsync"] == "batch"
    assert set(result["highest_sustained"]) == set(service_load.QUICK_APIS)
    assert len(result["rows"]) == len(service_load.QUICK_RATES) * len(service_load.QUICK_APIS)
    assert [r["api"] for r in result["rows"]] == list(service_load.QUICK_APIS)
    for row in result["rows"]:
        assert set(row) >= ROW_FIELDS, ROW_FIELDS - set(row)
        assert set(row["latency_ns"]) >= LATENCY_FIELDS
        assert set(row["cores"]) >= CORES_FIELDS
        assert set(row["send_lag_ns"]) == {"p50", "p99", "max"}
        assert set(row["engine"]) >= ENGINE_FIELDS
        assert set(row["engine"]["batch_interval_us"]) == {"p50", "p90", "p99", "max"}
        assert isinstance(row["sustained"], bool)
    assert result["engine"]["available"] is True
    assert {"p50", "p99", "max", "count"} <= set(result["fdatasync_floor"])


def test_quick_counts_add_up(quick: tuple[dict, Path]) -> None:
    result, _ = quick
    for row in result["rows"]:
        # every scheduled command is acknowledged by the engine or counted as an error
        assert row["acknowledged"] + row["errors"] == row["scheduled"]
        assert row["errors"] == sum(row["errors_by_code"].values())
        assert row["rejects"] == sum(row["rejects_by_reason"].values())
        assert sum(row["status"].values()) == row["acknowledged"]
        assert sum(row["commands_by_kind"].values()) <= row["scheduled"]
        assert row["latency_ns"]["count"] == row["scheduled"]
        assert row["acknowledged"] > 0
        lo, hi = row["seq_range"]
        assert 0 < lo <= hi
        assert row["engine"]["batches"] > 0


def test_quick_writes_markdown_and_picture(quick: tuple[dict, Path]) -> None:
    result, path = quick
    text = path.with_suffix(".md").read_text()
    assert "| api | offered/s | achieved/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms" in text
    assert "Highest sustained rate, stream" in text
    assert "Highest sustained rate, batch" in text
    assert "| api | offered/s | commands per client message | batches | mean batch" in text
    assert "fdatasync" in text
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result["pictures"] == []
    else:
        assert result["pictures"] and (path.parent / result["pictures"][0]).exists()


def test_mix_keeps_the_book_near_its_target() -> None:
    """The client's model: places until the target, then a mix that holds it there."""
    from pyexchange.api.grpc import exchange_pb2 as pb

    mix = service_load.Mix(pb, account=1, markets=4, target=100, seed=7)
    rng = random.Random(3)
    next_id = 1
    kinds = []
    for _ in range(5000):
        kind, field, _request, memo = mix.next()
        kinds.append(kind)
        assert field in ("place", "cancel", "replace")
        if kind == service_load.PLACE:
            reply = pb.OrderReply(order_id=next_id, status=pb.RESTING)
            next_id += 1
            mix.answered(kind, memo, reply)
        elif kind == service_load.REPLACE:
            status = pb.RESTING if rng.random() < 0.95 else pb.REJECTED
            mix.answered(kind, memo, pb.OrderReply(status=status))
        else:
            mix.answered(kind, memo, pb.OrderReply(status=pb.CANCELED))
        assert mix.pending_places == 0
    assert 85 <= len(mix.book) <= 115
    tail = kinds[1000:]
    for kind in range(4):
        assert tail.count(kind) > 0.05 * len(tail)


def test_profile_classification() -> None:
    line = 257
    samples = {
        "thread: sequencer": {
            "Sequencer._run (pyexchange/engine/sequencer.py:190)": 6,
            f"Sequencer._run (pyexchange/engine/sequencer.py:216);"
            f"Sequencer._run_batch (pyexchange/engine/sequencer.py:{line})": 2,
            "Sequencer._run_batch (pyexchange/engine/sequencer.py:250);"
            "JournalWriter.append_batch (pyexchange/engine/journal.py:265);"
            "JournalWriter._write (pyexchange/engine/journal.py:287)": 2,
        },
        "thread: MainThread": {
            "BaseEventLoop._run_once (asyncio/base_events.py:1922);"
            "EpollSelector.select (selectors.py:468)": 5,
            "Handle._run (asyncio/events.py:80);"
            "order_reply (pyexchange/api/grpc/order_entry.py:400)": 3,
            "Handle._run (asyncio/events.py:80)": 2,
        },
    }
    from collections import Counter

    out = service_load.classify({k: Counter(v) for k, v in samples.items()}, line)
    seq = out["sequencer"]["shares"]
    assert seq["idle: waiting for commands"] == 0.6
    assert seq["engine.process (the core, GIL released)"] == 0.2
    assert seq["journal: write + fdatasync"] == 0.2
    main = out["MainThread"]["shares"]
    assert main["idle: waiting for I/O (epoll)"] == 0.5
    assert main["events -> OrderReply (gateway replies)"] == 0.3
    assert main["gRPC + asyncio machinery (Python and Cython)"] == 0.2
