"""The service layer's refusals (pyexchange/service/errors.py) and each API's table for them.

Auth raises typed errors with no transport in sight; gRPC maps every category to
its status (checked through a real ``grpc.aio`` server and channel: status,
message and the ``x-reason`` trailer), REST to its HTTP status and the venue's
code.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from pyexchange.api.grpc.auth import GrpcAuth
from pyexchange.api.grpc.errors import REASON_KEY, STATUS, abort
from pyexchange.api.rest.errors import STATUS as REST_STATUS
from pyexchange.api.rest.errors import from_service_error
from pyexchange.service import errors
from pyexchange.service.auth import READ, TRADE, ApiKey, Authenticator, KeyStore, sign
from pyexchange.service.errors import BY_CATEGORY, MAX_MESSAGE, Category, ServiceError

GRPC_EXPECTED = {
    Category.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    Category.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    Category.FORBIDDEN: grpc.StatusCode.PERMISSION_DENIED,
    Category.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Category.CONFLICT: grpc.StatusCode.ABORTED,
    Category.RATE_LIMITED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.BUSY: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Category.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Category.DATA_LOSS: grpc.StatusCode.DATA_LOSS,
    Category.INTERNAL: grpc.StatusCode.INTERNAL,
}
REST_EXPECTED = {  # (the body's code, HTTP status)
    Category.INVALID: (3, 400),
    Category.UNAUTHENTICATED: (16, 401),
    Category.FORBIDDEN: (7, 403),
    Category.NOT_FOUND: (5, 404),
    Category.CONFLICT: (10, 409),
    Category.RATE_LIMITED: (8, 429),
    Category.BUSY: (8, 429),
    Category.UNAVAILABLE: (14, 503),
    Category.DATA_LOSS: (15, 500),
    Category.INTERNAL: (13, 500),
}


def test_every_category_has_a_class_and_a_status_in_each_api() -> None:
    assert set(BY_CATEGORY) == set(Category)
    for category, cls in BY_CATEGORY.items():
        error = cls("why")
        assert error.category is category and error.message == "why" and error.reason
        assert isinstance(error, ServiceError)
    assert STATUS == GRPC_EXPECTED
    assert REST_STATUS == REST_EXPECTED


def test_a_message_is_capped_and_a_reason_kept() -> None:
    error = errors.Invalid("x" * 20_000, "BAD_PRICE")
    assert len(error.message) == MAX_MESSAGE and error.message.endswith("...")
    assert error.reason == "BAD_PRICE" and str(error) == error.message
    assert errors.Busy("b").reason == "BUSY"


def test_rest_maps_each_category_with_retry_after_when_retryable() -> None:
    for category, (code, status) in REST_EXPECTED.items():
        api = from_service_error(BY_CATEGORY[category]("why", retry_after_s=2.5))
        assert (api.code, api.status, api.message) == (code, status, "why")
        retry = dict(api.headers).get(b"retry-after")
        if category in (Category.RATE_LIMITED, Category.BUSY):
            assert retry == b"3"
        else:
            assert retry is None
    assert dict(from_service_error(errors.Busy("b")).headers)[b"retry-after"] == b"1"


async def _serve_errors() -> tuple[grpc.aio.Server, int]:
    """A real server whose method /t.T/<category> refuses with that category."""

    def handler(category: Category) -> Any:
        async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await abort(context, BY_CATEGORY[category](f"no: {category.value}", "SOME_REASON"))
            return b""

        return grpc.unary_unary_rpc_method_handler(refuse)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("t.T", {c.name: handler(c) for c in Category}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


def test_grpc_status_message_and_reason_per_category() -> None:
    async def scenario() -> None:
        server, port = await _serve_errors()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                for category, code in GRPC_EXPECTED.items():
                    call = channel.unary_unary(f"/t.T/{category.name}")
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        await call(b"")
                    assert err.value.code() == code
                    assert err.value.details() == f"no: {category.value}"
                    trailers = dict(err.value.trailing_metadata() or ())
                    assert trailers[REASON_KEY] == "SOME_REASON"
        finally:
            await server.stop(0)

    asyncio.run(scenario())


# ------------------------------------------------------------- auth, no transport


class Clock:
    def __init__(self, now: int = 1_700_000_000_000) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def _auth() -> tuple[Authenticator, ApiKey, ApiKey, Clock]:
    trader = ApiKey("t", "secret-t", frozenset({TRADE, READ}), frozenset({1}), rate=1, burst=2)
    viewer = ApiKey("v", "secret-v", frozenset({READ}), frozenset({1}))
    clock = Clock()
    return Authenticator(KeyStore([trader, viewer]), clock=clock), trader, viewer, clock


METHOD = "/pyexchange.v1.OrderEntry/PlaceOrder"


def test_authenticator_refusals_are_typed_with_a_reason() -> None:
    auth, trader, viewer, clock = _auth()

    def refusal(metadata: Any, permission: str | None = TRADE) -> ServiceError:
        with pytest.raises(ServiceError) as err:
            auth.verify(metadata, METHOD, None, permission)
        return err.value

    def signed(key: ApiKey, **kw: Any) -> tuple[tuple[str, str], ...]:
        return sign(key.key_id, key.secret, METHOD, None, timestamp_ms=clock.now, **kw)

    cases = [
        ((), Category.UNAUTHENTICATED, "MISSING_API_KEY"),
        ((("x-api-key", "nobody"),), Category.UNAUTHENTICATED, "UNKNOWN_API_KEY"),
        (
            (("x-api-key", "t"), ("x-timestamp-ms", "soon")),
            Category.UNAUTHENTICATED,
            "BAD_TIMESTAMP",
        ),
        (
            sign("t", "secret-t", METHOD, None, timestamp_ms=clock.now - 60_000),
            Category.UNAUTHENTICATED,
            "STALE_TIMESTAMP",
        ),
        (
            (("x-api-key", "t"), ("x-timestamp-ms", str(clock.now))),
            Category.UNAUTHENTICATED,
            "MISSING_SIGNATURE",
        ),
        (
            sign("t", "wrong", METHOD, None, timestamp_ms=clock.now),
            Category.UNAUTHENTICATED,
            "BAD_SIGNATURE",
        ),
    ]
    for metadata, category, reason in cases:
        error = refusal(metadata)
        assert (error.category, error.reason) == (category, reason), error
    metadata = signed(trader)
    assert auth.verify(metadata, METHOD, None, TRADE) is trader
    error = refusal(metadata)
    assert (error.category, error.reason) == (Category.UNAUTHENTICATED, "REPLAYED_REQUEST")
    clock.now += 1
    error = refusal(signed(viewer))
    assert (error.category, error.reason) == (Category.FORBIDDEN, "MISSING_PERMISSION")
    clock.now += 1
    auth.verify(signed(trader), METHOD, None, TRADE)  # the second token of the burst
    clock.now += 1
    error = refusal(signed(trader))
    assert error.category is Category.RATE_LIMITED and 0 < (error.retry_after_s or 0) <= 1
    with pytest.raises(errors.Forbidden) as err:
        auth.check_account(trader, 2)
    assert err.value.reason == "ACCOUNT_NOT_ALLOWED"
    auth.check_account(trader, 1)


class FakeContext:
    def __init__(self, metadata: Any) -> None:
        self.metadata = metadata
        self.aborted: tuple[Any, ...] | None = None

    def invocation_metadata(self) -> Any:
        return self.metadata

    async def abort(self, code: Any, details: str = "", trailing_metadata: Any = ()) -> None:
        self.aborted = (code, details, dict(trailing_metadata))
        raise grpc.aio.AbortError()


def test_grpc_auth_aborts_with_the_mapped_status_and_counts_it() -> None:
    auth, trader, _viewer, clock = _auth()
    counted: list[str] = []
    grpc_auth = GrpcAuth(auth, on_refused=counted.append)

    async def scenario() -> None:
        context = FakeContext(sign("t", "wrong", METHOD, None, timestamp_ms=clock.now))
        with pytest.raises(grpc.aio.AbortError):
            await grpc_auth.authenticate(context, None, TRADE, method=METHOD)
        assert context.aborted is not None
        code, _details, trailers = context.aborted
        assert code == grpc.StatusCode.UNAUTHENTICATED and trailers == {REASON_KEY: "BAD_SIGNATURE"}
        context = FakeContext(sign("t", "secret-t", METHOD, None, timestamp_ms=clock.now))
        assert await grpc_auth.authenticate(context, None, TRADE, method=METHOD) is trader
        with pytest.raises(grpc.aio.AbortError):
            await grpc_auth.require_account(context, trader, 9)
        assert context.aborted[0] == grpc.StatusCode.PERMISSION_DENIED

    asyncio.run(scenario())
    assert counted == ["UNAUTHENTICATED", "PERMISSION_DENIED"]
