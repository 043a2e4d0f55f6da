"""Public endpoints (the venue's gateway host): markets, books, events, series, sports, search.

Shapes per spec §2.6-§2.7 (the SDK's ``types/markets.py``, ``events.py``,
``series.py``, ``sports.py``, ``search.py``). Ids of markets, events and series
are numeric strings (proto int64 in JSON: spec §6 #6); the SDK interpolates
whatever it is given into its paths. Unknown query parameters are ignored, as
the venue's gateway does; a known one with a value of the wrong type is a 400.
"""

from __future__ import annotations

from decimal import ROUND_DOWN, Decimal
from typing import Any

from matchcore import MarketState, Outcome

from ...service.catalogue import EventEntry, MarketEntry
from . import venue, wire
from .app import VenueApp, json_response
from .context import VenueContext
from .errors import bad_request, not_found
from .http import Request, Response

QTY, CASH = venue.QUANTITY_SCALE, venue.CASH_SCALE


# ------------------------------------------------------------- queries


class Query:
    """The query string's values by name, with typed getters (400 on a bad value)."""

    def __init__(self, request: Request) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in request.query():
            self.values.setdefault(name, []).append(value)

    def strings(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def string(self, name: str) -> str | None:
        values = self.values.get(name)
        return values[-1] if values else None

    def boolean(self, name: str) -> bool | None:
        value = self.string(name)
        if value is None:
            return None
        if value.lower() in ("true", "1"):
            return True
        if value.lower() in ("false", "0"):
            return False
        raise bad_request(f"{name} must be true or false")

    def integer(self, name: str, default: int | None = None, low: int = 0, high: int = 10**9):
        value = self.string(name)
        if value is None or value == "":
            return default
        if not (value.isascii() and value.lstrip("-").isdigit()) or len(value) > 12:
            raise bad_request(f"{name} must be an integer")
        number = int(value)
        if not low <= number <= high:
            raise bad_request(f"{name} must be between {low} and {high}")
        return number

    def integers(self, name: str) -> list[int]:
        out = []
        for value in self.strings(name):
            if not (value.isascii() and value.isdigit()) or len(value) > 12:
                raise bad_request(f"{name} must be integers")
            out.append(int(value))
        return out


def page(items: list[Any], query: Query, default_limit: int = 100) -> list[Any]:
    limit = query.integer("limit", default_limit, 0, 1000) or default_limit
    offset = query.integer("offset", 0, 0, 10**9) or 0
    return items[offset : offset + limit]


# ---------------------------------------------------------- the objects


def _price(units: int, tick: int) -> dict[str, str]:
    return wire.amount(wire.fixed(units, 10_000, venue.price_decimals(tick)))


def market_object(ctx: VenueContext, entry: MarketEntry, info: Any) -> dict[str, Any]:
    """The catalogue's Market object (``MarketDetail`` of the SDK and more, spec §2.6)."""
    view = ctx.marketdata.markets.get(entry.market) if ctx.marketdata is not None else None
    state = int(info.state)
    bid, _, ask, _ = view.bbo if view is not None else (0, 0, 0, 0)
    tick = int(info.tick)
    market: dict[str, Any] = {
        "id": str(entry.market),
        "slug": entry.slug,
        "title": entry.title or entry.slug,
        "question": entry.question or entry.title or entry.slug,
        "outcome": entry.outcome,
        "description": entry.description,
        "eventSlug": entry.event_slug,
        "category": entry.category,
        "active": venue.is_active(state),
        "closed": venue.is_closed(state),
        "archived": False,
        "hidden": False,
        "status": venue.market_status(state),
        "orderPriceMinTickSize": venue.tick_dollars(tick),
        "minimumTradeQty": wire.number(int(info.min_size), QTY),
        "quantityIncrement": wire.number(int(info.lot), QTY),
        "feeCoefficient": venue.fee_coefficient(int(info.taker_fee_bps), int(info.fee_base)),
        "makerFeeCoefficient": venue.fee_coefficient(int(info.maker_fee_bps), int(info.fee_base)),
        "marketSides": [
            {
                "identifier": f"{entry.slug}-yes",
                "description": entry.outcome or "Yes",
                "long": True,
                "tradable": venue.is_active(state),
                "marketId": str(entry.market),
            },
            {
                "identifier": f"{entry.slug}-no",
                "description": "No",
                "long": False,
                "tradable": venue.is_active(state),
                "marketId": str(entry.market),
            },
        ],
        "bestBidQuote": _price(bid, tick) if bid else None,
        "bestAskQuote": _price(ask, tick) if ask else None,
        "liquidity": _liquidity(view),
        "volume": _volume(ctx, entry.market),
        "tags": list(entry.tags),
        "assetPriceTerms": None,
    }
    return market


def _volume(ctx: VenueContext, market: int) -> Decimal:
    stats = ctx.trade_stats(market)
    return wire.number(stats.notional, CASH) if stats is not None else Decimal(0)


def _liquidity(view: Any) -> Decimal:
    """Dollars resting on the book (YES price x quantity on both sides)."""
    if view is None:
        return Decimal(0)
    total = sum(p * q for p, (q, _) in view.bids.items()) + sum(
        (10_000 - p) * q for p, (q, _) in view.asks.items()
    )
    return wire.number(total, CASH)


def event_object(
    ctx: VenueContext, event: EventEntry, markets: list[dict[str, Any]]
) -> dict[str, Any]:
    series = ctx.catalogue.series.get(event.series_slug) if event.series_slug else None
    return {
        "id": str(event.id),
        "slug": event.slug,
        "title": event.title or event.slug,
        "description": event.description,
        "category": event.category,
        "startTime": event.start_time or None,
        "endTime": event.end_time or None,
        "active": any(m["active"] for m in markets),
        "closed": bool(markets) and all(m["closed"] for m in markets),
        "archived": False,
        "featured": event.featured,
        "liquidity": sum((m["liquidity"] for m in markets), Decimal(0)),
        "volume": sum((m["volume"] for m in markets), Decimal(0)),
        "markets": markets,
        "tags": [{"id": i + 1, "slug": t, "label": t} for i, t in enumerate(event.tags)],
        "series": (
            {"id": str(series.id), "slug": series.slug, "title": series.title}
            if series is not None
            else None
        ),
    }


def _series_object(entry: Any, active: bool, closed: bool) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "slug": entry.slug,
        "title": entry.title or entry.slug,
        "description": entry.description,
        "recurrence": entry.recurrence,
        "active": active,
        "closed": closed,
        "archived": False,
    }


