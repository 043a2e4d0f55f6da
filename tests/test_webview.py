"""The web view (docs/webview.md) in a real browser: Debian's headless chromium driven by
Selenium against a real ``pyexchange demo`` process (the demo bots trading), on fixed ports so
that a restarted server comes back where the page expects it.

One server and one browser session for the module (CI time); the tests run in file order and
build on each other (the key pasted in the second is used by the rest). After every test the
browser's console must hold no error; the restart test allows only the connection errors of
the seconds the server was down. Screenshots of each page go to ``$PYX_ARTEFACTS/webview``
(default: the temporary directory's ``pyexchange-artefacts``).

Without chromium and chromedriver the browser tests are skipped, or fail when
``PYX_REQUIRE_BROWSER=1`` (CI installs both, as it does nats-server).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from decimal import Decimal
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import websockets
from polymarket_us import PolymarketUS
from polymarket_us.auth import create_auth_headers
from venue_support import ENV, OUTSIDE

SLUG = "rain-in-paris-tomorrow"
ARTEFACTS = Path(
    os.environ.get("PYX_ARTEFACTS") or Path(tempfile.gettempdir()) / "pyexchange-artefacts"
)
SHOTS = ARTEFACTS / "webview"
STATIC = Path(__file__).resolve().parents[1] / "pyexchange" / "api" / "rest" / "static"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DemoServer:
    """``pyexchange demo`` in its own process, on the same HTTP port across restarts."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.config = root / "config.json"
        self.log = root / "server.log"
        self.http_port = _free_port()
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen[str] | None = None
        # the venue's rate limits as deployed (the page must live within them); a 1 s
        # heartbeat so that the staleness test is short
        self.config.write_text(json.dumps({"ws_heartbeat_s": 1.0}))
        self.keys: dict[str, dict[str, Any]] = {}

    def start(self, timeout: float = 40.0) -> None:
        endpoint = self.data_dir / "server.json"
        endpoint.unlink(missing_ok=True)
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pyexchange", "demo", "--config", str(self.config),
                 "--data-dir", str(self.data_dir), "--port", "0",
                 "--http-port", str(self.http_port), "--metrics-port", "-1",
                 "--log-level", "WARNING"],
                stdout=subprocess.DEVNULL, stderr=log, text=True, env=ENV, cwd=OUTSIDE,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {self.log.read_text()[-2000:]}")
            try:
                info = json.loads(endpoint.read_text())
                if info.get("pid") == self.process.pid and info.get("http"):
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        keys = json.loads((self.data_dir / "keys.json").read_text())["keys"]
        self.keys = {k["name"]: k for k in keys}

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as answer:
            return json.loads(answer.read())

    def client(self) -> PolymarketUS:
        key = self.keys["pm-trader-1"]
        return PolymarketUS(
            key_id=key["key_id"], secret_key=key["secret"],
            gateway_base_url=self.url, api_base_url=self.url,
        )  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    running = DemoServer(tmp_path_factory.mktemp("webview"))
    running.start()
    yield running
    running.stop()


def _browser_paths() -> tuple[str, str] | None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (chromium, driver) if chromium and driver else None


@pytest.fixture(scope="module")
def driver(server: DemoServer) -> Any:
    paths = _browser_paths()
    if paths is None:
        message = "the browser tests need Debian's chromium and chromium-driver"
        if os.environ.get("PYX_REQUIRE_BROWSER") == "1":
            pytest.fail(f"{message} (PYX_REQUIRE_BROWSER=1)", pytrace=False)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = paths[0]
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1000"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(paths[1]), options=options)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield browser
    browser.quit()


@pytest.fixture
def page(driver: Any) -> Any:
    """The browser, with its console checked after the test: no error."""
    yield driver
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def wait_for(condition: Any, timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.05)


def status(page: Any) -> str:
    return page.execute_script("return document.getElementById('status').dataset.state")


def shot(page: Any, name: str) -> None:
    page.save_screenshot(str(SHOTS / f"{name}.png"))


