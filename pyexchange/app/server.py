"""The gRPC server: one Exchange, its gateways and publishers, health, reflection, metrics.

``ExchangeServer(config)``: ``await start()`` recovers the data directory,
starts the sequencer, joins the publishers, creates the demo markets, accounts
and keys on a first start, and serves OrderEntry, Admin, MarketData and
DropCopy (the last two when their modules are present), gRPC health and
reflection on ``host:port`` (port 0: a free port, returned). ``await stop()``
refuses new calls, lets the running ones finish, snapshots, drains the
sequencer and closes the journal.

Publishers receive ``on_events(commands, events)`` on the sequencer thread
after every batch (docs/service.md). A publisher joins on the sequencer thread,
between two batches (``join``): ``attach(loop)`` first, then on the sequencer
thread its optional ``load(engine)`` reads the engine as it is after the last
batch, and its ``on_events`` receives every batch after that one, so it never
misses or doubles an event. A publisher without ``load`` whose ``attach`` takes
a second argument gets ``attach(loop, exchange)`` and reads what it needs
itself (the drop copy catches its log up with the journal). ``stop()`` calls
each publisher's ``close()`` after the exchange is closed.
A publisher that raises is logged, never allowed to stop the sequencer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import inspect
import json
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from matchcore import COMMAND_DTYPE, CommandType, EventType, FeeBase

from ..api.grpc import exchange_pb2_grpc as pb_grpc
from ..api.grpc.admin import AdminService
from ..api.grpc.auth import GrpcAuth, current_body, current_method
from ..api.grpc.batch import add_to_server as add_batch_entry
from ..api.grpc.errors import abort
from ..api.grpc.order_entry import OrderEntryService
from ..engine.exchange import Exchange
from ..engine.handover import Handover
from ..engine.journal import EngineConfig, FsyncPolicy
from ..engine.recovery import journal_dir, snapshot_dir
from ..metrics import Metrics
from ..service.admin import Admin, CreateMarket, admin_record
from ..service.auth import Authenticator, KeyStore, RateLimiter
from ..service.catalogue import Catalogue, EventEntry, MarketEntry, MarketRules, SeriesEntry
from ..service.errors import Invalid, ServiceError, Unavailable
from ..service.link import EngineLink
from ..service.markets import Markets
from ..service.messages import reject_text
from ..service.orders import OrderEntry
from ..service.queries import Queries
from ..units import parse_cash, parse_quantity

log = logging.getLogger(__name__)


class Publisher(Protocol):
    def on_events(self, commands: np.ndarray, events: np.ndarray) -> None: ...
    def attach(self, loop: asyncio.AbstractEventLoop) -> None: ...


# ------------------------------------------------------------------ config


@dataclass
class DemoMarket:
    """A market created and opened on a first start (with its catalogue entry: slug, event)."""

    market: int
    tick: str = "0.01"
    min_size: str = "1"
    lot: str = "0.01"
    taker_fee_bps: int = 0
    maker_fee_bps: int = 0
    fee_base: str = "NOTIONAL"
    title: str = ""
    slug: str = ""  # default market-<id>
    event: str = ""  # an event slug of DEMO_EVENTS
    # price bounds: the venue's 0.01 .. 0.99; "" for none (the core's tick .. 1 - tick)
    min_price: str = "0.01"
    max_price: str = "0.99"


DEFAULT_DEMO_MARKETS = (
    DemoMarket(
        1,
        "0.01",
        "1",
        "0.01",
        10,
        0,
        "NOTIONAL",
        "Will it rain in Paris tomorrow?",
        "rain-in-paris-tomorrow",
        "paris-weather",
    ),
    DemoMarket(
        2,
        "0.01",
        "1",
        "0.01",
        20,
        -5,
        "MIN",
        "Will BTC close above $100k this month?",
        "btc-above-100k-this-month",
        "btc-monthly-close",
    ),
    DemoMarket(
        3,
        "0.001",
        "1",
        "1",
        0,
        0,
        "NOTIONAL",
        "Will the home team win the final?",
        "home-team-wins-final",
        "cup-final",
        min_price="",  # a tick the venue lacks: the core's bounds, 0.001 .. 0.999
        max_price="",
    ),
)
# the demo's events and series (catalogue entries, pyexchange/service/catalogue.py)
DEMO_SERIES: tuple[dict[str, Any], ...] = (
    {"id": 1, "slug": "demo", "title": "Demo markets", "recurrence": "daily"},
)
DEMO_EVENTS: tuple[dict[str, Any], ...] = (
    {
        "id": 1,
        "slug": "paris-weather",
        "title": "Paris weather",
        "category": "weather",
        "series_slug": "demo",
    },
    {
        "id": 2,
        "slug": "btc-monthly-close",
        "title": "Bitcoin's monthly close",
        "category": "crypto",
        "series_slug": "demo",
    },
    {
        "id": 3,
        "slug": "cup-final",
        "title": "The cup final",
        "category": "sports",
        "series_slug": "demo",
    },
)


@dataclass
class ServerConfig:
    """Everything ``pyexchange serve`` can be told (``--config FILE`` is this as JSON)."""

    data_dir: Path = Path("exchange-data")
    host: str = "127.0.0.1"
    port: int = 50051  # 0: a free port
    metrics_port: int | None = None  # None: no /metrics endpoint; 0: a free port
    metrics_host: str = "127.0.0.1"
    keys_file: Path | None = None  # default DATA_DIR/keys.json
    fsync: str = "batch"  # batch | interval | none
    fsync_interval_ms: float = 10.0
    snapshot_every: int = 1_000_000
    keep_snapshots: int = 3
    snapshot_on_stop: bool = True
    max_in_flight: int = 10_000  # commands queued and not answered; beyond: RESOURCE_EXHAUSTED
    stream_window: int = 1024  # requests a stream has read and not answered; beyond: not read
    max_batch: int = 8192
    max_message_bytes: int = 64 * 1024
    skew_ms: int = 5_000
    idle_tick_ms: float | None = 100.0  # when idle, a due GTD order expires within this
    grace_s: float = 5.0
    # engine capacities of a new data directory (an existing one keeps its own)
    max_orders: int = 1 << 18
    max_markets: int = 256
    max_accounts: int = 1 << 16
    ledger: bool = True
    # first start: demo markets (created and opened), accounts, deposits and keys
    demo: bool = True
    demo_markets: list[DemoMarket] = field(default_factory=lambda: list(DEFAULT_DEMO_MARKETS))
    demo_accounts: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    demo_deposit: str = "100000"  # dollars deposited per demo account
    # YES+NO pairs minted per demo account and market (so sells work), paid from the deposit
    # at $1 a pair: 3 demo markets leave $97,000 of cash (README.md says so)
    demo_split: str = "1000"
    marketdata: bool = True  # serve MarketData / DropCopy when their modules are installed
    dropcopy: bool = True
    # the Polymarket US API (REST + WebSocket, pyexchange/api/rest) on its own port
    http_port: int | None = 8080  # None: off; 0: a free port
    http_host: str | None = None  # default: host
    http_address_rate: float = 20.0  # public requests/s per client address (the venue's)
    http_address_burst: int = 20
    venue_key_rate: float = 20.0  # requests/s of the demo's Ed25519 keys (the venue's)
    venue_key_burst: int = 20
    book_depth: int = 10  # levels per side of book responses and MARKET_DATA frames
    ws_heartbeat_s: float = 10.0  # WebSocket heartbeat frames this often
    ws_max_queue: int = 4096  # frames a WebSocket connection may fall behind before it is dropped
    webview: bool = True  # the web view at the venue port's / (docs/webview.md)
    catalogue_file: Path | None = None  # more markets, events, series (merged on start)

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_file) if self.keys_file else Path(self.data_dir) / "keys.json"

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            max_orders=self.max_orders,
            max_markets=self.max_markets,
            max_accounts=self.max_accounts,
            max_levels=self.max_markets * 2 * 999,
            max_positions=self.max_orders + self.max_accounts,
            ledger=self.ledger,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        values = dict(data)
        for name in ("data_dir", "keys_file", "catalogue_file"):
            if values.get(name) is not None:
                values[name] = Path(values[name])
        if "demo_markets" in values:
            values["demo_markets"] = [DemoMarket(**m) for m in values["demo_markets"]]
        return cls(**values)

    @classmethod
    def from_file(cls, path: Path | str) -> ServerConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


# ---------------------------------------------------------------- logging


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any ``extra`` fields."""

    _standard = frozenset(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in self._standard and not name.startswith("_"):
                entry[name] = value if isinstance(value, int | float | bool | None) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str | int = "INFO", stream: Any = None) -> None:
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


