"""Journal and recovery benchmark: the sequencer on XC with fsync per batch and off, and replay.

    python -m bench.journal_bench              # XC, 3,000,000 commands, 5 runs each
    python -m bench.journal_bench --quick      # XC, 200,000 commands
    python -m bench.journal_bench --n 1000000 --runs 3 --dir /mnt/nvme/tmp --no-save

What is measured (each the median of ``--runs`` runs, after one warm-up):

- **Sequencer** (``pyexchange.Exchange`` with no snapshots and no idle ticks, the
  engine with ``ledger=False`` as in the throughput suite): the XC setup is run first,
  untimed; then one producer thread submits the XC commands in chunks of 4,096 and the
  clock runs from the first submit until the last Future has completed (journaled and
  applied). Commands/s, journal MB/s (bytes written to the journal while timed, over
  that time) and the batch sizes the sequencer formed. Once with ``FsyncPolicy.BATCH``
  (fdatasync per batch, the default) and once with ``FsyncPolicy.NONE``.
- **Recovery** (``pyexchange.recover``) on the journal the fsync-per-batch run wrote:
  from the whole journal (no snapshot), and from a snapshot at the middle plus the
  journal after it. Commands replayed per second (replayed commands over the whole
  ``recover()`` call, snapshot loading included). Next to it, the floor: the same
  records' commands through ``Engine.process`` alone, already in memory.
- **Where the time goes** (``--no-breakdown`` to skip): one more fsync-per-batch run with
  timers around each step of the sequencer thread, and a cProfile of one recovery.

Every run checks that the recovered state has the live engine's digest and that the
book ends as the workload expects. Prints Markdown; writes
``bench/results/journal-<timestamp>.json`` (and ``.md``) with the machine.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import os
import pstats
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import Engine
from pyexchange import EngineConfig, Exchange, FsyncPolicy, IdempotencyTable, read_journal, recover
from pyexchange.engine.journal import RecordKind
from pyexchange.engine.snapshots import write_snapshot

from . import report
from .workloads import XC_FULL, XcWorkload, xc

QUICK_N = 200_000
CHUNK = 4096
NEVER = 1 << 62
RESULTS = Path(__file__).resolve().parent / "results"


def config_for(workload: XcWorkload) -> EngineConfig:
    """The throughput suite's capacities (twice the largest book), matching only."""
    orders = 4096
    while orders < 2 * workload.expected.max_live:
        orders *= 2
    engine = Engine(max_orders=orders, max_markets=1, max_accounts=workload.accounts, ledger=False)
    return EngineConfig.of(engine)


# ------------------------------------------------------------------ the sequencer


@dataclass
class SequencerRun:
    seconds: float
    commands: int
    journal_bytes: int
    batch_sizes: list[int]
    digest: str
    resting_orders: int
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds

    @property
    def mb_per_s(self) -> float:
        return self.journal_bytes / self.seconds / 1e6


