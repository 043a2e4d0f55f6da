"""SCALE: many markets, funded accounts, risk checks on (shared BENCHMARKS.md, SCALE).

``scale()`` writes, seeded and deterministic:

- setup: ``accounts`` accounts; ``markets`` markets, even ids at tick $0.001 (999
  levels a side), odd ids at $0.01 (99 levels a side), taker fee 10 bps on the
  notional, opened; each account funded with a ``DEPOSIT`` and a ``SPLIT`` of
  share pairs in each of its ``markets_per_account`` markets (so it can sell YES
  and NO there); then ``resting`` passive orders (GTC, and GTD with expiries spread
  over the run), all four intents, spread uniformly over the markets;
- ``n`` measured commands, engine time advancing by ``step`` per command: new
  passive orders (GTC and GTD), cancels, replaces (moves to a new price, some of
  them crossing), and crossing orders (IOC and GTC) of any intent, so that trades
  are COMPLEMENTARY, MINT and MERGE; GTD orders expire as time passes.

The book size is held near ``resting`` by feedback on the share of cancels. Every
account has enough cash and shares that no risk check fails: the engine runs the
ledger (reservations, settlement, fees) on every command, and the trades are those
of the order books alone, which the generator's own model of the books computes
while it writes (``Expected``, and the traded volume per match type), as XC's and
PEER's do. Accounts trade only in their own markets (about ``accounts *
markets_per_account / markets`` per market), so positions stay bounded.

Uniform markets, uniform orders: every command touches a market, a level, an
order slot and an account that are unlikely to be in cache — the regime of a venue
with thousands of markets, which XC (one market, ~1,000 orders) never reaches.
"""

from __future__ import annotations

import heapq
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from matchcore import COMMAND_DTYPE, CommandType, Intent, MarketState, TimeInForce

from .ids import OrderLog, remap, workload_capacity
from .workloads import Expected, _Capacity

SCALE_FULL = 10_000_000
FULL = {"markets": 10_000, "accounts": 100_000, "resting": 1_000_000}
QUICK = {"markets": 100, "accounts": 1_000, "resting": 10_000}

TICKS = (10, 100)  # price units per tick: even markets $0.001, odd markets $0.01
TAKER_FEE_BPS = 10
DEPOSIT = 10**12  # micro-dollars per account: $1,000,000
SPLIT_PAIRS = 10**6  # share pairs (units of 0.01 share) per account and market
STEP = 1_000  # engine time per measured command
GTD_SHARE = 0.3  # of passive new orders
GTD_LIFE = (10**6, 4 * 10**9)  # expiry - now, engine time units (1,000 to 4,000,000 commands)

BID, ASK = 0, 1
BIDS = (Intent.BUY_YES, Intent.SELL_NO)
ASKS = (Intent.SELL_YES, Intent.BUY_NO)
COMPLEMENTARY, MINT, MERGE = 1, 2, 3
# Match type by (bid intent, ask intent), docs/matchcore.md.
MATCH = {
    (Intent.BUY_YES, Intent.SELL_YES): COMPLEMENTARY,
    (Intent.SELL_NO, Intent.BUY_NO): COMPLEMENTARY,
    (Intent.BUY_YES, Intent.BUY_NO): MINT,
    (Intent.SELL_NO, Intent.SELL_YES): MERGE,
}
MATCH_NAMES = {COMPLEMENTARY: "COMPLEMENTARY", MINT: "MINT", MERGE: "MERGE"}

# An order: [ref, account, market, side, tick, qty, intent, expiry]
REF, ACC, MKT, SIDE, TICK, QTY, INTENT, EXP = range(8)

Progress = Callable[[int], None]
_PROGRESS_EVERY = 1 << 16