LADDER = """return [...document.querySelectorAll('#ladder tbody tr[data-side]')]
  .map(r => [r.dataset.side, r.dataset.px, r.dataset.qty])"""


def rest_levels(server: DemoServer) -> tuple[list[list[str]], str]:
    book = server.get(f"/v1/markets/{SLUG}/book")["marketData"]
    asks = [["ask", lv["px"]["value"], lv["qty"]] for lv in reversed(book["offers"])]
    bids = [["bid", lv["px"]["value"], lv["qty"]] for lv in book["bids"]]
    return asks + bids, (book.get("stats") or {}).get("sharesTraded", "0")


def on_the_market_page(page: Any, server: DemoServer) -> None:
    """The open market's page, live, with trader 1's key in the session: each test that needs
    it gets there itself, so it also passes when run alone (``-k``)."""
    signed_in = page.current_url.startswith(server.url) and page.execute_script(
        "return sessionStorage.length"
    )
    if not signed_in:
        key = server.keys["pm-trader-1"]
        fragment = urllib.parse.urlencode({"key": key["key_id"], "secret": key["secret"]})
        page.get(server.url + "/#" + fragment)
    page.get(server.url + f"/#/market/{SLUG}")
    wait_for(lambda: status(page) == "live", what="live streams")
    wait_for(lambda: page.execute_script(LADDER), what="the ladder")


def ladder_follows_the_book(page: Any, server: DemoServer, matches: int) -> None:
    """After each of ``matches`` trades, the ladder shows the REST book within a second (a
    book that moved on before the page showed it is inconclusive and tried again)."""
    _, traded = rest_levels(server)
    found = 0
    deadline = time.monotonic() + 60
    while found < matches:
        assert time.monotonic() < deadline, "too few trades to compare with"
        levels, now_traded = rest_levels(server)
        if now_traded == traded:
            time.sleep(0.2)
            continue
        traded = now_traded
        seen_at = time.monotonic()
        while time.monotonic() - seen_at < 1.0:
            if page.execute_script(LADDER) == levels:
                found += 1
                break
            time.sleep(0.05)
        else:
            later, _ = rest_levels(server)
            assert later != levels, (
                f"the ladder did not show the REST book within 1 s: {page.execute_script(LADDER)}"
                f" != {levels}"
            )


# ---------------------------------------------------------------- no browser needed


def test_the_installed_package_ships_every_page_file() -> None:
    """The tests run the installed wheel: each file of static/ is in it, byte for byte."""
    installed = resources.files("pyexchange.api.rest") / "static"
    source = sorted(p.name for p in STATIC.iterdir() if p.is_file())
    assert "index.html" in source and "main.js" in source
    for name in source:
        assert (installed / name).read_bytes() == (STATIC / name).read_bytes(), name


