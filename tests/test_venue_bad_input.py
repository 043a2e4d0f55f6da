"""Hostile input over HTTP (issue 12, "How it is checked"): malformed JSON, wrong types, unknown
enums, huge bodies and heads, slowloris connections, bad signatures, stale timestamps and
another account's order ids each get their documented status; the engine's state digest
and last seq (read from the journal beside the running server) are the same before and
after, and the server answers a good request after each kind.
"""

from __future__ import annotations

import base64
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from polymarket_us import NotFoundError
from polymarket_us.auth import create_auth_headers
from venue_support import VenueServer

from pyexchange.service import ed25519

SLUG = "rain-in-paris-tomorrow"


def _order(**extra: Any) -> dict[str, Any]:
    return {
        "marketSlug": SLUG,
        "intent": "ORDER_INTENT_BUY_LONG",
        "type": "ORDER_TYPE_LIMIT",
        "price": {"value": "0.20", "currency": "USD"},
        "quantity": 1,
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
        **extra,
    }


@pytest.fixture
def server(tmp_path: Path) -> Any:
    with VenueServer(tmp_path / "data") as running:
        yield running


def _post(server: VenueServer, path: str, body: bytes, key: str = "pm-trader-1") -> httpx.Response:
    k = server.keys[key]
    headers = create_auth_headers(k["key_id"], k["secret"], "POST", path)
    return httpx.post(
        server.url + path, content=body, headers={**headers, "content-type": "application/json"}
    )


def _responsive(server: VenueServer) -> None:
    assert server.client("pm-trader-1").orders.list()["orders"] is not None


