"""The venue's rules in the core's terms: the one place they are mapped (spec §3, §5).

Everything the Polymarket US API names that the core calls otherwise goes
through this module: intents and sides, times in force, market states, ticks
and price bounds, fees, self-match prevention, reject reasons and texts. When
the core adopts more of the venue's rules (issue 10: half-cent ticks, the
SUSPENDED state and the opening auction, the venue's fee rounding and cap, the
FIX self-match modes, NO_LIQUIDITY), the mapping changes here and nowhere else.

Today's core, as the venue sees it:

- ticks: the venue's $0.01, $0.005 and $0.0025 are the core's 100, 50 and 25
  units; its 0.01 .. 0.99 are the market's price bounds in the core (catalogue
  markets get them by default). A market on a tick the venue lacks ($0.001) may
  have none: the core's tick .. 1 - tick (0.001 .. 0.999);
- fees: the venue's ``fee = theta x C x p x (1 - p)`` is the core's ``PQ_CENTS``
  fee base with ``bps = theta x 10^4`` (taker 695, maker -125): each fill rounded
  half to even to the cent, a taker order's fills capped at the rounding of their
  summed exact fee (docs/matchcore.md §8); the core's ``PQ`` base is the same
  formula rounded to the micro-dollar;
- states: the core has the venue's (docs/matchcore.md §4, Markets): PREOPEN
  collects limit orders (IOC, FOK, market and post-only ones are refused:
  "cannot be placed in PRE_OPEN") and opens with the opening auction, SUSPENDED
  takes cancels only, HALTED nothing, CLOSED and EXPIRED end trading (the
  resting orders canceled, expired); a resolved market shows as EXPIRED;
- self-match: every order is sent with the core's ``CANCEL_NEWEST``, the
  venue's FIX default ("cancel newest") and what its retail docs describe (a
  self-crossing order is refused whole, before any fill): an order whose limit
  reaches one of its owner's resting orders is canceled whole with the text
  "Self Match Prevention", with no fill against others first;
- market orders: the core's ``SLIPPAGE`` market orders (IOC, or FOK), whose worst
  price the engine derives from the tolerance (ticks win over bps, off the given
  current price or the best opposite one), else the order's price, else the
  market's bound; one that can fill nothing is the core's reject NO_LIQUIDITY
  (also when the best price is beyond the tolerance: nothing can fill there).
"""

from __future__ import annotations

from decimal import Decimal

from matchcore import (
    PRICE_SCALE,
    CancelReason,
    FeeBase,
    Intent,
    MarketState,
    Reject,
    Stp,
    TimeInForce,
)

# ----------------------------------------------------------- intents


INTENTS: dict[str, int] = {
    "ORDER_INTENT_BUY_LONG": Intent.BUY_YES,
    "ORDER_INTENT_SELL_LONG": Intent.SELL_YES,
    "ORDER_INTENT_BUY_SHORT": Intent.BUY_NO,
    "ORDER_INTENT_SELL_SHORT": Intent.SELL_NO,
}
INTENT_NAMES: dict[int, str] = {v: k for k, v in INTENTS.items()}
# outcomeSide + action (wins over intent when both are given, spec §2.2)
OUTCOME_ACTIONS: dict[tuple[str, str], int] = {
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_BUY"): Intent.BUY_YES,
    ("OUTCOME_SIDE_YES", "ORDER_ACTION_SELL"): Intent.SELL_YES,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_BUY"): Intent.BUY_NO,
    ("OUTCOME_SIDE_NO", "ORDER_ACTION_SELL"): Intent.SELL_NO,
}
OUTCOME_SIDE: dict[int, str] = {
    Intent.BUY_YES: "OUTCOME_SIDE_YES",
    Intent.SELL_YES: "OUTCOME_SIDE_YES",
    Intent.BUY_NO: "OUTCOME_SIDE_NO",
    Intent.SELL_NO: "OUTCOME_SIDE_NO",
}
ACTION: dict[int, str] = {
    Intent.BUY_YES: "ORDER_ACTION_BUY",
    Intent.SELL_YES: "ORDER_ACTION_SELL",
    Intent.BUY_NO: "ORDER_ACTION_BUY",
    Intent.SELL_NO: "ORDER_ACTION_SELL",
}
# Order.side is the side on the one YES book (spec §3.1, §6 #3)
BOOK_SIDE: dict[int, str] = {
    Intent.BUY_YES: "ORDER_SIDE_BUY",
    Intent.SELL_NO: "ORDER_SIDE_BUY",
    Intent.SELL_YES: "ORDER_SIDE_SELL",
    Intent.BUY_NO: "ORDER_SIDE_SELL",
}

