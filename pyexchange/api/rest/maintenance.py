"""Maintenance as the venue does it (spec §5.4), and the admin endpoint that switches it.

Starting maintenance:

1. every OPEN market is suspended (the core's SUSPENDED, ``MARKET_STATE_SUSPENDED``):
   no new order from any API;
2. every REST request is answered 503 and WebSocket upgrades are refused (503);
3. every open order is canceled (one ``CANCEL_ALL`` per account that has some); their
   CANCELED executions carry ``unsolicitedCancelReason`` EXCHANGE_OPTION and the text
   "Canceled for maintenance"; then connections open at that moment are closed (1012,
   "service restart") once those frames are sent. (Which cancels were the exchange's is
   kept in memory: after a restart they show as plain CANCELED.)

Ending it: connections are accepted again first, then the markets suspended in step 1
go from SUSPENDED to OPEN, with empty books (book frames show the state change).

``POST /admin/v1/maintenance`` with ``{"maintenance": true}`` or ``false`` switches it,
``GET /admin/v1/maintenance`` tells; both are signed with an **admin** key of the
gRPC API (HMAC: ``x-api-key``, ``x-timestamp-ms``, ``x-signature`` over
``f"{key_id}\\n{timestamp_ms}\\n{METHOD} {path}\\n{sha256_hex(body)}"``, as
docs/service.md describes for gRPC with ``METHOD path`` as the method), and answered
during maintenance too. ``pyexchange maintenance on|off|status`` signs them.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from typing import Any

import numpy as np

from matchcore import ALL_MARKETS, COMMAND_DTYPE, CommandType, MarketState

from ...engine import records
from ...service.auth import (
    ADMIN,
    HMAC,
    KEY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature_of_hash,
)
from . import wire
from .context import VenueContext, service
from .errors import ApiError, bad_request, forbidden, unauthenticated
from .http import Request, Response

log = logging.getLogger(__name__)

PATH = "/admin/v1/maintenance"
SKEW_MS = 30_000


def admin_headers(key_id: str, secret: str, method: str, path: str, body: bytes) -> dict[str, str]:
    """The client side: headers that sign an admin request."""
    stamp = time.time_ns() // 1_000_000
    digest = hashlib.sha256(body).hexdigest()
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: signature_of_hash(key_id, secret, stamp, f"{method} {path}", digest),
    }


class Maintenance:
    def __init__(self, ctx: VenueContext, app: Any, websockets: Any, keys: Any) -> None:
        self.ctx = ctx
        self.app = app
        self.websockets = websockets
        self.keys = keys
        self.halted: list[int] = []  # the markets maintenance halted (reopened at the end)
        self._seen: dict[str, int] = {}  # signatures accepted, until they go stale (replays)

    @property
    def on(self) -> bool:
        return self.app.maintenance

    async def start(self) -> dict[str, Any]:
        if self.app.maintenance or self.ctx.maintenance:
            return self.status()
        self.ctx.maintenance = True
        gateway = self.ctx.gateway
        opened = sorted(m for m, s in gateway.markets.specs.items() if s.state == MarketState.OPEN)
        rows = []
        for market in opened:
            row = np.zeros(1, dtype=COMMAND_DTYPE)
            row["type"] = CommandType.SET_MARKET_STATE
            row["market"] = market
            row["arg"] = MarketState.SUSPENDED
            rows.append(row)
        accounts = self._accounts_with_orders()
        for account in accounts:
            row = np.zeros(1, dtype=COMMAND_DTYPE)
            row["type"] = CommandType.CANCEL_ALL
            row["account"] = account
            row["market"] = ALL_MARKETS
            rows.append(row)
        if rows:
            # the seqs this batch will get start at the sequencer's next one; until the run
            # answers, every later CANCEL_ALL counts as the exchange's (gRPC clients may
            # cancel in that millisecond; the REST API refuses them already)
            window = [gateway.backend.sequencer.next_seq, 2**64]
            self.ctx.unsolicited.append(window)
            self.app.maintenance = True
            events = await service(gateway.run(records.join(rows, COMMAND_DTYPE), "maintenance"))
            if len(events):
                window[1] = int(events["seq"][-1])
                if self.ctx.history is not None:  # its CANCELED frames are queued before closing
                    await self.ctx.history.caught_up(window[1])
        self.halted = opened
        self.app.maintenance = True
        await self._books_show(opened, MarketState.SUSPENDED)
        self.websockets.markets.resend_all()  # SUSPENDED on the book frames, then closed
        await self.websockets.close_all(1012)
        log.warning(
            "maintenance started",
            extra={"markets_halted": len(opened), "accounts_canceled": len(accounts)},
        )
        return self.status()

    async def _books_show(self, markets: list[int], state: int, timeout: float = 2.0) -> None:
        """Until market data has the markets in ``state`` (it follows the engine's events)."""
        feed = self.ctx.marketdata
        if feed is None:
            return
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            views = [feed.markets.get(m) for m in markets]
            if all(v is None or v.state == state for v in views):
                return
            await asyncio.sleep(0.005)

    def _accounts_with_orders(self) -> list[int]:
        history = self.ctx.history
        if history is None:
            return []
        return sorted(
            account
            for account, mine in history.accounts.items()
            if any(o.open for o in mine.orders.values())
        )

    async def end(self) -> dict[str, Any]:
        if not self.app.maintenance:
            return self.status()
        self.app.maintenance = False  # connections first (spec §5.4), then the markets
        if self.halted:
            rows = np.zeros(len(self.halted), dtype=COMMAND_DTYPE)
            rows["type"] = CommandType.SET_MARKET_STATE
            rows["market"] = self.halted
            rows["arg"] = MarketState.OPEN
            await service(self.ctx.gateway.run(rows, "maintenance"))
        await self._books_show(self.halted, MarketState.OPEN)
        self.ctx.maintenance = False
        self.halted = []
        self.websockets.markets.resend_all()
        log.warning("maintenance ended")
        return self.status()

    def status(self) -> dict[str, Any]:
        return {"maintenance": self.app.maintenance, "marketsHalted": len(self.halted)}

    # ------------------------------------------------------------ admin API

    def check(self, request: Request) -> None:
        headers = request.headers
        key_id = headers.get(KEY_HEADER, "")
        stamp = headers.get(TIMESTAMP_HEADER, "")
        given = headers.get(SIGNATURE_HEADER, "")
        key = self.keys.get(key_id) if key_id else None
        if key is None or key.scheme != HMAC:
            raise unauthenticated("an admin key of the gRPC API signs admin requests")
        if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 16:
            raise unauthenticated(f"{TIMESTAMP_HEADER} must be Unix time in milliseconds")
        now = time.time_ns() // 1_000_000
        if abs(int(stamp) - now) > SKEW_MS:
            raise unauthenticated("stale timestamp")
        digest = hashlib.sha256(request.body).hexdigest()
        expected = signature_of_hash(
            key_id, key.secret, int(stamp), f"{request.method} {request.path}", digest
        )
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise unauthenticated("signature does not match")
        for signature, until in list(self._seen.items()):
            if until < now:
                del self._seen[signature]
        if given in self._seen:
            raise unauthenticated("replayed request: sign it again")
        self._seen[given] = int(stamp) + SKEW_MS
        if not key.may(ADMIN):
            raise forbidden("maintenance needs an admin key")

    async def handle(self, request: Request) -> Response:
        """The admin endpoint (served before the maintenance refusal)."""
        try:
            self.check(request)
            if request.method == "GET":
                body = self.status()
            elif request.method == "POST":
                wanted = wire.decode(request.body)
                if not isinstance(wanted, dict) or not isinstance(wanted.get("maintenance"), bool):
                    raise bad_request('the body is {"maintenance": true} or {"maintenance": false}')
                body = await (self.start() if wanted["maintenance"] else self.end())
            else:
                raise ApiError(5, "not found", status=405)
        except ApiError as exc:
            return Response(exc.status, exc.body(), [(b"content-type", b"application/json")])
        return Response(200, wire.encode(body), [(b"content-type", b"application/json")])
