"""Order entry without a transport: requests in, command records to the engine, replies out.

Requests (``Place``, ``Cancel``, ``CancelByClientId``, ``CancelAll``,
``Replace``) carry prices, quantities and cash either as decimal strings
(``"0.57"``, parsed by ``units.decimal_parts``: exact or refused) or as whole
numbers of the core's units; codes (intent, time in force, self-trade
prevention) are ``matchcore``'s. What cannot be converted, or names an
account the key may not use, is refused at once with a ``ServiceError``
(``Invalid``, ``Forbidden``...): it never reaches the journal. What converts is
one COMMAND_DTYPE record; what the engine then decides (a reject included) is
an ``OrderReply``.

Replies. ``status``: ``REJECTED`` (``reject_reason`` is the ``Reject`` name,
``message`` a sentence), ``RESTING`` (on the book, possibly partly filled),
``FILLED``, ``PARTIALLY_FILLED`` (it traded ``filled_quantity`` and its
remainder was then canceled: an IOC or market order, self-trade prevention;
``cancel_reason`` says why), ``CANCELED`` (canceled with nothing traded, or a
cancel request: ``canceled_count`` orders). Prices, quantities, fees and cash
are in units; each API formats them.

Two rules hold whatever the transport:
- a cancel or replace naming another account's order is answered exactly as
  one naming an unknown order (``UNKNOWN_ORDER``): the caller learns nothing
  of other accounts' ids;
- ``CancelAll(market=None)`` means every market of the account; a number, the
  engine's "all markets" sentinel included, names one market (an unknown one is
  ``UNKNOWN_MARKET``).

``OrderEntry.call(key, request)`` is one request (a unary API call);
``OrderEntry.submit(key, requests, done)`` checks and converts many (a stream
message, a batch), queues every command that passed as one submission and
calls ``done(results)`` once, on the loop, with one ``OrderReply`` or
``ServiceError`` per request in request order: every request is answered.
"""

from __future__ import annotations

import enum
import logging
import struct
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import numpy as np

from matchcore import (
    ALL_MARKETS,
    COMMAND_DTYPE,
    PRICE_SCALE,
    CancelReason,
    CommandType,
    EventType,
    Intent,
    MatchType,
    OrderFlags,
    Reject,
    Stp,
    TimeInForce,
)

from ..engine import records
from ..feeds.updates import shown_reject
from ..units import (
    UnitError,
    check_cash,
    check_price,
    check_quantity,
    format_cash,
    format_quantity,
    parse_cash,
    parse_price,
    parse_quantity,
)
from .auth import ApiKey, Authenticator, check_account
from .errors import Internal, Invalid, ServiceError
from .link import Answer, EngineLink
from .markets import Markets
from .messages import CANCEL_MESSAGES, cancel_text, reject_text

log = logging.getLogger(__name__)

U32 = 0xFFFF_FFFF
U64 = 0xFFFF_FFFF_FFFF_FFFF
I64 = 0x7FFF_FFFF_FFFF_FFFF

# ---------------------------------------------------------------- requests

Value = str | int  # a decimal string, or whole units of the core


class Place(msgspec.Struct, kw_only=True):
    """A new order. ``price`` is the limit (a market order's worst-price bound);
    ``quantity`` in shares, or ``cash`` (a market buy spending at most that)."""

    account: int
    market: int
    intent: int | None  # matchcore.Intent; None: missing
    price: Value = ""
    quantity: Value = ""
    cash: Value = ""
    tif: int | None = None  # matchcore.TimeInForce; None: GTC, IOC for a market order
    expire_time_ns: int = 0  # GTD: engine time (Unix ns)
    stp: int = Stp.REJECT_AGGRESSOR
    post_only: bool = False
    market_order: bool = False
    client_order_id: int = 0
    # a market order whose worst price the engine derives (docs/matchcore.md §4, the venue's
    # market orders): (ticks, bps, current price or 0: the best opposite one); ``price`` is
    # then the bound when no tolerance is given (0: the market's), and an order that would
    # fill nothing is rejected (NO_LIQUIDITY)
    slippage: tuple[int, int, int] | None = None
    # False: a value off the market's grid or range is refused here (``Invalid``, never
    # journaled). True: ``price``, ``quantity`` / ``cash`` are whole units as the API
    # normalized them, and what is off the market's rules is the engine's reject, journaled
    # and answered (the venue API: an order REJECTED with a reason, spec §3.7)
    engine_judges: bool = False


