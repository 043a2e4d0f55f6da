"""The ledger (docs/matchcore.md §8): cash, positions, reservations, settlement, fees,
split/merge, deposits/withdrawals, resolution, position capacity and the limits.

Every expected balance, fee and event is written by hand from the spec (the working is
in the comments), never produced by an engine. Units: cash in micro-dollars, prices in
$0.0001, quantities in 0.01 share, so a notional is price * quantity exactly.

Engines here are built with ``ledger=True`` and audited after every command
(``support.audit_ledger``): conservation (free + reserved cash + collateral + fees ==
net deposits), YES == NO == collateral / 10_000 per market, reservations equal to what
the resting orders need, positions held exactly when needed, and the query methods
agreeing with the canonical state.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import (
    A1,
    A2,
    A3,
    ADVANCE,
    CREATE,
    DEPOSIT,
    M1,
    M2,
    MERGE_PAIRS,
    REPLACE,
    RESOLVE,
    SET_TICK,
    SPLIT,
    WITHDRAW,
    Checked,
    Order,
    accepted,
    balance_event,
    canceled,
    decode_state,
    fee_base_and_divisor,
    last,
    level,
    market_event,
    market_info,
    new_engine,
    new_order,
    position_event,
    rejected,
    replaced,
    run,
    settlement_event,
    trade,
)

from matchcore import (
    ALL_MARKETS,
    MAX_CASH,
    MAX_QUANTITY,
    Balance,
    CancelReason,
    CommandType,
    EventType,
    FeeBase,
    Intent,
    MarketState,
    MatchType,
    OrderFlags,
    Outcome,
    Position,
    Reject,
    Side,
    Stp,
    TimeInForce,
    Totals,
    make_commands,
)
from matchcore.codes import side_of

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
PRE_OPEN, OPEN, SUSPENDED, CLOSED, RESOLVED = (
    MarketState.PRE_OPEN,
    MarketState.OPEN,
    MarketState.SUSPENDED,
    MarketState.CLOSED,
    MarketState.RESOLVED,
)
NOTIONAL, MIN, PQ = FeeBase.NOTIONAL, FeeBase.MIN, FeeBase.PQ
YES, NO, HALF = Outcome.YES, Outcome.NO, Outcome.HALF
POST_ONLY, MARKET, BY_CASH = OrderFlags.POST_ONLY, OrderFlags.MARKET, OrderFlags.BY_CASH
INSUFFICIENT = Reject.INSUFFICIENT_BALANCE
A4 = 4
MAX_TOTAL_CASH = 2**62
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
TEN_DOLLARS = 10_000_000


def ledger_engine(engine_cls, **kwargs) -> Checked:
    """new_engine() with the ledger on; A1, A2, A3 get $10 each unless ``deposits`` says."""
    kwargs.setdefault("deposits", {A1: TEN_DOLLARS, A2: TEN_DOLLARS, A3: TEN_DOLLARS})
    return new_engine(engine_cls, ledger=True, **kwargs)


@pytest.fixture
def lg(engine_cls) -> Checked:
    """Ledger on; A1, A2, A3 with $10 free each; M1, M2 OPEN at tick 100, lot 1, no fees."""
    return ledger_engine(engine_cls)


def rest(eng, account, market, intent, price, quantity, **kwargs) -> Order:
    """Submit an order that must be accepted; return what the tests know of it."""
    order_id = eng.submit(account, market, intent, price, quantity, **kwargs)
    assert order_id > 0, f"expected an accepted order, got {order_id}"
    tif = kwargs.get("tif", GTC)
    flags = POST_ONLY if kwargs.get("post_only") else 0
    return Order(order_id, account, market, intent, price, tif, flags)


def cash_order(order_id, account, market, intent, price, tif=IOC) -> Order:
    return Order(order_id, account, market, intent, price, tif, MARKET | BY_CASH)


def positions_listed(eng, market) -> list[int]:
    """Accounts whose position in ``market`` the canonical state lists."""
    state = decode_state(eng.canonical_state())
    (snap,) = [m for m in state.markets if m.market == market]
    return [p.account for p in snap.positions]


def position_count(eng) -> int:
    return sum(len(m.positions) for m in decode_state(eng.canonical_state()).markets)


def assert_unchanged(eng, call, result, expected_events):
    """``call()`` must return ``result`` with ``expected_events`` and change nothing."""
    before = eng.digest()
    assert call() == result
    assert last(eng) == expected_events
    assert eng.digest() == before


# =========================================================================== deposit, withdraw


def test_deposit_and_withdraw(engine_cls):
    """DEPOSIT adds to free cash, WITHDRAW takes from it; BALANCE gives the change and after."""
    eng = ledger_engine(engine_cls, deposits={})
    assert eng.balance(A1) == Balance(0, 0)
    assert eng.balance(5) is None  # never added
    assert eng.totals() == Totals(0, 0, 0)

    assert eng.deposit(A1, 1_000_000) == 0
    assert last(eng) == [balance_event(A1, 1_000_000, 1_000_000, 0)]
    assert eng.deposit(A1, 234_567, time=5) == 0
    assert last(eng) == [balance_event(A1, 234_567, 1_234_567, 0)]
    assert eng.now == 5
    assert eng.totals() == Totals(1_234_567, 0, 0)

    assert eng.withdraw(A1, 1_000_000) == 0
    assert last(eng) == [balance_event(A1, -1_000_000, 234_567, 0, command=WITHDRAW)]
    assert eng.balance(A1) == Balance(234_567, 0)
    assert eng.balance(A2) == Balance(0, 0)
    assert eng.totals() == Totals(234_567, 0, 0)

    assert_unchanged(
        eng,
        lambda: eng.withdraw(A1, 234_568),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, command=WITHDRAW)],
    )
    assert eng.withdraw(A1, 234_567) == 0  # exactly the free cash
    assert last(eng) == [balance_event(A1, -234_567, 0, 0, command=WITHDRAW)]
    assert eng.totals() == Totals(0, 0, 0)


def test_deposit_and_withdraw_in_a_batch(engine_cls):
    """Through process(): events carry the seq; REJECTED copies account and market."""
    eng = ledger_engine(engine_cls, deposits={})
    rows = [
        dict(type=DEPOSIT, account=A2, quantity=500, seq=1),
        dict(type=WITHDRAW, account=A2, quantity=200, seq=2, market=M2),
        dict(type=WITHDRAW, account=A2, quantity=301, seq=3, market=M2),
        dict(type=DEPOSIT, account=A3, quantity=7, seq=4, time=9),
    ]
    assert run(eng, rows) == [
        balance_event(A2, 500, 500, 0, seq=1),
        balance_event(A2, -200, 300, 0, command=WITHDRAW, seq=2),
        rejected(INSUFFICIENT, account=A2, market=M2, command=WITHDRAW, seq=3),
        balance_event(A3, 7, 7, 0, seq=4),
    ]
    assert eng.now == 9
    assert eng.totals() == Totals(307, 0, 0)


CASH_CHECKS = [
    ("unknown-account", 5, 100, Reject.UNKNOWN_ACCOUNT),
    ("account-max-accounts", 8, 100, Reject.UNKNOWN_ACCOUNT),
    ("account-uint32-max", 2**32 - 1, 100, Reject.UNKNOWN_ACCOUNT),
    ("account-before-amount", 5, 0, Reject.UNKNOWN_ACCOUNT),
    ("zero", A1, 0, Reject.INVALID_QUANTITY),
    ("negative", A1, -1, Reject.INVALID_QUANTITY),
    ("int64-min", A1, INT64_MIN, Reject.INVALID_QUANTITY),
    ("max-cash-plus-1", A1, MAX_CASH + 1, Reject.INVALID_QUANTITY),
    ("int64-max", A1, INT64_MAX, Reject.INVALID_QUANTITY),
]


@pytest.mark.parametrize("command", [DEPOSIT, WITHDRAW], ids=["deposit", "withdraw"])
@pytest.mark.parametrize(
    "account, amount, reason", [pytest.param(*c[1:], id=c[0]) for c in CASH_CHECKS]
)
def test_bad_deposit_and_withdraw(lg, command, account, amount, reason):
    """Unknown account first, then an amount not in 1..MAX_CASH; nothing changes."""
    before = lg.digest()
    row = dict(type=command, account=account, market=M2, quantity=amount, seq=3)
    assert run(lg, [row]) == [rejected(reason, account=account, market=M2, command=command, seq=3)]
    assert lg.digest() == before


def test_withdraw_more_than_free_cash(lg):
    """WITHDRAW of more than the free cash is INSUFFICIENT_BALANCE; all of it works."""
    assert_unchanged(
        lg,
        lambda: lg.withdraw(A1, TEN_DOLLARS + 1),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, command=WITHDRAW)],
    )
    assert lg.withdraw(A1, TEN_DOLLARS) == 0
    assert lg.balance(A1) == Balance(0, 0)


def test_max_cash_amounts(engine_cls):
    """MAX_CASH is a valid deposit and withdrawal; the amount is checked before the balance."""
    eng = ledger_engine(engine_cls, deposits={})
    assert eng.deposit(A1, MAX_CASH) == 0
    assert eng.deposit(A1, MAX_CASH) == 0
    assert eng.balance(A1) == Balance(2 * MAX_CASH, 0)
    assert_unchanged(
        eng,
        lambda: eng.withdraw(A1, MAX_CASH + 1),
        -Reject.INVALID_QUANTITY,
        [rejected(Reject.INVALID_QUANTITY, account=A1, command=WITHDRAW)],
    )
    assert eng.withdraw(A1, MAX_CASH) == 0
    assert last(eng) == [balance_event(A1, -MAX_CASH, MAX_CASH, 0, command=WITHDRAW)]
    assert eng.totals() == Totals(MAX_CASH, 0, 0)


def test_withdraw_takes_only_free_cash(lg):
    """With an open buy, only the free cash can be withdrawn: exactly it works, 1 more does not."""
    o1 = rest(lg, A1, M1, BUY_YES, 5000, 100)  # reserves 5000 * 100 = 500_000
    assert lg.balance(A1) == Balance(9_500_000, 500_000)
    assert_unchanged(
        lg,
        lambda: lg.withdraw(A1, 9_500_001),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, command=WITHDRAW)],
    )
    assert lg.withdraw(A1, 9_500_000) == 0
    assert last(lg) == [balance_event(A1, -9_500_000, 0, 500_000, command=WITHDRAW)]
    assert lg.withdraw(A1, 1) == -INSUFFICIENT
    assert lg.cancel(A1, o1.order_id) == 0
    assert lg.balance(A1) == Balance(500_000, 0)
    assert lg.totals() == Totals(20_500_000, 0, 0)


def test_net_deposits_capped_at_max_total_cash(engine_cls):
    """Net deposits may reach MAX_TOTAL_CASH = 2**62 exactly; one more unit is CAPACITY.

    461 deposits of MAX_CASH into A1 (4_610_000_000_000_000_000) plus 1_686_018_427_387_904
    into A2 make 2**62 = 4_611_686_018_427_387_904; then any deposit is CAPACITY (the sum is
    checked, never wrapped), and a withdrawal makes room for exactly what it took.
    """
    eng = ledger_engine(engine_cls, deposits={})
    eng.process(make_commands([dict(type=DEPOSIT, account=A1, quantity=MAX_CASH)] * 461))
    assert eng.totals() == Totals(4_610_000_000_000_000_000, 0, 0)
    assert eng.deposit(A2, 1_686_018_427_387_904) == 0
    assert eng.totals() == Totals(MAX_TOTAL_CASH, 0, 0)
    for account, amount in ((A2, 1), (A3, 1), (A1, MAX_CASH)):
        assert_unchanged(
            eng,
            lambda account=account, amount=amount: eng.deposit(account, amount),
            -Reject.CAPACITY,
            [rejected(Reject.CAPACITY, account=account, command=DEPOSIT)],
        )
    assert eng.balance(A1) == Balance(4_610_000_000_000_000_000, 0)
    assert eng.withdraw(A1, 1) == 0
    assert eng.deposit(A3, 2) == -Reject.CAPACITY
    assert eng.deposit(A3, 1) == 0
    assert eng.totals() == Totals(MAX_TOTAL_CASH, 0, 0)
    # the balances are huge but the orders stay exact
    assert eng.submit(A1, M1, BUY_YES, 9900, MAX_QUANTITY) == 1
    assert eng.balance(A1) == Balance(
        4_610_000_000_000_000_000 - 1 - 99_000_000_000_000, 99 * 10**12
    )


# =========================================================================== reservations


RESERVATIONS = [
    # (tick, lot, base, taker, maker, intent, limit, quantity, R): R = (q / lot) * R_lot,
    # R_lot = tp(limit) * lot + ceil(max(taker, maker, 0) * B_lot(limit) / D)
    pytest.param(100, 3, NOTIONAL, 7, 2, BUY_YES, 6100, 30, 183_130, id="notional-lot-3"),
    # 6100 * 3 = 18_300; 7 * 18_300 / 10_000 = 12.81 -> 13; R_lot 18_313; 10 lots
    pytest.param(100, 1, MIN, 15, 0, BUY_NO, 3000, 100, 700_500, id="min-buy-no"),
    # tp 7000; B = min(3000, 7000) = 3000; 15 * 3000 / 10_000 = 4.5 -> 5; R_lot 7005
    pytest.param(100, 10, PQ, 15, -15, BUY_YES, 3000, 50, 150_160, id="pq-lot-10"),
    # 3000 * 10 = 30_000; 3000 * 7000 * 10 * 15 / 10**8 = 31.5 -> 32; R_lot 30_032; 5 lots
    pytest.param(100, 1, NOTIONAL, 0, 0, BUY_YES, 5000, 100, 500_000, id="no-fees"),
    pytest.param(100, 1, NOTIONAL, 3, 10, BUY_NO, 100, 10, 99_100, id="maker-rate-higher"),
    # tp 9900; f = 10; 10 * 9900 / 10_000 = 9.9 -> 10; R_lot 9910
    pytest.param(100, 1, NOTIONAL, 5, -5, BUY_YES, 9900, 1, 9_905, id="rebate-not-counted"),
    # f = max(5, -5, 0) = 5; 5 * 9900 / 10_000 = 4.95 -> 5
    pytest.param(1, 1, PQ, 1, 0, BUY_YES, 1, 1, 2, id="pq-price-1"),
    # 1 + ceil(1 * 1 * 9999 / 10**8) = 1 + 1
    pytest.param(
        1, 1, NOTIONAL, 1000, 0, BUY_YES, 9999, MAX_QUANTITY, 109_990_000_000_000, id="max-qty"
    ),
    # R_lot = 9999 + ceil(1000 * 9999 / 10_000 = 999.9) = 10_999; 10**10 lots
    pytest.param(1, 1, MIN, 999, 0, BUY_NO, 9991, 1, 10, id="min-price-9991"),
    # tp 9; min(9991, 9) = 9; 999 * 9 / 10_000 = 0.8991 -> 1
    pytest.param(10, 100, PQ, 1000, -1000, BUY_NO, 10, 300, 2_997_300, id="pq-lot-100"),
    # tp 9990 * 100 = 999_000; 10 * 9990 * 100 * 1000 / 10**8 = 99.9 -> 100; 3 lots of 999_100
]


@pytest.mark.parametrize("tick, lot, base, taker, maker, intent, limit, quantity, r", RESERVATIONS)
def test_buy_reserves_r_lot_per_lot(
    engine_cls, tick, lot, base, taker, maker, intent, limit, quantity, r
):
    """A buy reserves (q / lot) * R_lot on entry: one micro-dollar short is rejected and
    nothing moves; exactly enough is accepted; a cancel gives it all back."""
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        tick=tick,
        lot=lot,
        min_size=lot,
        taker_fee_bps=taker,
        maker_fee_bps=maker,
        fee_base=base,
        max_levels=2 * 9999,
        deposits={A1: r - 1},
    )
    assert_unchanged(
        eng,
        lambda: eng.submit(A1, M1, intent, limit, quantity),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, market=M1)],
    )
    assert eng.balance(A1) == Balance(r - 1, 0)
    assert eng.deposit(A1, 1) == 0
    assert eng.submit(A1, M1, intent, limit, quantity) == 1
    assert eng.balance(A1) == Balance(0, r)
    assert eng.position(A1, M1) == Position(0, 0, 0, 0)
    assert positions_listed(eng, M1) == [A1]  # a resting order holds a position
    assert eng.cancel(A1, 1) == 0
    assert eng.balance(A1) == Balance(r, 0)
    assert positions_listed(eng, M1) == []


@pytest.mark.parametrize("intent, field", [(SELL_YES, 0), (SELL_NO, 2)], ids=["yes", "no"])
def test_sell_reserves_free_shares(lg, intent, field):
    """A sell reserves its quantity of free shares: one share short is rejected."""
    assert lg.split(A1, M1, 99) == 0  # 990_000
    price = 6000 if intent == SELL_YES else 4000
    assert_unchanged(
        lg,
        lambda: lg.submit(A1, M1, intent, price, 100),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, market=M1)],
    )
    assert lg.split(A1, M1, 1) == 0
    assert lg.balance(A1) == Balance(9_000_000, 0)
    assert lg.submit(A1, M1, intent, price, 100) == 1
    expected = [100, 0, 100, 0]
    expected[field], expected[field + 1] = 0, 100
    assert lg.position(A1, M1) == Position(*expected)
    assert lg.balance(A1) == Balance(9_000_000, 0)  # no cash for a sell


def test_sell_of_shares_reserved_by_another_order(lg):
    """Shares reserved by a resting sell cannot be sold again or merged; once canceled they can."""
    assert lg.split(A1, M1, 100) == 0
    rest(lg, A1, M1, SELL_YES, 6000, 100)
    assert lg.position(A1, M1) == Position(0, 100, 100, 0)
    for call in (
        lambda: lg.submit(A1, M1, SELL_YES, 7000, 1),
        lambda: lg.submit(A1, M1, SELL_YES, 7000, 1, IOC),
        lambda: lg.submit(A1, M2, SELL_YES, 7000, 1),  # shares of another market
    ):
        before = lg.digest()
        assert call() == -INSUFFICIENT
        assert lg.digest() == before
    assert_unchanged(
        lg,
        lambda: lg.merge(A1, M1, 1),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, market=M1, command=MERGE_PAIRS)],
    )
    assert lg.submit(A1, M1, SELL_NO, 4000, 100) == 2  # the NO shares are free
    assert lg.position(A1, M1) == Position(0, 100, 0, 100)
    assert lg.cancel_all(A1) == 2
    assert lg.position(A1, M1) == Position(100, 0, 100, 0)
    assert lg.merge(A1, M1, 100) == 0
    assert lg.balance(A1) == Balance(TEN_DOLLARS, 0)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param(dict(tif=FOK, price=6100, quantity=500), id="before-fok"),
        pytest.param(dict(flags=POST_ONLY, price=6000), id="before-post-only"),
    ],
)
def test_balance_checked_before_post_only_and_fok(lg, fields):
    """Check 10 (balance) comes before 11 (post-only) and 12 (FOK)."""
    assert lg.split(A2, M1, 100) == 0
    rest(lg, A2, M1, SELL_YES, 6000, 100)
    assert lg.withdraw(A1, TEN_DOLLARS - 1000) == 0
    row = {**new_order(A1, M1, BUY_YES, 6000, 100), **fields}
    before = lg.digest()
    assert run(lg, [row]) == [rejected(INSUFFICIENT, account=A1, market=M1)]
    assert lg.digest() == before


# =========================================================================== the four match types


@dataclasses.dataclass(frozen=True)
class After:
    """Cash (free, reserved) and shares (yes_free, yes_reserved, no_free, no_reserved)."""

    maker_cash: tuple[int, int]
    maker_shares: tuple[int, int, int, int]
    taker_cash: tuple[int, int]
    taker_shares: tuple[int, int, int, int]
    collateral: int


# Both accounts start with $10 and split 300 pairs: 7_000_000 free, 300 YES, 300 NO each,
# collateral 6_000_000. A1 (maker) rests 100 at 6000; A2 (taker) takes it at limit 6000
# (no improvement). Then A1 rests 100 more at 6000 and A2 sends 150 at 6200 (a bid) or
# 5800 (an ask): 100 trade at 6000 with price improvement, 50 rest at the taker's limit.
# Y = 6000 * 100 = 600_000, N = 4000 * 100 = 400_000.
MATCH_CASES = [
    pytest.param(
        BUY_YES,
        SELL_YES,
        COMPLEMENTARY,
        True,
        ((7_000_000, 0), (200, 100, 300, 0)),
        # the bid pays Y and gets 100 YES, the ask gives 100 reserved YES and gets Y
        After((7_600_000, 0), (200, 0, 300, 0), (6_400_000, 0), (400, 0, 300, 0), 6_000_000),
        ((7_600_000, 0), (100, 100, 300, 0)),
        # the taker reserves 150 * 6200 = 930_000; 100 at 6000 release 620_000, pay 600_000
        # (20_000 back); 50 * 6200 = 310_000 stay reserved for the resting remainder
        After((8_200_000, 0), (100, 0, 300, 0), (5_490_000, 310_000), (500, 0, 300, 0), 6_000_000),
        id="taker-bid-complementary-yes",
    ),
    pytest.param(
        BUY_YES,
        BUY_NO,
        MINT,
        True,
        ((6_600_000, 400_000), (300, 0, 300, 0)),  # BUY_NO at 6000 reserves 4000 * 100
        After((6_600_000, 0), (300, 0, 400, 0), (6_400_000, 0), (400, 0, 300, 0), 7_000_000),
        ((6_200_000, 400_000), (300, 0, 400, 0)),
        After((6_200_000, 0), (300, 0, 500, 0), (5_490_000, 310_000), (500, 0, 300, 0), 8_000_000),
        id="taker-bid-mint",
    ),
    pytest.param(
        SELL_NO,
        SELL_YES,
        MERGE,
        True,
        ((7_000_000, 0), (200, 100, 300, 0)),
        # the bid gives 100 NO and gets N, the ask gives 100 YES and gets Y; 100 pairs burned
        After((7_600_000, 0), (200, 0, 300, 0), (7_400_000, 0), (300, 0, 200, 0), 5_000_000),
        ((7_600_000, 0), (100, 100, 300, 0)),
        # SELL_NO 150 at 6200 reserves 150 NO; sells 100 at 6000 for N = 400_000
        After((8_200_000, 0), (100, 0, 300, 0), (7_800_000, 0), (300, 0, 50, 50), 4_000_000),
        id="taker-bid-merge",
    ),
    pytest.param(
        SELL_NO,
        BUY_NO,
        COMPLEMENTARY,
        True,
        ((6_600_000, 400_000), (300, 0, 300, 0)),
        After((6_600_000, 0), (300, 0, 400, 0), (7_400_000, 0), (300, 0, 200, 0), 6_000_000),
        ((6_200_000, 400_000), (300, 0, 400, 0)),
        After((6_200_000, 0), (300, 0, 500, 0), (7_800_000, 0), (300, 0, 50, 50), 6_000_000),
        id="taker-bid-complementary-no",
    ),
    pytest.param(
        BUY_YES,
        SELL_YES,
        COMPLEMENTARY,
        False,
        ((6_400_000, 600_000), (300, 0, 300, 0)),
        After((6_400_000, 0), (400, 0, 300, 0), (7_600_000, 0), (200, 0, 300, 0), 6_000_000),
        ((5_800_000, 600_000), (400, 0, 300, 0)),
        # SELL_YES 150 at 5800 reserves 150 YES and sells 100 at 6000 for Y = 600_000
        After((5_800_000, 0), (500, 0, 300, 0), (8_200_000, 0), (50, 50, 300, 0), 6_000_000),
        id="taker-ask-complementary-yes",
    ),
    pytest.param(
        BUY_YES,
        BUY_NO,
        MINT,
        False,
        ((6_400_000, 600_000), (300, 0, 300, 0)),
        After((6_400_000, 0), (400, 0, 300, 0), (6_600_000, 0), (300, 0, 400, 0), 7_000_000),
        ((5_800_000, 600_000), (400, 0, 300, 0)),
        # BUY_NO 150 at 5800 reserves 150 * 4200 = 630_000; 100 at 6000 release 420_000
        # and pay 400_000 (20_000 back); 50 * 4200 = 210_000 stay reserved
        After((5_800_000, 0), (500, 0, 300, 0), (5_990_000, 210_000), (300, 0, 500, 0), 8_000_000),
        id="taker-ask-mint",
    ),
    pytest.param(
        SELL_NO,
        SELL_YES,
        MERGE,
        False,
        ((7_000_000, 0), (300, 0, 200, 100)),
        After((7_400_000, 0), (300, 0, 200, 0), (7_600_000, 0), (200, 0, 300, 0), 5_000_000),
        ((7_400_000, 0), (300, 0, 100, 100)),
        After((7_800_000, 0), (300, 0, 100, 0), (8_200_000, 0), (50, 50, 300, 0), 4_000_000),
        id="taker-ask-merge",
    ),
    pytest.param(
        SELL_NO,
        BUY_NO,
        COMPLEMENTARY,
        False,
        ((7_000_000, 0), (300, 0, 200, 100)),
        After((7_400_000, 0), (300, 0, 200, 0), (6_600_000, 0), (300, 0, 400, 0), 6_000_000),
        ((7_400_000, 0), (300, 0, 100, 100)),
        After((7_800_000, 0), (300, 0, 100, 0), (5_990_000, 210_000), (300, 0, 500, 0), 6_000_000),
        id="taker-ask-complementary-no",
    ),
]


@pytest.mark.parametrize(
    "bid, ask, match_type, taker_is_bid, rested, first, rested_again, second", MATCH_CASES
)
def test_settlement_of_each_match_type(
    lg, bid, ask, match_type, taker_is_bid, rested, first, rested_again, second
):
    """Each match type settles as the §8 table says, with and without price improvement."""
    maker_intent, taker_intent = (ask, bid) if taker_is_bid else (bid, ask)
    maker_side, taker_side = (ASK, BID) if taker_is_bid else (BID, ASK)
    better = 6200 if taker_is_bid else 5800
    assert lg.split(A1, M1, 300) == 0
    assert lg.split(A2, M1, 300) == 0
    start = ((7_000_000, 0), (300, 0, 300, 0))
    assert (lg.balance(A2), lg.position(A2, M1)) == start
    assert lg.totals() == Totals(30_000_000, 0, 6_000_000)

    def state(account):
        return tuple(lg.balance(account)), tuple(lg.position(account, M1))

    def check(after):
        assert state(A1) == (after.maker_cash, after.maker_shares)
        assert state(A2) == (after.taker_cash, after.taker_shares)
        assert lg.totals() == Totals(30_000_000, 0, after.collateral)
        assert lg.market(M1).collateral == after.collateral

    maker = rest(lg, A1, M1, maker_intent, 6000, 100)
    assert state(A1) == rested
    taker = Order(2, A2, M1, taker_intent, 6000)
    assert lg.submit(A2, M1, taker_intent, 6000, 100) == 2
    assert last(lg) == [
        accepted(taker, 100),
        trade(taker, maker, 100, 0, 0, match_type),
        level(M1, maker_side, 6000, 0, 0),
    ]
    check(first)

    maker = rest(lg, A1, M1, maker_intent, 6000, 100)
    assert state(A1) == rested_again
    taker = Order(4, A2, M1, taker_intent, better)
    assert lg.submit(A2, M1, taker_intent, better, 150) == 4
    assert last(lg) == [
        accepted(taker, 150),
        trade(taker, maker, 100, 50, 0, match_type),
        level(M1, maker_side, 6000, 0, 0),
        level(M1, taker_side, better, 50, 1),
    ]
    check(second)


# =========================================================================== fees

START_FREE = 800_000_000  # $1000 deposited, 20_000 pairs split (200_000_000)
START_SHARES = 20_000

FEE_CASES = [
    # (base, taker bps, maker bps, maker intent, taker intent, price, quantity,
    #  maker reserved on entry, taker fee, maker fee, maker free after, taker free after)
    pytest.param(
        NOTIONAL,
        1,
        0,
        SELL_YES,
        BUY_YES,
        1,
        1,
        0,
        1,
        0,
        800_000_001,
        799_999_998,
        id="notional-1bps-price-1-one-unit",
    ),  # ceil(1 * 1 / 10_000) = 1: the taker pays 1 + 1
    pytest.param(
        NOTIONAL,
        1,
        1,
        SELL_YES,
        BUY_YES,
        9999,
        1,
        0,
        1,
        1,
        800_009_998,
        799_990_000,
        id="notional-1bps-price-9999",
    ),  # ceil(9999 / 10_000) = 1 each side; the seller gets 9999 - 1
    pytest.param(
        NOTIONAL,
        999,
        -999,
        SELL_YES,
        BUY_YES,
        9999,
        1,
        0,
        999,
        -998,
        800_010_997,
        799_989_002,
        id="notional-999bps-rebate-toward-zero",
    ),  # 999 * 9999 / 10_000 = 998.9001: fee 999, rebate 998
    pytest.param(
        NOTIONAL,
        999,
        1,
        BUY_YES,
        BUY_NO,
        9991,
        7,
        76_930,
        7,
        7,
        799_930_056,
        799_999_930,
        id="notional-mint-price-9991",
    ),  # NO: tp 9 * 7 = 63, 999 * 63 / 10_000 = 6.2937 -> 7 (reserved 7 * (9 + 1) = 70, all
    # used); YES: 9991 * 7 = 69_937, 1 * 69_937 / 10_000 -> 7; maker R_lot 9991 + 999 = 10_990
    pytest.param(
        NOTIONAL,
        1,
        -1,
        SELL_NO,
        SELL_YES,
        9,
        1,
        0,
        1,
        0,
        800_009_991,
        800_000_008,
        id="notional-merge-price-9",
    ),  # YES seller: 9 - ceil(9 / 10_000); NO seller: 9991, rebate floor(0.9991) = 0
    pytest.param(
        MIN,
        1,
        -1,
        BUY_NO,
        SELL_NO,
        9,
        1000,
        9_992_000,
        1,
        0,
        790_009_000,
        809_990_999,
        id="min-complementary-no-price-9",
    ),  # B = min(9, 9991) * 1000 = 9000: fee ceil(0.9) = 1, rebate floor(0.9) = 0;
    # maker R_lot = 9991 + ceil(9 / 10_000) = 9992, pays 9_991_000: 1000 back
    pytest.param(
        MIN,
        1000,
        -1000,
        SELL_YES,
        BUY_YES,
        9991,
        3,
        0,
        3,
        -2,
        800_029_975,
        799_970_024,
        id="min-1000bps-price-9991",
    ),  # B = 9 * 3 = 27: 1000 * 27 / 10_000 = 2.7 -> fee 3, rebate 2
    pytest.param(
        PQ,
        999,
        -999,
        SELL_YES,
        BUY_YES,
        9,
        1,
        0,
        1,
        0,
        800_000_009,
        799_999_990,
        id="pq-999bps-price-9",
    ),  # B = 9 * 9991 = 89_919; 999 * 89_919 / 10**8 = 0.898: fee 1, rebate 0
    pytest.param(
        PQ,
        7,
        -3,
        BUY_YES,
        SELL_YES,
        5000,
        12_345,
        61_749_690,
        21_604,
        -9_258,
        738_284_258,
        861_703_396,
        id="pq-7bps-price-5000",
    ),  # B = 5000 * 5000 * 12_345 = 308_625_000_000: 7B / 10**8 = 21_603.75 -> 21_604,
    # 3B / 10**8 = 9_258.75 -> rebate 9_258; maker R_lot 5000 + ceil(1.75) = 5002
    pytest.param(
        PQ,
        1000,
        0,
        SELL_NO,
        BUY_NO,
        9999,
        1,
        0,
        1,
        0,
        800_000_001,
        799_999_998,
        id="pq-1000bps-price-9999",
    ),  # B = 9999 * 1 = 9999: 1000 * 9999 / 10**8 = 0.09999 -> 1; BUY_NO pays 1 + 1
    pytest.param(
        NOTIONAL,
        1,
        0,
        BUY_YES,
        SELL_YES,
        1,
        1,
        2,
        1,
        0,
        799_999_999,
        800_000_000,
        id="seller-fee-equals-proceeds",
    ),  # the YES seller gets 1 and pays ceil(1 / 10_000) = 1
    pytest.param(
        NOTIONAL,
        10,
        -10,
        BUY_YES,
        BUY_NO,
        9999,
        100,
        1_000_900,
        1,
        -999,
        799_001_099,
        799_999_899,
        id="rebates-exceed-fees",
    ),  # NO: 1 * 100 = 100, ceil(0.1) = 1; YES: 999_900 * 10 / 10_000 = 999.9, rebate 999
    # maker R_lot = 9999 + ceil(9.999) = 10_009; the engine's fees go to 1 - 999 = -998
]


@pytest.mark.parametrize(
    "base, taker, maker, maker_intent, taker_intent, price, quantity, reserved, fee, "
    "maker_fee, maker_free, taker_free",
    FEE_CASES,
)
def test_fees(
    engine_cls,
    base,
    taker,
    maker,
    maker_intent,
    taker_intent,
    price,
    quantity,
    reserved,
    fee,
    maker_fee,
    maker_free,
    taker_free,
):
    """One trade per fee base, at prices near 0 and 1, with rates whose division is not exact:
    fees round up, rebates toward zero; TRADE carries both; totals().fees is their sum."""
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        tick=1,
        max_levels=2 * 9999,
        taker_fee_bps=taker,
        maker_fee_bps=maker,
        fee_base=base,
        deposits={A1: 1_000_000_000, A2: 1_000_000_000},
    )
    assert eng.market(M1) == market_info(
        M1, OPEN, 1, taker_fee_bps=taker, maker_fee_bps=maker, fee_base=base
    )
    assert eng.split(A1, M1, START_SHARES) == 0
    assert eng.split(A2, M1, START_SHARES) == 0
    maker_order = rest(eng, A1, M1, maker_intent, price, quantity)
    assert eng.balance(A1) == Balance(START_FREE - reserved, reserved)

    taker_order = Order(2, A2, M1, taker_intent, price)
    assert eng.submit(A2, M1, taker_intent, price, quantity) == 2
    bid, ask = (
        (taker_intent, maker_intent) if taker_order.side == BID else (maker_intent, taker_intent)
    )
    match_type = {(BUY_YES, BUY_NO): MINT, (SELL_NO, SELL_YES): MERGE}.get(
        (bid, ask), COMPLEMENTARY
    )
    assert last(eng) == [
        accepted(taker_order, quantity),
        trade(taker_order, maker_order, quantity, 0, 0, match_type, fee=fee, maker_fee=maker_fee),
        level(M1, maker_order.side, price, 0, 0),
    ]
    assert eng.balance(A1) == Balance(maker_free, 0)
    assert eng.balance(A2) == Balance(taker_free, 0)
    assert eng.totals().fees == fee + maker_fee

    def shares_after(intent):
        yes = no = START_SHARES
        yes += {BUY_YES: quantity, SELL_YES: -quantity}.get(intent, 0)
        no += {BUY_NO: quantity, SELL_NO: -quantity}.get(intent, 0)
        return Position(yes, 0, no, 0)

    assert eng.position(A1, M1) == shares_after(maker_intent)
    assert eng.position(A2, M1) == shares_after(taker_intent)


def test_reservation_after_a_partial_fill_with_fees(engine_cls):
    """A resting buy keeps exactly (remaining / lot) * R_lot; each fill releases its lots' share.

    Lot 3, NOTIONAL, taker 7 bps, maker 2 bps. BUY_YES 30 at 6100: R_lot = 18_300 + 13 =
    18_313, R = 183_130. A sell of 9 (3 lots) at 6100: the maker releases 54_939, pays
    54_900 + ceil(2 * 54_900 / 10_000 = 10.98) = 54_911: 28 back, 7 * 18_313 = 128_191 left.
    The taker pays ceil(7 * 54_900 / 10_000 = 38.43) = 39 out of its proceeds.
    """
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        lot=3,
        min_size=3,
        taker_fee_bps=7,
        maker_fee_bps=2,
        deposits={A1: 183_130, A2: TEN_DOLLARS},
    )
    o1 = rest(eng, A1, M1, BUY_YES, 6100, 30)
    assert eng.balance(A1) == Balance(0, 183_130)
    assert eng.split(A2, M1, 30) == 0
    taker = Order(2, A2, M1, SELL_YES, 6100)
    assert eng.submit(A2, M1, SELL_YES, 6100, 9) == 2
    assert last(eng) == [
        accepted(taker, 9),
        trade(taker, o1, 9, 0, 21, COMPLEMENTARY, fee=39, maker_fee=11),
        level(M1, BID, 6100, 21, 1),
    ]
    assert eng.balance(A1) == Balance(28, 128_191)
    assert eng.position(A1, M1) == Position(9, 0, 0, 0)
    assert eng.balance(A2) == Balance(9_700_000 + 54_861, 0)
    assert eng.position(A2, M1) == Position(21, 0, 30, 0)
    assert eng.totals() == Totals(TEN_DOLLARS + 183_130, 50, 300_000)
    # a replace to 4 lots must reserve one more lot: 18_313 > 28 free
    assert eng.replace(A1, 1, quantity=24) == -INSUFFICIENT
    assert eng.replace(A1, 1, quantity=12) == 0  # 4 lots: 73_252, 54_939 released
    assert eng.balance(A1) == Balance(54_967, 73_252)


def test_taker_buy_with_improvement_and_fees(engine_cls):
    """BUY_YES 30 at 6200 (lot 3) takes 12 at 6000: R_lot(6200) = 18_600 + ceil(13.02) = 18_614,
    R = 186_140; 4 lots release 74_456, the fill costs 72_000 + ceil(7 * 72_000 / 10_000 = 50.4)
    = 72_051: 2_405 back; 6 lots (111_684) stay for the 18 that rest. The maker gets
    72_000 - ceil(2 * 72_000 / 10_000 = 14.4) = 71_985."""
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        lot=3,
        min_size=3,
        taker_fee_bps=7,
        maker_fee_bps=2,
        deposits={A1: 186_140, A2: TEN_DOLLARS},
    )
    assert eng.split(A2, M1, 30) == 0
    maker = rest(eng, A2, M1, SELL_YES, 6000, 12)
    taker = Order(2, A1, M1, BUY_YES, 6200)
    assert eng.submit(A1, M1, BUY_YES, 6200, 30) == 2
    assert last(eng) == [
        accepted(taker, 30),
        trade(taker, maker, 12, 18, 0, COMPLEMENTARY, fee=51, maker_fee=15),
        level(M1, ASK, 6000, 0, 0),
        level(M1, BID, 6200, 18, 1),
    ]
    assert eng.balance(A1) == Balance(2_405, 111_684)
    assert eng.position(A1, M1) == Position(12, 0, 0, 0)
    assert eng.balance(A2) == Balance(9_771_985, 0)
    assert eng.position(A2, M1) == Position(18, 0, 30, 0)
    assert eng.totals() == Totals(TEN_DOLLARS + 186_140, 66, 300_000)


def test_taker_buy_no_with_improvement_and_fees(engine_cls):
    """BUY_NO 80 at 5800 (an ask) hits a BUY_YES 50 at 6000 (MINT at 6000), taker 7, maker 2.

    Taker: R_lot = 4200 + ceil(2.94) = 4203, R = 336_240; 50 cost 200_000 + ceil(140) = 140:
    released 210_150, 10_010 back; 30 rest with 126_090. Maker: R_lot = 6000 + ceil(4.2) =
    6005, R = 300_250; pays 300_000 + ceil(2 * 300_000 / 10_000) = 60: 190 back.
    """
    eng = ledger_engine(engine_cls, taker_fee_bps=7, maker_fee_bps=2)
    maker = rest(eng, A1, M1, BUY_YES, 6000, 50)
    assert eng.balance(A1) == Balance(9_699_750, 300_250)
    taker = Order(2, A2, M1, BUY_NO, 5800)
    assert eng.submit(A2, M1, BUY_NO, 5800, 80) == 2
    assert last(eng) == [
        accepted(taker, 80),
        trade(taker, maker, 50, 30, 0, MINT, fee=140, maker_fee=60),
        level(M1, BID, 6000, 0, 0),
        level(M1, ASK, 5800, 30, 1),
    ]
    assert eng.balance(A2) == Balance(9_673_770, 126_090)
    assert eng.position(A2, M1) == Position(0, 0, 50, 0)
    assert eng.balance(A1) == Balance(9_699_940, 0)
    assert eng.position(A1, M1) == Position(50, 0, 0, 0)
    assert eng.totals() == Totals(30_000_000, 200, 500_000)


def test_fees_accumulate_over_trades(engine_cls):
    """totals().fees is the running sum of every taker fee and maker fee (rebates negative).

    NOTIONAL, taker 10, maker -5. Three trades of 33 at 3000 (YES notional 99_000): taker fee
    ceil(99) = 99, rebate floor(49.5) = 49, so +50 each: 150 in all.
    """
    eng = ledger_engine(engine_cls, taker_fee_bps=10, maker_fee_bps=-5)
    assert eng.split(A1, M1, 99) == 0
    for i in range(3):
        maker = rest(eng, A1, M1, SELL_YES, 3000, 33)
        taker = Order(maker.order_id + 1, A2, M1, BUY_YES, 3000, IOC)
        assert eng.submit(A2, M1, BUY_YES, 3000, 33, IOC) == maker.order_id + 1
        assert last(eng)[1] == trade(taker, maker, 33, 0, 0, COMPLEMENTARY, fee=99, maker_fee=-49)
        assert eng.totals().fees == 50 * (i + 1)
    # A1: 10_000_000 - 990_000 + 3 * (99_000 + 49); A2: 10_000_000 - 3 * (99_000 + 99)
    assert eng.balance(A1) == Balance(9_307_147, 0)
    assert eng.balance(A2) == Balance(9_702_703, 0)


# =========================================================================== buys by cash


def test_by_cash_reserves_budget_and_fee_reserve(engine_cls):
    """A buy by cash needs budget + ceil(taker * budget / 10_000) free: 1_000_001 at 30 bps
    needs 1_000_001 + ceil(3000.003) = 1_003_002; one less is rejected.

    It then buys 100 at 4000 (400_000, fee 30 * 400_000 / 10_000 = 1200) and releases the
    rest: the budget left (600_001) is canceled UNFILLED.
    """
    eng = ledger_engine(engine_cls, taker_fee_bps=30, deposits={A1: TEN_DOLLARS, A2: 1_003_001})
    assert eng.split(A1, M1, 100) == 0
    maker = rest(eng, A1, M1, SELL_YES, 4000, 100)
    assert_unchanged(
        eng,
        lambda: eng.submit(A2, M1, BUY_YES, 5000, 1_000_001, IOC, market_order=True, by_cash=True),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A2, market=M1)],
    )
    assert eng.deposit(A2, 1) == 0
    taker = cash_order(2, A2, M1, BUY_YES, 5000)
    result = eng.submit(A2, M1, BUY_YES, 5000, 1_000_001, IOC, market_order=True, by_cash=True)
    assert result == 2
    assert last(eng) == [
        accepted(taker, 1_000_001),
        trade(taker, maker, 100, 600_001, 0, COMPLEMENTARY, fee=1200),
        level(M1, ASK, 4000, 0, 0),
        canceled(taker, 600_001, UNFILLED),
    ]
    assert eng.balance(A2) == Balance(601_802, 0)  # 1_003_002 - 400_000 - 1200
    assert eng.position(A2, M1) == Position(100, 0, 0, 0)
    assert eng.balance(A1) == Balance(9_400_000, 0)
    assert eng.totals().fees == 1200


@pytest.mark.parametrize("tif", [IOC, FOK], ids=["ioc", "fok"])
def test_by_cash_fill_limited_by_the_fee_reserve(engine_cls, tif):
    """Tick 1, taker 1000 bps. Budget 25: fee reserve ceil(1000 * 25 / 10_000 = 2.5) = 3.

    At price 1 a lot costs 1 and k lots pay ceil(k / 10) in fee. The first ask (1 unit)
    takes 1 with fee 1: 24 and 2 left. The second takes the most k with k <= 24 and
    ceil(k / 10) <= 2: 20, fee 2: 4 and 0 left. One more lot would need a fee of 1 > 0:
    the sweep stops, and a FOK is complete (the same holds at its limit price).
    """
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        tick=1,
        max_levels=2 * 9999,
        taker_fee_bps=1000,
        deposits={A1: TEN_DOLLARS, A2: 27, A3: TEN_DOLLARS},
    )
    assert eng.split(A1, M1, 1) == 0
    assert eng.split(A3, M1, 100) == 0
    o1 = rest(eng, A1, M1, SELL_YES, 1, 1)
    o2 = rest(eng, A3, M1, SELL_YES, 1, 100)
    assert_unchanged(  # 25 + 3 = 28 needed, 27 free
        eng,
        lambda: eng.submit(A2, M1, BUY_YES, 1, 25, tif, market_order=True, by_cash=True),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A2, market=M1)],
    )
    assert eng.deposit(A2, 1) == 0
    taker = cash_order(3, A2, M1, BUY_YES, 1, tif)
    assert eng.submit(A2, M1, BUY_YES, 1, 25, tif, market_order=True, by_cash=True) == 3
    assert last(eng) == [
        accepted(taker, 25),
        trade(taker, o1, 1, 24, 0, COMPLEMENTARY, fee=1),
        trade(taker, o2, 20, 4, 80, COMPLEMENTARY, fee=2),
        level(M1, ASK, 1, 80, 1),
        canceled(taker, 4, UNFILLED),
    ]
    assert eng.balance(A2) == Balance(4, 0)  # 28 - 21 - 3
    assert eng.position(A2, M1) == Position(21, 0, 0, 0)
    assert eng.balance(A1) == Balance(9_990_001, 0)
    assert eng.balance(A3) == Balance(9_000_020, 0)
    assert eng.totals().fees == 3


def test_fok_by_cash_not_complete_while_the_fee_reserve_allows_a_lot(engine_cls):
    """Budget 25 at 1000 bps (fee reserve 3) against a single unit at 1: after it, 24 and 2
    are left, and one more lot at the limit (cost 1, fee 1) is still affordable: the FOK is
    not filled and nothing moves."""
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        tick=1,
        max_levels=2 * 9999,
        taker_fee_bps=1000,
        deposits={A1: TEN_DOLLARS, A2: 28},
    )
    assert eng.split(A1, M1, 1) == 0
    rest(eng, A1, M1, SELL_YES, 1, 1)
    assert_unchanged(
        eng,
        lambda: eng.submit(A2, M1, BUY_YES, 1, 25, FOK, market_order=True, by_cash=True),
        -Reject.FOK_NOT_FILLED,
        [rejected(Reject.FOK_NOT_FILLED, account=A2, market=M1)],
    )
    assert eng.balance(A2) == Balance(28, 0)


def test_by_cash_buy_no_spends_budget_and_fee_reserve_exactly(engine_cls):
    """MIN base, taker 50. BUY_NO by cash, budget 150_000: fee reserve 750. Against a BUY_YES
    at 7000 (tp 3000 for NO): 50 lots cost 150_000, fee ceil(50 * 3000 * 50 / 10_000) = 750.
    Both are spent to the last unit: no CANCELED. The maker (R_lot 7000 + ceil(15) = 7015)
    pays 350_000 for 50: 750 back, 50 * 7015 = 350_750 stay reserved."""
    eng = ledger_engine(
        engine_cls, taker_fee_bps=50, fee_base=MIN, deposits={A1: TEN_DOLLARS, A2: 150_750}
    )
    maker = rest(eng, A1, M1, BUY_YES, 7000, 100)
    assert eng.balance(A1) == Balance(9_298_500, 701_500)
    taker = cash_order(2, A2, M1, BUY_NO, 7000)
    assert eng.submit(A2, M1, BUY_NO, 7000, 150_000, IOC, market_order=True, by_cash=True) == 2
    assert last(eng) == [
        accepted(taker, 150_000),
        trade(taker, maker, 50, 0, 50, MINT, fee=750),
        level(M1, BID, 7000, 50, 1),
    ]
    assert eng.balance(A2) == Balance(0, 0)
    assert eng.position(A2, M1) == Position(0, 0, 50, 0)
    assert eng.balance(A1) == Balance(9_299_250, 350_750)
    assert eng.position(A1, M1) == Position(50, 0, 0, 0)
    assert eng.totals() == Totals(TEN_DOLLARS + 150_750, 750, 500_000)


def test_by_cash_with_nothing_to_buy_releases_everything(lg):
    """A buy by cash that trades nothing gives its budget and fee reserve back."""
    taker = cash_order(1, A1, M1, BUY_YES, 5000)
    assert lg.submit(A1, M1, BUY_YES, 5000, TEN_DOLLARS, IOC, market_order=True, by_cash=True) == 1
    assert last(lg) == [accepted(taker, TEN_DOLLARS), canceled(taker, TEN_DOLLARS, UNFILLED)]
    assert lg.balance(A1) == Balance(TEN_DOLLARS, 0)
    assert positions_listed(lg, M1) == []


# =========================================================================== replace


def test_replace_increases_and_decreases_the_reservation(engine_cls):
    """NOTIONAL, taker 7 bps: R_lot(5000) = 5000 + ceil(3.5) = 5004, R_lot(6000) = 6005.

    BUY_YES 100 at 5000 reserves 500_400. Moving it to 6000 needs 600_500: 100_100 more,
    which 100_099 free cannot pay (rejected: order and balances untouched); with one more
    unit it works. Smaller quantities and prices release the difference.
    """
    eng = ledger_engine(engine_cls, taker_fee_bps=7, deposits={A1: 600_499})
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    assert eng.balance(A1) == Balance(100_099, 500_400)
    before = eng.digest()
    assert eng.replace(A1, 1, price=6000) == -INSUFFICIENT
    assert last(eng) == [rejected(INSUFFICIENT, account=A1, order_id=1, command=REPLACE)]
    assert eng.digest() == before
    assert eng.order(1).price == 5000
    assert eng.balance(A1) == Balance(100_099, 500_400)

    assert eng.deposit(A1, 1) == 0
    assert eng.replace(A1, 1, price=6000) == 0
    assert last(eng) == [
        replaced(o1.at(6000), 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        level(M1, BID, 6000, 100, 1, command=REPLACE),
    ]
    assert eng.balance(A1) == Balance(0, 600_500)

    assert eng.replace(A1, 1, quantity=40) == 0  # 40 * 6005 = 240_200
    assert eng.balance(A1) == Balance(360_300, 240_200)
    assert eng.replace(A1, 1, price=5000) == 0  # 40 * 5004 = 200_160
    assert eng.balance(A1) == Balance(400_340, 200_160)
    assert eng.replace(A1, 1, quantity=120) == 0  # 120 * 5004 = 600_480
    assert eng.balance(A1) == Balance(20, 600_480)
    assert eng.replace(A1, 1, quantity=121) == -INSUFFICIENT  # 5004 more > 20
    assert eng.balance(A1) == Balance(20, 600_480)
    assert eng.order(1).leaves_qty == 120


def test_replace_buy_no_to_a_lower_price_costs_more(engine_cls):
    """BUY_NO pays 10_000 - p: at 6000 R_lot = 4000 + ceil(2.8) = 4003, at 5000 5000 + 4."""
    eng = ledger_engine(engine_cls, taker_fee_bps=7)
    rest(eng, A1, M1, BUY_NO, 6000, 10)
    assert eng.balance(A1) == Balance(9_959_970, 40_030)
    assert eng.replace(A1, 1, price=5000) == 0
    assert eng.balance(A1) == Balance(9_949_960, 50_040)
    assert eng.replace(A1, 1, price=9000, quantity=5) == 0  # 5 * (1000 + 1)
    assert eng.balance(A1) == Balance(9_994_995, 5_005)


def test_replace_of_a_sell_reserves_shares(lg):
    """A sell's replace needs the increase in free shares; the price does not matter."""
    assert lg.split(A1, M1, 100) == 0
    rest(lg, A1, M1, SELL_YES, 7000, 60)
    assert lg.position(A1, M1) == Position(40, 60, 100, 0)
    before = lg.digest()
    assert lg.replace(A1, 1, quantity=101) == -INSUFFICIENT
    assert lg.digest() == before
    assert lg.replace(A1, 1, quantity=100) == 0
    assert lg.position(A1, M1) == Position(0, 100, 100, 0)
    assert lg.replace(A1, 1, price=6500, quantity=30) == 0
    assert lg.position(A1, M1) == Position(70, 30, 100, 0)
    assert lg.balance(A1) == Balance(9_000_000, 0)


