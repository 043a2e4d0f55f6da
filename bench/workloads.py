"""Seeded, deterministic workloads, written once and replayed by every runner and peer.

- ``xc()``: the exchange-core mix (BENCHMARKS.md, XC) as ``COMMAND_DTYPE`` arrays.
- ``peer()``: the add/cancel/cross stream (BENCHMARKS.md, PEER) as a neutral list of
  operations (``OP_DTYPE``) that each peer replays through its own API, plus its
  conversion to ``COMMAND_DTYPE``. ``peer(crosses=False)`` is its add/cancel part.

Both generators run the ``SimBook`` model while they write, so that every cancel
and move targets a live order of its owner, and they record what a correct engine
must end with (``Expected``). The same seed and parameters give the same arrays,
and a smaller ``n`` gives a prefix of the same stream.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from matchcore import COMMAND_DTYPE, CommandType, Intent, MarketState, TimeInForce

from .ids import OrderLog, remap, workload_capacity
from .simbook import ACCOUNT, BUY, QTY, REF, SELL, SIDE, TICK, SimBook

MARKET = 0
TICK_SIZE = 10  # price units per tick: $0.001
MAX_TICK = 10_000 // TICK_SIZE - 1  # 999
MID = (MAX_TICK + 1) // 2  # 500

XC_FULL = 3_000_000
PEER_FULL = 1_000_000

Progress = Callable[[int], None]  # called with the number of commands written since last call
_PROGRESS_EVERY = 1 << 16

# Operation kinds of the neutral PEER stream.
ADD, CANCEL, CROSS = 0, 1, 2

OP_DTYPE = np.dtype(
    [("kind", "u1"), ("side", "u1"), ("tick", "<i4"), ("qty", "<i8"), ("ref", "<i8")]
)
"""One PEER operation: ``kind`` ADD/CANCEL/CROSS, ``side`` BUY (0) or SELL (1), ``tick``
(price = tick * 10 price units here), ``qty`` in lots, ``ref``: for ADD and CROSS the
order's own reference (1, 2, 3, ... in entry order; this project's engine gives it an
id that depends on ``max_orders``, ``bench/ids.py``), for CANCEL the order it cancels.
``tick`` and ``qty`` of a CANCEL are the canceled order's price and remaining quantity
(what leaves its level)."""


@dataclass(frozen=True)
class Expected:
    """What every correct engine ends with after the measured commands (setup excluded)."""

    traded_volume: int
    fills: int  # maker fills: one TRADE event each
    trading_commands: int  # measured commands that traded at least once
    resting_orders: int  # after setup and measured commands
    resting_qty: int
    max_live: int  # most resting orders at any time (sizes the engine)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _reid(commands: np.ndarray, log: OrderLog, old: int, new: int) -> np.ndarray:
    """Commands with the engine ids of ``max_orders = new`` instead of those of ``old``.

    Ids ascend with the refs (acceptance order), so a ref is found by bisection.
    """
    if new == old:
        return commands
    refs = commands.copy()
    targets = np.isin(refs["type"], [CommandType.CANCEL, CommandType.REPLACE])
    refs["order_id"][targets] = np.searchsorted(log.ids(old), refs["order_id"][targets])
    return remap(refs, log.ids(new))


@dataclass(frozen=True)
class _Capacity:
    """A workload's order ids are those of an engine of ``max_orders`` (``bench/ids.py``)."""

    def at_capacity(self, max_orders: int):  # type: ignore[no-untyped-def]
        """The same workload for an engine of ``max_orders`` (its ids follow the capacity)."""
        if max_orders < self.expected.max_live:  # type: ignore[attr-defined]
            raise ValueError(f"max_orders {max_orders} < the largest book of the workload")
        fields = {"max_orders": max_orders}
        for name in ("setup", "commands"):
            value = getattr(self, name, None)
            if isinstance(value, np.ndarray):
                fields[name] = _reid(value, self.log, self.max_orders, max_orders)  # type: ignore[attr-defined]
        return replace(self, **fields)  # type: ignore[type-var]


