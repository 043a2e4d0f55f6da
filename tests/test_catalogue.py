"""The market catalogue: slugs, events, series kept with the markets, persisted and restored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from venue_support import VenueServer

from pyexchange.service.catalogue import (
    Catalogue,
    CatalogueError,
    EventEntry,
    MarketEntry,
    SeriesEntry,
)


def test_entries_round_trip_through_the_file(tmp_path: Path) -> None:
    catalogue = Catalogue.open(tmp_path)
    catalogue.add_series(SeriesEntry(1, "elections", "Elections"))
    catalogue.add_event(EventEntry(7, "mayor-2027", "Mayor 2027", series_slug="elections"))
    catalogue.add_market(MarketEntry(5, "mayor-alice", "Will Alice win?", event_slug="mayor-2027"))
    catalogue.save()
    again = Catalogue.open(tmp_path)
    assert again.to_json() == catalogue.to_json()
    assert again.by_slug("mayor-alice") == 5 and again.slug(5) == "mayor-alice"
    assert [m.slug for m in again.event_markets("mayor-2027")] == ["mayor-alice"]
    # an unnamed market is market-<id>; a named one is not reachable under it
    assert again.slug(9) == "market-9" and again.by_slug("market-9") == 9
    assert again.by_slug("market-5") is None and again.by_slug("market-09") is None


@pytest.mark.parametrize(
    "slug", ["", "has space", "slash/inside", "dots.in", "é", "x" * 129, "market-3"]
)
def test_bad_or_taken_slugs_are_refused(slug: str) -> None:
    catalogue = Catalogue()
    with pytest.raises(CatalogueError):
        catalogue.add_market(MarketEntry(1, slug))


def test_conflicts_are_refused_and_merge_keeps_what_is_there() -> None:
    catalogue = Catalogue()
    catalogue.add_market(MarketEntry(1, "a"))
    with pytest.raises(CatalogueError):
        catalogue.add_market(MarketEntry(2, "a"))  # slug taken
    with pytest.raises(CatalogueError):
        catalogue.add_market(MarketEntry(1, "b"))  # id taken
    with pytest.raises(CatalogueError):
        catalogue.add_market(MarketEntry(3, "c", event_slug="no-such-event"))
    other = Catalogue.from_json(
        {"markets": [{"market": 1, "slug": "a"}, {"market": 2, "slug": "b"}]}
    )
    assert [m.slug for m in catalogue.merge(other)] == ["b"]
    with pytest.raises(CatalogueError):
        catalogue.merge(Catalogue.from_json({"markets": [{"market": 1, "slug": "z"}]}))
    with pytest.raises(CatalogueError):
        Catalogue.from_json({"markets": [{"market": 1, "slug": "a", "colour": "red"}]})


def test_a_catalogue_file_creates_its_markets_once(tmp_path: Path) -> None:
    """Markets with rules are created (and opened) at start, once; slugs survive a kill -9."""
    spec = {
        "series": [{"id": 4, "slug": "weather", "title": "Weather"}],
        "events": [{"id": 9, "slug": "rome-weather", "title": "Rome", "series_slug": "weather"}],
        "markets": [
            {
                "market": 10,
                "slug": "rain-in-rome",
                "title": "Will it rain in Rome?",
                "event_slug": "rome-weather",
                "create": {
                    "tick": "0.01",
                    "taker_fee_bps": 695,
                    "maker_fee_bps": -125,
                    "fee_base": "PQ",
                    "open": True,
                },
            },
            {"market": 11, "slug": "snow-in-rome", "create": {"open": False}},
        ],
    }
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(spec))
    data = tmp_path / "data"
    server = VenueServer(data, catalogue_file=str(path)).start()
    try:
        client = server.client(None)
        rome = client.markets.retrieve_by_slug("rain-in-rome")["market"]
        assert rome["id"] == "10" and rome["active"] is True
        assert rome["feeCoefficient"] == 0.0695 and rome["makerFeeCoefficient"] == -0.0125
        assert client.markets.retrieve(11)["market"]["status"] == "MARKET_STATUS_UNSPECIFIED"
        assert client.events.retrieve(9)["event"]["series"]["slug"] == "weather"
        server.kill()
        server.start()  # the same file again: nothing created twice, nothing lost
        client = server.client(None)
        slugs = [m["slug"] for m in client.markets.list()["markets"]]
        assert slugs.count("rain-in-rome") == 1 and "snow-in-rome" in slugs
        assert "rain-in-paris-tomorrow" in slugs  # the demo's, kept in DATA_DIR/catalogue.json
    finally:
        server.stop()
    assert (data / "catalogue.json").exists()
