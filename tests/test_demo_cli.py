"""The demo bots and the client command line, end to end.

``pyexchange demo`` runs as a subprocess on a free loopback port with a fresh
data directory (module fixture); the tests poll it with a real gRPC client
(conditions with a deadline, never a timing assertion) and run the client
commands as subprocesses that find the server and their key through the data
directory (``server.json`` and ``keys.json``), as a newcomer's second terminal
would.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.app.console import _Book, render_book
from pyexchange.service.auth import KeyStore

DEADLINE = 20.0  # seconds to wait for a condition (a generous bound, not a measurement)
# Children start outside the repository, so that they import the installed packages
# (a source tree without its compiled core would shadow them from the current directory).
OUTSIDE = tempfile.gettempdir()
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


class Demo:
    def __init__(self, process: subprocess.Popen[str], data_dir: Path, banner: list[str]) -> None:
        self.process = process
        self.data_dir = data_dir
        self.banner = banner
        listening = next(line for line in banner if line.startswith("pyexchange: listening on "))
        self.port = int(listening.rsplit(":", 1)[1])
        self.target = f"127.0.0.1:{self.port}"
        self.keys = KeyStore.load(data_dir / "keys.json")

    def cli(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """``pyexchange ARGS --data-dir DATA_DIR``: the target and key come from the data dir."""
        return subprocess.run(
            [sys.executable, "-m", "pyexchange", *args, "--data-dir", str(self.data_dir)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=ENV,
            cwd=OUTSIDE,
        )

    def query(self, key_name: str, fn: Callable[[ExchangeClient], Awaitable[Any]]) -> Any:
        key = self.keys.by_name(key_name)

        async def run() -> Any:
            async with ExchangeClient(self.target, key.key_id, key.secret) as client:
                return await fn(client)

        return asyncio.run(run())

    def wait_for(self, what: str, condition: Callable[[], Any]) -> Any:
        deadline = time.monotonic() + DEADLINE
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"not reached within {DEADLINE} s: {what}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def start_demo(data_dir: Path) -> Demo:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyexchange",
            "demo",
            "--data-dir",
            str(data_dir),
            "--port",
            "0",
            "--metrics-port",
            "-1",
            "--http-port",
            "0",
            "--fsync",
            "none",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=OUTSIDE,
    )
    assert process.stdout is not None
    banner: list[str] = []
    for line in process.stdout:
        banner.append(line.rstrip("\n"))
        if line.startswith("  try"):  # the last part of the banner: the bots run
            return Demo(process, data_dir, banner)
    process.kill()
    raise AssertionError(f"the demo did not start (exit {process.wait()}): {banner}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    running = start_demo(tmp_path_factory.mktemp("demo") / "data")
    try:
        yield running
    finally:
        running.stop()


def _book(demo: Demo, market: int) -> pb.MarketDataUpdate:
    return demo.query("viewer", lambda c: c.book(market))


# ------------------------------------------------------------------- bots


def test_banner_names_the_port_keys_bots_and_next_commands(demo: Demo) -> None:
    text = "\n".join(demo.banner)
    assert demo.banner[0].startswith("pyexchange: listening on 127.0.0.1:")
    for name in ("trader-1", "trader-2", "trader-3", "trader-4", "viewer", "admin"):
        key = demo.keys.by_name(name)
        assert f"{key.key_id}  {key.secret}" in text  # demo keys are printed in full
    assert (
        "market makers on account(s) 2, 3 and takers on account(s) 4 trade market(s) 1, 2, 3; "
        "account 1 (--key trader-1) is yours" in text
    )
    assert f"pyexchange book 1 --watch --data-dir {demo.data_dir}" in text
    assert (demo.data_dir / "server.json").exists()


def test_bots_quote_every_market_with_all_four_intents(demo: Demo) -> None:
    for market in (1, 2, 3):
        demo.wait_for(
            f"bids and asks in market {market}",
            lambda m=market: (snap := _book(demo, m).snapshot).bids and snap.asks,
        )
        snap = _book(demo, market).snapshot
        assert snap.state == pb.OPEN
        best_bid, best_ask = float(snap.bids[0].price), float(snap.asks[0].price)
        assert 0 < best_bid < best_ask < 1

    def intents() -> set[int]:
        seen: set[int] = set()
        for account in (2, 3):
            state = demo.query("viewer", lambda c, a=account: c.get_account(a))
            seen.update(order.intent for order in state.orders)
        return seen if len(seen) == 4 else set()

    assert demo.wait_for("makers resting all four intents", intents) == {
        pb.BUY_YES,
        pb.SELL_YES,
        pb.BUY_NO,
        pb.SELL_NO,
    }
    # The human's account is left alone.
    assert not demo.query("trader-1", lambda c: c.get_account(1)).orders


def test_bots_trade(demo: Demo) -> None:
    async def trades(client: ExchangeClient) -> int:
        """Trade prints seen on a subscription to every market within a second."""
        count = 0
        call = client.subscribe_market_data([1, 2, 3])
        try:
            async with asyncio.timeout(1.0):
                async for update in call:
                    count += update.HasField("trade")
        except TimeoutError:
            pass
        finally:
            call.cancel()  # type: ignore[attr-defined]
        return count

    demo.wait_for("trades in the demo markets", lambda: demo.query("viewer", trades))
    taker = demo.query("viewer", lambda c: c.get_account(4))
    assert any((p.yes, p.no) != ("1000", "1000") for p in taker.positions)


# -------------------------------------------------------------------- cli


def test_book_prints_the_ladder(demo: Demo) -> None:
    demo.wait_for("a two-sided book", lambda: _book(demo, 1).snapshot.asks)
    result = demo.cli("book", "1", "--depth", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.match(r"market 1  OPEN  tick \$0\.01  market seq \d+$", lines[0])
    asks = [line for line in lines if line.startswith("  ask ")]
    bids = [line for line in lines if line.startswith("  bid ")]
    assert 1 <= len(asks) <= 3 and 1 <= len(bids) <= 3
    for line in asks + bids:  # price in dollars, shares, order count
        assert re.match(r"  (ask|bid)\s+\$0\.\d\d\s+[\d,.]+\s+\d+$", line), line
    ask_prices = [float(line.split("$")[1].split()[0]) for line in asks]
    bid_prices = [float(line.split("$")[1].split()[0]) for line in bids]
    assert ask_prices == sorted(ask_prices, reverse=True)  # farthest ask first
    assert bid_prices == sorted(bid_prices, reverse=True)  # best bid first
    assert min(ask_prices) > max(bid_prices)
    assert any("spread $" in line for line in lines)

    fine = demo.cli("book", "3")  # tick 0.001: three decimals
    assert fine.returncode == 0, fine.stderr
    assert "tick $0.001" in fine.stdout
    assert re.search(r"  (ask|bid)\s+\$0\.\d{3}\s", fine.stdout)


def test_book_watch_redraws_from_the_subscription(demo: Demo) -> None:
    result = demo.cli("book", "2", "--watch", "--frames", "3", "--interval", "0.1")
    assert result.returncode == 0, result.stderr
    frames = [f for f in result.stdout.split("\n\n") if f.strip()]
    assert len(frames) == 3
    for frame in frames:
        assert frame.strip().startswith("market 2  OPEN")
        assert "last trades" in frame
        assert "(Ctrl-C to stop)" in frame


def test_trade_orders_and_cancel(demo: Demo) -> None:
    placed = demo.cli("trade", "buy-yes", "1", "0.02", "7", "--client-id", "4242")
    assert placed.returncode == 0, placed.stderr
    assert placed.stdout.startswith("buy-yes 7 @ $0.02 on market 1, account 1: limit (GTC)"), (
        placed.stdout
    )
    match = re.search(r"order (\d+): RESTING  \(seq \d+\)", placed.stdout)
    assert match, placed.stdout
    order_id = match.group(1)
    assert "filled 0, resting 7" in placed.stdout

    orders = demo.cli("orders")
    assert orders.returncode == 0, orders.stderr
    assert orders.stdout.startswith("account 1\n  cash      $")
    assert re.search(r"\$[\d,.]+ free, \$0\.14\d* reserved", orders.stdout), orders.stdout
    assert "open orders: 1" in orders.stdout
    assert re.search(rf"\s{order_id}\s+1\s+BUY_YES\s+\$0\.02\s+7\s+GTC\s+4242", orders.stdout)
    assert re.search(r"\s+1\s+1,000\s+0\s+1,000\s+0", orders.stdout)  # market 1 position

    canceled = demo.cli("cancel", order_id)
    assert canceled.returncode == 0, canceled.stderr
    assert canceled.stdout.strip().startswith(f"canceled order {order_id} (account 1, seq ")
    after = demo.cli("orders")
    assert "open orders: 0" in after.stdout

    again = demo.cli("cancel", order_id)  # gone: the engine's reject, reason and message
    assert again.returncode == 1
    assert again.stdout.strip() == (
        "rejected: UNKNOWN_ORDER: no resting order with this id for the account "
        "(filled, canceled, expired or unknown)"
    )


def test_other_accounts_and_cancel_all(demo: Demo) -> None:
    viewer = demo.cli("orders", "--key", "viewer")  # every account the key may see
    assert viewer.returncode == 0, viewer.stderr
    assert [line for line in viewer.stdout.splitlines() if line.startswith("account ")] == [
        "account 1",
        "account 2",
        "account 3",
        "account 4",
    ]
    four = demo.cli("orders", "--account", "4")  # picks trader-4's key
    assert four.returncode == 0 and four.stdout.startswith("account 4\n")
    denied = demo.cli("orders", "--account", "2", "--key", "trader-1")
    assert denied.returncode == 1
    assert denied.stderr.startswith("refused: PERMISSION_DENIED: ")

    for price in ("0.02", "0.03"):
        assert demo.cli("trade", "sell-no", "1", price, "2").returncode == 0
    assert demo.cli("trade", "buy-no", "2", "0.98", "1", "--gtd", "60").returncode == 0
    one = demo.cli("cancel", "--all", "--market", "1")
    assert one.stdout.strip() == "canceled 2 order(s) of account 1 in market 1"
    rest = demo.cli("cancel", "--all")
    assert rest.stdout.strip() == "canceled 1 order(s) of account 1"


def test_market_orders_and_buys_by_cash(demo: Demo) -> None:
    demo.wait_for("asks in market 1", lambda: _book(demo, 1).snapshot.asks)
    bought = demo.cli("trade", "buy-yes", "1", "0.99", "--market", "--cash", "3")
    assert bought.returncode == 0, bought.stdout + bought.stderr
    first = bought.stdout.splitlines()[0]
    assert first == "buy-yes for $3 on market 1, account 1: market order (IOC), worst price $0.99"
    assert re.search(r"order \d+: (FILLED|(PARTIALLY_FILLED|CANCELED) \(UNFILLED\))", bought.stdout)
    assert re.search(
        r"  fill [\d.]+ @ \$0\.\d\d  fee \$[\d.]+  (COMPLEMENTARY|MINT)", bought.stdout
    )

    demo.wait_for("bids in market 1", lambda: _book(demo, 1).snapshot.bids)
    sold = demo.cli("trade", "sell-yes", "1", "0.01", "2", "--market", "--fok")
    assert sold.returncode in (0, 1), sold.stderr  # FOK may find less than 2 at the touch
    assert "market order (FOK), worst price $0.01" in sold.stdout


def test_rejects_and_refusals_print_their_reason(demo: Demo) -> None:
    poor = demo.cli("trade", "buy-yes", "1", "0.50", "10000000")
    assert poor.returncode == 1
    assert "rejected: INSUFFICIENT_BALANCE: not enough free cash or shares" in poor.stdout

    demo.wait_for("asks in market 1", lambda: _book(demo, 1).snapshot.asks)
    crossing = demo.cli("trade", "buy-yes", "1", "0.99", "1", "--post-only")
    assert crossing.returncode == 1
    assert "rejected: POST_ONLY_WOULD_CROSS: the post-only order would have traded" in (
        crossing.stdout
    )

    off_tick = demo.cli("trade", "buy-yes", "1", "0.555", "1")
    assert off_tick.returncode == 1
    assert off_tick.stderr.strip() == (
        "refused: INVALID_ARGUMENT: price '0.555' is not on the $0.01 tick grid "
        "between 0.01 and 0.99"
    )
    no_market = demo.cli("trade", "buy-yes", "99", "0.5", "1")
    assert no_market.returncode == 1
    assert "rejected: UNKNOWN_MARKET: no such market" in no_market.stdout

    usage = demo.cli("trade", "sell-yes", "1", "0.5", "--market", "--cash", "5")
    assert usage.returncode == 2
    assert "--cash (spend at most $X) is for buy-yes and buy-no" in usage.stderr


def test_no_keys_or_no_server_say_what_to_do(demo: Demo, tmp_path: Path) -> None:
    missing = subprocess.run(
        [sys.executable, "-m", "pyexchange", "book", "1", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=OUTSIDE,
        timeout=30,
    )
    assert missing.returncode == 2
    assert f"no keys file at {tmp_path / 'keys.json'}: run `pyexchange serve`" in missing.stderr

    gone = demo.cli("book", "1", "--target", "127.0.0.1:1")
    assert gone.returncode == 2
    assert gone.stderr.startswith("pyexchange: cannot reach the exchange at 127.0.0.1:1 (")


# ------------------------------------------------------------- shutdown


def test_sigint_stops_the_bots_and_cancels_their_orders(tmp_path: Path) -> None:
    demo = start_demo(tmp_path / "data")
    try:
        demo.wait_for(
            "maker orders", lambda: demo.query("viewer", lambda c: c.get_account(2)).orders
        )
    finally:
        status = demo.stop()
    assert status == 0
    assert demo.process.stdout is not None
    assert "pyexchange: shutting down" in demo.process.stdout.read()
    assert not (demo.data_dir / "server.json").exists()
    replay = subprocess.run(
        [sys.executable, "-m", "pyexchange", "replay", str(demo.data_dir), "--quiet"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=OUTSIDE,
        timeout=60,
    )
    assert replay.returncode == 0, replay.stderr
    assert re.search(r"resting orders 0$", replay.stdout, re.MULTILINE), replay.stdout


# ----------------------------------------------------------------- units


def test_watched_book_applies_updates_and_detects_a_gap() -> None:
    book = _Book(7)
    snapshot = pb.MarketDataUpdate(
        market=7,
        market_seq=10,
        snapshot=pb.BookSnapshot(
            bids=[pb.PriceLevel(price="0.4", quantity="5", orders=1)],
            asks=[pb.PriceLevel(price="0.6", quantity="3", orders=2)],
            state=pb.OPEN,
            tick="0.01",
        ),
    )
    assert book.apply(snapshot)
    assert book.apply(
        pb.MarketDataUpdate(
            market=7, market_seq=11, level=pb.LevelUpdate(bid=True, price="0.45", quantity="2")
        )
    )
    assert book.apply(
        pb.MarketDataUpdate(
            market=7, market_seq=12, level=pb.LevelUpdate(bid=False, price="0.6", quantity="0")
        )
    )
    assert book.apply(
        pb.MarketDataUpdate(
            market=7,
            market_seq=13,
            trade=pb.TradePrint(price="0.6", quantity="3", match_type="MINT", taker_bid=True),
        )
    )
    assert sorted(book.bids) == [Decimal("0.4"), Decimal("0.45")]
    assert not book.asks
    assert "3 @ $0.60  MINT (taker bid)" in book.trades[0]
    text = book.render(depth=5)
    assert "  bid     $0.45" in text and "  ask   (none)" in text
    # market seq 15 after 13: a gap, the watcher resubscribes
    assert not book.apply(
        pb.MarketDataUpdate(market=7, market_seq=15, level=pb.LevelUpdate(bid=True, price="0.3"))
    )


def test_render_book_of_an_empty_market() -> None:
    text = render_book(5, "OPEN", "0.001", 0, [], [], 10)
    assert text.splitlines()[0] == "market 5  OPEN  tick $0.001  market seq 0"
    assert "  ask   (none)" in text and "  bid   (none)" in text
