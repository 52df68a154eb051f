"""The event log of one process: events committed to its store, then offered to its subscribers."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Sequence

from core import metrics
from core.errors import SessionNotFound
from core.events import Event
from core.models import Session
from core.store import Delivery, SessionStore
from workflow.eventlog.base import EventLog
from workflow.eventlog.subscription import CloseReason, Subscription

log = logging.getLogger("orchestrator.eventlog")


class LocalEventLog(EventLog):
    """Commits through the session store; fans each committed event out to this process's readers.

    Each event's frame was encoded once when it was made: every subscriber is handed the same bytes.
    """

    def __init__(self, store: SessionStore, subscriber_buffer: int) -> None:
        self.store = store
        self.subscriber_buffer = subscriber_buffer
        self._subscribers: dict[str, set[Subscription]] = {}

    def append(
        self, event: Event, state: Session | None = None, outbox: Sequence[Delivery] = ()
    ) -> asyncio.Future[None]:
        committed = self.store.append_events(event.session_id, [event], state, outbox)
        if committed.done():
            # A store that commits at once: deliver now, before anyone awaiting the future (which
            # would not yield) can close the session's streams ahead of this event.
            self._deliver(event, committed)
        else:
            # Registered before anyone can await the future, so subscribers hear of the event first.
            committed.add_done_callback(functools.partial(self._deliver, event))
        return committed

    def _deliver(self, event: Event, committed: asyncio.Future[None]) -> None:
        failure = None if committed.cancelled() else committed.exception()
        if failure is not None:
            gone = isinstance(failure, SessionNotFound)
            self.close_session(event.session_id, CloseReason.DELETED if gone else CloseReason.STORE_DOWN)
            return
        metrics.EVENTS_APPENDED.labels(event.type).inc()
        subscribers = self._subscribers.get(event.session_id)
        if subscribers:
            for subscription in list(subscribers):
                subscription.offer(event)
                if subscription.closed:
                    subscribers.discard(subscription)

    async def read_after(self, session_id: str, after_id: int) -> list[Event]:
        return await self.store.events_after(session_id, after_id)

    async def subscribe(self, session_id: str, after_id: int) -> Subscription:
        subscription = Subscription(session_id, self.subscriber_buffer, after_id)
        # In place before the backlog is read, so an event committed meanwhile is not missed;
        # `prime` drops whatever the backlog and the live events both hold.
        self._subscribers.setdefault(session_id, set()).add(subscription)
        try:
            subscription.prime(await self.store.events_after(session_id, after_id))
        except BaseException:
            self.unsubscribe(subscription)
            raise
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()
        subscribers = self._subscribers.get(subscription.session_id)
        if subscribers is not None:
            subscribers.discard(subscription)
            if not subscribers:
                del self._subscribers[subscription.session_id]

    def close_session(self, session_id: str, reason: CloseReason) -> None:
        for subscription in self._subscribers.pop(session_id, set()):
            subscription.close(reason)

    def close_all(self, reason: CloseReason) -> None:
        for session_id in list(self._subscribers):
            self.close_session(session_id, reason)

    def sweep(self) -> int:
        removed = 0
        for subscription in [s for subs in self._subscribers.values() for s in subs]:
            if subscription.closed or not subscription.reader_alive():
                self.unsubscribe(subscription)
                removed += 1
        if removed:
            log.info("swept %d closed subscriptions", removed)
        return removed

    @property
    def subscriber_count(self) -> int:
        return sum(len(subs) for subs in self._subscribers.values())
