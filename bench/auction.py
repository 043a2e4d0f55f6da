"""The cost of the opening auction (docs/matchcore.md §4): one ``PRE_OPEN -> OPEN`` command on
a book of ``--orders`` resting orders collected in PRE_OPEN.

Books (seeded): *crossed*, bids and asks spread over the same 0.40 .. 0.60 (most of the
book trades, self-matches included: ``--accounts`` owners), and *touching*, bids 0.30 ..
0.50 and asks 0.50 .. 0.70 (only 0.50 crosses: the price search over the whole book's
levels and a few fills). Each on the $0.01 and the $0.0001 tick, with the ledger (bids
BUY_YES, asks BUY_NO: every fill a mint, fees on the venue's PQ_CENTS schedule) and
without. Every run restores the same PRE_OPEN snapshot into a fresh engine and times the
one command (``process()`` of one record) with ``perf_counter_ns``; median of ``--runs``.

    python -m bench.auction                  # 100,000 orders, 5 runs
    python -m bench.auction --orders 10000 --runs 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

import matchcore as mc
from matchcore import CommandType, FeeBase, Intent, MarketState


def book(orders: int, accounts: int, tick: int, crossed: bool, ledger: bool, seed: int) -> bytes:
    """The snapshot of one PRE_OPEN market holding ``orders`` resting orders."""
    rng = random.Random(seed)
    eng = mc.Engine(
        max_orders=orders + 16, max_markets=2, max_accounts=accounts + 1, ledger=ledger,
        max_levels=2 * 9999,
    )  # fmt: skip
    fees = dict(taker_fee_bps=695, maker_fee_bps=-125, fee_base=FeeBase.PQ_CENTS) if ledger else {}
    assert eng.create_market(0, tick, 100, 100, **fees) == 0
    for account in range(accounts):
        assert eng.add_account(account) == 0
        if ledger:
            assert eng.deposit(account, 10**14) == 0
    rows = np.zeros(orders, dtype=mc.COMMAND_DTYPE)
    bid_range = (4000, 6000) if crossed else (3000, 5000)
    ask_range = (4000, 6000) if crossed else (5000, 7000)
    for i in range(orders):
        bid = i % 2 == 0
        low, high = bid_range if bid else ask_range
        rows[i]["type"] = CommandType.NEW_ORDER
        rows[i]["account"] = rng.randrange(accounts)
        rows[i]["intent"] = Intent.BUY_YES if bid else Intent.BUY_NO
        rows[i]["price"] = rng.randrange(low // tick, high // tick + 1) * tick
        rows[i]["quantity"] = 100 * rng.randrange(1, 11)
    events = eng.process(rows)
    assert (events["type"] == mc.EventType.ACCEPTED).sum() == orders, "every order rests"
    assert eng.order_count == orders
    return eng.snapshot()


def measure(snapshot: bytes, runs: int) -> tuple[list[int], np.ndarray, int]:
    opening = np.zeros(1, dtype=mc.COMMAND_DTYPE)
    opening["type"] = CommandType.SET_MARKET_STATE
    opening["arg"] = MarketState.OPEN
    times, events, left = [], np.zeros(0, dtype=mc.EVENT_DTYPE), 0
    for _ in range(runs):
        eng = mc.Engine.restore(snapshot)
        start = time.perf_counter_ns()
        events = eng.process(opening)
        times.append(time.perf_counter_ns() - start)
        left = eng.order_count
        eng.validate()
    return times, events, left


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.auction", description=__doc__.splitlines()[0])
    p.add_argument("--orders", type=int, default=100_000)
    p.add_argument("--accounts", type=int, default=1_000)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    print(f"opening auction, {args.orders:,} resting orders, {args.accounts:,} accounts, "
          f"median of {args.runs} runs (min .. max)\n")  # fmt: skip
    print("| book | tick | ledger | auction ms | trades | self-match cancels | rounds | left |")
    print("|---|---|---|---|---|---|---|---|")
    for crossed in (True, False):
        for tick in (100, 1):
            for ledger in (False, True):
                snap = book(args.orders, args.accounts, tick, crossed, ledger, args.seed)
                times, events, left = measure(snap, args.runs)
                trades = events[events["type"] == mc.EventType.TRADE]
                self_matches = int(
                    ((events["type"] == mc.EventType.CANCELED)
                     & (events["reason"] == mc.CancelReason.SELF_TRADE)).sum()
                )  # fmt: skip
                ms = [t / 1e6 for t in times]
                print(
                    f"| {'crossed' if crossed else 'touching'} | {tick / 10_000:g} "
                    f"| {'on' if ledger else 'off'} | {statistics.median(ms):.2f} "
                    f"({min(ms):.2f} .. {max(ms):.2f}) | {len(trades):,} | {self_matches:,} "
                    f"| {len(set(trades['price'].tolist()))} | {left:,} |"
                )


if __name__ == "__main__":
    main()
