"""REST market orders with the official SDK (spec §3.2, §3.5): the core's SLIPPAGE market orders.

The engine derives a market order's worst price (docs/matchcore.md §4): ``ticks`` (they win)
or ``bips`` off ``currentPrice`` (else the best opposite price), else the order's ``price``,
else the market's bound; the sweep stops there and the rest is CANCELED; an order that can
fill nothing is REJECTED ``ORD_REJECT_REASON_NO_LIQUIDITY``. One server for the module, a
market per test (whole contracts, tick $0.01, the venue's fees); pm-trader-1 makes the book,
pm-trader-2 takes.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from venue_support import VenueServer

MARKETS = [f"mo{i}" for i in range(1, 9)]
NO_LIQUIDITY = "ORD_REJECT_REASON_NO_LIQUIDITY"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("market-orders")
    create = {"tick": "0.01", "min_size": "1", "lot": "1", "taker_fee_bps": 695,
              "maker_fee_bps": -125, "fee_base": "PQ_CENTS", "open": True}  # fmt: skip
    catalogue = root / "cat.json"
    catalogue.write_text(
        json.dumps(
            {
                "markets": [
                    {"market": 20 + i, "slug": slug, "title": slug, "create": create}
                    for i, slug in enumerate(MARKETS)
                ]
            }
        )
    )
    with VenueServer(root / "data", catalogue_file=str(catalogue)) as running:
        yield running


def usd(value: str) -> dict[str, str]:
    return {"value": value, "currency": "USD"}


def rest(client: Any, slug: str, intent: str, price: str, quantity: int) -> None:
    """A resting GTC limit order (a level of the book)."""
    client.orders.create(
        {"marketSlug": slug, "intent": f"ORDER_INTENT_{intent}", "type": "ORDER_TYPE_LIMIT",
         "price": usd(price), "quantity": quantity, "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL"}
    )  # fmt: skip


def market(client: Any, slug: str, intent: str, **fields: Any) -> dict[str, Any]:
    """A market order, answered with its executions (synchronousExecution)."""
    return client.orders.create(
        {"marketSlug": slug, "intent": f"ORDER_INTENT_{intent}", "type": "ORDER_TYPE_MARKET",
         "synchronousExecution": True, **fields}
    )  # fmt: skip


def kinds(reply: dict[str, Any]) -> list[str]:
    return [e["type"].removeprefix("EXECUTION_TYPE_") for e in reply["executions"]]


def fills(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["lastPx"]["value"], e["lastShares"]) for e in reply["executions"] if "lastPx" in e]


def book(client: Any, slug: str) -> tuple[list[Any], list[Any]]:
    data = client.markets.book(slug)["marketData"]
    return (
        [(b["px"]["value"], b["qty"]) for b in data["bids"]],
        [(o["px"]["value"], o["qty"]) for o in data["offers"]],
    )


def settled_book(client: Any, slug: str, asks: int, bids: int) -> None:
    """Until market data (the book and the preview read it) shows this many levels."""
    deadline = time.monotonic() + 20
    while tuple(map(len, book(client, slug))) != (bids, asks):
        assert time.monotonic() < deadline, "the book never showed the orders"
        time.sleep(0.02)


def buying_power(client: Any) -> Decimal:
    return Decimal(str(client.account.balances()["balances"][0]["buyingPower"]))


def test_market_buy_sweeps_levels_up_to_the_tolerance(server: VenueServer) -> None:
    """ticks 2 off currentPrice 0.50: the worst price 0.52; three levels fill, 0.55 stays."""
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = MARKETS[0]
    for price, quantity in (("0.50", 3), ("0.51", 3), ("0.52", 3), ("0.55", 5)):
        rest(maker, m, "BUY_SHORT", price, quantity)  # asks on the YES book
    reply = market(
        taker, m, "BUY_LONG", quantity=20,
        slippageTolerance={"currentPrice": usd("0.50"), "ticks": 2},
    )  # fmt: skip
    assert kinds(reply) == ["NEW", "PARTIAL_FILL", "PARTIAL_FILL", "PARTIAL_FILL", "CANCELED"]
    assert fills(reply) == [("0.50", "3"), ("0.51", "3"), ("0.52", "3")]
    order = taker.orders.retrieve(reply["id"])["order"]
    assert order["type"] == "ORDER_TYPE_MARKET" and order["price"] == usd("0.52")  # the limit
    assert (order["cumQuantity"], order["leavesQuantity"]) == (9, 0)
    assert order["state"] == "ORDER_STATE_CANCELED" and order["avgPx"]["value"] == "0.5100"
    assert book(taker, m) == ([], [("0.55", "5")])

    # and the sell back: SELL_LONG of the 9 bought, ticks 1 off 0.45, bids 0.45, 0.44, 0.40
    for price, quantity in (("0.45", 4), ("0.44", 4), ("0.40", 10)):
        rest(maker, m, "BUY_LONG", price, quantity)
    sold = market(
        taker, m, "SELL_LONG", quantity=9,
        slippageTolerance={"currentPrice": usd("0.45"), "ticks": 1},
    )  # fmt: skip
    assert kinds(sold) == ["NEW", "PARTIAL_FILL", "PARTIAL_FILL", "CANCELED"]
    assert fills(sold) == [("0.45", "4"), ("0.44", "4")]
    position = taker.portfolio.positions({"market": m})["positions"][m]
    assert position["netPositionDecimal"] == "1.0000"


def test_market_sell_by_bips_off_the_best_bid(server: VenueServer) -> None:
    """BUY_SHORT (a book SELL), bips 200 and no currentPrice: off the best bid 0.60, the worst
    price 0.588 rounded up to the tick (inside the tolerance): 0.59."""
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = MARKETS[1]
    for price, quantity in (("0.60", 2), ("0.59", 2), ("0.50", 5)):
        rest(maker, m, "BUY_LONG", price, quantity)
    reply = market(taker, m, "BUY_SHORT", quantity=10, slippageTolerance={"bips": 200})
    assert fills(reply) == [("0.60", "2"), ("0.59", "2")] and kinds(reply)[-1] == "CANCELED"
    assert taker.orders.retrieve(reply["id"])["order"]["price"] == usd("0.59")
    # no tolerance (0 is none, as in proto3; absent alike): down to the bound, the bid at 0.50
    swept = market(taker, m, "BUY_SHORT", quantity=10, slippageTolerance={"ticks": 0, "bips": 0})
    assert fills(swept) == [("0.50", "5")] and kinds(swept)[-1] == "CANCELED"
    assert taker.orders.retrieve(swept["id"])["order"]["price"] == usd("0.01")
    assert book(taker, m) == ([], [])


def test_best_price_beyond_the_tolerance_is_rejected(server: VenueServer) -> None:
    """spec §3.2: "buy at 0.50 with ticks 5 will reject if the best ask moves above 0.55"."""
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = MARKETS[2]
    rest(maker, m, "BUY_SHORT", "0.56", 10)
    power = buying_power(taker)
    reply = market(
        taker, m, "BUY_LONG", quantity=5,
        slippageTolerance={"currentPrice": usd("0.50"), "ticks": 5},
    )  # fmt: skip
    assert kinds(reply) == ["REJECTED"]
    rejected = reply["executions"][0]
    assert rejected["orderRejectReason"] == NO_LIQUIDITY
    assert rejected["text"] == "There is no liquidity to immediately fill any portion of this order"
    order = taker.orders.retrieve(reply["id"])["order"]
    assert order["state"] == "ORDER_STATE_REJECTED"
    assert book(taker, m) == ([], [("0.56", "10")]) and buying_power(taker) == power
    # an FOK within the tolerance that cannot complete: REJECTED, nothing traded
    fok = market(
        taker, m, "BUY_LONG", quantity=20, tif="TIME_IN_FORCE_FILL_OR_KILL",
        slippageTolerance={"currentPrice": usd("0.56"), "ticks": 1},
    )  # fmt: skip
    assert kinds(fok) == ["REJECTED"]
    assert fok["executions"][0]["text"] == "Fill or kill order could not be filled completely"
    assert book(taker, m) == ([], [("0.56", "10")])
    # a price (the worst price without a tolerance) or a currentPrice out of bounds is refused,
    # not taken as "no limit"
    for fields in ({"price": usd("1.50")}, {"slippageTolerance": {"currentPrice": usd("1.20"),
                                                                   "ticks": 1}}):  # fmt: skip
        bad = market(taker, m, "BUY_LONG", quantity=1, **fields)
        assert kinds(bad) == ["REJECTED"], fields
        assert bad["executions"][0]["orderRejectReason"] == "ORD_REJECT_REASON_PRICE_OUT_OF_BOUNDS"
    assert book(taker, m) == ([], [("0.56", "10")])


def test_empty_book_is_rejected_no_liquidity(server: VenueServer) -> None:
    taker = server.client("pm-trader-2")
    m = MARKETS[3]
    power = buying_power(taker)
    for intent, fields in (
        ("BUY_LONG", {"quantity": 5}),
        ("BUY_SHORT", {"quantity": 5, "slippageTolerance": {"bips": 10}}),  # the SDK test's
        ("BUY_LONG", {"cashOrderQty": usd("10")}),
    ):
        reply = market(taker, m, intent, **fields)
        assert kinds(reply) == ["REJECTED"], (intent, fields)
        assert reply["executions"][0]["orderRejectReason"] == NO_LIQUIDITY
        order = taker.orders.retrieve(reply["id"])["order"]
        assert order["state"] == "ORDER_STATE_REJECTED"
    assert taker.orders.list({"slugs": [m]})["orders"] == [] and buying_power(taker) == power
    assert book(taker, m) == ([], [])


def test_cash_market_orders(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = MARKETS[4]
    rest(maker, m, "BUY_SHORT", "0.40", 10)
    rest(maker, m, "BUY_SHORT", "0.50", 10)
    # $9 across both levels: 10 at 0.40 ($4), 10 at 0.50 ($5), the budget spent
    spent = market(taker, m, "BUY_LONG", cashOrderQty=usd("9"))
    assert fills(spent) == [("0.40", "10"), ("0.50", "10")] and kinds(spent)[-1] == "FILL"
    rest(maker, m, "BUY_SHORT", "0.40", 10)
    rest(maker, m, "BUY_SHORT", "0.50", 10)
    # the tolerance stops the sweep at 0.45: $4 spent, the rest of the budget canceled
    bounded = market(
        taker, m, "BUY_LONG", cashOrderQty=usd("9"),
        slippageTolerance={"currentPrice": usd("0.40"), "ticks": 5},
    )  # fmt: skip
    assert fills(bounded) == [("0.40", "10")] and kinds(bounded)[-1] == "CANCELED"
    assert bounded["executions"][-1]["order"]["cashOrderQty"] == usd("9.00")
    # a cash LIMIT (its price the worst) that can fill nothing: NO_LIQUIDITY too
    limit = taker.orders.create(
        {"marketSlug": m, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_LIMIT",
         "price": usd("0.45"), "cashOrderQty": usd("5"), "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(limit) == ["REJECTED"]
    assert limit["executions"][0]["orderRejectReason"] == NO_LIQUIDITY
    # spec §3.5: $20 by BUY_SHORT at YES 0.80 buys 100 NO (the NO collateral, 0.20 each)
    n = MARKETS[5]
    rest(maker, n, "BUY_LONG", "0.80", 150)
    no = market(taker, n, "BUY_SHORT", cashOrderQty=usd("20"))
    assert fills(no) == [("0.80", "100")]
    position = taker.portfolio.positions({"market": n})["positions"][n]
    assert position["netPositionDecimal"] == "-100.0000"


def test_preview_shows_the_worst_price_the_engine_derives(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = MARKETS[6]
    for price, quantity in (("0.30", 2), ("0.31", 2), ("0.35", 2)):
        rest(maker, m, "BUY_SHORT", price, quantity)
    settled_book(taker, m, asks=3, bids=0)
    request = {"marketSlug": m, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_MARKET",
               "quantity": 6, "slippageTolerance": {"bips": 500}}  # fmt: skip
    preview = taker.orders.preview({"request": request})["order"]
    # off the best ask 0.30: 0.315, down to the tick 0.31
    assert preview["price"] == usd("0.31") and preview["cumQuantity"] == 4
    created = taker.orders.create({**request, "synchronousExecution": True})
    assert created["executions"][0]["order"]["price"] == preview["price"]
    assert fills(created) == [("0.30", "2"), ("0.31", "2")]
