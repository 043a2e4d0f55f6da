"""A cluster gateway process: the embedded server's service layer and APIs over the cluster's log.

``GatewayServer(config)`` is ``ExchangeServer`` with the engine replaced by the
cluster (docs/cluster.md): the same service layer (``EngineLink``,
``OrderEntry``, ``Queries``, ``Admin``) runs over a ``ClusterBackend`` instead
of the embedded ``Exchange``, and the same adapters serve it: gRPC OrderEntry,
the batch stream, Admin and MarketData with gRPC health and reflection, and
the Polymarket US API (public REST, balances, the markets WebSocket).

- **Orders** are published to the shard of their market; a reply is sent once
  the shard's active engine answered the command message, which it only runs
  after a JetStream quorum stored it (``ClusterBackend``).
- **Reads** run on the gateway's mirrors of every shard once they applied
  every message this gateway answered (read your writes).
- **Market data** comes from the mirrors' events: the engines' events, since
  a mirror computes exactly what the shard's engines computed.
- **Health and metrics** (``--status-port``): ``/health`` (JSON: per shard the
  link's state and the mirror's lag) and ``/metrics`` (the service's
  Prometheus series and the gateway's own).

- **Drop copy** (one-shard clusters): the embedded drop copy's event log in
  ``--data-dir``, fed from the mirror from its first message on
  (``cluster/dropcopy.py``), served over gRPC, and with it the REST order
  entry, positions, activities, private WebSocket and trade frames, which read
  the order history from it. A cluster of several shards has no single seq to
  resume from: its gateways answer those with UNIMPLEMENTED (gRPC), 501 (REST)
  or an error frame (WebSocket), saying why (docs/cluster.md).

Run: ``python -m pyexchange.app.gateway --nats URLS --gateway-id g1 --keys
KEYS.json`` (``--help`` for the rest). SIGTERM or SIGINT: stop cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge

from ..api.grpc import exchange_pb2_grpc as pb_grpc
from ..api.grpc import marketdata as marketdata_api
from ..api.grpc.admin import AdminService
from ..api.grpc.auth import GrpcAuth
from ..api.grpc.batch import add_to_server as add_batch_entry
from ..api.grpc.dropcopy import DropCopyService, UnservedDropCopy
from ..api.grpc.order_entry import OrderEntryService
from ..cluster.backend import BackendConfig, ClusterBackend, ShardLink
from ..cluster.dropcopy import ClusterDropCopy
from ..cluster.status import StatusServer
from ..feeds.marketdata import MarketDataPublisher
from ..metrics import Metrics
from ..service.admin import Admin
from ..service.auth import Authenticator, KeyStore, RateLimiter
from ..service.catalogue import Catalogue
from ..service.link import EngineLink
from ..service.markets import Markets
from ..service.orders import OrderEntry
from ..service.queries import Queries
from .server import _Guard, _Registrar, configure_logging

log = logging.getLogger(__name__)


def _refusing(link: ShardLink) -> int:
    """1 while the shard's log refuses (``down`` holds the reason, "" when up)."""
    return 1 if link.down else 0


@dataclass
class GatewayConfig:
    servers: list[str]
    gateway_id: str
    keys_file: Path
    data_dir: Path | None = None  # the drop copy's log; default ./gateway-<id>
    catalogue_file: Path | None = None  # slugs, events, series of the REST API
    host: str = "127.0.0.1"
    port: int = 0  # gRPC; 0: a free port
    http_port: int | None = 0  # the Polymarket US API; None: off
    status_port: int | None = 0  # /health and /metrics; None: off
    status_file: Path | None = None  # {"grpc", "http", "status", "pid"} once serving
    max_in_flight: int = 10_000
    stream_window: int = 1024
    max_message_bytes: int = 64 * 1024
    skew_ms: int = 5_000
    grace_s: float = 2.0
    store_timeout: float = 5.0
    reply_timeout: float = 15.0


