"""Helpers for the matchcore unit tests: engine set-up, expected-event builders, state encoding.

Expected events are written by hand from docs/matchcore.md, never produced by an engine.
Every builder returns the dict ``event_dicts()`` gives for that event: the fields the
contract sets, without the zero ones.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from matchcore import (
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CommandType,
    EventType,
    FeeBase,
    Intent,
    MarketInfo,
    MarketState,
    Position,
    TimeInForce,
    Totals,
    event_dicts,
    make_commands,
)
from matchcore.codes import side_of

# Ids used throughout. Non-zero on purpose: event_dicts() drops zero fields, so a
# wrong market or account of 0 would go unnoticed.
A1, A2, A3 = 1, 2, 3
M1, M2 = 1, 2

Ev = dict[str, int]

NEW = CommandType.NEW_ORDER
CANCEL = CommandType.CANCEL
CANCEL_CLIENT = CommandType.CANCEL_CLIENT
CANCEL_ALL = CommandType.CANCEL_ALL
REPLACE = CommandType.REPLACE
ADVANCE = CommandType.ADVANCE_TIME
CREATE = CommandType.CREATE_MARKET
SET_STATE = CommandType.SET_MARKET_STATE
SET_TICK = CommandType.SET_TICK
ADD_ACCOUNT = CommandType.ADD_ACCOUNT
DEPOSIT = CommandType.DEPOSIT
WITHDRAW = CommandType.WITHDRAW
SPLIT = CommandType.SPLIT
MERGE_PAIRS = CommandType.MERGE  # the command; MatchType.MERGE is the match type
RESOLVE = CommandType.RESOLVE

# --------------------------------------------------------------------------- engines

MUTATORS = frozenset(
    {
        "create_market",
        "set_market_state",
        "set_tick",
        "add_account",
        "submit",
        "cancel",
        "cancel_client",
        "cancel_all",
        "replace",
        "advance_time",
        "deposit",
        "withdraw",
        "split",
        "merge",
        "resolve",
    }
)


class Checked:
    """An engine wrapper that runs ``validate()`` after every command.

    Per-call methods are validated after each call; ``process()`` runs its commands
    one at a time (the events are the same as for the whole batch) and validates
    between them. ``raw`` is the wrapped engine.

    With ``audit=True`` every validation is followed by ``audit_ledger()``: the
    canonical state is decoded independently of the engine and the ledger rules of
    docs/matchcore.md §8 (conservation, shares against collateral, reservations
    equal to what the resting orders need, positions held exactly when needed) are
    checked on it, and against the query methods.
    """

    def __init__(self, engine: Any, *, audit: bool = False) -> None:
        object.__setattr__(self, "raw", engine)
        object.__setattr__(self, "audit", audit)
        self._check()

    def _check(self) -> None:
        self.raw.validate()
        if self.audit:
            audit_ledger(self.raw)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name not in MUTATORS:
            return attr

        def checked(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self._check()
            return result

        return checked

    def process(self, commands: Any) -> np.ndarray:
        if (
            not isinstance(commands, np.ndarray)
            or commands.dtype != COMMAND_DTYPE
            or commands.ndim != 1
            or len(commands) == 0
        ):
            return self.raw.process(commands)
        parts = []
        for i in range(len(commands)):
            parts.append(self.raw.process(commands[i : i + 1]))
            self._check()
        return np.concatenate(parts)


def new_engine(
    engine_cls: Any,
    *,
    markets: Sequence[int] = (M1, M2),
    accounts: Sequence[int] = (A1, A2, A3),
    tick: int = 100,
    min_size: int = 1,
    lot: int = 1,
    open_markets: bool = True,
    max_orders: int = 64,
    max_markets: int = 4,
    max_accounts: int = 8,
    max_levels: int | None = None,
    max_positions: int | None = None,
    ledger: bool = False,
    taker_fee_bps: int = 0,
    maker_fee_bps: int = 0,
    fee_base: int = FeeBase.NOTIONAL,
    deposits: dict[int, int] | None = None,
) -> Checked:
    """A small engine with some accounts and OPEN markets, its event buffer drained.

    ``ledger=False`` by default: the matching-only engine the rule tests are written
    for. With ``ledger=True`` the engine is audited after every command and each
    account of ``deposits`` gets that much free cash.
    """
    raw = engine_cls(
        max_orders=max_orders,
        max_markets=max_markets,
        max_accounts=max_accounts,
        max_levels=max_levels,
        max_positions=max_positions,
        ledger=ledger,
    )
    eng = Checked(raw, audit=ledger)
    for account in accounts:
        assert eng.add_account(account) == 0
    fees = {}
    if taker_fee_bps or maker_fee_bps or fee_base:
        fees = dict(taker_fee_bps=taker_fee_bps, maker_fee_bps=maker_fee_bps, fee_base=fee_base)
    for market in markets:
        assert eng.create_market(market, tick, min_size, lot, **fees) == 0
        if open_markets:
            assert eng.set_market_state(market, MarketState.OPEN) == 0
    for account, amount in (deposits or {}).items():
        assert eng.deposit(account, amount) == 0
    eng.drain_events()
    return eng


def last(eng: Any) -> list[Ev]:
    """The events of the last per-call method, as dicts."""
    events = eng.last_events()
    assert events.dtype == EVENT_DTYPE
    return event_dicts(events)


def run(eng: Any, rows: Iterable[dict[str, Any]]) -> list[Ev]:
    """Run command dicts through ``process()`` and return its events as dicts."""
    events = eng.process(make_commands(list(rows)))
    assert events.dtype == EVENT_DTYPE
    return event_dicts(events)


# --------------------------------------------------------------------------- commands


def new_order(
    account: int,
    market: int,
    intent: int,
    price: int,
    quantity: int,
    tif: int = TimeInForce.GTC,
    **fields: int,
) -> dict[str, int]:
    """A NEW_ORDER command row for make_commands()."""
    return dict(
        type=NEW,
        account=account,
        market=market,
        intent=intent,
        price=price,
        quantity=quantity,
        tif=tif,
        **fields,
    )


# --------------------------------------------------------------------------- events


def ev(**fields: int) -> Ev:
    """An event dict as event_dicts() returns it: ints, zero fields left out."""
    return {name: int(value) for name, value in fields.items() if int(value) != 0}


@dataclasses.dataclass(frozen=True)
class Order:
    """What a test knows of an order, to write its expected events."""

    order_id: int
    account: int
    market: int
    intent: int
    price: int
    tif: int = TimeInForce.GTC
    flags: int = 0

    @property
    def side(self) -> int:
        return int(side_of(self.intent))

    def at(self, price: int) -> Order:
        """The same order at another price (after a replace)."""
        return dataclasses.replace(self, price=price)

    def fields(self) -> dict[str, int]:
        return dict(
            order_id=self.order_id,
            account=self.account,
            market=self.market,
            price=self.price,
            intent=self.intent,
            side=self.side,
            tif=self.tif,
            flags=self.flags,
        )


def accepted(order: Order, quantity: int, *, command: int = NEW, seq: int = 0) -> Ev:
    return ev(
        type=EventType.ACCEPTED,
        quantity=quantity,
        leaves_qty=quantity,
        command=command,
        seq=seq,
        **order.fields(),
    )


def rejected(
    reason: int,
    *,
    account: int = 0,
    market: int = 0,
    order_id: int = 0,
    command: int = NEW,
    seq: int = 0,
) -> Ev:
    return ev(
        type=EventType.REJECTED,
        reason=reason,
        account=account,
        market=market,
        order_id=order_id,
        command=command,
        seq=seq,
    )


def trade(
    taker: Order,
    maker: Order,
    quantity: int,
    leaves: int,
    maker_leaves: int,
    match_type: int,
    *,
    fee: int = 0,
    maker_fee: int = 0,
    command: int = NEW,
    seq: int = 0,
) -> Ev:
    """A TRADE at the maker's (resting) price; ``fee``/``maker_fee`` in cash (negative: rebate)."""
    assert taker.market == maker.market
    return ev(
        type=EventType.TRADE,
        order_id=taker.order_id,
        account=taker.account,
        intent=taker.intent,
        side=taker.side,
        tif=taker.tif,
        flags=taker.flags,
        maker_order_id=maker.order_id,
        maker_account=maker.account,
        maker_intent=maker.intent,
        market=taker.market,
        price=maker.price,
        quantity=quantity,
        leaves_qty=leaves,
        maker_leaves_qty=maker_leaves,
        match_type=match_type,
        fee=fee,
        maker_fee=maker_fee,
        command=command,
        seq=seq,
    )


