"""GET /api/sessions/{id}/events: a session's events by long polling, for where streams cannot go.

Some proxies and corporate networks buffer or cut event streams. A poll asks for the events after
an id and is answered with a plain JSON document: at once when there are some, otherwise once
the next one is committed, or after `wait` seconds with none. The events are the stream's, from
the same log: the same ids and, byte for byte, the same payloads, each with its `id` added.
"""

from __future__ import annotations

import asyncio
import math
import re
from asyncio import Future
from typing import Any

from core import metrics
from core.errors import InvalidInput, SessionNotFound, ShuttingDown, StoreUnavailable
from core.events import ERROR, FINAL, QUEUED, Event, dumps
from core.models import SessionStatus
from handlers.stream import EventsAccess, OpenRequests, parse_event_id
from workflow.eventlog import CloseReason, Subscription

# How long a poll holds when it does not say (`wait=`), at most poll_max_wait.
DEFAULT_WAIT = 25.0
# A decimal number of seconds as people write one ("10", "2.5", ".5", "1e1"); no sign, no "nan".
SECONDS = re.compile(r"^([0-9]{1,12}(\.[0-9]{0,12})?|\.[0-9]{1,12})([eE][+-]?[0-9]{1,3})?$")


class HeldPolls(OpenRequests["EventsHandler"]):
    """The polls not yet answered, so a shutdown can answer them at once, and let the answers
    leave before it closes the sockets (`wait_closed`).

    While the server drains, no poll is held: one with events is answered with them, one without
    gets 503 with Retry-After at once (answering it empty would have its client poll again at
    once, over and over, until the process exits).
    """

    def __init__(self) -> None:
        super().__init__()
        self.draining = False

    def release(self) -> None:
        """The server drains: answer every held poll now, and hold none from here on."""
        self.draining = True
        for handler in list(self._handlers):
            handler.release()


