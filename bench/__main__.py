"""``python -m bench``: run the throughput suites, print Markdown, write JSON.

Examples::

    python -m bench --quick          # every suite at small sizes (well under a minute)
    python -m bench xc               # XC at full size (3,000,000 commands)
    python -m bench peer --runs 7    # PEER and PEER-AC against the peers, 7 timed runs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import report
from .suites import SUITES, Config


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument("suite", nargs="?", default="all", choices=["all", *SUITES])
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
    p.add_argument("--out", type=Path, default=report.RESULTS, help="where the JSON goes")
    p.add_argument("--no-save", action="store_true", help="print only; write no file")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.chunk < 0:
        p.error("--runs must be >= 1, --warmup and --chunk >= 0")
    if args.size is not None and args.size < 1:
        p.error("--size must be >= 1")
    return args


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the chosen suites; returns their results (the JSON documents)."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    cfg = Config(
        quick=args.quick,
        runs=args.runs,
        warmup=args.warmup,
        size=args.size,
        reference_size=args.reference_size,
        chunk=args.chunk,
        progress=not args.no_progress,
    )
    names = list(SUITES) if args.suite == "all" else [args.suite]
    results = []
    for name in names:
        result = report.stamp(SUITES[name](cfg), cfg.as_dict(), argv)
        print(report.markdown(result), flush=True)
        if not args.no_save:
            path = report.write(result, args.out)
            print(f"wrote {path}\n", flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    results = main()
    sys.exit(0 if all(r["all_checks_ok"] for r in results) else 1)