def canceled(order: Order, quantity: int, reason: int, *, command: int = NEW, seq: int = 0) -> Ev:
    return ev(
        type=EventType.CANCELED,
        quantity=quantity,
        reason=reason,
        command=command,
        seq=seq,
        **order.fields(),
    )


def replaced(order: Order, quantity: int, *, command: int = REPLACE, seq: int = 0) -> Ev:
    """REPLACED; ``order`` carries the new price."""
    return ev(
        type=EventType.REPLACED,
        quantity=quantity,
        leaves_qty=quantity,
        command=command,
        seq=seq,
        **order.fields(),
    )


def level(
    market: int,
    side: int,
    price: int,
    quantity: int,
    count: int,
    *,
    command: int = NEW,
    seq: int = 0,
) -> Ev:
    return ev(
        type=EventType.LEVEL,
        market=market,
        side=side,
        price=price,
        quantity=quantity,
        count=count,
        command=command,
        seq=seq,
    )


def market_event(
    market: int,
    state: int,
    *,
    tick: int = 100,
    min_size: int = 1,
    lot: int = 1,
    taker_fee_bps: int = 0,
    maker_fee_bps: int = 0,
    fee_base: int = FeeBase.NOTIONAL,
    outcome: int = 0,
    command: int = SET_STATE,
    seq: int = 0,
) -> Ev:
    """MARKET: tick in price, min size in quantity, lot in leaves_qty, fee rates in fee and
    maker_fee, fee base in count, the outcome of a RESOLVE in reason."""
    return ev(
        type=EventType.MARKET,
        market=market,
        price=tick,
        quantity=min_size,
        leaves_qty=lot,
        state=state,
        fee=taker_fee_bps,
        maker_fee=maker_fee_bps,
        count=fee_base,
        reason=outcome,
        command=command,
        seq=seq,
    )


