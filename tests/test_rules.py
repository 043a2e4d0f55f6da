"""One test per rule of docs/matchcore.md, with exact expected events written by hand.

Default set-up (the ``eng`` fixture): accounts A1, A2, A3; markets M1 and M2 OPEN at
tick 100, lot 1, min size 1; validate() runs after every command.
"""

from __future__ import annotations

import numpy as np
import pytest
from support import (
    A1,
    A2,
    A3,
    ADD_ACCOUNT,
    ADVANCE,
    CANCEL,
    CANCEL_ALL,
    CANCEL_CLIENT,
    CREATE,
    M1,
    M2,
    REPLACE,
    SET_STATE,
    SET_TICK,
    Checked,
    Order,
    accepted,
    account_event,
    canceled,
    last,
    level,
    market_event,
    market_info,
    new_engine,
    new_order,
    rejected,
    replaced,
    run,
    trade,
)

from matchcore import (
    ALL_MARKETS,
    BOOK_LEVEL_DTYPE,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    CancelReason,
    CommandType,
    Intent,
    MarketState,
    MatchType,
    OrderFlags,
    OrderInfo,
    Reject,
    Side,
    Stp,
    TimeInForce,
    event_dicts,
    make_commands,
)

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
BID, ASK = Side.BID, Side.ASK
GTC, GTD, IOC, FOK = TimeInForce
COMPLEMENTARY, MINT, MERGE = MatchType.COMPLEMENTARY, MatchType.MINT, MatchType.MERGE
USER, UNFILLED, SELF_TRADE = CancelReason.USER, CancelReason.UNFILLED, CancelReason.SELF_TRADE
EXPIRED, MARKET_CLOSED, TICK_CHANGE = (
    CancelReason.EXPIRED,
    CancelReason.MARKET_CLOSED,
    CancelReason.TICK_CHANGE,
)
PRE_OPEN, OPEN, SUSPENDED, CLOSED = (
    MarketState.PRE_OPEN,
    MarketState.OPEN,
    MarketState.SUSPENDED,
    MarketState.CLOSED,
)
HALTED, EXPIRED_STATE = MarketState.HALTED, MarketState.EXPIRED
POST_ONLY, MARKET, BY_CASH = OrderFlags.POST_ONLY, OrderFlags.MARKET, OrderFlags.BY_CASH

# (bid intent, ask intent, match type): DESIGN.md §3 and matchcore.md "The sweep".
INTENT_PAIRS = [
    pytest.param(BUY_YES, SELL_YES, COMPLEMENTARY, id="complementary-yes"),
    pytest.param(BUY_YES, BUY_NO, MINT, id="mint"),
    pytest.param(SELL_NO, SELL_YES, MERGE, id="merge"),
    pytest.param(SELL_NO, BUY_NO, COMPLEMENTARY, id="complementary-no"),
]


def rest(eng, account, market, intent, price, quantity, **kwargs) -> Order:
    """Submit an order that must rest untouched; return what the tests know of it."""
    order_id = eng.submit(account, market, intent, price, quantity, **kwargs)
    assert order_id > 0, f"rest() expected an accepted order, got {order_id}"
    tif = kwargs.get("tif", GTC)
    flags = POST_ONLY if kwargs.get("post_only") else 0
    order = Order(order_id, account, market, intent, price, tif, flags)
    assert last(eng)[0] == accepted(order, quantity)
    return order


# =========================================================================== matching


@pytest.mark.parametrize("bid_intent, ask_intent, match_type", INTENT_PAIRS)
def test_taker_bid_meets_resting_ask(eng, bid_intent, ask_intent, match_type):
    """A bid taking a resting ask trades at the ask's price; the intents give the match type."""
    maker = Order(1, A1, M1, ask_intent, 6000)
    assert eng.submit(A1, M1, ask_intent, 6000, 500) == 1
    assert last(eng) == [accepted(maker, 500), level(M1, ASK, 6000, 500, 1)]

    taker = Order(2, A2, M1, bid_intent, 6000)
    assert eng.submit(A2, M1, bid_intent, 6000, 200) == 2
    assert last(eng) == [
        accepted(taker, 200),
        trade(taker, maker, 200, 0, 300, match_type),
        level(M1, ASK, 6000, 300, 1),
    ]
    assert eng.best(M1) == (0, 0, 6000, 300)


@pytest.mark.parametrize("bid_intent, ask_intent, match_type", INTENT_PAIRS)
def test_taker_ask_meets_resting_bid(eng, bid_intent, ask_intent, match_type):
    """An ask taking a resting bid: same match type whichever side is the taker; remainder rests."""
    maker = Order(1, A1, M1, bid_intent, 4000)
    assert eng.submit(A1, M1, bid_intent, 4000, 300) == 1
    assert last(eng) == [accepted(maker, 300), level(M1, BID, 4000, 300, 1)]

    taker = Order(2, A2, M1, ask_intent, 4000)
    assert eng.submit(A2, M1, ask_intent, 4000, 500) == 2
    assert last(eng) == [
        accepted(taker, 500),
        trade(taker, maker, 300, 200, 0, match_type),
        level(M1, BID, 4000, 0, 0),
        level(M1, ASK, 4000, 200, 1),
    ]
    assert eng.best(M1) == (0, 0, 4000, 200)


def test_bid_gets_price_improvement(eng):
    """A taker bid at 6000 hitting an ask at 5500 trades at 5500; its remainder rests at 6000."""
    maker = rest(eng, A1, M1, SELL_YES, 5500, 100)
    taker = Order(2, A2, M1, BUY_YES, 6000)
    assert eng.submit(A2, M1, BUY_YES, 6000, 300) == 2
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, maker, 100, 200, 0, COMPLEMENTARY),
        level(M1, ASK, 5500, 0, 0),
        level(M1, BID, 6000, 200, 1),
    ]
    assert last(eng)[1]["price"] == 5500
    assert eng.best(M1) == (6000, 200, 0, 0)


def test_ask_gets_price_improvement(eng):
    """A taker BUY_NO at 5500 (an ask) hitting a bid at 6000 trades at 6000: it pays 4000 for NO."""
    maker = rest(eng, A1, M1, BUY_YES, 6000, 100)
    taker = Order(2, A2, M1, BUY_NO, 5500)
    assert eng.submit(A2, M1, BUY_NO, 5500, 100) == 2
    assert last(eng) == [
        accepted(taker, 100),
        trade(taker, maker, 100, 0, 0, MINT),
        level(M1, BID, 6000, 0, 0),
    ]


def test_no_trade_when_prices_do_not_cross(eng):
    """A bid below the best ask rests; so does an ask above the best bid."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    bid = Order(2, A2, M1, BUY_YES, 5900)
    assert eng.submit(A2, M1, BUY_YES, 5900, 100) == 2
    assert last(eng) == [accepted(bid, 100), level(M1, BID, 5900, 100, 1)]
    ask = Order(3, A3, M1, BUY_NO, 6100)
    assert eng.submit(A3, M1, BUY_NO, 6100, 40) == 3
    assert last(eng) == [accepted(ask, 40), level(M1, ASK, 6100, 40, 1)]
    assert eng.book(M1)[0].tolist() == [(5900, 1, 100)]
    assert eng.book(M1)[1].tolist() == [(6000, 1, 100), (6100, 1, 40)]


def sweep_book(eng):
    """Asks entered out of price order: 6100 (MINT-able), 6000, 6200, 6100, 6000."""
    return (
        rest(eng, A1, M1, BUY_NO, 6100, 100),
        rest(eng, A1, M1, SELL_YES, 6000, 100),
        rest(eng, A1, M1, SELL_YES, 6200, 100),
        rest(eng, A3, M1, SELL_YES, 6100, 100),
        rest(eng, A3, M1, SELL_YES, 6000, 50),
    )


def test_sweep_best_price_first_fifo_and_one_level_event_per_level(eng):
    """A sweep takes the best level first, each in FIFO order; one LEVEL per level it leaves."""
    o1, o2, _o3, o4, o5 = sweep_book(eng)
    taker = Order(6, A2, M1, BUY_YES, 6100)
    assert eng.submit(A2, M1, BUY_YES, 6100, 300) == 6
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, o2, 100, 200, 0, COMPLEMENTARY),
        trade(taker, o5, 50, 150, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o1, 100, 50, 0, MINT),
        trade(taker, o4, 50, 0, 50, COMPLEMENTARY),
        level(M1, ASK, 6100, 50, 1),
    ]
    assert eng.book(M1)[1].tolist() == [(6100, 1, 50), (6200, 1, 100)]
    assert eng.order(4).leaves_qty == 50


def test_sweep_stops_at_limit_then_rests(eng):
    """The sweep stops at the first level beyond the limit; the remainder rests at the limit."""
    o1, o2, _o3, o4, o5 = sweep_book(eng)
    taker = Order(6, A2, M1, BUY_YES, 6100)
    assert eng.submit(A2, M1, BUY_YES, 6100, 500) == 6
    assert last(eng) == [
        accepted(taker, 500),
        trade(taker, o2, 100, 400, 0, COMPLEMENTARY),
        trade(taker, o5, 50, 350, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o1, 100, 250, 0, MINT),
        trade(taker, o4, 100, 150, 0, COMPLEMENTARY),
        level(M1, ASK, 6100, 0, 0),
        level(M1, BID, 6100, 150, 1),
    ]
    assert eng.best(M1) == (6100, 150, 6200, 100)


def test_markets_are_independent(eng):
    """An order only meets the book of its own market."""
    rest(eng, A1, M2, SELL_YES, 6000, 100)
    bid = Order(2, A2, M1, BUY_YES, 6000)
    assert eng.submit(A2, M1, BUY_YES, 6000, 100) == 2
    assert last(eng) == [accepted(bid, 100), level(M1, BID, 6000, 100, 1)]


# =========================================================================== time in force


def test_gtc_rests(eng):
    """A GTC order with nothing to meet rests at the back of its level."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert last(eng) == [accepted(o1, 100), level(M1, BID, 5000, 100, 1)]
    o2 = Order(2, A2, M1, SELL_NO, 5000)
    assert eng.submit(A2, M1, SELL_NO, 5000, 30) == 2
    assert last(eng) == [accepted(o2, 30), level(M1, BID, 5000, 130, 2)]
    assert eng.order_count == 2


def test_gtd_expires_exactly_at_its_expiry(eng):
    """A GTD order with expiry T survives a command at T-1 and is removed by one at T."""
    order = Order(1, A1, M1, BUY_YES, 5000, GTD)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, GTD, expiry=200, time=100) == 1
    assert last(eng) == [accepted(order, 100), level(M1, BID, 5000, 100, 1)]
    assert eng.now == 100

    assert eng.advance_time(199) == 0
    assert last(eng) == []
    assert eng.now == 199
    assert eng.order(1) is not None

    assert eng.advance_time(200) == 1
    assert last(eng) == [
        canceled(order, 100, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 0, 0, command=ADVANCE),
    ]
    assert eng.order(1) is None
    assert eng.order_count == 0