def test_replace_balance_checked_before_post_only(lg):
    """REPLACE check 5 (balance) comes before 6 (post-only)."""
    assert lg.split(A2, M1, 10) == 0
    rest(lg, A2, M1, SELL_YES, 6000, 10)
    rest(lg, A1, M1, BUY_YES, 5000, 100, post_only=True)
    assert lg.withdraw(A1, 9_500_000) == 0
    before = lg.digest()
    assert lg.replace(A1, 2, price=6000) == -INSUFFICIENT
    assert lg.replace(A1, 2, price=5500) == -INSUFFICIENT
    assert lg.digest() == before
    assert lg.deposit(A1, 100_000) == 0
    assert lg.replace(A1, 2, price=6000) == -Reject.POST_ONLY_WOULD_CROSS


def test_crossing_replace_trades_as_taker_with_fees(engine_cls):
    """A replace that crosses trades as the taker (taker rate) with price improvement.

    BUY_YES 100 at 5000 (500_400) moved to 6000 (600_500) takes 50 at 5500: fee
    ceil(7 * 275_000 / 10_000 = 192.5) = 193; 50 * 6005 = 300_250 released, 275_193 paid:
    25_057 back, 300_250 stay for the 50 that rest.
    """
    eng = ledger_engine(engine_cls, taker_fee_bps=7)
    assert eng.split(A2, M1, 50) == 0
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    maker = rest(eng, A2, M1, SELL_YES, 5500, 50)
    assert eng.replace(A1, 1, price=6000) == 0
    moved = o1.at(6000)
    assert last(eng) == [
        replaced(moved, 100),
        level(M1, BID, 5000, 0, 0, command=REPLACE),
        trade(moved, maker, 50, 50, 0, COMPLEMENTARY, fee=193, command=REPLACE),
        level(M1, ASK, 5500, 0, 0, command=REPLACE),
        level(M1, BID, 6000, 50, 1, command=REPLACE),
    ]
    assert eng.balance(A1) == Balance(TEN_DOLLARS - 275_193 - 300_250, 300_250)
    assert eng.balance(A2) == Balance(9_500_000 + 275_000, 0)


