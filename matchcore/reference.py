"""Pure-Python reference model of the matchcore engine: the test oracle.

This module is a second, independent implementation of the contract in
``docs/matchcore.md``. It has exactly the Python API of the C++ core
(``matchcore.Engine``, §7), produces the same events in the same order with the
same fields (§3, §4, §8) and the same canonical state bytes (§6), so the fast
core can be compared to it event by event and digest by digest on long random
command streams.

It is written to be obviously correct rather than fast, with plain Python data:

- a market holds two book sides; a side is a dict ``price -> _Level`` plus a
  sorted list of the prices in use (``bisect``); a level is a FIFO ``deque`` of
  orders and its total quantity;
- ``_orders`` maps the order id of every resting order to the order, and
  ``_slots`` the slot each one holds (``order_id % max_orders``) to its id: an
  order that can rest takes the next id whose slot is free (§1);
- ``_by_client`` maps ``(account, client_order_id)`` to the order id of the
  resting order that has it;
- ``_expiry_heap`` is a heap of ``(expiry, order_id)`` of GTD orders; entries of
  orders that have left the book are skipped when they come out (ids are never
  reused and an order's expiry never changes, so such an entry is simply stale).

The ledger (§8; only with ``ledger=True``):

- ``_accounts`` maps each added account to its ``_Account`` (free and reserved
  cash, micro-dollars);
- each market keeps its positions, ``account -> _Position`` (free and reserved
  YES and NO shares, and ``orders``: the account's live orders in the market,
  the resting ones plus a taker while it is being run), and its collateral; a
  position exists exactly while it holds a share or has an order, and
  ``_position_count`` counts them against ``max_positions``;
- a buy order carries ``lot_reserve`` (``R_lot``, the cash it reserves per lot
  of its remaining quantity) and a buy by cash its ``fee_reserve``; what any
  order reserves is ``_reservation()`` of it, so an order moves exactly that
  between free and reserved when it enters, is replaced, trades or leaves;
- ``_net_deposits`` and ``_fees`` are the engine-wide totals of §8.

Every command, from ``process()`` or from a per-call method, goes through
``_run()``: the time step and the expiry, then one handler per command type that
makes its checks in the order of the contract and emits events as tuples in the
field order of ``EVENT_DTYPE``. Integers only; no floats anywhere.
"""

from __future__ import annotations

import functools
import hashlib
import heapq
import inspect
import operator
import struct
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple, TypeVar, cast

import numpy as np

from .codes import (
    ALL_MARKETS,
    DEFAULT_MAX_PENDING_EVENTS,
    FEE_BPS_LIMIT,
    MAX_ACCOUNTS,
    MAX_CASH,
    MAX_LEVELS,
    MAX_MARKETS,
    MAX_ORDERS,
    MAX_PENDING_EVENTS,
    MAX_POSITIONS,
    MAX_QUANTITY,
    MAX_TOTAL_CASH,
    PRICE_SCALE,
    TICKS,
    CancelReason,
    CommandType,
    EventType,
    FeeBase,
    Intent,
    MarketState,
    MatchType,
    OrderFlags,
    Outcome,
    Reject,
    Side,
    Stp,
    TimeInForce,
)
from .errors import InvariantError
from .records import (
    BOOK_LEVEL_DTYPE,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    Balance,
    MarketInfo,
    OrderInfo,
    Position,
    Totals,
)

__all__ = ["Engine"]

# Plain-int copies of the codes used on the hot path (IntEnum attribute access
# is slow); each is the value of the enum member it is named after.
_BID, _ASK = int(Side.BID), int(Side.ASK)
_BUY_YES, _SELL_YES = int(Intent.BUY_YES), int(Intent.SELL_YES)
_BUY_NO, _SELL_NO = int(Intent.BUY_NO), int(Intent.SELL_NO)
_GTC, _GTD = int(TimeInForce.GTC), int(TimeInForce.GTD)
_IOC, _FOK = int(TimeInForce.IOC), int(TimeInForce.FOK)
_REJECT_AGGRESSOR = int(Stp.REJECT_AGGRESSOR)
_CANCEL_RESTING = int(Stp.CANCEL_RESTING)
_CANCEL_BOTH = int(Stp.CANCEL_BOTH)
_CANCEL_NEWEST = int(Stp.CANCEL_NEWEST)
_CANCEL_OLDEST = int(Stp.CANCEL_OLDEST)
_REMOVE_BOTH = int(Stp.REMOVE_BOTH)
_LAST_STP = int(max(Stp))
_POST_ONLY = int(OrderFlags.POST_ONLY)
_MARKET_FLAG = int(OrderFlags.MARKET)
_BY_CASH = int(OrderFlags.BY_CASH)
_SLIPPAGE = int(OrderFlags.SLIPPAGE)
_ALL_FLAGS = _POST_ONLY | _MARKET_FLAG | _BY_CASH | _SLIPPAGE

_PRE_OPEN, _OPEN = int(MarketState.PRE_OPEN), int(MarketState.OPEN)
_SUSPENDED, _HALTED = int(MarketState.SUSPENDED), int(MarketState.HALTED)
_CLOSED, _EXPIRED_STATE = int(MarketState.CLOSED), int(MarketState.EXPIRED)
_RESOLVED = int(MarketState.RESOLVED)
_HOLDS_ORDERS = (_PRE_OPEN, _OPEN, _SUSPENDED, _HALTED)  # states in which orders may rest

_EV_ACCEPTED = int(EventType.ACCEPTED)
_EV_REJECTED = int(EventType.REJECTED)
_EV_TRADE = int(EventType.TRADE)
_EV_CANCELED = int(EventType.CANCELED)
_EV_REPLACED = int(EventType.REPLACED)
_EV_LEVEL = int(EventType.LEVEL)
_EV_MARKET = int(EventType.MARKET)
_EV_ACCOUNT = int(EventType.ACCOUNT)
_EV_BALANCE = int(EventType.BALANCE)
_EV_POSITION = int(EventType.POSITION)
_EV_SETTLEMENT = int(EventType.SETTLEMENT)

_USER = int(CancelReason.USER)
_UNFILLED = int(CancelReason.UNFILLED)
_SELF_TRADE = int(CancelReason.SELF_TRADE)
_EXPIRED = int(CancelReason.EXPIRED)
_MARKET_CLOSED = int(CancelReason.MARKET_CLOSED)
_TICK_CHANGE = int(CancelReason.TICK_CHANGE)

_CMD_NEW_ORDER = int(CommandType.NEW_ORDER)
_CMD_CANCEL = int(CommandType.CANCEL)
_CMD_CANCEL_CLIENT = int(CommandType.CANCEL_CLIENT)
_CMD_CANCEL_ALL = int(CommandType.CANCEL_ALL)
_CMD_REPLACE = int(CommandType.REPLACE)
_CMD_ADVANCE_TIME = int(CommandType.ADVANCE_TIME)
_CMD_CREATE_MARKET = int(CommandType.CREATE_MARKET)
_CMD_SET_MARKET_STATE = int(CommandType.SET_MARKET_STATE)
_CMD_SET_TICK = int(CommandType.SET_TICK)
_CMD_ADD_ACCOUNT = int(CommandType.ADD_ACCOUNT)
_CMD_DEPOSIT = int(CommandType.DEPOSIT)
_CMD_WITHDRAW = int(CommandType.WITHDRAW)
_CMD_SPLIT = int(CommandType.SPLIT)
_CMD_MERGE = int(CommandType.MERGE)
_CMD_RESOLVE = int(CommandType.RESOLVE)

_COMPLEMENTARY = int(MatchType.COMPLEMENTARY)
_MINT = int(MatchType.MINT)
_MERGE = int(MatchType.MERGE)

_MATCH_TYPE = {
    # (bid intent, ask intent) -> match type (§4, the sweep)
    (_BUY_YES, _SELL_YES): _COMPLEMENTARY,
    (_SELL_NO, _BUY_NO): _COMPLEMENTARY,
    (_BUY_YES, _BUY_NO): _MINT,
    (_SELL_NO, _SELL_YES): _MERGE,
}

_SIDE_OF_INTENT = {_BUY_YES: _BID, _SELL_NO: _BID, _SELL_YES: _ASK, _BUY_NO: _ASK}

_ALLOWED_TRANSITIONS = frozenset(
    {(_PRE_OPEN, _OPEN), (_OPEN, _SUSPENDED), (_OPEN, _HALTED), (_SUSPENDED, _OPEN)}
    | {(_SUSPENDED, _HALTED), (_HALTED, _OPEN), (_HALTED, _SUSPENDED)}
    | {(live, end) for live in _HOLDS_ORDERS for end in (_CLOSED, _EXPIRED_STATE)}
)

_NOTIONAL, _MIN, _PQ = int(FeeBase.NOTIONAL), int(FeeBase.MIN), int(FeeBase.PQ)
_PQ_CENTS = int(FeeBase.PQ_CENTS)
_CENT = 10_000
"""Micro-dollars per cent, what ``PQ_CENTS`` rounds each fee to."""
_NO_OUTCOME = int(Outcome.NONE)
_YES, _NO, _HALF = int(Outcome.YES), int(Outcome.NO), int(Outcome.HALF)

_PAIR_CASH = PRICE_SCALE
"""Collateral of one YES+NO pair of one quantity unit (0.01 share): $0.01 = 10_000 micro-dollars."""


def _levels_per_side(tick: int) -> int:
    """``L(tick)``: the number of price levels of one side (§1)."""
    return PRICE_SCALE // tick - 1


def _bounds_ok(min_price: int, max_price: int) -> bool:
    """Price bounds a market can have (§4, CREATE_MARKET): within 0..10_000, 0 for none."""
    return (
        0 <= min_price <= PRICE_SCALE
        and 0 <= max_price <= PRICE_SCALE
        and (max_price == 0 or min_price <= max_price)
    )


def _is_buy(intent: int) -> bool:
    return intent in (_BUY_YES, _BUY_NO)


def _token_price(intent: int, price: int) -> int:
    """The price of the token an intent trades at YES price ``price``, per quantity unit.

    ``p`` for YES (``BUY_YES``, ``SELL_YES``), ``10_000 - p`` for NO; it is
    also the cash per quantity unit (price units x 0.01 share = micro-dollars).
    """
    return price if intent in (_BUY_YES, _SELL_YES) else PRICE_SCALE - price


def _fee_base(fee_base: int, intent: int, price: int, qty: int) -> tuple[int, int]:
    """``(B, D)`` of a side trading ``qty`` at ``price`` (§8, Fees): the fee is ``bps * B / D``."""
    if fee_base == _NOTIONAL:
        return _token_price(intent, price) * qty, PRICE_SCALE
    if fee_base == _MIN:
        return min(price, PRICE_SCALE - price) * qty, PRICE_SCALE
    return price * (PRICE_SCALE - price) * qty, PRICE_SCALE * PRICE_SCALE  # PQ, PQ_CENTS


def _cents(numerator: int) -> int:
    """``numerator / (10**8 * _CENT)`` rounded half to even: a PQ fee numerator in cents."""
    cents, rest = divmod(numerator, PRICE_SCALE * PRICE_SCALE * _CENT)
    twice = 2 * rest
    if twice > PRICE_SCALE * PRICE_SCALE * _CENT or (
        twice == PRICE_SCALE * PRICE_SCALE * _CENT and cents % 2
    ):
        cents += 1
    return cents


def _fee(bps: int, fee_base: int, intent: int, price: int, qty: int) -> int:
    """The fee of one side of a fill, in cash: up when charged, toward zero for a rebate;
    on ``PQ_CENTS`` to the cent, half to even, for either sign (before a taker's cap)."""
    if bps == 0:
        return 0
    base, divisor = _fee_base(fee_base, intent, price, qty)
    if fee_base == _PQ_CENTS:
        cents = _cents(abs(bps) * base) * _CENT
        return cents if bps > 0 else -cents
    if bps > 0:
        return (bps * base + divisor - 1) // divisor  # ceil(bps * B / D)
    return -(-bps * base // divisor)  # a rebate: -floor(|bps| * B / D), toward zero


def _fee_ok(taker_fee_bps: int, maker_fee_bps: int, fee_base: int) -> bool:
    """The fee checks of CREATE_MARKET (§4, Markets and accounts)."""
    return (
        0 <= taker_fee_bps <= FEE_BPS_LIMIT
        and -FEE_BPS_LIMIT <= maker_fee_bps <= FEE_BPS_LIMIT
        and maker_fee_bps >= -taker_fee_bps
        and 0 <= fee_base <= _PQ_CENTS
    )


# ---------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------


class _Command(NamedTuple):
    """One command, fields in the order of ``COMMAND_DTYPE`` (``pad`` is ``_pad``)."""

    seq: int = 0
    time: int = 0
    order_id: int = 0
    client_order_id: int = 0
    quantity: int = 0
    expiry: int = 0
    aux: int = 0
    account: int = 0
    market: int = 0
    price: int = 0
    type: int = 0
    intent: int = 0
    tif: int = 0
    stp: int = 0
    flags: int = 0
    arg: int = 0
    taker_fee_bps: int = 0
    maker_fee_bps: int = 0
    fee_base: int = 0
    pad: int = 0


assert len(_Command._fields) == len(COMMAND_DTYPE.names)

# (min, max) of every command field, from its numpy type, to check per-call
# arguments the way a conversion to the C field type would.
_COMMAND_FIELD_RANGES = tuple(
    (int(info.min), int(info.max))
    for info in (np.iinfo(COMMAND_DTYPE.fields[name][0]) for name in COMMAND_DTYPE.names)
)

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _integer_arguments(method: _Method) -> _Method:
    """Refuse anything but an int or a numpy integer for the method's ``int`` parameters.

    ``TypeError`` naming the parameter, as the core does (docs/matchcore.md §7): a
    float, ``Decimal`` or numpy float would be truncated by the conversion to a
    command field, and a bool is a flag, never an id, a price or an amount.
    """
    parameters = list(inspect.signature(method).parameters.values())[1:]  # after self
    checked = frozenset(p.name for p in parameters if p.annotation == "int")
    positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]

    @functools.wraps(method)
    def checked_method(self: Any, *args: Any, **kwargs: Any) -> Any:
        for name, value in (*zip(positional, args, strict=False), *kwargs.items()):
            if name in checked and (
                isinstance(value, bool) or not isinstance(value, int | np.integer)
            ):
                raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
        return method(self, *args, **kwargs)

    return cast(_Method, checked_method)