def market_info(
    market: int,
    state: int,
    tick: int,
    min_size: int = 1,
    lot: int = 1,
    *,
    taker_fee_bps: int = 0,
    maker_fee_bps: int = 0,
    fee_base: int = FeeBase.NOTIONAL,
    outcome: int = 0,
    collateral: int = 0,
) -> MarketInfo:
    """What ``market()`` returns; the ledger fields default to those of a market without fees."""
    return MarketInfo(
        market,
        state,
        tick,
        min_size,
        lot,
        taker_fee_bps,
        maker_fee_bps,
        fee_base,
        outcome,
        collateral,
    )


def account_event(account: int, *, seq: int = 0) -> Ev:
    return ev(type=EventType.ACCOUNT, account=account, command=ADD_ACCOUNT, seq=seq)


def balance_event(
    account: int, change: int, free: int, reserved: int, *, command: int = DEPOSIT, seq: int = 0
) -> Ev:
    """BALANCE: the change (+deposit, -withdrawal), then free and reserved cash after."""
    return ev(
        type=EventType.BALANCE,
        account=account,
        quantity=change,
        leaves_qty=free,
        maker_leaves_qty=reserved,
        command=command,
        seq=seq,
    )


def position_event(
    account: int,
    market: int,
    pairs: int,
    yes_free: int,
    no_free: int,
    *,
    command: int = SPLIT,
    seq: int = 0,
) -> Ev:
    """POSITION: pairs split (or merged), then free YES and free NO after."""
    return ev(
        type=EventType.POSITION,
        account=account,
        market=market,
        quantity=pairs,
        leaves_qty=yes_free,
        maker_leaves_qty=no_free,
        command=command,
        seq=seq,
    )


