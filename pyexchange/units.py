"""Exact conversion between the API's decimal strings and the core's integer units.

The core never sees a float (DESIGN.md §2): a price is in $0.0001 units, a
quantity in 0.01-share units, cash in micro-dollars. Clients speak decimal
strings ("0.57", "12.5", "100.25").

One strict parser for every API (``decimal_parts``): ASCII digits, at most 18
before the point, one optional point followed by 1 to 18 digits; nothing else
(no sign unless asked for, no exponent, no spaces, no underscores, no other
digits than 0-9). The length is checked before anything else and the text is
then matched once, so a hostile string costs the same microseconds as "0.5";
the conversion to units is integer arithmetic on at most 36 digits. A value
converts exactly or not at all: a digit beyond the unit (``"0.50001"`` as a
price, ``"0.500000000000000000000000000001"``) is refused, never rounded.
Refusals raise ``UnitError`` with a message a client can act on, quoting at
most a short prefix of the value.

``parse_price``, ``parse_quantity`` and ``parse_cash`` remember the strings they
converted (a bounded LRU cache of at most ``MAX_LENGTH`` characters each): order
entry sees the same few prices and sizes again and again, and the strict parse
costs about 0.9 us against 0.2 for a hit. Refusals are never cached, so a stream
of bad values costs what it did and evicts nothing.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from matchcore import MAX_CASH, MAX_QUANTITY, PRICE_SCALE, TICKS

QUANTITY_SCALE = 100  # units per share
CASH_SCALE = 1_000_000  # micro-dollars per dollar

MAX_DIGITS = 18  # digits before the point, and after it
MAX_LENGTH = 2 * MAX_DIGITS + 2  # a sign, the digits and the point
SHOWN = 24  # characters of a refused value quoted in a message

_DECIMAL = re.compile(r"(-?)([0-9]{1,18})(?:\.([0-9]{1,18}))?", re.ASCII)


class UnitError(ValueError):
    """A decimal string that does not map exactly onto the core's units."""


def quote(value: object) -> str:
    """A value as a message quotes it: a short prefix of a string, never the whole."""
    if not isinstance(value, str):
        return type(value).__name__
    return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")


def decimal_parts(text: object, what: str, *, signed: bool = False) -> tuple[bool, str, str]:
    """(negative, integer digits, fraction digits) of a strict decimal string, or ``UnitError``.

    Constant time: the length is bounded before the text is matched (at most
    ``MAX_LENGTH`` characters), and nothing is converted here.
    """
    if not isinstance(text, str):
        raise UnitError(f"{what} must be a decimal string")
    if not text:
        raise UnitError(f"{what} is missing")
    match = _DECIMAL.fullmatch(text) if len(text) <= MAX_LENGTH else None
    if match is not None and match.group(1) and not signed:
        raise UnitError(f"{what} {quote(text)} must be positive")
    if match is None:
        sign = "an optional '-', then " if signed else ""
        raise UnitError(
            f"{what} {quote(text)} is not a decimal number like '0.55': {sign}1 to "
            f"{MAX_DIGITS} digits 0-9, optionally a point and 1 to {MAX_DIGITS} more "
            "(no exponent, spaces or other characters)"
        )
    negative, whole, fraction = match.groups()
    return bool(negative), whole, fraction or ""


_DECIMALS = {PRICE_SCALE: 4, QUANTITY_SCALE: 2, CASH_SCALE: 6}


def scaled_units(text: object, scale: int, what: str, *, exact: bool = True) -> int:
    """A non-negative decimal string in units of ``1/scale`` (``scale`` a power of ten).

    ``exact``: a digit beyond the unit is refused; otherwise the value is truncated
    toward zero to the unit (the venue API's normalization).
    """
    _, whole, fraction = decimal_parts(text, what)
    decimals = _DECIMALS.get(scale) or len(str(scale)) - 1
    kept, extra = fraction[:decimals], fraction[decimals:]
    if exact and extra.strip("0"):
        raise UnitError(f"{what} {quote(text)} has more decimals than 1/{scale}")
    return int(whole) * scale + int(kept.ljust(decimals, "0") or "0")


def _scaled(text: object, scale: int, what: str, *, allow_zero: bool = False) -> int:
    units = scaled_units(text, scale, what)
    if units == 0 and not allow_zero:
        raise UnitError(f"{what} {quote(text)} must be positive")
    return units