def test_expiry_runs_before_the_command(eng):
    """The expired order is gone before the command at time T runs: it cannot be hit."""
    expiring = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=200)
    seller = Order(2, A2, M1, SELL_YES, 5000)
    assert eng.submit(A2, M1, SELL_YES, 5000, 100, time=200) == 2
    assert last(eng) == [
        canceled(expiring, 100, EXPIRED),
        level(M1, BID, 5000, 0, 0),
        accepted(seller, 100),
        level(M1, ASK, 5000, 100, 1),
    ]


def test_expiry_runs_even_when_the_command_is_rejected(eng):
    """Time and expiry happen first, whatever the command then does."""
    expiring = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=200)
    assert eng.cancel(A1, 99, time=300) == -Reject.UNKNOWN_ORDER
    assert last(eng) == [
        canceled(expiring, 100, EXPIRED, command=CANCEL),
        level(M1, BID, 5000, 0, 0, command=CANCEL),
        rejected(Reject.UNKNOWN_ORDER, account=A1, order_id=99, command=CANCEL),
    ]
    assert eng.now == 300


def test_expiry_order_is_expiry_then_order_id(eng):
    """Expired orders go in ascending (expiry, order_id), across markets, LEVEL after each."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=300)
    o2 = rest(eng, A1, M1, BUY_YES, 5100, 100, tif=GTD, expiry=200)
    o3 = rest(eng, A2, M1, BUY_YES, 5000, 200, tif=GTD, expiry=200)
    o4 = rest(eng, A3, M2, SELL_YES, 7000, 10, tif=GTD, expiry=250)
    keeper = rest(eng, A3, M1, BUY_YES, 5000, 5, tif=GTD, expiry=301)
    assert eng.advance_time(300) == 4
    assert last(eng) == [
        canceled(o2, 100, EXPIRED, command=ADVANCE),
        level(M1, BID, 5100, 0, 0, command=ADVANCE),
        canceled(o3, 200, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 105, 2, command=ADVANCE),
        canceled(o4, 10, EXPIRED, command=ADVANCE),
        level(M2, ASK, 7000, 0, 0, command=ADVANCE),
        canceled(o1, 100, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 5, 1, command=ADVANCE),
    ]
    assert eng.order(keeper.order_id) is not None


def test_partially_filled_gtd_expires_with_its_remainder(eng):
    """A GTD order hit in part expires with what is left."""
    order = rest(eng, A1, M1, SELL_NO, 5000, 100, tif=GTD, expiry=50)
    assert eng.submit(A2, M1, SELL_YES, 5000, 30) == 2
    assert eng.advance_time(50) == 1
    assert last(eng) == [
        canceled(order, 70, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 0, 0, command=ADVANCE),
    ]


@pytest.mark.parametrize(
    "expiry, time",
    [
        pytest.param(100, 0, id="expiry-equals-now"),
        pytest.param(50, 0, id="expiry-before-now"),
        pytest.param(150, 150, id="expiry-equals-command-time"),
        pytest.param(0, 0, id="expiry-zero"),
        pytest.param(-5, 0, id="expiry-negative"),
        pytest.param(100, 50, id="earlier-command-time-runs-at-now"),
    ],
)
def test_gtd_with_expiry_not_after_now_is_rejected(eng, expiry, time):
    """GTD needs expiry > now, where now = max(now, command time)."""
    eng.advance_time(100)
    result = eng.submit(A1, M1, BUY_YES, 5000, 100, GTD, expiry=expiry, time=time)
    assert result == -Reject.INVALID_EXPIRY
    assert last(eng) == [rejected(Reject.INVALID_EXPIRY, account=A1, market=M1)]
    assert eng.order_count == 0


def test_gtd_one_after_now_is_accepted(eng):
    """The smallest valid expiry is now + 1."""
    eng.advance_time(100)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, GTD, expiry=101) == 1
    assert eng.order(1).expiry == 101


@pytest.mark.parametrize("tif", [GTC, IOC, FOK])
def test_expiry_on_other_time_in_force_is_rejected(eng, tif):
    """A time in force other than GTD must carry expiry 0."""
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, tif, expiry=1000) == -Reject.INVALID_EXPIRY
    assert last(eng) == [rejected(Reject.INVALID_EXPIRY, account=A1, market=M1)]


def test_time_never_goes_backwards(eng):
    """A command with an earlier time runs at the current time; expiry follows engine time."""
    assert eng.advance_time(100) == 0
    assert eng.now == 100
    assert eng.advance_time(50) == 0
    assert eng.now == 100
    order = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=150, time=20)
    assert eng.now == 100
    assert eng.submit(A2, M1, BUY_YES, 4000, 100, time=120) == 2
    assert eng.now == 120
    assert eng.advance_time(110) == 0  # backwards: stays at 120, nothing expires
    assert eng.now == 120
    assert eng.order(1) is not None
    assert eng.advance_time(150) == 1
    assert last(eng) == [
        canceled(order, 100, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 0, 0, command=ADVANCE),
    ]


def test_rejected_command_still_moves_time(eng):
    """The time step comes before any check."""
    assert eng.submit(A1, M1, BUY_YES, 5050, 100, time=500) == -Reject.INVALID_PRICE
    assert eng.now == 500


def test_ioc_remainder_is_canceled_unfilled(eng):
    """IOC trades what it can and the rest is canceled (UNFILLED); it never rests."""
    maker = rest(eng, A1, M1, SELL_YES, 6000, 100)
    taker = Order(2, A2, M1, BUY_YES, 6100, IOC)
    assert eng.submit(A2, M1, BUY_YES, 6100, 300, IOC) == 2
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, maker, 100, 200, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        canceled(taker, 200, UNFILLED),
    ]
    assert eng.order(2) is None
    assert eng.order_count == 0
    assert eng.best(M1) == (0, 0, 0, 0)


def test_ioc_with_nothing_to_meet(eng):
    """An IOC that cannot trade is accepted (gets an id) and canceled whole."""
    taker = Order(1, A2, M1, SELL_YES, 5000, IOC)
    assert eng.submit(A2, M1, SELL_YES, 5000, 100, IOC) == 1
    assert last(eng) == [accepted(taker, 100), canceled(taker, 100, UNFILLED)]


def test_ioc_filled_completely_has_no_cancel(eng):
    """A complete IOC ends with its last trade and LEVEL."""
    maker = rest(eng, A1, M1, SELL_NO, 5000, 100)
    taker = Order(2, A2, M1, SELL_YES, 5000, IOC)
    assert eng.submit(A2, M1, SELL_YES, 5000, 60, IOC) == 2
    assert last(eng) == [
        accepted(taker, 60),
        trade(taker, maker, 60, 0, 40, MERGE),
        level(M1, BID, 5000, 40, 1),
    ]


def fok_book(eng):
    return rest(eng, A1, M1, SELL_YES, 6000, 100), rest(eng, A3, M1, BUY_NO, 6100, 100)


def test_fok_fills_completely(eng):
    """FOK that can fill in full sweeps like IOC and leaves nothing to cancel."""
    o1, o2 = fok_book(eng)
    taker = Order(3, A2, M1, BUY_YES, 6100, FOK)
    assert eng.submit(A2, M1, BUY_YES, 6100, 200, FOK) == 3
    assert last(eng) == [
        accepted(taker, 200),
        trade(taker, o1, 100, 100, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o2, 100, 0, 0, MINT),
        level(M1, ASK, 6100, 0, 0),
    ]


@pytest.mark.parametrize(
    "price, quantity",
    [pytest.param(6100, 201, id="not-enough-quantity"), pytest.param(6000, 200, id="limit")],
)
def test_fok_not_filled_does_nothing(eng, price, quantity):
    """A FOK that cannot fill in full is rejected: no trade, no id used, state unchanged."""
    fok_book(eng)
    before = eng.digest()
    assert eng.submit(A2, M1, BUY_YES, price, quantity, FOK) == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A2, market=M1)]
    assert eng.digest() == before
    assert eng.submit(A2, M1, BUY_YES, 5000, 1) == 3  # id 3 was not consumed


# =========================================================================== post-only


def test_post_only_rests_when_it_does_not_cross(eng):
    """A post-only order that would not trade is accepted with flag POST_ONLY and rests."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    order = Order(2, A2, M1, BUY_YES, 5900, flags=POST_ONLY)
    assert eng.submit(A2, M1, BUY_YES, 5900, 100, post_only=True) == 2
    assert last(eng) == [accepted(order, 100), level(M1, BID, 5900, 100, 1)]
    assert eng.order(2).flags == POST_ONLY


@pytest.mark.parametrize(
    "account, intent, price",
    [
        pytest.param(A2, BUY_YES, 6000, id="bid-at-best-ask"),
        pytest.param(A2, SELL_NO, 6100, id="bid-through-best-ask"),
        pytest.param(A1, BUY_YES, 6000, id="bid-against-own-ask"),
        pytest.param(A2, SELL_YES, 5000, id="ask-at-best-bid"),
        pytest.param(A2, BUY_NO, 4900, id="ask-through-best-bid"),
        pytest.param(A1, BUY_NO, 5000, id="ask-against-own-bid"),
    ],
)
def test_post_only_that_would_cross_is_rejected(eng, account, intent, price):
    """Post-only is rejected if any part would trade, against any account including its own."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    before = eng.digest()
    result = eng.submit(account, M1, intent, price, 10, post_only=True)
    assert result == -Reject.POST_ONLY_WOULD_CROSS
    assert last(eng) == [rejected(Reject.POST_ONLY_WOULD_CROSS, account=account, market=M1)]
    assert eng.digest() == before
    assert eng.submit(A2, M1, BUY_YES, 5500, 1) == 3


def test_post_only_gtd(eng):
    """Post-only combines with GTD."""
    order = Order(1, A1, M1, BUY_NO, 6000, GTD, POST_ONLY)
    assert eng.submit(A1, M1, BUY_NO, 6000, 10, GTD, expiry=9, post_only=True) == 1
    assert last(eng) == [accepted(order, 10), level(M1, ASK, 6000, 10, 1)]


# =========================================================================== market orders


def test_market_order_by_quantity(eng):
    """A market order sweeps up to its worst price, then its remainder is canceled UNFILLED."""
    o1 = rest(eng, A1, M1, SELL_YES, 6000, 100)
    o2 = rest(eng, A3, M1, SELL_YES, 6200, 100)
    rest(eng, A1, M1, SELL_YES, 6500, 100)
    taker = Order(4, A2, M1, BUY_YES, 6200, IOC, MARKET)
    assert eng.submit(A2, M1, BUY_YES, 6200, 250, IOC, market_order=True) == 4
    assert last(eng) == [
        accepted(taker, 250),
        trade(taker, o1, 100, 150, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o2, 100, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 6200, 0, 0),
        canceled(taker, 50, UNFILLED),
    ]
    assert eng.best(M1) == (0, 0, 6500, 100)


def test_market_sell_by_quantity(eng):
    """A market ask takes bids at or above its worst price only."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    rest(eng, A1, M1, SELL_NO, 4000, 100)
    taker = Order(3, A2, M1, SELL_YES, 4500, IOC, MARKET)
    assert eng.submit(A2, M1, SELL_YES, 4500, 150, IOC, market_order=True) == 3
    assert last(eng) == [
        accepted(taker, 150),
        trade(taker, o1, 100, 50, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 0, 0),
        canceled(taker, 50, UNFILLED),
    ]