class _Book:
    """One market: levels per side in a dict ``tick -> deque``, best prices in lazy heaps."""

    __slots__ = ("heaps", "levels", "max_tick")

    def __init__(self, max_tick: int) -> None:
        self.max_tick = max_tick
        self.levels: tuple[dict[int, deque[list[int]]], dict[int, deque[list[int]]]] = ({}, {})
        self.heaps: tuple[list[int], list[int]] = ([], [])  # bids as -tick, asks as tick

    def best(self, side: int) -> int:
        """Best tick of ``side``; 0 if empty."""
        heap, levels = self.heaps[side], self.levels[side]
        while heap:
            tick = -heap[0] if side == BID else heap[0]
            if tick in levels:
                return tick
            heapq.heappop(heap)
        return 0

    def add(self, order: list[int]) -> None:
        side, tick = order[SIDE], order[TICK]
        level = self.levels[side].get(tick)
        if level is None:
            level = self.levels[side][tick] = deque()
            heapq.heappush(self.heaps[side], -tick if side == BID else tick)
        level.append(order)

    def remove(self, order: list[int]) -> None:
        levels = self.levels[order[SIDE]]
        level = levels[order[TICK]]
        level.remove(order)
        if not level:
            del levels[order[TICK]]


@dataclass(frozen=True)
class ScaleWorkload(_Capacity):
    """SCALE: ``setup`` then ``commands`` (``COMMAND_DTYPE``), run with the ledger on, with
    the order ids of an engine of ``max_orders`` (``at_capacity()`` gives another)."""

    name: str
    n: int
    seed: int
    accounts: int
    markets: int
    setup: np.ndarray
    commands: np.ndarray
    expected: Expected
    match_volume: dict[str, int]
    log: OrderLog
    max_orders: int
    params: dict[str, object] = field(default_factory=dict)
    ledger: bool = True

    def mix(self) -> dict[str, int]:
        c = self.commands
        new = c["type"] == CommandType.NEW_ORDER
        return {
            "GTC": int(np.count_nonzero(new & (c["tif"] == TimeInForce.GTC))),
            "GTD": int(np.count_nonzero(new & (c["tif"] == TimeInForce.GTD))),
            "IOC": int(np.count_nonzero(new & (c["tif"] == TimeInForce.IOC))),
            "CANCEL": int(np.count_nonzero(c["type"] == CommandType.CANCEL)),
            "REPLACE": int(np.count_nonzero(c["type"] == CommandType.REPLACE)),
        }

    def unfunded_setup(self) -> np.ndarray:
        """The setup without its DEPOSIT and SPLIT commands (for an engine without the ledger)."""
        keep = ~np.isin(self.setup["type"], [CommandType.DEPOSIT, CommandType.SPLIT])
        out = self.setup[keep].copy()
        out["seq"] = np.arange(1, len(out) + 1)
        return out


class _Writer:
    """Columns of commands, turned into ``COMMAND_DTYPE`` chunks as they fill."""

    COLS = ("type", "account", "market", "order_id", "intent", "price", "quantity", "tif", "expiry")

    def __init__(self) -> None:
        self.rows: list[tuple[int, ...]] = []
        self.chunks: list[np.ndarray] = []

    def flush(self) -> None:
        if not self.rows:
            return
        cols = np.array(self.rows, dtype=np.int64)
        out = np.zeros(len(self.rows), dtype=COMMAND_DTYPE)
        for k, name in enumerate(self.COLS):
            out[name] = cols[:, k]
        self.chunks.append(out)
        self.rows = []

    def array(self) -> np.ndarray:
        self.flush()
        if not self.chunks:
            return np.zeros(0, dtype=COMMAND_DTYPE)
        return np.concatenate(self.chunks)


