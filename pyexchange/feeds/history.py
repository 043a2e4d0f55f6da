"""Order history: every order's life, every fill, each account's trading record, from the drop copy.

The engine keeps only what is live (resting orders, balances, positions). A venue
API also answers for what is over: an order that filled or was canceled
(``GET /v1/order/{id}``), the fills of an account (activities), what it bought
and sold in a market, at what cost and with what result (positions). This module
keeps that, in the core's units, for any API to show.

Where it comes from: the drop copy (``dropcopy.py``), the durable record of every
account event keyed by (seq, index) with the command's time. At start the whole
event log is read (in a thread), then live records are applied as the drop copy
hands them to the loop, with no seam: the listener is registered before the read
and what it queues is applied after, skipping what the read had. After a crash
the drop copy rebuilds what its log missed from the journal before any live
event, so the history always matches the journal.

Everything here runs on the asyncio loop (it owns the state; no lock).

The records are msgspec Structs with ``gc=False`` (they hold numbers and other such
records, never a cycle): kept for every order and execution, they would otherwise be
most of what the cyclic GC's full collections scan (6 tracked objects an order, 1 now:
its ``by_order`` list; at a few hundred thousand orders a full collection took 0.1-0.5 s
of the loop: BENCHMARKS.md, venue, "the order history out of the GC's reach").

``applied_seq`` is the last engine seq applied; ``caught_up(seq)`` waits until a
given command is in (an API answering a read after its own write waits for it).

Per order (``OrderRecord``): its intent, time in force, flags, limit price (after
replaces), original quantity (or a buy by cash's budget), filled quantity and
the notional filled (sum of price x quantity, in micro-dollars), fees paid (a
rebate is negative), status and times. A command the engine rejected is an order
too (``rejected_seq``): the venue gives it an id and shows it REJECTED.
Per account: its executions in order (``Execution``: new, fill, canceled, replaced,
rejected, expired), its cash changes, and per market a ``PositionRecord``
(shares of YES and NO, bought and sold on the YES book, cost basis of what is
held, realized result, fees) kept by the average-cost method: a buy adds its
cost, a sale, merge or settlement removes the average cost of what leaves and
realizes the difference with what it brought; a split costs $1 a pair, half on
each side.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from matchcore import (
    EVENT_DTYPE,
    PRICE_SCALE,
    CancelReason,
    CommandType,
    EventType,
    Intent,
    OrderFlags,
)

log = logging.getLogger(__name__)

ONE = PRICE_SCALE  # price units of $1: a pair's value, in price units
BY_CASH = int(OrderFlags.BY_CASH)


class Status(enum.IntEnum):
    NEW = 0
    PARTIALLY_FILLED = 1
    FILLED = 2
    CANCELED = 3
    REJECTED = 4
    EXPIRED = 5


class Kind(enum.IntEnum):
    """What an execution is."""

    NEW = 0
    PARTIAL_FILL = 1
    FILL = 2
    CANCELED = 3
    REPLACED = 4
    REJECTED = 5
    EXPIRED = 6


class OrderRecord(msgspec.Struct, gc=False):
    order_id: int  # the core's id (0 for a rejected command)
    seq: int  # the command that created it (the id of a rejected one)
    account: int
    market: int
    intent: int
    tif: int
    flags: int
    price: int
    quantity: int  # order quantity (0.01 share units); 0 for a buy by cash
    budget: int = 0  # a buy by cash: its budget in micro-dollars
    budget_left: int = 0
    leaves: int = 0
    cum: int = 0
    notional: int = 0  # sum of price x quantity filled: micro-dollars in YES terms
    fees: int = 0
    status: Status = Status.NEW
    reason: int = 0  # the core's Reject or CancelReason
    created_ns: int = 0
    inserted_ns: int = 0
    updated_ns: int = 0
    expiry_ns: int = 0  # GTD: not in the events; set by whoever knows it (the command, the engine)

    @property
    def open(self) -> bool:
        return self.status in (Status.NEW, Status.PARTIALLY_FILLED)


class Execution(msgspec.Struct, gc=False):
    seq: int
    index: int
    time_ns: int
    account: int
    kind: Kind
    order: OrderRecord  # the order as of this execution (a copy)
    last_qty: int = 0
    last_price: int = 0
    fee: int = 0
    taker: bool = False
    reason: int = 0
    counterparty: int = 0  # the other order of a fill
    match_type: int = 0
    command: int = 0  # the CommandType that caused it


class PositionRecord(msgspec.Struct, gc=False):
    account: int
    market: int
    yes: int = 0  # shares held (free and reserved), 0.01 share units
    no: int = 0
    bought: int = 0  # book buys filled (BUY_YES, SELL_NO)
    sold: int = 0  # book sells filled (SELL_YES, BUY_NO)
    yes_cost: int = 0  # cost basis of the YES held, micro-dollars
    no_cost: int = 0
    realized: int = 0  # micro-dollars
    fees: int = 0
    updated_ns: int = 0


class PositionChange(msgspec.Struct, gc=False):
    """A position before and after one event (a fill, a split or merge)."""

    seq: int
    index: int
    time_ns: int
    account: int
    market: int
    before: PositionRecord
    after: PositionRecord
    trade: bool  # a fill (else a split or a merge)


class Trade(msgspec.Struct, gc=False):
    """One fill as the market saw it (for public trade feeds)."""

    seq: int
    index: int
    time_ns: int
    market: int
    price: int
    quantity: int
    taker_intent: int
    maker_intent: int


class CashChange(msgspec.Struct, gc=False):
    seq: int
    index: int
    time_ns: int
    account: int
    amount: int  # micro-dollars, + deposit, - withdrawal
    kind: str  # DEPOSIT | WITHDRAWAL | SETTLEMENT


class Resolution(msgspec.Struct, gc=False):
    seq: int
    index: int
    time_ns: int
    account: int
    market: int
    outcome: int
    paid: int
    before: PositionRecord
    after: PositionRecord


class TradeStats(msgspec.Struct, gc=False):
    """A market's trading so far (every fill, whoever traded)."""

    last_price: int = 0
    last_qty: int = 0
    last_ns: int = 0
    shares: int = 0  # quantity traded, 0.01 share units
    notional: int = 0  # sum of price x quantity, micro-dollars (YES terms)
    high: int = 0
    low: int = 0


