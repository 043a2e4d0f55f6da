"""Demo bots: market makers and takers that keep the demo markets trading.

``pyexchange serve --demo`` (or ``pyexchange demo``) runs ``run_bots(server)``
as a task on the server's own asyncio loop, and cancels it at shutdown before
the server stops.

**Why in the server's process.** One command starts a live exchange with
nothing else to launch or find (the bots take the port and the demo keys from
the server object), and the bots' lifetime is the server's: they start once it
listens and are cancelled before it stops, so their last act (cancelling their
resting orders) still reaches the engine. They are nonetheless ordinary
clients: each has its own ``ExchangeClient`` channel to the server's port, every
call is signed with a demo trader key, rate-limited and journaled like any
other, so what a newcomer watches is the real path. The price is that they share
the loop (and the GIL) with the gateways; at a few dozen requests a second that
is noise (load is ``bench/``'s job, not theirs).

**Who trades.** The lowest demo trader key (``trader-1``, account 1) is left to
the person at the keyboard. Of the others, the last is a taker and the rest are
market makers: with the default four accounts, accounts 2 and 3 make every
open market and account 4 takes (two taker tasks).

**Makers.** Each market has a fair YES price that moves slowly (a mean-reverting
random walk in log-odds with rare jumps). About every 0.6 s a maker reads its
account (``GetAccount``) and keeps ``levels`` quotes a side around its own view
of the fair value (the fair plus a small private offset, skewed against its
inventory). A quote whose price should move is moved with ``ReplaceOrder``; a
quote that was filled or canceled is placed again. A bid is a ``BUY_YES`` or,
when the maker holds free NO shares, a ``SELL_NO``; an ask is a ``SELL_YES`` or,
without free YES shares, a ``BUY_NO`` (buying NO at 1 - p is asking p for YES):
all four intents rest on the book, and trades show all three match types. A
quote the maker cannot afford (free cash, free shares) is not sent.

**Takers.** Every 0.5-1.5 s a taker picks a market, reads its best bid and
offer (``GetBook``) and trades against them: IOC or FOK limits at the touch,
market orders with a worst-price bound, and market buys by cash (``BUY_YES``
or ``BUY_NO`` for a few dollars), on a side its balances allow.

**Rejects and errors.** A reject (a quote raced by a fill, a FOK that cannot
fill, a balance the bot misjudged) is normal: logged at DEBUG, counted, and the
bot goes on. A gRPC error (busy, shutting down) is logged at DEBUG and the bot
backs off. One INFO line a minute sums up what the bots did; nothing else is
logged above DEBUG. Cancelled, each bot cancels its resting orders (best
effort, at most 2 s) and closes its channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from matchcore import PRICE_SCALE

from ..api.grpc import exchange_pb2 as pb
from ..api.grpc.client import ExchangeClient
from ..service.auth import HMAC, TRADE, ApiKey
from ..units import QUANTITY_SCALE, format_cash, format_price, format_quantity
from .console import local_target

if TYPE_CHECKING:
    from .server import ExchangeServer

log = logging.getLogger(__name__)

T = TypeVar("T")

OPEN = 2  # MarketState.OPEN
CENT = PRICE_SCALE // 100  # $0.01 in price units
RETRY_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
)


# ------------------------------------------------------------------ plan


@dataclass(frozen=True)
class MarketInfo:
    """What a bot needs of a market: its grid, in engine units."""

    market: int
    tick: int  # price units ($0.0001)
    lot: int  # quantity units (0.01 share)
    min_size: int


@dataclass
class Plan:
    """Who trades what: the makers' and takers' keys, the markets, the key left to a human."""

    target: str
    makers: list[ApiKey]
    takers: list[ApiKey]
    markets: list[MarketInfo]
    free: ApiKey | None = None

    def describe(self) -> str:
        def accounts(keys: list[ApiKey]) -> str:
            return ", ".join(str(_account(k)) for k in keys)

        markets = ", ".join(str(m.market) for m in self.markets)
        text = (
            f"market makers on account(s) {accounts(self.makers)} and takers on account(s) "
            f"{accounts(self.takers)} trade market(s) {markets}"
        )
        if self.free is not None:
            text += f"; account {_account(self.free)} (--key {self.free.name}) is yours"
        return text


def _account(key: ApiKey) -> int:
    return min(key.accounts)


def plan(server: ExchangeServer, max_markets: int = 8) -> Plan | None:
    """The bots for this server: None when it has no open market or no trader key."""
    if server.port is None:
        return None
    traders = sorted(
        (k for k in server.keys if k.scheme == HMAC and k.may(TRADE) and len(k.accounts) == 1),
        key=lambda k: (_account(k), k.name),
    )
    markets = [
        MarketInfo(s.market, s.tick, s.lot, s.min_size)
        for s in sorted(server.markets.specs.values())
        if s.state == OPEN
    ][:max_markets]
    if not traders or not markets:
        return None
    free = traders[0] if len(traders) >= 3 else None
    bots = traders[1:] if free is not None else traders
    makers, takers = (bots[:-1], bots[-1:]) if len(bots) >= 2 else (bots, bots)
    target = local_target(server.config.host, server.port)
    return Plan(target, makers, takers, markets, free)


# --------------------------------------------------------------- prices


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class FairValue:
    """A fair YES probability that wanders slowly: mean-reverting in log-odds, rare jumps."""

    def __init__(
        self,
        rng: random.Random,
        start: float,
        *,
        volatility: float = 0.02,  # log-odds per sqrt(second): about a cent in 10 s at 0.5
        reversion: float = 0.02,  # per second, towards the start
        jumps_per_second: float = 0.005,
    ) -> None:
        self.rng = rng
        self.anchor = _logit(start)
        self.x = self.anchor
        self.volatility = volatility
        self.reversion = reversion
        self.jumps_per_second = jumps_per_second

    def step(self, seconds: float) -> None:
        rng = self.rng
        self.x += self.reversion * (self.anchor - self.x) * seconds
        self.x += self.volatility * math.sqrt(seconds) * rng.gauss(0.0, 1.0)
        if rng.random() < self.jumps_per_second * seconds:
            self.x += rng.choice((-1.0, 1.0)) * rng.uniform(0.1, 0.3)
        self.x = min(max(self.x, _logit(0.04)), _logit(0.96))

    @property
    def price(self) -> float:
        """The fair YES price, in price units (a float: it is never sent as it is)."""
        return PRICE_SCALE / (1.0 + math.exp(-self.x))


def _on_grid(price: float, tick: int, up: bool) -> int:
    ticks = math.ceil(price / tick) if up else math.floor(price / tick)
    return min(max(ticks * tick, tick), PRICE_SCALE - tick)


def _units(text: str, scale: int) -> int:
    return int(Decimal(text or "0") * scale) if text else 0


def _size(market: MarketInfo, shares: float) -> int:
    """``shares`` in quantity units: a whole number of lots, at least the minimum size."""
    lots = max(1, math.ceil(shares * QUANTITY_SCALE / market.lot))
    units = lots * market.lot
    while units < market.min_size:
        units += market.lot
    return units


def _cost(price: int, quantity: int) -> int:
    """Cash a buy of ``quantity`` at ``price`` reserves, in micro-dollars (fees: 2% margin)."""
    return price * quantity * 102 // 100  # price units x quantity units = micro-dollars


@dataclass
class Wallet:
    """Free cash and shares of an account, as last read, less what this cycle committed."""

    cash: int = 0  # micro-dollars
    yes: dict[int, int] = field(default_factory=dict)  # market -> free quantity units
    no: dict[int, int] = field(default_factory=dict)
    net: dict[int, int] = field(default_factory=dict)  # market -> YES - NO, all of them

    @classmethod
    def of(cls, state: pb.AccountState) -> Wallet:
        wallet = cls(cash=_units(state.cash, 1_000_000))
        for p in state.positions:
            wallet.yes[p.market] = _units(p.yes, QUANTITY_SCALE)
            wallet.no[p.market] = _units(p.no, QUANTITY_SCALE)
            wallet.net[p.market] = (
                wallet.yes[p.market]
                + _units(p.yes_reserved, QUANTITY_SCALE)
                - wallet.no[p.market]
                - _units(p.no_reserved, QUANTITY_SCALE)
            )
        return wallet

    def intent(
        self, rng: random.Random, market: int, bid: bool, price: int, quantity: int
    ) -> str | None:
        """A YES bid (BUY_YES or SELL_NO) or ask (SELL_YES or BUY_NO) the account can afford,
        committing what it needs; None if it can afford neither."""
        shares = self.no if bid else self.yes
        sell, buy = ("SELL_NO", "BUY_YES") if bid else ("SELL_YES", "BUY_NO")
        cost = _cost(price if bid else PRICE_SCALE - price, quantity)
        held = shares.get(market, 0)
        can_sell = held >= quantity
        can_buy = self.cash >= cost
        # Even odds at the demo's 1,000 shares; more shares, more selling (and fewer pairs
        # minted), so a bot's inventory and cash stay near where they started.
        sell_odds = min(0.9, max(0.1, held / (2_000 * QUANTITY_SCALE)))
        if can_sell and (not can_buy or rng.random() < sell_odds):
            shares[market] -= quantity
            return sell
        if can_buy:
            self.cash -= cost
            return buy
        return None


# ----------------------------------------------------------------- stats


@dataclass
class Stats:
    placed: int = 0
    replaced: int = 0
    canceled: int = 0
    trades: int = 0  # fills of the bots' own orders as takers
    rejects: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = (
            f"{self.placed} orders, {self.replaced} replaces, {self.canceled} cancels, "
            f"{self.trades} fills as taker"
        )
        for what, counts in (("rejects", self.rejects), ("refused", self.refused)):
            if counts:
                listed = ", ".join(f"{reason} {n}" for reason, n in counts.most_common(4))
                text += f", {sum(counts.values())} {what} ({listed})"
        return text


# ------------------------------------------------------------------ bots


class Bots:
    """Every bot of a plan, their clients, fair values and statistics."""

    def __init__(
        self,
        plan: Plan,
        *,
        seed: int | None = None,
        pace: float = 1.0,
        report_every: float = 60.0,
        levels: int = 3,
    ) -> None:
        self.plan = plan
        self.rng = random.Random(seed)
        self.pace = pace  # > 1: faster
        self.report_every = report_every
        self.levels = levels
        self.stats = Stats()
        self.fair = {
            m.market: FairValue(random.Random(self.rng.random()), self.rng.uniform(0.25, 0.75))
            for m in plan.markets
        }
        self.clients: dict[str, ExchangeClient] = {}

    def client(self, key: ApiKey) -> ExchangeClient:
        if key.key_id not in self.clients:
            self.clients[key.key_id] = ExchangeClient(
                self.plan.target, key.key_id, key.secret, timeout=5.0
            )
        return self.clients[key.key_id]

    def pause(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds * self.rng.uniform(0.6, 1.4) / self.pace)

    async def call(self, what: str, call: Awaitable[T]) -> T | None:
        """Await one request: a reject or a gRPC error is logged at DEBUG and counted."""
        try:
            reply = await call
        except grpc.aio.AioRpcError as exc:
            code = exc.code()
            self.stats.refused[code.name] += 1
            log.debug("demo %s refused: %s: %s", what, code.name, exc.details())
            if code in RETRY_CODES:
                await self.pause(1.0)
            return None
        if isinstance(reply, pb.OrderReply) and reply.status == pb.REJECTED:
            self.stats.rejects[reply.reject_reason] += 1
            log.debug("demo %s rejected: %s: %s", what, reply.reject_reason, reply.message)
        elif isinstance(reply, pb.OrderReply):
            self.stats.trades += len(reply.fills)
        return reply

    async def run(self) -> None:
        """Run every bot until cancelled; then cancel their orders and close their channels."""
        plan = self.plan
        bots: list[Any] = [Maker(self, key, i) for i, key in enumerate(plan.makers)]
        bots += [Taker(self, key, style) for key in plan.takers for style in ("limit", "market")]
        tasks = [asyncio.create_task(self._forever(bot), name=repr(bot)) for bot in bots]
        tasks.append(asyncio.create_task(self._move_fair_values(), name="demo fair values"))
        tasks.append(asyncio.create_task(self._report(), name="demo report"))
        log.info("demo bots started: %s", plan.describe())
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._clean_up()

    async def _forever(self, bot: Any) -> None:
        """Run one bot; an unexpected error is logged (once a minute at most) and it restarts."""
        last_warning = -math.inf
        loop = asyncio.get_running_loop()
        while True:
            try:
                await bot.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                if loop.time() - last_warning > 60.0:
                    last_warning = loop.time()
                    log.warning("demo bot %r failed; restarting it", bot, exc_info=True)
                await self.pause(2.0)

    async def _move_fair_values(self) -> None:
        step = 0.25
        while True:
            await asyncio.sleep(step / self.pace)
            for fair in self.fair.values():
                fair.step(step)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(self.report_every)
            stats, self.stats = self.stats, Stats()
            log.info("demo bots, last %.0f s: %s", self.report_every, stats.summary())

    async def _clean_up(self) -> None:
        """Cancel every bot's resting orders (best effort, 2 s) and close the channels."""
        keys = {k.key_id: k for k in (*self.plan.makers, *self.plan.takers)}

        async def cancel(key: ApiKey) -> None:
            with contextlib.suppress(Exception):
                await self.client(key).cancel_all(_account(key), timeout=2.0)

        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*(cancel(k) for k in keys.values())), 2.5)
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                await client.close()


