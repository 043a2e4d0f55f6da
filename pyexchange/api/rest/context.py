"""What the REST handlers share: the catalogue, the feeds, the service layer's gateway, settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from matchcore import CommandType

from ...service.catalogue import Catalogue
from ...service.errors import ServiceError
from .errors import from_service_error, not_found, unavailable


@dataclass
class Settings:
    book_depth: int = 10  # levels per side in book responses and MARKET_DATA frames
    max_block_s: int = 10  # synchronousExecution: the default and the cap of maxBlockTime


@dataclass
class VenueContext:
    catalogue: Catalogue
    gateway: Any  # the service layer's EngineLink: runs commands and engine reads
    marketdata: Any  # MarketDataPublisher, or None when market data is off
    settings: Settings = field(default_factory=Settings)
    history: Any = None  # OrderHistory (pyexchange.feeds.history), None without the drop copy
    # without the order history: why its routes and private subscriptions are not served
    unserved: str = ""
    maintenance: bool = False  # maintenance is starting or on (maintenance.py)
    # seq ranges of commands by which the exchange canceled orders (maintenance)
    unsolicited: list[list[int]] = field(default_factory=list)

    def unsolicited_cancel(self, execution: Any) -> bool:
        """A cancel the owner did not ask for: a CANCEL_ALL the exchange ran (maintenance)."""
        if execution.command != CommandType.CANCEL_ALL:
            return False
        return any(low <= execution.seq <= high for low, high in self.unsolicited)

    def trade_stats(self, market: int) -> Any:
        return None if self.history is None else self.history.trades.get(market)

    def market_id(self, slug: str) -> int:
        """The engine market a slug names (404 if none)."""
        market = self.catalogue.by_slug(slug) if isinstance(slug, str) else None
        if market is None or self.gateway.markets.get(market) is None:
            raise not_found(f"market {slug[:64]!r} not found")
        return market

    def view(self, market: int) -> Any:
        """The market data view of a market (its book, BBO and state)."""
        if self.marketdata is None or not self.marketdata.loaded:
            raise unavailable("market data is not available")
        view = self.marketdata.markets.get(market)
        if view is None:
            raise not_found(f"market {market} not found")
        return view

    async def market_infos(self, markets: list[int] | None = None) -> dict[int, Any]:
        """``engine.market()`` of each market (all of them by default), read between batches."""
        wanted = sorted(self.gateway.markets.specs) if markets is None else markets

        def read(engine: Any) -> dict[int, Any]:
            out = {}
            for market in wanted:
                info = engine.market(market)
                if info is not None:
                    out[market] = info
            return out

        return await service(self.gateway.read(read))


async def service(call: Any) -> Any:
    """Await a call of the service layer; its refusals become the venue's errors."""
    try:
        return await call
    except ServiceError as exc:
        raise from_service_error(exc) from None