@dataclass(frozen=True)
class XcWorkload(_Capacity):
    """The exchange-core mix: ``setup`` then ``commands`` (both ``COMMAND_DTYPE``), with the
    order ids of an engine of ``max_orders`` (``at_capacity()`` gives another)."""

    name: str
    n: int
    seed: int
    accounts: int
    setup: np.ndarray
    commands: np.ndarray
    expected: Expected
    log: OrderLog
    max_orders: int
    params: dict[str, object] = field(default_factory=dict)

    def funded_setup(self) -> np.ndarray:
        """The setup for an engine with the ledger: every account gets cash and YES+NO
        pairs (so its sells hold shares) once the market is open; no risk check fails."""
        opened = np.nonzero(self.setup["type"] == CommandType.SET_MARKET_STATE)[0][-1] + 1
        accounts = self.setup["account"][self.setup["type"] == CommandType.ADD_ACCOUNT]
        market = int(self.setup["market"][self.setup["type"] == CommandType.CREATE_MARKET][0])
        funding = np.zeros(2 * len(accounts), dtype=COMMAND_DTYPE)
        funding["type"][: len(accounts)] = CommandType.DEPOSIT
        funding["quantity"][: len(accounts)] = 10**13  # $10 million each
        funding["type"][len(accounts) :] = CommandType.SPLIT
        funding["quantity"][len(accounts) :] = 10**8  # a million pairs each
        funding["market"][len(accounts) :] = market
        funding["account"] = np.concatenate([accounts, accounts])
        out = np.concatenate([self.setup[:opened], funding, self.setup[opened:]])
        out["seq"] = np.arange(1, len(out) + 1)
        return out

    def mix(self) -> dict[str, int]:
        """Measured commands per kind: GTC, IOC, CANCEL, MOVE."""
        c = self.commands
        new = c["type"] == CommandType.NEW_ORDER
        return {
            "GTC": int(np.count_nonzero(new & (c["tif"] == TimeInForce.GTC))),
            "IOC": int(np.count_nonzero(new & (c["tif"] == TimeInForce.IOC))),
            "CANCEL": int(np.count_nonzero(c["type"] == CommandType.CANCEL)),
            "MOVE": int(np.count_nonzero(c["type"] == CommandType.REPLACE)),
        }


@dataclass(frozen=True)
class PeerWorkload(_Capacity):
    """The PEER stream: ``setup_ops`` (untimed adds) then ``ops``, both ``OP_DTYPE``;
    as commands with the order ids of an engine of ``max_orders``."""

    name: str
    n: int
    seed: int
    setup_ops: np.ndarray
    ops: np.ndarray
    expected: Expected
    log: OrderLog
    max_orders: int
    params: dict[str, object] = field(default_factory=dict)

    ACCOUNTS = 2  # account 0 owns the passive orders, account 1 the crossing ones

    def mix(self) -> dict[str, int]:
        kinds = self.ops["kind"]
        return {
            "ADD": int(np.count_nonzero(kinds == ADD)),
            "CANCEL": int(np.count_nonzero(kinds == CANCEL)),
            "CROSS": int(np.count_nonzero(kinds == CROSS)),
        }

    def setup_commands(self) -> np.ndarray:
        """Accounts 0 and 1, market 0 (tick $0.001, lot 1, min size 1) open, the untimed adds."""
        head = _admin_commands(self.ACCOUNTS)
        return np.concatenate([head, ops_to_commands(self.setup_ops, first_seq=len(head) + 1)])

    def commands(self) -> np.ndarray:
        return remap(ops_to_commands(self.ops), self.log.ids(self.max_orders))


def _admin_commands(accounts: int) -> np.ndarray:
    out = np.zeros(accounts + 2, dtype=COMMAND_DTYPE)
    out["type"][:accounts] = CommandType.ADD_ACCOUNT
    out["account"][:accounts] = np.arange(accounts)
    create, opened = out[accounts : accounts + 1], out[accounts + 1 :]
    create["type"], create["market"], create["price"] = CommandType.CREATE_MARKET, MARKET, TICK_SIZE
    create["quantity"], create["aux"] = 1, 1  # min size, lot
    opened["type"], opened["market"] = CommandType.SET_MARKET_STATE, MARKET
    opened["arg"] = MarketState.OPEN
    out["seq"] = np.arange(1, len(out) + 1)
    return out


