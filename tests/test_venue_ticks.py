"""The venue's ticks and price bounds (docs/matchcore.md §1, §4; spec §3.6) on both engines:
$0.005 (50) and $0.0025 (25) beside 1, 10, 100 and 1000, tick changes between them (DESIGN.md:
a finer tick that divides the old one moves nothing; otherwise the orders off the new grid go),
and per-market price bounds such as the venue's 0.01 .. 0.99.
"""

from __future__ import annotations

import struct

import pytest
from support import (
    A1,
    A2,
    A3,
    CREATE,
    M1,
    SET_TICK,
    Order,
    accepted,
    canceled,
    last,
    level,
    market_event,
    new_engine,
    rejected,
    run,
)

from matchcore import TICKS, CancelReason, Intent, MarketState, Reject, Side

BUY_YES, SELL_YES, BUY_NO, SELL_NO = Intent
BID, ASK = Side.BID, Side.ASK
OPEN = MarketState.OPEN


def rest(eng, account, intent, price, quantity) -> Order:
    order_id = eng.submit(account, M1, intent, price, quantity)
    assert order_id > 0, order_id
    order = Order(order_id, account, M1, intent, price)
    assert last(eng)[0] == accepted(order, quantity)
    return order


def test_ticks():
    assert TICKS == (1, 10, 25, 50, 100, 1000)


@pytest.mark.parametrize(
    "tick, good, bad",
    [
        (50, [50, 100, 4950, 9950], [25, 75, 10, 0, 10_000, 9975]),
        (25, [25, 50, 75, 9975], [10, 30, 0, 10_000, 9990]),
    ],
)
def test_prices_on_the_half_and_quarter_cent_grid(engine_cls, tick, good, bad):
    """Prices are multiples of the tick within tick .. 10_000 - tick."""
    eng = new_engine(engine_cls, markets=(M1,), tick=tick, max_levels=2 * 9999)
    assert eng.market(M1).tick == tick
    for price in good:
        assert eng.submit(A1, M1, BUY_YES, price, 1) > 0, price
    for price in bad:
        assert eng.submit(A1, M1, BUY_YES, price, 1) == -Reject.INVALID_PRICE, price
    assert len(eng.book(M1)[0]) == len(good)


def test_finer_venue_ticks_move_nothing(engine_cls):
    """0.01 -> 0.005 -> 0.0025: each divides the one before, nothing is canceled, and the
    new prices are accepted."""
    eng = new_engine(engine_cls, markets=(M1,), tick=100, max_levels=2 * 9999)
    rest(eng, A1, BUY_YES, 5000, 10)
    rest(eng, A2, SELL_YES, 5100, 10)
    for tick in (50, 25):
        assert eng.set_tick(M1, tick) == 0
        assert last(eng) == [market_event(M1, OPEN, tick=tick, command=SET_TICK)]
    assert eng.book(M1)[0].tolist() == [(5000, 1, 10)]
    rest(eng, A3, BUY_YES, 5025, 5)
    assert eng.book(M1)[0].tolist() == [(5025, 1, 5), (5000, 1, 10)]


def test_coarser_venue_tick_cancels_off_grid(engine_cls):
    """0.0025 -> 0.005: the orders at 0.5025 and 0.5175 go (TICK_CHANGE), bids then asks, best
    first; those at 0.505 and 0.52 stay."""
    eng = new_engine(engine_cls, markets=(M1,), tick=25, max_levels=2 * 9999)
    bid_off = rest(eng, A1, BUY_YES, 5025, 10)
    rest(eng, A2, SELL_NO, 5050, 10)
    ask_off = rest(eng, A3, SELL_YES, 5175, 10)
    rest(eng, A1, BUY_NO, 5200, 10)
    assert eng.set_tick(M1, 50) == 0

    def c(order):
        return canceled(order, 10, CancelReason.TICK_CHANGE, command=SET_TICK)

    assert last(eng) == [
        market_event(M1, OPEN, tick=50, command=SET_TICK),
        c(bid_off),
        level(M1, BID, 5025, 0, 0, command=SET_TICK),
        c(ask_off),
        level(M1, ASK, 5175, 0, 0, command=SET_TICK),
    ]
    assert eng.book(M1)[0].tolist() == [(5050, 1, 10)]
    assert eng.book(M1)[1].tolist() == [(5200, 1, 10)]


@pytest.mark.parametrize(
    "old, new, prices, kept",
    [
        (25, 10, [5025, 5050, 4975], [5050]),  # 0.0025 -> 0.001: 25 does not divide 10
        (10, 25, [5010, 5050, 5030], [5050]),  # 0.001 -> 0.0025
        (50, 1, [5050, 5000], [5050, 5000]),  # finer and dividing: nothing moves
        (1000, 25, [5000, 4000], [5000, 4000]),
    ],
)
def test_ticks_that_do_not_divide_each_other(engine_cls, old, new, prices, kept):
    """Whatever the two ticks, exactly the resting orders off the new grid are canceled."""
    eng = new_engine(engine_cls, markets=(M1,), tick=old, max_levels=2 * 9999)
    orders = [rest(eng, A1, BUY_YES, price, 10) for price in prices]
    assert eng.set_tick(M1, new) == 0
    gone = [e["order_id"] for e in last(eng) if e["type"] == 4]
    best_first = sorted(orders, key=lambda o: -o.price)
    assert gone == [o.order_id for o in best_first if o.price not in kept]
    assert sorted(p for p, _, _ in eng.book(M1)[0].tolist()) == sorted(kept)


