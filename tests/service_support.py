"""Helpers of the service tests: an asyncio loop in a thread, a server on it, clients.

The gRPC server, its clients and the test's coroutines all run on one event
loop in a background thread (``LoopThread.run``), so the tests are plain
synchronous pytest functions and need no asyncio plugin.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import grpc

from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.app.server import ExchangeServer, ServerConfig
from pyexchange.service.auth import ApiKey, KeyStore

T = TypeVar("T")


def calls_made(fn: Callable[..., Any], *args: Any) -> int:
    """How many Python and C functions ``fn(*args)`` calls: a constant-work test counts
    calls rather than time (no timing thresholds in unit tests)."""
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        if event in ("call", "c_call"):
            calls += 1

    sys.setprofile(profile)
    try:
        fn(*args)
    finally:
        sys.setprofile(None)
    return calls


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def service_config(data_dir: Path, **overrides: Any) -> ServerConfig:
    """A server for tests: a free loopback port, no metrics endpoint, no fsync."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "port": 0,
        "fsync": "none",
        "grace_s": 1.0,
        "max_orders": 4096,
        "max_markets": 32,
        "max_accounts": 256,
        "http_port": None,  # the venue API has its own tests (test_venue_*.py)
    }
    values.update(overrides)
    return ServerConfig(**values)


class Harness:
    """A running server and signed clients for each demo key."""

    def __init__(self, loop: LoopThread, server: ExchangeServer) -> None:
        self.loop = loop
        self.server = server
        self.target = f"127.0.0.1:{server.port}"
        self.clients: list[ExchangeClient] = []

    def key(self, name: str) -> ApiKey:
        return self.server.keys.by_name(name)

    def client(self, name: str) -> ExchangeClient:
        """A client of the key named ``name`` (``trader-1``, ``viewer``, ``admin``...)."""
        key = self.key(name)
        return self.loop.run(self._client(key.key_id, key.secret))

    async def _client(self, key_id: str, secret: str) -> ExchangeClient:
        client = ExchangeClient(self.target, key_id, secret, timeout=30)
        self.clients.append(client)
        return client

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.loop.run(coro, timeout)

    def query(self, fn: Callable[[Any], T]) -> T:
        return self.loop.run(self.server.query(fn))

    def state(self) -> tuple[str, int]:
        """(engine digest, next journal seq): both unchanged when nothing reached the engine."""
        server = self.server
        assert server.exchange is not None
        sequencer = server.exchange.sequencer
        return self.query(lambda engine: (engine.digest(), sequencer.next_seq))

    def close(self) -> None:
        async def shutdown() -> None:
            for client in self.clients:
                await client.close()
            await self.server.stop()

        self.loop.run(shutdown())


def start_harness(
    loop: LoopThread, data_dir: Path, keys: KeyStore | None = None, **overrides: Any
) -> Harness:
    server = ExchangeServer(service_config(data_dir, **overrides), keys=keys)
    loop.run(server.start())
    return Harness(loop, server)


async def status_of(call: Awaitable[Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call expected to fail."""
    try:
        await call
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")


async def wait_until(predicate: Callable[[], Any], timeout: float = 20.0) -> None:
    """Poll ``predicate`` (a condition, not a timing assertion) until true or the deadline."""
    deadline = time.monotonic() + timeout
    while not await _value(predicate()):
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


async def _value(x: Any) -> Any:
    return await x if asyncio.iscoroutine(x) else x