def ops_to_commands(ops: np.ndarray, first_seq: int = 1) -> np.ndarray:
    """PEER operations as commands: passive orders by account 0, crossing ones by account 1.

    A cancel's ``order_id`` is the ref of its order (``remap()`` makes it an engine id).
    Every order is a GTC limit (BUY_YES for a buy, SELL_YES for a sell) at
    ``tick * 10``; a crossing order fills completely, so it never rests.
    """
    out = np.zeros(len(ops), dtype=COMMAND_DTYPE)
    cancel = ops["kind"] == CANCEL
    out["seq"] = np.arange(first_seq, first_seq + len(ops))
    out["type"] = np.where(cancel, CommandType.CANCEL, CommandType.NEW_ORDER)
    out["account"] = (ops["kind"] == CROSS).astype(np.uint32)
    out["market"] = MARKET
    out["order_id"] = np.where(cancel, ops["ref"], 0)
    new = ~cancel
    out["intent"][new] = np.where(ops["side"][new] == BUY, Intent.BUY_YES, Intent.SELL_YES)
    out["price"][new] = ops["tick"][new] * TICK_SIZE
    out["quantity"][new] = ops["qty"][new]
    out["tif"] = TimeInForce.GTC
    return out


# --------------------------------------------------------------------------- PEER


def _passive_tick(rng: random.Random, book: SimBook, side: int) -> int:
    """A tick that does not cross: most near the middle, a tail over the whole range."""
    off = int(rng.expovariate(0.01))
    if off >= MID - 1:
        off = rng.randrange(MID - 1)
    if side == BUY:
        return min(MID - 1 - off, book.best[SELL] - 1)
    return max(MID + 1 + off, book.best[BUY] + 1)


def peer(
    n: int = PEER_FULL,
    seed: int = 2,
    warm: int = 2_000,
    crosses: bool = True,
    progress: Progress | None = None,
) -> PeerWorkload:
    """PEER: ``warm`` untimed passive adds, then ``n`` operations.

    50% passive adds, 35% cancels of live orders, 15% crossing limit orders sized to
    fill completely (1..100 lots, capped by what rests on the other side), which
    keeps the book near ``warm`` orders. A cancel with nothing live, or a cross with
    an empty other side, becomes an add.

    ``crosses=False`` gives the add/cancel part (PEER-AC, for peers that only store
    sizes per price): adds and cancels only, a cancel with probability
    ``0.5 * live / warm`` (so half of each at the PEER book size, which it keeps).
    """
    rng = random.Random(seed)
    rand, randint = rng.random, rng.randint
    book = SimBook(MAX_TICK)
    rows: list[tuple[int, int, int, int, int]] = []
    ref = 0

    def add() -> None:
        nonlocal ref
        side = BUY if rand() < 0.5 else SELL
        tick = _passive_tick(rng, book, side)
        qty = randint(1, 100)
        ref += 1
        book.enter(ref, 0, side, tick, qty, True)
        rows.append((ADD, side, tick, qty, ref))

    def cancel() -> None:
        o = book.pick(int(rand() * len(book.live)))
        rows.append((CANCEL, o[SIDE], o[TICK], o[QTY], o[REF]))
        book.cancel(o[REF])

    def cross() -> None:
        nonlocal ref
        side = BUY if rand() < 0.5 else SELL
        qty = min(randint(1, 100), book.side_qty[1 - side])
        if not qty:
            add()
            return
        tick = book.fill_limit(side, qty)
        ref += 1
        if book.enter(ref, 1, side, tick, qty, True) != qty:
            raise AssertionError("a crossing order did not fill completely")
        rows.append((CROSS, side, tick, qty, ref))

    for _ in range(warm):
        add()
    setup_rows, rows = rows, []
    for i in range(n):
        r = rand()
        if crosses:
            if r < 0.50 or not book.live:
                add()
            elif r < 0.85:
                cancel()
            else:
                cross()
        elif book.live and r < 0.5 * len(book.live) / warm:
            cancel()
        else:
            add()
        if progress is not None and (i + 1) % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None:
        progress(n % _PROGRESS_EVERY)
    crossed = [r for r in rows if r[0] == CROSS]
    expected = Expected(
        traded_volume=book.volume,
        fills=book.fills,
        trading_commands=len(crossed),
        resting_orders=len(book.live),
        resting_qty=book.resting_qty(),
        max_live=book.max_live,
    )
    if expected.traded_volume != sum(r[3] for r in crossed):
        raise AssertionError("traded volume differs from the crossing quantity")
    return PeerWorkload(
        name="PEER" if crosses else "PEER-AC",
        n=n,
        seed=seed,
        setup_ops=np.array(setup_rows, dtype=OP_DTYPE),
        ops=np.array(rows, dtype=OP_DTYPE),
        expected=expected,
        log=book.log,
        max_orders=workload_capacity(expected.max_live),
        params={"warm": warm, "crosses": crosses, "ticks": [1, MAX_TICK], "qty_lots": [1, 100]},
    )


