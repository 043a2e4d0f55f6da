"""Security tests of the gRPC service: every refused request gets the right status and
changes nothing.

"Nothing" is checked on the engine itself: its state digest and the journal's
next sequence number, read on the sequencer thread before and after the
request, are equal (the server runs without idle ticks, so engine time only
moves when a command runs). Keys: the demo keys (trader-N for account N,
viewer, admin) plus ``slow`` (account 1, a burst of 3 requests and then
almost nothing) and ``slow-stream`` (burst 2).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from service_support import Harness, LoopThread, start_harness, status_of, wait_until

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.api.grpc.client import ExchangeClient
from pyexchange.service.auth import KEY_HEADER, READ, TRADE, ApiKey, KeyStore, new_secret, sign

PLACE = "/pyexchange.v1.OrderEntry/PlaceOrder"
ACCOUNT = "/pyexchange.v1.OrderEntry/GetAccount"
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED


def _keys() -> KeyStore:
    keys = KeyStore.demo((1, 2, 3, 4))
    for name, burst in (("slow", 3), ("slow-stream", 2)):
        keys.add(
            ApiKey(name, new_secret(), frozenset({TRADE, READ}), frozenset({1}), 1e-6, burst, name)
        )
    return keys


@pytest.fixture(scope="module")
def loop():
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def h(loop: LoopThread, tmp_path_factory: pytest.TempPathFactory):
    harness = start_harness(
        loop, tmp_path_factory.mktemp("security") / "data", keys=_keys(), idle_tick_ms=None
    )
    yield harness
    harness.close()


def order(account: int = 1, **change: Any) -> pb.PlaceOrderRequest:
    request = pb.PlaceOrderRequest(
        account=account, market=1, intent=pb.BUY_YES, price="0.5", quantity="1"
    )
    for name, value in change.items():
        setattr(request, name, value)
    return request


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def refused(
    h: Harness,
    call: Callable[[], Awaitable[Any]],
    code: grpc.StatusCode,
    fragment: str = "",
) -> str:
    """Run ``call``; it must fail with ``code`` (details containing ``fragment``) and leave
    the engine and the journal exactly as they were."""

    async def invoke() -> Any:  # the call is made on the loop's thread
        return await call()

    before = h.state()
    got, details = h.run(status_of(invoke()))
    assert got == code, (got, details)
    assert fragment.lower() in details.lower(), details
    assert h.state() == before, "a refused request changed the exchange"
    return details


# -------------------------------------------------------------- signatures


def test_missing_wrong_and_stale_credentials(h: Harness) -> None:
    t1 = h.client("trader-1")
    key = h.key("trader-1")
    stub = t1.order_entry
    request = order()

    def with_metadata(metadata: Any) -> Callable[[], Awaitable[Any]]:
        return lambda: stub.PlaceOrder(request, metadata=metadata)

    def good(**kw: Any) -> list[tuple[str, str]]:
        return list(sign(key.key_id, key.secret, PLACE, request, **kw))

    refused(h, with_metadata(()), UNAUTHENTICATED, "missing x-api-key")
    unknown = list(sign("nobody", key.secret, PLACE, request))
    refused(h, with_metadata(unknown), UNAUTHENTICATED, "unknown API key")
    refused(h, with_metadata(good()[:2]), UNAUTHENTICATED, "missing x-signature")
    refused(h, with_metadata([good()[0], good()[2]]), UNAUTHENTICATED, "x-timestamp-ms")
    malformed = [good()[0], ("x-timestamp-ms", "soon"), good()[2]]
    refused(h, with_metadata(malformed), UNAUTHENTICATED, "x-timestamp-ms")
    wrong_secret = list(sign(key.key_id, new_secret(), PLACE, request))
    refused(h, with_metadata(wrong_secret), UNAUTHENTICATED, "signature does not match")
    other_body = list(sign(key.key_id, key.secret, PLACE, order(quantity="2")))
    refused(h, with_metadata(other_body), UNAUTHENTICATED, "signature does not match")
    other_method = list(sign(key.key_id, key.secret, ACCOUNT, request))
    refused(h, with_metadata(other_method), UNAUTHENTICATED, "signature does not match")
    # the key id is signed: a signature made for another key id (same secret) is refused
    as_other = [(KEY_HEADER, key.key_id), *list(sign("trader-2", key.secret, PLACE, request))[1:]]
    refused(h, with_metadata(as_other), UNAUTHENTICATED, "signature does not match")
    garbage = [*good()[:2], ("x-signature", "zz" * 32)]
    refused(h, with_metadata(garbage), UNAUTHENTICATED, "signature does not match")
    stale = good(timestamp_ms=now_ms() - 60_000)
    refused(h, with_metadata(stale), UNAUTHENTICATED, "stale timestamp")
    future = good(timestamp_ms=now_ms() + 60_000)
    refused(h, with_metadata(future), UNAUTHENTICATED, "stale timestamp")
    # a stream is signed too (over an empty body)
    refused(h, lambda: _first_reply(stub.OrderStream(metadata=unknown)), UNAUTHENTICATED)


async def _first_reply(call: Any) -> Any:
    async for reply in call:
        return reply
    return None


def test_replayed_request_is_refused(h: Harness) -> None:
    t1 = h.client("trader-1")
    key = h.key("trader-1")
    request = order(price="0.11")
    metadata = sign(key.key_id, key.secret, PLACE, request)

    async def place() -> pb.OrderReply:
        return await t1.order_entry.PlaceOrder(request, metadata=metadata)

    first = h.run(place())
    assert first.status == pb.RESTING
    refused(h, place, UNAUTHENTICATED, "replay")
    # a request signed before the server (re)started is refused: the replay memory is in RAM
    auth = h.server.authenticator
    saved = auth.not_before_ms
    auth.not_before_ms = now_ms() + 1_000
    try:
        early = sign(key.key_id, key.secret, PLACE, order(price="0.12"))
        refused(
            h,
            lambda: t1.order_entry.PlaceOrder(order(price="0.12"), metadata=early),
            UNAUTHENTICATED,
            "before the server started",
        )
    finally:
        auth.not_before_ms = saved

    # identical requests through the client are not replays: each gets its own timestamp
    async def same_five() -> list[pb.AccountState]:
        return await asyncio.gather(*(t1.get_account(1) for _ in range(5)))

    assert len(h.run(same_five())) == 5


# ------------------------------------------------------------- permissions


def test_a_key_never_acts_on_or_sees_another_account(h: Harness) -> None:
    t1, t2 = h.client("trader-1"), h.client("trader-2")
    theirs = h.run(t2.place(2, 1, "BUY_YES", "0.2", "1", client_order_id=5))
    assert theirs.status == pb.RESTING
    denied = "may not act on or see account 2"
    refused(h, lambda: t1.place(2, 1, "BUY_YES", "0.5", "1"), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.get_account(2), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.cancel(2, theirs.order_id), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.cancel_by_client_id(2, 5), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.cancel_all(2), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.replace(2, theirs.order_id, price="0.3"), PERMISSION_DENIED, denied)
    refused(h, lambda: t1.get_account(2**32 - 1), PERMISSION_DENIED)

    async def on_the_stream() -> pb.OrderStreamReply:
        async with t1.order_stream() as stream:
            return await stream.cancel(2, theirs.order_id)

    before = h.state()
    reply = h.run(on_the_stream())
    assert reply.error.startswith("PERMISSION_DENIED") and not reply.HasField("reply")
    assert h.state() == before
    # acting on its own account, a key cannot touch another account's order either
    not_owner = h.run(t1.cancel(1, theirs.order_id))
    assert not_owner.reject_reason == "UNKNOWN_ORDER"  # as for an id that names no order
    assert theirs.order_id in {o.order_id for o in h.run(t2.get_account(2)).orders}


def test_permissions_trade_read_admin(h: Harness) -> None:
    viewer, t1, admin = h.client("viewer"), h.client("trader-1"), h.client("admin")
    assert h.run(viewer.get_account(1)).account == 1  # read is enough to look
    lacks_trade = "lacks the 'trade' permission"
    refused(h, lambda: viewer.place(1, 1, "BUY_YES", "0.5", "1"), PERMISSION_DENIED, lacks_trade)
    refused(h, lambda: viewer.cancel_all(1), PERMISSION_DENIED, lacks_trade)
    refused(
        h,
        lambda: _first_reply(
            viewer.order_entry.OrderStream(
                metadata=viewer.sign("/pyexchange.v1.OrderEntry/OrderStream", None)
            )
        ),
        PERMISSION_DENIED,
        lacks_trade,
    )
    refused(h, lambda: admin.place(1, 1, "BUY_YES", "0.5", "1"), PERMISSION_DENIED, lacks_trade)
    lacks_admin = "lacks the 'admin' permission"
    for client in (t1, viewer):
        refused(h, lambda c=client: c.deposit(1, "1000"), PERMISSION_DENIED, lacks_admin)
        refused(h, lambda c=client: c.create_market(20), PERMISSION_DENIED, lacks_admin)
        refused(h, lambda c=client: c.set_market_state(1, "CLOSED"), PERMISSION_DENIED)
        refused(h, lambda c=client: c.resolve(1, "YES"), PERMISSION_DENIED, lacks_admin)
        refused(h, lambda c=client: c.withdraw(1, "1"), PERMISSION_DENIED, lacks_admin)
        refused(h, lambda c=client: c.add_account(30), PERMISSION_DENIED, lacks_admin)
        refused(h, lambda c=client: c.set_tick(1, "0.1"), PERMISSION_DENIED, lacks_admin)


# --------------------------------------------------------------- messages


def test_malformed_and_oversized_messages(h: Harness) -> None:
    t1 = h.client("trader-1")
    key = h.key("trader-1")
    raw = t1.channel.unary_unary(PLACE, response_deserializer=pb.OrderReply.FromString)
    corrupt = b"\x22\x05ab"  # a 5-byte price field with 2 bytes
    metadata = sign(key.key_id, key.secret, PLACE, None)
    refused(h, lambda: raw(corrupt, metadata=metadata), INVALID_ARGUMENT, "malformed message")
    admin_raw = t1.channel.unary_unary(
        "/pyexchange.v1.Admin/Deposit", response_deserializer=pb.AdminReply.FromString
    )
    refused(h, lambda: admin_raw(b"\x12\xff", metadata=metadata), INVALID_ARGUMENT, "malformed")

    async def corrupt_stream() -> Any:
        stream = t1.channel.stream_stream(
            "/pyexchange.v1.OrderEntry/OrderStream",
            response_deserializer=pb.OrderStreamReply.FromString,
        )
        call = stream(metadata=t1.sign("/pyexchange.v1.OrderEntry/OrderStream", None))
        await call.write(b"\x12\x05ab")
        return await _first_reply(call)

    refused(h, corrupt_stream, INVALID_ARGUMENT, "malformed message")
    huge = order(price="0." + "1" * 100_000)
    refused(h, lambda: t1.place_raw(huge), RESOURCE_EXHAUSTED)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"price": "abc"}, "not a decimal"),
        ({"price": "NaN"}, "not a decimal"),
        ({"price": "inf"}, "not a decimal"),
        ({"price": "-0.5"}, "must be positive"),
        ({"price": "0"}, "must be positive"),
        ({"price": "1"}, "tick grid"),
        ({"price": "1.5"}, "tick grid"),
        ({"price": "0.555"}, "tick grid"),
        ({"price": ""}, "price is required"),
        ({"quantity": "0"}, "must be positive"),
        ({"quantity": "-1"}, "must be positive"),
        ({"quantity": "0.001"}, "more decimals"),
        ({"quantity": "1e20"}, "not a decimal"),
        ({"quantity": "100000001"}, "above the maximum"),
        ({"quantity": "x1"}, "not a decimal"),
        ({"quantity": ""}, "quantity is required"),
        ({"cash": "5"}, "not both"),
        ({"quantity": "", "cash": "5"}, "market buys only"),
        ({"quantity": "", "cash": "1e20", "market_order": True}, "not a decimal"),
        ({"quantity": "", "cash": "100000000000", "market_order": True}, "above the maximum"),
        ({"intent": 0}, "intent is required"),
        ({"intent": 99}, "unknown intent"),
        ({"time_in_force": 42}, "unknown time_in_force"),
        ({"self_trade_prevention": 9}, "unknown self_trade_prevention"),
        ({"time_in_force": pb.GTD}, "expire_time_ns"),
    ],
)
def test_out_of_range_order_values(h: Harness, change: dict[str, Any], fragment: str) -> None:
    t1 = h.client("trader-1")
    request = order(**change)
    refused(h, lambda: t1.place_raw(request), INVALID_ARGUMENT, fragment)


def test_out_of_range_other_values(h: Harness) -> None:
    t1, admin = h.client("trader-1"), h.client("admin")
    cases: list[Callable[[], Awaitable[Any]]] = [
        lambda: t1.cancel(1, 0),
        lambda: t1.cancel_by_client_id(1, 0),
        lambda: t1.replace(1, 5),
        lambda: t1.replace(1, 5, price="0.12345"),
        lambda: t1.replace(1, 5, quantity="1e11"),
        lambda: admin.create_market(20, "0.05"),
        lambda: admin.create_market(20, "abc"),
        lambda: admin.create_market(20, "0.01", taker_fee_bps=5_000),
        lambda: admin.create_market(20, "0.01", maker_fee_bps=-5_000),
        lambda: admin.create_market(20, "0.01", fee_base=7),
        lambda: admin.create_market(20, "0.01", min_size="0.001"),
        lambda: admin.set_market_state(1, 42),
        lambda: admin.set_tick(1, "0.2"),
        lambda: admin.resolve(1, 0),
        lambda: admin.resolve(1, 9),
        lambda: admin.deposit(1, "1e30"),
        lambda: admin.deposit(1, "-5"),
        lambda: admin.deposit(1, "abc"),
        lambda: admin.withdraw(1, "0"),
    ]
    for call in cases:
        refused(h, call, INVALID_ARGUMENT)


# ------------------------------------------------------------------ limits


def test_rate_limit_per_key(h: Harness) -> None:
    slow = h.client("slow")
    for _ in range(3):  # the burst
        h.run(slow.get_account(1))
    refused(
        h, lambda: slow.place(1, 1, "BUY_YES", "0.5", "1"), RESOURCE_EXHAUSTED, "rate limit: key"
    )
    assert h.run(h.client("trader-1").get_account(1)).account == 1  # other keys unaffected

    stream_client = h.client("slow-stream")

    async def on_the_stream() -> tuple[pb.OrderStreamReply, pb.OrderStreamReply]:
        async with stream_client.order_stream() as stream:  # opening takes one token
            first = await stream.place(1, 1, "BUY_YES", "0.13", "1")
            second = await stream.place(1, 1, "BUY_YES", "0.13", "1")
            return first, second

    first, second = h.run(on_the_stream())
    assert first.reply.status == pb.RESTING
    assert second.error.startswith("RESOURCE_EXHAUSTED: rate limit")


def test_backpressure_when_the_queue_is_full(loop: LoopThread, tmp_path: Path) -> None:
    h = start_harness(loop, tmp_path / "data", idle_tick_ms=None, max_in_flight=4)
    try:
        t1 = h.client("trader-1")
        exchange = h.server.exchange
        gateway = h.server.gateway
        assert exchange is not None and gateway is not None
        seq_before = h.state()[1]
        release = threading.Event()

        async def scenario() -> list[pb.OrderReply]:
            blocked = exchange.query(lambda engine: release.wait(30))  # holds the sequencer
            tasks = [
                asyncio.create_task(t1.place(1, 1, "BUY_YES", f"0.{20 + i}", "1")) for i in range(4)
            ]
            await wait_until(lambda: gateway.in_flight == 4)
            code, details = await status_of(t1.place(1, 1, "BUY_YES", "0.3", "1"))
            assert code == RESOURCE_EXHAUSTED and "busy" in details, details
            code, _ = await status_of(t1.get_account(1))
            assert code == RESOURCE_EXHAUSTED
            release.set()
            await asyncio.wrap_future(blocked)
            return await asyncio.gather(*tasks)

        replies = h.run(scenario())
        assert all(r.status == pb.RESTING for r in replies)
        assert h.state()[1] == seq_before + 4  # the refused ones never reached the journal
        assert gateway.in_flight == 0
        assert (
            h.server.metrics.registry.get_sample_value(
                "pyexchange_refused_total", {"status": "RESOURCE_EXHAUSTED"}
            )
            == 2
        )
    finally:
        release_all = locals().get("release")
        if release_all is not None:
            release_all.set()
        h.close()


def test_client_refuses_floats() -> None:
    with pytest.raises(TypeError):
        ExchangeClient.place_request(1, 1, "BUY_YES", 0.5, "1")  # type: ignore[arg-type]
