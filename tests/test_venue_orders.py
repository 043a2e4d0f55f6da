"""Order entry over the venue API with the official SDK: intents, match types, TIFs, cash
orders, batches, modify and cancel (and their races), preview, close, positions, activities,
resolution, bad input, and a kill -9 between an order and its fill.

One server for the module; each test uses its own market (created from a catalogue file
with the venue's fee schedule: PQ_CENTS base, taker 695 bps, maker -125 bps, tick $0.01, whole
contracts) so tests do not see each other's orders. Accounts 1-4 are the demo's ($100,000;
1,000 YES+NO pairs in each demo market, none in these).
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from polymarket_us import BadRequestError, NotFoundError
from polymarket_us.auth import create_auth_headers
from venue_support import VenueServer

from pyexchange.api.grpc.client import ExchangeClient

MARKETS = [f"m{i}" for i in range(1, 16)]


def _catalogue(path: Path) -> Path:
    venue_fees = {"tick": "0.01", "min_size": "1", "lot": "1", "taker_fee_bps": 695,
                  "maker_fee_bps": -125, "fee_base": "PQ_CENTS", "open": True}  # fmt: skip
    spec = {
        "markets": [
            {"market": 10 + i, "slug": slug, "title": f"Test market {slug}", "create": venue_fees}
            for i, slug in enumerate(MARKETS)
        ]
    }
    path.write_text(json.dumps(spec))
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("orders")
    with VenueServer(root / "data", catalogue_file=str(_catalogue(root / "cat.json"))) as running:
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
        "tif": "TIME_IN_FORCE_GOOD_TILL_CANCEL",
        **extra,
    }


def kinds(reply: dict[str, Any]) -> list[str]:
    return [e["type"].removeprefix("EXECUTION_TYPE_") for e in reply["executions"]]


# ------------------------------------------------------------- appendix B


def test_appendix_b_two_traders(server: VenueServer) -> None:
    """spec appendix B: Alice rests a BUY_SHORT, Bob lifts it with a BUY_LONG IOC."""
    alice, bob = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = "m1"
    before = alice.account.balances()["balances"][0]
    a = alice.orders.create(limit(m, "BUY_SHORT", "0.40", 10))
    order = alice.orders.retrieve(a["id"])["order"]
    assert order["side"] == "ORDER_SIDE_SELL" and order["intent"] == "ORDER_INTENT_BUY_SHORT"
    assert order["outcomeSide"] == "OUTCOME_SIDE_NO" and order["action"] == "ORDER_ACTION_BUY"
    assert order["price"] == usd("0.40") and order["quantity"] == 10
    assert (order["cumQuantity"], order["leavesQuantity"], order["state"]) == (
        0,
        10,
        "ORDER_STATE_NEW",
    )
    book = alice.markets.book(m)["marketData"]
    assert book["offers"] == [{"px": usd("0.40"), "qty": "10"}] and book["bids"] == []
    after = alice.account.balances()["balances"][0]
    # the reservation: NO at 0.60 x 10 = $6.00, and twice the highest exact fee it could pay
    # (2 x 0.1668: a fee rounded to the cent is at most twice the exact one)
    spent = Decimal(str(before["buyingPower"])) - Decimal(str(after["buyingPower"]))
    assert spent == Decimal("6.3336") and after["openOrders"] == 6.3336

    b = bob.orders.create(
        {
            **limit(m, "BUY_LONG", "0.45", 4),
            "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL",
            "synchronousExecution": True,
        }
    )
    assert kinds(b) == ["NEW", "FILL"]
    fill = b["executions"][1]
    assert fill["lastShares"] == "4" and fill["lastPx"] == usd("0.40") and fill["aggressor"]
    # theta 0.0695 x 4 x 0.4 x 0.6 = 0.06672, rounded half to even to the cent
    assert fill["commissionNotionalCollected"] == usd("0.07")
    assert fill["order"]["state"] == "ORDER_STATE_FILLED" and fill["order"]["avgPx"]["value"] == (
        "0.4000"
    )
    resting = alice.orders.retrieve(a["id"])["order"]
    assert (resting["cumQuantity"], resting["leavesQuantity"]) == (4, 6)
    assert resting["state"] == "ORDER_STATE_PARTIALLY_FILLED"
    # the maker rebate: -0.0125 x 0.96 = -0.012, rounded to -$0.01
    assert resting["commissionNotionalTotalCollected"] == usd("-0.01")
    alice_position = alice.portfolio.positions({"market": m})["positions"][m]
    bob_position = bob.portfolio.positions({"market": m})["positions"][m]
    assert alice_position["netPositionDecimal"] == "-4.0000"
    assert bob_position["netPositionDecimal"] == "4.0000"
    assert alice_position["cost"] == usd("2.40") and bob_position["cost"] == usd("1.60")
    trades = bob.portfolio.activities({"marketSlug": m})["activities"]
    assert [t["trade"]["qtyDecimal"] for t in trades] == ["4"]
    assert trades[0]["trade"]["id"] == fill["tradeId"]
    maker_side = alice.portfolio.activities({"marketSlug": m})["activities"][0]["trade"]
    assert maker_side["id"] == fill["tradeId"] and maker_side["isAggressor"] is False


# ------------------------------------------------ intents and match types


@pytest.mark.parametrize(
    ("bid", "ask", "match"),
    [
        ("BUY_LONG", "BUY_SHORT", "MINT"),  # both pay: pairs created
        ("BUY_LONG", "SELL_LONG", "COMPLEMENTARY"),  # YES moves
        ("SELL_SHORT", "SELL_LONG", "MERGE"),  # both give up shares: pairs burned
        ("SELL_SHORT", "BUY_SHORT", "COMPLEMENTARY on NO"),  # NO moves
    ],
)
def test_every_intent_and_match_type(server: VenueServer, bid: str, ask: str, match: str) -> None:
    """Account 3 rests the ask, account 4 takes it with the bid; after a MINT gave 3 YES and
    4 NO to sell. Positions (YES terms) move by -2 for the ask and +2 for the bid whatever
    the intents."""
    m = {"MINT": "m2", "COMPLEMENTARY": "m3", "MERGE": "m4", "COMPLEMENTARY on NO": "m5"}[match]
    maker, taker = server.client("pm-trader-3"), server.client("pm-trader-4")
    if "SELL" in bid + ask:  # shares to sell: 3 buys 5 YES, 4 buys 5 NO (a MINT)
        maker.orders.create(limit(m, "BUY_LONG", "0.50", 5))
        taker.orders.create({**limit(m, "BUY_SHORT", "0.50", 5), "synchronousExecution": True})

    def net(client: Any) -> float:
        position = client.portfolio.positions({"market": m})["positions"].get(m)
        return float(position["netPositionDecimal"]) if position else 0.0

    maker_before, taker_before = net(maker), net(taker)
    maker.orders.create(limit(m, ask, "0.55", 2))
    reply = taker.orders.create(
        {**limit(m, bid, "0.60", 2), "synchronousExecution": True,
         "tif": "TIME_IN_FORCE_FILL_OR_KILL"}
    )  # fmt: skip
    assert kinds(reply) == ["NEW", "FILL"], reply
    assert reply["executions"][1]["lastPx"] == usd("0.55")  # the resting order's price
    assert (net(maker), net(taker)) == (maker_before - 2, taker_before + 2)


# ---------------------------------------------------------- times in force


def test_the_four_times_in_force(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = "m6"
    maker.orders.create(limit(m, "BUY_SHORT", "0.50", 3))  # an ask of 3 at 0.50
    ioc = taker.orders.create(
        {**limit(m, "BUY_LONG", "0.50", 5), "tif": "TIME_IN_FORCE_IMMEDIATE_OR_CANCEL",
         "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(ioc) == ["NEW", "PARTIAL_FILL", "CANCELED"]
    assert ioc["executions"][-1]["order"]["cumQuantity"] == 3
    assert ioc["executions"][-1]["order"]["state"] == "ORDER_STATE_CANCELED"
    maker.orders.create(limit(m, "BUY_SHORT", "0.50", 3))
    fok = taker.orders.create(
        {**limit(m, "BUY_LONG", "0.50", 5), "tif": "TIME_IN_FORCE_FILL_OR_KILL",
         "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(fok) == ["REJECTED"]
    assert fok["executions"][0]["text"] == "Fill or kill order could not be filled completely"
    assert taker.markets.book(m)["marketData"]["offers"] == [{"px": usd("0.50"), "qty": "3"}]
    gtc = taker.orders.create({**limit(m, "BUY_LONG", "0.40", 1), "synchronousExecution": True,
                               "maxBlockTime": "0.2s"})  # fmt: skip
    assert kinds(gtc) == ["NEW"]  # it rests: the server answers after maxBlockTime
    soon = time.time() + 1.5
    expiry = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(soon)) + f".{int(soon % 1 * 1e9):09d}Z"
    gtd = taker.orders.create(
        {**limit(m, "BUY_LONG", "0.30", 1), "tif": "TIME_IN_FORCE_GOOD_TILL_DATE",
         "goodTillTime": expiry}
    )  # fmt: skip
    assert taker.orders.retrieve(gtd["id"])["order"]["goodTillTime"].startswith(expiry[:19])
    deadline = time.monotonic() + 20
    while taker.orders.retrieve(gtd["id"])["order"]["state"] != "ORDER_STATE_EXPIRED":
        assert time.monotonic() < deadline, "the GTD order did not expire"
        time.sleep(0.1)
    day = taker.orders.create({**limit(m, "BUY_LONG", "0.20", 1), "tif": "TIME_IN_FORCE_DAY"})
    assert taker.orders.retrieve(day["id"])["order"]["state"] == "ORDER_STATE_NEW"


def test_post_only_market_and_cash_orders(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = "m7"
    maker.orders.create(limit(m, "BUY_SHORT", "0.80", 30))  # an ask of 30 at 0.80
    post = taker.orders.create(
        {**limit(m, "BUY_LONG", "0.85", 1), "participateDontInitiate": True,
         "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(post) == ["REJECTED"]
    assert post["executions"][0]["text"] == "Order may participate but not initiate in the market"
    cash = taker.orders.create(
        {"marketSlug": m, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_MARKET",
         "cashOrderQty": usd("20"), "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(cash) == ["NEW", "FILL"]  # $20 at 0.80: 25 contracts, the budget spent
    assert cash["executions"][1]["lastShares"] == "25"
    assert cash["executions"][1]["order"]["cashOrderQty"] == usd("20.00")
    nothing = taker.orders.create(
        {"marketSlug": m, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_MARKET",
         "quantity": 10, "slippageTolerance": {"currentPrice": usd("0.70"), "ticks": 5},
         "synchronousExecution": True}
    )  # fmt: skip
    # worst price 0.75 is below the only ask (0.80): nothing can fill
    assert kinds(nothing) == ["REJECTED"]
    assert nothing["executions"][0]["orderRejectReason"] == "ORD_REJECT_REASON_NO_LIQUIDITY"
    swept = taker.orders.create(
        {"marketSlug": m, "intent": "ORDER_INTENT_BUY_LONG", "type": "ORDER_TYPE_MARKET",
         "quantity": 10, "synchronousExecution": True}
    )  # fmt: skip
    assert kinds(swept) == ["NEW", "PARTIAL_FILL", "CANCELED"]  # 5 left at 0.80, the rest canceled
    assert swept["executions"][1]["lastShares"] == "5"


def test_self_match_cancels_the_order_whole(server: VenueServer) -> None:
    """spec §5.5 (FIX cancel newest): an order whose limit reaches its owner's resting order is
    canceled whole, with no fill against the other trader's order resting before it."""
    alice, bob = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = "m15"
    bob.orders.create(limit(m, "BUY_SHORT", "0.50", 3))  # asks at 0.50: Bob's 3, then Alice's 3
    alice.orders.create(limit(m, "BUY_SHORT", "0.50", 3))
    reply = alice.orders.create({**limit(m, "BUY_LONG", "0.50", 2), "synchronousExecution": True})
    assert kinds(reply) == ["NEW", "CANCELED"], reply
    assert reply["executions"][1]["text"] == "Self Match Prevention"
    assert reply["executions"][1]["order"]["cumQuantity"] == 0
    assert alice.markets.book(m)["marketData"]["offers"] == [{"px": usd("0.50"), "qty": "6"}]