class _Phases:
    """Wall time of each step of the sequencer thread (only with ``--breakdown``)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

        return timed


class _TimedEngine:
    """The engine as the sequencer sees it, with ``process()`` timed."""

    def __init__(self, engine: Engine, phases: _Phases) -> None:
        self._engine = engine
        self.process = phases.wrap("engine.process", engine.process)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def run_sequencer(
    workload: XcWorkload,
    config: EngineConfig,
    fsync: FsyncPolicy,
    directory: Path,
    *,
    max_batch: int = 8192,
    breakdown: bool = False,
) -> SequencerRun:
    shutil.rmtree(directory, ignore_errors=True)
    sizes: list[int] = []

    def on_events(batch: np.ndarray, events: np.ndarray) -> None:
        sizes.append(len(batch))

    exchange = Exchange.open(
        directory,
        config,
        fsync=fsync,
        snapshot_every=NEVER,
        clock=itertools.count(1).__next__,
        max_batch=max_batch,
        on_events=on_events,
        idle_tick_ns=None,
    )
    exchange.execute(workload.setup)
    sizes.clear()
    sequencer, journal = exchange.sequencer, exchange.sequencer.journal
    phases = _Phases()
    real_fdatasync = os.fdatasync
    if breakdown:  # instance attributes shadow the methods the sequencer thread calls
        sequencer.engine = _TimedEngine(sequencer.engine, phases)  # type: ignore[assignment]
        sequencer._deduplicate = phases.wrap("deduplicate", sequencer._deduplicate)  # type: ignore[method-assign]
        sequencer._answer = phases.wrap("answer Futures", sequencer._answer)  # type: ignore[method-assign]
        journal.append_batch = phases.wrap("journal.append_batch", journal.append_batch)  # type: ignore[method-assign]
        sequencer.idempotency.record_batch = phases.wrap(  # type: ignore[method-assign]
            "idempotency.record_batch", sequencer.idempotency.record_batch
        )
        os.fdatasync = phases.wrap("  of which fdatasync", real_fdatasync)
    commands = workload.commands
    chunks = [commands[i : i + CHUNK] for i in range(0, len(commands), CHUNK)]
    left = [len(chunks)]
    finished = threading.Event()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def done(future: Future[np.ndarray]) -> None:
        if future.exception() is not None:
            errors.append(future.exception())  # type: ignore[arg-type]
        with lock:
            left[0] -= 1
            if left[0] == 0:
                finished.set()

    def producer() -> None:
        for chunk in chunks:  # the Futures are not kept: their events are dropped when done
            exchange.submit(chunk).add_done_callback(done)

    bytes_before = journal.bytes_written
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        thread = threading.Thread(target=producer, name="producer")
        thread.start()
        finished.wait()
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
        os.fdatasync = real_fdatasync
    thread.join()
    if errors:
        raise RuntimeError(f"a submission failed: {errors[0]!r}")
    run = SequencerRun(
        seconds=seconds,
        commands=len(commands),
        journal_bytes=journal.bytes_written - bytes_before,
        batch_sizes=list(sizes),
        digest=exchange.engine.digest(),
        resting_orders=exchange.engine.order_count,
        phases=dict(phases.seconds),
    )
    exchange.close()
    if run.resting_orders != workload.expected.resting_orders:
        raise RuntimeError(
            f"the book ends with {run.resting_orders} orders, "
            f"XC expects {workload.expected.resting_orders}"
        )
    return run


# ------------------------------------------------------------------ recovery


@dataclass
class RecoveryRun:
    seconds: float
    replayed: int
    snapshot_seq: int
    digest: str

    @property
    def rate(self) -> float:
        return self.replayed / self.seconds


def run_recovery(directory: Path) -> RecoveryRun:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        recovered = recover(directory, repair=False)
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    return RecoveryRun(
        seconds,
        recovered.replayed_commands,
        recovered.snapshot_seq,
        recovered.engine.digest(),
    )


def journal_records(directory: Path) -> list[np.ndarray]:
    """The commands of every BATCH record, in memory."""
    return [
        r.commands().copy()
        for r in read_journal(directory / "journal")
        if r.kind == RecordKind.BATCH
    ]


def engine_only(config: EngineConfig, records: list[np.ndarray]) -> tuple[float, str]:
    """Seconds for a fresh engine to process the records (the replay floor), and its digest."""
    engine = Engine(**config.engine_kwargs())
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for commands in records:
            engine.process(commands)
        seconds = time.perf_counter() - start
    finally:
        gc.enable()
    return seconds, engine.digest()


def with_snapshot_at_middle(
    source: Path, target: Path, config: EngineConfig, records: list[np.ndarray]
) -> int:
    """``target``: ``source``'s journal (hard links) and a snapshot after the middle record."""
    shutil.rmtree(target, ignore_errors=True)
    (target / "journal").mkdir(parents=True)
    for segment in (source / "journal").glob("*.journal"):
        try:
            os.link(segment, target / "journal" / segment.name)
        except OSError:
            shutil.copy2(segment, target / "journal" / segment.name)
    engine = Engine(**config.engine_kwargs())
    table = IdempotencyTable()
    middle = len(records) // 2
    for commands in records[:middle]:
        table.record_batch(commands, engine.process(commands))
    seq = int(records[middle - 1]["seq"][-1])
    write_snapshot(target / "snapshots", seq, engine.snapshot(), table.encode())
    return seq


def profile_recovery(directory: Path, top: int = 12) -> list[dict[str, Any]]:
    profiler = cProfile.Profile()
    profiler.enable()
    recover(directory, repair=False)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(filename).name}:{line}({name})" if line else name
        rows.append({"function": where, "calls": calls, "tottime": tottime, "cumtime": cumtime})
    rows.sort(key=lambda r: -r["tottime"])
    return rows[:top]


