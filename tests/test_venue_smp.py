"""The venue's self-match modes (docs/matchcore.md §4, the sweep; spec §5.5) on both engines.

``CANCEL_NEWEST`` (FIX 8000=N), ``CANCEL_OLDEST`` (8000=O) and ``REMOVE_BOTH`` act before
the first fill, on every resting order of the taker's owner that its limit reaches (on the
opposite side at a price it would trade at), whatever rests before them in price-time
order and however much the taker has. Expected events are written by hand; ``validate()``
runs after every command, and the ledger cases are audited.
"""

from __future__ import annotations

import pytest
from support import (
    A1,
    A2,
    M1,
    M2,
    REPLACE,
    Order,
    accepted,
    canceled,
    last,
    level,
    new_engine,
    replaced,
    trade,
)

from matchcore import Balance, CancelReason, Intent, MatchType, Reject, Side, Stp, TimeInForce

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
BID, ASK = Side.BID, Side.ASK
GTC, GTD, IOC, FOK = TimeInForce
COMPLEMENTARY = MatchType.COMPLEMENTARY
SELF_TRADE, UNFILLED = CancelReason.SELF_TRADE, CancelReason.UNFILLED
NEWEST, OLDEST, BOTH = Stp.CANCEL_NEWEST, Stp.CANCEL_OLDEST, Stp.REMOVE_BOTH


def rest(eng, account, intent, price, quantity, market=M1, **kwargs) -> Order:
    order_id = eng.submit(account, market, intent, price, quantity, **kwargs)
    assert order_id > 0, order_id
    return Order(order_id, account, market, intent, price, kwargs.get("tif", GTC))


def smp_book(eng):
    """Asks: A2 100 @ 0.60, A1 100 @ 0.60 (behind it), A2 100 @ 0.61, A1 100 @ 0.62."""
    return (
        rest(eng, A2, SELL_YES, 6000, 100),
        rest(eng, A1, SELL_YES, 6000, 100),
        rest(eng, A2, SELL_YES, 6100, 100),
        rest(eng, A1, BUY_NO, 6200, 100),  # a NO buy is an ask too: any own order counts
    )


def test_cancel_newest_cancels_the_taker_whole(eng):
    """An own order within reach behind another owner's: no partial fill, the taker goes whole;
    the own resting orders stay."""
    smp_book(eng)
    taker = Order(5, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 50, stp=NEWEST) == 5  # 50 < the 100 of A2 before
    assert last(eng) == [accepted(taker, 50), canceled(taker, 50, SELF_TRADE)]
    assert eng.best(M1) == (0, 0, 6000, 200)
    assert eng.order(2) is not None and eng.order(4) is not None


def test_cancel_newest_trades_when_the_own_order_is_out_of_reach(eng):
    """Only the limit decides: own asks above it do not stop the taker."""
    o1, _own, _o3, _own2 = smp_book(eng)
    eng.cancel(A1, 2)
    taker = Order(5, A1, M1, BUY_YES, 6100)
    assert eng.submit(A1, M1, BUY_YES, 6100, 150, stp=NEWEST) == 5  # own ask at 0.62 above
    o3 = Order(3, A2, M1, SELL_YES, 6100)
    assert last(eng) == [
        accepted(taker, 150),
        trade(taker, o1, 100, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o3, 50, 0, 50, COMPLEMENTARY),
        level(M1, ASK, 6100, 50, 1),
    ]


def test_cancel_oldest_cancels_every_own_order_in_reach_first(eng):
    """CANCEL_OLDEST: the own orders the limit reaches are canceled (ascending id, each with its
    LEVEL) before any trade; the taker then trades normally and rests its remainder."""
    o1, own, o3, own2 = smp_book(eng)
    taker = Order(5, A1, M1, BUY_YES, 6200)
    assert eng.submit(A1, M1, BUY_YES, 6200, 150, stp=OLDEST) == 5
    assert last(eng) == [
        accepted(taker, 150),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 100, 1),
        canceled(own2, 100, SELF_TRADE),
        level(M1, ASK, 6200, 0, 0),
        trade(taker, o1, 100, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o3, 50, 0, 50, COMPLEMENTARY),
        level(M1, ASK, 6100, 50, 1),
    ]


def test_cancel_oldest_cancels_own_orders_the_sweep_would_not_reach(eng):
    """Unlike CANCEL_RESTING, an own order beyond what the taker fills is canceled too."""
    o1, own, _o3, _own2 = smp_book(eng)
    taker = Order(5, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 60, stp=OLDEST) == 5
    assert last(eng) == [
        accepted(taker, 60),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 100, 1),
        trade(taker, o1, 60, 0, 40, COMPLEMENTARY),
        level(M1, ASK, 6000, 40, 1),
    ]
    assert eng.order(4) is not None  # 0.62 is beyond the limit


