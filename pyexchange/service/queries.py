"""Reads without a transport: an account (balance, positions, resting orders), a book, markets.

Each read runs between two batches of the engine (``EngineLink.read``), so it
sees every command answered before it and none half applied. The caller's key
must see the account (``Forbidden`` otherwise); an account that does not exist
is ``NotFound``. Values are the core's records (``matchcore.Balance``,
``Position``, ``OrderInfo``, ``MarketInfo``) in units; each API formats them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .auth import ApiKey, check_account
from .errors import Invalid, NotFound
from .link import EngineLink
from .orders import U32, _whole


class AccountState(msgspec.Struct):
    account: int
    balance: Any  # matchcore.Balance (free, reserved), cash units
    positions: list[tuple[int, Any]]  # (market, matchcore.Position) held, by market
    orders: list[Any]  # matchcore.OrderInfo of each resting order


class Book(msgspec.Struct):
    market: int
    bids: list[tuple[int, int, int]]  # (price, quantity, orders), best first
    asks: list[tuple[int, int, int]]


class Queries:
    def __init__(self, link: EngineLink) -> None:
        self.link = link

    async def account(self, key: ApiKey, account: int) -> AccountState:
        check_account(key, account)
        markets = sorted(self.link.markets.specs)

        def read(engine: Any) -> AccountState | None:
            balance = engine.balance(account)
            if balance is None:
                return None
            positions = []
            for market in markets:
                position = engine.position(account, market)
                if any(position):
                    positions.append((market, position))
            return AccountState(account, balance, positions, engine.orders_of(account))

        state = await self.link.read(read)
        if state is None:
            raise NotFound(f"account {account} does not exist", "UNKNOWN_ACCOUNT")
        return state

    async def orders(self, key: ApiKey, account: int) -> list[Any]:
        """The account's resting orders (``OrderInfo``)."""
        check_account(key, account)
        return await self.link.read(lambda engine: engine.orders_of(account))

    async def balance(self, key: ApiKey, account: int) -> Any:
        check_account(key, account)
        balance = await self.link.read(lambda engine: engine.balance(account))
        if balance is None:
            raise NotFound(f"account {account} does not exist", "UNKNOWN_ACCOUNT")
        return balance

    async def book(self, market: int, depth: int = 10) -> Book:
        """Aggregated levels of one market, best first (``NotFound`` for no such market)."""
        _whole(market, "market", U32)
        if type(depth) is not int or not 0 < depth <= 1_000:
            raise Invalid("depth must be 1 to 1000 levels", "INVALID_ARGUMENT")

        def read(engine: Any) -> Book | None:
            if engine.market(market) is None:
                return None
            bids, asks = engine.book(market, depth)
            return Book(market, _levels(bids), _levels(asks))

        book = await self.link.read(read)
        if book is None:
            raise NotFound(f"market {market} does not exist", "UNKNOWN_MARKET")
        return book

    async def markets(self, markets: list[int] | None = None) -> dict[int, Any]:
        """``MarketInfo`` of each market (all of them by default)."""
        wanted = sorted(self.link.markets.specs) if markets is None else list(markets)

        def read(engine: Any) -> dict[int, Any]:
            out = {}
            for market in wanted:
                info = engine.market(market)
                if info is not None:
                    out[market] = info
            return out

        return await self.link.read(read)


def _levels(levels: Any) -> list[tuple[int, int, int]]:
    return [(int(r["price"]), int(r["quantity"]), int(r["count"])) for r in levels]
