"""The process test_dropcopy.py kills: an Exchange with a drop copy under a random stream.

Run as ``python dropcopy_child.py DATA_DIR SEED COUNT [--slow-writer]``. It opens the
Exchange in DATA_DIR (fsync per batch, frequent snapshots, nothing pruned) with a
``DropCopyPublisher`` on the same directory, submits ``random_stream(SEED, COUNT)`` in
chunks of random size and prints one line per acknowledged chunk (its end index) so
the parent knows it is running. ``--slow-writer`` makes the drop copy's writer thread
sleep before each write, so the event log lags the journal when the parent kills it.
"""

from __future__ import annotations

import random
import sys
import threading
import time

from matchcore.testing import StreamShape, engine_capacities, random_stream
from pyexchange import EngineConfig, Exchange, FsyncPolicy
from pyexchange.feeds.dropcopy import DropCopyPublisher, EventLog


def main() -> None:
    data_dir, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if "--slow-writer" in sys.argv:
        append = EventLog.append

        def slow_append(self: EventLog, items: list) -> None:  # type: ignore[type-arg]
            time.sleep(0.002)
            append(self, items)

        EventLog.append = slow_append  # type: ignore[method-assign]
    shape = StreamShape()
    stream = random_stream(seed, count, shape)
    publisher = DropCopyPublisher(data_dir, segment_bytes=8 << 10)
    exchange = Exchange.open(
        data_dir,
        EngineConfig(**engine_capacities(shape)),
        fsync=FsyncPolicy.BATCH,
        snapshot_every=150,
        keep_snapshots=1_000_000,
        segment_bytes=1 << 30,  # one journal segment: never pruned, so tests can replay it all
        on_events=publisher.on_events,
        idle_tick_ns=None,
    )
    publisher.catch_up(exchange.recovered.next_seq - 1)
    rng = random.Random(seed)
    start = exchange.recovered.next_seq - 1  # continue the stream where the journal ended
    i = start
    while i < len(stream):
        end = min(len(stream), i + rng.randint(1, 30))
        exchange.execute(stream[i:end])
        print(end, flush=True)
        i = end
    print("DONE", flush=True)
    threading.Event().wait()  # until killed


if __name__ == "__main__":
    main()