# ------------------------------------------------------- time in force

TIFS: dict[str, int] = {
    "TIME_IN_FORCE_GOOD_TILL_CANCEL": TimeInForce.GTC,
    "TIME_IN_FORCE_GOOD_TILL_DATE": TimeInForce.GTD,
    "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL": TimeInForce.IOC,
    "TIME_IN_FORCE_FILL_OR_KILL": TimeInForce.FOK,
    # "DAY orders do NOT auto-cancel at the 5 pm ET roll" (venue changelog v0.0.89): a GTC
    "TIME_IN_FORCE_DAY": TimeInForce.GTC,
}
TIF_NAMES: dict[int, str] = {
    TimeInForce.GTC: "TIME_IN_FORCE_GOOD_TILL_CANCEL",
    TimeInForce.GTD: "TIME_IN_FORCE_GOOD_TILL_DATE",
    TimeInForce.IOC: "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL",
    TimeInForce.FOK: "TIME_IN_FORCE_FILL_OR_KILL",
}
ORDER_TYPES = ("ORDER_TYPE_LIMIT", "ORDER_TYPE_MARKET")
MANUAL_ORDER_INDICATORS = (
    "MANUAL_ORDER_INDICATOR_MANUAL",
    "MANUAL_ORDER_INDICATOR_AUTOMATIC",
    "MANUAL_ORDER_INDICATOR_AUTOMATED",  # the institutional spelling
    "MANUAL_ORDER_INDICATOR_UNSPECIFIED",
)

# ---------------------------------------------------------- market states

_BOOK_STATES: dict[int, str] = {
    MarketState.PRE_OPEN: "MARKET_STATE_PREOPEN",
    MarketState.OPEN: "MARKET_STATE_OPEN",
    MarketState.SUSPENDED: "MARKET_STATE_SUSPENDED",
    MarketState.HALTED: "MARKET_STATE_HALTED",
    MarketState.CLOSED: "MARKET_STATE_CLOSED",
    MarketState.EXPIRED: "MARKET_STATE_EXPIRED",
    MarketState.RESOLVED: "MARKET_STATE_EXPIRED",  # settled: its orders are gone
}
_STATUSES: dict[int, str] = {  # spec §5.3: the catalogue's normalized status
    MarketState.PRE_OPEN: "MARKET_STATUS_UNSPECIFIED",
    MarketState.OPEN: "MARKET_STATUS_OPEN",
    MarketState.SUSPENDED: "MARKET_STATUS_HALTED",
    MarketState.HALTED: "MARKET_STATUS_HALTED",
    MarketState.CLOSED: "MARKET_STATUS_CLOSED",
    MarketState.EXPIRED: "MARKET_STATUS_RESOLVING",
    MarketState.RESOLVED: "MARKET_STATUS_RESOLVED",
}


def book_state(state: int) -> str:
    """``MARKET_STATE_*`` of the book and its WebSocket frames."""
    return _BOOK_STATES.get(state, "MARKET_STATE_CLOSED")


def market_status(state: int) -> str:
    """``MARKET_STATUS_*`` of the catalogue's Market object."""
    return _STATUSES.get(state, "MARKET_STATUS_UNSPECIFIED")


def is_active(state: int) -> bool:
    return state == MarketState.OPEN


def is_closed(state: int) -> bool:
    return state in (MarketState.CLOSED, MarketState.EXPIRED, MarketState.RESOLVED)


# ------------------------------------------------------------ prices

QUANTITY_SCALE = 100  # core quantity units per contract
CASH_SCALE = 1_000_000  # core cash units per dollar


def price_decimals(tick: int) -> int:
    """Decimals a price is shown with: those of the tick (0.01 -> 2, 0.005 -> 3)."""
    decimals, rest = 4, tick
    while decimals and rest % 10 == 0:
        rest //= 10
        decimals -= 1
    return max(decimals, 2)