def _admin(accounts: int, markets: int, homes: list[list[int]]) -> np.ndarray:
    n_split = sum(len(h) for h in homes)
    out = np.zeros(accounts + 2 * markets + accounts + n_split, dtype=COMMAND_DTYPE)
    a = out[:accounts]
    a["type"], a["account"] = CommandType.ADD_ACCOUNT, np.arange(accounts)
    m = out[accounts : accounts + markets]
    ids = np.arange(markets)
    m["type"], m["market"] = CommandType.CREATE_MARKET, ids
    m["price"] = np.where(ids % 2 == 0, TICKS[0], TICKS[1])
    m["quantity"], m["aux"] = 1, 1  # min size, lot
    m["taker_fee_bps"] = TAKER_FEE_BPS
    o = out[accounts + markets : accounts + 2 * markets]
    o["type"], o["market"], o["arg"] = CommandType.SET_MARKET_STATE, ids, MarketState.OPEN
    d = out[accounts + 2 * markets : 2 * accounts + 2 * markets]
    d["type"], d["account"], d["quantity"] = CommandType.DEPOSIT, np.arange(accounts), DEPOSIT
    s = out[2 * accounts + 2 * markets :]
    s["type"], s["quantity"] = CommandType.SPLIT, SPLIT_PAIRS
    s["account"] = [acc for acc, h in enumerate(homes) for _ in h]
    s["market"] = [mk for h in homes for mk in h]
    return out


