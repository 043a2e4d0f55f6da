"""Per-call submit+cancel pairs: an engine drained after every round vs one never drained;
and a one-command process() and process_into() from Python. Interleaved rounds, best and
median, ns.

python profiling/percall_events.py [max_orders] [rounds] [pairs]   (262,144, 30, 20,000)

Issue 9's checks: undrained per-call within 10% of drained (the per-call event buffer
is bounded, ``max_pending_events``), a one-command ``process()`` at most 300 ns.
Run it pinned (``taskset -c 1``) with the installed ``matchcore``.
"""

import statistics
import sys
import time

import numpy as np

from matchcore import COMMAND_DTYPE, EVENT_DTYPE, CommandType, Engine, Intent, MarketState

max_orders = int(sys.argv[1]) if len(sys.argv) > 1 else 262_144
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 30
pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 20_000


def engine():
    e = Engine(max_orders=max_orders, max_markets=1, max_accounts=2)
    e.create_market(0, 10)
    e.set_market_state(0, MarketState.OPEN)
    e.add_account(0)
    e.deposit(0, 10**15)
    e.drain_events()
    return e


def pair_round(e, drain):
    submit, cancel, pc = e.submit, e.cancel, time.perf_counter_ns
    t0 = pc()
    for _ in range(pairs):
        cancel(0, submit(0, 0, Intent.BUY_YES, 4000, 10))
    if drain:
        e.drain_events()
    return (pc() - t0) / pairs


def one_command_round(e, cmd):
    process, pc = e.process, time.perf_counter_ns
    t0 = pc()
    for _ in range(pairs):
        process(cmd)
    return (pc() - t0) / pairs


def one_command_into_round(e, cmd, out):
    process_into, pc = e.process_into, time.perf_counter_ns
    t0 = pc()
    for _ in range(pairs):
        process_into(cmd, out)
    return (pc() - t0) / pairs


engines = {"drained": engine(), "undrained": engine()}
single = engine()
cmd = np.zeros(1, dtype=COMMAND_DTYPE)
cmd["type"] = CommandType.ADVANCE_TIME
out = np.zeros(16, dtype=EVENT_DTYPE)
times = {"drained": [], "undrained": [], "process(1 command)": [], "process_into(1 command)": []}
for _ in range(rounds):
    for k, e in engines.items():
        times[k].append(pair_round(e, k == "drained"))
    times["process(1 command)"].append(one_command_round(single, cmd))
    times["process_into(1 command)"].append(one_command_into_round(single, cmd, out))
print(f"max_orders {max_orders:,}, {rounds} rounds x {pairs:,}")
for k, v in times.items():
    print(f"{k:24s} best {min(v):7.1f} median {statistics.median(v):7.1f} ns")
d, u = times["drained"], times["undrained"]
print(
    f"undrained / drained: best {min(u) / min(d):.3f}, median "
    f"{statistics.median(u) / statistics.median(d):.3f}; "
    f"dropped {engines['undrained'].dropped_events:,}"
)
