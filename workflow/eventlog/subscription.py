"""One reader of a session's event log: its backlog, then live events, through a bounded buffer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from enum import StrEnum

from core import metrics
from core.events import Event


class CloseReason(StrEnum):
    """Why a subscription ended; the stream handler tells its client what it means."""

    READER_GONE = "the reader went away"
    OVERFLOW = "the client fell too far behind"
    ENDED = "the session's run is over"
    DELETED = "the session was deleted"
    STORE_DOWN = "the store cannot be written"
    SHUTDOWN = "the server is shutting down"
    MOVED = "the session's run moved to another instance"


class Subscription:
    """Events for one stream, oldest first.

    The publisher only ever appends the already-encoded event to `_pending`; it never waits for the
    reader. A reader that lets more than `limit` events pile up is cut off (`closed_reason` says
    why) and `on_cut_off` is called so its connection can be closed at once; the client resumes
    with Last-Event-ID. The backlog handed to `prime` does not count against the limit.

    A reader that can take events at once sets `write_through`: while nothing is queued, events are
    handed to it as they are offered, and queued only if it returns False. So a reader keeping up
    is not woken once per event (the wake-up, not the write, was most of what a live delivery cost).
    """

    def __init__(self, session_id: str, limit: int, after_id: int = 0) -> None:
        self.session_id = session_id
        self.limit = limit
        self.after_id = after_id  # where the reader asked to start
        self.last_id = after_id  # the newest event id handed to the reader or queued for it
        self.closed_reason: CloseReason | None = None
        self.on_cut_off: Callable[[], None] | None = None
        # Set by whoever reads the subscription: False once the reader's connection is gone.
        self.reader_alive: Callable[[], bool] = lambda: True
        # Set by a reader that can write events at once; it returns False to have them queued.
        self.write_through: Callable[[list[Event]], bool] | None = None
        # A list, swapped out whole when taken: an idle reader holds an empty list (a deque would
        # hold a 64-slot block for its whole life).
        self._pending: list[Event] = []
        self._backlog = 0  # replayed events still queued; they do not count against the limit
        # The reader's wait, while it waits: one future per wait, and nothing at all while it does
        # not (most streams are idle most of the time; this is their whole per-stream wake-up cost).
        self._waiter: asyncio.Future[None] | None = None

    @property
    def closed(self) -> bool:
        return self.closed_reason is not None

    def prime(self, backlog: Iterable[Event]) -> None:
        """Put the stored events first; live events that raced in and repeat them are dropped.

        Called once, before the reader takes its first batch.
        """
        live, self._pending = self._pending, []
        self.last_id = self.after_id
        backlog = list(backlog)
        for event in [*backlog, *live]:
            self._queue(event)
        self._backlog = len(backlog)
        if self._pending:
            self.wake()

    def offer(self, event: Event) -> None:
        """Called by the publisher for every new event; O(1) and never blocks."""
        self.offer_many([event])

    def offer_many(self, events: list[Event]) -> None:
        """Called by the publisher with new events of the session, oldest first; never blocks."""
        if self.closed:
            return
        first = events[0].id
        if first is None or first > self.last_id:
            fresh = events  # the publisher's own list (ids ascend): every reader gets the same object
        else:
            fresh = [e for e in events if e.id is None or e.id > self.last_id]  # repeats the replay
            if not fresh:
                return
        if not self._pending and self.write_through is not None and self.write_through(fresh):
            last = fresh[-1].id
            if last is not None:
                self.last_id = last
            return
        for event in fresh:
            if len(self._pending) >= self.limit + self._backlog:
                metrics.SSE_CUT_OFF.labels("overflow").inc()
                self.close(CloseReason.OVERFLOW)
                if self.on_cut_off is not None:
                    self.on_cut_off()
                return
            self._queue(event)
        self.wake()

    def _queue(self, event: Event) -> bool:
        if event.id is not None and event.id <= self.last_id:
            return False
        self._pending.append(event)
        if event.id is not None:
            self.last_id = event.id
        return True

    def close(self, reason: CloseReason = CloseReason.READER_GONE) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self.write_through = None
        self.wake()

    def wake(self) -> None:
        """End the reader's wait (`ready()`), if it is waiting: for events, a close, or a heartbeat."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def ready(self) -> asyncio.Future[None]:
        """A future that completes once there is something to `take()`, the subscription closes, or
        `wake()` is called; already complete if one of the first two holds now. Cancelling it is
        how a reader stops waiting."""
        waiter = asyncio.get_running_loop().create_future()
        if self._pending or self.closed:
            waiter.set_result(None)
        else:
            self._waiter = waiter
        return waiter

    def take(self) -> list[Event]:
        """Every event queued so far, without waiting: none if there are none, or once the reader
        was cut off for falling behind."""
        if self.closed_reason == CloseReason.OVERFLOW or not self._pending:
            return []
        batch, self._pending = self._pending, []
        self._backlog = 0
        return batch

    async def next_batch(self) -> list[Event]:
        """Every event queued so far (waiting for at least one); empty once the subscription is closed."""
        while not self._pending and not self.closed:
            await self.ready()
        return self.take()