# ------------------------------------------------------ handler wrapping


@dataclass
class _Malformed:
    """What the request deserializer returns for bytes that are not the message."""

    error: str


class _Received(NamedTuple):
    """A unary request: its bytes as they arrived (what the client signed) and the message."""

    data: bytes
    message: Any


def _safe_deserializer(deserialize: Callable[[bytes], Any] | None, keep_bytes: bool) -> Any:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            message = deserialize(data)
        except Exception as exc:  # DecodeError and friends: answered INVALID_ARGUMENT
            return _Malformed(f"{type(exc).__name__}: {exc}")
        return _Received(data, message) if keep_bytes else message

    return parse


class _Guard:
    """Wraps every handler: sets the method for auth, refuses malformed messages and
    calls during shutdown, turns a ``ServiceError`` into its status, hides internal errors."""

    def __init__(self, server: ExchangeServer) -> None:
        self.server = server

    async def _refuse(self, context: grpc.aio.ServicerContext, exc: ServiceError) -> None:
        self.server.grpc_auth.refused(exc)
        await abort(context, exc)

    def _check(self, method: str, request: Any) -> Any:
        """The call's message (None for a client stream); records what auth verifies."""
        current_method.set(method)
        if self.server.gateway is not None and self.server.gateway.closing:
            raise Unavailable("the exchange is shutting down", "SHUTTING_DOWN")
        if isinstance(request, _Malformed):
            raise Invalid(f"malformed message: {request.error}", "MALFORMED_MESSAGE")
        if request is None:
            current_body.set(b"")
            return None
        current_body.set(request.data)
        return request.message

    @staticmethod
    async def _checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for request in requests:
            if isinstance(request, _Malformed):
                raise Invalid(f"malformed message: {request.error}", "MALFORMED_MESSAGE")
            yield request

    def wrap(self, method: str, handler: Any) -> Any:
        streaming_in = handler.request_streaming
        streaming_out = handler.response_streaming
        attribute = ("stream" if streaming_in else "unary") + (
            "_stream" if streaming_out else "_unary"
        )
        behavior = getattr(handler, attribute)
        guard = self
        if inspect.isasyncgenfunction(behavior):

            async def generator(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    if streaming_in:
                        guard._check(method, None)
                        request = guard._checked(request)
                    else:
                        request = guard._check(method, request)
                    async for reply in behavior(request, context):
                        yield reply
                except ServiceError as exc:
                    await guard._refuse(context, exc)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("handler failed", extra={"method": method})
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")

            wrapped: Any = generator
        elif inspect.iscoroutinefunction(behavior):

            async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
                try:
                    if streaming_in:
                        guard._check(method, None)
                        request = guard._checked(request)
                    else:
                        request = guard._check(method, request)
                    return await behavior(request, context)
                except ServiceError as exc:
                    await guard._refuse(context, exc)
                except (grpc.aio.AbortError, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("handler failed", extra={"method": method})
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")

            wrapped = coroutine
        else:  # a synchronous handler: leave it as it is
            return handler
        return handler._replace(
            request_deserializer=_safe_deserializer(
                handler.request_deserializer, keep_bytes=not streaming_in
            ),
            **{attribute: wrapped},
        )


class _Registrar:
    """Stands in for the server in the generated ``add_XServicer_to_server``: wraps each handler."""

    def __init__(self, server: grpc.aio.Server, guard: _Guard) -> None:
        self.server = server
        self.guard = guard
        self.services: list[str] = []

    def add_generic_rpc_handlers(self, handlers: Iterable[Any]) -> None:
        pass  # the same handlers arrive through add_registered_method_handlers

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        wrapped = {
            name: self.guard.wrap(f"/{service}/{name}", handler)
            for name, handler in handlers.items()
        }
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(service, wrapped),)
        )
        self.server.add_registered_method_handlers(service, wrapped)
        self.services.append(service)


