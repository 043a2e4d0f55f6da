"""The service layer with no transport (pyexchange/service): the test is the adapter.

A real embedded exchange (journal, sequencer thread, engine) under ``EngineLink``,
driven the way an API drives it: ``OrderEntry``, ``Queries`` and ``Admin`` with
requests in decimal strings or units, replies and ``ServiceError``s out. Also the
sequencer's ``submit_to`` (each command's events, one hand-over per batch) and the
stream ``pipeline`` (order, every request answered, flow control).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from matchcore import (
    ALL_MARKETS,
    COMMAND_DTYPE,
    CommandType,
    EventType,
    Intent,
    MarketState,
    Outcome,
    TimeInForce,
    make_commands,
)
from pyexchange.engine.exchange import Exchange
from pyexchange.engine.journal import EngineConfig
from pyexchange.service import admin as sa
from pyexchange.service import errors
from pyexchange.service import orders as so
from pyexchange.service.auth import ADMIN, READ, TRADE, ApiKey
from pyexchange.service.errors import Category, ServiceError
from pyexchange.service.link import EngineLink
from pyexchange.service.markets import Markets, MarketSpec
from pyexchange.service.pipeline import pipeline
from pyexchange.service.queries import Queries

CONFIG = EngineConfig(
    max_orders=1024,
    max_markets=8,
    max_accounts=16,
    max_levels=4096,
    max_positions=2048,
    ledger=True,
)
T1 = ApiKey("t1", "s", frozenset({TRADE, READ}), frozenset({1}))
T2 = ApiKey("t2", "s", frozenset({TRADE, READ}), frozenset({2}))
ADMIN_KEY = ApiKey("a", "s", frozenset({ADMIN, READ}))


class Service:
    """An exchange, its link and the three services, on a private loop thread."""

    def __init__(self, data_dir: Path, **link: Any) -> None:
        self.markets = Markets()
        self.exchange = Exchange.open(
            data_dir, CONFIG, on_events=self.markets.on_events, idle_tick_ns=None
        )
        self.link = EngineLink(self.exchange, self.markets, **link)
        self.entry = so.OrderEntry(self.link)
        self.queries = Queries(self.link)
        self.admin = sa.Admin(self.link)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 20.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, key: ApiKey, request: Any) -> Any:
        return self.run(self.entry.call(key, request))

    def refusal(self, coro: Any) -> ServiceError:
        with pytest.raises(ServiceError) as err:
            self.run(coro)
        return err.value

    @property
    def next_seq(self) -> int:
        return self.exchange.sequencer.next_seq

    def close(self) -> None:
        self.exchange.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def setup_market(s: Service) -> None:
    for request in (
        sa.CreateMarket(market=1, tick="0.01"),
        sa.SetMarketState(market=1, state=MarketState.OPEN),
        sa.AddAccount(account=1),
        sa.AddAccount(account=2),
        sa.Deposit(account=1, amount="1000"),
        sa.Deposit(account=2, amount=500_000_000),  # units: $500
    ):
        reply = s.run(s.admin.call(ADMIN_KEY, request))
        assert reply.ok and reply.seq, reply


@pytest.fixture
def s(tmp_path: Path) -> Iterator[Service]:
    service = Service(tmp_path / "data")
    setup_market(service)
    yield service
    service.close()


def place(account: int, intent: Intent, price: Any, quantity: Any, **kw: Any) -> so.Place:
    return so.Place(account=account, market=1, intent=intent, price=price, quantity=quantity, **kw)


def test_orders_in_strings_or_units_and_their_replies(s: Service) -> None:
    ask = s.call(T2, place(2, Intent.BUY_NO, "0.50", "3"))  # an ask at 0.50 (pays 0.50 a NO)
    assert ask.status == so.OrderStatus.RESTING and (ask.filled_quantity, ask.leaves_quantity) == (
        0,
        300,
    )
    bid = s.call(T1, place(1, Intent.BUY_YES, 5_200, 500, tif=TimeInForce.IOC))  # units
    assert bid.status == so.OrderStatus.PARTIALLY_FILLED and bid.cancel_reason == "UNFILLED"
    assert (bid.filled_quantity, bid.leaves_quantity) == (300, 0)
    (fill,) = bid.fills
    assert (fill.price, fill.quantity, fill.match_type, fill.maker_order_id) == (
        5_000,
        300,
        "MINT",
        ask.order_id,
    )
    assert bid.message.startswith("filled 3; the remaining 2 canceled")
    nothing = s.call(T1, place(1, Intent.BUY_YES, "0.52", "5", tif=TimeInForce.IOC))
    assert nothing.status == so.OrderStatus.CANCELED and nothing.filled_quantity == 0
    resting = s.call(T1, place(1, Intent.BUY_YES, "0.40", "2", client_order_id=9))
    moved = s.call(T1, so.Replace(account=1, order_id=resting.order_id, price="0.41"))
    assert moved.status == so.OrderStatus.RESTING and moved.leaves_quantity == 200
    state = s.run(s.queries.account(T1, 1))
    assert [(o.order_id, o.price) for o in state.orders] == [(resting.order_id, 4_100)]
    assert dict(state.positions)[1].yes_free == 300
    book = s.run(s.queries.book(1, 5))
    assert book.bids == [(4_100, 200, 1)] and book.asks == []
    gone = s.call(T1, so.CancelByClientId(account=1, client_order_id=9))
    assert gone.status == so.OrderStatus.CANCELED and gone.order_id == resting.order_id
    assert gone.canceled_count == 1 and gone.leaves_quantity == 0 and gone.filled_quantity is None


def test_bad_input_is_refused_before_the_journal(s: Service) -> None:
    before = s.next_seq
    hostile = [
        "+0.5",
        "\t0.5\n",
        "1e-999999999",
        "0.5_0",
        "\u0660.\u0665",
        "1e999999",
        "x" * 16_000,
    ]
    for value in hostile:
        for field in ("price", "quantity"):
            kwargs = {"price": "0.5", "quantity": "1", field: value}
            error = s.refusal(s.entry.call(T1, place(1, Intent.BUY_YES, **kwargs)))
            assert error.category is Category.INVALID, (field, value)
            assert len(error.message) < 300 and value[:30] not in error.message[40:]
        error = s.refusal(s.admin.call(ADMIN_KEY, sa.Deposit(account=1, amount=value)))
        assert error.category is Category.INVALID
    for request in (
        place(1, Intent.BUY_YES, "0.5", 0),  # zero units
        place(1, Intent.BUY_YES, True, "1"),  # not a number
        place(1, Intent.BUY_YES, "0.505", "1"),  # off the tick
        place(1, None, "0.5", "1"),  # type: ignore[arg-type]
        place(1, 9, "0.5", "1"),
        place(1, Intent.BUY_YES, "0.5", "1", tif=TimeInForce.GTD),  # no expiry
        so.Cancel(account=1, order_id=0),
        so.Replace(account=1, order_id=5),
        so.CancelAll(account=1, market=-1),
    ):
        assert s.refusal(s.entry.call(T1, request)).category is Category.INVALID, request
    assert s.next_seq == before  # nothing reached the journal


def test_values_the_engine_judges_are_its_rejects(s: Service) -> None:
    """``engine_judges`` (the venue API's semantics): units off the market's rules reach the
    engine and come back as journaled rejects, where they are refused at the edge otherwise;
    the shape (account, intent, codes, cash only on a market order) is checked the same."""
    judged = dict(engine_judges=True)
    for price, quantity, reason in (
        (0, 100, "INVALID_PRICE"),  # out of bounds: the adapter sends 0
        (5_050, 100, "INVALID_PRICE"),  # off the tick
        (5_000, 0, "INVALID_QUANTITY"),
        (5_000, 2**62, "INVALID_QUANTITY"),  # above the maximum
    ):
        with pytest.raises(ServiceError):
            s.run(s.entry.call(T1, place(1, Intent.BUY_YES, price, quantity)))
        before = s.next_seq
        reply = s.call(T1, place(1, Intent.BUY_YES, price, quantity, **judged))
        assert (reply.status, reply.reject_reason) == (so.OrderStatus.REJECTED, reason), reply
        assert reply.seq == before and s.next_seq == before + 1  # journaled
    resting = s.call(T1, place(1, Intent.BUY_YES, 4_000, 100, **judged))
    assert resting.status == so.OrderStatus.RESTING and resting.leaves_quantity == 100
    spent = s.call(
        T1,
        so.Place(
            account=1, market=1, intent=Intent.BUY_YES, price=9_900, cash=0, market_order=True,
            **judged,
        ),
    )  # fmt: skip
    assert spent.reject_reason == "INVALID_QUANTITY"  # a budget of $0: judged by cash
    for request in (
        place(1, None, 5_000, 100, **judged),  # type: ignore[arg-type]
        place(1, Intent.BUY_YES, -1, 100, **judged),
        place(1, Intent.BUY_YES, "0.5", 100, **judged),  # units only
        so.Place(account=1, market=1, intent=Intent.BUY_YES, price=5_000, cash=10, **judged),
    ):
        assert s.refusal(s.entry.call(T1, request)).category is Category.INVALID, request
    assert s.refusal(s.entry.call(T1, place(2, Intent.BUY_YES, 5_000, 1, **judged))).category is (
        Category.FORBIDDEN
    )


def test_accounts_and_other_accounts_orders(s: Service) -> None:
    theirs = s.call(T2, place(2, Intent.BUY_YES, "0.30", "1"))
    error = s.refusal(s.entry.call(T1, place(2, Intent.BUY_YES, "0.30", "1")))
    assert (error.category, error.reason) == (Category.FORBIDDEN, "ACCOUNT_NOT_ALLOWED")
    assert s.refusal(s.queries.account(T1, 2)).category is Category.FORBIDDEN
    # another account's order id reads exactly as an unknown one
    foreign = s.call(T1, so.Cancel(account=1, order_id=theirs.order_id))
    unknown = s.call(T1, so.Cancel(account=1, order_id=theirs.order_id + 77))
    assert foreign.reject_reason == unknown.reject_reason == "UNKNOWN_ORDER"
    assert foreign.message == unknown.message and foreign.status == so.OrderStatus.REJECTED
    moved = s.call(T1, so.Replace(account=1, order_id=theirs.order_id, quantity="2"))
    assert (moved.reject_reason, moved.message) == ("UNKNOWN_ORDER", unknown.message)
    assert [o.order_id for o in s.run(s.queries.orders(T2, 2))] == [theirs.order_id]
    missing = s.refusal(s.queries.account(ADMIN_KEY, 9))
    assert (missing.category, missing.reason) == (Category.NOT_FOUND, "UNKNOWN_ACCOUNT")
    assert s.refusal(s.admin.call(T1, sa.AddAccount(account=5))).category is Category.FORBIDDEN


def test_cancel_all_market_sentinel_is_a_market_number(s: Service) -> None:
    s.call(T1, place(1, Intent.BUY_YES, "0.30", "1"))
    before = s.next_seq
    sentinel = s.call(T1, so.CancelAll(account=1, market=ALL_MARKETS))
    assert sentinel.status == so.OrderStatus.REJECTED and sentinel.reject_reason == "UNKNOWN_MARKET"
    assert sentinel.seq == 0 and s.next_seq == before  # answered at once, not journaled
    unknown = s.call(T1, so.CancelAll(account=1, market=7))
    assert unknown.reject_reason == "UNKNOWN_MARKET" and unknown.seq
    assert len(s.run(s.queries.orders(T1, 1))) == 1  # neither canceled anything
    everything = s.call(T1, so.CancelAll(account=1))
    assert everything.status == so.OrderStatus.CANCELED and everything.canceled_count == 1


def test_many_requests_one_submission_every_one_answered_in_order(s: Service) -> None:
    async def scenario() -> list[Any]:
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        requests: list[Any] = [
            place(1, Intent.BUY_YES, "0.40", "1", client_order_id=5),
            errors.Invalid("could not be read"),
            place(1, Intent.BUY_YES, "0.40", "1", client_order_id=5),  # identical: first result
            place(2, Intent.BUY_YES, "0.40", "1"),  # not the key's account
            place(1, Intent.BUY_YES, "1e999999", "1"),
            so.CancelAll(account=1, market=1),
            so.CancelAll(account=1),  # nothing left: no events, still answered
            so.CancelAll(account=1, market=ALL_MARKETS),
        ]
        s.entry.submit(T1, requests, done.set_result)
        return await done

    first, unread, repeat, foreign, hostile, canceled, none_left, sentinel = s.run(scenario())
    assert first.status == so.OrderStatus.RESTING
    assert (repeat.order_id, repeat.seq) == (first.order_id, first.seq)
    assert isinstance(unread, errors.Invalid) and isinstance(hostile, errors.Invalid)
    assert isinstance(foreign, errors.Forbidden)
    assert canceled.canceled_count == 1 and canceled.seq > first.seq
    assert none_left.status == so.OrderStatus.CANCELED and none_left.canceled_count == 0
    assert sentinel.reject_reason == "UNKNOWN_MARKET"


def test_records_array_is_numpys_conversion() -> None:
    """The struct-packed command array has the bytes numpy's own conversion gives: every
    kind of record, and each field at its bounds (COMMAND_DTYPE's field types)."""
    markets = Markets()
    markets.specs[1] = MarketSpec(1, int(MarketState.OPEN), 100, 1, 1)
    order = so.Place(account=1, market=1, intent=Intent.SELL_NO, price="0.57", quantity="3")
    rows = [
        so.place_record(order, markets),
        so.cancel_record(so.Cancel(account=3, order_id=2**64 - 1)),
        so.cancel_client_record(so.CancelByClientId(account=2**32 - 1, client_order_id=9)),
        so.cancel_all_record(so.CancelAll(account=1, market=None)),
        so.replace_record(so.Replace(account=1, order_id=5, price="0.4321", quantity="12.34")),
        so.record(CommandType.NEW_ORDER, account=1, market=7, price=-(2**31), quantity=-(2**63)),
        so.record(CommandType.NEW_ORDER, price=2**31 - 1, quantity=2**63 - 1, expiry=-1),
        tuple(np.iinfo(COMMAND_DTYPE.fields[n][0]).max for n in COMMAND_DTYPE.names or ()),
        tuple(np.iinfo(COMMAND_DTYPE.fields[n][0]).min for n in COMMAND_DTYPE.names or ()),
    ]
    for count in (1, 2, len(rows)):
        packed = so.records_array(rows[:count])
        assert packed.dtype == COMMAND_DTYPE and packed.flags.writeable
        assert packed.tobytes() == np.array(rows[:count], dtype=COMMAND_DTYPE).tobytes()


def test_positional_records_equal_the_keyword_form() -> None:
    """cancel, cancel-by-client-id and replace records are tuples in COMMAND_DTYPE's field
    order (record()'s keywords cost per order): each equals record() with its fields named."""
    assert so.cancel_record(so.Cancel(account=3, order_id=2**64 - 1)) == so.record(
        CommandType.CANCEL, account=3, order_id=2**64 - 1
    )
    assert so.cancel_client_record(so.CancelByClientId(account=7, client_order_id=9)) == so.record(
        CommandType.CANCEL_CLIENT, account=7, client_order_id=9
    )
    replace = so.replace_record(so.Replace(account=1, order_id=5, price="0.43", quantity="12"))
    assert replace == so.record(
        CommandType.REPLACE,
        account=1,
        order_id=5,
        price=so.parse_price("0.43", 1),
        quantity=so.parse_quantity("12", 1),
    )


def test_busy_closing_and_stopped_are_refusals(tmp_path: Path) -> None:
    s = Service(tmp_path / "data", max_in_flight=2)
    try:
        setup_market(s)
        commands = np.zeros(3, dtype=COMMAND_DTYPE)
        commands["type"] = CommandType.ADD_ACCOUNT
        busy = s.refusal(s.link.run(commands, "x"))
        assert (busy.category, busy.retry_after_s) == (Category.BUSY, 0.1)
        s.link.closing = True
        assert s.refusal(s.link.run(commands[:1], "x")).category is Category.UNAVAILABLE
        s.link.closing = False
    finally:
        s.exchange.close()

    async def after_stop() -> list[Any]:
        done: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        s.entry.submit(T1, [place(1, Intent.BUY_YES, "0.4", "1")] * 2, done.set_result)
        return await done

    try:
        results = s.run(after_stop())
        assert [r.category for r in results] == [Category.UNAVAILABLE] * 2
        assert s.link.in_flight == 0
    finally:
        s.loop.call_soon_threadsafe(s.loop.stop)
        s.thread.join(5)


def test_admin_reject_is_a_reply(s: Service) -> None:
    again = s.run(s.admin.call(ADMIN_KEY, sa.CreateMarket(market=1)))
    assert not again.ok and again.reject_reason == "MARKET_EXISTS" and again.seq
    resolved = s.run(s.admin.call(ADMIN_KEY, sa.Resolve(market=1, outcome=Outcome.YES)))
    assert resolved.ok
    error = s.refusal(s.admin.call(ADMIN_KEY, sa.Resolve(market=1, outcome=0)))
    assert (error.category, error.reason) == (Category.INVALID, "INVALID_OUTCOME")


# ------------------------------------------------------------- submit_to


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray, list[Any]]] = []
        self.failures: list[tuple[list[Any], BaseException]] = []
        self.event = threading.Event()

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None:
        self.calls.append((events, starts, answers))
        self.event.set()

    def failed(self, tokens: list[Any], error: BaseException) -> None:
        self.failures.append((tokens, error))
        self.event.set()


