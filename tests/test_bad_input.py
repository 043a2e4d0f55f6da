"""Bad input: each gives the right REJECTED event (or a typed Python exception) and no change.

Commands run at time 0 (= now), so a rejected command leaves the digest unchanged.
"""

from __future__ import annotations

import inspect
from decimal import Decimal

import numpy as np
import pytest
from support import (
    A1,
    A2,
    ADD_ACCOUNT,
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
    new_engine,
    new_order,
    rejected,
    run,
)

from matchcore import (
    ALL_MARKETS,
    COMMAND_DTYPE,
    EVENT_DTYPE,
    MAX_CASH,
    MAX_QUANTITY,
    CommandType,
    Intent,
    MarketState,
    OrderFlags,
    Reject,
    TimeInForce,
    event_dicts,
    make_commands,
)

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
GTC, GTD, IOC, FOK = TimeInForce
POST_ONLY, MARKET, BY_CASH = OrderFlags.POST_ONLY, OrderFlags.MARKET, OrderFlags.BY_CASH
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)


def busy(eng):
    """Some resting orders so that a wrong reject would show in the digest."""
    assert eng.submit(A1, M1, BUY_YES, 4000, 100, client_order_id=5) == 1
    assert eng.submit(A2, M1, SELL_YES, 6000, 100) == 2
    assert eng.submit(A2, M2, BUY_NO, 7000, 100, GTD, expiry=1000) == 3


def assert_rejected(eng, rows, expected_event):
    """Run one command; it must give exactly ``expected_event`` and change nothing."""
    before, count = eng.digest(), eng.order_count
    assert run(eng, rows) == [expected_event]
    assert eng.digest() == before
    assert eng.order_count == count


def assert_next_order_id(eng, expected):
    """The next accepted order gets ``expected``: rejects did not use an id."""
    assert eng.submit(A1, M1, BUY_YES, 100, 1) == expected


# =========================================================================== NEW_ORDER

