"""The venue API's public endpoints and its Ed25519 auth, driven by the official SDK, unchanged.

One ``pyexchange serve`` process for the module (demo markets: slugs
``rain-in-paris-tomorrow``, ``btc-above-100k-this-month``, ``home-team-wins-final``;
events ``paris-weather``, ``btc-monthly-close``, ``cup-final``; series ``demo``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import polymarket_us
import pytest
from polymarket_us import (
    AuthenticationError,
    BadRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
)
from venue_support import VenueServer

from pyexchange.service import ed25519

SLUG = "rain-in-paris-tomorrow"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    # named as `pyexchange serve`'s default, for the README's example
    with VenueServer(tmp_path_factory.mktemp("venue") / "exchange-data") as running:
        yield running


# ------------------------------------------------------------ signatures


def test_the_spec_test_vector_verifies() -> None:
    """spec §1.3: the SDK's signature of a known seed, checked by the server's verifier."""
    seed = "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A="
    public = ed25519.public_key_of(seed)
    assert public == "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    long_form = (
        "nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DXWpgBgrEKt9VL/tPJZAc6DuFy89qmIyWvAhpo9wdRGg=="
    )
    assert ed25519.public_key_of(long_form) == public
    verifier = ed25519.Verifier(public)
    vectors = [
        (
            "GET",
            "/v1/portfolio/positions",
            "J+6zCHrZ1oeV5eDsoroD9aTVlN6mFfN3xQ+6+Wo0lfRprJUu5lRGAw/thsGiswFZ8ppYYJ6Y0alnDrsWVQ03Cg==",
        ),
        (
            "POST",
            "/v1/orders",
            "xRR/kH/HO5wdmPUhcWhkAZ8CDF5wBrqUuhACpW19lzddkjuq8ARMQLRSJ8fd43s3LMUdG45a8pzW71PQmSfQCA==",
        ),
        (
            "GET",
            "/v1/ws/private",
            "jclhq7upxmiCEwMJYpiUg8BaIRVSy3OjmQkqFriPVyCnTujyszdoDuYndVspkhRLgvdCbyowAlu+ascej/ZZBA==",
        ),
    ]
    for method, path, signature in vectors:
        message = f"1705420800000{method}{path}".encode()
        assert verifier.verify(message, signature)
        assert ed25519.sign(seed, message) == signature
        assert not verifier.verify(message + b"x", signature)
    assert not verifier.verify(b"x", "not base64!" * 8)
    assert not verifier.verify(b"x", "")


# ------------------------------------------------------------ public calls


def test_markets_list_retrieve_and_filters(server: VenueServer) -> None:
    client = server.client(None)
    markets = client.markets.list()["markets"]
    assert [m["slug"] for m in markets] == [
        "rain-in-paris-tomorrow",
        "btc-above-100k-this-month",
        "home-team-wins-final",
    ]
    first = markets[0]
    assert first["id"] == "1" and first["active"] is True and first["closed"] is False
    assert first["orderPriceMinTickSize"] == 0.01 and first["status"] == "MARKET_STATUS_OPEN"
    assert first["eventSlug"] == "paris-weather"
    assert client.markets.retrieve(1)["market"] == first
    assert client.markets.retrieve_by_slug(SLUG)["market"] == first
    assert markets[2]["orderPriceMinTickSize"] == 0.001
    picked = client.markets.list({"slug": ["home-team-wins-final"], "limit": 5})["markets"]
    assert [m["id"] for m in picked] == ["3"]
    assert [m["id"] for m in client.markets.list({"id": [2, 3]})["markets"]] == ["2", "3"]
    assert client.markets.list({"closed": True})["markets"] == []
    assert [m["id"] for m in client.markets.list({"limit": 1, "offset": 1})["markets"]] == ["2"]
    by_event = client.markets.list({"eventSlug": ["cup-final"]})["markets"]
    assert [m["slug"] for m in by_event] == ["home-team-wins-final"]
    with pytest.raises(NotFoundError):
        client.markets.retrieve(99)
    with pytest.raises(NotFoundError):
        client.markets.retrieve_by_slug("no-such-market")
    with pytest.raises(BadRequestError):
        client.markets.list({"limit": "many"})  # type: ignore[typeddict-item]


def test_book_bbo_and_settlement_of_an_empty_book(server: VenueServer) -> None:
    client = server.client(None)
    book = client.markets.book(SLUG)["marketData"]
    assert book == {
        "marketSlug": SLUG,
        "bids": [],
        "offers": [],
        "state": "MARKET_STATE_OPEN",
        "stats": None,
        "transactTime": None,
    }
    bbo = client.markets.bbo(SLUG)["marketData"]
    assert bbo["bestBid"] is None and bbo["bestAsk"] is None and bbo["bidDepth"] == 0
    with pytest.raises(NotFoundError, match="not settled"):
        client.markets.settlement(SLUG)
    with pytest.raises(NotFoundError):
        client.markets.book("nope")


def test_events_series_sports_search(server: VenueServer) -> None:
    client = server.client(None)
    events = client.events.list()["events"]
    assert [e["slug"] for e in events] == ["paris-weather", "btc-monthly-close", "cup-final"]
    cup = client.events.retrieve_by_slug("cup-final")["event"]
    assert cup == client.events.retrieve(3)["event"]
    assert [m["slug"] for m in cup["markets"]] == ["home-team-wins-final"]
    assert cup["series"] == {"id": "1", "slug": "demo", "title": "Demo markets"}
    with pytest.raises(NotFoundError):
        client.events.retrieve(42)
    with pytest.raises(NotFoundError):
        client.events.retrieve_by_slug("no-event")
    series = client.series.list()["series"]
    assert [s["slug"] for s in series] == ["demo"]
    assert client.series.retrieve(1)["series"] == series[0]
    with pytest.raises(NotFoundError):
        client.series.retrieve(7)
    assert client.sports.list() == {"sports": []}
    assert client.sports.teams({"league": "nfl"}) == {"teams": {}}
    found = client.search.query({"query": "BTC"})["events"]
    assert [e["slug"] for e in found] == ["btc-monthly-close"]
    assert client.search.query({"query": "zzz"})["events"] == []
    with pytest.raises(BadRequestError):
        client.search.query({"status": "sideways"})  # type: ignore[typeddict-item]


def test_the_async_client_runs_calls_concurrently(server: VenueServer) -> None:
    async def main() -> tuple[Any, Any]:
        async with server.async_client() as client:
            return await asyncio.gather(
                client.events.list({"limit": 10}),
                client.markets.list({"limit": 10}),
                client.account.balances(),
            )

    events, markets, balances = asyncio.run(main())
    assert server.client().rfqs.trades({"limit": 10}) == {"trades": [], "cursor": ""}
    assert len(events["events"]) == 3 and len(markets["markets"]) == 3
    assert balances["balances"][0]["currency"] == "USD"


# ------------------------------------------------------------------- auth


def test_balances_of_the_keys_account(server: VenueServer) -> None:
    balance = server.client("pm-trader-2").account.balances()["balances"][0]
    # $100,000 deposited; 1,000 YES+NO pairs split in each of the 3 demo markets
    assert balance["currentBalance"] == 97_000 and balance["buyingPower"] == 97_000
    assert balance["openOrders"] == 0 and balance["currency"] == "USD"


def test_auth_failures_are_401_with_a_reason(server: VenueServer) -> None:
    key = server.keys["pm-trader-1"]
    other = ed25519.generate()[1]
    wrong = polymarket_us.PolymarketUS(
        key_id=key["key_id"], secret_key=other, api_base_url=server.url, max_retries=0
    )
    with pytest.raises(AuthenticationError, match="invalid signature"):
        wrong.account.balances()
    unknown = polymarket_us.PolymarketUS(
        key_id="0b7b7c1e-0000-4000-8000-000000000000", secret_key=other, api_base_url=server.url
    )
    with pytest.raises(AuthenticationError, match="unknown API key"):
        unknown.account.balances()
    hmac_key = server.keys["trader-1"]  # a gRPC key is not a venue key
    with pytest.raises(AuthenticationError, match="unknown API key"):
        polymarket_us.PolymarketUS(
            key_id=hmac_key["key_id"], secret_key=other, api_base_url=server.url
        ).account.balances()
    with pytest.raises(AuthenticationError):  # the SDK refuses locally without credentials
        server.client(None).account.balances()
    raw = httpx.get(f"{server.url}/v1/account/balances")
    assert raw.status_code == 401
    assert raw.json() == {
        "code": 16,
        "message": "missing X-PM-Access-Key, X-PM-Timestamp, X-PM-Signature header",
        "details": [],
    }


def _signed(key: dict[str, Any], method: str, path: str, ts: int) -> dict[str, str]:
    message = f"{ts}{method}{path}".encode()
    return {
        "X-PM-Access-Key": key["key_id"],
        "X-PM-Timestamp": str(ts),
        "X-PM-Signature": ed25519.sign(key["secret"], message),
    }


def test_the_timestamp_window_is_30_seconds(server: VenueServer) -> None:
    key = server.keys["pm-trader-1"]
    now = int(time.time() * 1000)
    url = f"{server.url}/v1/account/balances"
    for offset, status in ((-25_000, 200), (25_000, 200), (-35_000, 401), (35_000, 401)):
        reply = httpx.get(url, headers=_signed(key, "GET", "/v1/account/balances", now + offset))
        assert reply.status_code == status, (offset, reply.text)
    stale = httpx.get(url, headers=_signed(key, "GET", "/v1/account/balances", now - 60_000))
    assert "from the server's clock" in stale.json()["message"]
    # the signature covers the path: signed for another path, refused here
    elsewhere = httpx.get(url, headers=_signed(key, "GET", "/v1/portfolio/positions", now))
    assert elsewhere.status_code == 401


def test_identical_requests_in_one_millisecond_are_both_served(server: VenueServer) -> None:
    """No replay refusal (spec §1.4): the SDK sends identical headers for two calls in 1 ms."""
    key = server.keys["pm-trader-1"]
    headers = _signed(key, "GET", "/v1/account/balances", int(time.time() * 1000))
    with httpx.Client() as http:
        first = http.get(f"{server.url}/v1/account/balances", headers=headers)
        second = http.get(f"{server.url}/v1/account/balances", headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()


def test_a_key_made_by_the_cli_is_used_at_once(server: VenueServer) -> None:
    made = server.cli(
        "keys", "create", "--data-dir", str(server.data_dir), "--account", "3", "--name", "cli-3"
    )
    assert made.returncode == 0, made.stderr
    lines = dict(line.split(None, 1) for line in made.stdout.splitlines())
    key_id, secret = lines["key_id"], lines["secret"]
    assert len(base64.b64decode(secret)) == 64  # the venue's seed || public key form
    client = polymarket_us.PolymarketUS(key_id=key_id, secret_key=secret, api_base_url=server.url)
    assert client.account.balances()["balances"][0]["currentBalance"] == 97_000
    stored = {
        k["key_id"]: k
        for k in __import__("json").loads((server.data_dir / "keys.json").read_text())["keys"]
    }
    assert stored[key_id]["secret"] == ""  # only the public key is kept
    # a read-only key may read and nothing else
    read_only = server.cli(
        "keys",
        "create",
        "--data-dir",
        str(server.data_dir),
        "--account",
        "3",
        "--name",
        "ro-3",
        "--permissions",
        "read",
    )
    ro = dict(line.split(None, 1) for line in read_only.stdout.splitlines())
    reader = polymarket_us.PolymarketUS(
        key_id=ro["key_id"], secret_key=ro["secret"], api_base_url=server.url
    )
    assert reader.account.balances()["balances"]


def test_rate_limits_answer_429_with_the_venues_body(tmp_path: Path) -> None:
    with VenueServer(
        tmp_path / "data",
        venue_key_rate=1.0,
        venue_key_burst=2,
        http_address_rate=1.0,
        http_address_burst=3,
    ) as limited:
        client = limited.client(max_retries=0)
        client.account.balances()
        client.account.balances()
        with pytest.raises(RateLimitError) as caught:
            client.account.balances()
        assert caught.value.body == {"code": 8, "message": "rate limit exceeded", "details": []}
        assert caught.value.response.headers["retry-after"] == "1"
        public = limited.client(None, max_retries=0)
        for _ in range(3):
            public.markets.list()
        with pytest.raises(RateLimitError):
            public.markets.list()


def test_permission_denied_is_403(tmp_path: Path) -> None:
    with VenueServer(tmp_path / "data") as running:
        made = running.cli(
            "keys",
            "create",
            "--data-dir",
            str(running.data_dir),
            "--account",
            "1",
            "--name",
            "nothing",
            "--permissions",
            "trade",
        )
        key = dict(line.split(None, 1) for line in made.stdout.splitlines())
        client = polymarket_us.PolymarketUS(
            key_id=key["key_id"], secret_key=key["secret"], api_base_url=running.url
        )
        with pytest.raises(PermissionDeniedError, match="'read' permission"):
            client.account.balances()


def test_numbers_are_exact_decimals() -> None:
    from pyexchange.api.rest import wire

    decoded = wire.decode(b'{"quantity": 0.1, "n": 3, "price": {"value": "0.55"}}')
    assert decoded["quantity"] == Decimal("0.1") and isinstance(decoded["quantity"], Decimal)
    assert wire.encode({"x": Decimal("0.10"), "y": wire.number(1_234_500, 1_000_000)}) == (
        b'{"x":0.10,"y":1.2345}'
    )
    for bad in (b"{", b"[" * 100_000, b'{"a": NaN}'):
        with pytest.raises(Exception) as caught:
            wire.decode(bad)
        assert getattr(caught.value, "status", None) == 400


def test_the_readme_example_runs_as_written(server: VenueServer) -> None:
    """README, "Trade against it with the Polymarket US SDK": its code, run beside the data dir."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Trade against it with the Polymarket US SDK", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=server.data_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "Will it rain in Paris tomorrow? 0.01"
    assert lines[1].startswith("{'marketSlug': 'rain-in-paris-tomorrow', 'bids': [")
    assert lines[3:] == ["ORDER_STATE_NEW", "ORDER_STATE_CANCELED"]