def tick_dollars(tick: int) -> Decimal:
    return Decimal(tick) / PRICE_SCALE


# --------------------------------------------------------------- fees

VENUE_TAKER_BPS = 695  # theta 0.0695 (spec §5.2)
VENUE_MAKER_BPS = -125  # theta -0.0125: a rebate
VENUE_FEE_BASE = FeeBase.PQ_CENTS  # rounded to the cent, taker capped per order


def fee_coefficient(taker_bps: int, fee_base: int) -> Decimal:
    """The market's ``feeCoefficient`` (theta): exact on the PQ bases; other bases are this
    exchange's own fee models, shown by their taker rate."""
    return Decimal(taker_bps) / 10_000


# ------------------------------------------------------------ rejects

# core reject -> (orderRejectReason, text); texts are the venue's where it has one
_REJECTS: dict[int, tuple[str, str]] = {
    Reject.INVALID_PRICE: ("ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS", "Price out of bounds"),
    Reject.INVALID_QUANTITY: ("ORD_REJECT_REASON_INCORRECT_QUANTITY", "Incorrect quantity"),
    Reject.BELOW_MIN_SIZE: ("ORD_REJECT_REASON_INCORRECT_QUANTITY", "Quantity lower than minimum"),
    Reject.INSUFFICIENT_BALANCE: ("ORD_REJECT_REASON_EXCHANGE_OPTION", "Insufficient buying power"),
    Reject.FOK_NOT_FILLED: (
        "ORD_REJECT_REASON_EXCHANGE_OPTION",
        "Fill or kill order could not be filled completely",
    ),
    Reject.POST_ONLY_WOULD_CROSS: (
        "ORD_REJECT_REASON_EXCHANGE_OPTION",
        "Order may participate but not initiate in the market",
    ),
    Reject.MARKET_NOT_OPEN: ("ORD_REJECT_REASON_EXCHANGE_CLOSED", "Book is not open"),
    Reject.NOT_IN_AUCTION: (
        "ORD_REJECT_REASON_EXCHANGE_CLOSED",
        "Order with these attributes cannot be placed in PRE_OPEN",
    ),
    Reject.UNKNOWN_MARKET: ("ORD_REJECT_REASON_UNKNOWN_MARKET", "Instrument Unavailable"),
    Reject.INVALID_ORDER: ("ORD_REJECT_REASON_INCORRECT_ORDER_TYPE", "Incorrect order type"),
    Reject.INVALID_EXPIRY: ("ORD_REJECT_REASON_EXCHANGE_OPTION", "Invalid good till time"),
    Reject.CAPACITY: ("ORD_REJECT_REASON_EXCHANGE_OPTION", "Exchange capacity reached"),
    Reject.NO_LIQUIDITY: (
        "ORD_REJECT_REASON_NO_LIQUIDITY",
        "There is no liquidity to immediately fill any portion of this order",
    ),
}
SELF_MATCH_TEXT = "Self Match Prevention"
# the self-match mode of every order (spec §5.5: FIX 8000=N, the default)
SELF_MATCH_MODE = Stp.CANCEL_NEWEST
BOOK_STATE_TEXT = {
    "MARKET_STATE_PREOPEN": "Book is PRE_OPEN",
    "MARKET_STATE_HALTED": "Book is HALTED",
    "MARKET_STATE_SUSPENDED": "Book is SUSPENDED",
    "MARKET_STATE_CLOSED": "Book is CLOSED",
    "MARKET_STATE_EXPIRED": "Book is EXPIRED",
}


def reject(code: int, state_name: str = "") -> tuple[str, str]:
    """(orderRejectReason, text) of a core reject; a state reject names the book's state."""
    if code == Reject.MARKET_NOT_OPEN and state_name in BOOK_STATE_TEXT:
        return "ORD_REJECT_REASON_EXCHANGE_CLOSED", BOOK_STATE_TEXT[state_name]
    return _REJECTS.get(code, ("ORD_REJECT_REASON_EXCHANGE_OPTION", f"Rejected ({code})"))


# cancels the owner did not ask for carry unsolicitedCancelReason
UNSOLICITED: dict[int, str] = {
    CancelReason.MARKET_CLOSED: "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION",
    CancelReason.TICK_CHANGE: "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION",
}