BAD_ORDERS = [
    # prices (tick 100)
    ("price-0", dict(price=0), Reject.INVALID_PRICE),
    ("price-negative", dict(price=-100), Reject.INVALID_PRICE),
    ("price-10000", dict(price=10_000), Reject.INVALID_PRICE),
    ("price-above-range", dict(price=10_100), Reject.INVALID_PRICE),
    ("price-tick-minus-1", dict(price=99), Reject.INVALID_PRICE),
    ("price-1", dict(price=1), Reject.INVALID_PRICE),
    ("price-off-grid", dict(price=5050), Reject.INVALID_PRICE),
    ("price-10000-minus-1", dict(price=9999), Reject.INVALID_PRICE),
    ("price-int32-max", dict(price=2**31 - 1), Reject.INVALID_PRICE),
    ("price-int32-min", dict(price=-(2**31)), Reject.INVALID_PRICE),
    (
        "market-order-worst-price-off-grid",
        dict(price=5050, tif=IOC, flags=MARKET),
        Reject.INVALID_PRICE,
    ),
    ("market-order-worst-price-0", dict(price=0, tif=IOC, flags=MARKET), Reject.INVALID_PRICE),
    # quantities (lot 1)
    ("qty-0", dict(quantity=0), Reject.INVALID_QUANTITY),
    ("qty-negative", dict(quantity=-1), Reject.INVALID_QUANTITY),
    ("qty-int64-min", dict(quantity=INT64_MIN), Reject.INVALID_QUANTITY),
    ("qty-max-plus-1", dict(quantity=MAX_QUANTITY + 1), Reject.INVALID_QUANTITY),
    ("qty-int64-max", dict(quantity=INT64_MAX), Reject.INVALID_QUANTITY),
    ("qty-near-int64-max", dict(quantity=INT64_MAX - 99), Reject.INVALID_QUANTITY),
    ("qty-2-pow-62", dict(quantity=2**62), Reject.INVALID_QUANTITY),
    ("ioc-qty-int64-max", dict(quantity=INT64_MAX, tif=IOC), Reject.INVALID_QUANTITY),
    ("fok-qty-int64-max", dict(quantity=INT64_MAX, tif=FOK), Reject.INVALID_QUANTITY),
    (
        "market-qty-int64-max",
        dict(quantity=INT64_MAX, tif=IOC, flags=MARKET),
        Reject.INVALID_QUANTITY,
    ),
    # budgets
    (
        "budget-0",
        dict(quantity=0, tif=IOC, flags=MARKET | BY_CASH),
        Reject.INVALID_QUANTITY,
    ),
    (
        "budget-negative",
        dict(quantity=-5, tif=IOC, flags=MARKET | BY_CASH),
        Reject.INVALID_QUANTITY,
    ),
    (
        "budget-max-plus-1",
        dict(quantity=MAX_CASH + 1, tif=IOC, flags=MARKET | BY_CASH),
        Reject.INVALID_QUANTITY,
    ),
    (
        "budget-int64-max",
        dict(quantity=INT64_MAX, tif=FOK, flags=MARKET | BY_CASH),
        Reject.INVALID_QUANTITY,
    ),
    # enum values
    ("intent-4", dict(intent=4), Reject.INVALID_ORDER),
    ("intent-9", dict(intent=9), Reject.INVALID_ORDER),
    ("intent-255", dict(intent=255), Reject.INVALID_ORDER),
    ("tif-4", dict(tif=4), Reject.INVALID_ORDER),
    ("tif-7", dict(tif=7), Reject.INVALID_ORDER),
    ("stp-6", dict(stp=6), Reject.INVALID_ORDER),
    ("stp-255", dict(stp=255), Reject.INVALID_ORDER),
    ("flags-8", dict(flags=8), Reject.INVALID_ORDER),
    ("flags-16", dict(flags=16), Reject.INVALID_ORDER),
    ("flags-128", dict(flags=128), Reject.INVALID_ORDER),
    ("flags-255", dict(flags=255), Reject.INVALID_ORDER),
    ("flags-post-only-and-8", dict(flags=POST_ONLY | 8), Reject.INVALID_ORDER),
    # flag combinations
    ("post-only-ioc", dict(tif=IOC, flags=POST_ONLY), Reject.INVALID_ORDER),
    ("post-only-fok", dict(tif=FOK, flags=POST_ONLY), Reject.INVALID_ORDER),
    ("post-only-market", dict(tif=IOC, flags=POST_ONLY | MARKET), Reject.INVALID_ORDER),
    ("market-gtc", dict(flags=MARKET), Reject.INVALID_ORDER),
    ("market-gtd", dict(tif=GTD, expiry=10**6, flags=MARKET), Reject.INVALID_ORDER),
    ("by-cash-without-market", dict(tif=IOC, flags=BY_CASH), Reject.INVALID_ORDER),
    ("by-cash-gtc-without-market", dict(flags=BY_CASH), Reject.INVALID_ORDER),
    (
        "by-cash-sell-yes",
        dict(intent=SELL_YES, tif=IOC, flags=MARKET | BY_CASH),
        Reject.INVALID_ORDER,
    ),
    (
        "by-cash-sell-no",
        dict(intent=SELL_NO, tif=IOC, flags=MARKET | BY_CASH),
        Reject.INVALID_ORDER,
    ),
    # expiry (now is 0)
    ("gtd-expiry-0", dict(tif=GTD, expiry=0), Reject.INVALID_EXPIRY),
    ("gtd-expiry-negative", dict(tif=GTD, expiry=-1), Reject.INVALID_EXPIRY),
    ("gtd-expiry-int64-min", dict(tif=GTD, expiry=INT64_MIN), Reject.INVALID_EXPIRY),
    ("gtc-with-expiry", dict(expiry=1000), Reject.INVALID_EXPIRY),
    ("ioc-with-expiry", dict(tif=IOC, expiry=1000), Reject.INVALID_EXPIRY),
    ("fok-with-negative-expiry", dict(tif=FOK, expiry=-1), Reject.INVALID_EXPIRY),
    # ids
    ("market-not-created", dict(market=3), Reject.UNKNOWN_MARKET),
    ("market-max-markets", dict(market=4), Reject.UNKNOWN_MARKET),
    ("market-all-markets", dict(market=ALL_MARKETS), Reject.UNKNOWN_MARKET),
    ("account-not-added", dict(account=5), Reject.UNKNOWN_ACCOUNT),
    ("account-max-accounts", dict(account=8), Reject.UNKNOWN_ACCOUNT),
    ("account-uint32-max", dict(account=2**32 - 1), Reject.UNKNOWN_ACCOUNT),
    # duplicate client id (order 1 of A1 rests with client id 5)
    ("duplicate-client-id", dict(client_order_id=5), Reject.DUPLICATE_CLIENT_ORDER_ID),
]


@pytest.mark.parametrize(
    "fields, reason", [pytest.param(f, r, id=name) for name, f, r in BAD_ORDERS]
)
def test_bad_new_order(eng, fields, reason):
    """A bad NEW_ORDER gives one REJECTED with the right reason, and nothing else changes."""
    busy(eng)
    row = {**new_order(A1, M1, BUY_YES, 5000, 100), **fields}
    expected = rejected(reason, account=row["account"], market=row["market"], seq=77)
    assert_rejected(eng, [{**row, "seq": 77}], expected)
    assert_next_order_id(eng, 4)


def test_valid_extremes_are_accepted(engine_cls):
    """The limits themselves are valid: price tick and 10_000 - tick, MAX_QUANTITY, MAX_CASH."""
    eng = new_engine(engine_cls, markets=(M1,))
    assert eng.submit(A1, M1, BUY_YES, 100, MAX_QUANTITY) == 1
    assert eng.submit(A1, M1, SELL_YES, 9900, MAX_QUANTITY) == 2
    assert eng.order(1).leaves_qty == MAX_QUANTITY
    result = eng.submit(A2, M1, BUY_YES, 9900, MAX_CASH, IOC, market_order=True, by_cash=True)
    assert result == 3
    # 10**16 // 9900 = 1_010_101_010_101 > MAX_QUANTITY: takes the whole ask
    assert eng.order(2) is None