# ------------------------------------------------------------------ the whole benchmark


def median(values: list[float]) -> float:
    return statistics.median(values)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    n = args.n or (QUICK_N if args.quick else XC_FULL)
    print(f"generating XC ({n:,} commands) ...", file=sys.stderr)
    workload = xc(n)
    config = config_for(workload)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="journal-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "workload": "JOURNAL",
        "xc_n": n,
        "setup_commands": len(workload.setup),
        "chunk": CHUNK,
        "max_batch": args.max_batch,
        "runs": args.runs,
        "data_dir": str(base),
        "engine_config": config.engine_kwargs(),
        "sequencer": {},
        "recovery": {},
    }
    try:
        digests: set[str] = set()
        for policy in (FsyncPolicy.BATCH, FsyncPolicy.NONE):
            directory = base / f"fsync-{policy.value}"
            runs = []
            for i in range(args.runs + 1):  # the first is a warm-up
                print(f"sequencer fsync={policy.value} run {i}", file=sys.stderr)
                run = run_sequencer(workload, config, policy, directory, max_batch=args.max_batch)
                digests.add(run.digest)
                if i:
                    runs.append(run)
            sizes = np.array([s for r in runs for s in r.batch_sizes])
            result["sequencer"][policy.value] = {
                "commands": n,
                "seconds": [r.seconds for r in runs],
                "commands_per_s": median([r.rate for r in runs]),
                "commands_per_s_min_max": [min(r.rate for r in runs), max(r.rate for r in runs)],
                "journal_mb_per_s": median([r.mb_per_s for r in runs]),
                "journal_bytes": runs[0].journal_bytes,
                "batches_per_run": median([len(r.batch_sizes) for r in runs]),
                "batch_size_mean": float(sizes.mean()),
                "batch_size_median": float(np.median(sizes)),
                "batch_size_p10": float(np.percentile(sizes, 10)),
                "batch_size_max": int(sizes.max()),
            }
        if len(digests) != 1:
            raise RuntimeError("runs of the same stream ended in different states")
        live = digests.pop()

        # Recovery of the fsync-per-batch run's journal.
        journal_dir = base / f"fsync-{FsyncPolicy.BATCH.value}"
        records = journal_records(journal_dir)
        floor = []
        for _ in range(args.runs):
            seconds, digest = engine_only(config, records)
            assert digest == live, "the engine alone ends elsewhere than the sequencer"
            floor.append(seconds)
        replayed_total = sum(len(r) for r in records)
        snapshot_dir = base / "with-snapshot"
        snapshot_seq = with_snapshot_at_middle(journal_dir, snapshot_dir, config, records)
        for name, directory in (
            ("journal only", journal_dir),
            ("snapshot + journal", snapshot_dir),
        ):
            runs_r = []
            for i in range(args.runs + 1):
                print(f"recovery {name} run {i}", file=sys.stderr)
                run_r = run_recovery(directory)
                if run_r.digest != live:
                    raise RuntimeError(f"recovery ({name}) ends in another state")
                if i:
                    runs_r.append(run_r)
            result["recovery"][name] = {
                "replayed": runs_r[0].replayed,
                "snapshot_seq": runs_r[0].snapshot_seq,
                "seconds": [r.seconds for r in runs_r],
                "commands_per_s": median([r.rate for r in runs_r]),
                "commands_per_s_min_max": [
                    min(r.rate for r in runs_r),
                    max(r.rate for r in runs_r),
                ],
            }
        result["recovery"]["engine.process only"] = {
            "replayed": replayed_total,
            "snapshot_seq": 0,
            "seconds": floor,
            "commands_per_s": median([replayed_total / s for s in floor]),
            "commands_per_s_min_max": [replayed_total / max(floor), replayed_total / min(floor)],
        }
        result["snapshot_seq"] = snapshot_seq
        result["journal_records"] = len(records)

        if args.breakdown:
            print("breakdown run", file=sys.stderr)
            run = run_sequencer(
                workload,
                config,
                FsyncPolicy.BATCH,
                base / "breakdown",
                max_batch=args.max_batch,
                breakdown=True,
            )
            order = [
                "deduplicate",
                "journal.append_batch",
                "  of which fdatasync",
                "engine.process",
                "idempotency.record_batch",
                "answer Futures",
            ]
            phases = {name: run.phases.get(name, 0.0) for name in order}
            phases["other (waiting for the queue, concatenate, stamp, loop)"] = run.seconds - sum(
                v for k, v in phases.items() if not k.startswith(" ")
            )
            result["sequencer_breakdown"] = {
                "seconds": run.seconds,
                "commands_per_s": run.rate,
                "batches": len(run.batch_sizes),
                "phases_seconds": phases,
            }
            result["recovery_profile"] = profile_recovery(journal_dir)
    finally:
        if not args.dir and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return result


