"""Memory: bytes per resting order, per empty market and per account, and peak RSS.

Two figures for each, since they answer different questions:

- *preallocated*: what ``engine.memory()`` says the engine reserved for one unit of
  capacity (an order slot with its share of the free-slot map, the client-id
  index and the expiry heap; a market with its two sides of price levels; an
  account). This is what sizing a deployment needs: the engine allocates it all
  when it is built.
- *RSS growth*: what the process's resident set grew by, from before the engine
  was built to after it was filled, divided by the units. Pages the engine reserved
  but never touched do not count (an order book whose orders carry no client id
  never touches the client-id index, GTC orders never touch the expiry heap), and
  the engine's event buffer counts.

Each probe runs in a fresh interpreter (``python -m bench.memory PROBE N``), so no
memory freed by an earlier measurement is reused and its peak RSS is its own. The
command arrays are built before the first reading.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")
CHUNK = 8192
ROOT = Path(__file__).resolve().parent.parent

FULL = {"orders": 1_000_000, "markets": 10_000, "accounts": 100_000}
QUICK = {"orders": 50_000, "markets": 500, "accounts": 10_000}
TICKS = {"$0.001": 10, "$0.01": 100}


def rss() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE


def peak_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _run(engine: Any, commands: Any) -> None:
    for i in range(0, len(commands), CHUNK):
        events = engine.process(commands[i : i + CHUNK])
        if (events["type"] == 2).any():  # EventType.REJECTED
            raise RuntimeError("a command of the memory probe was rejected")


def _funding(accounts: int, market: int) -> Any:
    """Per account: a deposit of $10,000,000 and a split of 10,000 share pairs in ``market``."""
    import numpy as np

    from matchcore import COMMAND_DTYPE, CommandType

    out = np.zeros(2 * accounts, dtype=COMMAND_DTYPE)
    out["account"] = np.repeat(np.arange(accounts), 2)
    out["type"][0::2], out["quantity"][0::2] = CommandType.DEPOSIT, 10**13
    out["type"][1::2], out["quantity"][1::2] = CommandType.SPLIT, 10**6
    out["market"] = market
    return out


def _has_ledger() -> bool:
    from matchcore import CommandType

    return hasattr(CommandType, "DEPOSIT")


def _admin(accounts: int, markets: int, tick: int) -> Any:
    import numpy as np

    from matchcore import COMMAND_DTYPE, CommandType, MarketState

    out = np.zeros(accounts + 2 * markets, dtype=COMMAND_DTYPE)
    out["type"][:accounts] = CommandType.ADD_ACCOUNT
    out["account"][:accounts] = np.arange(accounts)
    create = out[accounts : accounts + markets]
    create["type"], create["market"], create["price"] = (
        CommandType.CREATE_MARKET,
        np.arange(markets),
        tick,
    )
    create["quantity"], create["aux"] = 1, 1
    opened = out[accounts + markets :]
    opened["type"], opened["market"] = CommandType.SET_MARKET_STATE, np.arange(markets)
    opened["arg"] = MarketState.OPEN
    out["seq"] = np.arange(1, len(out) + 1)
    return out


def probe_orders(n: int) -> dict[str, Any]:
    """``n`` resting GTC orders (with client order ids) in one market at tick $0.001."""
    import numpy as np

    from matchcore import COMMAND_DTYPE, CommandType, Engine, Intent, TimeInForce

    accounts = 1_000
    rng = np.random.default_rng(7)
    setup = _admin(accounts, 1, 10)
    ledger = _has_ledger()
    if ledger:  # funded, so that every order passes the risk check
        setup = np.concatenate([setup, _funding(accounts, 0)])
        setup["seq"] = np.arange(1, len(setup) + 1)
    orders = np.zeros(n, dtype=COMMAND_DTYPE)
    bid = rng.random(n) < 0.5
    ticks = np.where(bid, rng.integers(1, 500, n), rng.integers(501, 1000, n))
    orders["seq"] = np.arange(len(setup) + 1, len(setup) + n + 1)
    orders["type"] = CommandType.NEW_ORDER
    orders["account"] = rng.integers(0, accounts, n)
    orders["intent"] = np.where(bid, Intent.BUY_YES, Intent.SELL_YES)
    orders["price"] = ticks * 10
    orders["quantity"] = rng.integers(1, 101, n)
    orders["tif"] = TimeInForce.GTC
    orders["client_order_id"] = np.arange(1, n + 1)
    before = rss()
    engine = Engine(max_orders=n, max_markets=1, max_accounts=accounts)
    built = rss()
    _run(engine, setup)
    _run(engine, orders)
    filled = rss()
    if engine.order_count != n:
        raise RuntimeError(f"{engine.order_count} orders rest, not {n}")
    mem = engine.memory()
    caps = engine.capacities
    per_order = ("orders", "slot_map", "client_index", "expiry_heap")
    positions = caps.get("max_positions")
    return {
        "orders": n,
        "ledger": ledger,
        "engine_memory_bytes": mem,
        "capacities": caps,
        "preallocated_bytes_per_order": round(sum(mem[k] for k in per_order) / n, 2),
        "preallocated_bytes_per_position": (
            round(mem["positions"] / positions, 2) if positions and "positions" in mem else None
        ),
        "rss_built_bytes": built - before,
        "rss_filled_bytes": filled - before,
        "rss_bytes_per_order": round((filled - before) / n, 2),
        "peak_rss_bytes": peak_rss(),
        "orders_carry": "GTC limit orders with client order ids, 1,000 accounts, one market"
        + (", ledger on (accounts funded)" if ledger else ""),
    }


def probe_markets(k: int, tick: int) -> dict[str, Any]:
    """``k`` empty open markets at ``tick`` (price units), price levels sized for them."""
    from matchcore import Engine

    levels_per_side = 10_000 // tick - 1
    setup = _admin(0, k, tick)
    before = rss()
    engine = Engine(max_orders=1, max_markets=k, max_accounts=1, max_levels=2 * k * levels_per_side)
    built = rss()
    _run(engine, setup)
    done = rss()
    mem = engine.memory()
    return {
        "markets": k,
        "tick": tick,
        "levels_per_side": levels_per_side,
        "engine_memory_bytes": mem,
        "preallocated_bytes_per_market": round((mem["levels"] + mem["markets"]) / k, 2),
        "rss_built_bytes": built - before,
        "rss_created_bytes": done - before,
        "rss_bytes_per_market": round((done - before) / k, 2),
        "peak_rss_bytes": peak_rss(),
    }


def probe_accounts(a: int) -> dict[str, Any]:
    """``a`` accounts added (no orders, no markets but one)."""
    from matchcore import Engine

    setup = _admin(a, 0, 10)
    before = rss()
    engine = Engine(max_orders=1, max_markets=1, max_accounts=a)
    built = rss()
    _run(engine, setup)
    done = rss()
    mem = engine.memory()
    return {
        "accounts": a,
        "engine_memory_bytes": mem,
        "preallocated_bytes_per_account": round(mem["accounts"] / a, 2),
        "rss_built_bytes": built - before,
        "rss_added_bytes": done - before,
        "rss_bytes_per_account": round((done - before) / a, 2),
        "peak_rss_bytes": peak_rss(),
    }


def _subprocess(*args: str) -> dict[str, Any]:
    # The repository goes at the *end* of the path, and the child starts elsewhere:
    # `bench` is found there, but an installed `matchcore` (with its compiled core)
    # wins over the source tree's.
    code = (
        f"import runpy, sys; sys.path.append({str(ROOT)!r}); sys.argv[1:] = {list(args)!r}; "
        "runpy.run_module('bench.memory', run_name='__main__')"
    )
    with tempfile.TemporaryDirectory() as elsewhere:
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=elsewhere,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    if out.returncode:
        raise RuntimeError(f"memory probe {args} failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(quick: bool = False, progress: Any = None) -> dict[str, Any]:
    """Every probe, each in its own interpreter; the figures a report shows."""
    size = QUICK if quick else FULL
    jobs: list[tuple[str, tuple[str, ...]]] = [("orders", ("orders", str(size["orders"])))]
    for label, tick in TICKS.items():
        jobs.append((f"markets {label}", ("markets", str(size["markets"]), str(tick))))
    jobs.append(("accounts", ("accounts", str(size["accounts"]))))
    probes = {}
    for name, args in jobs:
        probes[name] = _subprocess(*args)
        if progress is not None:
            progress(1)
    summary = {
        "bytes_per_resting_order": {
            "preallocated": probes["orders"]["preallocated_bytes_per_order"],
            "rss": probes["orders"]["rss_bytes_per_order"],
        },
        "bytes_per_empty_market": {
            label: {
                "preallocated": probes[f"markets {label}"]["preallocated_bytes_per_market"],
                "rss": probes[f"markets {label}"]["rss_bytes_per_market"],
            }
            for label in TICKS
        },
        "bytes_per_account": {
            "preallocated": probes["accounts"]["preallocated_bytes_per_account"],
            "rss": probes["accounts"]["rss_bytes_per_account"],
        },
        "bytes_per_position_slot": probes["orders"]["preallocated_bytes_per_position"],
        "max_positions_default": "max_orders + max_accounts",
        "peak_rss_bytes": {name: p["peak_rss_bytes"] for name, p in probes.items()},
    }
    return {"sizes": size, "probes": probes, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("probe", choices=["orders", "markets", "accounts"])
    p.add_argument("n", type=int)
    p.add_argument("tick", type=int, nargs="?", default=10)
    args = p.parse_args(argv)
    if args.probe == "orders":
        out = probe_orders(args.n)
    elif args.probe == "markets":
        out = probe_markets(args.n, args.tick)
    else:
        out = probe_accounts(args.n)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
