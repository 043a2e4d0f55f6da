"""Metrics.on_events counts every batch exactly (pyexchange/metrics.py)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from matchcore import CommandType, Engine, EventType, Reject
from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange.metrics import LATENCY_BUCKETS, Metrics

NAMES = {int(t): t.name for t in CommandType}  # the random stream has invalid types too


def test_commands_orders_trades_and_rejects_are_counted_per_batch() -> None:
    shape = StreamShape()
    stream = random_stream(3, 4_000, shape)
    engine = Engine(**engine_capacities(shape))
    metrics = Metrics()
    commands: Counter[str] = Counter()
    rejects: Counter[str] = Counter()
    accepted = trades = batches = 0
    rng = random.Random(3)
    i = 0
    while i < len(stream):
        batch = stream[i : i + rng.choice([1, 1, 2, 7, 300])]
        i += len(batch)
        events = engine.process(batch)
        metrics.on_events(batch, events)
        batches += 1
        commands.update(NAMES.get(int(t), "UNKNOWN") for t in batch["type"])
        for e in events:
            kind = int(e["type"])
            accepted += kind == EventType.ACCEPTED
            trades += kind == EventType.TRADE
            if kind == EventType.REJECTED:
                rejects[Reject(int(e["reason"])).name] += 1
    sample = metrics.registry.get_sample_value
    for name, count in commands.items():
        assert sample("pyexchange_commands_total", {"type": name}) == count
    for name, count in rejects.items():
        assert sample("pyexchange_rejects_total", {"reason": name}) == count
    assert len(rejects) > 2 and trades and accepted
    assert sample("pyexchange_orders_total") == accepted
    assert sample("pyexchange_trades_total") == trades
    assert sample("pyexchange_batch_size_count") == batches
    assert np.isclose(sample("pyexchange_batch_size_sum"), len(stream))


def test_histograms_kept_in_ints_expose_prometheus_buckets() -> None:
    """``Spread``: a value on a bound counts in that bucket (le), buckets are cumulative and
    the count is their total, as prometheus_client's own Histogram exposes them."""
    from prometheus_client import CollectorRegistry, Histogram

    ours, theirs = Metrics(), CollectorRegistry()
    reference = Histogram(
        "pyexchange_journal_fsync_seconds", "x", buckets=LATENCY_BUCKETS, registry=theirs
    )
    for value in (1e-5, 2e-5, 3e-5, 1e-3, 0.0999, 7.0, 5.0):
        ours.journal_fsync.observe(value)
        reference.observe(value)

    def samples(registry: object) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for family in registry.collect()  # type: ignore[attr-defined]
            if family.name == "pyexchange_journal_fsync_seconds"
            for s in family.samples
            if not s.name.endswith("_created")
        }

    assert samples(ours.registry) == samples(theirs)
    assert ours.registry.get_sample_value("pyexchange_orders_total") == 0