def scale(
    n: int = SCALE_FULL,
    seed: int = 3,
    markets: int = FULL["markets"],
    accounts: int = FULL["accounts"],
    resting: int = FULL["resting"],
    markets_per_account: int = 3,
    progress: Progress | None = None,
) -> ScaleWorkload:
    """SCALE: the setup above, then ``n`` commands (see the module's docstring)."""
    if markets_per_account > markets:
        raise ValueError("markets_per_account > markets")
    rng = random.Random(seed)
    rand, randint, choice = rng.random, rng.randint, rng.choice
    homes = [rng.sample(range(markets), markets_per_account) for _ in range(accounts)]
    traders: list[list[int]] = [[] for _ in range(markets)]
    for acc, h in enumerate(homes):
        for mk in h:
            traders[mk].append(acc)
    for mk in range(markets):  # a market nobody trades in gets one account's orders anyway
        if not traders[mk]:
            raise ValueError(f"market {mk} has no account: raise accounts or markets_per_account")
    levels = [10_000 // TICKS[mk % 2] - 1 for mk in range(markets)]
    books = [_Book(levels[mk]) for mk in range(markets)]
    orders: dict[int, list[int]] = {}
    live: list[int] = []
    pos: dict[int, int] = {}
    expiries: list[tuple[int, int]] = []
    stats = {"volume": 0, "fills": 0, "max_live": 0}
    match_volume = {COMPLEMENTARY: 0, MINT: 0, MERGE: 0}
    log = OrderLog()  # what the engine's order ids depend on (bench/ids.py)
    ref = 0
    now = 0

    def forget(order: list[int]) -> None:
        r = order[REF]
        log.leave(r)
        del orders[r]
        i = pos.pop(r)
        last = live.pop()
        if last != r:
            live[i] = last
            pos[last] = i

    def rest(order: list[int]) -> None:
        log.rest(order[REF])
        books[order[MKT]].add(order)
        orders[order[REF]] = order
        pos[order[REF]] = len(live)
        live.append(order[REF])
        if len(live) > stats["max_live"]:
            stats["max_live"] = len(live)
        if order[EXP]:
            heapq.heappush(expiries, (order[EXP], order[REF]))

    def expire() -> None:
        while expiries and expiries[0][0] <= now:
            _, r = heapq.heappop(expiries)
            o = orders.get(r)
            if o is not None and o[EXP] <= now:
                books[o[MKT]].remove(o)
                forget(o)

    def sweep(taker: list[int]) -> tuple[int, bool]:
        """The taker meets the other side; returns (quantity filled, stopped on self-trade)."""
        book, side = books[taker[MKT]], taker[SIDE]
        opp = 1 - side
        opp_levels = book.levels[opp]
        filled, stopped = 0, False
        while taker[QTY]:
            p = book.best(opp)
            if not p or (p > taker[TICK] if side == BID else p < taker[TICK]):
                break
            level = opp_levels[p]
            while level and taker[QTY]:
                maker = level[0]
                if maker[ACC] == taker[ACC]:
                    stopped = True
                    break
                f = min(maker[QTY], taker[QTY])
                maker[QTY] -= f
                taker[QTY] -= f
                filled += f
                stats["fills"] += 1
                pair = (
                    (taker[INTENT], maker[INTENT])
                    if side == BID
                    else (maker[INTENT], taker[INTENT])
                )
                match_volume[MATCH[pair]] += f
                if not maker[QTY]:
                    level.popleft()
                    forget(maker)
            if not level:
                del opp_levels[p]
            if stopped:
                break
        stats["volume"] += filled
        return filled, stopped

    def passive_tick(mk: int, side: int, avoid: int = 0) -> int:
        """A tick in the side's band that does not cross and is not ``avoid``; 0 if none."""
        top, book = levels[mk], books[mk]
        mid = (top + 1) // 2
        if side == BID:
            ask = book.best(ASK) or top + 1
            hi = min(mid - 1, ask - 1)
            lo = min(top // 4, hi)
        else:
            bid = book.best(BID)
            lo = max(mid + 1, bid + 1)
            hi = max(3 * top // 4, lo)
        if lo < 1 or hi > top or lo > hi or lo == hi == avoid:
            return 0
        while True:
            tick = randint(lo, hi)
            if tick != avoid:
                return tick

    def crossing_tick(mk: int, side: int) -> int:
        """A tick that crosses the best opposite price by 0..2 ticks; 0 if that side is empty."""
        book, top = books[mk], levels[mk]
        if side == BID:
            best = book.best(ASK)
            return min(best + randint(0, 2), top) if best else 0
        best = book.best(BID)
        return max(best - randint(0, 2), 1) if best else 0

    def new_passive(w: _Writer, mk: int, account: int, gtd: bool) -> int:
        nonlocal ref
        side = BID if rand() < 0.5 else ASK
        tick = passive_tick(mk, side)
        if not tick:
            side = 1 - side
            tick = passive_tick(mk, side)
            if not tick:
                return new_cross(w, mk, account, GTC_)
        intent = choice(BIDS if side == BID else ASKS)
        qty = randint(1, 1000)
        expiry = now + randint(*GTD_LIFE) if gtd else 0
        ref += 1
        log.new(ref, True)
        rest([ref, account, mk, side, tick, qty, intent, expiry])
        tif = TimeInForce.GTD if gtd else TimeInForce.GTC
        w.rows.append((NEW, account, mk, 0, intent, tick * TICKS[mk % 2], qty, tif, expiry))
        return 0

    def new_cross(w: _Writer, mk: int, account: int, tif: int) -> int:
        nonlocal ref
        side = BID if rand() < 0.5 else ASK
        tick = crossing_tick(mk, side)
        if not tick:
            side = 1 - side
            tick = crossing_tick(mk, side)
            if not tick:  # an empty book: a passive order instead
                return new_passive(w, mk, account, False)
        intent = choice(BIDS if side == BID else ASKS)
        qty = randint(1, 3000)
        ref += 1
        log.new(ref, tif == GTC_)
        taker = [ref, account, mk, side, tick, qty, intent, 0]
        filled, stopped = sweep(taker)
        if taker[QTY] and tif == GTC_ and not stopped:
            rest(taker)
        w.rows.append((NEW, account, mk, 0, intent, tick * TICKS[mk % 2], qty, tif, 0))
        return filled

    def cancel_or_move(w: _Writer, order: list[int], move: bool) -> int:
        mk, side = order[MKT], order[SIDE]
        tick = 0
        if move:
            tick = crossing_tick(mk, side) if rand() < 0.02 else 0
            if not tick or tick == order[TICK]:
                tick = passive_tick(mk, side, avoid=order[TICK])
        books[mk].remove(order)
        if not tick:  # a cancel, or a move with nowhere to go
            forget(order)
            w.rows.append((CANCEL, order[ACC], mk, order[REF], 0, 0, 0, 0, 0))
            return 0
        w.rows.append((REPLACE, order[ACC], mk, order[REF], 0, tick * TICKS[mk % 2], 0, 0, 0))
        forget(order)
        order[TICK] = tick
        filled, stopped = sweep(order)
        if order[QTY] and not stopped:
            rest(order)
        return filled

    NEW, CANCEL, REPLACE = CommandType.NEW_ORDER, CommandType.CANCEL, CommandType.REPLACE
    GTC_, IOC_ = TimeInForce.GTC, TimeInForce.IOC

    # ------------------------------------------------------------ setup orders
    setup_w = _Writer()
    for _ in range(resting):
        mk = randint(0, markets - 1)
        new_passive(setup_w, mk, choice(traders[mk]), rand() < GTD_SHARE)
    if stats["volume"]:
        raise AssertionError("a setup order traded")
    setup_orders = setup_w.array()
    head = _admin(accounts, markets, homes)
    setup = np.concatenate([head, setup_orders])
    setup["seq"] = np.arange(1, len(setup) + 1)
    volume0, fills0 = stats["volume"], stats["fills"]
    for k in match_volume:
        match_volume[k] = 0

    # ------------------------------------------------------------ measured commands
    w = _Writer()
    trading = 0
    for i in range(n):
        now = STEP * (i + 1)
        expire()
        r = rand()
        filled = 0
        if r < 0.10 or not live:
            mk = randint(0, markets - 1)
            filled = new_cross(w, mk, choice(traders[mk]), IOC_ if rand() < 0.5 else GTC_)
        elif r < 0.35:
            filled = cancel_or_move(w, orders[live[int(rand() * len(live))]], True)
        elif r < 0.35 + 0.25 * len(live) / resting:
            cancel_or_move(w, orders[live[int(rand() * len(live))]], False)
        else:
            mk = randint(0, markets - 1)
            new_passive(w, mk, choice(traders[mk]), rand() < GTD_SHARE)
        trading += filled > 0
        if len(w.rows) >= _PROGRESS_EVERY:
            w.flush()
        if progress is not None and (i + 1) % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None:
        progress(n % _PROGRESS_EVERY)
    commands = w.array()
    if len(commands) != n:
        raise AssertionError(f"{len(commands)} commands written for {n}")
    commands["seq"] = np.arange(1, n + 1)
    commands["time"] = STEP * np.arange(1, n + 1, dtype=np.int64)
    expected = Expected(
        traded_volume=stats["volume"] - volume0,
        fills=stats["fills"] - fills0,
        trading_commands=trading,
        resting_orders=len(live),
        resting_qty=sum(o[QTY] for o in orders.values()),
        max_live=stats["max_live"],
    )
    max_orders = workload_capacity(expected.max_live)
    return ScaleWorkload(
        name="SCALE",
        n=n,
        seed=seed,
        accounts=accounts,
        markets=markets,
        setup=setup,
        commands=remap(commands, log.ids(max_orders)),
        expected=expected,
        match_volume={MATCH_NAMES[k]: v for k, v in match_volume.items()},
        log=log,
        max_orders=max_orders,
        params={
            "markets": markets,
            "accounts": accounts,
            "resting": resting,
            "markets_per_account": markets_per_account,
            "ticks": {"even markets": "$0.001", "odd markets": "$0.01"},
            "taker_fee_bps": TAKER_FEE_BPS,
            "deposit_micro_dollars": DEPOSIT,
            "split_pairs": SPLIT_PAIRS,
            "time_step": STEP,
            "gtd_share": GTD_SHARE,
            "gtd_life": list(GTD_LIFE),
            "setup_commands": len(setup),
        },
    )


__all__ = ["FULL", "QUICK", "SCALE_FULL", "ScaleWorkload", "scale"]