def test_market_fok_by_quantity(eng):
    """A FOK market order fills in full up to its worst price, or nothing happens."""
    o1 = rest(eng, A1, M1, SELL_YES, 6000, 100)
    o2 = rest(eng, A3, M1, SELL_YES, 6200, 100)
    before = eng.digest()
    result = eng.submit(A2, M1, BUY_YES, 6200, 250, FOK, market_order=True)
    assert result == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A2, market=M1)]
    assert eng.digest() == before

    taker = Order(3, A2, M1, BUY_YES, 6200, FOK, MARKET)
    assert eng.submit(A2, M1, BUY_YES, 6200, 200, FOK, market_order=True) == 3
    assert last(eng) == [
        accepted(taker, 200),
        trade(taker, o1, 100, 100, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o2, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 6200, 0, 0),
    ]


def cash_asks(eng):
    return (
        rest(eng, A1, M1, SELL_YES, 4000, 100),
        rest(eng, A3, M1, SELL_YES, 5000, 100),
        rest(eng, A1, M1, SELL_YES, 5100, 100),
    )


def test_buy_yes_by_cash(eng):
    """By cash, BUY_YES takes the most whole lots the budget pays at p; leftover canceled UNFILLED.

    612_345 buys 100 at 4000 (400_000), then 212_345 // 5000 = 42 at 5000 (210_000): 2_345 left.
    """
    o1, o2, _ = cash_asks(eng)
    taker = Order(4, A2, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 612_345, IOC, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 612_345),
        trade(taker, o1, 100, 212_345, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 0, 0),
        trade(taker, o2, 42, 2_345, 58, COMPLEMENTARY),
        level(M1, ASK, 5000, 58, 1),
        canceled(taker, 2_345, UNFILLED),
    ]


def test_buy_no_by_cash_pays_the_no_price(eng):
    """By cash, BUY_NO pays 10_000 - p per unit: at 6000 a lot costs 4000, at 5000 it costs 5000.

    612_345 buys 100 at p=6000 (400_000), then 42 at p=5000 (210_000): 2_345 left.
    """
    o1 = rest(eng, A1, M1, BUY_YES, 6000, 100)
    o2 = rest(eng, A3, M1, SELL_NO, 5000, 100)
    rest(eng, A1, M1, BUY_YES, 4900, 100)
    taker = Order(4, A2, M1, BUY_NO, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_NO, 5000, 612_345, IOC, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 612_345),
        trade(taker, o1, 100, 212_345, 0, MINT),
        level(M1, BID, 6000, 0, 0),
        trade(taker, o2, 42, 2_345, 58, COMPLEMENTARY),
        level(M1, BID, 5000, 58, 1),
        canceled(taker, 2_345, UNFILLED),
    ]


def test_by_cash_budget_spent_exactly_has_no_cancel(eng):
    """A budget spent to the last unit leaves nothing to cancel."""
    o1, o2, _ = cash_asks(eng)
    taker = Order(4, A2, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 900_000, IOC, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 900_000),
        trade(taker, o1, 100, 500_000, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 0, 0),
        trade(taker, o2, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 5000, 0, 0),
    ]


def test_by_cash_stops_at_worst_price(eng):
    """By cash with budget to spare: the sweep stops at the worst price; the rest is canceled."""
    o1, o2, _ = cash_asks(eng)
    taker = Order(4, A2, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 1_500_000, IOC, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 1_500_000),
        trade(taker, o1, 100, 1_100_000, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 0, 0),
        trade(taker, o2, 100, 600_000, 0, COMPLEMENTARY),
        level(M1, ASK, 5000, 0, 0),
        canceled(taker, 600_000, UNFILLED),
    ]


def test_by_cash_buys_whole_lots(engine_cls):
    """With lot 10 a lot at 3000 costs 30_000: 100_000 buys 30 (90_000), 10_000 is left."""
    eng = new_engine(engine_cls, markets=(M1,), lot=10, min_size=10)
    maker = rest(eng, A1, M1, SELL_YES, 3000, 100)
    taker = Order(2, A2, M1, BUY_YES, 3000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 3000, 100_000, IOC, market_order=True, by_cash=True)
    assert result == 2
    assert last(eng) == [
        accepted(taker, 100_000),
        trade(taker, maker, 30, 10_000, 70, COMPLEMENTARY),
        level(M1, ASK, 3000, 70, 1),
        canceled(taker, 10_000, UNFILLED),
    ]


def test_by_cash_budget_ignores_lot_and_min_size(engine_cls):
    """The minimum size and the lot do not apply to a budget: 55 is accepted, buys nothing."""
    eng = new_engine(engine_cls, markets=(M1,), lot=10, min_size=100)
    rest(eng, A1, M1, SELL_YES, 3000, 100)
    taker = Order(2, A2, M1, BUY_YES, 3000, IOC, MARKET | BY_CASH)
    assert eng.submit(A2, M1, BUY_YES, 3000, 55, IOC, market_order=True, by_cash=True) == 2
    assert last(eng) == [accepted(taker, 55), canceled(taker, 55, UNFILLED)]


def test_fok_by_cash_not_filled(eng):
    """FOK by cash needs the budget spent down below one lot at its worst price; else nothing."""
    cash_asks(eng)
    before = eng.digest()
    result = eng.submit(A2, M1, BUY_YES, 5000, 1_500_000, FOK, market_order=True, by_cash=True)
    assert result == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A2, market=M1)]
    assert eng.digest() == before


def test_fok_by_cash_filled(eng):
    """FOK by cash is complete when the leftover (2_345) cannot buy a lot at 5000.

    The leftover budget is then canceled UNFILLED (budget > 0), as for IOC.
    """
    o1, o2, _ = cash_asks(eng)
    taker = Order(4, A2, M1, BUY_YES, 5000, FOK, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 612_345, FOK, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 612_345),
        trade(taker, o1, 100, 212_345, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 0, 0),
        trade(taker, o2, 42, 2_345, 58, COMPLEMENTARY),
        level(M1, ASK, 5000, 58, 1),
        canceled(taker, 2_345, UNFILLED),
    ]


def test_by_cash_buys_at_each_level_while_a_lot_is_affordable(eng):
    """The per-order stop uses that order's price: 4_500 left cannot buy at the limit (5000)
    but still buys one lot at 4000, leaving 500."""
    o1 = rest(eng, A1, M1, SELL_YES, 3000, 100)
    o2 = rest(eng, A3, M1, SELL_YES, 4000, 100)
    taker = Order(3, A2, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 304_500, IOC, market_order=True, by_cash=True)
    assert result == 3
    assert last(eng) == [
        accepted(taker, 304_500),
        trade(taker, o1, 100, 4_500, 0, COMPLEMENTARY),
        level(M1, ASK, 3000, 0, 0),
        trade(taker, o2, 1, 500, 99, COMPLEMENTARY),
        level(M1, ASK, 4000, 99, 1),
        canceled(taker, 500, UNFILLED),
    ]


def test_fok_by_cash_buys_at_each_level_while_a_lot_is_affordable(eng):
    """The same sweep as FOK: 500 < tp(limit) = 5000 at the end, so it is complete."""
    o1 = rest(eng, A1, M1, SELL_YES, 3000, 100)
    o2 = rest(eng, A3, M1, SELL_YES, 4000, 100)
    taker = Order(3, A2, M1, BUY_YES, 5000, FOK, MARKET | BY_CASH)
    result = eng.submit(A2, M1, BUY_YES, 5000, 304_500, FOK, market_order=True, by_cash=True)
    assert result == 3
    assert last(eng) == [
        accepted(taker, 304_500),
        trade(taker, o1, 100, 4_500, 0, COMPLEMENTARY),
        level(M1, ASK, 3000, 0, 0),
        trade(taker, o2, 1, 500, 99, COMPLEMENTARY),
        level(M1, ASK, 4000, 99, 1),
        canceled(taker, 500, UNFILLED),
    ]


MEET_MODES = [Stp.REJECT_AGGRESSOR, Stp.CANCEL_RESTING, Stp.CANCEL_BOTH]  # act where met


@pytest.mark.parametrize("stp", MEET_MODES, ids=lambda s: s.name)
def test_by_cash_stops_before_the_self_trade_check(eng, stp):
    """A budget that cannot buy a lot at the own order's price stops the sweep before
    self-trade prevention: the own order is not touched, the leftover is UNFILLED.
    (The venue's modes look at the limit alone: tests/test_venue_smp.py.)"""
    o1 = rest(eng, A2, M1, SELL_YES, 4000, 100)
    rest(eng, A1, M1, SELL_YES, 5000, 100)
    taker = Order(3, A1, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(
        A1, M1, BUY_YES, 5000, 402_000, IOC, stp=stp, market_order=True, by_cash=True
    )
    assert result == 3
    assert last(eng) == [
        accepted(taker, 402_000),
        trade(taker, o1, 100, 2_000, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 0, 0),
        canceled(taker, 2_000, UNFILLED),
    ]
    assert eng.order(2) is not None


def stp_cash_book(eng):
    """Asks: A2 at 4000, A1 (own) at 4000, A2 at 5000."""
    return (
        rest(eng, A2, M1, SELL_YES, 4000, 100),
        rest(eng, A1, M1, SELL_YES, 4000, 100),
        rest(eng, A2, M1, SELL_YES, 5000, 100),
    )


@pytest.mark.parametrize("stp", [Stp.REJECT_AGGRESSOR, Stp.CANCEL_BOTH], ids=lambda s: s.name)
def test_fok_by_cash_stopped_by_stp_never_completes(eng, stp):
    """4_500 left after a self-trade stop is below tp(limit) = 5000, but a 4000 lot was within
    reach: a sweep stopped by STP never completes, so the FOK does nothing."""
    stp_cash_book(eng)
    before = eng.digest()
    result = eng.submit(
        A1, M1, BUY_YES, 5000, 404_500, FOK, stp=stp, market_order=True, by_cash=True
    )
    assert result == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A1, market=M1)]
    assert eng.digest() == before


def test_ioc_by_cash_stopped_by_reject_aggressor(eng):
    """The IOC twin: the remaining budget is canceled SELF_TRADE after the pending LEVEL."""
    o1, _own, _o3 = stp_cash_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(A1, M1, BUY_YES, 5000, 404_500, IOC, market_order=True, by_cash=True)
    assert result == 4
    assert last(eng) == [
        accepted(taker, 404_500),
        trade(taker, o1, 100, 4_500, 0, COMPLEMENTARY),
        level(M1, ASK, 4000, 100, 1),
        canceled(taker, 4_500, SELF_TRADE),
    ]


def test_ioc_by_cash_stopped_by_cancel_both(eng):
    """CANCEL_BOTH by cash: the own order and the remaining budget are both canceled."""
    o1, own, _o3 = stp_cash_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 5000, IOC, MARKET | BY_CASH)
    result = eng.submit(
        A1, M1, BUY_YES, 5000, 404_500, IOC, stp=Stp.CANCEL_BOTH, market_order=True, by_cash=True
    )
    assert result == 4
    assert last(eng) == [
        accepted(taker, 404_500),
        trade(taker, o1, 100, 4_500, 0, COMPLEMENTARY),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 4000, 0, 0),
        canceled(taker, 4_500, SELF_TRADE),
    ]


