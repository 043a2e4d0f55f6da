"""Fixed-size command and event records (docs/matchcore.md §3) and query results."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .codes import CommandType

COMMAND_DTYPE = np.dtype(
    [
        ("seq", "<u8"),
        ("time", "<i8"),
        ("order_id", "<u8"),
        ("client_order_id", "<u8"),
        ("quantity", "<i8"),
        ("expiry", "<i8"),
        ("aux", "<i8"),
        ("account", "<u4"),
        ("market", "<u4"),
        ("price", "<i4"),
        ("type", "u1"),
        ("intent", "u1"),
        ("tif", "u1"),
        ("stp", "u1"),
        ("flags", "u1"),
        ("arg", "u1"),
        ("taker_fee_bps", "<i2"),
        ("maker_fee_bps", "<i2"),
        ("fee_base", "u1"),
        ("_pad", "u1"),
    ]
)

EVENT_DTYPE = np.dtype(
    [
        ("seq", "<u8"),
        ("order_id", "<u8"),
        ("maker_order_id", "<u8"),
        ("quantity", "<i8"),
        ("leaves_qty", "<i8"),
        ("maker_leaves_qty", "<i8"),
        ("fee", "<i8"),
        ("maker_fee", "<i8"),
        ("account", "<u4"),
        ("maker_account", "<u4"),
        ("market", "<u4"),
        ("price", "<i4"),
        ("count", "<u4"),
        ("type", "u1"),
        ("reason", "u1"),
        ("intent", "u1"),
        ("maker_intent", "u1"),
        ("match_type", "u1"),
        ("side", "u1"),
        ("tif", "u1"),
        ("flags", "u1"),
        ("command", "u1"),
        ("state", "u1"),
        ("_pad", "<u2"),
    ]
)

BOOK_LEVEL_DTYPE = np.dtype([("price", "<i4"), ("count", "<u4"), ("quantity", "<i8")])

assert COMMAND_DTYPE.itemsize == 80 and EVENT_DTYPE.itemsize == 96


class OrderInfo(NamedTuple):
    """A resting order, as returned by ``Engine.order()``."""

    order_id: int
    account: int
    market: int
    intent: int
    side: int
    price: int
    leaves_qty: int
    tif: int
    expiry: int
    client_order_id: int
    stp: int
    flags: int


class MarketInfo(NamedTuple):
    """A market's parameters and state, as returned by ``Engine.market()``."""

    market: int
    state: int
    tick: int
    min_size: int
    lot: int
    taker_fee_bps: int
    maker_fee_bps: int
    fee_base: int
    outcome: int
    collateral: int
    min_price: int = 0
    """The market's price bounds (0: none; the tick's bounds always apply)."""
    max_price: int = 0


class Balance(NamedTuple):
    """An account's cash in micro-dollars, as returned by ``Engine.balance()``."""

    free: int
    reserved: int


class Position(NamedTuple):
    """An account's shares in one market (0.01-share units), from ``Engine.position()``."""

    yes_free: int
    yes_reserved: int
    no_free: int
    no_reserved: int


class Totals(NamedTuple):
    """Engine-wide money, from ``Engine.totals()``: what conservation is checked against."""

    net_deposits: int
    fees: int
    collateral: int


def make_commands(rows: list[dict[str, Any]]) -> np.ndarray:
    """Build a command array from dicts of field values (missing fields are 0).

    ``type`` may be a ``CommandType`` or its name (``"NEW_ORDER"``).
    """
    out = np.zeros(len(rows), dtype=COMMAND_DTYPE)
    for i, row in enumerate(rows):
        for name, value in row.items():
            if name == "type" and isinstance(value, str):
                value = CommandType[value]
            out[i][name] = value
    return out


def event_dicts(events: np.ndarray) -> list[dict[str, int]]:
    """Events as plain dicts without the zero fields, for tests and debugging."""
    names = [n for n in EVENT_DTYPE.fields or () if n != "_pad"]
    return [{n: int(e[n]) for n in names if e[n]} for e in events]
