"""The venue's JSON, exactly: decoding without floats, decimal strings, Amounts, timestamps.

No float ever holds a price, a quantity or an amount (DESIGN.md §2). JSON numbers
are decoded as ``int`` or ``decimal.Decimal`` (msgspec's ``float_hook``), decimal
strings are checked for their shape first by ``pyexchange.units.decimal_parts``
(the strict parser of every API: ASCII digits, one optional point, a bounded
length, constant time, no exponent), and both become integer units of
the core with integer arithmetic. Numbers the venue sends as JSON numbers
(``quantity``, balances, ``orderPriceMinTickSize``) are encoded from
``Decimal`` values as exact JSON numbers (msgspec's ``decimal_format="number"``).

Conventions of the venue's JSON (spec §2.0): camelCase names, enums as strings,
``Amount = {"value": "<decimal string>", "currency": "USD"}``, int64 fields as
strings, timestamps RFC 3339 in UTC.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec

from ...units import UnitError, decimal_parts
from .errors import bad_request

_decoder = msgspec.json.Decoder(float_hook=Decimal)
_encoder = msgspec.json.Encoder(decimal_format="number")

MAX_DIGITS = 24  # digits of a decimal input, before and after the point together
_ZERO = Decimal(0)


def decode(body: bytes) -> Any:
    """The request body as Python values (floats as Decimal), or 400 if it is not JSON."""
    if not body:
        return {}
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise bad_request("malformed JSON: nested too deeply") from None


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


# ------------------------------------------------------------ numbers in


def decimal_of(value: Any, what: str, *, allow_negative: bool = False) -> Decimal:
    """A JSON number or decimal string as an exact Decimal (400 if it is neither, or
    if it is too long: at most 18 digits on each side of the point)."""
    if isinstance(value, bool):
        raise bad_request(f"{what} must be a number, not a boolean")
    if isinstance(value, int):
        if not -(10**18) < value < 10**18:
            raise bad_request(f"{what} is out of range")
        number = Decimal(value)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise bad_request(f"{what} must be a finite number")
        _, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        # the value's extent, from its digits and exponent, before any arithmetic on it
        if len(digits) > MAX_DIGITS or not -18 <= exponent <= 18 or len(digits) + exponent > 18:
            raise bad_request(f"{what} is out of range or has too many decimals")
        number = value
    elif isinstance(value, str):
        try:  # the one strict parser of every API (bounded, constant time)
            decimal_parts(value, what, signed=True)
        except UnitError as exc:
            raise bad_request(str(exc)) from None
        number = Decimal(value)
    else:
        raise bad_request(f"{what} must be a number or a decimal string")
    if number < _ZERO and not allow_negative:
        raise bad_request(f"{what} must not be negative")
    return number


def amount_of(value: Any, what: str) -> Decimal:
    """The ``value`` of an Amount (``{"value": "0.55", "currency": "USD"}``)."""
    if not isinstance(value, dict):
        raise bad_request(f"{what} must be an Amount object {{value, currency}}")
    currency = value.get("currency", "USD")
    if currency not in ("USD", ""):
        raise bad_request(f"{what}: only USD amounts are traded here")
    if "value" not in value:
        raise bad_request(f"{what}.value is required")
    return decimal_of(value["value"], f"{what}.value")


def truncated_units(number: Decimal, scale: int, step: int) -> int:
    """``number`` in units of ``1/scale``, truncated toward zero to a multiple of ``step``
    (the venue normalizes extra precision toward zero: spec §3.5, §3.6)."""
    units = int(number * scale)  # int() truncates toward zero; the Decimal is bounded
    return units - units % step if units >= 0 else -((-units) - (-units) % step)


# ----------------------------------------------------------- numbers out


def fixed(units: int, scale: int, decimals: int) -> str:
    """``units / scale`` with exactly ``decimals`` decimals (truncated: callers pass a
    ``decimals`` that holds the value exactly, or want the truncation)."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), scale)
    if decimals == 0:
        return f"{sign}{whole}"
    digits = len(str(scale)) - 1
    text = f"{fraction:0{digits}d}"
    text = text[:decimals] if decimals <= digits else text + "0" * (decimals - digits)
    return f"{sign}{whole}.{text}"


def exact(units: int, scale: int, min_decimals: int = 0) -> str:
    """``units / scale`` exactly, trailing zeros dropped beyond ``min_decimals``."""
    sign = "-" if units < 0 else ""
    whole, fraction = divmod(abs(units), scale)
    digits = len(str(scale)) - 1
    text = f"{fraction:0{digits}d}".rstrip("0") if fraction else ""
    if len(text) < min_decimals:
        text += "0" * (min_decimals - len(text))
    return f"{sign}{whole}.{text}" if text else f"{sign}{whole}"


def number(units: int, scale: int) -> Decimal:
    """An exact JSON number (encoded from a Decimal)."""
    return Decimal(exact(units, scale))


def amount(value: str) -> dict[str, str]:
    return {"value": value, "currency": "USD"}


# ------------------------------------------------------------- time


def timestamp(ns: int) -> str:
    """RFC 3339 UTC with nanoseconds: ``2026-11-25T10:00:00.123456789Z``."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def parse_time(value: Any, what: str) -> int:
    """An RFC 3339 timestamp as Unix nanoseconds (400 if it is not one)."""
    if not isinstance(value, str) or not 10 <= len(value) <= 40:
        raise bad_request(f"{what} must be an RFC 3339 timestamp like '2027-01-01T00:00:00Z'")
    text = value.strip()
    nanos = 0
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise bad_request(f"{what} {value[:40]!r} is not an RFC 3339 timestamp")
    head, fraction, zone = match.groups()
    if fraction:
        nanos = int(fraction.ljust(9, "0"))
    try:
        moment = datetime.fromisoformat(head + ("+00:00" if zone == "Z" else zone))
    except ValueError:
        raise bad_request(f"{what} {value[:40]!r} is not an RFC 3339 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = int(moment.timestamp())
    return whole * 1_000_000_000 + nanos


def seconds_of(value: Any, what: str, *, default: Decimal, cap: Decimal) -> Decimal:
    """A duration in seconds: ``5``, ``"5"``, ``"5s"`` or ``"1.5s"`` (spec §6 #5), capped."""
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("s"):
        value = value[:-1]
    seconds = decimal_of(value, what)
    return min(seconds, cap)
