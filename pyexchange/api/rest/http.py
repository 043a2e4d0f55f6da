"""HTTP plumbing of the REST API: uvicorn in the server's loop, our protocol on httptools, limits.

Why this stack (measured, BENCHMARKS.md "HTTP stack", ``bench/http_choice.py``):
uvicorn with httptools and uvloop serving a bare ASGI callable costs about 55 us
of server CPU per request on this machine where aiohttp costs 90-97 us and
starlette's routing on the same uvicorn 95 us; the router here is a dict of
exact paths and a short list of patterns, which is all the venue's API needs.
HTTP requests skip uvicorn's ASGI layer too (``venue_protocol``: uvicorn's protocol
for connections, parse errors, upgrades and shutdown; the requests handed to the app
as ``Request`` objects and answered in one write; BENCHMARKS.md, venue, "own protocol").

uvicorn runs inside the exchange's asyncio loop (``RestServer.start``), beside
grpc.aio, on a socket this module binds (port 0: a free one). It does not touch
the process's signals: ``pyexchange serve`` owns them. WebSocket upgrades go to
uvicorn's WebSocket protocol and the app's ASGI side.

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
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qsl, unquote

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
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

    __slots__ = (
        "body",
        "client",
        "headers",
        "label",
        "method",
        "params",
        "path",
        "query_string",
        "started",
        "target",
    )

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
        self.started = 0.0  # perf_counter() when it was begun
        self.label = "unmatched"  # its metrics series: the route's pattern
        self.target: Any = None  # what answers it (the app's business)

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


# ------------------------------------------------------------ the protocol


class Handler(Protocol):
    """What the protocol serves requests with (``VenueApp``): a request is begun when its
    head is complete and it is its connection's turn, finished when its body is in."""

    def begin(self, request: Request) -> Response | None:
        """Answer now (no body read: an unknown route, maintenance, a declared body above
        the limit), or None to read the body and ``finish``."""

    async def finish(self, request: Request) -> Response:
        """The response to a request whose body is in (never raises)."""

    def too_large(self, request: Request) -> Response:
        """The response to a body that went past ``max_body_bytes`` while arriving."""

    def sent(self, request: Request, response: Response) -> None:
        """After the response went out (metrics, the log)."""


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# uvicorn's answer past ``limit_concurrency``, as it words it
_OVERLOADED = Response(
    503,
    b"Service Unavailable",
    [(b"content-type", b"text/plain; charset=utf-8")],
)


class _Call:
    """One request of a connection, from its head to its response."""

    __slots__ = (
        "body",
        "complete",
        "expect",
        "keep_alive",
        "request",
        "responded",
        "size",
        "waiting",
    )

    def __init__(self, request: Request, keep_alive: bool, expect: bool) -> None:
        self.request = request
        self.keep_alive = keep_alive
        self.expect = expect  # the client waits for "100 Continue" before its body
        self.body: list[bytes] = []
        self.size = 0
        self.complete = False  # the whole message is in
        self.waiting = False  # begun, its body still arriving
        self.responded = False


