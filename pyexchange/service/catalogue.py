"""The market catalogue: what a market is called and what it is about, beside the engine's numbers.

The engine knows a market by a number and its rules (tick, sizes, fees, state).
A venue's clients know it by its **slug** (``will-it-rain-in-paris``: the
trading identifier of the Polymarket US API, in every order and stream), its
title and question, the **event** it belongs to (a game, an election: several
markets), the event's **series**, and display data (sports, teams, tags). The
catalogue keeps that, one entry per market, with the events, series, sports and
teams, and nothing the engine decides: state, tick and fees are read from the
engine when they are shown.

Where it comes from: a catalogue file (``pyexchange serve --catalogue FILE``,
JSON as ``Catalogue.to_json`` writes it), the admin API, and on a first demo
start the demo markets. A market entry may carry the rules to create it with
(``create``: tick, minimum size, lot, fees, price bounds (the venue's 0.01 .. 0.99
unless given), and whether to open it); the server creates every catalogued market
the engine does not have yet.

Persistence: ``DATA_DIR/catalogue.json``, written atomically (a temporary file,
fsync, rename, fsync of the directory) **before** the engine is asked to create
the market, so after a crash either both exist, or the entry exists and the
server creates the market at its next start: a market is never left without
its slug. A market the catalogue does not know (created over gRPC) is shown as
``market-<id>``.

Slugs and event slugs are URL path segments that the venue's SDK signs
unencoded: they are limited to ``[A-Za-z0-9_-]`` (1 to 128 characters), so the
raw and the decoded request path are the same string.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

SLUG = re.compile(r"[A-Za-z0-9_-]{1,128}")
DEFAULT_PREFIX = "market-"
FILENAME = "catalogue.json"


class CatalogueError(ValueError):
    """A catalogue entry that cannot be added (bad slug, duplicate, unknown event...)."""


def check_slug(slug: object, what: str = "slug") -> str:
    if not isinstance(slug, str) or not SLUG.fullmatch(slug):
        raise CatalogueError(f"{what} {str(slug)[:40]!r} must be 1-128 of A-Z a-z 0-9 _ -")
    return slug


@dataclass
class MarketRules:
    """How to create a market the engine does not have yet (decimal strings, as the API)."""

    tick: str = "0.01"
    min_size: str = "1"  # contracts
    lot: str = "0.01"  # contracts: the quantity step
    taker_fee_bps: int = 0
    maker_fee_bps: int = 0
    fee_base: str = "NOTIONAL"  # NOTIONAL | MIN | PQ | PQ_CENTS (docs/matchcore.md §8)
    open: bool = True  # open it once created (else it stays PRE_OPEN)
    # price bounds: the venue's absolute 0.01 .. 0.99 on every tick (spec §3.6, §6 #15: a
    # $0.005 market refuses 0.005 and 0.995); "" for none (the core's tick .. 1 - tick)
    min_price: str = "0.01"
    max_price: str = "0.99"


@dataclass
class MarketEntry:
    market: int  # the engine's market id
    slug: str
    title: str = ""
    question: str = ""
    outcome: str = "Yes"
    description: str = ""
    event_slug: str = ""
    category: str = ""
    tags: list[str] = field(default_factory=list)
    create: MarketRules | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.market, int) or not 0 <= self.market < 2**32:
            raise CatalogueError(f"market id {self.market!r} must be an integer 0..2^32-1")
        check_slug(self.slug)
        if self.event_slug:
            check_slug(self.event_slug, "event slug")
        if isinstance(self.create, dict):
            self.create = _build(MarketRules, self.create, "market rules")


@dataclass
class EventEntry:
    id: int
    slug: str
    title: str = ""
    description: str = ""
    category: str = ""
    series_slug: str = ""
    start_time: str = ""  # RFC 3339
    end_time: str = ""
    featured: bool = False
    tags: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_slug(self.slug, "event slug")
        if self.series_slug:
            check_slug(self.series_slug, "series slug")


@dataclass
class SeriesEntry:
    id: int
    slug: str
    title: str = ""
    description: str = ""
    recurrence: str = ""

    def __post_init__(self) -> None:
        check_slug(self.slug, "series slug")


def _build(cls: type, data: Any, what: str) -> Any:
    if not isinstance(data, dict):
        raise CatalogueError(f"a {what} entry must be an object")
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise CatalogueError(f"unknown {what} fields: {sorted(unknown)}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise CatalogueError(f"{what}: {exc}") from None


class Catalogue:
    """Markets by id and slug, events, series, sports and teams; saved to one JSON file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.markets: dict[int, MarketEntry] = {}
        self._by_slug: dict[str, MarketEntry] = {}
        self.events: dict[str, EventEntry] = {}
        self.series: dict[str, SeriesEntry] = {}
        # display only, passed through as the venue shapes them (types/sports.py of the SDK)
        self.sports: list[dict[str, Any]] = []
        self.teams: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------ lookups

    def market(self, market: int) -> MarketEntry:
        """The entry of ``market``; an unnamed market gets ``market-<id>``."""
        entry = self.markets.get(market)
        return entry if entry is not None else MarketEntry(market, f"{DEFAULT_PREFIX}{market}")

    def by_slug(self, slug: str) -> int | None:
        """The market id a slug names (``market-<id>`` for an unnamed one), or None."""
        entry = self._by_slug.get(slug)
        if entry is not None:
            return entry.market
        if slug.startswith(DEFAULT_PREFIX) and slug[len(DEFAULT_PREFIX) :].isdigit():
            number = slug[len(DEFAULT_PREFIX) :]
            if len(number) < 11 and str(int(number)) == number:
                market = int(number)
                if market not in self.markets:
                    return market
        return None

    def slug(self, market: int) -> str:
        return self.market(market).slug

    def event_markets(self, slug: str) -> list[MarketEntry]:
        return [m for m in self.markets.values() if m.event_slug == slug]

    def event_by_id(self, event_id: int) -> EventEntry | None:
        return next((e for e in self.events.values() if e.id == event_id), None)

    def series_by_id(self, series_id: int) -> SeriesEntry | None:
        return next((s for s in self.series.values() if s.id == series_id), None)

    # ------------------------------------------------------------ changes

    def add_market(self, entry: MarketEntry) -> None:
        if entry.market in self.markets:
            raise CatalogueError(f"market {entry.market} is already in the catalogue")
        named = self.by_slug(entry.slug)
        if entry.slug in self._by_slug or (named is not None and named != entry.market):
            raise CatalogueError(f"slug {entry.slug!r} is already taken")
        if entry.event_slug and entry.event_slug not in self.events:
            raise CatalogueError(f"market {entry.slug!r}: no event {entry.event_slug!r}")
        self.markets[entry.market] = entry
        self._by_slug[entry.slug] = entry

    def add_event(self, entry: EventEntry) -> None:
        if entry.slug in self.events or self.event_by_id(entry.id) is not None:
            raise CatalogueError(f"event {entry.slug!r} (id {entry.id}) is already there")
        if entry.series_slug and entry.series_slug not in self.series:
            raise CatalogueError(f"event {entry.slug!r}: no series {entry.series_slug!r}")
        self.events[entry.slug] = entry

    def add_series(self, entry: SeriesEntry) -> None:
        if entry.slug in self.series or self.series_by_id(entry.id) is not None:
            raise CatalogueError(f"series {entry.slug!r} (id {entry.id}) is already there")
        self.series[entry.slug] = entry

    def merge(self, other: Catalogue) -> list[MarketEntry]:
        """Add what ``other`` has and this lacks (same slug and id: kept as it is); the
        market entries added. A conflicting entry (a slug or id taken by another) raises."""
        for series in other.series.values():
            mine = self.series.get(series.slug)
            if mine is None:
                self.add_series(series)
            elif mine.id != series.id:
                raise CatalogueError(f"series {series.slug!r} has id {mine.id} here")
        for event in other.events.values():
            mine_event = self.events.get(event.slug)
            if mine_event is None:
                self.add_event(event)
            elif mine_event.id != event.id:
                raise CatalogueError(f"event {event.slug!r} has id {mine_event.id} here")
        added = []
        for entry in other.markets.values():
            mine_market = self.markets.get(entry.market)
            if mine_market is None:
                self.add_market(entry)
                added.append(entry)
            elif mine_market.slug != entry.slug:
                raise CatalogueError(
                    f"market {entry.market} is {mine_market.slug!r} here, not {entry.slug!r}"
                )
        if other.sports and not self.sports:
            self.sports = list(other.sports)
        for team_id, team in other.teams.items():
            self.teams.setdefault(team_id, team)
        return added

    # ---------------------------------------------------------- the file

    def to_json(self) -> dict[str, Any]:
        def market(entry: MarketEntry) -> dict[str, Any]:
            data = asdict(entry)
            if entry.create is None:
                del data["create"]
            return data

        return {
            "series": [asdict(s) for s in self.series.values()],
            "events": [asdict(e) for e in self.events.values()],
            "markets": [market(m) for m in sorted(self.markets.values(), key=lambda m: m.market)],
            "sports": self.sports,
            "teams": self.teams,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path | None = None) -> Catalogue:
        if not isinstance(data, dict):
            raise CatalogueError("a catalogue is a JSON object")
        unknown = set(data) - {"series", "events", "markets", "sports", "teams"}
        if unknown:
            raise CatalogueError(f"unknown catalogue sections: {sorted(unknown)}")
        catalogue = cls(path)
        for entry in _list(data, "series"):
            catalogue.add_series(_build(SeriesEntry, entry, "series"))
        for entry in _list(data, "events"):
            catalogue.add_event(_build(EventEntry, entry, "event"))
        for entry in _list(data, "markets"):
            catalogue.add_market(_build(MarketEntry, entry, "market"))
        sports = data.get("sports", [])
        teams = data.get("teams", {})
        if not isinstance(sports, list) or not isinstance(teams, dict):
            raise CatalogueError("sports is a list and teams an object")
        catalogue.sports = sports
        catalogue.teams = {str(k): v for k, v in teams.items()}
        return catalogue

    @classmethod
    def load(cls, path: Path | str) -> Catalogue:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise CatalogueError(f"{path}: not JSON: {exc}") from None
        return cls.from_json(data, path)

    @classmethod
    def open(cls, data_dir: Path | str) -> Catalogue:
        """The catalogue of a data directory (empty if it has none yet)."""
        path = Path(data_dir) / FILENAME
        return cls.load(path) if path.exists() else cls(path)

    def save(self) -> None:
        """Write atomically and durably (call before creating the markets it names)."""
        if self.path is None:
            raise CatalogueError("this catalogue has no file")
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".json.tmp")
        with open(temporary, "w") as f:
            json.dump(self.to_json(), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, self.path)
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _list(data: dict[str, Any], name: str) -> Iterable[Any]:
    value = data.get(name, [])
    if not isinstance(value, list):
        raise CatalogueError(f"{name} must be a list")
    return value