def test_every_sdk_exception_class_is_reachable(server: VenueServer) -> None:
    """The SDK's other exceptions, each by the condition that raises it (the rest are in
    this module, test_venue_orders.py and test_venue_maintenance.py)."""
    from polymarket_us import APIConnectionError, APIStatusError, APITimeoutError

    client = server.client("pm-trader-1", max_retries=0)
    with pytest.raises(APIStatusError) as too_big:  # 413: none of the named subclasses
        client.post("/v1/orders", body={"pad": "x" * 100_000}, authenticated=True)
    assert too_big.value.status_code == 413 and type(too_big.value) is APIStatusError
    with pytest.raises(APIStatusError) as wrong_method:
        client.post("/v1/markets", body={})
    assert wrong_method.value.status_code == 405
    import socket

    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        impatient = polymarket_us.PolymarketUS(
            gateway_base_url=f"http://127.0.0.1:{silent.getsockname()[1]}",
            timeout=0.3,
            max_retries=0,
        )
        with pytest.raises(APITimeoutError):
            impatient.markets.list()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    nobody = polymarket_us.PolymarketUS(
        gateway_base_url=f"http://127.0.0.1:{closed_port}", max_retries=0
    )
    with pytest.raises(APIConnectionError):
        nobody.markets.list()


def test_the_verified_signature_memo_changes_no_answer() -> None:
    """A verified (key, message, signature) is remembered; the key, the window and the
    permission are still checked on every call, and nothing else is accepted for it."""
    from pyexchange.api.rest import auth
    from pyexchange.service.auth import ED25519, ApiKey, KeyStore, RateLimiter

    public, secret = ed25519.generate()
    key = ApiKey("k1", "", {"read"}, {1}, rate=1e6, burst=10**6, scheme=ED25519, public_key=public)
    now = [1_700_000_000_000]
    checker = auth.VenueAuth(KeyStore([key]), RateLimiter(), clock_ms=lambda: now[0])
    calls = []
    real = key.verify_signature
    object.__setattr__(key, "verify_signature", lambda *a: calls.append(a) or real(*a))

    def headers(stamp: int, signature: str | None = None) -> dict[str, str]:
        return {
            "x-pm-access-key": "k1",
            "x-pm-timestamp": str(stamp),
            "x-pm-signature": signature or ed25519.sign(secret, f"{stamp}GET/v1/x".encode()),
        }

    async def main() -> None:
        stamp = now[0]
        for _ in range(3):
            assert await checker.authenticate(headers(stamp), "GET", "/v1/x", "read") is key
        assert len(calls) == 1  # verified once
        other = ed25519.sign(ed25519.generate()[1], f"{stamp}GET/v1/x".encode())
        for method, path, given in (("GET", "/v1/y", None), ("POST", "/v1/x", None), (0, 0, other)):
            with pytest.raises(auth.ApiError) as refused:
                await checker.authenticate(
                    headers(stamp, given), method or "GET", path or "/v1/x", "read"
                )
            assert refused.value.status == 401
        with pytest.raises(auth.ApiError) as forbidden:
            await checker.authenticate(headers(stamp), "GET", "/v1/x", "trade")
        assert forbidden.value.status == 403
        now[0] += 31_000  # the memo does not outlive the window
        with pytest.raises(auth.ApiError, match="from the server's clock"):
            await checker.authenticate(headers(stamp), "GET", "/v1/x", "read")
        auth.VERIFIED_KEPT, kept = 4, auth.VERIFIED_KEPT  # bounded: the oldest are forgotten
        try:
            for n in range(10):
                await checker.authenticate(headers(now[0] + n), "GET", "/v1/x", "read")
            assert len(checker._verified) == 4
            assert ("k1", f"{now[0] + 9}GET/v1/x", headers(now[0] + 9)["x-pm-signature"]) in (
                checker._verified
            )
        finally:
            auth.VERIFIED_KEPT = kept

    try:
        asyncio.run(main())
    finally:
        checker.close()