# A record's copy (msgspec's, in C: 0.05 us for an OrderRecord; dataclasses.replace took 2.8)
_copy = msgspec.structs.replace


@dataclass
class AccountHistory:
    orders: dict[int, OrderRecord] = field(default_factory=dict)  # by core order id
    rejected: dict[int, OrderRecord] = field(default_factory=dict)  # by seq
    executions: list[Execution] = field(default_factory=list)
    # by core order id (a list per order is the one object of an order the GC tracks:
    # a tuple would not be, but an order filled n times would copy it n times)
    by_order: dict[int, list[Execution]] = field(default_factory=dict)
    positions: dict[int, PositionRecord] = field(default_factory=dict)  # by market
    cash: list[CashChange] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)


Change = Execution | PositionChange | CashChange | Resolution
Listener = Callable[[int, list[Change]], None]

_F = {name: i for i, name in enumerate(EVENT_DTYPE.names or ())}
(_SEQ, _ORDER, _MAKER_ORDER, _QTY, _LEAVES, _MAKER_LEAVES, _FEE, _MAKER_FEE) = (
    _F[n]
    for n in (
        "seq",
        "order_id",
        "maker_order_id",
        "quantity",
        "leaves_qty",
        "maker_leaves_qty",
        "fee",
        "maker_fee",
    )
)
(_ACCOUNT, _MAKER_ACCOUNT, _MARKET, _PRICE, _TYPE, _REASON, _INTENT, _MAKER_INTENT) = (
    _F[n]
    for n in (
        "account",
        "maker_account",
        "market",
        "price",
        "type",
        "reason",
        "intent",
        "maker_intent",
    )
)
_MATCH, _TIF, _FLAGS, _COMMAND = (_F[n] for n in ("match_type", "tif", "flags", "command"))
# Plain ints and module names for what ``_event`` and ``_fill`` test on every event: an
# IntEnum member read from its class and compared costs ~0.1 us each, a dozen an event
_ACCEPTED, _TRADE, _CANCELED, _REPLACED, _REJECTED, _POSITION, _SETTLEMENT, _BALANCE = (
    int(t)
    for t in (
        EventType.ACCEPTED,
        EventType.TRADE,
        EventType.CANCELED,
        EventType.REPLACED,
        EventType.REJECTED,
        EventType.POSITION,
        EventType.SETTLEMENT,
        EventType.BALANCE,
    )
)
_NEW_ORDER, _SPLIT = int(CommandType.NEW_ORDER), int(CommandType.SPLIT)
_EXPIRED_REASON = int(CancelReason.EXPIRED)
_BUY_YES, _SELL_YES, _BUY_NO, _SELL_NO = (int(i) for i in Intent)
_BUYS = (_BUY_YES, _SELL_NO)  # book buys
_YES_TOKEN = (_BUY_YES, _SELL_YES)  # trade the YES token
_PARTIALLY_FILLED, _FILLED = Status.PARTIALLY_FILLED, Status.FILLED
_NEW, _FILL, _PARTIAL_FILL = Kind.NEW, Kind.FILL, Kind.PARTIAL_FILL


