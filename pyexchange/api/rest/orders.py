"""Order entry of the venue API: create, batches, cancel, modify, cancel all, preview, close.

A request is checked for its shape here (400, nothing created: malformed JSON,
a missing ``marketSlug`` or intent, an unknown enum, both or neither of
``quantity`` and ``cashOrderQty``, a batch of 0 or more than 20), converted to
the core's terms through ``venue.py`` (exact decimals, truncated toward zero to
the market's tick and quantity step as the venue normalizes), and submitted
through the service layer's order entry (``OrderEntry``: the records and checks
gRPC uses, with ``engine_judges``: values off the market's rules go to the
engine): journaled, run, answered. What the exchange refuses (price out of
bounds, a quantity below the minimum, buying power, a market that is not open,
an unknown slug) is an order like any other:
it gets an id, HTTP 200, and a REJECTED execution with the venue's reason and
text (spec §3.7).

Order ids are the core's (``ids.py``). The reply to ``create`` is ``{"id"}``,
with ``executions`` when ``synchronousExecution`` is set: the server then waits
until the order is filled, canceled, rejected or expired, at most
``maxBlockTime`` seconds (default and cap 10), and answers every execution so
far (a resting order: its NEW).

Reads after writes: every reply records the engine seq it answered; reads of
the order history wait until the history has that seq (it follows the drop
copy, a few hundred microseconds behind), so an order is there as soon as its
create has answered.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from matchcore import (
    ALL_MARKETS,
    COMMAND_DTYPE,
    MAX_CASH,
    MAX_QUANTITY,
    PRICE_SCALE,
    CommandType,
    EventType,
    FeeBase,
    Intent,
    OrderFlags,
    Side,
    TimeInForce,
)
from matchcore.codes import side_of

from ...engine import records
from ...feeds.history import Execution, OrderRecord
from ...service.errors import ServiceError
from ...service.orders import OrderEntry, OrderReply, Place, place_record
from . import ids, objects, venue, wire
from .app import VenueApp, json_response
from .auth import account_of
from .context import VenueContext, service
from .errors import bad_request, from_service_error, not_found
from .http import Request, Response

MAX_BATCH = 20
# Rejected orders naming an unknown slug: the slug of the newest ones is kept to show them;
# bounded, since anyone with a key can send new slugs (older ones then show "").
UNKNOWN_SLUGS_KEPT = 10_000
UNKNOWN_MARKET = 0xFFFF_FFFE  # names no market: the engine rejects it (UNKNOWN_MARKET)
EMPTY = b"{}"


@dataclass
class OrderSpec:
    """A CreateOrderRequest in the core's terms (before the market's grid is applied)."""

    slug: str
    market: int  # UNKNOWN_MARKET for a slug that names none
    intent: int
    market_order: bool
    price: Decimal | None
    quantity: Decimal | None
    cash: Decimal | None
    tif: int
    expiry_ns: int
    post_only: bool
    sync: bool
    max_block_s: Decimal
    slippage: dict[str, Any] | None


def _enum(body: dict[str, Any], name: str, allowed: Any, default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str) or value not in allowed:
        shown = value[:40] if isinstance(value, str) else type(value).__name__
        raise bad_request(f"{name}: unknown value {shown!r}")
    return value


def _bool(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def _slug(body: dict[str, Any], name: str = "marketSlug") -> str:
    slug = body.get(name)
    if not isinstance(slug, str) or not slug:
        raise bad_request(f"{name} is required")
    if len(slug) > 128:
        raise bad_request(f"{name} is too long")
    return slug


def parse_create(body: Any, ctx: VenueContext, settings_cap: int) -> OrderSpec:
    """Check a CreateOrderRequest's shape (400 otherwise); nothing about the market's rules."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    slug = _slug(body)
    market = ctx.catalogue.by_slug(slug)
    if market is None or ctx.gateway.markets.get(market) is None:
        market = UNKNOWN_MARKET  # the exchange rejects it: UNKNOWN_MARKET (spec §6 #11)
    side = _enum(body, "outcomeSide", ("OUTCOME_SIDE_YES", "OUTCOME_SIDE_NO"))
    action = _enum(body, "action", ("ORDER_ACTION_BUY", "ORDER_ACTION_SELL"))
    named = _enum(body, "intent", venue.INTENTS)
    if side is not None and action is not None:
        intent = venue.OUTCOME_ACTIONS[(side, action)]  # wins over intent (spec §2.2)
    elif named is not None:
        intent = venue.INTENTS[named]
    else:
        raise bad_request("intent is required (or outcomeSide and action)")
    kind = _enum(body, "type", venue.ORDER_TYPES)
    tif_name = _enum(body, "tif", venue.TIFS)
    _enum(body, "manualOrderIndicator", venue.MANUAL_ORDER_INDICATORS)
    price = wire.amount_of(body["price"], "price") if body.get("price") is not None else None
    if kind is None:
        if price is None:
            raise bad_request("type is required for an order without a price")
        kind = "ORDER_TYPE_LIMIT"
    market_order = kind == "ORDER_TYPE_MARKET"
    if not market_order and price is None:
        raise bad_request("a limit order needs a price")
    quantity = body.get("quantity")
    cash = body.get("cashOrderQty")
    if (quantity is None) == (cash is None):
        raise bad_request("give exactly one of quantity and cashOrderQty")
    quantity_value = wire.decimal_of(quantity, "quantity") if quantity is not None else None
    cash_value = wire.amount_of(cash, "cashOrderQty") if cash is not None else None
    tif: int
    if market_order or cash_value is not None:  # neither rests: IOC unless FOK
        tif = TimeInForce.FOK if tif_name == "TIME_IN_FORCE_FILL_OR_KILL" else TimeInForce.IOC
    else:
        tif = venue.TIFS[tif_name] if tif_name else TimeInForce.GTC
    expiry = 0
    if tif == TimeInForce.GTD:
        if body.get("goodTillTime") is None:
            raise bad_request("TIME_IN_FORCE_GOOD_TILL_DATE needs goodTillTime")
        expiry = wire.parse_time(body["goodTillTime"], "goodTillTime")
    slippage = body.get("slippageTolerance")
    if slippage is not None:
        if not isinstance(slippage, dict):
            raise bad_request("slippageTolerance must be an object {currentPrice, bips, ticks}")
        for name in ("bips", "ticks"):
            value = slippage.get(name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000
            ):
                raise bad_request(f"slippageTolerance.{name} must be an integer 0..10000")
        if slippage.get("currentPrice") is not None:
            wire.amount_of(slippage["currentPrice"], "slippageTolerance.currentPrice")
    sync = _bool(body, "synchronousExecution")
    max_block = wire.seconds_of(
        body.get("maxBlockTime"),
        "maxBlockTime",
        default=Decimal(settings_cap),
        cap=Decimal(settings_cap),
    )
    return OrderSpec(
        slug,
        market,
        intent,
        market_order,
        price,
        quantity_value,
        cash_value,
        tif,
        expiry,
        _bool(body, "participateDontInitiate"),
        sync,
        max_block,
        slippage,
    )


