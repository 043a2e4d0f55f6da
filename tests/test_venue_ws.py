"""Both venue WebSockets with the official SDK's ``ws.markets()`` and ``ws.private()``, unchanged:
book, lite and trade frames; order updates, the order snapshot, positions and balances;
heartbeats, error frames, unsubscribe, replaced subscriptions; auth on the upgrade; a slow
subscriber dropped with an error frame while the others and the engine go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from polymarket_us.auth import create_auth_headers
from venue_support import VenueServer

M = "m1"


def _catalogue(path: Path, count: int = 6) -> Path:
    rules = {"tick": "0.01", "min_size": "1", "lot": "1", "open": True}
    spec = {
        "markets": [
            {"market": 10 + i, "slug": f"m{i + 1}", "title": f"M{i + 1}", "create": rules}
            for i in range(count)
        ]
    }
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("ws")
    with VenueServer(
        root / "data",
        catalogue_file=str(_catalogue(root / "cat.json")),
        ws_heartbeat_s=0.3,
        ws_max_queue=64,
    ) as running:
        yield running


def usd(value: str) -> dict[str, str]:
    return {"value": value, "currency": "USD"}


def limit(slug: str, intent: str, price: str, quantity: Any, **extra: Any) -> dict[str, Any]:
    return {
        "marketSlug": slug,
        "intent": f"ORDER_INTENT_{intent}",
        "type": "ORDER_TYPE_LIMIT",
        "price": usd(price),
        "quantity": quantity,
        **extra,
    }


class Recorder:
    """Every event a socket emits, by name, and a way to wait for one."""

    def __init__(self, socket: Any, events: tuple[str, ...]) -> None:
        self.seen: dict[str, list[Any]] = {e: [] for e in events}
        for event in events:
            socket.on(event, lambda *args, e=event: self.seen[e].append(args[0] if args else None))

    async def wait(self, event: str, predicate: Any = lambda _: True, timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for item in self.seen[event]:
                if predicate(item):
                    return item
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event} matching within {timeout} s: {self.seen}")
            await asyncio.sleep(0.02)


MARKET_EVENTS = ("market_data", "market_data_lite", "trade", "error", "heartbeat", "close")
PRIVATE_EVENTS = (
    "order_update",
    "order_snapshot",
    "position_update",
    "account_balance_snapshot",
    "account_balance_update",
    "error",
    "heartbeat",
)


def test_markets_socket_book_lite_and_trades(server: VenueServer) -> None:
    async def main() -> None:
        alice, bob = server.async_client("pm-trader-1"), server.async_client("pm-trader-2")
        socket = alice.ws.markets()
        seen = Recorder(socket, MARKET_EVENTS)
        await socket.connect()
        await socket.subscribe_market_data("md-1", [M])
        await socket.subscribe_market_data_lite("lite-1", [M])
        await socket.subscribe_trades("tr-1", [M])
        first = await seen.wait("market_data")
        assert first["requestId"] == "md-1" and first["marketData"]["bids"] == []
        assert first["marketData"]["state"] == "MARKET_STATE_OPEN"
        assert (await seen.wait("market_data_lite"))["marketDataLite"]["bestBid"] is None
        await alice.orders.create(limit(M, "BUY_SHORT", "0.40", 10))
        await seen.wait("market_data", lambda f: f["marketData"]["offers"])
        await bob.orders.create(
            {**limit(M, "BUY_LONG", "0.45", 4), "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL"}
        )
        trade = await seen.wait("trade")
        assert trade == {  # spec appendix B, the markets socket
            "requestId": "tr-1",
            "subscriptionType": "SUBSCRIPTION_TYPE_TRADE",
            "trade": {
                "marketSlug": M,
                "price": usd("0.40"),
                "quantity": usd("4"),
                "tradeTime": trade["trade"]["tradeTime"],
                "maker": {"side": "ORDER_SIDE_SELL", "intent": "ORDER_INTENT_BUY_SHORT"},
                "taker": {"side": "ORDER_SIDE_BUY", "intent": "ORDER_INTENT_BUY_LONG"},
            },
        }
        book = await seen.wait(
            "market_data", lambda f: f["marketData"]["offers"] == [{"px": usd("0.40"), "qty": "6"}]
        )
        lite = await seen.wait(
            "market_data_lite", lambda f: f["marketDataLite"]["lastTradePx"] is not None
        )
        assert lite["marketDataLite"]["lastTradePx"] == usd("0.40")
        # the frame and REST agree
        rest = (await alice.markets.book(M))["marketData"]
        assert book["marketData"]["offers"] == rest["offers"]
        await seen.wait("heartbeat")
        assert not seen.seen["error"]
        # unsubscribe: no more trades on tr-1
        await socket.unsubscribe("tr-1")
        await asyncio.sleep(0.2)
        count = len(seen.seen["trade"])
        await bob.orders.create(
            {**limit(M, "BUY_LONG", "0.45", 1), "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL"}
        )
        await seen.wait(
            "market_data", lambda f: f["marketData"]["offers"] == [{"px": usd("0.40"), "qty": "5"}]
        )
        assert len(seen.seen["trade"]) == count
        await socket.close()
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_error_frames_and_replaced_subscriptions(server: VenueServer) -> None:
    async def main() -> None:
        client = server.async_client("pm-trader-3")
        socket = client.ws.markets()
        seen = Recorder(socket, MARKET_EVENTS)
        await socket.connect()
        await socket.subscribe("x-1", "SUBSCRIPTION_TYPE_ORDER", [M])  # the private socket's
        await socket.subscribe("x-2", "SUBSCRIPTION_TYPE_NOTHING", [M])  # type: ignore[arg-type]
        await socket.subscribe_market_data("x-3", [f"s{i}" for i in range(101)])
        await socket.subscribe_market_data("x-4", ["no-such-market"])
        await socket._ws.send("{not json")  # type: ignore[union-attr]
        errors = [
            await seen.wait("error", lambda e, r=r: e.request_id == r)
            for r in ("x-1", "x-2", "x-3", "x-4")
        ]
        assert "other socket" in str(errors[0]) and "unknown" in str(errors[1])
        assert "at most 100" in str(errors[2]) and "no-such-market" in str(errors[3])
        assert errors[0].subscription_type == "SUBSCRIPTION_TYPE_ORDER"
        await seen.wait("error", lambda e: e.request_id is None and "JSON" in str(e))
        # the same requestId again replaces the subscription: m2's frames, no more of m1
        await socket.subscribe_market_data("md", [M])
        await seen.wait("market_data", lambda f: f["marketData"]["marketSlug"] == M)
        await socket.subscribe_market_data("md", ["m2"])
        await seen.wait("market_data", lambda f: f["marketData"]["marketSlug"] == "m2")
        before = len([f for f in seen.seen["market_data"] if f["marketData"]["marketSlug"] == M])
        await client.orders.create(limit(M, "BUY_LONG", "0.10", 1))
        await asyncio.sleep(0.3)
        after = len([f for f in seen.seen["market_data"] if f["marketData"]["marketSlug"] == M])
        assert after == before
        await socket.close()
        await client.close()

    asyncio.run(main())


def test_private_socket_orders_snapshot_positions_balances(server: VenueServer) -> None:
    async def main() -> None:
        alice, bob = server.async_client("pm-trader-1"), server.async_client("pm-trader-2")
        m = "m3"
        resting = await alice.orders.create_many(
            {"orders": [limit(m, "BUY_LONG", f"0.{10 + i:02d}", 1) for i in range(20)]}
        )
        socket = alice.ws.private()
        seen = Recorder(socket, PRIVATE_EVENTS)
        await socket.connect()
        await socket.subscribe_orders("ord", [m])
        await socket.subscribe_positions("pos", [m])
        await socket.subscribe_account_balance("bal")
        await socket.subscribe_rfq("rfq")  # accepted, silent: no RFQ here
        await socket.subscribe("snap", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT", [m])
        snapshot = await seen.wait(
            "order_snapshot", lambda f: f["orderSubscriptionSnapshot"]["eof"]
        )
        ids = {
            o["id"]
            for f in seen.seen["order_snapshot"]
            for o in f["orderSubscriptionSnapshot"]["orders"]
        }
        assert ids == set(resting["createdOrderIds"]) and snapshot["requestId"] == "snap"
        balance = await seen.wait("account_balance_snapshot")
        assert balance["accountBalancesSnapshot"]["balances"][0]["currency"] == "USD"
        order = await alice.orders.create(limit(m, "BUY_SHORT", "0.50", 3))
        new = await seen.wait(
            "order_update",
            lambda f: f["orderSubscriptionUpdate"]["execution"]["order"]["id"] == order["id"],
        )
        assert new["orderSubscriptionUpdate"]["execution"]["type"] == "EXECUTION_TYPE_NEW"
        update = await seen.wait("account_balance_update")
        change = update["accountBalancesUpdate"]["balanceChange"]
        assert change["afterBalance"]["openOrders"] > change["beforeBalance"]["openOrders"]
        await bob.orders.create(
            {**limit(m, "BUY_LONG", "0.50", 2), "tif": "TIME_IN_FORCE_FILL_OR_KILL"}
        )
        fill = await seen.wait(
            "order_update",
            lambda f: (
                f["orderSubscriptionUpdate"]["execution"]["type"] == "EXECUTION_TYPE_PARTIAL_FILL"
            ),
        )
        execution = fill["orderSubscriptionUpdate"]["execution"]
        assert execution["lastShares"] == "2" and execution["aggressor"] is False
        assert execution["order"]["leavesQuantity"] == 1
        position = await seen.wait("position_update")
        payload = position["positionSubscription"]
        assert payload["afterPosition"]["netPositionDecimal"] == "-2.0000"
        assert payload["entryType"] == "LEDGER_ENTRY_TYPE_ORDER_EXECUTION"
        assert payload["tradeId"] == execution["tradeId"]
        await seen.wait("heartbeat")
        # another market is filtered out
        await alice.orders.create(limit("m4", "BUY_LONG", "0.10", 1))
        await asyncio.sleep(0.3)
        assert all(
            f["orderSubscriptionUpdate"]["execution"]["order"]["marketSlug"] == m
            for f in seen.seen["order_update"]
        )
        assert not seen.seen["error"]
        await socket.close()
        await alice.close()
        await bob.close()

    asyncio.run(main())


def test_a_large_order_snapshot_comes_in_frames_under_1_mib(server: VenueServer) -> None:
    async def main() -> None:
        client = server.async_client("pm-trader-4")
        m = "m5"
        for _ in range(20):  # 400 orders: several frames
            await client.orders.create_many(
                {"orders": [limit(m, "BUY_LONG", "0.05", 1) for _ in range(20)]}
            )
        socket = client.ws.private()
        frames: list[str] = []
        socket.on("message", lambda message: frames.append(json.dumps(message)))
        seen = Recorder(socket, PRIVATE_EVENTS)
        await socket.connect()
        await socket.subscribe("snap", "SUBSCRIPTION_TYPE_ORDER_SNAPSHOT", [m])
        await seen.wait("order_snapshot", lambda f: f["orderSubscriptionSnapshot"]["eof"])
        chunks = seen.seen["order_snapshot"]
        assert len(chunks) > 1 and all(len(f) < 1 << 20 for f in frames)
        assert sum(len(c["orderSubscriptionSnapshot"]["orders"]) for c in chunks) == 400
        assert [c["orderSubscriptionSnapshot"]["eof"] for c in chunks][-1] is True
        await socket.close()
        await client.orders.cancel_all()
        await client.close()

    asyncio.run(main())


def test_the_upgrade_needs_a_valid_signature(server: VenueServer) -> None:
    async def main() -> None:
        url = server.url.replace("http://", "ws://") + "/v1/ws/private"
        key = server.keys["pm-trader-1"]
        headers = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/markets")
        with pytest.raises(websockets.InvalidStatus) as refused:  # signed for the other path
            await websockets.connect(url, additional_headers=headers)
        assert refused.value.response.status_code == 401
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(url)

    asyncio.run(main())


def test_a_subscriber_that_does_not_read_stalls_nobody(server: VenueServer) -> None:
    """A client that reads nothing (a small receive buffer, one message queued at most): the
    engine and a reading subscriber go on; what the idle one gets later is in order."""

    async def main() -> None:
        maker, taker = server.async_client("pm-trader-3"), server.async_client("pm-trader-4")
        m = "m6"
        url = server.url.replace("http://", "ws://") + "/v1/ws/markets"
        key = server.keys["pm-trader-1"]
        headers = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/markets")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = url.removeprefix("ws://").split("/")[0].split(":")
        sock.connect((host, int(port)))
        idle = await websockets.connect(url, additional_headers=headers, max_queue=1, sock=sock)
        subscribe = {"requestId": "t", "subscriptionType": "SUBSCRIPTION_TYPE_TRADE"}
        await idle.send(json.dumps({"subscribe": {**subscribe, "marketSlugs": [m]}}))
        reader = maker.ws.markets()
        seen = Recorder(reader, MARKET_EVENTS)
        await reader.connect()
        await reader.subscribe_trades("t", [m])
        await asyncio.sleep(0.2)
        await maker.orders.create(limit(m, "BUY_SHORT", "0.50", 100_000))
        trades = 0
        for _ in range(20):
            await taker.orders.create_many(
                {"orders": [{**limit(m, "BUY_LONG", "0.50", 1),
                             "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL"} for _ in range(20)]}
            )  # fmt: skip
            trades += 20
        await seen.wait("trade", lambda _: len(seen.seen["trade"]) >= trades, timeout=30)
        book = (await taker.markets.book(m))["marketData"]
        assert book["offers"] == [{"px": usd("0.50"), "qty": str(100_000 - trades)}]
        received = []
        with contextlib.suppress(TimeoutError, websockets.ConnectionClosed):
            while len(received) < trades:
                received.append(json.loads(await asyncio.wait_for(idle.recv(), 5)))
        frames = [f for f in received if "trade" in f]
        assert all("error" in f for f in received if "trade" not in f and "heartbeat" not in f)
        assert [f["trade"]["tradeTime"] for f in frames] == sorted(
            f["trade"]["tradeTime"] for f in frames
        )
        await idle.close()
        await reader.close()
        await maker.close()
        await taker.close()

    asyncio.run(main())


# ------------------------------------------------------- the session's queue


class _BlockedSend:
    """An ASGI send that blocks (a client that stopped reading) until released."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.release = asyncio.Event()

    async def __call__(self, message: dict[str, Any]) -> None:
        await self.release.wait()
        self.sent.append(message.get("text") or f"close {message.get('code')}")


