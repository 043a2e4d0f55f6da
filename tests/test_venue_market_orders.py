"""The venue's market orders with slippage (docs/matchcore.md §4, NEW_ORDER; spec §3.2, §3.5)
on both engines: flag SLIPPAGE with MARKET, ``aux = ticks | bps << 32 | current << 48``; the
engine derives the limit; NO_LIQUIDITY when nothing can fill. Expected events by hand;
``validate()`` after every command (the ledger case audited).
"""

from __future__ import annotations

import pytest
from support import (
    A1,
    A2,
    A3,
    M1,
    Order,
    accepted,
    canceled,
    level,
    new_engine,
    new_order,
    rejected,
    run,
    trade,
)

from matchcore import (
    Balance,
    CancelReason,
    Intent,
    MatchType,
    OrderFlags,
    Reject,
    Side,
    Stp,
    TimeInForce,
)

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
BID, ASK = Side.BID, Side.ASK
GTC, GTD, IOC, FOK = TimeInForce
COMPLEMENTARY, MINT = MatchType.COMPLEMENTARY, MatchType.MINT
UNFILLED = CancelReason.UNFILLED
VENUE = OrderFlags.MARKET | OrderFlags.SLIPPAGE
CASH = VENUE | OrderFlags.BY_CASH


def aux(ticks=0, bps=0, current=0) -> int:
    return ticks | bps << 32 | current << 48


def rest(eng, account, intent, price, quantity) -> Order:
    order_id = eng.submit(account, M1, intent, price, quantity)
    assert order_id > 0, order_id
    return Order(order_id, account, M1, intent, price)


def market_order(account, intent, quantity, *, price=0, tif=IOC, flags=VENUE, stp=0, **slip):
    row = new_order(account, M1, intent, price, quantity, tif, flags=flags, aux=aux(**slip))
    return {**row, "stp": stp}


@pytest.fixture
def book(eng):
    """Asks 100 @ 0.55 (A2), 100 @ 0.56 (A3), 100 @ 0.60 (A2); bid 100 @ 0.45 (A2)."""
    return eng, (
        rest(eng, A2, SELL_YES, 5500, 100),
        rest(eng, A3, SELL_YES, 5600, 100),
        rest(eng, A2, SELL_YES, 6000, 100),
        rest(eng, A2, BUY_YES, 4500, 100),
    )


def test_ticks_off_a_current_price(book):
    """The spec's example: buy at 0.50 with ticks 5: limit 0.55, the ask at 0.56 is beyond."""
    eng, (a1, _a2, _a3, _bid) = book
    taker = Order(5, A1, M1, BUY_YES, 5500, IOC, VENUE)
    assert run(eng, [market_order(A1, BUY_YES, 150, ticks=5, current=5000)]) == [
        accepted(taker, 150),
        trade(taker, a1, 100, 50, 0, COMPLEMENTARY),
        level(M1, ASK, 5500, 0, 0),
        canceled(taker, 50, UNFILLED),
    ]


def test_best_price_moved_beyond_the_tolerance_is_no_liquidity(book):
    """Current 0.50, 4 ticks: limit 0.54, the best ask 0.55 beyond it: nothing can fill."""
    eng, _ = book
    before = eng.digest()
    assert run(eng, [market_order(A1, BUY_YES, 100, ticks=4, current=5000)]) == [
        rejected(Reject.NO_LIQUIDITY, account=A1, market=M1)
    ]
    assert eng.digest() == before


def test_bps_off_the_best_price_rounded_inside(book):
    """No current price: the best ask 0.55. 200 bps: 0.55 x 1.02 = 0.561, down to 0.56."""
    eng, (a1, a2, _a3, _bid) = book
    taker = Order(5, A1, M1, BUY_YES, 5600, IOC, VENUE)
    assert run(eng, [market_order(A1, BUY_YES, 300, bps=200)]) == [
        accepted(taker, 300),
        trade(taker, a1, 100, 200, 0, COMPLEMENTARY),
        level(M1, ASK, 5500, 0, 0),
        trade(taker, a2, 100, 100, 0, COMPLEMENTARY),
        level(M1, ASK, 5600, 0, 0),
        canceled(taker, 100, UNFILLED),
    ]