class EventsHandler(EventsAccess):
    """One poll, holding at most one subscription for at most `wait` seconds.

    Answers `{"events": [...], "next_after": N, "done": bool, "status": "..."}`. A poll does not
    start a pending session (a GET should not start work, and a polling client can POST /start);
    it waits for its first events like any other.
    """

    subscription: Subscription | None = None
    _waiter: asyncio.Future[list[Event]] | None = None
    _released = False  # answered early because the server drains

    async def get(self, session_id: str) -> None:
        after = parse_event_id(self.get_query_argument("after", ""), "after")
        wait = self._wait()
        session = await self.owned(session_id)
        # Past the end of the log counts as the end, as for the stream's Last-Event-ID.
        position = min(after, session.last_event_id)
        if position >= session.last_event_id and session.status.finished:
            self._answer([], position, session.status, done=True)
            return
        polls = self._polls
        subscription = self.subscription = await self.engine.log.subscribe(session_id, position)
        subscription.reader_alive = self._connection_open  # the periodic sweep drops it if not
        polls.add(self)  # until its answer has been sent (see `finish`)
        try:
            if not self._connection_open():
                return  # gone while the subscription was made: on_connection_close came too early
            # While the server drains, answer what there is and hold nothing.
            batch = await self._next_batch(subscription, 0.0 if polls.draining else wait)
        finally:
            self.engine.unsubscribe(subscription)
        if not self._connection_open():
            return  # the client went away while it waited: nobody to answer
        if batch:
            self._answer_events(batch)
            return
        reason = subscription.closed_reason
        if reason == CloseReason.DELETED:
            raise SessionNotFound(session_id)
        if reason == CloseReason.STORE_DOWN:
            raise StoreUnavailable("the store stopped taking the session's events")
        if self._released or self._polls.draining:
            raise PollReleased(self.config.sse_retry)
        if wait > 0:
            # It may have moved on while we waited (started elsewhere, interrupted, deleted).
            session = await self.engine.get_session(session_id)
        done = session.status.finished and position >= session.last_event_id
        self._answer([], position, session.status, done=done)

    @property
    def _polls(self) -> HeldPolls:
        polls: HeldPolls = self.application.settings["held_polls"]
        return polls

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        # Whichever way it ends (an answer, an error, a client gone), the poll is over once the
        # last byte has left: a shutdown waits for that before it closes the sockets.
        answered = super().finish(chunk)
        answered.add_done_callback(lambda _: self._polls.discard(self))
        return answered

    def _wait(self) -> float:
        """`wait=` in seconds (DEFAULT_WAIT if not given), cut to poll_max_wait."""
        raw = self.get_query_argument("wait", "").strip()
        if not raw:
            return min(DEFAULT_WAIT, self.config.poll_max_wait)
        seconds = float(raw) if SECONDS.match(raw) else math.nan
        if not math.isfinite(seconds):
            raise InvalidInput("wait must be a number of seconds, 0 or more")
        return min(seconds, self.config.poll_max_wait)

    async def _next_batch(self, subscription: Subscription, wait: float) -> list[Event]:
        """What the subscription has now, or its first events within `wait` s; [] if none came."""
        waiter = self._waiter = asyncio.ensure_future(subscription.next_batch())
        try:
            done, _ = await asyncio.wait({waiter}, timeout=wait)
        finally:
            self._waiter = None
        if not done:
            waiter.cancel()  # what arrived meanwhile stays in the subscription, which goes with it
            return []
        return [] if waiter.cancelled() else waiter.result()

    def _answer_events(self, batch: list[Event]) -> None:
        events = []
        for event in batch:
            events.append(event)
            if event.terminal:  # nothing follows a terminal event; never show what might
                break
        metrics.EVENTS_DELIVERED.inc(len(events))
        last = events[-1]
        assert last.id is not None  # only `connected` has no id, and it is never in the log
        self._answer(events, last.id, _status_as_of(last), done=last.terminal)

    def _answer(self, events: list[Event], next_after: int, status: SessionStatus, done: bool) -> None:
        """The answer, with each event's payload as the stream sends it (not decoded and encoded
        again), its `id` put first."""
        body = b'{"events":[%s],"next_after":%d,"done":%s,"status":%s}' % (
            b",".join(_with_id(event) for event in events),
            next_after,
            b"true" if done else b"false",
            dumps(status.value).encode(),
        )
        self.set_header("Content-Type", "application/json; charset=utf-8")
        self.set_header("Cache-Control", "no-store")  # every answer is of its moment
        self.finish(body)  # to a client that has gone, Tornado writes nothing and says nothing

    def release(self) -> None:
        """Answer now, with whatever the subscription holds (503 if nothing): the server drains."""
        self._released = True
        if self.subscription is not None:
            # Closed, a subscription hands over what it has at once: events, or an empty batch.
            self.subscription.close(CloseReason.SHUTDOWN)

    def on_connection_close(self) -> None:
        # The client went away mid-hold: stop waiting; `get` lets go of the subscription.
        super().on_connection_close()
        self._polls.discard(self)
        if self._waiter is not None:
            self._waiter.cancel()
        if self.subscription is not None:
            self.subscription.close()


class PollReleased(ShuttingDown):
    """A held poll answered early because the server is shutting down: come back after Retry-After
    (to this address: another instance, or this service once it is back)."""

    def __init__(self, sse_retry_ms: int) -> None:
        super().__init__("the server is shutting down; poll again after Retry-After seconds")
        self.retry_after = max(1.0, sse_retry_ms / 1000)


def _with_id(event: Event) -> bytes:
    """`{"id":N,` and the rest of the event's payload: the stream's JSON with its id in it."""
    payload = event.payload
    return b'{"id":%d,%s' % (event.id or 0, payload[1:])


def _status_as_of(event: Event) -> SessionStatus:
    """The session's status as of `event` (the last one an answer holds): a terminal event is
    recorded with the session's final state, `queued` while it waits, any other while it runs."""
    if event.type == FINAL:
        return SessionStatus.COMPLETED
    if event.type == ERROR:
        return SessionStatus(event.json()["data"]["status"])
    return SessionStatus.QUEUED if event.type == QUEUED else SessionStatus.RUNNING
