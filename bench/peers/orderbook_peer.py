"""`order-book` from PyPI (bmoscon/orderbook, a C extension): a price -> size store.

It keeps aggregated sizes per price (``book.bids[price] = size``, ``del book.bids[price]``)
in sorted C dicts, with no orders and no matching, so it runs only the add/cancel
part of PEER (PEER-AC). As with any such store, the user keeps the orders: the
adapter has a dict from reference to (side, price, size) and adds or takes the
size at the order's price.
"""

from __future__ import annotations

from time import perf_counter_ns
from typing import Any

from ..workloads import ADD, BUY
from . import Outcome, Peer, Unavailable


class OrderBookPeer(Peer):
    name = "order-book"
    description = "order-book (PyPI, C): price -> size store, adapter keeps an order dict"
    workloads = ("PEER-AC",)

    def load(self, workload: Any) -> None:
        try:
            import order_book
        except ImportError as exc:
            raise Unavailable(f"order-book is not importable: {exc}") from exc
        self.module = order_book
        from importlib.metadata import PackageNotFoundError, version

        try:
            self.version = version("order-book")
        except PackageNotFoundError:
            self.version = "unknown"
        self.setup_rows = [(k, s == BUY, t, q, r) for k, s, t, q, r in workload.setup_ops.tolist()]
        self.rows = [(k, s == BUY, t, q, r) for k, s, t, q, r in workload.ops.tolist()]

    def reset(self) -> None:
        self.book = self.module.OrderBook()
        self.orders: dict[int, tuple[Any, int, int]] = {}
        self._run(self.setup_rows)

    def replay(self) -> int:
        t0 = perf_counter_ns()
        self._run(self.rows)
        return perf_counter_ns() - t0

    def _run(self, rows: list[tuple[int, bool, int, int, int]]) -> None:
        bids, asks, orders = self.book.bids, self.book.asks, self.orders
        for kind, is_buy, tick, qty, ref in rows:
            if kind == ADD:
                levels = bids if is_buy else asks
                if tick in levels:
                    levels[tick] += qty
                else:
                    levels[tick] = qty
                orders[ref] = (levels, tick, qty)
            else:
                levels, tick, qty = orders.pop(ref)
                left = levels[tick] - qty
                if left:
                    levels[tick] = left
                else:
                    del levels[tick]

    def outcome(self) -> Outcome:
        book = self.book.to_dict()
        qty = sum(book["bid"].values()) + sum(book["ask"].values())
        return Outcome(  # no matching: no traded volume to report
            resting_orders=len(self.orders),
            resting_qty=qty,
            extra={"version": self.version},
        )
