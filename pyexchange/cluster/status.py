"""Health and Prometheus metrics of a cluster process, over HTTP.

Every process of the cluster (engine replica, gateway) serves ``GET /health``
(JSON: what it is, its role, its position in the log; status 200 when it is
doing its job, 503 when not) and ``GET /metrics`` (prometheus_client's
exposition of the process's own registry), from a daemon thread with the
standard library's WSGI server. The health callable runs on that thread: it
must only read plain attributes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

Health = Callable[[], tuple[bool, dict[str, Any]]]


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        logging.getLogger(__name__).debug(format, *args)


class StatusServer:
    def __init__(self, registry: CollectorRegistry, health: Health) -> None:
        self.metrics_app = make_wsgi_app(registry)
        self.health = health
        self._server: WSGIServer | None = None

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/health":
            ok, body = self.health()
            data = json.dumps(body).encode()
            start_response(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
            )
            return [data]
        return self.metrics_app(environ, start_response)

    def start(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve on ``host:port`` (0 = a free port); returns the port."""
        self._server = make_server(host, port, self.app, handler_class=_Quiet)
        threading.Thread(target=self._server.serve_forever, name="status-http", daemon=True).start()
        return int(self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
