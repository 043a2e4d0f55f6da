"""CPU per sequencer batch and per order on the loop, in process, without gRPC.

    python -m bench.sequencer_cpu                    # one order per batch, 1,500 orders
    python -m bench.sequencer_cpu --per-batch 50 --orders 25000
    PYTHONPATH=BASE python -m bench.sequencer_cpu    # another build (its pyexchange)

An ``ExchangeServer`` (journal fsync per batch, market data and drop copy on, no
listening ports used) on a uvloop loop in this process; the service layer's
``OrderEntry.submit`` is called with ``--per-batch`` requests at a time (a mix of
resting places, cancels and replaces of two accounts on one market), each awaited
and followed by a 0.5 ms sleep, so each submission is a sequencer batch of its
own. The sequencer thread's CPU (``time.thread_time_ns`` read on it by a query
before and after) is divided by the batches, the loop thread's by the orders
(this script's own request building included). What the gRPC figures of
``bench.service_load`` cannot isolate: the per-batch cost of the sequencer thread
(journal, publishers, answers) with nothing else in the process.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

import pyexchange
from pyexchange.app.server import DemoMarket, ExchangeServer, ServerConfig
from pyexchange.service import orders as so


def _request(rnd: random.Random, account: int, resting: list[int]) -> so.Request:
    price = f"0.{rnd.randint(40, 60)}"
    r = rnd.random()
    if r < 0.35 or not resting:
        return so.Place(
            account=account,
            market=1,
            intent=rnd.choice([0, 1]),
            price=price,
            quantity=str(rnd.randint(1, 20)),
        )
    if r < 0.7:
        return so.Cancel(account=account, order_id=resting.pop(rnd.randrange(len(resting))))
    return so.Replace(account=account, order_id=rnd.choice(resting), price=price)


async def measure(orders: int, per_batch: int, rounds: int) -> list[tuple[float, float, int]]:
    with tempfile.TemporaryDirectory(prefix="sequencer-cpu-") as data_dir:
        config = ServerConfig(
            data_dir=Path(data_dir),
            port=0,
            metrics_port=None,
            http_port=None,
            demo_markets=[DemoMarket(1, "0.01", "1", "1")],
            demo_accounts=[1, 2],
            demo_deposit="100000000",
            demo_split="1000000",
        )
        server = ExchangeServer(config)
        await server.start()
        assert server.exchange is not None and server.orders is not None
        exchange, entry = server.exchange, server.orders
        keys = {a: server.keys.by_name(f"trader-{a}") for a in (1, 2)}
        rnd = random.Random(1)
        resting: dict[int, list[int]] = {1: [], 2: []}
        loop = asyncio.get_running_loop()
        out = []
        try:
            for _ in range(rounds):
                before = await asyncio.wrap_future(exchange.query(lambda e: time.thread_time_ns()))
                loop_before, batches = time.thread_time_ns(), exchange.sequencer.stats.batches
                for i in range(orders // per_batch):
                    account = 1 + (i & 1)
                    requests = [_request(rnd, account, resting[account]) for _ in range(per_batch)]
                    answered: asyncio.Future[list[so.Result]] = loop.create_future()
                    entry.submit(keys[account], requests, answered.set_result)
                    for request, result in zip(requests, await answered, strict=True):
                        if (
                            type(request) is so.Place
                            and isinstance(result, so.OrderReply)
                            and result.status == so.OrderStatus.RESTING
                        ):
                            resting[account].append(result.order_id)
                    await asyncio.sleep(0.0005)
                loop_after = time.thread_time_ns()
                after = await asyncio.wrap_future(exchange.query(lambda e: time.thread_time_ns()))
                count = exchange.sequencer.stats.batches - batches
                out.append(
                    (
                        (after - before) / count / 1e3,
                        (loop_after - loop_before) / orders / 1e3,
                        count,
                    )
                )  # type: ignore[operator]
        finally:
            await server.stop()
        return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--orders", type=int, default=1500)
    p.add_argument("--per-batch", type=int, default=1, help="requests per submission")
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args(argv)
    import uvloop

    rows = uvloop.run(measure(args.orders, args.per_batch, args.rounds))
    print(f"pyexchange from {Path(pyexchange.__file__).parent}")
    for sequencer_us, loop_us, batches in rows:
        print(
            f"sequencer {sequencer_us:7.1f} us/batch ({sequencer_us * batches / args.orders:6.2f}"
            f" us/order)   loop {loop_us:6.2f} us/order   batches {batches}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