def _rate(x: float) -> str:
    return f"{x / 1e6:.2f} M/s"


def markdown(result: dict[str, Any]) -> str:
    m = result.get("machine", {})
    lines = [
        f"## Journal and recovery — XC, {result['xc_n']:,} commands "
        f"(median of {result['runs']} runs)",
        "",
        f"Machine: {m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, "
        f"Python {m.get('python', '?')}; commit {str(m.get('git_commit'))[:7]}"
        f"{' (dirty)' if m.get('git_dirty') else ''}; `{m.get('command', '')}`; "
        f"data directory `{result['data_dir']}`.",
        "",
        "| sequencer, chunks of 4,096 from one producer | commands/s (min-max) | journal MB/s "
        "| batches | batch size mean / median / max |",
        "|---|---:|---:|---:|---|",
    ]
    for policy, s in result["sequencer"].items():
        lo, hi = s["commands_per_s_min_max"]
        lines.append(
            f"| fsync {policy} | {_rate(s['commands_per_s'])} ({lo / 1e6:.2f}-{hi / 1e6:.2f}) "
            f"| {s['journal_mb_per_s']:.0f} | {s['batches_per_run']:,.0f} "
            f"| {s['batch_size_mean']:,.0f} / {s['batch_size_median']:,.0f} / "
            f"{s['batch_size_max']:,} |"
        )
    lines += [
        "",
        "| recovery | replayed | commands/s (min-max) |",
        "|---|---:|---:|",
    ]
    for name, r in result["recovery"].items():
        lo, hi = r["commands_per_s_min_max"]
        what = name if not r["snapshot_seq"] else f"{name} (snapshot at seq {r['snapshot_seq']:,})"
        lines.append(
            f"| {what} | {r['replayed']:,} | {_rate(r['commands_per_s'])} "
            f"({lo / 1e6:.2f}-{hi / 1e6:.2f}) |"
        )
    if "sequencer_breakdown" in result:
        b = result["sequencer_breakdown"]
        lines += [
            "",
            f"Sequencer thread, fsync per batch, one timed run ({_rate(b['commands_per_s'])}, "
            f"{b['batches']:,} batches; timers add a little):",
            "",
            "| step | seconds | share |",
            "|---|---:|---:|",
        ]
        for name, seconds in b["phases_seconds"].items():
            lines.append(f"| {name} | {seconds:.3f} | {seconds / b['seconds']:.0%} |")
        lines += [
            "",
            "Recovery (journal only), cProfile, by own time (`Engine.process` is a Cython "
            "method cProfile does not see: its time is in `recover`'s own time):",
            "",
            "| function | calls | own s | cumulative s |",
            "|---|---:|---:|---:|",
        ]
        for row in result["recovery_profile"]:
            lines.append(
                f"| `{row['function']}` | {row['calls']:,} | {row['tottime']:.3f} "
                f"| {row['cumtime']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.journal_bench", description=__doc__.splitlines()[0]
    )
    p.add_argument("--quick", action="store_true", help=f"XC at {QUICK_N:,} commands")
    p.add_argument("--n", type=int, help=f"XC commands (default {XC_FULL:,})")
    p.add_argument("--runs", type=int, default=5, help="timed runs each (default 5)")
    p.add_argument("--max-batch", type=int, default=8192, help="the sequencer's max_batch")
    p.add_argument("--dir", help="where the data directories go (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary data directories")
    p.add_argument("--no-breakdown", dest="breakdown", action="store_false")
    p.add_argument("--no-save", action="store_true", help="print only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    result = measure(args)
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["machine"] = report.machine(argv)
    result["machine"]["command"] = shlex.join(
        [Path(sys.executable).name, "-m", "bench.journal_bench", *argv]
    )
    result["machine"]["load_average"] = os.getloadavg()
    text = markdown(result)
    print(text)
    if not args.no_save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"journal-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        path.with_suffix(".md").write_text(text, encoding="utf-8")
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