# =========================================================================== releases


def release_book(eng, tif=GTC, expiry=0):
    """Tick 10, taker 7 bps. A1 ($2 deposited, 100 pairs split) rests four orders:
    BUY_YES 100 at 5010 (R_lot 5010 + ceil(3.507) = 5014: 501_400), SELL_YES 100 at 6000,
    SELL_NO 50 at 4000, BUY_NO 10 at 7000 (R_lot 3000 + ceil(2.1) = 3003: 30_030)."""
    assert eng.split(A1, M1, 100) == 0
    kwargs = dict(tif=tif, expiry=expiry)
    orders = (
        rest(eng, A1, M1, BUY_YES, 5010, 100, client_order_id=11, **kwargs),
        rest(eng, A1, M1, SELL_YES, 6000, 100, client_order_id=12, **kwargs),
        rest(eng, A1, M1, SELL_NO, 4000, 50, client_order_id=13, **kwargs),
        rest(eng, A1, M1, BUY_NO, 7000, 10, client_order_id=14, **kwargs),
    )
    assert eng.balance(A1) == Balance(468_570, 531_430)
    assert eng.position(A1, M1) == Position(0, 100, 50, 50)
    return orders


@pytest.mark.parametrize(
    "how",
    [
        "cancel",
        "cancel-client",
        "cancel-all-in-market",
        "cancel-all",
        "expiry",
        "close",
        "halt-then-close",
    ],
)
def test_ending_orders_releases_exactly_what_they_reserved(engine_cls, how):
    """Cancel, cancel all, expiry and close give back every micro-dollar and share reserved."""
    eng = ledger_engine(
        engine_cls, markets=(M1,), tick=10, taker_fee_bps=7, deposits={A1: 2_000_000}
    )
    tif, expiry = (GTD, 50) if how == "expiry" else (GTC, 0)
    orders = release_book(eng, tif, expiry)
    if how == "cancel":
        for order in orders:
            assert eng.cancel(A1, order.order_id) == 0
    elif how == "cancel-client":
        for client_order_id in (11, 12, 13, 14):
            assert eng.cancel_client(A1, client_order_id) == 0
    elif how == "cancel-all-in-market":
        assert eng.cancel_all(A1, M1) == 4
    elif how == "cancel-all":
        assert eng.cancel_all(A1, ALL_MARKETS) == 4
    elif how == "expiry":
        assert eng.advance_time(50) == 4
    else:
        if how == "halt-then-close":
            assert eng.set_market_state(M1, SUSPENDED) == 0
            assert eng.balance(A1) == Balance(468_570, 531_430)  # a halt releases nothing
        assert eng.set_market_state(M1, CLOSED) == 0
    assert eng.order_count == 0
    assert eng.balance(A1) == Balance(1_000_000, 0)
    assert eng.position(A1, M1) == Position(100, 0, 100, 0)
    assert eng.totals() == Totals(2_000_000, 0, 1_000_000)


