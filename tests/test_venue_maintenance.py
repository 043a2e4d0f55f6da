"""Maintenance as the venue does it (spec §5.4), driven by ``pyexchange maintenance`` and seen
through the SDK: open orders canceled with unsolicited CANCELED executions, 503 on REST and
on WebSocket upgrades, then markets from SUSPENDED to OPEN with empty books."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from polymarket_us import InternalServerError
from polymarket_us.auth import create_auth_headers
from venue_support import VenueServer

SLUG = "rain-in-paris-tomorrow"


def usd(value: str) -> dict[str, str]:
    return {"value": value, "currency": "USD"}


def test_maintenance_cancels_refuses_then_reopens_empty(tmp_path: Path) -> None:
    with VenueServer(tmp_path / "data") as server:
        alice = server.client("pm-trader-1", max_retries=0)
        orders = [
            alice.orders.create(
                {"marketSlug": slug, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_LIMIT",
                 "price": usd("0.30"), "quantity": 2}
            )["id"]
            for slug in (SLUG, "btc-above-100k-this-month")
        ]  # fmt: skip
        updates: list[dict[str, Any]] = []
        closed: list[Any] = []
        states: list[str] = []

        async def during() -> None:
            client = server.async_client("pm-trader-1")
            socket = client.ws.private()
            socket.on("order_update", updates.append)
            socket.on("close", lambda: closed.append(True))
            await socket.connect()
            await socket.subscribe_orders("ord")
            markets = client.ws.markets()
            markets.on("market_data", lambda f: states.append(f["marketData"]["state"]))
            await markets.connect()
            await markets.subscribe_market_data("md", [SLUG])
            await asyncio.sleep(0.2)
            switched = await asyncio.to_thread(
                server.cli, "maintenance", "on", "--data-dir", str(server.data_dir)
            )
            assert switched.returncode == 0 and switched.stdout.strip() == "maintenance on", (
                switched.stderr
            )
            deadline = time.monotonic() + 10
            while not closed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await client.close()

        asyncio.run(during())
        canceled = [u["orderSubscriptionUpdate"]["execution"] for u in updates]
        assert {e["order"]["id"] for e in canceled} == set(orders)
        assert all(e["type"] == "EXECUTION_TYPE_CANCELED" for e in canceled)
        assert {e["unsolicitedCancelReason"] for e in canceled} == {
            "UNSOLICITED_CXL_REASON_EXCHANGE_OPTION"
        }
        assert closed, "the private socket was not closed at maintenance"
        assert states[0] == "MARKET_STATE_OPEN" and "MARKET_STATE_SUSPENDED" in states
        with pytest.raises(InternalServerError) as refused:
            alice.orders.list()
        assert refused.value.status_code == 503
        with pytest.raises(InternalServerError):
            server.client(None, max_retries=0).markets.list()

        async def upgrade() -> None:
            key = server.keys["pm-trader-1"]
            url = server.url.replace("http://", "ws://") + "/v1/ws/markets"
            headers = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/markets")
            with pytest.raises(websockets.InvalidStatus) as caught:
                await websockets.connect(url, additional_headers=headers)
            assert caught.value.response.status_code == 503

        asyncio.run(upgrade())
        status = server.cli("maintenance", "status", "--data-dir", str(server.data_dir))
        assert status.stdout.strip() == "maintenance on"
        ended = server.cli("maintenance", "off", "--data-dir", str(server.data_dir))
        assert ended.returncode == 0 and ended.stdout.strip() == "maintenance off"
        book = alice.markets.book(SLUG)["marketData"]
        assert book["state"] == "MARKET_STATE_OPEN" and book["bids"] == book["offers"] == []
        assert alice.orders.list()["orders"] == []
        assert alice.orders.retrieve(orders[0])["order"]["state"] == "ORDER_STATE_CANCELED"
        # trading again
        again = alice.orders.create(
            {"marketSlug": SLUG, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_LIMIT",
             "price": usd("0.31"), "quantity": 1}
        )  # fmt: skip
        assert alice.orders.retrieve(again["id"])["order"]["state"] == "ORDER_STATE_NEW"
        # a key that is not an admin key cannot switch it
        refused_cli = server.cli(
            "maintenance", "on", "--data-dir", str(server.data_dir), "--key", "trader-1"
        )
        assert refused_cli.returncode == 2  # no admin key of that name
