"""matchcore: the matching core of a binary prediction-market exchange.

``Engine`` is the C++ core behind Cython; ``matchcore.reference.Engine`` is the
pure-Python model with the same interface and rules, used as the test oracle.
The contract both follow is docs/matchcore.md.
"""

from ._engine import Engine
from .codes import (
    ALL_MARKETS,
    MAX_CASH,
    MAX_QUANTITY,
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
    event_dicts,
    make_commands,
)

__all__ = [
    "ALL_MARKETS",
    "BOOK_LEVEL_DTYPE",
    "COMMAND_DTYPE",
    "EVENT_DTYPE",
    "MAX_CASH",
    "MAX_QUANTITY",
    "PRICE_SCALE",
    "TICKS",
    "Balance",
    "CancelReason",
    "CommandType",
    "Engine",
    "EventType",
    "FeeBase",
    "Intent",
    "InvariantError",
    "MarketInfo",
    "MarketState",
    "MatchType",
    "OrderFlags",
    "OrderInfo",
    "Outcome",
    "Position",
    "Reject",
    "Side",
    "Stp",
    "TimeInForce",
    "Totals",
    "event_dicts",
    "make_commands",
]