def test_remove_both(eng):
    """REMOVE_BOTH: the own orders in reach, then the taker whole; nothing trades."""
    _o1, own, _o3, own2 = smp_book(eng)
    taker = Order(5, A1, M1, BUY_YES, 6500, IOC)
    assert eng.submit(A1, M1, BUY_YES, 6500, 400, IOC, stp=BOTH) == 5
    assert last(eng) == [
        accepted(taker, 400),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 100, 1),
        canceled(own2, 100, SELF_TRADE),
        level(M1, ASK, 6200, 0, 0),
        canceled(taker, 400, SELF_TRADE),
    ]
    assert eng.best(M1) == (0, 0, 6000, 100)


@pytest.mark.parametrize("stp", [NEWEST, OLDEST, BOTH], ids=lambda s: s.name)
def test_without_own_order_in_reach_the_modes_trade_normally(eng, stp):
    """Own orders in another market or on the same side do not count."""
    maker = rest(eng, A2, SELL_YES, 6000, 100)
    rest(eng, A1, SELL_YES, 5000, 100, market=M2)
    rest(eng, A1, BUY_YES, 5500, 100)
    taker = Order(4, A1, M1, BUY_YES, 6000, IOC)
    assert eng.submit(A1, M1, BUY_YES, 6000, 150, IOC, stp=stp) == 4
    assert last(eng) == [
        accepted(taker, 150),
        trade(taker, maker, 100, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        canceled(taker, 50, UNFILLED),
    ]


@pytest.mark.parametrize("stp", [NEWEST, BOTH], ids=lambda s: s.name)
def test_fok_with_own_order_in_reach_is_not_filled(eng, stp):
    """An FOK that would be canceled whole never completes: FOK_NOT_FILLED, nothing canceled,
    even though the other owner's order before could fill it."""
    smp_book(eng)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, FOK, stp=stp) == -Reject.FOK_NOT_FILLED
    assert eng.order(2) is not None


def test_fok_cancel_oldest_counts_without_the_own_orders(eng):
    """CANCEL_OLDEST FOK: the own orders do not fill it; it completes on the others' 200."""
    o1, own, o3, own2 = smp_book(eng)
    assert eng.submit(A1, M1, BUY_YES, 6200, 250, FOK, stp=OLDEST) == -Reject.FOK_NOT_FILLED
    assert eng.order(2) is not None  # a rejected FOK cancels nothing
    taker = Order(5, A1, M1, BUY_YES, 6200, FOK)
    assert eng.submit(A1, M1, BUY_YES, 6200, 200, FOK, stp=OLDEST) == 5
    assert last(eng) == [
        accepted(taker, 200),
        canceled(own, 100, SELF_TRADE),
        level(M1, ASK, 6000, 100, 1),
        canceled(own2, 100, SELF_TRADE),
        level(M1, ASK, 6200, 0, 0),
        trade(taker, o1, 100, 100, 0, COMPLEMENTARY),
        level(M1, ASK, 6000, 0, 0),
        trade(taker, o3, 100, 0, 0, COMPLEMENTARY),
        level(M1, ASK, 6100, 0, 0),
    ]


def test_crossing_replace_cancel_newest(eng):
    """A crossing replace is a new order to the modes: canceled whole, its old level reported."""
    smp_book(eng)
    mine = rest(eng, A1, BUY_YES, 5000, 100, stp=NEWEST)
    assert eng.replace(A1, mine.order_id, 6000) == 0
    moved = mine.at(6000)
    assert last(eng) == [
        replaced(moved, 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        canceled(moved, 100, SELF_TRADE, command=REPLACE),
    ]
    assert eng.order(mine.order_id) is None


def test_modes_with_the_ledger(engine_cls):
    """With the ledger (audited after each command): a taker canceled whole gets its reservation
    back in full; the own sell canceled by CANCEL_OLDEST frees its shares."""
    eng = new_engine(engine_cls, ledger=True, deposits={A1: 10**9, A2: 10**9})
    assert eng.split(A2, M1, 1_000) == 0 and eng.split(A1, M1, 1_000) == 0
    rest(eng, A2, SELL_YES, 6000, 100)
    rest(eng, A1, SELL_YES, 6000, 100)
    before = eng.balance(A1)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, stp=NEWEST) == 3
    assert eng.balance(A1) == before == Balance(before.free, 0)
    assert eng.submit(A1, M1, BUY_YES, 6000, 100, stp=OLDEST) == 4
    assert eng.order(2) is None and eng.position(A1, M1).yes_reserved == 0
    assert eng.balance(A1) == Balance(before.free - 6000 * 100, 0)