def _price_units(value: Decimal, tick: int) -> int:
    """A YES price in price units, truncated toward zero to the tick; 0 if out of range
    (the engine then rejects it: PRICE_OUT_OF_BOUNDS)."""
    units = wire.truncated_units(value, PRICE_SCALE, tick)
    return units if 0 < units < PRICE_SCALE else 0


def _bound_units(value: Decimal, tick: int) -> int:
    """A market order's price (its worst price) or a tolerance's ``currentPrice`` in price
    units, truncated toward zero to the tick; out of range, a value the engine rejects
    (PRICE_OUT_OF_BOUNDS): 0 would mean "none" to the engine."""
    return _price_units(value, tick) or PRICE_SCALE


def tolerance(spec: OrderSpec, tick: int) -> tuple[int, int, int]:
    """A market order's ``slippageTolerance`` in the core's terms (ticks, bps, current
    price or 0: the best opposite one); the engine derives the worst price (spec §3.2,
    docs/matchcore.md §4). A 0 is no tolerance, as proto3 has it (absent and 0 are one)."""
    slippage = spec.slippage
    if not spec.market_order or not slippage:  # "Limit orders: not applicable"
        return 0, 0, 0
    current = slippage.get("currentPrice")
    return (
        slippage.get("ticks") or 0,
        slippage.get("bips") or 0,
        _bound_units(wire.amount_of(current, "currentPrice"), tick) if current is not None else 0,
    )