@dataclass
class Quote:
    order_id: int
    price: int
    quantity: int


class Maker:
    """Keeps ``levels`` quotes a side in every market around its view of the fair value."""

    def __init__(self, bots: Bots, key: ApiKey, index: int) -> None:
        self.bots = bots
        self.key = key
        self.account = _account(key)
        self.client = bots.client(key)
        self.rng = random.Random(bots.rng.random())
        self.half_spread = CENT * (0.6 + 0.5 * index)  # the first maker quotes tightest
        self.step = CENT * (1 + index % 2)  # between its levels
        self.offset = {m.market: self.rng.uniform(-0.3, 0.3) * CENT for m in bots.plan.markets}
        self.quotes: dict[tuple[int, bool, int], Quote] = {}  # (market, bid, level)
        self.last_fair: dict[int, float] = {}

    def __repr__(self) -> str:
        return f"Maker(account {self.account})"

    async def run(self) -> None:
        bots = self.bots
        self.quotes.clear()
        await bots.call("cancel all", self.client.cancel_all(self.account))  # start clean
        while True:
            await self.cycle()
            await bots.pause(0.6)

    async def cycle(self) -> None:
        bots = self.bots
        state = await bots.call("get account", self.client.get_account(self.account))
        if state is None:
            return
        resting = {o.order_id: o for o in state.orders}
        for slot, quote in list(self.quotes.items()):
            order = resting.get(quote.order_id)
            if order is None:  # filled, or canceled behind our back
                del self.quotes[slot]
            else:
                quote.quantity = _units(order.leaves_quantity, QUANTITY_SCALE)
        mine = {q.order_id for q in self.quotes.values()}
        for order_id in resting.keys() - mine:  # left over (a replace that went wrong...)
            if await bots.call("cancel", self.client.cancel(self.account, order_id)):
                bots.stats.canceled += 1
        wallet = Wallet.of(state)
        for market in bots.plan.markets:
            await self.quote_market(market, wallet)

    def targets(self, market: MarketInfo, wallet: Wallet) -> list[tuple[bool, int, int]]:
        """(bid, level, price) of every quote wanted now."""
        fair = self.bots.fair[market.market].price + self.offset[market.market]
        net_shares = wallet.net.get(market.market, 0) / QUANTITY_SCALE
        fair -= max(-1.0, min(1.0, net_shares / 1000.0)) * CENT  # long YES: quote lower
        best_bid = _on_grid(fair - self.half_spread, market.tick, up=False)
        best_ask = _on_grid(fair + self.half_spread, market.tick, up=True)
        if best_ask <= best_bid:
            best_ask = min(best_bid + market.tick, PRICE_SCALE - market.tick)
        wanted = []
        for level in range(self.bots.levels):
            bid = best_bid - level * self.step
            ask = best_ask + level * self.step
            if bid >= market.tick:
                wanted.append((True, level, bid))
            if ask <= PRICE_SCALE - market.tick and ask > best_bid:
                wanted.append((False, level, ask))
        return wanted

    async def quote_market(self, market: MarketInfo, wallet: Wallet) -> None:
        fair = self.bots.fair[market.market].price
        rising = fair >= self.last_fair.get(market.market, fair)
        self.last_fair[market.market] = fair
        # Move the side the price moves towards first, so no new quote crosses a stale one.
        wanted = sorted(self.targets(market, wallet), key=lambda t: (t[0] == rising, t[1]))
        for bid, level, price in wanted:
            await self.keep(market, (market.market, bid, level), price, wallet)

    async def keep(
        self, market: MarketInfo, slot: tuple[int, bool, int], price: int, wallet: Wallet
    ) -> None:
        bots, rng = self.bots, self.rng
        quote = self.quotes.get(slot)
        if quote is not None:
            refresh = rng.random() < 0.03  # now and then a new size: the book breathes
            # Move a quote when it is a tick off (the touch) or a cent per level (deeper).
            slack = market.tick if slot[2] == 0 else max(market.tick, CENT) * slot[2]
            if abs(quote.price - price) < slack and not refresh:
                return
            if abs(quote.price - price) < slack:
                price = quote.price
            quantity = self.size(market, slot[2]) if refresh else 0
            reply = await bots.call(
                "replace",
                self.client.replace(
                    self.account,
                    quote.order_id,
                    format_price(price) if price != quote.price else None,
                    format_quantity(quantity) if quantity else None,
                ),
            )
            if reply is not None and reply.status == pb.RESTING:
                bots.stats.replaced += 1
                quote.price = price
                quote.quantity = _units(reply.leaves_quantity, QUANTITY_SCALE)
                return
            if reply is not None and reply.status != pb.REJECTED:
                del self.quotes[slot]  # it crossed and filled
                return
            # Rejected (it can no longer afford its intent at the new price...): start over.
            del self.quotes[slot]
            if await bots.call("cancel", self.client.cancel(self.account, quote.order_id)):
                bots.stats.canceled += 1
        quantity = self.size(market, slot[2])
        intent = wallet.intent(rng, market.market, slot[1], price, quantity)
        if intent is None:
            return
        reply = await bots.call(
            f"quote {intent}",
            self.client.place(
                self.account,
                market.market,
                intent,
                format_price(price),
                format_quantity(quantity),
                self_trade_prevention="CANCEL_RESTING",
            ),
        )
        if reply is None or reply.status == pb.REJECTED:
            return
        bots.stats.placed += 1
        if reply.status == pb.RESTING:
            self.quotes[slot] = Quote(
                reply.order_id, price, _units(reply.leaves_quantity, QUANTITY_SCALE)
            )

    def size(self, market: MarketInfo, level: int) -> int:
        shares = self.rng.choice((5, 10, 10, 15, 20, 25)) * (1 + level)
        return _size(market, shares)


