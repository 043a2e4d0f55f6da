"""The Polymarket US public API (REST + WebSocket), so the venue's SDK trades here unchanged.

A thin adapter over the service layer, like ``pyexchange.api.grpc``: it parses
the venue's JSON exactly (``wire.py``), maps the venue's rules onto the core's
in one place (``venue.py``), checks the venue's Ed25519 signatures
(``auth.py``), and serves on its own port beside gRPC (``http.py``: uvicorn in
the server's loop). docs/venue_api.md is the conformance table: every SDK
method and WebSocket subscription, and what this server does with it.

Modules: ``http`` (uvicorn, limits, router), ``app`` (the ASGI app: maintenance,
auth, per-address limits, errors, metrics), ``errors``, ``wire``, ``venue``,
``auth``, ``context`` (what handlers share), ``public`` (markets, books, events,
series, sports, search), ``account`` (balances), ``orders`` (order entry),
``portfolio`` (positions, activities), ``maintenance`` (the venue's maintenance
sequence and its admin endpoint), ``webview`` (the pages at ``/`` and the operator's
health JSON: docs/webview.md), ``objects`` (the Order, Execution and
UserPosition objects), ``ids`` (order, execution and trade ids), ``ws`` (the two
WebSockets).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...feeds.history import OrderHistory
from ...service.auth import KeyStore, RateLimiter
from ...service.catalogue import Catalogue
from .account import AccountApi
from .app import AddressLimiter, VenueApp
from .auth import VenueAuth
from .context import Settings, VenueContext
from .errors import unimplemented
from .http import HttpLimits, RestServer
from .maintenance import PATH as MAINTENANCE_PATH
from .maintenance import Maintenance
from .orders import OrdersApi
from .portfolio import PortfolioApi
from .public import PublicApi
from .webview import WebView
from .ws import WebSocketApi


@dataclass
class VenueConfig:
    host: str = "127.0.0.1"
    port: int = 8080  # 0: a free port
    address_rate: float = 20.0  # public requests per second per client address (the venue's)
    address_burst: int = 20
    heartbeat_s: float = 10.0  # {"heartbeat": {}} on every WebSocket connection this often
    ws_max_queue: int = 4096  # frames queued per connection beyond which it is dropped
    webview: bool = True  # the pages at / and /ops/v1/health (webview.py)
    limits: HttpLimits = field(default_factory=HttpLimits)
    settings: Settings = field(default_factory=Settings)


class VenueApi:
    """The venue API of one server: ``await start()`` returns the port; ``await stop()``."""

    def __init__(
        self,
        config: VenueConfig,
        *,
        keys: KeyStore,
        keys_path: Path | None,
        rate_limiter: RateLimiter,
        catalogue: Catalogue,
        gateway: Any,
        marketdata: Any,
        dropcopy: Any = None,
        metrics: Any = None,
        unserved: str = "",
    ) -> None:
        """Without ``dropcopy`` there is no order history: the order entry, positions and
        activities answer 501 and the private socket's order, position and balance
        subscriptions an error frame, saying ``unserved`` (why this server has none)."""
        self.config = config
        self.context = VenueContext(catalogue, gateway, marketdata, config.settings)
        on_refused = None if metrics is None else metrics.refuse
        self.auth = VenueAuth(keys, rate_limiter, keys_path=keys_path, on_refused=on_refused)
        self.app = VenueApp(
            config.limits,
            self.auth,
            AddressLimiter(config.address_rate, config.address_burst),
            metrics,
        )
        self.dropcopy = dropcopy
        self.history = OrderHistory() if dropcopy is not None else None
        self.context.history = self.history
        PublicApi(self.context).register(self.app)
        AccountApi(self.context).register(self.app)
        if self.history is not None:  # order entry needs the order history (drop copy on)
            orders = OrdersApi(self.context, self.history)
            orders.register(self.app)
            PortfolioApi(self.context, orders, self.history, self._mark).register(self.app)
        else:  # a clear refusal on every route it would serve, never a bare 404
            self.context.unserved = unserved or (
                "this server runs without the drop copy, from which the order entry, "
                "positions and activities read their orders"
            )
            for method, path, _handler, permission in (*OrdersApi.ROUTES, *PortfolioApi.ROUTES):
                self.app.add(method, path, self._unserved, permission)
        self.websockets = WebSocketApi(
            self.context,
            self.auth,
            heartbeat_s=config.heartbeat_s,
            max_queue=config.ws_max_queue,
            metrics=metrics,
        )
        self.websockets.register(self.app)
        self.maintenance = Maintenance(self.context, self.app, self.websockets, keys)
        self.app.admin[MAINTENANCE_PATH] = self.maintenance.handle
        if config.webview:
            WebView(self.app, metrics, config.heartbeat_s).register()
        self.server = RestServer(self.app, config.host, config.port, config.limits)

    async def _unserved(self, request: Any, key: Any) -> Any:
        raise unimplemented(self.context.unserved)

    def _mark(self, market: int) -> int | None:
        stats = self.context.trade_stats(market)
        return stats.last_price if stats is not None else None

    @property
    def port(self) -> int | None:
        return self.server.port

    async def start(self) -> int:
        if self.history is not None:
            await self.history.start(self.dropcopy)
        await self.websockets.start()
        return await self.server.start()

    async def stop(self) -> None:
        await self.websockets.close_all(1001)  # going away: uvicorn then stops at once
        await self.server.stop()
        await self.websockets.stop()
        self.auth.close()
