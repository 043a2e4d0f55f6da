"""``matchcore`` (or ``python -m matchcore``): a seeded trading session through the core.

Market makers quote around a drifting fair price with all four intents (a NO
bid is a YES ask), takers cross with IOC and market orders, and quotes are
moved and canceled, as on a live venue. The session runs through the batch
API, then the book, the trades by match type and the throughput are printed,
and every invariant is checked.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np

from . import (
    COMMAND_DTYPE,
    CommandType,
    Engine,
    EventType,
    Intent,
    MarketState,
    MatchType,
    Reject,
    TimeInForce,
    make_commands,
)

TICK = 100  # $0.01
LOT = 100  # 1 share


def session(seed: int, count: int, accounts: int) -> np.ndarray:
    """``count`` order-entry commands for market 0 (ids of live orders are tracked)."""
    rng = np.random.default_rng(seed)
    # The fair price swings slowly between $0.35 and $0.65, one tick of noise around it.
    steps = np.arange(count)
    fair = 5_000 + (1_500 * np.sin(steps / 40_000) / TICK).astype(np.int64) * TICK
    fair += rng.integers(-1, 2, count) * TICK
    roll = rng.random(count)
    owner = rng.integers(accounts, size=count)
    maker_intent = rng.integers(4, size=count)
    offset = rng.integers(1, 6, count) * TICK
    size = rng.integers(1, 20, count) * LOT
    taker_intent = rng.choice([Intent.BUY_YES, Intent.BUY_NO, Intent.SELL_YES], count)
    by_cash = rng.random(count) < 0.5
    pick = rng.random(count)
    move = rng.integers(-5, 6, count) * TICK

    kind = np.select(
        [roll < 0.55, roll < 0.70, roll < 0.90], [0, 1, 2], 3
    )  # quote/take/move/cancel
    order_ids = np.zeros(count, dtype=np.int64)
    accounts_of = owner.copy()
    live: list[tuple[int, int]] = []  # (order id, account) of quotes that may rest
    next_id = 1
    for i in range(count):  # only the ids of live quotes need a loop
        if kind[i] >= 2 and not live:
            kind[i] = 0
        if kind[i] == 0:
            live.append((next_id, int(owner[i])))
        elif kind[i] == 2:
            order_ids[i], accounts_of[i] = live[int(pick[i] * len(live))]
        elif kind[i] == 3:
            order_ids[i], accounts_of[i] = live.pop(int(pick[i] * len(live)))
        next_id += kind[i] <= 1
        if len(live) > 2_000:
            live = live[-1_000:]
    quote, take, moves, cancel = (kind == k for k in range(4))
    quote_bid = (maker_intent == Intent.BUY_YES) | (maker_intent == Intent.SELL_NO)
    cash = take & (taker_intent == Intent.BUY_NO) & by_cash
    out = np.zeros(count, dtype=COMMAND_DTYPE)
    out["type"] = np.select(
        [quote | take, moves, cancel],
        [CommandType.NEW_ORDER, CommandType.REPLACE, CommandType.CANCEL],
    )
    out["account"] = accounts_of
    out["order_id"] = order_ids
    out["intent"] = np.where(quote, maker_intent, np.where(take, taker_intent, 0))
    out["tif"] = np.where(take, TimeInForce.IOC, TimeInForce.GTC)
    out["flags"] = np.where(cash, 2 | 4, 0)  # MARKET | BY_CASH: spend at most $5
    out["quantity"] = np.select([quote, cash, take], [size, 5_000_000, 2 * size], 0)
    out["price"] = np.select(
        [quote & quote_bid, quote, take & (taker_intent == Intent.BUY_YES), take, moves],
        [fair - offset, fair + offset, fair + 3 * TICK, fair - 3 * TICK, fair + move],
        0,
    )
    out["seq"] = steps + 1
    out["time"] = steps
    out["market"] = 0
    return out


def dollars(price: int) -> str:
    return f"${price / 10_000:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="matchcore", description=__doc__)
    parser.add_argument("--commands", type=int, default=1_000_000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    engine = Engine(max_orders=1 << 20, max_markets=4, max_accounts=args.accounts)
    market = {"type": "CREATE_MARKET", "market": 0, "price": TICK, "quantity": LOT, "aux": LOT}
    market.update(taker_fee_bps=20, maker_fee_bps=-5)  # a maker rebate, on the notional
    setup = [market, {"type": "SET_MARKET_STATE", "market": 0, "arg": MarketState.OPEN}]
    for a in range(args.accounts):  # $1M each, and 100,000 YES+NO pairs to sell from
        setup.append({"type": "ADD_ACCOUNT", "account": a})
        setup.append({"type": "DEPOSIT", "account": a, "quantity": 10**12})
        setup.append({"type": "SPLIT", "account": a, "market": 0, "quantity": 100_000 * LOT})
    engine.process(make_commands(setup))

    print(f"generating {args.commands:,} commands (seed {args.seed}) ...", flush=True)
    commands = session(args.seed, args.commands, args.accounts)
    events_by_type: Counter[str] = Counter()
    match_volume: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    batch = 10_000
    started = time.perf_counter()
    engine_seconds = 0.0
    for start in range(0, len(commands), batch):
        t0 = time.perf_counter()
        events = engine.process(commands[start : start + batch])
        engine_seconds += time.perf_counter() - t0
        types, counts = np.unique(events["type"], return_counts=True)
        for t, n in zip(types, counts, strict=True):
            events_by_type[EventType(t).name] += int(n)
        trades = events[events["type"] == EventType.TRADE]
        for kind in (MatchType.COMPLEMENTARY, MatchType.MINT, MatchType.MERGE):
            match_volume[kind.name] += int(trades["quantity"][trades["match_type"] == kind].sum())
        rejected = events[events["type"] == EventType.REJECTED]
        for reason, n in zip(*np.unique(rejected["reason"], return_counts=True), strict=True):
            rejects[Reject(reason).name] += int(n)
    wall = time.perf_counter() - started

    engine.validate()
    bids, asks = engine.book(0, depth=5)
    print("\nbook of market 0 (YES price, shares, orders):")
    for name, levels in (("ask", asks[::-1]), ("bid", bids)):
        for level in levels:
            shares = level["quantity"] / 100
            print(f"    {name} {dollars(level['price'])}  {shares:>10,.0f}  {level['count']}")
    print("\nevents:", ", ".join(f"{k} {v:,}" for k, v in events_by_type.most_common()))
    print(
        "rejects (quotes already filled or gone):",
        ", ".join(f"{k} {v:,}" for k, v in rejects.items()),
    )
    print(
        "traded shares by match type:",
        ", ".join(f"{k} {v / 100:,.0f}" for k, v in match_volume.items()),
    )
    totals = engine.totals()
    print(
        f"fees collected ${totals.fees / 1e6:,.2f} (net of maker rebates); "
        f"collateral ${totals.collateral / 1e6:,.0f} for the outstanding YES+NO pairs"
    )
    print(f"resting orders {engine.order_count:,}; invariants ok; digest {engine.digest()}")
    n = len(commands)
    print(
        f"\nengine: {n / engine_seconds / 1e6:.2f} M commands/s "
        f"({engine_seconds / n * 1e9:.0f} ns/command, batches of {batch:,}); "
        f"wall time with event accounting {wall:.2f} s"
    )


if __name__ == "__main__":
    main()
