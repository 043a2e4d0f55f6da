"""XC batches through process() and through process_into(), ledger off and on, pass by pass.

    taskset -c 1 python profiling/process_into_ab.py [max_orders] [rounds] [apis]
                                                  (262,144, 6, process,into)

Each round runs every (API, ledger) pair once, each on a fresh engine with its setup,
over the 3,000,000 XC commands in chunks of 8,192 (``bench.peers.engine.BatchPeer``;
``into``: one reused array, 4 events per command), so the load of a shared machine
falls on all of them alike. Prints ns/command per pass and the median. ``apis``
``process`` alone measures a build without ``process_into()`` (another ``matchcore``
first on ``PYTHONPATH``). The workload is cached as for ``run_workload.py``.
"""

import gc
import os
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent))  # bench/; matchcore comes from the environment
sys.path.append(str(HERE))

from run_workload import load  # noqa: E402

import matchcore  # noqa: E402
from bench.peers.engine import BatchPeer  # noqa: E402

max_orders = int(sys.argv[1]) if len(sys.argv) > 1 else 262_144
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 6
apis = sys.argv[3].split(",") if len(sys.argv) > 3 else ["process", "into"]

wl = load("xc", 3_000_000, Path(os.environ.get("PROFILE_CACHE", "/tmp"))).at_capacity(max_orders)
peers = {}
for ledger in (False, True):
    for api in apis:
        peer = BatchPeer(matchcore.Engine, "matchcore", 8192, ledger=ledger, into=api == "into")
        peer.load(wl)
        peers[api, ledger] = peer
print(f"{matchcore._engine.__file__}, max_orders {max_orders:,}", flush=True)
times: dict[tuple[str, bool], list[float]] = {k: [] for k in peers}
for peer in peers.values():  # warm-up
    peer.reset()
    peer.replay()
gc.disable()
for _ in range(rounds):
    for key, peer in peers.items():
        peer.reset()
        times[key].append(peer.replay() / wl.n)
for (api, ledger), v in times.items():
    print(
        f"{api:8s} ledger {'on ' if ledger else 'off'}: median {statistics.median(v):6.1f} "
        f"[{', '.join(f'{x:.1f}' for x in v)}] ns/command",
        flush=True,
    )