class Cancel(msgspec.Struct, kw_only=True):
    account: int
    order_id: int


class CancelByClientId(msgspec.Struct, kw_only=True):
    account: int
    client_order_id: int


class CancelAll(msgspec.Struct, kw_only=True):
    account: int
    market: int | None = None  # None: every market


class Replace(msgspec.Struct, kw_only=True):
    """A new price and/or remaining quantity; it names no market, so the values are
    converted on the finest grid and the engine rejects what is off the order's."""

    account: int
    order_id: int
    price: Value = ""
    quantity: Value = ""


Request = Place | Cancel | CancelByClientId | CancelAll | Replace

# ----------------------------------------------------------------- replies


class OrderStatus(enum.IntEnum):
    REJECTED = 1
    RESTING = 2
    FILLED = 3
    CANCELED = 4
    PARTIALLY_FILLED = 5


class Fill(msgspec.Struct, frozen=True):
    """One trade of the caller's order (it was the taker): units, the caller's fee."""

    maker_order_id: int
    taker_order_id: int
    price: int
    quantity: int
    fee: int  # cash units; negative: a rebate
    match_type: str


class OrderReply(msgspec.Struct):
    status: OrderStatus
    seq: int = 0  # the command's journal seq (0: not journaled)
    order_id: int = 0
    client_order_id: int = 0
    reject_reason: str = ""
    message: str = ""
    filled_quantity: int | None = None  # None: not an order (a reject, a cancel)
    leaves_quantity: int | None = None  # what rests; 0 for a cancel
    fills: list[Fill] = msgspec.field(default_factory=list)
    cancel_reason: str = ""
    canceled_count: int = 0


Result = OrderReply | ServiceError

# --------------------------------------------------------- checks, records

INTENTS = frozenset(int(i) for i in Intent)
TIFS = frozenset(int(t) for t in TimeInForce)
STPS = frozenset(int(s) for s in Stp)

# COMMAND_DTYPE field positions of a record tuple
_FIELDS = {name: i for i, name in enumerate(COMMAND_DTYPE.names or ())}
_C_TYPE, _C_ACCOUNT = _FIELDS["type"], _FIELDS["account"]
_C_ORDER, _C_CLIENT = _FIELDS["order_id"], _FIELDS["client_order_id"]
_WIDTH = len(_FIELDS)
_ZERO = (0,) * _WIDTH
assert COMMAND_DTYPE.names == (
    "seq", "time", "order_id", "client_order_id", "quantity", "expiry", "aux", "account",
    "market", "price", "type", "intent", "tif", "stp", "flags", "arg", "taker_fee_bps",
    "maker_fee_bps", "fee_base", "_pad",
)  # fmt: skip

LABELS: dict[int, str] = {
    CommandType.NEW_ORDER: "place",
    CommandType.CANCEL: "cancel",
    CommandType.CANCEL_CLIENT: "cancel",
    CommandType.CANCEL_ALL: "cancel_all",
    CommandType.REPLACE: "replace",
}


def _packer(dtype: np.dtype) -> struct.Struct:
    """A struct of ``dtype``'s fields in order, without padding (checked against the dtype)."""
    codes = {"u1": "B", "i2": "h", "u4": "I", "i4": "i", "u8": "Q", "i8": "q"}
    spec = dtype.fields
    assert spec is not None and dtype.names is not None
    fields = [spec[name] for name in dtype.names]
    packer = struct.Struct("<" + "".join(codes[f[0].str[1:]] for f in fields))
    offsets = [f[1] for f in fields]
    sizes = [f[0].itemsize for f in fields]
    if packer.size != dtype.itemsize or offsets != [sum(sizes[:i]) for i in range(len(sizes))]:
        raise ImportError(f"{dtype} is not a packed little-endian record")
    return packer


_PACK = _packer(COMMAND_DTYPE).pack


def records_array(rows: Sequence[tuple[int, ...]]) -> np.ndarray:
    """Record tuples as a COMMAND_DTYPE array: packed by ``struct`` and read by numpy in
    one piece (for 50 rows 7.5 us against 24.6 for ``np.array(rows, COMMAND_DTYPE)``,
    which converts field by field); the same bytes (``tests/test_service_layer.py``)."""
    return np.frombuffer(bytearray(b"".join([_PACK(*row) for row in rows])), COMMAND_DTYPE)


