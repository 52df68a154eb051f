"""What every event log shares: commit through the store, then offer to this process's subscribers."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Sequence

from core import metrics
from core.errors import SessionNotFound
from core.events import Event
from core.models import Session
from core.store import Delivery, SessionStore
from workflow.eventlog.base import EventLog
from workflow.eventlog.subscription import CloseReason, Subscription

log = logging.getLogger("orchestrator.eventlog")

# Seconds after a session's readers were handed a batch before they are handed the next: events
# that come faster (a run at full speed, a commit of many) go out together, one write per stream
# instead of one per event. An event after a quiet spell goes out at once.
DELIVERY_WINDOW = 0.002


class FanOutEventLog(EventLog):
    """Commits through the session store; fans each committed event out to this process's readers.

    Each event's frame was encoded once when it was made: every subscriber is handed the same bytes.
    A session's events are handed over in batches: whatever was committed since the last batch, at
    most one batch per DELIVERY_WINDOW, and at once after a quiet spell.
    A backend that also hears of events from elsewhere (other instances) hooks in with `_watch`
    (a subscription is in place, before its backlog is read) and `_unwatched` (a session's last
    subscription has gone), and hands what it hears to `_offer`.
    """

    def __init__(self, store: SessionStore, subscriber_buffer: int) -> None:
        self.store = store
        self.subscriber_buffer = subscriber_buffer
        self._subscribers: dict[str, set[Subscription]] = {}
        self._outgoing: dict[str, list[Event]] = {}  # by session: committed, not yet handed over
        self._handed_at: dict[str, float] = {}  # by session: the loop's time of its last batch

    def append_many(
        self, events: Sequence[Event], state: Session | None = None, outbox: Sequence[Delivery] = ()
    ) -> asyncio.Future[None]:
        committed = self.store.append_events(events[0].session_id, events, state, outbox)
        if committed.done():
            # A store that commits at once: into the session's batch now, in order with the events
            # before it (ending the session's streams hands over what is batched first).
            self._deliver(events, committed)
        else:
            # Registered before anyone can await the future, so subscribers hear of the events first.
            committed.add_done_callback(functools.partial(self._deliver, events))
        return committed

    def _deliver(self, events: Sequence[Event], committed: asyncio.Future[None]) -> None:
        failure = None if committed.cancelled() else committed.exception()
        if failure is not None:
            gone = isinstance(failure, SessionNotFound)
            # Local only: whoever deleted the session has told everyone else already.
            self._end_local(events[0].session_id, CloseReason.DELETED if gone else CloseReason.STORE_DOWN)
            return
        counted, kind = 0, events[0].type
        for event in events:
            if event.type != kind:  # counted a run of one type at a time: most batches are one
                metrics.events_appended(kind).inc(counted)
                counted, kind = 0, event.type
            counted += 1
            self._committed(event)
        metrics.events_appended(kind).inc(counted)

    def _committed(self, event: Event) -> None:
        """An event this process appended is committed: offer it to the session's subscribers."""
        self._offer(event)

    def _offer(self, event: Event) -> None:
        """Hand the event (its one frame) to every subscription of its session here, with the other
        events of its batch."""
        session_id = event.session_id
        if not self._subscribers.get(session_id):
            return
        batch = self._outgoing.get(session_id)
        if batch is not None:  # its batch is on its way
            last = batch[-1].id
            # Ids ascend in a batch: an event heard twice (committed here, and read back from a
            # shared log before that commit was settled) goes once.
            if event.id is None or last is None or event.id > last:
                batch.append(event)
            return
        self._outgoing[session_id] = [event]
        loop = asyncio.get_running_loop()
        due = self._handed_at.get(session_id, -math.inf) + DELIVERY_WINDOW
        if loop.time() >= due:
            # Soon, not now: the rest of a commit's events are settled in this same pass of the loop.
            loop.call_soon(self._hand_over, session_id)
        else:
            loop.call_at(due, self._hand_over, session_id)

    def _hand_over(self, session_id: str) -> None:
        batch = self._outgoing.pop(session_id, None)
        subscribers = self._subscribers.get(session_id)
        if batch is None or not subscribers:
            return  # handed over already (before the session's streams were ended), or no one left
        for subscription in list(subscribers):
            subscription.offer_many(batch)
            if subscription.closed:
                subscribers.discard(subscription)
        # Timed from the end: handing a batch to many readers takes a while, and the run making the
        # events has had no turn meanwhile. It gets the window to make the next batch.
        self._handed_at[session_id] = asyncio.get_running_loop().time()
        if not subscribers and self._subscribers.get(session_id) is subscribers:
            self._forget(session_id)

    async def read_after(self, session_id: str, after_id: int) -> list[Event]:
        return await self.store.events_after(session_id, after_id)

    async def subscribe(self, session_id: str, after_id: int, *, nothing_after: bool = False) -> Subscription:
        subscription = Subscription(session_id, self.subscriber_buffer, after_id)
        # In place before the backlog is read, so an event committed meanwhile is not missed;
        # `prime` drops whatever the backlog and the live events both hold.
        self._subscribers.setdefault(session_id, set()).add(subscription)
        self._watch(session_id, after_id)
        try:
            subscription.prime([] if nothing_after else await self.read_after(session_id, after_id))
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
        """End every subscription to the session in this process, after what was committed for it."""
        self._hand_over(session_id)
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
        self._outgoing.pop(session_id, None)
        self._handed_at.pop(session_id, None)
        self._unwatched(session_id)

    # -- hooks for a backend that hears of events from elsewhere ------------------------------------

    def _watch(self, session_id: str, after_id: int) -> None:
        """A subscription to the session after `after_id` is in place; its backlog is read next."""

    def _unwatched(self, session_id: str) -> None:
        """The session has no subscription here any more."""