def test_signatures_are_checked_off_the_loop_thread() -> None:
    """``VerifyThread`` runs each check on its own thread and answers it on the loop: good
    and bad signatures of many concurrent checks each get their own answer, a check that
    raises fails only its caller, a caller that went away leaves the others answered,
    and a closed thread is replaced at the next check. Checks named alike while one is
    pending share its verification (each caller its own answer, one that went away
    changes nothing for the others; a check named so after the answer verifies again).
    Concurrent requests with the same headers are each accepted, verified once and
    remembered once."""
    import threading

    from pyexchange.api.rest import auth
    from pyexchange.service.auth import ED25519, ApiKey, KeyStore, RateLimiter

    public, secret = ed25519.generate()
    verifier = ed25519.Verifier(public)
    threads = set()

    def verify(message: bytes, signature: str) -> bool:
        threads.add(threading.get_ident())
        if message == b"boom":
            raise RuntimeError("boom")
        return verifier.verify(message, signature)

    checks = ed25519.VerifyThread()

    async def main() -> None:
        messages = [f"m{n}".encode() for n in range(50)]
        given = [ed25519.sign(secret, m) if n % 3 else "x" * 88 for n, m in enumerate(messages)]
        gone = checks.check(verify, b"m0", given[1])
        gone.cancel()
        futures = [checks.check(verify, m, g) for m, g in zip(messages, given, strict=True)]
        failing = checks.check(verify, b"boom", given[1])
        answers = await asyncio.gather(*futures)
        assert answers == [n % 3 != 0 for n in range(50)]
        with pytest.raises(RuntimeError, match="boom"):
            await failing
        assert threads and threading.get_ident() not in threads
        checks.close()
        assert await checks.check(verify, messages[1], given[1]) is True

        calls = []

        def counted(message: bytes, signature: str) -> bool:
            calls.append(message)
            return verifier.verify(message, signature)

        good, bad = ("k", b"m1", given[1]), ("k", b"m1", "x" * 88)
        shared = [checks.check(counted, b"m1", given[1], good) for _ in range(4)]
        shared[0].cancel()  # the first caller went away: the check still answers the rest
        refused = [checks.check(counted, b"m1", "x" * 88, bad) for _ in range(3)]
        assert await asyncio.gather(*shared[1:]) == [True] * 3
        assert await asyncio.gather(*refused) == [False] * 3
        assert len(calls) == 2
        assert await checks.check(counted, b"m1", given[1], good) is True
        assert len(calls) == 3

        key = ApiKey("k1", "", {"read"}, {1}, rate=1e6, burst=10**6, scheme=ED25519,
                     public_key=public)  # fmt: skip
        stamp = 1_700_000_000_000
        checker = auth.VenueAuth(KeyStore([key]), RateLimiter(), clock_ms=lambda: stamp)
        headers = {
            "x-pm-access-key": "k1",
            "x-pm-timestamp": str(stamp),
            "x-pm-signature": ed25519.sign(secret, f"{stamp}GET/v1/x".encode()),
        }
        try:
            before = len(threads)
            checker.checks = checks
            calls.clear()
            object.__setattr__(key, "_verifier", SimpleNamespace(verify=counted))
            same = [checker.authenticate(headers, "GET", "/v1/x", "read") for _ in range(5)]
            assert await asyncio.gather(*same) == [key] * 5
            assert len(checker._verified) == 1
            assert len(calls) == 1 and len(threads) == before
        finally:
            checker.close()

    try:
        asyncio.run(main())
    finally:
        checks.close()