# ---------------------------------------------------------------- batches


def test_batches_of_20_and_21(server: VenueServer) -> None:
    client = server.client("pm-trader-3")
    m = "m8"
    orders = [limit(m, "BUY_LONG", f"0.{10 + i:02d}", 1) for i in range(21)]
    with pytest.raises(BadRequestError, match="1 to 20"):
        client.orders.create_many({"orders": orders})
    bad = [*orders[:5], {**orders[5], "intent": "ORDER_INTENT_SIDEWAYS"}]
    with pytest.raises(BadRequestError, match=r"orders\[5\]"):
        client.orders.create_many({"orders": bad})
    assert client.orders.list({"slugs": [m]})["orders"] == []  # all or nothing
    created = client.orders.create_many({"orders": orders[:20]})["createdOrderIds"]
    assert len(set(created)) == 20
    listed = {o["id"]: o["price"]["value"] for o in client.orders.list({"slugs": [m]})["orders"]}
    assert [listed[i] for i in created] == [f"0.{10 + i:02d}" for i in range(20)]  # in order
    echo = client.orders.cancel_many(
        {"orders": [{"orderId": i, "marketSlug": m} for i in [*created[:3], "NOSUCH"]]}
    )
    assert echo == {"canceledOrderIds": [*created[:3], "NOSUCH"]}
    client.orders.modify_many(
        {"orders": [{"orderId": created[3], "marketSlug": m, "price": usd("0.05")}]}
    )
    assert client.orders.retrieve(created[3])["order"]["price"] == usd("0.05")
    assert len(client.orders.list({"slugs": [m]})["orders"]) == 17
    canceled = client.orders.cancel_all({"slugs": [m]})["canceledOrderIds"]
    assert sorted(canceled) == sorted(created[3:])
    assert client.orders.list({"slugs": [m]})["orders"] == []