@pytest.mark.parametrize("tick, low, high", [(1, 1, 9999), (10, 10, 9990), (1000, 1000, 9000)])
def test_price_range_per_tick(engine_cls, tick, low, high):
    """Valid prices run from tick to 10_000 - tick; one tick beyond either end is rejected."""
    eng = new_engine(engine_cls, markets=(M1,), tick=tick, max_levels=2 * 9999)
    assert eng.submit(A1, M1, BUY_YES, low, 1) == 1
    assert eng.submit(A1, M1, SELL_YES, high, 1) == 2
    before = eng.digest()
    for price in (low - tick, high + tick, low + tick // 2 if tick > 1 else 0):
        assert eng.submit(A1, M1, BUY_YES, price, 1) == -Reject.INVALID_PRICE
    assert eng.digest() == before


@pytest.mark.parametrize(
    "quantity, reason",
    [
        (5, Reject.INVALID_QUANTITY),  # not a lot multiple (and below min): lot checked first
        (15, Reject.INVALID_QUANTITY),
        (35, Reject.INVALID_QUANTITY),
        (-10, Reject.INVALID_QUANTITY),
        (MAX_QUANTITY + 10, Reject.INVALID_QUANTITY),
        (10, Reject.BELOW_MIN_SIZE),
        (20, Reject.BELOW_MIN_SIZE),
    ],
)
def test_lot_and_min_size(engine_cls, quantity, reason):
    """Quantity must be a multiple of the lot (10) and at least the minimum size (30)."""
    eng = new_engine(engine_cls, markets=(M1,), lot=10, min_size=30)
    assert_rejected(
        eng,
        [new_order(A1, M1, BUY_YES, 5000, quantity)],
        rejected(reason, account=A1, market=M1),
    )
    assert eng.submit(A1, M1, BUY_YES, 5000, 30) == 1
    assert eng.submit(A1, M1, BUY_YES, 5000, 40) == 2


@pytest.mark.parametrize(
    "fields, reason",
    [
        pytest.param(
            dict(market=3, account=5, intent=9), Reject.UNKNOWN_MARKET, id="market-before-account"
        ),
        pytest.param(dict(account=5, intent=9), Reject.UNKNOWN_ACCOUNT, id="account-before-enum"),
        pytest.param(dict(market=M2, intent=9), Reject.INVALID_ORDER, id="enum-before-state"),
        pytest.param(dict(market=M2, price=5050), Reject.MARKET_NOT_OPEN, id="state-before-price"),
        pytest.param(dict(price=5050, quantity=0), Reject.INVALID_PRICE, id="price-before-qty"),
        pytest.param(dict(quantity=0, expiry=5), Reject.INVALID_QUANTITY, id="qty-before-expiry"),
        pytest.param(
            dict(expiry=5, client_order_id=5), Reject.INVALID_EXPIRY, id="expiry-before-duplicate"
        ),
        pytest.param(
            dict(client_order_id=5),
            Reject.DUPLICATE_CLIENT_ORDER_ID,
            id="duplicate-before-capacity",
        ),
        pytest.param(
            dict(price=6000, flags=POST_ONLY), Reject.CAPACITY, id="capacity-before-post-only"
        ),
        pytest.param(
            dict(price=6100, quantity=500, tif=FOK, client_order_id=5),
            Reject.DUPLICATE_CLIENT_ORDER_ID,
            id="duplicate-before-fok",
        ),
        pytest.param(
            dict(price=6100, quantity=500, tif=FOK), Reject.FOK_NOT_FILLED, id="fok-not-filled"
        ),
    ],
)
def test_new_order_check_order(engine_cls, fields, reason):
    """NEW_ORDER checks run in the documented order; the first failing one is reported."""
    eng = new_engine(engine_cls, max_orders=2)
    assert eng.submit(A1, M1, SELL_YES, 6000, 100, client_order_id=5) == 1
    assert eng.submit(A2, M1, SELL_YES, 6100, 100) == 2  # the pool is now full
    assert eng.set_market_state(M2, MarketState.SUSPENDED) == 0
    row = {**new_order(A1, M1, BUY_YES, 5000, 100), **fields}
    assert_rejected(eng, [row], rejected(reason, account=row["account"], market=row["market"]))


def test_bad_orders_through_the_per_call_api(eng):
    """The per-call submit() returns -Reject and leaves the same REJECTED event."""
    busy(eng)
    before = eng.digest()
    cases = [
        (dict(intent=9), Reject.INVALID_ORDER),
        (dict(tif=7), Reject.INVALID_ORDER),
        (dict(stp=6), Reject.INVALID_ORDER),
        (dict(price=5050), Reject.INVALID_PRICE),
        (dict(quantity=INT64_MAX), Reject.INVALID_QUANTITY),
        (dict(quantity=INT64_MIN), Reject.INVALID_QUANTITY),
        (dict(tif=IOC, post_only=True), Reject.INVALID_ORDER),
        (dict(market_order=True), Reject.INVALID_ORDER),
        (dict(tif=IOC, by_cash=True), Reject.INVALID_ORDER),
        (dict(tif=IOC, market_order=True, post_only=True), Reject.INVALID_ORDER),
        (dict(tif=GTD, expiry=0), Reject.INVALID_EXPIRY),
    ]
    base = dict(intent=BUY_YES, price=5000, quantity=100, tif=GTC)
    for overrides, reason in cases:
        kwargs = {**base, **overrides}
        intent, price, quantity, tif = (
            kwargs.pop(k) for k in ("intent", "price", "quantity", "tif")
        )
        result = eng.submit(A1, M1, intent, price, quantity, tif, **kwargs)
        assert result == -reason, overrides
        assert event_dicts(eng.last_events()) == [rejected(reason, account=A1, market=M1)]
    assert eng.digest() == before
    assert_next_order_id(eng, 4)


# =========================================================================== other commands


def test_bad_cancel(eng):
    """CANCEL: unknown order id, 0, another account's order; REJECTED copies order_id."""
    busy(eng)
    for order_id in (0, 99, 2**64 - 1):
        assert_rejected(
            eng,
            [dict(type=CANCEL, account=A1, market=M1, order_id=order_id)],
            rejected(
                Reject.UNKNOWN_ORDER, account=A1, market=M1, order_id=order_id, command=CANCEL
            ),
        )
    assert_rejected(
        eng,
        [dict(type=CANCEL, account=A1, market=M1, order_id=2)],
        rejected(Reject.NOT_OWNER, account=A1, market=M1, order_id=2, command=CANCEL),
    )
    assert_rejected(  # an account that does not exist does not own the order either
        eng,
        [dict(type=CANCEL, account=6, order_id=2)],
        rejected(Reject.NOT_OWNER, account=6, order_id=2, command=CANCEL),
    )


def test_bad_cancel_client(eng):
    """CANCEL_CLIENT: unknown client id, 0, another account's client id; no order_id copied."""
    busy(eng)
    for account, client_order_id in ((A1, 0), (A1, 6), (A2, 5), (7, 5)):
        assert_rejected(
            eng,
            [
                dict(
                    type=CANCEL_CLIENT,
                    account=account,
                    market=M1,
                    client_order_id=client_order_id,
                    order_id=1,
                )
            ],
            rejected(Reject.UNKNOWN_ORDER, account=account, market=M1, command=CANCEL_CLIENT),
        )


@pytest.mark.parametrize(
    "account, market, reason",
    [
        (5, M1, Reject.UNKNOWN_ACCOUNT),
        (8, ALL_MARKETS, Reject.UNKNOWN_ACCOUNT),
        (5, 3, Reject.UNKNOWN_ACCOUNT),
        (A1, 3, Reject.UNKNOWN_MARKET),
        (A1, 4, Reject.UNKNOWN_MARKET),
        (A1, ALL_MARKETS - 1, Reject.UNKNOWN_MARKET),
    ],
)
def test_bad_cancel_all(eng, account, market, reason):
    """CANCEL_ALL: unknown account first, then a market neither created nor ALL_MARKETS."""
    busy(eng)
    assert_rejected(
        eng,
        [dict(type=CANCEL_ALL, account=account, market=market)],
        rejected(reason, account=account, market=market, command=CANCEL_ALL),
    )


REPLACE_CASES = [
    ("unknown-order", dict(order_id=99), Reject.UNKNOWN_ORDER),
    ("order-0", dict(order_id=0), Reject.UNKNOWN_ORDER),
    ("not-owner", dict(account=A2), Reject.NOT_OWNER),
    ("price-off-grid", dict(price=5050), Reject.INVALID_PRICE),
    ("price-negative", dict(price=-100), Reject.INVALID_PRICE),
    ("price-10000", dict(price=10_000), Reject.INVALID_PRICE),
    ("price-tick-minus-1", dict(price=99), Reject.INVALID_PRICE),
    ("price-before-qty", dict(price=5050, quantity=-1), Reject.INVALID_PRICE),
    ("qty-negative", dict(quantity=-1), Reject.INVALID_QUANTITY),
    ("qty-int64-min", dict(quantity=INT64_MIN), Reject.INVALID_QUANTITY),
    ("qty-max-plus-1", dict(quantity=MAX_QUANTITY + 1), Reject.INVALID_QUANTITY),
    ("qty-int64-max", dict(quantity=INT64_MAX), Reject.INVALID_QUANTITY),
    ("owner-before-price", dict(account=A2, price=5050), Reject.NOT_OWNER),
]


@pytest.mark.parametrize(
    "fields, reason", [pytest.param(f, r, id=name) for name, f, r in REPLACE_CASES]
)
def test_bad_replace(eng, fields, reason):
    """REPLACE checks: order, owner, price, quantity; REJECTED copies the order_id."""
    busy(eng)
    row = {**dict(type=REPLACE, account=A1, market=M1, order_id=1), **fields}
    assert_rejected(
        eng,
        [row],
        rejected(
            reason,
            account=row["account"],
            market=M1,
            order_id=row["order_id"],
            command=REPLACE,
        ),
    )


def test_replace_in_suspended_market(eng):
    """REPLACE in a market that is not OPEN: MARKET_NOT_OPEN (after the owner check)."""
    busy(eng)
    eng.set_market_state(M1, MarketState.SUSPENDED)
    row = dict(type=REPLACE, account=A1, market=M1, order_id=1, quantity=50)
    assert_rejected(
        eng,
        [row],
        rejected(Reject.MARKET_NOT_OPEN, account=A1, market=M1, order_id=1, command=REPLACE),
    )
    assert_rejected(
        eng,
        [{**row, "price": 5050}],
        rejected(Reject.MARKET_NOT_OPEN, account=A1, market=M1, order_id=1, command=REPLACE),
    )


def test_bad_replace_lot_and_min_size(engine_cls):
    """REPLACE quantities follow the lot (10) and minimum size (30) like new orders."""
    eng = new_engine(engine_cls, markets=(M1,), lot=10, min_size=30)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100) == 1
    for quantity, reason in ((15, Reject.INVALID_QUANTITY), (20, Reject.BELOW_MIN_SIZE)):
        assert_rejected(
            eng,
            [dict(type=REPLACE, account=A1, order_id=1, quantity=quantity)],
            rejected(reason, account=A1, order_id=1, command=REPLACE),
        )


