"""The process test_crash.py kills: an Exchange under a steady stream of commands.

Run as ``python crash_child.py DATA_DIR STREAM.npy --fd FD --start I --seed S``. It
opens (recovers) the Exchange in DATA_DIR with fsync per batch, no idle ticks and a
counter clock that continues from the recovered engine time (batch ``r`` of the
journal, counted from the first, runs at time ``r + 1``), then submits
``STREAM[I:]`` in chunks of random size from the main thread, keeping a few
submissions in flight so batches group several of them. Everything the parent needs
to know goes over the pipe ``FD`` as fixed 32-byte messages (``MESSAGE``), written
as soon as it happens:

- ``READY next_seq now``: recovered, about to submit;
- ``BATCH first_seq count time``: the sequencer ran a batch (``on_events``, after the
  journal write and before any snapshot of it);
- ``ACK end``: the Future of the submission ending at stream index ``end`` completed
  (written by its done-callback, on the sequencer thread);
- ``POINT n``: the snapshot writer reached its ``n``-th file-system step and waits
  there to be killed (only with ``--pause-at n``);
- ``DONE``: the whole stream is submitted and acknowledged (then it waits).

With ``--pause-at N`` the snapshot-writer thread stops at its ``N``-th call to
``os.fsync``, ``os.replace`` or ``os.unlink`` (the steps of writing a snapshot and
of pruning snapshots and journal segments), so the parent can kill it there.
"""

from __future__ import annotations

import argparse
import collections
import itertools
import os
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from pyexchange import EngineConfig, Exchange, FsyncPolicy

MESSAGE = struct.Struct("<QQQQ")
READY, BATCH, ACK, POINT, DONE, FAILED = range(6)
STEPS = ("fsync", "replace", "unlink")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data_dir")
    p.add_argument("stream")
    p.add_argument("--fd", type=int, required=True)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="", help="EngineConfig fields, comma-separated")
    p.add_argument("--max-chunk", type=int, default=48)
    p.add_argument("--window", type=int, default=8, help="submissions in flight")
    p.add_argument("--snapshot-every", type=int, default=700)
    p.add_argument("--keep-snapshots", type=int, default=2)
    p.add_argument("--segment-bytes", type=int, default=16 << 10)
    p.add_argument("--pause-at", type=int, default=0)
    args = p.parse_args()
    fd = args.fd

    def send(kind: int, a: int = 0, b: int = 0, c: int = 0) -> None:
        os.write(fd, MESSAGE.pack(kind, a, b, c))

    if args.pause_at:
        _pause_snapshot_writer_at(args.pause_at, send)
    stream = np.load(args.stream)
    config = None
    if args.config:
        values = [int(v) for v in args.config.split(",")]
        config = EngineConfig(*values[:5], ledger=bool(values[5]))

    ticks: list[Iterator[int]] = [itertools.count(1)]

    def on_events(batch: np.ndarray, events: np.ndarray) -> None:
        send(BATCH, int(batch["seq"][0]), len(batch), int(batch["time"][0]))

    exchange = Exchange.open(
        args.data_dir,
        config,
        fsync=FsyncPolicy.BATCH,
        snapshot_every=args.snapshot_every,
        keep_snapshots=args.keep_snapshots,
        segment_bytes=args.segment_bytes,
        clock=lambda: next(ticks[0]),
        on_events=on_events,
        idle_tick_ns=None,
    )
    # No batch runs before the first submit: the clock continues from the recovered time.
    ticks[0] = itertools.count(exchange.engine.now + 1)
    send(READY, exchange.recovered.next_seq, exchange.engine.now)

    rng = random.Random(args.seed)
    in_flight: collections.deque[Any] = collections.deque()
    i = args.start
    while i < len(stream):
        end = min(len(stream), i + rng.randint(1, args.max_chunk))
        future = exchange.submit(stream[i:end])

        def acknowledge(f: Any, end: int = end) -> None:
            if f.exception() is None:
                send(ACK, end)
            else:
                send(FAILED, end)

        future.add_done_callback(acknowledge)
        in_flight.append(future)
        i = end
        while len(in_flight) > args.window:
            in_flight.popleft().result()
        if rng.random() < 0.02:  # now and then a pause, so batches vary in size
            time.sleep(rng.random() * 0.002)
    for future in in_flight:
        future.result()
    send(DONE)
    threading.Event().wait()  # until killed


def _pause_snapshot_writer_at(target: int, send: Callable[..., None]) -> None:
    """Make the snapshot-writer thread stop at its ``target``-th fsync/replace/unlink."""
    calls = itertools.count(1)

    def wrap(name: str) -> None:
        real = getattr(os, name)

        def step(*a: Any, **k: Any) -> Any:
            if threading.current_thread().name.startswith("snapshot-writer"):
                n = next(calls)
                if n == target:
                    send(POINT, n, STEPS.index(name))
                    threading.Event().wait()  # until killed
            return real(*a, **k)

        setattr(os, name, step)

    for name in STEPS:
        wrap(name)


if __name__ == "__main__":
    main()
