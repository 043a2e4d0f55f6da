# cython: language_level=3, embedsignature=True, autotestdict=False
"""The C++ matching core behind a thin Python API (docs/matchcore.md §7).

Every state-changing method builds one fixed-size command record and runs it
through the same C++ code as the batch API, so the two APIs cannot disagree.
Per-call methods return an int (the order id, a count, 0, or -Reject) and
create no Python object per event: events stay in the engine's buffer until
``last_events()`` or ``drain_events()`` copies them out in bulk.
"""

cimport cython
cimport numpy as cnp
from cpython.bool cimport PyBool_Check
from cpython.bytearray cimport (
    PyByteArray_AS_STRING,
    PyByteArray_FromStringAndSize,
    PyByteArray_Resize,
)
from cpython.long cimport PyLong_Check, PyLong_CheckExact
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t, uintptr_t
from libc.string cimport memset
from libcpp.string cimport string
from libcpp.vector cimport vector

from matchcore cimport libmatchcore as lib

import hashlib

import numpy as np

from .codes import ALL_MARKETS as _ALL_MARKETS
from .codes import DEFAULT_MAX_PENDING_EVENTS as _DEFAULT_MAX_PENDING_EVENTS
from .codes import MAX_PENDING_EVENTS as _MAX_PENDING_EVENTS
from .errors import InvariantError
from .records import BOOK_LEVEL_DTYPE as _BOOK_LEVEL_DTYPE
from .records import COMMAND_DTYPE as _COMMAND_DTYPE
from .records import EVENT_DTYPE as _EVENT_DTYPE
from .records import Balance, MarketInfo, OrderInfo, Position, Totals

cnp.import_array()

