"""Pictures of a suite's result, drawn by matplotlib from the JSON alone.

- ``*-latency.png``: latency percentile distribution per command type and per
  engine/API (log-log: the x axis is 1 / (1 - percentile), so 90%, 99%, 99.9%, ...
  are evenly spaced, as HdrHistogram's plots have it; the y axis is nanoseconds);
- ``*-throughput.png``: median ns per command of every peer in the main table,
  with the min-max range of the runs, log scale;
- ``*-openloop.png``: p50, p99 and p99.99 latency against the offered rate per API.

``python -m bench.plots FILE.json ...`` redraws the pictures of saved results.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

KIND_STYLE = {"place": "-", "cancel": "--", "replace": "-.", "crossing": ":"}  # panel order
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
PCT_TICKS = [0.0, 90.0, 99.0, 99.9, 99.99, 99.999, 99.9999]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _x(p: float) -> float:
    return 1.0 / (1.0 - p / 100.0)


def _pct_label(p: float) -> str:
    return f"{p:g}%"


def _fmt_ns(v: float, _pos: Any = None) -> str:
    if v >= 1e6:
        return f"{v / 1e6:g} ms"
    if v >= 1e3:
        return f"{v / 1e3:g} µs"
    return f"{v:g} ns"


def _series_label(row: dict[str, Any]) -> str:
    if row["api"] == "in-core":
        return f"{row['peer'].removesuffix(' batch')}, inside the core (process_timed)"
    if row["api"] == "python":
        return f"{row['peer']}, from Python"
    return f"{row['peer']}, {row['api']}"


def latency_plot(result: dict[str, Any], path: Path) -> Path | None:
    """One panel per command type (and one of all commands), one line per engine/API."""
    table = result.get("latency")
    if not table or not table.get("rows"):
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    series: list[str] = []
    for row in table["rows"]:
        if _series_label(row) not in series:
            series.append(_series_label(row))
    kinds = [k for k in (*KIND_STYLE, "all") if any(r["kind"] == k for r in table["rows"])]
    cols = 3 if len(kinds) > 4 else 2
    nrows = math.ceil(len(kinds) / cols)
    fig, axes = plt.subplots(
        nrows, cols, figsize=(5.2 * cols, 3.9 * nrows + 0.9), dpi=110, squeeze=False
    )
    top = 1.0
    lo, hi = math.inf, 1.0
    for row in table["rows"]:
        if row["curve"]["ns"]:
            lo, hi = min(lo, max(row["curve"]["ns"][0], 1)), max(hi, row["curve"]["ns"][-1])
    for ax, kind in zip(axes.flat, kinds, strict=False):
        for row in (r for r in table["rows"] if r["kind"] == kind):
            ps, ns = row["curve"]["percentile"], row["curve"]["ns"]
            pts = [(_x(p), max(v, 1)) for p, v in zip(ps, ns, strict=True) if p < 100.0]
            if not pts:
                continue
            last_x = pts[-1][0] * 1.5  # the maximum, one step past the last percentile
            pts.append((last_x, max(ns[-1], 1)))
            top = max(top, last_x)
            xs, ys = zip(*pts, strict=True)
            color = COLORS[series.index(_series_label(row)) % len(COLORS)]
            ax.plot(xs, ys, "-", color=color, lw=1.6, drawstyle="steps-post")
        count = next(r["count"] for r in table["rows"] if r["kind"] == kind)
        ax.set_title(f"{kind} ({count:,} per engine)", fontsize=10)
    for ax in axes.flat[: len(kinds)]:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ticks = [p for p in PCT_TICKS if _x(p) <= top]
        ax.set_xticks([_x(p) for p in ticks])
        ax.set_xticklabels([_pct_label(p) for p in ticks], fontsize=8)
        ax.set_xlim(1, top * 1.05)
        ax.set_ylim(lo / 1.5, hi * 1.5)
        ax.yaxis.set_major_formatter(FuncFormatter(_fmt_ns))
        ax.grid(True, which="major", alpha=0.35)
        ax.grid(True, which="minor", axis="y", alpha=0.12)
    for ax in axes.flat[len(kinds) :]:
        ax.axis("off")
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], lw=2.5) for i in range(len(series))]
    fig.legend(handles, series, loc="lower center", ncol=min(2, len(series)), fontsize=9)
    m = result.get("machine", {})
    fig.suptitle(
        f"{table['title']}, HDR histograms of {table['runs']} run(s)\n"
        "x: percentile (the last point of a line is the maximum), y: time per command; "
        f"{m.get('cpu_model', '')}, commit {(m.get('git_commit') or '?')[:10]}",
        fontsize=10.5,
    )
    fig.tight_layout(rect=(0, 0.09 if len(series) > 2 else 0.06, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def throughput_plot(result: dict[str, Any], path: Path) -> Path | None:
    tables = [t for t in result.get("tables", []) if t.get("rows")]
    if not tables:
        return None
    plt = _pyplot()
    from matplotlib.ticker import FuncFormatter

    heights = [len(t["rows"]) for t in tables]
    fig, axes = plt.subplots(
        len(tables),
        1,
        figsize=(10, 1.2 + 0.42 * sum(heights) + 0.5 * len(tables)),
        dpi=110,
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    lo = min(r["min_ns_per_command"] for t in tables for r in t["rows"])
    hi = max(r["max_ns_per_command"] for t in tables for r in t["rows"])
    for ax, table in zip(axes[:, 0], tables, strict=True):
        rows = table["rows"][::-1]
        names = [r["peer"] for r in rows]
        med = [r["median_ns_per_command"] for r in rows]
        err = [
            [r["median_ns_per_command"] - r["min_ns_per_command"] for r in rows],
            [r["max_ns_per_command"] - r["median_ns_per_command"] for r in rows],
        ]
        colors = ["#1f77b4" if n.startswith("matchcore") else "#999999" for n in names]
        ax.barh(names, med, xerr=err, color=colors, capsize=3, height=0.6)
        for y, r in enumerate(rows):
            ratio = r.get("ratio_to_batch")
            note = f"{r['median_ns_per_command']:,.0f} ns ({r['commands_per_s'] / 1e6:.2f} M/s)"
            if ratio:
                note += f", {ratio:.2f}x batch"
            ax.text(r["max_ns_per_command"] * 1.08, y, note, va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(lo / 1.6, hi * 12)
        ax.xaxis.set_major_formatter(FuncFormatter(_fmt_ns))
        ax.set_title(table["title"], fontsize=10)
        ax.grid(True, axis="x", alpha=0.3)
        ax.tick_params(axis="y", labelsize=8.5)
    axes[-1, 0].set_xlabel("time per command, median of the runs (bars: min-max), log scale")
    m = result.get("machine", {})
    fig.suptitle(
        f"{result['workload']} throughput, every row from the same run — {m.get('cpu_model', '')}, "
        f"commit {(m.get('git_commit') or '?')[:10]}",
        fontsize=10.5,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def openloop_plot(result: dict[str, Any], path: Path) -> Path | None:
    table = result.get("open_loop")
    if not table or not table.get("rows"):
        return None
    plt = _pyplot()
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(10, 6), dpi=110)
    series: list[str] = []
    for row in table["rows"]:
        label = f"{row['peer']}, {row['api']}"
        if label not in series:
            series.append(label)
    styles = {"p50": "-", "p99": "--", "p99.99": ":"}
    for i, label in enumerate(series):
        rows = [r for r in table["rows"] if f"{r['peer']}, {r['api']}" == label]
        xs = [r["offered_per_s"] for r in rows]
        for key, ls in styles.items():
            ys = [max(r["latency_ns"][key], 1) for r in rows]
            ax.plot(xs, ys, ls, marker="o", ms=3, color=COLORS[i % len(COLORS)], lw=1.5)
        for r in rows:
            if r["runaway"]:
                ax.annotate(
                    "runs away",
                    (r["offered_per_s"], r["latency_ns"]["p50"]),
                    textcoords="offset points",
                    xytext=(4, -12),
                    fontsize=7.5,
                    color=COLORS[i % len(COLORS)],
                )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{v / 1e6:g} M/s"))
    ax.yaxis.set_major_formatter(FuncFormatter(_fmt_ns))
    ax.set_xlabel("offered rate (commands per second), log scale")
    ax.set_ylabel("latency from the scheduled send time")
    ax.grid(True, which="major", alpha=0.35)
    handles = [Line2D([], [], color=COLORS[i % len(COLORS)], lw=2.5) for i in range(len(series))]
    handles += [Line2D([], [], color="0.3", ls=ls) for ls in styles.values()]
    ax.legend(handles, series + list(styles), fontsize=8.5, loc="upper left")
    ax.set_title(
        f"{table['title']}\n(batches of at most {table['driver']['batch']} commands per "
        "process() call; per-call APIs one call per command)",
        fontsize=10.5,
    )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def draw(result: dict[str, Any], stem: Path) -> list[Path]:
    """Every picture of ``result``, as ``<stem>-<kind>.png``; the paths written."""
    out = []
    for kind, fn in (
        ("throughput", throughput_plot),
        ("latency", latency_plot),
        ("openloop", openloop_plot),
    ):
        path = fn(result, stem.with_name(f"{stem.name}-{kind}.png"))
        if path is not None:
            out.append(path)
    return out


def available() -> bool:
    try:
        _pyplot()
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.plots", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="+", type=Path)
    for f in p.parse_args(argv).files:
        for path in draw(json.loads(f.read_text()), f.with_suffix("")):
            print(path)


if __name__ == "__main__":
    main()


__all__ = ["available", "draw", "latency_plot", "openloop_plot", "throughput_plot"]
