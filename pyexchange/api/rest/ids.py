"""The venue's ids: opaque URL-safe strings for the core's numbers (spec §2.3).

- An **order id** is the core's 64-bit order id in Crockford base32 (digits and
  upper-case letters without I, L, O, U): ``BT3DNMHB94XJ``-like, at most 13
  characters, whatever the core's ids are made of (sequential today, slot and
  generation after issue 9).
- An order the core **rejected** never had a core id; the venue still answers its
  create with an id. It is ``U`` + the base32 of the engine seq of the command
  (``U`` is outside the alphabet, so the two kinds never collide) and stays valid
  across restarts (the seq is in the journal and the drop copy).
- An **execution id** is unique per execution: seq, index of the event in its
  command, and the side (``T`` taker, ``M`` maker, ``N`` neither); a **trade
  id** is the same on both sides of a fill: seq and index.

All of them use only ``[0-9A-Z-]``: the SDK signs paths unencoded (spec §1.4).
"""

from __future__ import annotations

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_VALUE = {c: i for i, c in enumerate(ALPHABET)}
REJECTED_PREFIX = "U"


def _encode(value: int) -> str:
    if value == 0:
        return "0"
    out = []
    while value:
        value, digit = divmod(value, 32)
        out.append(ALPHABET[digit])
    return "".join(reversed(out))


def _decode(text: str) -> int | None:
    if not 0 < len(text) <= 13:
        return None
    value = 0
    for c in text:
        digit = _VALUE.get(c)
        if digit is None:
            return None
        value = value * 32 + digit
    # one spelling per id: "00001" is not order 1
    return value if value < 1 << 64 and _encode(value) == text else None


def order_id(core_id: int) -> str:
    return _encode(core_id)


def rejected_order_id(seq: int) -> str:
    return REJECTED_PREFIX + _encode(seq)


def parse_order_id(text: str) -> tuple[bool, int] | None:
    """(rejected, number): the core order id, or the seq of a rejected command; None if
    the text is no id of ours (then no order has it: 404)."""
    if text.startswith(REJECTED_PREFIX):
        seq = _decode(text[1:])
        return None if not seq else (True, seq)
    core = _decode(text)
    return None if not core else (False, core)


def execution_id(seq: int, index: int, side: str) -> str:
    return f"{_encode(seq)}-{_encode(index)}-{side}"


def trade_id(seq: int, index: int) -> str:
    return f"{_encode(seq)}-{_encode(index)}"