def venue_protocol(limits: HttpLimits, handler: Handler) -> type[HttpToolsProtocol]:
    """HTTP/1.1 on httptools for ``handler``, in the shape of uvicorn's protocol (whose
    connection bookkeeping, 400 on a parse error, WebSocket upgrade and graceful shutdown
    it keeps) without its ASGI layer: no scope, cycle, message dicts or Event per request,
    the head kept as the handler reads it, the response built and sent in one write.
    Requests of a connection are answered in order (a pipelined one waits, reading
    paused, as uvicorn does). Limits: a bounded request head (431), head and body
    deadlines, the keep-alive deadline, all on one timer per connection that is moved
    only when a deadline comes earlier than it (a timer made and canceled per deadline
    cost 2-4 us a request); a body past ``max_body_bytes`` is answered 413 as it arrives."""

    max_body = limits.max_body_bytes

    class VenueHttpProtocol(HttpToolsProtocol):
        # The deadline of the phase the connection is in (loop time; 0.0: none), watched by
        # one timer; ``_due`` finds a deadline moved later and waits for it.
        _head_bytes = 0
        _expires = 0.0
        _timer: asyncio.TimerHandle | None = None
        _parsing: _Call | None = None  # the request whose message is being parsed
        _active: _Call | None = None  # the request whose turn it is, not yet answered
        _blocked = False  # the client does not read its responses: no next request yet
        _expect = False
        _queued: deque[_Call]

        def _arm(self, seconds: float) -> None:
            expires = self.loop.time() + seconds
            self._expires = expires
            timer = self._timer
            if timer is None or timer.when() > expires:
                if timer is not None:
                    timer.cancel()
                self._timer = self.loop.call_at(expires, self._due)

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
            self._queued = deque()
            self._address = self.client[0] if self.client else ""
            self._arm(limits.head_timeout_s)  # a connection that never sends a request

        def connection_lost(self, exc: Exception | None) -> None:
            self._expires = 0.0
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for call in (self._active, *self._queued):
                if call is not None:
                    call.responded = True  # nobody to answer: a handler running goes on
            self._queued.clear()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            super().data_received(data)

        # -------------------------------------------------------- the parser's

        def on_message_begin(self) -> None:
            self.url = b""
            self.headers = []
            self._expect = False
            self._head_bytes = 0
            self._arm(limits.head_timeout_s)

        def _count(self, size: int) -> None:
            self._head_bytes += size
            if self._head_bytes > limits.max_head_bytes and not self.transport.is_closing():
                self._expires = 0.0
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
            self.url += url

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value) + 4)
            if self.transport.is_closing():
                return
            name = name.lower()
            value = value.rstrip(b" \t")  # llhttp keeps trailing whitespace (RFC 9110 5.5)
            if name == b"expect" and value.lower() == b"100-continue":
                self._expect = True
            self.headers.append((name, value))

        def on_headers_complete(self) -> None:
            if self.transport.is_closing():
                return
            self._arm(limits.body_timeout_s)
            parser = self.parser
            method = parser.get_method().decode("ascii")
            version = parser.get_http_version()
            if parser.should_upgrade() and self._should_upgrade():
                # uvicorn's WebSocket protocol takes over (``handle_websocket_upgrade``), and
                # this protocol's deadline is no longer the connection's
                self._expires = 0.0
                self.scope = {"method": method, "headers": self.headers}  # type: ignore[typeddict-item]
                return
            parsed = httptools.parse_url(self.url)
            path = parsed.path.decode("ascii")
            if "%" in path:
                path = unquote(path)
            request = Request(
                method,
                path,
                parsed.query or b"",
                {k.decode("latin-1"): v.decode("latin-1") for k, v in self.headers},
                b"",
                self._address,
            )
            call = _Call(request, version != "1.0" and parser.should_keep_alive(), self._expect)
            self._parsing = call
            if self._active is not None or self._blocked:
                self.flow.pause_reading()  # a pipelined request waits for its turn
                self._queued.append(call)
            else:
                self._begin(call)

        def on_body(self, body: bytes) -> None:
            call = self._parsing
            if call is None or call.responded:
                return
            call.size += len(body)
            if call.size > max_body:
                call.body.clear()
                if call is self._active:
                    self._respond(call, handler.too_large(call.request))
                return
            call.body.append(body)

        def on_message_complete(self) -> None:
            self._expires = 0.0
            call, self._parsing = self._parsing, None
            if call is None:
                return
            call.complete = True
            if call.waiting:
                call.waiting = False
                self._start(call)
            elif call.responded and self._active is None:
                self._idle()  # answered before its body was in (404, 413): keep-alive now

        # -------------------------------------------------------- the handler's

        def _begin(self, call: _Call) -> None:
            self._active = call
            limit = self.limit_concurrency
            if limit is not None and (len(self.connections) >= limit or len(self.tasks) >= limit):
                self.logger.warning("Exceeded concurrency limit.")
                call.keep_alive = False
                self._respond(call, _OVERLOADED, observe=False)
                return
            response = handler.begin(call.request)
            if response is None and call.size > max_body:
                response = handler.too_large(call.request)
            if response is not None:
                self._respond(call, response)
            elif call.complete:
                self._start(call)
            else:
                call.waiting = True
                if call.expect:
                    self.transport.write(_CONTINUE)

        def _start(self, call: _Call) -> None:
            call.request.body = b"".join(call.body)
            call.body = []
            task = self.loop.create_task(self._finish(call))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

        async def _finish(self, call: _Call) -> None:
            try:
                response = await handler.finish(call.request)
            except BaseException:
                if not self.transport.is_closing():
                    self.transport.close()
                raise
            self._respond(call, response)

        def _respond(self, call: _Call, response: Response, observe: bool = True) -> None:
            if call.responded:  # the connection is gone
                return
            call.responded = True
            call.waiting = False  # (a body refused as it arrived: the rest is skipped)
            request = call.request
            body = response.body
            out = [STATUS_LINE[response.status]]
            for name, value in response.headers:
                out += (name, b": ", value, b"\r\n")
            out.append(b"content-length: %d\r\n" % len(body))
            if not call.keep_alive:
                out.append(b"connection: close\r\n")
            out.append(b"\r\n")
            if request.method != "HEAD":
                out.append(body)
            self.transport.write(b"".join(out))
            if observe:
                handler.sent(request, response)
            self.server_state.total_requests += 1
            if not call.keep_alive:
                self.transport.close()
                return
            if call is self._active:
                self._active = None
                self._next()

        def _next(self) -> None:
            if self.transport.is_closing():
                return
            if self.flow.write_paused:  # the client is not reading: serve no more until it does
                self._blocked = True
                return
            self._blocked = False
            if self._queued:
                call = self._queued.popleft()
                self._begin(call)  # (a pipelined Expect gets its "100 Continue" now)
                if not self._queued:
                    self.flow.resume_reading()
            else:
                self.flow.resume_reading()
                self._idle()

        def _idle(self) -> None:
            if self._parsing is None:
                self._arm(limits.keep_alive_s)  # an idle keep-alive connection is closed

        def resume_writing(self) -> None:
            super().resume_writing()
            if self._blocked:
                self._next()

        def shutdown(self) -> None:
            if self._active is None and self._parsing is None:
                self.transport.close()
            else:
                for call in (self._active, self._parsing, *self._queued):
                    if call is not None:
                        call.keep_alive = False

    return VenueHttpProtocol


class AbortableWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, with ``scope["extensions"]["pyexchange.abort"]``: a
    way to cut a connection at once (a subscriber that stopped reading cannot be closed
    politely: the close frame would wait behind the frames it does not read)."""

    async def run_asgi(self) -> None:
        self.scope["extensions"]["pyexchange.abort"] = self.transport.abort  # type: ignore[assignment]
        await super().run_asgi()


# ------------------------------------------------------------ the server


class _QuietServer(uvicorn.Server):
    """uvicorn inside someone else's process: no signal handlers of its own."""

    def capture_signals(self):  # type: ignore[no-untyped-def, override]
        import contextlib

        return contextlib.nullcontext()


class RestServer:
    """Serves ``app`` (a ``Handler`` for HTTP, an ASGI app for WebSockets) on ``host:port``
    inside the running loop."""

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
            http=venue_protocol(self.limits, self.app),
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
