"""Canonical state, digest, snapshot and restore (docs/matchcore.md §6)."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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
    DEPOSIT,
    M1,
    M2,
    MERGE_PAIRS,
    REPLACE,
    RESOLVE,
    SET_STATE,
    SET_TICK,
    SPLIT,
    WITHDRAW,
    AccountSnap,
    Checked,
    EngineState,
    Level,
    MarketSnap,
    Order,
    PositionSnap,
    RestingOrder,
    accepted,
    decode_state,
    encode_state,
    level,
    market_info,
    new_engine,
    new_order,
    trade,
)

from matchcore import (
    ALL_MARKETS,
    EVENT_DTYPE,
    Balance,
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
    event_dicts,
    make_commands,
)

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
GTC, GTD, IOC, FOK = TimeInForce
PRE_OPEN, OPEN, SUSPENDED, CLOSED, RESOLVED = (
    MarketState.PRE_OPEN,
    MarketState.OPEN,
    MarketState.SUSPENDED,
    MarketState.CLOSED,
    MarketState.RESOLVED,
)
POST_ONLY, MARKET, BY_CASH = OrderFlags.POST_ONLY, OrderFlags.MARKET, OrderFlags.BY_CASH
A5 = 5

# A varied state: 4 markets in every state but RESOLVED, two ticks, lots, partial fills,
# GTD orders, client ids, post-only, STP modes, a replace, rejects, time moved on.
SETUP = [
    *[dict(type=ADD_ACCOUNT, account=a) for a in (A1, A2, A3, A5)],
    dict(type=CREATE, market=M1, price=100, quantity=1, aux=1),
    dict(type=CREATE, market=M2, price=10, quantity=20, aux=10),
    dict(type=CREATE, market=3, price=1000, quantity=1, aux=1),
    dict(type=CREATE, market=0, price=100, quantity=1, aux=1),
    dict(type=SET_STATE, market=M1, arg=OPEN),
    dict(type=SET_STATE, market=M2, arg=OPEN),
    dict(type=SET_STATE, market=0, arg=CLOSED),
    dict(new_order(A1, M1, BUY_YES, 5000, 100, client_order_id=11), time=100),
    new_order(A2, M1, SELL_NO, 5000, 50, GTD, expiry=1000),
    new_order(A3, M1, BUY_YES, 4800, 70, stp=Stp.CANCEL_RESTING),
    new_order(A1, M1, SELL_YES, 6000, 100, flags=POST_ONLY),
    new_order(A2, M1, BUY_NO, 6100, 30, client_order_id=11),
    new_order(A5, M2, BUY_YES, 3010, 200),
    new_order(A3, M2, SELL_YES, 7000, 100, GTD, expiry=500, stp=Stp.CANCEL_BOTH),
    new_order(A2, M1, SELL_YES, 5000, 30, IOC),
    new_order(A1, M1, BUY_YES, 4000, 10, FOK),
    dict(type=REPLACE, account=A3, order_id=3, quantity=40),
    dict(type=CANCEL, account=A1, order_id=99),
    dict(type=SET_STATE, market=M2, arg=SUSPENDED, time=200),
    dict(type=ADVANCE, time=300),
]

# What follows the snapshot: expiry, self-trade, fills in FIFO order, client ids, a tick
# change, a close, capacity-free ids.
FOLLOW_UP = [
    dict(type=SET_STATE, market=M2, arg=OPEN, time=400),
    new_order(A5, M2, SELL_YES, 3000, 50),
    new_order(A1, M2, SELL_YES, 3010, 100),
    dict(new_order(A2, M1, BUY_YES, 4000, 10), time=500),
    new_order(A2, M1, SELL_YES, 4800, 200, IOC),
    dict(type=CANCEL_CLIENT, account=A1, client_order_id=11),
    dict(type=CANCEL_CLIENT, account=A2, client_order_id=11),
    dict(type=ADVANCE, time=1000),
    new_order(A3, M1, BUY_YES, 6000, 150),
    new_order(A1, M1, BUY_YES, 4500, 30, client_order_id=11),
    dict(type=REPLACE, account=A1, order_id=14, price=4600),
    dict(type=SET_TICK, market=M1, price=1000),
    new_order(A2, M2, BUY_NO, 3010, 400_000, IOC, flags=MARKET | BY_CASH),
    dict(type=CANCEL_ALL, account=A5, market=ALL_MARKETS),
    dict(type=SET_STATE, market=M2, arg=CLOSED),
    dict(type=SET_STATE, market=3, arg=OPEN),
    new_order(A1, 3, SELL_NO, 2000, 5, GTD, expiry=2000),
    dict(type=ADVANCE, time=2000),
]


def with_seq(rows: list[dict[str, Any]], start: int) -> np.ndarray:
    return make_commands([dict(row, seq=start + i) for i, row in enumerate(rows)])


def busy_engine(engine_cls: Any) -> Checked:
    eng = Checked(engine_cls(max_orders=16, max_markets=4, max_accounts=8, ledger=False))
    eng.process(with_seq(SETUP, 1))
    return eng


def assert_same_engine(a: Any, b: Any) -> None:
    """Two engines agree on everything observable."""
    assert a.canonical_state() == b.canonical_state()
    assert a.digest() == b.digest()
    assert a.now == b.now
    assert a.order_count == b.order_count
    for market in range(4):
        assert a.market(market) == b.market(market)
        if a.market(market) is not None:
            assert a.best(market) == b.best(market)
            for x, y in zip(a.book(market, 100), b.book(market, 100), strict=True):
                assert x.tolist() == y.tolist()
    for order_id in range(40):
        assert a.order(order_id) == b.order(order_id)
    if a.canonical_state()[28]:  # the ledger flag of the header: compare the money too
        assert a.totals() == b.totals()
        for account in range(8):
            assert a.balance(account) == b.balance(account)
            for market in range(4):
                assert a.position(account, market) == b.position(account, market)


# =========================================================================== digest and format


def test_setup_leaves_resting_orders(engine_cls):
    """Sanity: the set-up state is not trivial (orders rest in 2 markets, time moved)."""
    eng = busy_engine(engine_cls)
    assert eng.now == 300
    assert eng.order_count == 7
    assert eng.market(M2).state == SUSPENDED
    assert eng.order(3).leaves_qty == 40
    assert eng.order(1).leaves_qty == 70


def test_snapshot_is_the_canonical_state_and_digest_its_hash(engine_cls):
    """snapshot() returns canonical_state(); digest() is blake2b-128 of it, in hex."""
    eng = busy_engine(engine_cls)
    state = eng.canonical_state()
    assert isinstance(state, bytes)
    assert eng.snapshot() == state
    assert eng.digest() == hashlib.blake2b(state, digest_size=16).hexdigest()


def hand_built_state() -> EngineState:
    """The state of ``hand_built_engine()``, written from the §6 layout."""
    return EngineState(
        max_orders=64,
        max_markets=4,
        max_accounts=8,
        max_levels=4 * 2 * 999,
        max_positions=64 + 8,
        ledger=0,
        now=10,
        next_order_id=6,
        accounts=[A1, A2, A3],
        markets=[
            MarketSnap(
                M1,
                OPEN,
                100,
                bids=[
                    Level(
                        5000,
                        [
                            RestingOrder(1, A1, 100, BUY_YES, client_order_id=7),
                            RestingOrder(2, A2, 50, SELL_NO, expiry=1000, tif=GTD),
                        ],
                    ),
                    Level(4900, [RestingOrder(3, A3, 20, BUY_YES, stp=Stp.CANCEL_BOTH)]),
                ],
                asks=[
                    Level(
                        6000,
                        [RestingOrder(4, A1, 30, SELL_YES, flags=POST_ONLY, stp=1)],
                    )
                ],
            ),
            MarketSnap(M2, OPEN, 100),
            MarketSnap(3, PRE_OPEN, 10, min_size=20, lot=10),
        ],
    )


def hand_built_engine(engine_cls: Any) -> Checked:
    eng = new_engine(engine_cls)
    assert eng.submit(A1, M1, BUY_YES, 5000, 100, client_order_id=7) == 1
    assert eng.submit(A2, M1, SELL_NO, 5000, 50, GTD, expiry=1000, time=10) == 2
    assert eng.submit(A3, M1, BUY_YES, 4900, 20, stp=Stp.CANCEL_BOTH) == 3
    assert eng.submit(A1, M1, SELL_YES, 6000, 30, post_only=True, stp=Stp.CANCEL_RESTING) == 4
    assert eng.submit(A2, M1, BUY_YES, 5900, 10, IOC) == 5
    assert eng.create_market(3, 10, 20, 10) == 0
    return eng


def test_canonical_state_layout(engine_cls):
    """canonical_state() is exactly the documented byte layout."""
    eng = hand_built_engine(engine_cls)
    assert eng.canonical_state() == encode_state(hand_built_state())


def test_restore_a_hand_built_state(engine_cls):
    """restore() of bytes written from the spec gives an engine that matches on them."""
    data = encode_state(hand_built_state())
    eng = Checked(engine_cls.restore(data))
    assert eng.canonical_state() == data
    assert eng.now == 10
    assert eng.order_count == 4
    assert eng.market(3) == market_info(3, PRE_OPEN, 10, 20, 10)
    assert eng.order(2) == (2, A2, M1, SELL_NO, Side.BID, 5000, 50, GTD, 1000, 0, 0, 0)
    assert eng.book(M1)[0].tolist() == [(5000, 2, 150), (4900, 1, 20)]
    # it goes on: the next id is 6, FIFO at 5000 is 1 then 2
    taker = Order(6, A3, M1, SELL_YES, 5000)
    o1 = Order(1, A1, M1, BUY_YES, 5000)
    o2 = Order(2, A2, M1, SELL_NO, 5000, GTD)
    assert eng.submit(A3, M1, SELL_YES, 5000, 120) == 6
    assert event_dicts(eng.last_events()) == [
        accepted(taker, 120),
        trade(taker, o1, 100, 20, 0, MatchType.COMPLEMENTARY),
        trade(taker, o2, 20, 0, 30, MatchType.MERGE),
        level(M1, Side.BID, 5000, 30, 1),
    ]
    assert eng.cancel_client(A1, 7) == -Reject.UNKNOWN_ORDER  # order 1 is gone


# =========================================================================== round trip


def test_restore_gives_the_same_state(engine_cls):
    """restore(snapshot()) has the same canonical state, digest and query answers."""
    eng = busy_engine(engine_cls)
    restored = Checked(engine_cls.restore(eng.snapshot()))
    assert_same_engine(eng, restored)


def test_restored_engine_continues_identically(engine_cls):
    """The restored engine gives the same events and digest as the original on what follows."""
    eng = busy_engine(engine_cls)
    restored = Checked(engine_cls.restore(eng.snapshot()))
    follow = with_seq(FOLLOW_UP, 100)
    events = eng.process(follow)
    assert events.dtype == EVENT_DTYPE
    assert len(events) > 30
    assert event_dicts(restored.process(follow)) == event_dicts(events)
    assert_same_engine(eng, restored)


def test_snapshot_of_a_fresh_engine(engine_cls):
    """A fresh engine round-trips too (no account, no market)."""
    eng = Checked(
        engine_cls(max_orders=3, max_markets=2, max_accounts=5, max_levels=100, ledger=False)
    )
    assert eng.canonical_state() == encode_state(
        EngineState(3, 2, 5, 100, 0, 1, accounts=[], markets=[])
    )
    restored = Checked(engine_cls.restore(eng.snapshot()))
    assert_same_engine(eng, restored)


def test_restore_keeps_capacity_limits(engine_cls):
    """Limits come back with the snapshot: max_orders, max_markets, max_accounts, max_levels."""
    eng = new_engine(engine_cls, max_orders=2, markets=(M1,), max_levels=2 * 99 + 18)
    eng.submit(A1, M1, BUY_YES, 5000, 1)
    eng.submit(A1, M1, BUY_YES, 5000, 1)
    restored = Checked(engine_cls.restore(eng.snapshot()))
    assert restored.submit(A1, M1, BUY_YES, 5000, 1) == -Reject.CAPACITY
    assert restored.create_market(2, 100) == -Reject.CAPACITY
    assert restored.create_market(2, 1000) == 0
    assert restored.create_market(4, 1000) == -Reject.CAPACITY
    assert restored.add_account(8) == -Reject.CAPACITY


# ================================================================ between implementations


def test_snapshot_bytes_identical_between_implementations(both_engine_cls):
    """The core and the reference give the same events and the same snapshot bytes."""
    core_cls, reference_cls = both_engine_cls
    core, reference = busy_engine(core_cls), busy_engine(reference_cls)
    assert core.snapshot() == reference.snapshot()
    follow = with_seq(FOLLOW_UP, 100)
    assert event_dicts(core.process(follow)) == event_dicts(reference.process(follow))
    assert core.snapshot() == reference.snapshot()
    assert core.digest() == reference.digest()


def test_snapshot_moves_between_implementations(both_engine_cls):
    """A snapshot of one implementation restores in the other and goes on identically."""
    core_cls, reference_cls = both_engine_cls
    for source_cls, target_cls in ((core_cls, reference_cls), (reference_cls, core_cls)):
        source = busy_engine(source_cls)
        target = Checked(target_cls.restore(source.snapshot()))
        assert_same_engine(source, target)
        follow = with_seq(FOLLOW_UP, 100)
        assert event_dicts(target.process(follow)) == event_dicts(source.process(follow))
        assert target.snapshot() == source.snapshot()


# =========================================================================== malformed snapshots


def test_restore_of_every_truncation_raises(engine_cls):
    """Any strict prefix of a snapshot is malformed: ValueError."""
    data = busy_engine(engine_cls).snapshot()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            engine_cls.restore(data[:cut])


@pytest.mark.parametrize("extra", [b"\x00", b"\x01\x02\x03\x04", b"\x00" * 40])
def test_restore_with_trailing_bytes_raises(engine_cls, extra):
    """Bytes after the last market are malformed: ValueError."""
    data = busy_engine(engine_cls).snapshot()
    with pytest.raises(ValueError):
        engine_cls.restore(data + extra)


@pytest.mark.parametrize("data", [b"", b"MCSTATE", 12 * b"\xff", "MCSTATE\x01"], ids=repr)
def test_restore_of_garbage_raises(engine_cls, data):
    """Garbage (or a str) is rejected."""
    with pytest.raises((ValueError, TypeError)):
        engine_cls.restore(data)


def corrupt(mutate):
    """A hand-built valid state with one thing made inconsistent by ``mutate``."""
    state = hand_built_state()
    mutate(state)
    return state


def m1(state: EngineState) -> MarketSnap:
    return state.markets[0]


def set_attr(obj_of, **changes):
    def mutate(state):
        obj = obj_of(state)
        for name, value in changes.items():
            setattr(obj, name, value)

    return mutate


def first_order(state):
    return m1(state).bids[0].orders[0]


def ask_order(state):
    return m1(state).asks[0].orders[0]


CORRUPTIONS = {
    "magic": None,  # handled below
    "level-total-wrong": set_attr(lambda s: m1(s).bids[0], total=151),
    "level-total-zero": set_attr(lambda s: m1(s).bids[1], total=0),
    "empty-level-listed": lambda s: m1(s).bids.append(Level(4000, [])),
    "bids-not-best-first": lambda s: m1(s).bids.reverse(),
    "asks-not-best-first": lambda s: m1(s).asks.insert(
        0, Level(6100, [RestingOrder(5, A2, 1, SELL_YES)])
    ),
    "duplicate-level-price": lambda s: m1(s).bids.insert(
        1, Level(5000, [RestingOrder(5, A2, 1, BUY_YES)])
    ),
    "price-off-grid": set_attr(lambda s: m1(s).bids[1], price=4950),
    "price-10000": set_attr(lambda s: m1(s).asks[0], price=10_000),
    "price-0": set_attr(lambda s: m1(s).bids[1], price=0),
    "price-negative": set_attr(lambda s: m1(s).bids[1], price=-100),
    "crossed-book": set_attr(lambda s: m1(s).asks[0], price=5000),
    "ask-intent-on-bid-side": set_attr(first_order, intent=SELL_YES),
    "bid-intent-on-ask-side": set_attr(ask_order, intent=SELL_NO),
    "intent-4": set_attr(first_order, intent=4),
    "tif-ioc-resting": set_attr(first_order, tif=IOC),
    "tif-fok-resting": set_attr(first_order, tif=FOK),
    "tif-9": set_attr(first_order, tif=9),
    "stp-6": set_attr(first_order, stp=6),
    "flags-8": set_attr(first_order, flags=8),
    "flags-market-resting": set_attr(first_order, flags=MARKET),
    "gtc-with-expiry": set_attr(first_order, expiry=50),
    "gtd-expiry-not-after-now": set_attr(lambda s: m1(s).bids[0].orders[1], expiry=10),
    "leaves-zero": set_attr(first_order, leaves_qty=0),
    "leaves-negative": set_attr(first_order, leaves_qty=-5),
    "leaves-above-max": set_attr(first_order, leaves_qty=10**12 + 1),
    "order-id-0": set_attr(first_order, order_id=0),
    "order-id-not-below-next": set_attr(first_order, order_id=6),
    "duplicate-order-id": set_attr(ask_order, order_id=1),
    "next-order-id-0": set_attr(lambda s: s, next_order_id=0),
    "unknown-account": set_attr(first_order, account=4),
    "duplicate-client-id-same-account": set_attr(ask_order, client_order_id=7),
    "accounts-not-ascending": set_attr(lambda s: s, accounts=[A2, A1, A3]),
    "duplicate-account": set_attr(lambda s: s, accounts=[A1, A1, A2, A3]),
    "account-at-max": set_attr(lambda s: s, accounts=[A1, A2, A3, 8]),
    "markets-not-ascending": lambda s: s.markets.reverse(),
    "duplicate-market": lambda s: s.markets.append(MarketSnap(3, OPEN, 100)),
    "market-at-max": lambda s: s.markets.append(MarketSnap(4, OPEN, 100)),
    "state-none": set_attr(lambda s: s.markets[1], state=0),
    "state-9": set_attr(lambda s: s.markets[1], state=9),
    "orders-in-closed-market": set_attr(m1, state=CLOSED),
    "orders-in-expired-market": set_attr(m1, state=MarketState.EXPIRED),
    "tick-5": set_attr(lambda s: s.markets[1], tick=5),
    "tick-off-for-orders": set_attr(m1, tick=1000),
    "lot-0": set_attr(lambda s: s.markets[1], lot=0),
    "min-size-0": set_attr(lambda s: s.markets[1], min_size=0),
    "min-size-not-lot-multiple": set_attr(lambda s: s.markets[2], min_size=25),
    "more-orders-than-max": set_attr(lambda s: s, max_orders=3),
    "more-levels-than-max": set_attr(lambda s: s, max_levels=2 * 99 * 2 + 2 * 999 - 1),
    # ledger=False: every cash, collateral, fee and position field is 0, no position listed
    "ledger-flag-2": set_attr(lambda s: s, ledger=2),
    "ledger-off-net-deposits": set_attr(lambda s: s, net_deposits=100),
    "ledger-off-fees": set_attr(lambda s: s, fees=1),
    "ledger-off-free-cash": lambda s: s.accounts.__setitem__(0, AccountSnap(A1, free=100)),
    "ledger-off-reserved-cash": lambda s: s.accounts.__setitem__(
        0, AccountSnap(A1, reserved=5000 * 100)
    ),
    "ledger-off-collateral": set_attr(lambda s: s.markets[1], collateral=10_000),
    "ledger-off-position": lambda s: m1(s).positions.append(PositionSnap(A1)),
    "ledger-off-position-with-shares": lambda s: s.markets[1].positions.append(
        PositionSnap(A1, yes_free=1, no_free=1)
    ),
    "max-positions-0": set_attr(lambda s: s, max_positions=0),
    "max-positions-above-max": set_attr(lambda s: s, max_positions=2**29 + 1),
    "outcome-of-open-market": set_attr(m1, outcome=1),
    "outcome-5": set_attr(lambda s: s.markets[1], outcome=5),
    "taker-fee-1001": set_attr(lambda s: s.markets[1], taker_fee_bps=1001),
    "taker-fee-negative": set_attr(lambda s: s.markets[1], taker_fee_bps=-1),
    "maker-rebate-above-taker-fee": set_attr(lambda s: s.markets[1], maker_fee_bps=-1),
    "fee-base-4": set_attr(lambda s: s.markets[1], fee_base=4),
}


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_orders", 0),
        ("max_orders", 2**29 + 1),
        ("max_orders", 2**32 - 1),
        ("max_markets", 0),
        ("max_accounts", 0),
        ("max_levels", 0),
        ("max_positions", 0),
        ("max_positions", 2**29 + 1),
    ],
)
def test_restore_of_bad_capacities_raises(engine_cls, field, value):
    """Capacities in the header follow the constructor's rules (§5): ValueError."""
    state = EngineState(3, 2, 5, 100, 0, 1, accounts=[], markets=[], max_positions=8)
    setattr(state, field, value)
    with pytest.raises(ValueError):
        engine_cls.restore(encode_state(state))


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_restore_of_inconsistent_state_raises(engine_cls, name):
    """A snapshot no engine could have produced is rejected with ValueError."""
    valid = encode_state(hand_built_state())
    Checked(engine_cls.restore(valid))  # the unmodified state restores fine
    if name == "magic":
        data = b"MCSTATE\x01" + valid[8:]  # the version before the ledger
    else:
        data = encode_state(corrupt(CORRUPTIONS[name]))
    assert data != valid
    with pytest.raises(ValueError):
        engine_cls.restore(data)