def test_fok_by_cash_cancel_resting_completes(eng):
    """CANCEL_RESTING goes past the own order; 4_500 cannot buy at 5000: complete, FOK done."""
    o1, own, _o3 = stp_cash_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 5000, FOK, MARKET | BY_CASH)
    result = eng.submit(
        A1, M1, BUY_YES, 5000, 404_500, FOK, stp=Stp.CANCEL_RESTING, market_order=True, by_cash=True
    )
    assert result == 4
    assert last(eng) == [
        accepted(taker, 404_500),
        trade(taker, o1, 100, 4_500, 0, COMPLEMENTARY),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 4000, 0, 0),
        canceled(taker, 4_500, UNFILLED),
    ]
    assert eng.order(3) is not None


# =========================================================================== replace


def two_bids(eng):
    return rest(eng, A1, M1, BUY_YES, 5000, 100), rest(eng, A2, M1, BUY_YES, 5000, 100)


@pytest.mark.parametrize("price", [0, 5000], ids=["price-0", "same-price"])
def test_replace_smaller_quantity_keeps_priority(eng, price):
    """Same price, smaller quantity: REPLACED + LEVEL, and a later sell still hits it first."""
    o1, _o2 = two_bids(eng)
    assert eng.replace(A1, 1, price=price, quantity=60) == 0
    assert last(eng) == [replaced(o1, 60), level(M1, BID, 5000, 160, 2, command=REPLACE)]
    assert eng.order(1).leaves_qty == 60

    seller = Order(3, A3, M1, SELL_YES, 5000)
    assert eng.submit(A3, M1, SELL_YES, 5000, 60) == 3
    assert last(eng) == [
        accepted(seller, 60),
        trade(seller, o1, 60, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 100, 1),
    ]


@pytest.mark.parametrize("price, quantity", [(0, 0), (5000, 0), (0, 100), (5000, 100)], ids=str)
def test_replace_same_price_and_quantity_only_replaced(eng, price, quantity):
    """Same price and same quantity: REPLACED alone, nothing moves."""
    o1, _o2 = two_bids(eng)
    before = eng.digest()
    assert eng.replace(A1, 1, price=price, quantity=quantity) == 0
    assert last(eng) == [replaced(o1, 100)]
    assert eng.digest() == before
    assert eng.submit(A3, M1, SELL_YES, 5000, 100) == 3
    assert last(eng)[1] == trade(Order(3, A3, M1, SELL_YES, 5000), o1, 100, 0, 0, COMPLEMENTARY)


def test_replace_larger_quantity_loses_priority(eng):
    """Same price, larger quantity: to the back of the level (one LEVEL)."""
    o1, o2 = two_bids(eng)
    assert eng.replace(A1, 1, quantity=150) == 0
    assert last(eng) == [replaced(o1, 150), level(M1, BID, 5000, 250, 2, command=REPLACE)]

    seller = Order(3, A3, M1, SELL_YES, 5000)
    assert eng.submit(A3, M1, SELL_YES, 5000, 100) == 3
    assert last(eng) == [
        accepted(seller, 100),
        trade(seller, o2, 100, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 150, 1),
    ]


def test_replace_quantity_is_the_new_remaining(eng):
    """After a partial fill (100 -> 60), 80 is more than the remaining: priority lost."""
    o1, o2 = two_bids(eng)
    assert eng.submit(A3, M1, SELL_YES, 5000, 40) == 3
    assert eng.order(1).leaves_qty == 60
    assert eng.replace(A1, 1, quantity=80) == 0
    assert last(eng) == [replaced(o1, 80), level(M1, BID, 5000, 180, 2, command=REPLACE)]
    seller = Order(4, A3, M1, SELL_YES, 5000)
    assert eng.submit(A3, M1, SELL_YES, 5000, 100) == 4
    assert last(eng) == [
        accepted(seller, 100),
        trade(seller, o2, 100, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 80, 1),
    ]


def test_replace_below_remaining_after_partial_fill_keeps_priority(eng):
    """After a partial fill (100 -> 60), 50 at the same price keeps the place."""
    o1, _o2 = two_bids(eng)
    assert eng.submit(A3, M1, SELL_YES, 5000, 40) == 3
    assert eng.replace(A1, 1, quantity=50) == 0
    assert last(eng) == [replaced(o1, 50), level(M1, BID, 5000, 150, 2, command=REPLACE)]
    assert eng.submit(A3, M1, SELL_YES, 5000, 10) == 4
    assert last(eng)[1] == trade(Order(4, A3, M1, SELL_YES, 5000), o1, 10, 0, 40, COMPLEMENTARY)


def test_replace_new_price_loses_priority(eng):
    """A new price: LEVEL for the old level, then for the new one, at its back."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    o2 = rest(eng, A2, M1, BUY_YES, 5100, 100)
    assert eng.replace(A1, 1, price=5100, quantity=50) == 0
    assert last(eng) == [
        replaced(o1.at(5100), 50),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        level(M1, BID, 5100, 150, 2, command=REPLACE),
    ]
    seller = Order(3, A3, M1, SELL_YES, 5100)
    assert eng.submit(A3, M1, SELL_YES, 5100, 100) == 3
    assert last(eng) == [
        accepted(seller, 100),
        trade(seller, o2, 100, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5100, 50, 1),
    ]
    assert eng.order(1).price == 5100


def test_replace_away_and_back_loses_priority(eng):
    """Moving to another price and back puts the order behind those that stayed."""
    o1, o2 = two_bids(eng)
    assert eng.replace(A1, 1, price=4900) == 0
    assert eng.replace(A1, 1, price=5000) == 0
    assert last(eng) == [
        replaced(o1, 100),
        level(M1, BID, 4900, 0, 0, command=REPLACE),
        level(M1, BID, 5000, 200, 2, command=REPLACE),
    ]
    assert eng.submit(A3, M1, SELL_YES, 5000, 10) == 3
    assert last(eng)[1] == trade(Order(3, A3, M1, SELL_YES, 5000), o2, 10, 0, 90, COMPLEMENTARY)


def test_crossing_replace_takes_liquidity(eng):
    """A replace whose new price crosses trades first as the taker, then rests."""
    o1 = rest(eng, A1, M1, SELL_YES, 6000, 100)
    rest(eng, A3, M1, SELL_YES, 6100, 100)
    o3 = rest(eng, A2, M1, BUY_YES, 5000, 150)
    assert eng.replace(A2, 3, price=6000) == 0
    moved = o3.at(6000)
    assert last(eng) == [
        replaced(moved, 150),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        trade(moved, o1, 100, 50, 0, COMPLEMENTARY, command=REPLACE),
        level(M1, ASK, 6000, 0, 0, command=REPLACE),
        level(M1, BID, 6000, 50, 1, command=REPLACE),
    ]
    assert eng.order(3).price == 6000
    assert eng.order(3).leaves_qty == 50
    assert eng.best(M1) == (6000, 50, 6100, 100)


def test_crossing_replace_filled_completely(eng):
    """A crossing replace may fill in full: the order is then gone."""
    o1 = rest(eng, A1, M1, BUY_NO, 6000, 100)
    o2 = rest(eng, A2, M1, SELL_NO, 5000, 150)
    assert eng.replace(A2, 2, price=6000, quantity=100) == 0
    moved = o2.at(6000)
    assert last(eng) == [
        replaced(moved, 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        trade(moved, o1, 100, 0, 0, COMPLEMENTARY, command=REPLACE),
        level(M1, ASK, 6000, 0, 0, command=REPLACE),
    ]
    assert eng.order(2) is None
    assert eng.order_count == 0


def test_crossing_replace_self_trade_uses_the_order_stp(eng):
    """A crossing replace meeting its own account's order applies the order's own STP mode."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    o2 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.replace(A1, 2, price=6000) == 0
    assert last(eng) == [
        replaced(o2.at(6000), 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        canceled(o2.at(6000), 100, SELF_TRADE, command=REPLACE),
    ]
    assert eng.order(2) is None
    assert eng.order(1) is not None


def test_crossing_replace_cancel_resting(eng):
    """With CANCEL_RESTING the replaced order cancels its own resting order and goes on."""
    own = rest(eng, A1, M1, SELL_YES, 6000, 100)
    o2 = rest(eng, A2, M1, SELL_YES, 6000, 30)
    o3 = rest(eng, A1, M1, BUY_YES, 5000, 100, stp=Stp.CANCEL_RESTING)
    assert eng.replace(A1, 3, price=6000) == 0
    moved = o3.at(6000)
    assert last(eng) == [
        replaced(moved, 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        canceled(own, 100, SELF_TRADE, command=REPLACE),
        trade(moved, o2, 30, 70, 0, COMPLEMENTARY, command=REPLACE),
        level(M1, ASK, 6000, 0, 0, command=REPLACE),
        level(M1, BID, 6000, 70, 1, command=REPLACE),
    ]


def test_replace_keeps_id_client_id_tif_expiry_flags(eng):
    """The order keeps id, client id, time in force, expiry, STP and flags across a replace."""
    order = rest(
        eng,
        A1,
        M1,
        SELL_NO,
        5000,
        100,
        tif=GTD,
        expiry=500,
        client_order_id=7,
        stp=Stp.CANCEL_BOTH,
        post_only=True,
    )
    assert eng.replace(A1, 1, price=4000, quantity=50) == 0
    moved = order.at(4000)
    assert last(eng) == [
        replaced(moved, 50),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        level(M1, BID, 4000, 50, 1, command=REPLACE),
    ]
    assert eng.order(1) == OrderInfo(
        1, A1, M1, SELL_NO, BID, 4000, 50, GTD, 500, 7, Stp.CANCEL_BOTH, POST_ONLY
    )
    assert eng.advance_time(500) == 1
    assert last(eng) == [
        canceled(moved, 50, EXPIRED, command=ADVANCE),
        level(M1, BID, 4000, 0, 0, command=ADVANCE),
    ]


def test_replace_post_only_that_would_cross(eng):
    """A post-only order cannot be replaced to a crossing price; it stays as it was."""
    rest(eng, A2, M1, SELL_YES, 6000, 100)
    rest(eng, A1, M1, BUY_YES, 5000, 100, post_only=True)
    before = eng.digest()
    assert eng.replace(A1, 2, price=6000) == -Reject.POST_ONLY_WOULD_CROSS
    assert last(eng) == [
        rejected(Reject.POST_ONLY_WOULD_CROSS, account=A1, order_id=2, command=REPLACE)
    ]
    assert eng.digest() == before


def test_replace_checks(eng):
    """REPLACE rejects: unknown order, another account's order, market not OPEN, bad price/qty."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    before = eng.digest()
    assert eng.replace(A1, 99, quantity=10) == -Reject.UNKNOWN_ORDER
    assert last(eng) == [rejected(Reject.UNKNOWN_ORDER, account=A1, order_id=99, command=REPLACE)]
    assert eng.replace(A2, 1, quantity=10) == -Reject.NOT_OWNER
    assert last(eng) == [rejected(Reject.NOT_OWNER, account=A2, order_id=1, command=REPLACE)]
    assert eng.replace(A1, 1, price=5050) == -Reject.INVALID_PRICE
    assert eng.replace(A1, 1, quantity=-1) == -Reject.INVALID_QUANTITY
    assert eng.digest() == before

    eng.set_market_state(M1, SUSPENDED)
    before = eng.digest()
    assert eng.replace(A2, 1, quantity=10) == -Reject.NOT_OWNER  # owner checked first
    assert eng.replace(A1, 1, price=5050) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [rejected(Reject.MARKET_NOT_OPEN, account=A1, order_id=1, command=REPLACE)]
    assert eng.digest() == before


def test_replace_below_min_size(engine_cls):
    """A replace quantity below the market's minimum size is BELOW_MIN_SIZE."""
    eng = new_engine(engine_cls, markets=(M1,), min_size=10)
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.replace(A1, 1, quantity=5) == -Reject.BELOW_MIN_SIZE
    assert last(eng) == [rejected(Reject.BELOW_MIN_SIZE, account=A1, order_id=1, command=REPLACE)]
    assert eng.order(1).leaves_qty == 100


# =========================================================================== self-trade prevention


def stp_book(eng):
    """Asks at 6000: A2 (100), A1 (100), A2 (100)."""
    return (
        rest(eng, A2, M1, SELL_YES, 6000, 100),
        rest(eng, A1, M1, SELL_YES, 6000, 100),
        rest(eng, A2, M1, SELL_YES, 6000, 100),
    )


def test_stp_reject_aggressor_keeps_earlier_trades(eng):
    """REJECT_AGGRESSOR (default): trades before the own order stand, the remainder is canceled."""
    o1, _own, _o3 = stp_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 300) == 4
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, o1, 100, 200, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 200, 2),
        canceled(taker, 200, SELF_TRADE),
    ]
    assert eng.order(2) is not None
    assert eng.order(3) is not None
    assert eng.best(M1) == (0, 0, 6000, 200)


