"""Prometheus metrics of the service: queue depth, batches, latency, orders, trades, rejects.

Every server has its own ``CollectorRegistry`` (several servers can live in one
process, as in the tests). ``on_events`` runs on the sequencer thread and does
O(events) numpy work plus a few additions per batch: what only that thread counts
(commands, orders, trades, rejects, batch sizes, the journal's fsyncs) is kept in
plain ints by ``Tally`` and ``Spread`` and turned into Prometheus families when
scraped, without the lock and the per-bucket loop of prometheus_client's own
``inc``/``observe``. The gateways observe acknowledgement latency on the asyncio
loop. ``serve_http(port)`` exposes ``/metrics`` through prometheus_client's own HTTP
server thread.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, CommandType, EventType, Reject

_REJECT_NAMES = {int(code): code.name for code in Reject}
_COMMAND_NAMES = {int(code): code.name for code in CommandType}
_ACCEPTED, _TRADE, _REJECTED = (
    int(k) for k in (EventType.ACCEPTED, EventType.TRADE, EventType.REJECTED)
)
# commands: counted type by type in their bytes up to this, by bincount beyond (in the
# sequencer's batches of ~50 orders numpy's per-call costs dominate)
_SMALL_BATCH = 128
_FEW_REJECTS = 16  # rejects: found one by one in the bytes up to this, by bincount beyond
# on_events counts codes in the bytes of these columns: one byte per code
assert COMMAND_DTYPE["type"].itemsize == EVENT_DTYPE["type"].itemsize == 1
assert EVENT_DTYPE["reason"].itemsize == 1

# Acknowledgement latency: 20 us .. 5 s.
LATENCY_BUCKETS = (
    2e-5,
    5e-5,
    1e-4,
    2e-4,
    5e-4,
    1e-3,
    2e-3,
    5e-3,
    1e-2,
    2e-2,
    5e-2,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_BUCKETS = tuple(float(2**i) for i in range(14))  # 1 .. 8192 commands


class Tally:
    """A counter written by one thread (the sequencer) and read when scraped: ``counts``
    maps a code to its count, named by ``names`` under ``label`` when scraped (no names: one
    unlabelled total). The scrape reads the ints as they are: it may miss a batch being
    counted, never a count twice."""

    def __init__(
        self,
        name: str,
        documentation: str,
        registry: CollectorRegistry,
        label: str = "",
        names: Callable[[int], str] | None = None,
    ) -> None:
        self.name, self.documentation = name.removesuffix("_total"), documentation
        self.label, self.names = label, names
        self.counts: dict[int, int] = {}
        registry.register(self)

    def add(self, code: int, count: int = 1) -> None:
        counts = self.counts
        counts[code] = counts.get(code, 0) + count

    def collect(self) -> Iterator[CounterMetricFamily]:
        if self.names is None:
            family = CounterMetricFamily(self.name, self.documentation, labels=[])
            family.add_metric([], sum(self.counts.values()))
            yield family
            return
        named: dict[str, int] = {}  # codes without a name of their own share one
        for code, count in list(self.counts.items()):
            name = self.names(code)
            named[name] = named.get(name, 0) + count
        family = CounterMetricFamily(self.name, self.documentation, labels=[self.label])
        for name, count in named.items():
            family.add_metric([name], count)
        yield family


class Spread:
    """A histogram written by one thread and read when scraped (as ``Tally``): ``observe``
    adds to one bucket's count and the sum; the count is the buckets' total."""

    def __init__(
        self, name: str, documentation: str, buckets: tuple[float, ...], registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation = name, documentation
        self.bounds = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last: above every bound (+Inf)
        self.sum = 0.0
        self._les = [floatToGoString(b) for b in buckets] + ["+Inf"]
        registry.register(self)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le: the first bound >= value
        self.sum += value

    def collect(self) -> Iterator[HistogramMetricFamily]:
        counts, total, buckets = list(self.counts), 0, []
        for le, count in zip(self._les, counts, strict=True):
            total += count
            buckets.append((le, total))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, self.sum)
        yield family


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.queue_depth = Gauge(
            "pyexchange_queue_depth",
            "Commands submitted by the gateways and not yet answered",
            registry=r,
        )
        self.sequencer_queue = Gauge(
            "pyexchange_sequencer_queue",
            "Submissions and queries waiting for the sequencer thread",
            registry=r,
        )
        self.batch_size = Spread(
            "pyexchange_batch_size",
            "Commands per sequencer batch (one journal write each)",
            BATCH_BUCKETS,
            r,
        )
        self.latency = Histogram(
            "pyexchange_command_latency_seconds",
            "From a gateway's submit to the engine's answer (journaled and applied)",
            ["command"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commands = Tally(
            "pyexchange_commands_total",
            "Commands run by the engine",
            r,
            "type",
            lambda code: _COMMAND_NAMES.get(code, "UNKNOWN"),
        )
        self.orders = Tally("pyexchange_orders_total", "Orders accepted by the engine", r)
        self.trades = Tally("pyexchange_trades_total", "Trades (fills)", r)
        self.rejects = Tally(
            "pyexchange_rejects_total",
            "Commands rejected by the engine",
            r,
            "reason",
            lambda code: _REJECT_NAMES.get(code, f"CODE_{code}"),
        )
        self.refused = Counter(
            "pyexchange_refused_total",
            "Requests refused before the engine (auth, rate limit, backpressure, bad input)",
            ["status"],
            registry=r,
        )
        # the venue's REST API (pyexchange/api/rest): per route, status and latency
        self.http_requests = Counter(
            "pyexchange_http_requests_total",
            "REST requests answered, by route and HTTP status",
            ["route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "pyexchange_http_request_seconds",
            "REST requests, from the head read to the response written",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.websockets = Gauge(
            "pyexchange_websocket_connections",
            "Open WebSocket connections of the venue API, by endpoint",
            ["endpoint"],
            registry=r,
        )
        self.websocket_frames = Counter(
            "pyexchange_websocket_frames_total",
            "Frames sent to WebSocket subscribers, by endpoint",
            ["endpoint"],
            registry=r,
        )
        self.journal_fsync = Spread(
            "pyexchange_journal_fsync_seconds",
            "The journal's fdatasync of a batch (none under fsync policy none)",
            LATENCY_BUCKETS,
            r,
        )
        self.subscribers = Gauge(
            "pyexchange_subscribers",
            "Live subscribers of the feeds (gRPC streams; marketdata includes the venue "
            "WebSockets' one subscription to every market)",
            ["feed"],
            registry=r,
        )
        self._http: Any = None
        self._http_thread: Any = None
        self._http_series: dict[tuple[str, int], tuple[Any, Any]] = {}

    def track(self, depth: Callable[[], float], sequencer_queue: Callable[[], float]) -> None:
        """Read the two queue gauges from callables when scraped."""
        self.queue_depth.set_function(depth)
        self.sequencer_queue.set_function(sequencer_queue)

    def track_subscribers(self, feed: str, count: Callable[[], float]) -> None:
        """Read a feed's subscriber count from a callable when scraped."""
        self.subscribers.labels(feed).set_function(count)

    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Sequencer thread: count one processed batch, from the bytes of its type and
        reason columns (numpy's bincount for the commands of a batch of more than
        ``_SMALL_BATCH``, and for more than ``_FEW_REJECTS`` rejects)."""
        self.batch_size.observe(len(commands))
        add = self.commands.add
        if len(commands) <= _SMALL_BATCH:
            # each command type once, counted in the column's bytes (C calls), in the
            # order first seen: 50 commands, 3 types: 3 add() calls, not 50
            types = commands["type"].tobytes()
            for code in dict.fromkeys(types):
                add(code, types.count(code))
        else:
            counts = np.bincount(commands["type"])
            for code in np.flatnonzero(counts).tolist():
                add(code, int(counts[code]))
        if not len(events):
            return
        # the event kinds counted in the column's bytes: one C call each, where a list
        # costs a Python int per event and bincount numpy's fixed costs
        kinds = events["type"].tobytes()
        accepted, trades = kinds.count(_ACCEPTED), kinds.count(_TRADE)
        if accepted:
            self.orders.add(0, accepted)
        if trades:
            self.trades.add(0, trades)
        rejects = kinds.count(_REJECTED)
        if not rejects:
            return
        found: Iterable[tuple[int, int]]
        if rejects <= _FEW_REJECTS:
            reasons = events["reason"].tobytes()
            tally: dict[int, int] = {}
            at = kinds.find(_REJECTED)
            while at >= 0:
                reason = reasons[at]
                tally[reason] = tally.get(reason, 0) + 1
                at = kinds.find(_REJECTED, at + 1)
            found = tally.items()
        else:
            counts = np.bincount(events["reason"][events["type"] == _REJECTED])
            found = ((code, int(counts[code])) for code in np.flatnonzero(counts).tolist())
        for code, count in found:
            self.rejects.add(code, count)

    def refuse(self, status: str) -> None:
        self.refused.labels(status).inc()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """One REST request answered (the asyncio loop; routes are patterns: few series)."""
        series = self._http_series.get((route, status))
        if series is None:  # labels() takes a lock and builds a key: once per series
            series = self._http_series[(route, status)] = (
                self.http_requests.labels(route, str(status)),
                self.http_latency.labels(route),
            )
        series[0].inc()
        series[1].observe(seconds)

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Start ``/metrics`` on ``host:port`` (0 = a free port); returns the port."""
        self._http, self._http_thread = start_http_server(port, host, registry=self.registry)
        return int(self._http.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