CREATE_CASES = [
    ("id-max-markets", dict(market=4), Reject.CAPACITY),
    ("id-all-markets", dict(market=ALL_MARKETS), Reject.CAPACITY),
    ("exists", dict(market=M1), Reject.MARKET_EXISTS),
    ("tick-0", dict(price=0), Reject.INVALID_TICK),
    ("tick-5", dict(price=5), Reject.INVALID_TICK),
    ("tick-2000", dict(price=2000), Reject.INVALID_TICK),
    ("tick-10000", dict(price=10_000), Reject.INVALID_TICK),
    ("tick-negative", dict(price=-100), Reject.INVALID_TICK),
    ("lot-0", dict(aux=0), Reject.INVALID_QUANTITY),
    ("lot-negative", dict(aux=-10), Reject.INVALID_QUANTITY),
    ("min-size-0", dict(quantity=0), Reject.INVALID_QUANTITY),
    ("min-size-negative", dict(quantity=-1), Reject.INVALID_QUANTITY),
    ("min-size-above-max", dict(quantity=MAX_QUANTITY + 10), Reject.INVALID_QUANTITY),
    ("min-size-int64-max", dict(quantity=INT64_MAX, aux=1), Reject.INVALID_QUANTITY),
    ("min-size-not-lot-multiple", dict(quantity=15), Reject.INVALID_QUANTITY),
    ("min-size-below-lot", dict(quantity=5), Reject.INVALID_QUANTITY),
    # fees: taker 0..1000, maker -1000..1000 and >= -taker, base 0..2
    ("taker-fee-negative", dict(taker_fee_bps=-1), Reject.INVALID_FEE),
    ("taker-fee-1001", dict(taker_fee_bps=1001), Reject.INVALID_FEE),
    ("taker-fee-int16-min", dict(taker_fee_bps=-(2**15)), Reject.INVALID_FEE),
    ("maker-fee-1001", dict(maker_fee_bps=1001, taker_fee_bps=1000), Reject.INVALID_FEE),
    ("maker-fee-minus-1001", dict(maker_fee_bps=-1001, taker_fee_bps=1000), Reject.INVALID_FEE),
    ("maker-rebate-without-taker-fee", dict(maker_fee_bps=-5), Reject.INVALID_FEE),
    ("maker-rebate-above-taker-fee", dict(maker_fee_bps=-6, taker_fee_bps=5), Reject.INVALID_FEE),
    ("maker-fee-int16-max", dict(maker_fee_bps=2**15 - 1), Reject.INVALID_FEE),
    ("fee-base-4", dict(fee_base=4), Reject.INVALID_FEE),
    ("fee-base-255", dict(fee_base=255), Reject.INVALID_FEE),
    # check order
    ("capacity-before-exists", dict(market=4, price=5), Reject.CAPACITY),
    ("exists-before-tick", dict(market=M1, price=5), Reject.MARKET_EXISTS),
    ("tick-before-quantity", dict(price=5, aux=0), Reject.INVALID_TICK),
    ("quantity-before-fee", dict(aux=0, taker_fee_bps=1001), Reject.INVALID_QUANTITY),
    ("min-size-before-fee", dict(quantity=15, fee_base=4), Reject.INVALID_QUANTITY),
]


