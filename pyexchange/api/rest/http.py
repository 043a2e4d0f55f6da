"""HTTP plumbing of the REST API: uvicorn in the server's loop, a bare ASGI app, limits.

Why this stack (measured, BENCHMARKS.md "HTTP stack", ``bench/http_choice.py``):
uvicorn with httptools and uvloop serving a bare ASGI callable costs about 55 us
of server CPU per request on this machine where aiohttp costs 90-97 us and
starlette's routing on the same uvicorn 95 us; the router here is a dict of
exact paths and a short list of patterns, which is all the venue's API needs.

uvicorn runs inside the exchange's asyncio loop (``RestServer.start``), beside
grpc.aio, on a socket this module binds (port 0: a free one). It does not touch
the process's signals: ``pyexchange serve`` owns them.

Limits a public endpoint needs, enforced before the app runs:

- request head (request line and headers) at most ``max_head_bytes`` (431), and
  complete within ``head_timeout_s`` of the connection's first byte or of the
  end of the previous response (a slowloris connection is closed);
- the body at most ``max_body_bytes`` (413) and complete within
  ``body_timeout_s`` of the head;
- idle keep-alive connections closed after ``keep_alive_s``.
One timer per connection watches the deadline of its phase (moved only when a deadline
comes earlier than it): a timer made and canceled per deadline cost 2-4 us a request.
A connection that breaks a limit costs a few microseconds and never holds up
another: each connection is parsed on the loop as its bytes arrive.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import parse_qsl

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger(__name__)


@dataclass
class HttpLimits:
    max_head_bytes: int = 16 * 1024
    max_body_bytes: int = 64 * 1024
    head_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    keep_alive_s: float = 30.0
    max_connections: int | None = 4096  # beyond: 503 (uvicorn's limit_concurrency)


class Request:
    """One HTTP request as the handlers see it (the body is read whole, within the limit)."""

    __slots__ = ("body", "client", "headers", "method", "params", "path", "query_string")

    def __init__(
        self,
        method: str,
        path: str,
        query_string: bytes,
        headers: dict[str, str],
        body: bytes,
        client: str,
    ) -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self.body = body
        self.client = client
        self.params: dict[str, str] = {}  # path parameters of the matched route

    def query(self) -> list[tuple[str, str]]:
        """The query as (name, value) pairs in order (repeated names repeat, as the SDK sends)."""
        if not self.query_string:
            return []
        return parse_qsl(
            self.query_string.decode("latin-1"), keep_blank_values=True, max_num_fields=200
        )


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)


T = TypeVar("T")


class Router(Generic[T]):
    """Exact paths in a dict; ``{name}`` segments in a list tried in order (first match wins).
    What a path maps to (``T``) is the app's business."""

    def __init__(self) -> None:
        self._exact: dict[tuple[str, str], T] = {}
        self._patterns: list[tuple[str, tuple[str, ...], T]] = []
        self.paths: set[str] = set()

    def add(self, method: str, path: str, target: T) -> None:
        self.paths.add(path)
        if "{" not in path:
            self._exact[(method, path)] = target
        else:
            self._patterns.append((method, tuple(path.strip("/").split("/")), target))

    def match(self, method: str, path: str) -> tuple[T | None, dict[str, str], bool]:
        """(target, path params, whether the path exists for another method)."""
        target = self._exact.get((method, path))
        if target is not None:
            return target, {}, True
        parts = path.strip("/").split("/")
        other = any(p == path for m, p in self._exact if m != method)
        for route_method, segments, route_target in self._patterns:
            if len(segments) != len(parts):
                continue
            params: dict[str, str] = {}
            for segment, part in zip(segments, parts, strict=True):
                if segment.startswith("{"):
                    if not part:
                        break
                    params[segment[1:-1]] = part
                elif segment != part:
                    break
            else:
                if route_method == method:
                    return route_target, params, True
                other = True
        return None, {}, other


