"""`liquibook` from PyPI: SWIG bindings of the C++ liquibook matching engine.

Its Python API (version 2.0.x, read from the installed module): orders are
``liquibook.SimpleOrder(is_buy, price, qty)`` objects; a book
(``liquibook.liquibook_book_OrderBook``; ``DepthOrderBook`` adds aggregated depth)
takes them with ``book.add(order)``, which matches at once in price-time priority
and returns whether it traded, and ``book.cancel(order)`` takes the same object
back, so the adapter keeps a dict from reference to order. Fills are seen only
through an ``OrderListener`` subclass, whose Python methods the C++ side calls for
every event (``on_accept`` per order, ``on_fill`` per fill, ``on_cancel`` per cancel;
all must be defined). Hence two peers:

- ``liquibook`` with that listener, counting volume and fills in ``on_fill``
  (what a user who needs to know about trades runs);
- ``liquibook (no listener)``: the book alone; fills cannot be seen, so only the
  resting book it ends with is checked.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

from ..workloads import ADD, BUY, CANCEL
from . import Outcome, Peer, Unavailable


def _module() -> Any:
    try:
        import liquibook
    except ImportError as exc:  # not installed, or its native library does not load
        raise Unavailable(f"liquibook is not importable: {exc}") from exc
    return liquibook


def _listener_class(lb: Any) -> type:
    class FillCounter(lb.OrderListener):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            lb.OrderListener.__init__(self)
            self.volume = 0
            self.fills = 0

        def on_fill(self, order: Any, matched: Any, qty: int, cost: int) -> None:
            self.volume += qty
            self.fills += 1

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: Any) -> None:
            pass

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: Any) -> None:
            pass

        def on_replace(self, order: Any, size_delta: int, new_price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: Any) -> None:
            pass

        def on_trigger_stop(self, order: Any) -> None:
            pass

    return FillCounter


class LiquibookPeer(Peer):
    workloads = ("PEER", "PEER-AC")

    def __init__(self, listener: bool = True) -> None:
        self.listener = listener
        self.name = "liquibook" if listener else "liquibook (no listener)"
        self.description = (
            "liquibook (PyPI, SWIG over C++): OrderBook + a Python OrderListener counting fills"
            if listener
            else "liquibook (PyPI, SWIG over C++): OrderBook alone; fills not observable"
        )

    def load(self, workload: Any) -> None:
        self.lb = _module()
        self.version = _version()

        def convert(ops: Any) -> list[tuple[int, bool, int, int, int]]:
            return [(k, s == BUY, t, q, r) for k, s, t, q, r in ops.tolist()]

        self.setup_rows = convert(workload.setup_ops)
        self.rows = convert(workload.ops)

    def reset(self) -> None:
        lb = self.lb
        self.book = lb.liquibook_book_OrderBook()
        self.counter = None
        if self.listener:
            self.counter = _listener_class(lb)()
            self.book.set_order_listener(self.counter)
        self.orders: dict[int, Any] = {}
        self._run(self.setup_rows)
        if self.counter is not None:
            self.counter.volume = self.counter.fills = 0

    def replay(self) -> int:
        t0 = perf_counter_ns()
        self._run(self.rows)
        return perf_counter_ns() - t0

    def _run(self, rows: list[tuple[int, bool, int, int, int]]) -> None:
        order_cls, add, cancel = self.lb.SimpleOrder, self.book.add, self.book.cancel
        orders = self.orders
        for kind, is_buy, tick, qty, ref in rows:
            if kind == CANCEL:
                cancel(orders.pop(ref))
            elif kind == ADD:
                order = order_cls(is_buy, tick, qty)
                add(order)
                orders[ref] = order
            else:
                add(order_cls(is_buy, tick, qty))

    per_call = True

    # An add's timing includes creating its SimpleOrder (the API takes nothing else);
    # the adapter's dict from reference to order is kept outside the timings.

    def run_timed(self, i: int, j: int, out: Any) -> None:
        order_cls, add, cancel = self.lb.SimpleOrder, self.book.add, self.book.cancel
        orders, pc = self.orders, perf_counter_ns
        for k, (kind, is_buy, tick, qty, ref) in zip(range(i, j), self.rows[i:j], strict=True):
            if kind == CANCEL:
                order = orders.pop(ref)
                t0 = pc()
                cancel(order)
                out[k] = pc() - t0
            else:
                t0 = pc()
                order = order_cls(is_buy, tick, qty)
                add(order)
                out[k] = pc() - t0
                if kind == ADD:
                    orders[ref] = order

    def run_scheduled(self, i: int, j: int, due: list[int], out: Any) -> None:
        order_cls, add, cancel = self.lb.SimpleOrder, self.book.add, self.book.cancel
        orders, pc = self.orders, perf_counter_ns
        for k, (kind, is_buy, tick, qty, ref) in zip(range(i, j), self.rows[i:j], strict=True):
            t = due[k]
            while pc() < t:
                pass
            if kind == CANCEL:
                cancel(orders.pop(ref))
                out[k] = pc()
            else:
                order = order_cls(is_buy, tick, qty)
                add(order)
                out[k] = pc()
                if kind == ADD:
                    orders[ref] = order

    def outcome(self) -> Outcome:
        count = qty = 0
        for side in (self.book.bids(), self.book.asks()):
            for _price, tracker in side.items():
                count += 1
                qty += tracker.open_qty()
        counter = self.counter
        return Outcome(
            traded_volume=None if counter is None else counter.volume,
            fills=None if counter is None else counter.fills,
            resting_orders=count,
            resting_qty=qty,
            extra={"version": self.version},
        )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("liquibook")
    except PackageNotFoundError:
        return "unknown"