@pytest.mark.parametrize(
    "fields, reason", [pytest.param(f, r, id=name) for name, f, r in CREATE_CASES]
)
def test_bad_create_market(eng, fields, reason):
    """CREATE_MARKET checks id, existence, tick, lot and min size, fee fields, in that order."""
    row = {**dict(type=CREATE, market=3, price=100, quantity=10, aux=10), **fields}
    assert_rejected(eng, [row], rejected(reason, market=row["market"], command=CREATE))
    assert eng.market(3) is None


def test_create_market_fee_checked_before_level_capacity(engine_cls):
    """Bad fee fields are INVALID_FEE even when the level arena is also full."""
    eng = Checked(
        engine_cls(max_orders=4, max_markets=4, max_accounts=4, max_levels=198, ledger=False)
    )
    assert eng.create_market(0, 100) == 0
    row = dict(type=CREATE, market=1, price=100, quantity=1, aux=1)
    assert_rejected(eng, [row], rejected(Reject.CAPACITY, market=1, command=CREATE))
    for fees in (dict(taker_fee_bps=1001), dict(maker_fee_bps=-1), dict(fee_base=4)):
        assert_rejected(
            eng, [{**row, **fees}], rejected(Reject.INVALID_FEE, market=1, command=CREATE)
        )
    assert_rejected(  # valid fee fields: the arena is what fails
        eng,
        [{**row, "taker_fee_bps": 1000, "maker_fee_bps": -1000, "fee_base": 2}],
        rejected(Reject.CAPACITY, market=1, command=CREATE),
    )


