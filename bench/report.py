"""Reports: the machine, Markdown tables, and the JSON files under ``bench/results/``."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine(argv: list[str]) -> dict[str, Any]:
    """CPU model, cores, Python, packages, git commit and the exact command of this run."""
    status = _git("status", "--porcelain")
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": {
            name: _package_version(name)
            for name in (
                "matchcore",
                "numpy",
                "liquibook",
                "order-book",
                "tqdm",
                "hdrhistogram",
                "matplotlib",
            )
        },
        "pinned_cpu": _pinned(),
        "load_average": [round(x, 2) for x in os.getloadavg()],  # at the end of the suite
        "nice": os.nice(0),
        "git_commit": _git("rev-parse", "HEAD"),
        "engine_build": _engine_build(),
        "git_dirty": bool(status) if status is not None else None,
        "command": command(argv),
    }


def _engine_build() -> dict[str, Any] | None:
    """Which compiled core ran: its file, modification time and a hash of it.

    The commit says what the tree was; the build can be older or newer than the
    tree (an editable install is rebuilt by hand), so the report names it too.
    """
    try:
        from matchcore import _engine
    except ImportError:
        return None
    path = Path(_engine.__file__)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    mtime = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(path.stat().st_mtime))
    return {"file": str(path), "built": mtime, "sha256_16": digest}


def _pinned() -> int | None:
    """The one CPU this process runs on, if it is pinned to one."""
    try:
        cpus = os.sched_getaffinity(0)
    except AttributeError:
        return None
    return next(iter(cpus)) if len(cpus) == 1 else None


def pin(cpu: int | None) -> int | None:
    """Pin this process to ``cpu`` (None: the last CPU it may run on); the CPU, or None."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
        target = allowed[-1] if cpu is None else cpu
        os.sched_setaffinity(0, {target})
    except (AttributeError, OSError, IndexError):
        return None
    return target


def command(argv: list[str]) -> str:
    """The command line of this run: ``python -m bench`` and its arguments."""
    return shlex.join([Path(sys.executable).name, "-m", "bench", *argv])


# ------------------------------------------------------------------ Markdown


def _ns(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def table_markdown(table: dict[str, Any]) -> str:
    lines = [f"### {table['title']}", ""]
    mix = table["mix"]
    total = sum(mix.values()) or 1
    exp = table["expected"]
    lines.append(
        "mix: "
        + ", ".join(f"{k} {100 * v / total:.1f}%" for k, v in mix.items())
        + f"; trading commands {100 * exp['trading_commands'] / total:.1f}%"
        + f"; expected traded volume {exp['traded_volume']:,} in {exp['fills']:,} fills"
        + f"; resting at the end {exp['resting_orders']:,} orders"
    )
    if table.get("note"):
        lines.append(f"note: {table['note']}")
    first = table.get("first_max_orders")
    vs_first = first is not None and first != table.get("max_orders")
    lines += [
        "",
        "| peer | max_orders | median ns/cmd | min-max ns/cmd | M cmd/s | vs batch | vs per-call "
        + (f"| vs max_orders {first:,} " if vs_first else "")
        + "| traded volume | check |",
        "|---|---:|---:|---:|---:|---:|---:|" + ("---:|" if vs_first else "") + "---:|---|",
    ]
    for r in table["rows"]:
        vol = r["outcome"]["traded_volume"]
        lines.append(
            f"| {r['peer']} | {r['max_orders']:,} | {_ns(r['median_ns_per_command'])} "
            f"| {_ns(r['min_ns_per_command'])}-{_ns(r['max_ns_per_command'])} "
            f"| {r['commands_per_s'] / 1e6:.2f} | {_ratio(r['ratio_to_batch'])} "
            f"| {_ratio(r['ratio_to_per_call'])} "
            + (f"| {_ratio(r['ratio_to_first_capacity'])} " if vs_first else "")
            + f"| {'n/a' if vol is None else f'{vol:,}'} | {r['check']['summary']} |"
        )
    for u in table["unavailable"]:
        dashes = "- | " * (7 if vs_first else 6)
        lines.append(f"| {u['peer']} | {dashes}- | unavailable: {u['reason']} |")
    lines.append("")
    lines.append(
        "vs batch / vs per-call: the peer's median time per command divided by this "
        "project's (batch, per-call) in this table; above 1 is slower."
        + (
            f" vs max_orders {first:,}: divided by the same peer's median in the same "
            "table at that capacity, in this run."
            if vs_first
            else ""
        )
    )
    if "state_digests_agree" in table:
        agree = "agree" if table["state_digests_agree"] else "DIFFER"
        lines.append(f"State digests of this project's engines at the end: {agree}.")
    mem = table.get("memory")
    if mem:
        lines.append(
            f"Memory (engine.memory(), max_orders {mem['capacities']['max_orders']:,}): "
            f"{mem['bytes_per_resting_order']:.0f} bytes per resting order "
            f"(slot {mem['order_slot_bytes']} + indexes and expiry heap), "
            f"{mem['bytes_per_market']:,.0f} bytes per market (price levels)."
        )
    return "\n".join(lines) + "\n"


LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "p99.99", "max")