#: The C++ values of every code, checked against matchcore.codes by the tests.
CONSTANTS = {
    "PRICE_SCALE": lib.PRICE_SCALE, "MAX_QUANTITY": lib.MAX_QUANTITY,
    "MAX_CASH": lib.MAX_CASH, "MAX_ORDERS": lib.MAX_ORDERS, "MAX_MARKETS": lib.MAX_MARKETS,
    "MAX_ACCOUNTS": lib.MAX_ACCOUNTS, "MAX_LEVELS": lib.MAX_LEVELS, "ALL_MARKETS": lib.ALL_MARKETS,
    "MAX_POSITIONS": lib.MAX_POSITIONS, "MAX_TOTAL_CASH": lib.MAX_TOTAL_CASH,
    "FEE_BPS_LIMIT": lib.FEE_BPS_LIMIT,
    "Intent.BUY_YES": lib.BUY_YES, "Intent.SELL_YES": lib.SELL_YES,
    "Intent.BUY_NO": lib.BUY_NO, "Intent.SELL_NO": lib.SELL_NO,
    "Side.BID": lib.BID, "Side.ASK": lib.ASK,
    "TimeInForce.GTC": lib.GTC, "TimeInForce.GTD": lib.GTD,
    "TimeInForce.IOC": lib.IOC, "TimeInForce.FOK": lib.FOK,
    "Stp.REJECT_AGGRESSOR": lib.REJECT_AGGRESSOR, "Stp.CANCEL_RESTING": lib.CANCEL_RESTING,
    "Stp.CANCEL_BOTH": lib.CANCEL_BOTH, "Stp.CANCEL_NEWEST": lib.CANCEL_NEWEST,
    "Stp.CANCEL_OLDEST": lib.CANCEL_OLDEST, "Stp.REMOVE_BOTH": lib.REMOVE_BOTH,
    "OrderFlags.POST_ONLY": lib.POST_ONLY, "OrderFlags.MARKET": lib.MARKET_ORDER,
    "OrderFlags.BY_CASH": lib.BY_CASH, "OrderFlags.SLIPPAGE": lib.SLIPPAGE,
    "MatchType.NONE": lib.MATCH_NONE, "MatchType.COMPLEMENTARY": lib.COMPLEMENTARY,
    "MatchType.MINT": lib.MINT, "MatchType.MERGE": lib.MERGE,
    "MarketState.NONE": lib.STATE_NONE, "MarketState.PRE_OPEN": lib.PRE_OPEN,
    "MarketState.OPEN": lib.OPEN, "MarketState.SUSPENDED": lib.SUSPENDED,
    "MarketState.CLOSED": lib.CLOSED, "MarketState.RESOLVED": lib.RESOLVED,
    "MarketState.HALTED": lib.HALTED, "MarketState.EXPIRED": lib.EXPIRED,
    "CommandType.NEW_ORDER": lib.CMD_NEW_ORDER, "CommandType.CANCEL": lib.CMD_CANCEL,
    "CommandType.CANCEL_CLIENT": lib.CMD_CANCEL_CLIENT,
    "CommandType.CANCEL_ALL": lib.CMD_CANCEL_ALL, "CommandType.REPLACE": lib.CMD_REPLACE,
    "CommandType.ADVANCE_TIME": lib.CMD_ADVANCE_TIME,
    "CommandType.CREATE_MARKET": lib.CMD_CREATE_MARKET,
    "CommandType.SET_MARKET_STATE": lib.CMD_SET_MARKET_STATE,
    "CommandType.SET_TICK": lib.CMD_SET_TICK, "CommandType.ADD_ACCOUNT": lib.CMD_ADD_ACCOUNT,
    "CommandType.DEPOSIT": lib.CMD_DEPOSIT, "CommandType.WITHDRAW": lib.CMD_WITHDRAW,
    "CommandType.SPLIT": lib.CMD_SPLIT, "CommandType.MERGE": lib.CMD_MERGE,
    "CommandType.RESOLVE": lib.CMD_RESOLVE,
    "EventType.ACCEPTED": lib.EV_ACCEPTED, "EventType.REJECTED": lib.EV_REJECTED,
    "EventType.TRADE": lib.EV_TRADE, "EventType.CANCELED": lib.EV_CANCELED,
    "EventType.REPLACED": lib.EV_REPLACED, "EventType.LEVEL": lib.EV_LEVEL,
    "EventType.MARKET": lib.EV_MARKET, "EventType.ACCOUNT": lib.EV_ACCOUNT,
    "EventType.BALANCE": lib.EV_BALANCE, "EventType.POSITION": lib.EV_POSITION,
    "EventType.SETTLEMENT": lib.EV_SETTLEMENT,
    "Reject.INVALID_COMMAND": lib.R_INVALID_COMMAND, "Reject.INVALID_PRICE": lib.R_INVALID_PRICE,
    "Reject.INVALID_QUANTITY": lib.R_INVALID_QUANTITY,
    "Reject.BELOW_MIN_SIZE": lib.R_BELOW_MIN_SIZE,
    "Reject.DUPLICATE_CLIENT_ORDER_ID": lib.R_DUPLICATE_CLIENT_ORDER_ID,
    "Reject.INSUFFICIENT_BALANCE": lib.R_INSUFFICIENT_BALANCE,
    "Reject.INVALID_EXPIRY": lib.R_INVALID_EXPIRY, "Reject.FOK_NOT_FILLED": lib.R_FOK_NOT_FILLED,
    "Reject.POST_ONLY_WOULD_CROSS": lib.R_POST_ONLY_WOULD_CROSS,
    "Reject.MARKET_NOT_OPEN": lib.R_MARKET_NOT_OPEN,
    "Reject.UNKNOWN_MARKET": lib.R_UNKNOWN_MARKET,
    "Reject.UNKNOWN_ACCOUNT": lib.R_UNKNOWN_ACCOUNT, "Reject.UNKNOWN_ORDER": lib.R_UNKNOWN_ORDER,
    "Reject.NOT_OWNER": lib.R_NOT_OWNER, "Reject.CAPACITY": lib.R_CAPACITY,
    "Reject.INVALID_ORDER": lib.R_INVALID_ORDER, "Reject.INVALID_TICK": lib.R_INVALID_TICK,
    "Reject.INVALID_STATE_TRANSITION": lib.R_INVALID_STATE_TRANSITION,
    "Reject.MARKET_EXISTS": lib.R_MARKET_EXISTS, "Reject.ACCOUNT_EXISTS": lib.R_ACCOUNT_EXISTS,
    "Reject.INVALID_FEE": lib.R_INVALID_FEE, "Reject.INVALID_OUTCOME": lib.R_INVALID_OUTCOME,
    "Reject.LEDGER_DISABLED": lib.R_LEDGER_DISABLED,
    "Reject.NOT_IN_AUCTION": lib.R_NOT_IN_AUCTION, "Reject.NO_LIQUIDITY": lib.R_NO_LIQUIDITY,
    "FeeBase.NOTIONAL": lib.FEE_NOTIONAL, "FeeBase.MIN": lib.FEE_MIN, "FeeBase.PQ": lib.FEE_PQ,
    "FeeBase.PQ_CENTS": lib.FEE_PQ_CENTS,
    "Outcome.NONE": lib.OUTCOME_NONE, "Outcome.YES": lib.OUTCOME_YES,
    "Outcome.NO": lib.OUTCOME_NO, "Outcome.HALF": lib.OUTCOME_HALF,
    "CancelReason.USER": lib.C_USER, "CancelReason.UNFILLED": lib.C_UNFILLED,
    "CancelReason.SELF_TRADE": lib.C_SELF_TRADE, "CancelReason.EXPIRED": lib.C_EXPIRED,
    "CancelReason.MARKET_CLOSED": lib.C_MARKET_CLOSED,
    "CancelReason.TICK_CHANGE": lib.C_TICK_CHANGE,
}