@pytest.mark.parametrize(
    "market, state, reason",
    [
        (3, MarketState.OPEN, Reject.UNKNOWN_MARKET),
        (4, MarketState.OPEN, Reject.UNKNOWN_MARKET),
        (ALL_MARKETS, MarketState.CLOSED, Reject.UNKNOWN_MARKET),
        (3, 99, Reject.UNKNOWN_MARKET),
        (M1, 0, Reject.INVALID_STATE_TRANSITION),
        (M1, MarketState.OPEN, Reject.INVALID_STATE_TRANSITION),
        (M1, MarketState.PRE_OPEN, Reject.INVALID_STATE_TRANSITION),
        (M1, MarketState.RESOLVED, Reject.INVALID_STATE_TRANSITION),
        (M1, 8, Reject.INVALID_STATE_TRANSITION),
        (M1, 255, Reject.INVALID_STATE_TRANSITION),
    ],
)
def test_bad_set_market_state(eng, market, state, reason):
    """SET_MARKET_STATE: unknown market, or a state value/transition not allowed."""
    busy(eng)
    assert_rejected(
        eng,
        [dict(type=SET_STATE, market=market, arg=state, account=A1)],
        rejected(reason, market=market, account=A1, command=SET_STATE),
    )


@pytest.mark.parametrize(
    "market, tick, reason",
    [
        (3, 100, Reject.UNKNOWN_MARKET),
        (4, 100, Reject.UNKNOWN_MARKET),
        (ALL_MARKETS, 100, Reject.UNKNOWN_MARKET),
        (3, 7, Reject.UNKNOWN_MARKET),
        (M1, 0, Reject.INVALID_TICK),
        (M1, 3, Reject.INVALID_TICK),
        (M1, 2000, Reject.INVALID_TICK),
        (M1, 10_000, Reject.INVALID_TICK),
        (M1, -10, Reject.INVALID_TICK),
        (M1, 2**31 - 1, Reject.INVALID_TICK),
    ],
)
def test_bad_set_tick(eng, market, tick, reason):
    """SET_TICK: unknown market, then a tick not in {1, 10, 100, 1000}."""
    busy(eng)
    assert_rejected(
        eng,
        [dict(type=SET_TICK, market=market, price=tick)],
        rejected(reason, market=market, command=SET_TICK),
    )


@pytest.mark.parametrize(
    "account, reason",
    [
        (8, Reject.CAPACITY),
        (2**32 - 1, Reject.CAPACITY),
        (A1, Reject.ACCOUNT_EXISTS),
    ],
)
def test_bad_add_account(eng, account, reason):
    """ADD_ACCOUNT: id >= max_accounts is CAPACITY; an existing one ACCOUNT_EXISTS."""
    assert_rejected(
        eng,
        [dict(type=ADD_ACCOUNT, account=account, market=M2)],
        rejected(reason, account=account, market=M2, command=ADD_ACCOUNT),
    )


@pytest.mark.parametrize("command_type", [0, 16, 17, 200, 255])
def test_unknown_command_type(eng, command_type):
    """An unknown command type is INVALID_COMMAND; its type is copied into `command`."""
    busy(eng)
    row = dict(new_order(A1, M1, BUY_YES, 5000, 100), type=command_type, order_id=1, seq=9)
    assert_rejected(
        eng,
        [row],
        rejected(Reject.INVALID_COMMAND, account=A1, market=M1, command=command_type, seq=9),
    )
    assert_next_order_id(eng, 4)


def test_bad_commands_in_one_batch(eng):
    """A batch of bad commands gives one REJECTED each, in order, and changes nothing."""
    busy(eng)
    rows = [
        dict(new_order(A1, M1, 9, 5000, 100), seq=1),
        dict(new_order(A1, M1, BUY_YES, 5000, 100, flags=8), seq=2),
        dict(type=200, account=A1, market=M1, seq=3),
        dict(type=CANCEL, account=A1, market=M1, order_id=2, seq=4),
        dict(new_order(A1, M1, BUY_YES, 10_000, 100), seq=5),
    ]
    before = eng.digest()
    assert run(eng.raw, rows) == [
        rejected(Reject.INVALID_ORDER, account=A1, market=M1, seq=1),
        rejected(Reject.INVALID_ORDER, account=A1, market=M1, seq=2),
        rejected(Reject.INVALID_COMMAND, account=A1, market=M1, command=200, seq=3),
        rejected(Reject.NOT_OWNER, account=A1, market=M1, order_id=2, command=CANCEL, seq=4),
        rejected(Reject.INVALID_PRICE, account=A1, market=M1, seq=5),
    ]
    eng.validate()
    assert eng.digest() == before


# =========================================================================== Python exceptions


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(lambda: np.zeros(2, dtype=EVENT_DTYPE), id="event-dtype"),
        pytest.param(lambda: np.zeros(2, dtype=np.int64), id="int64"),
        pytest.param(lambda: np.zeros(10, dtype=np.uint8), id="uint8"),
        pytest.param(lambda: np.zeros(2, dtype=np.float64), id="float64"),
        pytest.param(lambda: np.zeros(2, dtype=COMMAND_DTYPE.newbyteorder(">")), id="big-endian"),
        pytest.param(
            lambda: np.zeros(2, dtype=[(n, "<i8") for n in COMMAND_DTYPE.names]),
            id="same-names-other-types",
        ),
        pytest.param(lambda: [dict(type=1)], id="list"),
        pytest.param(lambda: make_commands([dict(type=1)]).tobytes(), id="bytes"),
        pytest.param(lambda: None, id="none"),
    ],
)
def test_process_wrong_dtype_is_type_error(eng, array):
    """process() takes only an array of COMMAND_DTYPE: anything else is TypeError."""
    busy(eng)
    before = eng.digest()
    with pytest.raises(TypeError):
        eng.raw.process(array())
    assert eng.digest() == before