def test_submit_to_gives_each_command_its_events_once_per_batch(tmp_path: Path) -> None:
    with Exchange.open(tmp_path / "d", CONFIG, idle_tick_ns=None) as exchange:
        setup = make_commands(
            [
                {
                    "type": CommandType.CREATE_MARKET,
                    "market": 1,
                    "price": 100,
                    "quantity": 1,
                    "aux": 1,
                },
                {"type": CommandType.SET_MARKET_STATE, "market": 1, "arg": MarketState.OPEN},
                {"type": CommandType.ADD_ACCOUNT, "account": 1},
                {"type": CommandType.DEPOSIT, "account": 1, "quantity": 10**9},
            ]
        )
        exchange.execute(setup)
        order = {"type": CommandType.NEW_ORDER, "account": 1, "market": 1, "price": 4_000}
        first = make_commands(
            [
                {**order, "quantity": 100},
                {"type": CommandType.CANCEL_ALL, "account": 1, "market": 5},
            ]
        )
        second = make_commands([{"type": CommandType.CANCEL_ALL, "account": 1, "market": 1}])
        sink = Sink()
        exchange.sequencer.query(lambda engine: None).result(5)  # a quiet sequencer
        gate = threading.Event()
        exchange.sequencer.query(lambda engine: gate.wait(5))  # hold it: one batch follows
        exchange.submit_to(first, sink, "a")
        exchange.submit_to(second, sink, "b")
        gate.set()
        assert sink.event.wait(5)
        ((events, starts, answers),) = sink.calls  # one hand-over for the batch
        assert [(t, lo, hi, p) for t, lo, hi, p in answers] == [
            ("a", 0, 2, None),
            ("b", 2, 3, None),
        ]
        per = [events[starts[j] : starts[j + 1]] for j in range(3)]
        assert per[0]["type"][0] == EventType.ACCEPTED and set(per[0]["seq"]) == {5}
        assert per[1]["type"].tolist() == [EventType.REJECTED]  # unknown market 5
        assert per[2]["type"][0] == EventType.CANCELED and set(per[2]["seq"]) == {7}

        # a repeat of a client order id: pieces, each command's events
        sink = Sink()
        coid = make_commands([{**order, "quantity": 100, "client_order_id": 3}])
        exchange.execute(coid)
        nothing = make_commands([{"type": CommandType.CANCEL_ALL, "account": 1, "market": 1}])
        exchange.submit_to(np.concatenate([coid, nothing]), sink, "c")
        assert sink.event.wait(5)
        ((_, _, ((token, _, _, pieces),)),) = sink.calls
        assert token == "c" and [p["type"][0] for p in pieces] == [
            EventType.ACCEPTED,
            EventType.CANCELED,
        ]
        assert int(pieces[0]["seq"][0]) == 8  # the first answer, from the idempotency table
    sink = Sink()
    with pytest.raises(Exception, match="stopped"):
        exchange.submit_to(second, sink, "late")


