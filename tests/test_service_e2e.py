"""End-to-end tests of the gRPC service: a real server on a free loopback port, real clients.

Each test gets a fresh server (a new data directory) with the demo set-up:
markets 1 (tick 0.01, taker 10 bps, NOTIONAL), 2 (tick 0.01, taker 20 / maker
-5 bps, MIN), 3 (tick 0.001, lot 1 share); accounts 1..4 with $100,000 and
1,000 YES+NO pairs in each market ($97,000 free cash); keys trader-N (account
N), viewer, admin. The restart test runs ``pyexchange serve`` as a subprocess
and SIGKILLs it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from service_support import Harness, LoopThread, start_harness, status_of, wait_until

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.units import format_quantity


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture
def h(loop: LoopThread, tmp_path: Path):
    harness = start_harness(loop, tmp_path / "data")
    yield harness
    harness.close()


def orders_of(state: pb.AccountState) -> dict[int, pb.OpenOrder]:
    return {o.order_id: o for o in state.orders}


def position(state: pb.AccountState, market: int) -> pb.PositionState:
    for p in state.positions:
        if p.market == market:
            return p
    return pb.PositionState(market=market, yes="0", yes_reserved="0", no="0", no_reserved="0")


# ------------------------------------------------------------------ orders


def test_limit_order_rests_then_trades_with_fees(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        bid = await t1.place(1, 1, "BUY_YES", "0.55", "10", client_order_id=7)
        assert bid.status == pb.RESTING
        assert (bid.order_id, bid.client_order_id) == (1, 7)
        assert (bid.leaves_quantity, bid.filled_quantity) == ("10", "0")
        assert bid.seq > 0 and not bid.fills

        ask = await t2.place(2, 1, "SELL_YES", "0.50", "4")
        assert ask.status == pb.FILLED and ask.leaves_quantity == "0"
        assert ask.filled_quantity == "4"
        (fill,) = ask.fills
        assert fill.price == "0.55"  # the resting order's price: improvement to the taker
        assert fill.quantity == "4"
        assert fill.fee == "0.0022"  # 10 bps of 0.55 * 4
        assert fill.match_type == "COMPLEMENTARY"
        assert (fill.maker_order_id, fill.taker_order_id) == (1, ask.order_id)
        assert fill.caller_is_taker

        buyer = await t1.get_account(1)
        # 97,000 - 0.55*4 paid - 6 shares reserved at 0.55 with the 10 bps fee reserve
        assert (buyer.cash, buyer.cash_reserved) == ("96994.4964", "3.3036")
        (order,) = buyer.orders
        assert (order.order_id, order.leaves_quantity, order.price) == (1, "6", "0.55")
        assert order.intent == pb.BUY_YES and order.time_in_force == pb.GTC
        assert order.client_order_id == 7
        assert position(buyer, 1).yes == "1004"
        seller = await t2.get_account(2)
        assert seller.cash == "97002.1978"  # + 2.2 - the 0.0022 fee
        assert position(seller, 1).yes == "996" and not seller.orders

    h.run(scenario())


def test_mint_and_merge_with_min_fee_base(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        await t1.place(1, 2, "BUY_YES", "0.60", "10")
        mint = await t2.place(2, 2, "BUY_NO", "0.60", "10")  # buys NO at 0.40
        assert mint.status == pb.FILLED
        (fill,) = mint.fills
        assert fill.match_type == "MINT" and fill.price == "0.6"  # formatted without padding
        assert fill.fee == "0.008"  # 20 bps of min(0.6, 0.4) * 10

        await t1.place(1, 2, "SELL_NO", "0.30", "5")
        merge = await t2.place(2, 2, "SELL_YES", "0.30", "5")
        (fill,) = merge.fills
        assert fill.match_type == "MERGE" and fill.fee == "0.003"  # 20 bps of 0.3 * 5

        a1, a2 = await t1.get_account(1), await t2.get_account(2)
        assert (position(a1, 2).yes, position(a1, 2).no) == ("1010", "995")
        assert (position(a2, 2).yes, position(a2, 2).no) == ("995", "1010")

    h.run(scenario())


def test_ioc_fok_and_post_only(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        await t2.place(2, 1, "SELL_YES", "0.50", "3")
        ioc = await t1.place(1, 1, "BUY_YES", "0.52", "5", time_in_force="IOC")
        # partly filled, then its remainder canceled: PARTIALLY_FILLED, never CANCELED alone
        assert ioc.status == pb.PARTIALLY_FILLED and ioc.cancel_reason == "UNFILLED"
        assert (ioc.filled_quantity, ioc.leaves_quantity) == ("3", "0")
        assert ioc.fills[0].price == "0.5" and ioc.message.startswith("filled 3; the remaining 2")
        unfilled = await t1.place(1, 1, "BUY_YES", "0.52", "5", time_in_force="IOC")
        assert unfilled.status == pb.CANCELED and unfilled.cancel_reason == "UNFILLED"
        assert unfilled.filled_quantity == "0" and not unfilled.fills

        resting = await t2.place(2, 1, "SELL_YES", "0.50", "3")
        fok = await t1.place(1, 1, "BUY_YES", "0.52", "5", time_in_force="FOK")
        assert fok.status == pb.REJECTED and fok.reject_reason == "FOK_NOT_FILLED"
        assert "nothing traded" in fok.message and not fok.fills
        assert orders_of(await t2.get_account(2))[resting.order_id].leaves_quantity == "3"
        fok = await t1.place(1, 1, "BUY_YES", "0.52", "3", time_in_force="FOK")
        assert fok.status == pb.FILLED and fok.filled_quantity == "3"

        await t2.place(2, 1, "SELL_YES", "0.50", "1")
        post = await t1.place(1, 1, "BUY_YES", "0.50", "1", post_only=True)
        assert post.status == pb.REJECTED and post.reject_reason == "POST_ONLY_WOULD_CROSS"
        post = await t1.place(1, 1, "BUY_YES", "0.49", "1", post_only=True)
        assert post.status == pb.RESTING

    h.run(scenario())


def test_market_orders_by_quantity_and_by_cash(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        for price in ("0.50", "0.52", "0.60"):
            await t2.place(2, 1, "SELL_YES", price, "2")
        sweep = await t1.place(1, 1, "BUY_YES", "0.55", "5", market_order=True)
        assert [(f.price, f.quantity) for f in sweep.fills] == [("0.5", "2"), ("0.52", "2")]
        assert sweep.status == pb.PARTIALLY_FILLED and sweep.cancel_reason == "UNFILLED"
        assert sweep.filled_quantity == "4"

        await t2.place(2, 1, "SELL_YES", "0.40", "10")
        spend = await t1.place(1, 1, "BUY_YES", "0.45", cash="2", market_order=True)
        assert spend.status == pb.FILLED  # $2 buys exactly 5 shares at 0.40
        assert spend.filled_quantity == "5" and spend.fills[0].fee == "0.002"
        partial = await t1.place(1, 1, "BUY_YES", "0.45", cash="10", market_order=True)
        assert partial.status == pb.PARTIALLY_FILLED and partial.filled_quantity == "5"
        assert partial.message.startswith("unspent budget $8")

        code, details = await status_of(t1.place(1, 1, "BUY_YES", None, "1", market_order=True))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "worst-price" in details

    h.run(scenario())


def test_self_trade_prevention_modes(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        ask = await t1.place(1, 1, "SELL_YES", "0.70", "2")
        rejected = await t1.place(1, 1, "BUY_YES", "0.70", "3")  # REJECT_AGGRESSOR
        assert rejected.status == pb.CANCELED and rejected.cancel_reason == "SELF_TRADE"
        assert rejected.filled_quantity == "0"
        assert ask.order_id in orders_of(await t1.get_account(1))

        kept = await t1.place(1, 1, "BUY_YES", "0.70", "3", self_trade_prevention="CANCEL_RESTING")
        assert kept.status == pb.RESTING and kept.leaves_quantity == "3"
        assert set(orders_of(await t1.get_account(1))) == {kept.order_id}

        both = await t1.place(1, 1, "SELL_YES", "0.70", "1", self_trade_prevention="CANCEL_BOTH")
        assert both.status == pb.CANCELED and both.cancel_reason == "SELF_TRADE"
        assert not (await t1.get_account(1)).orders

        # the venue's FIX modes, before any fill
        await t1.place(1, 1, "SELL_YES", "0.70", "1")
        oldest = await t1.place(1, 1, "BUY_YES", "0.70", "2", self_trade_prevention="CANCEL_OLDEST")
        assert oldest.status == pb.RESTING and oldest.leaves_quantity == "2"
        assert set(orders_of(await t1.get_account(1))) == {oldest.order_id}
        newest = await t1.place(
            1, 1, "SELL_YES", "0.60", "1", self_trade_prevention="CANCEL_NEWEST"
        )
        assert newest.status == pb.CANCELED and newest.cancel_reason == "SELF_TRADE"
        assert set(orders_of(await t1.get_account(1))) == {oldest.order_id}
        gone = await t1.place(1, 1, "SELL_YES", "0.60", "1", self_trade_prevention="REMOVE_BOTH")
        assert gone.status == pb.CANCELED and gone.cancel_reason == "SELF_TRADE"
        assert not (await t1.get_account(1)).orders

    h.run(scenario())


def test_client_order_ids_cancels_and_cancel_all(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        first = await t1.place(1, 1, "BUY_YES", "0.30", "1", client_order_id=42)
        again = await t1.place(1, 1, "BUY_YES", "0.30", "1", client_order_id=42)
        assert (again.order_id, again.seq, again.status) == (first.order_id, first.seq, pb.RESTING)
        assert len((await t1.get_account(1)).orders) == 1  # the retry made no second order

        canceled = await t1.cancel_by_client_id(1, 42)
        assert canceled.status == pb.CANCELED and canceled.order_id == first.order_id
        assert canceled.cancel_reason == "USER" and canceled.canceled_count == 1
        missing = await t1.cancel_by_client_id(1, 42)
        assert missing.status == pb.REJECTED and missing.reject_reason == "UNKNOWN_ORDER"

        mine = await t1.place(1, 1, "BUY_YES", "0.31", "1")
        theirs = await t2.place(2, 1, "BUY_YES", "0.32", "1")
        # another account's order reads exactly as an unknown one: nothing about its id leaks
        not_owner = await t1.cancel(1, theirs.order_id)
        unknown = await t1.cancel(1, theirs.order_id + 1000)
        assert not_owner.status == pb.REJECTED and not_owner.reject_reason == "UNKNOWN_ORDER"
        assert (not_owner.message, not_owner.status) == (unknown.message, unknown.status)
        moved = await t1.replace(1, theirs.order_id, price="0.33")
        assert moved.reject_reason == "UNKNOWN_ORDER" and moved.message == unknown.message
        done = await t1.cancel(1, mine.order_id)
        assert done.status == pb.CANCELED and done.order_id == mine.order_id
        again = await t1.cancel(1, mine.order_id)
        assert again.reject_reason == "UNKNOWN_ORDER"

        for market in (1, 1, 2, 3):
            await t1.place(1, market, "BUY_YES", "0.2", "1")
        one_market = await t1.cancel_all(1, market=1)
        assert one_market.status == pb.CANCELED and one_market.canceled_count == 2
        everywhere = await t1.cancel_all(1)
        assert everywhere.canceled_count == 2
        nothing = await t1.cancel_all(1)
        assert nothing.status == pb.CANCELED and nothing.canceled_count == 0
        assert orders_of(await t2.get_account(2))  # t2's order untouched

    h.run(scenario())


def test_replace_keeps_or_loses_priority_and_can_trade(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        a = await t1.place(1, 1, "BUY_YES", "0.40", "10")
        b = await t1.place(1, 1, "BUY_YES", "0.40", "5")
        smaller = await t1.replace(1, a.order_id, quantity="4")
        assert smaller.status == pb.RESTING and smaller.leaves_quantity == "4"
        hit = await t2.place(2, 1, "SELL_YES", "0.40", "4")
        assert hit.fills[0].maker_order_id == a.order_id  # a kept its place ahead of b

        await t2.place(2, 1, "SELL_YES", "0.45", "2")
        crossed = await t1.replace(1, b.order_id, price="0.46")
        assert crossed.status == pb.RESTING and crossed.order_id == b.order_id
        assert [(f.price, f.quantity) for f in crossed.fills] == [("0.45", "2")]
        assert crossed.leaves_quantity == "3" and crossed.filled_quantity == "2"

        off_grid = await t1.replace(1, b.order_id, price="0.455")
        assert off_grid.status == pb.REJECTED and off_grid.reject_reason == "INVALID_PRICE"
        unknown = await t1.replace(1, 999_999, price="0.41")
        assert unknown.reject_reason == "UNKNOWN_ORDER"
        code, _ = await status_of(t1.replace(1, b.order_id))
        assert code == grpc.StatusCode.INVALID_ARGUMENT

    h.run(scenario())


def test_engine_rejects_are_replies_with_reasons(h: Harness) -> None:
    t1, admin = h.client("trader-1"), h.client("admin")

    async def scenario() -> None:
        cases = [
            (dict(market=9), "UNKNOWN_MARKET"),
            (dict(quantity="0.5"), "BELOW_MIN_SIZE"),
            (dict(quantity="200000", price="0.99"), "INSUFFICIENT_BALANCE"),
            (dict(time_in_force="GTD", expire_time_ns=1), "INVALID_EXPIRY"),
            (dict(time_in_force="IOC", post_only=True), "INVALID_ORDER"),
            (dict(intent="SELL_YES", cash="5", market_order=True), "INVALID_ORDER"),
        ]
        for change, reason in cases:
            args = dict(market=1, intent="BUY_YES", price="0.5", quantity="1")
            args.update(change)
            if "cash" in args:
                args.pop("quantity")
            reply = await t1.place(1, **args)
            assert reply.status == pb.REJECTED, (change, reply)
            assert reply.reject_reason == reason and reply.message, (change, reply)
        assert (await admin.set_market_state(1, "SUSPENDED")).ok
        suspended = await t1.place(1, 1, "BUY_YES", "0.5", "1")
        assert suspended.reject_reason == "MARKET_NOT_OPEN"
        assert (await admin.set_market_state(1, "HALTED")).ok
        halted = await t1.place(1, 1, "BUY_YES", "0.5", "1")
        assert halted.reject_reason == "MARKET_NOT_OPEN"
        assert not (await t1.get_account(1)).orders

    h.run(scenario())


def test_gtd_order_expires(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        expiry = time.time_ns() + 300_000_000
        gtd = await t1.place(
            1, 1, "BUY_YES", "0.20", "1", time_in_force="GTD", expire_time_ns=expiry
        )
        assert gtd.status == pb.RESTING
        (order,) = (await t1.get_account(1)).orders
        assert order.time_in_force == pb.GTD and order.expire_time_ns == expiry

        async def gone() -> bool:
            return not (await t1.get_account(1)).orders

        await wait_until(gone)  # the sequencer's idle tick advances engine time

    h.run(scenario())


def test_order_stream_pipelines_and_reports_errors(h: Harness) -> None:
    t1 = h.client("trader-1")

    async def scenario() -> None:
        async with t1.order_stream() as stream:
            prices = [f"0.{10 + i}" for i in range(20)]
            replies = await asyncio.gather(
                *(
                    stream.place(1, 1, "BUY_YES", p, "1", client_order_id=100 + i)
                    for i, p in enumerate(prices)
                )
            )
            assert all(r.reply.status == pb.RESTING and not r.error for r in replies)
            assert len({r.reply.order_id for r in replies}) == 20
            assert [r.reply.client_order_id for r in replies] == list(range(100, 120))

            bad = await stream.place(1, 1, "BUY_YES", "abc", "1")
            assert bad.error.startswith("INVALID_ARGUMENT") and not bad.HasField("reply")
            other = await stream.place(2, 1, "BUY_YES", "0.5", "1")
            assert other.error.startswith("PERMISSION_DENIED")

            moved = await stream.replace(1, replies[0].reply.order_id, price="0.05")
            assert moved.reply.status == pb.RESTING
            one = await stream.cancel(1, replies[1].reply.order_id)
            assert one.reply.status == pb.CANCELED
            by_id = await stream.cancel_by_client_id(1, 102)
            assert by_id.reply.order_id == replies[2].reply.order_id
            rest = await stream.cancel_all(1)
            assert rest.reply.canceled_count == 18
        assert not (await t1.get_account(1)).orders

    h.run(scenario())


def test_admin_calls(h: Harness) -> None:
    t1, t2, admin = h.client("trader-1"), h.client("trader-2"), h.client("admin")

    async def scenario() -> None:
        created = await admin.create_market(
            10, "0.1", min_size="1", lot="1", taker_fee_bps=5, fee_base="PQ"
        )
        assert created.ok and created.seq > 0
        again = await admin.create_market(10, "0.1")
        assert not again.ok and again.reject_reason == "MARKET_EXISTS" and again.message
        # PRE_OPEN collects limit orders for the opening auction, not IOCs
        ioc = await t1.place(1, 10, "BUY_YES", "0.5", "1", time_in_force="IOC")
        assert ioc.reject_reason == "NOT_IN_AUCTION" and ioc.message
        pre_open = await t1.place(1, 10, "BUY_YES", "0.5", "1")
        assert pre_open.status == pb.RESTING
        crossing = await t2.place(2, 10, "BUY_NO", "0.4", "1")  # an ask at 0.4
        assert crossing.status == pb.RESTING  # no matching before the auction
        assert (await admin.set_market_state(10, "OPEN")).ok
        assert not [o for o in (await t1.get_account(1)).orders if o.market == 10]  # uncrossed
        bad = await admin.set_market_state(10, "PRE_OPEN")
        assert not bad.ok and bad.reject_reason == "INVALID_STATE_TRANSITION"

        # a coarser tick cancels the resting orders off the new grid
        off = await t1.place(1, 1, "BUY_YES", "0.55", "1")
        on = await t1.place(1, 1, "BUY_YES", "0.5", "1")
        assert (await admin.set_tick(1, "0.1")).ok
        assert set(orders_of(await t1.get_account(1))) == {on.order_id}
        assert off.order_id != on.order_id
        code, details = await status_of(t1.place(1, 1, "BUY_YES", "0.55", "1"))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "tick grid" in details

        # resolution pays $1 per winning share (1,000 YES of the demo split)
        before = await t1.get_account(1)
        assert (await admin.resolve(3, "YES")).ok
        after = await t1.get_account(1)
        assert Decimal(after.cash) - Decimal(before.cash) == 1000
        assert all(p.market != 3 for p in after.positions)
        again = await admin.resolve(3, "NO")
        assert again.reject_reason == "INVALID_STATE_TRANSITION"

        assert (await admin.add_account(7)).ok
        assert (await admin.add_account(7)).reject_reason == "ACCOUNT_EXISTS"
        assert (await admin.deposit(7, "50.5")).ok
        short = await admin.withdraw(7, "100")
        assert not short.ok and short.reject_reason == "INSUFFICIENT_BALANCE"
        assert (await admin.withdraw(7, "0.5")).ok
        seven = await admin.get_account(7)  # the admin key may read every account
        assert (seven.cash, seven.cash_reserved) == ("50", "0")
        assert (await admin.deposit(99, "1")).reject_reason == "UNKNOWN_ACCOUNT"
        # one engine, one ledger: cash moves between the shards of a cluster only
        code, details = await status_of(admin.transfer(7, "1", 0, 1, transfer_id=1))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "one engine" in details
        assert (await admin.get_account(7)).cash == "50"

    h.run(scenario())


def test_stream_and_queries_agree_with_the_engine(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")

    async def scenario() -> None:
        await t1.place(1, 1, "BUY_YES", "0.45", "3")
        await t2.place(2, 1, "BUY_NO", "0.45", "1")  # mints against the bid
        return None

    h.run(scenario())
    h.query(lambda engine: engine.validate())
    orders = h.query(lambda engine: [(o.order_id, o.leaves_qty) for o in engine.orders_of(1)])
    state = h.run(t1.get_account(1))
    assert [(o.order_id, o.leaves_quantity) for o in state.orders] == [
        (oid, format_quantity(leaves)) for oid, leaves in orders
    ]


def test_health_reflection_and_metrics(loop: LoopThread, tmp_path: Path) -> None:
    h = start_harness(loop, tmp_path / "data", metrics_port=0)
    try:
        t1, t2 = h.client("trader-1"), h.client("trader-2")

        async def scenario() -> list[str]:
            channel = t1.channel
            check = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="pyexchange.v1.OrderEntry")
            )
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            call = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
            names = []
            async for response in call:
                names = [s.name for s in response.list_services_response.service]
            await t2.place(2, 1, "SELL_YES", "0.5", "1")
            await t1.place(1, 1, "BUY_YES", "0.5", "1")
            await t1.place(1, 1, "BUY_YES", "0.5", "1", time_in_force="FOK")
            return names

        names = h.run(scenario())
        assert {"pyexchange.v1.OrderEntry", "pyexchange.v1.Admin", "grpc.health.v1.Health"} <= set(
            names
        )
        registry = h.server.metrics.registry
        assert registry.get_sample_value("pyexchange_trades_total") == 1
        assert registry.get_sample_value("pyexchange_orders_total") >= 2
        assert (
            registry.get_sample_value("pyexchange_rejects_total", {"reason": "FOK_NOT_FILLED"}) == 1
        )
        assert (
            registry.get_sample_value(
                "pyexchange_command_latency_seconds_count", {"command": "place"}
            )
            == 3
        )
        url = f"http://127.0.0.1:{h.server.metrics_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "pyexchange_batch_size_bucket" in text and "pyexchange_queue_depth" in text
    finally:
        h.close()


# ----------------------------------------------------------------- restart


def _start_serve(data_dir: Path, port: int = 0) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pyexchange",
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--metrics-port",
            "-1",
            "--http-port",
            "0",
            "--fsync",
            "batch",
            "--log-level",
            "WARNING",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        cwd=data_dir.parent,  # outside the repository: the installed packages, not the tree
    )
    assert process.stdout is not None
    for line in process.stdout:  # the banner's first line names the port
        if line.startswith("pyexchange: listening on "):
            return process, int(line.rsplit(":", 1)[1])
    process.kill()
    raise AssertionError(f"the server did not start (exit {process.wait()})")


def test_restart_after_sigkill_loses_nothing_acknowledged(loop: LoopThread, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first, port = _start_serve(data_dir)
    try:
        key = next(
            k
            for k in json.loads((data_dir / "keys.json").read_text())["keys"]
            if k["name"] == "trader-1"
        )
        options = [
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500),
        ]

        async def make_client() -> ExchangeClient:
            return ExchangeClient(
                f"127.0.0.1:{port}", key["key_id"], key["secret"], timeout=20, options=options
            )

        client = loop.run(make_client())
        total = 300
        acked: dict[int, pb.OrderReply] = {}

        async def flood() -> None:
            async def one(i: int) -> None:
                price = f"0.{10 + i % 80:02d}"
                try:
                    reply = await client.place(1, 1, "BUY_YES", price, "1", client_order_id=1 + i)
                except grpc.aio.AioRpcError:
                    return  # in flight when the server died: not acknowledged
                acked[i] = reply
                if len(acked) == 100:
                    first.send_signal(signal.SIGKILL)

            await asyncio.gather(*(one(i) for i in range(total)))

        loop.run(flood())
        assert first.wait(10) == -signal.SIGKILL
        assert len(acked) >= 100 and all(r.status == pb.RESTING for r in acked.values())

        second, port2 = _start_serve(data_dir, port)  # same port: the client's channel resumes
        try:
            assert port2 == port

            async def resume() -> pb.AccountState:
                await client.wait_ready(20)
                state = await client.get_account(1)
                resting = {o.client_order_id: o for o in state.orders}
                for i, reply in acked.items():  # every acknowledged order survived the crash
                    order = resting[1 + i]
                    assert order.order_id == reply.order_id and order.leaves_quantity == "1"
                # retry everything: acknowledged (or journaled) ids answer their first result
                for i in range(total):
                    price = f"0.{10 + i % 80:02d}"
                    reply = await client.place(1, 1, "BUY_YES", price, "1", client_order_id=1 + i)
                    assert reply.status == pb.RESTING
                    if i in acked:
                        assert reply.order_id == acked[i].order_id
                        assert reply.seq == acked[i].seq
                return await client.get_account(1)

            state = loop.run(resume())
            ids = [o.client_order_id for o in state.orders]
            assert sorted(ids) == list(range(1, total + 1))  # one order per id, none doubled
            loop.run(client.close())
            second.send_signal(signal.SIGTERM)
            assert second.wait(20) == 0  # clean shutdown: snapshot and journal closed
            assert any((data_dir / "snapshots").glob("*.snapshot"))
        finally:
            if second.poll() is None:
                second.kill()
                second.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
