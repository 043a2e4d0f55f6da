"""Where a gateway sends each command, and the cluster's ids as clients see them.

A market lives on one shard (the map in KV, ``log.py``); everything about a
market goes to its shard. What names no market is routed by what it names:

- to the market's shard: NEW_ORDER, CANCEL_ALL of one market, CREATE_MARKET,
  SET_MARKET_STATE, SET_TICK, SPLIT, MERGE, RESOLVE;
- to the order's shard (its id carries it): CANCEL, REPLACE;
- to the account's home shard (``account % shards``): DEPOSIT, WITHDRAW;
- to every shard, the answers combined (``combine``): ADD_ACCOUNT, CANCEL_CLIENT,
  CANCEL_ALL of all markets, ADVANCE_TIME.

**Ids.** Each shard's engine numbers its own orders and commands, so the same
local id exists on every shard. Clients see cluster ids: the shard in the top
8 bits, the local id below (``cluster_id``), for order ids and engine seqs
alike. On shard 0 a cluster id is the local id, so a one-shard cluster shows
exactly the embedded server's ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from matchcore import ALL_MARKETS, EVENT_DTYPE, CommandType, EventType, Reject

SHARD_SHIFT = 56
MAX_SHARDS = 1 << (64 - SHARD_SHIFT)
LOCAL_MASK = (1 << SHARD_SHIFT) - 1

BY_MARKET = frozenset(
    {
        CommandType.NEW_ORDER,
        CommandType.CREATE_MARKET,
        CommandType.SET_MARKET_STATE,
        CommandType.SET_TICK,
        CommandType.SPLIT,
        CommandType.MERGE,
        CommandType.RESOLVE,
    }
)
BY_ORDER = frozenset({CommandType.CANCEL, CommandType.REPLACE})
BY_ACCOUNT = frozenset({CommandType.DEPOSIT, CommandType.WITHDRAW})
EVERY_SHARD = frozenset(
    {CommandType.ADD_ACCOUNT, CommandType.CANCEL_CLIENT, CommandType.ADVANCE_TIME}
)


def cluster_id(shard: int, local: int) -> int:
    """The id clients see for ``local`` on ``shard`` (0 stays 0: no order)."""
    return (shard << SHARD_SHIFT) | local if local else 0


def split_id(value: int) -> tuple[int, int]:
    """(shard, local id) of a cluster id."""
    return value >> SHARD_SHIFT, value & LOCAL_MASK


def to_cluster_events(events: np.ndarray, shard: int) -> np.ndarray:
    """A copy of a shard's events with cluster order ids and seqs (shard 0: the same values)."""
    out = events.copy()
    if shard and len(out):
        base = np.uint64(shard << SHARD_SHIFT)
        for name in ("seq", "order_id", "maker_order_id"):
            column = out[name]
            column[column != 0] |= base
    return out


@dataclass(frozen=True)
class Part:
    """Rows of a submission bound for one shard (``rows`` index the submission's commands)."""

    shard: int
    rows: np.ndarray  # intp
    commands: np.ndarray  # COMMAND_DTYPE, local ids


class Unroutable(ValueError):
    """A command that names a shard this cluster does not have (a forged order id)."""


EVERY = -1  # the target of a row sent to every shard (``route``)
# how each command type is routed, looked up for a whole column at once (0: shard 0,
# where the engine rejects an unknown type with INVALID_COMMAND)
_MARKET, _ORDER, _ACCOUNT, _EVERY, _CANCEL_ALL = 1, 2, 3, 4, 5
_CLASS = np.zeros(256, dtype=np.uint8)
_CLASS[sorted(BY_MARKET)] = _MARKET
_CLASS[sorted(BY_ORDER)] = _ORDER
_CLASS[sorted(BY_ACCOUNT)] = _ACCOUNT
_CLASS[sorted(EVERY_SHARD)] = _EVERY
_CLASS[CommandType.CANCEL_ALL] = _CANCEL_ALL


def route(
    commands: np.ndarray, shards: int, shard_of_market: Callable[[int], int]
) -> tuple[list[Part], np.ndarray]:
    """Split a submission by shard: the parts, and each row's shard (``EVERY``: all of them).

    Column-wise, not row by row: a gateway routes every submission it takes.
    """
    count = len(commands)
    local = commands.copy()
    classes = _CLASS[commands["type"]]
    by_order = classes == _ORDER
    ids = commands["order_id"][by_order]
    if len(ids):
        order_shards = ids >> SHARD_SHIFT
        forged = order_shards >= shards
        if forged.any():
            raise Unroutable(f"order id {int(ids[forged][0])} names no shard")
        local["order_id"][by_order] = ids & LOCAL_MASK
    target = np.zeros(count, dtype=np.int64)
    if not count:
        return [], target
    if shards == 1:
        return [Part(0, np.arange(count, dtype=np.intp), local)], target
    markets = commands["market"]
    cancel_all = classes == _CANCEL_ALL
    by_market = (classes == _MARKET) | (cancel_all & (markets != ALL_MARKETS))
    target[by_market] = [shard_of_market(m) for m in markets[by_market].tolist()]
    target[by_order] = order_shards if len(ids) else 0
    by_account = classes == _ACCOUNT
    target[by_account] = commands["account"][by_account] % shards
    target[(classes == _EVERY) | (cancel_all & (markets == ALL_MARKETS))] = EVERY
    if target[0] != EVERY and (target == target[0]).all():  # one shard: the whole submission
        return [Part(int(target[0]), np.arange(count, dtype=np.intp), local)], target
    parts = []
    for shard in range(shards):
        rows = np.flatnonzero((target == shard) | (target == EVERY))
        if len(rows):
            parts.append(Part(shard, rows, local[rows]))
    return parts, target


def combine(kind: int, answers: Sequence[np.ndarray]) -> np.ndarray:
    """One command's events from the shards it went to (each already in cluster ids).

    A command sent to one shard is that shard's answer. Sent to every shard:
    CANCEL_CLIENT is the answer of the shard that had the order (one REJECTED
    UNKNOWN_ORDER if none had it); ADD_ACCOUNT is ACCOUNT once if any shard added
    it (a shard may know the account already from a transfer), else the reject;
    CANCEL_ALL and ADVANCE_TIME are every shard's events, shard by shard.
    """
    if len(answers) == 1:
        return answers[0]
    if kind == CommandType.CANCEL_CLIENT:
        done = [a for a in answers if not _only_reject(a, Reject.UNKNOWN_ORDER)]
        return np.concatenate(done) if done else answers[0]
    if kind == CommandType.ADD_ACCOUNT:
        added = [a for a in answers if len(a) and (a["type"] == EventType.ACCOUNT).any()]
        return added[0] if added else answers[0]
    return np.concatenate(answers) if answers else np.zeros(0, dtype=EVENT_DTYPE)


def _only_reject(events: np.ndarray, reason: Reject) -> bool:
    return (
        len(events) == 1
        and int(events["type"][0]) == EventType.REJECTED
        and int(events["reason"][0]) == reason
    )
