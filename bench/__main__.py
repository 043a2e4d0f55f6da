"""``python -m bench``: run the suites, print Markdown, write JSON, Markdown and PNGs.

Examples::

    python -m bench --quick          # every suite at small sizes (well under a minute)
    python -m bench xc               # XC at full size: throughput, latency, open loop
    python -m bench peer --runs 7    # PEER and PEER-AC against the peers, 7 timed runs
    python -m bench memory           # bytes per resting order, market, account; peak RSS
    python -m bench xc --no-open-loop --latency-runs 5
    python -m bench xc --capacity workload,default,4194304   # each table at 3 max_orders
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import openloop, report
from .suites import DEFAULT, SUITES, Config


def _capacities(value: str) -> tuple[str, ...]:
    out = []
    for item in value.split(","):
        item = item.strip()
        if item not in ("workload", "default"):
            try:
                orders = int(item)
            except ValueError:
                msg = f"not 'workload', 'default' or a number: {item!r}"
                raise argparse.ArgumentTypeError(msg) from None
            if orders < 1:
                raise argparse.ArgumentTypeError(f"max_orders must be >= 1: {item!r}")
            item = str(orders)
        out.append(item)
    return tuple(out)


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("suite", nargs="?", default="all", choices=["all", *SUITES])  # all: DEFAULT
    p.add_argument("--quick", action="store_true", help="small sizes (50,000 commands)")
    p.add_argument("--runs", type=int, default=5, help="timed runs per peer (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up runs (default 1)")
    p.add_argument("--size", type=int, help="measured commands per workload (overrides defaults)")
    p.add_argument(
        "--reference-size",
        type=int,
        help="commands for the pure-Python reference (default 100,000; quick 5,000)",
    )
    p.add_argument(
        "--chunk", type=int, default=8192, help="commands per process() call (0: one call)"
    )
    p.add_argument("--no-latency", action="store_true", help="no latency histograms")
    p.add_argument(
        "--latency-runs", type=int, help="timed runs merged into the histograms (3; quick 1)"
    )
    p.add_argument("--no-open-loop", action="store_true", help="no open-loop table")
    p.add_argument(
        "--open-loop-seconds", type=float, help="length of each offered rate's run (1; quick 0.05)"
    )
    p.add_argument(
        "--open-loop-batch", type=int, default=64, help="most commands per process() call (64)"
    )
    p.add_argument(
        "--open-loop-drain",
        type=int,
        default=1_000,
        help="per-call engine: drain events every this many commands (1,000)",
    )
    p.add_argument(
        "--rates",
        type=lambda v: tuple(int(float(x)) for x in v.split(",")),
        default=openloop.RATES,
        help="offered rates, commands/s, comma-separated (default 125e3,1e6,2e6,...,50e6)",
    )
    p.add_argument(
        "--cpu",
        default="auto",
        help="pin to this CPU ('auto': the last one allowed; 'none': do not pin)",
    )
    p.add_argument(
        "--capacity",
        type=_capacities,
        default=("workload",),
        help="max_orders of every XC/PEER/SCALE table, comma-separated: 'workload' (twice "
        "its largest book), 'default' (the server's, ServerConfig.max_orders) or a number; "
        "e.g. workload,default,4194304 (default: workload)",
    )
    p.add_argument("--out", type=Path, default=report.RESULTS, help="where the JSON goes")
    p.add_argument("--no-save", action="store_true", help="print only; write no file")
    p.add_argument("--no-pictures", action="store_true", help="write no PNG")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.chunk < 0:
        p.error("--runs must be >= 1, --warmup and --chunk >= 0")
    if args.size is not None and args.size < 1:
        p.error("--size must be >= 1")
    if args.latency_runs is not None and args.latency_runs < 1:
        p.error("--latency-runs must be >= 1")
    if args.open_loop_batch < 1 or args.open_loop_drain < 1 or min(args.rates) < 1:
        p.error("--open-loop-batch, --open-loop-drain and --rates must be >= 1")
    if args.cpu not in ("auto", "none") and not args.cpu.isdigit():
        p.error("--cpu must be a CPU number, 'auto' or 'none'")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the chosen suites; returns their results (the JSON documents)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.cpu != "none":
        report.pin(None if args.cpu == "auto" else int(args.cpu))
    cfg = Config(
        quick=args.quick,
        runs=args.runs,
        warmup=args.warmup,
        size=args.size,
        reference_size=args.reference_size,
        chunk=args.chunk,
        progress=not args.no_progress,
        latency=not args.no_latency,
        latency_runs=args.latency_runs,
        open_loop=not args.no_open_loop,
        open_loop_seconds=args.open_loop_seconds,
        open_loop_batch=args.open_loop_batch,
        open_loop_drain=args.open_loop_drain,
        rates=args.rates,
        capacities=args.capacity,
    )
    names = DEFAULT if args.suite == "all" else [args.suite]
    results = []
    for name in names:
        result = report.stamp(SUITES[name](cfg), cfg.as_dict(), argv)
        if not args.no_save:
            path = report.write(result, args.out, pictures=not args.no_pictures)
        print(report.markdown(result), flush=True)
        if not args.no_save:
            print(f"wrote {path} (and .md{', PNGs' if result.get('pictures') else ''})\n")
        results.append(result)
    return results


if __name__ == "__main__":
    results = main()
    sys.exit(0 if all(r["all_checks_ok"] for r in results) else 1)
