"""The venue's fee schedule, ``FeeBase.PQ_CENTS`` (docs/matchcore.md §8, spec §5.2), on both
engines: fee = theta x C x p x (1 - p), each fill rounded to the cent half to even, a taker's
fills in one sweep capped at the rounding of their summed exact fee, maker rebates per fill.

Coefficients are in basis points (units of 1e-4): theta 0.0695 is 695, -0.0125 is -125.
Expected fees are the spec's worked examples or worked by hand in the comments; 1 contract
is 100 quantity units, $0.01 is 10_000 cash units.
"""

from __future__ import annotations

import pytest
from support import A1, A2, M1, Order, accepted, last, level, new_engine, trade

from matchcore import Balance, FeeBase, Intent, MatchType, TimeInForce

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
PQ_CENTS = FeeBase.PQ_CENTS
CENT = 10_000
TAKER, MAKER = 695, -125
FUNDS = 10**12
SHARES = 1_000_000  # pairs each account splits, so that it can sell either token


def venue_engine(engine_cls, *, taker=TAKER, maker=MAKER, tick=100):
    eng = new_engine(
        engine_cls,
        markets=(M1,),
        tick=tick,
        max_levels=2 * 9999,
        ledger=True,
        taker_fee_bps=taker,
        maker_fee_bps=maker,
        fee_base=PQ_CENTS,
        deposits={A1: FUNDS, A2: FUNDS},
    )
    assert eng.split(A1, M1, SHARES) == 0
    assert eng.split(A2, M1, SHARES) == 0
    eng.drain_events()
    return eng


def place(eng, account, intent, price, quantity, **kwargs) -> Order:
    order_id = eng.submit(account, M1, intent, price, quantity, **kwargs)
    assert order_id > 0, order_id
    return Order(order_id, account, M1, intent, price, kwargs.get("tif", TimeInForce.GTC))


# The spec's worked examples: (contracts x 100, price, taker fee, maker fee), in cash units.
WORKED = [
    pytest.param(100_000, 1000, 626 * CENT, -112 * CENT, id="1000@0.10"),  # 6.255, 1.125
    pytest.param(100_000, 6500, 1581 * CENT, -284 * CENT, id="1000@0.65"),  # 15.81125, 2.84375
    pytest.param(100_000, 5000, 1738 * CENT, -312 * CENT, id="1000@0.50"),  # 17.375, 3.125
    pytest.param(312, 9700, 1 * CENT, 0, id="3.12@0.97"),  # 0.0063..., 0.0011...
]


@pytest.mark.parametrize("maker_intent, taker_intent", [(SELL_YES, BUY_YES), (BUY_NO, SELL_NO)])
@pytest.mark.parametrize("quantity, price, fee, maker_fee", WORKED)
def test_worked_examples(engine_cls, maker_intent, taker_intent, quantity, price, fee, maker_fee):
    """Each worked example of the spec, for a YES trade and a NO one (the fee is symmetric)."""
    eng = venue_engine(engine_cls)
    maker_order = place(eng, A1, maker_intent, price, quantity)
    taker_order = Order(2, A2, M1, taker_intent, price)
    before = eng.totals().fees
    assert eng.submit(A2, M1, taker_intent, price, quantity) == 2
    assert last(eng) == [
        accepted(taker_order, quantity),
        trade(
            taker_order,
            maker_order,
            quantity,
            0,
            0,
            MatchType.COMPLEMENTARY,
            fee=fee,
            maker_fee=maker_fee,
        ),
        level(M1, maker_order.side, price, 0, 0),
    ]
    assert eng.totals().fees - before == fee + maker_fee


def test_cumulative_cap_over_three_fills(engine_cls):
    """The spec's example: 3 fills of 1 contract at 0.50 (exact 0.017375 each) are charged
    0.02, 0.01, 0.02: round(0.03475) = 0.03 caps the second, round(0.052125) = 0.05 the
    total. Maker rebates are per fill: 0.003125 rounds to 0.00."""
    eng = venue_engine(engine_cls)
    makers = [place(eng, A1, SELL_YES, 5000, 100) for _ in range(3)]
    taker_order = Order(4, A2, M1, BUY_YES, 5000)
    assert eng.submit(A2, M1, BUY_YES, 5000, 300) == 4
    trades = [e for e in last(eng) if e["type"] == 3]
    assert trades == [
        trade(taker_order, makers[0], 100, 200, 0, MatchType.COMPLEMENTARY, fee=2 * CENT),
        trade(taker_order, makers[1], 100, 100, 0, MatchType.COMPLEMENTARY, fee=1 * CENT),
        trade(taker_order, makers[2], 100, 0, 0, MatchType.COMPLEMENTARY, fee=2 * CENT),
    ]
    assert eng.totals().fees == 5 * CENT


