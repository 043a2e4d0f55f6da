"""The venue's market states and the opening auction (docs/matchcore.md §4; spec §5.3) on both
engines, with hand-computed events; ``validate()`` runs after every command.

PRE_OPEN collects GTC/GTD limit orders without matching (the book may cross) and opens with
one auction command: the price executing the most volume, then the least imbalance, then the
highest price if buyers are left over, the lowest if sellers are, else the middle one (the
lower of two); the newer order of each pair is the taker. SUSPENDED takes cancels only,
HALTED nothing; CLOSED cancels the resting orders, EXPIRED expires them.
"""

from __future__ import annotations

import pytest
from support import (
    A1,
    A2,
    A3,
    CANCEL,
    CANCEL_ALL,
    CANCEL_CLIENT,
    M1,
    M2,
    REPLACE,
    SET_STATE,
    Order,
    accepted,
    canceled,
    last,
    level,
    market_event,
    new_engine,
    rejected,
    replaced,
    trade,
)

from matchcore import (
    ALL_MARKETS,
    Balance,
    CancelReason,
    FeeBase,
    Intent,
    MarketState,
    MatchType,
    Reject,
    Side,
    TimeInForce,
)

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
BID, ASK = Side.BID, Side.ASK
GTC, GTD, IOC, FOK = TimeInForce
PRE_OPEN, OPEN, SUSPENDED, HALTED = (
    MarketState.PRE_OPEN,
    MarketState.OPEN,
    MarketState.SUSPENDED,
    MarketState.HALTED,
)
CLOSED, EXPIRED = MarketState.CLOSED, MarketState.EXPIRED
COMPLEMENTARY, MINT = MatchType.COMPLEMENTARY, MatchType.MINT
SELF_TRADE, USER = CancelReason.SELF_TRADE, CancelReason.USER
OPENING = dict(command=SET_STATE)  # events of the auction are the SET_MARKET_STATE's


@pytest.fixture
def pre(engine_cls):
    """Markets M1, M2 in PRE_OPEN (tick 100), accounts A1..A3, matching only."""
    return new_engine(engine_cls, open_markets=False)


def rest(eng, account, intent, price, quantity, market=M1, **kwargs) -> Order:
    order_id = eng.submit(account, market, intent, price, quantity, **kwargs)
    assert order_id > 0, order_id
    order = Order(order_id, account, market, intent, price, kwargs.get("tif", GTC))
    assert last(eng)[0] == accepted(order, quantity)
    return order


# ------------------------------------------------------------------ PRE_OPEN


def test_pre_open_orders_rest_crossed_without_matching(pre):
    bid = rest(pre, A1, BUY_YES, 6000, 100)
    assert last(pre) == [accepted(bid, 100), level(M1, BID, 6000, 100, 1)]
    ask = rest(pre, A2, BUY_NO, 4000, 50)  # an ask at 0.40: crosses, no trade
    assert last(pre) == [accepted(ask, 50), level(M1, ASK, 4000, 50, 1)]
    assert pre.best(M1) == (6000, 100, 4000, 50)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(tif=IOC),
        dict(tif=FOK),
        dict(tif=IOC, market_order=True),
        dict(tif=FOK, market_order=True, by_cash=True),
        dict(post_only=True),
    ],
    ids=["ioc", "fok", "market", "market-by-cash", "post-only"],
)
def test_pre_open_rejects_what_cannot_rest_in_an_auction(pre, kwargs):
    assert pre.submit(A1, M1, BUY_YES, 5000, 100, **kwargs) == -Reject.NOT_IN_AUCTION
    assert last(pre) == [rejected(Reject.NOT_IN_AUCTION, account=A1, market=M1)]


def test_pre_open_replace_moves_without_matching_and_cancel_works(pre):
    ask = rest(pre, A2, SELL_YES, 5000, 100)
    bid = rest(pre, A1, BUY_YES, 4000, 100)
    assert pre.replace(A1, bid.order_id, 5500) == 0  # now crosses the ask: no trade
    assert last(pre) == [
        replaced(bid.at(5500), 100),
        level(M1, BID, 4000, 0, 0, command=REPLACE),
        level(M1, BID, 5500, 100, 1, command=REPLACE),
    ]
    assert pre.cancel(A2, ask.order_id) == 0
    assert last(pre) == [
        canceled(ask, 100, USER, command=CANCEL),
        level(M1, ASK, 5000, 0, 0, command=CANCEL),
    ]


