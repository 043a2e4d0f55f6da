"""Signing a gRPC call from docs/service.md alone, and signatures over the bytes received.

The client here is written from the documented recipe with the standard library
(hashlib, hmac) and grpc's raw byte calls: its protobuf is encoded by hand, not by
the project's client helper or the generated stubs (these only decode replies for the
assertions). Requests are encoded as a client in another language may encode them —
fields in reverse order, defaults written out, repeated fields unpacked — which a
server hashing its own re-serialization refused ("signature does not match"); they must
verify, because the server hashes the bytes it received.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from service_support import LoopThread, start_harness

from pyexchange.api.grpc import exchange_pb2 as pb
from pyexchange.service.auth import ApiKey, Authenticator, KeyStore
from pyexchange.service.errors import Unauthenticated

DOC = Path(__file__).resolve().parent.parent / "docs" / "service.md"

# ------------------------------------------------ the client, from the docs


def sign_per_docs(
    key_id: str, secret: str, full_method: str, body: bytes, timestamp_ms: int
) -> list[tuple[str, str]]:
    """docs/service.md, "How to sign", steps 1-4."""
    body_sha256 = hashlib.sha256(body).hexdigest()
    payload = f"{key_id}\n{timestamp_ms}\n{full_method}\n{body_sha256}".encode()
    signature = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return [
        ("x-api-key", key_id),
        ("x-timestamp-ms", str(timestamp_ms)),
        ("x-signature", signature),
    ]


def stream_metadata(key_id: str, secret: str, full_method: str, timestamp_ms: int) -> list:
    """A client stream: the documented hash of the empty body, taken as written there."""
    empty = documented()["empty"]
    payload = f"{key_id}\n{timestamp_ms}\n{full_method}\n{empty}".encode()
    signature = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return [
        ("x-api-key", key_id),
        ("x-timestamp-ms", str(timestamp_ms)),
        ("x-signature", signature),
    ]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)


def field(number: int, value: int | str | bytes) -> bytes:
    """One protobuf field: an int as a varint (wire type 0), text/bytes length-delimited."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    data = value.encode() if isinstance(value, str) else value
    return varint(number << 3 | 2) + varint(len(data)) + data


def place_order(price: str, quantity: str) -> bytes:
    """PlaceOrderRequest as another encoder may write it: last field first, defaults
    written out (client_order_id 0, post_only false, time_in_force 0)."""
    return b"".join(
        [
            field(12, 0),  # client_order_id
            field(9, 0),  # post_only
            field(7, 0),  # time_in_force
            field(5, quantity),
            field(4, price),
            field(3, 1),  # intent BUY_YES
            field(2, 1),  # market
            field(1, 1),  # account
        ]
    )


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    assert match is not None, pattern
    return match.group(1)


def documented() -> dict[str, str]:
    """The worked example of docs/service.md, as printed there."""
    text = DOC.read_text()
    rows = dict(re.findall(r"^\| ([a-z0-9_ ()-]+) \| `([^`]*)` \|$", text, re.M))
    return {
        "key_id": rows["key id"],
        "secret": rows["secret"],
        "timestamp_ms": rows["timestamp_ms"],
        "full_method": rows["full_method"],
        "body": rows["body (hex)"],
        "body_sha256": rows["body_sha256"],
        "signature": rows["x-signature"],
        "empty": _found(r"for an empty body that\s+is `([0-9a-f]{64})`", text),
        "other_encoding": _found(r"written out, `([0-9a-f]+)`", text),
        "hex_key_prefix": _found(r"hex-decoded secret the signature would be `([0-9a-f]+)\.", text),
    }


# ---------------------------------------------------------------- tests


def test_the_documented_example_signs_and_verifies() -> None:
    doc = documented()
    body = bytes.fromhex(doc["body"])
    assert hashlib.sha256(body).hexdigest() == doc["body_sha256"]
    assert doc["empty"] == hashlib.sha256(b"").hexdigest()
    stamp = int(doc["timestamp_ms"])
    metadata = sign_per_docs(doc["key_id"], doc["secret"], doc["full_method"], body, stamp)
    assert metadata[2] == ("x-signature", doc["signature"])
    # The example's request is what the table says, and the other encoding is the same one.
    want = pb.PlaceOrderRequest(account=1, market=1, intent=pb.BUY_YES, price="0.45", quantity="10")
    assert pb.PlaceOrderRequest.FromString(body) == want
    other = bytes.fromhex(doc["other_encoding"])
    assert pb.PlaceOrderRequest.FromString(other) == want and other != body
    # Keyed with the hex-decoded secret it is another signature.
    payload = f"{doc['key_id']}\n{stamp}\n{doc['full_method']}\n{doc['body_sha256']}".encode()
    wrong = hmac.new(bytes.fromhex(doc["secret"]), payload, hashlib.sha256).hexdigest()
    assert wrong.startswith(doc["hex_key_prefix"]) and wrong != doc["signature"]
    # The server's verifier accepts the example, and the other encoding signed as itself.
    key = ApiKey(doc["key_id"], doc["secret"], frozenset({"trade"}), frozenset({1}))
    auth = Authenticator(KeyStore([key]), clock=lambda: stamp)
    assert auth.verify(metadata, doc["full_method"], body, "trade") is key
    other_md = sign_per_docs(doc["key_id"], doc["secret"], doc["full_method"], other, stamp)
    assert auth.verify(other_md, doc["full_method"], other, "trade") is key
    with pytest.raises(Unauthenticated) as err:  # the example's signature is for its bytes
        auth.verify(metadata[:2] + other_md[2:], doc["full_method"], body, "trade")
    assert err.value.reason == "BAD_SIGNATURE"


