"""The process test_binding.py runs: every Engine method against a running batch.

Run as ``python batch_race_child.py [--into | --spill] [METHOD ...]`` (all of them
by default). For each method a worker thread runs a long ``process()`` (the GIL
released; ``--into``: ``process_into()`` with an ``out`` that holds its events,
``--spill``: one that holds half of them, so the batch spills midway); once the
main thread sees it running, it calls the method over and over. Every method but
three refuses with the RuntimeError of an engine in use by another thread until
the batch is over, then answers: that answer and the state after it must be
exactly those of an engine nobody disturbed that ran the batch and then the call,
and the batch's events exactly its events (the per-call events buffered before the
batch included: none lost, none repeated). ``capacities``, ``memory`` and
``restore`` read only what the constructor fixed (or another engine): they answer
during the batch, the same. Prints ``ok METHOD`` for each; a crash (SIGSEGV, a
glibc abort) kills the process, and the parent sees which method ran last. Exit
status 0: every method held.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

import matchcore as mc
from matchcore import testing

SHAPE = testing.StreamShape()
CAPACITIES = testing.engine_capacities(SHAPE)
WARM = testing.random_stream(1, 3_000, SHAPE)  # a state for the queries to read
BATCH = np.tile(testing.random_stream(2, 20_000, SHAPE), 10)
SNAPSHOT = mc.Engine(**CAPACITIES).snapshot()
COMMAND = np.zeros(1, dtype=mc.COMMAND_DTYPE)
COMMAND["type"] = mc.CommandType.ADVANCE_TIME
NOTHING = COMMAND[:0]

# Each public method and property, called as a user would (0 is an existing
# market and account of the stream, 1 an order id that may rest).
CALLS: dict[str, Callable[[Any], object]] = {
    "__init__": lambda e: e.__init__(**CAPACITIES),
    "create_market": lambda e: e.create_market(SHAPE.markets, 100),
    "set_market_state": lambda e: e.set_market_state(0, mc.MarketState.HALTED),
    "set_tick": lambda e: e.set_tick(0, 100),
    "add_account": lambda e: e.add_account(SHAPE.accounts),
    "submit": lambda e: e.submit(0, 0, mc.Intent.BUY_YES, 100, 100),
    "cancel": lambda e: e.cancel(0, 1),
    "cancel_client": lambda e: e.cancel_client(0, 1),
    "cancel_all": lambda e: e.cancel_all(0),
    "replace": lambda e: e.replace(0, 1, quantity=1),
    "advance_time": lambda e: e.advance_time(10**15),
    "deposit": lambda e: e.deposit(0, 1),
    "withdraw": lambda e: e.withdraw(0, 1),
    "split": lambda e: e.split(0, 0, 1),
    "merge": lambda e: e.merge(0, 0, 1),
    "resolve": lambda e: e.resolve(0, mc.Outcome.YES),
    "process": lambda e: e.process(COMMAND),
    "process_timed": lambda e: e.process_timed(COMMAND)[0],  # the events (not the times)
    "process_into": lambda e: e.process_into(COMMAND, np.zeros(4, dtype=mc.EVENT_DTYPE)),
    "last_events": lambda e: e.last_events(),
    "drain_events": lambda e: e.drain_events(),
    "pending_events": lambda e: e.pending_events,
    "dropped_events": lambda e: e.dropped_events,
    "now": lambda e: e.now,
    "next_order_id": lambda e: e.next_order_id,
    "order_count": lambda e: e.order_count,
    "next_expiry": lambda e: e.next_expiry,
    "capacities": lambda e: e.capacities,
    "memory": lambda e: e.memory(),
    "book": lambda e: e.book(0, 1000),
    "best": lambda e: e.best(0),
    "order": lambda e: e.order(1),
    "orders_of": lambda e: e.orders_of(0),
    "market": lambda e: e.market(0),
    "balance": lambda e: e.balance(0),
    "position": lambda e: e.position(0, 0),
    "totals": lambda e: e.totals(),
    "canonical_state": lambda e: e.canonical_state(),
    "snapshot": lambda e: e.snapshot(),
    "restore": lambda e: type(e).restore(SNAPSHOT),
    "digest": lambda e: e.digest(),
    "validate": lambda e: e.validate(),
}
ANSWER_DURING_A_BATCH = {"capacities", "memory", "restore"}


def prepared() -> mc.Engine:
    """The warm state, then two per-call rejects buffered (no state change)."""
    engine = mc.Engine(**CAPACITIES)
    engine.process(WARM)
    engine.cancel(0, 10**12)
    engine.cancel_client(0, 10**12)
    return engine


def same(a: object, b: object) -> bool:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, mc.Engine) and isinstance(b, mc.Engine):
        return a.digest() == b.digest()
    return a == b


def busy(engine: mc.Engine) -> bool:
    """Whether a batch runs: an empty one changes nothing, and process() always refused."""
    try:
        engine.process(NOTHING)
    except RuntimeError:
        return True
    return False


# The ``out`` of process_into() for the batch (None: process()), set by main().
OUT: np.ndarray | None = None


def run_batch(engine: mc.Engine, out: list[np.ndarray]) -> None:
    if OUT is None:
        out.append(engine.process(BATCH))
    else:
        out.append(engine.process_into(BATCH, OUT).copy())  # OUT is reused by the next try


def race(name: str, call: Callable[[Any], object], events: np.ndarray) -> None:
    """``call`` against running batches until it was refused once (or answered in one)."""
    undisturbed = prepared()
    undisturbed.process(BATCH)
    want = call(undisturbed)
    want_buffered, want_state = undisturbed.drain_events(), undisturbed.digest()
    for _ in range(20):
        engine = prepared()
        batch_events: list[np.ndarray] = []
        worker = threading.Thread(target=run_batch, args=(engine, batch_events))
        worker.start()
        while worker.is_alive() and not busy(engine):
            pass
        refused = 0
        while True:
            try:
                answer = call(engine)
                break
            except RuntimeError as exc:
                assert "another thread" in str(exc), exc
                refused += 1
        running = worker.is_alive()
        worker.join()
        assert len(batch_events) == 1, f"{name}: the batch failed"
        assert np.array_equal(batch_events[0], events), f"{name}: the batch's events changed"
        assert same(answer, want), f"{name}: {answer!r} != {want!r}"
        assert same(engine.drain_events(), want_buffered), f"{name}: per-call events"
        assert engine.digest() == want_state, f"{name}: the state differs"
        engine.validate()
        if name in ANSWER_DURING_A_BATCH:
            assert refused == 0, name
            if running:
                return
        elif refused:
            return
    raise AssertionError(f"{name}: never called while a batch ran")


def main(args: list[str]) -> None:
    global OUT
    missing = {n for n in dir(mc.Engine) if not n.startswith("_")} - set(CALLS)
    assert not missing, f"no race for {sorted(missing)}"
    events = prepared().process(BATCH)
    mode = args[0] if args and args[0].startswith("--") else None
    names = args[1:] if mode else args
    if mode is not None:
        OUT = np.zeros(len(events) if mode == "--into" else len(events) // 2, dtype=mc.EVENT_DTYPE)
    for name in names or CALLS:
        print(f"run {name}", flush=True)
        race(name, CALLS[name], events)
        print(f"ok {name}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
