"""Reports: the machine, Markdown tables, and the JSON files under ``bench/results/``."""

from __future__ import annotations

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
            for name in ("matchcore", "numpy", "liquibook", "order-book", "tqdm")
        },
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "command": command(argv),
    }


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
    lines += [
        "",
        "| peer | median ns/cmd | min-max ns/cmd | M cmd/s | vs batch | vs per-call "
        "| traded volume | check |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in table["rows"]:
        vol = r["outcome"]["traded_volume"]
        lines.append(
            f"| {r['peer']} | {_ns(r['median_ns_per_command'])} "
            f"| {_ns(r['min_ns_per_command'])}-{_ns(r['max_ns_per_command'])} "
            f"| {r['commands_per_s'] / 1e6:.2f} | {_ratio(r['ratio_to_batch'])} "
            f"| {_ratio(r['ratio_to_per_call'])} | {'n/a' if vol is None else f'{vol:,}'} "
            f"| {r['check']['summary']} |"
        )
    for u in table["unavailable"]:
        lines.append(f"| {u['peer']} | - | - | - | - | - | - | unavailable: {u['reason']} |")
    lines.append("")
    lines.append(
        "vs batch / vs per-call: the peer's median time per command divided by this "
        "project's (batch, per-call) in this table; above 1 is slower."
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


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    cfg = result["config"]
    head = [
        f"## {result['workload']} — {result['timestamp']}",
        "",
        f"machine: {m['cpu_model']}, {m['cores']} cores; Python {m['python']}; "
        f"commit {(m['git_commit'] or 'unknown')[:12]}{' (dirty)' if m['git_dirty'] else ''}",
        f"command: `{m['command']}`",
        f"{cfg['runs']} timed runs after {cfg['warmup']} warm-up run(s), each on a fresh book "
        f"with the same setup, garbage collector off while timed; batch chunk "
        f"{cfg['chunk'] or 'whole array'}; peak RSS of the process so far "
        f"{result['peak_rss_bytes'] / 2**20:,.0f} MiB",
        "",
    ]
    body = [table_markdown(t) for t in result["tables"]]
    notes = [f"note: {n}" for n in result.get("notes", []) if n]
    return "\n".join(head) + "\n".join(body) + ("\n".join(notes) + "\n" if notes else "")


# ------------------------------------------------------------------ files


def stamp(result: dict[str, Any], config: dict[str, Any], argv: list[str]) -> dict[str, Any]:
    """Add the timestamp, the machine, the command and the configuration to a suite's result."""
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["machine"] = machine(argv)
    result["config"] = config
    return result


def write(result: dict[str, Any], out_dir: Path = RESULTS) -> Path:
    """Write ``<workload>-<timestamp>.json`` (and the Markdown next to it); the JSON path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"{result['workload'].lower()}-{time.strftime('%Y%m%d-%H%M%S')}"
    path = out_dir / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    return path
