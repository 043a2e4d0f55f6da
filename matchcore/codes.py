"""Codes and limits shared by the core and the reference model.

The values are part of the record format (docs/matchcore.md §2) and mirror
``matchcore/include/matchcore/types.hpp``; a test checks that they agree.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag

PRICE_SCALE = 10_000
"""Price units per dollar: a price of 5_700 is $0.57."""
MAX_QUANTITY = 10**10
"""Largest order quantity, in units of 0.01 share (100 million shares)."""
MAX_CASH = 10**16
"""Largest budget of a buy by cash, in micro-dollars."""
MAX_ORDERS = 2**29
"""Largest ``max_orders``: keeps every level total below 2**63."""
MAX_MARKETS = 2**17
"""Largest ``max_markets`` (each market holds about 2.6 KB of book bitsets)."""
MAX_ACCOUNTS = 2**24
"""Largest ``max_accounts``."""
MAX_LEVELS = 2**27
"""Largest ``max_levels`` (24 bytes each)."""
MAX_POSITIONS = 2**29
"""Largest ``max_positions``."""
DEFAULT_MAX_PENDING_EVENTS = 65_536
"""Per-call events an engine keeps until ``drain_events()`` by default (6 MiB)."""
MAX_PENDING_EVENTS = 2**24
"""Largest ``max_pending_events``."""
MAX_TOTAL_CASH = 2**62
"""Largest net deposits: every balance and collateral stays below 2**62."""
FEE_BPS_LIMIT = 1_000
"""Fee rates are within +-1_000 basis points (taker rates are never negative)."""
ALL_MARKETS = 0xFFFF_FFFF
"""``CANCEL_ALL`` target meaning every market."""
TICKS = (1, 10, 25, 50, 100, 1000)
"""The allowed tick sizes, in price units."""


class Intent(IntEnum):
    BUY_YES = 0
    SELL_YES = 1
    BUY_NO = 2
    SELL_NO = 3


class Side(IntEnum):
    BID = 0
    ASK = 1


class TimeInForce(IntEnum):
    GTC = 0
    GTD = 1
    IOC = 2
    FOK = 3


class Stp(IntEnum):
    """Self-trade prevention mode, chosen per order (docs/matchcore.md §4, the sweep).

    The first three act where the sweep meets the owner's order; the venue's FIX
    modes act before the first fill on every owner's order the limit reaches.
    """

    REJECT_AGGRESSOR = 0
    CANCEL_RESTING = 1
    CANCEL_BOTH = 2
    CANCEL_NEWEST = 3  # FIX 8000=N: the incoming order canceled whole, no fill
    CANCEL_OLDEST = 4  # FIX 8000=O: the owner's orders canceled, then the order trades
    REMOVE_BOTH = 5  # both: the owner's orders and the incoming order, no fill


class OrderFlags(IntFlag):
    POST_ONLY = 1
    MARKET = 2
    BY_CASH = 4
    SLIPPAGE = 8  # MARKET with a derived limit: aux = ticks | bps << 32 | current << 48


class MatchType(IntEnum):
    NONE = 0
    COMPLEMENTARY = 1
    MINT = 2
    MERGE = 3


class MarketState(IntEnum):
    NONE = 0
    PRE_OPEN = 1  # orders rest without matching; the opening auction on -> OPEN
    OPEN = 2
    SUSPENDED = 3  # cancels only (the HALTED of format 4 snapshots and journals before)
    CLOSED = 4  # trading over: resting orders canceled
    RESOLVED = 5
    HALTED = 6  # nothing: no order, no modify, no cancel
    EXPIRED = 7  # trading over: resting orders expired


class CommandType(IntEnum):
    NEW_ORDER = 1
    CANCEL = 2
    CANCEL_CLIENT = 3
    CANCEL_ALL = 4
    REPLACE = 5
    ADVANCE_TIME = 6
    CREATE_MARKET = 7
    SET_MARKET_STATE = 8
    SET_TICK = 9
    ADD_ACCOUNT = 10
    DEPOSIT = 11
    WITHDRAW = 12
    SPLIT = 13
    MERGE = 14
    RESOLVE = 15


class EventType(IntEnum):
    ACCEPTED = 1
    REJECTED = 2
    TRADE = 3
    CANCELED = 4
    REPLACED = 5
    LEVEL = 6
    MARKET = 7
    ACCOUNT = 8
    BALANCE = 9
    POSITION = 10
    SETTLEMENT = 11


class Reject(IntEnum):
    """Why a command was rejected; per-call methods return ``-Reject``."""

    INVALID_COMMAND = 1
    INVALID_PRICE = 2
    INVALID_QUANTITY = 3
    BELOW_MIN_SIZE = 4
    DUPLICATE_CLIENT_ORDER_ID = 5
    INSUFFICIENT_BALANCE = 6
    INVALID_EXPIRY = 7
    FOK_NOT_FILLED = 8
    POST_ONLY_WOULD_CROSS = 9
    MARKET_NOT_OPEN = 10
    UNKNOWN_MARKET = 11
    UNKNOWN_ACCOUNT = 12
    UNKNOWN_ORDER = 13
    NOT_OWNER = 14
    CAPACITY = 15
    INVALID_ORDER = 16
    INVALID_TICK = 17
    INVALID_STATE_TRANSITION = 18
    MARKET_EXISTS = 19
    ACCOUNT_EXISTS = 20
    INVALID_FEE = 21
    INVALID_OUTCOME = 22
    LEDGER_DISABLED = 23
    NOT_IN_AUCTION = 24  # IOC, FOK, market or post-only order in PRE_OPEN
    NO_LIQUIDITY = 25  # a SLIPPAGE market order that would fill nothing


class FeeBase(IntEnum):
    """What a fee rate applies to (docs/matchcore.md §8)."""

    NOTIONAL = 0
    MIN = 1
    PQ = 2
    PQ_CENTS = 3
    """The venue's schedule (Polymarket US): PQ, each fill rounded to the cent half to even,
    a taker's fills in one sweep capped at the rounding of their summed exact fee."""


class Outcome(IntEnum):
    """How a market resolved."""

    NONE = 0
    YES = 1
    NO = 2
    HALF = 3


class CancelReason(IntEnum):
    USER = 1
    UNFILLED = 2
    SELF_TRADE = 3
    EXPIRED = 4
    MARKET_CLOSED = 5
    TICK_CHANGE = 6


def side_of(intent: int) -> Side:
    """The book side an intent rests on: buying YES or selling NO bids."""
    return Side.BID if intent in (Intent.BUY_YES, Intent.SELL_NO) else Side.ASK