def settlement_event(
    account: int, market: int, paid: int, yes: int, no: int, outcome: int, *, seq: int = 0
) -> Ev:
    """SETTLEMENT: cash paid, YES and NO shares settled, the outcome in reason."""
    return ev(
        type=EventType.SETTLEMENT,
        account=account,
        market=market,
        quantity=paid,
        leaves_qty=yes,
        maker_leaves_qty=no,
        reason=outcome,
        command=RESOLVE,
        seq=seq,
    )


# --------------------------------------------------------------------------- canonical state

MAGIC = b"MCSTATE\x04"
HEADER = "<8sIIIIIBqQqq"
ACCOUNT = "<Iqq"
MARKET = "<IBiqqhhBBqii"
LEVEL = "<iIq"
ORDER = "<QQIqqBBBB"
POSITION = "<Iqqqq"
COUNT = "<I"


@dataclasses.dataclass
class RestingOrder:
    order_id: int
    account: int
    leaves_qty: int
    intent: int
    client_order_id: int = 0
    expiry: int = 0
    tif: int = TimeInForce.GTC
    stp: int = 0
    flags: int = 0


@dataclasses.dataclass
class Level:
    price: int
    orders: list[RestingOrder]
    count: int | None = None  # None: the number of orders
    total: int | None = None  # None: the sum of their leaves


@dataclasses.dataclass
class PositionSnap:
    account: int
    yes_free: int = 0
    yes_reserved: int = 0
    no_free: int = 0
    no_reserved: int = 0


@dataclasses.dataclass
class MarketSnap:
    market: int
    state: int
    tick: int
    min_size: int = 1
    lot: int = 1
    bids: list[Level] = dataclasses.field(default_factory=list)  # best first
    asks: list[Level] = dataclasses.field(default_factory=list)  # best first
    taker_fee_bps: int = 0
    maker_fee_bps: int = 0
    fee_base: int = FeeBase.NOTIONAL
    outcome: int = 0
    collateral: int = 0
    positions: list[PositionSnap] = dataclasses.field(default_factory=list)  # by account
    min_price: int = 0
    max_price: int = 0


@dataclasses.dataclass
class AccountSnap:
    account: int
    free: int = 0
    reserved: int = 0


@dataclasses.dataclass
class EngineState:
    max_orders: int
    max_markets: int
    max_accounts: int
    max_levels: int
    now: int
    next_order_id: int
    accounts: list[int | AccountSnap]  # a bare id: no cash
    markets: list[MarketSnap]
    max_positions: int | None = None  # None: the default, max_orders + max_accounts
    ledger: int = 0
    net_deposits: int = 0
    fees: int = 0


def encode_state(state: EngineState) -> bytes:
    """The canonical state bytes of docs/matchcore.md §6, written independently of any engine."""
    max_positions = state.max_positions
    if max_positions is None:
        max_positions = state.max_orders + state.max_accounts
    out = [
        struct.pack(
            HEADER,
            MAGIC,
            state.max_orders,
            state.max_markets,
            state.max_accounts,
            state.max_levels,
            max_positions,
            state.ledger,
            state.now,
            state.next_order_id,
            state.net_deposits,
            state.fees,
        ),
        struct.pack(COUNT, len(state.accounts)),
    ]
    for a in state.accounts:
        a = a if isinstance(a, AccountSnap) else AccountSnap(a)
        out.append(struct.pack(ACCOUNT, a.account, a.free, a.reserved))
    out.append(struct.pack(COUNT, len(state.markets)))
    for m in state.markets:
        out.append(
            struct.pack(
                MARKET,
                m.market,
                m.state,
                m.tick,
                m.min_size,
                m.lot,
                m.taker_fee_bps,
                m.maker_fee_bps,
                m.fee_base,
                m.outcome,
                m.collateral,
                m.min_price,
                m.max_price,
            )
        )
        for levels in (m.bids, m.asks):
            out.append(struct.pack(COUNT, len(levels)))
            for lv in levels:
                count = len(lv.orders) if lv.count is None else lv.count
                total = sum(o.leaves_qty for o in lv.orders) if lv.total is None else lv.total
                out.append(struct.pack(LEVEL, lv.price, count, total))
                for o in lv.orders:
                    out.append(
                        struct.pack(
                            ORDER,
                            o.order_id,
                            o.client_order_id,
                            o.account,
                            o.leaves_qty,
                            o.expiry,
                            o.intent,
                            o.tif,
                            o.stp,
                            o.flags,
                        )
                    )
        out.append(struct.pack(COUNT, len(m.positions)))
        for p in m.positions:
            out.append(
                struct.pack(
                    POSITION, p.account, p.yes_free, p.yes_reserved, p.no_free, p.no_reserved
                )
            )
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.offset = data, 0

    def read(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self.data, self.offset)
        self.offset += struct.calcsize(fmt)
        return values


