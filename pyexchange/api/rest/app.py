"""The venue's REST and WebSocket API as one app: routing, auth, limits, errors, metrics.

Every HTTP request goes through ``VenueApp.begin`` once its head is in (1-3: what is
refused there is answered without reading the body) and ``VenueApp.finish`` once its
body is (4-5); ``http.venue_protocol`` calls them. WebSocket upgrades come through
``VenueApp.__call__`` (ASGI, from uvicorn's WebSocket protocol). In order:

1. maintenance: every request is refused with 503 while the exchange is in
   maintenance (spec §5.4), WebSocket upgrades too;
2. the route: unknown path 404, known path with another method 405;
3. the body: at most ``max_body_bytes`` (413), read whole before the handler;
4. auth: public routes (the venue's gateway host) take a token from the
   client address's bucket (20/s by default, the venue's); authenticated routes
   check the signature and take a token from the key's bucket (``auth.py``);
5. the handler, whose ``ApiError`` becomes the venue's error body; anything
   else is logged and answered 500 with no detail.

The SDK sends public calls to ``gateway_base_url`` and authenticated ones to
``api_base_url``; one server answers both (point both URLs at it). Each
response echoes ``poly-correlation-id`` so the SDK's errors carry it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ApiError, rate_limited, unavailable
from .http import HttpLimits, Request, Response, Router

log = logging.getLogger(__name__)

JSON = (b"content-type", b"application/json")
CORRELATION = "poly-correlation-id"
_CORRELATION = CORRELATION.encode()


@dataclass
class _Bucket:
    tokens: float
    updated: float


class AddressLimiter:
    """A token bucket per client address (public endpoints), at most ``max_addresses`` kept."""

    def __init__(
        self,
        rate: float,
        burst: int,
        max_addresses: int = 65_536,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.max_addresses = max_addresses
        self.clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def allow(self, address: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(address)
        if bucket is None:
            if len(self._buckets) >= self.max_addresses:
                self._buckets.popitem(last=False)
            bucket = self._buckets[address] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(
                float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate
            )
            bucket.updated = now
            self._buckets.move_to_end(address)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False


@dataclass
class Route:
    handler: Callable[..., Any]
    permission: str | None  # None: public (the gateway); else the key's permission
    label: str


class VenueApp:
    """The HTTP handler of ``http.venue_protocol`` and the ASGI callable of WebSockets."""

    def __init__(
        self,
        limits: HttpLimits,
        auth: Any,
        address_limiter: AddressLimiter,
        metrics: Any = None,
    ) -> None:
        self.limits = limits
        self.auth = auth
        self.address_limiter = address_limiter
        self.metrics = metrics
        self.router: Router[Route] = Router()
        self.websockets: dict[str, Callable[..., Any]] = {}
        self.admin: dict[str, Callable[..., Any]] = {}  # served in maintenance too; own auth
        self.maintenance = False

    def add(self, method: str, path: str, handler: Callable[..., Any], permission: str | None):
        # the label is the route's pattern: one metrics series per route, never one per id
        self.router.add(method, path, Route(handler, permission, f"{method} {path}"))

    def add_websocket(self, path: str, handler: Callable[..., Any]) -> None:
        self.websockets[path] = handler

    async def _run(self, route: Route, request: Request) -> Response:
        if route.permission is None:
            if not self.address_limiter.allow(request.client):
                raise rate_limited()
            key = None
        else:
            key = await self.auth.authenticate(
                request.headers, request.method, request.path, route.permission
            )
        return await route.handler(request, key)

    # ------------------------------------------------------------- HTTP

    def begin(self, request: Request) -> Response | None:
        """Its head is in: an answer now (maintenance, an unknown route, a declared body
        above the limit: the body is not read), or None (read the body, then ``finish``)."""
        request.started = time.perf_counter()
        try:
            admin = self.admin.get(request.path)
            if admin is not None:
                request.label = request.method + " " + request.path
                request.target = admin
            else:
                route, params, exists = self.router.match(request.method, request.path)
                if route is not None:
                    request.label = route.label
                if self.maintenance:
                    raise unavailable("the exchange is in maintenance; try again later")
                if route is None:
                    raise ApiError(5, "not found", status=405 if exists else 404)
                request.params = params
                request.target = route
            limit = self.limits.max_body_bytes
            declared = request.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                raise ApiError(3, f"request body above {limit} bytes", status=413)
        except ApiError as exc:
            return self._complete(request, Response(exc.status, exc.body(), [JSON, *exc.headers]))
        return None

    async def finish(self, request: Request) -> Response:
        """Its body is in: auth and the handler; an ``ApiError`` is the venue's error body,
        anything else is logged and answered 500 with no detail."""
        try:
            target = request.target
            if type(target) is Route:
                response = await self._run(target, request)
            else:
                response = await target(request)  # an admin endpoint: its own auth
        except ApiError as exc:
            response = Response(exc.status, exc.body(), [JSON, *exc.headers])
        except Exception:
            log.exception("REST handler failed", extra={"path": request.path})
            response = Response(500, ApiError(13, "internal error").body(), [JSON])
        return self._complete(request, response)

    def too_large(self, request: Request) -> Response:
        error = ApiError(3, f"request body above {self.limits.max_body_bytes} bytes", status=413)
        return self._complete(request, Response(413, error.body(), [JSON]))

    def _complete(self, request: Request, response: Response) -> Response:
        """JSON unless the handler said otherwise, and ``poly-correlation-id`` echoed."""
        headers = response.headers or [JSON]
        correlation = request.headers.get(CORRELATION)
        if correlation and len(correlation) <= 64:
            headers = [*headers, (_CORRELATION, correlation.encode("latin-1"))]
        response.headers = headers
        return response

    def sent(self, request: Request, response: Response) -> None:
        seconds = time.perf_counter() - request.started
        label = request.label
        if self.metrics is not None:
            self.metrics.observe(label, response.status, seconds)
        if response.status >= 500 or log.isEnabledFor(logging.DEBUG):
            log.log(
                logging.WARNING if response.status >= 500 else logging.DEBUG,
                "REST request",
                extra={
                    "route": label,
                    "status": response.status,
                    "ms": round(seconds * 1000, 3),
                    "correlation_id": (request.headers.get(CORRELATION) or "")[:64],
                },
            )

    # -------------------------------------------------------- WebSocket (ASGI)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """uvicorn's WebSocket protocol calls the app this way (HTTP requests come through
        ``http.venue_protocol``: ``begin``, ``finish``, ``sent``)."""
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)

    async def _websocket(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.websockets.get(scope["path"])
        if handler is None or self.maintenance:
            status = 404 if handler is None else 503
            error = ApiError(
                5 if handler is None else 14,
                "not found"
                if handler is None
                else "the exchange is in maintenance; try again later",
            )
            await deny(send, status, error.body())
            return
        await handler(scope, receive, send)


async def deny(send: Any, status: int, body: bytes) -> None:
    """Refuse a WebSocket upgrade with an HTTP status (the SDK's ``connect()`` raises)."""
    await send({"type": "websocket.http.response.start", "status": status, "headers": [JSON]})
    await send({"type": "websocket.http.response.body", "body": body})


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body, [JSON])