def test_bad_input_changes_nothing_and_the_server_answers(server: VenueServer) -> None:
    alice, bob = server.client("pm-trader-1"), server.client("pm-trader-2", max_retries=0)
    mine = alice.orders.create(_order())["id"]
    bob.orders.create(_order(price={"value": "0.10", "currency": "USD"}))
    before = server.digest()

    # malformed JSON, wrong types, unknown enums: 400 with code 3 on every order endpoint
    bodies = [
        b"{",
        b'{"marketSlug": "x",}',
        b"\xff\xfe",
        b"[" * 50_000,
        b"null",
        b'"a string"',
        json.dumps(_order(quantity="ten")).encode(),
        json.dumps(_order(quantity=[1])).encode(),
        json.dumps(_order(marketSlug=7)).encode(),
        json.dumps(_order(price=0.2)).encode(),
        json.dumps(_order(synchronousExecution="yes")).encode(),
        json.dumps(_order(intent="ORDER_INTENT_SIDEWAYS")).encode(),
        json.dumps(_order(tif="TIME_IN_FORCE_FOREVER")).encode(),
        json.dumps(_order(type="ORDER_TYPE_STOP_LIMIT")).encode(),
        json.dumps(_order(outcomeSide="OUTCOME_SIDE_MAYBE", action="ORDER_ACTION_BUY")).encode(),
    ]
    for path in ("/v1/orders", "/v1/order/preview"):
        for body in bodies:
            reply = _post(server, path, body)
            assert reply.status_code == 400, (path, body[:40], reply.text)
            assert reply.json()["code"] == 3
    for path, body in (
        ("/v1/orders/batched", b'{"orders": {"a": 1}}'),
        ("/v1/orders/batched", json.dumps({"orders": [_order()] * 19 + [_order(tif=3)]}).encode()),
        ("/v1/orders/batched/cancel", b'{"orders": [{"orderId": 5}]}'),
        ("/v1/orders/batched/modify", b'{"orders": "all"}'),
        ("/v1/orders/open/cancel", b'{"slugs": "' + SLUG.encode() + b'"}'),
        (f"/v1/order/{mine}/cancel", b"{"),
        (f"/v1/order/{mine}/modify", json.dumps({"marketSlug": SLUG, "quantity": "x"}).encode()),
    ):
        reply = _post(server, path, body)
        assert reply.status_code == 400, (path, reply.text)
    _responsive(server)

    # huge bodies and heads: 413 and 431, the connection closed after a 431
    assert _post(server, "/v1/orders", b'{"p":"' + b"x" * 200_000 + b'"}').status_code == 413
    assert httpx.get(f"{server.url}/v1/markets", headers={"x-pad": "y" * 20_000}).status_code == 431
    many = {f"x-h{i}": "z" * 40 for i in range(600)}
    assert httpx.get(f"{server.url}/v1/markets", headers=many).status_code == 431
    assert httpx.get(f"{server.url}/v1/markets?q=" + "a" * 20_000).status_code == 431
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:  # declares more than the limit
        s.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 413")
    _responsive(server)

    # slowloris: heads and bodies that never end hold up nobody
    slow = []
    try:
        for i in range(40):
            s = socket.create_connection((host, int(port)))
            if i % 2:
                s.sendall(b"GET /v1/markets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            else:
                s.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")
            slow.append(s)
        started = time.monotonic()
        _responsive(server)
        assert time.monotonic() - started < 5  # a stalled loop would be the 10 s deadline
    finally:
        for s in slow:
            s.close()

    # bad signatures and stale timestamps: 401, nothing created
    key = server.keys["pm-trader-1"]
    body = json.dumps(_order()).encode()

    def signed(stamp: int, secret: str, method: str = "POST", path: str = "/v1/orders") -> dict:
        return {
            "X-PM-Access-Key": key["key_id"],
            "X-PM-Timestamp": str(stamp),
            "X-PM-Signature": ed25519.sign(secret, f"{stamp}{method}{path}".encode()),
            "content-type": "application/json",
        }

    forged = base64.b64encode(b"\x00" * 64).decode()
    secret = key["secret"]
    cases = {  # each made from the clock just before it is sent
        "another key's secret": lambda now: signed(now, ed25519.generate()[1]),
        "signed for another path": lambda now: signed(now, secret, path="/v1/orders/batched"),
        "signed for another method": lambda now: signed(now, secret, method="GET"),
        "a forged signature": lambda now: {**signed(now, secret), "X-PM-Signature": forged},
        "not base64": lambda now: {**signed(now, secret), "X-PM-Signature": "%%%"},
        "stale by 40 s": lambda now: signed(now - 40_000, secret),
        "ahead by 40 s": lambda now: signed(now + 40_000, secret),
        "not a number": lambda now: {**signed(now, secret), "X-PM-Timestamp": "soon"},
        "a huge number": lambda now: {**signed(now, secret), "X-PM-Timestamp": "9" * 40},
    }
    for name, make in cases.items():
        headers = make(int(time.time() * 1000))
        reply = httpx.post(f"{server.url}/v1/orders", content=body, headers=headers)
        assert reply.status_code == 401, (name, reply.text)
        assert reply.json()["code"] == 16, name
    _responsive(server)

    # another account's order id: 404 like an unknown one; batches ignore it
    with pytest.raises(NotFoundError):
        bob.orders.retrieve(mine)
    with pytest.raises(NotFoundError):
        bob.orders.cancel(mine, {"marketSlug": SLUG})
    with pytest.raises(NotFoundError):
        bob.orders.modify(mine, {"marketSlug": SLUG, "price": {"value": "0.30"}})
    entry = {"orderId": mine, "marketSlug": SLUG}
    assert bob.orders.cancel_many({"orders": [entry]})["canceledOrderIds"] == [mine]
    bob.orders.modify_many({"orders": [{**entry, "quantity": 5}]})

    assert server.digest() == before
    order = alice.orders.retrieve(mine)["order"]
    assert order["state"] == "ORDER_STATE_NEW" and order["price"]["value"] == "0.20"


def test_slugs_of_orders_naming_unknown_markets_are_bounded() -> None:
    """A rejected order keeps the unknown slug it named (to show it), but hostile new slugs
    cannot grow the server without bound: the newest are kept, older ones show ""."""
    from pyexchange.api.rest.orders import UNKNOWN_MARKET, UNKNOWN_SLUGS_KEPT, OrdersApi
    from pyexchange.feeds.history import OrderRecord

    assert UNKNOWN_SLUGS_KEPT == 10_000
    from types import SimpleNamespace

    api = OrdersApi(SimpleNamespace(gateway=SimpleNamespace(markets=None)), None)  # type: ignore[arg-type]
    api.unknown_slugs_kept = 100
    for seq in range(1, 1001):
        api._remember_unknown(seq, f"no-such-market-{seq}")
    assert len(api._unknown_slugs) == 100

    def shown(seq: int) -> str:
        return api._slug_of(OrderRecord(0, seq, 1, UNKNOWN_MARKET, 0, 0, 0, 0, 0))

    assert (shown(1000), shown(901), shown(900), shown(1)) == (
        "no-such-market-1000",
        "no-such-market-901",
        "",
        "",
    )


def test_an_order_naming_an_unknown_slug_is_rejected_and_shows_it(server: VenueServer) -> None:
    alice = server.client("pm-trader-1")
    created = alice.orders.create(_order(marketSlug="no-such-market", synchronousExecution=True))
    order = alice.orders.retrieve(created["id"])["order"]
    assert created["id"].startswith("U") and order["state"] == "ORDER_STATE_REJECTED"
    assert order["marketSlug"] == "no-such-market"
    assert created["executions"][-1]["order"]["marketSlug"] == "no-such-market"
