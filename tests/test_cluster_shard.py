"""The shard state machine without NATS: determinism, idempotent entry, transfers, snapshots."""

from __future__ import annotations

import numpy as np
import pytest
from cluster_support import ACCOUNTS, CASH, ENGINE, commands, setup_commands

from matchcore import MAX_CASH, CommandType, EventType, Intent, Reject, TimeInForce
from pyexchange.cluster import log as L
from pyexchange.cluster.shard import BATCH, ShardState, credit_outcome
from pyexchange.cluster.transfers import (
    CREDITED,
    REFUSED,
    XFER_DONE,
    XFER_IN,
    XFER_OUT,
    Transfer,
)


def new_state(shard: int = 0, shards: int = 2) -> ShardState:
    state = ShardState(shard, shards, ENGINE.build())
    state.apply(1, BATCH, setup_commands([1]).tobytes())
    return state


def order(account: int, coid: int, intent: Intent = Intent.BUY_YES, price: int = 5000) -> dict:
    return {
        "type": CommandType.NEW_ORDER,
        "account": account,
        "market": 1,
        "intent": intent,
        "price": price,
        "quantity": 10,
        "client_order_id": coid,
    }


def test_engine_seq_is_the_replicas_and_rows_map_to_their_events() -> None:
    state = new_state()
    first = state.next_seq
    batch = commands([order(1, 1), order(2, 2, Intent.SELL_YES), order(3, 0, price=4000)])
    batch["seq"] = 999  # the publisher's seq is ignored
    applied = state.apply(2, BATCH, batch.tobytes())
    assert applied.first_seq == first and state.next_seq == first + 3
    per_row = L.split_events(applied.counts, applied.events)
    assert [set(r["seq"]) for r in per_row] == [{first}, {first + 1}, {first + 2}]
    assert per_row[1]["type"][0] == EventType.REJECTED  # no YES shares to sell


def test_a_repeated_client_order_id_is_answered_with_the_first_result() -> None:
    state = new_state()
    first = state.apply(2, BATCH, commands([order(1, 7)]).tobytes())
    orders = state.engine.order_count
    # again in a later message, and twice inside one message
    again = state.apply(3, BATCH, commands([order(1, 7), order(2, 8), order(2, 8)]).tobytes())
    rows = L.split_events(again.counts, again.events)
    assert rows[0].tobytes() == first.events.tobytes()
    assert rows[1].tobytes() == rows[2].tobytes()
    assert state.engine.order_count == orders + 1


def test_what_ran_is_told_apart_from_the_answers_for_the_feeds() -> None:
    """``Applied.commands`` and ``ran_events``: the commands that took an engine seq and
    their own events (what a drop copy logs), contiguous seqs; a repeat's answer, made of
    the first result's events, is not among them."""
    state = new_state()
    first = state.apply(2, BATCH, commands([order(1, 7)]).tobytes())
    assert first.commands["seq"].tolist() == [first.first_seq]
    assert first.ran_events.tobytes() == first.events.tobytes()
    again = state.apply(3, BATCH, commands([order(1, 7), order(2, 8), order(2, 8)]).tobytes())
    assert again.commands["seq"].tolist() == [again.first_seq]  # only account 2's first
    assert set(again.ran_events["seq"].tolist()) == {again.first_seq}
    assert len(again.events) > len(again.ran_events)  # the answers repeat older events
    # a transfer to a bad shard is a reject with a seq of its own: a command row for it
    bad = state.apply(4, XFER_OUT, Transfer(3, 1, 10, 0, 7).encode())
    assert bad.commands["seq"].tolist() == bad.ran_events["seq"].tolist() == [bad.first_seq]
    assert bad.commands["type"][0] == CommandType.WITHDRAW
    assert state.next_seq == bad.first_seq + 1


def test_replicas_fed_the_same_log_reach_the_same_digest_and_snapshots_continue() -> None:
    rng = np.random.default_rng(5)
    log = [(BATCH, setup_commands([1]).tobytes())]
    for i in range(200):
        rows = [
            order(
                int(rng.choice(ACCOUNTS)),
                10 * i + j,
                Intent(int(rng.integers(4))),
                100 * int(rng.integers(45, 56)),
            )
            for j in range(5)
        ]
        log.append((BATCH, commands(rows).tobytes()))
    a, b = ShardState(0, 1, ENGINE.build()), ShardState(0, 1, ENGINE.build())
    for seq, (kind, body) in enumerate(log[:100], 1):
        a.apply(seq, kind, body)
        b.apply(seq, kind, body)
    restored = ShardState.decode(a.encode())
    assert restored.digest() == a.digest() == b.digest()
    for seq, (kind, body) in enumerate(log[100:], 101):
        ea = a.apply(seq, kind, body)
        er = restored.apply(seq, kind, body)
        assert L.encode_events(ea.counts, ea.events) == L.encode_events(er.counts, er.events)
    assert restored.digest() == a.digest()
    a.engine.validate()


def test_a_gap_in_the_log_is_refused() -> None:
    state = new_state()
    with pytest.raises(ValueError, match="gap"):
        state.apply(3, BATCH, b"")


def test_a_malformed_message_is_skipped_the_same_way_everywhere() -> None:
    state = new_state()
    before, engine_before = state.digest(), state.engine.digest()
    applied = state.apply(2, BATCH, b"\x01\x02\x03")
    assert len(applied.counts) == 0 and state.stream_seq == 2
    assert state.apply(3, "no-such-kind", b"").counts.size == 0
    assert state.digest() != before  # the stream position moved, nothing else
    assert state.engine.digest() == engine_before


