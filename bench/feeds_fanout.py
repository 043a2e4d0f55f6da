"""Fan-out cost of the feeds through the gRPC adapters, this tree against a baseline commit.

    python bench/feeds_fanout.py --baseline main                 # before/after, same run
    python bench/feeds_fanout.py --baseline 287586f --runs 5 --commands 100000
    python bench/feeds_fanout.py --quick                         # this tree only, small

(Run as a file, not ``-m``: the workers import the installed ``matchcore`` and
``pyexchange``, not the source tree's, whose core is not built in place.)

What is timed, in one process per (implementation, run), the GC off, on one thread
(the sequencer's and the loop's work measured apart, not overlapped), as that
thread's CPU time (the machine is shared: wall time would count the others' work):

- **Market data.** A random stream (``matchcore.testing.random_stream``, 3 markets, 8
  accounts, books that cross often) is run through an engine once, and its batches (1
  to 50 commands) are replayed into a ``MarketDataPublisher``: ``on_events`` (the
  sequencer thread's part), ``drain()`` (the loop applying the batch and fanning it
  out), then each of ``S`` subscribers of every market takes everything queued through
  the ``MarketDataService.Subscribe`` generator and serializes each message as gRPC
  would (``SerializeToString`` of a message; bytes go as they are: the adapter now
  yields each update's bytes, serialized once for every stream). Reported per event
  (on_events, drain) and per message delivered (take + serialize), and the loop's
  total per event for each ``S``.
- **Drop copy.** The same batches as drop-copy log records (``account_events``); a
  subscriber of every account and one of a single account read all of them as the
  ``DropCopyService`` would (records to messages, serialized). Per message delivered.

The baseline is the ``pyexchange`` package of a commit (``git archive``, plus the
generated ``*_pb2`` modules of this tree: the protos must be the same), put first on
``PYTHONPATH`` of its worker processes; ``matchcore`` is the installed one for both.
Runs alternate baseline / this tree. Each worker also hashes every byte it would send,
so the report says whether both produce exactly the same messages.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SUBSCRIBERS = (0, 1, 10, 50)
DROP_COPY_SUBS = ("all accounts", "one account")
WARM = 20  # batches before the subscribers come (the setup: markets, accounts)


def _batches(commands: int, seed: int) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    from matchcore import Engine
    from matchcore.testing import StreamShape, engine_capacities, random_stream

    shape = StreamShape()
    caps = {**engine_capacities(shape), "max_orders": 4096}
    stream = random_stream(seed, commands, shape)
    stream["seq"] = np.arange(1, len(stream) + 1)
    stream["time"] = np.arange(1, len(stream) + 1) * 1_000
    engine = Engine(**caps)
    rng = np.random.default_rng(seed)
    out, i = [], 0
    while i < len(stream):
        n = int(rng.integers(1, 51))
        batch = stream[i : i + n]
        out.append((batch, engine.process(batch).copy()))
        i += n
    return caps, out


class _Context:
    async def abort(self, code: Any, details: str = "") -> None:
        raise RuntimeError(f"{code}: {details}")

    def invocation_metadata(self) -> tuple[()]:
        return ()


class _Key:
    accounts = frozenset({1})

    def sees_all_accounts(self) -> bool:
        return True


class _Auth:
    async def authenticate(self, context: Any, request: Any, permission: Any) -> Any:
        return _Key()


async def _market_data(caps: dict[str, Any], batches: list[Any], subscribers: int) -> dict:
    from matchcore import Engine
    from pyexchange.api.grpc import exchange_pb2 as pb
    from pyexchange.api.grpc.marketdata import MarketDataService
    from pyexchange.feeds.marketdata import MarketDataPublisher

    pub = MarketDataPublisher()
    pub.attach(asyncio.get_running_loop(), Engine(**caps))
    pub.drain()
    service = MarketDataService(pub, _Auth())
    for commands, evs in batches[:WARM]:  # the markets are created: untimed
        pub.on_events(commands, evs)
        pub.drain()
    streams = [
        service.Subscribe(pb.SubscribeMarketDataRequest(), _Context()) for _ in range(subscribers)
    ]
    subs = []
    for stream in streams:
        await anext(stream)  # registers; its first snapshot
        subs.append(pub._everything[-1])
        while subs[-1].queue:  # the other markets' snapshots
            await anext(stream)
    digest = hashlib.sha256()
    t_on = t_drain = t_take = 0
    events = messages = 0
    clock = time.thread_time_ns  # CPU time of this thread: others' load does not count
    timed = batches[WARM:]
    for commands, evs in timed:
        events += len(evs)
        t0 = clock()
        pub.on_events(commands, evs)
        t1 = clock()
        pub.drain()
        t2 = clock()
        for sub, stream in zip(subs, streams, strict=True):
            while sub.queue or sub.conflated:
                data = await anext(stream)
                if not isinstance(data, bytes):  # before: messages, serialized by gRPC
                    data = data.SerializeToString()
                messages += 1
                if sub is subs[0]:
                    digest.update(data)
        t3 = clock()
        t_on += t1 - t0
        t_drain += t2 - t1
        t_take += t3 - t2
    for stream in streams:
        await stream.aclose()
    return {
        "subscribers": subscribers,
        "events": events,
        "messages": messages,
        "on_events_ns_per_batch": t_on / len(timed),
        "drain_ns_per_event": t_drain / events,
        "take_ns_per_message": t_take / messages if messages else None,
        "loop_ns_per_event": (t_drain + t_take) / events,
        "digest": digest.hexdigest() if subscribers else None,
    }


def _drop_copy(batches: list[Any]) -> dict[str, Any]:
    from pyexchange.feeds import dropcopy

    items = [
        dropcopy.LogItem(
            dropcopy.EVENTS,
            int(c["seq"][0]),
            int(c["seq"][-1]),
            dropcopy.account_events(c, e),
        )
        for c, e in batches
    ]
    if hasattr(dropcopy, "to_messages"):  # before: the feed built protobuf itself

        def messages(item: Any, accounts: Any) -> list[Any]:
            return dropcopy.to_messages(item, accounts, 0)
    else:
        from pyexchange.api.grpc.dropcopy import to_proto

        def messages(item: Any, accounts: Any) -> list[Any]:
            return [to_proto(e) for e in dropcopy.events_for(item, accounts, 0)]

    out = {}
    for name, accounts in zip(DROP_COPY_SUBS, (None, frozenset({1})), strict=True):
        digest = hashlib.sha256()
        count = 0
        t0 = time.thread_time_ns()
        for item in items:
            for m in messages(item, accounts):
                digest.update(m.SerializeToString())
                count += 1
        elapsed = time.thread_time_ns() - t0
        out[name] = {
            "messages": count,
            "ns_per_message": elapsed / count,
            "digest": digest.hexdigest(),
        }
    return out


def worker(commands: int, seed: int) -> dict[str, Any]:
    caps, batches = _batches(commands, seed)
    gc.collect()
    gc.disable()
    md = [asyncio.run(_market_data(caps, batches, s)) for s in SUBSCRIBERS]
    return {"market_data": md, "drop_copy": _drop_copy(batches), "batches": len(batches)}


def _baseline(commit: str, where: Path) -> Path:
    """The pyexchange package of ``commit``, with this tree's generated protobuf modules."""
    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "pyexchange"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    installed = subprocess.run(  # outside the source tree: the installed package
        [sys.executable, "-P", "-c", "import pyexchange.api.grpc as g; print(g.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=where,
    ).stdout.strip()
    for generated in Path(installed).parent.glob("*_pb2*.py"):
        shutil.copy(generated, where / "pyexchange" / "api" / "grpc" / generated.name)
    return where


def _run_worker(pythonpath: str | None, commands: int, seed: int) -> dict[str, Any]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    else:
        env.pop("PYTHONPATH", None)
    out = subprocess.run(
        [sys.executable, "-P", __file__, "--worker", str(commands), str(seed)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
    ).stdout
    return json.loads(out.splitlines()[-1])


def _median(runs: list[dict[str, Any]], pick: Any) -> tuple[float, float, float]:
    values = [pick(r) for r in runs]
    return statistics.median(values), min(values), max(values)


def markdown(results: dict[str, list[dict[str, Any]]], command: str) -> str:
    names = list(results)
    lines = [f"`{command}`", ""]
    rows = [
        (
            "on_events, ns per batch (sequencer)",
            lambda r, i: r["market_data"][i]["on_events_ns_per_batch"],
        ),
        ("drain, ns per event (loop)", lambda r, i: r["market_data"][i]["drain_ns_per_event"]),
        (
            "take + serialize, ns per message",
            lambda r, i: r["market_data"][i]["take_ns_per_message"] or 0.0,
        ),
        ("loop total, ns per event", lambda r, i: r["market_data"][i]["loop_ns_per_event"]),
    ]
    head = "| market data | subscribers | " + " | ".join(names)
    if len(names) == 2:
        head += f" | {names[1]} / {names[0]}"
    lines += [head + " |", "|---|---:|" + "---:|" * (len(names) + (len(names) == 2))]
    for label, pick in rows:
        for i, subs in enumerate(SUBSCRIBERS):
            if "message" in label and not subs:
                continue
            cells, medians = [], []
            for name in names:
                med, lo, hi = _median(results[name], lambda r, i=i, pick=pick: pick(r, i))
                medians.append(med)
                cells.append(f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})")
            line = f"| {label} | {subs} | " + " | ".join(cells)
            if len(names) == 2:
                line += f" | {medians[1] / medians[0]:.2f}"
            lines.append(line + " |")
    lines += ["", "| drop copy, ns per message | " + " | ".join(names) + " |"]
    lines.append("|---|" + "---:|" * len(names))
    for who in ("all accounts", "one account"):
        cells = []
        for name in names:
            med, lo, hi = _median(
                results[name], lambda r, who=who: r["drop_copy"][who]["ns_per_message"]
            )
            cells.append(f"{med:,.0f} ({lo:,.0f}-{hi:,.0f})")
        lines.append(f"| {who} | " + " | ".join(cells) + " |")
    first = results[names[0]][0]
    lines += [
        "",
        f"{first['batches']:,} batches, {first['market_data'][0]['events']:,} events; "
        "median (min-max) of the runs.",
    ]
    if len(names) == 2:
        same = all(
            a["market_data"][i]["digest"] == b["market_data"][i]["digest"]
            for a in results[names[0]]
            for b in results[names[1]]
            for i in range(len(SUBSCRIBERS))
        ) and all(
            a["drop_copy"][w]["digest"] == b["drop_copy"][w]["digest"]
            for a in results[names[0]]
            for b in results[names[1]]
            for w in ("all accounts", "one account")
        )
        lines.append(
            "Bytes sent: identical in both."
            if same
            else "Bytes sent: DIFFERENT between the two (see the digests in the JSON)."
        )
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> Path:
    """Loop CPU per event by subscribers, and drop copy per message: median, min-max bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), width_ratios=[2, 1])
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        runs = results[name]
        for ax, labels, pick in (
            (
                left,
                [str(s) for s in SUBSCRIBERS],
                [
                    lambda r, i=i: r["market_data"][i]["loop_ns_per_event"]
                    for i in range(len(SUBSCRIBERS))
                ],
            ),
            (
                right,
                ["all accounts", "one account"],
                [lambda r, w=w: r["drop_copy"][w]["ns_per_message"] for w in DROP_COPY_SUBS],
            ),
        ):
            stats = [_median(runs, f) for f in pick]
            xs = [j + (k - (len(names) - 1) / 2) * width for j in range(len(stats))]
            ax.bar(
                xs,
                [m for m, _, _ in stats],
                width,
                yerr=[[m - lo for m, lo, _ in stats], [hi - m for m, _, hi in stats]],
                label=name,
                capsize=3,
            )
            ax.set_xticks(range(len(labels)), labels)
    left.set(
        title="market data: loop CPU per engine event",
        xlabel="subscribers of every market (gRPC Subscribe)",
        ylabel="ns (thread CPU)",
    )
    right.set(title="drop copy: CPU per message", xlabel="subscriber", ylabel="ns (thread CPU)")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def save(results: dict[str, list[dict[str, Any]]], text: str, argv: list[str]) -> list[Path]:
    """bench/results/feeds-<time>.json, .md and -fanout.png, with the machine and commit."""
    import report  # bench/report.py (this file runs as a script: bench/ is on sys.path)

    stem = report.RESULTS / f"feeds-{time.strftime('%Y%m%d-%H%M%S')}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    machine = report.machine(["bench/feeds_fanout.py", *argv])
    doc = {"machine": machine, "results": results}
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    paths[0].write_text(json.dumps(doc, indent=1))
    paths[1].write_text(
        f"{text}\n\nCommit {machine['git_commit']}, load average {machine['load_average']}.\n"
    )
    paths.append(plot(results, stem.parent / f"{stem.name}-fanout.png"))
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(int(argv[1]), int(argv[2]))))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.feeds_fanout")
    p.add_argument("--baseline", help="a commit to compare with (its pyexchange package)")
    p.add_argument("--commands", type=int, default=50_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="5,000 commands, one run")
    p.add_argument("--no-save", action="store_true", help="print only (no bench/results files)")
    args = p.parse_args(argv)
    if args.quick:
        args.commands, args.runs = 5_000, 1
    command = "python bench/feeds_fanout.py " + " ".join(argv)
    with tempfile.TemporaryDirectory() as tmp:
        impls: dict[str, str | None] = {}
        if args.baseline:
            impls[f"baseline {args.baseline}"] = str(_baseline(args.baseline, Path(tmp)))
        impls["this tree"] = None
        results: dict[str, list[dict[str, Any]]] = {name: [] for name in impls}
        for _ in range(args.runs):
            for name, path in impls.items():
                results[name].append(_run_worker(path, args.commands, args.seed))
    text = markdown(results, command)
    print(text)
    if not args.no_save:
        for path in save(results, text, argv):
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