# ------------------------------------------------------ the guarded protocol

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _OneWrite:
    """The transport as one response sees it: the status line and headers are held until
    the body is written, and both go out in one send (uvicorn writes them apart; each send
    on a socket is a system call, which on loopback also runs the receiver's side)."""

    __slots__ = ("head", "transport")

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = None  # None: nothing written yet; b"": sent

    def write(self, data: bytes) -> None:
        head = self.head
        if head is None:
            if data != _CONTINUE:  # (a "100 Continue" is no response: the client waits for it)
                self.head = data  # the response's first write: its head
                return
        elif head:
            data = head + data
            self.head = b""
        self.transport.write(data)

    def flush(self) -> None:
        if self.head:
            self.transport.write(self.head)
            self.head = b""

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def is_closing(self) -> bool:
        return self.transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def guarded_protocol(limits: HttpLimits) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol with a bounded request head and head/body deadlines."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        # The deadline of the phase the connection is in (loop time; 0.0: none), watched by
        # one timer that is moved only when a deadline comes earlier than it: each request
        # arms two deadlines and clears one, and a timer for each cost more than the rest of
        # the guard (a timer handle made and canceled per deadline).
        _head_bytes = 0
        _expires = 0.0
        _timer: asyncio.TimerHandle | None = None

        def _arm(self, seconds: float) -> None:
            expires = self.loop.time() + seconds
            self._expires = expires
            timer = self._timer
            if timer is None or timer.when() > expires:
                if timer is not None:
                    timer.cancel()
                self._timer = self.loop.call_at(expires, self._due)

        def _disarm(self) -> None:
            self._expires = 0.0

        def _due(self) -> None:
            self._timer = None
            expires = self._expires
            if not expires:
                return
            if self.loop.time() < expires:  # armed again since: watch the new deadline
                self._timer = self.loop.call_at(expires, self._due)
            elif not self.transport.is_closing():
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(limits.head_timeout_s)  # a connection that never sends a request

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0
            self._arm(limits.head_timeout_s)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > limits.max_head_bytes and not self.transport.is_closing():
                self._disarm()
                body = b'{"code":3,"message":"request header fields too large","details":[]}'
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + body
                )
                self.transport.close()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            if not self.transport.is_closing():
                super().on_header(name, value)

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                return
            self._arm(limits.body_timeout_s)
            previous = self.cycle
            super().on_headers_complete()
            if self.cycle is not previous:  # a request (not an upgrade): its own writer
                self.cycle.transport = _OneWrite(self.transport)  # type: ignore[assignment]

        def on_response_complete(self) -> None:
            writer = self.cycle.transport if self.cycle is not None else None
            if isinstance(writer, _OneWrite):
                writer.flush()  # a head without a body (HEAD, 204) goes out now
            super().on_response_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            super().data_received(data)

    return GuardedHttpToolsProtocol


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with ``scope["extensions"]["pyexchange.abort"]``: a
    way to cut a connection at once (a subscriber that stopped reading cannot be closed
    politely: the close frame would wait behind the frames it does not read)."""

    async def run_asgi(self) -> None:
        self.scope["extensions"]["pyexchange.abort"] = self.transport.abort  # type: ignore[typeddict-unknown-key]
        await super().run_asgi()


# ------------------------------------------------------------ the server


class _QuietServer(uvicorn.Server):
    """uvicorn inside someone else's process: no signal handlers of its own."""

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        import contextlib

        return contextlib.nullcontext()


class RestServer:
    """Serves an ASGI app on ``host:port`` inside the running loop."""

    def __init__(self, app: Any, host: str, port: int, limits: HttpLimits) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.limits = limits
        self.port: int | None = None
        self._server: _QuietServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.listen(2048)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            loop="none",  # the loop is already running
            http=guarded_protocol(self.limits),
            ws=AbortableWebSocketProtocol,
            ws_max_size=64 * 1024,  # client -> server messages are small subscribe requests
            ws_ping_interval=20.0,
            ws_ping_timeout=20.0,
            ws_per_message_deflate=False,
            lifespan="off",
            # this server is the edge: X-Forwarded-For from a loopback client would let it
            # pick the address its rate limit is counted under (uvicorn trusts 127.0.0.1)
            proxy_headers=False,
            access_log=False,
            log_config=None,
            server_header=False,
            date_header=False,
            timeout_keep_alive=int(max(1, self.limits.keep_alive_s)),
            limit_concurrency=self.limits.max_connections,
            timeout_graceful_shutdown=2,
        )
        self._server = _QuietServer(config)
        started = asyncio.Event()

        async def serve() -> None:
            assert self._server is not None
            try:
                await self._server.serve(sockets=[sock])
            finally:
                started.set()

        self._task = asyncio.create_task(serve(), name="rest-server")
        while not self._server.started and not self._task.done():
            await asyncio.sleep(0.005)
        if self._task.done():
            self._task.result()
            raise OSError(f"the REST server did not start on {self.host}:{self.requested_port}")
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 5.0)
        except TimeoutError:
            self._server.force_exit = True
            await self._task
        self._server = None
        self._task = None