class Taker:
    """Trades against the touch: IOC/FOK limits ("limit"), or market orders ("market")."""

    def __init__(self, bots: Bots, key: ApiKey, style: str) -> None:
        self.bots = bots
        self.key = key
        self.style = style
        self.account = _account(key)
        self.client = bots.client(key)
        self.rng = random.Random(bots.rng.random())
        self.wallet: Wallet | None = None
        self.actions = 0

    def __repr__(self) -> str:
        return f"Taker(account {self.account}, {self.style})"

    async def run(self) -> None:
        while True:
            await self.bots.pause(1.0)
            await self.act()

    async def act(self) -> None:
        bots, rng = self.bots, self.rng
        market = rng.choice(bots.plan.markets)
        if self.wallet is None or self.actions % 5 == 0:
            state = await bots.call("get account", self.client.get_account(self.account))
            if state is None:
                return
            self.wallet = Wallet.of(state)
        self.actions += 1
        book = await bots.call("get book", self.client.book(market.market, 1))
        if book is None or book.snapshot.state != OPEN:
            return
        snap = book.snapshot
        # Lean against the inventory: long YES, sell it more often.
        net = self.wallet.net.get(market.market, 0) / QUANTITY_SCALE
        buy = rng.random() < 0.5 - max(-0.3, min(0.3, net / 2000.0))
        side = snap.asks if buy else snap.bids
        if not side:
            return
        price = _units(side[0].price, PRICE_SCALE)
        wallet, tick = self.wallet, market.tick
        if self.style == "limit":
            quantity = _size(market, rng.choice((1, 2, 5, 10, 20, 40)))
            if rng.random() < 0.3:  # one tick through the touch
                price = min(max(price + (tick if buy else -tick), tick), PRICE_SCALE - tick)
            intent = wallet.intent(rng, market.market, buy, price, quantity)
            tif = "FOK" if rng.random() < 0.2 else "IOC"
            if intent is None:
                return
            reply = await bots.call(
                f"{tif} {intent}",
                self.client.place(
                    self.account,
                    market.market,
                    intent,
                    format_price(price),
                    format_quantity(quantity),
                    time_in_force=tif,
                ),
            )
            self.count(reply)
            return
        # Market orders: the bound is two cents through the touch.
        bound = price + 2 * CENT if buy else price - 2 * CENT
        bound = _on_grid(bound, tick, up=buy)
        if rng.random() < 0.5:  # buy by cash: BUY_YES lifts asks, BUY_NO hits bids
            cash = rng.choice((2, 5, 10, 20, 25)) * 1_000_000 + rng.choice((0, 500_000))
            if wallet.cash < cash * 2:
                return
            wallet.cash -= cash
            intent = "BUY_YES" if buy else "BUY_NO"
            reply = await bots.call(
                f"market {intent} by cash",
                self.client.place(
                    self.account,
                    market.market,
                    intent,
                    format_price(bound),
                    cash=format_cash(cash),
                    market_order=True,
                ),
            )
        else:
            quantity = _size(market, rng.choice((1, 3, 5, 10, 25)))
            intent = wallet.intent(rng, market.market, buy, bound, quantity)
            if intent is None:
                return
            reply = await bots.call(
                f"market {intent}",
                self.client.place(
                    self.account,
                    market.market,
                    intent,
                    format_price(bound),
                    format_quantity(quantity),
                    market_order=True,
                ),
            )
        self.count(reply)

    def count(self, reply: pb.OrderReply | None) -> None:
        if reply is not None and reply.status != pb.REJECTED:
            self.bots.stats.placed += 1


# ------------------------------------------------------------ entry point


async def run_bots(server: ExchangeServer, *, seed: int | None = None, pace: float = 1.0) -> None:
    """Run the demo bots against a started ``server`` until cancelled (see the module docstring).

    ``pace`` > 1 makes every bot act that many times faster. Returns at once (with a warning)
    when the server has no open market or no trader key (``--no-demo-setup``).
    """
    chosen = plan(server)
    if chosen is None:
        log.warning("demo bots not started: the exchange has no open market or no trader key")
        return
    await Bots(chosen, seed=seed, pace=pace).run()
