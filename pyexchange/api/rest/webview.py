"""The web view: the pages served at ``/`` and the operator's health JSON (docs/webview.md).

**Pages.** ``static/`` (HTML, CSS and plain ES modules: no build step, nothing
fetched from elsewhere at run time) ships in the wheel as package data; it is
read once when the server starts and served from memory: ``/`` is
``index.html``, every other file is ``/web/NAME``. Each answer has an ETag
(``If-None-Match`` gets a 304) and ``Cache-Control: no-cache`` (a reload
revalidates, an upgrade of the package shows at once), and a Content Security
Policy that allows only this origin (scripts, styles, fetch and WebSocket).
The pages are served in maintenance too and do not take tokens from the client
address's bucket: a page load is a dozen files from memory, and the bucket is
for the API the page then calls like any client (public REST, the two
WebSockets with the key the user pasted, signed in the browser).

**Health.** ``GET /ops/v1/health`` (public; the client address's bucket; served
in maintenance too) is the metrics the operator page draws, as JSON: the
counters, gauges and histograms of ``pyexchange.metrics`` it needs, cumulative
as Prometheus has them, plus the server's state and WebSocket heartbeat period.
The page turns two samples into rates and windowed percentiles, as
``rate()`` and ``histogram_quantile()`` would; the Prometheus endpoint itself is
on another port, which a page cannot read across origins.
"""

from __future__ import annotations

import hashlib
import time
from importlib import resources
from typing import Any

import msgspec

from .app import JSON, VenueApp
from .errors import ApiError, rate_limited
from .http import Request, Response

HEALTH_PATH = "/ops/v1/health"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_encode = msgspec.json.Encoder().encode

# the families the operator page draws (pyexchange.metrics attribute names)
HEALTH_METRICS = (
    "commands",
    "queue_depth",
    "sequencer_queue",
    "batch_size",
    "journal_fsync",
    "latency",
    "orders",
    "trades",
    "rejects",
    "refused",
    "websockets",
    "websocket_frames",
    "subscribers",
    "http_requests",
)


class _File:
    __slots__ = ("body", "etag", "headers")

    def __init__(self, name: str, body: bytes) -> None:
        self.body = body
        self.etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        kind = _TYPES.get(name[name.rfind(".") :], "application/octet-stream")
        self.headers = [
            (b"content-type", kind.encode()),
            (b"cache-control", b"no-cache"),
            (b"etag", self.etag.encode()),
            (b"content-security-policy", _POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]


def static_files() -> dict[str, bytes]:
    """The files of ``static/`` by name, from the installed package."""
    folder = resources.files(__package__) / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and not entry.name.startswith(".")
    }


class WebView:
    """Registers the pages and the health endpoint on a ``VenueApp``."""

    def __init__(self, app: VenueApp, metrics: Any, heartbeat_s: float) -> None:
        self.app = app
        self.metrics = metrics
        self.heartbeat_s = heartbeat_s
        self.files = {name: _File(name, body) for name, body in static_files().items()}

    def register(self) -> None:
        # in ``app.admin``: answered before maintenance and routing, with no bucket of its
        # own (the health endpoint takes the address's token itself)
        for name, entry in self.files.items():
            self.app.admin["/web/" + name] = self._serve(entry)
        if "index.html" in self.files:
            self.app.admin["/"] = self._serve(self.files["index.html"])
        self.app.admin[HEALTH_PATH] = self.health

    def _serve(self, entry: _File) -> Any:
        async def serve(request: Request) -> Response:
            if request.method not in ("GET", "HEAD"):
                raise ApiError(5, "not found", status=405)
            if request.headers.get("if-none-match") == entry.etag:
                return Response(304, b"", entry.headers)
            return Response(200, b"" if request.method == "HEAD" else entry.body, entry.headers)

        return serve

    async def health(self, request: Request) -> Response:
        if request.method != "GET":
            raise ApiError(5, "not found", status=405)
        if not self.app.address_limiter.allow(request.client):
            raise rate_limited()
        body = {
            "status": "MAINTENANCE" if self.app.maintenance else "SERVING",
            "time": time.time(),
            "heartbeatSeconds": self.heartbeat_s,
            "metrics": self._metrics(),
        }
        return Response(200, _encode(body), [JSON, (b"cache-control", b"no-store")])

    def _metrics(self) -> dict[str, Any]:
        if self.metrics is None:
            return {}
        out: dict[str, Any] = {}
        for attribute in HEALTH_METRICS:
            collector = getattr(self.metrics, attribute, None)
            if collector is None:
                continue
            for family in collector.collect():  # named as in the Prometheus text format
                name = family.name + ("_total" if family.type == "counter" else "")
                out[name] = family_json(family)
        return out


def family_json(family: Any) -> dict[str, Any]:
    """One Prometheus metric family: ``{"type", "series": [...]}``; a histogram's series
    has ``buckets`` (``[le, cumulative count]``, le ``"+Inf"`` last), ``sum`` and ``count``."""
    if family.type != "histogram":
        series = [
            {"labels": sample.labels, "value": sample.value}
            for sample in family.samples
            if not sample.name.endswith("_created")
        ]
        return {"type": family.type, "series": series}
    by_labels: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample in family.samples:
        labels = {k: v for k, v in sample.labels.items() if k != "le"}
        entry = by_labels.setdefault(
            tuple(sorted(labels.items())), {"labels": labels, "buckets": [], "sum": 0, "count": 0}
        )
        if sample.name.endswith("_bucket"):
            entry["buckets"].append([sample.labels["le"], sample.value])
        elif sample.name.endswith("_sum"):
            entry["sum"] = sample.value
        elif sample.name.endswith("_count"):
            entry["count"] = sample.value
    return {"type": "histogram", "series": list(by_labels.values())}