class GatewayServer:
    """One gateway process's servers (see the module docstring)."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.keys = KeyStore.load(config.keys_file)
        self.metrics = Metrics()
        self.authenticator = Authenticator(
            self.keys, skew_ms=config.skew_ms, rate_limiter=RateLimiter()
        )
        self.grpc_auth = GrpcAuth(self.authenticator, on_refused=self.metrics.refuse)
        self.markets = Markets()
        self.marketdata = MarketDataPublisher()
        self.dropcopy: ClusterDropCopy | None = None
        self._feeding = False  # the market feeds take the mirrors' messages
        self.backend: ClusterBackend | None = None
        self.gateway: EngineLink | None = None  # _Guard reads it (closing)
        self.venue: Any = None
        self.status: StatusServer | None = None
        self.port = 0
        self.http_port: int | None = None
        self.status_port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._health: Any = None

    async def start(self) -> int:
        config = self.config
        loop = asyncio.get_running_loop()
        self.authenticator.not_before_ms = self.authenticator.clock()
        backend = ClusterBackend(
            BackendConfig(
                config.servers,
                config.gateway_id,
                store_timeout=config.store_timeout,
                reply_timeout=config.reply_timeout,
            )
        )
        # On the mirrors before they apply anything: the drop copy takes every message
        # from the mirror's start (a gap only before it: the snapshot it started from).
        backend.listeners.append(self._on_message)
        await backend.start()
        self.backend = backend
        # The market feeds start from the mirrors as they stand and take every message
        # after: the load and ``_feeding`` are set with no await between them.
        self.marketdata.attach(loop)
        self.markets.load(backend.view)
        self.marketdata.load(backend.view)  # type: ignore[arg-type]
        self._feeding = True
        if self.dropcopy is None and backend.layout.shards == 1:  # no message yet
            self._open_dropcopy()
        self.gateway = EngineLink(backend, self.markets, self.metrics, config.max_in_flight)
        link = self.gateway
        self.metrics.track(lambda: link.in_flight, lambda: 0)
        self.metrics.track_subscribers("marketdata", self.marketdata.subscriber_count)
        self._cluster_metrics()
        orders = OrderEntry(link, self.authenticator)
        queries = Queries(link)

        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.max_message_bytes),
                ("grpc.so_reuseport", 0),
            ]
        )
        registrar = _Registrar(server, _Guard(self))  # type: ignore[arg-type]
        window = config.stream_window
        pb_grpc.add_OrderEntryServicer_to_server(
            OrderEntryService(orders, queries, self.grpc_auth, window=window), registrar
        )
        add_batch_entry(orders, self.grpc_auth, registrar, window=window)
        pb_grpc.add_AdminServicer_to_server(AdminService(Admin(link), self.grpc_auth), registrar)
        marketdata_api.add_to_server(
            marketdata_api.MarketDataService(self.marketdata, self.grpc_auth), registrar
        )
        if self.dropcopy is not None:
            dropcopy: Any = DropCopyService(self.dropcopy, self.grpc_auth)
        else:
            dropcopy = UnservedDropCopy(self._unserved())
        pb_grpc.add_DropCopyServicer_to_server(dropcopy, registrar)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            [*registrar.services, health.SERVICE_NAME, reflection.SERVICE_NAME], server
        )
        self.port = server.add_insecure_port(f"{config.host}:{config.port}")
        if not self.port:
            await self.stop()
            raise OSError(f"cannot listen on {config.host}:{config.port}")
        await server.start()
        self._server = server
        for name in ("", *registrar.services):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        if config.http_port is not None:
            await self._start_venue_api()
        if config.status_port is not None:
            self.status = StatusServer(self.metrics.registry, self.health)
            self.status_port = self.status.start(config.status_port, config.host)
        if config.status_file is not None:
            tmp = config.status_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.endpoints()))
            tmp.replace(config.status_file)
        log.info("gateway started", extra={"gateway": config.gateway_id, **self.endpoints()})
        return self.port

    def endpoints(self) -> dict[str, Any]:
        host = self.config.host
        return {
            "grpc": f"{host}:{self.port}",
            "http": None if self.http_port is None else f"http://{host}:{self.http_port}",
            "status": None if self.status_port is None else f"http://{host}:{self.status_port}",
            "pid": os.getpid(),
        }

    def _on_message(self, mirror: Any, seq: int, applied: Any, events: Any) -> None:
        """A mirror applied command message ``seq`` (the loop): feed the feeds."""
        if self._feeding and len(events):
            self.markets.on_events(applied.commands, events)
            self.marketdata.on_events(applied.commands, events)
        if len(applied.commands) and mirror.layout.shards == 1:
            dropcopy = self.dropcopy or self._open_dropcopy()
            dropcopy.on_events(applied.commands, events)

    def _open_dropcopy(self) -> ClusterDropCopy:
        data_dir = self.config.data_dir or Path(f"gateway-{self.config.gateway_id}")
        self.dropcopy = ClusterDropCopy(data_dir)
        self.dropcopy.attach(asyncio.get_running_loop())
        return self.dropcopy

    def _unserved(self) -> str:
        shards = self.backend.layout.shards if self.backend is not None else 0
        return (
            f"not served by the gateways of a cluster of {shards} shards: the drop copy, "
            "and the order entry, positions and activities that read their orders from it, "
            "need one engine seq to resume from (docs/cluster.md); use the gRPC "
            "OrderEntry and GetAccount"
        )

    async def _start_venue_api(self) -> None:
        from ..api.rest import VenueApi, VenueConfig

        config = self.config
        catalogue = (
            Catalogue.load(config.catalogue_file)
            if config.catalogue_file is not None and config.catalogue_file.exists()
            else Catalogue()
        )
        self.venue = VenueApi(
            VenueConfig(host=config.host, port=config.http_port or 0),
            keys=self.keys,
            keys_path=None,  # the cluster's key file is written by whoever set it up
            rate_limiter=self.authenticator.rate_limiter,
            catalogue=catalogue,
            gateway=self.gateway,
            marketdata=self.marketdata,
            dropcopy=self.dropcopy,
            metrics=self.metrics,
            unserved="" if self.dropcopy is not None else self._unserved(),
        )
        self.http_port = await self.venue.start()

    # ------------------------------------------------------------ health

    def _cluster_metrics(self) -> None:
        backend = self.backend
        assert backend is not None
        r = self.metrics.registry
        labels = ["gateway", "shard"]
        gauges = {
            "stored": Gauge(
                "pyx_gateway_stored_seq",
                "Last command message this gateway stored",
                labels,
                registry=r,
            ),
            "answered": Gauge(
                "pyx_gateway_answered_seq", "Last command message answered", labels, registry=r
            ),
            "mirror": Gauge(
                "pyx_gateway_mirror_applied_seq",
                "Last message the mirror applied",
                labels,
                registry=r,
            ),
            "down": Gauge(
                "pyx_gateway_shard_refusing", "1 while the shard's log refuses", labels, registry=r
            ),
        }
        for link, mirror in zip(backend.links, backend.mirrors, strict=True):
            key = (self.config.gateway_id, str(link.shard))
            # read when scraped
            gauges["stored"].labels(*key).set_function(partial(getattr, link, "stored"))
            answered = partial(getattr, link, "answered_through")
            gauges["answered"].labels(*key).set_function(answered)
            gauges["mirror"].labels(*key).set_function(partial(getattr, mirror, "applied"))
            gauges["down"].labels(*key).set_function(partial(_refusing, link))

    def health(self) -> tuple[bool, dict[str, Any]]:
        backend = self.backend
        if backend is None:
            return False, {"kind": "gateway", "gateway": self.config.gateway_id}
        shards = [
            {
                "shard": link.shard,
                "stored": link.stored,
                "answered": link.answered_through,
                "held": len(link.held),
                "mirror_applied": mirror.applied,
                "awaiting": len(link.awaiting),
                "refusing": link.down,
            }
            for link, mirror in zip(backend.links, backend.mirrors, strict=True)
        ]
        connected = backend.nc.is_connected
        ok = connected and not any(s["refusing"] for s in shards)
        return ok, {
            "kind": "gateway",
            "gateway": self.config.gateway_id,
            "pid": os.getpid(),
            "connected": connected,
            "in_flight": self.gateway.in_flight if self.gateway is not None else 0,
            "shards": shards,
            **self.endpoints(),
        }

    # ------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Refuse new calls, let running ones finish (``grace_s``), then leave the cluster."""
        if self.gateway is not None:
            self.gateway.closing = True
        if self.venue is not None:
            await self.venue.stop()
            self.venue = None
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._server is not None:
            await self._server.stop(self.config.grace_s)
            self._server = None
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.backend is not None:
            await self.backend.close()
            self.backend = None
        if self.dropcopy is not None:  # after the mirrors: nothing more comes
            await asyncio.to_thread(self.dropcopy.close)
            self.dropcopy = None