def test_cap_is_per_sweep(engine_cls):
    """An order's later sweep starts a new cap: the first sweep charges 0.02 for one contract
    at 0.50; after it rests, a crossing replace is a new aggression and again pays 0.02 (a
    cap over both sweeps would have charged 0.01, round(0.03475) - 0.02)."""
    eng = venue_engine(engine_cls)
    place(eng, A1, SELL_YES, 5000, 100)
    taker = place(eng, A2, BUY_YES, 5000, 200)  # one contract trades, one rests
    assert [e["fee"] for e in last(eng) if e["type"] == 3] == [2 * CENT]
    place(eng, A1, SELL_YES, 5100, 100)
    assert eng.replace(A2, taker.order_id, price=5100) == 0
    assert [e["fee"] for e in last(eng) if e["type"] == 3] == [2 * CENT]  # 0.0695*0.2499 -> 0.02


def test_half_even_in_both_directions(engine_cls):
    """With theta 0.1 (1000): 1 contract at 0.50 is exactly 0.025 -> 0.02 (half to even);
    maker theta -0.1 gives the rebate -0.02. 7 contracts at 0.50: 0.175 -> 0.18."""
    eng = venue_engine(engine_cls, taker=1000, maker=-1000)
    place(eng, A1, SELL_YES, 5000, 100)
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) > 0
    (fill,) = [e for e in last(eng) if e["type"] == 3]
    assert (fill["fee"], fill["maker_fee"]) == (2 * CENT, -2 * CENT)
    place(eng, A1, SELL_YES, 5000, 700)
    assert eng.submit(A2, M1, BUY_YES, 5000, 700) > 0
    (fill,) = [e for e in last(eng) if e["type"] == 3]
    assert (fill["fee"], fill["maker_fee"]) == (18 * CENT, -18 * CENT)


def test_buy_reserves_twice_the_exact_fee_per_lot(engine_cls):
    """A buy of 1 contract (lot 1) at 0.50 reserves per lot 5000 + ceil(2 * 695 * 5000 * 5000
    / 10**8) = 5000 + ceil(347.5) = 5348: 534_800 in all. Hit as a maker it pays 0.50 and gets
    the rebate round(0.003125) = 0.00; the seller, taker, pays 0.02 from its proceeds."""
    eng = venue_engine(engine_cls)
    free = eng.balance(A2).free
    place(eng, A2, BUY_YES, 5000, 100)
    assert eng.balance(A2) == Balance(free - 534_800, 534_800)
    seller_free = eng.balance(A1).free
    place(eng, A1, SELL_YES, 5000, 100)
    (fill,) = [e for e in last(eng) if e["type"] == 3]
    assert (fill["fee"], fill.get("maker_fee", 0)) == (2 * CENT, 0)
    assert eng.balance(A1).free == seller_free + 500_000 - 2 * CENT
    assert eng.balance(A2) == Balance(free - 500_000, 0)


def test_by_cash_buy_pays_fees_from_a_doubled_fee_reserve(engine_cls):
    """A buy by cash of $1.00 at limit 0.50 reserves the budget and ceil(2 * 695 * 1_000_000 /
    10_000) = 139_000; it buys 2 contracts at 0.50 (1_000_000) and pays round(0.03475) =
    0.03; the rest of the fee reserve is released."""
    eng = venue_engine(engine_cls)
    place(eng, A1, SELL_YES, 5000, 500)
    free = eng.balance(A2).free
    order_id = eng.submit(
        A2, M1, BUY_YES, 5000, 1_000_000, TimeInForce.IOC, market_order=True, by_cash=True
    )
    assert order_id > 0
    (fill,) = [e for e in last(eng) if e["type"] == 3]
    assert (fill["quantity"], fill["fee"]) == (200, 3 * CENT)
    assert eng.balance(A2) == Balance(free - 1_000_000 - 3 * CENT, 0)


def test_venue_market_info(engine_cls):
    eng = venue_engine(engine_cls)
    info = eng.market(M1)
    assert (info.taker_fee_bps, info.maker_fee_bps, info.fee_base) == (TAKER, MAKER, PQ_CENTS)


@pytest.mark.parametrize("rate", [1, 695, 1000])
@pytest.mark.parametrize("lot", [1, 3, 100])
def test_reservation_bound_covers_every_fill(rate, lot):
    """The bound factor 2 (§8): for a buy at any limit on the $0.01 grid, any fill of n lots at
    the limit or better costs at most n * R_lot, the fill's fee rounded half to even."""
    from matchcore.reference import _cents, _Market

    market = _Market(1, 100, lot, lot, rate, 0, PQ_CENTS)
    for intent in (BUY_YES, BUY_NO):
        for limit in range(100, 10_000, 100):
            r_lot = market.lot_reserve(intent, limit)
            better = range(100, limit + 1, 100) if intent == BUY_YES else range(limit, 10_000, 100)
            for price in better:
                token = price if intent == BUY_YES else 10_000 - price
                for lots in (1, 2, 3, 7, 50, 101):
                    qty = lots * lot
                    fee = _cents(rate * price * (10_000 - price) * qty) * CENT
                    assert token * qty + fee <= lots * r_lot, (intent, limit, price, lots)