@pytest.mark.parametrize("shape", [(2, 2), (1, 1), ()], ids=str)
def test_process_not_one_dimensional_is_value_error(eng, shape):
    """process() of a 2-D (or 0-D) command array is ValueError (nothing runs)."""
    busy(eng)
    before = eng.digest()
    commands = np.zeros(shape, dtype=COMMAND_DTYPE)
    commands["type"] = CommandType.ADD_ACCOUNT
    commands["account"] = 6
    with pytest.raises(ValueError):
        eng.raw.process(commands)
    assert eng.digest() == before


def test_process_takes_strided_and_read_only_arrays(engine_cls):
    """A non-contiguous or read-only 1-D command array runs like its contiguous copy."""
    rows = [new_order(A1, M1, BUY_YES, 4000 + 100 * i, 10 + i, seq=i) for i in range(6)]
    commands = make_commands(rows)
    strided = commands[::2]
    read_only = commands.copy()
    read_only.flags.writeable = False
    a, b, c = (new_engine(engine_cls) for _ in range(3))
    assert event_dicts(a.raw.process(strided)) == event_dicts(b.raw.process(strided.copy()))
    assert a.digest() == b.digest()
    assert a.order_count == 3
    assert len(c.raw.process(read_only)) == 12
    assert c.order_count == 6


@pytest.mark.parametrize("offset", [1, 4])
def test_process_takes_a_misaligned_array(engine_cls, offset):
    """Commands viewed at an odd offset of a byte buffer (numpy calls them aligned: the
    dtype is packed) run like an aligned copy, through process() and process_into()."""
    rows = [new_order(A1, M1, BUY_YES, 4000 + 100 * i, 10 + i, seq=i) for i in range(6)]
    raw = bytearray(offset) + bytearray(make_commands(rows).tobytes())
    misaligned = np.frombuffer(raw, dtype=COMMAND_DTYPE, offset=offset)
    a, b, c = (new_engine(engine_cls) for _ in range(3))
    want = event_dicts(b.raw.process(misaligned.copy()))
    assert event_dicts(a.raw.process(misaligned)) == want
    out = np.zeros(64, dtype=EVENT_DTYPE)
    assert event_dicts(c.raw.process_into(misaligned, out)) == want
    assert a.digest() == b.digest() == c.digest()


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(max_orders=0),
        dict(max_orders=-1),
        dict(max_orders=2**29 + 1),
        dict(max_markets=0),
        dict(max_markets=-1),
        dict(max_accounts=0),
        dict(max_accounts=-5),
        dict(max_levels=0),
        dict(max_levels=-1),
        dict(max_positions=0),
        dict(max_positions=-1),
        dict(max_positions=2**29 + 1),
    ],
    ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()),
)
def test_engine_arguments_out_of_range(engine_cls, kwargs):
    """Engine(): every capacity >= 1, max_orders and max_positions <= 2**29, else ValueError."""
    args = dict(max_orders=8, max_markets=2, max_accounts=2, max_levels=None, ledger=False)
    with pytest.raises(ValueError):
        engine_cls(**{**args, **kwargs})


OUT_OF_RANGE_CALLS = [
    ("submit-account-negative", lambda e: e.submit(-1, M1, BUY_YES, 5000, 1)),
    ("submit-account-2**32", lambda e: e.submit(2**32, M1, BUY_YES, 5000, 1)),
    ("submit-market-negative", lambda e: e.submit(A1, -1, BUY_YES, 5000, 1)),
    ("submit-market-2**32", lambda e: e.submit(A1, 2**32, BUY_YES, 5000, 1)),
    (
        "submit-client-id-negative",
        lambda e: e.submit(A1, M1, BUY_YES, 5000, 1, client_order_id=-1),
    ),
    (
        "submit-client-id-2**64",
        lambda e: e.submit(A1, M1, BUY_YES, 5000, 1, client_order_id=2**64),
    ),
    ("cancel-order-negative", lambda e: e.cancel(A1, -1)),
    ("cancel-order-2**64", lambda e: e.cancel(A1, 2**64)),
    ("cancel-account-negative", lambda e: e.cancel(-1, 1)),
    ("cancel-client-negative", lambda e: e.cancel_client(A1, -1)),
    ("cancel-client-2**64", lambda e: e.cancel_client(A1, 2**64)),
    ("cancel-all-account-2**32", lambda e: e.cancel_all(2**32)),
    ("cancel-all-market-negative", lambda e: e.cancel_all(A1, -1)),
    ("cancel-all-market-2**32", lambda e: e.cancel_all(A1, 2**32)),
    ("replace-order-negative", lambda e: e.replace(A1, -1, quantity=5)),
    ("replace-order-2**64", lambda e: e.replace(A1, 2**64, quantity=5)),
    ("replace-account-2**32", lambda e: e.replace(2**32, 1, quantity=5)),
    ("add-account-negative", lambda e: e.add_account(-1)),
    ("add-account-2**32", lambda e: e.add_account(2**32)),
    ("create-market-negative", lambda e: e.create_market(-1, 100)),
    ("create-market-2**32", lambda e: e.create_market(2**32, 100)),
    ("set-state-market-2**32", lambda e: e.set_market_state(2**32, MarketState.OPEN)),
    ("set-tick-market-negative", lambda e: e.set_tick(-1, 10)),
]


