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
    MarketState,
    TimeInForce,
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
    }
)


class Checked:
    """An engine wrapper that runs ``validate()`` after every command.

    Per-call methods are validated after each call; ``process()`` runs its commands
    one at a time (the events are the same as for the whole batch) and validates
    between them. ``raw`` is the wrapped engine.
    """

    def __init__(self, engine: Any) -> None:
        object.__setattr__(self, "raw", engine)
        engine.validate()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.raw, name)
        if name not in MUTATORS:
            return attr

        def checked(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.raw.validate()
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
            self.raw.validate()
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
) -> Checked:
    """A small engine with some accounts and OPEN markets, its event buffer drained."""
    raw = engine_cls(
        max_orders=max_orders,
        max_markets=max_markets,
        max_accounts=max_accounts,
        max_levels=max_levels,
    )
    eng = Checked(raw)
    for account in accounts:
        assert eng.add_account(account) == 0
    for market in markets:
        assert eng.create_market(market, tick, min_size, lot) == 0
        if open_markets:
            assert eng.set_market_state(market, MarketState.OPEN) == 0
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
    command: int = NEW,
    seq: int = 0,
) -> Ev:
    """A TRADE at the maker's (resting) price."""
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
    command: int = SET_STATE,
    seq: int = 0,
) -> Ev:
    return ev(
        type=EventType.MARKET,
        market=market,
        price=tick,
        quantity=min_size,
        leaves_qty=lot,
        state=state,
        command=command,
        seq=seq,
    )


def account_event(account: int, *, seq: int = 0) -> Ev:
    return ev(type=EventType.ACCOUNT, account=account, command=ADD_ACCOUNT, seq=seq)


# --------------------------------------------------------------------------- canonical state

MAGIC = b"MCSTATE\x01"


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
class MarketSnap:
    market: int
    state: int
    tick: int
    min_size: int = 1
    lot: int = 1
    bids: list[Level] = dataclasses.field(default_factory=list)  # best first
    asks: list[Level] = dataclasses.field(default_factory=list)  # best first


@dataclasses.dataclass
class EngineState:
    max_orders: int
    max_markets: int
    max_accounts: int
    max_levels: int
    now: int
    next_order_id: int
    accounts: list[int]
    markets: list[MarketSnap]


def encode_state(state: EngineState) -> bytes:
    """The canonical state bytes of docs/matchcore.md §6, written independently of any engine."""
    out = [
        struct.pack(
            "<8sIIIIqQ",
            MAGIC,
            state.max_orders,
            state.max_markets,
            state.max_accounts,
            state.max_levels,
            state.now,
            state.next_order_id,
        ),
        struct.pack("<I", len(state.accounts)),
    ]
    out += [struct.pack("<I", a) for a in state.accounts]
    out.append(struct.pack("<I", len(state.markets)))
    for m in state.markets:
        out.append(struct.pack("<IBiqq", m.market, m.state, m.tick, m.min_size, m.lot))
        for levels in (m.bids, m.asks):
            out.append(struct.pack("<I", len(levels)))
            for lv in levels:
                count = len(lv.orders) if lv.count is None else lv.count
                total = sum(o.leaves_qty for o in lv.orders) if lv.total is None else lv.total
                out.append(struct.pack("<iIq", lv.price, count, total))
                for o in lv.orders:
                    out.append(
                        struct.pack(
                            "<QQIqqBBBB",
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
    return b"".join(out)