# ------------------------------------------------------------------ server


def demo_catalogue(config: ServerConfig) -> Catalogue:
    """The catalogue entries of the demo markets (slugs, titles, events, a series)."""
    catalogue = Catalogue()
    for series in DEMO_SERIES:
        catalogue.add_series(SeriesEntry(**series))
    used = {m.event for m in config.demo_markets}
    for event in DEMO_EVENTS:
        if event["slug"] in used:
            catalogue.add_event(EventEntry(**event))
    for m in config.demo_markets:
        catalogue.add_market(
            MarketEntry(
                m.market,
                m.slug or f"market-{m.market}",
                title=m.title,
                event_slug=m.event if m.event in catalogue.events else "",
            )
        )
    return catalogue


def _market_commands(market: int, rules: MarketRules) -> list[np.ndarray]:
    request = CreateMarket(
        market=market,
        tick=rules.tick,
        min_size=rules.min_size,
        lot=rules.lot,
        taker_fee_bps=rules.taker_fee_bps,
        maker_fee_bps=rules.maker_fee_bps,
        fee_base=FeeBase[rules.fee_base.upper()],
        min_price=rules.min_price,
        max_price=rules.max_price,
    )
    rows = [np.array([admin_record(request)], dtype=COMMAND_DTYPE)]
    if rules.open:
        opened = np.zeros(1, dtype=COMMAND_DTYPE)
        opened["type"] = CommandType.SET_MARKET_STATE
        opened["market"] = market
        opened["arg"] = 2  # OPEN
        rows.append(opened)
    return rows


