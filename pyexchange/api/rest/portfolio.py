"""Portfolio endpoints: positions and activities (spec §2.4).

**Positions** (``GET /v1/portfolio/positions``): one ``UserPosition`` per market
where the account holds shares or has traded, keyed by slug (a map, not a list),
``market`` (a slug) to filter, pages of ``limit`` (default and at most 100) with
``nextCursor`` / ``eof``. Shares come from the engine (what the account holds,
free and reserved); the trading record from the order history. The net position
is YES terms: YES held minus NO held (the venue's NO is a short YES position).
``cashValue`` is the mark value of what is held, at the last trade price (null
before the first trade); ``cost`` the average-cost basis of what is held.

**Activities** (``GET /v1/portfolio/activities``): the account's fills
(``ACTIVITY_TYPE_TRADE``), settlements (``ACTIVITY_TYPE_POSITION_RESOLUTION``)
and cash deposits and withdrawals (``ACTIVITY_TYPE_ACCOUNT_DEPOSIT`` /
``..._WITHDRAWAL``), newest first (``sortOrder``), filtered by ``marketSlug`` and
``types``, pages of ``limit`` (default 100) with an opaque ``nextCursor``.
"""

from __future__ import annotations

from typing import Any

from matchcore import MarketState, Outcome

from ...feeds.history import CashChange, Execution, Kind, Resolution
from . import ids, objects, venue, wire
from .app import VenueApp, json_response
from .auth import account_of
from .context import VenueContext, service
from .errors import bad_request
from .http import Request, Response
from .public import Query

QTY = venue.QUANTITY_SCALE
ACTIVITY_TYPES = (
    "ACTIVITY_TYPE_TRADE",
    "ACTIVITY_TYPE_POSITION_RESOLUTION",
    "ACTIVITY_TYPE_ACCOUNT_DEPOSIT",
    "ACTIVITY_TYPE_ACCOUNT_ADVANCED_DEPOSIT",
    "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL",
    "ACTIVITY_TYPE_REFERRAL_BONUS",
    "ACTIVITY_TYPE_TRANSFER",
    "ACTIVITY_TYPE_TAKER_FEE_REBATE",
    "ACTIVITY_TYPE_LIQUIDITY_PROGRAM",
)
_SIDES: dict[int, str] = {
    Outcome.YES: "POSITION_RESOLUTION_SIDE_LONG",
    Outcome.NO: "POSITION_RESOLUTION_SIDE_SHORT",
    Outcome.HALF: "POSITION_RESOLUTION_SIDE_NEUTRAL",
}


def _cursor(value: str | None) -> int:
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or len(value) > 12:
        raise bad_request("cursor is not one this server gave")
    return int(value)