def test_book_frames_are_conflated_and_a_full_queue_drops_the_session() -> None:
    from pyexchange.api.rest.ws import Session

    async def main() -> None:
        send = _BlockedSend()
        aborted = []
        session = Session(send, "markets", 1, max_queue=4, abort=lambda: aborted.append(1))
        writer = asyncio.get_running_loop().create_task(session.writer())
        for version in range(100):  # 100 book frames of one subscription and market: 1 queued
            session.push_latest(("md", 7), f"book {version}")
        await asyncio.sleep(0.01)
        assert session.conflated >= 98
        send.release.set()
        await asyncio.sleep(0.01)
        assert send.sent[-1] == "book 99" and len(send.sent) <= 2
        send.release.clear()
        for i in range(10):  # trades cannot be conflated: the fifth over the limit drops it
            session.push(f"trade {i}")
        assert session.dropped
        send.release.set()
        await asyncio.wait_for(writer, 5)
        assert "slow consumer" in send.sent[-2] and send.sent[-1] == "close 1008"
        assert not aborted  # it read its error frame: closed politely

        stuck = _BlockedSend()  # one that never reads again is cut after the grace period
        session = Session(stuck, "markets", 1, max_queue=1, abort=lambda: aborted.append(1))
        writer = asyncio.get_running_loop().create_task(session.writer())
        import pyexchange.api.rest.ws as ws

        grace, ws.DROP_GRACE_S = ws.DROP_GRACE_S, 0.05
        try:
            session.push("a")
            await asyncio.sleep(0.01)
            session.push("b")
            session.push("c")
            await asyncio.sleep(0.2)
        finally:
            ws.DROP_GRACE_S = grace
        assert aborted == [1] and session.closed
        writer.cancel()

    asyncio.run(main())
