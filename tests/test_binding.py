"""The Cython binding itself: constants, record layouts, the GIL, the stubs."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import matchcore as mc
from matchcore import _engine, codes, testing


def test_python_codes_equal_the_cpp_values() -> None:
    """matchcore.codes mirrors types.hpp; the extension reports the C++ values."""
    for name, cpp_value in _engine.CONSTANTS.items():
        if "." in name:
            enum_name, member = name.split(".")
            python_value = getattr(codes, enum_name)[member].value
        else:
            python_value = getattr(codes, name)
        assert python_value == cpp_value, name
    enums = [
        codes.Intent,
        codes.Side,
        codes.TimeInForce,
        codes.Stp,
        codes.OrderFlags,
        codes.MatchType,
        codes.MarketState,
        codes.CommandType,
        codes.EventType,
        codes.Reject,
        codes.CancelReason,
    ]
    members = {f"{e.__name__}.{m.name}" for e in enums for m in e}
    assert members <= set(_engine.CONSTANTS), members - set(_engine.CONSTANTS)


def test_record_sizes_match_the_cpp_structs() -> None:
    assert mc.COMMAND_DTYPE.itemsize == 80
    assert mc.EVENT_DTYPE.itemsize == 96
    assert mc.Engine(max_orders=1).memory()["order_slot"] == 64


def test_process_releases_the_gil() -> None:
    """While a batch runs, another thread runs Python and sees the engine busy."""
    shape = testing.StreamShape()
    engine = mc.Engine(**testing.engine_capacities(shape))
    commands = np.tile(testing.random_stream(1, 20_000, shape), 40)
    outcome: list[str] = []

    def run() -> None:
        engine.process(commands)
        outcome.append("done")

    worker = threading.Thread(target=run)
    worker.start()
    saw_busy = False
    while worker.is_alive() and not saw_busy:
        try:
            engine.advance_time(0)
        except RuntimeError as exc:
            saw_busy = "another thread" in str(exc)
    worker.join()
    assert outcome == ["done"]
    assert saw_busy, "the main thread never ran while the batch was running"
    engine.validate()


def test_every_method_against_a_running_batch() -> None:
    """Each method called from another thread while a batch runs refuses (or reads only
    fixed state), and nothing is lost or changed (batch_race_child.py). In a child
    process: a crash there fails this test instead of killing pytest.
    """
    child = Path(__file__).with_name("batch_race_child.py")
    result = subprocess.run(
        [sys.executable, str(child)], capture_output=True, text=True, check=False, timeout=600
    )
    ran = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("run ")]
    assert result.returncode == 0, (
        f"exit status {result.returncode} in {ran[-1] if ran else 'the setup'}:\n"
        f"{result.stderr[-3000:]}"
    )


def test_stub_matches_the_extension(tmp_path: Path) -> None:
    """mypy's stubtest finds nothing in _engine.pyi that differs from the compiled module."""
    allowlist = Path(__file__).with_name("stubtest_allowlist.txt")
    result = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "matchcore._engine", "--allowlist", str(allowlist)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,  # the installed package, not the source tree
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("depth", [0, 1, 50])
def test_book_depth(depth: int) -> None:
    engine = mc.Engine(ledger=False)
    engine.create_market(0, 100)
    engine.set_market_state(0, mc.MarketState.OPEN)
    engine.add_account(1)
    for price in range(4000, 5000, 100):
        engine.submit(1, 0, mc.Intent.BUY_YES, price, 5)
    bids, asks = engine.book(0, depth)
    assert len(bids) == min(depth, 10) and len(asks) == 0
    assert list(bids["price"]) == list(range(4900, 4900 - 100 * len(bids), -100))


def test_process_timed_gives_the_same_events_and_one_time_per_command() -> None:
    """The timed path runs the same commands: same events, one duration each."""
    shape = testing.StreamShape()
    commands = testing.random_stream(5, 3_000, shape)
    plain, timed = (mc.Engine(**testing.engine_capacities(shape)) for _ in range(2))
    events, nanoseconds = timed.process_timed(commands)
    assert np.array_equal(events, plain.process(commands))
    assert nanoseconds.dtype == np.int64 and len(nanoseconds) == len(commands)
    assert (nanoseconds >= 0).all() and nanoseconds.max() > 0
    assert timed.digest() == plain.digest()


def test_orders_of_lists_an_accounts_resting_orders_oldest_first() -> None:
    """Both engines list the same resting orders of an account, in order-id order."""
    from matchcore import reference

    shape = testing.StreamShape()
    commands = testing.random_stream(9, 4_000, shape)
    engines = [cls(**testing.engine_capacities(shape)) for cls in (mc.Engine, reference.Engine)]
    for engine in engines:
        engine.process(commands)
    for account in range(shape.accounts + 1):
        core, ref = (engine.orders_of(account) for engine in engines)
        assert core == ref
        assert [o.order_id for o in core] == sorted(o.order_id for o in core)
        assert all(o.account == account for o in core)
    assert sum(len(engines[0].orders_of(a)) for a in range(9)) == engines[0].order_count