def test_tick_change_releases_the_canceled_orders(engine_cls):
    """A coarser tick cancels the buy at 5010: its 501_400 comes back, the rest stays."""
    eng = ledger_engine(
        engine_cls, markets=(M1,), tick=10, taker_fee_bps=7, deposits={A1: 2_000_000}
    )
    o1, *_ = release_book(eng)
    assert eng.set_tick(M1, 100) == 0
    assert last(eng) == [
        market_event(M1, OPEN, tick=100, taker_fee_bps=7, command=SET_TICK),
        canceled(o1, 100, TICK_CHANGE, command=SET_TICK),
        level(M1, BID, 5010, 0, 0, command=SET_TICK),
    ]
    assert eng.balance(A1) == Balance(969_970, 30_030)
    assert eng.position(A1, M1) == Position(0, 100, 50, 50)


def test_expiry_releases_a_partly_filled_buy(engine_cls):
    """A GTD buy filled in part expires with its remainder's reservation, no more, no less."""
    eng = ledger_engine(engine_cls, taker_fee_bps=7)
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=10)  # 100 * 5004
    assert eng.split(A2, M1, 30) == 0
    assert eng.submit(A2, M1, SELL_YES, 5000, 30) == 2  # maker fee 0: pays 150_000
    assert eng.balance(A1) == Balance(TEN_DOLLARS - 500_400 + 150_120 - 150_000, 350_280)
    assert eng.advance_time(10) == 1
    assert last(eng) == [
        canceled(o1, 70, EXPIRED, command=ADVANCE),
        level(M1, BID, 5000, 0, 0, command=ADVANCE),
    ]
    assert eng.balance(A1) == Balance(9_850_000, 0)
    assert eng.position(A1, M1) == Position(30, 0, 0, 0)


