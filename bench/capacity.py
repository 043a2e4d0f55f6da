"""The capacity sweep: ns per command against ``max_orders`` on a workload that does not grow.

One market, one batch of ``--orders`` GTC adds (passive bids and asks over about
200 price levels) then their cancels, through ``process()``; the best of
``--runs`` batches per engine. The batch is the same at every capacity, so a
figure that grows with ``max_orders`` is the price of configuring for more
(cold index lines and pages), not of doing more. The repetitions go round the
capacities (one batch each, in turn), so the load of a shared machine falls on
all of them alike; the ratios to the smallest capacity are from the same run.

``python -m bench.capacity [--runs 40] [--orders 4000] [--capacities 8192,4194304]
[--ledger on|off|both]`` prints a Markdown table and writes
``bench/results/capacity-<timestamp>.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from matchcore import COMMAND_DTYPE, CommandType, Engine, Intent, MarketState, TimeInForce

from . import report

SWEEP = [1 << k for k in range(13, 23)]  # 8,192 .. 4,194,304
TICK = 10  # $0.001
ACCOUNTS = 2
CASH = 10**15  # micro-dollars per account: every buy of the batch is affordable


def _engine(max_orders: int, ledger: bool) -> Engine:
    engine = Engine(max_orders=max_orders, max_markets=1, max_accounts=ACCOUNTS, ledger=ledger)
    engine.create_market(0, TICK)
    engine.set_market_state(0, MarketState.OPEN)
    for account in range(ACCOUNTS):
        engine.add_account(account)
        if ledger:
            engine.deposit(account, CASH)
    engine.drain_events()
    return engine


def _orders(n: int, seed: int) -> np.ndarray:
    """The adds of a batch: BUY_YES bids at 0.400..0.499, BUY_NO asks at 0.501..0.600.

    Both intents reserve cash only, so the same batch runs with and without the ledger.
    """
    rng = random.Random(seed)
    adds = np.zeros(n, dtype=COMMAND_DTYPE)
    adds["type"] = CommandType.NEW_ORDER
    adds["market"] = 0
    adds["tif"] = TimeInForce.GTC
    for i in range(n):
        bid = rng.random() < 0.5
        adds[i]["account"] = i % ACCOUNTS
        adds[i]["intent"] = Intent.BUY_YES if bid else Intent.BUY_NO
        adds[i]["price"] = TICK * (rng.randint(400, 499) if bid else rng.randint(501, 600))
        adds[i]["quantity"] = rng.randint(1, 100)
    return adds


def _batch(adds: np.ndarray, first_id: int) -> np.ndarray:
    """The adds then their cancels; on an empty book the adds get ids first_id, first_id + 1..."""
    n = len(adds)
    batch = np.zeros(2 * n, dtype=COMMAND_DTYPE)
    batch[:n] = adds
    cancels = batch[n:]
    cancels["type"] = CommandType.CANCEL
    cancels["account"] = adds["account"]
    cancels["order_id"] = np.arange(first_id, first_id + n, dtype=np.uint64)
    batch["seq"] = np.arange(1, 2 * n + 1)
    return batch


def _run_once(engine: Engine, adds: np.ndarray) -> int:
    """One batch; returns its nanoseconds, after checking every order was added and canceled."""
    batch = _batch(adds, engine.next_order_id)
    start = time.perf_counter_ns()
    events = engine.process(batch)
    elapsed = time.perf_counter_ns() - start
    kinds = np.bincount(events["type"], minlength=8)
    if kinds[1] != len(adds) or kinds[4] != len(adds) or engine.order_count != 0:
        raise RuntimeError(
            f"max_orders {engine.capacities['max_orders']}: {kinds[1]} accepted, "
            f"{kinds[4]} canceled, {engine.order_count} left (expected {len(adds)} each, 0)"
        )
    return elapsed


def sweep(capacities: list[int], ledger: bool, runs: int, orders: int, seed: int) -> dict:
    adds = _orders(orders, seed)
    engines = {c: _engine(c, ledger) for c in capacities}
    for engine in engines.values():  # warm-up: first touch of the lines the batch uses
        _run_once(engine, adds)
    times: dict[int, list[int]] = {c: [] for c in capacities}
    gc.disable()
    try:
        for _ in range(runs):
            for c, engine in engines.items():
                times[c].append(_run_once(engine, adds))
    finally:
        gc.enable()
    commands = 2 * orders
    rows = []
    base = min(times[capacities[0]]) / commands
    for c in capacities:
        best = min(times[c]) / commands
        rows.append(
            {
                "max_orders": c,
                "best_ns": best,
                "median_ns": float(np.median(times[c])) / commands,
                "ratio": best / base,
                "memory_bytes": sum(v for k, v in engines[c].memory().items() if k != "order_slot"),
            }
        )
    return {"ledger": ledger, "rows": rows}


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"## Capacity sweep: {result['orders']:,} GTC adds then their cancels, one market, "
        f"best of {result['runs']}",
        "",
    ]
    for part in result["parts"]:
        lines += [
            f"ledger {'on' if part['ledger'] else 'off'}",
            "",
            "| max_orders | best ns/command | median | ratio to the first | preallocated |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in part["rows"]:
            lines.append(
                f"| {r['max_orders']:,} | {r['best_ns']:.1f} | {r['median_ns']:.1f} | "
                f"{r['ratio']:.2f}x | {r['memory_bytes'] / 2**20:,.0f} MiB |"
            )
        lines.append("")
    m = result["machine"]
    lines += [
        f"Machine: {m['cpu_model']}, {m['cores']} cores, load {m['load_average']}; "
        f"commit {m['git_commit']}{' (dirty)' if m['git_dirty'] else ''}; "
        f"`{m['command']}`",
        "",
    ]
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> Path | None:
    from . import plots

    if not plots.available():
        return None
    plt = plots._pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for part, color in zip(result["parts"], plots.COLORS, strict=False):
        xs = [r["max_orders"] for r in part["rows"]]
        ax.plot(
            xs,
            [r["best_ns"] for r in part["rows"]],
            "o-",
            color=color,
            label=f"ledger {'on' if part['ledger'] else 'off'} (best)",
        )
        ax.plot(xs, [r["median_ns"] for r in part["rows"]], ":", color=color, alpha=0.6)
    ax.set_xscale("log", base=2)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("max_orders")
    ax.set_ylabel("ns per command")
    ax.set_title(
        f"{result['orders']:,} adds + {result['orders']:,} cancels, one market "
        f"(dotted: median of {result['runs']})"
    )
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.capacity", description=__doc__.splitlines()[0]
    )
    p.add_argument("--runs", type=int, default=40, help="timed batches per capacity (best of)")
    p.add_argument("--orders", type=int, default=4000, help="GTC adds per batch (then cancels)")
    p.add_argument(
        "--capacities",
        type=lambda s: [int(x) for x in s.split(",")],
        default=SWEEP,
        help="comma-separated max_orders (default 2^13 .. 2^22)",
    )
    p.add_argument("--ledger", choices=["on", "off", "both"], default="both")
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--cpu", default="auto", help="pin to this CPU ('auto': the last; 'none')")
    p.add_argument("--out", type=Path, default=report.RESULTS)
    p.add_argument("--no-save", action="store_true")
    args = p.parse_args(argv)
    if args.runs < 1 or args.orders < 1 or min(args.capacities) < args.orders:
        p.error("--runs and --orders must be >= 1 and every capacity >= --orders")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    if args.cpu != "none":
        report.pin(None if args.cpu == "auto" else int(args.cpu))
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.ledger]
    result: dict[str, Any] = {
        "workload": "CAPACITY",
        "orders": args.orders,
        "runs": args.runs,
        "parts": [
            sweep(args.capacities, ledger, args.runs, args.orders, args.seed) for ledger in modes
        ],
    }
    result["timestamp"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["machine"] = report.machine(argv)
    result["machine"]["command"] = report.command(argv).replace("-m bench", "-m bench.capacity", 1)
    text = markdown(result)
    print(text, flush=True)
    if not args.no_save:
        args.out.mkdir(parents=True, exist_ok=True)
        name = args.out / f"capacity-{time.strftime('%Y%m%d-%H%M%S')}"
        picture = plot(result, name.with_suffix(".png"))
        if picture is not None:
            result["pictures"] = [picture.name]
        name.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        name.with_suffix(".md").write_text(text, encoding="utf-8")
        print(f"wrote {name}.json (and .md{', .png' if picture else ''})")
    return result


if __name__ == "__main__":
    main()
