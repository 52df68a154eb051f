"""What every event log shares: commit through the store, then offer to this process's subscribers."""

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


class FanOutEventLog(EventLog):
    """Commits through the session store; fans each committed event out to this process's readers.

    Each event's frame was encoded once when it was made: every subscriber is handed the same bytes.
    A backend that also hears of events from elsewhere (other instances) hooks in with `_watch`
    (a subscription is in place, before its backlog is read) and `_unwatched` (a session's last
    subscription has gone), and hands what it hears to `_offer`.
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
            # Local only: whoever deleted the session has told everyone else already.
            self._end_local(event.session_id, CloseReason.DELETED if gone else CloseReason.STORE_DOWN)
            return
        metrics.EVENTS_APPENDED.labels(event.type).inc()
        self._committed(event)

    def _committed(self, event: Event) -> None:
        """An event this process appended is committed: offer it to the session's subscribers."""
        self._offer(event)

    def _offer(self, event: Event) -> None:
        """Hand the event (its one frame) to every subscription of its session here."""
        subscribers = self._subscribers.get(event.session_id)
        if not subscribers:
            return
        for subscription in list(subscribers):
            subscription.offer(event)
            if subscription.closed:
                subscribers.discard(subscription)
        if not subscribers and self._subscribers.get(event.session_id) is subscribers:
            self._forget(event.session_id)

    async def read_after(self, session_id: str, after_id: int) -> list[Event]:
        return await self.store.events_after(session_id, after_id)

    async def subscribe(self, session_id: str, after_id: int) -> Subscription:
        subscription = Subscription(session_id, self.subscriber_buffer, after_id)
        # In place before the backlog is read, so an event committed meanwhile is not missed;
        # `prime` drops whatever the backlog and the live events both hold.
        self._subscribers.setdefault(session_id, set()).add(subscription)
        self._watch(session_id, after_id)
        try:
            subscription.prime(await self.read_after(session_id, after_id))
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
                self._forget(subscription.session_id)

    def close_session(self, session_id: str, reason: CloseReason) -> None:
        self._end_local(session_id, reason)

    def _end_local(self, session_id: str, reason: CloseReason) -> None:
        """End every subscription to the session in this process."""
        subscribers = self._subscribers.get(session_id)
        if subscribers is None:
            return
        self._forget(session_id)
        for subscription in subscribers:
            subscription.close(reason)

    def close_all(self, reason: CloseReason) -> None:
        for session_id in list(self._subscribers):
            self._end_local(session_id, reason)

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

    def _forget(self, session_id: str) -> None:
        del self._subscribers[session_id]
        self._unwatched(session_id)

    # -- hooks for a backend that hears of events from elsewhere ------------------------------------

    def _watch(self, session_id: str, after_id: int) -> None:
        """A subscription to the session after `after_id` is in place; its backlog is read next."""

    def _unwatched(self, session_id: str) -> None:
        """The session has no subscription here any more."""
