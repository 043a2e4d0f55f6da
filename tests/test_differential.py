"""The C++ core against the pure-Python reference on long seeded random streams.

Every event of every command and the canonical state after every chunk must be
identical, and ``validate()`` (conservation of cash and shares included) must
hold on both engines throughout. Across the seeds below CI runs 1,000,000
random commands with the ledger on (funded and nearly broke accounts, fees,
deposits, withdrawals, splits, merges, resolutions, all order types, several
markets, prices clustered around the touch so that books cross often), and
more with the ledger off, wide books and heavy ledger traffic.
"""

from __future__ import annotations

import numpy as np
import pytest

import matchcore as mc
from matchcore import reference, testing

SHAPE = testing.StreamShape()
CAPACITIES = testing.engine_capacities(SHAPE)
LONG_SEEDS = range(50)
LONG_COMMANDS = 20_000  # 50 seeds x 20,000 = 1,000,000 commands


@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_core_matches_reference(seed: int) -> None:
    """Events per 100 commands and the state after them agree; the core's validate()
    (conservation included) after every command, the reference's every 500."""
    commands = testing.random_stream(seed, LONG_COMMANDS, SHAPE)
    core, ref = mc.Engine(**CAPACITIES), reference.Engine(**CAPACITIES)
    difference = testing.first_difference(
        core, ref, commands, chunk=100, validate_every=5, validate_left_each_command=True
    )
    assert difference is None, f"seed {seed}: {difference}"
    assert core.digest() == ref.digest()


RESTING = 1 << 16  # engine.hpp PREFETCH_ORDERS


def _resting_book(shape: testing.StreamShape, count: int) -> np.ndarray:
    """An account and a market of their own (the ids past the stream's) holding
    ``count`` resting bids at the lowest price, where the stream's orders never go."""
    account, market = shape.accounts, shape.markets
    out = np.zeros(count + 4, dtype=mc.COMMAND_DTYPE)
    head = out[:4]
    head["type"] = [
        mc.CommandType.ADD_ACCOUNT,
        mc.CommandType.CREATE_MARKET,
        mc.CommandType.SET_MARKET_STATE,
        mc.CommandType.DEPOSIT,
    ]
    head["account"], head["market"] = account, market
    head["price"][1], head["quantity"][1], head["aux"][1] = 100, 1, 1  # tick, min size, lot
    head["arg"][2] = mc.MarketState.OPEN
    head["quantity"][3] = 10**12
    if not shape.ledger:
        out = np.delete(out, 3)
    orders = out[-count:]
    orders["type"], orders["account"], orders["market"] = mc.CommandType.NEW_ORDER, account, market
    orders["intent"], orders["price"], orders["quantity"] = mc.Intent.BUY_YES, 100, 1
    out["seq"] = np.arange(1, len(out) + 1)
    return out


@pytest.mark.parametrize("seed", range(2000, 2002))
def test_prefetching_engine_matches_reference(seed: int) -> None:
    """An engine whose tables pass 256 MiB and that holds 2**16 resting orders
    prefetches the next commands' state in process() (engine.hpp, PREFETCH_BYTES,
    PREFETCH_ORDERS); a large level arena and a book of its own get it there: the
    same events and states as ever."""
    capacities = dict(
        CAPACITIES,
        max_levels=1 << 24,
        max_orders=CAPACITIES["max_orders"] + RESTING,
        max_positions=CAPACITIES["max_positions"] + 1,
    )
    core, ref = mc.Engine(**capacities), reference.Engine(**capacities)
    tables = core.memory()
    assert sum(v for k, v in tables.items() if k != "order_slot") >= 256 << 20
    book = _resting_book(SHAPE, RESTING)
    assert np.array_equal(core.process(book), ref.process(book))
    assert len(core.orders_of(SHAPE.accounts)) == RESTING
    commands = testing.random_stream(seed, 5_000, SHAPE)
    difference = testing.first_difference(core, ref, commands, chunk=100, validate_every=5)
    assert difference is None, f"seed {seed}: {difference}"
    assert core.digest() == ref.digest()


@pytest.mark.parametrize("seed", range(1000, 1003))
def test_validate_after_every_command(seed: int) -> None:
    """Invariants hold after every single command, on both engines."""
    commands = testing.random_stream(seed, 3_000, SHAPE)
    core, ref = mc.Engine(**CAPACITIES), reference.Engine(**CAPACITIES)
    difference = testing.first_difference(core, ref, commands, chunk=1, validate_every=1)
    assert difference is None, f"seed {seed}: {difference}"


OTHER_SHAPES = {
    "matching only": (testing.StreamShape(ledger=False), {}),
    "wide books, many accounts": (
        testing.StreamShape(markets=4, accounts=40, spread_ticks=25, admin_rate=0.03),
        {"max_orders": 400, "max_positions": 200},
    ),
    "heavy ledger traffic and closes": (
        testing.StreamShape(ledger_rate=0.2, close_rate=0.05),
        {},
    ),
}