def record(kind: int, **fields: int) -> tuple[int, ...]:
    """A COMMAND_DTYPE record as a tuple (``records_array()`` takes a list of them)."""
    row = list(_ZERO)
    row[_FIELDS["type"]] = kind
    for name, value in fields.items():
        row[_FIELDS[name]] = value
    return tuple(row)


def _whole(value: Any, what: str, limit: int) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise Invalid(f"{what} must be a whole number from 0 to {limit}", "INVALID_ARGUMENT")
    return value


def _code(value: Any, allowed: frozenset[int], what: str) -> int:
    if type(value) is int and value in allowed:  # the usual case, without the conversions
        return value
    if type(value) is not int and not isinstance(value, enum.IntEnum):
        raise Invalid(f"{what} must be a code", "INVALID_ARGUMENT")
    if int(value) not in allowed:
        raise Invalid(f"unknown {what} value {int(value)}", "INVALID_ARGUMENT")
    return int(value)


def _absent(value: Any) -> bool:
    return value is None or value == "" or (type(value) is int and value == 0)


def _units(value: Any, parse: Callable[..., int], check: Callable[..., int], *grid: int) -> int:
    if isinstance(value, str):
        return parse(value, *grid)
    if type(value) is int:
        return check(value, *grid)
    raise UnitError("a value must be a decimal string or a whole number of units")


def _price(value: Any, tick: int) -> int:
    try:
        if type(value) is str:  # the usual case, a call shorter
            return parse_price(value, tick)
        return _units(value, parse_price, check_price, tick)
    except UnitError as exc:
        raise Invalid(str(exc), "INVALID_PRICE") from None


def _quantity(value: Any, lot: int) -> int:
    try:
        if type(value) is str:
            return parse_quantity(value, lot)
        return _units(value, parse_quantity, check_quantity, lot)
    except UnitError as exc:
        raise Invalid(str(exc), "INVALID_QUANTITY") from None


def _cash(value: Any) -> int:
    try:
        return _units(value, parse_cash, check_cash)
    except UnitError as exc:
        raise Invalid(str(exc), "INVALID_AMOUNT") from None


def place_record(r: Place, markets: Markets) -> tuple[int, ...]:
    """The NEW_ORDER record of a request, or ``Invalid`` saying what is wrong."""
    account = _whole(r.account, "account", U32)
    market = _whole(r.market, "market", U32)
    if r.intent is None:
        raise Invalid("intent is required (BUY_YES, SELL_YES, BUY_NO or SELL_NO)", "MISSING_INTENT")
    intent = _code(r.intent, INTENTS, "intent")
    stp = _code(r.stp, STPS, "self_trade_prevention")
    tif = r.tif
    if tif is None:
        tif = _IOC if r.market_order else _GTC
    tif = _code(tif, TIFS, "time_in_force")
    tick, lot = markets.grid(market)
    flags = 0
    if r.post_only:
        flags |= _POST_ONLY
    if r.market_order:
        flags |= _MARKET
    aux = 0
    if r.slippage is not None:
        if not r.market_order:
            raise Invalid("a slippage tolerance is for market orders only", "INVALID_ARGUMENT")
        ticks, bps, current = r.slippage
        aux = (
            _whole(ticks, "slippage ticks", U32)
            | _whole(bps, "slippage bps", 10_000) << 32
            | _whole(current, "slippage current price", PRICE_SCALE) << 48
        )
        flags |= _SLIPPAGE
    if r.engine_judges:
        price = _whole(r.price, "price", PRICE_SCALE)
        by_cash = r.cash != ""
        quantity = _whole(r.cash if by_cash else r.quantity, "quantity", I64)
    else:
        no_price = _absent(r.price)
        if no_price and r.slippage is None:
            raise Invalid(
                "price is required (the limit, or a market order's worst-price bound)"
                if not r.market_order
                else "a market order needs a worst-price bound in price",
                "MISSING_PRICE",
            )
        price = 0 if no_price else _price(r.price, tick)
        by_cash = not _absent(r.cash)
        if by_cash:
            if not _absent(r.quantity):
                raise Invalid("give quantity or cash, not both", "INVALID_ARGUMENT")
            quantity = _cash(r.cash)
        else:
            if _absent(r.quantity):
                raise Invalid("quantity is required (or cash for a market buy)", "MISSING_QUANTITY")
            quantity = _quantity(r.quantity, lot)
    if by_cash:
        if not r.market_order:
            raise Invalid("cash (spend at most $X) is for market buys only", "INVALID_ARGUMENT")
        flags |= _BY_CASH
    expiry = r.expire_time_ns
    if type(expiry) is not int or not -I64 <= expiry <= I64:
        raise Invalid("expire_time_ns must be a whole number of nanoseconds", "INVALID_EXPIRY")
    if tif == _GTD and expiry <= 0:
        raise Invalid("a GTD order needs expire_time_ns (engine time, Unix ns)", "INVALID_EXPIRY")
    client = _whole(r.client_order_id, "client_order_id", U64)
    # the record in COMMAND_DTYPE's field order (checked below): the hot path skips record()
    return (0, 0, 0, client, quantity, expiry, aux, account, market, price, _NEW_ORDER,
            intent, tif, stp, flags, 0, 0, 0, 0, 0)  # fmt: skip