def parse_args(argv: list[str] | None = None) -> tuple[GatewayConfig, str]:
    p = argparse.ArgumentParser(prog="python -m pyexchange.app.gateway", description=__doc__)
    p.add_argument("--nats", required=True, help="comma-separated NATS server URLs")
    p.add_argument("--gateway-id", required=True, help="unique among the cluster's gateways")
    p.add_argument("--keys", type=Path, required=True, help="the cluster's keys.json")
    p.add_argument("--data-dir", type=Path, help="the drop copy's log (default ./gateway-ID)")
    p.add_argument("--catalogue", type=Path, help="catalogue JSON (slugs of the REST API)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="gRPC (0: a free port)")
    p.add_argument("--http-port", type=int, default=0, help="REST/WebSocket (0: free, -1: off)")
    p.add_argument("--status-port", type=int, default=0, help="health, metrics (0: free, -1: off)")
    p.add_argument("--status-file", type=Path, help="write the endpoints here once serving")
    p.add_argument("--store-timeout", type=float, default=5.0, help="seconds")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    config = GatewayConfig(
        servers=args.nats.split(","),
        gateway_id=args.gateway_id,
        keys_file=args.keys,
        data_dir=args.data_dir,
        catalogue_file=args.catalogue,
        host=args.host,
        port=args.port,
        http_port=None if args.http_port < 0 else args.http_port,
        status_port=None if args.status_port < 0 else args.status_port,
        status_file=args.status_file,
        store_timeout=args.store_timeout,
    )
    return config, args.log_level


def main(argv: list[str] | None = None) -> None:
    config, level = parse_args(argv)
    configure_logging(level)

    async def run() -> None:
        server = GatewayServer(config)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await server.start()
        # what start-up made lives as long as the process: out of the cyclic GC's reach, so
        # its full collections under load scan only what came after (as `pyexchange serve`)
        gc.collect()
        gc.freeze()
        await stop.wait()
        await server.stop()

    try:  # uvloop, as `pyexchange serve`
        import uvloop
    except ImportError:
        asyncio.run(run())
    else:
        uvloop.run(run())


if __name__ == "__main__":
    main()