# --------------------------------------------------------------------------- XC

XC_BAND = (125, 875)  # passive orders rest on ticks 125..499 (bids) and 501..875 (asks)
XC_MOVE_CROSS = 0.012  # share of moves that go to a crossing price
XC_GTC_MARKETABLE = 1 / 6  # share of GTC orders that are marketable, at the target book size
XC_TAKER_LOTS = 10  # marketable GTC/IOC take 1..q lots, q = 10 at the target book size


def _xc_passive_tick(rng: random.Random, book: SimBook, side: int, avoid: int = 0) -> int:
    """A tick in the side's band that does not cross and is not ``avoid``; 0 if there is none."""
    if side == BUY:
        hi = min(MID - 1, book.best[SELL] - 1)
        lo = min(XC_BAND[0], hi)
    else:
        lo = max(MID + 1, book.best[BUY] + 1)
        hi = max(XC_BAND[1], lo)
    if lo < 1 or hi > MAX_TICK or (lo == hi == avoid):
        return 0
    while True:
        tick = rng.randint(lo, hi)
        if tick != avoid:
            return tick


def _xc_marketable_tick(rng: random.Random, book: SimBook, side: int) -> int:
    """A tick that crosses the best opposite price by 0..2 ticks (0 if that side is empty)."""
    if side == BUY:
        best = book.best[SELL]
        return min(best + rng.randint(0, 2), MAX_TICK) if best <= MAX_TICK else 0
    best = book.best[BUY]
    return max(best - rng.randint(0, 2), 1) if best >= 1 else 0