@pytest.fixture(scope="module")
def loop() -> Any:
    thread = LoopThread()
    yield thread
    thread.close()


def _reason(exc: grpc.aio.AioRpcError) -> str:
    return dict(exc.trailing_metadata() or ()).get("x-reason", "")


def test_a_client_written_from_the_docs_trades_with_any_encoding(
    loop: LoopThread, tmp_path: Path
) -> None:
    h = start_harness(loop, tmp_path / "data")
    key = h.key("trader-1")
    stamps = iter(range(time.time_ns() // 1_000_000, 1 << 62))  # one timestamp per request

    def signed(method: str, body: bytes) -> list[tuple[str, str]]:
        return sign_per_docs(key.key_id, key.secret, method, body, next(stamps))

    async def main() -> None:
        async with grpc.aio.insecure_channel(h.target) as channel:

            def unary(method: str) -> Any:
                return channel.unary_unary(method, request_serializer=None)

            place = unary("/pyexchange.v1.OrderEntry/PlaceOrder")
            raw = place_order("0.45", "2")
            # What a server re-serializing the message would have hashed: other bytes.
            assert pb.PlaceOrderRequest.FromString(raw).SerializeToString() != raw
            reply = pb.OrderReply.FromString(
                await place(raw, metadata=signed("/pyexchange.v1.OrderEntry/PlaceOrder", raw))
            )
            assert reply.status == pb.RESTING and reply.leaves_quantity == "2"
            # Signed over the re-serialization instead of the bytes sent: refused.
            again = pb.PlaceOrderRequest.FromString(raw).SerializeToString()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await place(raw, metadata=signed("/pyexchange.v1.OrderEntry/PlaceOrder", again))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert _reason(err.value) == "BAD_SIGNATURE"
            # The same request with the same timestamp is a replay; with its own, a new order.
            metadata = signed("/pyexchange.v1.OrderEntry/PlaceOrder", raw)
            first = pb.OrderReply.FromString(await place(raw, metadata=metadata))
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await place(raw, metadata=metadata)
            assert _reason(err.value) == "REPLAYED_REQUEST"
            second = pb.OrderReply.FromString(
                await place(raw, metadata=signed("/pyexchange.v1.OrderEntry/PlaceOrder", raw))
            )
            assert first.order_id != second.order_id and second.status == pb.RESTING

            # GetBook, its repeated field unpacked and its default depth written out.
            book_request = field(1, 1) + field(2, 0)
            assert pb.SubscribeMarketDataRequest.FromString(book_request).SerializeToString() != (
                book_request
            )
            book = pb.MarketDataUpdate.FromString(
                await unary("/pyexchange.v1.MarketData/GetBook")(
                    book_request,
                    metadata=signed("/pyexchange.v1.MarketData/GetBook", book_request),
                )
            )
            assert [(lv.price, lv.quantity) for lv in book.snapshot.bids][:1] == [("0.45", "6")]

            # A server stream signs its request: markets 1 and 2, unpacked.
            sub_request = field(1, 1) + field(1, 2)
            subscribe = channel.unary_stream(
                "/pyexchange.v1.MarketData/Subscribe", request_serializer=None
            )
            call = subscribe(
                sub_request, metadata=signed("/pyexchange.v1.MarketData/Subscribe", sub_request)
            )
            snapshot = pb.MarketDataUpdate.FromString(await call.read())
            assert snapshot.market == 1 and snapshot.WhichOneof("update") == "snapshot"
            call.cancel()

            # A client stream: the metadata signs the empty body (the documented hash).
            stream = channel.stream_stream(
                "/pyexchange.v1.OrderEntry/OrderStream", request_serializer=None
            )
            call = stream(
                metadata=stream_metadata(
                    key.key_id, key.secret, "/pyexchange.v1.OrderEntry/OrderStream", next(stamps)
                )
            )
            await call.write(field(1, 7) + field(2, place_order("0.44", "1")))
            answer = pb.OrderStreamReply.FromString(await call.read())
            assert answer.correlation_id == 7 and answer.reply.status == pb.RESTING
            await call.done_writing()
            call.cancel()

            # Health and reflection need no metadata at all.
            health = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=None)
            assert await health(b"") == field(1, 1)  # status SERVING
            reflect = channel.stream_stream(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                request_serializer=None,
            )
            call = reflect()
            await call.write(field(7, "*"))  # list_services
            assert b"pyexchange.v1.OrderEntry" in await call.read()
            call.cancel()

    try:
        h.run(main())
    finally:
        h.close()