def test_async_client_create_many_and_cancel_all(server: VenueServer) -> None:
    async def main() -> None:
        async with server.async_client("pm-trader-4") as client:
            m = "m9"
            created = await client.orders.create_many(
                {"orders": [limit(m, "BUY_LONG", "0.10", 1), limit(m, "BUY_LONG", "0.11", 1)]}
            )
            listed, book = await asyncio.gather(
                client.orders.list({"slugs": [m]}), client.markets.book(m)
            )
            assert {o["id"] for o in listed["orders"]} == set(created["createdOrderIds"])
            assert len(book["marketData"]["bids"]) == 2
            await client.orders.cancel_all()
            assert (await client.orders.list())["orders"] == []

    asyncio.run(main())


# --------------------------------------------------- modify, cancel, races


def test_modify_keeps_the_id_and_races_end_quietly(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-1"), server.client("pm-trader-2")
    m = "m10"
    order = maker.orders.create(limit(m, "BUY_LONG", "0.40", 10))["id"]
    assert (
        maker.orders.modify(order, {"marketSlug": m, "price": usd("0.42"), "quantity": 6}) is None
    )
    modified = maker.orders.retrieve(order)["order"]
    assert modified["id"] == order and modified["price"] == usd("0.42")
    assert (modified["quantity"], modified["leavesQuantity"]) == (6, 6)
    with pytest.raises(BadRequestError, match="time in force"):
        maker.orders.modify(order, {"marketSlug": m, "tif": "TIME_IN_FORCE_FILL_OR_KILL"})
    taker.orders.create(
        {**limit(m, "SELL_SHORT", "0.42", 6), "intent": "ORDER_INTENT_BUY_SHORT",
         "synchronousExecution": True}
    )  # fmt: skip
    assert maker.orders.retrieve(order)["order"]["state"] == "ORDER_STATE_FILLED"
    # the cancel and the modify lost the race to the fill: answered, nothing happens
    assert maker.orders.cancel(order, {"marketSlug": m}) is None
    assert maker.orders.modify(order, {"marketSlug": m, "price": usd("0.30")}) is None
    assert maker.orders.retrieve(order)["order"]["state"] == "ORDER_STATE_FILLED"
    with pytest.raises(NotFoundError):
        maker.orders.cancel("7ZZZZZZZ", {"marketSlug": m})
    with pytest.raises(NotFoundError):  # another account's order is not found, like an unknown one
        taker.orders.retrieve(order)
    with pytest.raises(NotFoundError):
        taker.orders.cancel(order, {"marketSlug": m})
    with pytest.raises(NotFoundError):
        taker.orders.modify(order, {"marketSlug": m, "price": usd("0.30")})


def test_preview_changes_nothing_and_close_position_sells(server: VenueServer) -> None:
    maker, taker = server.client("pm-trader-3"), server.client("pm-trader-4")
    m = "m11"
    maker.orders.create(limit(m, "BUY_SHORT", "0.60", 4))  # ask 4 at 0.60
    deadline = time.monotonic() + 20  # the book (and the preview) follow market data
    while not (book := taker.markets.book(m))["marketData"]["offers"]:
        assert time.monotonic() < deadline, "the ask never reached the book"
        time.sleep(0.02)
    preview = taker.orders.preview({"request": limit(m, "BUY_LONG", "0.65", 3)})["order"]
    assert preview["cumQuantity"] == 3 and preview["avgPx"]["value"] == "0.6000"
    assert preview["commissionNotionalTotalCollected"] == usd("0.05")  # 0.0695*3*0.24=0.05004
    assert taker.markets.book(m) == book and taker.orders.list({"slugs": [m]})["orders"] == []
    with pytest.raises(NotFoundError):
        taker.orders.preview({"request": limit("no-market", "BUY_LONG", "0.65", 3)})
    with pytest.raises(NotFoundError, match="No open position"):
        taker.orders.close_position({"marketSlug": m})
    taker.orders.create({**limit(m, "BUY_LONG", "0.60", 4), "synchronousExecution": True})
    maker.orders.create(limit(m, "BUY_LONG", "0.55", 10))  # a bid to sell into
    closed = taker.orders.close_position({"marketSlug": m, "synchronousExecution": True})
    assert kinds(closed) == ["NEW", "FILL"] and closed["executions"][1]["lastShares"] == "4"
    assert closed["executions"][0]["order"]["intent"] == "ORDER_INTENT_SELL_LONG"
    position = taker.portfolio.positions({"market": m})["positions"][m]
    assert position["netPositionDecimal"] == "0.0000" and position["qtySoldDecimal"] == "4.0000"
    # bought 4 at 0.60 (fee 0.06672 -> 0.07), sold 4 at 0.55 (fee 0.068805 -> 0.07): -0.20 - 0.14
    assert position["realized"] == usd("-0.34")


def test_resolution_shows_in_positions_balances_and_activities(server: VenueServer) -> None:
    winner, loser = server.client("pm-trader-1"), server.client("pm-trader-2")
    m, market = "m12", 21
    winner.orders.create(limit(m, "BUY_LONG", "0.30", 10))
    loser.orders.create({**limit(m, "BUY_SHORT", "0.30", 10), "synchronousExecution": True})
    cash_before = winner.account.balances()["balances"][0]["currentBalance"]

    async def resolve() -> None:
        admin = server.keys["admin"]
        async with ExchangeClient(server.grpc_target, admin["key_id"], admin["secret"]) as c:
            await c.set_market_state(market, "CLOSED")
            await c.resolve(market, "YES")

    asyncio.run(resolve())
    assert winner.markets.settlement(m) == {"slug": m, "settlement": 1}
    cash_after = winner.account.balances()["balances"][0]["currentBalance"]
    paid = Decimal(str(cash_after)) - Decimal(str(cash_before))
    assert paid == 10  # 10 YES paid $1 each
    position = winner.portfolio.positions({"market": m})["positions"][m]
    assert position["netPositionDecimal"] == "0.0000" and position["expired"] is True
    # paid 3.00 for 10 YES, a maker rebate of 0.0125 x 10 x 0.3 x 0.7 = 0.02625 rounded to
    # 0.03, then $10 from settlement
    assert position["realized"] == usd("7.03")
    resolution = winner.portfolio.activities({"types": ["ACTIVITY_TYPE_POSITION_RESOLUTION"]})[
        "activities"
    ][0]["positionResolution"]
    assert resolution["marketSlug"] == m and resolution["side"] == "POSITION_RESOLUTION_SIDE_LONG"
    assert resolution["beforePosition"]["netPositionDecimal"] == "10.0000"
    assert winner.markets.book(m)["marketData"]["state"] == "MARKET_STATE_EXPIRED"


# -------------------------------------------------------------- bad input


def _state(server: VenueServer) -> tuple[Any, ...]:
    client = server.client("pm-trader-1")
    return (
        client.account.balances(),
        sorted(o["id"] for o in client.orders.list()["orders"]),
        client.markets.book("m13"),
    )


def test_bad_requests_are_400_and_change_nothing(server: VenueServer) -> None:
    client = server.client("pm-trader-1")
    m = "m13"
    client.orders.create(limit(m, "BUY_LONG", "0.10", 1))
    before = _state(server)
    good = limit(m, "BUY_LONG", "0.20", 1)
    cases = [
        {**good, "marketSlug": None},
        {k: v for k, v in good.items() if k != "intent"},
        {**good, "intent": "ORDER_INTENT_MAYBE"},
        {**good, "tif": "TIME_IN_FORCE_FOREVER"},
        {**good, "type": "ORDER_TYPE_STOP"},
        {**good, "quantity": "ten"},
        {**good, "quantity": True},
        {**good, "quantity": -3},
        {**good, "quantity": 1e300},
        {**good, "price": "0.20"},
        {**good, "price": usd("1e999999")},
        {**good, "price": usd("0.2_0")},
        {**good, "cashOrderQty": usd("5")},  # both quantity and cash
        {**good, "tif": "TIME_IN_FORCE_GOOD_TILL_DATE"},  # no goodTillTime
        {**good, "tif": "TIME_IN_FORCE_GOOD_TILL_DATE", "goodTillTime": "tomorrow"},
        {**good, "participateDontInitiate": "yes"},
        {**good, "slippageTolerance": {"ticks": "many"}},
        {**good, "manualOrderIndicator": "MANUAL_ORDER_INDICATOR_SOMETIMES"},
    ]
    for body in cases:
        with pytest.raises(BadRequestError):
            client.orders.create(body)
    url = f"{server.url}/v1/orders"

    key = server.keys["pm-trader-1"]
    for raw in (b"{", b"[1,2", b"\xff\xfe", b'"just a string"', b"[" * 50_000):
        headers = create_auth_headers(key["key_id"], key["secret"], "POST", "/v1/orders")
        reply = httpx.post(
            url, content=raw, headers={**headers, "content-type": "application/json"}
        )
        assert reply.status_code == 400, raw[:10]
        assert reply.json()["code"] == 3
    headers = create_auth_headers(key["key_id"], key["secret"], "POST", "/v1/orders")
    huge = httpx.post(url, content=b'{"a":"' + b"x" * 100_000 + b'"}', headers=headers)
    assert huge.status_code == 413
    big_head = httpx.get(f"{server.url}/v1/markets", headers={"x-filler": "y" * 20_000})
    assert big_head.status_code == 431
    assert _state(server) == before


def test_slowloris_connections_do_not_hold_up_others(server: VenueServer) -> None:
    import socket

    host, port = server.url.removeprefix("http://").split(":")
    slow = []
    for _ in range(50):  # each sends half a request head and then nothing
        s = socket.create_connection((host, int(port)))
        s.sendall(b"GET /v1/markets HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        slow.append(s)
    try:
        client = server.client(None)
        started = time.monotonic()
        assert client.markets.list()["markets"]
        assert time.monotonic() - started < 5  # not a timing assertion: a hang would be minutes
    finally:
        for s in slow:
            s.close()


# ---------------------------------------------------------------- kill -9


def test_kill_9_between_an_order_and_its_fill(tmp_path: Path) -> None:
    """The SDK's view after a restart is the journal's: the resting order, then its fill."""
    server = VenueServer(
        tmp_path / "data", fsync="batch", catalogue_file=str(_catalogue(tmp_path / "c.json"))
    ).start()
    try:
        alice = server.client("pm-trader-1")
        m = "m14"
        resting = alice.orders.create(limit(m, "BUY_LONG", "0.45", 8))["id"]
        assert alice.orders.retrieve(resting)["order"]["state"] == "ORDER_STATE_NEW"
        server.kill()
        server.start()
        alice, bob = server.client("pm-trader-1"), server.client("pm-trader-2")
        order = alice.orders.retrieve(resting)["order"]
        assert order["state"] == "ORDER_STATE_NEW" and order["leavesQuantity"] == 8
        assert [o["id"] for o in alice.orders.list({"slugs": [m]})["orders"]] == [resting]
        assert alice.markets.book(m)["marketData"]["bids"] == [{"px": usd("0.45"), "qty": "8"}]
        taker = bob.orders.create(
            {**limit(m, "BUY_SHORT", "0.45", 8), "synchronousExecution": True}
        )
        assert kinds(taker) == ["NEW", "FILL"]
        server.kill()
        server.start()
        alice = server.client("pm-trader-1")
        order = alice.orders.retrieve(resting)["order"]
        assert order["state"] == "ORDER_STATE_FILLED" and order["cumQuantity"] == 8
        position = alice.portfolio.positions({"market": m})["positions"][m]
        assert position["netPositionDecimal"] == "8.0000"
        assert alice.orders.list({"slugs": [m]})["orders"] == []
    finally:
        server.stop()