def test_pages_and_health_over_http(server: DemoServer) -> None:
    with urllib.request.urlopen(server.url + "/", timeout=10) as answer:
        assert answer.headers["content-type"].startswith("text/html")
        assert "script-src 'self'" in answer.headers["content-security-policy"]
        assert b'src="/web/main.js"' in answer.read()
    with urllib.request.urlopen(server.url + "/web/main.js", timeout=10) as answer:
        assert answer.headers["content-type"].startswith("text/javascript")
        etag = answer.headers["etag"]
    again = urllib.request.Request(server.url + "/web/main.js", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as cached:
        urllib.request.urlopen(again, timeout=10)
    assert cached.value.code == 304
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(server.url + "/web/nothing.js", timeout=10)
    assert missing.value.code == 404

    def commands() -> float:
        health = server.get("/ops/v1/health")
        assert health["status"] == "SERVING" and health["heartbeatSeconds"] == 1.0
        family = health["metrics"]["pyexchange_commands_total"]
        return sum(s["value"] for s in family["series"])

    first = commands()
    wait_for(lambda: commands() > first, 20, "the bots' commands in the health metrics")
    health = server.get("/ops/v1/health")["metrics"]
    fsync = health["pyexchange_journal_fsync_seconds"]["series"][0]
    assert fsync["count"] > 0 and fsync["buckets"][-1][0] == "+Inf"  # fsync policy batch
    assert {s["labels"]["feed"] for s in health["pyexchange_subscribers"]["series"]} == {
        "marketdata",
        "dropcopy",
    }


def test_a_websocket_upgrade_may_carry_the_signature_in_the_query(server: DemoServer) -> None:
    """What a browser does: the three X-PM values as query parameters (it cannot set headers)."""
    key = server.keys["pm-trader-1"]
    base = server.url.replace("http://", "ws://") + "/v1/ws/markets?"

    async def main() -> None:
        signed = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/markets")
        async with websockets.connect(base + urllib.parse.urlencode(signed)) as socket_:
            request = {"requestId": "b", "subscriptionType": "SUBSCRIPTION_TYPE_MARKET_DATA"}
            await socket_.send(json.dumps({"subscribe": {**request, "marketSlugs": [SLUG]}}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket_.recv(), 10))
                if "marketData" in frame:
                    assert frame["marketData"]["marketSlug"] == SLUG
                    break
        wrong = create_auth_headers(key["key_id"], key["secret"], "GET", "/v1/ws/private")
        with pytest.raises(websockets.InvalidStatus) as refused:  # signed for the other path
            await websockets.connect(base + urllib.parse.urlencode(wrong))
        assert refused.value.response.status_code == 401

    asyncio.run(main())


# ---------------------------------------------------------------- in the browser


def test_market_list_polled_then_live_with_a_pasted_key(page: Any, server: DemoServer) -> None:
    page.get(server.url + "/")
    wait_for(lambda: status(page) == "polling", what="the polled list")
    rows = wait_for(
        lambda: page.execute_script(
            "return [...document.querySelectorAll('#market-list tbody tr')]"
            ".map(r => r.dataset.slug)"
        ),
        what="the market rows",
    )
    assert SLUG in rows and len(rows) == 3
    shot(page, "markets-polled")
    key = server.keys["pm-trader-1"]
    page.find_element("id", "key-id").send_keys(key["key_id"])
    page.find_element("id", "key-secret").send_keys(key["secret"])
    page.find_element("id", "key-use").click()
    wait_for(lambda: status(page) == "live", what="live streams")
    cells = wait_for(
        lambda: page.execute_script(
            f"const r = document.querySelector('#market-list tr[data-slug=\"{SLUG}\"]');"
            "return r && [...r.cells].map(c => c.textContent)"
        ),
        what="the market's row",
    )
    assert cells[1] == "open"
    assert "—" not in (cells[2], cells[3]), cells  # the makers quote both sides
    assert page.execute_script("return sessionStorage.length") == 1  # the key: session only
    assert page.execute_script("return localStorage.length") == 0
    shot(page, "markets")


def test_the_ladder_shows_the_rest_book_within_a_second_of_a_trade(
    page: Any, server: DemoServer
) -> None:
    on_the_market_page(page, server)
    ladder_follows_the_book(page, server, matches=3)
    trades = page.execute_script("return document.querySelectorAll('#tape tbody tr').length")
    assert trades > 0
    load = page.execute_script("return window.pyexchange.load")
    assert load["redrawsPerS"] <= 61  # at most one redraw per animation frame
    shot(page, "market")


def _ticket(page: Any, intent: str, price: str, quantity: str) -> str:
    from selenium.webdriver.support.ui import Select

    form = page.find_element("id", "ticket")
    Select(form.find_element("name", "intent")).select_by_value(intent)
    Select(form.find_element("name", "type")).select_by_value("ORDER_TYPE_LIMIT")
    Select(form.find_element("name", "tif")).select_by_value("TIME_IN_FORCE_GOOD_TILL_CANCEL")
    for name, value in (("price", price), ("quantity", quantity)):
        field = form.find_element("name", name)
        field.clear()
        field.send_keys(value)
    page.find_element("id", "ticket-send").click()
    text = wait_for(
        lambda: (
            (t := page.find_element("id", "ticket-result").text).startswith("order ")
            and t.endswith(" new")
            and t
        ),
        what="the order's NEW execution",
    )
    return text.split()[1]


def _mine(page: Any, side: str, price: str) -> str | None:
    index = 0 if side == "bid" else 4
    return page.execute_script(
        f'const r = document.querySelector(\'#ladder tr[data-side="{side}"][data-px="{price}"]\');'
        f"return r ? r.cells[{index}].textContent : null"
    )


def test_an_order_from_the_ticket_shows_in_the_ladder_and_open_orders_and_cancels(
    page: Any, server: DemoServer
) -> None:
    on_the_market_page(page, server)
    client = server.client()
    try:
        bid = _ticket(page, "ORDER_INTENT_BUY_LONG", "0.01", "3")  # a bid, far from the makers
        ask = _ticket(page, "ORDER_INTENT_BUY_SHORT", "0.99", "2")  # buy NO at $0.01: a YES ask
        wait_for(lambda: _mine(page, "bid", "0.01") == "3", what="the bid in the ladder")
        wait_for(lambda: _mine(page, "ask", "0.99") == "2", what="the ask in the ladder")
        orders = page.execute_script(
            "return [...document.querySelectorAll('#orders tr[data-order]')]"
            ".map(r => r.dataset.order)"
        )
        assert {bid, ask} <= set(orders)
        assert client.orders.retrieve(bid)["order"]["state"] == "ORDER_STATE_NEW"
        shot(page, "market-with-orders")
        for order in (bid, ask):  # one at a time: a cancel redraws the table under the other
            page.find_element("css selector", f'button[data-cancel="{order}"]').click()
            gone = f"return !document.querySelector('#orders tr[data-order=\"{order}\"]')"
            wait_for(lambda gone=gone: page.execute_script(gone), what=f"{order} canceled")
        wait_for(lambda: not _mine(page, "bid", "0.01"), what="the bid gone from the ladder")
        wait_for(lambda: not _mine(page, "ask", "0.99"), what="the ask gone from the ladder")
        for order in (bid, ask):
            assert client.orders.retrieve(order)["order"]["state"] == "ORDER_STATE_CANCELED"
    finally:
        client.close()


def test_a_market_order_from_the_ticket_fills_and_moves_positions_and_balance(
    page: Any, server: DemoServer
) -> None:
    """Sell 1 YES at market (account 1 holds 1,000): filled against a maker's bid; the
    position (YES - NO) goes from 0 to -1 and the cash up, on the page as over REST."""
    from selenium.webdriver.support.ui import Select

    on_the_market_page(page, server)

    def cells(table: str, key: str) -> Any:
        return page.execute_script(
            f"const r = document.querySelector('#{table} tr[{key}]');"
            "return r && [...r.cells].map(c => c.textContent)"
        )

    net = wait_for(lambda: cells("positions", f'data-position="{SLUG}"'), what="positions")[1]
    cash = wait_for(lambda: cells("balance", "data-balance=cash"), what="balance")[1]
    form = page.find_element("id", "ticket")
    Select(form.find_element("name", "intent")).select_by_value("ORDER_INTENT_SELL_LONG")
    Select(form.find_element("name", "type")).select_by_value("ORDER_TYPE_MARKET")
    assert form.find_element("name", "price").get_attribute("disabled") is not None
    assert form.find_element("name", "tif").get_attribute("value").endswith("IMMEDIATE_OR_CANCEL")
    quantity = form.find_element("name", "quantity")
    quantity.clear()
    quantity.send_keys("1")
    page.find_element("id", "ticket-send").click()
    wait_for(
        lambda: page.find_element("id", "ticket-result").text.endswith(" filled"),
        what="the market order filled",
    )
    expected = format(Decimal(net) - 1, "f")
    wait_for(
        lambda: Decimal(cells("positions", f'data-position="{SLUG}"')[1]) == Decimal(expected),
        what="the position one YES shorter",
    )
    wait_for(lambda: cells("balance", "data-balance=cash")[1] != cash, what="the cash moved")
    client = server.client()
    try:
        position = client.portfolio.positions({"market": SLUG})["positions"][SLUG]
        assert Decimal(position["netPositionDecimal"]) == Decimal(expected)
    finally:
        client.close()


def test_stale_when_the_heartbeats_stop(page: Any, server: DemoServer) -> None:
    """The server frozen (SIGSTOP): no heartbeat for 2.5 periods, the page says stale; thawed,
    live again."""
    on_the_market_page(page, server)
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: status(page) == "stale", 6, "stale")
    finally:
        server.process.send_signal(signal.SIGCONT)
    wait_for(lambda: status(page) == "live", 10, "live again")


