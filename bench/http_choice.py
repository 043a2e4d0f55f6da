"""Which HTTP stack and JSON codec the REST API is built on, by measurement.

    python -m bench.http_choice                 # every stack, 3 runs each, 5 s per run
    python -m bench.http_choice --seconds 3 --runs 1 --stacks aiohttp,uvicorn

Each candidate serves the same two endpoints in its own process, shaped like the
venue API's hottest calls: ``POST /v1/orders`` (decode a CreateOrderRequest body,
answer ``{"id": ...}``) and ``GET /v1/markets/{slug}/book`` (a 10-level book).
``wrk`` (one thread, ``--connections`` keep-alive connections, a Lua script for the
POST body) drives it as fast as it answers; the figures are requests/s and the CPU
time per request of the server process and of wrk (from ``/proc``), medians of
``--runs`` runs. The codecs are timed in this process on the same bodies.

Candidates: aiohttp on asyncio's loop, aiohttp on uvloop, uvicorn (httptools,
uvloop) with a bare ASGI app, and uvicorn with starlette routing; JSON with the
standard library, orjson and msgspec.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ORDER_BODY = (
    b'{"marketSlug":"will-it-rain","intent":"ORDER_INTENT_BUY_LONG","type":"ORDER_TYPE_LIMIT",'
    b'"price":{"value":"0.55","currency":"USD"},"quantity":10,'
    b'"tif":"TIME_IN_FORCE_GOOD_TILL_CANCEL","manualOrderIndicator":"MANUAL_ORDER_INDICATOR_AUTOMATIC"}'
)
BOOK = {
    "marketData": {
        "marketSlug": "will-it-rain",
        "bids": [
            {"px": {"value": f"0.{50 - i:02d}", "currency": "USD"}, "qty": str(100 + i)}
            for i in range(10)
        ],
        "offers": [
            {"px": {"value": f"0.{51 + i:02d}", "currency": "USD"}, "qty": str(100 + i)}
            for i in range(10)
        ],
        "state": "MARKET_STATE_OPEN",
        "stats": None,
        "transactTime": "2026-11-25T10:00:00.000Z",
    }
}
STACKS = ("aiohttp", "aiohttp-uvloop", "uvicorn-asgi", "uvicorn-starlette")

LUA = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
  n = n + 1
  if n %% 4 == 0 then
    return wrk.format("GET", "/v1/markets/will-it-rain/book", {}, "")
  end
  return wrk.format("POST", "/v1/orders")
end
"""


# ------------------------------------------------------------------ servers


def _order_reply(body: bytes, loads, dumps) -> bytes:  # type: ignore[no-untyped-def]
    request = loads(body)
    if not isinstance(request, dict) or "marketSlug" not in request:
        return dumps({"code": 3, "message": "marketSlug is required", "details": []})
    return dumps({"id": "BT3DNMHB94XJ"})