# ---------------------------------------------------------------- price bounds

VENUE_BOUNDS = dict(min_price=100, max_price=9_900)  # the venue's 0.01 .. 0.99


def bounded_engine(engine_cls, tick, **bounds):
    eng = new_engine(engine_cls, markets=(), max_levels=2 * 9999)
    assert eng.create_market(M1, tick, **bounds) == 0
    assert eng.set_market_state(M1, OPEN) == 0
    eng.drain_events()
    return eng


@pytest.mark.parametrize("tick", [25, 50, 100])
def test_venue_bounds_on_every_venue_tick(engine_cls, tick):
    """0.01 .. 0.99 on the venue's ticks: 0.005 / 0.0025 and 0.995 / 0.9975 are out."""
    eng = bounded_engine(engine_cls, tick, **VENUE_BOUNDS)
    info = eng.market(M1)
    assert (info.tick, info.min_price, info.max_price) == (tick, 100, 9_900)
    for price in (100, 9_900, 5_000 + tick):
        assert eng.submit(A1, M1, BUY_YES, price, 1) > 0, price
    for price in (tick, 100 - tick, 9_900 + tick, 10_000 - tick):
        if not 100 <= price <= 9_900:  # on the grid, inside the tick's bounds, outside these
            assert eng.submit(A1, M1, SELL_YES, price, 1) == -Reject.INVALID_PRICE, price
    order_id = eng.submit(A2, M1, BUY_YES, 4_000, 1)
    assert eng.replace(A2, order_id, price=9_900 + tick) == -Reject.INVALID_PRICE
    assert eng.replace(A2, order_id, price=9_900) == 0


@pytest.mark.parametrize(
    "bounds", [dict(max_price=6_000), dict(min_price=3_000, max_price=3_000), dict(min_price=25)]
)
def test_one_sided_and_single_price_bounds(engine_cls, bounds):
    eng = bounded_engine(engine_cls, 25, **bounds)
    low, high = bounds.get("min_price", 25), bounds.get("max_price", 9_975)
    assert eng.submit(A1, M1, BUY_YES, low, 1) > 0
    assert eng.submit(A1, M1, BUY_YES, high, 1) > 0
    assert eng.submit(A1, M1, BUY_YES, low - 25, 1) == -Reject.INVALID_PRICE
    assert eng.submit(A1, M1, BUY_YES, high + 25, 1) == -Reject.INVALID_PRICE


@pytest.mark.parametrize(
    "expiry",
    [10_001, 10_001 << 32, 7_000 | 3_000 << 32, -1, 2**63 - 1],
    ids=["low-above-1", "high-above-1", "low-above-high", "minus-1", "int64-max"],
)
def test_bad_bounds_rejected(engine_cls, expiry):
    """Bounds above 10_000 or a low one above the high one: INVALID_PRICE, nothing created."""
    eng = new_engine(engine_cls, markets=())
    before = eng.digest()
    row = dict(type=CREATE, market=M1, price=100, quantity=1, aux=1, expiry=expiry, seq=1)
    assert run(eng, [row]) == [rejected(Reject.INVALID_PRICE, market=M1, command=CREATE, seq=1)]
    assert eng.digest() == before and eng.market(M1) is None


@pytest.mark.parametrize("bounds", [dict(min_price=-1), dict(max_price=2**32)])
def test_bounds_out_of_uint32_raise(engine_cls, bounds):
    eng = new_engine(engine_cls, markets=())
    with pytest.raises(OverflowError):
        eng.create_market(M1, 100, **bounds)


def test_tick_changes_keep_the_bounds(engine_cls):
    """0.01 -> 0.1 cancels the order at 0.99 (off grid), the lowest price is then 0.1; back to
    0.0025, the bounds 0.01 .. 0.99 still rule out 0.0025 and 0.9925."""
    eng = bounded_engine(engine_cls, 100, **VENUE_BOUNDS)
    off = rest(eng, A1, BUY_YES, 9_900, 1)
    rest(eng, A1, BUY_YES, 5_000, 1)
    assert eng.set_tick(M1, 1000) == 0
    assert [e["order_id"] for e in last(eng) if e["type"] == 4] == [off.order_id]
    assert eng.submit(A1, M1, BUY_YES, 1_000, 1) > 0
    assert eng.set_tick(M1, 25) == 0
    assert eng.submit(A1, M1, BUY_YES, 25, 1) == -Reject.INVALID_PRICE
    assert eng.submit(A1, M1, BUY_YES, 9_925, 1) == -Reject.INVALID_PRICE
    assert eng.submit(A1, M1, BUY_YES, 125, 1) > 0