def decode_state(data: bytes) -> EngineState:
    """Parse canonical state bytes (§6) into an EngineState; the inverse of encode_state()."""
    r = _Reader(data)
    magic, mo, mm, ma, ml, mp, ledger, now, next_id, net, fees = r.read(HEADER)
    assert magic == MAGIC, magic
    accounts: list[int | AccountSnap] = [
        AccountSnap(*r.read(ACCOUNT)) for _ in range(r.read(COUNT)[0])
    ]
    markets = []
    for _ in range(r.read(COUNT)[0]):
        mid, st, tick, min_size, lot, taker, maker, base, outcome, collateral, low, high = r.read(
            MARKET
        )
        sides: list[list[Level]] = []
        for _side in range(2):
            levels = []
            for _ in range(r.read(COUNT)[0]):
                price, count, total = r.read(LEVEL)
                orders = []
                for _ in range(count):
                    oid, cid, acc, leaves, expiry, intent, tif, stp, flags = r.read(ORDER)
                    orders.append(
                        RestingOrder(oid, acc, leaves, intent, cid, expiry, tif, stp, flags)
                    )
                levels.append(Level(price, orders, count, total))
            sides.append(levels)
        positions = [PositionSnap(*r.read(POSITION)) for _ in range(r.read(COUNT)[0])]
        markets.append(
            MarketSnap(
                mid,
                st,
                tick,
                min_size,
                lot,
                sides[0],
                sides[1],
                taker,
                maker,
                base,
                outcome,
                collateral,
                positions,
                low,
                high,
            )
        )
    assert r.offset == len(data), "trailing bytes"
    return EngineState(mo, mm, ma, ml, now, next_id, accounts, markets, mp, ledger, net, fees)


# --------------------------------------------------------------------------- ledger audit


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def fee_base_and_divisor(base: int, intent: int, price: int, quantity: int) -> tuple[int, int]:
    """(B, D) of the fee table of §8 for one side trading ``quantity`` at ``price``."""
    token_price = price if intent in (Intent.BUY_YES, Intent.SELL_YES) else 10_000 - price
    if base == FeeBase.NOTIONAL:
        return token_price * quantity, 10_000
    if base == FeeBase.MIN:
        return min(price, 10_000 - price) * quantity, 10_000
    return price * (10_000 - price) * quantity, 10**8


def reservation_per_lot(market: MarketSnap, intent: int, limit: int) -> int:
    """R_lot of §8 for a buy by quantity at ``limit`` in ``market``."""
    token_price = limit if intent == Intent.BUY_YES else 10_000 - limit
    rate = max(market.taker_fee_bps, market.maker_fee_bps, 0)
    if market.fee_base == FeeBase.PQ_CENTS:
        rate *= 2  # a fee rounded to the cent is at most twice the exact fee
    b, d = fee_base_and_divisor(market.fee_base, intent, limit, market.lot)
    return token_price * market.lot + ceil_div(rate * b, d)