def order_request(spec: OrderSpec, account: int, ctx: VenueContext) -> Place:
    """The service layer's request for a checked order, in units on the market's grid (the
    venue truncates toward zero); a value off the market's rules (price out of bounds, a
    quantity below the minimum or above the maximum) is left for the engine to reject."""
    market_spec = ctx.gateway.markets.get(spec.market)
    tick, lot = (market_spec.tick, market_spec.lot) if market_spec is not None else (100, 1)
    by_cash = spec.cash is not None
    market_order = spec.market_order or by_cash  # a buy by cash never rests: the core's MARKET
    if spec.cash is not None:
        quantity = min(wire.truncated_units(spec.cash, venue.CASH_SCALE, 1), MAX_CASH + 1)
    else:
        assert spec.quantity is not None
        quantity = min(
            wire.truncated_units(spec.quantity, venue.QUANTITY_SCALE, lot), MAX_QUANTITY + 1
        )
    if market_order:  # the worst price: the tolerance's, else the price, else the bound
        price = _bound_units(spec.price, tick) if spec.price is not None else 0
    else:
        assert spec.price is not None
        price = _price_units(spec.price, tick)
    return Place(
        account=account,
        market=spec.market,
        intent=spec.intent,
        price=price,
        quantity="" if by_cash else quantity,
        cash=quantity if by_cash else "",
        tif=spec.tif,
        expire_time_ns=spec.expiry_ns,
        stp=venue.SELF_MATCH_MODE,
        post_only=spec.post_only,
        market_order=market_order,
        slippage=tolerance(spec, tick) if market_order else None,
        engine_judges=True,
    )


def _cancel_command(account: int, order_id: int) -> np.ndarray:
    command = np.zeros(1, dtype=COMMAND_DTYPE)
    command["type"] = CommandType.CANCEL
    command["account"] = account
    command["order_id"] = order_id
    return command


def _created(reply: OrderReply) -> tuple[str, int, int]:
    """(venue order id, core order id or 0, seq) of a created order: a command the exchange
    rejected is an order too, named by its seq."""
    if reply.order_id:
        return ids.order_id(reply.order_id), reply.order_id, reply.seq
    return ids.rejected_order_id(reply.seq), 0, reply.seq