@pytest.mark.parametrize("call", [pytest.param(c, id=name) for name, c in OUT_OF_RANGE_CALLS])
def test_per_call_out_of_range_ids_raise(eng, call):
    """Unsigned ids out of range in the per-call API raise a typed exception; nothing changes."""
    busy(eng)
    before = eng.digest()
    with pytest.raises((OverflowError, TypeError, ValueError)):
        call(eng)
    assert eng.digest() == before
    assert_next_order_id(eng, 4)


@pytest.mark.parametrize("quantity", [2**63, -(2**63) - 1, 2**64])
def test_per_call_quantity_beyond_int64(eng, quantity):
    """A quantity that does not fit int64 raises, or is rejected as INVALID_QUANTITY."""
    busy(eng)
    before = eng.digest()
    try:
        result = eng.submit(A1, M1, BUY_YES, 5000, quantity)
    except (OverflowError, TypeError, ValueError):
        pass
    else:
        assert result == -Reject.INVALID_QUANTITY
    assert eng.digest() == before
    assert_next_order_id(eng, 4)


# Every integer argument of the per-call API and the queries, in a call that is valid
# on ``busy(eng)`` with the ledger (name -> keyword arguments).
INTEGER_ARGUMENT_CALLS = {
    "create_market": dict(
        market=3,
        tick=100,
        min_size=1,
        lot=1,
        taker_fee_bps=0,
        maker_fee_bps=0,
        fee_base=0,
        min_price=0,
        max_price=0,
        time=0,
    ),
    "set_market_state": dict(market=M1, state=MarketState.HALTED, time=0),
    "set_tick": dict(market=M1, tick=100, time=0),
    "add_account": dict(account=4, time=0),
    "submit": dict(
        account=A1,
        market=M1,
        intent=BUY_YES,
        price=4100,
        quantity=10,
        tif=GTC,
        expiry=0,
        client_order_id=9,
        stp=0,
        time=0,
    ),
    "cancel": dict(account=A1, order_id=1, time=0),
    "cancel_client": dict(account=A1, client_order_id=5, time=0),
    "cancel_all": dict(account=A1, market=M1, time=0),
    "replace": dict(account=A1, order_id=1, price=4100, quantity=50, time=0),
    "advance_time": dict(time=0),
    "deposit": dict(account=A1, amount=19, time=0),
    "withdraw": dict(account=A1, amount=1, time=0),
    "split": dict(account=A1, market=M1, quantity=1, time=0),
    "merge": dict(account=A1, market=M1, quantity=1, time=0),
    "resolve": dict(market=M2, outcome=1, time=0),
    "book": dict(market=M1, depth=1),
    "best": dict(market=M1),
    "order": dict(order_id=1),
    "orders_of": dict(account=A1),
    "market": dict(market=M1),
    "balance": dict(account=A1),
    "position": dict(account=A1, market=M1),
}


def busy_with_ledger(engine_cls):
    """``busy()`` with the ledger: cash for both accounts, shares to sell and merge."""
    eng = new_engine(engine_cls, ledger=True, deposits={A1: 10**9, A2: 10**9})
    for account in (A1, A2):
        assert eng.split(account, M1, 500) == 0
    busy(eng)
    eng.drain_events()
    return eng


NOT_INTEGERS = [1.0, 1.9, Decimal(1), np.float64(1), np.float32(1), True, np.True_, "1", None]


def test_every_integer_argument_is_listed(engine_cls):
    """The table above names every parameter of every method but the flags (bools)."""
    flags = {"post_only", "market_order", "by_cash"}
    for method, arguments in INTEGER_ARGUMENT_CALLS.items():
        parameters = set(inspect.signature(getattr(engine_cls, method)).parameters) - {"self"}
        assert parameters - flags == set(arguments), method


@pytest.mark.parametrize("method", INTEGER_ARGUMENT_CALLS)
def test_per_call_integer_arguments_take_only_integers(engine_cls, method):
    """A float, Decimal, numpy float, bool, str or None as an integer argument is a
    TypeError naming the argument, and nothing changes (DESIGN.md §2: floats never
    enter the core; they used to be truncated). numpy integers are ints.
    """
    arguments = INTEGER_ARGUMENT_CALLS[method]
    eng = busy_with_ledger(engine_cls)
    before = eng.digest()
    for name in arguments:
        for value in NOT_INTEGERS:
            with pytest.raises(TypeError, match=f"^{name} must be an int, not "):
                getattr(eng, method)(**{**arguments, name: value})
            assert eng.digest() == before, (name, value)
            assert len(eng.drain_events()) == 0
    expected = getattr(eng, method)(**arguments)
    assert expected is not None and not (isinstance(expected, int) and expected < 0), expected
    events, state = eng.drain_events(), eng.digest()
    as_numpy = busy_with_ledger(engine_cls)
    numpy_arguments = {name: np.int64(value) for name, value in arguments.items()}
    result = getattr(as_numpy, method)(**numpy_arguments)
    if method == "book":
        assert all(np.array_equal(a, b) for a, b in zip(result, expected, strict=True))
    else:
        assert result == expected
    assert np.array_equal(as_numpy.drain_events(), events)
    assert as_numpy.digest() == state