def audit_ledger(engine: Any) -> None:
    """Check the ledger rules of §8 on the decoded canonical state and the query methods.

    Written from the spec alone: conservation, no negative balance, YES == NO ==
    collateral / 10_000 per market, reserved cash == sum of R of the resting buys,
    reserved shares == the leaves of the resting sells, a position listed exactly when
    it holds shares or its account has a resting order there, at most max_positions.
    """
    data = engine.canonical_state()
    state = decode_state(data)
    assert encode_state(state) == data
    accounts = [a for a in state.accounts if isinstance(a, AccountSnap)]
    ids = [a.account for a in accounts]
    assert ids == sorted(set(ids))
    markets = state.markets
    if not state.ledger:
        assert (state.net_deposits, state.fees) == (0, 0)
        assert all(a.free == a.reserved == 0 for a in accounts)
        assert all(m.collateral == 0 and not m.positions for m in markets)
        return
    cash = {a.account: a for a in accounts}
    assert all(a.free >= 0 and a.reserved >= 0 for a in accounts)
    total_cash = sum(a.free + a.reserved for a in accounts)
    total_collateral = sum(m.collateral for m in markets)
    assert total_cash + total_collateral + state.fees == state.net_deposits, (
        "conservation",
        total_cash,
        total_collateral,
        state.fees,
        state.net_deposits,
    )
    assert 0 <= state.net_deposits <= 2**62
    needed_cash = dict.fromkeys(cash, 0)
    position_count = 0
    for m in markets:
        needed_shares: dict[int, list[int]] = {}
        for lv in m.bids + m.asks:
            for o in lv.orders:
                shares = needed_shares.setdefault(o.account, [0, 0])
                if o.intent in (Intent.BUY_YES, Intent.BUY_NO):
                    assert o.leaves_qty % m.lot == 0
                    lots = o.leaves_qty // m.lot
                    needed_cash[o.account] += lots * reservation_per_lot(m, o.intent, lv.price)
                elif o.intent == Intent.SELL_YES:
                    shares[0] += o.leaves_qty
                else:
                    shares[1] += o.leaves_qty
        accounts_listed = [p.account for p in m.positions]
        assert accounts_listed == sorted(set(accounts_listed)), "positions by ascending account"
        position_count += len(m.positions)
        yes = no = 0
        for p in m.positions:
            assert p.account in cash
            assert min(p.yes_free, p.yes_reserved, p.no_free, p.no_reserved) >= 0
            assert [p.yes_reserved, p.no_reserved] == needed_shares.get(p.account, [0, 0]), (
                "reserved shares",
                m.market,
                p,
            )
            holds = p.yes_free + p.yes_reserved + p.no_free + p.no_reserved > 0
            assert holds or p.account in needed_shares, ("empty position listed", m.market, p)
            yes += p.yes_free + p.yes_reserved
            no += p.no_free + p.no_reserved
            got = engine.position(p.account, m.market)
            assert got == Position(p.yes_free, p.yes_reserved, p.no_free, p.no_reserved)
        assert set(needed_shares) <= set(accounts_listed), ("resting order without position", m)
        if m.state == MarketState.RESOLVED:
            assert m.collateral == 0 and not m.positions and not needed_shares
        assert m.collateral == 10_000 * yes and yes == no, ("shares", m.market, yes, no)
        info = engine.market(m.market)
        assert (info.taker_fee_bps, info.maker_fee_bps, info.fee_base) == (
            m.taker_fee_bps,
            m.maker_fee_bps,
            m.fee_base,
        )
        assert (info.outcome, info.collateral) == (m.outcome, m.collateral)
        for account in cash:
            if account not in accounts_listed:
                assert engine.position(account, m.market) == Position(0, 0, 0, 0)
    assert position_count <= state.max_positions
    for account, snap in cash.items():
        assert snap.reserved == needed_cash[account], ("reserved cash", account, snap)
        assert tuple(engine.balance(account)) == (snap.free, snap.reserved)
    totals = engine.totals()
    assert totals == Totals(state.net_deposits, state.fees, total_collateral)
    balances = [engine.balance(account) for account in cash]
    assert sum(b.free + b.reserved for b in balances) + totals.collateral + totals.fees == (
        totals.net_deposits
    ), "conservation through balance() and totals()"