class OrdersApi:
    # (method, path, handler, permission): what ``register`` serves (and what a server
    # without the order history answers 501 for: ``VenueApi``)
    ROUTES = (
        ("POST", "/v1/orders", "create", "trade"),
        ("POST", "/v1/orders/batched", "create_many", "trade"),
        ("POST", "/v1/orders/batched/cancel", "cancel_many", "trade"),
        ("POST", "/v1/orders/batched/modify", "modify_many", "trade"),
        ("GET", "/v1/orders/open", "open_orders", "read"),
        ("POST", "/v1/orders/open/cancel", "cancel_all", "trade"),
        ("POST", "/v1/order/preview", "preview", "trade"),
        ("POST", "/v1/order/close-position", "close_position", "trade"),
        ("GET", "/v1/order/{orderId}", "retrieve", "read"),
        ("POST", "/v1/order/{orderId}/cancel", "cancel", "trade"),
        ("POST", "/v1/order/{orderId}/modify", "modify", "trade"),
    )

    def __init__(self, ctx: VenueContext, history: Any) -> None:
        self.ctx = ctx
        self.history = history
        self.entry = OrderEntry(ctx.gateway)  # the service layer's checks and records
        self.acked_seq = 0  # the newest seq answered to any client (reads wait for it)
        self._unknown_slugs: dict[int, str] = {}  # seq -> the slug a rejected order named
        self.unknown_slugs_kept = UNKNOWN_SLUGS_KEPT

    def register(self, app: VenueApp) -> None:
        for method, path, handler, permission in self.ROUTES:
            app.add(method, path, getattr(self, handler), permission)

    # ------------------------------------------------------------ helpers

    async def _run(self, commands: np.ndarray, label: str) -> np.ndarray:
        events = await service(self.ctx.gateway.run(commands, label))
        if len(events):
            self.acked_seq = max(self.acked_seq, int(events["seq"][-1]))
        return events

    async def _place(self, key: Any, requests: list[Place]) -> list[OrderReply]:
        """Submit new orders as one submission (the service layer's order entry) and wait.
        The requests passed this adapter's checks, so a refusal is the submission's (busy,
        stopped): raised as the venue's error."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()

        def done(results: list[Any]) -> None:
            if not future.done():
                future.set_result(results)

        self.entry.submit(key, requests, done, charge=False)  # the token is taken per request
        results = await future
        for result in results:
            if isinstance(result, ServiceError):
                raise from_service_error(result)
        self.acked_seq = max(self.acked_seq, *(r.seq for r in results))
        return results

    async def _caught_up(self) -> None:
        await self.history.caught_up(self.acked_seq)

    async def _facts(self, markets: set[int]) -> dict[int, objects.MarketFacts]:
        known = [m for m in markets if self.ctx.gateway.markets.get(m) is not None]
        infos = await self.ctx.market_infos(known) if known else {}
        return {m: objects.facts(self.ctx.catalogue, infos.get(m), m) for m in markets}

    def _remember_unknown(self, seq: int, slug: str) -> None:
        slugs = self._unknown_slugs
        slugs[seq] = slug
        if len(slugs) > self.unknown_slugs_kept:  # seqs only grow: the first is the oldest
            del slugs[next(iter(slugs))]

    def _slug_of(self, order: OrderRecord) -> str:
        if order.market == UNKNOWN_MARKET:
            return self._unknown_slugs.get(order.seq, "")
        return self.ctx.catalogue.slug(order.market)

    def _find(self, account: int, text: str) -> OrderRecord:
        """The caller's order with this venue id (404 for an unknown one and for another
        account's alike: ids of others are not revealed)."""
        parsed = ids.parse_order_id(text)
        order = None
        if parsed is not None:
            rejected, number = parsed
            order = (
                self.history.rejected(account, number) if rejected else self.history.order(number)
            )
        if order is None or order.account != account:
            raise not_found(f"order {text[:32]!r} not found")
        return order

    def _executions(self, account: int, core: int, seq: int) -> list[Execution]:
        """An order's executions: by its core id, or the one of a rejected command."""
        history = self.history.account(account)
        if core:
            return list(history.by_order.get(core, ()))
        return [e for e in history.executions[-64:] if e.seq == seq and not e.order.order_id]

    async def _wait_terminal(self, order: OrderRecord, seconds: float) -> None:
        """Until the order is over, at most ``seconds`` (synchronousExecution)."""
        if not order.open or seconds <= 0:
            return
        done = asyncio.get_running_loop().create_future()

        def check(account: int, changes: list[Any]) -> None:
            if not order.open and not done.done():
                done.set_result(None)

        self.history.listen(order.account, check)
        try:
            await asyncio.wait_for(done, seconds)
        except TimeoutError:
            pass
        finally:
            self.history.unlisten(order.account, check)

    # -------------------------------------------------------------- create

    async def _submit_one(self, spec: OrderSpec, key: Any) -> dict[str, Any]:
        account = account_of(key)
        (created,) = await self._place(key, [order_request(spec, account, self.ctx)])
        venue_id, core, seq = _created(created)
        if spec.market == UNKNOWN_MARKET:
            self._remember_unknown(seq, spec.slug)
        reply: dict[str, Any] = {"id": venue_id}
        if not spec.sync:
            return reply
        await self.history.caught_up(seq)
        order = self.history.order(core) if core else self.history.rejected(account, seq)
        if order is not None:
            if spec.expiry_ns:
                order.expiry_ns = spec.expiry_ns
            await self._wait_terminal(order, float(spec.max_block_s))
            executions = self._executions(account, core, seq)
            facts = (await self._facts({order.market}))[order.market]
            slug = self._slug_of(order)
            reply["executions"] = [objects.execution_object(e, facts, slug) for e in executions]
        return reply

    async def create(self, request: Request, key: Any) -> Response:
        spec = parse_create(wire.decode(request.body), self.ctx, self.ctx.settings.max_block_s)
        reply = await self._submit_one(spec, key)
        if spec.expiry_ns and "executions" not in reply:
            self._remember_expiry(reply["id"], spec.expiry_ns)
        return json_response(wire.encode(reply))

    def _remember_expiry(self, venue_id: str, expiry_ns: int) -> None:
        parsed = ids.parse_order_id(venue_id)
        if parsed is None or parsed[0]:
            return
        order = self.history.order(parsed[1])
        if order is not None:
            order.expiry_ns = expiry_ns
        else:  # not in the history yet: set when it arrives (a little later)
            asyncio.get_running_loop().create_task(self._expiry_later(parsed[1], expiry_ns))

    async def _expiry_later(self, core: int, expiry_ns: int) -> None:
        await self._caught_up()
        order = self.history.order(core)
        if order is not None:
            order.expiry_ns = expiry_ns

    async def create_many(self, request: Request, key: Any) -> Response:
        body = wire.decode(request.body)
        entries = body.get("orders") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
            raise bad_request(f"orders must be a list of 1 to {MAX_BATCH} orders")
        specs = []
        for i, entry in enumerate(entries):  # all or nothing: one bad entry refuses the batch
            try:
                specs.append(parse_create(entry, self.ctx, self.ctx.settings.max_block_s))
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                raise bad_request(f"orders[{i}]: {message}") from None
        account = account_of(key)
        replies = await self._place(key, [order_request(s, account, self.ctx) for s in specs])
        created = []
        for spec, reply in zip(specs, replies, strict=True):
            venue_id, _, seq = _created(reply)
            if spec.market == UNKNOWN_MARKET:
                self._remember_unknown(seq, spec.slug)
            if spec.expiry_ns:
                self._remember_expiry(venue_id, spec.expiry_ns)
            created.append(venue_id)
        return json_response(wire.encode({"createdOrderIds": created}))

    # ------------------------------------------------------------- queries

    async def open_orders(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        await self._caught_up()
        slugs = {v for k, v in request.query() if k == "slugs"}
        mine = [
            o
            for o in self.history.account(account).orders.values()
            if o.open and (not slugs or self._slug_of(o) in slugs)
        ]
        await self._fill_expiry(account, mine)
        facts = await self._facts({o.market for o in mine})
        orders = [objects.order_object(o, facts[o.market], self._slug_of(o)) for o in mine]
        return json_response(wire.encode({"orders": orders}))

    async def _fill_expiry(self, account: int, orders: list[OrderRecord]) -> None:
        """GTD expiries are not in the events: read the live ones from the engine once."""
        if not any(o.tif == TimeInForce.GTD and not o.expiry_ns for o in orders):
            return
        live = await service(self.ctx.gateway.read(lambda engine: engine.orders_of(account)))
        expiry = {o.order_id: int(o.expiry) for o in live}
        for o in orders:
            if o.order_id in expiry:
                o.expiry_ns = expiry[o.order_id]

    async def retrieve(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        await self._caught_up()
        order = self._find(account, request.params["orderId"])
        if order.open:
            await self._fill_expiry(account, [order])
        facts = (await self._facts({order.market}))[order.market]
        return json_response(
            wire.encode({"order": objects.order_object(order, facts, self._slug_of(order))})
        )

    # -------------------------------------------------------------- cancel

    async def cancel(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        body = wire.decode(request.body)
        slug = _slug(body if isinstance(body, dict) else {})
        await self._caught_up()
        order = self._find(account, request.params["orderId"])
        if self._slug_of(order) != slug:
            raise not_found(f"order {request.params['orderId'][:32]!r} not found in {slug!r}")
        if order.open:  # a terminal order: nothing to do (a cancel that lost a race to a fill)
            await self._run(_cancel_command(account, order.order_id), "cancel")
        return json_response(EMPTY)

    def _batch(self, body: Any, extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        entries = body.get("orders") if isinstance(body, dict) else None
        if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_BATCH:
            raise bad_request(f"orders must be a list of 1 to {MAX_BATCH} entries")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise bad_request(f"orders[{i}] must be an object")
            for name in ("orderId", "marketSlug"):
                value = entry.get(name)
                if not isinstance(value, str) or not value or len(value) > 128:
                    raise bad_request(f"orders[{i}].{name} is required")
        return entries

    def _mine(self, account: int, entry: dict[str, Any]) -> OrderRecord | None:
        """The caller's open order an entry names, or None (ignored: spec §2.2)."""
        parsed = ids.parse_order_id(entry["orderId"])
        if parsed is None or parsed[0]:
            return None
        order = self.history.order(parsed[1])
        if order is None or order.account != account or not order.open:
            return None
        return order if self._slug_of(order) == entry["marketSlug"] else None

    async def cancel_many(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        entries = self._batch(wire.decode(request.body))
        await self._caught_up()
        targets = [o for o in (self._mine(account, e) for e in entries) if o is not None]
        if targets:
            await self._run(
                records.join(
                    [_cancel_command(account, o.order_id) for o in targets], COMMAND_DTYPE
                ),
                "cancel",
            )
        return json_response(wire.encode({"canceledOrderIds": [e["orderId"] for e in entries]}))

    async def cancel_all(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        body = wire.decode(request.body)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        slugs = body.get("slugs")
        if slugs is None and isinstance(body.get("marketSlug"), str):
            slugs = [body["marketSlug"]]  # the SDK docs page's spelling: one market (spec §6 #9)
        if slugs is not None and (
            not isinstance(slugs, list)
            or len(slugs) > 1000
            or not all(isinstance(s, str) for s in slugs)
        ):
            raise bad_request("slugs must be a list of market slugs")
        if slugs:
            markets = sorted(
                {m for m in (self.ctx.catalogue.by_slug(s) for s in slugs) if m is not None}
            )
            if not markets:
                return json_response(wire.encode({"canceledOrderIds": []}))
        else:
            markets = [ALL_MARKETS]
        commands = np.zeros(len(markets), dtype=COMMAND_DTYPE)
        commands["type"] = CommandType.CANCEL_ALL
        commands["account"] = account
        commands["market"] = markets
        events = await self._run(commands, "cancel_all")
        canceled = events[(events["type"] == EventType.CANCELED) & (events["account"] == account)]
        return json_response(
            wire.encode({"canceledOrderIds": [ids.order_id(int(i)) for i in canceled["order_id"]]})
        )

    # -------------------------------------------------------------- modify

    def _replace(self, account: int, order: OrderRecord, body: dict[str, Any]) -> np.ndarray:
        """The REPLACE record of a ModifyOrderRequest (400 for what cannot change)."""
        spec = self.ctx.gateway.markets.get(order.market)
        tick, lot = (spec.tick, spec.lot) if spec is not None else (100, 1)
        price = 0
        if body.get("price") is not None:
            price = _price_units(wire.amount_of(body["price"], "price"), tick)
            if not price:
                raise bad_request("price is out of bounds")
            if price == order.price:
                price = 0
        remaining = 0
        if body.get("quantity") is not None:
            total = wire.truncated_units(
                wire.decimal_of(body["quantity"], "quantity"), venue.QUANTITY_SCALE, lot
            )
            remaining = total - order.cum
            if remaining <= 0:
                raise bad_request("quantity (the new total) must be above the filled quantity")
        tif = _enum(body, "tif", venue.TIFS)
        if tif is not None and venue.TIFS[tif] != order.tif:
            raise bad_request("the time in force of a resting order cannot change here")
        if body.get("participateDontInitiate") is not None and _bool(
            body, "participateDontInitiate"
        ) != bool(order.flags & OrderFlags.POST_ONLY):
            raise bad_request("participateDontInitiate of a resting order cannot change here")
        if body.get("goodTillTime") is not None:
            expiry = wire.parse_time(body["goodTillTime"], "goodTillTime")
            if order.tif != TimeInForce.GTD or (order.expiry_ns and expiry != order.expiry_ns):
                raise bad_request("goodTillTime of a resting order cannot change here")
        command = np.zeros(1, dtype=COMMAND_DTYPE)
        command["type"] = CommandType.REPLACE
        command["account"] = account
        command["order_id"] = order.order_id
        command["price"] = price
        command["quantity"] = min(remaining, MAX_QUANTITY + 1)
        return command

    async def modify(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        body = wire.decode(request.body)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        slug = _slug(body)
        await self._caught_up()
        order = self._find(account, request.params["orderId"])
        if self._slug_of(order) != slug:
            raise not_found(f"order {request.params['orderId'][:32]!r} not found in {slug!r}")
        if not order.open:
            return json_response(EMPTY)  # over already: nothing to modify (spec §6 #8)
        command = self._replace(account, order, body)
        if not command["price"][0] and not command["quantity"][0]:
            return json_response(EMPTY)  # nothing changes
        events = await self._run(command, "replace")
        rejected = events[events["type"] == EventType.REJECTED]
        if len(rejected):
            code = int(rejected["reason"][0])
            if code not in (13,):  # UNKNOWN_ORDER: it was filled or canceled meanwhile
                raise bad_request(f"modify rejected: {venue.reject(code)[1]}")
        return json_response(EMPTY)

    async def modify_many(self, request: Request, key: Any) -> Response:
        account = account_of(key)
        entries = self._batch(wire.decode(request.body))
        await self._caught_up()
        commands = []
        for i, entry in enumerate(entries):  # every entry's shape first: all or nothing
            order = self._mine(account, entry)
            try:
                command = self._replace(account, order, entry) if order is not None else None
            except Exception as exc:
                raise bad_request(f"orders[{i}]: {getattr(exc, 'message', exc)}") from None
            if command is not None and (command["price"][0] or command["quantity"][0]):
                commands.append(command)
        if commands:
            await self._run(records.join(commands, COMMAND_DTYPE), "replace")
        return json_response(wire.encode({"modifiedOrderIds": [e["orderId"] for e in entries]}))

    # ----------------------------------------------------- preview, close

    async def preview(self, request: Request, key: Any) -> Response:
        body = wire.decode(request.body)
        inner = body.get("request") if isinstance(body, dict) else None
        if inner is None and isinstance(body, dict) and "marketSlug" in body:
            inner = body  # the flat form of the SDK docs page (spec §6 #10)
        spec = parse_create(inner, self.ctx, self.ctx.settings.max_block_s)
        if spec.market == UNKNOWN_MARKET:
            raise not_found(f"market {spec.slug[:64]!r} not found")
        account = account_of(key)
        place = order_request(spec, account, self.ctx)
        command = np.array([place_record(place, self.ctx.gateway.markets)], COMMAND_DTYPE)[0]
        infos = await self.ctx.market_infos([spec.market])
        info = infos[spec.market]
        view = self.ctx.view(spec.market)
        price, cum, notional, fee = simulate(command, view, info)
        now = time.time_ns()
        order = OrderRecord(
            0, 0, account, spec.market, spec.intent, int(command["tif"]), int(command["flags"]),
            price, int(command["quantity"]) if spec.cash is None else cum,
            budget=int(command["quantity"]) if spec.cash is not None else 0,
            leaves=max(int(command["quantity"]) - cum, 0) if spec.cash is None else 0,
            cum=cum, notional=notional, fees=fee, expiry_ns=spec.expiry_ns,
            created_ns=now, inserted_ns=now, updated_ns=now,
        )  # fmt: skip
        facts = objects.facts(self.ctx.catalogue, info, spec.market)
        shown = objects.order_object(order, facts)
        shown["id"] = ""
        return json_response(wire.encode({"order": shown}))

    async def close_position(self, request: Request, key: Any) -> Response:
        body = wire.decode(request.body)
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        slug = _slug(body)
        market = self.ctx.catalogue.by_slug(slug)
        if market is None or self.ctx.gateway.markets.get(market) is None:
            raise not_found(f"market {slug[:64]!r} not found")
        account = account_of(key)
        position = await service(
            self.ctx.gateway.read(lambda engine: engine.position(account, market))
        )
        yes = position.yes_free + position.yes_reserved
        no = position.no_free + position.no_reserved
        net = yes - no
        if net > 0 and position.yes_free:
            intent, quantity = Intent.SELL_YES, min(net, position.yes_free)
        elif net < 0 and position.no_free:
            intent, quantity = Intent.SELL_NO, min(-net, position.no_free)
        else:
            raise not_found("No open position for market slug")
        spec = parse_create(
            {
                "marketSlug": slug,
                "intent": venue.INTENT_NAMES[intent],
                "type": "ORDER_TYPE_MARKET",
                "quantity": wire.number(quantity, venue.QUANTITY_SCALE),
                **{
                    k: body[k]
                    for k in ("synchronousExecution", "maxBlockTime", "slippageTolerance",
                              "manualOrderIndicator")
                    if k in body
                },
            },
            self.ctx,
            self.ctx.settings.max_block_s,
        )  # fmt: skip
        reply = await self._submit_one(spec, key)
        return json_response(wire.encode(reply))


def simulate(command: Any, view: Any, info: Any) -> tuple[int, int, int, int]:
    """What an order would fill now against the book (the preview): (its worst price,
    quantity, notional in micro-dollars, taker fee), levels as market data has them (owners
    are not known: a self-match is not foreseen)."""
    intent = int(command["intent"])
    flags = int(command["flags"])
    by_cash = bool(flags & OrderFlags.BY_CASH)
    left = int(command["quantity"])
    lot = int(info.lot)
    bid = side_of(intent) == Side.BID
    levels = sorted(view.asks.items()) if bid else sorted(view.bids.items(), reverse=True)
    limit = int(command["price"])
    if flags & OrderFlags.SLIPPAGE:
        limit = slippage_limit(bid, limit, int(command["aux"]), info, levels[0][0] if levels else 0)
    cum = notional = fee = 0
    for price, (total, _) in levels:
        if (bid and price > limit) or (not bid and price < limit) or left <= 0:
            break
        token = price if intent in (Intent.BUY_YES, Intent.SELL_YES) else PRICE_SCALE - price
        if by_cash:
            take = min(total, (left // (token * lot)) * lot)
            left -= take * token
        else:
            take = min(total, left)
            left -= take
        if take <= 0:
            break
        cum += take
        notional += price * take
        fee += _fee(int(info.taker_fee_bps), int(info.fee_base), price, token, take)
    if int(info.fee_base) == FeeBase.PQ_CENTS:  # fee summed the exact numerators
        fee = _cents(fee) * _CENT
    return limit, cum, notional, fee


def slippage_limit(bid: bool, price: int, aux: int, info: Any, best: int) -> int:
    """The worst price the engine derives for a SLIPPAGE market order (docs/matchcore.md §4),
    for the preview, which runs nothing in the engine: ``current`` (else the best opposite
    price, else the bound) plus ``ticks`` ticks (they win) or times ``1 + bps / 10^4`` on the
    grid inside the tolerance (an ask mirrors it), else ``price``, else the bound."""
    ticks, bps, current = aux & 0xFFFF_FFFF, (aux >> 32) & 0xFFFF, aux >> 48
    tick = int(info.tick)
    if bid:
        highest = min(PRICE_SCALE - tick, int(info.max_price) or PRICE_SCALE)
        bound = highest // tick * tick
    else:
        bound = -(-max(tick, int(info.min_price)) // tick) * tick
    current = current or best or bound
    if ticks:
        limit = current + ticks * tick if bid else current - ticks * tick
    elif bps:
        unit = PRICE_SCALE * tick
        if bid:
            limit = current * (PRICE_SCALE + bps) // unit * tick
        else:
            limit = -(-current * (PRICE_SCALE - bps) // unit) * tick
    else:
        limit = price or bound
    return min(limit, bound) if bid else max(limit, bound)


_CENT = 10_000  # micro-dollars


def _cents(numerator: int) -> int:
    """A PQ fee numerator (over 10**8 micro-dollars) in cents, rounded half to even."""
    cents, rest = divmod(numerator, 10**8 * _CENT)
    if 2 * rest > 10**8 * _CENT or (2 * rest == 10**8 * _CENT and cents % 2):
        cents += 1
    return cents


def _fee(bps: int, base: int, price: int, token: int, qty: int) -> int:
    """The core's taker fee (docs/matchcore.md §8), rounded up to the micro-dollar; on
    PQ_CENTS the exact numerator, which simulate() rounds once: the preview shows the cap of
    the order's charges, round(sum of exact fees), which the fills reach unless their own
    roundings are lower (the book's levels do not say how they split into fills)."""
    if base == FeeBase.PQ_CENTS:
        return bps * price * (PRICE_SCALE - price) * qty
    if base == 0:  # NOTIONAL
        numerator, denominator = bps * token * qty, 10_000
    elif base == 1:  # MIN
        numerator, denominator = bps * min(price, PRICE_SCALE - price) * qty, 10_000
    else:  # PQ
        numerator, denominator = bps * price * (PRICE_SCALE - price) * qty, 10**8
    return -(-numerator // denominator)