_CACHED = 1 << 12  # converted strings remembered per parser


def _remembered(parse: Callable[..., int]) -> Callable[..., int]:
    """``parse`` with the strings it converted cached; anything but a short ``str`` (and
    every refusal) goes through ``parse`` itself."""
    cached = functools.lru_cache(maxsize=_CACHED)(parse)

    @functools.wraps(parse)
    def convert(text: str, *grid: int) -> int:
        if type(text) is str and len(text) <= MAX_LENGTH:
            return cached(text, *grid)
        return parse(text, *grid)

    return convert


@_remembered
def parse_price(text: str, tick: int) -> int:
    """A YES price in dollars ("0.57") -> price units, on the market's tick grid."""
    units = _scaled(text, PRICE_SCALE, "price")
    if units % tick or not tick <= units <= PRICE_SCALE - tick:
        check_price(units, tick, quote(text))  # raises, quoting the text
    return units


def check_price(units: int, tick: int, shown: str | None = None) -> int:
    """``units`` if it is a price on the tick grid within tick .. 1 - tick."""
    if units % tick or not tick <= units <= PRICE_SCALE - tick:
        raise UnitError(
            f"price {shown or units} is not on the ${format_price(tick)} tick grid "
            f"between {format_price(tick)} and {format_price(PRICE_SCALE - tick)}"
        )
    return units


@_remembered
def parse_quantity(text: str, lot: int = 1) -> int:
    """Shares ("12.5") -> quantity units (0.01 share), a multiple of the lot, at most the max."""
    units = _scaled(text, QUANTITY_SCALE, "quantity")
    if units > MAX_QUANTITY or units % lot:
        check_quantity(units, lot, quote(text))  # raises, quoting the text
    return units


def check_quantity(units: int, lot: int = 1, shown: str | None = None) -> int:
    """``units`` if it is a positive quantity, a multiple of the lot, at most MAX_QUANTITY."""
    shown = shown or str(units)
    if units <= 0:
        raise UnitError(f"quantity {shown} must be positive")
    if units > MAX_QUANTITY:
        raise UnitError(f"quantity {shown} is above the maximum {format_quantity(MAX_QUANTITY)}")
    if units % lot:
        raise UnitError(f"quantity {shown} is not a multiple of the lot {format_quantity(lot)}")
    return units


@_remembered
def parse_cash(text: str) -> int:
    """Dollars ("100.25") -> micro-dollars, at most the maximum."""
    units = _scaled(text, CASH_SCALE, "cash amount")
    if units > MAX_CASH:
        check_cash(units, quote(text))  # raises, quoting the text
    return units


def check_cash(units: int, shown: str | None = None) -> int:
    """``units`` if it is a positive cash amount of at most MAX_CASH."""
    shown = shown or str(units)
    if units <= 0:
        raise UnitError(f"cash amount {shown} must be positive")
    if units > MAX_CASH:
        raise UnitError(f"cash amount {shown} is above the maximum {format_cash(MAX_CASH)}")
    return units


def parse_tick(text: str) -> int:
    """A tick size in dollars ("0.01") -> price units; one of 0.1, 0.01, 0.005, 0.0025, 0.001,
    0.0001."""
    return check_tick(_scaled(text, PRICE_SCALE, "tick"), quote(text))


def check_tick(units: int, shown: str | None = None) -> int:
    if units not in TICKS:
        raise UnitError(f"tick {shown or units} must be 0.1, 0.01, 0.005, 0.0025, 0.001 or 0.0001")
    return units


def _format(units: int, scale: int) -> str:
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), scale)
    if not fraction:
        return f"{sign}{whole}"
    digits = len(str(scale)) - 1
    return f"{sign}{whole}.{fraction:0{digits}d}".rstrip("0")


@functools.lru_cache(maxsize=1 << 14)  # prices are few (0 .. PRICE_SCALE) and the feeds repeat them
def format_price(units: int) -> str:
    return _format(units, PRICE_SCALE)


@functools.lru_cache(maxsize=1 << 14)  # order sizes repeat: each reply formats two
def format_quantity(units: int) -> str:
    return _format(units, QUANTITY_SCALE)


def format_cash(units: int) -> str:
    return _format(units, CASH_SCALE)
