"""``process_into(commands, out)``: the batch's events written into a caller's array
(docs/matchcore.md §7). The same events and states as ``process()`` and the
reference, whether they fit in ``out`` (a view of it is returned) or spill (a new
array); the per-call events pending around it keep their semantics; a bad ``out``
changes nothing; another thread is refused while it runs. And ``process()``'s own room
(the same writing into an array it returns): outgrown, doubled, and past its cap."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import support

import matchcore as mc
from matchcore import reference, testing
from matchcore.records import make_commands

SHAPE = testing.StreamShape()
CAPACITIES = testing.engine_capacities(SHAPE)
ENGINES = [mc.Engine, reference.Engine]


class Into:
    """An engine whose ``process()`` is ``process_into()`` with reused arrays, one of
    ``rooms`` events drawn per call: a view of it when the events fit, else a new array."""

    def __init__(self, engine: Any, rooms: list[int], seed: int) -> None:
        self.engine = engine
        self.outs = [np.zeros(room, dtype=mc.EVENT_DTYPE) for room in rooms]
        self.rng = random.Random(seed)
        self.views = self.spills = 0

    def process(self, commands: np.ndarray) -> np.ndarray:
        out = self.rng.choice(self.outs)
        events = self.engine.process_into(commands, out)
        if len(events) <= len(out):
            assert np.shares_memory(events, out) or len(events) == 0
            self.views += 1
        else:
            assert not np.shares_memory(events, out)
            self.spills += 1
        return events.copy()  # the next call writes over out

    def canonical_state(self) -> bytes:
        return bytes(self.engine.canonical_state())

    def validate(self) -> None:
        self.engine.validate()


@pytest.mark.parametrize("seed", range(4))
def test_matches_the_reference(seed: int) -> None:
    """Every event and the state after every chunk, against the reference; the chunks'
    events (100 commands, about 150 events) sometimes fit in out, sometimes spill."""
    core = Into(mc.Engine(**CAPACITIES), [0, 1, 64, 150, 1000], seed)
    ref = reference.Engine(**CAPACITIES)
    commands = testing.random_stream(seed, 10_000, SHAPE)
    difference = testing.first_difference(core, ref, commands, chunk=100, validate_every=10)
    assert difference is None, f"seed {seed}: {difference}"
    assert core.views and core.spills
    assert core.engine.digest() == ref.digest()


@pytest.mark.parametrize(
    "shape",
    [SHAPE, testing.StreamShape(ledger=False), testing.StreamShape(markets=1, spread_ticks=2)],
    ids=["ledger", "no-ledger", "one-market"],
)
def test_matches_process_on_long_streams(shape: testing.StreamShape) -> None:
    """200,000 commands in chunks of random size (1 .. 3,000), the same events as
    ``process()`` chunk by chunk, into arrays of random size (0 .. 6,000 events)."""
    capacities = testing.engine_capacities(shape)
    rng = random.Random(7)
    commands = testing.random_stream(11, 200_000, shape)
    plain, into = mc.Engine(**capacities), mc.Engine(**capacities)
    outs = [np.zeros(n, dtype=mc.EVENT_DTYPE) for n in (0, 1, 10, 500, 2_000, 6_000)]
    start = fits = chunks = 0
    while start < len(commands):
        stop = min(len(commands), start + rng.randint(1, 3_000))
        want = plain.process(commands[start:stop])
        out = rng.choice(outs)
        got = into.process_into(commands[start:stop], out)
        assert np.array_equal(got, want), f"commands {start}..{stop}"
        fits += len(want) <= len(out)
        chunks += 1
        start = stop
    assert 0 < fits < chunks  # some fit, some spill
    assert into.digest() == plain.digest()
    into.validate()


@pytest.mark.parametrize("engine_cls", ENGINES, ids=["core", "reference"])
def test_the_view_and_its_edges(engine_cls: type) -> None:
    """Exactly n events fit (a view of all of out); n - 1 spill; an empty batch or
    an empty out work; the events are those of process() either way."""
    commands = testing.random_stream(3, 400, SHAPE)
    twin = engine_cls(**CAPACITIES)
    want = twin.process(commands)
    n = len(want)
    for room in (n + 5, n, n - 1, 0):
        engine = engine_cls(**CAPACITIES)
        out = np.zeros(room, dtype=mc.EVENT_DTYPE)
        got = engine.process_into(commands, out)
        assert np.array_equal(got, want), room
        assert np.shares_memory(got, out) == (room >= n), room
        assert engine.digest() == twin.digest()
        assert len(engine.process_into(commands[:0], out)) == 0
    assert len(mc.Engine(**CAPACITIES).process_into(commands[:0], out[:0])) == 0


def _opened(engine_cls: type, **kwargs: Any) -> Any:
    engine = engine_cls(max_orders=64, max_markets=2, max_accounts=2, **kwargs)
    engine.create_market(1, 100)
    engine.set_market_state(1, mc.MarketState.OPEN)
    engine.add_account(1)
    engine.deposit(1, 10**12)
    return engine


def _rejects(n: int) -> np.ndarray:
    """n cancels of an order that never was: one REJECTED event each."""
    commands = np.zeros(n, dtype=mc.COMMAND_DTYPE)
    commands["type"] = mc.CommandType.CANCEL
    commands["account"] = 1
    commands["order_id"] = 10**12
    return commands


@pytest.mark.parametrize("engine_cls", ENGINES, ids=["core", "reference"])
@pytest.mark.parametrize("room", [0, 3, 1000])
def test_pending_per_call_events_around_it(engine_cls: type, room: int) -> None:
    """Per-call events pending before a process_into() stay pending, last_events() is
    still the last per-call method's, and the batch's events are not added to them;
    as with process()."""
    for run in ("process", "process_into"):
        engine = _opened(engine_cls)
        order_id = engine.submit(1, 1, mc.Intent.BUY_YES, 3000, 10)
        before, last = engine.pending_events, engine.last_events()
        bid = {"account": 1, "market": 1, "intent": mc.Intent.BUY_YES, "price": 4000}
        batch = make_commands(  # a bid that rests, then its cancel
            [
                {"type": "NEW_ORDER", "quantity": 10, **bid},
                {"type": "CANCEL", "account": 1, "order_id": engine.next_order_id},
            ]
        )
        if run == "process":
            events = engine.process(batch)
        else:
            events = engine.process_into(batch, np.zeros(room, dtype=mc.EVENT_DTYPE))
        assert list(events["type"]) == [
            mc.EventType.ACCEPTED,
            mc.EventType.LEVEL,
            mc.EventType.CANCELED,
            mc.EventType.LEVEL,
        ]
        assert engine.pending_events == before
        assert np.array_equal(engine.last_events(), last)
        assert engine.cancel(1, order_id) == 0
        canceled = engine.last_events()
        drained = engine.drain_events()
        assert len(drained) == before + len(canceled)
        assert np.array_equal(drained[before:], canceled)
        if run == "process":
            want = drained
        else:
            assert np.array_equal(drained, want)


def test_a_spill_after_many_pending_events_grows_the_buffer() -> None:
    """The buffer reserves 65,536 events: with 60,000 per-call events pending, a batch of
    8,000 events that spills from a small out grows it; nothing pending or of the
    batch is lost."""
    engine = _opened(mc.Engine, max_pending_events=100_000)
    twin = _opened(mc.Engine, max_pending_events=100_000)
    for e in (engine, twin):
        while e.pending_events < 60_000:
            e.cancel(1, e.submit(1, 1, mc.Intent.BUY_YES, 4000, 10))
    assert engine.pending_events <= 65_536 < engine.pending_events + 8_000
    batch = _rejects(8_000)
    got = engine.process_into(batch, np.zeros(100, dtype=mc.EVENT_DTYPE))
    assert np.array_equal(got, twin.process(batch))
    assert len(got) == 8_000
    assert np.array_equal(engine.drain_events(), twin.drain_events())
    assert engine.digest() == twin.digest()


def _bad_outs(commands: np.ndarray) -> list[tuple[object, type[Exception], str]]:
    room = np.zeros(64, dtype=mc.EVENT_DTYPE)
    readonly = room.copy()
    readonly.flags.writeable = False
    unaligned = np.frombuffer(bytearray(96 * 8 + 4), dtype=mc.EVENT_DTYPE, offset=4, count=8)
    shared = commands.view(np.uint8)[: 96 * (commands.nbytes // 96)].view(mc.EVENT_DTYPE)
    return [
        (None, TypeError, "numpy array"),
        ([], TypeError, "numpy array"),
        (bytearray(96 * 8), TypeError, "numpy array"),
        (np.zeros(8, dtype=mc.COMMAND_DTYPE), TypeError, "EVENT_DTYPE"),
        (np.zeros(8, dtype=np.float64), TypeError, "EVENT_DTYPE"),
        (np.zeros((2, 8), dtype=mc.EVENT_DTYPE), ValueError, "one-dimensional"),
        (room[::2], ValueError, "C-contiguous"),
        (readonly, ValueError, "writeable"),
        (unaligned, ValueError, "aligned"),
        (shared, ValueError, "share memory"),
        (shared[-1:], ValueError, "share memory"),
    ]


@pytest.mark.parametrize("engine_cls", ENGINES, ids=["core", "reference"])
def test_a_bad_out_changes_nothing(engine_cls: type) -> None:
    """Each bad out: a TypeError or ValueError naming ``out``, raised before anything
    runs (the state, the pending events and the id counter as they were)."""
    engine = _opened(engine_cls)
    engine.submit(1, 1, mc.Intent.BUY_YES, 3000, 10)
    commands = _rejects(10)
    state, pending, next_id = engine.digest(), engine.pending_events, engine.next_order_id
    for out, error, words in _bad_outs(commands):
        with pytest.raises(error, match=words) as raised:
            engine.process_into(commands, out)
        assert "out" in str(raised.value)
        assert engine.digest() == state
        assert engine.pending_events == pending
        assert engine.next_order_id == next_id
    with pytest.raises(TypeError):  # the commands are checked as process() checks them
        engine.process_into(np.zeros(2, dtype=mc.EVENT_DTYPE), np.zeros(8, dtype=mc.EVENT_DTYPE))
    assert engine.digest() == state
    assert len(engine.process_into(commands, np.zeros(100, dtype=mc.EVENT_DTYPE))) == 10


def test_strided_commands_beside_out_run() -> None:
    """Strided commands are copied first (as process() does); out beside them is fine."""
    commands = _rejects(20)
    engine, twin = _opened(mc.Engine), _opened(mc.Engine)
    out = np.zeros(50, dtype=mc.EVENT_DTYPE)
    assert np.array_equal(engine.process_into(commands[::2], out), twin.process(commands[::2]))
    assert engine.digest() == twin.digest()


@pytest.mark.parametrize("mode", ["--into", "--spill"])
def test_every_method_against_a_running_process_into(mode: str) -> None:
    """batch_race_child.py with the batch run by process_into() (its events fit in out,
    or spill halfway): every other method refuses or reads only fixed state, and nothing
    is lost or changed. In a child process: a crash fails this test only."""
    child = Path(__file__).with_name("batch_race_child.py")
    result = subprocess.run(
        [sys.executable, str(child), mode],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    ran = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("run ")]
    assert result.returncode == 0, (
        f"exit status {result.returncode} in {ran[-1] if ran else 'the setup'}:\n"
        f"{result.stderr[-3000:]}"
    )


def test_process_room_outgrown_then_doubled() -> None:
    """process() writes a batch's events into a room of 4 a command that it returns
    (docs/matchcore.md §7): sweeps of ~60 events a command outgrow it (the rest go on
    in the core's buffer) and the next batch has a doubled room; every batch gives
    the reference's events."""
    engines = [support.new_engine(cls, max_orders=4_096) for cls in ENGINES]
    sell = support.new_order(support.A2, support.M1, mc.Intent.SELL_YES, 5_000, 1)
    buy = support.new_order(support.A1, support.M1, mc.Intent.BUY_YES, 5_000, 30)
    rest = make_commands([sell] * 3_000)  # one event each: fits its room
    take = make_commands([buy] * 50)  # 30 fills each
    for batch in (rest, take, take):
        core, ref = (engine.process(batch) for engine in engines)
        assert np.array_equal(core, ref)
    assert len(core) > 8 * len(take)  # past the doubled room too
    assert engines[0].digest() == engines[1].digest()


def test_process_past_its_largest_room() -> None:
    """A call whose room would pass 2^22 events (over a million commands) is copied
    out of the core's buffer: the events of the same commands in chunks."""
    commands = _rejects(1_100_000)
    one, chunked = _opened(mc.Engine), _opened(mc.Engine)
    got = one.process(commands)
    parts = [chunked.process(commands[i : i + 8_192]) for i in range(0, len(commands), 8_192)]
    assert len(got) == len(commands)
    assert np.array_equal(got, np.concatenate(parts))