def test_a_missed_trade_frame_is_a_gap(page: Any, server: DemoServer) -> None:
    """One trade frame of the open market lost (the page's own hook drops it): the tape no
    longer adds up to the book's sharesTraded, the page says stale, counts again and is live."""
    on_the_market_page(page, server)
    counted = "const l = window.pyexchange.live, t = l.tapes.get(l.focus); return t && t.after > 0"
    wait_for(lambda: page.execute_script(counted), 30, "a trade counted since the page opened")
    page.execute_script("window.pyexchange.live.debug.dropTrades = 1")  # a new trade's frame
    wait_for(
        lambda: status(page) == "stale"
        and "missed" in page.find_element("id", "status").get_attribute("title"),
        30,
        "the gap seen",
    )  # fmt: skip
    wait_for(lambda: status(page) == "live", 15, "live again")


def test_the_operator_page(page: Any, server: DemoServer) -> None:
    page.get(server.url + "/#/ops")
    cards = (
        'return Object.fromEntries([...document.querySelectorAll("[data-card]")]'
        '.map(c => [c.dataset.card, c.querySelector(".v").textContent]))'
    )

    def ready() -> Any:
        shown = page.execute_script(cards)
        if not shown or shown.get("commands/s") in (None, "—", "0/s"):
            return None
        if shown.get("ack p99") == "—" or shown.get("journal fsync (p50, p99)") == "no fsync":
            return None
        return shown

    shown = wait_for(ready, 20, "the engine's health")
    assert shown["status"] == "serving"
    subscribers = page.execute_script(
        "return [...document.querySelectorAll('#ops-subscribers tr')].map(r => r.textContent)"
    )
    assert any(s.startswith("WebSocket markets") for s in subscribers)
    assert page.execute_script(
        "return document.querySelectorAll('#ops-latency-table tbody tr').length"
    )
    time.sleep(8)  # not a check: a few seconds of history in the screenshot's sparklines
    shot(page, "operator")