def test_expiry_before_a_deposit_releases_first(lg):
    """Expiry runs before the command: BALANCE shows the released reservation in free cash."""
    order = rest(lg, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=20)
    assert lg.deposit(A1, 5, time=20) == 0
    assert last(lg) == [
        canceled(order, 100, EXPIRED, command=DEPOSIT),
        level(M1, BID, 5000, 0, 0, command=DEPOSIT),
        balance_event(A1, 5, TEN_DOLLARS + 5, 0),
    ]


def test_ioc_remainder_releases_its_reservation(engine_cls):
    """IOC BUY_YES 100 at 6100 (R_lot 6105: 610_500) fills 30 at 6000 (180_000 + fee
    ceil(7 * 180_000 / 10_000) = 126) and gives back everything else."""
    eng = ledger_engine(engine_cls, taker_fee_bps=7)
    assert eng.split(A1, M1, 30) == 0
    maker = rest(eng, A1, M1, SELL_YES, 6000, 30)
    taker = Order(2, A2, M1, BUY_YES, 6100, IOC)
    assert eng.submit(A2, M1, BUY_YES, 6100, 100, IOC) == 2
    assert last(eng) == [
        accepted(taker, 100),
        trade(taker, maker, 30, 70, 0, COMPLEMENTARY, fee=126),
        level(M1, ASK, 6000, 0, 0),
        canceled(taker, 70, UNFILLED),
    ]
    assert eng.balance(A2) == Balance(9_819_874, 0)
    assert eng.balance(A1) == Balance(9_700_000 + 180_000, 0)
    before = eng.digest()
    assert eng.submit(A2, M1, BUY_YES, 6100, 100, FOK) == -Reject.FOK_NOT_FILLED
    assert eng.digest() == before


@pytest.mark.parametrize("stp", list(Stp), ids=lambda s: s.name)
def test_self_trade_cancels_release(engine_cls, stp):
    """A1 rests SELL_YES 100 at 6000 and sends BUY_YES 60 at 6000 (R_lot 6005: 360_300).
    With the own order alone in reach each venue mode acts as the mode it extends."""
    eng = ledger_engine(engine_cls, taker_fee_bps=7, deposits={A1: 2_000_000})
    assert eng.split(A1, M1, 100) == 0
    own = rest(eng, A1, M1, SELL_YES, 6000, 100)
    taker = Order(2, A1, M1, BUY_YES, 6000)
    assert eng.submit(A1, M1, BUY_YES, 6000, 60, stp=stp) == 2
    if stp in (Stp.REJECT_AGGRESSOR, Stp.CANCEL_NEWEST):
        assert last(eng) == [accepted(taker, 60), canceled(taker, 60, SELF_TRADE)]
        expected = (Balance(1_000_000, 0), Position(0, 100, 100, 0))
    elif stp in (Stp.CANCEL_RESTING, Stp.CANCEL_OLDEST):
        assert last(eng) == [
            accepted(taker, 60),
            canceled(own, 100, SELF_TRADE),
            level(M1, ASK, 6000, 0, 0),
            level(M1, BID, 6000, 60, 1),
        ]
        expected = (Balance(639_700, 360_300), Position(100, 0, 100, 0))
    else:
        assert last(eng) == [
            accepted(taker, 60),
            canceled(own, 100, SELF_TRADE),
            level(M1, ASK, 6000, 0, 0),
            canceled(taker, 60, SELF_TRADE),
        ]
        expected = (Balance(1_000_000, 0), Position(100, 0, 100, 0))
    assert (eng.balance(A1), eng.position(A1, M1)) == expected


# =========================================================================== split and merge


def test_split_and_merge(lg):
    """SPLIT turns 10_000 per pair of free cash into YES + NO; MERGE does the reverse."""
    assert lg.split(A1, M1, 250) == 0
    assert last(lg) == [position_event(A1, M1, 250, 250, 250)]
    assert lg.balance(A1) == Balance(7_500_000, 0)
    assert lg.position(A1, M1) == Position(250, 0, 250, 0)
    assert lg.totals() == Totals(30_000_000, 0, 2_500_000)
    assert lg.market(M1) == market_info(M1, OPEN, 100, collateral=2_500_000)

    assert lg.merge(A1, M1, 100) == 0
    assert last(lg) == [position_event(A1, M1, 100, 150, 150, command=MERGE_PAIRS)]
    assert lg.balance(A1) == Balance(8_500_000, 0)
    assert lg.totals() == Totals(30_000_000, 0, 1_500_000)
    assert positions_listed(lg, M1) == [A1]

    assert lg.merge(A1, M1, 150) == 0
    assert last(lg) == [position_event(A1, M1, 150, 0, 0, command=MERGE_PAIRS)]
    assert lg.balance(A1) == Balance(TEN_DOLLARS, 0)
    assert lg.position(A1, M1) == Position(0, 0, 0, 0)
    assert positions_listed(lg, M1) == []  # the position is freed
    assert lg.totals() == Totals(30_000_000, 0, 0)


