"""Seeded random command streams and engine comparison, for differential testing.

``random_stream()`` produces commands that exercise every rule: several
markets with different ticks and lots, a few accounts (so self-trades are
common), prices clustered around a moving mid (so books cross often), every
order type and intent, cancels and replaces aimed at resting orders (a shadow
engine runs the stream as it is generated, to know which orders rest; any
stream is valid input, so this only steers the choice), GTD expiries, time
going backwards, tick changes, short halts and rare closes, and a sprinkling
of invalid input. With the ledger, markets carry random fee schedules, some
accounts are rich and some nearly broke (so balance rejects are common), and
deposits, withdrawals, splits, merges and rare resolutions are mixed in.
``first_difference()`` runs two engines side by side and reports the first
event or state where they part.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ._engine import Engine
from .codes import (
    ALL_MARKETS,
    MAX_QUANTITY,
    TICKS,
    CommandType,
    EventType,
    Intent,
    MarketState,
    OrderFlags,
    TimeInForce,
)
from .records import COMMAND_DTYPE, event_dicts, make_commands


class EngineLike(Protocol):
    def process(self, commands: np.ndarray) -> np.ndarray: ...
    def canonical_state(self) -> bytes: ...
    def validate(self) -> None: ...


@dataclass(frozen=True)
class StreamShape:
    """How a random stream looks; the defaults make books cross often."""

    markets: int = 3
    accounts: int = 8
    spread_ticks: int = 6  # prices within +-spread_ticks of the mid
    admin_rate: float = 0.01  # state, tick, account and market commands
    invalid_rate: float = 0.01  # malformed values and unknown ids
    close_rate: float = 0.005  # share of state changes that close a market
    ledger: bool = True  # money: fees, funding, ledger commands
    ledger_rate: float = 0.06  # deposits, withdrawals, splits, merges, resolutions
    auction_rate: float = 0.5  # share of markets that collect orders in PRE_OPEN, then open


def engine_capacities(shape: StreamShape) -> dict[str, Any]:
    """Capacities small enough that CAPACITY rejects happen in long streams."""
    return {
        "max_orders": 48,
        "max_markets": shape.markets + 1,
        "max_accounts": shape.accounts + 1,
        "max_levels": 2 * 999 * shape.markets + 2 * 99,
        "max_positions": shape.accounts * shape.markets - 2,
        "ledger": shape.ledger,
    }


def setup_commands(shape: StreamShape, rng: random.Random) -> list[dict[str, Any]]:
    """Markets (mixed ticks, lots and minimum sizes), opened, and the accounts."""
    rows: list[dict[str, Any]] = []
    for market in range(shape.markets):
        tick = rng.choice([10, 25, 50, 100, 100])
        lot = rng.choice([1, 100])
        row = {
            "type": CommandType.CREATE_MARKET,
            "market": market,
            "price": tick,
            "quantity": lot * rng.randrange(1, 3),
            "aux": lot,
            # price bounds (low | high << 32): none, the venue's 0.01..0.99, or ones the
            # orders reach
            "expiry": rng.choice([0, 0, 100 | 9_900 << 32, 3_000 | 7_000 << 32, 6_000 << 32]),
        }
        if shape.ledger:
            taker = rng.choice([0, 1, 7, 30, 100, 695, 999, 1000])
            row["taker_fee_bps"] = taker
            row["maker_fee_bps"] = rng.choice([0, 3, -min(taker, 5), -min(taker, 125), -taker, 200])
            row["fee_base"] = rng.randrange(4)  # NOTIONAL, MIN, PQ, PQ_CENTS
        rows.append(row)
        if rng.random() >= shape.auction_rate:  # else it opens later, with its auction
            rows.append(
                {"type": CommandType.SET_MARKET_STATE, "market": market, "arg": MarketState.OPEN}
            )
    rows += [{"type": CommandType.ADD_ACCOUNT, "account": a} for a in range(shape.accounts)]
    if shape.ledger:  # rich accounts, modest ones and nearly broke ones, some with shares
        for account in range(shape.accounts):
            cash = rng.choice([10**11, 10**9, 5 * 10**7, 300_000])
            rows.append({"type": CommandType.DEPOSIT, "account": account, "quantity": cash})
            for market in range(shape.markets):
                pairs = min(cash // 40_000, 20_000) // 100 * 100
                if pairs and rng.random() < 0.7:
                    rows.append(
                        {
                            "type": CommandType.SPLIT,
                            "account": account,
                            "market": market,
                            "quantity": pairs,
                        }
                    )
    return rows


class _StreamState:
    """What the generator remembers to aim commands at plausible targets."""

    def __init__(self, shape: StreamShape, rng: random.Random, setup: list[dict[str, Any]]):
        self.shape = shape
        self.rng = rng
        self.time = 0
        self.mid = {m: 5_000 for m in range(shape.markets)}
        self.tick = {
            r["market"]: r["price"] for r in setup if r["type"] == CommandType.CREATE_MARKET
        }
        self.lot = {r["market"]: r["aux"] for r in setup if r["type"] == CommandType.CREATE_MARKET}
        self.shadow = Engine(**engine_capacities(shape))
        self.shadow.process(make_commands(setup))
        self.pending: list[dict[str, Any]] = []  # not yet run by the shadow
        self.resting: list[int] = []  # order ids that rested at some point
        self.reopen: dict[int, int] = {}  # market -> commands until it (re)opens
        opened = {r["market"] for r in setup if r["type"] == CommandType.SET_MARKET_STATE}
        for market in sorted(set(self.tick) - opened):  # PRE_OPEN: its auction comes in a while
            self.reopen[market] = rng.randrange(20, 400)

    def run(self, row: dict[str, Any]) -> None:
        """Feed the shadow engine (32 commands at a time) and remember what rests."""
        self.pending.append(row)
        if len(self.pending) < 32:
            return
        events = self.shadow.process(make_commands(self.pending))
        self.pending.clear()
        for order_id in events["order_id"][events["type"] == EventType.ACCEPTED]:
            if self.shadow.order(int(order_id)) is not None:
                self.resting.append(int(order_id))

    def target(self) -> tuple[int, int]:
        """(order id, account): usually a resting order and its owner."""
        for _ in range(8):
            if not self.resting:
                break
            i = self.rng.randrange(len(self.resting))
            order = self.shadow.order(self.resting[i])
            if order is None:
                self.resting[i] = self.resting[-1]
                self.resting.pop()
                continue
            owner = order.account if self.rng.random() < 0.9 else self.account()
            return order.order_id, owner
        return self.rng.randrange(1, self.shadow.next_order_id + 1), self.account()

    def market(self) -> int:
        return self.rng.randrange(self.shape.markets)

    def account(self) -> int:
        return self.rng.randrange(self.shape.accounts)

    def price(self, market: int) -> int:
        tick = self.tick[market]
        self.mid[market] += self.rng.randrange(-1, 2) * tick
        self.mid[market] = min(max(self.mid[market], 1_000), 9_000)
        offset = self.rng.randrange(-self.shape.spread_ticks, self.shape.spread_ticks + 1)
        return self.mid[market] // tick * tick + offset * tick

    def quantity(self, market: int) -> int:
        return self.lot[market] * self.rng.randrange(1, 12)

    def bad_price(self, market: int) -> int:
        return self.rng.choice(
            [
                0,
                -self.tick[market],
                10_000,
                self.tick[market] - 1,
                self.price(market) + 1,
                2**31 - 1,
            ]
        )

    def bad_quantity(self, market: int) -> int:
        return self.rng.choice(
            [
                0,
                -self.lot[market],
                MAX_QUANTITY + self.lot[market],
                self.lot[market] + 1 if self.lot[market] > 1 else 0,
                2**63 - 1,
            ]
        )


def _new_order(s: _StreamState) -> dict[str, Any]:
    rng = s.rng
    market = s.market()
    intent = rng.randrange(4)
    tif = rng.choice(
        [TimeInForce.GTC] * 6 + [TimeInForce.GTD] * 2 + [TimeInForce.IOC] * 2 + [TimeInForce.FOK]
    )
    row: dict[str, Any] = {
        "type": CommandType.NEW_ORDER,
        "account": s.account(),
        "market": market,
        "intent": intent,
        "tif": tif,
        "price": s.price(market),
        "quantity": s.quantity(market),
        "stp": rng.choice([0, 0, 0, 1, 2, 3, 4, 5]),
    }
    if tif == TimeInForce.GTD:
        row["expiry"] = s.time + rng.randrange(-2, 40)
    roll = rng.random()
    if roll < 0.06:
        row["flags"] = OrderFlags.POST_ONLY
        row["tif"] = rng.choice([TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC])
    elif roll < 0.14:  # market order: IOC/FOK with a worst-price bound
        row["flags"] = OrderFlags.MARKET
        row["tif"] = rng.choice([TimeInForce.IOC, TimeInForce.FOK])
        row["expiry"] = 0
        if intent in (Intent.BUY_YES, Intent.BUY_NO) and rng.random() < 0.5:
            row["flags"] |= OrderFlags.BY_CASH
            row["quantity"] = rng.randrange(1, 60_000) * s.lot[market]
        if rng.random() < 0.5:  # the venue's: a limit from slippage off a current price
            row["flags"] |= OrderFlags.SLIPPAGE
            ticks = rng.choice([0, 0, 1, 3, 10])
            bps = rng.choice([0, 0, 25, 300, 10_000])
            current = min(max(rng.choice([0, 0, s.price(market)]), 0), 2**15 - 1)
            row["aux"] = ticks | bps << 32 | current << 48
            if rng.random() < 0.5:
                row["price"] = 0
    if rng.random() < 0.3:
        row["client_order_id"] = rng.randrange(1, 12)
    return row


def _replace(s: _StreamState) -> dict[str, Any]:
    rng = s.rng
    order_id, account = s.target()
    order = s.shadow.order(order_id)
    market = order.market if order is not None else s.market()
    roll = rng.random()
    return {
        "type": CommandType.REPLACE,
        "account": account,
        "order_id": order_id,
        "price": s.price(market) if roll < 0.75 else 0,
        "quantity": s.quantity(market) if roll > 0.5 or rng.random() < 0.2 else 0,
    }


def _admin(s: _StreamState) -> dict[str, Any]:
    rng = s.rng
    market = rng.randrange(s.shape.markets + 1)  # sometimes one that does not exist
    roll = rng.random()
    if roll < 0.5:  # mostly short suspensions and halts, reopened a few commands later
        state = rng.choice(
            [MarketState.SUSPENDED] * 5
            + [MarketState.HALTED] * 2
            + [MarketState.OPEN] * 2
            + [MarketState.PRE_OPEN]
        )
        if rng.random() < s.shape.close_rate:
            state = rng.choice([MarketState.CLOSED, MarketState.EXPIRED])
        if state in (MarketState.SUSPENDED, MarketState.HALTED):
            s.reopen[market] = rng.randrange(1, 60)
        return {"type": CommandType.SET_MARKET_STATE, "market": market, "arg": state}
    if roll < 0.8:
        tick = rng.choice([1, 10, 10, 25, 50, 100, 100, 1000, 7])
        if market in s.tick and tick in TICKS:
            s.tick[market] = tick
        return {"type": CommandType.SET_TICK, "market": market, "price": tick}
    if roll < 0.9:
        return {"type": CommandType.ADD_ACCOUNT, "account": rng.randrange(s.shape.accounts + 2)}
    return {
        "type": CommandType.CREATE_MARKET,
        "market": market,
        "price": 100,
        "quantity": 1,
        "aux": 1,
        "expiry": rng.choice([0, 0, 100 | 9_900 << 32, 7_000 | 3_000 << 32, 10_001, -1]),
    }


def _invalid(s: _StreamState) -> dict[str, Any]:
    rng = s.rng
    row = _new_order(s)
    what = rng.randrange(8)
    if what == 0:
        row["price"] = s.bad_price(row["market"])
    elif what == 1:
        row["quantity"] = s.bad_quantity(row["market"])
    elif what == 2:
        row["intent"] = rng.choice([4, 9, 255])
    elif what == 3:
        row["flags"] = rng.choice([8, 16, OrderFlags.BY_CASH, OrderFlags.POST_ONLY | 2])
    elif what == 4:
        row["market"] = rng.choice([s.shape.markets + 7, ALL_MARKETS])
    elif what == 5:
        row["account"] = rng.choice([s.shape.accounts + 5, 2**32 - 1])
    elif what == 7:  # a SLIPPAGE market order with a bad aux
        row["flags"], row["tif"], row["expiry"] = OrderFlags.MARKET | OrderFlags.SLIPPAGE, 2, 0
        off_grid = min(max(s.price(row["market"]), 0) + 1, 2**15 - 1)
        row["aux"] = rng.choice([-1, 10_001 << 32, off_grid << 48])
    else:
        row = {"type": rng.choice([0, 16, 99, 255]), "market": row["market"]}
    return row


def _ledger(s: _StreamState) -> dict[str, Any]:
    """A deposit, withdrawal, split, merge or (rarely) a resolution."""
    rng = s.rng
    roll = rng.random()
    account, market = s.account(), s.market()
    if roll < 0.35:
        amount = rng.choice([1, 999, 10**5, 10**7, 10**9])
        return {"type": CommandType.DEPOSIT, "account": account, "quantity": amount}
    if roll < 0.55:
        amount = rng.choice([1, 10**5, 10**7, 10**9, 10**11])
        return {"type": CommandType.WITHDRAW, "account": account, "quantity": amount}
    if roll < 0.999:
        pairs = s.lot[market] * rng.choice([1, 3, 10, 100])
        kind = CommandType.SPLIT if roll < 0.8 else CommandType.MERGE
        return {"type": kind, "account": account, "market": market, "quantity": pairs}
    return {"type": CommandType.RESOLVE, "market": market, "arg": rng.choice([1, 2, 3, 3, 0])}


def random_stream(seed: int, count: int, shape: StreamShape | None = None) -> np.ndarray:
    """Setup commands followed by ``count`` random commands, as a COMMAND_DTYPE array."""
    shape = shape or StreamShape()
    rng = random.Random(seed)
    rows = setup_commands(shape, rng)
    s = _StreamState(shape, rng, rows)
    for _ in range(count):
        s.time += rng.choice([0, 1, 1, 2, 5])
        reopen = [m for m, left in s.reopen.items() if left <= 0]
        roll = rng.random()
        if reopen:
            row = {
                "type": CommandType.SET_MARKET_STATE,
                "market": reopen[0],
                "arg": MarketState.OPEN,
            }
            del s.reopen[reopen[0]]
        elif roll < shape.invalid_rate:
            row = _invalid(s)
        elif roll < shape.invalid_rate + shape.admin_rate:
            row = _admin(s)
        elif shape.ledger and roll < shape.invalid_rate + shape.admin_rate + shape.ledger_rate:
            row = _ledger(s)
        else:
            kind = rng.random()
            if kind < 0.48:
                row = _new_order(s)
            elif kind < 0.60:
                order_id, account = s.target()
                row = {"type": CommandType.CANCEL, "account": account, "order_id": order_id}
            elif kind < 0.64:
                row = {
                    "type": CommandType.CANCEL_CLIENT,
                    "account": s.account(),
                    "client_order_id": rng.randrange(0, 12),
                }
            elif kind < 0.66:
                row = {
                    "type": CommandType.CANCEL_ALL,
                    "account": s.account(),
                    "market": rng.choice([ALL_MARKETS, s.market()]),
                }
            elif kind < 0.96:
                row = _replace(s)
            else:
                row = {"type": CommandType.ADVANCE_TIME}
                s.time += rng.randrange(0, 30)
        s.reopen = {m: left - 1 for m, left in s.reopen.items()}
        # Time mostly moves forward; sometimes a command comes stamped in the past.
        row["time"] = s.time - rng.randrange(1, 10) if rng.random() < 0.03 else s.time
        s.run(row)
        rows.append(row)
    out = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for name in COMMAND_DTYPE.names:
        values = [r.get(name, 0) for r in rows]
        if any(values):
            out[name] = values
    out["seq"] = np.arange(1, len(rows) + 1)
    return out


@dataclass
class Difference:
    """Where two engines part: the command index, and what differs."""

    command_index: int
    what: str

    def __str__(self) -> str:
        return f"after command {self.command_index}: {self.what}"


def first_difference(
    left: EngineLike,
    right: EngineLike,
    commands: np.ndarray,
    *,
    chunk: int = 100,
    validate_every: int = 1,
    validate_left_each_command: bool = False,
) -> Difference | None:
    """Run both engines chunk by chunk; compare events per chunk and state after it.

    ``validate()`` runs on both engines after every ``validate_every``-th chunk,
    and with ``validate_left_each_command`` on ``left`` after every command too
    (it then runs its chunk one command at a time).
    On a difference the chunk is replayed command by command (on copies made
    from the previous state) to name the exact command.
    """
    for start in range(0, len(commands), chunk):
        batch = commands[start : start + chunk]
        if validate_left_each_command:
            pieces = []
            for i in range(len(batch)):
                pieces.append(left.process(batch[i : i + 1]))
                left.validate()
            ev_left = np.concatenate(pieces)
        else:
            ev_left = left.process(batch)
        ev_right = right.process(batch)
        if not np.array_equal(ev_left, ev_right):
            pairs = zip(event_dicts(ev_left), event_dicts(ev_right), strict=False)
            for i, (a, b) in enumerate(pairs):
                if a != b:
                    seq = a.get("seq", b.get("seq", 0))
                    return Difference(start, f"event {i} (command seq {seq}): {a} != {b}")
            return Difference(start, f"event counts {len(ev_left)} != {len(ev_right)}")
        if left.canonical_state() != right.canonical_state():
            return Difference(start + len(batch) - 1, "canonical states differ")
        if (start // chunk) % validate_every == 0:
            left.validate()
            right.validate()
    return None
