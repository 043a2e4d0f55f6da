"""GRPC FLOOR: what Python gRPC itself costs per streamed message, with nothing behind it.

    python -m bench.grpc_floor                          # 1,000, 2,000, 4,000, 8,000 msgs/s
    python -m bench.grpc_floor --rates 2000 --seconds 10 --streams 4

The floor under the OrderStream aim of issue 11 (100 µs of server CPU per order):
a ``grpc.aio`` server on uvloop, configured as ``pyexchange serve`` configures its
own (same options), with one generic bidirectional-stream method that answers
every request message with its own bytes (no protobuf, no auth, no engine), in a
process of its own. A ``grpc.aio`` client process opens ``--streams`` streams on
one channel and sends ``--size``-byte messages open loop at each rate: message
``i`` is scheduled at ``start + i / rate``, round-robin over the streams, sent
when due (a wake-up at most every millisecond; uvloop rounds shorter sleeps to 0
and would spin), and its latency is the time its echo arrives minus its
scheduled time. Each rate warms up for ``--warmup`` seconds first; the CPU of
both processes (``/proc``, all threads, gRPC's native ones included) is read
around the measured part only and divided by the messages answered in it.

Writes ``bench/results/grpc-floor-<timestamp>.json``, ``.md`` and ``-cpu.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shlex
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from . import report
from .venue_load import cpu_seconds

RESULTS = Path(__file__).parent / "results"
METHOD = "/floor.Echo/Stream"
TICK_S = 0.001  # the client's wake-up period


def _run_loop(main: Any) -> None:
    try:  # uvloop, as `pyexchange serve`
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


# ------------------------------------------------------------------ server


async def _echo(requests: Any, context: Any) -> Any:
    async for message in requests:
        yield message


async def _serve(ports: Any) -> None:
    import grpc

    server = grpc.aio.server(
        options=[("grpc.max_receive_message_length", 4 * 1024 * 1024), ("grpc.so_reuseport", 0)]
    )
    handler = grpc.stream_stream_rpc_method_handler(_echo)  # no (de)serializers: raw bytes
    service, method = METHOD.strip("/").split("/")
    generic = grpc.method_handlers_generic_handler(service, {method: handler})
    server.add_generic_rpc_handlers([generic])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ports.put(port)
    await server.wait_for_termination()


def server_main(ports: Any) -> None:
    _run_loop(_serve(ports))


# ------------------------------------------------------------------ client


async def _drive(port: int, rate: float, seconds: float, streams: int, size: int) -> dict[str, Any]:
    """Send ``rate * seconds`` messages open loop; return their latencies and send lags."""
    import grpc

    count = int(rate * seconds)
    latency = np.zeros(count, dtype=np.int64)
    lag = np.zeros(count, dtype=np.int64)
    payload = os.urandom(size)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        calls = [channel.stream_stream(METHOD)() for _ in range(streams)]
        pending: list[deque[int]] = [deque() for _ in range(streams)]
        start = time.perf_counter_ns() + 10_000_000
        scheduled = start + (np.arange(count, dtype=np.int64) * 1e9 / rate).astype(np.int64)

        async def read(k: int) -> int:
            done, mine = 0, len(range(k, count, streams))
            while done < mine:
                if await calls[k].read() is grpc.aio.EOF:
                    break
                i = pending[k].popleft()
                latency[i] = time.perf_counter_ns() - scheduled[i]
                done += 1
            return done

        readers = [asyncio.create_task(read(k)) for k in range(streams)]
        sent = 0
        while sent < count:
            now = time.perf_counter_ns()
            while sent < count and scheduled[sent] <= now:
                k = sent % streams
                pending[k].append(sent)
                lag[sent] = now - scheduled[sent]
                await calls[k].write(payload)
                sent += 1
            if sent < count:
                wait = (scheduled[sent] - time.perf_counter_ns()) / 1e9
                await asyncio.sleep(max(wait, TICK_S))
        for call in calls:
            await call.done_writing()
        answered = sum(await asyncio.gather(*readers))
    return {"latency": latency[:answered], "lag": lag, "answered": answered, "sent": count}


async def _client(port: int, job: dict[str, Any], ready: Any, go: Any, out: Any) -> None:
    await _drive(port, job["rate"], job["warmup"], job["streams"], job["size"])
    ready.put(os.getpid())
    while not go.is_set():  # the parent reads both processes' CPU meanwhile
        await asyncio.sleep(0.01)
    result = await _drive(port, job["rate"], job["seconds"], job["streams"], job["size"])
    out.put(result)


def client_main(port: int, job: dict[str, Any], ready: Any, go: Any, out: Any) -> None:
    _run_loop(_client(port, job, ready, go, out))


# ------------------------------------------------------------------ one rate


def _ms(ns: np.ndarray, q: float) -> float:
    return round(float(np.percentile(ns, q)) / 1e6, 3) if len(ns) else float("nan")


def measure(ctx: Any, server_pid: int, port: int, job: dict[str, Any]) -> dict[str, Any]:
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    client = ctx.Process(target=client_main, args=(port, job, ready, go, out), daemon=True)
    client.start()
    ready.get(timeout=60 + job["warmup"] * 2)
    server0, client0, wall0 = cpu_seconds(server_pid), cpu_seconds(client.pid), time.monotonic()
    go.set()
    result = out.get(timeout=60 + job["seconds"] * 4)
    server1, client1, wall1 = cpu_seconds(server_pid), cpu_seconds(client.pid), time.monotonic()
    client.join(timeout=10)
    answered = result["answered"]
    per = 1e6 / max(answered, 1)
    return {
        "offered": job["rate"],
        "achieved": round(answered / (wall1 - wall0), 1),
        "answered": answered,
        "sent": result["sent"],
        "p50_ms": _ms(result["latency"], 50),
        "p99_ms": _ms(result["latency"], 99),
        "send_lag_p99_ms": _ms(result["lag"], 99),
        "server_cpu_us_per_msg": round((server1 - server0) * per, 1),
        "client_cpu_us_per_msg": round((client1 - client0) * per, 1),
        "server_cores": round((server1 - server0) / (wall1 - wall0), 3),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


# ------------------------------------------------------------------ report


HEADER = (
    "| offered msgs/s | achieved | p50 ms | p99 ms | send lag p99 ms | "
    "server CPU µs/msg | client CPU µs/msg | server cores | load |\n"
    "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
)


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"# GRPC FLOOR ({result['timestamp']})",
        "",
        f"`{result['command']}` at commit {result['machine']['git_commit']}: "
        f"{result['streams']} streams on one channel, {result['size']}-byte messages echoed "
        "by an empty grpc.aio server (uvloop), open loop.",
        "",
        HEADER,
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['offered']:,.0f} | {r['achieved']:,.0f} | {r['p50_ms']} | {r['p99_ms']} | "
            f"{r['send_lag_p99_ms']} | {r['server_cpu_us_per_msg']} | "
            f"{r['client_cpu_us_per_msg']} | {r['server_cores']} | {r['load_average']} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["rows"]
    x = [r["offered"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(x, [r["server_cpu_us_per_msg"] for r in rows], marker="o", label="echo server")
    ax.plot(x, [r["client_cpu_us_per_msg"] for r in rows], marker="s", label="client")
    ax.axhline(100, color="grey", linewidth=0.8, label="issue 11's OrderStream aim")
    ax.set_xscale("log")
    ax.set_xlabel("offered messages/s (open loop)")
    ax.set_ylabel("CPU per message, µs")
    ax.set_ylim(bottom=0)
    ax.set_title("Python gRPC (grpc.aio, uvloop): CPU per streamed message, empty server")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parser() -> argparse.ArgumentParser:
    first_line = __doc__.split("\n")[0]
    p = argparse.ArgumentParser(prog="python -m bench.grpc_floor", description=first_line)
    p.add_argument("--rates", default="1000,2000,4000,8000", help="messages/s, comma-separated")
    p.add_argument("--seconds", type=float, default=5.0, help="measured seconds per rate")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds at the rate before measuring")
    p.add_argument("--streams", type=int, default=4, help="streams on the client's one channel")
    p.add_argument("--size", type=int, default=80, help="bytes per message")
    return p


def main(argv: list[str] | None = None) -> int:
    import sys

    argv = sys.argv[1:] if argv is None else argv
    args = parser().parse_args(argv)
    ctx = mp.get_context("spawn")
    ports = ctx.Queue()
    server = ctx.Process(target=server_main, args=(ports,), daemon=True)
    server.start()
    try:
        port = ports.get(timeout=60)
        rows = []
        for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
            job = {
                "rate": rate,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "streams": args.streams,
                "size": args.size,
            }
            rows.append(measure(ctx, server.pid, port, job))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        server.kill()
        server.join()
    result = {
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": report.machine(argv),
        "command": shlex.join(["python", "-m", "bench.grpc_floor", *argv]),
        "streams": args.streams,
        "size": args.size,
        "rows": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"grpc-floor-{time.strftime('%Y%m%d-%H%M%S')}"
    result["pictures"] = [plot(result, RESULTS / f"{name}-cpu.png").name]
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    text = markdown(result)
    (RESULTS / f"{name}.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
