"""``pyexchange.engine.records``: joins and copies of record arrays through their bytes are the
same rows as numpy's, in a fresh writable array; anything but one-dimensional arrays of the
one dtype is refused. ``tuples`` gives ``tolist()``'s rows of some fields, ``take`` numpy's
fancy indexing, at every size and for strided arrays."""

from __future__ import annotations

import numpy as np
import pytest

from matchcore import COMMAND_DTYPE, EVENT_DTYPE
from pyexchange.engine import records


def _rows(n: int, start: int) -> np.ndarray:
    rows = np.zeros(n, dtype=COMMAND_DTYPE)
    rows["seq"] = np.arange(start, start + n)
    rows["price"] = -np.arange(n)  # signed fields survive
    rows["intent"] = 3
    return rows


def test_join_is_numpys_concatenate() -> None:
    parts = [_rows(1, 0), _rows(3, 10), _rows(0, 0), _rows(2, 20)[::-1]]  # a strided view too
    joined = records.join(parts, COMMAND_DTYPE)
    expected = np.concatenate(parts)
    assert joined.dtype == COMMAND_DTYPE and joined.tobytes() == expected.tobytes()
    assert joined.flags.writeable and joined.flags.c_contiguous
    joined["seq"] = 7  # a fresh buffer: the parts are untouched
    assert list(parts[1]["seq"]) == [10, 11, 12]
    assert len(records.join([], EVENT_DTYPE)) == 0


def test_copy_is_a_fresh_writable_array() -> None:
    original = _rows(4, 100)
    copied = records.copy(original)
    assert copied.tobytes() == original.tobytes()
    copied["seq"] = 0
    assert list(original["seq"]) == [100, 101, 102, 103]


def test_other_dtypes_and_shapes_are_refused() -> None:
    with pytest.raises(TypeError):
        records.join([_rows(1, 0), np.zeros(1, dtype=EVENT_DTYPE)], COMMAND_DTYPE)
    with pytest.raises(TypeError):
        records.join([np.zeros((2, 2), dtype=COMMAND_DTYPE)], COMMAND_DTYPE)


def _events(n: int) -> np.ndarray:
    raw = np.random.default_rng(n).integers(0, 256, (n, EVENT_DTYPE.itemsize), dtype=np.uint8)
    return raw.view(EVENT_DTYPE).reshape(n).copy()  # every field, signed ones too, random


@pytest.mark.parametrize("n", [0, 1, 9, 10, 11, 150])
def test_tuples_are_tolist_of_those_fields(n: int) -> None:
    events = _events(2 * n)
    names = ("type", "price", "order_id", "fee", "seq")  # not in the dtype's order
    for array in (events[:n], events[::2]):  # contiguous and strided
        assert records.tuples(array, names) == array[list(names)].tolist()
        assert records.tuples(array, EVENT_DTYPE.names) == array.tolist()


@pytest.mark.parametrize("n", [0, 1, 117])
def test_take_is_fancy_indexing(n: int) -> None:
    events = _events(2 * n)
    for array in (events[:n], events[::2]):
        for rows in (np.arange(n), np.flatnonzero(array["type"] & 1), np.zeros(0, np.intp)):
            taken = records.take(array, rows)
            assert taken.dtype == EVENT_DTYPE and taken.tobytes() == array[rows].tobytes()
