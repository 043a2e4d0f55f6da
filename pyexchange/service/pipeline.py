"""A pipelined stream of requests: every message read is answered, in order, with bounded memory.

``pipeline(messages, submit, window)`` reads messages as they come and hands
each to ``submit(message, done)``, which queues its work and returns its
weight (the requests it holds); ``done(result)`` is called once, later or at
once. Results are yielded in message order as soon as the oldest is ready.

Flow control: while the messages read and not yet answered weigh ``window``
or more, the next message is not read. A client that sends and never reads
its replies therefore stops being read (the transport's own flow control
then holds it back, as HTTP/2 does for gRPC): the server keeps at most about
``window`` requests and their replies for it, never an unbounded queue.

Every message read is answered before the stream ends: when reading fails (a
malformed frame, the client's half of the stream cut) the results of what
was read are still yielded, then the failure is raised for the transport to
report (never a clean end with requests unanswered). A ``submit`` that raises
ends the stream the same way, at that message.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, TypeVar

M = TypeVar("M")
R = TypeVar("R")

_PENDING = object()


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def pipeline(
    messages: AsyncIterator[M],
    submit: Callable[[M, Callable[[R], None]], int],
    window: int,
) -> AsyncIterator[R]:
    slots: deque[list[Any]] = deque()  # [result or _PENDING, weight], in message order
    ready = asyncio.Event()
    room = asyncio.Event()
    room.set()
    state = {"outstanding": 0, "reading": True}
    failure: list[BaseException] = []

    def finish(slot: list[Any], result: Any) -> None:
        if slot[0] is _PENDING:
            slot[0] = result
            ready.set()

    async def read() -> None:
        try:
            async for message in messages:
                slot: list[Any] = [_PENDING, 1]
                slots.append(slot)
                try:
                    weight = submit(message, partial(finish, slot))
                except Exception as exc:  # reported in order, then raised
                    finish(slot, _Failed(exc))
                    return
                slot[1] = max(1, weight)
                state["outstanding"] += slot[1]
                if state["outstanding"] >= window:
                    room.clear()
                    await room.wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # raised once what was read is answered
            failure.append(exc)
        finally:
            state["reading"] = False
            ready.set()

    reader = asyncio.create_task(read())
    try:
        while True:
            while slots and slots[0][0] is not _PENDING:
                result, weight = slots.popleft()
                if isinstance(result, _Failed):
                    raise result.error
                yield result
                state["outstanding"] -= weight
                if state["outstanding"] < window:
                    room.set()
            if not state["reading"] and not slots:
                break
            ready.clear()
            if (slots and slots[0][0] is not _PENDING) or (not state["reading"] and not slots):
                continue
            await ready.wait()
        if failure:
            raise failure[0]
    finally:
        reader.cancel()
