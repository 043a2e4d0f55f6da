"""GTD expiry when orders leave before they expire (the core's lazily deleted heap).

The core leaves the entry of a canceled or filled GTD order in its expiry heap and
drops it when it reaches the top, or when the heap is full (room for twice
``max_orders`` entries). These tests run the same calls on the core and the
reference and compare every event and the state, with ``validate()`` after every
call (``Checked``), and the core's ``next_expiry`` with the reference's resting orders.
"""

from __future__ import annotations

import random
from typing import Any

from support import A1, A2, M1, new_engine

from matchcore import Intent, TimeInForce, event_dicts


def _pair(both_engine_cls: tuple[Any, Any], **kwargs: Any) -> list[Any]:
    return [new_engine(cls, **kwargs) for cls in both_engine_cls]


def _same(engines: list[Any], call: str, *args: Any, **kwargs: Any) -> Any:
    results = [getattr(eng, call)(*args, **kwargs) for eng in engines]
    events = [event_dicts(eng.last_events()) for eng in engines]
    assert results[0] == results[1], call
    assert events[0] == events[1], call
    expiries = [o.expiry for account in (A1, A2) for o in engines[1].orders_of(account) if o.expiry]
    assert engines[0].next_expiry == min(expiries, default=0)
    return results[0]


def test_stale_entries_are_dropped_when_the_heap_fills(both_engine_cls: tuple[Any, Any]) -> None:
    # 4 order slots: the core's heap holds 8 entries, and 200 GTD orders placed
    # and mostly canceled or filled before they expire fill it many times over.
    engines = _pair(both_engine_cls, max_orders=4)
    rng = random.Random(9)
    resting: list[int] = []
    now = 0
    for _ in range(200):
        now += 1
        if len(resting) < 4:
            # Few distinct expiries, so that ties break on the order id.
            expiry = now + rng.choice((50, 50, 80, 400))
            order_id = _same(
                engines,
                "submit",
                A1,
                M1,
                Intent.BUY_YES,
                100 * rng.randint(1, 3),
                10,
                TimeInForce.GTD,
                expiry=expiry,
                time=now,
            )
            if order_id > 0:
                resting.append(order_id)
        if resting and rng.random() < 0.7:
            order_id = resting.pop(rng.randrange(len(resting)))
            if rng.random() < 0.5:
                _same(engines, "cancel", A1, order_id, time=now)
            else:  # A2 sells into the bids: fills leave their entries stale too
                _same(
                    engines, "submit", A2, M1, Intent.SELL_YES, 100, 10, TimeInForce.IOC, time=now
                )
        resting = [i for i in resting if engines[0].order(i) is not None]
    assert engines[0].canonical_state() == engines[1].canonical_state()
    _same(engines, "advance_time", now + 1_000)
    assert engines[0].next_expiry == 0
    assert engines[0].canonical_state() == engines[1].canonical_state()


def test_next_expiry_skips_orders_that_left(both_engine_cls: tuple[Any, Any]) -> None:
    engines = _pair(both_engine_cls)
    first = _same(engines, "submit", A1, M1, Intent.BUY_YES, 100, 10, TimeInForce.GTD, expiry=100)
    second = _same(engines, "submit", A1, M1, Intent.BUY_YES, 200, 10, TimeInForce.GTD, expiry=200)
    _same(engines, "submit", A1, M1, Intent.BUY_YES, 300, 10, TimeInForce.GTD, expiry=300)
    _same(engines, "cancel", A1, second)  # under the top: it stays in the heap, stale
    assert engines[0].next_expiry == 100
    _same(engines, "cancel", A1, first)  # the top: the stale one under it goes too
    assert engines[0].next_expiry == 300
    assert _same(engines, "advance_time", 300) == 1
    assert engines[0].next_expiry == 0