@contextlib.contextmanager
def _bare_rest_server(limits: Any, answer: Any) -> Iterator[int]:
    """The HTTP server alone on a loop thread, ``answer`` on POST /v1/x; yields its port."""
    from pyexchange.api.rest.app import AddressLimiter, VenueApp
    from pyexchange.api.rest.http import RestServer

    app = VenueApp(limits, None, AddressLimiter(1e6, 10**6))
    app.add("POST", "/v1/x", answer, None)
    loop = asyncio.new_event_loop()
    rest = RestServer(app, "127.0.0.1", 0, limits)
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield asyncio.run_coroutine_threadsafe(rest.start(), loop).result(10)
    finally:
        asyncio.run_coroutine_threadsafe(rest.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def test_head_and_body_deadlines_close_only_stalled_connections() -> None:
    """One timer per connection watches its phase's deadline: a connection that sends
    nothing, or stalls in its head, or in a body whose deadline is shorter than the head's,
    is closed; a connection whose requests keep completing stays open past many head
    deadlines (its deadline moved, its timer found it not yet due)."""
    import socket

    from pyexchange.api.rest.app import json_response
    from pyexchange.api.rest.http import HttpLimits

    async def answer(request: Any, key: Any) -> Any:
        return json_response(b"{}")

    limits = HttpLimits(head_timeout_s=0.4, body_timeout_s=0.1, keep_alive_s=30)
    request = b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"

    def connect() -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(10)  # a connection left open would fail the test, not hang it
        return sock

    def closed(sock: socket.socket) -> bool:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
            assert data.startswith(b"HTTP/1.1 200")

    with _bare_rest_server(limits, answer) as port:
        silent, head, body, busy = connect(), connect(), connect(), connect()
        head.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\n")
        body.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n{")
        for _ in range(8):  # 8 requests, 0.2 s apart: past the first head deadline
            busy.sendall(request)
            assert busy.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(0.2)
        busy.sendall(request)
        assert busy.recv(4096).startswith(b"HTTP/1.1 200")
        for sock in (silent, head, body):
            assert closed(sock)
        for sock in (silent, head, body, busy):
            sock.close()


def test_requests_of_a_connection_are_answered_in_order_within_their_limits() -> None:
    """The HTTP protocol (``http.venue_protocol``): pipelined requests answered in order, a
    request refused before its body (404, a declared body above the limit) and one whose
    chunked body goes past the limit as it arrives (413) leave the connection serving the
    next request; HTTP/1.0 is answered and closed; the handler runs once per request."""
    import socket

    from pyexchange.api.rest.app import json_response
    from pyexchange.api.rest.http import HttpLimits

    bodies: list[bytes] = []

    async def answer(request: Any, key: Any) -> Any:
        bodies.append(request.body)
        await asyncio.sleep(0.01 if request.body == b"slow" else 0)
        return json_response(b'{"n":%d}' % len(bodies))

    def post(body: bytes) -> bytes:
        return b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body),
            body,
        )

    def responses(sock: socket.socket, count: int) -> list[bytes]:
        data, out = b"", []
        while len(out) < count:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"closed after {out}"
                data += chunk
            head, _, data = data.partition(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            while len(data) < length:
                data += sock.recv(65536)
            out.append(head.split(b"\r\n")[0] + b" " + data[:length])
            data = data[length:]
        return out

    with _bare_rest_server(HttpLimits(max_body_bytes=64), answer) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(post(b"slow") + post(b"a") + b"POST /v1/nope HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 2\r\n\r\n{}" + post(b"b"))  # fmt: skip
            got = responses(s, 4)
            assert got[0] == b'HTTP/1.1 200 OK {"n":1}' and got[1] == b'HTTP/1.1 200 OK {"n":2}'
            assert got[2].startswith(b"HTTP/1.1 404 ") and got[3] == b'HTTP/1.1 200 OK {"n":3}'
            s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n")
            assert responses(s, 1)[0].startswith(b"HTTP/1.1 413 ")  # not waiting for it
            s.sendall(b"x" * 65 + post(b"c"))  # the refused body is skipped
            assert responses(s, 1) == [b'HTTP/1.1 200 OK {"n":4}']
            s.sendall(b"POST /v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"28\r\n" + b"y" * 40 + b"\r\n")  # fmt: skip
            s.sendall(b"28\r\n" + b"y" * 40 + b"\r\n")
            assert responses(s, 1)[0].startswith(b"HTTP/1.1 413 ")
            s.sendall(b"0\r\n\r\n" + post(b"d"))
            assert responses(s, 1) == [b'HTTP/1.1 200 OK {"n":5}']
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(post(b"e").replace(b"HTTP/1.1", b"HTTP/1.0"))
            assert responses(s, 1) == [b'HTTP/1.1 200 OK {"n":6}']
            assert s.recv(1) == b""  # closed
        assert bodies == [b"slow", b"a", b"b", b"c", b"d", b"e"]
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            # a pipelined request that expects "100 Continue" gets it on its turn
            s.sendall(post(b"slow") + b"POST /v1/x HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 1\r\nExpect: 100-continue\r\n\r\n")  # fmt: skip
            data = b""
            while b"100 Continue\r\n\r\n" not in data:
                chunk = s.recv(65536)
                assert chunk, data
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 OK") and b'{"n":7}' in data
            s.sendall(b"f")
            assert responses(s, 1) == [b'HTTP/1.1 200 OK {"n":8}']
        assert bodies[6:] == [b"slow", b"f"]


def test_a_response_is_one_write_with_a_length(server: VenueServer) -> None:
    """Each response's head and body go out in one send, with a content-length (not
    chunked); a HEAD's head still goes out; ``Expect: 100-continue`` is answered before
    the body; keep-alive goes on."""
    import socket

    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:

        def answer(request: bytes) -> bytes:
            s.sendall(request)
            data = b""
            while b"\r\n\r\n" not in data:
                data += s.recv(65536)
            head, _, body = data.partition(b"\r\n\r\n")
            lengths = [
                int(line.split(b":")[1]) for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]  # fmt: skip
            length = lengths[0] if lengths else 0
            while len(body) < length and not request.startswith(b"HEAD"):
                body += s.recv(65536)
            assert b"transfer-encoding" not in head.lower()
            return head + b"\r\n\r\n" + body

        got = answer(b"GET /v1/market/slug/" + SLUG.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert got.startswith(b"HTTP/1.1 200 ") and SLUG.encode() in got
        assert answer(b"HEAD /v1/markets HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 405")
        s.sendall(b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n")
        assert answer(b"Content-Length: 2\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        assert answer(b"{}").startswith(b"HTTP/1.1 401 ")