assert sizeof(lib.Command) == _COMMAND_DTYPE.itemsize
# C globals: no module lookup per batch.
cdef object _COMMANDS = _COMMAND_DTYPE
cdef object _EVENTS = _EVENT_DTYPE
# Dropped events kept in the buffer before they are moved out: a caller who
# drains rarely pays no copy, one who never drains one copy per event at most.
cdef size_t _COMPACT_SLACK = 4096
# The room process() gives a batch's events, per command, at first: XC makes 2.9,
# PEER 2.4, SCALE 2.6; a batch that makes more doubles it for the next ones.
# A batch whose room would pass _MAX_ROOM events (384 MiB) copies its events out of
# the core's buffer instead: a room that large costs its page faults, and the
# batch (one call of millions of commands) would outgrow it and be copied anyway
# (XC in one call: 303 ns a command that way, 369 through a capped room).
cdef size_t _ROOM_PER_COMMAND = 4
cdef size_t _MAX_ROOM_PER_COMMAND = 64
cdef size_t _MAX_ROOM = 1 << 22
# A batch whose room is smaller (a few dozen commands) copies its events out as
# before: for a few events the copy costs less than the room's allocation and trim
# (a one-command process(): 222-229 ns against 245-275).
cdef size_t _DIRECT_BYTES = 1 << 14
cdef object _FROM_BUFFER = np.frombuffer
assert sizeof(lib.Event) == _EVENT_DTYPE.itemsize
assert sizeof(lib.BookLevel) == _BOOK_LEVEL_DTYPE.itemsize


cdef inline void _clear(lib.Command* c, uint8_t command_type, int64_t time) noexcept nogil:
    memset(c, 0, sizeof(lib.Command))
    c.type = command_type
    c.time = time


cdef int _check_int(object value, str name) except -1:
    """Refuse anything but an int or a numpy integer: TypeError naming the argument.

    The conversion to a C integer would truncate a float, Decimal or numpy float
    silently (DESIGN.md §2: floats never enter the core); a bool is a flag,
    never an id, a price or an amount. The helpers below take an exact int
    without a call, and convert after the check (OverflowError out of the C
    type's range).
    """
    if PyBool_Check(value) or not (PyLong_Check(value) or isinstance(value, _NUMPY_INTEGER)):
        raise TypeError(f"{name} must be an int, not {type(value).__name__} ({value!r})")
    return 0


_NUMPY_INTEGER = np.integer
# The default of most arguments (and any small 0: CPython shares it), taken as 0
# without a conversion: the per-call methods pass several.
cdef object _ZERO = 0


cdef inline uint8_t _u8(object value, str name) except? 0xFF:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef inline int16_t _i16(object value, str name) except? -1:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef inline int32_t _i32(object value, str name) except? -1:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef inline uint32_t _u32(object value, str name) except? 0xFFFFFFFF:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef inline int64_t _i64(object value, str name) except? -1:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef inline uint64_t _u64(object value, str name) except? 0xFFFFFFFFFFFFFFFF:
    if value is _ZERO:
        return 0
    if not PyLong_CheckExact(value):
        _check_int(value, name)
    return value


cdef cnp.ndarray _records(object value, str name, object dtype, str dtype_name):
    """``value`` as a 1-D array of the very record dtype, or the TypeError/ValueError."""
    if not isinstance(value, cnp.ndarray):
        raise TypeError(f"{name} must be a numpy array, not {type(value).__name__}")
    cdef cnp.ndarray array = value
    cdef object descr = <object> cnp.PyArray_DESCR(array)
    if descr is not dtype and descr != dtype:
        raise TypeError(f"{name} must have dtype matchcore.{dtype_name}, not {descr}")
    if cnp.PyArray_NDIM(array) != 1:
        raise ValueError(f"{name} must be one-dimensional, not {array.ndim}-D")
    return array


cdef int _check_out(object out, cnp.ndarray commands) except -1:
    """Refuse an ``out`` that ``process_into()`` cannot write the events into."""
    cdef cnp.ndarray array = _records(out, "out", _EVENTS, "EVENT_DTYPE")
    if not cnp.PyArray_IS_C_CONTIGUOUS(array):
        raise ValueError("out must be C-contiguous")
    if not cnp.PyArray_ISWRITEABLE(array):
        raise ValueError("out must be writeable")
    cdef uintptr_t first = <uintptr_t> cnp.PyArray_DATA(array)
    # numpy calls any EVENT_DTYPE array aligned (the dtype is packed); the core's
    # stores of 8-byte fields are not.
    if first % lib.EVENT_ALIGNMENT:
        raise ValueError(f"out must be aligned to {lib.EVENT_ALIGNMENT} bytes")
    cdef uintptr_t stop = first + <uintptr_t> array.shape[0] * sizeof(lib.Event)
    cdef uintptr_t low = <uintptr_t> cnp.PyArray_DATA(commands), high
    cdef Py_ssize_t n = commands.shape[0], stride = commands.strides[0]
    if n and stop > first:
        high = low + sizeof(lib.Command)
        if stride < 0:
            low -= <uintptr_t> ((n - 1) * -stride)
        else:
            high += <uintptr_t> ((n - 1) * stride)
        if low < stop and first < high:
            raise ValueError("out must not share memory with commands")
    return 0


cdef uint32_t _capacity(str name, value, uint32_t limit) except? 0:
    """A capacity argument as uint32, or ValueError naming the allowed range."""
    if not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{name} must be an int in [1, {limit}], not {value!r}")
    return value


