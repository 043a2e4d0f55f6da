"""HDR histograms (the ``hdrhistogram`` package) of latencies in nanoseconds.

Every latency figure of a report comes from an ``hdrh.histogram.HdrHistogram``
with 3 significant digits (values are kept to within 0.1%), never from a sorted
list. The package is pure Python, so values are recorded in bulk: equal values
are counted first (``numpy.unique``) and each distinct value is recorded once
with its count, which gives exactly the histogram that recording one value at a
time would give.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LOWEST_NS = 1
HIGHEST_NS = 3_600 * 10**9  # one hour: anything slower is clamped (and reported as clamped)
DIGITS = 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9, 99.99)
KEYS = ("p50", "p90", "p99", "p99.9", "p99.99")
CURVE_TICKS = 5  # percentile iterator: ticks per half distance to 100% (the classic HDR plot)


class Unavailable(Exception):
    """``hdrhistogram`` is not installed."""


def _histogram_class() -> Any:
    try:
        from hdrh.histogram import HdrHistogram
    except ImportError as exc:  # the bench extra is not installed
        raise Unavailable(f"hdrhistogram is not importable: {exc}") from exc
    return HdrHistogram


def available() -> bool:
    try:
        _histogram_class()
    except Unavailable:
        return False
    return True


def histogram(values: np.ndarray | None = None) -> Any:
    """A new histogram of nanoseconds, with ``values`` recorded."""
    h = _histogram_class()(LOWEST_NS, HIGHEST_NS, DIGITS)
    if values is not None:
        record(h, values)
    return h


def record(h: Any, values: np.ndarray) -> int:
    """Record an array of nanoseconds; returns how many were clamped into the range."""
    v = np.asarray(values, dtype=np.int64)
    if not len(v):
        return 0
    clamped = int(np.count_nonzero((v < 0) | (v > HIGHEST_NS)))
    v = np.clip(v, 0, HIGHEST_NS)
    distinct, counts = np.unique(v, return_counts=True)
    rec = h.record_value
    for value, count in zip(distinct.tolist(), counts.tolist(), strict=True):
        rec(value, count)
    return clamped


def summary(h: Any) -> dict[str, Any]:
    """Count, min, mean, p50..p99.99 and max in nanoseconds."""
    n = h.get_total_count()
    out: dict[str, Any] = {"count": n}
    if not n:
        out.update({k: None for k in ("min", "mean", *KEYS, "max")})
        return out
    pct = h.get_percentile_to_value_dict(list(PERCENTILES))
    out["min"] = h.get_min_value()
    out["mean"] = round(h.get_mean_value(), 1)
    for key, p in zip(KEYS, PERCENTILES, strict=True):
        out[key] = pct[p]
    out["max"] = h.get_max_value()
    return out


def curve(h: Any) -> dict[str, list[float]]:
    """The percentile distribution for a plot: percentiles and values (ns), max last."""
    if not h.get_total_count():
        return {"percentile": [], "ns": []}
    ps: list[float] = []
    vs: list[int] = []
    for item in h.get_percentile_iterator(CURVE_TICKS):
        p = round(item.percentile_level_iterated_to, 6)
        if ps and p <= ps[-1]:
            continue
        ps.append(p)
        vs.append(h.get_highest_equivalent_value(item.value_iterated_to))
    if ps[-1] < 100.0:
        ps.append(100.0)
        vs.append(h.get_max_value())
    return {"percentile": ps, "ns": vs}


def describe(values: np.ndarray) -> dict[str, Any]:
    """``summary()`` and ``curve()`` of an array of nanoseconds, with the clamped count."""
    h = histogram()
    clamped = record(h, values)
    out = summary(h)
    out["clamped"] = clamped
    out["curve"] = curve(h)
    return out
