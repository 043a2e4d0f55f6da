"""An idle exchange journals nothing; a GTD order still expires on time; replay is exact.

The sequencer wakes every ``idle_tick_ns`` and journals an ``ADVANCE_TIME`` only
when a resting GTD order is due (``Engine.next_expiry``). Before, it journaled
one every 100 ms whether or not anything was due (648 records a minute).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from matchcore import CancelReason, CommandType, Engine, EventType, TimeInForce, make_commands
from pyexchange.engine.exchange import Exchange
from pyexchange.engine.journal import EngineConfig, RecordKind, read_journal
from pyexchange.engine.recovery import recover

CONFIG = EngineConfig(
    max_orders=64, max_markets=4, max_accounts=4, max_levels=8_000, max_positions=64, ledger=True
)
TICK_NS = 10_000_000  # 10 ms


def setup() -> np.ndarray:
    return make_commands(
        [
            {"type": "CREATE_MARKET", "market": 1, "price": 100, "quantity": 100, "aux": 100},
            {"type": "SET_MARKET_STATE", "market": 1, "arg": 2},  # OPEN
            {"type": "ADD_ACCOUNT", "account": 1},
            {"type": "DEPOSIT", "account": 1, "quantity": 1_000_000_000},
        ]
    )


def gtd(expiry: int) -> np.ndarray:
    return make_commands(
        [
            {
                "type": CommandType.NEW_ORDER,
                "account": 1,
                "market": 1,
                "price": 5_000,
                "quantity": 100,
                "tif": TimeInForce.GTD,
                "expiry": expiry,
            }
        ]
    )


def journal_commands(data_dir: Path) -> np.ndarray:
    parts = [r.commands() for r in read_journal(data_dir / "journal") if r.kind == RecordKind.BATCH]
    return np.concatenate(parts)


def test_an_idle_exchange_journals_nothing(tmp_path: Path) -> None:
    with Exchange.open(tmp_path, CONFIG, idle_tick_ns=TICK_NS) as exchange:
        assert not (exchange.execute(setup())["type"] == EventType.REJECTED).any()
        resting = exchange.execute(gtd(time.time_ns() + 3_600 * 10**9))  # an hour: not due
        assert (resting["type"] == EventType.ACCEPTED).any()
        written = exchange.sequencer.next_seq
        time.sleep(30 * TICK_NS / 1e9)  # 30 wake-ups of the idle sequencer
        assert exchange.sequencer.next_seq == written
    kinds = journal_commands(tmp_path)["type"]
    assert not (kinds == CommandType.ADVANCE_TIME).any()


def test_a_due_gtd_order_expires_with_one_tick_and_replays(tmp_path: Path) -> None:
    expired = threading.Event()

    def on_events(commands: np.ndarray, events: np.ndarray) -> None:
        cancels = events[events["type"] == EventType.CANCELED]
        if (cancels["reason"] == CancelReason.EXPIRED).any():
            expired.set()

    with Exchange.open(tmp_path, CONFIG, idle_tick_ns=TICK_NS, on_events=on_events) as exchange:
        exchange.execute(setup())
        events = exchange.execute(gtd(time.time_ns() + 20 * TICK_NS))
        order_id = int(events[events["type"] == EventType.ACCEPTED]["order_id"][0])
        assert expired.wait(10), "the GTD order did not expire while the exchange was idle"
        assert exchange.query(lambda engine: engine.order(order_id)).result(10) is None
        time.sleep(10 * TICK_NS / 1e9)  # nothing more is due: nothing more is written
        digest = exchange.query(lambda engine: engine.digest()).result(10)
        last = exchange.sequencer.next_seq
    commands = journal_commands(tmp_path)
    assert int((commands["type"] == CommandType.ADVANCE_TIME).sum()) == 1
    assert len(commands) == last - 1
    assert recover(tmp_path).engine.digest() == digest  # the journal replays to the same state
    replayed = Engine(**CONFIG.engine_kwargs())
    replayed.process(commands)
    assert replayed.digest() == digest and replayed.order(order_id) is None


def test_engine_next_expiry_is_the_earliest_resting_gtd_expiry() -> None:
    engine = Engine(**CONFIG.engine_kwargs())
    commands = np.concatenate([setup(), gtd(500), gtd(300), gtd(400)])
    commands["seq"] = np.arange(1, len(commands) + 1)
    commands["time"] = 100
    assert engine.next_expiry == 0
    events = engine.process(commands)
    ids = events[events["type"] == EventType.ACCEPTED]["order_id"]
    assert engine.next_expiry == 300
    engine.cancel(1, int(ids[1]), time=100)  # the one due at 300
    assert engine.next_expiry == 400
    assert engine.advance_time(450) == 1
    assert engine.next_expiry == 500
    assert engine.advance_time(500) == 1
    assert engine.next_expiry == 0