def test_stp_cancel_resting_goes_on(eng):
    """CANCEL_RESTING cancels the own resting order and matching goes on; remainder rests."""
    o1, own, o3 = stp_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 300, stp=Stp.CANCEL_RESTING) == 4
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, o1, 100, 200, 0, COMPLEMENTARY),
        canceled(own, 100, SELF_TRADE),
        trade(taker, o3, 100, 100, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        level(M1, BID, 6000, 100, 1),
    ]


def test_stp_cancel_both(eng):
    """CANCEL_BOTH cancels the own resting order, then the taker's remainder."""
    o1, own, _o3 = stp_book(eng)
    taker = Order(4, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 300, stp=Stp.CANCEL_BOTH) == 4
    assert last(eng) == [
        accepted(taker, 300),
        trade(taker, o1, 100, 200, 0, COMPLEMENTARY),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 100, 1),
        canceled(taker, 200, SELF_TRADE),
    ]
    assert eng.order(3) is not None


@pytest.mark.parametrize("bid_intent, ask_intent, match_type", INTENT_PAIRS)
@pytest.mark.parametrize("taker_side", ["bid", "ask"])
def test_self_trade_whatever_the_intents(eng, bid_intent, ask_intent, match_type, taker_side):
    """Any match between two orders of one account is a self-trade (e.g. BUY_YES vs own BUY_NO)."""
    maker_intent, taker_intent = (
        (ask_intent, bid_intent) if taker_side == "bid" else (bid_intent, ask_intent)
    )
    maker = rest(eng, A1, M1, maker_intent, 6000, 100)
    taker = Order(2, A1, M1, taker_intent, 6000)
    assert eng.submit(A1, M1, taker_intent, 6000, 100) == 2
    assert last(eng) == [accepted(taker, 100), canceled(taker, 100, SELF_TRADE)]
    assert eng.order(maker.order_id) is not None


def test_stp_on_ioc_reason_is_self_trade(eng):
    """An IOC stopped by self-trade prevention is canceled SELF_TRADE, not UNFILLED."""
    rest(eng, A1, M1, BUY_NO, 6000, 100)
    taker = Order(2, A1, M1, BUY_YES, 6000, IOC)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, IOC) == 2
    assert last(eng) == [accepted(taker, 100), canceled(taker, 100, SELF_TRADE)]


def test_stp_cancel_resting_ioc(eng):
    """CANCEL_RESTING on an IOC: own order canceled, trade with the next, remainder UNFILLED."""
    own = rest(eng, A1, M1, SELL_YES, 6000, 100)
    other = rest(eng, A2, M1, SELL_YES, 6000, 50)
    taker = Order(3, A1, M1, BUY_YES, 6000, IOC)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, IOC, stp=Stp.CANCEL_RESTING) == 3
    assert last(eng) == [
        accepted(taker, 100),
        canceled(own, 100, SELF_TRADE),
        trade(taker, other, 50, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        canceled(taker, 50, UNFILLED),
    ]


def test_stp_cancel_resting_only_own_order(eng):
    """CANCEL_RESTING with only the own order in the way: it is canceled and the taker rests."""
    own = rest(eng, A1, M1, SELL_YES, 6000, 100)
    taker = Order(2, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 50, stp=Stp.CANCEL_RESTING) == 2
    assert last(eng) == [
        accepted(taker, 50),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 0, 0),
        level(M1, BID, 6000, 50, 1),
    ]


@pytest.mark.parametrize("stp", [Stp.REJECT_AGGRESSOR, Stp.CANCEL_BOTH])
def test_fok_stopped_by_stp_does_nothing(eng, stp):
    """FOK whose sweep would stop on its own order is rejected; the own order is not canceled."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    rest(eng, A2, M1, SELL_YES, 6000, 100)
    before = eng.digest()
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, FOK, stp=stp) == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A1, market=M1)]
    assert eng.digest() == before


def test_fok_cancel_resting_filled(eng):
    """FOK with CANCEL_RESTING fills past its own order, which is canceled."""
    own = rest(eng, A1, M1, SELL_YES, 6000, 100)
    other = rest(eng, A2, M1, SELL_YES, 6000, 100)
    taker = Order(3, A1, M1, BUY_YES, 6000, FOK)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, FOK, stp=Stp.CANCEL_RESTING) == 3
    assert last(eng) == [
        accepted(taker, 100),
        canceled(own, 100, SELF_TRADE),
        trade(taker, other, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
    ]


def test_fok_cancel_resting_not_filled_keeps_own_order(eng):
    """FOK with CANCEL_RESTING that cannot fill anyway: nothing is canceled."""
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    rest(eng, A2, M1, SELL_YES, 6000, 50)
    before = eng.digest()
    result = eng.submit(A1, M1, BUY_YES, 6000, 100, FOK, stp=Stp.CANCEL_RESTING)
    assert result == -Reject.FOK_NOT_FILLED
    assert last(eng) == [rejected(Reject.FOK_NOT_FILLED, account=A1, market=M1)]
    assert eng.digest() == before
    assert eng.order(1) is not None


def test_fok_complete_before_own_order(eng):
    """The taker is complete before it reaches its own order: no self-trade at all."""
    other = rest(eng, A2, M1, SELL_YES, 6000, 100)
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    taker = Order(3, A1, M1, BUY_YES, 6000, FOK)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, FOK, stp=Stp.CANCEL_BOTH) == 3
    assert last(eng) == [
        accepted(taker, 100),
        trade(taker, other, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 100, 1),
    ]


# =========================================================================== cancels


def test_cancel(eng):
    """CANCEL removes a resting order: CANCELED (USER) with its remaining quantity, then LEVEL."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    rest(eng, A2, M1, BUY_YES, 5000, 50)
    eng.submit(A3, M1, SELL_YES, 5000, 30)
    assert eng.cancel(A1, 1) == 0
    assert last(eng) == [
        canceled(o1, 70, USER, command=CANCEL),
        level(M1, BID, 5000, 50, 1, command=CANCEL),
    ]
    assert eng.order(1) is None
    assert eng.cancel(A1, 1) == -Reject.UNKNOWN_ORDER
    assert last(eng) == [rejected(Reject.UNKNOWN_ORDER, account=A1, order_id=1, command=CANCEL)]


def test_cancel_of_another_accounts_order_is_not_owner(eng):
    """Canceling someone else's resting order gives NOT_OWNER and changes nothing."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    before = eng.digest()
    assert eng.cancel(A2, 1) == -Reject.NOT_OWNER
    assert last(eng) == [rejected(Reject.NOT_OWNER, account=A2, order_id=1, command=CANCEL)]
    assert eng.digest() == before


def test_cancel_of_an_order_that_is_gone(eng):
    """Filled, IOC and never-assigned ids are UNKNOWN_ORDER."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    eng.submit(A2, M1, SELL_YES, 5000, 100)  # fills order 1
    eng.submit(A2, M1, SELL_YES, 5000, 100, IOC)  # order 3, never rests
    for order_id in (0, 1, 3, 4, 2**64 - 1):
        assert eng.cancel(A1, order_id) == -Reject.UNKNOWN_ORDER
        assert last(eng) == [
            rejected(Reject.UNKNOWN_ORDER, account=A1, order_id=order_id, command=CANCEL)
        ]


def test_cancel_by_client_order_id(eng):
    """CANCEL_CLIENT cancels the account's resting order with that client id, not another's."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100, client_order_id=77)
    rest(eng, A2, M1, BUY_YES, 5000, 50, client_order_id=77)
    assert eng.cancel_client(A3, 77) == -Reject.UNKNOWN_ORDER
    assert last(eng) == [rejected(Reject.UNKNOWN_ORDER, account=A3, command=CANCEL_CLIENT)]
    assert eng.cancel_client(A1, 77) == 0
    assert last(eng) == [
        canceled(o1, 100, USER, command=CANCEL_CLIENT),
        level(M1, BID, 5000, 50, 1, command=CANCEL_CLIENT),
    ]
    assert eng.cancel_client(A1, 77) == -Reject.UNKNOWN_ORDER
    assert eng.order(2) is not None


def test_cancel_client_zero_never_matches(eng):
    """Client order id 0 means none: it never matches, even if the account has orders."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.cancel_client(A1, 0) == -Reject.UNKNOWN_ORDER
    assert last(eng) == [rejected(Reject.UNKNOWN_ORDER, account=A1, command=CANCEL_CLIENT)]
    assert eng.order(1) is not None


def cancel_all_book(eng):
    """A1 has orders 1 (M1), 2 (M2), 4 (M1, better bid than 1); A2 has 3 (M1)."""
    return (
        rest(eng, A1, M1, BUY_YES, 5000, 100),
        rest(eng, A1, M2, SELL_YES, 6000, 100),
        rest(eng, A2, M1, BUY_YES, 5000, 50),
        rest(eng, A1, M1, SELL_NO, 5100, 100),
    )


def test_cancel_all_in_one_market(eng):
    """CANCEL_ALL in a market cancels the account's orders there in ascending order id."""
    o1, _o2, _o3, o4 = cancel_all_book(eng)
    assert eng.cancel_all(A1, M1) == 2
    assert last(eng) == [
        canceled(o1, 100, USER, command=CANCEL_ALL),
        level(M1, BID, 5000, 50, 1, command=CANCEL_ALL),
        canceled(o4, 100, USER, command=CANCEL_ALL),
        level(M1, BID, 5100, 0, 0, command=CANCEL_ALL),
    ]
    assert eng.order(2) is not None
    assert eng.order(3) is not None