# ------------------------------------------------------------ handlers


class PublicApi:
    def __init__(self, ctx: VenueContext) -> None:
        self.ctx = ctx

    def register(self, app: VenueApp) -> None:
        add = app.add
        add("GET", "/v1/markets", self.markets, None)
        add("GET", "/v1/market/id/{id}", self.market_by_id, None)
        add("GET", "/v1/market/slug/{slug}", self.market_by_slug, None)
        add("GET", "/v1/markets/{slug}/book", self.book, None)
        add("GET", "/v1/markets/{slug}/bbo", self.bbo, None)
        add("GET", "/v1/markets/{slug}/settlement", self.settlement, None)
        add("GET", "/v1/events", self.events, None)
        add("GET", "/v1/events/slug/{slug}", self.event_by_slug, None)  # before /v1/events/{id}
        add("GET", "/v1/events/{id}", self.event_by_id, None)
        add("GET", "/v1/series", self.series_list, None)
        add("GET", "/v1/series/id/{id}", self.series_by_id, None)
        add("GET", "/v1/sports", self.sports, None)
        add("GET", "/v1/sports/teams/provider", self.teams, None)
        add("GET", "/v1/search", self.search, None)

    async def _all_markets(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        infos = await ctx.market_infos()
        return [market_object(ctx, ctx.catalogue.market(m), info) for m, info in infos.items()]

    async def markets(self, request: Request, key: Any) -> Response:
        q = Query(request)
        markets = await self._all_markets()
        ids = {str(i) for i in q.integers("id")}
        slugs = set(q.strings("slug"))
        events = set(q.strings("eventSlug"))
        categories = set(q.strings("categories"))
        active, closed, archived = q.boolean("active"), q.boolean("closed"), q.boolean("archived")
        chosen = [
            m
            for m in markets
            if (not ids or m["id"] in ids)
            and (not slugs or m["slug"] in slugs)
            and (not events or m["eventSlug"] in events)
            and (not categories or m["category"] in categories)
            and (active is None or m["active"] == active)
            and (closed is None or m["closed"] == closed)
            and (archived is None or archived is False)
        ]
        _order(chosen, q)
        return json_response(wire.encode({"markets": page(chosen, q)}))

    async def _market(self, market: int) -> dict[str, Any]:
        ctx = self.ctx
        infos = await ctx.market_infos([market])
        if market not in infos:
            raise not_found(f"market {market} not found")
        return market_object(ctx, ctx.catalogue.market(market), infos[market])

    async def market_by_id(self, request: Request, key: Any) -> Response:
        text = request.params["id"]
        if not (text.isascii() and text.isdigit()) or len(text) > 10:
            raise not_found(f"market {text[:32]!r} not found")
        market = int(text)
        if self.ctx.gateway.markets.get(market) is None:
            raise not_found(f"market {market} not found")
        return json_response(wire.encode({"market": await self._market(market)}))

    async def market_by_slug(self, request: Request, key: Any) -> Response:
        market = self.ctx.market_id(request.params["slug"])
        return json_response(wire.encode({"market": await self._market(market)}))

    async def _interest(self, market: int) -> int:
        info = (await self.ctx.market_infos([market])).get(market)
        return int(info.collateral) if info is not None else 0

    async def book(self, request: Request, key: Any) -> Response:
        slug = request.params["slug"]
        market = self.ctx.market_id(slug)
        view = self.ctx.view(market)
        interest = await self._interest(market)
        payload = book_payload(self.ctx, slug, view, interest)
        return json_response(wire.encode({"marketData": payload}))

    async def bbo(self, request: Request, key: Any) -> Response:
        slug = request.params["slug"]
        market = self.ctx.market_id(slug)
        view = self.ctx.view(market)
        interest = await self._interest(market)
        payload = bbo_payload(self.ctx, slug, view, interest)
        return json_response(wire.encode({"marketData": payload}))

    async def settlement(self, request: Request, key: Any) -> Response:
        slug = request.params["slug"]
        market = self.ctx.market_id(slug)
        infos = await self.ctx.market_infos([market])
        info = infos.get(market)
        if info is None or int(info.state) != MarketState.RESOLVED:
            raise not_found("Market not found or not settled")
        value: dict[int, Decimal] = {
            Outcome.YES: Decimal(1),
            Outcome.NO: Decimal(0),
            Outcome.HALF: Decimal("0.5"),
        }
        return json_response(
            wire.encode({"slug": slug, "settlement": value.get(int(info.outcome), Decimal(0))})
        )

    async def _events(self) -> list[dict[str, Any]]:
        ctx = self.ctx
        markets = await self._all_markets()
        by_event: dict[str, list[dict[str, Any]]] = {}
        for m in markets:
            if m["eventSlug"]:
                by_event.setdefault(m["eventSlug"], []).append(m)
        return [
            event_object(ctx, event, by_event.get(event.slug, []))
            for event in ctx.catalogue.events.values()
        ]

    async def events(self, request: Request, key: Any) -> Response:
        q = Query(request)
        ids = {str(i) for i in q.integers("id")}
        slugs = set(q.strings("slug"))
        series_ids = {str(i) for i in q.integers("seriesId")}
        active, closed = q.boolean("active"), q.boolean("closed")
        featured, archived = q.boolean("featured"), q.boolean("archived")
        categories = set(q.strings("categories"))
        chosen = [
            e
            for e in await self._events()
            if (not ids or e["id"] in ids)
            and (not slugs or e["slug"] in slugs)
            and (not series_ids or (e["series"] and e["series"]["id"] in series_ids))
            and (not categories or e["category"] in categories)
            and (active is None or e["active"] == active)
            and (closed is None or e["closed"] == closed)
            and (featured is None or e["featured"] == featured)
            and (archived is None or archived is False)
        ]
        _order(chosen, q)
        return json_response(wire.encode({"events": page(chosen, q)}))

    async def event_by_id(self, request: Request, key: Any) -> Response:
        text = request.params["id"]
        if not (text.isascii() and text.isdigit()) or len(text) > 12:
            raise not_found(f"event {text[:32]!r} not found")
        found = [e for e in await self._events() if e["id"] == str(int(text))]
        if not found:
            raise not_found(f"event {text} not found")
        return json_response(wire.encode({"event": found[0]}))

    async def event_by_slug(self, request: Request, key: Any) -> Response:
        slug = request.params["slug"]
        found = [e for e in await self._events() if e["slug"] == slug]
        if not found:
            raise not_found(f"event {slug[:64]!r} not found")
        return json_response(wire.encode({"event": found[0]}))

    def _series(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for entry in self.ctx.catalogue.series.values():
            mine = [e for e in events if e["series"] and e["series"]["slug"] == entry.slug]
            out.append(
                _series_object(
                    entry,
                    any(e["active"] for e in mine),
                    bool(mine) and all(e["closed"] for e in mine),
                )
            )
        return out

    async def series_list(self, request: Request, key: Any) -> Response:
        q = Query(request)
        slugs = set(q.strings("slug"))
        active, closed = q.boolean("active"), q.boolean("closed")
        recurrence = q.string("recurrence")
        chosen = [
            s
            for s in self._series(await self._events())
            if (not slugs or s["slug"] in slugs)
            and (active is None or s["active"] == active)
            and (closed is None or s["closed"] == closed)
            and (recurrence is None or s["recurrence"] == recurrence)
        ]
        _order(chosen, q)
        return json_response(wire.encode({"series": page(chosen, q)}))

    async def series_by_id(self, request: Request, key: Any) -> Response:
        text = request.params["id"]
        found = [s for s in self._series(await self._events()) if s["id"] == text]
        if not found:
            raise not_found(f"series {text[:32]!r} not found")
        return json_response(wire.encode({"series": found[0]}))

    async def sports(self, request: Request, key: Any) -> Response:
        return json_response(wire.encode({"sports": self.ctx.catalogue.sports}))

    async def teams(self, request: Request, key: Any) -> Response:
        q = Query(request)
        ids = set(q.strings("teamIds"))
        league = q.string("league")
        provider = q.string("provider")
        teams = {
            team_id: team
            for team_id, team in self.ctx.catalogue.teams.items()
            if (not ids or team_id in ids)
            and (league is None or team.get("league") == league)
            and (
                provider is None
                or any(p.get("provider") == provider for p in team.get("providerIds", []))
            )
        }
        return json_response(wire.encode({"teams": teams}))

    async def search(self, request: Request, key: Any) -> Response:
        q = Query(request)
        text = (q.string("query") or "").strip().lower()
        status = q.string("status")
        if status not in (None, "", "active", "closed", "upcoming"):
            raise bad_request("status must be active, closed or upcoming")
        series_ids = {str(i) for i in q.integers("seriesIds")}
        limit = q.integer("limit", 20, 1, 1000) or 20
        number = q.integer("page", 1, 1, 10**6) or 1

        def matches(event: dict[str, Any]) -> bool:
            if not text:
                return True
            haystack = [event["title"], event["slug"], event["description"]]
            haystack += [m["title"] for m in event["markets"]] + [
                m["slug"] for m in event["markets"]
            ]
            return any(text in h.lower() for h in haystack if h)

        chosen = [
            e
            for e in await self._events()
            if matches(e)
            and (not series_ids or (e["series"] and e["series"]["id"] in series_ids))
            and (
                status in (None, "")
                or (status == "active" and e["active"])
                or (status == "closed" and e["closed"])
                or (status == "upcoming" and not e["active"] and not e["closed"])
            )
        ]
        chosen = chosen[(number - 1) * limit : number * limit]
        return json_response(wire.encode({"events": chosen}))


def _order(items: list[dict[str, Any]], q: Query) -> None:
    """``orderBy`` (repeated; fields of the objects) and ``orderDirection``."""
    fields = [f for f in q.strings("orderBy") if f]
    if not fields:
        return
    descending = (q.string("orderDirection") or "asc").lower() == "desc"
    for name in reversed(fields):
        if name in ("id",):
            items.sort(key=lambda x: int(x["id"]), reverse=descending)
        elif items and name in items[0] and isinstance(items[0][name], str | Decimal | int):
            items.sort(key=lambda x: x.get(name) or "", reverse=descending)


# ------------------------------------------------------ book payloads


def _stats(
    ctx: VenueContext, market: int, decimals: int, interest: int | None
) -> dict[str, Any] | None:
    """``MarketStats`` from every fill so far (null before the first); ``interest`` is the
    market's collateral when known (the WebSocket's frames do not read the engine)."""
    stats = ctx.trade_stats(market)
    if stats is None:
        return None
    px = lambda units: wire.amount(wire.fixed(units, 10_000, decimals))  # noqa: E731
    out = {
        "lastTradePx": px(stats.last_price),
        "lastTradeQty": wire.exact(stats.last_qty, QTY),
        "highPx": px(stats.high),
        "lowPx": px(stats.low),
        "sharesTraded": wire.exact(stats.shares, QTY),
        "notionalTraded": wire.amount(wire.exact(stats.notional, CASH, 2)),
    }
    if interest is not None:
        out["openInterest"] = wire.exact(interest, CASH)  # $1 of collateral per YES+NO pair
    return out


def book_payload(
    ctx: VenueContext, slug: str, view: Any, interest: int | None = None
) -> dict[str, Any]:
    """``MarketData``: the YES book, levels aggregated by price, best first (spec §2.6);
    ``interest`` is the market's collateral (micro-dollars: $1 per pair outstanding)."""
    bids, asks = view.levels(ctx.settings.book_depth)
    decimals = venue.price_decimals(view.tick or 100)
    stats = _stats(ctx, view.market, decimals, interest)
    last = ctx.trade_stats(view.market)
    return {
        "marketSlug": slug,
        "bids": [_level(p, q, decimals) for p, q, _ in bids],
        "offers": [_level(p, q, decimals) for p, q, _ in asks],
        "state": venue.book_state(view.state),
        "stats": stats,
        "transactTime": wire.timestamp(last.last_ns) if last is not None else None,
    }


def _level(price: int, quantity: int, decimals: int) -> dict[str, Any]:
    return {
        "px": wire.amount(wire.fixed(price, 10_000, decimals)),
        "qty": wire.exact(quantity, QTY),
    }


def two_significant(units: int) -> str:
    """Contracts rounded down to two significant figures (the venue's bidShares, askShares)."""
    if units <= 0:
        return "0"
    shares = Decimal(units) / QTY
    step = Decimal(1).scaleb(shares.adjusted() - 1)
    return format(shares.quantize(step, rounding=ROUND_DOWN).normalize(), "f")


def bbo_payload(
    ctx: VenueContext, slug: str, view: Any, interest: int | None = None
) -> dict[str, Any]:
    """``MarketDataLite``: the touch and the depth in levels (spec §2.6)."""
    bid, _, ask, _ = view.bbo
    decimals = venue.price_decimals(view.tick or 100)
    stats = ctx.trade_stats(view.market)
    out = {
        "marketSlug": slug,
        "bestBid": wire.amount(wire.fixed(bid, 10_000, decimals)) if bid else None,
        "bestAsk": wire.amount(wire.fixed(ask, 10_000, decimals)) if ask else None,
        "lastTradePx": (
            wire.amount(wire.fixed(stats.last_price, 10_000, decimals)) if stats else None
        ),
        "bidDepth": len(view.bids),
        "askDepth": len(view.asks),
        "bidShares": two_significant(sum(q for q, _ in view.bids.values())),
        "askShares": two_significant(sum(q for q, _ in view.asks.values())),
        "sharesTraded": wire.exact(stats.shares, QTY) if stats else "",
        "state": venue.book_state(view.state),
    }
    if interest is not None:
        out["openInterest"] = wire.exact(interest, CASH) if stats else ""
    return out