class OrderHistory:
    """Orders, executions, positions and cash changes of every account (the asyncio loop)."""

    def __init__(self) -> None:
        self.accounts: dict[int, AccountHistory] = {}
        self.orders: dict[int, OrderRecord] = {}  # every order by core id
        self.trades: dict[int, TradeStats] = {}  # by market
        self.applied_seq = 0
        self._listeners: dict[int | None, list[Listener]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._spending: set[int] = set()  # buys by cash filled in the record being applied
        self._trade_listeners: list[Callable[[list[Trade]], None]] = []
        self._trades: list[Trade] = []
        self.ready = asyncio.Event()

    # ------------------------------------------------------------- feeding

    async def start(self, dropcopy: Any) -> None:
        """Read the drop copy's log, then follow it live (on the loop)."""
        queued: list[Any] = []
        dropcopy.add_listener(queued.append)
        upto = dropcopy.frontier
        loop = asyncio.get_running_loop()
        items = await loop.run_in_executor(None, dropcopy.history, 0, upto)
        for item in items:
            self.apply(item)
        dropcopy.remove_listener(queued.append)
        dropcopy.add_listener(self.apply)
        for item in queued:
            self.apply(item)
        self.ready.set()

    def apply(self, item: Any) -> None:
        """One drop copy log record (LogItem: ``first``, ``last``, ``records``)."""
        if item.last <= self.applied_seq:
            return
        records = item.records
        if len(records):
            if item.first <= self.applied_seq:  # (records come in seq order)
                records = records[records["event"]["seq"] > self.applied_seq]
            changes: dict[int, list[Change]] = {}
            event = self._event
            for e, index, _, time_ns in records.tolist():  # (event, index, _pad, time)
                event(e, index, time_ns, changes)
            if self._spending:
                self._settle()
            self._notify(changes)
            if self._trades:
                trades, self._trades = self._trades, []
                for trade_listener in list(self._trade_listeners):
                    trade_listener(trades)
        self.applied_seq = item.last
        if self._waiters:
            still = []
            for seq, future in self._waiters:
                if seq <= self.applied_seq:
                    if not future.done():
                        future.set_result(None)
                else:
                    still.append((seq, future))
            self._waiters = still

    async def caught_up(self, seq: int, timeout: float = 5.0) -> bool:
        """Wait until the command ``seq`` is applied (False on timeout)."""
        if seq <= self.applied_seq:
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True

    def listen(self, account: int | None, listener: Listener) -> None:
        """``listener(account, changes)`` after each record that changed ``account``
        (None: every account)."""
        self._listeners.setdefault(account, []).append(listener)

    def listen_trades(self, listener: Callable[[list[Trade]], None]) -> None:
        """``listener(trades)`` with the fills of each record applied (every market)."""
        self._trade_listeners.append(listener)

    def unlisten_trades(self, listener: Callable[[list[Trade]], None]) -> None:
        if listener in self._trade_listeners:
            self._trade_listeners.remove(listener)

    def unlisten(self, account: int | None, listener: Listener) -> None:
        listeners = self._listeners.get(account, [])
        if listener in listeners:
            listeners.remove(listener)

    def _notify(self, changes: dict[int, list[Change]]) -> None:
        everyone = self._listeners.get(None, ())
        for account, mine in changes.items():
            for listener in (*self._listeners.get(account, ()), *everyone):
                try:
                    listener(account, mine)
                except Exception:  # a listener's failure is its own: the history goes on
                    log.exception("order history listener failed")

    # --------------------------------------------------------------- reads

    def account(self, account: int) -> AccountHistory:
        history = self.accounts.get(account)
        if history is None:
            history = self.accounts[account] = AccountHistory()
        return history

    def order(self, order_id: int) -> OrderRecord | None:
        return self.orders.get(order_id)

    def rejected(self, account: int, seq: int) -> OrderRecord | None:
        history = self.accounts.get(account)
        return None if history is None else history.rejected.get(seq)

    # ------------------------------------------------------------- events

    def _position(self, account: int, market: int) -> PositionRecord:
        positions = self.account(account).positions
        position = positions.get(market)
        if position is None:
            position = positions[market] = PositionRecord(account, market)
        return position

    def _execution(self, changes: dict[int, list[Change]], execution: Execution) -> None:
        """Keep an execution (built with its fields in order: keywords cost ~1 us more)."""
        account = execution.account
        history = self.accounts.get(account) or self.account(account)
        history.executions.append(execution)
        order_id = execution.order.order_id
        if order_id:
            mine = history.by_order.get(order_id)
            if mine is None:
                history.by_order[order_id] = [execution]
            else:
                mine.append(execution)
        pending = changes.get(account)
        if pending is None:
            changes[account] = [execution]
        else:
            pending.append(execution)

    def _event(
        self, e: tuple[Any, ...], index: int, time_ns: int, changes: dict[int, list[Change]]
    ) -> None:
        kind = e[_TYPE]
        seq = e[_SEQ]
        order: OrderRecord | None
        if kind == _ACCEPTED:
            by_cash = bool(e[_FLAGS] & BY_CASH)
            order = OrderRecord(
                e[_ORDER],
                seq,
                e[_ACCOUNT],
                e[_MARKET],
                e[_INTENT],
                e[_TIF],
                e[_FLAGS],
                e[_PRICE],
                0 if by_cash else e[_QTY],
                e[_QTY] if by_cash else 0,
                leaves=e[_LEAVES],
                created_ns=time_ns,
                inserted_ns=time_ns,
                updated_ns=time_ns,
            )
            self.orders[order.order_id] = order
            (self.accounts.get(order.account) or self.account(order.account)).orders[
                order.order_id
            ] = order
            self._execution(
                changes,
                Execution(
                    seq, index, time_ns, order.account, _NEW, _copy(order), command=e[_COMMAND]
                ),
            )
        elif kind == _TRADE:
            stats = self.trades.get(e[_MARKET])
            if stats is None:
                stats = self.trades[e[_MARKET]] = TradeStats(high=e[_PRICE], low=e[_PRICE])
            stats.last_price, stats.last_qty, stats.last_ns = e[_PRICE], e[_QTY], time_ns
            stats.shares += e[_QTY]
            stats.notional += e[_PRICE] * e[_QTY]
            stats.high = max(stats.high, e[_PRICE])
            stats.low = min(stats.low, e[_PRICE])
            if self._trade_listeners:
                self._trades.append(
                    Trade(seq, index, time_ns, e[_MARKET], e[_PRICE], e[_QTY], e[_INTENT],
                          e[_MAKER_INTENT])
                )  # fmt: skip
            self._fill(e, True, index, time_ns, changes)
            self._fill(e, False, index, time_ns, changes)
        elif kind == _CANCELED:
            order = self.orders.get(e[_ORDER])
            if order is None:
                return
            expired = e[_REASON] == _EXPIRED_REASON
            order.status = Status.EXPIRED if expired else Status.CANCELED
            order.reason = e[_REASON]
            order.leaves = 0
            order.updated_ns = time_ns
            self._execution(
                changes,
                Execution(
                    seq, index, time_ns, order.account,
                    Kind.EXPIRED if expired else Kind.CANCELED, _copy(order),
                    last_qty=e[_QTY], reason=e[_REASON], command=e[_COMMAND],
                ),
            )  # fmt: skip
        elif kind == _REPLACED:
            order = self.orders.get(e[_ORDER])
            if order is None:
                return
            order.price = e[_PRICE]
            order.leaves = e[_LEAVES]
            order.quantity = order.cum + order.leaves
            order.inserted_ns = order.updated_ns = time_ns
            self._execution(
                changes,
                Execution(
                    seq, index, time_ns, order.account, Kind.REPLACED, _copy(order),
                    command=e[_COMMAND],
                ),
            )  # fmt: skip
        elif kind == _REJECTED:
            if e[_COMMAND] != _NEW_ORDER:
                return  # a refused cancel or replace changes no order
            order = OrderRecord(
                0, seq, e[_ACCOUNT], e[_MARKET], 0, 0, 0, 0, 0,
                status=Status.REJECTED,
                reason=e[_REASON],
                created_ns=time_ns,
                inserted_ns=time_ns,
                updated_ns=time_ns,
            )  # fmt: skip
            self.account(order.account).rejected[seq] = order
            self._execution(
                changes,
                Execution(
                    seq, index, time_ns, order.account, Kind.REJECTED, _copy(order),
                    reason=e[_REASON], command=e[_COMMAND],
                ),
            )  # fmt: skip
        elif kind == _POSITION:  # split (+) or merge (-) of pairs
            position = self._position(e[_ACCOUNT], e[_MARKET])
            before = _copy(position)
            pairs = e[_QTY]
            if e[_COMMAND] == _SPLIT:
                position.yes += pairs
                position.no += pairs
                position.yes_cost += pairs * ONE // 2
                position.no_cost += pairs * ONE - pairs * ONE // 2
            else:
                cost = _take(position, True, pairs) + _take(position, False, pairs)
                position.realized += pairs * ONE - cost
            position.updated_ns = time_ns
            change = PositionChange(
                seq, index, time_ns, position.account, position.market, before,
                _copy(position), False,
            )  # fmt: skip
            changes.setdefault(position.account, []).append(change)
        elif kind == _SETTLEMENT:
            position = self._position(e[_ACCOUNT], e[_MARKET])
            before = _copy(position)
            cost = _take(position, True, e[_LEAVES]) + _take(position, False, e[_MAKER_LEAVES])
            position.realized += e[_QTY] - cost
            position.updated_ns = time_ns
            resolution = Resolution(
                seq, index, time_ns, position.account, position.market, e[_REASON], e[_QTY],
                before, _copy(position),
            )  # fmt: skip
            history = self.account(position.account)
            history.resolutions.append(resolution)
            changes.setdefault(position.account, []).append(resolution)
        elif kind == _BALANCE:
            cash = CashChange(
                seq,
                index,
                time_ns,
                e[_ACCOUNT],
                e[_QTY],
                "DEPOSIT" if e[_QTY] > 0 else "WITHDRAWAL",
            )
            self.account(cash.account).cash.append(cash)
            changes.setdefault(cash.account, []).append(cash)

    def _settle(self) -> None:
        """A buy by cash whose command ended without canceling it spent its budget: FILLED
        (a record holds whole commands, so its command is over)."""
        for order_id in self._spending:
            order = self.orders[order_id]
            if order.status == Status.PARTIALLY_FILLED:
                order.status = Status.FILLED
                history = self.accounts[order.account]
                for execution in reversed(history.executions):
                    if execution.order.order_id == order_id:
                        execution.kind = Kind.FILL
                        execution.order.status = Status.FILLED
                        break
        self._spending.clear()

    def _fill(
        self,
        e: tuple[Any, ...],
        taker: bool,
        index: int,
        time_ns: int,
        changes: dict[int, list[Change]],
    ) -> None:
        order_id = e[_ORDER] if taker else e[_MAKER_ORDER]
        order = self.orders.get(order_id)
        if order is None:
            return
        price, qty = e[_PRICE], e[_QTY]
        fee = e[_FEE] if taker else e[_MAKER_FEE]
        order.cum += qty
        order.notional += price * qty
        order.fees += fee
        if order.budget:  # a buy by cash never rests: what it has left is a budget
            order.budget_left = e[_LEAVES]
            order.status = _PARTIALLY_FILLED  # FILLED once its command is over: _settle
            self._spending.add(order.order_id)
        else:
            order.leaves = e[_LEAVES] if taker else e[_MAKER_LEAVES]
            order.status = _PARTIALLY_FILLED if order.leaves else _FILLED
        order.updated_ns = time_ns
        account = order.account
        history = self.accounts.get(account) or self.account(account)
        position = history.positions.get(order.market) or self._position(account, order.market)
        before = _copy(position)
        intent = order.intent
        token_price = price if intent in _YES_TOKEN else ONE - price
        if intent in _BUYS:
            position.bought += qty
        else:
            position.sold += qty
        if intent == _BUY_YES:  # shares in, cost up
            position.yes += qty
            position.yes_cost += token_price * qty
        elif intent == _BUY_NO:
            position.no += qty
            position.no_cost += token_price * qty
        else:  # shares out at token_price: realize against their average cost
            cost = _take(position, intent == _SELL_YES, qty)
            position.realized += token_price * qty - cost
        position.fees += fee
        position.realized -= fee
        position.updated_ns = time_ns
        seq = e[_SEQ]
        self._execution(
            changes,
            Execution(
                seq, index, time_ns, account,
                _FILL if order.status == _FILLED else _PARTIAL_FILL, _copy(order),
                qty, price, fee, taker, 0, e[_MAKER_ORDER] if taker else e[_ORDER], e[_MATCH],
                e[_COMMAND],
            ),
        )  # fmt: skip
        changes[account].append(
            PositionChange(
                seq, index, time_ns, account, order.market, before, _copy(position), True
            )
        )


def _take(position: PositionRecord, yes: bool, qty: int) -> int:
    """Remove ``qty`` shares of one side at their average cost; that cost."""
    held = position.yes if yes else position.no
    cost = position.yes_cost if yes else position.no_cost
    if qty <= 0:
        return 0
    share = cost * min(qty, held) // held if held > 0 else 0
    if yes:
        position.yes = held - qty
        position.yes_cost = cost - share
    else:
        position.no = held - qty
        position.no_cost = cost - share
    return share