def test_cancel_all_in_all_markets(eng):
    """CANCEL_ALL with ALL_MARKETS (the default) cancels across markets in ascending order id."""
    o1, o2, _o3, o4 = cancel_all_book(eng)
    assert eng.cancel_all(A1) == 3
    assert last(eng) == [
        canceled(o1, 100, USER, command=CANCEL_ALL),
        level(M1, BID, 5000, 50, 1, command=CANCEL_ALL),
        canceled(o2, 100, USER, command=CANCEL_ALL),
        level(M2, ASK, 6000, 0, 0, command=CANCEL_ALL),
        canceled(o4, 100, USER, command=CANCEL_ALL),
        level(M1, BID, 5100, 0, 0, command=CANCEL_ALL),
    ]
    assert eng.order_count == 1
    assert eng.cancel_all(A1, ALL_MARKETS) == 0
    assert last(eng) == []


def test_cancel_all_with_no_orders(eng):
    """CANCEL_ALL of an account with no resting order: 0 and no event."""
    assert eng.cancel_all(A3, M1) == 0
    assert last(eng) == []
    assert eng.cancel_all(A3) == 0
    assert last(eng) == []


def test_cancel_all_checks(eng):
    """CANCEL_ALL: unknown account first, then unknown market."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    before = eng.digest()
    assert eng.cancel_all(5) == -Reject.UNKNOWN_ACCOUNT
    assert last(eng) == [
        rejected(Reject.UNKNOWN_ACCOUNT, account=5, market=ALL_MARKETS, command=CANCEL_ALL)
    ]
    assert eng.cancel_all(5, 3) == -Reject.UNKNOWN_ACCOUNT
    assert eng.cancel_all(A1, 3) == -Reject.UNKNOWN_MARKET
    assert last(eng) == [rejected(Reject.UNKNOWN_MARKET, account=A1, market=3, command=CANCEL_ALL)]
    assert eng.cancel_all(A1, 4) == -Reject.UNKNOWN_MARKET
    assert eng.digest() == before


@pytest.mark.parametrize("state", [SUSPENDED, CLOSED])
def test_cancels_allowed_when_not_open(eng, state):
    """Cancels work in SUSPENDED (and are merely UNKNOWN_ORDER once CLOSED emptied the book)."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100, client_order_id=1)
    o2 = rest(eng, A1, M1, BUY_YES, 4000, 100, client_order_id=2)
    o3 = rest(eng, A1, M1, BUY_YES, 3000, 100)
    if state == CLOSED:
        eng.set_market_state(M1, CLOSED)
        assert eng.cancel(A1, 1) == -Reject.UNKNOWN_ORDER
        assert eng.cancel_all(A1, M1) == 0
        return
    eng.set_market_state(M1, SUSPENDED)
    assert eng.cancel(A1, 1) == 0
    assert last(eng) == [
        canceled(o1, 100, USER, command=CANCEL),
        level(M1, BID, 5000, 0, 0, command=CANCEL),
    ]
    assert eng.cancel_client(A1, 2) == 0
    assert last(eng) == [
        canceled(o2, 100, USER, command=CANCEL_CLIENT),
        level(M1, BID, 4000, 0, 0, command=CANCEL_CLIENT),
    ]
    assert eng.cancel_all(A1, M1) == 1
    assert last(eng) == [
        canceled(o3, 100, USER, command=CANCEL_ALL),
        level(M1, BID, 3000, 0, 0, command=CANCEL_ALL),
    ]


# =========================================================================== client order ids


def test_duplicate_client_order_id(eng):
    """A client id in use by a resting order of the account is rejected, in any market/tif."""
    rest(eng, A1, M1, BUY_YES, 5000, 100, client_order_id=5)
    before = eng.digest()
    dup = Reject.DUPLICATE_CLIENT_ORDER_ID
    assert eng.submit(A1, M1, BUY_YES, 4000, 100, client_order_id=5) == -dup
    assert last(eng) == [rejected(dup, account=A1, market=M1)]
    assert eng.submit(A1, M2, SELL_YES, 6000, 100, client_order_id=5) == -dup
    assert last(eng) == [rejected(dup, account=A1, market=M2)]
    assert eng.submit(A1, M1, SELL_YES, 6000, 100, IOC, client_order_id=5) == -dup
    assert eng.digest() == before
    # another account may use it
    assert eng.submit(A2, M1, BUY_YES, 4000, 100, client_order_id=5) == 2


def test_client_order_id_reusable_after_cancel(eng):
    """Once the order is canceled, its client id is free again."""
    rest(eng, A1, M1, BUY_YES, 5000, 100, client_order_id=5)
    assert eng.cancel(A1, 1) == 0
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, client_order_id=5) == 2
    assert eng.order(2).client_order_id == 5


def test_client_order_id_reusable_after_fill(eng):
    """Once the order is filled, its client id is free again."""
    rest(eng, A1, M1, BUY_YES, 5000, 100, client_order_id=5)
    assert eng.submit(A2, M1, SELL_YES, 5000, 100) == 2
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, client_order_id=5) == 3


def test_client_order_id_of_ioc_is_not_kept(eng):
    """An IOC never rests, so its client id is free right after."""
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, IOC, client_order_id=9) == 1
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, client_order_id=9) == 2
    assert eng.cancel_client(A1, 9) == 0


def test_client_order_id_zero_is_none(eng):
    """Client order id 0 never counts as a duplicate."""
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == 1
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == 2


# =========================================================================== lifecycle

LIVE = (PRE_OPEN, OPEN, SUSPENDED, HALTED)
ALLOWED = {
    (PRE_OPEN, OPEN),
    (OPEN, SUSPENDED),
    (OPEN, HALTED),
    (SUSPENDED, OPEN),
    (SUSPENDED, HALTED),
    (HALTED, OPEN),
    (HALTED, SUSPENDED),
} | {(live, end) for live in LIVE for end in (CLOSED, EXPIRED_STATE)}
FROM_STATES = [*LIVE, CLOSED, EXPIRED_STATE]
TO_STATES = [*MarketState, 8, 255]


def bring_to(eng, market, state):
    """Move a PRE_OPEN market to ``state`` through allowed transitions."""
    path = {
        PRE_OPEN: [],
        OPEN: [OPEN],
        SUSPENDED: [OPEN, SUSPENDED],
        HALTED: [OPEN, HALTED],
        CLOSED: [CLOSED],
        EXPIRED_STATE: [EXPIRED_STATE],
    }[state]
    for step in path:
        assert eng.set_market_state(market, step) == 0


@pytest.mark.parametrize("to_state", TO_STATES, ids=lambda s: getattr(s, "name", str(s)))
@pytest.mark.parametrize("from_state", FROM_STATES, ids=lambda s: s.name)
def test_market_state_transitions(engine_cls, from_state, to_state):
    """PRE_OPEN->OPEN; OPEN, SUSPENDED and HALTED among themselves; any of these four ->
    CLOSED or EXPIRED; nothing out of CLOSED or EXPIRED (RESOLVE only)."""
    eng = new_engine(engine_cls, markets=(M1,), open_markets=False)
    bring_to(eng, M1, from_state)
    result = eng.set_market_state(M1, to_state)
    if (from_state, to_state) in ALLOWED:
        assert result == 0
        assert last(eng) == [market_event(M1, to_state)]
        assert eng.market(M1) == market_info(M1, to_state, 100, 1, 1)
    else:
        assert result == -Reject.INVALID_STATE_TRANSITION
        assert last(eng) == [
            rejected(Reject.INVALID_STATE_TRANSITION, market=M1, command=SET_STATE)
        ]
        assert eng.market(M1).state == from_state


def test_set_state_of_unknown_market(eng):
    """SET_MARKET_STATE on a market never created is UNKNOWN_MARKET."""
    assert eng.set_market_state(3, OPEN) == -Reject.UNKNOWN_MARKET
    assert last(eng) == [rejected(Reject.UNKNOWN_MARKET, market=3, command=SET_STATE)]


@pytest.mark.parametrize("state", [SUSPENDED, HALTED, CLOSED, EXPIRED_STATE])
def test_orders_only_in_open(engine_cls, state):
    """NEW_ORDER in a market neither OPEN nor PRE_OPEN is MARKET_NOT_OPEN."""
    eng = new_engine(engine_cls, markets=(M1,), open_markets=False)
    bring_to(eng, M1, state)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [rejected(Reject.MARKET_NOT_OPEN, account=A1, market=M1)]
    assert eng.order_count == 0


def test_reopened_market_takes_orders_again(eng):
    """SUSPENDED -> OPEN: orders resume and resting orders are still there."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    eng.set_market_state(M1, SUSPENDED)
    eng.set_market_state(M1, OPEN)
    taker = Order(2, A2, M1, SELL_YES, 5000)
    assert eng.submit(A2, M1, SELL_YES, 5000, 100) == 2
    assert last(eng) == [
        accepted(taker, 100),
        trade(taker, o1, 100, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 0, 0),
    ]


def test_gtd_expires_in_a_suspended_market(eng):
    """Expiry does not depend on the market state."""
    order = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=10)
    eng.set_market_state(M1, SUSPENDED)
    assert eng.advance_time(10) == 1
    assert last(eng) == [
        canceled(order, 100, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 0, 0, command=ADVANCE),
    ]


@pytest.mark.parametrize("from_state", [OPEN, SUSPENDED], ids=["from-open", "from-suspended"])
def test_close_cancels_every_resting_order_in_book_order(eng, from_state):
    """CLOSED: MARKET, then bids best to worst, asks best to worst, FIFO, one LEVEL per level."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    o2 = rest(eng, A2, M1, SELL_NO, 5100, 100)
    o3 = rest(eng, A3, M1, BUY_YES, 5000, 50)
    o4 = rest(eng, A1, M1, SELL_YES, 6000, 100)
    o5 = rest(eng, A2, M1, BUY_NO, 5900, 20)
    o6 = rest(eng, A1, M1, SELL_YES, 5900, 30, tif=GTD, expiry=1000)
    rest(eng, A1, M2, BUY_YES, 5000, 100)
    if from_state == SUSPENDED:
        eng.set_market_state(M1, SUSPENDED)
    assert eng.set_market_state(M1, CLOSED) == 0

    def c(order, qty):
        return canceled(order, qty, MARKET_CLOSED, command=SET_STATE)

    assert last(eng) == [
        market_event(M1, CLOSED),
        c(o2, 100),
        level(M1, BID, 5100, 0, 0, command=SET_STATE),
        c(o1, 100),
        c(o3, 50),
        level(M1, BID, 5000, 0, 0, command=SET_STATE),
        c(o5, 20),
        c(o6, 30),
        level(M1, ASK, 5900, 0, 0, command=SET_STATE),
        c(o4, 100),
        level(M1, ASK, 6000, 0, 0, command=SET_STATE),
    ]
    assert eng.order_count == 1
    assert eng.order(7) is not None
    assert eng.best(M1) == (0, 0, 0, 0)


def test_close_pre_open_market_with_no_orders(engine_cls):
    """PRE_OPEN -> CLOSED gives only the MARKET event."""
    eng = new_engine(engine_cls, markets=(M1,), open_markets=False)
    assert eng.set_market_state(M1, CLOSED) == 0
    assert last(eng) == [market_event(M1, CLOSED)]


# =========================================================================== tick changes