def test_split_and_merge_in_a_batch(lg):
    """Through process(): seq is copied; a merge leaves the other shares free."""
    rows = [
        dict(type=SPLIT, account=A2, market=M2, quantity=10, seq=5),
        dict(type=MERGE_PAIRS, account=A2, market=M2, quantity=4, seq=6, time=3),
    ]
    assert run(lg, rows) == [
        position_event(A2, M2, 10, 10, 10, seq=5),
        position_event(A2, M2, 4, 6, 6, command=MERGE_PAIRS, seq=6),
    ]
    assert lg.now == 3


def test_split_uses_exactly_the_free_cash(lg):
    """1000 pairs cost exactly $10: 1001 is one pair too many."""
    rest(lg, A1, M2, BUY_YES, 100, 1)  # 100 reserved: free 9_999_900
    assert_unchanged(
        lg,
        lambda: lg.split(A1, M1, 1000),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, market=M1, command=SPLIT)],
    )
    assert lg.cancel(A1, 1) == 0
    assert lg.split(A1, M1, 1001) == -INSUFFICIENT
    assert lg.split(A1, M1, 1000) == 0
    assert lg.balance(A1) == Balance(0, 0)


def pair_checks_engine(engine_cls):
    """M1 OPEN (lot 1), M2 OPEN with lot 10 and min size 30, market 3 CLOSED, market 0
    RESOLVED; A1 has split 100 pairs in M1 and in M2."""
    eng = ledger_engine(engine_cls, markets=(M1,))
    assert eng.create_market(M2, 100, 30, 10) == 0
    assert eng.set_market_state(M2, OPEN) == 0
    assert eng.create_market(3, 100) == 0
    assert eng.set_market_state(3, CLOSED) == 0
    assert eng.create_market(0, 100) == 0
    assert eng.resolve(0, YES) == 0
    assert eng.split(A1, M1, 100) == 0
    assert eng.split(A1, M2, 100) == 0
    eng.drain_events()
    return eng


PAIR_CHECKS = [
    ("unknown-account", dict(account=5), Reject.UNKNOWN_ACCOUNT),
    ("account-before-market", dict(account=5, market=7), Reject.UNKNOWN_ACCOUNT),
    ("unknown-market", dict(market=7), Reject.UNKNOWN_MARKET),
    ("market-max-markets", dict(market=4), Reject.UNKNOWN_MARKET),
    ("market-all-markets", dict(market=ALL_MARKETS), Reject.UNKNOWN_MARKET),
    ("resolved", dict(market=0), Reject.MARKET_NOT_OPEN),
    ("state-before-quantity", dict(market=0, quantity=0), Reject.MARKET_NOT_OPEN),
    ("quantity-0", dict(quantity=0), Reject.INVALID_QUANTITY),
    ("quantity-negative", dict(quantity=-10), Reject.INVALID_QUANTITY),
    ("quantity-int64-min", dict(quantity=INT64_MIN), Reject.INVALID_QUANTITY),
    ("quantity-max-plus-1", dict(quantity=MAX_QUANTITY + 1), Reject.INVALID_QUANTITY),
    ("quantity-int64-max", dict(quantity=INT64_MAX), Reject.INVALID_QUANTITY),
    ("quantity-not-lot-multiple", dict(market=M2, quantity=15), Reject.INVALID_QUANTITY),
]


@pytest.mark.parametrize("command", [SPLIT, MERGE_PAIRS], ids=["split", "merge"])
@pytest.mark.parametrize("fields, reason", [pytest.param(f, r, id=n) for n, f, r in PAIR_CHECKS])
def test_bad_split_and_merge(engine_cls, command, fields, reason):
    """SPLIT/MERGE checks: account, market, state, quantity (lot, not min size), in order."""
    eng = pair_checks_engine(engine_cls)
    row = {**dict(type=command, account=A1, market=M1, quantity=10, seq=4), **fields}
    before = eng.digest()
    assert run(eng, [row]) == [
        rejected(reason, account=row["account"], market=row["market"], command=command, seq=4)
    ]
    assert eng.digest() == before


def test_split_in_a_closed_market_merge_allowed(engine_cls):
    """SPLIT needs PRE_OPEN, OPEN or SUSPENDED; MERGE may also run in a CLOSED market."""
    eng = pair_checks_engine(engine_cls)
    assert eng.set_market_state(M1, CLOSED) == 0
    assert eng.split(A1, M1, 10) == -Reject.MARKET_NOT_OPEN
    assert last(eng) == [rejected(Reject.MARKET_NOT_OPEN, account=A1, market=M1, command=SPLIT)]
    assert eng.merge(A1, M1, 10) == 0
    assert last(eng) == [position_event(A1, M1, 10, 90, 90, command=MERGE_PAIRS)]
    assert eng.split(A1, M2, 10) == 0  # one lot: the min size (30) does not apply to pairs
    assert eng.merge(A1, M2, 10) == 0


@pytest.mark.parametrize("state", [PRE_OPEN, SUSPENDED, MarketState.HALTED])
def test_split_and_merge_when_not_open(engine_cls, state):
    """PRE_OPEN, SUSPENDED and HALTED markets take splits and merges (the last two no
    orders)."""
    eng = ledger_engine(engine_cls, markets=(M1,), open_markets=False)
    if state != PRE_OPEN:
        assert eng.set_market_state(M1, OPEN) == 0
        assert eng.set_market_state(M1, state) == 0
    assert eng.split(A1, M1, 30) == 0
    assert eng.merge(A1, M1, 10) == 0
    assert eng.position(A1, M1) == Position(20, 0, 20, 0)
    if state != PRE_OPEN:
        assert eng.submit(A1, M1, SELL_YES, 5000, 10) == -Reject.MARKET_NOT_OPEN


def test_merge_needs_free_yes_and_free_no(lg):
    """MERGE takes free shares only: reserved NO, or no NO at all, is INSUFFICIENT_BALANCE."""
    assert lg.split(A1, M1, 100) == 0
    rest(lg, A1, M1, SELL_NO, 4000, 30)
    assert lg.position(A1, M1) == Position(100, 0, 70, 30)
    assert_unchanged(
        lg,
        lambda: lg.merge(A1, M1, 71),
        -INSUFFICIENT,
        [rejected(INSUFFICIENT, account=A1, market=M1, command=MERGE_PAIRS)],
    )
    assert lg.merge(A1, M1, 70) == 0
    assert last(lg) == [position_event(A1, M1, 70, 30, 0, command=MERGE_PAIRS)]  # free only
    assert lg.position(A1, M1) == Position(30, 0, 0, 30)
    assert lg.balance(A1) == Balance(9_700_000, 0)
    assert lg.merge(A1, M1, 1) == -INSUFFICIENT
    assert lg.merge(A2, M1, 1) == -INSUFFICIENT  # no position at all


# =========================================================================== resolution


def resolution_book(eng):
    """Four accounts with $10 each in M1:
    A1 splits 300 (7_000_000) and offers SELL_YES 200 at 6000 (order 1);
    A2 buys 100 of it (order 2): A2 9_400_000, A1 7_600_000;
    A3 rests BUY_NO 50 at 5000 (order 3, 250_000 reserved);
    A2 buys YES 30 at 5000 (order 4): MINT with A3, 150_000 each, collateral + 300_000;
    A2 rests BUY_YES 10 at 4000 (order 5, 40_000); A4 rests BUY_NO 10 at 7000 (order 6,
    30_000). Positions: A1 200 YES (100 reserved) + 300 NO; A2 130 YES; A3 30 NO; A4 none.
    """
    assert eng.split(A1, M1, 300) == 0
    orders = [rest(eng, A1, M1, SELL_YES, 6000, 200)]
    assert eng.submit(A2, M1, BUY_YES, 6000, 100) == 2
    orders.append(rest(eng, A3, M1, BUY_NO, 5000, 50))
    assert eng.submit(A2, M1, BUY_YES, 5000, 30) == 4
    orders.append(rest(eng, A2, M1, BUY_YES, 4000, 10))
    orders.append(rest(eng, A4, M1, BUY_NO, 7000, 10))
    assert eng.balance(A1) == Balance(7_600_000, 0)
    assert eng.balance(A2) == Balance(9_210_000, 40_000)
    assert eng.balance(A3) == Balance(9_750_000, 100_000)
    assert eng.balance(A4) == Balance(9_970_000, 30_000)
    assert eng.position(A1, M1) == Position(100, 100, 300, 0)
    assert eng.position(A2, M1) == Position(130, 0, 0, 0)
    assert eng.position(A3, M1) == Position(0, 0, 30, 0)
    assert eng.totals() == Totals(40_000_000, 0, 3_300_000)
    assert positions_listed(eng, M1) == [A1, A2, A3, A4]
    return orders


@pytest.mark.parametrize(
    "outcome, paid, free",
    [
        # YES pays 10_000 per YES share: A1 200, A2 130, A3 0
        pytest.param(
            YES,
            (2_000_000, 1_300_000, 0),
            (9_600_000, 10_550_000, 9_850_000, TEN_DOLLARS),
            id="yes",
        ),
        # NO pays 10_000 per NO share: A1 300, A3 30
        pytest.param(
            NO,
            (3_000_000, 0, 300_000),
            (10_600_000, 9_250_000, 10_150_000, TEN_DOLLARS),
            id="no",
        ),
        # HALF pays 5_000 per share of each: A1 500, A2 130, A3 30
        pytest.param(
            HALF,
            (2_500_000, 650_000, 150_000),
            (10_100_000, 9_900_000, 10_000_000, TEN_DOLLARS),
            id="half",
        ),
    ],
)
def test_resolution_with_open_orders_and_positions(engine_cls, outcome, paid, free):
    """RESOLVE: MARKET (outcome in reason), every order canceled as on a close (bids then
    asks, best to worst), then SETTLEMENT per position with shares in ascending account
    order; the collateral goes to 0, the cash comes back, and the positions are freed."""
    eng = ledger_engine(
        engine_cls,
        accounts=(A1, A2, A3, A4),
        deposits={a: TEN_DOLLARS for a in (A1, A2, A3, A4)},
        max_positions=4,
    )
    o1, o3, o5, o6 = resolution_book(eng)
    assert eng.split(A1, M2, 1) == -Reject.CAPACITY  # the 4 slots are taken

    def c(order, quantity):
        return canceled(order, quantity, MARKET_CLOSED, command=RESOLVE)

    assert eng.resolve(M1, outcome, time=7) == 0
    assert last(eng) == [
        market_event(M1, RESOLVED, outcome=outcome, command=RESOLVE),
        c(o5, 10),
        level(M1, BID, 4000, 0, 0, command=RESOLVE),
        c(o3, 20),
        level(M1, ASK, 5000, 0, 0, command=RESOLVE),
        c(o1, 100),
        level(M1, ASK, 6000, 0, 0, command=RESOLVE),
        c(o6, 10),
        level(M1, ASK, 7000, 0, 0, command=RESOLVE),
        settlement_event(A1, M1, paid[0], 200, 300, outcome),
        settlement_event(A2, M1, paid[1], 130, 0, outcome),
        settlement_event(A3, M1, paid[2], 0, 30, outcome),
    ]
    for account, expected in zip((A1, A2, A3, A4), free, strict=True):
        assert eng.balance(account) == Balance(expected, 0)
        assert eng.position(account, M1) == Position(0, 0, 0, 0)
    assert eng.totals() == Totals(40_000_000, 0, 0)
    assert eng.market(M1) == market_info(M1, RESOLVED, 100, outcome=outcome)
    assert eng.order_count == 0
    assert positions_listed(eng, M1) == []
    assert eng.split(A1, M2, 1) == 0  # the slots are free again

    # a resolved market takes no orders, splits, merges or state changes
    before = eng.digest()
    assert eng.submit(A1, M1, BUY_YES, 5000, 1) == -Reject.MARKET_NOT_OPEN
    assert eng.split(A1, M1, 1) == -Reject.MARKET_NOT_OPEN
    assert eng.merge(A1, M1, 1) == -Reject.MARKET_NOT_OPEN
    for state in (OPEN, SUSPENDED, CLOSED):
        assert eng.set_market_state(M1, state) == -Reject.INVALID_STATE_TRANSITION
    assert eng.resolve(M1, outcome) == -Reject.INVALID_STATE_TRANSITION
    assert last(eng) == [rejected(Reject.INVALID_STATE_TRANSITION, market=M1, command=RESOLVE)]
    assert eng.digest() == before