def cancel_record(r: Cancel) -> tuple[int, ...]:
    account = _whole(r.account, "account", U32)
    if _absent(r.order_id):
        raise Invalid("order_id is required", "MISSING_ORDER_ID")
    order_id = _whole(r.order_id, "order_id", U64)
    # tuples in COMMAND_DTYPE's field order, as place_record: record()'s keywords cost ~0.4 us
    return (0, 0, order_id, 0, 0, 0, 0, account, 0, 0, _CANCEL, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def cancel_client_record(r: CancelByClientId) -> tuple[int, ...]:
    account = _whole(r.account, "account", U32)
    if _absent(r.client_order_id):
        raise Invalid("client_order_id is required", "MISSING_CLIENT_ORDER_ID")
    client = _whole(r.client_order_id, "client_order_id", U64)
    return (0, 0, 0, client, 0, 0, 0, account, 0, 0, _CANCEL_CLIENT, 0, 0, 0, 0, 0, 0, 0, 0, 0)


def cancel_all_record(r: CancelAll) -> tuple[int, ...] | OrderReply:
    """The CANCEL_ALL record, or the reply at once for the "all markets" sentinel given as a
    market number (it names no market; only an absent market means all)."""
    account = _whole(r.account, "account", U32)
    if r.market is None:
        return record(CommandType.CANCEL_ALL, account=account, market=ALL_MARKETS)
    market = _whole(r.market, "market", U32)
    if market == ALL_MARKETS:
        name, message = reject_text(Reject.UNKNOWN_MARKET)
        return OrderReply(OrderStatus.REJECTED, reject_reason=name, message=message)
    return record(CommandType.CANCEL_ALL, account=account, market=market)


def replace_record(r: Replace) -> tuple[int, ...]:
    """A REPLACE record, converted on the finest grid (exact to $0.0001 and 0.01 share);
    the engine rejects what is off the order's market grid."""
    account = _whole(r.account, "account", U32)
    if _absent(r.order_id):
        raise Invalid("order_id is required", "MISSING_ORDER_ID")
    order_id = _whole(r.order_id, "order_id", U64)
    if _absent(r.price) and _absent(r.quantity):
        raise Invalid("give a new price, a new quantity, or both", "INVALID_ARGUMENT")
    price = 0 if _absent(r.price) else _price(r.price, 1)
    quantity = 0 if _absent(r.quantity) else _quantity(r.quantity, 1)
    return (0, 0, order_id, 0, quantity, 0, 0, account, 0, price, _REPLACE, 0, 0, 0, 0, 0, 0, 0,
            0, 0)  # fmt: skip


def command_record(request: Request, markets: Markets) -> tuple[int, ...] | OrderReply:
    """The record of any order-entry request (or its reply at once), or ``Invalid``."""
    kind = type(request)
    if kind is Place:
        return place_record(request, markets)  # type: ignore[arg-type]
    if kind is Cancel:
        return cancel_record(request)  # type: ignore[arg-type]
    if kind is CancelByClientId:
        return cancel_client_record(request)  # type: ignore[arg-type]
    if kind is CancelAll:
        return cancel_all_record(request)  # type: ignore[arg-type]
    if kind is Replace:
        return replace_record(request)  # type: ignore[arg-type]
    raise Invalid(f"not an order-entry request: {kind.__name__}", "INVALID_ARGUMENT")


# ------------------------------------------------------------ events -> reply

# The event fields a reply reads, in the order of the tuples ``order_reply`` takes
# (``records.tuples``, ``Answer.rows``): half of EVENT_DTYPE's, so half the conversions.
REPLY_FIELDS = (
    "type", "reason", "order_id", "account", "maker_order_id", "price", "quantity",
    "leaves_qty", "fee", "match_type", "seq", "flags",
)  # fmt: skip
(_TYPE, _REASON, _ORDER, _ACCOUNT, _MAKER, _PRICE, _QTY, _LEAVES, _FEE, _MATCH, _SEQ,
 _FLAGS) = range(len(REPLY_FIELDS))  # fmt: skip
_MATCH_NAMES = {int(m): m.name for m in MatchType}
# Enum members as ints for the per-order paths: reading an IntEnum member off its class
# costs about 120 ns more than an int (EnumType.__getattr__), an int & a Flag a microsecond.
_NEW_ORDER, _CANCEL, _CANCEL_CLIENT, _CANCEL_ALL, _REPLACE = (
    int(c)
    for c in (
        CommandType.NEW_ORDER,
        CommandType.CANCEL,
        CommandType.CANCEL_CLIENT,
        CommandType.CANCEL_ALL,
        CommandType.REPLACE,
    )
)
_REJECTED, _CANCELED, _ACCEPTED, _REPLACED, _TRADE = (
    int(t)
    for t in (
        EventType.REJECTED,
        EventType.CANCELED,
        EventType.ACCEPTED,
        EventType.REPLACED,
        EventType.TRADE,
    )
)
_USER, _USER_NAME = int(CancelReason.USER), CancelReason.USER.name
_USER_MESSAGE = CANCEL_MESSAGES[CancelReason.USER]
_IOC, _GTC, _GTD = (int(t) for t in (TimeInForce.IOC, TimeInForce.GTC, TimeInForce.GTD))
_POST_ONLY, _MARKET, _SLIPPAGE, _BY_CASH = (
    int(f)
    for f in (OrderFlags.POST_ONLY, OrderFlags.MARKET, OrderFlags.SLIPPAGE, OrderFlags.BY_CASH)
)
_HIDDEN_OWNER = frozenset((_CANCEL, _REPLACE))
_CANCELS = frozenset((_CANCEL, _CANCEL_CLIENT, _CANCEL_ALL))


# the statuses as module names: reading a member off its Enum class costs ~120 ns
_ST_REJECTED, _ST_RESTING, _ST_FILLED, _ST_CANCELED, _ST_PARTIAL = (
    OrderStatus.REJECTED,
    OrderStatus.RESTING,
    OrderStatus.FILLED,
    OrderStatus.CANCELED,
    OrderStatus.PARTIALLY_FILLED,
)


def order_reply(command: tuple[int, ...], rows: Sequence[tuple[Any, ...]]) -> OrderReply:
    """The reply to one order-entry command from its events (tuples of ``REPLY_FIELDS``)."""
    kind = command[_C_TYPE]
    account = command[_C_ACCOUNT]
    reply = OrderReply(_ST_REJECTED)
    if rows:
        reply.seq = rows[0][_SEQ]
    if kind in (_NEW_ORDER, _CANCEL_CLIENT):
        reply.client_order_id = command[_C_CLIENT]
    if kind in _HIDDEN_OWNER:
        reply.order_id = command[_C_ORDER]
    for e in rows:
        if e[_TYPE] == _REJECTED:  # at most one per command, and then nothing else
            reply.reject_reason, reply.message = reject_text(shown_reject(kind, e[_REASON]))
            return reply

    if kind in _CANCELS:
        canceled = [
            e
            for e in rows
            if e[_TYPE] == _CANCELED and e[_ACCOUNT] == account and e[_REASON] == _USER
        ]
        reply.status = _ST_CANCELED
        reply.canceled_count = len(canceled)
        reply.cancel_reason = _USER_NAME
        reply.leaves_quantity = 0
        if kind != _CANCEL_ALL and canceled:
            reply.order_id = canceled[0][_ORDER]
            reply.message = _USER_MESSAGE
        else:
            reply.message = f"{len(canceled)} order(s) canceled"
        return reply

    order_id = reply.order_id
    leaves = 0
    by_cash = False
    for e in rows:
        t = e[_TYPE]
        if kind == _NEW_ORDER and t == _ACCEPTED and not order_id:
            order_id = e[_ORDER]
            leaves = e[_LEAVES]
            by_cash = bool(e[_FLAGS] & _BY_CASH)
        elif kind == _REPLACE and t == _REPLACED and e[_ORDER] == order_id:
            leaves = e[_LEAVES]
    reply.order_id = order_id
    filled = 0
    canceled_event = None
    fills = reply.fills
    for e in rows:
        if e[_ORDER] != order_id or not order_id:
            continue
        t = e[_TYPE]
        if t == _TRADE:
            fills.append(
                Fill(
                    e[_MAKER],
                    order_id,
                    e[_PRICE],
                    e[_QTY],
                    e[_FEE],
                    _MATCH_NAMES.get(e[_MATCH], str(e[_MATCH])),
                )
            )
            filled += e[_QTY]
            leaves = e[_LEAVES]
        elif t == _CANCELED:
            canceled_event = e
    reply.filled_quantity = filled
    if by_cash:
        leaves = 0  # a buy by cash never rests; its leaves are a budget, not shares
    if canceled_event is not None:
        reply.status = _ST_PARTIAL if filled else _ST_CANCELED
        reply.cancel_reason, reason_text = cancel_text(canceled_event[_REASON])
        if by_cash:
            reason_text = (
                f"unspent budget ${format_cash(canceled_event[_QTY])} released ({reason_text})"
            )
        elif filled:
            reason_text = (
                f"filled {format_quantity(filled)}; the remaining "
                f"{format_quantity(canceled_event[_QTY])} canceled ({reason_text})"
            )
        reply.message = reason_text
        leaves = 0
    elif leaves == 0:
        reply.status = _ST_FILLED
    else:
        reply.status = _ST_RESTING
    reply.leaves_quantity = leaves
    return reply


# ------------------------------------------------------------------ service


class OrderEntry:
    """Order entry for any API: ``call`` one request, ``submit`` many at once."""

    def __init__(self, link: EngineLink, authenticator: Authenticator | None = None) -> None:
        self.link = link
        self.markets = link.markets
        self.authenticator = authenticator  # charges stream messages to the key's bucket

    async def call(self, key: ApiKey, request: Request) -> OrderReply:
        """One request (its rate-limit token already taken): its reply, or a ``ServiceError``."""
        check_account(key, getattr(request, "account", None))
        item = command_record(request, self.markets)
        if isinstance(item, OrderReply):
            return item
        commands = records_array([item])
        events = await self.link.run(commands, LABELS[item[_C_TYPE]])
        return order_reply(item, records.tuples(events, REPLY_FIELDS))

    def submit(
        self,
        key: ApiKey,
        requests: Sequence[Request | ServiceError],
        done: Callable[[list[Result]], None],
        *,
        charge: bool = True,
    ) -> None:
        """Check and convert each request (a ``ServiceError`` in ``requests`` stands for one
        that could not be read), queue what passed as one submission, in order, and call
        ``done`` once with a result per request. ``charge``: a rate-limit token each."""
        results: list[Any] = [None] * len(requests)
        rows: list[tuple[int, ...]] = []
        slots: list[int] = []
        markets = self.markets
        authenticator = self.authenticator if charge else None
        if authenticator is not None:
            readable = sum(1 for r in requests if not isinstance(r, ServiceError))
            if authenticator.try_acquire_all(key, readable):
                authenticator = None  # every token taken: nothing left to charge one by one
        for i, request in enumerate(requests):
            try:
                if isinstance(request, ServiceError):
                    raise request
                if authenticator is not None:
                    authenticator.try_acquire(key)
                check_account(key, getattr(request, "account", None))
                item = command_record(request, markets)
            except ServiceError as exc:
                results[i] = exc
                continue
            if type(item) is OrderReply:
                results[i] = item
            else:
                rows.append(item)  # type: ignore[arg-type]
                slots.append(i)
        if not rows:
            done(results)
            return

        def answered(answer: Answer | None, error: ServiceError | None) -> None:
            if answer is None:
                for i in slots:
                    results[i] = error
            else:
                for i, row, events in zip(slots, rows, answer.rows(REPLY_FIELDS), strict=True):
                    try:
                        results[i] = order_reply(row, events)
                    except Exception:  # a bug: still an answer, never a silent drop
                        log.exception("building an order reply failed")
                        results[i] = Internal("internal error")
            done(results)

        label = LABELS[rows[0][_C_TYPE]] if len(rows) == 1 else "batch"
        try:
            self.link.submit_each(records_array(rows), label, answered)
        except ServiceError as exc:
            for i in slots:
                results[i] = exc
            done(results)