def test_transfer_steps_move_cash_once_whatever_is_delivered_twice() -> None:
    src, dst = new_state(0), ShardState(1, 2, ENGINE.build())
    t = Transfer(transfer_id=1, account=1, amount=5_000_000, source=0, destination=1)
    out = src.apply(2, XFER_OUT, t.encode())
    assert out.drive == t and t.key in src.outgoing
    assert src.engine.balance(1).free == CASH - 5_000_000
    again = src.apply(3, XFER_OUT, t.encode())  # the client's retry
    assert again.drive is None and again.events.tobytes() == out.events.tobytes()
    assert src.engine.balance(1).free == CASH - 5_000_000
    for seq in (1, 2):  # delivered twice (a new leader re-drives it)
        dst.apply(seq, XFER_IN, t.encode())
    assert dst.engine.balance(1).free == 5_000_000  # the account was added on first credit
    src.apply(4, XFER_DONE, t.encode())
    assert not src.outgoing
    total = src.engine.totals().net_deposits + dst.engine.totals().net_deposits
    assert total == len(ACCOUNTS) * CASH
    src.engine.validate()
    dst.engine.validate()


def test_a_transfer_without_the_cash_or_to_a_bad_shard_is_rejected() -> None:
    src = new_state(0)
    poor = src.apply(2, XFER_OUT, Transfer(2, 1, CASH + 1, 0, 1).encode())
    assert poor.drive is None and poor.events["reason"][0] == Reject.INSUFFICIENT_BALANCE
    bad = src.apply(3, XFER_OUT, Transfer(3, 1, 10, 0, 7).encode())
    assert bad.drive is None and bad.events["type"][0] == EventType.REJECTED
    assert not src.outgoing and src.engine.balance(1).free == CASH
    restored = ShardState.decode(src.encode())
    assert restored.digest() == src.digest()


def test_a_credit_the_destination_refuses_is_refunded_at_the_source() -> None:
    src, dst = new_state(0), ShardState(1, 2, ENGINE.build())
    full = [{"type": CommandType.ADD_ACCOUNT, "account": 9}]
    full += [{"type": CommandType.DEPOSIT, "account": 9, "quantity": MAX_CASH}] * (
        2**62 // MAX_CASH
    )
    full.append({"type": CommandType.DEPOSIT, "account": 9, "quantity": 2**62 % MAX_CASH})
    dst.apply(1, BATCH, commands(full).tobytes())  # net deposits at the cap: no room for more
    t = Transfer(transfer_id=4, account=2, amount=1_000_000, source=0, destination=1)
    out = src.apply(2, XFER_OUT, t.encode())
    assert out.drive == t and src.engine.balance(2).free == CASH - t.amount
    answer = dst.apply(2, XFER_IN, t.encode())
    assert credit_outcome(answer.events, t) == REFUSED
    assert answer.events["reason"][-1] == Reject.CAPACITY
    again = dst.apply(3, XFER_IN, t.encode())  # delivered twice: the same refusal
    assert again.events.tobytes() == answer.events.tobytes()
    done = src.apply(3, XFER_DONE, t.done(REFUSED).encode())
    assert done.events["type"][0] == EventType.BALANCE and not src.outgoing
    assert src.engine.balance(2).free == CASH  # back where it started
    assert src.apply(4, XFER_DONE, t.done(REFUSED).encode()).events.size == 0  # once only
    assert src.engine.balance(2).free == CASH
    assert src.engine.totals().net_deposits == len(ACCOUNTS) * CASH
    src.engine.validate()
    dst.engine.validate()


def test_a_credited_transfer_is_told_apart_from_a_refused_one() -> None:
    src, dst = new_state(0), ShardState(1, 2, ENGINE.build())
    t = Transfer(transfer_id=5, account=3, amount=7, source=0, destination=1)
    src.apply(2, XFER_OUT, t.encode())
    answer = dst.apply(1, XFER_IN, t.encode())
    assert credit_outcome(answer.events, t) == CREDITED
    assert src.apply(3, XFER_DONE, t.done(CREDITED).encode()).events.size == 0
    assert src.engine.balance(3).free == CASH - 7 and dst.engine.balance(3).free == 7


def test_the_next_gtd_expiry_is_known_for_the_ticks_and_kept_in_snapshots() -> None:
    state = new_state()
    now = state.engine.now
    gtd = order(1, 50) | {"tif": TimeInForce.GTD, "expiry": now + 5_000_000_000}
    state.apply(2, BATCH, commands([gtd], time_ns=now + 1).tobytes())
    assert state.next_expiry == now + 5_000_000_000
    restored = ShardState.decode(state.encode())
    assert restored.next_expiry == state.next_expiry and restored.digest() == state.digest()
    tick = commands([{"type": CommandType.ADVANCE_TIME}], time_ns=now + 6_000_000_000)
    applied = state.apply(3, BATCH, tick.tobytes())
    assert applied.events["type"][0] == EventType.CANCELED  # expired at that point of the log
    assert state.next_expiry is None


def test_a_different_order_under_a_used_client_order_id_is_rejected_not_run() -> None:
    state = new_state()
    state.apply(2, BATCH, commands([order(1, 9)]).tobytes())
    orders = state.engine.order_count
    other = state.apply(3, BATCH, commands([order(1, 9, price=4000)]).tobytes())
    assert other.events["reason"][0] == Reject.DUPLICATE_CLIENT_ORDER_ID
    assert other.events["seq"][0] == 0 and state.engine.order_count == orders