@pytest.mark.parametrize("state", [PRE_OPEN, SUSPENDED, CLOSED])
def test_resolution_from_other_states(engine_cls, state):
    """A market resolves from PRE_OPEN, SUSPENDED or CLOSED too; pairs split pay 10_000 each."""
    eng = ledger_engine(engine_cls, markets=(M1,), open_markets=False)
    assert eng.split(A1, M1, 40) == 0
    assert eng.split(A2, M1, 10) == 0
    if state != PRE_OPEN:
        assert eng.set_market_state(M1, OPEN) == 0
        assert eng.set_market_state(M1, state) == 0
    assert eng.resolve(M1, NO) == 0
    assert last(eng) == [
        market_event(M1, RESOLVED, outcome=NO, command=RESOLVE),
        settlement_event(A1, M1, 400_000, 40, 40, NO),
        settlement_event(A2, M1, 100_000, 10, 10, NO),
    ]
    assert eng.balance(A1) == Balance(9_600_000 + 400_000, 0)
    assert eng.totals() == Totals(30_000_000, 0, 0)


def test_resolution_of_a_market_with_fees_keeps_the_fees(engine_cls):
    """Fees collected stay with the engine after resolution; the MARKET event has the rates."""
    eng = ledger_engine(engine_cls, taker_fee_bps=10, maker_fee_bps=5, fee_base=PQ)
    assert eng.split(A1, M1, 100) == 0
    maker = rest(eng, A1, M1, SELL_YES, 5000, 100)
    taker = Order(2, A2, M1, BUY_YES, 5000)
    # B = 5000 * 5000 * 100 = 2_500_000_000: taker 250, maker 125 (exact)
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) == 2
    assert last(eng)[1] == trade(taker, maker, 100, 0, 0, COMPLEMENTARY, fee=250, maker_fee=125)
    assert eng.resolve(M1, YES) == 0
    assert last(eng) == [
        market_event(
            M1,
            RESOLVED,
            taker_fee_bps=10,
            maker_fee_bps=5,
            fee_base=PQ,
            outcome=YES,
            command=RESOLVE,
        ),
        settlement_event(A1, M1, 0, 0, 100, YES),
        settlement_event(A2, M1, 1_000_000, 100, 0, YES),
    ]
    # A1: 9_000_000 + 500_000 - 125; A2: 10_000_000 - 500_000 - 250 + 1_000_000
    assert eng.balance(A1) == Balance(9_499_875, 0)
    assert eng.balance(A2) == Balance(10_499_750, 0)
    assert eng.totals() == Totals(30_000_000, 375, 0)


@pytest.mark.parametrize(
    "market, outcome, reason",
    [
        (3, YES, Reject.UNKNOWN_MARKET),
        (4, YES, Reject.UNKNOWN_MARKET),
        (ALL_MARKETS, NO, Reject.UNKNOWN_MARKET),
        (3, 0, Reject.UNKNOWN_MARKET),
        (M1, Outcome.NONE, Reject.INVALID_OUTCOME),
        (M1, 4, Reject.INVALID_OUTCOME),
        (M1, 255, Reject.INVALID_OUTCOME),
        (M2, 9, Reject.INVALID_OUTCOME),  # outcome before the state: M2 is resolved
        (M2, HALF, Reject.INVALID_STATE_TRANSITION),
    ],
)
def test_bad_resolve(lg, market, outcome, reason):
    """RESOLVE checks: unknown market, outcome not YES/NO/HALF, market already resolved."""
    assert lg.resolve(M2, YES) == 0
    before = lg.digest()
    row = dict(type=RESOLVE, market=market, arg=outcome, account=A3, seq=2)
    assert run(lg, [row]) == [rejected(reason, account=A3, market=market, command=RESOLVE, seq=2)]
    assert lg.digest() == before


# =========================================================================== position capacity


def test_max_positions(engine_cls):
    """max_positions = 2: a new (account, market) is CAPACITY for orders and splits, an
    existing one still works, and a slot frees when its position holds nothing."""
    eng = ledger_engine(engine_cls, max_positions=2)
    assert eng.canonical_state()[24:29] == (2).to_bytes(4, "little") + b"\x01"
    assert eng.split(A1, M1, 10) == 0  # slot 1: (A1, M1)
    rest(eng, A2, M1, BUY_YES, 5000, 10)  # slot 2: (A2, M1), order 1
    assert position_count(eng) == 2
    before = eng.digest()
    for call, fields in (
        (lambda: eng.submit(A3, M1, BUY_YES, 5000, 10), dict(account=A3, market=M1)),
        (lambda: eng.submit(A3, M1, BUY_YES, 5000, 10, IOC), dict(account=A3, market=M1)),
        (lambda: eng.submit(A3, M1, BUY_YES, 9900, 10**9), dict(account=A3, market=M1)),
        (lambda: eng.submit(A1, M2, SELL_YES, 5000, 10), dict(account=A1, market=M2)),
        (lambda: eng.split(A3, M1, 10), dict(account=A3, market=M1, command=SPLIT)),
        (lambda: eng.split(A1, M2, 10), dict(account=A1, market=M2, command=SPLIT)),
    ):
        assert call() == -Reject.CAPACITY
        assert last(eng) == [rejected(Reject.CAPACITY, **fields)]
    assert eng.digest() == before
    assert eng.merge(A3, M1, 1) == -INSUFFICIENT  # no capacity check for a merge

    # existing positions work
    maker = rest(eng, A1, M1, SELL_YES, 6000, 4)  # order 2
    assert eng.split(A1, M1, 1) == 0
    taker = Order(3, A2, M1, BUY_YES, 6000, IOC)
    assert eng.submit(A2, M1, BUY_YES, 6000, 4, IOC) == 3
    assert last(eng)[1] == trade(taker, maker, 4, 0, 0, COMPLEMENTARY)
    assert eng.position(A2, M1) == Position(4, 0, 0, 0)

    # A2's sell first meets its own bid (self-trade: nothing moves); with the bid canceled
    # the 4 YES still hold the position; once they are sold to A1 the slot is free
    assert eng.submit(A2, M1, SELL_YES, 5000, 4, IOC) == 4
    assert eng.position(A2, M1) == Position(4, 0, 0, 0)
    assert eng.cancel(A2, 1) == 0
    assert positions_listed(eng, M1) == [A1, A2]
    rest(eng, A1, M1, BUY_YES, 5000, 4)  # order 5
    assert eng.submit(A2, M1, SELL_YES, 5000, 4, IOC) == 6
    assert positions_listed(eng, M1) == [A1]
    assert eng.split(A3, M2, 10) == 0  # the freed slot
    assert eng.submit(A2, M1, BUY_YES, 5000, 1) == -Reject.CAPACITY


def test_default_max_positions(engine_cls):
    """max_positions defaults to max_orders + max_accounts (header bytes 24..28)."""
    eng = Checked(engine_cls(max_orders=5, max_markets=2, max_accounts=3))
    assert eng.canonical_state()[24:29] == (8).to_bytes(4, "little") + b"\x01"
    eng = Checked(engine_cls(max_orders=5, max_markets=2, max_accounts=3, ledger=False))
    assert eng.canonical_state()[24:29] == (8).to_bytes(4, "little") + b"\x00"


def test_positions_capacity_order_of_checks(engine_cls):
    """CAPACITY (check 9) comes after the duplicate client id (8) and before balance (10)."""
    eng = ledger_engine(engine_cls, max_positions=1)
    rest(eng, A1, M1, BUY_YES, 5000, 10, client_order_id=9)
    assert eng.submit(A1, M2, BUY_YES, 5000, 10, client_order_id=9) == -(
        Reject.DUPLICATE_CLIENT_ORDER_ID
    )
    assert eng.submit(A1, M2, BUY_YES, 5000, 10**10, client_order_id=8) == -Reject.CAPACITY
    assert eng.submit(A1, M2, BUY_YES, 5050, 10) == -Reject.INVALID_PRICE


# =========================================================================== without the ledger


LEDGER_ROWS = [
    ("deposit", dict(type=DEPOSIT, account=A1, quantity=100)),
    ("withdraw", dict(type=WITHDRAW, account=A1, quantity=100)),
    ("split", dict(type=SPLIT, account=A1, market=M1, quantity=10)),
    ("merge", dict(type=MERGE_PAIRS, account=A1, market=M1, quantity=10)),
    ("deposit-unknown-account", dict(type=DEPOSIT, account=5, quantity=0)),
    ("withdraw-bad-amount", dict(type=WITHDRAW, account=A1, quantity=-1)),
    ("split-unknown-market", dict(type=SPLIT, account=5, market=3, quantity=0)),
    ("merge-bad-quantity", dict(type=MERGE_PAIRS, account=A1, market=M1, quantity=0)),
]


@pytest.mark.parametrize("row", [pytest.param(r, id=n) for n, r in LEDGER_ROWS])
def test_ledger_commands_disabled(engine_cls, row):
    """With ledger=False, DEPOSIT/WITHDRAW/SPLIT/MERGE are LEDGER_DISABLED before any other
    check, and change nothing."""
    eng = new_engine(engine_cls)
    before = eng.digest()
    assert run(eng, [dict(row, seq=8)]) == [
        rejected(
            Reject.LEDGER_DISABLED,
            account=row["account"],
            market=row.get("market", 0),
            command=row["type"],
            seq=8,
        )
    ]
    assert eng.digest() == before


def test_ledger_disabled_per_call_and_after_expiry(engine_cls):
    """Per-call methods return -LEDGER_DISABLED; time and expiry still run first."""
    eng = new_engine(engine_cls)
    order = rest(eng, A1, M1, BUY_YES, 5000, 100, tif=GTD, expiry=10)
    assert eng.deposit(A1, 100, time=10) == -Reject.LEDGER_DISABLED
    assert last(eng) == [
        canceled(order, 100, EXPIRED, command=DEPOSIT),
        level(M1, BID, 5000, 0, 0, command=DEPOSIT),
        rejected(Reject.LEDGER_DISABLED, account=A1, command=DEPOSIT),
    ]
    assert eng.now == 10
    assert eng.withdraw(A2, 1) == -Reject.LEDGER_DISABLED
    assert eng.split(A2, M1, 1) == -Reject.LEDGER_DISABLED
    assert last(eng) == [rejected(Reject.LEDGER_DISABLED, account=A2, market=M1, command=SPLIT)]
    assert eng.merge(A2, M2, 1) == -Reject.LEDGER_DISABLED
    assert eng.totals() == Totals(0, 0, 0)


def test_trades_without_the_ledger_move_no_money(engine_cls):
    """With ledger=False a market may have fee rates, but no cash is needed, no fee is
    charged (TRADE fee fields 0) and the totals stay 0."""
    eng = new_engine(engine_cls, taker_fee_bps=10, maker_fee_bps=-5, fee_base=PQ)
    maker = rest(eng, A1, M1, SELL_YES, 5000, 10**6)  # no shares needed
    taker = Order(2, A2, M1, BUY_YES, 5000)
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) == 2  # no cash needed
    assert last(eng)[1] == trade(taker, maker, 100, 0, 999_900, COMPLEMENTARY)
    assert eng.totals() == Totals(0, 0, 0)
    state = decode_state(eng.canonical_state())
    assert state.ledger == 0
    assert all(not m.positions and m.collateral == 0 for m in state.markets)


def test_resolve_without_the_ledger(engine_cls):
    """RESOLVE works with ledger=False: MARKET and the cancels, no payment, no SETTLEMENT."""
    eng = new_engine(engine_cls)
    o1 = rest(eng, A1, M1, BUY_YES, 5000, 100)
    o2 = rest(eng, A2, M1, SELL_YES, 6000, 100)
    assert eng.submit(A3, M1, SELL_YES, 5000, 40) == 3  # leaves A1 60 at 5000
    assert eng.resolve(M1, HALF) == 0
    assert last(eng) == [
        market_event(M1, RESOLVED, outcome=HALF, command=RESOLVE),
        canceled(o1, 60, MARKET_CLOSED, command=RESOLVE),
        level(M1, BID, 5000, 0, 0, command=RESOLVE),
        canceled(o2, 100, MARKET_CLOSED, command=RESOLVE),
        level(M1, ASK, 6000, 0, 0, command=RESOLVE),
    ]
    assert eng.market(M1) == market_info(M1, RESOLVED, 100, outcome=HALF)
    assert eng.totals() == Totals(0, 0, 0)
    assert eng.submit(A1, M1, BUY_YES, 5000, 1) == -Reject.MARKET_NOT_OPEN
    assert eng.resolve(M1, YES) == -Reject.INVALID_STATE_TRANSITION
    assert eng.resolve(M2, 0) == -Reject.INVALID_OUTCOME


# =========================================================================== fee fields