def test_finer_tick_moves_nothing(eng):
    """A finer tick cancels nothing, keeps FIFO, and allows the new prices."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    rest(eng, A2, M1, BUY_YES, 5000, 100)
    rest(eng, A1, M1, SELL_YES, 6000, 100)
    assert eng.set_tick(M1, 10) == 0
    assert last(eng) == [market_event(M1, OPEN, tick=10, command=SET_TICK)]
    assert eng.market(M1) == market_info(M1, OPEN, 10, 1, 1)
    assert eng.book(M1)[0].tolist() == [(5000, 2, 200)]

    o4 = Order(4, A3, M1, BUY_YES, 5010)
    assert eng.submit(A3, M1, BUY_YES, 5010, 10) == 4
    assert last(eng) == [accepted(o4, 10), level(M1, BID, 5010, 10, 1)]

    taker = Order(5, A2, M1, SELL_YES, 5000)
    assert eng.submit(A2, M1, SELL_YES, 5000, 110) == 5
    assert last(eng) == [
        accepted(taker, 110),
        trade(taker, o4, 10, 100, 0, COMPLEMENTARY),
        level(M1, BID, 5010, 0, 0),
        trade(taker, o1, 100, 0, 0, COMPLEMENTARY),
        level(M1, BID, 5000, 100, 1),
    ]


def test_coarser_tick_cancels_off_grid_orders(engine_cls):
    """A coarser tick cancels off-grid orders (TICK_CHANGE) in close order; on-grid ones stay."""
    eng = new_engine(engine_cls, markets=(M1,), tick=10)
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    rest(eng, A2, M1, SELL_NO, 5100, 100)
    o3 = rest(eng, A1, M1, BUY_YES, 5010, 100)
    rest(eng, A3, M1, BUY_YES, 5100, 10)
    o5 = rest(eng, A1, M1, SELL_YES, 6050, 100)
    rest(eng, A2, M1, BUY_NO, 6000, 100)
    o7 = rest(eng, A3, M1, SELL_YES, 6090, 5)
    o8 = rest(eng, A3, M1, SELL_YES, 6050, 7)
    assert eng.set_tick(M1, 100) == 0

    def c(order, qty):
        return canceled(order, qty, TICK_CHANGE, command=SET_TICK)

    assert last(eng) == [
        market_event(M1, OPEN, tick=100, command=SET_TICK),
        c(o3, 100),
        level(M1, BID, 5010, 0, 0, command=SET_TICK),
        c(o5, 100),
        c(o8, 7),
        level(M1, ASK, 6050, 0, 0, command=SET_TICK),
        c(o7, 5),
        level(M1, ASK, 6090, 0, 0, command=SET_TICK),
    ]
    bids, asks = eng.book(M1)
    assert bids.tolist() == [(5100, 2, 110), (5000, 1, 100)]
    assert asks.tolist() == [(6000, 1, 100)]
    assert eng.submit(A1, M1, BUY_YES, 5010, 10) == -Reject.INVALID_PRICE


def test_tick_round_trip_keeps_priority(eng):
    """Finer then back to the original tick: on-grid orders keep their FIFO place."""
    o1, _o2 = two_bids(eng)
    assert eng.set_tick(M1, 10) == 0
    assert eng.set_tick(M1, 100) == 0
    assert last(eng) == [market_event(M1, OPEN, tick=100, command=SET_TICK)]
    assert eng.submit(A3, M1, SELL_YES, 5000, 10) == 3
    assert last(eng)[1] == trade(Order(3, A3, M1, SELL_YES, 5000), o1, 10, 0, 90, COMPLEMENTARY)


@pytest.mark.parametrize("state", [PRE_OPEN, SUSPENDED, CLOSED])
def test_set_tick_allowed_in_every_state(engine_cls, state):
    """SET_TICK works whatever the market state; the MARKET event carries the state."""
    eng = new_engine(engine_cls, markets=(M1,), open_markets=False)
    bring_to(eng, M1, state)
    assert eng.set_tick(M1, 1000) == 0
    assert last(eng) == [market_event(M1, state, tick=1000, command=SET_TICK)]


def test_set_tick_same_tick(eng):
    """Setting the current tick again is accepted and moves nothing."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.set_tick(M1, 100) == 0
    assert last(eng) == [market_event(M1, OPEN, tick=100, command=SET_TICK)]
    assert eng.order(1) is not None


# =========================================================================== capacity


def test_max_orders(engine_cls):
    """A full pool rejects GTC/GTD (even one that would fill); IOC and FOK still work."""
    eng = new_engine(engine_cls, max_orders=2)
    o1 = rest(eng, A1, M1, SELL_YES, 6000, 100)
    rest(eng, A1, M1, SELL_YES, 6100, 100)
    before = eng.digest()
    assert eng.submit(A2, M1, BUY_YES, 6000, 100) == -Reject.CAPACITY
    assert last(eng) == [rejected(Reject.CAPACITY, account=A2, market=M1)]
    assert eng.submit(A2, M1, BUY_YES, 5000, 1, GTD, expiry=10) == -Reject.CAPACITY
    assert eng.digest() == before

    taker = Order(3, A2, M1, BUY_YES, 6000, IOC)
    assert eng.submit(A2, M1, BUY_YES, 6000, 100, IOC) == 3
    assert last(eng) == [
        accepted(taker, 100),
        trade(taker, o1, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
    ]
    assert eng.order_count == 1
    # Order 2 rests in slot 0 (2 % 2), so a GTC skips id 4 and takes 5 (slot 1, o1's).
    assert eng.submit(A2, M1, BUY_YES, 5000, 10) == 5
    assert eng.order_count == 2
    assert eng.submit(A3, M1, SELL_YES, 6100, 1, FOK) == -Reject.FOK_NOT_FILLED
    assert eng.submit(A2, M1, BUY_YES, 6100, 50, FOK) == 6
    assert eng.order_count == 2


def test_order_ids_name_their_slot_and_skip_taken_ones(engine_cls):
    """§1: a GTC/GTD order takes the next id whose slot (id % max_orders) is free; an
    IOC takes the next id; ids ascend in acceptance order and are never given twice."""
    eng = new_engine(engine_cls, max_orders=4)
    assert [rest(eng, A1, M1, BUY_YES, 4000 + 100 * i, 10).order_id for i in range(3)] == [1, 2, 3]
    assert eng.cancel(A1, 2) == 0  # slot 2 is free; slots 1 and 3 hold orders 1 and 3
    assert rest(eng, A1, M1, BUY_YES, 4500, 10).order_id == 4  # slot 0
    assert rest(eng, A1, M1, BUY_YES, 4600, 10).order_id == 6  # 5 (slot 1) is taken: slot 2
    assert eng.submit(A2, M1, SELL_YES, 9000, 10, IOC) == 7  # never rests: the next id
    assert eng.cancel(A1, 1) == 0 and eng.cancel(A1, 6) == 0  # slots 1 and 2 free
    assert eng.submit(A2, M1, SELL_YES, 9000, 10, GTD, expiry=5) == 9  # 8 is slot 0 (order 4)
    assert eng.next_order_id == 10
    assert [o.order_id for o in eng.orders_of(A1)] == [3, 4]
    assert eng.submit(A2, M1, SELL_YES, 9100, 10) == 10  # slot 2
    assert eng.submit(A2, M1, SELL_YES, 9200, 10) == -Reject.CAPACITY  # 4 resting: full


def test_stale_reused_and_forged_order_ids_are_unknown(engine_cls):
    """An id whose order left (stale), whose slot another order took since (reused), or
    that was never given (forged: 0, beyond next_order_id, an IOC's, a huge one) names
    no order: UNKNOWN_ORDER for cancel and replace, nothing changes, order() is None."""
    eng = new_engine(engine_cls, max_orders=2)
    first = rest(eng, A1, M1, BUY_YES, 4000, 10)  # id 1, slot 1
    assert eng.cancel(A1, first.order_id) == 0
    stale = first.order_id
    reused = rest(eng, A1, M1, BUY_YES, 4100, 10)  # id 2, slot 0
    again = rest(eng, A1, M1, BUY_YES, 4200, 10)  # id 3, slot 1: stale's slot
    assert (reused.order_id, again.order_id) == (2, 3)
    ioc = eng.submit(A2, M1, SELL_YES, 9000, 10, IOC)
    assert ioc == 4
    before = eng.digest()
    forged = [0, eng.next_order_id, eng.next_order_id + 2, 2**63 + 1, 2**64 - 1, ioc]
    for order_id in [stale, stale + 2 * 100, *forged]:
        assert eng.order(order_id) is None, order_id
        assert eng.cancel(A1, order_id) == -Reject.UNKNOWN_ORDER
        unknown = rejected(Reject.UNKNOWN_ORDER, account=A1, order_id=order_id, command=CANCEL)
        assert last(eng) == [unknown]
        assert eng.replace(A1, order_id, 4300) == -Reject.UNKNOWN_ORDER
        assert eng.digest() == before
    assert eng.order(again.order_id).price == 4200  # the slot's owner is untouched
    assert eng.cancel(A2, again.order_id) == -Reject.NOT_OWNER
    assert eng.cancel(A1, again.order_id) == 0


def test_order_ids_continue_after_restore(engine_cls):
    """A restored engine gives the same ids as the original: they follow from the
    resting ids and next_order_id alone (§6)."""
    eng = new_engine(engine_cls, max_orders=4)
    for i in range(3):
        rest(eng, A1, M1, BUY_YES, 4000 + 100 * i, 10)
    eng.cancel(A1, 1)
    copy = Checked(engine_cls.restore(eng.snapshot()))
    for e in (eng, copy):
        assert [rest(e, A2, M1, SELL_YES, 6000 + 100 * i, 10).order_id for i in range(2)] == [4, 5]
        assert e.submit(A2, M1, SELL_YES, 7000, 10) == -Reject.CAPACITY
    assert copy.digest() == eng.digest()


def test_canceled_order_frees_its_slot(engine_cls):
    """A cancel frees a slot for the next GTC order."""
    eng = new_engine(engine_cls, max_orders=1)
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == -Reject.CAPACITY
    assert eng.cancel(A1, 1) == 0
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == 2


def test_market_ids(eng):
    """Markets: id >= max_markets is CAPACITY to create and UNKNOWN_MARKET to trade."""
    assert eng.create_market(4, 100) == -Reject.CAPACITY
    assert last(eng) == [rejected(Reject.CAPACITY, market=4, command=CREATE)]
    assert eng.create_market(ALL_MARKETS, 100) == -Reject.CAPACITY
    assert eng.create_market(M1, 100) == -Reject.MARKET_EXISTS
    assert last(eng) == [rejected(Reject.MARKET_EXISTS, market=M1, command=CREATE)]
    for market in (3, 4, ALL_MARKETS):
        assert eng.submit(A1, market, BUY_YES, 5000, 100) == -Reject.UNKNOWN_MARKET
        assert last(eng) == [rejected(Reject.UNKNOWN_MARKET, account=A1, market=market)]
    assert eng.create_market(3, 10, 20, 10) == 0
    assert last(eng) == [market_event(3, PRE_OPEN, tick=10, min_size=20, lot=10, command=CREATE)]
    assert eng.market(3) == market_info(3, PRE_OPEN, 10, 20, 10)


def test_account_ids(eng):
    """Accounts: id >= max_accounts is CAPACITY to add and UNKNOWN_ACCOUNT to trade."""
    assert eng.add_account(8) == -Reject.CAPACITY
    assert last(eng) == [rejected(Reject.CAPACITY, account=8, command=ADD_ACCOUNT)]
    assert eng.add_account(A1) == -Reject.ACCOUNT_EXISTS
    assert last(eng) == [rejected(Reject.ACCOUNT_EXISTS, account=A1, command=ADD_ACCOUNT)]
    for account in (5, 8, 2**32 - 1):
        assert eng.submit(account, M1, BUY_YES, 5000, 100) == -Reject.UNKNOWN_ACCOUNT
        assert last(eng) == [rejected(Reject.UNKNOWN_ACCOUNT, account=account, market=M1)]
    assert eng.add_account(7) == 0
    assert last(eng) == [account_event(7)]
    assert eng.add_account(0) == 0
    assert last(eng) == [account_event(0)]
    assert eng.submit(0, M1, BUY_YES, 5000, 100) == 1
    assert eng.submit(7, M1, BUY_YES, 5000, 100) == 2


def test_max_levels_bounds_create_market(engine_cls):
    """create_market needs 2 * L(tick) free levels: L = 99 at tick 100, 9 at tick 1000."""
    eng = Checked(
        engine_cls(max_orders=8, max_markets=4, max_accounts=4, max_levels=198 + 18, ledger=False)
    )
    assert eng.create_market(1, 100) == 0
    assert eng.create_market(2, 10) == -Reject.CAPACITY
    assert last(eng) == [rejected(Reject.CAPACITY, market=2, command=CREATE)]
    assert eng.create_market(2, 1000) == 0
    assert eng.create_market(3, 1000) == -Reject.CAPACITY
    assert eng.market(3) is None


def test_default_max_levels(engine_cls):
    """The default arena holds max_markets markets at tick 10 (2 * 999 levels each)."""
    eng = Checked(engine_cls(max_orders=8, max_markets=2, max_accounts=4, ledger=False))
    assert eng.create_market(0, 1) == -Reject.CAPACITY
    assert eng.create_market(0, 10) == 0
    assert eng.create_market(1, 10) == 0
    assert eng.canonical_state()[20:24] == (2 * 2 * 999).to_bytes(4, "little")


def test_max_levels_bounds_set_tick(engine_cls):
    """set_tick needs room for the market's new size (its old size is given back)."""
    eng = Checked(
        engine_cls(max_orders=8, max_markets=3, max_accounts=4, max_levels=198 + 1998, ledger=False)
    )
    assert eng.create_market(1, 100) == 0
    assert eng.create_market(2, 10) == 0
    assert eng.set_tick(1, 10) == -Reject.CAPACITY
    assert last(eng) == [rejected(Reject.CAPACITY, market=1, command=SET_TICK)]
    assert eng.market(1).tick == 100
    assert eng.set_tick(2, 1) == -Reject.CAPACITY
    assert eng.set_tick(1, 1000) == 0
    assert eng.set_tick(1, 100) == 0
    assert eng.set_tick(2, 100) == 0
    assert eng.set_tick(1, 10) == 0


# =========================================================================== ids, queries, API


def test_order_ids_only_on_acceptance(eng):
    """Order ids go 1, 2, 3 in acceptance order; a rejected order does not use one."""
    rest(eng, A1, M1, SELL_YES, 6000, 100, client_order_id=1)
    assert eng.submit(A2, M1, BUY_YES, 5050, 100) == -Reject.INVALID_PRICE
    assert eng.submit(A2, M1, BUY_YES, 6000, 200, FOK) == -Reject.FOK_NOT_FILLED
    assert eng.submit(A2, M1, BUY_YES, 6000, 10, post_only=True) == -Reject.POST_ONLY_WOULD_CROSS
    assert eng.submit(A1, M1, BUY_YES, 100, 10, client_order_id=1) == -(
        Reject.DUPLICATE_CLIENT_ORDER_ID
    )
    assert eng.submit(A2, M1, BUY_YES, 5000, 10, GTD, expiry=0) == -Reject.INVALID_EXPIRY
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) == 2
    assert eng.submit(A2, M1, BUY_YES, 5000, 100, IOC) == 3
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) == 4
    assert [o["order_id"] for o in last(eng) if o["type"] == 1] == [4]


