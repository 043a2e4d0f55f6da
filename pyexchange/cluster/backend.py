"""A gateway's engine: commands into the shards' logs, answers from their events.

``ClusterBackend`` is what the service layer's ``EngineLink`` submits to in a
gateway process, in place of the embedded ``Exchange`` (the same two calls:
``submit_to(commands, sink, token)`` and ``query(fn)``):

1. **Route.** A submission is split by shard (``router.route``; order ids and
   seqs are cluster ids, the shard in their top bits).
2. **Publish.** Each shard's ``ShardLink`` takes everything queued for it
   since its last publish as one batch (group commit), stamps the gateway's
   time on every record and publishes it to the shard's command log with a
   message id unique to this gateway's life (``Nats-Msg-Id``), so a publish
   retried after a lost acknowledgement is stored once. The JetStream
   acknowledgement means a quorum of the three servers stored it: from then on
   the command will run, whatever dies.
3. **Answer.** Once the quorum stored command message *n*, the gateway's
   mirror of the shard (a replica like the engines: every replica computes the
   same events from the stored log, so they are fixed once *n* is stored)
   applies it and its events answer it: one quorum round per order, not two
   (the event log's own is off the path; docs/cluster.md has the argument).
   Only while the event log is at most ``answer_ahead`` messages behind (read
   every ``EVENT_LOG_POLL_S``): with no engine publishing, acknowledgements stop
   there instead of running ahead of the engines' durable record. A command sent to every shard
   (ADD_ACCOUNT, CANCEL_CLIENT...) is answered once every shard answered
   (``router.combine``).

What a client sees when the cluster cannot store or answer (docs/cluster.md,
failure table): no quorum for ``store_timeout`` seconds fails the submission
(``SequencerStopped``, which the service layer reports as UNAVAILABLE) and
the shard is refused at once until its log takes a publish again; stored but
not answered within ``reply_timeout`` fails it the same way, saying it will
still run (a retry with the same client order id returns the first result).

``query(fn)`` runs ``fn`` on a ``ClusterView`` of the gateway's mirrors once
they have applied every message this gateway has answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats
import numpy as np
from nats.js import JetStreamContext

from matchcore import EVENT_DTYPE

from . import log as L
from .faults import fault
from .mirror import ClusterView, Listener, ShardMirror
from .router import EVERY, Part, Unroutable, combine, route, to_cluster_events
from .shard import Applied, credit_outcome, withdrew
from .transfers import CREDITED, XFER_OUT, Transfer

logger = logging.getLogger(__name__)
EVENT_LOG_POLL_S = 0.25
_NO_TARGETS = np.zeros(0, dtype=np.int64)

try:
    from pyexchange.engine.sequencer import SequencerStopped
except ImportError:  # pragma: no cover - the engine wing is part of the package

    class SequencerStopped(RuntimeError):  # type: ignore[no-redef]
        pass


class Sink(Protocol):
    """The service layer's ``AnswerSink`` (``pyexchange.engine.sequencer``)."""

    def answered(self, events: np.ndarray, starts: np.ndarray, answers: list[Any]) -> None: ...

    def failed(self, tokens: list[Any], error: BaseException) -> None: ...


@dataclass
class BackendConfig:
    servers: list[str]
    gateway_id: str
    max_batch: int = 4096  # records per command message
    store_timeout: float = 5.0  # s without a quorum acknowledgement before a submission fails
    reply_timeout: float = 15.0  # s from stored to answered before a submission fails
    publish_timeout: float = 1.0  # s per publish attempt
    api_timeout: float = 5.0  # s per JetStream API request (stream info, consumers, KV)
    start_timeout: float = 60.0  # s to read the layout and start the links and mirrors
    # command messages the mirror may answer beyond the event log's end (past it, answers
    # wait for the engines' event messages: no engine publishing stops acknowledgements)
    answer_ahead: int = 1000


@dataclass
class _Submission:
    sink: Sink
    token: Any
    kinds: np.ndarray  # command type per row
    targets: np.ndarray  # the shard of each row (router.EVERY: every shard)
    waiting: int  # parts not answered yet
    parts: int = 0  # parts sent
    answers: dict[int, list[np.ndarray]] = field(default_factory=dict)  # shard -> rows' events
    rows: dict[int, np.ndarray] = field(default_factory=dict)  # shard -> the rows it answered
    failed: bool = False


@dataclass
class _Queued:
    part: Part
    submission: _Submission