def demo_commands(config: ServerConfig) -> np.ndarray:
    """The first start of a demo exchange: markets (opened), accounts, deposits, splits."""
    rows: list[np.ndarray] = []
    for m in config.demo_markets:
        rules = MarketRules(
            m.tick, m.min_size, m.lot, m.taker_fee_bps, m.maker_fee_bps, m.fee_base, open=True,
            min_price=m.min_price, max_price=m.max_price,
        )  # fmt: skip
        rows.extend(_market_commands(m.market, rules))
    deposit = parse_cash(config.demo_deposit) if config.demo_deposit else 0
    for account in config.demo_accounts:
        added = np.zeros(1, dtype=COMMAND_DTYPE)
        added["type"] = CommandType.ADD_ACCOUNT
        added["account"] = account
        rows.append(added)
        if deposit:
            cash = np.zeros(1, dtype=COMMAND_DTYPE)
            cash["type"] = CommandType.DEPOSIT
            cash["account"] = account
            cash["quantity"] = deposit
            rows.append(cash)
        for m in config.demo_markets if config.demo_split else ():
            split = np.zeros(1, dtype=COMMAND_DTYPE)
            split["type"] = CommandType.SPLIT
            split["account"] = account
            split["market"] = m.market
            split["quantity"] = parse_quantity(config.demo_split, parse_quantity(m.lot, 1))
            rows.append(split)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=COMMAND_DTYPE)