def _lat(v: int | float | None) -> str:
    return "-" if v is None else f"{v:,.0f}"


def latency_markdown(table: dict[str, Any]) -> str:
    if "unavailable" in table and not table.get("rows"):
        return f"### {table['workload']} latency\n\nunavailable: {table['unavailable']}\n"
    kinds = ", ".join(f"{k} {v:,}" for k, v in table["kinds"].items())
    res = table.get("in_core_resolution") or {}
    lines = [
        f"### {table['title']}",
        "",
        f"commands per run by type: {kinds}; {table['runs']} timed run(s) after "
        f"{table['warmup']} warm-up run(s), all commands of the timed runs in one HDR "
        "histogram per row (3 significant digits); nanoseconds.",
        f"inside the core: {table['clocks']['in-core']}"
        + (f" (smallest non-zero reading {res['smallest_nonzero_ns']} ns)" if res else "")
        + ".",
        f"from Python: {table['clocks']['python']}; two back-to-back clock reads take "
        f"{table['timer_floor_ns']:.0f} ns (included, not subtracted).",
        "",
        "| engine, API | command | count | p50 | p90 | p99 | p99.9 | p99.99 | max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table["rows"]:
        api = {"in-core": "inside the core", "python": "from Python, one call each"}.get(
            r["api"], r["api"]
        )
        vals = " | ".join(_lat(r[k]) for k in LATENCY_KEYS)
        lines.append(f"| {r['peer']}, {api} | {r['kind']} | {r['count']:,} | {vals} |")
    for u in table.get("unavailable", []):
        lines.append(f"| {u['peer']} | - | - | - | - | - | - | - | unavailable: {u['reason']} |")
    bad = [c for c in table.get("checks", []) if not c["ok"]]
    lines.append("")
    lines.append(
        "checks of the timed runs: "
        + ("all ok" if not bad else "; ".join(f"{c['peer']}: {c['summary']}" for c in bad))
    )
    return "\n".join(lines) + "\n"


def _rate(v: float) -> str:
    return f"{v / 1e6:g} M" if v >= 1e6 else f"{v / 1e3:g} K"


def open_loop_markdown(table: dict[str, Any]) -> str:
    if "unavailable" in table and not table.get("rows"):
        return f"### {table['workload']} open loop\n\nunavailable: {table['unavailable']}\n"
    lines = [
        f"### {table['title']}",
        "",
        f"How it is driven: {table['driven']}",
        "",
        "| engine, API | offered /s | achieved /s | commands | mean batch | p50 | p90 | p99 "
        "| p99.9 | p99.99 | max | |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table["rows"]:
        lat = r["latency_ns"]
        vals = " | ".join(_lat(lat[k]) for k in LATENCY_KEYS)
        flag = "runs away" if r["runaway"] else ""
        if not r["check"]["ok"]:
            flag += f" MISMATCH {r['check']['mismatches']}"
        lines.append(
            f"| {r['peer']}, {r['api']} | {_rate(r['offered_per_s'])} "
            f"| {_rate(r['achieved_per_s'])} | {r['commands']:,} | {r['mean_batch']:g} "
            f"| {vals} | {flag} |"
        )
    for u in table.get("unavailable", []):
        lines.append(f"| {u['peer']} | unavailable: {u['reason']} |")
    lines.append("")
    lines.append(
        "latency in ns from each command's scheduled send time to its completion; "
        "every run's final book checked against the core's closed-loop run of the same "
        "commands: " + ("all ok" if table["all_checks_ok"] else "MISMATCHES above")
    )
    return "\n".join(lines) + "\n"


def _mib(b: float) -> str:
    return f"{b / 2**20:,.1f} MiB"


def memory_markdown(mem: dict[str, Any]) -> str:
    s, p = mem["summary"], mem["probes"]
    o = p["orders"]
    lines = [
        "### Memory",
        "",
        "Each probe in a fresh interpreter; RSS from /proc/self/statm before the engine is "
        "built and after it is filled; preallocated from engine.memory().",
        "",
        "| what | units | preallocated bytes per unit | RSS growth per unit | engine RSS "
        "when built | peak RSS of the probe |",
        "|---|---:|---:|---:|---:|---:|",
        f"| resting order ({o['orders_carry']}) | {o['orders']:,} "
        f"| {s['bytes_per_resting_order']['preallocated']:,.1f} "
        f"| {s['bytes_per_resting_order']['rss']:,.1f} | {_mib(o['rss_built_bytes'])} "
        f"| {_mib(o['peak_rss_bytes'])} |",
    ]
    for label, fig in s["bytes_per_empty_market"].items():
        q = p[f"markets {label}"]
        lines.append(
            f"| empty market, tick {label} ({q['levels_per_side']} levels a side) "
            f"| {q['markets']:,} | {fig['preallocated']:,.0f} | {fig['rss']:,.0f} "
            f"| {_mib(q['rss_built_bytes'])} | {_mib(q['peak_rss_bytes'])} |"
        )
    a = p["accounts"]
    lines.append(
        f"| account | {a['accounts']:,} | {s['bytes_per_account']['preallocated']:,.1f} "
        f"| {s['bytes_per_account']['rss']:,.1f} | {_mib(a['rss_built_bytes'])} "
        f"| {_mib(a['peak_rss_bytes'])} |"
    )
    mb = o["engine_memory_bytes"]
    if s.get("bytes_per_position_slot"):
        lines += [
            "",
            f"With the ledger, each (account, market) position takes a slot of "
            f"{s['bytes_per_position_slot']:,.1f} bytes; the engine preallocates "
            f"max_positions = {s['max_positions_default']} of them by default, so each unit of "
            "max_orders and of max_accounts also brings one position slot.",
        ]
    lines += [
        "",
        "engine.memory() of the order probe (bytes): "
        + ", ".join(f"{k} {v:,}" for k, v in mb.items()),
    ]
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    cfg = result["config"]
    head = [
        f"## {result['workload']} — {result['timestamp']}",
        "",
        f"machine: {m['cpu_model']}, {m['cores']} cores; Python {m['python']}; "
        f"commit {(m['git_commit'] or 'unknown')[:12]}{' (dirty)' if m['git_dirty'] else ''}"
        + (f"; pinned to CPU {m['pinned_cpu']}" if m.get("pinned_cpu") is not None else "")
        + (
            f"; load average {' '.join(f'{x:g}' for x in m['load_average'])} at the end"
            if m.get("load_average")
            else ""
        )
        + (f"; nice {m['nice']}" if m.get("nice") else ""),
        f"command: `{m['command']}`",
    ]
    if m.get("engine_build"):
        b = m["engine_build"]
        head.append(f"engine build: {b['built']}, sha256 {b['sha256_16']}")
    if result.get("tables"):
        head.append(
            f"{cfg['runs']} timed runs after {cfg['warmup']} warm-up run(s), each on a fresh "
            f"book with the same setup, garbage collector off while timed; batch chunk "
            f"{cfg['chunk'] or 'whole array'}; peak RSS of the process so far "
            f"{result['peak_rss_bytes'] / 2**20:,.0f} MiB"
        )
    head.append("")
    body = [table_markdown(t) for t in result.get("tables", [])]
    for at in (result, *result.get("other_capacities", [])):
        if at.get("latency"):
            body.append(latency_markdown(at["latency"]))
        if at.get("open_loop"):
            body.append(open_loop_markdown(at["open_loop"]))
    if result.get("memory"):
        body.append(memory_markdown(result["memory"]))
    if result.get("pictures"):
        body.append("pictures: " + ", ".join(f"[{p}]({p})" for p in result["pictures"]) + "\n")
    notes = [f"note: {n}" for n in result.get("notes", []) if n]
    return "\n".join(head) + "\n".join(body) + ("\n".join(notes) + "\n" if notes else "")


# ------------------------------------------------------------------ files


def stamp(result: dict[str, Any], config: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Add the timestamp, the machine, the command and the configuration to a suite's result."""
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["machine"] = machine(argv)
    result["config"] = config
    return result


def write(result: dict[str, Any], out_dir: Path = RESULTS, pictures: bool = True) -> Path:
    """Write ``<workload>-<timestamp>.json``, the Markdown and the PNGs next to it; the JSON path.

    The pictures (``bench.plots``, if matplotlib is installed) are drawn first, so
    the JSON and the Markdown list them.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{result['workload'].lower()}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = out_dir / f"{name}.json"
    if pictures:
        from . import plots

        if plots.available():
            result["pictures"] = [p.name for p in plots.draw(result, out_dir / name)]
        else:
            result.setdefault("notes", []).append("matplotlib is not installed: no pictures")
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    return path