def test_a_sell_subtracts_and_rounds_up(book):
    """A sell at best bid 0.45 with 150 bps: 0.45 x 0.985 = 0.44325, up to 0.45 (inside)."""
    eng, (*_, bid) = book  # matching only: the seller needs no shares
    taker = Order(5, A1, M1, SELL_YES, 4500, IOC, VENUE)
    assert run(eng, [market_order(A1, SELL_YES, 40, bps=150)]) == [
        accepted(taker, 40),
        trade(taker, bid, 40, 0, 60, COMPLEMENTARY),
        level(M1, BID, 4500, 60, 1),
    ]


def test_ticks_win_over_bps_and_the_limit_stops_at_the_bound(book):
    """ticks 1000 from 0.55: 10.55, held at the highest price 0.99 (bps ignored)."""
    eng, _ = book
    taker = Order(5, A1, M1, BUY_YES, 9900, FOK, VENUE)
    events = run(eng, [market_order(A1, BUY_YES, 300, tif=FOK, ticks=1000, bps=1)])
    assert events[0] == accepted(taker, 300)
    assert [e["maker_order_id"] for e in events if e["type"] == 3] == [1, 2, 3]


@pytest.mark.parametrize("price, limit", [(5600, 5600), (0, 9900)], ids=["its-price", "unlimited"])
def test_without_slippage_the_price_then_the_bound(book, price, limit):
    """Neither ticks nor bps: the order's price if it has one, else unlimited (the bound)."""
    eng, _ = book
    events = run(eng, [market_order(A1, BUY_YES, 300, price=price)])
    assert events[0] == accepted(Order(5, A1, M1, BUY_YES, limit, IOC, VENUE), 300)
    traded = sum(e["quantity"] for e in events if e["type"] == 3)
    assert traded == (200 if price else 300)


def test_empty_side_is_no_liquidity(eng):
    assert run(eng, [market_order(A1, BUY_YES, 100, ticks=3)]) == [
        rejected(Reject.NO_LIQUIDITY, account=A1, market=M1)
    ]


@pytest.mark.parametrize("stp", [Stp.REJECT_AGGRESSOR, Stp.CANCEL_NEWEST], ids=lambda s: s.name)
def test_own_order_in_the_way_is_no_liquidity(eng, stp):
    """The own ask first (or in reach): the sweep would fill nothing; CANCEL_RESTING would."""
    rest(eng, A1, SELL_YES, 5500, 100)
    rest(eng, A2, SELL_YES, 5500, 100)
    rows = [market_order(A1, BUY_YES, 50, ticks=2, stp=stp)]
    assert run(eng, rows) == [rejected(Reject.NO_LIQUIDITY, account=A1, market=M1)]
    events = run(eng, [market_order(A1, BUY_YES, 50, ticks=2, stp=Stp.CANCEL_RESTING)])
    assert [e["type"] for e in events] == [1, 4, 3, 6]  # own ask canceled, then a fill


@pytest.mark.parametrize(
    "bad",
    [dict(aux=-1), dict(aux=aux(bps=10_001)), dict(aux=aux(current=5050)), dict(price=5050)],
    ids=["aux-negative", "bps-above-10000", "current-off-grid", "price-off-grid"],
)
def test_bad_slippage_is_invalid_price(book, bad):
    eng, _ = book
    row = {**market_order(A1, BUY_YES, 100, ticks=1), **bad}
    assert run(eng, [row]) == [rejected(Reject.INVALID_PRICE, account=A1, market=M1)]


def test_slippage_needs_a_market_order(eng):
    row = new_order(A1, M1, BUY_YES, 5000, 100, IOC, flags=OrderFlags.SLIPPAGE)
    assert run(eng, [row]) == [rejected(Reject.INVALID_ORDER, account=A1, market=M1)]


def test_a_book_sell_by_cash_spends_the_no_collateral(engine_cls):
    """BUY_SHORT of $20 at best bid 0.80 (no current price, 2 ticks: limit 0.78): NO at 0.20,
    100 contracts for $20 (spec §3.5's example), cash in micro-dollars, contracts x 100."""
    eng = new_engine(engine_cls, ledger=True, deposits={A1: 10**9, A2: 10**9})
    bid = rest(eng, A2, BUY_YES, 8000, 20_000)
    taker = Order(2, A1, M1, BUY_NO, 7800, IOC, CASH)
    budget = 20_000_000
    events = run(eng, [market_order(A1, BUY_NO, budget, flags=CASH, ticks=2)])
    assert events == [
        accepted(taker, budget),
        trade(taker, bid, 10_000, 0, 10_000, MINT),
        level(M1, BID, 8000, 10_000, 1),
    ]
    assert eng.balance(A1) == Balance(10**9 - budget, 0)
    assert eng.position(A1, M1).no_free == 10_000