# ---------------------------------------------------------- the opening auction


def test_auction_volume_decides_then_sellers_left_over_take_the_lowest(pre):
    """Bids 100 @ 0.60, 50 @ 0.55; asks 80 @ 0.50, 100 @ 0.58. Volume min(D, S): 80 at
    0.50 .. 0.57, 100 at 0.58 .. 0.60, where sellers are left over (S - D = 80): 0.58."""
    b1 = rest(pre, A1, BUY_YES, 6000, 100)
    rest(pre, A1, BUY_YES, 5500, 50)
    a1 = rest(pre, A2, SELL_YES, 5000, 80)
    a2 = rest(pre, A3, BUY_NO, 5800, 100)
    assert pre.set_market_state(M1, OPEN) == 0
    at = 5800
    assert last(pre) == [
        market_event(M1, OPEN),
        # the newer order of each pair is the taker
        trade(a1.at(at), b1.at(at), 80, 0, 20, COMPLEMENTARY, **OPENING),
        level(M1, ASK, 5000, 0, 0, **OPENING),
        trade(a2.at(at), b1.at(at), 20, 80, 0, MINT, **OPENING),
        level(M1, BID, 6000, 0, 0, **OPENING),
        level(M1, ASK, 5800, 80, 1, **OPENING),
    ]
    assert pre.best(M1) == (5500, 50, 5800, 80)


def test_auction_buyers_left_over_take_the_highest(pre):
    """Bid 100 @ 0.60, ask 50 @ 0.50: 50 trade at every price, buyers left over: 0.60."""
    bid = rest(pre, A1, BUY_YES, 6000, 100)
    ask = rest(pre, A2, SELL_YES, 5000, 50)
    assert pre.set_market_state(M1, OPEN) == 0
    assert last(pre) == [
        market_event(M1, OPEN),
        trade(ask.at(6000), bid, 50, 0, 50, COMPLEMENTARY, **OPENING),
        level(M1, ASK, 5000, 0, 0, **OPENING),
        level(M1, BID, 6000, 50, 1, **OPENING),
    ]


def test_auction_balanced_ties_take_the_middle(pre):
    """Bids 100 @ 0.60, 30 @ 0.50; asks 100 @ 0.40, 50 @ 0.55. Volume 100 everywhere from 0.40
    to 0.60; imbalance +30 up to 0.50, 0 at 0.51 .. 0.54, -50 from 0.55: the middle of
    0.51 .. 0.54, the lower of two, is 0.52. The book no longer crosses after it."""
    b1 = rest(pre, A1, BUY_YES, 6000, 100)
    a1 = rest(pre, A2, SELL_YES, 4000, 100)
    rest(pre, A3, SELL_YES, 5500, 50)
    rest(pre, A1, BUY_YES, 5000, 30)
    assert pre.set_market_state(M1, OPEN) == 0
    assert last(pre) == [
        market_event(M1, OPEN),
        trade(a1.at(5200), b1.at(5200), 100, 0, 0, COMPLEMENTARY, **OPENING),
        level(M1, BID, 6000, 0, 0, **OPENING),
        level(M1, ASK, 4000, 0, 0, **OPENING),
    ]
    assert pre.best(M1) == (5000, 30, 5500, 50)