def test_create_market_with_fees(lg):
    """CREATE_MARKET takes the fee fields; MARKET events carry them (fee, maker_fee, count)."""
    fees = dict(taker_fee_bps=1000, maker_fee_bps=-1000, fee_base=PQ)
    assert lg.create_market(3, 10, 20, 10, **fees) == 0
    assert last(lg) == [
        market_event(3, PRE_OPEN, tick=10, min_size=20, lot=10, **fees, command=CREATE)
    ]
    assert lg.market(3) == market_info(3, PRE_OPEN, 10, 20, 10, **fees)
    assert lg.set_market_state(3, OPEN) == 0
    assert last(lg) == [market_event(3, OPEN, tick=10, min_size=20, lot=10, **fees)]
    assert lg.set_tick(3, 100) == 0
    assert last(lg) == [
        market_event(3, OPEN, tick=100, min_size=20, lot=10, **fees, command=SET_TICK)
    ]
    # a maker fee with no taker fee, and the MIN base
    assert lg.create_market(0, 100, taker_fee_bps=0, maker_fee_bps=1000, fee_base=MIN) == 0
    assert lg.market(0) == market_info(0, PRE_OPEN, 100, maker_fee_bps=1000, fee_base=MIN)


@pytest.mark.parametrize(
    "fees",
    [
        dict(taker_fee_bps=-1),
        dict(taker_fee_bps=1001),
        dict(taker_fee_bps=1000, maker_fee_bps=1001),
        dict(taker_fee_bps=1000, maker_fee_bps=-1001),
        dict(maker_fee_bps=-1),
        dict(taker_fee_bps=5, maker_fee_bps=-6),
        dict(fee_base=4),
        dict(fee_base=255),
    ],
    ids=str,
)
def test_invalid_fee(lg, fees):
    """Rates outside 0..1000 (taker), -1000..1000 (maker), a rebate above the taker rate or a
    base above 3: INVALID_FEE, and the market is not created."""
    before = lg.digest()
    row = {**dict(type=CREATE, market=3, price=100, quantity=1, aux=1, seq=1), **fees}
    assert run(lg, [row]) == [rejected(Reject.INVALID_FEE, market=3, command=CREATE, seq=1)]
    assert lg.digest() == before
    assert lg.market(3) is None


def test_fee_fields_ignored_by_other_commands(lg):
    """Fee fields on another command are ignored."""
    row = {**new_order(A1, M1, BUY_YES, 5000, 10), "taker_fee_bps": -5, "fee_base": 9}
    assert run(lg, [row])[0]["type"] == 1  # ACCEPTED
    assert lg.balance(A1) == Balance(9_950_000, 50_000)


# =========================================================================== limits


def test_largest_trade_with_a_128_bit_fee(engine_cls):
    """PQ, taker 999, maker -999, q = MAX_QUANTITY - 1 = 9_999_999_999 at 5000.

    B = 5000 * 5000 * q = 249_999_999_975_000_000, 999 * B (about 2.5e20) needs more than
    64 bits; / 10**8 = 2_497_499_999_750.25: fee 2_497_499_999_751, rebate 2_497_499_999_750.
    The buyer reserves q * (5000 + ceil(249.75)) = 52_499_999_994_750 and pays
    49_999_999_995_000 + 2_497_499_999_751 = 52_497_499_994_751.
    """
    q = MAX_QUANTITY - 1
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        taker_fee_bps=999,
        maker_fee_bps=-999,
        fee_base=PQ,
        deposits={A1: MAX_CASH, A2: MAX_CASH},
    )
    assert eng.split(A1, M1, q) == 0
    assert eng.balance(A1) == Balance(9_900_000_000_010_000, 0)
    maker = rest(eng, A1, M1, SELL_YES, 5000, q)
    taker = Order(2, A2, M1, BUY_YES, 5000)
    assert eng.submit(A2, M1, BUY_YES, 5000, q) == 2
    assert last(eng) == [
        accepted(taker, q),
        trade(
            taker,
            maker,
            q,
            0,
            0,
            COMPLEMENTARY,
            fee=2_497_499_999_751,
            maker_fee=-2_497_499_999_750,
        ),
        level(M1, ASK, 5000, 0, 0),
    ]
    assert eng.balance(A2) == Balance(9_947_502_500_005_249, 0)
    assert eng.balance(A1) == Balance(9_952_497_500_004_750, 0)
    assert eng.position(A2, M1) == Position(q, 0, 0, 0)
    assert eng.position(A1, M1) == Position(0, 0, q, 0)
    assert eng.totals() == Totals(2 * MAX_CASH, 1, 99_999_999_990_000)


def test_largest_mint(engine_cls):
    """MINT of MAX_QUANTITY at 100: 10**12 + 99 * 10**12 paid, collateral 10**14."""
    eng = ledger_engine(engine_cls, markets=(M1,), deposits={A1: MAX_CASH, A2: MAX_CASH})
    maker = rest(eng, A1, M1, BUY_YES, 100, MAX_QUANTITY)
    taker = Order(2, A2, M1, BUY_NO, 100)
    assert eng.submit(A2, M1, BUY_NO, 100, MAX_QUANTITY) == 2
    assert last(eng)[1] == trade(taker, maker, MAX_QUANTITY, 0, 0, MINT)
    assert eng.balance(A1) == Balance(MAX_CASH - 10**12, 0)
    assert eng.balance(A2) == Balance(MAX_CASH - 99 * 10**12, 0)
    assert eng.totals() == Totals(2 * MAX_CASH, 0, 10**14)
    assert eng.split(A1, M1, MAX_QUANTITY) == 0
    assert eng.split(A1, M1, MAX_QUANTITY + 1) == -Reject.INVALID_QUANTITY
    assert eng.totals() == Totals(2 * MAX_CASH, 0, 2 * 10**14)


def test_largest_buy_by_cash(engine_cls):
    """Budget MAX_CASH at taker 1000 bps needs MAX_CASH + 10**15 free. It buys the whole ask
    of MAX_QUANTITY at 9900 (99 * 10**12, fee 9.9 * 10**12) and gives the rest back."""
    eng = ledger_engine(
        engine_cls,
        markets=(M1,),
        taker_fee_bps=1000,
        deposits={A1: MAX_CASH, A2: MAX_CASH},
    )
    assert eng.split(A1, M1, MAX_QUANTITY) == 0
    maker = rest(eng, A1, M1, SELL_YES, 9900, MAX_QUANTITY)
    assert eng.deposit(A2, 10**15 - 1) == 0

    def buy():
        return eng.submit(A2, M1, BUY_YES, 9900, MAX_CASH, IOC, market_order=True, by_cash=True)

    assert_unchanged(eng, buy, -INSUFFICIENT, [rejected(INSUFFICIENT, account=A2, market=M1)])
    assert eng.deposit(A2, 1) == 0
    taker = cash_order(2, A2, M1, BUY_YES, 9900)
    assert buy() == 2
    left = MAX_CASH - 99 * 10**12
    assert last(eng) == [
        accepted(taker, MAX_CASH),
        trade(taker, maker, MAX_QUANTITY, left, 0, COMPLEMENTARY, fee=99 * 10**11),
        level(M1, ASK, 9900, 0, 0),
        canceled(taker, left, UNFILLED),
    ]
    assert eng.balance(A2) == Balance(MAX_CASH + 10**15 - 99 * 10**12 - 99 * 10**11, 0)
    assert eng.balance(A1) == Balance(MAX_CASH - 10**14 + 99 * 10**12, 0)


# =========================================================================== random streams

PROPERTY_MARKETS = {
    # market: (tick, min size, lot, taker bps, maker bps, base)
    M1: (100, 1, 1, 30, -10, NOTIONAL),
    M2: (10, 20, 10, 999, 7, PQ),
    3: (100, 1, 1, 1, 12, MIN),  # a maker rate above the taker rate
}


def random_ledger_stream(rng: random.Random, length: int) -> list[dict[str, int]]:
    """Commands that trade often: bids and asks around 5000 that cross about half the
    time, sells backed by the shares split at set-up, buys by cash, cancels and replaces
    of recent ids, deposits, withdrawals, splits, merges, tick changes, a rare resolution."""
    rows: list[dict[str, int]] = []
    for _ in range(length):
        account = rng.choice([A1, A2, A3])
        market = rng.choice(sorted(PROPERTY_MARKETS))
        roll = rng.random()
        if roll < 0.55:
            intent = rng.choice(list(Intent))
            step = rng.randint(-2, 3) * 100
            price = 5000 + step if side_of(intent) == BID else 5000 - step
            quantity = rng.randint(2, 8) * 10
            tif = rng.choice([GTC, GTC, GTC, IOC, FOK])
            stp = rng.choice(list(Stp))
            rows.append(new_order(account, market, intent, price, quantity, tif, stp=stp))
        elif roll < 0.62:
            intent = rng.choice([BUY_YES, BUY_NO])
            step = rng.randint(0, 3) * 100
            price = 5000 + step if intent == BUY_YES else 5000 - step
            budget = rng.randint(1, 400_000)
            tif = rng.choice([IOC, FOK])
            rows.append(
                new_order(account, market, intent, price, budget, tif, flags=MARKET | BY_CASH)
            )
        elif roll < 0.70:
            order_id = rng.randint(1, len(rows) + 1)
            rows.append(dict(type=CommandType.CANCEL, account=account, order_id=order_id))
        elif roll < 0.78:
            order_id = rng.randint(1, len(rows) + 1)
            price = rng.choice([0, 4800, 5000, 5200])
            quantity = rng.choice([0, 20, 50, 80])
            rows.append(
                dict(
                    type=REPLACE, account=account, order_id=order_id, price=price, quantity=quantity
                )
            )
        elif roll < 0.84:
            kind = rng.choice([DEPOSIT, WITHDRAW])
            rows.append(dict(type=kind, account=account, quantity=rng.randint(1, 1_000_000)))
        elif roll < 0.92:
            kind = rng.choice([SPLIT, SPLIT, MERGE_PAIRS])
            quantity = rng.randint(1, 6) * 10
            rows.append(dict(type=kind, account=account, market=market, quantity=quantity))
        elif roll < 0.97:
            rows.append(dict(type=ADVANCE, time=rng.randint(0, 5 * length)))
        elif roll < 0.995:
            rows.append(
                dict(type=SET_TICK, market=rng.choice([M1, 3]), price=rng.choice([10, 100]))
            )
        else:
            rows.append(dict(type=RESOLVE, market=3, arg=rng.choice([YES, NO, HALF])))
    return rows


def fee_of(bps: int, base: int, intent: int, price: int, quantity: int) -> int:
    """The fee rule of §8, for the property test (the example tests use literal values)."""
    b, d = fee_base_and_divisor(base, intent, price, quantity)
    if bps >= 0:
        return -(-bps * b // d)  # ceil(bps * B / D), 0 for a zero rate
    return -((-bps * b) // d)  # a rebate, toward zero


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32 - 1), length=st.integers(20, 200))
def test_random_streams_keep_the_ledger_invariants(engine_cls, seed, length):
    """Any stream keeps conservation, exact reservations and shares (audited after every
    command), and every TRADE's fee and maker_fee follow the §8 fee rule of its market."""
    eng = ledger_engine(
        engine_cls,
        markets=(),
        deposits={},
        max_levels=2 * 999 + 4 * 99,
    )
    for market, (tick, min_size, lot, taker, maker, base) in PROPERTY_MARKETS.items():
        assert (
            eng.create_market(
                market,
                tick,
                min_size,
                lot,
                taker_fee_bps=taker,
                maker_fee_bps=maker,
                fee_base=base,
            )
            == 0
        )
        assert eng.set_market_state(market, OPEN) == 0
    for account, amount in ((A1, 5_000_000), (A2, 5_000_000), (A3, 2_000_000)):
        assert eng.deposit(account, amount) == 0
        for market in PROPERTY_MARKETS:
            assert eng.split(account, market, 60) == 0  # shares to sell: 600_000 each
    rows = random_ledger_stream(random.Random(seed), length)
    events = eng.process(make_commands([dict(row, seq=i + 1) for i, row in enumerate(rows)]))
    for e in events:
        if e["type"] != EventType.TRADE:
            continue
        _tick, _min, _lot, taker, maker, base = PROPERTY_MARKETS[int(e["market"])]
        price, quantity = int(e["price"]), int(e["quantity"])
        assert e["fee"] == fee_of(taker, base, int(e["intent"]), price, quantity)
        assert e["maker_fee"] == fee_of(maker, base, int(e["maker_intent"]), price, quantity)
    trades = events[events["type"] == EventType.TRADE]
    total_fees = int(trades["fee"].sum() + trades["maker_fee"].sum())
    event(f"trades: {min(len(trades), 10) // 5 * 5}+")
    event(f"match types: {sorted(set(trades['match_type'].tolist()))}")
    assert eng.totals().fees == total_fees