class ShardUnavailable(SequencerStopped):
    """A shard's log cannot store commands now (no JetStream quorum)."""


class _NotStored(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(repr(cause))
        self.cause = cause


@dataclass(frozen=True)
class TransferResult:
    """What became of a cash transfer between shards (``ClusterBackend.transfer_cash``).

    ``events``: the source's answer to the withdrawal (a REJECTED event when the
    cash was not there); ``credited``: whether the destination took it (False:
    it refused, and the source deposited it back); None when nothing was withdrawn.
    """

    events: np.ndarray
    credited: bool | None


class ShardLink:
    """One shard's command publisher and answerer in a gateway."""

    def __init__(self, backend: ClusterBackend, shard: int) -> None:
        self.backend = backend
        self.shard = shard
        self.js = backend.js
        self.config = backend.config
        self.queue: list[_Queued] = []
        self.awaiting: dict[int, tuple[float, list[tuple[_Queued, int]]]] = {}
        # (events per row, events) the mirror computed for messages that may be ours:
        # applied while a publish waited for its acknowledgement
        self.recent: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        # ours, computed, held back until the event log is within ``answer_ahead``
        self.held: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.answered_through = 0  # highest command message whose events this link handed out
        self.stored = 0  # messages this link had stored
        self.events_seen = 0  # the event log's end, read every EVENT_LOG_POLL_S
        self._publishing = False  # a publish waits for its acknowledgement
        self.down: str = ""  # why the shard refuses at once, or ""
        self._wake = asyncio.Event()
        self._boot = os.urandom(4).hex()
        self._counter = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        info = await self.js.stream_info(L.event_stream(self.shard))
        self.events_seen = int(info.state.last_seq)
        self._tasks = [
            asyncio.create_task(self._publisher(), name=f"publish-{self.shard}"),
            asyncio.create_task(self._watch_events(), name=f"events-{self.shard}"),
            asyncio.create_task(self._sweeper(), name=f"sweep-{self.shard}"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # ------------------------------------------------------------ publish

    def enqueue(self, queued: _Queued) -> None:
        self.queue.append(queued)
        self._wake.set()

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                batch: list[_Queued] = []
                size = 0
                while self.queue and (
                    not batch or size + len(self.queue[0].part.rows) <= self.config.max_batch
                ):
                    queued = self.queue.pop(0)
                    batch.append(queued)
                    size += len(queued.part.rows)
                await self._publish(batch)

    async def _publish(self, batch: list[_Queued]) -> None:
        commands = np.concatenate([q.part.commands for q in batch])
        commands["time"] = time.time_ns()  # stamped before it enters the log
        body = commands.tobytes()
        self._counter += 1
        msg_id = f"{self.config.gateway_id}.{self._boot}.{self.shard}.{self._counter}"
        self._publishing = True
        try:
            seq = await self.store(body, {L.MSG_ID: msg_id})
        except _NotStored as exc:
            self._refuse(batch, exc.cause)
            return
        finally:
            self._publishing = False
        fault("gateway-stored")
        self.stored = max(self.stored, seq)
        rows, offset = [], 0
        for queued in batch:
            rows.append((queued, offset))
            offset += len(queued.part.rows)
        self.awaiting[seq] = (time.monotonic(), rows)
        early = self.recent.pop(seq, None)
        if early is not None:  # the mirror applied it before its acknowledgement came
            self._answer_or_hold(seq, *early)

    async def store(self, body: bytes, headers: dict[str, str]) -> int:
        """Publish a command message until a quorum stored it: its stream seq.

        Retried (the same message id, so stored once) for ``store_timeout``
        seconds, then ``_NotStored``.
        """
        deadline = time.monotonic() + self.config.store_timeout
        while True:
            try:
                ack = await self.js.publish(
                    L.command_subject(self.shard),
                    body,
                    timeout=self.config.publish_timeout,
                    headers=headers,
                )
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # no quorum, a leader election, a reconnect
                if time.monotonic() >= deadline:
                    raise _NotStored(exc) from exc
                await asyncio.sleep(0.05)
        if self.down:
            logger.info("shard %d: the log stores commands again", self.shard)
            self.down = ""
        return int(ack.seq)

    def _refuse(self, batch: list[_Queued], exc: BaseException) -> None:
        self.down = (
            f"shard {self.shard}: the cluster's log cannot store commands (no JetStream "
            f"quorum: {type(exc).__name__}); nothing more is sent to it until it can"
        )
        logger.warning("%s", self.down)
        error = ShardUnavailable(
            f"shard {self.shard}: not stored within {self.config.store_timeout:g} s (no "
            "JetStream quorum); it may still have been entered: retry with the same client "
            "order id, which returns the first result"
        )
        for queued in batch:
            self.backend._fail(queued.submission, error)
        for queued in self.queue:  # behind it: refused the same way, never half sent
            self.backend._fail(queued.submission, error)
        self.queue.clear()
        asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        """Clear ``down`` once the shard's log answers again (a stream leader exists)."""
        while self.down:
            try:
                info = await self.js.stream_info(L.command_stream(self.shard))
                if info.cluster is None or info.cluster.leader:
                    logger.info("shard %d: the log has a leader again", self.shard)
                    self.down = ""
                    return
            except asyncio.CancelledError:
                raise
            except Exception:
                pass
            await asyncio.sleep(0.25)

    # ------------------------------------------------------------- answers

    def mirrored(self, mirror: ShardMirror, seq: int, applied: Applied, _ran: np.ndarray) -> None:
        """A mirror listener: the mirror applied message ``seq``; answer it if it is ours."""
        if seq in self.awaiting:
            self._answer_or_hold(seq, applied.counts, applied.events)
        elif self._publishing and seq > self.stored:  # maybe the one in flight
            self.recent[seq] = (applied.counts, applied.events)
            while len(self.recent) > 4096:
                self.recent.popitem(last=False)

    def _answer_or_hold(self, seq: int, counts: np.ndarray, events: np.ndarray) -> None:
        if seq - self.events_seen <= self.config.answer_ahead:
            self._answer(seq, counts, events)
        else:  # no engine has published for a while: wait for the event log
            self.held[seq] = (counts, events)

    async def _watch_events(self) -> None:
        """The event log's end (for ``answer_ahead``); answers held back go once it is near."""
        while True:
            await asyncio.sleep(EVENT_LOG_POLL_S)
            try:
                info = await self.js.stream_info(L.event_stream(self.shard))
            except Exception:  # no quorum, a leader election: the next poll
                continue
            self.events_seen = max(self.events_seen, int(info.state.last_seq))
            for seq in sorted(self.held):
                if seq - self.events_seen > self.config.answer_ahead:
                    break
                self._answer(seq, *self.held.pop(seq))

    def _answer(self, seq: int, counts: np.ndarray, events: np.ndarray) -> None:
        _, rows = self.awaiting.pop(seq)
        events = to_cluster_events(events, self.shard)
        bounds = np.concatenate(([0], np.cumsum(counts, dtype=np.int64))).tolist()
        for queued, offset in rows:
            n = len(queued.part.rows)
            if offset + n > len(counts):  # the engine skipped the message: not one we wrote
                self.backend._fail(queued.submission, SequencerStopped("malformed batch"))
                continue
            per_row = [events[bounds[offset + i] : bounds[offset + i + 1]] for i in range(n)]
            self.backend._part_answered(queued, per_row)
        self.answered_through = max(self.answered_through, seq)

    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            late = [s for s, (t, _) in self.awaiting.items() if now - t > self.config.reply_timeout]
            for seq in late:
                _, rows = self.awaiting.pop(seq)
                self.held.pop(seq, None)
                error = SequencerStopped(
                    f"shard {self.shard}: stored as message {seq}, but no engine answered "
                    f"within {self.config.reply_timeout:g} s; it will still run: retry with the "
                    "same client order id for its result"
                )
                for queued, _ in rows:
                    self.backend._fail(queued.submission, error)


class ClusterBackend:
    """The service layer's backend in a gateway process (see the module docstring)."""

    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.links: list[ShardLink] = []
        self.mirrors: list[ShardMirror] = []
        self.market_shards: dict[int, int] = {}
        # called after each message every mirror applies, from the first one on
        # (installed on the mirrors before they start; ``mirror.Listener``)
        self.listeners: list[Listener] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()

    async def start(self) -> ClusterBackend:
        """Connect, read the layout and the shard map, start the mirrors and the links."""
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.nc = await nats.connect(
            servers=self.config.servers,
            name=f"gateway-{self.config.gateway_id}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.25,
            connect_timeout=2,
        )
        # Publishes carry their own (short) timeout; API requests get a longer one: on a
        # loaded host, creating a consumer on an R3 stream can take more than a second.
        self.js: JetStreamContext = self.nc.jetstream(timeout=self.config.api_timeout)
        limit = self.config.start_timeout
        self.layout = await L.until_answered(lambda: L.read_layout(self.js), "the layout", limit)
        self.market_shards = await L.until_answered(
            lambda: L.market_map(self.js), "the shard map", limit
        )
        self._map_watch = asyncio.create_task(self._watch_map())
        self.links = [ShardLink(self, s) for s in range(self.layout.shards)]
        for link in self.links:
            await L.until_answered(link.start, f"shard {link.shard}'s event log", limit)
        self.mirrors = []
        for s in range(self.layout.shards):
            mirror = ShardMirror(self.js, s, self.layout)
            # the feeds first: they have a message before its answer goes out
            mirror.listeners.extend([*self.listeners, self.links[s].mirrored])
            self.mirrors.append(
                await L.until_answered(mirror.start, f"shard {s}'s command log", limit)
            )
        self.view = ClusterView(self.mirrors, self.shard_of_market)
        return self

    async def close(self) -> None:
        self._map_watch.cancel()
        for link in self.links:
            await link.close()
        for mirror in self.mirrors:
            await mirror.close()
        with contextlib.suppress(Exception):
            await self.nc.close()

    def shard_of_market(self, market: int) -> int:
        shard = self.market_shards.get(market)
        return market % self.layout.shards if shard is None else shard

    async def _watch_map(self) -> None:
        """Markets placed after the start (by an admin on any gateway) are routed too."""
        kv = await self.js.key_value(L.CLUSTER_BUCKET)
        while True:
            try:
                watcher = await kv.watch("market.*")
                async for entry in watcher:
                    if entry is None or entry.value is None:
                        continue
                    self.market_shards[int(entry.key.split(".", 1)[1])] = int(entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.debug("shard map watch: %r", exc)
                await asyncio.sleep(0.5)

    async def place_market(self, market: int, shard: int | None = None) -> int:
        """Put a new market on a shard (least markets, unless told) before its CREATE_MARKET."""
        if shard is None:
            counts = [0] * self.layout.shards
            for s in self.market_shards.values():
                counts[s] += 1
            shard = min(range(self.layout.shards), key=lambda s: (counts[s], s))
        placed = await L.place_market(self.js, market, shard)
        self.market_shards[market] = placed
        return placed

    # ---------------------------------------------------------- transfers

    async def transfer_cash(
        self, account: int, amount: int, source: int, destination: int, transfer_id: int
    ) -> TransferResult:
        """Move ``amount`` of ``account``'s free cash from shard ``source`` to ``destination``.

        The three steps of ``transfers.py``: this stores the ``xfer-out`` in the
        source's log (its message id made of the transfer's key, so a retry with
        the same ``transfer_id`` is the same transfer, answered with the first
        result), then waits on the gateway's mirrors until the source finished it
        (the destination's answer applied there). Runs on the backend's loop.
        ``ValueError`` for shards that do not make a transfer; ``ShardUnavailable``
        when the source's log cannot store it; ``SequencerStopped`` when it is
        withdrawn but not finished within ``reply_timeout`` (it will finish: a
        retry with the same id waits for it again).
        """
        shards = self.layout.shards
        if not (0 <= source < shards and 0 <= destination < shards):
            raise ValueError(
                f"the cluster has shards 0..{shards - 1}, not {source} -> {destination}"
            )
        if source == destination:
            raise ValueError(f"a transfer moves cash between two shards, not {source} -> {source}")
        link = self.links[source]
        if link.down:
            raise ShardUnavailable(link.down)
        t = Transfer(transfer_id, account, amount, source, destination, time.time_ns())
        try:
            seq = await link.store(t.encode(), {L.KIND: XFER_OUT, L.MSG_ID: t.msg_id(XFER_OUT)})
        except _NotStored as exc:
            raise ShardUnavailable(
                f"shard {source}: the transfer was not stored within "
                f"{self.config.store_timeout:g} s (no JetStream quorum); retry with the same "
                "transfer id"
            ) from exc.cause
        source_mirror, destination_mirror = self.mirrors[source], self.mirrors[destination]
        try:
            async with asyncio.timeout(self.config.reply_timeout):
                await source_mirror.reach(seq)
                assert source_mirror.state is not None
                first = source_mirror.state.sent[(account, transfer_id)]  # the first result
                events = to_cluster_events(np.frombuffer(first, dtype=EVENT_DTYPE).copy(), source)
                if not withdrew(events, t):
                    return TransferResult(events, None)
                await source_mirror.until(lambda state: t.key not in state.outgoing)
                await destination_mirror.until(lambda state: t.key in state.credited)
        except TimeoutError:
            raise SequencerStopped(
                f"transfer {transfer_id} of account {account}: withdrawn at shard {source} but "
                f"not finished within {self.config.reply_timeout:g} s; it will finish: retry "
                "with the same transfer id for its result"
            ) from None
        assert destination_mirror.state is not None
        credit = np.frombuffer(destination_mirror.state.credited[t.key], dtype=EVENT_DTYPE)
        return TransferResult(events, credit_outcome(credit, t) == CREDITED)

    # ------------------------------------------------------------- submit

    def submit_to(self, commands: np.ndarray, sink: Sink, token: Any) -> None:
        """Queue ``commands`` (one submission); ``sink`` gets its answer (any thread)."""
        if threading.get_ident() != self._thread:
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._submit, commands, sink, token)
            return
        self._submit(commands, sink, token)

    def _submit(self, commands: np.ndarray, sink: Sink, token: Any) -> None:
        """On the loop: route and queue; a shard that refuses fails the submission at once."""
        submission = _Submission(sink, token, commands["type"].copy(), _NO_TARGETS, 0)
        try:
            parts, submission.targets = route(commands, self.layout.shards, self.shard_of_market)
        except Unroutable as exc:
            self._fail(submission, SequencerStopped(str(exc)))
            return
        down = [self.links[p.shard].down for p in parts if self.links[p.shard].down]
        if down:  # nothing is sent when any shard it needs refuses: never half a submission
            self._fail(submission, ShardUnavailable(down[0]))
            return
        submission.waiting = submission.parts = len(parts)
        for part in parts:
            self.links[part.shard].enqueue(_Queued(part, submission))

    def _part_answered(self, queued: _Queued, per_row: list[np.ndarray]) -> None:
        submission = queued.submission
        if submission.failed:
            return
        submission.answers[queued.part.shard] = per_row
        submission.rows[queued.part.shard] = queued.part.rows
        submission.waiting -= 1
        if submission.waiting:
            return
        # one part: every row went to this one shard, in order
        pieces = per_row if submission.parts == 1 else self._combined(submission)
        empty = np.zeros(0, dtype=EVENT_DTYPE)
        submission.sink.answered(
            empty, np.zeros(1, dtype=np.int64), [(submission.token, 0, 0, pieces)]
        )

    def _combined(self, submission: _Submission) -> list[np.ndarray]:
        """Each row's events from the parts of a submission split over several shards."""
        index = {
            shard: dict(zip(rows.tolist(), range(len(rows)), strict=True))
            for shard, rows in submission.rows.items()
        }
        every = range(self.layout.shards)
        pieces = []
        for row, target in enumerate(submission.targets.tolist()):
            shards = every if target == EVERY else (target,)
            answers = [submission.answers[s][index[s][row]] for s in shards]
            pieces.append(combine(int(submission.kinds[row]), answers))
        return pieces

    def _fail(self, submission: _Submission, error: BaseException) -> None:
        if submission.failed:
            return
        submission.failed = True
        submission.sink.failed([submission.token], error)

    # -------------------------------------------------------------- query

    def query(self, fn: Callable[[Any], object]) -> Future[object]:
        """Run ``fn(view)`` once the mirrors hold every message this gateway answered."""
        future: Future[object] = Future()
        future.set_running_or_notify_cancel()
        assert self.loop is not None
        if threading.get_ident() != self._thread:
            self.loop.call_soon_threadsafe(self._start_query, fn, future)
        else:
            self._start_query(fn, future)
        return future

    def _start_query(self, fn: Callable[[Any], object], future: Future[object]) -> None:
        marks = [link.answered_through for link in self.links]
        if all(m.applied >= mark for m, mark in zip(self.mirrors, marks, strict=True)):
            self._run_query(fn, future)
            return
        assert self.loop is not None
        self.loop.create_task(self._query_when_caught_up(fn, future, marks))

    async def _query_when_caught_up(
        self, fn: Callable[[Any], object], future: Future[object], marks: list[int]
    ) -> None:
        for mirror, mark in zip(self.mirrors, marks, strict=True):
            await mirror.reach(mark)
        self._run_query(fn, future)

    def _run_query(self, fn: Callable[[Any], object], future: Future[object]) -> None:
        try:
            result = fn(self.view)
        except BaseException as exc:
            future.set_exception(exc)
        else:
            future.set_result(result)