def test_auction_self_match_cancels_the_newer_and_a_second_round_uncrosses(pre):
    """A1 bid 100 @ 0.60 and ask 100 @ 0.50, A2 ask 100 @ 0.55. Round 1: volume 100 from
    0.50 to 0.60, balanced at 0.50 .. 0.54: 0.52, where A1 meets itself: its newer order (the
    ask) is canceled. The book still crosses: round 2 from 0.55 to 0.60, balanced all along:
    0.57."""
    b1 = rest(pre, A1, BUY_YES, 6000, 100)
    own = rest(pre, A1, SELL_YES, 5000, 100)
    a2 = rest(pre, A2, SELL_YES, 5500, 100)
    assert pre.set_market_state(M1, OPEN) == 0
    assert last(pre) == [
        market_event(M1, OPEN),
        canceled(own, 100, SELF_TRADE, **OPENING),
        level(M1, ASK, 5000, 0, 0, **OPENING),
        trade(a2.at(5700), b1.at(5700), 100, 0, 0, COMPLEMENTARY, **OPENING),
        level(M1, BID, 6000, 0, 0, **OPENING),
        level(M1, ASK, 5500, 0, 0, **OPENING),
    ]
    assert pre.order_count == 0


def test_auction_without_a_cross_only_opens(pre):
    rest(pre, A1, BUY_YES, 4000, 100)
    rest(pre, A2, SELL_YES, 5000, 100)
    assert pre.set_market_state(M1, OPEN) == 0
    assert last(pre) == [market_event(M1, OPEN)]
    assert pre.order_count == 2


def test_auction_settles_with_the_venue_fees(engine_cls):
    """1,000 YES bought at up to 0.60 (A1, older: maker) against 1,000 NO bought at up to
    0.50 (A2, newer: taker): a mint at the middle, 0.55. Taker fee 0.0695 x 1000 x 0.55 x
    0.45 = 17.20125 -> $17.20; maker rebate 0.0125 x 247.5 = 3.09375 -> $3.09."""
    funds = 10**10
    eng = new_engine(
        engine_cls, open_markets=False, ledger=True, taker_fee_bps=695, maker_fee_bps=-125,
        fee_base=FeeBase.PQ_CENTS, deposits={A1: funds, A2: funds},
    )  # fmt: skip
    bid = rest(eng, A1, BUY_YES, 6000, 100_000)
    ask = rest(eng, A2, BUY_NO, 5000, 100_000)
    assert eng.set_market_state(M1, OPEN) == 0
    fee, rebate = 1720 * 10_000, -309 * 10_000
    assert last(eng)[1] == trade(
        ask.at(5500), bid.at(5500), 100_000, 0, 0, MINT, fee=fee, maker_fee=rebate, **OPENING
    )
    assert eng.balance(A1) == Balance(funds - 5500 * 100_000 - rebate, 0)
    assert eng.balance(A2) == Balance(funds - 4500 * 100_000 - fee, 0)
    assert eng.market(M1).collateral == 10_000 * 100_000
    assert eng.totals().fees == fee + rebate


def test_after_the_auction_trading_is_continuous(pre):
    """Buyers left over at 0.60 after the auction; an IOC then trades on entry."""
    bid = rest(pre, A1, BUY_YES, 6000, 100)
    rest(pre, A2, SELL_YES, 5000, 40)
    assert pre.set_market_state(M1, OPEN) == 0
    taker = Order(3, A3, M1, SELL_YES, 6000, IOC)
    assert pre.submit(A3, M1, SELL_YES, 6000, 10, IOC) == 3
    assert last(pre) == [
        accepted(taker, 10),
        trade(taker, bid, 10, 0, 50, COMPLEMENTARY),
        level(M1, BID, 6000, 50, 1),
    ]


# ------------------------------------------------------- the other states


def suspended_or_halted(engine_cls, state):
    eng = new_engine(engine_cls)
    order = rest(eng, A1, BUY_YES, 5000, 100, client_order_id=7)
    rest(eng, A1, BUY_YES, 5000, 100, market=M2)
    assert eng.set_market_state(M1, state) == 0
    return eng, order


@pytest.mark.parametrize("state", [SUSPENDED, HALTED], ids=lambda s: s.name)
def test_no_new_orders_or_modifies_when_suspended_or_halted(engine_cls, state):
    eng, order = suspended_or_halted(engine_cls, state)
    assert eng.submit(A2, M1, SELL_YES, 5000, 10) == -Reject.MARKET_NOT_OPEN
    assert eng.replace(A1, order.order_id, 4000) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [
        rejected(Reject.MARKET_NOT_OPEN, account=A1, market=0, order_id=1, command=REPLACE)
    ]