@pytest.mark.parametrize("seed", range(4000, 4100))
def test_opening_auctions(seed: int) -> None:
    """Many short streams whose markets all collect orders in PRE_OPEN (crossed books, self
    matches, every fee base) and open with their auction a few hundred commands in."""
    shape = testing.StreamShape(auction_rate=1.0, markets=2, accounts=4)
    capacities = testing.engine_capacities(shape)
    commands = testing.random_stream(seed, 600, shape)
    core, ref = mc.Engine(**capacities), reference.Engine(**capacities)
    difference = testing.first_difference(core, ref, commands, chunk=1, validate_every=1)
    assert difference is None, f"seed {seed}: {difference}"


@pytest.mark.parametrize("seed", range(2000, 2006))
@pytest.mark.parametrize("name", list(OTHER_SHAPES))
def test_other_stream_shapes(name: str, seed: int) -> None:
    """Without the ledger; deeper books with fewer self-trades; many ledger commands."""
    shape, overrides = OTHER_SHAPES[name]
    capacities = testing.engine_capacities(shape) | overrides
    commands = testing.random_stream(seed, 20_000, shape)
    core, ref = mc.Engine(**capacities), reference.Engine(**capacities)
    difference = testing.first_difference(core, ref, commands, chunk=200, validate_every=5)
    assert difference is None, f"{name}, seed {seed}: {difference}"


def test_streams_cover_every_event_reject_and_cancel_reason() -> None:
    """The generator really exercises the rules (a stream of rejects would prove little)."""
    # Closes and resolutions stop trading in a market: one stream of each kind.
    closing = testing.StreamShape(close_rate=0.05, ledger_rate=0.2)
    events = np.concatenate(
        [
            mc.Engine(**CAPACITIES).process(testing.random_stream(8, 20_000, shape))
            for shape in (SHAPE, closing)
        ]
    )
    seen_events = set(events["type"].tolist())
    assert seen_events == {e.value for e in mc.EventType}
    rejects = set(events["reason"][events["type"] == mc.EventType.REJECTED].tolist())
    # INVALID_FEE, INVALID_OUTCOME and LEDGER_DISABLED are covered by the rule tests.
    rare = {mc.Reject.INVALID_FEE, mc.Reject.INVALID_OUTCOME, mc.Reject.LEDGER_DISABLED}
    assert rejects >= {r.value for r in mc.Reject} - rare
    cancels = set(events["reason"][events["type"] == mc.EventType.CANCELED].tolist())
    assert cancels == {c.value for c in mc.CancelReason}
    matches = set(events["match_type"][events["type"] == mc.EventType.TRADE].tolist())
    assert matches == {mc.MatchType.COMPLEMENTARY, mc.MatchType.MINT, mc.MatchType.MERGE}
    trades = events[events["type"] == mc.EventType.TRADE]
    assert (trades["flags"] & mc.OrderFlags.BY_CASH).any()
    assert len(trades) > 1_000
    # The venue's states: opening auctions trade, halts refuse cancels, expiries.
    auction = events[events["command"] == mc.CommandType.SET_MARKET_STATE]
    assert (auction["type"] == mc.EventType.TRADE).any()
    assert mc.Reject.NOT_IN_AUCTION in rejects
    assert (
        (events["command"] == mc.CommandType.CANCEL)
        & (events["reason"] == mc.Reject.MARKET_NOT_OPEN)
        & (events["type"] == mc.EventType.REJECTED)
    ).any()
    # Fees and rebates are drawn; the venue's schedule too: its fees are whole cents, and
    # its taker cap lowers some fills below their own rounding.
    capped = charged = rebated = 0
    for seed in (3, 16, 25):  # streams with venue markets whose cap bites
        stream = testing.random_stream(seed, 20_000, SHAPE)
        created = stream[stream["type"] == mc.CommandType.CREATE_MARKET][: SHAPE.markets]
        taker_bps = {int(c["market"]): int(c["taker_fee_bps"]) for c in created
                     if c["fee_base"] == mc.FeeBase.PQ_CENTS}  # fmt: skip
        out = mc.Engine(**CAPACITIES).process(stream)
        fills = out[out["type"] == mc.EventType.TRADE]
        charged += int((fills["fee"] != 0).sum())
        rebated += int((fills["maker_fee"] < 0).sum())
        venue = out[(out["type"] == mc.EventType.TRADE) & np.isin(out["market"], list(taker_bps))]
        assert not (venue["fee"] % 10_000).any() and not (venue["maker_fee"] % 10_000).any()
        for fill in venue:
            p, q = int(fill["price"]), int(fill["quantity"])
            own = reference._cents(taker_bps[int(fill["market"])] * p * (10_000 - p) * q) * 10_000
            assert 0 <= fill["fee"] <= own
            capped += int(fill["fee"]) < own
    assert capped and charged and rebated


@pytest.mark.parametrize("seed", range(3000, 3003))
def test_restore_mid_stream_continues_identically(seed: int) -> None:
    """Snapshots taken mid-stream restore into either engine and continue identically."""
    commands = testing.random_stream(seed, 6_000, SHAPE)
    original = mc.Engine(**CAPACITIES)
    for cut in (1_500, 3_000, 4_500):
        original.process(commands[:cut] if cut == 1_500 else commands[cut - 1_500 : cut])
        snapshot = original.snapshot()
        rest = commands[cut:]
        expected = mc.Engine.restore(snapshot).process(rest)
        for restored in (mc.Engine.restore(snapshot), reference.Engine.restore(snapshot)):
            assert restored.snapshot() == snapshot
            assert np.array_equal(restored.process(rest), expected)
