"""Exact conversion between the API's decimal strings and the core's integer units.

The core never sees a float (DESIGN.md §2): a price is in $0.0001 units, a
quantity in 0.01-share units, cash in micro-dollars. Clients speak decimal
strings ("0.57", "12.5", "100.25"); a string that does not convert exactly
(off the tick or lot, too many decimals, NaN, infinity, negative, zero, an
exponent that hides any of these) raises ``UnitError`` with a message a client
can act on.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from matchcore import PRICE_SCALE

QUANTITY_SCALE = 100  # units per share
CASH_SCALE = 1_000_000  # micro-dollars per dollar


class UnitError(ValueError):
    """A decimal string that does not map exactly onto the core's units."""


def _decimal(text: str, what: str) -> Decimal:
    if not isinstance(text, str) or not text.strip():
        raise UnitError(f"{what} is missing")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise UnitError(f"{what} {text!r} is not a decimal number") from None
    if not value.is_finite():
        raise UnitError(f"{what} {text!r} is not a finite number")
    return value


def _scaled(text: str, scale: int, what: str, *, allow_zero: bool = False) -> int:
    value = _decimal(text, what)
    if value < 0 or (value == 0 and not allow_zero):
        raise UnitError(f"{what} {text!r} must be positive")
    units = value * scale
    if units != units.to_integral_value():
        raise UnitError(f"{what} {text!r} has more decimals than 1/{scale}")
    return int(units)


def parse_price(text: str, tick: int) -> int:
    """A YES price in dollars ("0.57") -> price units, on the market's tick grid."""
    units = _scaled(text, PRICE_SCALE, "price")
    if units % tick or not tick <= units <= PRICE_SCALE - tick:
        raise UnitError(
            f"price {text!r} is not on the ${format_price(tick)} tick grid "
            f"between {format_price(tick)} and {format_price(PRICE_SCALE - tick)}"
        )
    return units


def parse_quantity(text: str, lot: int = 1) -> int:
    """Shares ("12.5") -> quantity units (0.01 share), a multiple of the lot."""
    units = _scaled(text, QUANTITY_SCALE, "quantity")
    if units % lot:
        raise UnitError(f"quantity {text!r} is not a multiple of the lot {format_quantity(lot)}")
    return units


def parse_cash(text: str) -> int:
    """Dollars ("100.25") -> micro-dollars."""
    return _scaled(text, CASH_SCALE, "cash amount")


def parse_tick(text: str) -> int:
    """A tick size in dollars ("0.01") -> price units; one of 0.1, 0.01, 0.001, 0.0001."""
    units = _scaled(text, PRICE_SCALE, "tick")
    if units not in (1, 10, 100, 1000):
        raise UnitError(f"tick {text!r} must be 0.1, 0.01, 0.001 or 0.0001")
    return units


def _format(units: int, scale: int) -> str:
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), scale)
    if not fraction:
        return f"{sign}{whole}"
    digits = len(str(scale)) - 1
    return f"{sign}{whole}.{fraction:0{digits}d}".rstrip("0")


def format_price(units: int) -> str:
    return _format(units, PRICE_SCALE)


def format_quantity(units: int) -> str:
    return _format(units, QUANTITY_SCALE)


def format_cash(units: int) -> str:
    return _format(units, CASH_SCALE)