def test_suspended_takes_cancels(engine_cls):
    eng, order = suspended_or_halted(engine_cls, SUSPENDED)
    assert eng.cancel_client(A1, 7) == 0
    assert last(eng) == [
        canceled(order, 100, USER, command=CANCEL_CLIENT),
        level(M1, BID, 5000, 0, 0, command=CANCEL_CLIENT),
    ]


def test_halted_takes_no_cancel(engine_cls):
    """HALTED: cancel, cancel by client id and cancel-all of the market are refused;
    cancel-all of every market leaves the halted market's orders."""
    eng, order = suspended_or_halted(engine_cls, HALTED)
    before = eng.digest()
    assert eng.cancel(A1, order.order_id) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [rejected(Reject.MARKET_NOT_OPEN, account=A1, order_id=1, command=CANCEL)]
    assert eng.cancel_client(A1, 7) == -Reject.MARKET_NOT_OPEN
    assert eng.cancel_all(A1, M1) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [
        rejected(Reject.MARKET_NOT_OPEN, account=A1, market=M1, command=CANCEL_ALL)
    ]
    assert eng.digest() == before
    assert eng.cancel_all(A1, ALL_MARKETS) == 1  # M2's order only
    assert eng.order(order.order_id) is not None and eng.order_count == 1
    assert eng.set_market_state(M1, SUSPENDED) == 0 and eng.cancel(A1, order.order_id) == 0


def test_gtd_orders_expire_in_a_halted_market(engine_cls):
    """Time still runs: a GTD order due in a halt expires (CANCELED, EXPIRED)."""
    eng = new_engine(engine_cls)
    order = rest(eng, A1, BUY_YES, 5000, 100, tif=GTD, expiry=50)
    assert eng.set_market_state(M1, HALTED) == 0
    assert eng.advance_time(50) == 1
    assert last(eng) == [
        canceled(order, 100, CancelReason.EXPIRED, command=6),
        level(M1, BID, 5000, 0, 0, command=6),
    ]


def test_expired_expires_the_resting_orders(engine_cls):
    """EXPIRED: the resting orders are expired (bids then asks, best first); merges only."""
    eng = new_engine(engine_cls, ledger=True, deposits={A1: 10**9})
    assert eng.split(A1, M1, 100) == 0
    bid = rest(eng, A1, BUY_YES, 4000, 10)
    ask = rest(eng, A1, SELL_YES, 6000, 10)
    assert eng.set_market_state(M1, EXPIRED) == 0
    assert last(eng) == [
        market_event(M1, EXPIRED),
        canceled(bid, 10, CancelReason.EXPIRED, command=SET_STATE),
        level(M1, BID, 4000, 0, 0, command=SET_STATE),
        canceled(ask, 10, CancelReason.EXPIRED, command=SET_STATE),
        level(M1, ASK, 6000, 0, 0, command=SET_STATE),
    ]
    assert eng.submit(A1, M1, BUY_YES, 4000, 10) == -Reject.MARKET_NOT_OPEN
    assert eng.split(A1, M1, 10) == -Reject.MARKET_NOT_OPEN
    assert eng.merge(A1, M1, 10) == 0
    assert eng.set_market_state(M1, OPEN) == -Reject.INVALID_STATE_TRANSITION
    assert eng.resolve(M1, 1) == 0


def test_a_crossed_pre_open_book_survives_a_snapshot(both_engine_cls):
    """The crossed book restores in either engine, and the auction after it is the same."""
    core_cls, ref_cls = both_engine_cls
    eng = new_engine(core_cls, open_markets=False)
    rest(eng, A1, BUY_YES, 6000, 100)
    rest(eng, A2, SELL_YES, 5000, 60)
    rest(eng, A3, SELL_YES, 5900, 60)
    snapshot = eng.snapshot()
    assert eng.set_market_state(M1, OPEN) == 0
    expected = last(eng)
    for cls in (core_cls, ref_cls):
        restored = cls.restore(snapshot)
        assert restored.snapshot() == snapshot
        assert restored.set_market_state(M1, OPEN) == 0
        assert last(restored) == expected