def test_bounds_in_snapshots_and_format_3(engine_cls):
    """The bounds are state: a snapshot (format 4) keeps them; a format 3 snapshot (no bounds in
    its market records) restores as a market without bounds."""
    eng = bounded_engine(engine_cls, 50, **VENUE_BOUNDS)
    rest(eng, A1, BUY_YES, 5_000, 1)
    data = eng.snapshot()
    assert data[:8] == b"MCSTATE\x04"
    restored = engine_cls.restore(data)
    assert restored.market(M1) == eng.market(M1)
    assert restored.submit(A2, M1, BUY_YES, 50, 1) == -Reject.INVALID_PRICE

    plain = bounded_engine(engine_cls, 50)
    state = plain.snapshot()
    header = struct.calcsize("<8sIIIIIBqQqq")
    accounts = 4 + 3 * struct.calcsize("<Iqq")  # A1, A2, A3
    end = header + accounts + 4 + struct.calcsize("<IBiqqhhBBq")
    assert state[end : end + 8] == bytes(8)
    v3 = b"MCSTATE\x03" + state[8:end] + state[end + 8 :]
    old = engine_cls.restore(v3)
    assert old.snapshot() == state and old.market(M1) == plain.market(M1)
    assert old.submit(A1, M1, BUY_YES, 50, 1) > 0


# ------------------------------------------- venue markets, through the SDK


def test_venue_markets_keep_their_bounds_across_a_kill_9(tmp_path) -> None:
    """A catalogue market on a $0.005 tick trades 0.01 .. 0.99 (the venue's bounds, its
    default: 0.005 and 0.995 are REJECTED PRICE_OUT_OF_BOUNDS), one with ``""`` bounds the
    core's 0.005 .. 0.995, one created by gRPC admin CreateMarket its own; the catalogue
    file keeps the bounds and the engine has them again after a kill -9."""
    import asyncio
    import json

    from venue_support import VenueServer

    from pyexchange.api.grpc.client import ExchangeClient

    rules = {"tick": "0.005", "min_size": "1", "lot": "1"}
    spec = {
        "markets": [
            {"market": 20, "slug": "half-cent", "create": rules},
            {
                "market": 21,
                "slug": "half-cent-unbounded",
                "create": {**rules, "min_price": "", "max_price": ""},
            },
        ]
    }
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(spec))
    server = VenueServer(tmp_path / "data", fsync="batch", catalogue_file=str(path)).start()

    async def create_by_admin() -> None:
        admin = server.keys["admin"]
        async with ExchangeClient(server.grpc_target, admin["key_id"], admin["secret"]) as c:
            created = await c.create_market(
                22, "0.005", min_size="1", lot="1", min_price="0.05", max_price="0.95"
            )
            assert created.ok, created
            assert (await c.set_market_state(22, "OPEN")).ok
            refused = await c.create_market(23, "0.01", min_price="0.6", max_price="0.4")
            raise AssertionError(refused)

    def shown(client, slug: str, price: str) -> str:
        reply = client.orders.create(
            {
                "marketSlug": slug,
                "intent": "ORDER_INTENT_BUY_LONG",
                "type": "ORDER_TYPE_LIMIT",
                "price": {"value": price, "currency": "USD"},
                "quantity": 1,
                "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
                "synchronousExecution": True,
                "maxBlockTime": 0,  # what it did at once: NEW (resting) or REJECTED
            }
        )
        last = reply["executions"][-1]
        return last.get("orderRejectReason", "").removeprefix("ORD_REJECT_REASON_") or last[
            "order"
        ]["state"].removeprefix("ORDER_STATE_")

    try:
        saved = {m["slug"]: m["create"] for m in json.loads(
            (tmp_path / "data" / "catalogue.json").read_text()
        )["markets"] if "create" in m}  # fmt: skip
        assert (saved["half-cent"]["min_price"], saved["half-cent"]["max_price"]) == (
            "0.01",
            "0.99",
        )
        assert saved["half-cent-unbounded"]["min_price"] == ""
        with pytest.raises(Exception, match="min_price is above max_price"):
            asyncio.run(create_by_admin())
        out, inside = "PRICE_OUT_OF_BOUNDS", "NEW"
        expected = {
            "half-cent": {"0.005": out, "0.995": out, "0.01": inside, "0.015": inside,
                          "0.985": inside, "0.99": inside},
            "half-cent-unbounded": {"0.005": inside, "0.995": inside},
            "market-22": {"0.045": out, "0.955": out, "0.05": inside, "0.95": inside},
        }  # fmt: skip
        for _ in range(2):  # then again after a kill -9 (the bounds come back from the journal)
            alice = server.client("pm-trader-1")
            got = {
                slug: {price: shown(alice, slug, price) for price in prices}
                for slug, prices in expected.items()
            }
            assert got == expected
            server.kill()
            server.start()
    finally:
        server.stop()
