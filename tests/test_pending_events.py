"""The bounded per-call event buffer: max_pending_events, dropped_events (docs/matchcore.md §7)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, CommandType, Intent, MarketState, Reject
from matchcore.codes import DEFAULT_MAX_PENDING_EVENTS, MAX_PENDING_EVENTS

M, A = 1, 1


def opened(engine_cls: Any, **kwargs: Any) -> Any:
    """One OPEN market at tick 100, one funded account, nothing pending."""
    engine = engine_cls(max_orders=64, max_markets=4, max_accounts=4, **kwargs)
    engine.create_market(M, 100)
    engine.set_market_state(M, MarketState.OPEN)
    engine.add_account(A)
    engine.deposit(A, 10**12)
    engine.drain_events()
    return engine


class Recorder:
    """Runs per-call methods and keeps every event they made, from ``last_events()``."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.all: list[np.ndarray] = []
        self.last = np.zeros(0, dtype=EVENT_DTYPE)

    def __call__(self, method: str, *args: Any) -> int:
        result = getattr(self.engine, method)(*args)
        self.last = self.engine.last_events()
        self.all.append(self.last)
        return int(result)

    def pair(self, price: int) -> None:
        """A GTC bid that rests (2 events), then its cancel (2 events)."""
        order_id = self("submit", A, M, Intent.BUY_YES, price, 10)
        assert order_id > 0
        assert self("cancel", A, order_id) == 0

    def events(self) -> np.ndarray:
        return np.concatenate(self.all) if self.all else np.zeros(0, dtype=EVENT_DTYPE)


def test_default_bound_keeps_everything_below_it(engine_cls: Any) -> None:
    """Below max_pending_events nothing is dropped: drain returns every event, once."""
    engine = opened(engine_cls)
    calls = Recorder(engine)
    for k in range(50):
        calls.pair(1000 + 100 * (k % 10))
    assert engine.pending_events == 200
    assert engine.dropped_events == 0
    assert np.array_equal(engine.drain_events(), calls.events())
    assert engine.pending_events == 0
    assert len(engine.drain_events()) == 0


def test_oldest_dropped_first(engine_cls: Any) -> None:
    """Past the bound the oldest events go; drain returns the newest ones, in order."""
    engine = opened(engine_cls, max_pending_events=5)
    calls = Recorder(engine)
    for k in range(3):
        calls.pair(1000 + 100 * k)  # 12 events
    assert engine.pending_events == 5
    assert engine.dropped_events == 7
    assert np.array_equal(engine.last_events(), calls.last)  # the last call is kept
    assert np.array_equal(engine.drain_events(), calls.events()[-5:])
    assert engine.dropped_events == 0  # counted since the last drain
    assert engine.pending_events == 0
    assert len(engine.last_events()) == 0


def test_last_call_kept_whole(engine_cls: Any) -> None:
    """A call making more events than the bound keeps them all and drops every older one."""
    engine = opened(engine_cls, max_pending_events=2)
    calls = Recorder(engine)
    for k in range(4):
        assert calls("submit", A, M, Intent.BUY_YES, 1000 + 100 * k, 10) > 0
    assert calls("cancel_all", A) == 4  # 4 CANCELED and 4 level events
    assert len(calls.last) == 8
    assert engine.pending_events == 8
    assert engine.dropped_events == 8
    assert np.array_equal(engine.drain_events(), calls.last)


def test_zero_keeps_only_the_last_call(engine_cls: Any) -> None:
    """max_pending_events=0: the pending events are those of the last call."""
    engine = opened(engine_cls, max_pending_events=0)
    calls = Recorder(engine)
    calls.pair(1000)
    assert calls("cancel", A, 10**6) == -Reject.UNKNOWN_ORDER
    assert engine.dropped_events == 4
    assert np.array_equal(engine.drain_events(), calls.last)


def test_process_leaves_the_buffer_alone(engine_cls: Any) -> None:
    """process() neither adds to the per-call events nor drops any."""
    engine = opened(engine_cls, max_pending_events=3)
    calls = Recorder(engine)
    calls.pair(1000)
    deposit = np.zeros(1, dtype=COMMAND_DTYPE)
    deposit["type"], deposit["account"], deposit["quantity"] = CommandType.DEPOSIT, A, 1
    assert len(engine.process(deposit)) > 0
    assert engine.pending_events == 3
    assert engine.dropped_events == 1
    assert np.array_equal(engine.last_events(), calls.last)
    assert np.array_equal(engine.drain_events(), calls.events()[-3:])


def test_never_drained_matches_reference(both_engine_cls: Any) -> None:
    """Many calls never drained (the core reuses its buffer): the same pending events,
    dropped count and last events as the reference, at every step checked."""
    bound = 7
    engines = [opened(cls, max_pending_events=bound) for cls in both_engine_cls]
    recorders = [Recorder(engine) for engine in engines]
    for k in range(3000):  # 12,000 events: past the core's slack, so it moves them too
        for calls in recorders:
            calls.pair(1000 + 100 * (k % 50))
        if k % 500 == 499:
            core, reference = engines
            assert core.pending_events == reference.pending_events == bound
            assert core.dropped_events == reference.dropped_events == 4 * (k + 1) - bound
            assert np.array_equal(core.last_events(), reference.last_events())
    final = [engine.drain_events() for engine in engines]
    assert np.array_equal(final[0], final[1])
    assert np.array_equal(final[0], recorders[0].events()[-bound:])


@pytest.mark.parametrize("value", [-1, MAX_PENDING_EVENTS + 1, 1.0, "8", None])
def test_bad_bound(engine_cls: Any, value: object) -> None:
    with pytest.raises(ValueError, match="max_pending_events"):
        engine_cls(max_pending_events=value)


def test_restored_engine_has_the_default_bound(engine_cls: Any) -> None:
    """The bound is not state: a restored engine keeps the default."""
    engine = opened(engine_cls, max_pending_events=1)
    restored = type(engine).restore(engine.snapshot())
    calls = Recorder(restored)
    for k in range(3):
        calls.pair(1000 + 100 * k)
    assert restored.pending_events == 12 <= DEFAULT_MAX_PENDING_EVENTS
    assert restored.dropped_events == 0
