"""One hand-over per sequenced batch from the sequencer thread to an asyncio loop.

What the sequencer's consumers have for the loop after a batch (the engine link's
replies, the market data's drain, the drop copy's new log records) is gathered
by ``post`` while the batch runs, and ``flush`` (called by the sequencer once the
batch is answered, and after each query) hands all of it over with a single
``call_soon_threadsafe``: one wake-up of the loop per batch whatever the number
of consumers, and none in the middle of the sequencer's work (a wake-up there
gave the loop the GIL while the sequencer still had the batch to finish). On the
loop the calls run in the order they were posted: publishers (posted from
``on_events``) before the replies (posted by ``AnswerSink.answered``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Handover:
    """Calls for one loop, gathered on the sequencer thread and handed over per batch."""

    __slots__ = ("_pending", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._pending: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Sequencer thread, during a batch or a query: run ``fn(*args)`` on the loop after it."""
        self._pending.append((fn, args))

    def flush(self) -> None:
        """Sequencer thread, after each batch and query: hand what was posted to the loop."""
        if not self._pending:
            return
        calls, self._pending = self._pending, []
        try:
            self.loop.call_soon_threadsafe(_run, calls)
        except RuntimeError:  # the loop is closed: nothing is left to deliver to
            log.debug("hand-over to a closed loop dropped (%d calls)", len(calls))


def _run(calls: list[tuple[Callable[..., Any], tuple[Any, ...]]]) -> None:
    for fn, args in calls:
        try:
            fn(*args)
        except Exception:  # one consumer's failure is its own
            log.exception("a call handed over from the sequencer failed")