def serve(stack: str, port: int) -> None:
    import orjson

    loads, dumps = orjson.loads, orjson.dumps
    book = dumps(BOOK)
    if stack.startswith("aiohttp"):
        from aiohttp import web

        async def create(request: web.Request) -> web.Response:
            body = await request.read()
            return web.Response(
                body=_order_reply(body, loads, dumps), content_type="application/json"
            )

        async def get_book(request: web.Request) -> web.Response:
            return web.Response(body=book, content_type="application/json")

        app = web.Application()
        app.router.add_post("/v1/orders", create)
        app.router.add_get("/v1/markets/{slug}/book", get_book)
        if stack == "aiohttp-uvloop":
            import uvloop

            uvloop.install()
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
        return
    import uvicorn

    headers = [(b"content-type", b"application/json")]
    if stack == "uvicorn-asgi":

        async def app(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] != "http":
                return
            path = scope["path"]
            if scope["method"] == "POST" and path == "/v1/orders":
                chunks = []
                while True:
                    message = await receive()
                    chunks.append(message.get("body", b""))
                    if not message.get("more_body"):
                        break
                out = _order_reply(b"".join(chunks), loads, dumps)
            elif path.startswith("/v1/markets/") and path.endswith("/book"):
                out = book
            else:
                await send({"type": "http.response.start", "status": 404, "headers": headers})
                await send({"type": "http.response.body", "body": b"{}"})
                return
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": out})

        asgi = app
    else:
        from starlette.applications import Starlette
        from starlette.responses import Response
        from starlette.routing import Route

        async def create(request):  # type: ignore[no-untyped-def]
            return Response(
                _order_reply(await request.body(), loads, dumps), media_type="application/json"
            )

        async def get_book(request):  # type: ignore[no-untyped-def]
            return Response(book, media_type="application/json")

        asgi = Starlette(
            routes=[
                Route("/v1/orders", create, methods=["POST"]),
                Route("/v1/markets/{slug}/book", get_book),
            ]
        )
    uvicorn.run(
        asgi,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


# ------------------------------------------------------------- measuring


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def run_one(stack: str, seconds: float, connections: int, script: Path) -> dict[str, float]:
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bench.http_choice", "--serve", stack, "--port", str(port)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        _wait_listening(port)
        subprocess.run(  # warm-up
            ["wrk", "-t1", "-c4", "-d1s", "-s", str(script), f"http://127.0.0.1:{port}"],
            check=True,
            capture_output=True,
        )
        before = _cpu_seconds(server.pid)
        wrk = subprocess.Popen(
            [
                "wrk",
                "-t1",
                f"-c{connections}",
                f"-d{int(seconds)}s",
                "-s",
                str(script),
                f"http://127.0.0.1:{port}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        _, status, usage = os.wait4(wrk.pid, 0)
        out = wrk.stdout.read() if wrk.stdout else ""
        server_cpu = _cpu_seconds(server.pid) - before
        requests = 0
        for line in out.splitlines():
            if "requests in" in line:
                requests = int(line.split()[0])
        if not requests or status:
            raise RuntimeError(f"wrk failed on {stack}: {out}")
        return {
            "rps": requests / seconds,
            "server_us": server_cpu / requests * 1e6,
            "wrk_us": (usage.ru_utime + usage.ru_stime) / requests * 1e6,
        }
    finally:
        server.terminate()
        server.wait(10)


def codecs() -> list[tuple[str, float, float]]:
    import msgspec
    import orjson

    book = BOOK
    rows = []
    for name, loads, dumps in (
        ("json (stdlib)", json.loads, lambda o: json.dumps(o, separators=(",", ":")).encode()),
        ("orjson", orjson.loads, orjson.dumps),
        ("msgspec", msgspec.json.decode, msgspec.json.encode),
    ):
        n = 20_000
        decode = min(timeit.repeat(lambda f=loads: f(ORDER_BODY), number=n, repeat=5)) / n
        encode = min(timeit.repeat(lambda f=dumps: f(book), number=n, repeat=5)) / n
        rows.append((name, decode * 1e9, encode * 1e9))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", choices=STACKS)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--stacks", default=",".join(STACKS))
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve, args.port)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "mix.lua"
        script.write_text(LUA % ORDER_BODY.decode())
        print(f"load: {os.getloadavg()}  commit: {_commit()}")
        print("| stack | requests/s | server CPU us/request | wrk CPU us/request |")
        print("|---|---:|---:|---:|")
        for stack in args.stacks.split(","):
            runs = [
                run_one(stack, args.seconds, args.connections, script) for _ in range(args.runs)
            ]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"| {stack} | {med['rps']:,.0f} | {med['server_us']:.1f} | {med['wrk_us']:.1f} |",
                flush=True,
            )
    print("\n| codec | decode order body ns | encode 10-level book ns |")
    print("|---|---:|---:|")
    for name, decode, encode in codecs():
        print(f"| {name} | {decode:,.0f} | {encode:,.0f} |")
    return 0


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