# -------------------------------------------------------------- pipeline


def test_pipeline_answers_in_order_and_stops_reading_at_the_window() -> None:
    async def scenario() -> None:
        read: list[int] = []
        pending: dict[int, Any] = {}

        async def messages() -> AsyncIterator[int]:
            for i in range(10):
                read.append(i)
                yield i

        def submit(message: int, done: Any) -> int:
            if message % 3 == 0:
                done(f"now {message}")  # answered at once
            else:
                pending[message] = done
            return 1

        out = pipeline(messages(), submit, window=4)
        results: list[str] = []
        first = asyncio.ensure_future(out.__anext__())
        await asyncio.sleep(0.05)
        assert first.done() and first.result() == "now 0"
        results.append(first.result())
        await asyncio.sleep(0.05)
        assert len(read) <= 5  # four unanswered read, then reading waits

        async def answer_late() -> None:
            while True:
                for i in sorted(pending):
                    pending.pop(i)(f"late {i}")
                await asyncio.sleep(0.005)

        answering = asyncio.ensure_future(answer_late())
        async for result in out:
            results.append(result)
        answering.cancel()
        assert results == [f"now {i}" if i % 3 == 0 else f"late {i}" for i in range(10)]

    asyncio.run(scenario())


def test_pipeline_answers_what_was_read_then_raises() -> None:
    async def scenario() -> None:
        async def messages() -> AsyncIterator[int]:
            yield 1
            yield 2
            raise errors.Invalid("malformed message")

        answers: list[Any] = []
        loop = asyncio.get_running_loop()

        def submit(message: int, done: Any) -> int:
            loop.call_later(0.01 * message, done, message)
            return 1

        with pytest.raises(errors.Invalid):
            async for result in pipeline(messages(), submit, window=8):
                answers.append(result)
        assert answers == [1, 2]

        def broken(message: int, done: Any) -> int:
            if message == 2:
                raise RuntimeError("bug")
            done(message)
            return 1

        got: list[Any] = []
        with pytest.raises(RuntimeError):
            async for result in pipeline(messages(), broken, window=8):
                got.append(result)
        assert got == [1]

    asyncio.run(scenario())
