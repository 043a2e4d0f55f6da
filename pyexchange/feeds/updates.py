"""What the feeds hand out: plain, immutable update objects in the core's units, for any API.

Market data (``marketdata.py``) yields one of ``BookSnapshot``, ``LevelChange``,
``TradePrint``, ``BestBidOffer``, ``MarketStatus`` or ``Dropped`` per message; the
drop copy (``dropcopy.py``) yields ``AccountEvent``. Prices, quantities and cash are
integers in the core's units (``matchcore.PRICE_SCALE``, ``QUANTITY_SCALE``,
micro-dollars), states and outcomes the core's enum numbers: formatting belongs to
each API (the gRPC adapters in ``pyexchange/api/grpc`` turn them into protobuf with
decimal strings, the venue API reads the books themselves).

One object is shared by every subscriber it is sent to: they are frozen. They are
msgspec Structs (about 0.1 µs to build, a twentieth of a protobuf message), without
GC tracking (they hold no cycles).
"""

from __future__ import annotations

import msgspec

from matchcore import CommandType, Reject


def shown_reject(command: int, reason: int) -> int:
    """The reject code a caller is shown: a cancel or replace naming another account's order
    reads as one naming an unknown id (the engine says NOT_OWNER), so that no reply or feed
    tells a trader which ids are live for other accounts."""
    if reason == Reject.NOT_OWNER and command in (CommandType.CANCEL, CommandType.REPLACE):
        return int(Reject.UNKNOWN_ORDER)
    return reason


CONFLATED = "CONFLATED"  # a snapshot sent after the subscriber's pending updates were dropped
DROPPED = "DROPPED"


class _Update(msgspec.Struct, frozen=True, gc=False):
    market: int
    market_seq: int  # +1 per update of the market: a jump means updates were lost
    engine_seq: int  # the command that caused it (a BBO: the last command of its batch)


class LevelChange(_Update, frozen=True, gc=False):
    """A price level's new total (``quantity`` 0 and ``orders`` 0: the level is gone)."""

    bid: bool
    price: int
    quantity: int
    orders: int


class TradePrint(_Update, frozen=True, gc=False):
    price: int
    quantity: int
    match_type: str  # matchcore MatchType name
    taker_bid: bool  # the taker bought YES (its order was on the bid side)


class BestBidOffer(_Update, frozen=True, gc=False):
    """The touch after a batch that changed it (a price of 0: that side is empty)."""

    bid_price: int
    bid_quantity: int
    ask_price: int
    ask_quantity: int


class MarketStatus(_Update, frozen=True, gc=False):
    state: int  # matchcore MarketState
    tick: int
    outcome: int  # matchcore Outcome


class BookSnapshot(msgspec.Struct, frozen=True, gc=False):
    """A market's whole book (or ``depth`` levels a side) at ``market_seq``, best first."""

    market: int
    market_seq: int
    bids: tuple[tuple[int, int, int], ...]  # (price, quantity, orders)
    asks: tuple[tuple[int, int, int], ...]
    state: int
    tick: int  # 0: not known yet
    notice: str = ""  # CONFLATED: updates before it were dropped for this subscriber


class Dropped(msgspec.Struct, frozen=True, gc=False):
    """The subscriber fell too far behind: the last message of its stream."""

    notice: str = DROPPED


MarketDataMessage = BookSnapshot | LevelChange | TradePrint | BestBidOffer | MarketStatus | Dropped


class AccountEvent(msgspec.Struct, frozen=True, gc=False):
    """One drop-copy event of one account, keyed by ``(seq, index)`` (docs/publishers.md).

    ``None``: the field does not apply to this kind. A ``TRADE`` comes once per side
    (``taker``), ``GAP`` (account 0) says the events of ``gap_from_seq .. seq`` are lost.
    """

    seq: int
    index: int
    kind: str  # matchcore EventType name, or GAP
    time_ns: int
    account: int = 0
    order_id: int = 0
    market: int = 0
    intent: int | None = None  # matchcore Intent
    price: int | None = None
    quantity: int | None = None
    leaves_quantity: int | None = None
    fee: int | None = None
    cash: int | None = None
    reason: str = ""  # reject or cancel reason, match type, SPLIT/MERGE, outcome
    counterparty_order_id: int = 0
    taker: bool = False
    gap_from_seq: int = 0
