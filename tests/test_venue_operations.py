"""The venue API's limits and operations (spec §5.1, issue 12 §5), through the official SDK:
per-key and per-address token buckets answering 429 with the venue's body, and the HTTP
side's Prometheus metrics and JSON logs.

Each test starts its own server: the buckets and the counters are the server's state.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from polymarket_us import NotFoundError, RateLimitError
from polymarket_us.auth import create_auth_headers
from venue_support import VenueServer

SLUG = "rain-in-paris-tomorrow"
VENUE_BODY = {"code": 8, "message": "rate limit exceeded", "details": []}


def _order(price: str) -> dict[str, Any]:
    return {
        "marketSlug": SLUG,
        "intent": "ORDER_INTENT_BUY_LONG",
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": price, "currency": "USD"},
        "quantity": 1,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
    }


def test_token_buckets_per_key_and_per_address(tmp_path: Path) -> None:
    with VenueServer(
        tmp_path / "data",
        venue_key_rate=0.5,  # slow refill: the test's own pace never earns a token
        venue_key_burst=3,
        http_address_rate=0.5,
        http_address_burst=3,
    ) as server:
        alice = server.client("pm-trader-1", max_retries=0)
        bob = server.client("pm-trader-2", max_retries=0)
        # a batch of 20 orders is one request: one token (spec §5.1)
        created = alice.orders.create_many({"orders": [_order("0.05")] * 20})
        assert len(created["createdOrderIds"]) == 20
        alice.orders.list()
        alice.account.balances()
        with pytest.raises(RateLimitError) as caught:  # the SDK's class for 429
            alice.orders.create(_order("0.05"))
        assert caught.value.status_code == 429
        assert caught.value.body == VENUE_BODY
        assert caught.value.response.headers["retry-after"] == "1"
        assert len(alice.get("/v1/markets")["markets"]) == 3  # public: the address bucket
        # another key of the same server has its own bucket
        for _ in range(3):
            bob.account.balances()
        with pytest.raises(RateLimitError):
            bob.account.balances()
        # public calls count per client address, apart from the keys' buckets (one spent
        # above by alice's public /v1/markets)
        public = server.client(None, max_retries=0)
        public.markets.list()
        public.markets.retrieve_by_slug(SLUG)
        with pytest.raises(RateLimitError) as public_caught:
            public.markets.book(SLUG)
        assert public_caught.value.body == VENUE_BODY
        # the server is the edge: a forwarded-for header does not pick another bucket
        for n in range(3):
            spoofed = httpx.get(
                f"{server.url}/v1/markets", headers={"X-Forwarded-For": f"10.9.9.{n}"}
            )
            assert spoofed.status_code == 429, spoofed.text
        # the order refused with 429 never reached the engine
        assert len(alice_orders(server)) == 20
        # the buckets refill continuously: 0.5 tokens a second
        time.sleep(2.2)
        assert alice.account.balances()["balances"]
        assert public.markets.list()["markets"]


def alice_orders(server: VenueServer) -> list[str]:
    """Alice's open orders, read with a key whose bucket is untouched (a fresh CLI key)."""
    made = server.cli(
        "keys", "create", "--data-dir", str(server.data_dir), "--account", "1", "--rate", "100"
    )
    assert made.returncode == 0, made.stderr
    key = dict(line.split(None, 1) for line in made.stdout.splitlines())
    headers = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/orders/open")
    reply = httpx.get(f"{server.url}/v1/orders/open", headers=headers)
    assert reply.status_code == 200, reply.text
    return [o["id"] for o in reply.json()["orders"]]


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Prometheus text exposition: {sorted labels: value} of one metric name."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, value = line.rsplit(" ", 1)
        labels: tuple[tuple[str, str], ...] = ()
        if "{" in head:
            body = head[head.index("{") + 1 : head.rindex("}")]
            labels = tuple(
                sorted((k, v.strip('"')) for k, v in (p.split("=", 1) for p in body.split('",')))
            )
        out[labels] = float(value)
    return out


def test_http_metrics_and_json_logs(tmp_path: Path) -> None:
    with VenueServer(tmp_path / "data", metrics=True, log_level="DEBUG") as server:
        assert server.metrics_port
        alice = server.client("pm-trader-1", max_retries=0)
        order = alice.orders.create(_order("0.05"))["id"]
        alice.orders.retrieve(order)
        with pytest.raises(NotFoundError) as missing:
            alice.orders.retrieve("7ZZZZZZZ")
        correlation = str(uuid.uuid4())
        assert (
            httpx.get(
                f"{server.url}/v1/account/balances", headers={"poly-correlation-id": correlation}
            ).status_code
            == 401
        )

        async def websocket() -> None:
            key = server.keys["pm-trader-1"]
            headers = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/markets")
            url = server.url.replace("http://", "ws://") + "/v1/ws/markets"
            async with websockets.connect(url, additional_headers=headers) as ws:
                await ws.send(
                    json.dumps(
                        {
                            "subscribe": {
                                "requestId": "md",
                                "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA",
                                "marketSlugs": [SLUG],
                            }
                        }
                    )
                )
                assert "marketData" in json.loads(await ws.recv())
                text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics").text
                open_now = _samples(text, "pyexchange_websocket_connections")
                assert open_now[(("endpoint", "markets"),)] == 1

        asyncio.run(websocket())
        # maintenance: 503 answers are logged as warnings
        assert server.cli("maintenance", "on", "--data-dir", str(server.data_dir)).returncode == 0
        assert httpx.get(f"{server.url}/v1/markets").status_code == 503
        assert server.cli("maintenance", "off", "--data-dir", str(server.data_dir)).returncode == 0

        text = httpx.get(f"http://127.0.0.1:{server.metrics_port}/metrics").text
        requests = _samples(text, "pyexchange_http_requests_total")
        assert requests[(("route", "POST /v1/orders"), ("status", "200"))] == 1
        # a path parameter is its pattern in the label: one series per route, not per id
        assert requests[(("route", "GET /v1/order/{orderId}"), ("status", "200"))] == 1
        assert requests[(("route", "GET /v1/order/{orderId}"), ("status", "404"))] == 1
        assert requests[(("route", "GET /v1/account/balances"), ("status", "401"))] == 1
        assert requests[(("route", "GET /v1/markets"), ("status", "503"))] == 1
        seconds = _samples(text, "pyexchange_http_request_seconds_count")
        assert seconds[(("route", "POST /v1/orders"),)] == 1
        assert _samples(text, "pyexchange_refused_total")[(("status", "401"),)] == 1
        frames = _samples(text, "pyexchange_websocket_frames_total")
        assert frames[(("endpoint", "markets"),)] >= 1
        assert _samples(text, "pyexchange_websocket_connections")[(("endpoint", "markets"),)] == 0
        # the order command is counted with the gRPC side's
        latency = _samples(text, "pyexchange_command_latency_seconds_count")
        assert latency[(("command", "place"),)] == 1

    entries = [json.loads(line) for line in server.log_path.read_text().splitlines() if line]
    rest = [e for e in entries if e["message"] == "REST request"]
    assert {"route", "status", "ms", "correlation_id"} <= set(rest[0])
    by_correlation = {e["correlation_id"]: e for e in rest}
    assert by_correlation[correlation]["status"] == 401
    assert by_correlation[missing.value.request_id]["route"] == "GET /v1/order/{orderId}"
    assert by_correlation[missing.value.request_id]["level"] == "DEBUG"
    unavailable = [e for e in rest if e["status"] == 503]
    assert unavailable and all(e["level"] == "WARNING" for e in unavailable)