class PortfolioApi:
    ROUTES = (  # as OrdersApi.ROUTES
        ("GET", "/v1/portfolio/positions", "positions", "read"),
        ("GET", "/v1/portfolio/activities", "activities", "read"),
    )

    def __init__(self, ctx: VenueContext, orders: Any, history: Any, marks: Any) -> None:
        self.ctx = ctx
        self.orders = orders  # OrdersApi: its acked seq and the slugs of its orders
        self.history = history
        self.marks = marks  # market -> last trade price (price units), or None

    def register(self, app: VenueApp) -> None:
        for method, path, handler, permission in self.ROUTES:
            app.add(method, path, getattr(self, handler), permission)

    async def positions(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        q = Query(request)
        limit = q.integer("limit", 100, 0, 100) or 100
        start = _cursor(q.string("cursor"))
        wanted = q.string("market")
        await self.history.caught_up(self.orders.acked_seq)
        traded = set(self.history.account(account).positions)
        markets = sorted(self.ctx.gateway.markets.specs)
        if wanted:
            market = self.ctx.catalogue.by_slug(wanted)
            markets = [market] if market in markets else []

        def read(engine: Any) -> list[tuple[int, Any]]:
            return [(m, engine.position(account, m)) for m in markets]

        held = await service(self.ctx.gateway.read(read))
        rows = [(m, p) for m, p in held if any(p) or m in traded]
        chosen = rows[start : start + limit]
        infos = await self.ctx.market_infos([m for m, _ in chosen]) if chosen else {}
        out = {}
        for market, p in chosen:
            info = infos.get(market)
            facts = objects.facts(self.ctx.catalogue, info, market)
            record = self.history.account(account).positions.get(market)
            out[facts.entry.slug] = objects.position_object(
                p.yes_free + p.yes_reserved,
                p.no_free + p.no_reserved,
                p.yes_free,
                p.no_free,
                record,
                facts,
                self.marks(market),
                info is not None and int(info.state) == MarketState.RESOLVED,
            )
        end = start + len(chosen)
        eof = end >= len(rows)
        return json_response(
            wire.encode({"positions": out, "nextCursor": "" if eof else str(end), "eof": eof})
        )

    async def activities(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        q = Query(request)
        limit = q.integer("limit", 100, 0, 1000) or 100
        start = _cursor(q.string("cursor"))
        types = set(q.strings("types"))
        unknown = types - set(ACTIVITY_TYPES)
        if unknown:
            raise bad_request(f"types: unknown value {sorted(unknown)[0][:40]!r}")
        order = q.string("sortOrder") or "SORT_ORDER_DESCENDING"
        if order not in ("SORT_ORDER_DESCENDING", "SORT_ORDER_ASCENDING"):
            raise bad_request("sortOrder must be SORT_ORDER_DESCENDING or SORT_ORDER_ASCENDING")
        slug = q.string("marketSlug")
        market = self.ctx.catalogue.by_slug(slug) if slug else None
        await self.history.caught_up(self.orders.acked_seq)
        history = self.history.account(account)
        items: list[tuple[int, int, int, Any]] = []  # (seq, index, side, item)
        if not types or "ACTIVITY_TYPE_TRADE" in types:
            for e in history.executions:
                if e.kind in (Kind.FILL, Kind.PARTIAL_FILL) and (
                    market is None or e.order.market == market
                ):
                    items.append((e.seq, e.index, 0 if e.taker else 1, e))
        if not types or "ACTIVITY_TYPE_POSITION_RESOLUTION" in types:
            for r in history.resolutions:
                if market is None or r.market == market:
                    items.append((r.seq, r.index, 0, r))
        if market is None:
            for c in history.cash:
                name = (
                    "ACTIVITY_TYPE_ACCOUNT_DEPOSIT"
                    if c.amount > 0
                    else "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL"
                )
                if not types or name in types:
                    items.append((c.seq, c.index, 0, c))
        if slug and market is None:
            items = []
        items.sort(key=lambda x: x[:3], reverse=order == "SORT_ORDER_DESCENDING")
        chosen = items[start : start + limit]
        facts = await self.orders._facts({_market_of(x[3]) for x in chosen if _market_of(x[3])})
        activities = [self._activity(x[3], facts) for x in chosen]
        end = start + len(chosen)
        eof = end >= len(items)
        return json_response(
            wire.encode(
                {"activities": activities, "nextCursor": "" if eof else str(end), "eof": eof}
            )
        )

    def _activity(self, item: Any, facts: dict[int, objects.MarketFacts]) -> dict[str, Any]:
        if isinstance(item, Execution):
            market = facts[item.order.market]
            return {
                "type": "ACTIVITY_TYPE_TRADE",
                "trade": {
                    "id": ids.trade_id(item.seq, item.index),
                    "marketSlug": market.entry.slug,
                    "state": "TRADE_STATE_CLEARED",
                    "createTime": wire.timestamp(item.time_ns),
                    "updateTime": wire.timestamp(item.time_ns),
                    "price": objects.price_amount(item.last_price, market.tick),
                    "qty": str(round(item.last_qty / QTY)),
                    "qtyDecimal": wire.exact(item.last_qty, QTY),
                    "isAggressor": item.taker,
                    "costBasis": None,
                    "realizedPnl": None,
                    "intent": venue.INTENT_NAMES.get(item.order.intent),
                    "orderId": objects.order_id_of(item.order),
                },
            }
        if isinstance(item, Resolution):
            market = facts[item.market]
            return {
                "type": "ACTIVITY_TYPE_POSITION_RESOLUTION",
                "positionResolution": {
                    "marketSlug": market.entry.slug,
                    "beforePosition": _net(item.before),
                    "afterPosition": _net(item.after),
                    "updateTime": wire.timestamp(item.time_ns),
                    "tradeId": ids.trade_id(item.seq, item.index),
                    "side": _SIDES.get(item.outcome, "POSITION_RESOLUTION_SIDE_NEUTRAL"),
                    "payout": objects.cash_amount(item.paid),
                },
            }
        assert isinstance(item, CashChange)
        transaction = {
            "transactionId": ids.trade_id(item.seq, item.index),
            "status": "ACCOUNT_BALANCE_CHANGE_STATUS_COMPLETED",
            "amount": objects.cash_amount(abs(item.amount)),
            "updateTime": wire.timestamp(item.time_ns),
            "createTime": wire.timestamp(item.time_ns),
        }
        return {
            "type": (
                "ACTIVITY_TYPE_ACCOUNT_DEPOSIT"
                if item.amount > 0
                else "ACTIVITY_TYPE_ACCOUNT_WITHDRAWAL"
            ),
            # the docs' flat form and the SDK type's {transactions: [...]} both (spec §6 #19)
            "accountBalanceChange": {**transaction, "transactions": [transaction]},
        }


def _market_of(item: Any) -> int | None:
    if isinstance(item, Execution):
        return item.order.market
    if isinstance(item, Resolution):
        return item.market
    return None


def _net(record: Any) -> dict[str, str]:
    net = record.yes - record.no
    return {"netPosition": str(round(net / QTY)), "netPositionDecimal": wire.fixed(net, QTY, 4)}