def test_book_and_best(eng):
    """book() gives levels best first (price, count, quantity); best() the top of each side."""
    rest(eng, A1, M1, BUY_YES, 5000, 100)
    rest(eng, A2, M1, SELL_NO, 5000, 50)
    rest(eng, A1, M1, BUY_YES, 4800, 70)
    rest(eng, A2, M1, SELL_YES, 6000, 100)
    rest(eng, A3, M1, BUY_NO, 6200, 30)
    rest(eng, A3, M1, SELL_YES, 6100, 20)
    bids, asks = eng.book(M1)
    assert bids.dtype == BOOK_LEVEL_DTYPE and asks.dtype == BOOK_LEVEL_DTYPE
    assert bids.tolist() == [(5000, 2, 150), (4800, 1, 70)]
    assert asks.tolist() == [(6000, 1, 100), (6100, 1, 20), (6200, 1, 30)]
    bids, asks = eng.book(M1, depth=2)
    assert bids.tolist() == [(5000, 2, 150), (4800, 1, 70)]
    assert asks.tolist() == [(6000, 1, 100), (6100, 1, 20)]
    bids, asks = eng.book(M1, 1)
    assert bids.tolist() == [(5000, 2, 150)]
    assert asks.tolist() == [(6000, 1, 100)]
    assert eng.best(M1) == (5000, 150, 6000, 100)
    assert eng.best(M2) == (0, 0, 0, 0)
    bids, asks = eng.book(M2)
    assert len(bids) == 0 and len(asks) == 0
    assert bids.dtype == BOOK_LEVEL_DTYPE


def test_book_depth_default_is_ten(eng):
    """book() without depth returns at most 10 levels per side."""
    for i in range(12):
        rest(eng, A1, M1, BUY_YES, 1000 + 100 * i, 1)
    bids, _ = eng.book(M1)
    assert [row[0] for row in bids.tolist()] == [2100 - 100 * i for i in range(10)]


@pytest.mark.parametrize("market", [0, 3, 4, 99])
def test_queries_of_unknown_market(eng, market):
    """book() and best() raise KeyError for an unknown market; market() returns None."""
    with pytest.raises(KeyError):
        eng.book(market)
    with pytest.raises(KeyError):
        eng.best(market)
    assert eng.market(market) is None


def test_order_info(eng):
    """order() describes a resting order, including a partial fill; None once it is gone."""
    rest(
        eng,
        A1,
        M1,
        SELL_NO,
        4500,
        300,
        tif=GTD,
        expiry=1000,
        client_order_id=42,
        stp=Stp.CANCEL_BOTH,
        post_only=True,
    )
    expected = OrderInfo(1, A1, M1, SELL_NO, BID, 4500, 300, GTD, 1000, 42, 2, POST_ONLY)
    assert eng.order(1) == expected
    maker = Order(1, A1, M1, SELL_NO, 4500, GTD, POST_ONLY)
    taker = Order(2, A2, M1, SELL_YES, 4500)
    assert eng.submit(A2, M1, SELL_YES, 4500, 100) == 2
    assert last(eng)[1] == trade(taker, maker, 100, 0, 200, MERGE)
    assert eng.order(1) == expected._replace(leaves_qty=200)
    assert eng.order(2) is None
    assert eng.order(99) is None
    eng.cancel(A1, 1)
    assert eng.order(1) is None


def test_market_info(eng):
    """market() gives (market, state, tick, min_size, lot)."""
    assert eng.market(M1) == market_info(M1, OPEN, 100, 1, 1)
    eng.set_market_state(M2, SUSPENDED)
    assert eng.market(M2) == market_info(M2, SUSPENDED, 100, 1, 1)


def test_create_market_and_add_account_events(engine_cls):
    """CREATE_MARKET gives MARKET (PRE_OPEN); ADD_ACCOUNT gives ACCOUNT; both return 0."""
    eng = Checked(engine_cls(max_orders=8, max_markets=4, max_accounts=4, ledger=False))
    assert eng.now == 0
    assert eng.order_count == 0
    assert eng.add_account(3) == 0
    assert last(eng) == [account_event(3)]
    assert eng.create_market(2, 1000, 50, 25) == 0
    assert last(eng) == [market_event(2, PRE_OPEN, tick=1000, min_size=50, lot=25, command=CREATE)]
    assert eng.set_market_state(2, OPEN) == 0
    assert last(eng) == [market_event(2, OPEN, tick=1000, min_size=50, lot=25)]


def test_process_batch_copies_seq_and_command(eng):
    """process() runs a batch: every event carries its command's seq and type."""
    commands = make_commands(
        [
            new_order(A1, M1, SELL_YES, 6000, 100, seq=10),
            new_order(A2, M1, BUY_YES, 6000, 40, seq=11, time=5),
            dict(type=CommandType.CANCEL, account=A1, order_id=1, seq=12),
            dict(type=CommandType.ADVANCE_TIME, time=7, seq=13),
        ]
    )
    o1 = Order(1, A1, M1, SELL_YES, 6000)
    o2 = Order(2, A2, M1, BUY_YES, 6000)
    expected = [
        accepted(o1, 100, seq=10),
        level(M1, ASK, 6000, 100, 1, seq=10),
        accepted(o2, 40, seq=11),
        trade(o2, o1, 40, 0, 60, COMPLEMENTARY, seq=11),
        level(M1, ASK, 6000, 60, 1, seq=11),
        canceled(o1, 60, USER, command=CANCEL, seq=12),
        level(M1, ASK, 6000, 0, 0, command=CANCEL, seq=12),
    ]
    events = eng.raw.process(commands)  # the whole batch at once
    eng.validate()
    assert events.dtype == EVENT_DTYPE
    assert event_dicts(events) == expected
    assert eng.now == 7
    assert len(eng.drain_events()) == 0  # process() events are not buffered


def test_process_matches_per_call(engine_cls):
    """process() and the per-call methods give the same events for the same commands."""
    a, b = new_engine(engine_cls), new_engine(engine_cls)
    a.submit(A1, M1, SELL_YES, 6000, 100)
    a.submit(A2, M1, BUY_YES, 6100, 150, IOC)
    per_call = event_dicts(a.drain_events())
    batch = run(
        b,
        [new_order(A1, M1, SELL_YES, 6000, 100), new_order(A2, M1, BUY_YES, 6100, 150, IOC)],
    )
    assert per_call == batch
    assert a.digest() == b.digest()


def test_drain_events(eng):
    """drain_events() returns every buffered per-call event once."""
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.cancel(A1, 1) == 0
    assert event_dicts(eng.drain_events()) == [
        accepted(o1, 100),
        level(M1, BID, 5000, 100, 1),
        canceled(o1, 100, USER, command=CANCEL),
        level(M1, BID, 5000, 0, 0, command=CANCEL),
    ]
    assert len(eng.drain_events()) == 0


def test_empty_batch(eng):
    """process() of no command returns no event."""
    events = eng.raw.process(np.zeros(0, dtype=COMMAND_DTYPE))
    assert events.dtype == EVENT_DTYPE
    assert len(events) == 0