def test_a_server_restart_is_survived(page: Any, server: DemoServer) -> None:
    page.get(server.url + f"/#/market/{SLUG}")
    wait_for(lambda: status(page) == "live", what="live streams")
    assert not [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    server.stop()
    wait_for(lambda: status(page) == "down", 10, "the page seeing the server gone")
    shot(page, "market-reconnecting")
    server.start()
    wait_for(lambda: status(page) == "live", 30, "live after the restart")
    ladder_follows_the_book(page, server, matches=1)
    # while it was down: connection errors only (the browser logs each refused attempt)
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert all(e["source"] == "network" for e in errors), errors


def test_a_sign_in_link_puts_the_key_in_the_session_only(page: Any, server: DemoServer) -> None:
    """The banner's link: ``#key=ID&secret=S`` (URL-encoded) signs in and leaves the address bar."""
    on_the_market_page(page, server)
    page.find_element("id", "key-forget").click()
    wait_for(lambda: status(page) == "polling", what="signed out")
    assert page.execute_script("return sessionStorage.length") == 0
    key = server.keys["pm-trader-1"]
    fragment = urllib.parse.urlencode({"key": key["key_id"], "secret": key["secret"]})
    page.get(server.url + "/#" + fragment)
    wait_for(lambda: status(page) == "live", what="live with the link's key")
    assert page.execute_script("return location.hash") == "#/"
    assert page.execute_script("return sessionStorage.length") == 1