def xc(
    n: int = XC_FULL,
    seed: int = 1,
    accounts: int = 1_000,
    resting: int = 1_000,
    step: int = 1_000,
    progress: Progress | None = None,
) -> XcWorkload:
    """XC: ``accounts`` accounts, ``resting`` GTC orders over ~750 levels, then ``n`` commands.

    Mix: 9% GTC limit, 3% IOC, 6% cancel, 82% move (replace at a new price), all
    BUY_YES (bid) or SELL_YES (ask) in market 0 at tick $0.001. New orders come from
    a uniformly drawn account; cancels and moves target a uniformly drawn live order
    and come from its owner. Passive prices are uniform over ticks 125..499 (bids)
    and 501..875 (asks), never crossing; marketable ones cross the best opposite
    price by 0..2 ticks. IOC orders are all marketable, 1.2% of moves and about a
    sixth of GTC orders too. Engine time advances by ``step`` per command.

    The book is kept near ``resting`` orders by feedback on its size: the marketable
    share of GTC and the size of marketable orders (1..q lots) grow with it. Every
    trade removes at least one resting order unless its taker does not rest and only
    partly fills a maker, so with 9% GTC against 6% cancels a book that keeps its
    size allows at most about 6% trading commands; this mix gives about 5.4%.
    """
    rng = random.Random(seed)
    rand, randint = rng.random, rng.randint
    book = SimBook(MAX_TICK)
    # Columns of the measured commands.
    c_type: list[int] = []
    c_account: list[int] = []
    c_order: list[int] = []
    c_intent: list[int] = []
    c_tick: list[int] = []
    c_qty: list[int] = []
    c_tif: list[int] = []
    ref = 0
    setup_orders: list[tuple[int, int, int, int]] = []
    for _ in range(resting):
        side = BUY if rand() < 0.5 else SELL
        tick, qty, account = (
            _xc_passive_tick(rng, book, side),
            randint(1, 100),
            randint(0, accounts - 1),
        )
        ref += 1
        book.enter(ref, account, side, tick, qty, True)
        setup_orders.append((account, side, tick, qty))
    volume0, fills0 = book.volume, book.fills
    trading = 0
    NEW, CXL, REPL = CommandType.NEW_ORDER, CommandType.CANCEL, CommandType.REPLACE
    GTC, IOC = TimeInForce.GTC, TimeInForce.IOC

    def new_order(tif: int, marketable: bool) -> int:
        nonlocal ref
        side = BUY if rand() < 0.5 else SELL
        account = randint(0, accounts - 1)
        if marketable:
            tick = _xc_marketable_tick(rng, book, side)
            if not tick:  # the other side is empty: an order at the middle instead
                tick = MID
            qty = randint(1, max(1, min(400, XC_TAKER_LOTS * len(book.live) // resting)))
        else:
            tick, qty = _xc_passive_tick(rng, book, side), randint(1, 100)
            if not tick:  # no room on this side below the other: the other side
                side = 1 - side
                tick = _xc_passive_tick(rng, book, side)
        ref += 1
        filled = book.enter(ref, account, side, tick, qty, tif == GTC)
        c_type.append(NEW), c_account.append(account), c_order.append(0)
        c_intent.append(side), c_tick.append(tick), c_qty.append(qty), c_tif.append(tif)
        return filled

    def move_or_cancel(o: list[int], move: bool) -> int:
        side, tick = o[SIDE], 0
        if move:
            tick = _xc_marketable_tick(rng, book, side) if rand() < XC_MOVE_CROSS else 0
            if not tick or tick == o[TICK]:
                tick = _xc_passive_tick(rng, book, side, avoid=o[TICK])
        c_account.append(o[ACCOUNT]), c_order.append(o[REF]), c_intent.append(side)
        c_qty.append(0), c_tif.append(GTC)
        if tick:
            c_type.append(REPL), c_tick.append(tick)
            return book.move(o[REF], tick)
        c_type.append(CXL), c_tick.append(0)  # a cancel, or a move with nowhere to go
        book.cancel(o[REF])
        return 0

    for i in range(n):
        r = rand()
        if r < 0.88 and book.live:
            filled = move_or_cancel(book.pick(int(rand() * len(book.live))), r < 0.82)
        elif 0.88 <= r < 0.91:
            filled = new_order(IOC, True)
        else:  # GTC, or a cancel or move with nothing live
            marketable = r >= 0.91 and rand() < XC_GTC_MARKETABLE * min(
                2.0, len(book.live) / resting
            )
            filled = new_order(GTC, marketable)
        trading += filled > 0
        if progress is not None and (i + 1) % _PROGRESS_EVERY == 0:
            progress(_PROGRESS_EVERY)
    if progress is not None:
        progress(n % _PROGRESS_EVERY)

    setup = _xc_setup(accounts, setup_orders)
    commands = np.zeros(n, dtype=COMMAND_DTYPE)
    commands["seq"] = np.arange(1, n + 1)
    commands["time"] = step * np.arange(1, n + 1, dtype=np.int64)
    commands["type"] = c_type
    commands["account"] = c_account
    commands["market"] = MARKET
    commands["order_id"] = c_order
    ticks = np.array(c_tick, dtype=np.int32)
    commands["price"] = ticks * TICK_SIZE
    commands["quantity"] = c_qty
    commands["tif"] = c_tif
    is_new = commands["type"] == NEW
    sides = np.array(c_intent, dtype=np.uint8)
    commands["intent"][is_new] = np.where(sides[is_new] == BUY, Intent.BUY_YES, Intent.SELL_YES)
    expected = Expected(
        traded_volume=book.volume - volume0,
        fills=book.fills - fills0,
        trading_commands=trading,
        resting_orders=len(book.live),
        resting_qty=book.resting_qty(),
        max_live=book.max_live,
    )
    max_orders = workload_capacity(expected.max_live)
    return XcWorkload(
        name="XC",
        n=n,
        seed=seed,
        accounts=accounts,
        setup=setup,
        commands=remap(commands, book.log.ids(max_orders)),
        expected=expected,
        log=book.log,
        max_orders=max_orders,
        params={"resting": resting, "time_step": step, "band_ticks": list(XC_BAND)},
    )


def _xc_setup(accounts: int, orders: list[tuple[int, int, int, int]]) -> np.ndarray:
    head = _admin_commands(accounts)
    body = np.zeros(len(orders), dtype=COMMAND_DTYPE)
    if orders:
        cols = np.array(orders, dtype=np.int64)
        body["type"] = CommandType.NEW_ORDER
        body["account"] = cols[:, 0]
        body["market"] = MARKET
        body["intent"] = np.where(cols[:, 1] == BUY, Intent.BUY_YES, Intent.SELL_YES)
        body["price"] = cols[:, 2] * TICK_SIZE
        body["quantity"] = cols[:, 3]
        body["tif"] = TimeInForce.GTC
    body["seq"] = np.arange(len(head) + 1, len(head) + len(orders) + 1)
    return np.concatenate([head, body])


__all__ = [
    "ADD",
    "CANCEL",
    "CROSS",
    "OP_DTYPE",
    "PEER_FULL",
    "XC_FULL",
    "Expected",
    "PeerWorkload",
    "XcWorkload",
    "ops_to_commands",
    "peer",
    "xc",
]