# ---------------------------------------------------------------------------
# Book structures
# ---------------------------------------------------------------------------


class _Order:
    """An order: resting in a level, or the taker of a sweep.

    ``leaves`` is the remaining quantity, or the remaining budget in cash for a
    buy by cash (which never rests). With the ledger, ``lot_reserve`` is the
    cash a buy by quantity reserves per lot of ``leaves`` (``R_lot`` at its
    limit price, §8) and ``fee_reserve`` what is left of a buy by cash's fee
    reserve; both are 0 otherwise.
    """

    __slots__ = (
        "account",
        "client_order_id",
        "expiry",
        "fee_charged",
        "fee_exact",
        "fee_reserve",
        "flags",
        "intent",
        "leaves",
        "lot_reserve",
        "market",
        "order_id",
        "price",
        "side",
        "stp",
        "tif",
    )

    def __init__(
        self,
        order_id: int,
        account: int,
        market: int,
        intent: int,
        price: int,
        leaves: int,
        tif: int,
        expiry: int,
        client_order_id: int,
        stp: int,
        flags: int,
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.market = market
        self.intent = intent
        self.side = _SIDE_OF_INTENT[intent]
        self.price = price
        self.leaves = leaves
        self.tif = tif
        self.expiry = expiry
        self.client_order_id = client_order_id
        self.stp = stp
        self.flags = flags
        self.lot_reserve = 0
        self.fee_reserve = 0
        # Its sweep's taker fees so far, for the PQ_CENTS cap: the summed exact fee
        # numerators and the cents charged (reset when a sweep starts).
        self.fee_exact = 0
        self.fee_charged = 0

    def copy(self) -> _Order:
        """A detached copy, for a sweep simulated without effect (the FOK check)."""
        twin = _Order(
            self.order_id, self.account, self.market, self.intent, self.price, self.leaves,
            self.tif, self.expiry, self.client_order_id, self.stp, self.flags,
        )  # fmt: skip
        twin.lot_reserve = self.lot_reserve
        twin.fee_reserve = self.fee_reserve
        twin.fee_exact = self.fee_exact
        twin.fee_charged = self.fee_charged
        return twin


class _Level:
    """One price level: its orders in time priority and their total quantity."""

    __slots__ = ("orders", "price", "total")

    def __init__(self, price: int) -> None:
        self.price = price
        self.orders: deque[_Order] = deque()
        self.total = 0


class _BookSide:
    """The non-empty levels of one side: ``price -> _Level`` and the sorted prices."""

    __slots__ = ("levels", "prices", "side")

    def __init__(self, side: int) -> None:
        self.side = side
        self.levels: dict[int, _Level] = {}
        self.prices: list[int] = []  # ascending, exactly the keys of ``levels``

    def best_price(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.side == _BID else self.prices[0]

    def best_level(self) -> _Level | None:
        price = self.best_price()
        return None if price is None else self.levels[price]

    def prices_best_first(self) -> list[int]:
        """A copy of the prices, best first (bids descending, asks ascending)."""
        return self.prices[::-1] if self.side == _BID else self.prices[:]

    def levels_best_first(self) -> Iterator[_Level]:
        for price in self.prices_best_first():
            yield self.levels[price]

    def level_at(self, price: int) -> _Level:
        """The level at ``price``, created (empty) if there is none."""
        level = self.levels.get(price)
        if level is None:
            level = self.levels[price] = _Level(price)
            insort(self.prices, price)
        return level

    def drop_level(self, price: int) -> None:
        """Forget the (now empty) level at ``price``."""
        del self.levels[price]
        del self.prices[bisect_left(self.prices, price)]


class _Account:
    """An account's cash, in micro-dollars."""

    __slots__ = ("free", "reserved")

    def __init__(self, free: int = 0, reserved: int = 0) -> None:
        self.free = free
        self.reserved = reserved


class _Position:
    """An account's shares in one market (quantity units) and its live orders there.

    ``orders`` counts the account's resting orders in the market, plus the
    taker while a new order of the account is being run; the position exists
    while it holds a share or ``orders > 0`` (§8, State).
    """

    __slots__ = ("account", "no_free", "no_reserved", "orders", "yes_free", "yes_reserved")

    def __init__(
        self,
        account: int,
        yes_free: int = 0,
        yes_reserved: int = 0,
        no_free: int = 0,
        no_reserved: int = 0,
    ) -> None:
        self.account = account
        self.yes_free = yes_free
        self.yes_reserved = yes_reserved
        self.no_free = no_free
        self.no_reserved = no_reserved
        self.orders = 0

    def holds_shares(self) -> bool:
        return bool(self.yes_free or self.yes_reserved or self.no_free or self.no_reserved)


class _Market:
    __slots__ = (
        "bound_factor",
        "collateral",
        "fee_base",
        "lot",
        "maker_fee_bps",
        "market",
        "max_price",
        "min_price",
        "min_size",
        "outcome",
        "positions",
        "reserve_fee_bps",
        "sides",
        "state",
        "taker_fee_bps",
        "tick",
    )

    def __init__(
        self,
        market: int,
        tick: int,
        min_size: int,
        lot: int,
        taker_fee_bps: int = 0,
        maker_fee_bps: int = 0,
        fee_base: int = _NOTIONAL,
        min_price: int = 0,
        max_price: int = 0,
    ) -> None:
        self.market = market
        self.state = _PRE_OPEN
        self.min_price = min_price  # the price bounds as created, 0: none
        self.max_price = max_price
        self.tick = tick
        self.min_size = min_size
        self.lot = lot
        self.taker_fee_bps = taker_fee_bps
        self.maker_fee_bps = maker_fee_bps
        self.fee_base = fee_base
        # f of §8: the highest rate a buy could pay, the one its reservation covers.
        self.reserve_fee_bps = max(taker_fee_bps, maker_fee_bps, 0)
        # A fee rounded to the cent is at most twice the exact fee: what PQ_CENTS reserves.
        self.bound_factor = 2 if fee_base == _PQ_CENTS else 1
        self.outcome = _NO_OUTCOME
        self.collateral = 0  # micro-dollars, _PAIR_CASH per outstanding pair
        self.sides = (_BookSide(_BID), _BookSide(_ASK))
        self.positions: dict[int, _Position] = {}  # account -> position

    def price_ok(self, price: int) -> bool:
        """On the tick grid, within ``tick <= p <= 10_000 - tick`` and the bounds (§1)."""
        tick = self.tick
        if price % tick or not tick <= price <= PRICE_SCALE - tick:
            return False
        return price >= self.min_price and (self.max_price == 0 or price <= self.max_price)

    def lot_reserve(self, intent: int, price: int) -> int:
        """``R_lot`` of a buy at limit ``price`` (§8): one lot's price and a bound of its
        highest fee, ``ceil(x * f * B_lot / D)``."""
        lot = self.lot
        base, divisor = _fee_base(self.fee_base, intent, price, lot)
        fee = -(-self.bound_factor * self.reserve_fee_bps * base // divisor)
        return _token_price(intent, price) * lot + fee

    def cash_fee_reserve(self, budget: int) -> int:
        """``F`` of a buy by cash with ``budget`` (§8): ``ceil(x * taker_fee_bps * B / 10_000)``."""
        rate = self.bound_factor * self.taker_fee_bps
        return (rate * budget + PRICE_SCALE - 1) // PRICE_SCALE


# ---------------------------------------------------------------------------
# Canonical state formats (§6)
# ---------------------------------------------------------------------------

_MAGIC = b"MCSTATE\x04"
_MAGIC_V3 = b"MCSTATE\x03"  # markets without price bounds: read as bounds 0, 0
_MAGIC_V2 = b"MCSTATE\x02"  # order ids 1, 2, 3, ... whatever the slots: refused
_HEADER = struct.Struct("<8sIIIIIBqQqq")
_U32 = struct.Struct("<I")
_ACCOUNT_REC = struct.Struct("<Iqq")
_MARKET_REC = struct.Struct("<IBiqqhhBBqii")
_MARKET_REC_V3 = struct.Struct("<IBiqqhhBBq")
_LEVEL_REC = struct.Struct("<iIq")
_ORDER_REC = struct.Struct("<QQIqqBBBB")
_POSITION_REC = struct.Struct("<Iqqqq")


class _Reader:
    """Reads ``struct`` records from a snapshot; ``ValueError`` when it runs out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, fmt: struct.Struct) -> tuple[Any, ...]:
        if self.pos + fmt.size > len(self.data):
            raise ValueError(f"snapshot truncated at byte {self.pos} (needs {fmt.size} more)")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return values


# ---------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------


class Engine:
    """The reference engine; same API, events and state bytes as ``matchcore.Engine``."""

    def __init__(
        self,
        max_orders: int = 65536,
        max_markets: int = 64,
        max_accounts: int = 4096,
        max_levels: int | None = None,
        max_positions: int | None = None,
        ledger: bool = True,
        max_pending_events: int = DEFAULT_MAX_PENDING_EVENTS,
    ) -> None:
        # §5: each capacity an int in [1, MAX_*], else ValueError. The defaults
        # (max_levels: every market at tick $0.001; max_positions: max_orders +
        # max_accounts) are capped at their MAX_*, as the core does.
        max_orders = _capacity_arg("max_orders", max_orders, MAX_ORDERS)
        max_markets = _capacity_arg("max_markets", max_markets, MAX_MARKETS)
        max_accounts = _capacity_arg("max_accounts", max_accounts, MAX_ACCOUNTS)
        if max_levels is None:
            max_levels = min(max_markets * 2 * _levels_per_side(10), MAX_LEVELS)
        max_levels = _capacity_arg("max_levels", max_levels, MAX_LEVELS)
        if max_positions is None:
            max_positions = min(max_orders + max_accounts, MAX_POSITIONS)
        max_positions = _capacity_arg("max_positions", max_positions, MAX_POSITIONS)
        self._max_orders = max_orders
        self._max_markets = max_markets
        self._max_accounts = max_accounts
        self._max_levels = max_levels
        self._max_positions = max_positions
        self._ledger = bool(ledger)
        if (
            not isinstance(max_pending_events, int)
            or not 0 <= max_pending_events <= MAX_PENDING_EVENTS
        ):
            raise ValueError(
                f"max_pending_events must be an int in [0, {MAX_PENDING_EVENTS}], "
                f"not {max_pending_events!r}"
            )
        self._max_pending_events = max_pending_events

        self._now = 0
        self._next_order_id = 1
        self._accounts: dict[int, _Account] = {}
        self._markets: dict[int, _Market] = {}
        self._levels_used = 0  # sum over created markets of 2 * L(tick)
        self._orders: dict[int, _Order] = {}  # resting orders by order id
        self._slots: dict[int, int] = {}  # order_id % max_orders -> id, of resting orders
        self._by_client: dict[tuple[int, int], int] = {}  # (account, client id) -> order id
        self._expiry_heap: list[tuple[int, int]] = []  # (expiry, order id), may hold stale entries
        self._position_count = 0  # positions held, over all markets
        self._net_deposits = 0  # deposits - withdrawals, micro-dollars
        self._fees = 0  # fees charged - rebates paid, micro-dollars

        # Per-call API event buffers (process() does not touch them): at most
        # max_pending_events pending, the oldest dropped first, the last call's never.
        self._last_events: list[tuple[int, ...]] = []
        self._buffered_events: deque[tuple[int, ...]] = deque()
        self._dropped_events = 0

        # The command being run: where its events go, and the fields every event copies.
        self._out: list[tuple[int, ...]] = []
        self._seq = 0
        self._command_type = 0

    # ------------------------------------------------------------------
    # Running commands
    # ------------------------------------------------------------------

    def process(self, commands: np.ndarray) -> np.ndarray:
        """Run a batch of ``COMMAND_DTYPE`` records; return their events."""
        _check_commands(commands)
        out: list[tuple[int, ...]] = []
        for row in commands.tolist():
            self._run(_Command._make(row), out)
        return _event_array(out)

    def process_into(self, commands: np.ndarray, out: np.ndarray) -> np.ndarray:
        """As ``process()``; the events are copied into ``out`` and returned as
        ``out[:n]`` when they fit, else returned as a new array (the core's rules
        for ``out``, docs/matchcore.md §7)."""
        _check_commands(commands)
        _check_out(out, commands)
        events = self.process(commands)
        if len(events) > len(out):
            return events
        view = out[: len(events)]
        view[...] = events
        return view

    def _run(self, cmd: _Command, out: list[tuple[int, ...]]) -> int:
        """Run one command, appending its events to ``out``; the per-call result."""
        self._out = out
        self._seq = cmd.seq
        self._command_type = cmd.type
        expired = self._advance_time(cmd.time)
        if cmd.type == _CMD_ADVANCE_TIME:
            return expired
        handler = _HANDLERS.get(cmd.type)
        if handler is None:
            return self._reject(cmd, Reject.INVALID_COMMAND)
        return handler(self, cmd)

    def _call(self, **fields: int) -> int:
        """Per-call API: build the command (seq 0), run it, buffer its events."""
        values = []
        for name, (low, high) in zip(_Command._fields, _COMMAND_FIELD_RANGES, strict=True):
            value = operator.index(fields.pop(name, 0))
            if not low <= value <= high:
                raise OverflowError(f"{name}={value} is out of range [{low}, {high}]")
            values.append(value)
        if fields:
            raise TypeError(f"unknown command fields {sorted(fields)}")
        events: list[tuple[int, ...]] = []
        result = self._run(_Command._make(values), events)
        self._last_events = events
        buffered = self._buffered_events
        buffered.extend(events)
        keep = max(self._max_pending_events, len(events))
        while len(buffered) > keep:
            buffered.popleft()
            self._dropped_events += 1
        return result

    # ------------------------------------------------------------------
    # Time and expiry (§4, steps 1 and 2 of every command)
    # ------------------------------------------------------------------

    def _advance_time(self, time: int) -> int:
        """``now = max(now, time)``, then expire GTD orders; the number expired."""
        if time > self._now:
            self._now = time
        heap = self._expiry_heap
        expired = 0
        while heap and heap[0][0] <= self._now:
            _, order_id = heapq.heappop(heap)
            order = self._orders.get(order_id)
            if order is None:  # stale entry: the order already left the book
                continue
            self._cancel_resting(order, _EXPIRED)
            expired += 1
        return expired

    # ------------------------------------------------------------------
    # Events (tuples in EVENT_DTYPE field order:
    #  seq, order_id, maker_order_id, quantity, leaves_qty, maker_leaves_qty,
    #  fee, maker_fee, account, maker_account, market, price, count, type,
    #  reason, intent, maker_intent, match_type, side, tif, flags, command,
    #  state, _pad)
    # ------------------------------------------------------------------

    def _reject(self, cmd: _Command, reason: int) -> int:
        order_id = cmd.order_id if cmd.type in (_CMD_CANCEL, _CMD_REPLACE) else 0
        self._out.append(
            (self._seq, order_id, 0, 0, 0, 0, 0, 0, cmd.account, 0, cmd.market, 0, 0,
             _EV_REJECTED, int(reason), 0, 0, 0, 0, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip
        return -int(reason)

    def _emit_accepted(self, o: _Order) -> None:
        self._out.append(
            (self._seq, o.order_id, 0, o.leaves, o.leaves, 0, 0, 0, o.account, 0, o.market,
             o.price, 0, _EV_ACCEPTED, 0, o.intent, 0, 0, o.side, o.tif, o.flags,
             self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_trade(
        self,
        taker: _Order,
        maker: _Order,
        price: int,
        qty: int,
        match_type: int,
        fee: int,
        maker_fee: int,
    ) -> None:
        self._out.append(
            (self._seq, taker.order_id, maker.order_id, qty, taker.leaves, maker.leaves, fee,
             maker_fee, taker.account, maker.account, taker.market, price, 0, _EV_TRADE, 0,
             taker.intent, maker.intent, match_type, taker.side, taker.tif, taker.flags,
             self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_canceled(self, o: _Order, reason: int) -> None:
        self._out.append(
            (self._seq, o.order_id, 0, o.leaves, 0, 0, 0, 0, o.account, 0, o.market, o.price, 0,
             _EV_CANCELED, reason, o.intent, 0, 0, o.side, o.tif, o.flags,
             self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_replaced(self, o: _Order) -> None:
        self._out.append(
            (self._seq, o.order_id, 0, o.leaves, o.leaves, 0, 0, 0, o.account, 0, o.market,
             o.price, 0, _EV_REPLACED, 0, o.intent, 0, 0, o.side, o.tif, o.flags,
             self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_level(self, market: int, side: int, level: _Level) -> None:
        self._out.append(
            (self._seq, 0, 0, level.total, 0, 0, 0, 0, 0, 0, market, level.price,
             len(level.orders), _EV_LEVEL, 0, 0, 0, 0, side, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_market(self, m: _Market) -> None:
        self._out.append(
            (self._seq, 0, 0, m.min_size, m.lot, 0, m.taker_fee_bps, m.maker_fee_bps, 0, 0,
             m.market, m.tick, m.fee_base, _EV_MARKET, m.outcome, 0, 0, 0, 0, 0, 0,
             self._command_type, m.state, 0)
        )  # fmt: skip

    def _emit_account(self, account: int) -> None:
        self._out.append(
            (self._seq, 0, 0, 0, 0, 0, 0, 0, account, 0, 0, 0, 0,
             _EV_ACCOUNT, 0, 0, 0, 0, 0, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_balance(self, account: int, change: int, a: _Account) -> None:
        self._out.append(
            (self._seq, 0, 0, change, a.free, a.reserved, 0, 0, account, 0, 0, 0, 0,
             _EV_BALANCE, 0, 0, 0, 0, 0, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_position(self, market: int, pairs: int, p: _Position) -> None:
        self._out.append(
            (self._seq, 0, 0, pairs, p.yes_free, p.no_free, 0, 0, p.account, 0, market, 0, 0,
             _EV_POSITION, 0, 0, 0, 0, 0, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip

    def _emit_settlement(self, market: _Market, account: int, paid: int, yes: int, no: int) -> None:
        self._out.append(
            (self._seq, 0, 0, paid, yes, no, 0, 0, account, 0, market.market, 0, 0,
             _EV_SETTLEMENT, market.outcome, 0, 0, 0, 0, 0, 0, self._command_type, 0, 0)
        )  # fmt: skip

    # ------------------------------------------------------------------
    # Resting orders: in the book (level FIFO) and in the indexes
    # ------------------------------------------------------------------

    def _attach(self, order: _Order) -> _Level:
        """Put ``order`` at the back of its price level; return the level."""
        level = self._markets[order.market].sides[order.side].level_at(order.price)
        level.orders.append(order)
        level.total += order.leaves
        return level

    def _detach(self, order: _Order) -> _Level:
        """Take ``order`` out of its level (dropping the level if empty); return it."""
        book_side = self._markets[order.market].sides[order.side]
        level = book_side.levels[order.price]
        level.orders.remove(order)
        level.total -= order.leaves
        if not level.orders:
            book_side.drop_level(order.price)
        return level

    def _remember(self, order: _Order) -> None:
        """Index a newly resting order: by id, by client id, by expiry."""
        self._orders[order.order_id] = order
        self._slots[order.order_id % self._max_orders] = order.order_id
        if order.client_order_id:
            self._by_client[(order.account, order.client_order_id)] = order.order_id
        if order.tif == _GTD:
            heapq.heappush(self._expiry_heap, (order.expiry, order.order_id))
            if len(self._expiry_heap) > 64 + 2 * len(self._orders):
                self._rebuild_expiry_heap()

    def _forget(self, order: _Order) -> None:
        """Drop an order that leaves the book from the indexes (the heap entry goes stale)."""
        del self._orders[order.order_id]
        del self._slots[order.order_id % self._max_orders]
        if order.client_order_id:
            del self._by_client[(order.account, order.client_order_id)]

    def _rebuild_expiry_heap(self) -> None:
        self._expiry_heap = [(o.expiry, o.order_id) for o in self._orders.values() if o.tif == _GTD]
        heapq.heapify(self._expiry_heap)

    def _cancel_resting(self, order: _Order, reason: int) -> None:
        """Cancel one resting order: ``CANCELED`` then ``LEVEL``."""
        level = self._detach(order)
        self._forget(order)
        self._order_done(order)
        self._emit_canceled(order, reason)
        self._emit_level(order.market, order.side, level)

    def _cancel_levels(self, market: _Market, reason: int, doomed: Callable[[int], bool]) -> None:
        """Cancel every level whose price is ``doomed``: bids best to worst, then asks.

        Each level: the ``CANCELED`` of its orders in FIFO order, then one ``LEVEL``.
        """
        for book_side in market.sides:
            for price in book_side.prices_best_first():
                if not doomed(price):
                    continue
                level = book_side.levels[price]
                for order in level.orders:
                    self._forget(order)
                    self._order_done(order)
                    self._emit_canceled(order, reason)
                level.orders.clear()
                level.total = 0
                book_side.drop_level(price)
                self._emit_level(market.market, book_side.side, level)

    # ------------------------------------------------------------------
    # Ledger: reservations and positions (§8; nothing happens without the ledger)
    # ------------------------------------------------------------------

    def _reservation(self, market: _Market, order: _Order) -> int:
        """What ``order`` holds reserved for what it has left: cash for a buy, shares for a sell.

        A buy by quantity ``(leaves / lot) * R_lot``, a buy by cash its budget
        and fee reserve, a sell its remaining quantity.
        """
        if not _is_buy(order.intent):
            return order.leaves
        if order.flags & _BY_CASH:
            return order.leaves + order.fee_reserve
        return order.leaves // market.lot * order.lot_reserve

    def _available(self, market: _Market, order: _Order) -> int:
        """What the owner of ``order`` has free to reserve for it: cash, or YES / NO shares."""
        if _is_buy(order.intent):
            return self._accounts[order.account].free
        position = market.positions.get(order.account)
        if position is None:
            return 0
        return position.yes_free if order.intent == _SELL_YES else position.no_free

    def _move_to_reserved(self, market: _Market, order: _Order, amount: int) -> None:
        """Move ``amount`` from free to reserved for ``order`` (back when it is negative)."""
        if _is_buy(order.intent):
            account = self._accounts[order.account]
            account.free -= amount
            account.reserved += amount
            return
        position = market.positions[order.account]
        if order.intent == _SELL_YES:
            position.yes_free -= amount
            position.yes_reserved += amount
        else:
            position.no_free -= amount
            position.no_reserved += amount

    def _position(self, market: _Market, account: int) -> _Position:
        """The account's position in ``market``, taking a slot if it has none."""
        position = market.positions.get(account)
        if position is None:
            position = market.positions[account] = _Position(account)
            self._position_count += 1
        return position

    def _position_table_full(self, market: _Market, account: int) -> bool:
        """Would the account need a new position in ``market`` that the table cannot hold?"""
        return account not in market.positions and self._position_count >= self._max_positions

    def _free_if_empty(self, market: _Market, position: _Position) -> None:
        """Give the slot back when the position holds nothing and has no order."""
        if position.orders == 0 and not position.holds_shares():
            del market.positions[position.account]
            self._position_count -= 1

    def _order_entered(self, market: _Market, order: _Order) -> None:
        """A new order is accepted: it takes its position and reserves what it needs."""
        if not self._ledger:
            return
        self._position(market, order.account).orders += 1
        self._move_to_reserved(market, order, self._reservation(market, order))

    def _order_done(self, order: _Order) -> None:
        """An order leaves for good (canceled, filled, or a taker that does not rest).

        What it still reserves goes back to free, and its position is freed if
        nothing else holds it.
        """
        if not self._ledger:
            return
        market = self._markets[order.market]
        self._move_to_reserved(market, order, -self._reservation(market, order))
        position = market.positions[order.account]
        position.orders -= 1
        self._free_if_empty(market, position)

    # ------------------------------------------------------------------
    # Ledger: settlement of a fill (§8, Settlement of a trade)
    # ------------------------------------------------------------------

    def _settle(
        self,
        market: _Market,
        taker: _Order,
        taker_fee: int,
        maker: _Order,
        price: int,
        qty: int,
        match_type: int,
    ) -> int:
        """Settle a fill of ``qty`` at ``price`` on both sides; the maker's fee."""
        maker_fee = _fee(market.maker_fee_bps, market.fee_base, maker.intent, price, qty)
        self._settle_side(market, taker, price, qty, taker_fee)
        self._settle_side(market, maker, price, qty, maker_fee)
        if match_type == _MINT:
            market.collateral += _PAIR_CASH * qty
        elif match_type == _MERGE:
            market.collateral -= _PAIR_CASH * qty
        self._fees += taker_fee + maker_fee
        return maker_fee

    def _settle_side(self, market: _Market, order: _Order, price: int, qty: int, fee: int) -> None:
        """One side of a fill: a buyer pays price and fee from its reservation and gets
        the shares; a seller gives reserved shares and gets the proceeds minus its fee."""
        account = self._accounts[order.account]
        position = market.positions[order.account]
        cash = _token_price(order.intent, price) * qty
        if _is_buy(order.intent):
            if order.flags & _BY_CASH:  # budget and fee reserve are already reserved cash
                account.reserved -= cash + fee
            else:
                released = qty // market.lot * order.lot_reserve
                account.reserved -= released
                account.free += released - cash - fee
            if order.intent == _BUY_YES:
                position.yes_free += qty
            else:
                position.no_free += qty
        else:
            if order.intent == _SELL_YES:
                position.yes_reserved -= qty
            else:
                position.no_reserved -= qty
            account.free += cash - fee

    # ------------------------------------------------------------------
    # Matching
    # ------------------------------------------------------------------

    @staticmethod
    def _crosses(taker: _Order, price: int) -> bool:
        """Does a level at ``price`` of the opposite side cross the taker's limit?"""
        return price <= taker.price if taker.side == _BID else price >= taker.price

    def _lot_affordable(self, market: _Market, taker: _Order, price: int) -> bool:
        """Can a buy by cash still buy one lot at ``price``?

        Its budget pays for the lot, ``B >= tp(price) * lot``, and with the
        ledger the taker fee of that lot fits its fee reserve (§8, Buys by cash).
        """
        lot = market.lot
        if taker.leaves < _token_price(taker.intent, price) * lot:
            return False
        if not self._ledger:
            return True
        base, divisor = _fee_base(market.fee_base, taker.intent, price, lot)
        return market.bound_factor * market.taker_fee_bps * base <= taker.fee_reserve * divisor

    def _can_buy_at(self, market: _Market, taker: _Order, price: int) -> bool:
        """Has the taker something left to buy at ``price``? (checked before each resting order)

        By quantity, ``leaves > 0``; by cash, one lot there is affordable.
        """
        if taker.flags & _BY_CASH:
            return self._lot_affordable(market, taker, price)
        return taker.leaves > 0

    def _is_complete(self, market: _Market, taker: _Order) -> bool:
        """Is the taker complete (what an FOK needs)?

        By quantity: nothing left. By cash: one more lot at the limit price is
        not affordable.
        """
        if taker.flags & _BY_CASH:
            return not self._lot_affordable(market, taker, taker.price)
        return taker.leaves == 0

    def _would_cross(self, market: _Market, side: int, price: int) -> bool:
        """Would an order of ``side`` at ``price`` trade on entry (post-only check)?"""
        best = market.sides[1 - side].best_price()
        if best is None:
            return False
        return best <= price if side == _BID else best >= price

    def _fill(self, market: _Market, taker: _Order, maker: _Order, price: int) -> int:
        """The quantity the taker fills against ``maker`` at ``price``.

        By quantity ``min(leaves, maker.leaves)``. By cash the most whole lots
        the budget pays for, ``(B // (tp * lot))``, and with the ledger whose
        taker fee fits the fee reserve, ``ceil(bps * k * B_lot / D) <= F`` that
        is ``k <= F * D // (bps * B_lot)``; at least one lot (the caller checked
        ``_can_buy_at``), at most ``maker.leaves``.
        """
        if not taker.flags & _BY_CASH:
            return min(taker.leaves, maker.leaves)
        lot = market.lot
        lots = min(maker.leaves // lot, taker.leaves // (_token_price(taker.intent, price) * lot))
        bps = market.bound_factor * market.taker_fee_bps
        if self._ledger and bps:
            base, divisor = _fee_base(market.fee_base, taker.intent, price, lot)
            lots = min(lots, taker.fee_reserve * divisor // (bps * base))
        return lots * lot

    def _take(self, market: _Market, taker: _Order, price: int, qty: int) -> int:
        """Count a fill of ``qty`` at ``price`` against the taker; its taker fee.

        By quantity ``leaves`` goes down by ``qty``; by cash the budget by
        ``tp * qty`` and the fee reserve by the fee.
        """
        fee = 0
        if self._ledger:
            fee = self._taker_fee(market, taker, price, qty)
        if taker.flags & _BY_CASH:
            taker.leaves -= _token_price(taker.intent, price) * qty
            taker.fee_reserve -= fee
        else:
            taker.leaves -= qty
        return fee

    @staticmethod
    def _taker_fee(market: _Market, taker: _Order, price: int, qty: int) -> int:
        """The taker fee of the next fill of a sweep (§8, Fees). On ``PQ_CENTS`` the sweep's
        charges are capped at the rounding of its summed exact fees, lowering this fill only:
        ``c = max(0, min(round(e), round(sum e) - sum c))``."""
        if market.fee_base != _PQ_CENTS:
            return _fee(market.taker_fee_bps, market.fee_base, taker.intent, price, qty)
        exact = market.taker_fee_bps * price * (PRICE_SCALE - price) * qty
        taker.fee_exact += exact
        cents = max(0, min(_cents(exact), _cents(taker.fee_exact) - taker.fee_charged))
        taker.fee_charged += cents
        return cents * _CENT

    def _fok_fills(self, market: _Market, taker: _Order) -> bool:
        """Would the taker be complete after the sweep? The sweep simulated, without effect.

        It stops where the real sweep stops: nothing left to buy, no level
        crosses, or a self-trade with ``REJECT_AGGRESSOR`` / ``CANCEL_BOTH``
        (``CANCEL_RESTING`` skips the own order). A self-trade stop never
        completes the order, even a by-cash one whose budget left could not buy
        a lot at the limit price (§4, the sweep).
        """
        if taker.stp in (_CANCEL_NEWEST, _REMOVE_BOTH) and self._own_in_reach(market, taker):
            return False  # canceled whole before any fill
        probe = taker.copy()
        probe.fee_exact = probe.fee_charged = 0
        for level in market.sides[1 - taker.side].levels_best_first():
            if not self._crosses(probe, level.price):
                break
            for maker in level.orders:
                if not self._can_buy_at(market, probe, level.price):
                    return self._is_complete(market, probe)
                if maker.account == probe.account:
                    if probe.stp in (_CANCEL_RESTING, _CANCEL_OLDEST):
                        continue  # would be canceled; matching goes on
                    return False  # the sweep stops here: never complete
                self._take(
                    market, probe, level.price, self._fill(market, probe, maker, level.price)
                )
        return self._is_complete(market, probe)

    def _own_in_reach(self, market: _Market, taker: _Order) -> list[_Order]:
        """The taker owner's resting orders its limit reaches, ascending order id: on the
        opposite side at a price the taker would trade at, whatever rests before them."""
        side = 1 - taker.side
        return sorted(
            (
                o
                for o in self._orders.values()
                if o.account == taker.account
                and o.market == taker.market
                and o.side == side
                and self._crosses(taker, o.price)
            ),
            key=lambda o: o.order_id,
        )

    def _sweep(self, market: _Market, taker: _Order) -> bool:
        """Match ``taker`` against the opposite side (§4, the sweep).

        Emits the ``TRADE`` events, the ``CANCELED`` of resting orders removed by
        self-trade prevention and one ``LEVEL`` per opposite level that changed,
        when the sweep leaves it; with the ledger every fill settles at once.
        Returns True if it stopped on self-trade prevention (``REJECT_AGGRESSOR``,
        ``CANCEL_BOTH``, or a venue mode that cancels the taker whole before any fill).
        """
        opposite = market.sides[1 - taker.side]
        taker.fee_exact = taker.fee_charged = 0  # the cap is per sweep
        if taker.stp >= _CANCEL_NEWEST:
            own = self._own_in_reach(market, taker)
            if own and taker.stp != _CANCEL_NEWEST:  # the owner's orders go first
                for maker in own:
                    self._cancel_resting(maker, _SELF_TRADE)
            if own and taker.stp != _CANCEL_OLDEST:
                return True  # the taker is canceled whole, before any fill
        while True:
            level = opposite.best_level()
            if level is None or not self._crosses(taker, level.price):
                return False
            stopped_on_stp = False
            nothing_to_buy = False
            changed = False
            orders = level.orders
            while orders:
                if not self._can_buy_at(market, taker, level.price):
                    nothing_to_buy = True
                    break
                maker = orders[0]
                if maker.account == taker.account:  # self-trade, whatever the intents
                    if taker.stp == _REJECT_AGGRESSOR:
                        stopped_on_stp = True
                        break
                    orders.popleft()
                    level.total -= maker.leaves
                    changed = True
                    self._forget(maker)
                    self._order_done(maker)
                    self._emit_canceled(maker, _SELF_TRADE)
                    if taker.stp == _CANCEL_BOTH:
                        stopped_on_stp = True
                        break
                    continue
                self._match(market, taker, maker, level)
                changed = True
            if not orders:
                opposite.drop_level(level.price)
            if changed:
                self._emit_level(market.market, opposite.side, level)
            if stopped_on_stp:
                return True
            if nothing_to_buy:
                return False

    def _match(self, market: _Market, taker: _Order, maker: _Order, level: _Level) -> None:
        """One fill of the taker against the first order of ``level``: ``TRADE``, settlement."""
        price = level.price
        qty = self._fill(market, taker, maker, price)
        fee = self._take(market, taker, price, qty)
        maker.leaves -= qty
        level.total -= qty
        if taker.side == _BID:
            match_type = _MATCH_TYPE[(taker.intent, maker.intent)]
        else:
            match_type = _MATCH_TYPE[(maker.intent, taker.intent)]
        maker_fee = 0
        if self._ledger:
            maker_fee = self._settle(market, taker, fee, maker, price, qty, match_type)
        if maker.leaves == 0:
            level.orders.popleft()
            self._forget(maker)
            self._order_done(maker)
        self._emit_trade(taker, maker, price, qty, match_type, fee, maker_fee)

    def _finish_taker(self, market: _Market, order: _Order, stopped_on_stp: bool) -> None:
        """What follows the sweep of a new order (§4, NEW_ORDER)."""
        if stopped_on_stp:
            self._emit_canceled(order, _SELF_TRADE)
        elif order.leaves == 0:
            pass  # complete
        elif order.tif in (_IOC, _FOK):
            self._emit_canceled(order, _UNFILLED)  # for BY_CASH: any budget left
        else:
            level = self._attach(order)
            self._remember(order)
            self._emit_level(market.market, order.side, level)
            return  # it rests and keeps exactly R of its remaining quantity
        self._order_done(order)  # releases what is left (a by-cash fee reserve too)

    # ------------------------------------------------------------------
    # The opening auction (§4, The opening auction)
    # ------------------------------------------------------------------

    def _open_auction(self, market: _Market) -> None:
        """Uncross the book, one price per round, until it no longer crosses (a round
        leaves it crossed only when self-match cancels took volume it counted)."""
        bids, asks = market.sides
        while True:
            best_bid, best_ask = bids.best_price(), asks.best_price()
            if best_bid is None or best_ask is None or best_bid < best_ask:
                return
            self._auction_round(market, self._auction_price(market, best_ask, best_bid))

    @staticmethod
    def _auction_price(market: _Market, low: int, high: int) -> int:
        """The uncrossing price: of the prices from the best ask ``low`` to the best bid
        ``high``, those executing the most volume ``min(D, S)``, of these those with the
        least imbalance ``|D - S|``; then the highest if buyers are left over at both ends
        of these, the lowest if sellers are, else the middle one (the lower of two)."""
        bids, asks = market.sides
        ranked = []
        for price in range(low, high + 1, market.tick):
            demand = sum(lv.total for p, lv in bids.levels.items() if p >= price)
            supply = sum(lv.total for p, lv in asks.levels.items() if p <= price)
            ranked.append((-min(demand, supply), abs(demand - supply), price, demand - supply))
        best = min(r[:2] for r in ranked)
        ties = [(price, imbalance) for *key, price, imbalance in ranked if tuple(key) == best]
        (first, first_imbalance), (last, last_imbalance) = ties[0], ties[-1]
        if first_imbalance > 0 and last_imbalance > 0:
            return last
        if first_imbalance < 0 and last_imbalance < 0:
            return first
        return first + (last - first) // market.tick // 2 * market.tick

    def _auction_round(self, market: _Market, price: int) -> None:
        """Match bids priced >= ``price`` with asks priced <= it, best first and in time
        priority, all at ``price``. The newer order of each pair stands for the taker (taker
        fee, each fill capped alone) and is canceled on a self-match. A level is reported
        when the round leaves it (bids before asks), or at the end."""
        bids, asks = market.sides
        bid_level, ask_level = bids.best_level(), asks.best_level()
        bid_changed = ask_changed = False
        while (
            bid_level is not None
            and ask_level is not None
            and bid_level.price >= price
            and ask_level.price <= price
        ):
            b, a = bid_level.orders[0], ask_level.orders[0]
            taker, maker = (b, a) if b.order_id > a.order_id else (a, b)
            if b.account == a.account:
                level = bid_level if taker is b else ask_level
                level.orders.popleft()
                level.total -= taker.leaves
                self._forget(taker)
                self._order_done(taker)
                self._emit_canceled(taker, _SELF_TRADE)
                if taker is b:
                    bid_changed = True
                else:
                    ask_changed = True
            else:
                qty = min(b.leaves, a.leaves)
                match_type = _MATCH_TYPE[(b.intent, a.intent)]
                fee = maker_fee = 0
                if self._ledger:
                    taker.fee_exact = taker.fee_charged = 0  # each auction fill capped alone
                    fee = self._taker_fee(market, taker, price, qty)
                    maker_fee = self._settle(market, taker, fee, maker, price, qty, match_type)
                for order, level in ((b, bid_level), (a, ask_level)):
                    order.leaves -= qty
                    level.total -= qty
                bid_changed = ask_changed = True
                self._emit_trade(taker, maker, price, qty, match_type, fee, maker_fee)
                for order, level in ((b, bid_level), (a, ask_level)):
                    if order.leaves == 0:
                        level.orders.popleft()
                        self._forget(order)
                        self._order_done(order)
            if not bid_level.orders:
                bids.drop_level(bid_level.price)
                self._emit_level(market.market, _BID, bid_level)
                bid_changed, bid_level = False, bids.best_level()
            if not ask_level.orders:
                asks.drop_level(ask_level.price)
                self._emit_level(market.market, _ASK, ask_level)
                ask_changed, ask_level = False, asks.best_level()
        if bid_changed:
            self._emit_level(market.market, _BID, bid_level)
        if ask_changed:
            self._emit_level(market.market, _ASK, ask_level)

    # ------------------------------------------------------------------
    # Command handlers (checks in the order of §4 and §8)
    # ------------------------------------------------------------------

    def _new_order(self, cmd: _Command) -> int:
        market = self._markets.get(cmd.market) if cmd.market < self._max_markets else None
        if market is None:
            return self._reject(cmd, Reject.UNKNOWN_MARKET)
        if not self._account_known(cmd.account):
            return self._reject(cmd, Reject.UNKNOWN_ACCOUNT)
        intent, tif, flags = cmd.intent, cmd.tif, cmd.flags
        if not self._order_shape_ok(intent, tif, cmd.stp, flags):
            return self._reject(cmd, Reject.INVALID_ORDER)
        if market.state != _OPEN:
            if market.state != _PRE_OPEN:
                return self._reject(cmd, Reject.MARKET_NOT_OPEN)
            if tif in (_IOC, _FOK) or flags & (_MARKET_FLAG | _POST_ONLY):
                return self._reject(cmd, Reject.NOT_IN_AUCTION)
        limit = cmd.price
        if flags & _SLIPPAGE:  # price 0: none; aux: ticks, bps <= 10_000, a current price
            current, bps = cmd.aux >> 48, (cmd.aux >> 32) & 0xFFFF
            if (
                (cmd.price and not market.price_ok(cmd.price))
                or cmd.aux < 0
                or bps > PRICE_SCALE
                or (current and not market.price_ok(current))
            ):
                return self._reject(cmd, Reject.INVALID_PRICE)
            limit = self._slippage_limit(market, _SIDE_OF_INTENT[intent], cmd.price, cmd.aux)
        elif not market.price_ok(cmd.price):
            return self._reject(cmd, Reject.INVALID_PRICE)
        if flags & _BY_CASH:
            if not 0 < cmd.quantity <= MAX_CASH:
                return self._reject(cmd, Reject.INVALID_QUANTITY)
        else:
            reason = self._quantity_reject(market, cmd.quantity)
            if reason:
                return self._reject(cmd, reason)
        if (tif == _GTD and cmd.expiry <= self._now) or (tif != _GTD and cmd.expiry != 0):
            return self._reject(cmd, Reject.INVALID_EXPIRY)
        if cmd.client_order_id and (cmd.account, cmd.client_order_id) in self._by_client:
            return self._reject(cmd, Reject.DUPLICATE_CLIENT_ORDER_ID)
        if tif in (_GTC, _GTD) and len(self._orders) >= self._max_orders:
            return self._reject(cmd, Reject.CAPACITY)
        if self._ledger and self._position_table_full(market, cmd.account):
            return self._reject(cmd, Reject.CAPACITY)
        order = _Order(
            0, cmd.account, cmd.market, intent, limit, cmd.quantity, tif,
            cmd.expiry, cmd.client_order_id, cmd.stp, flags,
        )  # fmt: skip
        if self._ledger:
            self._price_reservation(market, order)
            if self._reservation(market, order) > self._available(market, order):
                return self._reject(cmd, Reject.INSUFFICIENT_BALANCE)
        if flags & _POST_ONLY and self._would_cross(market, order.side, cmd.price):
            return self._reject(cmd, Reject.POST_ONLY_WOULD_CROSS)
        if flags & _SLIPPAGE and not self._fills_any(market, order):
            return self._reject(cmd, Reject.NO_LIQUIDITY)
        if tif == _FOK and not self._fok_fills(market, order):
            return self._reject(cmd, Reject.FOK_NOT_FILLED)

        order.order_id = self._assign_order_id(tif in (_GTC, _GTD))
        self._order_entered(market, order)
        self._emit_accepted(order)
        # PRE_OPEN: it rests, crossed or not, for the opening auction.
        stopped_on_stp = market.state == _OPEN and self._sweep(market, order)
        self._finish_taker(market, order, stopped_on_stp)
        return order.order_id

    @staticmethod
    def _slippage_limit(market: _Market, side: int, price: int, aux: int) -> int:
        """The limit of a SLIPPAGE market order (§4, NEW_ORDER): ``ticks`` (they win) or
        ``bps`` off the current price (given, else the best opposite one, else the bound),
        on the grid within the tolerance; without either the order's price, else the
        bound; never beyond the bound, the market's last price on the grid that way."""
        ticks, bps, current = aux & 0xFFFF_FFFF, (aux >> 32) & 0xFFFF, aux >> 48
        tick = market.tick
        highest = PRICE_SCALE - tick
        if market.max_price:
            highest = min(highest, market.max_price)
        lowest = max(tick, market.min_price)
        bound = highest // tick * tick if side == _BID else -(-lowest // tick) * tick
        best = market.sides[1 - side].best_price()
        if not current:
            current = best if best is not None else bound
        if ticks:
            limit = current + ticks * tick if side == _BID else current - ticks * tick
        elif bps:
            if side == _BID:
                limit = current * (PRICE_SCALE + bps) // (PRICE_SCALE * tick) * tick
            else:
                limit = -(-current * (PRICE_SCALE - bps) // (PRICE_SCALE * tick)) * tick
        else:
            limit = price or bound
        return min(limit, bound) if side == _BID else max(limit, bound)

    def _fills_any(self, market: _Market, taker: _Order) -> bool:
        """Would the sweep fill anything? (A SLIPPAGE order's NO_LIQUIDITY check: it stops
        where the sweep would, on a budget that buys no lot or an own order in the way.)"""
        if taker.stp in (_CANCEL_NEWEST, _REMOVE_BOTH) and self._own_in_reach(market, taker):
            return False
        for level in market.sides[1 - taker.side].levels_best_first():
            if not self._crosses(taker, level.price):
                return False
            for maker in level.orders:
                if not self._can_buy_at(market, taker, level.price):
                    return False
                if maker.account != taker.account:
                    return True
                if taker.stp not in (_CANCEL_RESTING, _CANCEL_OLDEST):
                    return False
        return False

    def _assign_order_id(self, can_rest: bool) -> int:
        """§1: the next id, or for an order that can rest the next whose slot is free."""
        order_id = self._next_order_id
        if can_rest:  # the pool is not full (checked), so some slot is free
            while order_id % self._max_orders in self._slots:
                order_id += 1
        self._next_order_id = order_id + 1
        return order_id

    @staticmethod
    def _price_reservation(market: _Market, order: _Order) -> None:
        """Set what a new buy reserves per lot (``R_lot``) or, by cash, its fee reserve (§8)."""
        if not _is_buy(order.intent):
            return
        if order.flags & _BY_CASH:
            order.fee_reserve = market.cash_fee_reserve(order.leaves)
        else:
            order.lot_reserve = market.lot_reserve(order.intent, order.price)

    @staticmethod
    def _order_shape_ok(intent: int, tif: int, stp: int, flags: int) -> bool:
        """Check 3 of NEW_ORDER: enum values and combinations."""
        if intent > 3 or tif > 3 or stp > _LAST_STP or flags & ~_ALL_FLAGS:
            return False
        if flags & _POST_ONLY and (tif in (_IOC, _FOK) or flags & _MARKET_FLAG):
            return False
        if flags & _MARKET_FLAG and tif in (_GTC, _GTD):
            return False
        if flags & _SLIPPAGE and not flags & _MARKET_FLAG:
            return False
        if flags & _BY_CASH:
            if not flags & _MARKET_FLAG:
                return False
            if intent in (_SELL_YES, _SELL_NO):
                return False
        return True

    @staticmethod
    def _quantity_reject(market: _Market, quantity: int) -> int:
        """The reject of an order quantity (0 if valid)."""
        if quantity <= 0 or quantity > MAX_QUANTITY or quantity % market.lot != 0:
            return Reject.INVALID_QUANTITY
        if quantity < market.min_size:
            return Reject.BELOW_MIN_SIZE
        return 0

    def _account_known(self, account: int) -> bool:
        return account < self._max_accounts and account in self._accounts

    def _cancel(self, cmd: _Command) -> int:
        order = self._orders.get(cmd.order_id)
        if order is None:
            return self._reject(cmd, Reject.UNKNOWN_ORDER)
        if order.account != cmd.account:
            return self._reject(cmd, Reject.NOT_OWNER)
        if self._markets[order.market].state == _HALTED:
            return self._reject(cmd, Reject.MARKET_NOT_OPEN)
        self._cancel_resting(order, _USER)
        return 0

    def _cancel_client(self, cmd: _Command) -> int:
        order_id = self._by_client.get((cmd.account, cmd.client_order_id))
        if cmd.client_order_id == 0 or order_id is None:
            return self._reject(cmd, Reject.UNKNOWN_ORDER)
        if self._markets[self._orders[order_id].market].state == _HALTED:
            return self._reject(cmd, Reject.MARKET_NOT_OPEN)
        self._cancel_resting(self._orders[order_id], _USER)
        return 0

    def _cancel_all(self, cmd: _Command) -> int:
        if not self._account_known(cmd.account):
            return self._reject(cmd, Reject.UNKNOWN_ACCOUNT)
        if cmd.market != ALL_MARKETS and cmd.market not in self._markets:
            return self._reject(cmd, Reject.UNKNOWN_MARKET)
        if cmd.market != ALL_MARKETS and self._markets[cmd.market].state == _HALTED:
            return self._reject(cmd, Reject.MARKET_NOT_OPEN)
        order_ids = sorted(
            o.order_id
            for o in self._orders.values()
            if o.account == cmd.account
            and cmd.market in (ALL_MARKETS, o.market)
            and self._markets[o.market].state != _HALTED  # a halted market keeps its orders
        )
        for order_id in order_ids:
            self._cancel_resting(self._orders[order_id], _USER)
        return len(order_ids)

    def _replace(self, cmd: _Command) -> int:
        order = self._orders.get(cmd.order_id)
        if order is None:
            return self._reject(cmd, Reject.UNKNOWN_ORDER)
        if order.account != cmd.account:
            return self._reject(cmd, Reject.NOT_OWNER)
        market = self._markets[order.market]
        if market.state not in (_OPEN, _PRE_OPEN):
            return self._reject(cmd, Reject.MARKET_NOT_OPEN)
        if cmd.price != 0 and not market.price_ok(cmd.price):
            return self._reject(cmd, Reject.INVALID_PRICE)
        if cmd.quantity != 0:
            reason = self._quantity_reject(market, cmd.quantity)
            if reason:
                return self._reject(cmd, reason)
        new_price = cmd.price or order.price
        new_qty = cmd.quantity or order.leaves
        increase = new_lot_reserve = 0
        if self._ledger:
            # Check 5: the reservation at the new price and quantity, less what is held now.
            if _is_buy(order.intent):
                new_lot_reserve = market.lot_reserve(order.intent, new_price)
                needed = new_qty // market.lot * new_lot_reserve
            else:
                needed = new_qty
            increase = needed - self._reservation(market, order)
            if increase > self._available(market, order):
                return self._reject(cmd, Reject.INSUFFICIENT_BALANCE)
        if order.flags & _POST_ONLY and self._would_cross(market, order.side, new_price):
            return self._reject(cmd, Reject.POST_ONLY_WOULD_CROSS)
        if self._ledger:
            self._move_to_reserved(market, order, increase)  # a decrease is released
            order.lot_reserve = new_lot_reserve

        if new_price == order.price and new_qty <= order.leaves:
            # Keeps its place: LEVEL if the quantity went down, else nothing.
            shrink = order.leaves - new_qty
            order.leaves = new_qty
            self._emit_replaced(order)
            if shrink:
                level = market.sides[order.side].levels[order.price]
                level.total -= shrink
                self._emit_level(market.market, order.side, level)
            return 0

        # Loses its place: leaves its level, then trades and/or rests at the back.
        old_level = self._detach(order)
        same_price = new_price == order.price
        order.price = new_price
        order.leaves = new_qty
        self._emit_replaced(order)
        if same_price:  # the quantity grew: one LEVEL
            level = self._attach(order)
            self._emit_level(market.market, order.side, level)
            return 0
        self._emit_level(market.market, order.side, old_level)
        opposite_best = market.sides[1 - order.side].best_price()
        crosses = opposite_best is not None and self._crosses(order, opposite_best)
        if market.state == _OPEN and crosses:  # in PRE_OPEN nothing matches
            stopped_on_stp = self._sweep(market, order)
            if stopped_on_stp:
                self._forget(order)
                self._order_done(order)
                self._emit_canceled(order, _SELF_TRADE)
                return 0
            if order.leaves == 0:
                self._forget(order)
                self._order_done(order)
                return 0
        level = self._attach(order)
        self._emit_level(market.market, order.side, level)
        return 0

    def _create_market(self, cmd: _Command) -> int:
        tick, min_size, lot = cmd.price, cmd.quantity, cmd.aux
        if cmd.market >= self._max_markets:
            return self._reject(cmd, Reject.CAPACITY)
        if cmd.market in self._markets:
            return self._reject(cmd, Reject.MARKET_EXISTS)
        if tick not in TICKS:
            return self._reject(cmd, Reject.INVALID_TICK)
        if lot <= 0 or min_size <= 0 or min_size > MAX_QUANTITY or min_size % lot != 0:
            return self._reject(cmd, Reject.INVALID_QUANTITY)
        if not _fee_ok(cmd.taker_fee_bps, cmd.maker_fee_bps, cmd.fee_base):
            return self._reject(cmd, Reject.INVALID_FEE)
        min_price, max_price = cmd.expiry & 0xFFFF_FFFF, (cmd.expiry % 2**64) >> 32
        if not _bounds_ok(min_price, max_price):
            return self._reject(cmd, Reject.INVALID_PRICE)
        levels = 2 * _levels_per_side(tick)
        if self._levels_used + levels > self._max_levels:
            return self._reject(cmd, Reject.CAPACITY)
        self._levels_used += levels
        market = self._markets[cmd.market] = _Market(
            cmd.market, tick, min_size, lot, cmd.taker_fee_bps, cmd.maker_fee_bps, cmd.fee_base,
            min_price, max_price,
        )  # fmt: skip
        self._emit_market(market)
        return 0

    def _set_market_state(self, cmd: _Command) -> int:
        market = self._markets.get(cmd.market)
        if market is None:
            return self._reject(cmd, Reject.UNKNOWN_MARKET)
        if (market.state, cmd.arg) not in _ALLOWED_TRANSITIONS:
            return self._reject(cmd, Reject.INVALID_STATE_TRANSITION)
        before, market.state = market.state, cmd.arg
        self._emit_market(market)
        if market.state == _CLOSED:
            self._cancel_levels(market, _MARKET_CLOSED, lambda price: True)
        if market.state == _EXPIRED_STATE:
            self._cancel_levels(market, _EXPIRED, lambda price: True)
        if before == _PRE_OPEN and market.state == _OPEN:
            self._open_auction(market)
        return 0

    def _set_tick(self, cmd: _Command) -> int:
        market = self._markets.get(cmd.market)
        if market is None:
            return self._reject(cmd, Reject.UNKNOWN_MARKET)
        tick = cmd.price
        if tick not in TICKS:
            return self._reject(cmd, Reject.INVALID_TICK)
        levels_after = (
            self._levels_used - 2 * _levels_per_side(market.tick) + 2 * _levels_per_side(tick)
        )
        if levels_after > self._max_levels:
            return self._reject(cmd, Reject.CAPACITY)
        self._levels_used = levels_after
        market.tick = tick
        self._emit_market(market)
        self._cancel_levels(market, _TICK_CHANGE, lambda price: price % tick != 0)
        return 0

    def _add_account(self, cmd: _Command) -> int:
        if cmd.account >= self._max_accounts:
            return self._reject(cmd, Reject.CAPACITY)
        if cmd.account in self._accounts:
            return self._reject(cmd, Reject.ACCOUNT_EXISTS)
        self._accounts[cmd.account] = _Account()
        self._emit_account(cmd.account)
        return 0

    # -- the ledger commands (§8) ------------------------------------------

    def _deposit(self, cmd: _Command) -> int:
        if not self._ledger:
            return self._reject(cmd, Reject.LEDGER_DISABLED)
        if not self._account_known(cmd.account):
            return self._reject(cmd, Reject.UNKNOWN_ACCOUNT)
        amount = cmd.quantity
        if not 0 < amount <= MAX_CASH:
            return self._reject(cmd, Reject.INVALID_QUANTITY)
        if self._net_deposits + amount > MAX_TOTAL_CASH:
            return self._reject(cmd, Reject.CAPACITY)
        account = self._accounts[cmd.account]
        account.free += amount
        self._net_deposits += amount
        self._emit_balance(cmd.account, amount, account)
        return 0

    def _withdraw(self, cmd: _Command) -> int:
        if not self._ledger:
            return self._reject(cmd, Reject.LEDGER_DISABLED)
        if not self._account_known(cmd.account):
            return self._reject(cmd, Reject.UNKNOWN_ACCOUNT)
        amount = cmd.quantity
        if not 0 < amount <= MAX_CASH:
            return self._reject(cmd, Reject.INVALID_QUANTITY)
        account = self._accounts[cmd.account]
        if amount > account.free:
            return self._reject(cmd, Reject.INSUFFICIENT_BALANCE)
        account.free -= amount
        self._net_deposits -= amount
        self._emit_balance(cmd.account, -amount, account)
        return 0

    def _pairs_reject(self, cmd: _Command, states: tuple[int, ...]) -> tuple[_Market | None, int]:
        """The checks SPLIT and MERGE share: ``(market, 0)``, or ``(None, reject)``."""
        if not self._ledger:
            return None, Reject.LEDGER_DISABLED
        if not self._account_known(cmd.account):
            return None, Reject.UNKNOWN_ACCOUNT
        market = self._markets.get(cmd.market) if cmd.market < self._max_markets else None
        if market is None:
            return None, Reject.UNKNOWN_MARKET
        if market.state not in states:
            return None, Reject.MARKET_NOT_OPEN
        if not 0 < cmd.quantity <= MAX_QUANTITY or cmd.quantity % market.lot != 0:
            return None, Reject.INVALID_QUANTITY
        return market, 0

    def _split(self, cmd: _Command) -> int:
        market, reason = self._pairs_reject(cmd, _HOLDS_ORDERS)
        if market is None:
            return self._reject(cmd, reason)
        if self._position_table_full(market, cmd.account):
            return self._reject(cmd, Reject.CAPACITY)
        pairs = cmd.quantity
        cash = _PAIR_CASH * pairs
        account = self._accounts[cmd.account]
        if account.free < cash:
            return self._reject(cmd, Reject.INSUFFICIENT_BALANCE)
        account.free -= cash
        position = self._position(market, cmd.account)
        position.yes_free += pairs
        position.no_free += pairs
        market.collateral += cash
        self._emit_position(market.market, pairs, position)
        return 0

    def _merge(self, cmd: _Command) -> int:
        market, reason = self._pairs_reject(cmd, (*_HOLDS_ORDERS, _CLOSED, _EXPIRED_STATE))
        if market is None:
            return self._reject(cmd, reason)
        pairs = cmd.quantity
        position = market.positions.get(cmd.account)
        if position is None or position.yes_free < pairs or position.no_free < pairs:
            return self._reject(cmd, Reject.INSUFFICIENT_BALANCE)
        cash = _PAIR_CASH * pairs
        position.yes_free -= pairs
        position.no_free -= pairs
        market.collateral -= cash
        self._accounts[cmd.account].free += cash
        self._emit_position(market.market, pairs, position)
        self._free_if_empty(market, position)
        return 0

    def _resolve(self, cmd: _Command) -> int:
        market = self._markets.get(cmd.market) if cmd.market < self._max_markets else None
        if market is None:
            return self._reject(cmd, Reject.UNKNOWN_MARKET)
        if cmd.arg not in (_YES, _NO, _HALF):
            return self._reject(cmd, Reject.INVALID_OUTCOME)
        if market.state == _RESOLVED:
            return self._reject(cmd, Reject.INVALID_STATE_TRANSITION)
        market.state = _RESOLVED
        market.outcome = cmd.arg
        self._emit_market(market)
        self._cancel_levels(market, _MARKET_CLOSED, lambda price: True)
        if self._ledger:
            self._pay_positions(market)
        return 0

    def _pay_positions(self, market: _Market) -> None:
        """Pay every position of a resolved market, ascending account; free them all.

        After the cancels of ``RESOLVE`` nothing is reserved and every position
        left holds shares: ``SETTLEMENT`` for each, even one whose shares pay 0.
        """
        for account_id in sorted(market.positions):
            position = market.positions[account_id]
            yes = position.yes_free + position.yes_reserved
            no = position.no_free + position.no_reserved
            if market.outcome == _YES:
                paid = _PAIR_CASH * yes  # $1 a share: 10_000 per quantity unit
            elif market.outcome == _NO:
                paid = _PAIR_CASH * no
            else:  # HALF: $0.50 a share of each
                paid = _PAIR_CASH // 2 * (yes + no)
            self._accounts[account_id].free += paid
            market.collateral -= paid
            self._emit_settlement(market, account_id, paid, yes, no)
        self._position_count -= len(market.positions)
        market.positions.clear()

    # ------------------------------------------------------------------
    # Per-call API (§7)
    # ------------------------------------------------------------------

    @_integer_arguments
    def create_market(
        self,
        market: int,
        tick: int,
        min_size: int = 1,
        lot: int = 1,
        *,
        taker_fee_bps: int = 0,
        maker_fee_bps: int = 0,
        fee_base: int = FeeBase.NOTIONAL,
        min_price: int = 0,
        max_price: int = 0,
        time: int = 0,
    ) -> int:
        for name, value in (("min_price", min_price), ("max_price", max_price)):
            if not 0 <= operator.index(value) < 2**32:
                raise OverflowError(f"{name}={value} is out of range [0, {2**32 - 1}]")
        bounds = max_price << 32 | min_price  # the expiry field, as int64
        return self._call(
            type=_CMD_CREATE_MARKET, market=market, price=tick, quantity=min_size, aux=lot,
            taker_fee_bps=taker_fee_bps, maker_fee_bps=maker_fee_bps, fee_base=fee_base,
            expiry=bounds - 2**64 if bounds >= 2**63 else bounds, time=time,
        )  # fmt: skip

    @_integer_arguments
    def set_market_state(self, market: int, state: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_SET_MARKET_STATE, market=market, arg=state, time=time)

    @_integer_arguments
    def set_tick(self, market: int, tick: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_SET_TICK, market=market, price=tick, time=time)

    @_integer_arguments
    def add_account(self, account: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_ADD_ACCOUNT, account=account, time=time)

    @_integer_arguments
    def submit(
        self,
        account: int,
        market: int,
        intent: int,
        price: int,
        quantity: int,
        tif: int = TimeInForce.GTC,
        *,
        expiry: int = 0,
        client_order_id: int = 0,
        stp: int = Stp.REJECT_AGGRESSOR,
        post_only: bool = False,
        market_order: bool = False,
        by_cash: bool = False,
        time: int = 0,
    ) -> int:
        flags = (
            (_POST_ONLY if post_only else 0)
            | (_MARKET_FLAG if market_order else 0)
            | (_BY_CASH if by_cash else 0)
        )
        return self._call(
            type=_CMD_NEW_ORDER, account=account, market=market, intent=intent, price=price,
            quantity=quantity, tif=tif, expiry=expiry, client_order_id=client_order_id,
            stp=stp, flags=flags, time=time,
        )  # fmt: skip

    @_integer_arguments
    def cancel(self, account: int, order_id: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_CANCEL, account=account, order_id=order_id, time=time)

    @_integer_arguments
    def cancel_client(self, account: int, client_order_id: int, *, time: int = 0) -> int:
        return self._call(
            type=_CMD_CANCEL_CLIENT, account=account, client_order_id=client_order_id, time=time
        )

    @_integer_arguments
    def cancel_all(self, account: int, market: int = ALL_MARKETS, *, time: int = 0) -> int:
        return self._call(type=_CMD_CANCEL_ALL, account=account, market=market, time=time)

    @_integer_arguments
    def replace(
        self, account: int, order_id: int, price: int = 0, quantity: int = 0, *, time: int = 0
    ) -> int:
        return self._call(
            type=_CMD_REPLACE, account=account, order_id=order_id, price=price,
            quantity=quantity, time=time,
        )  # fmt: skip

    @_integer_arguments
    def advance_time(self, time: int) -> int:
        return self._call(type=_CMD_ADVANCE_TIME, time=time)

    @_integer_arguments
    def deposit(self, account: int, amount: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_DEPOSIT, account=account, quantity=amount, time=time)

    @_integer_arguments
    def withdraw(self, account: int, amount: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_WITHDRAW, account=account, quantity=amount, time=time)

    @_integer_arguments
    def split(self, account: int, market: int, quantity: int, *, time: int = 0) -> int:
        return self._call(
            type=_CMD_SPLIT, account=account, market=market, quantity=quantity, time=time
        )

    @_integer_arguments
    def merge(self, account: int, market: int, quantity: int, *, time: int = 0) -> int:
        return self._call(
            type=_CMD_MERGE, account=account, market=market, quantity=quantity, time=time
        )

    @_integer_arguments
    def resolve(self, market: int, outcome: int, *, time: int = 0) -> int:
        return self._call(type=_CMD_RESOLVE, market=market, arg=outcome, time=time)

    def last_events(self) -> np.ndarray:
        """The events of the last per-call method."""
        return _event_array(self._last_events)

    def drain_events(self) -> np.ndarray:
        """The per-call events pending since the last drain (the newest
        ``max_pending_events``, and all of the last call's); clears them all, those
        of the last call included (``last_events()`` is then empty), and
        ``dropped_events``."""
        events = _event_array(list(self._buffered_events))
        self._buffered_events.clear()
        self._last_events = []
        self._dropped_events = 0
        return events

    @property
    def pending_events(self) -> int:
        return len(self._buffered_events)

    @property
    def dropped_events(self) -> int:
        return self._dropped_events

    # ------------------------------------------------------------------
    # Queries
    # ------------------------------------------------------------------

    @property
    def now(self) -> int:
        return self._now

    @property
    def next_order_id(self) -> int:
        """The id counter (§1): the next order gets this id, or the next whose slot is free."""
        return self._next_order_id

    @property
    def order_count(self) -> int:
        return len(self._orders)

    @_integer_arguments
    def book(self, market: int, depth: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The best ``depth`` levels of each side, best first."""
        m = self._markets[market]
        depth = operator.index(depth)
        if depth < 0:
            raise ValueError("depth must be >= 0")
        result = []
        for book_side in m.sides:
            prices = book_side.prices_best_first()[:depth]
            rows = [(p, len(book_side.levels[p].orders), book_side.levels[p].total) for p in prices]
            result.append(np.array(rows, dtype=BOOK_LEVEL_DTYPE))
        return result[0], result[1]

    @_integer_arguments
    def best(self, market: int) -> tuple[int, int, int, int]:
        """``(bid_price, bid_qty, ask_price, ask_qty)``; 0, 0 for an empty side."""
        m = self._markets[market]
        out: list[int] = []
        for book_side in m.sides:
            level = book_side.best_level()
            out += [0, 0] if level is None else [level.price, level.total]
        return out[0], out[1], out[2], out[3]

    @_integer_arguments
    def order(self, order_id: int) -> OrderInfo | None:
        o = self._orders.get(order_id)
        if o is None:
            return None
        return OrderInfo(
            o.order_id, o.account, o.market, o.intent, o.side, o.price, o.leaves, o.tif,
            o.expiry, o.client_order_id, o.stp, o.flags,
        )  # fmt: skip

    @_integer_arguments
    def orders_of(self, account: int) -> list[OrderInfo]:
        """The account's resting orders, oldest (lowest order id) first."""
        ids = sorted(i for i, o in self._orders.items() if o.account == account)
        return [info for info in map(self.order, ids) if info is not None]

    @_integer_arguments
    def market(self, market: int) -> MarketInfo | None:
        m = self._markets.get(market)
        if m is None:
            return None
        return MarketInfo(
            m.market, m.state, m.tick, m.min_size, m.lot, m.taker_fee_bps, m.maker_fee_bps,
            m.fee_base, m.outcome, m.collateral, m.min_price, m.max_price,
        )  # fmt: skip

    @_integer_arguments
    def balance(self, account: int) -> Balance | None:
        """An account's free and reserved cash (micro-dollars); None if it was never added."""
        a = self._accounts.get(account)
        if a is None:
            return None
        return Balance(a.free, a.reserved)

    @_integer_arguments
    def position(self, account: int, market: int) -> Position:
        """An account's shares in a market; zeros when it holds none."""
        m = self._markets.get(market)
        p = None if m is None else m.positions.get(account)
        if p is None:
            return Position(0, 0, 0, 0)
        return Position(p.yes_free, p.yes_reserved, p.no_free, p.no_reserved)

    def totals(self) -> Totals:
        """Net deposits, fees and the collateral of all markets (micro-dollars)."""
        collateral = sum(m.collateral for m in self._markets.values())
        return Totals(self._net_deposits, self._fees, collateral)

    # ------------------------------------------------------------------
    # Canonical state, digest, snapshot, restore (§6)
    # ------------------------------------------------------------------

    def canonical_state(self) -> bytes:
        parts = [
            _HEADER.pack(
                _MAGIC,
                self._max_orders,
                self._max_markets,
                self._max_accounts,
                self._max_levels,
                self._max_positions,
                int(self._ledger),
                self._now,
                self._next_order_id,
                self._net_deposits,
                self._fees,
            ),
            _U32.pack(len(self._accounts)),
        ]
        for account_id in sorted(self._accounts):
            a = self._accounts[account_id]
            parts.append(_ACCOUNT_REC.pack(account_id, a.free, a.reserved))
        parts.append(_U32.pack(len(self._markets)))
        for market_id in sorted(self._markets):
            m = self._markets[market_id]
            parts.append(
                _MARKET_REC.pack(
                    m.market, m.state, m.tick, m.min_size, m.lot, m.taker_fee_bps,
                    m.maker_fee_bps, m.fee_base, m.outcome, m.collateral, m.min_price,
                    m.max_price,
                )
            )  # fmt: skip
            for book_side in m.sides:
                parts.append(_U32.pack(len(book_side.prices)))
                for level in book_side.levels_best_first():
                    parts.append(_LEVEL_REC.pack(level.price, len(level.orders), level.total))
                    for o in level.orders:
                        parts.append(
                            _ORDER_REC.pack(
                                o.order_id,
                                o.client_order_id,
                                o.account,
                                o.leaves,
                                o.expiry if o.tif == _GTD else 0,
                                o.intent,
                                o.tif,
                                o.stp,
                                o.flags,
                            )
                        )
            parts.append(_U32.pack(len(m.positions)))
            for account_id in sorted(m.positions):
                p = m.positions[account_id]
                parts.append(
                    _POSITION_REC.pack(
                        account_id, p.yes_free, p.yes_reserved, p.no_free, p.no_reserved
                    )
                )
        return b"".join(parts)

    def snapshot(self) -> bytes:
        return self.canonical_state()

    def digest(self) -> str:
        return hashlib.blake2b(self.canonical_state(), digest_size=16).hexdigest()

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        """Rebuild an engine from ``snapshot()`` bytes; ``ValueError`` if malformed.

        Anything ``validate()`` rejects is malformed too.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("restore() takes bytes")
        data = bytes(data)
        reader = _Reader(data)
        (
            magic, max_orders, max_markets, max_accounts, max_levels, max_positions, ledger,
            now, next_order_id, net_deposits, fees,
        ) = reader.read(_HEADER)  # fmt: skip
        if magic == _MAGIC_V2:
            raise ValueError(
                "a matchcore state of format 2, whose order ids do not name their slots; "
                "this engine reads formats 3 and 4 only"
            )
        if magic not in (_MAGIC, _MAGIC_V3):
            raise ValueError(f"not a matchcore state (magic {magic!r})")
        if ledger > 1:
            raise ValueError(f"ledger flag {ledger} is neither 0 nor 1")
        if now < 0:
            raise ValueError(f"negative engine time {now}")
        if next_order_id < 1:
            raise ValueError(f"next_order_id {next_order_id} < 1")
        engine = cls(max_orders, max_markets, max_accounts, max_levels, max_positions, bool(ledger))
        engine._now = now
        engine._next_order_id = next_order_id
        engine._net_deposits = net_deposits
        engine._fees = fees

        (n_accounts,) = reader.read(_U32)
        if n_accounts > max_accounts:
            raise ValueError(f"{n_accounts} accounts > max_accounts {max_accounts}")
        previous = -1
        for _ in range(n_accounts):
            account, free, reserved = reader.read(_ACCOUNT_REC)
            if account <= previous or account >= max_accounts:
                raise ValueError(f"account {account} out of order or >= max_accounts")
            engine._accounts[account] = _Account(free, reserved)
            previous = account

        (n_markets,) = reader.read(_U32)
        if n_markets > max_markets:
            raise ValueError(f"{n_markets} markets > max_markets {max_markets}")
        previous = -1
        for _ in range(n_markets):
            (
                market_id, state, tick, min_size, lot, taker_fee_bps, maker_fee_bps, fee_base,
                outcome, collateral, *bounds,
            ) = reader.read(_MARKET_REC if magic == _MAGIC else _MARKET_REC_V3)  # fmt: skip
            min_price, max_price = bounds or (0, 0)
            if not _bounds_ok(min_price, max_price):
                raise ValueError(f"market {market_id}: bad price bounds {min_price}..{max_price}")
            if market_id <= previous or market_id >= max_markets:
                raise ValueError(f"market {market_id} out of order or >= max_markets")
            previous = market_id
            if not _PRE_OPEN <= state <= _EXPIRED_STATE:
                raise ValueError(f"market {market_id}: bad state {state}")
            if tick not in TICKS:
                raise ValueError(f"market {market_id}: bad tick {tick}")
            if lot <= 0 or min_size <= 0 or min_size > MAX_QUANTITY or min_size % lot != 0:
                raise ValueError(f"market {market_id}: bad min_size {min_size} / lot {lot}")
            if not _fee_ok(taker_fee_bps, maker_fee_bps, fee_base):
                raise ValueError(
                    f"market {market_id}: bad fees {taker_fee_bps}/{maker_fee_bps}/{fee_base}"
                )
            market = _Market(
                market_id, tick, min_size, lot, taker_fee_bps, maker_fee_bps, fee_base,
                min_price, max_price,
            )  # fmt: skip
            market.state = state
            market.outcome = outcome
            market.collateral = collateral
            engine._markets[market_id] = market
            engine._levels_used += 2 * _levels_per_side(tick)
            for book_side in market.sides:
                engine._restore_side(reader, market, book_side)
            engine._restore_positions(reader, market)

        if reader.pos != len(data):
            raise ValueError(f"{len(data) - reader.pos} trailing bytes after the state")
        engine._rebuild_expiry_heap()
        engine._count_position_orders()
        try:
            engine.validate()
        except InvariantError as exc:
            raise ValueError(f"inconsistent snapshot: {exc}") from None
        return engine

    def _restore_side(self, reader: _Reader, market: _Market, book_side: _BookSide) -> None:
        name = Side(book_side.side).name
        where = f"market {market.market} {name}"
        (n_levels,) = reader.read(_U32)
        if n_levels > _levels_per_side(market.tick):
            raise ValueError(f"{where}: {n_levels} levels > L(tick)")
        previous: int | None = None
        for _ in range(n_levels):
            price, count, total = reader.read(_LEVEL_REC)
            if not market.price_ok(price):
                raise ValueError(f"{where}: level price {price} off the grid")
            if previous is not None and (
                price >= previous if book_side.side == _BID else price <= previous
            ):
                raise ValueError(f"{where}: level {price} not strictly after {previous}")
            previous = price
            if count == 0:
                raise ValueError(f"{where} level {price}: empty level")
            level = book_side.level_at(price)
            for _ in range(count):
                oid, client_id, account, leaves, expiry, intent, tif, stp, flags = reader.read(
                    _ORDER_REC
                )
                if oid == 0 or oid >= self._next_order_id:
                    raise ValueError(f"{where} level {price}: bad order id {oid}")
                if oid % self._max_orders in self._slots:
                    raise ValueError(f"order {oid}: its slot is taken (id modulo max_orders)")
                if intent > 3 or _SIDE_OF_INTENT[intent] != book_side.side:
                    raise ValueError(f"order {oid}: intent {intent} not on the {name} side")
                if tif not in (_GTC, _GTD) or stp > _LAST_STP or flags & ~_POST_ONLY:
                    raise ValueError(f"order {oid}: bad tif/stp/flags {tif}/{stp}/{flags}")
                if tif != _GTD and expiry != 0:
                    raise ValueError(f"order {oid}: expiry {expiry} on a non-GTD order")
                if client_id and (account, client_id) in self._by_client:
                    raise ValueError(f"order {oid}: duplicate client order id {client_id}")
                order = _Order(
                    oid, account, market.market, intent, price, leaves, tif, expiry,
                    client_id, stp, flags,
                )  # fmt: skip
                if self._ledger:
                    self._price_reservation(market, order)
                level.orders.append(order)
                level.total += leaves
                self._orders[oid] = order
                self._slots[oid % self._max_orders] = oid
                if client_id:
                    self._by_client[(account, client_id)] = oid
            if level.total != total:
                raise ValueError(f"{where} level {price}: total {total} != {level.total}")

    def _restore_positions(self, reader: _Reader, market: _Market) -> None:
        (n_positions,) = reader.read(_U32)
        if n_positions > self._max_positions:
            raise ValueError(f"market {market.market}: {n_positions} positions > max_positions")
        previous = -1
        for _ in range(n_positions):
            account, yes_free, yes_reserved, no_free, no_reserved = reader.read(_POSITION_REC)
            if account <= previous or account >= self._max_accounts:
                raise ValueError(
                    f"market {market.market}: position of account {account} out of order or "
                    f">= max_accounts"
                )
            previous = account
            market.positions[account] = _Position(
                account, yes_free, yes_reserved, no_free, no_reserved
            )
        self._position_count += n_positions

    def _count_position_orders(self) -> None:
        """Restore: count each position's resting orders (its ``orders``)."""
        for o in self._orders.values():
            position = self._markets[o.market].positions.get(o.account)
            if position is not None:
                position.orders += 1

    # ------------------------------------------------------------------
    # Invariants
    # ------------------------------------------------------------------

    def validate(self) -> None:
        """Check every invariant of the state; ``InvariantError`` names the broken one."""

        def fail(message: str) -> None:
            raise InvariantError(message)

        if len(self._orders) > self._max_orders:
            fail(f"{len(self._orders)} resting orders > max_orders {self._max_orders}")
        levels_used = sum(2 * _levels_per_side(m.tick) for m in self._markets.values())
        if levels_used != self._levels_used:
            fail(f"level arena count {self._levels_used} != sum of 2*L(tick) {levels_used}")
        if levels_used > self._max_levels:
            fail(f"level arena usage {levels_used} > max_levels {self._max_levels}")
        for account in self._accounts:
            if not 0 <= account < self._max_accounts:
                fail(f"account {account} >= max_accounts {self._max_accounts}")

        seen: dict[int, _Order] = {}
        for market_id, market in self._markets.items():
            if market.market != market_id or not 0 <= market_id < self._max_markets:
                fail(f"market {market_id}: bad id {market.market} (max {self._max_markets})")
            self._validate_market_fields(market, fail)
            for book_side in market.sides:
                self._validate_side(market, book_side, seen, fail)
            best_bid = market.sides[_BID].best_price()
            best_ask = market.sides[_ASK].best_price()
            crossed = best_bid is not None and best_ask is not None and best_bid >= best_ask
            if crossed and market.state != _PRE_OPEN:  # only an auction's book may cross
                fail(f"market {market_id}: book crossed, best bid {best_bid} >= ask {best_ask}")
            if (market.sides[_BID].prices or market.sides[_ASK].prices) and (
                market.state not in _HOLDS_ORDERS
            ):
                fail(f"market {market_id}: resting orders in state {market.state}")

        if seen.keys() != self._orders.keys():
            extra = sorted(self._orders.keys() - seen.keys())[:5]
            missing = sorted(seen.keys() - self._orders.keys())[:5]
            fail(f"order index != orders in books (not in a book: {extra}, unindexed: {missing})")

        slots = {oid % self._max_orders: oid for oid in self._orders}
        if len(slots) != len(self._orders) or slots != self._slots:
            fail("the slots of resting orders (id modulo max_orders) collide or are misindexed")

        expected_clients = {
            (o.account, o.client_order_id): o.order_id
            for o in self._orders.values()
            if o.client_order_id
        }
        if len(expected_clients) != sum(1 for o in self._orders.values() if o.client_order_id):
            fail("two resting orders of one account share a client order id")
        if expected_clients != self._by_client:
            diff = set(expected_clients.items()) ^ set(self._by_client.items())
            fail(f"client order id index inconsistent: {sorted(diff)[:5]}")

        heap = self._expiry_heap
        for i in range(1, len(heap)):
            if heap[(i - 1) // 2] > heap[i]:
                fail(f"expiry heap property broken at index {i}")
        in_heap = set(heap)
        for o in self._orders.values():
            if o.tif == _GTD:
                if o.expiry <= self._now:
                    fail(f"GTD order {o.order_id} expiry {o.expiry} <= now {self._now}")
                if (o.expiry, o.order_id) not in in_heap:
                    fail(f"GTD order {o.order_id} missing from the expiry set")

        if self._ledger:
            self._validate_ledger(fail)
        else:
            self._validate_no_ledger(fail)

    @staticmethod
    def _validate_market_fields(market: _Market, fail: Callable[[str], None]) -> None:
        """Fee rates and base within the CREATE_MARKET limits; an outcome iff resolved."""
        where = f"market {market.market}"
        if not _fee_ok(market.taker_fee_bps, market.maker_fee_bps, market.fee_base):
            fail(
                f"{where}: bad fees taker {market.taker_fee_bps} maker {market.maker_fee_bps} "
                f"base {market.fee_base}"
            )
        if market.reserve_fee_bps != max(market.taker_fee_bps, market.maker_fee_bps, 0):
            fail(f"{where}: reservation fee rate {market.reserve_fee_bps} is stale")
        if market.state == _RESOLVED:
            if market.outcome not in (_YES, _NO, _HALF):
                fail(f"{where}: resolved with outcome {market.outcome}")
        elif market.outcome != _NO_OUTCOME:
            fail(f"{where}: outcome {market.outcome} in state {market.state}")

    def _validate_side(
        self,
        market: _Market,
        book_side: _BookSide,
        seen: dict[int, _Order],
        fail: Callable[[str], None],
    ) -> None:
        where = f"market {market.market} {Side(book_side.side).name}"
        if book_side.prices != sorted(set(book_side.prices)):
            fail(f"{where}: price list not strictly ascending")
        if set(book_side.prices) != book_side.levels.keys():
            fail(f"{where}: price list != level keys")
        for price, level in book_side.levels.items():
            at = f"{where} level {price}"
            if level.price != price:
                fail(f"{at}: level says price {level.price}")
            if not market.price_ok(price):
                fail(f"{at}: price off the grid of tick {market.tick} or its bounds")
            if not level.orders:
                fail(f"{at}: empty level kept in the book")
            total = sum(o.leaves for o in level.orders)
            if level.total != total:
                fail(f"{at}: total {level.total} != sum of order leaves {total}")
            for o in level.orders:
                self._validate_order(market, book_side, level, o, seen, fail)

    def _validate_order(
        self,
        market: _Market,
        book_side: _BookSide,
        level: _Level,
        o: _Order,
        seen: dict[int, _Order],
        fail: Callable[[str], None],
    ) -> None:
        at = f"order {o.order_id} (market {market.market} level {level.price})"
        if o.order_id in seen:
            fail(f"{at}: appears twice in the books")
        seen[o.order_id] = o
        if self._orders.get(o.order_id) is not o:
            fail(f"{at}: not the order indexed under its id")
        if not 0 < o.order_id < self._next_order_id:
            fail(f"{at}: id not below next_order_id {self._next_order_id}")
        if o.market != market.market or o.price != level.price:
            fail(f"{at}: says market {o.market} price {o.price}")
        if o.intent not in _SIDE_OF_INTENT or _SIDE_OF_INTENT[o.intent] != book_side.side:
            fail(f"{at}: intent {o.intent} does not rest on side {book_side.side}")
        if o.side != book_side.side:
            fail(f"{at}: side {o.side} != book side {book_side.side}")
        if not 0 < o.leaves <= MAX_QUANTITY or o.leaves % market.lot != 0:
            fail(f"{at}: leaves {o.leaves} not a positive multiple of lot {market.lot}")
        if o.account not in self._accounts:
            fail(f"{at}: unknown account {o.account}")
        if o.tif not in (_GTC, _GTD):
            fail(f"{at}: resting with tif {o.tif}")
        if o.tif != _GTD and o.expiry != 0:
            fail(f"{at}: expiry {o.expiry} on a non-GTD order")
        if o.stp > _LAST_STP or o.flags & ~_POST_ONLY:
            fail(f"{at}: bad stp {o.stp} or flags {o.flags}")
        if o.fee_reserve != 0:
            fail(f"{at}: fee reserve {o.fee_reserve} on a resting order")
        lot_reserve = 0
        if self._ledger and _is_buy(o.intent):
            lot_reserve = market.lot_reserve(o.intent, o.price)
        if o.lot_reserve != lot_reserve:
            fail(f"{at}: reserves {o.lot_reserve} per lot, R_lot is {lot_reserve}")

    def _validate_no_ledger(self, fail: Callable[[str], None]) -> None:
        """Without the ledger every cash, collateral, fee and position field is 0 (§6)."""
        if self._net_deposits or self._fees:
            fail(f"no ledger, yet net deposits {self._net_deposits} and fees {self._fees}")
        for account_id, a in self._accounts.items():
            if a.free or a.reserved:
                fail(f"no ledger, yet account {account_id} has cash {a.free}/{a.reserved}")
        for market_id, m in self._markets.items():
            if m.collateral or m.positions:
                fail(
                    f"no ledger, yet market {market_id} has collateral {m.collateral} "
                    f"and {len(m.positions)} positions"
                )
        if self._position_count:
            fail(f"no ledger, yet a position count of {self._position_count}")

    def _validate_ledger(self, fail: Callable[[str], None]) -> None:
        """The invariants of DESIGN.md §3 and docs/matchcore.md §8."""
        # What the resting orders hold: cash per account, shares and orders per position.
        reserved_cash = dict.fromkeys(self._accounts, 0)
        held: dict[tuple[int, int], list[int]] = {}  # (market, account) -> [YES, NO, orders]
        for o in self._orders.values():
            market = self._markets[o.market]
            need = held.setdefault((o.market, o.account), [0, 0, 0])
            need[2] += 1
            if _is_buy(o.intent):
                reserved_cash[o.account] += o.leaves // market.lot * o.lot_reserve
            elif o.intent == _SELL_YES:
                need[0] += o.leaves
            else:
                need[1] += o.leaves

        cash = 0
        for account_id, a in self._accounts.items():
            if a.free < 0 or a.reserved < 0:
                fail(f"account {account_id}: negative cash, free {a.free} reserved {a.reserved}")
            if a.reserved != reserved_cash[account_id]:
                fail(
                    f"account {account_id}: reserved cash {a.reserved} != "
                    f"{reserved_cash[account_id]} its resting buys need"
                )
            cash += a.free + a.reserved

        collateral = positions = 0
        for market_id, market in self._markets.items():
            positions += len(market.positions)
            collateral += market.collateral
            self._validate_positions(market, held, fail)
            if market.state == _RESOLVED and (market.positions or market.collateral):
                fail(
                    f"market {market_id}: resolved with {len(market.positions)} positions "
                    f"and collateral {market.collateral}"
                )
        for market_id, account_id in held:
            if account_id not in self._markets[market_id].positions:
                fail(f"account {account_id} rests orders in market {market_id} but no position")

        if positions != self._position_count:
            fail(f"position count {self._position_count} != {positions} positions held")
        if positions > self._max_positions:
            fail(f"{positions} positions > max_positions {self._max_positions}")
        if self._net_deposits > MAX_TOTAL_CASH:
            fail(f"net deposits {self._net_deposits} > MAX_TOTAL_CASH")
        if cash + collateral + self._fees != self._net_deposits:
            fail(
                f"cash {cash} + collateral {collateral} + fees {self._fees} != "
                f"net deposits {self._net_deposits}"
            )

    def _validate_positions(
        self,
        market: _Market,
        held: dict[tuple[int, int], list[int]],
        fail: Callable[[str], None],
    ) -> None:
        """A market's positions: sound, not stale, reserving what the sells need; its
        YES shares == NO shares == collateral / 10_000."""
        yes_total = no_total = 0
        for account_id, p in market.positions.items():
            at = f"position of account {account_id} in market {market.market}"
            if p.account != account_id or account_id not in self._accounts:
                fail(f"{at}: says account {p.account}, or the account was never added")
            if min(p.yes_free, p.yes_reserved, p.no_free, p.no_reserved) < 0:
                fail(
                    f"{at}: negative shares {p.yes_free}/{p.yes_reserved}/{p.no_free}/"
                    f"{p.no_reserved}"
                )
            yes_reserved, no_reserved, orders = held.get((market.market, account_id), (0, 0, 0))
            if p.yes_reserved != yes_reserved or p.no_reserved != no_reserved:
                fail(
                    f"{at}: reserved YES/NO {p.yes_reserved}/{p.no_reserved} != "
                    f"{yes_reserved}/{no_reserved} its resting sells need"
                )
            if p.orders != orders:
                fail(f"{at}: counts {p.orders} orders, {orders} rest")
            if not orders and not p.holds_shares():
                fail(f"{at}: empty, with no resting order, yet kept")
            yes_total += p.yes_free + p.yes_reserved
            no_total += p.no_free + p.no_reserved
        where = f"market {market.market}"
        if market.collateral < 0 or market.collateral % _PAIR_CASH:
            fail(f"{where}: collateral {market.collateral} not a multiple of {_PAIR_CASH}")
        if not yes_total == no_total == market.collateral // _PAIR_CASH:
            fail(
                f"{where}: YES {yes_total}, NO {no_total}, collateral {market.collateral} "
                f"(pairs {market.collateral // _PAIR_CASH})"
            )


def _capacity_arg(name: str, value: int, high: int) -> int:
    """A constructor capacity: an ``int`` in ``[1, high]``, else ``ValueError`` (§5)."""
    if not isinstance(value, int) or not 1 <= value <= high:
        raise ValueError(f"{name} must be an int in [1, {high}], not {value!r}")
    return value


def _check_commands(commands: object) -> None:
    if not isinstance(commands, np.ndarray) or commands.dtype != COMMAND_DTYPE:
        raise TypeError("process() takes a numpy array of COMMAND_DTYPE")
    if commands.ndim != 1:
        raise ValueError(f"process() takes a 1-D array, got {commands.ndim}-D")


def _check_out(out: object, commands: np.ndarray) -> None:
    """``process_into()``'s ``out``: the errors of the core's."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array, not {type(out).__name__}")
    if out.dtype != EVENT_DTYPE:
        raise TypeError(f"out must have dtype matchcore.EVENT_DTYPE, not {out.dtype}")
    if out.ndim != 1:
        raise ValueError(f"out must be one-dimensional, not {out.ndim}-D")
    if not out.flags.c_contiguous:
        raise ValueError("out must be C-contiguous")
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    if out.ctypes.data % 8:
        raise ValueError("out must be aligned to 8 bytes")
    if np.may_share_memory(out, commands):
        raise ValueError("out must not share memory with commands")


def _event_array(events: list[tuple[int, ...]]) -> np.ndarray:
    if not events:
        return np.zeros(0, dtype=EVENT_DTYPE)
    return np.array(events, dtype=EVENT_DTYPE)


# ADVANCE_TIME has no handler: _run() does its time step and expiry, then returns.
_HANDLERS: dict[int, Callable[[Engine, _Command], int]] = {
    _CMD_NEW_ORDER: Engine._new_order,
    _CMD_CANCEL: Engine._cancel,
    _CMD_CANCEL_CLIENT: Engine._cancel_client,
    _CMD_CANCEL_ALL: Engine._cancel_all,
    _CMD_REPLACE: Engine._replace,
    _CMD_CREATE_MARKET: Engine._create_market,
    _CMD_SET_MARKET_STATE: Engine._set_market_state,
    _CMD_SET_TICK: Engine._set_tick,
    _CMD_ADD_ACCOUNT: Engine._add_account,
    _CMD_DEPOSIT: Engine._deposit,
    _CMD_WITHDRAW: Engine._withdraw,
    _CMD_SPLIT: Engine._split,
    _CMD_MERGE: Engine._merge,
    _CMD_RESOLVE: Engine._resolve,
}