def test_restore_of_every_single_byte_corruption_never_crashes(engine_cls):
    """Flipping any byte either gives ValueError or a state that validates and re-encodes same.

    The capacities (header bytes 8..28, max_positions included) are left alone: a flipped
    one is a valid but huge engine, whose allocation may legitimately fail with MemoryError.
    """
    data = encode_state(hand_built_state())
    for i in [*range(8), *range(28, len(data))]:
        bad = bytearray(data)
        bad[i] ^= 0x40
        try:
            eng = engine_cls.restore(bytes(bad))
        except ValueError:
            continue
        eng.validate()
        assert eng.canonical_state() == bytes(bad)


# =========================================================================== random round trips

COMMAND_ROWS = st.one_of(
    st.builds(
        lambda a, m, i, p, q, tif, stp, cid, exp: new_order(
            a,
            m,
            i,
            p * 100,
            q,
            tif,
            stp=stp,
            client_order_id=cid,
            expiry=exp if tif == GTD else 0,
        ),
        st.sampled_from([A1, A2, A3]),
        st.sampled_from([M1, M2]),
        st.sampled_from(list(Intent)),
        st.integers(45, 55),
        st.integers(1, 50),
        st.sampled_from([GTC, GTC, GTD, IOC, FOK]),
        st.sampled_from(list(Stp)),
        st.integers(0, 3),
        st.integers(1, 40),
    ),
    st.builds(
        lambda a, o: dict(type=CANCEL, account=a, order_id=o),
        st.sampled_from([A1, A2, A3]),
        st.integers(1, 30),
    ),
    st.builds(
        lambda a, o, p, q: dict(type=REPLACE, account=a, order_id=o, price=p * 100, quantity=q),
        st.sampled_from([A1, A2, A3]),
        st.integers(1, 30),
        st.sampled_from([0, 46, 50, 54]),
        st.integers(0, 50),
    ),
    st.builds(lambda t: dict(type=ADVANCE, time=t), st.integers(0, 40)),
    st.builds(
        lambda m, s: dict(type=SET_STATE, market=m, arg=s),
        st.sampled_from([M2]),
        st.sampled_from([OPEN, SUSPENDED]),
    ),
    st.builds(
        lambda m, t: dict(type=SET_TICK, market=m, price=t),
        st.sampled_from([M1, M2]),
        st.sampled_from([10, 100, 1000]),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(COMMAND_ROWS, max_size=40),
    after=st.lists(COMMAND_ROWS, max_size=25),
    start_time=st.integers(0, 5),
)
def test_random_round_trip(engine_cls, before, after, start_time):
    """After any command stream, restore(snapshot()) continues exactly like the original."""
    eng = new_engine(engine_cls)
    times = [dict(row, time=start_time + i) for i, row in enumerate(before)]
    if times:
        eng.process(make_commands(times))
    restored = Checked(engine_cls.restore(eng.snapshot()))
    assert restored.canonical_state() == eng.canonical_state()
    if after:
        follow = make_commands(after)
        assert event_dicts(restored.process(follow)) == event_dicts(eng.process(follow))
    assert restored.digest() == eng.digest()


# =========================================================================== with the ledger

CREATE_FEES = dict(type=CREATE, quantity=1, aux=1)

# Four markets with the three fee bases (and none), deposits, splits in every state that
# takes them, orders of every intent, fills with fees and rebates, a buy by cash, a
# replace, a withdrawal, a merge and a HALF resolution.
LEDGER_SETUP = [
    *[dict(type=ADD_ACCOUNT, account=a) for a in (A1, A2, A3, A5)],
    dict(CREATE_FEES, market=M1, price=100, taker_fee_bps=7, maker_fee_bps=-2),
    dict(type=CREATE, market=M2, price=10, quantity=20, aux=10, taker_fee_bps=15, fee_base=1),
    dict(CREATE_FEES, market=3, price=1000, taker_fee_bps=1000, maker_fee_bps=-1000, fee_base=2),
    dict(CREATE_FEES, market=0, price=100),
    *[dict(type=SET_STATE, market=m, arg=OPEN) for m in (M1, M2, 3)],
    *[dict(type=DEPOSIT, account=a, quantity=5_000_000) for a in (A1, A2, A3)],
    dict(type=DEPOSIT, account=A5, quantity=1_000_000),
    dict(type=SPLIT, account=A1, market=M1, quantity=300),
    dict(type=SPLIT, account=A2, market=M2, quantity=200),
    dict(type=SPLIT, account=A3, market=3, quantity=100),
    dict(type=SPLIT, account=A5, market=0, quantity=50),
    dict(new_order(A1, M1, SELL_YES, 6000, 100, client_order_id=11), time=100),
    new_order(A2, M1, BUY_YES, 5000, 150, GTD, expiry=1000),
    new_order(A3, M1, BUY_NO, 6100, 30),
    new_order(A1, M1, SELL_NO, 4000, 50),
    new_order(A2, M1, BUY_YES, 6000, 40, IOC),
    new_order(A2, M2, SELL_YES, 3000, 100),
    new_order(A5, M2, BUY_YES, 2990, 40),
    new_order(A3, M2, BUY_YES, 3010, 100_000, IOC, flags=MARKET | BY_CASH),
    new_order(A3, 3, SELL_YES, 5000, 60),
    new_order(A1, 3, BUY_YES, 5000, 20),
    dict(type=REPLACE, account=A2, order_id=2, price=5100, quantity=120),
    dict(type=WITHDRAW, account=A5, quantity=100_000),
    dict(type=MERGE_PAIRS, account=A1, market=M1, quantity=10),
    dict(type=RESOLVE, market=0, arg=Outcome.HALF),
    dict(type=SET_STATE, market=M2, arg=SUSPENDED, time=200),
    dict(type=SPLIT, account=A5, market=M2, quantity=30),
    dict(type=ADVANCE, time=300),
]

LEDGER_FOLLOW_UP = [
    dict(type=SET_STATE, market=M2, arg=OPEN, time=400),
    new_order(A5, M2, SELL_YES, 3000, 20),
    new_order(A2, M2, BUY_NO, 2990, 40, IOC),
    new_order(A1, M1, SELL_YES, 4900, 100, IOC),
    dict(type=CANCEL_CLIENT, account=A1, client_order_id=11),
    dict(type=ADVANCE, time=1000),
    dict(type=DEPOSIT, account=A2, quantity=777),
    dict(type=WITHDRAW, account=A1, quantity=1000),
    dict(type=SPLIT, account=A2, market=M1, quantity=5),
    dict(type=MERGE_PAIRS, account=A2, market=M1, quantity=5),
    dict(type=REPLACE, account=A3, order_id=3, price=5900),
    new_order(A2, M1, BUY_NO, 4000, 1_000_000, FOK, flags=MARKET | BY_CASH),
    dict(type=SET_TICK, market=M1, price=1000),
    dict(type=RESOLVE, market=M2, arg=Outcome.YES),
    dict(type=SET_STATE, market=3, arg=CLOSED),
    dict(type=MERGE_PAIRS, account=A3, market=3, quantity=10),
    dict(type=RESOLVE, market=3, arg=Outcome.NO),
    new_order(A1, M1, BUY_NO, 4000, 50_000, IOC, flags=MARKET | BY_CASH),
    dict(type=WITHDRAW, account=A5, quantity=10**6),
    dict(type=ADVANCE, time=2000),
]


def busy_ledger_engine(engine_cls: Any) -> Checked:
    raw = engine_cls(max_orders=16, max_markets=4, max_accounts=8, max_positions=12)
    eng = Checked(raw, audit=True)
    eng.process(with_seq(LEDGER_SETUP, 1))
    return eng


def test_ledger_setup_is_not_trivial(engine_cls):
    """Sanity: cash reserved, positions in three markets, fees, a resolved market."""
    eng = busy_ledger_engine(engine_cls)
    state = decode_state(eng.canonical_state())
    assert state.ledger == 1
    assert state.max_positions == 12
    assert state.fees != 0
    assert eng.market(0) == market_info(0, RESOLVED, 100, outcome=Outcome.HALF)
    assert sum(len(m.positions) for m in state.markets) >= 6
    assert sum(a.reserved for a in state.accounts) > 0
    assert eng.order_count >= 5
    assert eng.market(M2).state == SUSPENDED
    assert eng.totals().net_deposits == 15_900_000


def test_ledger_restore_gives_the_same_state(engine_cls):
    """restore(snapshot()) keeps the money: balances, positions, totals, fee rates, outcome."""
    eng = busy_ledger_engine(engine_cls)
    restored = Checked(engine_cls.restore(eng.snapshot()), audit=True)
    assert_same_engine(eng, restored)


def test_ledger_restored_engine_continues_identically(engine_cls):
    """A restored ledger engine gives the same events, fees and balances on what follows."""
    eng = busy_ledger_engine(engine_cls)
    restored = Checked(engine_cls.restore(eng.snapshot()), audit=True)
    follow = with_seq(LEDGER_FOLLOW_UP, 100)
    events = event_dicts(eng.process(follow))
    assert len(events) > 30
    assert any(e.get("fee") for e in events)
    assert any(e["type"] == 11 for e in events)  # SETTLEMENT
    assert event_dicts(restored.process(follow)) == events
    assert_same_engine(eng, restored)


def test_ledger_snapshot_bytes_identical_between_implementations(both_engine_cls):
    """With the ledger, the core and the reference give the same events and bytes."""
    core_cls, reference_cls = both_engine_cls
    core, reference = busy_ledger_engine(core_cls), busy_ledger_engine(reference_cls)
    assert core.snapshot() == reference.snapshot()
    follow = with_seq(LEDGER_FOLLOW_UP, 100)
    assert event_dicts(core.process(follow)) == event_dicts(reference.process(follow))
    assert core.snapshot() == reference.snapshot()
    assert_same_engine(core, reference)


def test_ledger_snapshot_moves_between_implementations(both_engine_cls):
    """A ledger snapshot of one implementation restores in the other and goes on identically."""
    core_cls, reference_cls = both_engine_cls
    for source_cls, target_cls in ((core_cls, reference_cls), (reference_cls, core_cls)):
        source = busy_ledger_engine(source_cls)
        target = Checked(target_cls.restore(source.snapshot()), audit=True)
        assert_same_engine(source, target)
        follow = with_seq(LEDGER_FOLLOW_UP, 100)
        assert event_dicts(target.process(follow)) == event_dicts(source.process(follow))
        assert_same_engine(source, target)


def hand_built_ledger_engine(engine_cls: Any) -> Checked:
    """M1 with taker 7, maker -2 (NOTIONAL); market 3 PRE_OPEN with PQ fees.

    A1 ($1) splits 100 and offers 60 YES at 6000 (order 1); A2 ($2) bids 100 at 5000
    (order 2: R_lot 5000 + ceil(3.5) = 5004, 500_400 reserved); A3 ($0.50) buys 20 at 6000
    IOC (order 3): fee ceil(7 * 120_000 / 10_000) = 84, A1's rebate floor(24) = 24;
    A1 bids SELL_NO 30 at 4000 GTD (order 4); A3 splits 20 in market 3 (200_000).
    """
    eng = new_engine(
        engine_cls,
        ledger=True,
        markets=(M1,),
        taker_fee_bps=7,
        maker_fee_bps=-2,
        deposits={A1: 1_000_000, A2: 2_000_000, A3: 500_000},
    )
    assert eng.split(A1, M1, 100) == 0
    assert eng.submit(A1, M1, SELL_YES, 6000, 60) == 1
    assert eng.submit(A2, M1, BUY_YES, 5000, 100) == 2
    assert eng.submit(A3, M1, BUY_YES, 6000, 20, IOC) == 3
    assert eng.submit(A1, M1, SELL_NO, 4000, 30, GTD, expiry=500, time=10) == 4
    assert eng.create_market(3, 10, 20, 10, taker_fee_bps=15, fee_base=FeeBase.PQ) == 0
    assert eng.split(A3, 3, 20) == 0
    return eng


def hand_built_ledger_state() -> EngineState:
    """The state of ``hand_built_ledger_engine()``, written from the §6 layout.

    Cash: A1 120_024, A2 1_499_600 + 500_400, A3 500_000 - 120_084 - 200_000 = 179_916;
    collateral 1_000_000 + 200_000; fees 84 - 24 = 60; net deposits 3_500_000.
    """
    return EngineState(
        max_orders=64,
        max_markets=4,
        max_accounts=8,
        max_levels=4 * 2 * 999,
        max_positions=72,
        ledger=1,
        now=10,
        next_order_id=5,
        net_deposits=3_500_000,
        fees=60,
        accounts=[
            AccountSnap(A1, 120_024, 0),
            AccountSnap(A2, 1_499_600, 500_400),
            AccountSnap(A3, 179_916, 0),
        ],
        markets=[
            MarketSnap(
                M1,
                OPEN,
                100,
                taker_fee_bps=7,
                maker_fee_bps=-2,
                collateral=1_000_000,
                bids=[
                    Level(5000, [RestingOrder(2, A2, 100, BUY_YES)]),
                    Level(4000, [RestingOrder(4, A1, 30, SELL_NO, expiry=500, tif=GTD)]),
                ],
                asks=[Level(6000, [RestingOrder(1, A1, 40, SELL_YES)])],
                positions=[
                    PositionSnap(A1, 40, 40, 70, 30),
                    PositionSnap(A2),  # a resting buy: no shares, but a position
                    PositionSnap(A3, 20, 0, 0, 0),
                ],
            ),
            MarketSnap(
                3,
                PRE_OPEN,
                10,
                min_size=20,
                lot=10,
                taker_fee_bps=15,
                fee_base=FeeBase.PQ,
                collateral=200_000,
                positions=[PositionSnap(A3, 20, 0, 20, 0)],
            ),
        ],
    )


def test_ledger_canonical_state_layout(engine_cls):
    """The ledger fields are exactly where §6 puts them (header, accounts, markets, positions)."""
    eng = hand_built_ledger_engine(engine_cls)
    assert eng.canonical_state() == encode_state(hand_built_ledger_state())


def test_restore_a_hand_built_ledger_state(engine_cls):
    """restore() of ledger bytes written from the spec gives an engine that goes on from them.

    A3 sells 20 YES at 5000 into A2's bid: A3 pays ceil(7 * 100_000 / 10_000) = 70, A2 gets
    a rebate of floor(20) = 20: it releases 20 * 5004 = 100_080 and pays 99_980.
    """
    data = encode_state(hand_built_ledger_state())
    eng = Checked(engine_cls.restore(data), audit=True)
    assert eng.canonical_state() == data
    assert eng.balance(A2) == Balance(1_499_600, 500_400)
    assert eng.position(A1, M1) == Position(40, 40, 70, 30)
    assert eng.totals() == Totals(3_500_000, 60, 1_200_000)
    assert eng.market(3) == market_info(
        3, PRE_OPEN, 10, 20, 10, taker_fee_bps=15, fee_base=FeeBase.PQ, collateral=200_000
    )
    taker = Order(5, A3, M1, SELL_YES, 5000)
    o2 = Order(2, A2, M1, BUY_YES, 5000)
    assert eng.submit(A3, M1, SELL_YES, 5000, 20) == 5
    assert event_dicts(eng.last_events()) == [
        accepted(taker, 20),
        trade(taker, o2, 20, 0, 80, MatchType.COMPLEMENTARY, fee=70, maker_fee=-20),
        level(M1, Side.BID, 5000, 80, 1),
    ]
    assert eng.balance(A3) == Balance(279_846, 0)
    assert eng.balance(A2) == Balance(1_499_700, 400_320)
    assert eng.position(A3, M1) == Position(0, 0, 0, 0)
    assert eng.totals() == Totals(3_500_000, 110, 1_200_000)
    assert [p.account for p in decode_state(eng.canonical_state()).markets[0].positions] == [
        A1,
        A2,
    ]
    assert eng.split(A3, M1, 1) == 0  # the ledger is on after a restore


def test_restore_keeps_the_ledger_flag_and_max_positions(engine_cls):
    """The ledger flag and max_positions come back with the snapshot."""
    off = Checked(engine_cls.restore(new_engine(engine_cls).snapshot()))
    assert off.deposit(A1, 1) == -Reject.LEDGER_DISABLED
    eng = new_engine(engine_cls, ledger=True, max_positions=1, deposits={A1: 100_000})
    assert eng.split(A1, M1, 1) == 0
    restored = Checked(engine_cls.restore(eng.snapshot()), audit=True)
    assert restored.split(A1, M2, 1) == -Reject.CAPACITY
    assert restored.split(A1, M1, 1) == 0
    assert restored.deposit(A2, 5) == 0


def ledger_m1(state: EngineState) -> MarketSnap:
    return state.markets[0]


def shift_cash(state: EngineState, amount: int) -> None:
    """Keep conservation while changing something else: move net deposits with A1's cash."""
    state.accounts[0].free += amount
    state.net_deposits += amount


LEDGER_CORRUPTIONS = {
    "free-cash-plus-1": lambda s: setattr(s.accounts[0], "free", 120_025),
    "net-deposits-plus-1": set_attr(lambda s: s, net_deposits=3_500_001),
    "fees-plus-1": set_attr(lambda s: s, fees=61),
    "reserved-cash-off-by-1": lambda s: (
        setattr(s.accounts[1], "free", 1_499_599),
        setattr(s.accounts[1], "reserved", 500_401),
    ),
    "reserved-cash-without-fee": lambda s: (
        setattr(s.accounts[1], "free", 1_500_000),
        setattr(s.accounts[1], "reserved", 500_000),
    ),
    "reserved-cash-without-order": lambda s: (
        setattr(s.accounts[2], "free", 179_915),
        setattr(s.accounts[2], "reserved", 1),
    ),
    "negative-free-cash": lambda s: (
        setattr(s.accounts[0], "free", -1),
        setattr(s, "net_deposits", 3_500_000 - 120_025),
    ),
    "net-deposits-above-max-total-cash": lambda s: shift_cash(s, 2**62 - 3_500_000 + 1),
    "collateral-without-shares": lambda s: (
        setattr(ledger_m1(s), "collateral", 1_010_000),
        shift_cash(s, 10_000),
    ),
    "more-yes-than-no": lambda s: setattr(ledger_m1(s).positions[2], "yes_free", 21),
    "shares-without-collateral": lambda s: (
        setattr(ledger_m1(s).positions[2], "no_free", 1),
        setattr(ledger_m1(s).positions[2], "yes_free", 21),
    ),
    "reserved-yes-off": lambda s: (
        setattr(ledger_m1(s).positions[0], "yes_free", 41),
        setattr(ledger_m1(s).positions[0], "yes_reserved", 39),
    ),
    "reserved-no-without-order": lambda s: (
        setattr(s.markets[1].positions[0], "no_free", 19),
        setattr(s.markets[1].positions[0], "no_reserved", 1),
    ),
    "negative-shares": lambda s: (
        setattr(ledger_m1(s).positions[2], "yes_free", -20),
        setattr(ledger_m1(s).positions[0], "yes_free", 80),
    ),
    "position-of-unknown-account": lambda s: (
        s.markets[1].positions.append(PositionSnap(4, 1, 0, 1, 0)),
        setattr(s.markets[1], "collateral", 210_000),
        shift_cash(s, 10_000),
    ),
    "positions-not-ascending": lambda s: ledger_m1(s).positions.reverse(),
    "duplicate-position": lambda s: (
        ledger_m1(s).positions.insert(3, PositionSnap(A3, 0, 0, 0, 0)),
    ),
    "empty-position-without-order": lambda s: s.markets[1].positions.insert(0, PositionSnap(A1)),
    "no-position-for-resting-order": lambda s: ledger_m1(s).positions.pop(1),
    "more-positions-than-max": set_attr(lambda s: s, max_positions=3),
    "resolved-with-positions": set_attr(lambda s: s.markets[1], state=RESOLVED, outcome=1),
    "outcome-of-unresolved-market": set_attr(lambda s: s.markets[1], outcome=2),
    "resolved-without-outcome": lambda s: (
        setattr(s.markets[1], "state", RESOLVED),
        setattr(s.markets[1], "collateral", 0),
        s.markets[1].positions.clear(),
        setattr(s.accounts[2], "free", 379_916),
    ),
    "ledger-flag-2": set_attr(lambda s: s, ledger=2),
    "ledger-off-with-money": set_attr(lambda s: s, ledger=0),
    "maker-rebate-above-taker-fee": set_attr(ledger_m1, maker_fee_bps=-8),
}


@pytest.mark.parametrize("name", sorted(LEDGER_CORRUPTIONS))
def test_restore_of_inconsistent_ledger_state_raises(engine_cls, name):
    """A ledger snapshot no engine could have produced is rejected with ValueError."""
    valid = encode_state(hand_built_ledger_state())
    Checked(engine_cls.restore(valid), audit=True)  # the unmodified state restores fine
    state = hand_built_ledger_state()
    LEDGER_CORRUPTIONS[name](state)
    data = encode_state(state)
    assert data != valid
    with pytest.raises(ValueError):
        engine_cls.restore(data)


def test_valid_variants_of_the_hand_built_ledger_state_restore(engine_cls):
    """Controls for the corruptions: the same edits made consistently restore fine."""
    state = hand_built_ledger_state()
    state.markets[1].state = RESOLVED
    state.markets[1].outcome = Outcome.YES
    state.markets[1].collateral = 0
    state.markets[1].positions.clear()
    state.accounts[2].free += 200_000  # A3's 20 YES paid 10_000 each
    Checked(engine_cls.restore(encode_state(state)), audit=True)
    state = hand_built_ledger_state()
    shift_cash(state, 2**62 - 3_500_000)  # net deposits exactly at the limit
    state.fees = -5  # rebates above fees are possible
    state.accounts[0].free += 65
    Checked(engine_cls.restore(encode_state(state)), audit=True)


def test_ledger_restore_of_every_truncation_raises(engine_cls):
    """Any strict prefix of a ledger snapshot is malformed: ValueError."""
    data = busy_ledger_engine(engine_cls).snapshot()
    for cut in range(len(data)):
        with pytest.raises(ValueError):
            engine_cls.restore(data[:cut])
    with pytest.raises(ValueError):
        engine_cls.restore(data + b"\x00")


def test_ledger_restore_of_every_single_byte_corruption_never_crashes(engine_cls):
    """Flipping any byte of a ledger state (not a capacity) gives ValueError or a state that
    validates, passes the ledger audit and re-encodes the same."""
    data = encode_state(hand_built_ledger_state())
    for i in [*range(8), *range(28, len(data))]:
        bad = bytearray(data)
        bad[i] ^= 0x40
        try:
            eng = engine_cls.restore(bytes(bad))
        except ValueError:
            continue
        Checked(eng, audit=True)
        assert eng.canonical_state() == bytes(bad)


LEDGER_COMMAND_ROWS = st.one_of(
    COMMAND_ROWS,
    st.builds(
        lambda a, m, i, p, b, tif: new_order(a, m, i, p * 100, b, tif, flags=MARKET | BY_CASH),
        st.sampled_from([A1, A2, A3]),
        st.sampled_from([M1, M2]),
        st.sampled_from([BUY_YES, BUY_NO]),
        st.integers(40, 60),
        st.integers(1, 300_000),
        st.sampled_from([IOC, FOK]),
    ),
    st.builds(
        lambda t, a, q: dict(type=t, account=a, quantity=q),
        st.sampled_from([DEPOSIT, WITHDRAW]),
        st.sampled_from([A1, A2, A3]),
        st.integers(1, 3_000_000),
    ),
    st.builds(
        lambda t, a, m, q: dict(type=t, account=a, market=m, quantity=q),
        st.sampled_from([SPLIT, MERGE_PAIRS]),
        st.sampled_from([A1, A2, A3]),
        st.sampled_from([M1, M2]),
        st.integers(1, 60),
    ),
    st.builds(
        lambda o: dict(type=RESOLVE, market=M2, arg=o),
        st.sampled_from(list(Outcome)[1:]),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    before=st.lists(LEDGER_COMMAND_ROWS, max_size=40),
    after=st.lists(LEDGER_COMMAND_ROWS, max_size=25),
)
def test_ledger_random_round_trip(engine_cls, before, after):
    """With the ledger, after any command stream, restore(snapshot()) continues identically."""
    eng = new_engine(
        engine_cls,
        ledger=True,
        taker_fee_bps=9,
        maker_fee_bps=-3,
        fee_base=FeeBase.PQ,
        deposits={A1: 2_000_000, A2: 2_000_000, A3: 500_000},
    )
    if before:
        eng.process(make_commands([dict(row, time=i) for i, row in enumerate(before)]))
    restored = Checked(engine_cls.restore(eng.snapshot()), audit=True)
    assert restored.canonical_state() == eng.canonical_state()
    if after:
        follow = make_commands(after)
        assert event_dicts(restored.process(follow)) == event_dicts(eng.process(follow))
    assert restored.digest() == eng.digest()