class ExchangeServer:
    def __init__(self, config: ServerConfig | None = None, *, keys: KeyStore | None = None) -> None:
        self.config = config if config is not None else ServerConfig()
        self.keys = KeyStore()
        self._given_keys = keys
        self.metrics = Metrics()
        self.authenticator = Authenticator(
            self.keys,
            skew_ms=self.config.skew_ms,
            rate_limiter=RateLimiter(),
        )
        self.grpc_auth = GrpcAuth(self.authenticator, on_refused=self.metrics.refuse)
        self.markets = Markets()
        self.catalogue = Catalogue()
        self.venue: Any = None  # the Polymarket US API (pyexchange.api.rest.VenueApi)
        self.http_port: int | None = None
        self.exchange: Exchange | None = None
        self.gateway: EngineLink | None = None  # the service layer's engine link
        self.orders: OrderEntry | None = None  # the service layer (pyexchange/service)
        self.queries: Queries | None = None
        self.admin: Admin | None = None
        self.port: int | None = None
        self.metrics_port: int | None = None
        self.fresh = False
        self._server: grpc.aio.Server | None = None
        self._health: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handover: Handover | None = None  # the sequencer's, to the loop (start())
        self._sinks: tuple[Callable[[np.ndarray, np.ndarray], None], ...] = ()
        self._publishers: list[Any] = []  # joined
        self._waiting: list[Any] = []  # registered before start
        self._servicers: list[tuple[Callable[[Any, Any], None], Any]] = []

    # -------------------------------------------------------- publishers

    @property
    def publishers(self) -> tuple[Any, ...]:
        """The publishers receiving ``on_events`` (market data, drop copy, ...)."""
        return tuple(self._publishers)

    def add_publisher(self, publisher: Any) -> None:
        """Register a publisher before ``start()`` (it joins then); after it, ``await join()``."""
        if self.exchange is not None:
            raise RuntimeError("the server is running: use `await server.join(publisher)`")
        self._waiting.append(publisher)

    def add_servicer(self, add_to_server: Callable[[Any, Any], None], servicer: Any) -> None:
        """Register a servicer before ``start()``: ``add_XServicer_to_server`` and the instance."""
        if self._server is not None:
            raise RuntimeError("servicers are registered before start()")
        self._servicers.append((add_to_server, servicer))

    async def join(self, publisher: Any) -> None:
        """Attach ``publisher`` to the loop and join it to the event stream between two batches."""
        if self.exchange is None or self._loop is None:
            raise RuntimeError("the server is not started")
        exchange = self.exchange
        if hasattr(publisher, "attach"):
            parameters = inspect.signature(publisher.attach).parameters
            # with the sequencer's hand-over the loop wakes once per batch for all of them
            extra = {"handover": self._handover} if "handover" in parameters else {}
            if len(parameters) - len(extra) >= 2 and not hasattr(publisher, "load"):
                publisher.attach(self._loop, exchange, **extra)  # it reads what it needs itself
            else:
                publisher.attach(self._loop, **extra)

        def joined(engine: Any) -> None:  # sequencer thread: atomic with the event stream
            if hasattr(publisher, "load"):
                publisher.load(engine)
            self._sinks = (*self._sinks, publisher.on_events)

        await asyncio.wrap_future(exchange.query(joined))
        self._publishers.append(publisher)

    def _on_events(self, commands: np.ndarray, events: np.ndarray) -> None:
        """Sequencer thread: every batch to every sink; a failing sink is logged, not fatal."""
        for sink in self._sinks:
            try:
                sink(commands, events)
            except Exception:
                log.exception("event sink failed", extra={"sink": repr(sink)})

    # ------------------------------------------------------------- lifecycle

    async def query(self, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(engine)`` on the sequencer thread (tests, tools)."""
        if self.exchange is None:
            raise RuntimeError("the server is not started")
        return await asyncio.wrap_future(self.exchange.query(fn))

    def _load_keys(self) -> None:
        path = self.config.keys_path
        if self._given_keys is not None:
            store = self._given_keys
        elif path.exists():
            store = KeyStore.load(path)
        else:
            demo = KeyStore.demo(
                self.config.demo_accounts if self.config.demo else (),
                venue_rate=self.config.venue_key_rate,
                venue_burst=self.config.venue_key_burst,
            )
            store = demo if self.config.demo else KeyStore([demo.by_name("admin")])
            store.save(path)
            log.info("wrote new API keys", extra={"path": str(path)})
        for key in store:
            self.keys.add(key)

    def _discover_services(self) -> None:
        """MarketData and DropCopy, when their modules are installed (docs/service.md)."""
        config = self.config
        wanted = (
            ("marketdata", config.marketdata, "MarketDataPublisher", "MarketDataService", ()),
            ("dropcopy", config.dropcopy, "DropCopyPublisher", "DropCopyService", None),
        )
        for module_name, enabled, publisher_name, service_name, args in wanted:
            if not enabled:
                continue
            feed_name = f"pyexchange.feeds.{module_name}"
            api_name = f"pyexchange.api.grpc.{module_name}"
            try:
                feed = importlib.import_module(feed_name)
                api = importlib.import_module(api_name)
            except ImportError as exc:
                if exc.name not in (feed_name, api_name):
                    log.warning("cannot import %s: %s", module_name, exc)
                continue
            try:
                publisher = getattr(feed, publisher_name)(
                    *(args if args is not None else (Path(config.data_dir),))
                )
                servicer = getattr(api, service_name)(publisher, self.grpc_auth)
            except Exception:
                log.exception("cannot start %s", feed_name)
                continue
            add = getattr(api, "add_to_server", None) or getattr(
                pb_grpc, f"add_{service_name.removesuffix('Service')}Servicer_to_server"
            )  # its own registration (MarketData: pre-serialized messages), or the generated one
            self._waiting.append(publisher)
            self._servicers.append((add, servicer))

    async def start(self) -> int:
        """Recover, start everything and serve; returns the port."""
        config = self.config
        self._loop = asyncio.get_running_loop()
        self._handover = Handover(self._loop)
        data_dir = Path(config.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self._load_keys()
        self.authenticator.not_before_ms = self.authenticator.clock()
        self.fresh = not any(journal_dir(data_dir).glob("*.journal")) and not any(
            snapshot_dir(data_dir).glob("*.snapshot")
        )
        started = time.perf_counter()
        self.exchange = await asyncio.to_thread(
            Exchange.open,
            data_dir,
            config.engine_config() if self.fresh else None,
            fsync=FsyncPolicy(config.fsync),
            fsync_interval_ms=config.fsync_interval_ms,
            snapshot_every=config.snapshot_every,
            keep_snapshots=config.keep_snapshots,
            max_batch=config.max_batch,
            on_events=self._on_events,
            idle_tick_ns=None if config.idle_tick_ms is None else int(config.idle_tick_ms * 1e6),
            after_batch=self._handover.flush,
        )
        exchange = self.exchange
        recovered = exchange.recovered
        self.gateway = EngineLink(
            exchange, self.markets, self.metrics, config.max_in_flight, self._handover
        )
        gateway = self.gateway
        self.orders = OrderEntry(gateway, self.authenticator)
        self.queries = Queries(gateway)
        self.admin = Admin(gateway)
        self.metrics.track(lambda: gateway.in_flight, lambda: exchange.sequencer.queue_depth)

        def own_sinks(engine: Any) -> None:
            self.markets.load(engine)
            self._sinks = (self.markets.on_events, self.metrics.on_events, *self._sinks)

        await asyncio.wrap_future(exchange.query(own_sinks))
        self._discover_services()
        for publisher in self._waiting:
            await self.join(publisher)
            if hasattr(publisher, "subscriber_count"):
                feed = type(publisher).__name__.removesuffix("Publisher").lower()
                self.metrics.track_subscribers(feed, publisher.subscriber_count)
        self._waiting.clear()
        exchange.sequencer.journal.on_sync = self.metrics.journal_fsync.observe
        if self.fresh and config.demo:
            await self._demo_setup()
        await self._open_catalogue()

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        guard = _Guard(self)
        registrar = _Registrar(server, guard)
        window = config.stream_window
        pb_grpc.add_OrderEntryServicer_to_server(
            OrderEntryService(self.orders, self.queries, self.grpc_auth, window=window), registrar
        )
        add_batch_entry(self.orders, self.grpc_auth, registrar, window=window)  # api/batch.proto
        pb_grpc.add_AdminServicer_to_server(AdminService(self.admin, self.grpc_auth), registrar)
        for add, servicer in self._servicers:
            add(servicer, registrar)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        names = [*registrar.services, health.SERVICE_NAME, reflection.SERVICE_NAME]
        reflection.enable_server_reflection(names, server)
        try:
            port = server.add_insecure_port(f"{config.host}:{config.port}")
        except RuntimeError as exc:
            port = 0
            error: Exception | None = exc
        else:
            error = None
        if not port:
            await self.stop(0)  # closes the exchange and the publishers already joined
            raise OSError(f"cannot listen on {config.host}:{config.port}: {error or 'in use'}")
        await server.start()
        self._server = server
        self.port = port
        for name in ("", *registrar.services):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if config.http_port is not None:
            try:
                await self._start_venue_api()
            except OSError as exc:
                await self.stop(0)
                raise OSError(
                    f"cannot serve the REST API on {config.http_host or config.host}:"
                    f"{config.http_port}: {exc}"
                ) from None
        if config.metrics_port is not None:
            try:
                self.metrics_port = self.metrics.serve_http(
                    config.metrics_port, config.metrics_host
                )
            except OSError as exc:
                log.warning("no metrics endpoint: %s", exc, extra={"port": config.metrics_port})
        log.info(
            "exchange started",
            extra={
                "host": config.host,
                "port": port,
                "data_dir": str(data_dir),
                "last_seq": exchange.sequencer.next_seq - 1,
                "snapshot_seq": recovered.snapshot_seq,
                "replayed": recovered.replayed_commands,
                "services": ",".join(registrar.services),
                "metrics_port": self.metrics_port,
                "http_port": self.http_port,
                "seconds": round(time.perf_counter() - started, 3),
            },
        )
        return port

    async def _open_catalogue(self) -> None:
        """The data directory's catalogue, with the demo's and the catalogue file's entries
        merged in; saved before the engine creates the markets it has rules for."""
        config = self.config
        catalogue = Catalogue.open(config.data_dir)
        if self.fresh and config.demo:
            catalogue.merge(demo_catalogue(config))
        if config.catalogue_file is not None:
            catalogue.merge(Catalogue.load(config.catalogue_file))
        catalogue.save()
        self.catalogue = catalogue
        missing = [
            entry
            for entry in catalogue.markets.values()
            if entry.create is not None and self.markets.get(entry.market) is None
        ]
        if not missing:
            return
        assert self.exchange is not None
        rows = [r for e in missing for r in _market_commands(e.market, e.create)]  # type: ignore[arg-type]
        events = await asyncio.wrap_future(self.exchange.submit(np.concatenate(rows)))
        for e in events[events["type"] == EventType.REJECTED]:
            name, message = reject_text(int(e["reason"]))
            log.error(
                "catalogue market not created",
                extra={"market": int(e["market"]), "reason": name, "detail": message},
            )

    async def _start_venue_api(self) -> None:
        from ..api.rest import VenueApi, VenueConfig
        from ..api.rest.context import Settings

        config = self.config
        marketdata = next(
            (p for p in self._publishers if type(p).__name__ == "MarketDataPublisher"), None
        )
        dropcopy = next(
            (p for p in self._publishers if type(p).__name__ == "DropCopyPublisher"), None
        )
        venue = VenueApi(
            VenueConfig(
                host=config.http_host or config.host,
                port=config.http_port or 0,
                address_rate=config.http_address_rate,
                address_burst=config.http_address_burst,
                heartbeat_s=config.ws_heartbeat_s,
                ws_max_queue=config.ws_max_queue,
                webview=config.webview,
                settings=Settings(book_depth=config.book_depth),
            ),
            keys=self.keys,
            keys_path=config.keys_path if self._given_keys is None else None,
            rate_limiter=self.authenticator.rate_limiter,
            catalogue=self.catalogue,
            gateway=self.gateway,
            marketdata=marketdata,
            dropcopy=dropcopy,
            metrics=self.metrics,
        )
        self.http_port = await venue.start()
        self.venue = venue

    async def _demo_setup(self) -> None:
        assert self.exchange is not None
        commands = demo_commands(self.config)
        if not len(commands):
            return
        events = await asyncio.wrap_future(self.exchange.submit(commands))
        for e in events[events["type"] == EventType.REJECTED]:
            name, message = reject_text(int(e["reason"]))
            log.error(
                "demo setup command rejected",
                extra={"command": int(e["command"]), "reason": name, "detail": message},
            )
        log.info(
            "demo exchange created",
            extra={
                "markets": len(self.config.demo_markets),
                "accounts": len(self.config.demo_accounts),
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Refuse new calls, let running ones finish, snapshot, drain the sequencer, close."""
        grace = self.config.grace_s if grace is None else grace
        if self.gateway is not None:
            self.gateway.closing = True
        if self.venue is not None:
            await self.venue.stop()
            self.venue = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
        exchange = self.exchange
        if exchange is not None:
            if self.config.snapshot_on_stop and exchange.sequencer.failure is None:
                try:
                    written = await asyncio.wrap_future(
                        exchange.query(lambda engine: exchange.sequencer.snapshot_now())
                    )
                    if written is not None:
                        await asyncio.wrap_future(written)  # type: ignore[arg-type]
                except Exception:
                    log.exception("snapshot at shutdown failed")
            await asyncio.to_thread(exchange.close)
            for publisher in self._publishers:  # after the exchange: nothing more comes
                if hasattr(publisher, "close"):
                    try:
                        await asyncio.to_thread(publisher.close)
                    except Exception:
                        log.exception("closing a publisher failed")
            log.info(
                "exchange stopped",
                extra={"last_seq": exchange.sequencer.next_seq - 1},
            )
            self.exchange = None
        self.metrics.stop_http()

    async def __aenter__(self) -> ExchangeServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