@cython.final
cdef class Engine:
    """The matching engine: all memory preallocated from the capacities below.

    Parameters
    ----------
    max_orders : int
        Resting orders the pool holds (``<= 2**29``); a GTC/GTD order beyond it
        is rejected with ``CAPACITY``.
    max_markets, max_accounts : int
        Market and account ids are ``0 <= id < max_*`` (``<= 2**17``, ``<= 2**24``).
    max_levels : int, optional
        Price levels across all markets (``2 * (10_000 / tick - 1)`` per
        market, ``<= 2**27``); by default every market can have tick $0.001.
    max_positions : int, optional
        (account, market) positions held at once (``<= 2**29``); by default
        ``max_orders + max_accounts``.
    ledger : bool
        Keep the money (reservations, settlement, fees; docs/matchcore.md §8).
        False: matching only.
    max_pending_events : int
        Per-call events kept until ``drain_events()`` (``0 .. 2**24``): past it
        the oldest are dropped (``dropped_events`` counts them), but never those
        of the last call.
    """

    cdef lib.Engine core
    # The per-call events pending are [_first, size) of the core's buffer, those of
    # the last per-call method [_last_start, size); older ones are dropped from
    # _first so that a caller who never drains reuses the same memory.
    cdef size_t _first
    cdef size_t _last_start
    cdef size_t _max_pending
    cdef uint64_t _dropped
    # Held by a batch (it runs without the GIL) and by any method that runs Python
    # code (which may switch threads) between its reads of the core: every method
    # refuses while another thread holds it (docs/matchcore.md §7).
    cdef bint _busy
    # Events per command process() makes room for (_ROOM_PER_COMMAND, doubled when
    # a batch did not fit).
    cdef size_t _room

    def __cinit__(self):
        self._room = _ROOM_PER_COMMAND

    def __init__(self, max_orders=65536, max_markets=64, max_accounts=4096, max_levels=None,
                 max_positions=None, ledger=True,
                 max_pending_events=_DEFAULT_MAX_PENDING_EVENTS):
        cdef lib.Config config
        cdef string error
        config.max_orders = _capacity("max_orders", max_orders, lib.MAX_ORDERS)
        config.max_markets = _capacity("max_markets", max_markets, lib.MAX_MARKETS)
        config.max_accounts = _capacity("max_accounts", max_accounts, lib.MAX_ACCOUNTS)
        config.max_levels = (0 if max_levels is None
                             else _capacity("max_levels", max_levels, lib.MAX_LEVELS))
        config.max_positions = (0 if max_positions is None
                                else _capacity("max_positions", max_positions, lib.MAX_POSITIONS))
        config.ledger = bool(ledger)
        if (not isinstance(max_pending_events, int)
                or not 0 <= max_pending_events <= _MAX_PENDING_EVENTS):
            raise ValueError(f"max_pending_events must be an int in [0, {_MAX_PENDING_EVENTS}], "
                             f"not {max_pending_events!r}")
        self._idle()
        if not self.core.init(config, error):
            raise ValueError(error.decode())
        self._max_pending = max_pending_events
        self._forget_events()

    # ------------------------------------------------------------ helpers

    cdef inline int _idle(self) except -1:
        """Refuse while another thread holds the engine (a batch runs, or a copy out)."""
        if self._busy:
            raise RuntimeError("the engine is in use by another thread (a batch runs)")
        return 0

    cdef inline int _hold(self) except -1:
        """``_idle()``, then hold the engine until ``self._busy = False``.

        No Python code may run between the check and the store: the GIL is held,
        so no other thread runs in between.
        """
        self._idle()
        self._busy = True
        return 0

    cdef inline int64_t _run(self, lib.Command* c) except? -1:
        self._idle()
        cdef lib.EventBuffer* events = &self.core.events()
        if self._first >= self._max_pending + _COMPACT_SLACK:
            # Amortized: at most one copy per event dropped, none while drained.
            events.erase_front(self._first)
            self._first = 0
        self._last_start = events.size()
        cdef int64_t result = self.core.execute(c[0])
        cdef size_t size = events.size()
        cdef size_t first
        if size - self._first > self._max_pending:
            first = min(size - self._max_pending, self._last_start)
            self._dropped += first - self._first
            self._first = first
        return result

    cdef inline void _forget_events(self) noexcept:
        self.core.events().truncate(0)
        self._first = self._last_start = 0
        self._dropped = 0

    cdef object _copy_events(self, size_t start, size_t stop):
        """The events ``[start, stop)`` as an array; the caller holds the engine.

        Copied into a bytearray that the array wraps: numpy 2's np.empty of a
        structured dtype inspects every field for its zero-fill (about 0.9 us, the
        largest fixed cost of a small batch); a wrapped buffer skips that.
        """
        cdef const char* first = <const char*> (self.core.events().data() + start)
        return _FROM_BUFFER(
            PyByteArray_FromStringAndSize(first, (stop - start) * sizeof(lib.Event)), _EVENTS)

    cdef const lib.Market* _market(self, uint32_t market) except NULL:
        self._idle()
        cdef const lib.Market* m = self.core.market(market)
        if m == NULL:
            raise KeyError(f"unknown market {market}")
        return m

    # ------------------------------------------------------ admin commands

    def create_market(self, market, tick, min_size=1, lot=1, *, taker_fee_bps=0,
                      maker_fee_bps=0, fee_base=0, min_price=0, max_price=0, time=0):
        """Create a market in PRE_OPEN; tick, min size and lot in price / quantity units.

        Fees are in basis points of ``fee_base`` (a FeeBase); a negative maker
        rate is a rebate. ``min_price`` / ``max_price`` bound its prices (0: none).
        """
        cdef lib.Command c
        _clear(&c, lib.CMD_CREATE_MARKET, _i64(time, "time"))
        c.market = _u32(market, "market")
        c.price = _i32(tick, "tick")
        c.quantity = _i64(min_size, "min_size")
        c.aux = _i64(lot, "lot")
        c.taker_fee_bps = _i16(taker_fee_bps, "taker_fee_bps")
        c.maker_fee_bps = _i16(maker_fee_bps, "maker_fee_bps")
        c.fee_base = _u8(fee_base, "fee_base")
        c.expiry = <int64_t> (<uint64_t> _u32(max_price, "max_price") << 32
                              | _u32(min_price, "min_price"))
        return self._run(&c)

    def set_market_state(self, market, state, *, time=0):
        """Move a market between its states (docs/matchcore.md §4); PRE_OPEN -> OPEN runs
        the opening auction."""
        cdef lib.Command c
        _clear(&c, lib.CMD_SET_MARKET_STATE, _i64(time, "time"))
        c.market = _u32(market, "market")
        c.arg = _u8(state, "state")
        return self._run(&c)

    def set_tick(self, market, tick, *, time=0):
        """Change the tick; a coarser tick cancels resting orders off the new grid."""
        cdef lib.Command c
        _clear(&c, lib.CMD_SET_TICK, _i64(time, "time"))
        c.market = _u32(market, "market")
        c.price = _i32(tick, "tick")
        return self._run(&c)

    def add_account(self, account, *, time=0):
        """Register an account id."""
        cdef lib.Command c
        _clear(&c, lib.CMD_ADD_ACCOUNT, _i64(time, "time"))
        c.account = _u32(account, "account")
        return self._run(&c)

    # ------------------------------------------------------ order commands

    def submit(self, account, market, intent, price, quantity, tif=0, *, expiry=0,
               client_order_id=0, stp=0, bint post_only=False, bint market_order=False,
               bint by_cash=False, time=0):
        """Enter an order; returns its order id, or -Reject.

        ``price`` is the YES limit (the worst-price bound of a market order);
        ``quantity`` is in 0.01-share units, or the budget in micro-dollars
        when ``by_cash``.
        """
        cdef lib.Command c
        _clear(&c, lib.CMD_NEW_ORDER, _i64(time, "time"))
        c.account = _u32(account, "account")
        c.market = _u32(market, "market")
        c.intent = _u8(intent, "intent")
        c.price = _i32(price, "price")
        c.quantity = _i64(quantity, "quantity")
        c.tif = _u8(tif, "tif")
        c.expiry = _i64(expiry, "expiry")
        c.client_order_id = _u64(client_order_id, "client_order_id")
        c.stp = _u8(stp, "stp")
        c.flags = ((lib.POST_ONLY if post_only else 0) | (lib.MARKET_ORDER if market_order else 0)
                   | (lib.BY_CASH if by_cash else 0))
        return self._run(&c)

    def cancel(self, account, order_id, *, time=0):
        """Cancel a resting order of ``account``; 0 or -Reject."""
        cdef lib.Command c
        _clear(&c, lib.CMD_CANCEL, _i64(time, "time"))
        c.account = _u32(account, "account")
        c.order_id = _u64(order_id, "order_id")
        return self._run(&c)

    def cancel_client(self, account, client_order_id, *, time=0):
        """Cancel the resting order of ``account`` with this client order id."""
        cdef lib.Command c
        _clear(&c, lib.CMD_CANCEL_CLIENT, _i64(time, "time"))
        c.account = _u32(account, "account")
        c.client_order_id = _u64(client_order_id, "client_order_id")
        return self._run(&c)

    def cancel_all(self, account, market=_ALL_MARKETS, *, time=0):
        """Cancel every resting order of ``account`` (in one market or all); the count."""
        cdef lib.Command c
        _clear(&c, lib.CMD_CANCEL_ALL, _i64(time, "time"))
        c.account = _u32(account, "account")
        c.market = _u32(market, "market")
        return self._run(&c)

    def replace(self, account, order_id, price=0, quantity=0, *, time=0):
        """Set a new price and/or remaining quantity (0 keeps it); 0 or -Reject."""
        cdef lib.Command c
        _clear(&c, lib.CMD_REPLACE, _i64(time, "time"))
        c.account = _u32(account, "account")
        c.order_id = _u64(order_id, "order_id")
        c.price = _i32(price, "price")
        c.quantity = _i64(quantity, "quantity")
        return self._run(&c)

    def advance_time(self, time):
        """Move engine time forward; returns how many GTD orders expired."""
        cdef lib.Command c
        _clear(&c, lib.CMD_ADVANCE_TIME, _i64(time, "time"))
        return self._run(&c)

    # ----------------------------------------------------- ledger commands

    def deposit(self, account, amount, *, time=0):
        """Add ``amount`` micro-dollars to the account's free cash; 0 or -Reject."""
        return self._account_cash(lib.CMD_DEPOSIT, _u32(account, "account"),
                                  _i64(amount, "amount"), _i64(time, "time"))

    def withdraw(self, account, amount, *, time=0):
        """Take ``amount`` micro-dollars from the account's free cash; 0 or -Reject."""
        return self._account_cash(lib.CMD_WITHDRAW, _u32(account, "account"),
                                  _i64(amount, "amount"), _i64(time, "time"))

    def split(self, account, market, quantity, *, time=0):
        """Turn ``quantity * 10_000`` micro-dollars into ``quantity`` YES + NO pairs."""
        return self._pairs(lib.CMD_SPLIT, _u32(account, "account"), _u32(market, "market"),
                           _i64(quantity, "quantity"), _i64(time, "time"))

    def merge(self, account, market, quantity, *, time=0):
        """Turn ``quantity`` YES + NO pairs back into cash."""
        return self._pairs(lib.CMD_MERGE, _u32(account, "account"), _u32(market, "market"),
                           _i64(quantity, "quantity"), _i64(time, "time"))

    def resolve(self, market, outcome, *, time=0):
        """Resolve a market (an Outcome): cancel its orders, pay its shares."""
        cdef lib.Command c
        _clear(&c, lib.CMD_RESOLVE, _i64(time, "time"))
        c.market = _u32(market, "market")
        c.arg = _u8(outcome, "outcome")
        return self._run(&c)

    cdef object _account_cash(self, uint8_t command, uint32_t account, int64_t amount,
                              int64_t time):
        cdef lib.Command c
        _clear(&c, command, time)
        c.account = account
        c.quantity = amount
        return self._run(&c)

    cdef object _pairs(self, uint8_t command, uint32_t account, uint32_t market,
                       int64_t quantity, int64_t time):
        cdef lib.Command c
        _clear(&c, command, time)
        c.account = account
        c.market = market
        c.quantity = quantity
        return self._run(&c)

    # ------------------------------------------------------------- events

    def process(self, commands):
        """Run an array of COMMAND_DTYPE records; returns their EVENT_DTYPE events.

        The GIL is released while the batch runs.
        """
        cdef cnp.ndarray batch = self._batch(commands)
        cdef const lib.Command* data = <const lib.Command*> cnp.PyArray_DATA(batch)
        cdef size_t count = batch.shape[0]
        cdef lib.EventBuffer* events = &self.core.events()
        # The core writes the events straight into the bytearray returned (no copy
        # out of its buffer, as process_into()); a batch that overflows it goes on in
        # the core's buffer and is copied out from there, as a small batch is.
        cdef size_t room = count * self._room
        cdef bint direct = _DIRECT_BYTES <= room * sizeof(lib.Event) and room <= _MAX_ROOM
        cdef object region = None
        if direct:
            region = PyByteArray_FromStringAndSize(NULL, room * sizeof(lib.Event))
        self._hold()
        cdef size_t start = events.size()
        try:
            if direct:
                events.attach(<lib.Event*> PyByteArray_AS_STRING(region), room)
            with nogil:
                self.core.process(data, count)
            if direct and events.attached():
                PyByteArray_Resize(region, events.size() * sizeof(lib.Event))
                out = _FROM_BUFFER(region, _EVENTS)
            else:
                out = self._copy_events(start, events.size())
                if direct:
                    self._room = min(2 * self._room, _MAX_ROOM_PER_COMMAND)
        finally:
            events.detach()
            events.truncate(start)
            self._busy = False
        return out

    def process_into(self, commands, out):
        """As ``process()``, the events written straight into ``out``, a reusable array.

        ``out`` is a one-dimensional, C-contiguous, writeable EVENT_DTYPE array,
        8-byte aligned, that shares no memory with ``commands`` (the engine would
        overwrite commands it has not read yet); anything else is a TypeError or
        ValueError naming ``out``, before anything runs. Returns the batch's
        events: the view ``out[:n]`` when its ``n`` events fit in ``out`` (no
        allocation, no copy), else a new array of all of them, as ``process()``
        returns (``out`` then holds nothing of use). The GIL is released while
        the batch runs.
        """
        cdef cnp.ndarray batch = self._batch(commands)
        _check_out(out, commands)
        cdef cnp.ndarray region = out
        cdef const lib.Command* data = <const lib.Command*> cnp.PyArray_DATA(batch)
        cdef size_t count = batch.shape[0]
        cdef lib.EventBuffer* events = &self.core.events()
        self._hold()
        cdef size_t start = events.size()
        try:
            # The per-call events pending stay in the buffer; the batch's go to out.
            events.attach(<lib.Event*> cnp.PyArray_DATA(region), region.shape[0])
            with nogil:
                self.core.process(data, count)
            if events.attached():
                result = region[:events.size()]
            else:  # more than out holds: they went on in the buffer
                result = self._copy_events(start, events.size())
        finally:
            events.detach()
            events.truncate(start)
            self._busy = False
        return result

    def process_timed(self, commands):
        """As ``process()``, also timing each command inside the core.

        Returns ``(events, nanoseconds)``: ``nanoseconds[i]`` is how long command
        ``i`` ran, from the CPU's time-stamp counter read around it (about 10 ns
        of overhead per command), for latency histograms. ``process()`` itself
        never reads a clock.
        """
        cdef cnp.ndarray batch = self._batch(commands)
        cdef const lib.Command* data = <const lib.Command*> cnp.PyArray_DATA(batch)
        cdef size_t count = batch.shape[0]
        cdef cnp.ndarray timings = np.empty(count, dtype=np.int64)
        cdef int64_t* nanoseconds = <int64_t*> cnp.PyArray_DATA(timings)
        self._hold()
        cdef size_t start = self.core.events().size()
        try:
            with nogil:
                self.core.process_timed(data, count, nanoseconds)
            out = self._copy_events(start, self.core.events().size())
            self.core.events().truncate(start)
        finally:
            self._busy = False
        return out, timings

    cdef cnp.ndarray _batch(self, commands):
        """The command array, checked, C-contiguous and aligned.

        The usual array (its dtype the very COMMAND_DTYPE object, contiguous) takes
        C checks only: this is most of the fixed cost of a small batch.
        """
        cdef cnp.ndarray array = _records(commands, "commands", _COMMANDS, "COMMAND_DTYPE")
        self._idle()  # before a copy; process() checks again
        if (cnp.PyArray_ISCARRAY_RO(array)
                and <uintptr_t> cnp.PyArray_DATA(array) % lib.COMMAND_ALIGNMENT == 0):
            return array
        # numpy's "aligned" means nothing for a packed dtype: a view at an odd offset
        # (a slice of a byte buffer) is copied into a fresh, aligned array.
        return np.array(array, order="C", copy=True)

    def last_events(self):
        """The events of the last per-call method, as an EVENT_DTYPE array."""
        self._hold()
        try:
            return self._copy_events(self._last_start, self.core.events().size())
        finally:
            self._busy = False

    def drain_events(self):
        """The per-call events pending since the last drain; clears them and ``dropped_events``."""
        self._hold()
        try:
            out = self._copy_events(self._first, self.core.events().size())
            self._forget_events()
        finally:
            self._busy = False
        return out

    @property
    def pending_events(self):
        """How many per-call events wait in the buffer."""
        self._idle()
        return self.core.events().size() - self._first

    @property
    def dropped_events(self):
        """Per-call events dropped since the last drain (beyond ``max_pending_events``)."""
        self._idle()
        return self._dropped

    # ------------------------------------------------------------ queries

    @property
    def now(self):
        """Engine time: the latest command time seen."""
        self._idle()
        return self.core.now()

    @property
    def next_order_id(self):
        """The id counter: the next order gets this id, or the next whose slot is free."""
        self._idle()
        return self.core.next_order_id()

    @property
    def order_count(self):
        """Resting orders."""
        self._idle()
        return self.core.order_count()

    @property
    def next_expiry(self):
        """The earliest expiry of a resting GTD order; 0 when none rests."""
        self._idle()
        return self.core.next_expiry()

    @property
    def capacities(self):
        """The capacities the engine was built with."""
        cdef const lib.Config* c = &self.core.config()
        return {"max_orders": c.max_orders, "max_markets": c.max_markets,
                "max_accounts": c.max_accounts, "max_levels": c.max_levels,
                "max_positions": c.max_positions, "ledger": c.ledger}

    def memory(self):
        """Bytes preallocated per structure, and the size of one order slot."""
        cdef lib.MemoryStats s = self.core.memory()
        return {"order_slot": s.order_slot, "orders": s.orders, "slot_map": s.slot_map,
                "client_index": s.client_index, "expiry_heap": s.expiry_heap,
                "levels": s.levels, "markets": s.markets, "accounts": s.accounts,
                "positions": s.positions}

    def book(self, market, depth=10):
        """The top ``depth`` levels per side, best first, as BOOK_LEVEL_DTYPE arrays.

        Returns ``(bids, asks)``.
        """
        cdef uint32_t id = _u32(market, "market")
        cdef Py_ssize_t levels = _i64(depth, "depth")
        if levels < 0:
            raise ValueError("depth must be >= 0")
        cdef cnp.ndarray bids = np.empty(levels, dtype=_BOOK_LEVEL_DTYPE)
        cdef cnp.ndarray asks = np.empty(levels, dtype=_BOOK_LEVEL_DTYPE)
        # Both arrays first: from here to the last read of the book, C code only.
        cdef const lib.Market* m = self._market(id)
        cdef size_t bid_count = self.core.book_side(
            m[0], lib.BID, levels, <lib.BookLevel*> cnp.PyArray_DATA(bids))
        cdef size_t ask_count = self.core.book_side(
            m[0], lib.ASK, levels, <lib.BookLevel*> cnp.PyArray_DATA(asks))
        return bids[:bid_count], asks[:ask_count]

    def best(self, market):
        """``(bid_price, bid_qty, ask_price, ask_qty)``; 0, 0 for an empty side."""
        cdef const lib.Market* m = self._market(_u32(market, "market"))
        cdef lib.BookLevel bid, ask
        memset(&bid, 0, sizeof(bid))
        memset(&ask, 0, sizeof(ask))
        self.core.book_side(m[0], lib.BID, 1, &bid)
        self.core.book_side(m[0], lib.ASK, 1, &ask)
        return bid.price, bid.quantity, ask.price, ask.quantity

    def order(self, order_id):
        """The resting order with this id as an OrderInfo, or None."""
        cdef uint64_t id = _u64(order_id, "order_id")
        self._idle()
        return self._order_info(self.core.find_order(id))

    cdef object _order_info(self, const lib.Order* o):
        if o == NULL:
            return None
        return OrderInfo(o.order_id, o.account, o.market, o.intent, lib.side_of(o.intent),
                         o.price, o.leaves_qty, o.tif, self.core.expiry_of(o[0]),
                         o.client_order_id, o.stp,
                         o.flags)

    def orders_of(self, account):
        """The account's resting orders as OrderInfo, oldest (lowest order id) first."""
        cdef uint32_t id = _u32(account, "account")
        cdef vector[lib.Order*] found
        cdef const lib.Account* a
        cdef size_t n
        self._hold()  # making each OrderInfo is Python code between reads of the orders
        try:
            a = self.core.account(id)
            if a == NULL or a.orders == 0:
                return []
            found.resize(a.orders)
            n = self.core.orders_of(id, <const lib.Order**> found.data(), a.orders)
            return [self._order_info(found[i]) for i in range(n)]
        finally:
            self._busy = False

    def market(self, market):
        """The market's parameters and state as a MarketInfo, or None."""
        cdef uint32_t id = _u32(market, "market")
        self._idle()
        cdef const lib.Market* m = self.core.market(id)
        if m == NULL:
            return None
        return MarketInfo(m.id, m.state, m.tick, m.min_size, m.lot, m.fees.taker_bps,
                          m.fees.maker_bps, m.fees.base, m.outcome, m.collateral,
                          m.min_price, m.max_price)

    def balance(self, account):
        """The account's cash as Balance(free, reserved) in micro-dollars, or None."""
        cdef uint32_t id = _u32(account, "account")
        self._idle()
        cdef const lib.Account* a = self.core.account(id)
        if a == NULL:
            return None
        return Balance(a.cash_free, a.cash_reserved)

    def position(self, account, market):
        """The account's shares in the market as a Position (zeros when none is held)."""
        cdef uint32_t account_id = _u32(account, "account"), market_id = _u32(market, "market")
        self._idle()
        cdef const lib.Position* p = self.core.position(account_id, market_id)
        if p == NULL:
            return Position(0, 0, 0, 0)
        return Position(p.yes_free, p.yes_reserved, p.no_free, p.no_reserved)

    def totals(self):
        """Totals(net_deposits, fees, collateral): what conservation is checked against."""
        self._idle()
        cdef int64_t collateral = 0
        cdef const lib.Market* m
        cdef uint32_t market
        for market in range(self.core.config().max_markets):
            m = self.core.market(market)
            if m != NULL:
                collateral += m.collateral
        return Totals(self.core.net_deposits(), self.core.fees(), collateral)

    # ------------------------------------------------------------- state

    def canonical_state(self):
        """The canonical state bytes of docs/matchcore.md §6."""
        self._idle()
        cdef string out
        self.core.encode_state(out)
        return out

    def snapshot(self):
        """The state as bytes; ``Engine.restore(data)`` continues from it exactly."""
        return self.canonical_state()

    @classmethod
    def restore(cls, data):
        """Rebuild an engine from ``snapshot()`` bytes; ValueError if they are malformed."""
        cdef const unsigned char[::1] view = memoryview(data).cast("B")
        cdef Engine engine = Engine.__new__(Engine)
        engine._max_pending = _DEFAULT_MAX_PENDING_EVENTS
        cdef string error
        cdef const unsigned char* start = &view[0] if view.shape[0] else NULL
        if not engine.core.decode_state(start, view.shape[0], error):
            raise ValueError(f"cannot restore: {error.decode()}")
        return engine

    def digest(self):
        """A hash of the whole state: equal for equal states (blake2b-128, hex)."""
        return hashlib.blake2b(self.canonical_state(), digest_size=16).hexdigest()

    def validate(self):
        """Check every invariant; raises InvariantError naming the first that breaks."""
        self._idle()
        cdef string error
        if not self.core.validate(error):
            raise InvariantError(error.decode())
